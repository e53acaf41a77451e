/*
 * etw.h - private to the Windows backend (csrc/etw/).
 *
 *   session.c   control plane: start/query/update/flush/stop/list, the ops table
 *   live.c      real-time consumer: OpenTraceW on the logger name, ProcessTrace
 *               on a thread, a bounded queue for live_next
 *   winerr.c    Win32 error -> kl_code, the table of ETW error texts, messages
 *               carrying the Win32 number
 *   wstr.c      UTF-8 <-> UTF-16 for names and paths
 *   reader.c    .etl files through OpenTraceW/ProcessTrace and TDH
 *   sys_win.c   kl_monotime & co. for Windows
 *   api_real.c  binds kl_etw_api to advapi32/tdh (the production build)
 *
 * Every advapi32/tdh entry point the backend uses goes through the one table
 * kl_etw.  The production build binds it to the real DLLs (api_real.c); the
 * test build binds it to the ETW contract simulator (spec/support/etwsim/).
 */
#ifndef KL_ETW_H
#define KL_ETW_H

#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601
#endif
#ifndef WINVER
#define WINVER _WIN32_WINNT
#endif

#include <windows.h>
#include <evntrace.h>
#include <evntcons.h>
#include <tdh.h>

#include "../kl.h"

/* Facts that older mingw-w64 headers lack (docs/windows.md lists the values). */
#ifndef EVENT_TRACE_FLAG_VAMAP
#define EVENT_TRACE_FLAG_VAMAP 0x00008000
#endif
#ifndef EVENT_TRACE_FLAG_JOB
#define EVENT_TRACE_FLAG_JOB 0x00080000
#endif
#ifndef EVENT_TRACE_FLAG_NO_SYSCONFIG
#define EVENT_TRACE_FLAG_NO_SYSCONFIG 0x10000000
#endif
#ifndef EVENT_TRACE_FLAG_DEBUG_EVENTS
#define EVENT_TRACE_FLAG_DEBUG_EVENTS 0x00400000
#endif
#ifndef EVENT_TRACE_SYSTEM_LOGGER_MODE
#define EVENT_TRACE_SYSTEM_LOGGER_MODE 0x02000000
#endif
#ifndef EVENT_TRACE_NO_PER_PROCESSOR_BUFFERING
#define EVENT_TRACE_NO_PER_PROCESSOR_BUFFERING 0x10000000
#endif
#ifndef EVENT_TRACE_USE_PAGED_MEMORY
#define EVENT_TRACE_USE_PAGED_MEMORY 0x01000000
#endif
#ifndef EVENT_TRACE_FILE_MODE_PREALLOCATE
#define EVENT_TRACE_FILE_MODE_PREALLOCATE 0x00000020
#endif
#ifndef EVENT_TRACE_FILE_MODE_NEWFILE
#define EVENT_TRACE_FILE_MODE_NEWFILE 0x00000008
#endif
#ifndef EVENT_TRACE_CONTROL_FLUSH
#define EVENT_TRACE_CONTROL_FLUSH 3
#endif
#ifndef ERROR_WMI_INSTANCE_NOT_FOUND
#define ERROR_WMI_INSTANCE_NOT_FOUND 4201L
#endif
#ifndef PROCESS_TRACE_MODE_EVENT_RECORD
#define PROCESS_TRACE_MODE_EVENT_RECORD 0x10000000
#endif
#ifndef PROCESS_TRACE_MODE_REAL_TIME
#define PROCESS_TRACE_MODE_REAL_TIME 0x00000100
#endif
#ifndef ERROR_CTX_CLOSE_PENDING
#define ERROR_CTX_CLOSE_PENDING 7007L
#endif
/* Bits of EnableFlags that are not event groups: EXTENSION turns the value
 * into a TRACE_ENABLE_FLAG_EXTENSION (byte offset and ULONG length of a flag
 * array after the block's structure), FORWARD_WMI and ENABLE_RESERVE are
 * reserved.  Never sent by the backend. */
#define KL_ETW_RESERVED_FLAGS 0xE0000000u

/* Room for one name in a properties block, in WCHARs. */
#define KL_ETW_NAME_WCHARS 1024
/* QueryAllTracesW accepts at most this many blocks. */
#define KL_ETW_MAX_LOGGERS 64
/* The kernel session's name, in UTF-8. */
#define KL_ETW_KERNEL_LOGGER "NT Kernel Logger"

/* One properties block with its two name slots, in one allocation. */
typedef struct kl_etw_props {
  EVENT_TRACE_PROPERTIES p;
  WCHAR logger_name[KL_ETW_NAME_WCHARS];
  WCHAR log_file[KL_ETW_NAME_WCHARS];
} kl_etw_props;

typedef struct kl_etw_live kl_etw_live; /* live.c */

/* What tells one session from another that took its name after it ended
 * (docs/windows.md, "Which session a handle controls").  0 / unset fields
 * are not compared. */
typedef struct kl_etw_ident {
  ULONG64 handle;          /* Wnode.HistoricalContext: StartTrace's handle */
  GUID guid;               /* Wnode.Guid, compared when check_guid */
  int check_guid;          /* a private session: its GUID is its own */
  ULONG clock;             /* Wnode.ClientContext */
  ULONG thread;            /* LoggerThreadId, once a QUERY has shown it */
  ULONG written;           /* BuffersWritten seen last: it never goes back */
} kl_etw_ident;

struct kl_session {
  char name[KL_NAME_MAX + 1];
  WCHAR wname[KL_ETW_NAME_WCHARS];
  TRACEHANDLE handle;      /* from StartTraceW; 0 when opened by name */
  GUID guid;               /* Wnode.Guid of every control call */
  int kernel;              /* the NT Kernel Logger (names compare case-insensitively) */
  int started;             /* started by this process */
  int realtime;            /* EVENT_TRACE_REAL_TIME_MODE is on */
  int stopped;             /* stopped by this handle (a failed copy may follow) */
  kl_mode mode;
  unsigned max_mb;         /* sequential: MaximumFileSize, to tell "file full" */
  unsigned buffer_kb;      /* BufferSize asked for (0: ETW's default) */
  kl_etw_ident id;         /* tells this session from a newcomer of its name */
  char file[KL_PATH_MAX];  /* the file ETW writes, "" if none */
  char target[KL_PATH_MAX];/* buffering: where flush/stop write by default */
  kl_etw_live *live;       /* the real-time consumer, NULL until events() */
};

/* Windows version as the backend needs it (RtlGetVersion, which does not lie). */
typedef struct kl_etw_version {
  unsigned long major, minor, build;
} kl_etw_version;

/* The one table of advapi32/tdh entry points (plus the OS version). */
typedef struct kl_etw_api {
  const char *binding;  /* "advapi32" or "etwsim" */
  ULONG (WINAPI *StartTraceW)(PTRACEHANDLE, LPCWSTR, PEVENT_TRACE_PROPERTIES);
  ULONG (WINAPI *ControlTraceW)(TRACEHANDLE, LPCWSTR, PEVENT_TRACE_PROPERTIES, ULONG);
  ULONG (WINAPI *QueryAllTracesW)(PEVENT_TRACE_PROPERTIES *, ULONG, PULONG);
  ULONG (WINAPI *TraceSetInformation)(TRACEHANDLE, TRACE_INFO_CLASS, PVOID, ULONG);
  TRACEHANDLE (WINAPI *OpenTraceW)(PEVENT_TRACE_LOGFILEW);
  ULONG (WINAPI *ProcessTrace)(PTRACEHANDLE, ULONG, LPFILETIME, LPFILETIME);
  ULONG (WINAPI *CloseTrace)(TRACEHANDLE);
  ULONG (WINAPI *TdhGetEventInformation)(PEVENT_RECORD, ULONG, PTDH_CONTEXT,
                                         PTRACE_EVENT_INFO, PULONG);
  ULONG (WINAPI *TdhGetPropertySize)(PEVENT_RECORD, ULONG, PTDH_CONTEXT,
                                     ULONG, PPROPERTY_DATA_DESCRIPTOR, PULONG);
  ULONG (WINAPI *TdhGetProperty)(PEVENT_RECORD, ULONG, PTDH_CONTEXT, ULONG,
                                 PPROPERTY_DATA_DESCRIPTOR, ULONG, PBYTE);
  int (*get_version)(kl_etw_version *v);
} kl_etw_api;

KL_INTERNAL extern const kl_etw_api kl_etw;

/* SystemTraceControlGuid {9e814aad-3204-11d2-9a82-006008a86939}. */
KL_INTERNAL extern const GUID kl_etw_system_trace_guid;

/* ---- strings (wstr.c) ---- */
/* UTF-8 -> UTF-16 into out[cap] (NUL included); -1 + err (invalid) when it
 * does not fit or is not UTF-8: "<op> '<session>': <what> is not valid UTF-8
 * (Win32 error N: text)".  what names the field (name, file, path). */
KL_INTERNAL int kl_etw_to_wide(const char *s, WCHAR *out, size_t cap, const char *op,
                               const char *session, const char *what, kl_err *err);
/* UTF-16 -> UTF-8 into out[cap], always NUL-terminated (truncates). */
KL_INTERNAL void kl_etw_to_utf8(const WCHAR *w, char *out, size_t cap);

/* ---- errors (winerr.c) ---- */
/* Map a Win32 error to a code. */
KL_INTERNAL kl_code kl_etw_code(DWORD e);
/* Fill err with code from kl_etw_code(e), message:
 *   "<op> '<session>': <detail> (Win32 error <e>: <system text>)"
 * detail NULL: the text winerr.c's table has for (op, e), if any. */
KL_INTERNAL int kl_etw_err(kl_err *err, DWORD e, const char *op, const char *session,
                           const char *detail);
/* The same with the table's text for (key, e), whose one "%s" (if any)
 * receives extra.  key is the operation or a finer case ("start-clock"). */
KL_INTERNAL int kl_etw_errx(kl_err *err, DWORD e, const char *op, const char *key,
                            const char *session, const char *extra);
/* The system's text for a Win32 error, UTF-8, no trailing newline. */
KL_INTERNAL void kl_etw_strerror(DWORD e, char *out, size_t cap);

/* ---- names (session.c) ---- */
/* ETW compares session names case-insensitively: 1 if a and b name the same. */
KL_INTERNAL int kl_etw_same_name(const char *a, const char *b);

/* ---- the real-time consumer (live.c) ---- */
KL_INTERNAL int kl_etw_live_next(kl_session *s, const kl_filter *f, int fresh, double timeout,
                                 kl_event *ev, kl_err *err);
/* Ends the consumer thread (CloseTrace, join) and frees it; s->live = NULL. */
KL_INTERNAL void kl_etw_live_close(kl_session *s);

/* ---- reader (reader.c) ---- */
KL_INTERNAL kl_trace *kl_etw_trace_open(const char *path, kl_err *err);
KL_INTERNAL int kl_etw_trace_info(kl_trace *t, kl_trace_info *info, kl_err *err);
KL_INTERNAL int kl_etw_trace_next(kl_trace *t, const kl_filter *f, int rewind,
                                  kl_event *ev, kl_err *err);
KL_INTERNAL void kl_etw_trace_close(kl_trace *t);

#endif
