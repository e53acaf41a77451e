/*
 * kl.h - the portable internal API of kernellogger.
 *
 * Three layers meet here:
 *   - the facts (flags.c): the one table of kernel event groups;
 *   - the binding (csrc/lua/, private header csrc/lua/binding.h): the
 *     only code that includes lua.h.  Rule: no other file of csrc/
 *     includes lua.h or lauxlib.h (spec/hygiene_spec.lua checks it), and
 *     nothing in csrc/lua/ calls the
 *     operating system except through kl_backend_impl and the small OS
 *     services below;
 *   - a backend (ftrace/ on Linux, etw/ on Windows): the only code that
 *     talks to the operating system.  It exports one ops table,
 *     kl_backend_impl, and knows nothing of Lua.
 *
 * C conventions: functions return 0 / a pointer on success, -1 / NULL on
 * failure with a kl_err filled in.  Nothing here raises.
 */
#ifndef KL_H
#define KL_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#if defined(__GNUC__) && !defined(_WIN32)
#define KL_INTERNAL __attribute__((visibility("hidden")))
#else
#define KL_INTERNAL
#endif

#if defined(__GNUC__)
#define KL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define KL_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* Stable error codes, shared by every platform.  Their Lua names live in
 * one array in common.c (kl_code_name). */
typedef enum {
  KL_OK = 0,
  KL_E_ALREADY_EXISTS,
  KL_E_NOT_FOUND,
  KL_E_ACCESS_DENIED,
  KL_E_NOT_SUPPORTED,
  KL_E_NO_RESOURCES,
  KL_E_DISK_FULL,
  KL_E_BAD_PATH,
  KL_E_BUSY,
  KL_E_INVALID,
  KL_E_UNAVAILABLE,
  KL_E_IO,
  KL_E__COUNT
} kl_code;

#define KL_MSG_MAX 1024

typedef struct kl_err {
  kl_code code;
  long sys;              /* errno on Linux, Win32 error on Windows; 0 if none */
  char msg[KL_MSG_MAX];  /* complete human message: operation, session, OS error */
  int stopped;           /* stop failed, but the session is over (it stopped and then
                            its file could not be copied, or it was gone already);
                            set by the backend, cleared by the caller before stop */
} kl_err;

KL_INTERNAL const char *kl_code_name(kl_code c);
/* Fill err; returns -1 so callers can `return kl_err_set(...)`. */
KL_INTERNAL int kl_err_set(kl_err *err, kl_code code, long sys,
                           const char *fmt, ...) KL_PRINTF(4, 5);
/* kl_err_set with errno: the code kl_code_from_errno(errno) (fallback when
 * errno is 0 or maps to nothing better than io), and the message fmt
 * followed by ": <strerror> (errno N)".  errno 0 counts as EIO. */
KL_INTERNAL int kl_err_errno(kl_err *err, kl_code fallback, const char *fmt, ...)
    KL_PRINTF(3, 4);
/* Map an errno value to a code (used by the Linux backend and file code). */
KL_INTERNAL kl_code kl_code_from_errno(int e);

/* ------------------------------------------------------------------ */
/* The flag table (flags.c)                                            */
/* ------------------------------------------------------------------ */

typedef struct kl_flag {
  const char *name;                /* canonical, lowercase: "network_tcpip" */
  const char *const *aliases;      /* NULL-terminated: logman's, xperf's names */
  uint32_t etw_bit;                /* EVENT_TRACE_FLAG_* value */
  const char *etw_macro;           /* "EVENT_TRACE_FLAG_NETWORK_TCPIP" */
  const char *const *tracepoints;  /* NULL-terminated "system:event", or NULL */
  const char *note;                /* short remark, may be NULL */
} kl_flag;

KL_INTERNAL extern const kl_flag kl_flags[];
KL_INTERNAL extern const size_t kl_nflags;
/* Case-insensitive lookup by canonical name or alias; NULL if unknown. */
KL_INTERNAL const kl_flag *kl_flag_find(const char *name);

/* ------------------------------------------------------------------ */
/* Session configuration                                               */
/* ------------------------------------------------------------------ */

typedef enum {
  KL_MODE_BUFFERING = 0,  /* in memory only; no file until flush/stop/update */
  KL_MODE_CIRCULAR,       /* file + circular_mb: newest events kept */
  KL_MODE_SEQUENTIAL,     /* file + max_mb: oldest events kept, stop when full */
  KL_MODE_REALTIME        /* consumed live (ETW real-time) */
} kl_mode;

KL_INTERNAL extern const char *const kl_mode_names[]; /* NULL-terminated */
KL_INTERNAL extern const char *const kl_clock_names[]; /* NULL-terminated */

typedef enum { KL_CLOCK_DEFAULT = 0, KL_CLOCK_QPC, KL_CLOCK_SYSTEM, KL_CLOCK_CYCLE,
               KL_CLOCK_MONO, KL_CLOCK_BOOT, KL_CLOCK_GLOBAL, KL_CLOCK_LOCAL } kl_clock;

#define KL_NAME_MAX 64     /* bytes of a session name, without the NUL */
#define KL_MAX_FLAGS 64
#define KL_MAX_TRACEPOINTS 256

typedef struct kl_config {
  const char *name;                         /* validated by kl_name_check */
  const kl_flag *flags[KL_MAX_FLAGS];       /* named groups, no duplicates */
  size_t nflags;
  const char *tracepoints[KL_MAX_TRACEPOINTS]; /* raw "system:event" given by the user */
  size_t ntracepoints;
  const char *file;                         /* NULL: none */
  kl_mode mode;
  unsigned circular_mb;                     /* circular: file/ring bound, MB */
  unsigned max_mb;                          /* sequential: file bound, MB */
  unsigned buffer_kb;                       /* 0: backend default */
  unsigned min_buffers, max_buffers;        /* 0: backend default */
  unsigned flush_timer;                     /* seconds, 0: default */
  kl_clock clock;
  int stacks;                               /* boolean */
  int overwrite;                            /* may replace an existing file */
  int kallsyms;                             /* Linux: store /proc/kallsyms in the file */
  int detached;                             /* record no owner process (meant to outlive it) */
  unsigned file_mode;                       /* permission bits of written files, default 0600 */
} kl_config;

/* Which fields of a kl_config an update() changes. */
enum {
  KL_UPD_FLAGS = 1u << 0,       /* flags + tracepoints */
  KL_UPD_FILE = 1u << 1,
  KL_UPD_CIRCULAR_MB = 1u << 2,
  KL_UPD_MAX_BUFFERS = 1u << 3,
  KL_UPD_FLUSH_TIMER = 1u << 4,
  KL_UPD_REALTIME = 1u << 5,
  KL_UPD_BUFFER_KB = 1u << 6,
  KL_UPD_MIN_BUFFERS = 1u << 7,
  KL_UPD_MAX_MB = 1u << 8,
  KL_UPD_CLOCK = 1u << 9
};

/* A valid session name: 1..KL_NAME_MAX bytes, no '/', '\\', no "..",
 * no control characters, not starting with '.'.  Returns 0 or -1 with err (KL_E_INVALID). */
KL_INTERNAL int kl_name_check(const char *name, kl_err *err);

/* ------------------------------------------------------------------ */
/* Session status (query / stop result)                                */
/* ------------------------------------------------------------------ */

#define KL_MAX_CPUS 512
#define KL_PATH_MAX 4096
#define KL_UNSET (-1)   /* an int64 field the platform does not report */

typedef struct kl_cpu_stats {
  int64_t entries, overrun, commit_overrun, bytes, dropped, read_events;
  double oldest_ts, now_ts;   /* seconds, -1 if unknown */
} kl_cpu_stats;

typedef struct kl_status {
  char name[KL_NAME_MAX + 1];
  char file[KL_PATH_MAX];          /* "" if none */
  kl_mode mode;
  char flags[2048];                /* comma-separated canonical flag names */
  char tracepoints[8192];          /* comma-separated raw tracepoints enabled */
  char clock[32];
  int foreign;                     /* not created by kernellogger */
  int detached;                    /* started with no owner process recorded */
  int stacks;                      /* stack traces recorded with the events */
  int owner_alive;                 /* 1 alive, 0 dead, -1 unknown */
  /* common counters and settings (KL_UNSET when unknown) */
  int64_t buffer_kb, buffers, free_buffers, events_lost, buffers_written,
          max_file_mb, flush_timer, min_buffers, max_buffers;
  /* Linux extras */
  int64_t entries, overrun, dropped, commit_overrun, bytes, owner_pid,
          bytes_written, circular_mb, cpu_buffer_kb, ring_kb;
  double start_time;               /* unix seconds, -1 unknown */
  double last_flush;               /* unix seconds, -1 never */
  /* Windows extras */
  int64_t logger_thread_id, log_buffers_lost, realtime_buffers_lost, enable_flags;
  int64_t log_file_mode;           /* Windows: LogFileMode (EVENT_TRACE_*_MODE bits) */
  /* streaming file sessions (Linux): -1 when not streaming */
  int file_full;                   /* max_mb reached (Linux), or ETW ended the session at it */
  int disk_full;                   /* the disk filled: no more data taken */
  int recorder_alive;              /* the recorder process runs */
  int ncpus;                       /* entries used in per_cpu, 0 if none */
  kl_cpu_stats per_cpu[KL_MAX_CPUS];
} kl_status;

/* Reset every numeric field to KL_UNSET and strings to "". */
KL_INTERNAL void kl_status_init(kl_status *st);

/* ------------------------------------------------------------------ */
/* Reading capture files                                               */
/* ------------------------------------------------------------------ */

typedef enum {
  KL_F_INT,      /* v.i */
  KL_F_UINT,     /* v.u */
  KL_F_FLOAT,    /* v.d */
  KL_F_STR,      /* v.s.p, v.s.len (not necessarily NUL-terminated) */
  KL_F_ARRAY,    /* v.a: count elements of elem_size bytes, is_signed */
  KL_F_BOOL,     /* v.i: 0 false, else true */
  KL_F_TABLE     /* v.t: nested fields (a struct), or a list when is_list */
} kl_ftype;

typedef struct kl_field {
  const char *name;
  kl_ftype type;
  union {
    int64_t i;
    uint64_t u;
    double d;
    struct { const char *p; size_t len; } s;
    struct { const void *p; size_t count; int elem_size; int is_signed; } a;
    struct { const struct kl_field *fields; size_t count; int is_list; } t;
  } v;
} kl_field;

typedef struct kl_event {
  const char *name, *system;
  uint64_t time;            /* ns */
  int cpu;
  int pid;                  /* -1 unknown */
  const char *comm;         /* may be NULL */
  uint64_t lost;            /* >0: a lost-events marker (name "lost_events") */
  size_t nfields;
  const kl_field *fields;   /* valid until the next call on the trace */
} kl_event;

typedef struct kl_filter {
  const char *const *names;  /* event names or "system" or "system:event"; NULL: all */
  size_t nnames;
  int cpu;                   /* -1: all */
  int pid;                   /* -1: all */
  uint64_t t0, t1;           /* ns; t1 == 0: no upper bound */
  int self;                  /* live reading: 1 also traces the reading process */
} kl_filter;

typedef struct kl_event_count {
  const char *system, *name;
  int64_t count;             /* KL_UNSET when not cheap to get */
} kl_event_count;

typedef struct kl_trace_info {
  char format[32];           /* "trace.dat" or "etl" */
  int version;
  int big_endian;
  int long_size;
  int page_size;
  int ncpus;
  char clock[32];
  uint64_t first_ts, last_ts;  /* ns */
  size_t nevent_types;
  const kl_event_count *event_types; /* owned by the trace */
  size_t nextra;             /* format-specific facts (.etl: OS version, pointer size...) */
  const kl_field *extra;     /* owned by the trace; 0/NULL if none */
} kl_trace_info;

/* Reading any capture file: csrc/reader.c looks at the first bytes and
 * sends .etl files to the portable reader (csrc/etl), anything else to the
 * backend's trace_* functions.  Same contract as those. */
typedef struct kl_reader kl_reader;
KL_INTERNAL kl_reader *kl_reader_open(const char *path, kl_err *err);
KL_INTERNAL int kl_reader_info(kl_reader *r, kl_trace_info *info, kl_err *err);
KL_INTERNAL int kl_reader_next(kl_reader *r, const kl_filter *f, int rewind, kl_event *ev,
                               kl_err *err);
KL_INTERNAL void kl_reader_close(kl_reader *r);

typedef struct kl_trace kl_trace;

/* ------------------------------------------------------------------ */
/* Backend ops: one table per platform                                 */
/* ------------------------------------------------------------------ */

typedef struct kl_session kl_session;  /* backend-private */

/* Called once per session by list(). */
typedef int (*kl_list_cb)(void *ud, const kl_status *st);

typedef struct kl_backend {
  const char *platform;        /* "linux" or "windows" */
  const char *kernel_logger;   /* default session name */
  int raw_tracepoints;         /* 1 if "system:event" flags are accepted */

  /* 1 if this machine can serve the flag, 0 if not, -1 if it cannot tell
   * now (e.g. tracing is not accessible: start will say why). */
  int (*flag_supported)(const kl_flag *f);
  /* 1 if the raw tracepoint "system:event" exists here, 0 if not, -1 if
   * it cannot tell now. */
  int (*tracepoint_exists)(const char *sys_event);

  kl_session *(*start)(const kl_config *cfg, kl_err *err);
  /* A handle on a running session by name, not owned. */
  kl_session *(*open)(const char *name, kl_err *err);
  int (*query)(kl_session *s, kl_status *st, kl_err *err);
  /* Change the fields named by `what` (KL_UPD_*) to their values in cfg. */
  int (*update)(kl_session *s, const kl_config *cfg, unsigned what, kl_err *err);
  /* Write the current content; file may be NULL (the session's file). */
  int (*flush)(kl_session *s, const char *file, int overwrite, kl_err *err);
  /* Stop the kernel session; st receives the final status.  file NULL:
   * the session's own file (if any); "": write no file.  The handle stays
   * allocated (release() frees it) even when stop fails; a failed file
   * write leaves the session running. */
  int (*stop)(kl_session *s, const char *file, int overwrite, kl_status *st, kl_err *err);
  /* Free the handle; never stops the kernel session. */
  void (*release)(kl_session *s);
  /* Every session on the machine, ours and foreign. */
  int (*list)(kl_list_cb cb, void *ud, kl_err *err);

  /* Capture files */
  kl_trace *(*trace_open)(const char *path, kl_err *err);
  int (*trace_info)(kl_trace *t, kl_trace_info *info, kl_err *err);
  /* 1: *ev filled; 0: end; -1: error. Restarts from the beginning when
   * rewind is set. */
  int (*trace_next)(kl_trace *t, const kl_filter *f, int rewind, kl_event *ev, kl_err *err);
  void (*trace_close)(kl_trace *t);

  /* Real-time sessions, consumed live: the next event that passes the
   * filter (names, cpu, pid).  1: *ev filled (valid until the next call);
   * 0: timeout seconds passed with no event (timeout < 0: no bound), or
   * the session stopped; -1: error (KL_E_INVALID: not a real-time session,
   * KL_E_NOT_SUPPORTED: the platform cannot).  fresh: the first call of a
   * new iteration.  stop() ends the readers of its session first. */
  int (*live_next)(kl_session *s, const kl_filter *f, int fresh, double timeout, kl_event *ev,
                   kl_err *err);
} kl_backend;

KL_INTERNAL extern const kl_backend kl_backend_impl;

/* ------------------------------------------------------------------ */
/* Small OS services (sys_posix.c / etw/sys_win.c; the build picks one) */
/* ------------------------------------------------------------------ */

KL_INTERNAL double kl_monotime(void);     /* seconds, monotonic */
KL_INTERNAL double kl_walltime(void);     /* unix seconds */
KL_INTERNAL void kl_sleep(double seconds);/* returns early on a signal */
KL_INTERNAL int kl_isatty(int fd);        /* 1 if fd is a terminal */
KL_INTERNAL long kl_getpid(void);
/* A new file at path for writing (O_CREAT|O_EXCL, never through a symbolic
 * link, mode 0600): NULL with err (already_exists when something is there). */
KL_INTERNAL FILE *kl_create_exclusive(const char *path, kl_err *err);
/* Give the file `from` the name `to` unless something is at `to`
 * (already_exists), then drop the name `from`. */
KL_INTERNAL int kl_rename_noreplace(const char *from, const char *to, kl_err *err);
/* What is at path itself (a symbolic link is not followed): 0 nothing, 'l' a
 * link, 'd' a folder, 'f' a regular file, 'o' anything else; -1 with err
 * when it cannot be told (e.g. a folder on the way is unreadable). */
KL_INTERNAL int kl_path_kind(const char *path, kl_err *err);

#endif /* KL_H */
