/*
 * session.c - the ETW control plane and the Windows ops table.
 *
 * One properties block layout (kl_etw_props) with room for 1024 WCHARs per
 * name serves StartTraceW, ControlTraceW and QueryAllTracesW.  The NT Kernel
 * Logger is started with SystemTraceControlGuid; any other name becomes a
 * private kernel session (EVENT_TRACE_SYSTEM_LOGGER_MODE, Windows 8+).
 * Every call goes through the kl_etw table (etw.h).
 */
#include "etw.h"

#include <objbase.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

const GUID kl_etw_system_trace_guid = {
  0x9e814aad, 0x3204, 0x11d2, {0x9a, 0x82, 0x00, 0x60, 0x08, 0xa8, 0x69, 0x39}};

/* ------------------------------------------------------------------ */
/* Facts: Windows versions per flag, stack-walk event ids per flag     */
/* ------------------------------------------------------------------ */

static const struct {
  uint32_t bit;
  unsigned long major, minor;
} flag_min_version[] = {
  {EVENT_TRACE_FLAG_DISPATCHER, 6, 1},
  {EVENT_TRACE_FLAG_VIRTUAL_ALLOC, 6, 1},
  {EVENT_TRACE_FLAG_VAMAP, 6, 2},
  {EVENT_TRACE_FLAG_NO_SYSCONFIG, 6, 2},
  {EVENT_TRACE_FLAG_JOB, 10, 0},
};

/* Kernel event classes (MOF GUIDs of the NT Kernel Logger). */
static const GUID g_process = {0x3d6fa8d0, 0xfe05, 0x11d0, {0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c}};
static const GUID g_thread = {0x3d6fa8d1, 0xfe05, 0x11d0, {0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c}};
static const GUID g_pagefault = {0x3d6fa8d3, 0xfe05, 0x11d0, {0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c}};
static const GUID g_diskio = {0x3d6fa8d4, 0xfe05, 0x11d0, {0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c}};
static const GUID g_image = {0x2cb15d1d, 0x5fc1, 0x11d2, {0xab, 0xe1, 0x00, 0xa0, 0xc9, 0x11, 0xf5, 0x18}};
static const GUID g_tcpip = {0x9a280ac0, 0xc8e0, 0x11d1, {0x84, 0xe2, 0x00, 0xc0, 0x4f, 0xb9, 0x98, 0xa2}};
static const GUID g_registry = {0xae53722e, 0xc863, 0x11d2, {0x86, 0x59, 0x00, 0xc0, 0x4f, 0xa3, 0x21, 0xa1}};
static const GUID g_fileio = {0x90cbdc39, 0x4a3e, 0x11d1, {0x84, 0xf4, 0x00, 0x00, 0xf8, 0x04, 0x64, 0xe3}};
static const GUID g_perfinfo = {0xce1dbfb4, 0x137e, 0x4da6, {0x87, 0xb0, 0x3f, 0x59, 0xaa, 0x10, 0x2c, 0xbc}};
static const GUID g_alpc = {0x45d8cccd, 0x539f, 0x4b72, {0xa8, 0xb7, 0x5c, 0x68, 0x31, 0x42, 0x60, 0x9a}};
static const GUID g_splitio = {0xd837ca92, 0x12b9, 0x44a5, {0xad, 0x6a, 0x3a, 0x65, 0xb3, 0x57, 0x8a, 0xa8}};

/* Which events get a stack when `stacks` is set, per enable flag. */
static const struct {
  uint32_t bit;
  const GUID *guid;
  unsigned char types[6];  /* 0-terminated */
} stack_events[] = {
  {EVENT_TRACE_FLAG_PROCESS, &g_process, {1, 2, 0}},
  {EVENT_TRACE_FLAG_THREAD, &g_thread, {1, 2, 0}},
  {EVENT_TRACE_FLAG_IMAGE_LOAD, &g_image, {10, 0}},
  {EVENT_TRACE_FLAG_CSWITCH, &g_thread, {36, 0}},
  {EVENT_TRACE_FLAG_DISPATCHER, &g_thread, {50, 0}},
  {EVENT_TRACE_FLAG_DISK_IO, &g_diskio, {10, 11, 0}},
  {EVENT_TRACE_FLAG_DISK_IO_INIT, &g_diskio, {12, 13, 0}},
  {EVENT_TRACE_FLAG_MEMORY_PAGE_FAULTS, &g_pagefault, {10, 11, 12, 13, 14, 0}},
  {EVENT_TRACE_FLAG_MEMORY_HARD_FAULTS, &g_pagefault, {32, 0}},
  {EVENT_TRACE_FLAG_VIRTUAL_ALLOC, &g_pagefault, {98, 99, 0}},
  {EVENT_TRACE_FLAG_NETWORK_TCPIP, &g_tcpip, {10, 11, 12, 0}},
  {EVENT_TRACE_FLAG_REGISTRY, &g_registry, {10, 11, 0}},
  {EVENT_TRACE_FLAG_FILE_IO_INIT, &g_fileio, {64, 67, 68, 0}},
  {EVENT_TRACE_FLAG_PROFILE, &g_perfinfo, {46, 0}},
  {EVENT_TRACE_FLAG_SYSTEMCALL, &g_perfinfo, {51, 0}},
  {EVENT_TRACE_FLAG_INTERRUPT, &g_perfinfo, {67, 0}},
  {EVENT_TRACE_FLAG_DPC, &g_perfinfo, {68, 0}},
  {EVENT_TRACE_FLAG_ALPC, &g_alpc, {33, 0}},
  {EVENT_TRACE_FLAG_SPLIT_IO, &g_splitio, {32, 0}},
};

#define KL_ETW_MAX_STACK_IDS 256  /* ETW's limit on CLASSIC_EVENT_ID entries */

int kl_etw_same_name(const char *a, const char *b) {
  WCHAR wa[KL_NAME_MAX + 1], wb[KL_NAME_MAX + 1];
  if (MultiByteToWideChar(CP_UTF8, 0, a, -1, wa, KL_NAME_MAX + 1) <= 0 ||
      MultiByteToWideChar(CP_UTF8, 0, b, -1, wb, KL_NAME_MAX + 1) <= 0)
    return strcmp(a, b) == 0;
  /* Ordinal, ignoring case, as ETW matches logger names. */
  return CompareStringOrdinal(wa, -1, wb, -1, TRUE) == CSTR_EQUAL;
}

/* Sessions this process started, with what tells each from a newcomer of
 * its name, so that query() and list() tell ours from foreign ones. */
static struct {
  char name[KL_NAME_MAX + 1];
  kl_etw_ident id;
  char file[KL_PATH_MAX];
} ours[KL_ETW_MAX_LOGGERS];

static int ours_find(const char *name) {
  int i;
  for (i = 0; i < KL_ETW_MAX_LOGGERS; i++)
    if (ours[i].name[0] != '\0' && kl_etw_same_name(ours[i].name, name)) return i;
  return -1;
}

/* Record (or refresh) a session this process started; off: forget it. */
static void ours_set(const kl_session *s, int on) {
  int i = ours_find(s->name);
  if (!on) {
    if (i >= 0) ours[i].name[0] = '\0';
    return;
  }
  if (i < 0)
    for (i = 0; i < KL_ETW_MAX_LOGGERS && ours[i].name[0] != '\0'; i++) {}
  if (i >= KL_ETW_MAX_LOGGERS) return;
  snprintf(ours[i].name, sizeof ours[i].name, "%s", s->name);
  ours[i].id = s->id;
  snprintf(ours[i].file, sizeof ours[i].file, "%s", s->file);
}

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

static int windows_at_least(unsigned long major, unsigned long minor) {
  kl_etw_version v;
  if (kl_etw.get_version(&v) != 0) return 1; /* unknown: let ETW decide */
  return v.major > major || (v.major == major && v.minor >= minor);
}

static void props_init(kl_etw_props *b) {
  ZeroMemory(b, sizeof *b);
  b->p.Wnode.BufferSize = (ULONG)sizeof *b;
  b->p.Wnode.Flags = WNODE_FLAG_TRACED_GUID;
  b->p.LoggerNameOffset = (ULONG)offsetof(kl_etw_props, logger_name);
  b->p.LogFileNameOffset = (ULONG)offsetof(kl_etw_props, log_file);
}

/* A block for ControlTraceW on the session named wname: the kernel logger
 * is also named by its GUID, as the documentation's examples do. */
static void props_for(kl_etw_props *b, const WCHAR *wname) {
  props_init(b);
  if (wname != NULL && _wcsicmp(wname, KERNEL_LOGGER_NAMEW) == 0)
    b->p.Wnode.Guid = kl_etw_system_trace_guid;
}

/* A name in a block returned by ETW, at the offset ETW used. */
static const WCHAR *props_wstr(const kl_etw_props *b, ULONG off) {
  if (off < sizeof(EVENT_TRACE_PROPERTIES) ||
      off + sizeof(WCHAR) > sizeof *b || (off % sizeof(WCHAR)) != 0)
    return NULL;
  return (const WCHAR *)((const char *)b + off);
}

static void props_terminate(kl_etw_props *b) {
  b->logger_name[KL_ETW_NAME_WCHARS - 1] = 0;
  b->log_file[KL_ETW_NAME_WCHARS - 1] = 0;
}

/* The last component of a path ("" for none). */
static const char *base_name(const char *path) {
  const char *b = path, *p;
  for (p = path; *p != '\0'; p++)
    if (*p == '\\' || *p == '/' || *p == ':') b = p + 1;
  return b;
}

/* 1 if the queried block b shows the session that id and file describe, not
 * another that took its name after it ended.  ETW may write a file's path
 * out in full, so files compare by their last component. */
static int ident_match(const kl_etw_ident *id, const char *file, const kl_etw_props *b) {
  const EVENT_TRACE_PROPERTIES *p = &b->p;
  const WCHAR *w = props_wstr(b, p->LogFileNameOffset);
  char qfile[KL_PATH_MAX];
  ULONG thread = (ULONG)(ULONG_PTR)p->LoggerThreadId;
  kl_etw_to_utf8(w, qfile, sizeof qfile);
  if (id->handle != 0 && p->Wnode.HistoricalContext != 0 &&
      id->handle != p->Wnode.HistoricalContext)
    return 0;
  if (id->check_guid && !IsEqualGUID(&id->guid, &p->Wnode.Guid)) return 0;
  if (id->clock != 0 && p->Wnode.ClientContext != 0 && id->clock != p->Wnode.ClientContext)
    return 0;
  if (id->thread != 0 && thread != 0 && id->thread != thread) return 0;
  if (p->BuffersWritten < id->written) return 0;
  if ((file[0] == '\0') != (qfile[0] == '\0')) return 0;
  return file[0] == '\0' || _stricmp(base_name(file), base_name(qfile)) == 0;
}

/* What a verified QUERY adds to the identity: the logger thread, the count. */
static void ident_seen(kl_etw_ident *id, const kl_etw_props *b) {
  ULONG thread = (ULONG)(ULONG_PTR)b->p.LoggerThreadId;
  if (id->thread == 0) id->thread = thread;
  if (id->handle == 0) id->handle = b->p.Wnode.HistoricalContext;
  if (id->clock == 0) id->clock = b->p.Wnode.ClientContext;
  id->written = b->p.BuffersWritten;
}

static int ours_has(const char *name, const kl_etw_props *b) {
  int i = ours_find(name);
  return i >= 0 && ident_match(&ours[i].id, ours[i].file, b);
}

static void flags_string(uint32_t mask, char *out, size_t cap) {
  size_t i, used = 0;
  out[0] = '\0';
  for (i = 0; i < kl_nflags; i++) {
    uint32_t bit = kl_flags[i].etw_bit;
    int n;
    if (bit == 0 || (mask & bit) != bit) continue;
    n = snprintf(out + used, cap - used, "%s%s", used ? "," : "", kl_flags[i].name);
    if (n < 0 || (size_t)n >= cap - used) {
      out[used] = '\0';
      return;
    }
    used += (size_t)n;
  }
}

static kl_mode mode_from_bits(ULONG m, int has_file) {
  if (m & EVENT_TRACE_FILE_MODE_CIRCULAR) return KL_MODE_CIRCULAR;
  if (m & EVENT_TRACE_BUFFERING_MODE) return KL_MODE_BUFFERING;
  if ((m & EVENT_TRACE_REAL_TIME_MODE) && !has_file) return KL_MODE_REALTIME;
  if (m & EVENT_TRACE_FILE_MODE_SEQUENTIAL) return KL_MODE_SEQUENTIAL;
  if (m & EVENT_TRACE_REAL_TIME_MODE) return KL_MODE_REALTIME;
  return has_file ? KL_MODE_SEQUENTIAL : KL_MODE_BUFFERING;
}

static const char *clock_name(ULONG ctx) {
  switch (ctx) {
    case 2: return "system";
    case 3: return "cycle";
    default: return "qpc"; /* 0 means ETW's default, QPC */
  }
}

static void status_from_props(const kl_etw_props *b, kl_status *st) {
  const WCHAR *w;
  const EVENT_TRACE_PROPERTIES *p = &b->p;
  kl_status_init(st);
  if ((w = props_wstr(b, p->LoggerNameOffset)) != NULL)
    kl_etw_to_utf8(w, st->name, sizeof st->name);
  if ((w = props_wstr(b, p->LogFileNameOffset)) != NULL)
    kl_etw_to_utf8(w, st->file, sizeof st->file);
  st->mode = mode_from_bits(p->LogFileMode, st->file[0] != '\0');
  flags_string(p->EnableFlags, st->flags, sizeof st->flags);
  snprintf(st->clock, sizeof st->clock, "%s", clock_name(p->Wnode.ClientContext));
  st->foreign = !ours_has(st->name, b);
  st->buffer_kb = p->BufferSize;
  st->buffers = p->NumberOfBuffers;
  st->free_buffers = p->FreeBuffers;
  st->events_lost = p->EventsLost;
  st->buffers_written = p->BuffersWritten;
  st->max_file_mb = p->MaximumFileSize;
  st->flush_timer = p->FlushTimer;
  st->min_buffers = p->MinimumBuffers;
  st->max_buffers = p->MaximumBuffers;
  if (st->mode == KL_MODE_CIRCULAR) st->circular_mb = p->MaximumFileSize;
  st->logger_thread_id = (int64_t)(intptr_t)p->LoggerThreadId;
  st->log_buffers_lost = p->LogBuffersLost;
  st->realtime_buffers_lost = p->RealTimeBuffersLost;
  st->enable_flags = p->EnableFlags;
  st->log_file_mode = p->LogFileMode;
}

static int enable_mask(const kl_config *cfg, const char *op, uint32_t *mask, kl_err *err) {
  size_t i;
  uint32_t m = 0;
  if (cfg->ntracepoints > 0)
    return kl_err_set(err, KL_E_NOT_SUPPORTED, 0,
                      "%s '%s': raw tracepoints such as '%s' exist only on Linux", op,
                      cfg->name ? cfg->name : "", cfg->tracepoints[0]);
  for (i = 0; i < cfg->nflags; i++) {
    const kl_flag *f = cfg->flags[i];
    if (f->etw_bit & KL_ETW_RESERVED_FLAGS)
      /* EXTENSION would make ETW read EnableFlags as an offset/length pair
       * into the block; FORWARD_WMI and ENABLE_RESERVE are reserved. */
      return kl_err_set(err, KL_E_INVALID, 0,
                        "%s '%s': flag '%s' (0x%08lx) is a reserved EnableFlags bit, not an "
                        "event group; it is never sent to ETW", op,
                        cfg->name ? cfg->name : "", f->name, (unsigned long)f->etw_bit);
    if (!kl_backend_impl.flag_supported(f))
      return kl_err_set(err, KL_E_NOT_SUPPORTED, 0,
                        "%s '%s': flag '%s' is not supported by this version of Windows%s%s%s",
                        op, cfg->name ? cfg->name : "", f->name, f->note ? " (" : "",
                        f->note ? f->note : "", f->note ? ")" : "");
    m |= f->etw_bit;
  }
  /* File names of disk I/O come with the disk I/O events only. */
  if (m & EVENT_TRACE_FLAG_DISK_FILE_IO) m |= EVENT_TRACE_FLAG_DISK_IO;
  *mask = m;
  return 0;
}

static int clock_context(kl_clock c, const char *name, ULONG *ctx, kl_err *err) {
  switch (c) {
    case KL_CLOCK_DEFAULT: case KL_CLOCK_QPC: *ctx = 1; return 0;
    case KL_CLOCK_SYSTEM: *ctx = 2; return 0;
    case KL_CLOCK_CYCLE: *ctx = 3; return 0;
    default:
      return kl_err_set(err, KL_E_NOT_SUPPORTED, 0,
                        "start '%s': clock '%s' exists only on Linux; ETW offers qpc, system "
                        "and cycle", name, kl_clock_names[c]);
  }
}

/* QUERY by name into b; returns the Win32 result. */
static ULONG query_props(TRACEHANDLE h, const WCHAR *wname, kl_etw_props *b) {
  ULONG rc;
  props_for(b, wname);
  rc = kl_etw.ControlTraceW(h, wname, &b->p, EVENT_TRACE_CONTROL_QUERY);
  props_terminate(b);
  return rc;
}

/* A queried block made ready for UPDATE.  QUERY may rewrite any part of the
 * Wnode header (it is an [in, out] block), so the header and both offsets
 * are set again; LogFileNameOffset 0 keeps the file.  LogFileMode carries
 * only the real-time switch, in ControlTrace's encoding: 0 turns real time
 * off, a non-zero value is OR'd into the session's modes. */
static void props_for_update(const kl_session *s, kl_etw_props *b, int realtime) {
  b->p.Wnode.BufferSize = (ULONG)sizeof *b;
  b->p.Wnode.Flags = WNODE_FLAG_TRACED_GUID;
  b->p.Wnode.Guid = s->guid;
  b->p.LoggerNameOffset = (ULONG)offsetof(kl_etw_props, logger_name);
  b->p.LogFileNameOffset = 0;
  b->p.LogFileMode = realtime ? EVENT_TRACE_REAL_TIME_MODE : 0;
}

/* "file=..., mode=..., flags=..., buffers=N, events_lost=N" of a running
 * session, for messages; "" when it cannot be queried. */
static void holder_info(const WCHAR *wname, char *out, size_t cap) {
  kl_etw_props *b = malloc(sizeof *b);
  kl_status *st = malloc(sizeof *st);
  out[0] = '\0';
  if (b == NULL || st == NULL) goto done;
  if (query_props(0, wname, b) != ERROR_SUCCESS) goto done;
  status_from_props(b, st);
  snprintf(out, cap,
           "it is held by another trace: file=%s, mode=%s, flags=%s, buffer_kb=%lld, "
           "buffers=%lld, events_lost=%lld, logger_thread_id=%lld;",
           st->file[0] ? st->file : "(none)", kl_mode_names[st->mode],
           st->flags[0] ? st->flags : "(none)", (long long)st->buffer_kb,
           (long long)st->buffers, (long long)st->events_lost,
           (long long)st->logger_thread_id);
done:
  free(b);
  free(st);
}

static int list_names_cb(void *ud, const kl_status *st) {
  char *out = ud;
  size_t used = strlen(out);
  if (used + strlen(st->name) + 4 < 600)
    snprintf(out + used, 600 - used, "%s'%s'", used ? ", " : "", st->name);
  return 0;
}

/* exists: 1 if path names a file; *size its size in bytes; *dir 1 for a
 * folder (dir may be NULL). */
static int file_stat(const char *op, const char *session, const char *path, kl_err *err,
                     int *exists, uint64_t *size, int *dir) {
  WCHAR w[KL_ETW_NAME_WCHARS];
  WIN32_FILE_ATTRIBUTE_DATA a;
  if (kl_etw_to_wide(path, w, KL_ETW_NAME_WCHARS, op, session, "file", err) != 0) return -1;
  *exists = GetFileAttributesExW(w, GetFileExInfoStandard, &a) != 0;
  if (size != NULL)
    *size = *exists ? ((uint64_t)a.nFileSizeHigh << 32) | a.nFileSizeLow : 0;
  if (dir != NULL) *dir = *exists && (a.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0;
  return 0;
}

/* Refuse a folder, and an existing file unless overwrite: before anything
 * changes. */
static int refuse_existing(const char *op, const char *session, const char *file, int overwrite,
                           kl_err *err) {
  int exists = 0, dir = 0;
  if (file_stat(op, session, file, err, &exists, NULL, &dir) != 0) return -1;
  if (dir)
    return kl_err_set(err, KL_E_BAD_PATH, ERROR_DIRECTORY,
                      "%s '%s': file: '%s' is a directory, not a file", op, session, file);
  if (exists && !overwrite)
    return kl_err_set(err, KL_E_ALREADY_EXISTS, ERROR_FILE_EXISTS,
                      "%s '%s': file: '%s' exists; pass overwrite = true to replace it", op,
                      session, file);
  return 0;
}

/* The destination of flush(file)/stop(file), checked before the session
 * changes: not a folder, not an existing file unless overwrite, and a file
 * this process can create there (its folder exists and is writable).  The
 * probe creates nothing that stays: a new file is deleted on close, an
 * existing one is opened without truncating. */
static int check_dest(const char *op, const char *session, const char *file, int overwrite,
                      kl_err *err) {
  WCHAR w[KL_ETW_NAME_WCHARS];
  HANDLE h;
  char detail[96];
  int exists = 0;
  if (refuse_existing(op, session, file, overwrite, err) != 0) return -1;
  if (file_stat(op, session, file, err, &exists, NULL, NULL) != 0) return -1;
  if (kl_etw_to_wide(file, w, KL_ETW_NAME_WCHARS, op, session, "file", err) != 0) return -1;
  h = CreateFileW(w, GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                  exists ? OPEN_EXISTING : CREATE_NEW,
                  FILE_ATTRIBUTE_TEMPORARY | (exists ? 0 : FILE_FLAG_DELETE_ON_CLOSE), NULL);
  if (h == INVALID_HANDLE_VALUE) {
    DWORD e = GetLastError();
    snprintf(detail, sizeof detail, "file: cannot write '%.40s%s'; the session is unchanged",
             file, strlen(file) > 40 ? "..." : "");
    return kl_etw_err(err, e, op, session, detail);
  }
  CloseHandle(h);
  return 0;
}

static int same_path(const char *a, const char *b) {
  return a && b && a[0] && _stricmp(a, b) == 0;
}

/* Copies only files ETW has closed (stop's target), never a file in use.
 * It runs after the session stopped: a failure says so, and where the data is. */
static int copy_file(const char *op, const char *session, const char *from, const char *to,
                     int overwrite, kl_err *err) {
  WCHAR wf[KL_ETW_NAME_WCHARS], wt[KL_ETW_NAME_WCHARS];
  char detail[KL_MSG_MAX / 2];
  if (kl_etw_to_wide(from, wf, KL_ETW_NAME_WCHARS, op, session, "file", err) != 0) return -1;
  if (kl_etw_to_wide(to, wt, KL_ETW_NAME_WCHARS, op, session, "file", err) != 0) return -1;
  if (!CopyFileW(wf, wt, overwrite ? FALSE : TRUE)) {
    DWORD e = GetLastError();
    snprintf(detail, sizeof detail,
             "the session is stopped and its data is in '%.150s', but it cannot be copied to "
             "'%.150s'", from, to);
    return kl_etw_err(err, e, op, session, detail);
  }
  return 0;
}

static kl_session *session_new(const char *op, const char *name, kl_err *err) {
  kl_session *s;
  if (kl_name_check(name, err) != 0) return NULL;
  s = calloc(1, sizeof *s);
  if (s == NULL) {
    kl_err_set(err, KL_E_NO_RESOURCES, ERROR_NOT_ENOUGH_MEMORY, "%s '%s': out of memory", op,
               name);
    return NULL;
  }
  snprintf(s->name, sizeof s->name, "%s", name);
  if (kl_etw_to_wide(name, s->wname, KL_ETW_NAME_WCHARS, op, name, "name", err) != 0) {
    free(s);
    return NULL;
  }
  /* "nt kernel logger" is the kernel logger too: ETW ignores case. */
  s->kernel = _wcsicmp(s->wname, KERNEL_LOGGER_NAMEW) == 0;
  if (s->kernel) s->guid = kl_etw_system_trace_guid;
  return s;
}

static int oom(kl_err *err, const char *op, const char *name) {
  return kl_err_set(err, KL_E_NO_RESOURCES, ERROR_NOT_ENOUGH_MEMORY, "%s '%s': out of memory",
                    op, name);
}

static int set_stacks(kl_session *s, uint32_t mask, kl_err *err) {
  CLASSIC_EVENT_ID ids[KL_ETW_MAX_STACK_IDS];
  ULONG n = 0, rc;
  size_t i, j;
  ZeroMemory(ids, sizeof ids);
  for (i = 0; i < sizeof stack_events / sizeof stack_events[0]; i++) {
    if ((mask & stack_events[i].bit) == 0) continue;
    for (j = 0; stack_events[i].types[j] != 0 && n < KL_ETW_MAX_STACK_IDS; j++) {
      ids[n].EventGuid = *stack_events[i].guid;
      ids[n].Type = stack_events[i].types[j];
      n++;
    }
  }
  if (n == 0) return 0;
  rc = kl_etw.TraceSetInformation(s->handle, TraceStackTracingInfo, ids,
                                  n * (ULONG)sizeof ids[0]);
  if (rc != ERROR_SUCCESS)
    return kl_etw_err(err, rc, "start", s->name,
                      "TraceSetInformation(TraceStackTracingInfo) refused the stack settings;"
                      " the session was stopped again");
  return 0;
}

/* ------------------------------------------------------------------ */
/* Ops                                                                  */
/* ------------------------------------------------------------------ */

static int etw_flag_supported(const kl_flag *f) {
  size_t i;
  if (f == NULL || f->etw_bit == 0) return 0;
  for (i = 0; i < sizeof flag_min_version / sizeof flag_min_version[0]; i++)
    if (flag_min_version[i].bit == f->etw_bit)
      return windows_at_least(flag_min_version[i].major, flag_min_version[i].minor);
  return 1;
}

static int etw_tracepoint_exists(const char *sys_event) {
  (void)sys_event;
  return 0; /* ETW has no raw tracepoints */
}

/* LogFileMode for the asked mode (StartTrace's rules: circular needs a size,
 * sequential a file; a private session adds SYSTEM_LOGGER_MODE). */
static int start_mode(const kl_config *cfg, const kl_session *s, ULONG *mode, kl_err *err) {
  switch (cfg->mode) {
    case KL_MODE_CIRCULAR:
      if (cfg->file == NULL || cfg->circular_mb == 0)
        return kl_err_set(err, KL_E_INVALID, 0,
                          "start '%s': circular mode needs a file and circular_mb > 0", s->name);
      *mode = EVENT_TRACE_FILE_MODE_CIRCULAR;
      break;
    case KL_MODE_SEQUENTIAL:
      if (cfg->file == NULL)
        return kl_err_set(err, KL_E_INVALID, 0, "start '%s': sequential mode needs a file",
                          s->name);
      *mode = EVENT_TRACE_FILE_MODE_SEQUENTIAL;
      break;
    case KL_MODE_REALTIME:
      *mode = EVENT_TRACE_REAL_TIME_MODE | (cfg->file ? EVENT_TRACE_FILE_MODE_SEQUENTIAL : 0);
      break;
    case KL_MODE_BUFFERING:
    default:
      *mode = EVENT_TRACE_BUFFERING_MODE;
      break;
  }
  if (!s->kernel) *mode |= EVENT_TRACE_SYSTEM_LOGGER_MODE;
  return 0;
}

/* Phase 1: everything that can be refused before ETW is called. */
static int start_checks(const kl_config *cfg, const kl_session *s, uint32_t *mask, ULONG *ctx,
                        ULONG *mode, kl_err *err) {
  if (!s->kernel && !windows_at_least(6, 2))
    return kl_err_set(err, KL_E_NOT_SUPPORTED, 0,
                      "start '%s': private kernel sessions (EVENT_TRACE_SYSTEM_LOGGER_MODE) "
                      "need Windows 8 or later; use the name '%s' here",
                      s->name, KL_ETW_KERNEL_LOGGER);
  if (enable_mask(cfg, "start", mask, err) != 0) return -1;
  if (clock_context(cfg->clock, s->name, ctx, err) != 0) return -1;
  if (start_mode(cfg, s, mode, err) != 0) return -1;
  if (cfg->file != NULL && refuse_existing("start", s->name, cfg->file,
                                           cfg->overwrite || cfg->mode == KL_MODE_BUFFERING,
                                           err) != 0)
    return -1;
  return 0;
}

/* Phase 2: the properties block StartTraceW reads. */
static int start_block(const kl_config *cfg, kl_session *s, kl_etw_props *b, uint32_t mask,
                       ULONG ctx, ULONG mode, kl_err *err) {
  props_init(b);
  if (cfg->file != NULL && cfg->mode != KL_MODE_BUFFERING) {
    if (kl_etw_to_wide(cfg->file, b->log_file, KL_ETW_NAME_WCHARS, "start", s->name, "file",
                       err) != 0)
      return -1;
    snprintf(s->file, sizeof s->file, "%s", cfg->file);
  } else {
    b->p.LogFileNameOffset = 0;
    if (cfg->file != NULL) snprintf(s->target, sizeof s->target, "%s", cfg->file);
  }
  /* A private system logger needs a GUID of its own. */
  if (!s->kernel && CoCreateGuid(&s->guid) != S_OK)
    return kl_err_set(err, KL_E_IO, 0, "start '%s': CoCreateGuid failed", s->name);
  b->p.Wnode.Guid = s->guid;
  b->p.Wnode.ClientContext = ctx;
  b->p.EnableFlags = mask;
  b->p.LogFileMode = mode;
  b->p.MaximumFileSize = cfg->mode == KL_MODE_CIRCULAR ? cfg->circular_mb
                         : cfg->mode == KL_MODE_SEQUENTIAL ? cfg->max_mb : 0;
  b->p.BufferSize = cfg->buffer_kb;
  b->p.MinimumBuffers = cfg->min_buffers;
  b->p.MaximumBuffers = cfg->max_buffers;
  b->p.FlushTimer = cfg->flush_timer;
  return 0;
}

/* Phase 3 (on failure): the message, with what the caller can act on. */
static void start_failed(const kl_config *cfg, const kl_session *s, const kl_etw_props *b,
                         ULONG rc, uint32_t mask, kl_err *err) {
  char extra[640];
  const char *key = "start";
  extra[0] = '\0';
  switch (rc) {
    case ERROR_ALREADY_EXISTS:
      holder_info(s->wname, extra, sizeof extra);
      if (extra[0] == '\0')
        snprintf(extra, sizeof extra, "another trace holds it (its settings cannot be read);");
      break;
    case ERROR_NO_SYSTEM_RESOURCES:
      if (kl_backend_impl.list(list_names_cb, extra, NULL) != 0 || extra[0] == '\0')
        snprintf(extra, sizeof extra, "(unknown)");
      break;
    case ERROR_BAD_PATHNAME:
      if (cfg->file != NULL) snprintf(extra, sizeof extra, "%s", cfg->file);
      else key = "start-nofile";
      break;
    case ERROR_DISK_FULL:
      if (b->p.MaximumFileSize != 0 && b->p.LogFileNameOffset != 0)
        snprintf(extra, sizeof extra, "%u", (unsigned)b->p.MaximumFileSize);
      else key = "start-nosize";
      break;
    case ERROR_INVALID_FLAGS: snprintf(extra, sizeof extra, "0x%08lx", (unsigned long)mask); break;
    case ERROR_FILE_NOT_FOUND: case ERROR_PATH_NOT_FOUND: case ERROR_INVALID_NAME:
    case ERROR_FILENAME_EXCED_RANGE: case ERROR_INVALID_HANDLE:
      /* what ETW met creating the log file */
      if (cfg->file != NULL && b->p.LogFileNameOffset != 0) {
        key = "start-file";
        snprintf(extra, sizeof extra, "%s", cfg->file);
      }
      break;
    case ERROR_BUSY: case ERROR_ACCESS_DENIED: break;
    default: {
      kl_etw_version v;
      /* Before 1703 the system loggers running at once use at most two clock
       * types; which error a third one gets is not documented. */
      if (kl_etw.get_version(&v) == 0 && (v.major < 10 || (v.major == 10 && v.build < 15063))) {
        key = "start-clock";
        snprintf(extra, sizeof extra, "this is Windows %lu.%lu build %lu; clock = '%s'",
                 v.major, v.minor, v.build,
                 cfg->clock == KL_CLOCK_DEFAULT ? "qpc" : kl_clock_names[cfg->clock]);
      }
      break;
    }
  }
  kl_etw_errx(err, rc, "start", key, s->name, extra[0] ? extra : NULL);
}

static kl_session *etw_start(const kl_config *cfg, kl_err *err) {
  kl_session *s = NULL;
  kl_etw_props *b = NULL;
  uint32_t mask = 0;
  ULONG ctx = 1, rc, mode = 0;

  if ((s = session_new("start", cfg->name, err)) == NULL) goto error;
  if (start_checks(cfg, s, &mask, &ctx, &mode, err) != 0) goto error;
  if ((b = malloc(sizeof *b)) == NULL) {
    oom(err, "start", s->name);
    goto error;
  }
  if (start_block(cfg, s, b, mask, ctx, mode, err) != 0) goto error;
  rc = kl_etw.StartTraceW(&s->handle, s->wname, &b->p);
  if (rc != ERROR_SUCCESS) {
    start_failed(cfg, s, b, rc, mask, err);
    goto error;
  }
  if (cfg->stacks && set_stacks(s, mask, err) != 0) {
    props_for(b, s->wname);
    (void)kl_etw.ControlTraceW(s->handle, s->wname, &b->p, EVENT_TRACE_CONTROL_STOP);
    goto error;
  }
  s->started = 1;
  s->mode = cfg->mode;
  s->realtime = cfg->mode == KL_MODE_REALTIME;
  s->max_mb = cfg->mode == KL_MODE_SEQUENTIAL ? cfg->max_mb : 0;
  s->buffer_kb = cfg->buffer_kb;
  /* This session, not a later one of its name: the handle StartTrace gave,
   * our own GUID (private sessions), the clock; the rest at the first QUERY. */
  s->id.handle = s->handle;
  s->id.guid = s->guid;
  s->id.check_guid = !s->kernel;
  s->id.clock = ctx;
  ours_set(s, 1);
  free(b);
  return s;

error:
  free(b);
  free(s);
  return NULL;
}

static kl_session *etw_open(const char *name, kl_err *err) {
  kl_session *s = NULL;
  kl_etw_props *b = NULL;
  kl_status *st = NULL;
  ULONG rc;
  if ((s = session_new("open", name, err)) == NULL) goto error;
  b = malloc(sizeof *b);
  st = malloc(sizeof *st);
  if (b == NULL || st == NULL) {
    oom(err, "open", name);
    goto error;
  }
  rc = query_props(0, s->wname, b);
  if (rc != ERROR_SUCCESS) {
    kl_etw_err(err, rc, "open", name,
               rc == ERROR_MORE_DATA ? "QUERY answered ERROR_MORE_DATA: the session's "
                                       "properties do not fit the block" : NULL);
    goto error;
  }
  status_from_props(b, st);
  s->mode = st->mode;
  s->realtime = (b->p.LogFileMode & EVENT_TRACE_REAL_TIME_MODE) != 0;
  if (!s->kernel) s->guid = b->p.Wnode.Guid;
  snprintf(s->file, sizeof s->file, "%s", st->file);
  /* The session found now, not a later one of its name. */
  s->id.guid = b->p.Wnode.Guid;
  s->id.check_guid = !s->kernel;
  ident_seen(&s->id, b);
  free(b);
  free(st);
  return s;
error:
  free(b);
  free(st);
  free(s);
  return NULL;
}

/* An owned sequential session that ETW ended itself because its file
 * reached MaximumFileSize (the documented end of sequential mode): the
 * file is there and within one buffer of the limit (1 MB when ETW picked
 * the buffer size; never more than half the limit). */
static int ended_full(const kl_session *s) {
  int exists = 0;
  uint64_t size = 0, limit, slack;
  kl_err ignored;
  if (!s->started || s->max_mb == 0 || s->file[0] == '\0') return 0;
  if (file_stat("query", s->name, s->file, &ignored, &exists, &size, NULL) != 0 || !exists)
    return 0;
  limit = (uint64_t)s->max_mb << 20;
  slack = (uint64_t)(s->buffer_kb ? s->buffer_kb : 1024) << 10;
  if (slack > limit / 2) slack = limit / 2;
  return size + slack >= limit;
}

/* The status of a session ETW ended when its file was full. */
static void full_status(const kl_session *s, kl_status *st) {
  kl_status_init(st);
  snprintf(st->name, sizeof st->name, "%s", s->name);
  snprintf(st->file, sizeof st->file, "%s", s->file);
  st->mode = KL_MODE_SEQUENTIAL;
  st->max_file_mb = s->max_mb;
  st->file_full = 1;
}

/* Not a Win32 error (bit 29: application-defined): QUERY found a session of
 * this name, but not the one this handle controls. */
#define KL_ETW_NOT_OURS 0x20000001UL

/* QUERY the session s controls and check that it is still that session
 * (s->id), not another tool's that took the name after it ended.  Returns
 * ERROR_SUCCESS, QUERY's error (ERROR_MORE_DATA included: the block is
 * incomplete) or KL_ETW_NOT_OURS.  Every control call starts with it. */
static ULONG query_checked(kl_session *s, kl_etw_props *b) {
  ULONG rc = query_props(s->handle, s->wname, b);
  if (rc != ERROR_SUCCESS) return rc;
  if (!ident_match(&s->id, s->file, b)) {
    /* Another handle of this process may have moved it to a new file. */
    int i = ours_find(s->name);
    if (!s->started || i < 0 || !ident_match(&s->id, ours[i].file, b)) return KL_ETW_NOT_OURS;
    snprintf(s->file, sizeof s->file, "%s", ours[i].file);
  }
  ident_seen(&s->id, b);
  if (s->started) ours_set(s, 1);
  return ERROR_SUCCESS;
}

/* err for a failed query_checked in op. */
static int checked_err(const kl_session *s, ULONG rc, const char *op, kl_err *err) {
  if (rc == KL_ETW_NOT_OURS)
    return kl_err_set(err, KL_E_NOT_FOUND, ERROR_WMI_INSTANCE_NOT_FOUND,
                      "%s '%s': the session was stopped by someone else; '%s' now belongs to "
                      "another tool, which is left alone", op, s->name, s->name);
  return kl_etw_err(err, rc, op, s->name,
                    rc == ERROR_MORE_DATA ? "QUERY answered ERROR_MORE_DATA: the session's "
                                            "properties do not fit the block" : NULL);
}

/* A checked QUERY for op into a new block (*out, freed by the caller);
 * 0, or -1 with err.  *full: s ended because its sequential file filled up. */
static int checked_block(kl_session *s, const char *op, kl_etw_props **out, int *full,
                         kl_err *err) {
  ULONG rc;
  *full = 0;
  if ((*out = malloc(sizeof **out)) == NULL) return oom(err, op, s->name);
  rc = query_checked(s, *out);
  if (rc == ERROR_SUCCESS) return 0;
  if ((rc == ERROR_WMI_INSTANCE_NOT_FOUND || rc == KL_ETW_NOT_OURS) && ended_full(s)) {
    *full = 1;
    return 0;
  }
  return checked_err(s, rc, op, err);
}

static int etw_query(kl_session *s, kl_status *st, kl_err *err) {
  kl_etw_props *b = NULL;
  int full, ret = -1;
  if (checked_block(s, "query", &b, &full, err) != 0) goto done;
  if (full) {
    full_status(s, st);
  } else {
    status_from_props(b, st);
    if (st->name[0] == '\0') snprintf(st->name, sizeof st->name, "%s", s->name);
    if (s->started) st->foreign = 0;
  }
  ret = 0;
done:
  free(b);
  return ret;
}

/* A session that ended when its file filled up cannot be changed. */
static int full_err(const kl_session *s, const char *op, kl_err *err) {
  return kl_etw_err(err, ERROR_WMI_INSTANCE_NOT_FOUND, op, s->name,
                    "ETW ended the session when its sequential file reached max_mb; the data "
                    "is in that file");
}

/* Switch the session's log file with UPDATE (keeps everything else). */
static int switch_file(kl_session *s, const char *op, const char *file, kl_err *err) {
  kl_etw_props *b = NULL;
  ULONG rc;
  int ret = -1, full, mine;
  if (checked_block(s, op, &b, &full, err) != 0) goto done;
  if (full) {
    full_err(s, op, err);
    goto done;
  }
  mine = s->started || ours_has(s->name, b); /* before UPDATE rewrites b */
  props_for_update(s, b, s->realtime);
  if (kl_etw_to_wide(file, b->log_file, KL_ETW_NAME_WCHARS, op, s->name, "file", err) != 0)
    goto done;
  b->p.LogFileNameOffset = (ULONG)offsetof(kl_etw_props, log_file);
  rc = kl_etw.ControlTraceW(s->handle, s->wname, &b->p, EVENT_TRACE_CONTROL_UPDATE);
  if (rc != ERROR_SUCCESS) {
    kl_etw_err(err, rc, op, s->name, "cannot switch the log file");
    goto done;
  }
  snprintf(s->file, sizeof s->file, "%s", file);
  if (s->mode == KL_MODE_BUFFERING) s->mode = KL_MODE_SEQUENTIAL;
  if (mine) ours_set(s, 1);
  ret = 0;
done:
  free(b);
  return ret;
}

static const struct {
  unsigned bit;
  const char *field;
} fixed_fields[] = {
  {KL_UPD_CIRCULAR_MB, "circular_mb"},
  {KL_UPD_MAX_MB, "max_mb"},
  {KL_UPD_BUFFER_KB, "buffer_kb"},
  {KL_UPD_MIN_BUFFERS, "min_buffers"},
  {KL_UPD_CLOCK, "clock"},
};

/* What update refuses before ETW is called. */
static int update_checks(const kl_session *s, const kl_config *cfg, unsigned what,
                         uint32_t *mask, kl_err *err) {
  size_t i;
  int rt_on = (what & KL_UPD_REALTIME) && cfg->mode == KL_MODE_REALTIME;
  int rt_off = (what & KL_UPD_REALTIME) && cfg->mode != KL_MODE_REALTIME;
  int gets_file = s->file[0] != '\0' || (what & KL_UPD_FILE);
  for (i = 0; i < sizeof fixed_fields / sizeof fixed_fields[0]; i++)
    if (what & fixed_fields[i].bit)
      return kl_err_set(err, KL_E_INVALID, 0,
                        "update '%s': Windows cannot change %s of a running session (it can "
                        "change flags, file, max_buffers, flush_timer and realtime)",
                        s->name, fixed_fields[i].field);
  if ((what & KL_UPD_FLAGS) && enable_mask(cfg, "update", mask, err) != 0) return -1;
  if ((what & KL_UPD_FILE) && (cfg->file == NULL || cfg->file[0] == '\0'))
    return kl_err_set(err, KL_E_INVALID, 0,
                      "update '%s': a running session can switch to another file, not drop it",
                      s->name);
  /* LogFileMode: real time off with no file and no buffering leaves ETW no
   * destination; BUFFERING_MODE cannot be combined with real time. */
  if (rt_off && !gets_file && s->mode != KL_MODE_BUFFERING)
    return kl_err_set(err, KL_E_INVALID, 0,
                      "update '%s': realtime = false on a session without a file: the session "
                      "would have nowhere to log (give file = ... in the same update, or stop "
                      "it)", s->name);
  if (rt_on && s->mode == KL_MODE_BUFFERING && !gets_file)
    return kl_err_set(err, KL_E_INVALID, 0,
                      "update '%s': realtime = true: ETW cannot add real time to a buffering "
                      "session (EVENT_TRACE_BUFFERING_MODE); start it with realtime = true",
                      s->name);
  return 0;
}

/* What update checks against the queried session before ETW is called. */
static int update_checks_queried(const kl_session *s, const kl_config *cfg, unsigned what,
                                 const kl_etw_props *b, const char *cur, kl_err *err) {
  if ((what & KL_UPD_MAX_BUFFERS) && cfg->max_buffers != 0 &&
      cfg->max_buffers < b->p.MinimumBuffers)
    return kl_err_set(err, KL_E_INVALID, 0,
                      "update '%s': max_buffers = %u is below the session's min_buffers (%lu), "
                      "which cannot change", s->name, (unsigned)cfg->max_buffers,
                      (unsigned long)b->p.MinimumBuffers);
  if ((what & KL_UPD_FILE) && same_path(cur, cfg->file))
    return kl_err_set(err, KL_E_INVALID, 0,
                      "update '%s': file: the session already writes '%s'; ETW switches only "
                      "to a new file", s->name, cfg->file);
  return 0;
}

static int etw_update(kl_session *s, const kl_config *cfg, unsigned what, kl_err *err) {
  kl_etw_props *b = NULL;
  uint32_t mask = 0;
  ULONG rc;
  int ret = -1, realtime = s->realtime, full, mine;
  char cur[KL_PATH_MAX];

  if (update_checks(s, cfg, what, &mask, err) != 0) return -1;
  if (checked_block(s, "update", &b, &full, err) != 0) goto done;
  if (full) {
    full_err(s, "update", err);
    goto done;
  }
  mine = s->started || ours_has(s->name, b); /* before UPDATE rewrites b */
  kl_etw_to_utf8(props_wstr(b, b->p.LogFileNameOffset), cur, sizeof cur);
  if (update_checks_queried(s, cfg, what, b, cur, err) != 0) goto done;
  if ((what & KL_UPD_FILE) && check_dest("update", s->name, cfg->file, cfg->overwrite, err) != 0)
    goto done;
  if (what & KL_UPD_REALTIME) realtime = cfg->mode == KL_MODE_REALTIME;
  props_for_update(s, b, realtime);
  if (what & KL_UPD_FILE) {
    if (kl_etw_to_wide(cfg->file, b->log_file, KL_ETW_NAME_WCHARS, "update", s->name, "file",
                       err) != 0)
      goto done;
    b->p.LogFileNameOffset = (ULONG)offsetof(kl_etw_props, log_file);
  }
  if (what & KL_UPD_FLAGS) b->p.EnableFlags = mask;
  if (what & KL_UPD_MAX_BUFFERS) b->p.MaximumBuffers = cfg->max_buffers;
  if (what & KL_UPD_FLUSH_TIMER) b->p.FlushTimer = cfg->flush_timer;
  rc = kl_etw.ControlTraceW(s->handle, s->wname, &b->p, EVENT_TRACE_CONTROL_UPDATE);
  if (rc != ERROR_SUCCESS) {
    kl_etw_err(err, rc, "update", s->name,
               (what & KL_UPD_FILE) ? "ETW refused the update (file named: a new file)" : NULL);
    goto done;
  }
  if (what & KL_UPD_FILE) snprintf(s->file, sizeof s->file, "%s", cfg->file);
  if (!realtime) kl_etw_live_close(s); /* nothing more will come */
  s->realtime = realtime;
  if (what & KL_UPD_REALTIME) s->mode = realtime || s->file[0] == '\0' ? cfg->mode
                                        : KL_MODE_SEQUENTIAL;
  if (mine) ours_set(s, 1);
  ret = 0;
done:
  free(b);
  return ret;
}

/* flush(file): a session that writes its own file moves on to `file`
 * (UPDATE with a new LogFileName, then FLUSH): its old file is closed and
 * complete, the new one receives what follows.  A buffering session writes
 * its buffers to `file` the same way.  No file the kernel holds is copied. */
static int etw_flush(kl_session *s, const char *file, int overwrite, kl_err *err) {
  kl_etw_props *b = NULL;
  ULONG rc;
  int ret = -1, full;
  if (file == NULL && s->file[0] == '\0' && s->target[0] != '\0') file = s->target;
  if (file != NULL && same_path(file, s->file)) file = NULL;
  if (file != NULL) {
    if (check_dest("flush", s->name, file, overwrite, err) != 0) return -1;
    if (switch_file(s, "flush", file, err) != 0) return -1;
  }
  if (checked_block(s, "flush", &b, &full, err) != 0) goto done;
  if (full) {
    full_err(s, "flush", err);
    goto done;
  }
  props_for(b, s->wname);
  rc = kl_etw.ControlTraceW(s->handle, s->wname, &b->p, EVENT_TRACE_CONTROL_FLUSH);
  if (rc != ERROR_SUCCESS) {
    kl_etw_err(err, rc, "flush", s->name, NULL);
    goto done;
  }
  ret = 0;
done:
  free(b);
  return ret;
}

/* The session ended before stop (ETW ended a full sequential file): the
 * handle is done with, the status says why. */
static int stop_ended(kl_session *s, const char *file, int overwrite, kl_status *st,
                      kl_err *err) {
  kl_status tmp;
  ours_set(s, 0);
  s->handle = 0;
  full_status(s, st != NULL ? st : &tmp);
  if (file != NULL && !same_path(file, s->file) &&
      copy_file("stop", s->name, s->file, file, overwrite, err) != 0) {
    err->stopped = 1;
    return -1;
  }
  return 0;
}

/* Phase 1 of stop: the file argument, the destination checked, a buffering
 * session given its file, and the checked QUERY.  1: ended full (done). */
static int stop_prepare(kl_session *s, const char **file, int overwrite, kl_status *st,
                        int *foreign, kl_err *err) {
  kl_etw_props *b = NULL;
  int full, ret = -1;
  if (*file != NULL && (*file)[0] == '\0') {
    *file = NULL; /* "": write no file (ETW's own file, if any, stays as it is) */
  } else if (*file == NULL && s->file[0] == '\0' && s->target[0] != '\0') {
    *file = s->target;
  }
  /* Refuse before stopping: a failed file write leaves the session running. */
  if (*file != NULL && !same_path(*file, s->file) &&
      check_dest("stop", s->name, *file, overwrite, err) != 0)
    return -1;
  if (checked_block(s, "stop", &b, &full, err) != 0) {
    /* Gone, or the name is another tool's now: this handle's session is over. */
    if (err->code == KL_E_NOT_FOUND) err->stopped = 1;
    goto done;
  }
  if (full) {
    ret = stop_ended(s, *file, overwrite, st, err) == 0 ? 1 : -1;
    goto done;
  }
  *foreign = !s->started && !ours_has(s->name, b);
  if (*file != NULL && s->file[0] == '\0' && switch_file(s, "stop", *file, err) != 0) goto done;
  ret = 0;
done:
  free(b);
  return ret;
}

static int etw_stop(kl_session *s, const char *file, int overwrite, kl_status *st,
                    kl_err *err) {
  kl_etw_props *b = NULL;
  ULONG rc;
  int ret = -1, foreign = 1, prep;
  if ((prep = stop_prepare(s, &file, overwrite, st, &foreign, err)) != 0)
    return prep > 0 ? 0 : -1;
  kl_etw_live_close(s); /* the readers end first */
  if ((b = malloc(sizeof *b)) == NULL) return oom(err, "stop", s->name);
  props_for(b, s->wname);
  rc = kl_etw.ControlTraceW(s->handle, s->wname, &b->p, EVENT_TRACE_CONTROL_STOP);
  props_terminate(b);
  /* ERROR_MORE_DATA: the block was too small for the names, but the
   * session is stopped all the same. */
  if (rc != ERROR_SUCCESS && rc != ERROR_MORE_DATA) {
    kl_etw_err(err, rc, "stop", s->name, NULL);
    goto done;
  }
  ours_set(s, 0);
  if (st != NULL) {
    status_from_props(b, st);
    if (st->name[0] == '\0') snprintf(st->name, sizeof st->name, "%s", s->name);
    if (st->file[0] == '\0') snprintf(st->file, sizeof st->file, "%s", s->file);
    st->foreign = foreign;
  }
  s->handle = 0;
  s->stopped = 1;
  /* ETW has closed the file now: a copy of it is complete. */
  if (file != NULL && s->file[0] != '\0' && !same_path(file, s->file) &&
      copy_file("stop", s->name, s->file, file, overwrite, err) != 0) {
    err->stopped = 1;
    goto done;
  }
  ret = 0;
done:
  free(b);
  return ret;
}

static void etw_release(kl_session *s) {
  kl_etw_live_close(s);
  free(s);
}

static int etw_list(kl_list_cb cb, void *ud, kl_err *err) {
  kl_etw_props *blocks = NULL;
  PEVENT_TRACE_PROPERTIES *ptrs = NULL;
  kl_status *st = NULL;
  ULONG cap = 16, n = 0, rc = ERROR_MORE_DATA, i;
  int tries, ret = -1;

  st = malloc(sizeof *st);
  if (st == NULL) goto oom;
  for (tries = 0; tries < 4 && rc == ERROR_MORE_DATA; tries++) {
    free(blocks);
    free(ptrs);
    blocks = malloc(cap * sizeof *blocks);
    ptrs = malloc(cap * sizeof *ptrs);
    if (blocks == NULL || ptrs == NULL) goto oom;
    for (i = 0; i < cap; i++) {
      props_init(&blocks[i]);
      ptrs[i] = &blocks[i].p;
    }
    n = 0;
    rc = kl_etw.QueryAllTracesW(ptrs, cap, &n);
    if (rc == ERROR_MORE_DATA) {
      /* More sessions than blocks: grow (ETW takes at most 64) and retry. */
      if (cap >= KL_ETW_MAX_LOGGERS) {
        rc = ERROR_SUCCESS; /* the first 64 are filled: report those */
        n = cap;
        break;
      }
      cap = n > cap ? n : cap * 2;
      if (cap > KL_ETW_MAX_LOGGERS) cap = KL_ETW_MAX_LOGGERS;
    }
  }
  if (rc != ERROR_SUCCESS) {
    kl_etw_err(err, rc, "sessions", "*", "QueryAllTracesW failed");
    goto done;
  }
  if (n > cap) n = cap;
  for (i = 0; i < n; i++) {
    props_terminate(&blocks[i]);
    status_from_props(&blocks[i], st);
    if (cb(ud, st) != 0) break;
  }
  ret = 0;
  goto done;
oom:
  kl_err_set(err, KL_E_NO_RESOURCES, ERROR_NOT_ENOUGH_MEMORY, "sessions: out of memory");
done:
  free(blocks);
  free(ptrs);
  free(st);
  return ret;
}

const kl_backend kl_backend_impl = {
  "windows",
  KL_ETW_KERNEL_LOGGER,
  0,
  etw_flag_supported,
  etw_tracepoint_exists,
  etw_start,
  etw_open,
  etw_query,
  etw_update,
  etw_flush,
  etw_stop,
  etw_release,
  etw_list,
  kl_etw_trace_open,
  kl_etw_trace_info,
  kl_etw_trace_next,
  kl_etw_trace_close,
  kl_etw_live_next,
};
