/*
 * etwsim.c - the ETW contract simulator.
 *
 * It keeps a table of running loggers and answers StartTraceW,
 * ControlTraceW, QueryAllTracesW and TraceSetInformation the way Windows is
 * documented to (docs/windows.md, "How it is tested without Windows"): the
 * StartTrace error table from Wine's conformance tests, one NT Kernel Logger
 * (names compare case-insensitively), 64 loggers of which 8 system loggers
 * (two slots kept for the NT Kernel Logger and the Circular Kernel Context
 * Logger), Wnode.Flags = WNODE_FLAG_TRACED_GUID on every block that carries
 * settings, EXTENSION flags that must point at extension data, UPDATE's
 * allowed fields and its LogFileMode encoding (0 turns real time off, a
 * non-zero value is OR'd into the modes), QUERY answers that rewrite the
 * Wnode header, QUERY counters that move, a sequential session that ends
 * when its file reaches MaximumFileSize, a playback file for a real-time
 * session without consumer, ERROR_WMI_INSTANCE_NOT_FOUND, ERROR_MORE_DATA
 * when a block is too small (STOP stops anyway), ERROR_ACTIVE_CONNECTIONS
 * while stopping, a file written at the path in the block, and real-time
 * buffers handed to consumers (etwsim_rt.c).
 *
 * The files it writes are its own format (not .etl): "ETWSIM01", then one
 * fixed record per simulated event.  Its OpenTraceW/ProcessTrace/Tdh*
 * read them back as EVENT_RECORDs, so the backend's reader runs unchanged.
 */
#define ETWSIM_BUILD
#include "etwsim_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

sim_state sim;

static const GUID kernel_guid = {
  0x9e814aad, 0x3204, 0x11d2, {0x9a, 0x82, 0x00, 0x60, 0x08, 0xa8, 0x69, 0x39}};
#define SIM_MAGIC "ETWSIM01"
#define SIM_FILE_HEADER 16  /* magic + u32 ncpus + u32 pointer size */

void etwsim_reset(void) {
  size_t i;
  etwsim_rt_reset();
  for (i = 0; i < SIM_MAX_LOGGERS; i++) {
    if (sim.loggers[i].used && sim.loggers[i].fh != INVALID_HANDLE_VALUE)
      CloseHandle(sim.loggers[i].fh);
    free(sim.loggers[i].playback);
  }
  ZeroMemory(&sim, sizeof sim);
  for (i = 0; i < SIM_MAX_LOGGERS; i++) sim.loggers[i].fh = INVALID_HANDLE_VALUE;
  sim.admin = 1;
  sim.major = 10;
  sim.minor = 0;
  sim.build = 19045;
  sim.disk_free_mb = 100000;
  sim.next_handle = 0x100;
  sim.next_thread = 0x1000;
  sim.ncpus = 4;
  sim.rt_queue_max = SIM_RT_QUEUE;
  sim.playback_max = SIM_PLAYBACK;
  wcscpy(sim.command_line, L"sim.exe --simulated");
  sim.initialised = 1;
}

static void ensure_init(void) {
  if (!sim.initialised) etwsim_reset();
}

void etwsim_version(unsigned long *major, unsigned long *minor, unsigned long *build) {
  ensure_init();
  *major = sim.major;
  *minor = sim.minor;
  *build = sim.build;
}

int etwsim_win8(void) {
  return sim.major > 6 || (sim.major == 6 && sim.minor >= 2);
}

/* An injected failure for op, consumed once; 0 if none. */
ULONG etwsim_take_failure(const char *op) {
  size_t i;
  for (i = 0; i < SIM_MAX_FAILS; i++) {
    if (sim.fails[i].code != 0 && strcmp(sim.fails[i].op, op) == 0) {
      ULONG c = sim.fails[i].code;
      sim.fails[i].code = 0;
      sim.fails[i].op[0] = '\0';
      return c;
    }
  }
  return 0;
}

sim_logger *etwsim_find_name(const WCHAR *name) {
  size_t i;
  if (name == NULL) return NULL;
  for (i = 0; i < SIM_MAX_LOGGERS; i++)
    if (sim.loggers[i].used && _wcsicmp(sim.loggers[i].name, name) == 0) return &sim.loggers[i];
  return NULL;
}

static sim_logger *find_handle(TRACEHANDLE h) {
  size_t i;
  for (i = 0; i < SIM_MAX_LOGGERS; i++)
    if (sim.loggers[i].used && sim.loggers[i].handle == h) return &sim.loggers[i];
  return NULL;
}

static sim_logger *find_file(const WCHAR *file) {
  size_t i;
  if (file == NULL || file[0] == 0) return NULL;
  for (i = 0; i < SIM_MAX_LOGGERS; i++)
    if (sim.loggers[i].used && _wcsicmp(sim.loggers[i].file, file) == 0) return &sim.loggers[i];
  return NULL;
}

static int is_kernel_name(const WCHAR *n) {
  return _wcsicmp(n, KERNEL_LOGGER_NAMEW) == 0;
}

static int is_reserved_system_name(const WCHAR *n) {
  return is_kernel_name(n) || _wcsicmp(n, L"Circular Kernel Context Logger") == 0;
}

size_t etwsim_count(int private_system_only) {
  size_t i, n = 0;
  for (i = 0; i < SIM_MAX_LOGGERS; i++) {
    const sim_logger *l = &sim.loggers[i];
    if (!l->used) continue;
    if (private_system_only && !(l->system && !is_reserved_system_name(l->name))) continue;
    n++;
  }
  return n;
}

/* A NUL-terminated WCHAR string at off inside a block of size bytes. */
static const WCHAR *block_wstr(const EVENT_TRACE_PROPERTIES *p, ULONG off, ULONG size) {
  const WCHAR *w;
  ULONG i, n;
  if (off == 0 || off >= size || off % sizeof(WCHAR) != 0) return NULL;
  w = (const WCHAR *)((const char *)p + off);
  n = (size - off) / sizeof(WCHAR);
  for (i = 0; i < n; i++)
    if (w[i] == 0) return w;
  return NULL;
}

static int flags_supported(ULONG flags) {
  if (!etwsim_win8() && (flags & (0x00008000u | 0x10000000u))) return 0; /* VAMAP, NO_SYSCONFIG */
  if (sim.major < 10 && (flags & 0x00080000u)) return 0;                  /* JOB */
  if ((sim.major < 6 || (sim.major == 6 && sim.minor < 1)) && (flags & (0x00000800u | 0x00004000u)))
    return 0; /* DISPATCHER, VIRTUAL_ALLOC */
  return 1;
}

/* EVENT_TRACE_FLAG_EXTENSION turns EnableFlags into a TRACE_ENABLE_FLAG_EXTENSION
 * (evntrace.h): Offset (low 16 bits, bytes from the start of the block) and
 * Length (next 8 bits, in ULONGs) of a flag array after the structure; a zero
 * offset or length, or an array outside the block, is invalid. */
static int extension_ok(const EVENT_TRACE_PROPERTIES *p) {
  ULONG off, len;
  if (!(p->EnableFlags & EVENT_TRACE_FLAG_EXTENSION)) return 1;
  off = p->EnableFlags & 0xFFFFu;
  len = (p->EnableFlags >> 16) & 0xFFu;
  if (off == 0 || len == 0 || off < sizeof *p) return 0;
  return off + len * sizeof(ULONG) <= p->Wnode.BufferSize;
}

/* ---- the simulated file ---- */

static ULONG file_open(sim_logger *l, const WCHAR *path, ULONG mode) {
  HANDLE fh;
  DWORD disp = (mode & EVENT_TRACE_FILE_MODE_APPEND) ? OPEN_ALWAYS : CREATE_ALWAYS;
  char hdr[SIM_FILE_HEADER];
  DWORD wrote = 0;
  LARGE_INTEGER size;
  uint32_t v;
  fh = CreateFileW(path, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL,
                   disp, FILE_ATTRIBUTE_NORMAL, NULL);
  if (fh == INVALID_HANDLE_VALUE) return GetLastError();
  if (!GetFileSizeEx(fh, &size)) size.QuadPart = 0;
  if (size.QuadPart == 0) {
    memcpy(hdr, SIM_MAGIC, 8);
    v = sim.ncpus;
    memcpy(hdr + 8, &v, 4);
    v = 8;
    memcpy(hdr + 12, &v, 4);
    if (!WriteFile(fh, hdr, sizeof hdr, &wrote, NULL) || wrote != sizeof hdr) {
      DWORD e = GetLastError();
      CloseHandle(fh);
      return e ? e : ERROR_WRITE_FAULT;
    }
  } else {
    SetFilePointer(fh, 0, NULL, FILE_END);
  }
  if (l->fh != INVALID_HANDLE_VALUE) CloseHandle(l->fh);
  l->fh = fh;
  wcsncpy(l->file, path, SIM_NAME_WCHARS - 1);
  l->file[SIM_NAME_WCHARS - 1] = 0;
  return ERROR_SUCCESS;
}

/* The records of one buffer: one per enabled flag bit. */
static unsigned make_records(sim_logger *l, sim_record r[32]) {
  unsigned bit, n = 0;
  FILETIME ft;
  GetSystemTimeAsFileTime(&ft);
  for (bit = 0; bit < 32; bit++) {
    if (!(l->enable_flags & (1u << bit))) continue;
    ZeroMemory(&r[n], sizeof r[n]);
    r[n].time = (((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime) + l->seq;
    r[n].pid = GetCurrentProcessId();
    r[n].cpu = (uint16_t)(l->seq % sim.ncpus);
    r[n].opcode = (uint8_t)bit;
    r[n].flags = l->stack_ids > 0 ? SIM_REC_STACK : 0;
    r[n].value = l->seq;
    l->seq++;
    n++;
  }
  return n;
}

static void write_records(sim_logger *l, const sim_record *r, unsigned n) {
  DWORD wrote = 0;
  LARGE_INTEGER pos;
  if (l->fh == INVALID_HANDLE_VALUE || n == 0) return;
  pos.QuadPart = 0;
  SetFilePointerEx(l->fh, pos, &pos, FILE_CURRENT);
  if (l->max_file_mb != 0 &&
      (uint64_t)pos.QuadPart + n * sizeof r[0] > (uint64_t)l->max_file_mb * 1024 * 1024) {
    if (l->mode & EVENT_TRACE_FILE_MODE_CIRCULAR) {
      /* Circular: wrap to just after the header; newest events kept. */
      pos.QuadPart = SIM_FILE_HEADER;
      SetFilePointerEx(l->fh, pos, NULL, FILE_BEGIN);
      SetEndOfFile(l->fh);
    } else {
      /* Sequential: "stops when the file reaches its maximum size". */
      l->full = 1;
      return;
    }
  }
  if (!WriteFile(l->fh, r, n * (DWORD)sizeof r[0], &wrote, NULL)) l->log_buffers_lost++;
}

static void logger_remove(sim_logger *l);

/* Real time with no consumer: ETW keeps the events in a playback file of
 * limited size, delivered to the first consumer before anything new. */
static int playback(sim_logger *l, const sim_record *r, unsigned n) {
  if (l->playback == NULL) {
    if ((l->playback = malloc(sim.playback_max * sizeof *r)) == NULL) return 0;
    l->playback_cap = sim.playback_max;
  }
  if (l->playback_n + n > l->playback_cap) return 0;
  memcpy(l->playback + l->playback_n, r, n * sizeof *r);
  l->playback_n += n;
  return 1;
}

static void tick_one(sim_logger *l) {
  sim_record r[32];
  unsigned n;
  if (l->mode & (EVENT_TRACE_BUFFERING_MODE)) {
    /* In memory only: once the ring is full, older buffers are reused. */
    l->buffers_written++;
    if (l->free_buffers > 0) l->free_buffers--;
    return;
  }
  n = make_records(l, r);
  if (l->mode & EVENT_TRACE_REAL_TIME_MODE) {
    int dropped = 0;
    if (etwsim_rt_deliver(l->handle, r, n, &dropped) == 0 && !playback(l, r, n)) {
      /* The playback file is full: "no new events are logged". */
      l->events_lost += n;
      return;
    }
    l->realtime_buffers_lost += (ULONG)dropped;
  }
  l->buffers_written++;
  write_records(l, r, n);
}

void etwsim_tick(sim_logger *l, unsigned n) {
  unsigned i;
  for (i = 0; i < n && l->used; i++) {
    tick_one(l);
    if (l->full) logger_remove(l); /* ETW ends a full sequential session */
  }
}

/* Fill a caller's block from a logger; ERROR_MORE_DATA when a name does not
 * fit (the fixed part is filled all the same). */
static ULONG fill_props(const sim_logger *l, PEVENT_TRACE_PROPERTIES p) {
  ULONG size = p->Wnode.BufferSize, rc = ERROR_SUCCESS;
  ULONG noff = p->LoggerNameOffset, foff = p->LogFileNameOffset;
  size_t nlen = (wcslen(l->name) + 1) * sizeof(WCHAR);
  size_t flen = (wcslen(l->file) + 1) * sizeof(WCHAR);
  p->Wnode.Guid = l->guid;
  p->Wnode.HistoricalContext = l->handle;
  p->Wnode.ClientContext = l->clock;
  p->BufferSize = l->buffer_kb;
  p->MinimumBuffers = l->min_buffers;
  p->MaximumBuffers = l->max_buffers;
  p->MaximumFileSize = l->max_file_mb;
  p->LogFileMode = l->mode;
  p->FlushTimer = l->flush_timer;
  p->EnableFlags = l->enable_flags;
  p->AgeLimit = 0;
  p->NumberOfBuffers = l->min_buffers + (l->buffers_written > 0 ? 1 : 0);
  p->FreeBuffers = l->free_buffers;
  p->EventsLost = l->events_lost;
  p->BuffersWritten = l->buffers_written;
  p->LogBuffersLost = l->log_buffers_lost;
  p->RealTimeBuffersLost = l->realtime_buffers_lost;
  p->LoggerThreadId = (HANDLE)(ULONG_PTR)l->thread_id;
  if (noff >= sizeof *p && noff < size) {
    if (noff + nlen <= size) memcpy((char *)p + noff, l->name, nlen);
    else rc = ERROR_MORE_DATA;
  }
  if (foff >= sizeof *p && foff < size) {
    if (foff + flen <= size) memcpy((char *)p + foff, l->file, flen);
    else rc = ERROR_MORE_DATA;
  }
  /* The answer is a WNODE of its own: the header says how much was filled,
   * not what the caller sent (the block is [in, out]). */
  p->Wnode.Flags = WNODE_FLAG_ALL_DATA;
  if (rc == ERROR_SUCCESS) {
    ULONG used = (ULONG)sizeof *p;
    if (noff >= sizeof *p && noff + nlen <= size && noff + nlen > used) used = (ULONG)(noff + nlen);
    if (foff >= sizeof *p && foff + flen <= size && foff + flen > used) used = (ULONG)(foff + flen);
    p->Wnode.BufferSize = used;
  }
  return rc;
}

/* ------------------------------------------------------------------ */

/* StartTrace's checks of the block itself; *file: the log file or NULL. */
static ULONG start_block_ok(LPCWSTR name, const EVENT_TRACE_PROPERTIES *p, const WCHAR **file) {
  ULONG size = p->Wnode.BufferSize;
  size_t nlen;
  *file = NULL;
  if (size == 0 || size < sizeof *p) return ERROR_BAD_LENGTH;
  if (!(p->Wnode.Flags & WNODE_FLAG_TRACED_GUID)) return ERROR_INVALID_PARAMETER;
  if (!extension_ok(p)) return ERROR_INVALID_PARAMETER;
  if ((p->LoggerNameOffset != 0 && p->LoggerNameOffset < sizeof *p) ||
      (p->LogFileNameOffset != 0 && p->LogFileNameOffset < sizeof *p))
    return ERROR_INVALID_PARAMETER;
  /* ETW copies the name into the block: it must fit at LoggerNameOffset. */
  nlen = (wcslen(name) + 1) * sizeof(WCHAR);
  if (wcslen(name) >= SIM_NAME_WCHARS || p->LoggerNameOffset == 0 ||
      p->LoggerNameOffset + nlen > size)
    return ERROR_BAD_LENGTH;
  if (p->LogFileNameOffset != 0) {
    *file = block_wstr(p, p->LogFileNameOffset, size);
    if (*file == NULL) return ERROR_BAD_LENGTH;
    if ((*file)[0] == 0) *file = NULL;
  }
  return ERROR_SUCCESS;
}

/* StartTrace's checks of the modes and of the machine's state. */
static ULONG start_modes_ok(LPCWSTR name, const EVENT_TRACE_PROPERTIES *p, const WCHAR *file,
                            int kernel, int system) {
  ULONG mode = p->LogFileMode;
  if ((mode & EVENT_TRACE_FILE_MODE_SEQUENTIAL) && (mode & EVENT_TRACE_FILE_MODE_CIRCULAR))
    return ERROR_INVALID_PARAMETER;
  if ((mode & EVENT_TRACE_BUFFERING_MODE) &&
      (mode & (EVENT_TRACE_FILE_MODE_SEQUENTIAL | EVENT_TRACE_FILE_MODE_CIRCULAR |
               EVENT_TRACE_REAL_TIME_MODE)))
    return ERROR_INVALID_PARAMETER;
  if (IsEqualGUID(&p->Wnode.Guid, &kernel_guid) && !kernel) return ERROR_INVALID_PARAMETER;
  if ((mode & (EVENT_TRACE_FILE_MODE_CIRCULAR | EVENT_TRACE_FILE_MODE_NEWFILE |
               EVENT_TRACE_FILE_MODE_PREALLOCATE)) && p->MaximumFileSize == 0)
    return ERROR_INVALID_PARAMETER;
  if ((mode & 0x01000000u /* USE_PAGED_MEMORY */) && system) return ERROR_INVALID_PARAMETER;
  if ((mode & EVENT_TRACE_SYSTEM_LOGGER_MODE) && !etwsim_win8()) return ERROR_INVALID_PARAMETER;
  if (p->MinimumBuffers != 0 && p->MaximumBuffers != 0 && p->MaximumBuffers < p->MinimumBuffers)
    return ERROR_INVALID_PARAMETER;
  if (file == NULL && !(mode & (EVENT_TRACE_REAL_TIME_MODE | EVENT_TRACE_BUFFERING_MODE)))
    return ERROR_BAD_PATHNAME;
  if (system && !flags_supported(p->EnableFlags)) return ERROR_INVALID_FLAGS;
  if (!sim.admin) return ERROR_ACCESS_DENIED;
  if (etwsim_find_name(name) != NULL) return ERROR_ALREADY_EXISTS;
  if (file != NULL && find_file(file) != NULL) return ERROR_BAD_PATHNAME;
  if (etwsim_count(0) >= SIM_MAX_LOGGERS) return ERROR_NO_SYSTEM_RESOURCES;
  if (system && !is_reserved_system_name(name) &&
      etwsim_count(1) >= SIM_MAX_SYSTEM_LOGGERS - SIM_RESERVED_SYSTEM_SLOTS)
    return ERROR_NO_SYSTEM_RESOURCES;
  if (file != NULL && p->MaximumFileSize > sim.disk_free_mb) return ERROR_DISK_FULL;
  return ERROR_SUCCESS;
}

static void logger_init(sim_logger *l, LPCWSTR name, const EVENT_TRACE_PROPERTIES *p,
                        int kernel, int system) {
  l->used = 1;
  wcsncpy(l->name, name, SIM_NAME_WCHARS - 1);
  l->guid = p->Wnode.Guid;
  l->handle = kernel ? 0xFFFF : sim.next_handle++;
  l->clock = p->Wnode.ClientContext ? p->Wnode.ClientContext : 1;
  l->mode = p->LogFileMode;
  l->system = system;
  l->buffer_kb = p->BufferSize ? p->BufferSize : 64;
  l->min_buffers = p->MinimumBuffers ? p->MinimumBuffers : 2 * sim.ncpus;
  l->max_buffers = p->MaximumBuffers ? p->MaximumBuffers : l->min_buffers + 22;
  if (l->max_buffers < l->min_buffers) l->max_buffers = l->min_buffers;
  l->max_file_mb = p->MaximumFileSize;
  l->flush_timer = p->FlushTimer;
  l->enable_flags = system ? p->EnableFlags : 0;
  l->free_buffers = l->min_buffers;
  l->thread_id = sim.next_thread++;
}

ULONG WINAPI etwsim_StartTraceW(PTRACEHANDLE h, LPCWSTR name, PEVENT_TRACE_PROPERTIES p) {
  ULONG rc;
  const WCHAR *file = NULL;
  sim_logger *l = NULL;
  size_t i;
  int kernel, system;

  ensure_init();
  if ((rc = etwsim_take_failure("start")) != 0) return rc;
  if (p == NULL || h == NULL || name == NULL) return ERROR_INVALID_PARAMETER;
  if ((rc = start_block_ok(name, p, &file)) != ERROR_SUCCESS) return rc;
  kernel = is_kernel_name(name);
  system = kernel || (p->LogFileMode & EVENT_TRACE_SYSTEM_LOGGER_MODE) != 0;
  if ((rc = start_modes_ok(name, p, file, kernel, system)) != ERROR_SUCCESS) return rc;
  for (i = 0; i < SIM_MAX_LOGGERS; i++)
    if (!sim.loggers[i].used) { l = &sim.loggers[i]; break; }
  if (l == NULL) return ERROR_NO_SYSTEM_RESOURCES;
  ZeroMemory(l, sizeof *l);
  l->fh = INVALID_HANDLE_VALUE;
  if (file != NULL && (rc = file_open(l, file, p->LogFileMode)) != ERROR_SUCCESS) {
    l->fh = INVALID_HANDLE_VALUE;
    return rc;
  }
  logger_init(l, name, p, kernel, system);
  *h = l->handle;
  /* StartTrace reports the session back in the caller's block. */
  p->Wnode.HistoricalContext = l->handle;
  memcpy((char *)p + p->LoggerNameOffset, name, (wcslen(name) + 1) * sizeof(WCHAR));
  return ERROR_SUCCESS;
}

static void logger_remove(sim_logger *l) {
  etwsim_rt_gone(l->handle);
  if (l->fh != INVALID_HANDLE_VALUE) CloseHandle(l->fh);
  free(l->playback);
  ZeroMemory(l, sizeof *l);
  l->fh = INVALID_HANDLE_VALUE;
}

/* LogFileMode on UPDATE: 0 turns real time off; a non-zero value is OR'd
 * into the session's modes (ControlTrace's encoding), so it may add real
 * time but not a combination StartTrace would refuse. */
static ULONG update_mode(const sim_logger *l, ULONG m, ULONG *out) {
  ULONG n = m == 0 ? (l->mode & ~(ULONG)EVENT_TRACE_REAL_TIME_MODE) : (l->mode | m);
  if ((n & EVENT_TRACE_FILE_MODE_SEQUENTIAL) && (n & EVENT_TRACE_FILE_MODE_CIRCULAR))
    return ERROR_INVALID_PARAMETER;
  if ((n & EVENT_TRACE_BUFFERING_MODE) &&
      (n & (EVENT_TRACE_FILE_MODE_SEQUENTIAL | EVENT_TRACE_FILE_MODE_CIRCULAR |
            EVENT_TRACE_REAL_TIME_MODE)))
    return ERROR_INVALID_PARAMETER;
  if ((n ^ l->mode) & (EVENT_TRACE_SYSTEM_LOGGER_MODE | 0x01000000u /* PAGED */))
    return ERROR_INVALID_PARAMETER;
  *out = n;
  return ERROR_SUCCESS;
}

/* A new log file named in an UPDATE block. */
static ULONG update_file(sim_logger *l, const WCHAR *file) {
  ULONG rc, k, ring;
  sim_record r[32];
  if (_wcsicmp(file, l->file) == 0) return ERROR_INVALID_PARAMETER; /* the same file again */
  if (find_file(file) != NULL) return ERROR_BAD_PATHNAME;
  if (!(l->mode & EVENT_TRACE_BUFFERING_MODE)) return file_open(l, file, l->mode);
  /* Buffering: the in-memory buffers go to the named file. */
  if ((rc = file_open(l, file, 0)) != ERROR_SUCCESS) return rc;
  ring = l->buffers_written < l->max_buffers ? l->buffers_written : l->max_buffers;
  l->mode = (l->mode & ~(ULONG)EVENT_TRACE_BUFFERING_MODE) | EVENT_TRACE_FILE_MODE_SEQUENTIAL;
  for (k = 0; k < ring; k++) write_records(l, r, make_records(l, r));
  return ERROR_SUCCESS;
}

static ULONG do_update(sim_logger *l, PEVENT_TRACE_PROPERTIES p) {
  ULONG rc, mode;
  const WCHAR *file = NULL;
  /* A block reused from QUERY must be made an input block again. */
  if (!(p->Wnode.Flags & WNODE_FLAG_TRACED_GUID)) return ERROR_INVALID_PARAMETER;
  if (!extension_ok(p)) return ERROR_INVALID_PARAMETER;
  /* What Windows cannot change on a running session. */
  if (p->MaximumFileSize != 0 && p->MaximumFileSize != l->max_file_mb) return ERROR_INVALID_PARAMETER;
  if (p->BufferSize != 0 && p->BufferSize != l->buffer_kb) return ERROR_INVALID_PARAMETER;
  if (p->MinimumBuffers != 0 && p->MinimumBuffers != l->min_buffers) return ERROR_INVALID_PARAMETER;
  if (p->MaximumBuffers != 0 && p->MaximumBuffers < l->min_buffers) return ERROR_INVALID_PARAMETER;
  if ((rc = update_mode(l, p->LogFileMode, &mode)) != ERROR_SUCCESS) return rc;
  if (p->LogFileNameOffset != 0) {
    file = block_wstr(p, p->LogFileNameOffset, p->Wnode.BufferSize);
    if (file == NULL) return ERROR_BAD_LENGTH;
    if (file[0] == 0) file = NULL;
  }
  if (file != NULL && (rc = update_file(l, file)) != ERROR_SUCCESS) return rc;
  if (l->system) l->enable_flags = p->EnableFlags; /* 0 turns every group off */
  if (p->FlushTimer != 0) l->flush_timer = p->FlushTimer;
  if (p->MaximumBuffers != 0) l->max_buffers = p->MaximumBuffers;
  l->mode = (l->mode & ~(ULONG)EVENT_TRACE_REAL_TIME_MODE) | (mode & EVENT_TRACE_REAL_TIME_MODE);
  l->updates++;
  return ERROR_SUCCESS;
}

ULONG WINAPI etwsim_ControlTraceW(TRACEHANDLE h, LPCWSTR name, PEVENT_TRACE_PROPERTIES p,
                                  ULONG code) {
  static const char *const ops[] = {"query", "stop", "update", "flush"};
  sim_logger *l;
  ULONG rc;
  ensure_init();
  if (code <= EVENT_TRACE_CONTROL_FLUSH && (rc = etwsim_take_failure(ops[code])) != 0) {
    if (code == EVENT_TRACE_CONTROL_STOP && rc == ERROR_MORE_DATA) {
      /* Documented: STOP with a small block still stops the session. */
      l = h ? find_handle(h) : etwsim_find_name(name);
      if (l != NULL) logger_remove(l);
    }
    return rc;
  }
  if (p == NULL) return ERROR_INVALID_PARAMETER;
  if (p->Wnode.BufferSize < sizeof *p) return ERROR_BAD_LENGTH;
  if (code > EVENT_TRACE_CONTROL_FLUSH) return ERROR_INVALID_PARAMETER;
  if (h == 0 && name == NULL) return ERROR_INVALID_PARAMETER;
  /* Documented for ControlTrace as for StartTrace. */
  if (name != NULL && IsEqualGUID(&p->Wnode.Guid, &kernel_guid) && !is_kernel_name(name))
    return ERROR_INVALID_PARAMETER;
  l = h ? find_handle(h) : etwsim_find_name(name);
  if (l == NULL) return ERROR_WMI_INSTANCE_NOT_FOUND;
  if (!sim.admin) return ERROR_ACCESS_DENIED;
  switch (code) {
    case EVENT_TRACE_CONTROL_QUERY:
      l->queries++;
      etwsim_tick(l, 1); /* time passes between two queries: counters move */
      if (!l->used) return ERROR_WMI_INSTANCE_NOT_FOUND; /* its file filled up */
      return fill_props(l, p);
    case EVENT_TRACE_CONTROL_STOP:
      if (l->stopping) return ERROR_ACTIVE_CONNECTIONS;
      etwsim_tick(l, 1); /* the last buffers are written */
      if (!l->used) return ERROR_WMI_INSTANCE_NOT_FOUND;
      rc = fill_props(l, p);
      logger_remove(l);
      return rc;
    case EVENT_TRACE_CONTROL_UPDATE:
      if ((rc = do_update(l, p)) != ERROR_SUCCESS) return rc;
      return fill_props(l, p);
    case EVENT_TRACE_CONTROL_FLUSH:
      etwsim_tick(l, 1);
      if (!l->used) return ERROR_WMI_INSTANCE_NOT_FOUND;
      l->flushes++;
      if (l->fh != INVALID_HANDLE_VALUE) FlushFileBuffers(l->fh);
      return fill_props(l, p);
    default:
      return ERROR_INVALID_PARAMETER;
  }
}

ULONG WINAPI etwsim_QueryAllTracesW(PEVENT_TRACE_PROPERTIES *a, ULONG count, PULONG loggers) {
  ULONG rc, n = 0, filled = 0, i;
  ensure_init();
  if ((rc = etwsim_take_failure("list")) != 0) return rc;
  if (a == NULL || loggers == NULL || count == 0 || count > SIM_MAX_LOGGERS)
    return ERROR_INVALID_PARAMETER;
  rc = ERROR_SUCCESS;
  for (i = 0; i < SIM_MAX_LOGGERS; i++) {
    if (!sim.loggers[i].used) continue;
    n++;
    if (filled < count) {
      if (a[filled] == NULL || a[filled]->Wnode.BufferSize < sizeof **a) return ERROR_INVALID_PARAMETER;
      if (fill_props(&sim.loggers[i], a[filled]) == ERROR_MORE_DATA) rc = ERROR_MORE_DATA;
      filled++;
    }
  }
  if (n > count) rc = ERROR_MORE_DATA;
  *loggers = rc == ERROR_MORE_DATA ? n : filled;
  return rc;
}

ULONG WINAPI etwsim_TraceSetInformation(TRACEHANDLE h, TRACE_INFO_CLASS c, PVOID info, ULONG len) {
  sim_logger *l;
  ULONG rc;
  ensure_init();
  if ((rc = etwsim_take_failure("stacks")) != 0) return rc;
  l = find_handle(h);
  if (l == NULL) return ERROR_INVALID_HANDLE;
  if (c != TraceStackTracingInfo) return ERROR_NOT_SUPPORTED;
  if (!l->system) return ERROR_NOT_SUPPORTED; /* stacks of kernel events: system loggers only */
  if (len % sizeof(CLASSIC_EVENT_ID) != 0 || (len > 0 && info == NULL) ||
      len / sizeof(CLASSIC_EVENT_ID) > 256)
    return ERROR_INVALID_PARAMETER;
  if (!sim.admin) return ERROR_ACCESS_DENIED;
  l->stack_ids = len / (ULONG)sizeof(CLASSIC_EVENT_ID);
  return ERROR_SUCCESS;
}
