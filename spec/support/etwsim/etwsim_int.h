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
  uint8_t pad;
  uint64_t value;   /* a sequence number */
} sim_record;

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
  uint64_t seq;
} sim_logger;

typedef struct sim_state {
  int initialised;
  int admin;
  unsigned long major, minor, build;
  ULONG disk_free_mb;
  ULONG ncpus;
  TRACEHANDLE next_handle;
  sim_logger loggers[SIM_MAX_LOGGERS];
  struct { char op[16]; ULONG code; } fails[SIM_MAX_FAILS];
} sim_state;

extern sim_state sim;

void etwsim_reset(void);
int etwsim_win8(void);
ULONG etwsim_take_failure(const char *op);
sim_logger *etwsim_find_name(const WCHAR *name);
size_t etwsim_count(int private_system_only);
void etwsim_tick(sim_logger *l, unsigned n);

#endif
