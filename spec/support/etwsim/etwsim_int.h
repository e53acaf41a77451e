/*
 * etwsim_int.h - the simulator's state, shared by etwsim.c (the ETW side),
 * etwsim_read.c (the consumer side) and lua_etwsim.c (the spec knobs).
 */
#ifndef ETWSIM_INT_H
#define ETWSIM_INT_H

#include "etwsim.h"

#include <stdint.h>

#define SIM_MAX_LOGGERS 64          /* Windows' default logger limit */
#define SIM_MAX_SYSTEM_LOGGERS 8    /* SystemTraceProvider multiplexing, Windows 8+ */
#define SIM_RESERVED_SYSTEM_SLOTS 2 /* NT Kernel Logger, Circular Kernel Context Logger */
#define SIM_NAME_WCHARS 1024
#define SIM_MAX_FAILS 16
#define SIM_MAX_READERS 16

typedef struct sim_record {
  uint64_t time;    /* FILETIME ticks */
  uint32_t pid;
  uint16_t cpu;
  uint8_t opcode;   /* the enable-flag bit index */
  uint8_t flags;    /* SIM_REC_STACK: a StackWalk record follows it (real time) */
  uint64_t value;   /* a sequence number */
} sim_record;

#define SIM_REC_STACK 1
#define SIM_RT_QUEUE 4096           /* records a real-time consumer holds by default */
#define SIM_PLAYBACK 4096           /* records kept for a real-time session with no consumer */
#define SIM_CMDLINE_WCHARS 4096

typedef struct sim_logger {
  int used;
  WCHAR name[SIM_NAME_WCHARS];
  WCHAR file[SIM_NAME_WCHARS];
  HANDLE fh;
  GUID guid;
  TRACEHANDLE handle;
  ULONG clock, mode, buffer_kb, min_buffers, max_buffers, max_file_mb, flush_timer;
  ULONG enable_flags, free_buffers, events_lost, buffers_written, log_buffers_lost;
  ULONG realtime_buffers_lost, thread_id, stack_ids, queries, updates, flushes;
  int system;      /* NT Kernel Logger or EVENT_TRACE_SYSTEM_LOGGER_MODE */
  int stopping;    /* STOP answers ERROR_ACTIVE_CONNECTIONS */
  int full;        /* sequential file reached MaximumFileSize: ETW ends the session */
  sim_record *playback;  /* real time, no consumer yet: the playback file */
  ULONG playback_n, playback_cap;
  uint64_t seq;
} sim_logger;

typedef struct sim_state {
  int initialised;
  int admin;
  unsigned long major, minor, build;
  ULONG disk_free_mb;
  ULONG ncpus;
  ULONG rt_queue_max;                 /* per real-time consumer */
  ULONG playback_max;                 /* records a playback file holds */
  WCHAR command_line[SIM_CMDLINE_WCHARS]; /* CommandLine of simulated Process/Start */
  TRACEHANDLE next_handle;
  ULONG next_thread;                  /* each session logs on a thread of its own */
  sim_logger loggers[SIM_MAX_LOGGERS];
  struct { char op[16]; ULONG code; } fails[SIM_MAX_FAILS];
} sim_state;

extern sim_state sim;

void etwsim_reset(void);
int etwsim_win8(void);
ULONG etwsim_take_failure(const char *op);
sim_logger *etwsim_find_name(const WCHAR *name);
size_t etwsim_count(int private_system_only);
/* n buffers pass; a sequential logger whose file fills up is removed. */
void etwsim_tick(sim_logger *l, unsigned n);

/* Real-time consumers (etwsim_rt.c). */
/* Hands one buffer's records to the consumers of logger handle h; returns
 * how many consumers are listening (0: nobody), *dropped how many of them
 * had no room for the buffer. */
int etwsim_rt_deliver(TRACEHANDLE h, const sim_record *r, unsigned n, int *dropped);
/* The logger h is gone: its consumers end once their queue is empty. */
void etwsim_rt_gone(TRACEHANDLE h);
/* Records (and lost buffers) not yet handed to a consumer's callback. */
ULONG etwsim_rt_pending(void);
/* on: consumers take nothing from their queues (a slow consumer). */
void etwsim_rt_hold(int on);
/* Every consumer ends (reset). */
void etwsim_rt_reset(void);
TRACEHANDLE etwsim_rt_open(PEVENT_TRACE_LOGFILEW lf);
ULONG etwsim_rt_process(TRACEHANDLE h);
ULONG etwsim_rt_close(TRACEHANDLE h);
/* The kernel class description of a real-time event, NULL for others. */
const void *etwsim_rt_class(PEVENT_RECORD er);
ULONG etwsim_rt_event_info(PEVENT_RECORD er, PTRACE_EVENT_INFO info, PULONG size);
/* The bytes of property `name` in er's payload, walking the class layout. */
int etwsim_rt_slice(PEVENT_RECORD er, const WCHAR *name, const BYTE **p, ULONG *len);

#endif
