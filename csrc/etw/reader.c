/*
 * reader.c - capture files through OpenTraceW/ProcessTrace and TDH.
 *
 * kl.open() sends real .etl files to the portable reader (csrc/etl, chosen
 * by csrc/reader.c from the first bytes), on Windows as elsewhere; this
 * backend reader receives only the other files: the ETW simulator's own
 * format in the test build.  It stays for that, and for the C-level checks
 * (spec/support/etwsim/reader_check.c, spec/support/winsys/etl_dump.c).
 *
 * ProcessTrace is callback-driven and returns only at the end of the file,
 * so trace_open runs it once and buffers every event (names, header and
 * decoded top-level properties) in an arena; trace_next then walks that
 * buffer with the filter, and rewinds for free.  Memory grows with the file:
 * about the size of the decoded events.
 */
#include "etw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* _TDH_IN_TYPE values (not in mingw-w64's tdh.h). */
enum {
  KL_IN_UNICODESTRING = 1, KL_IN_ANSISTRING = 2, KL_IN_INT8 = 3, KL_IN_UINT8 = 4,
  KL_IN_INT16 = 5, KL_IN_UINT16 = 6, KL_IN_INT32 = 7, KL_IN_UINT32 = 8, KL_IN_INT64 = 9,
  KL_IN_UINT64 = 10, KL_IN_FLOAT = 11, KL_IN_DOUBLE = 12, KL_IN_BOOLEAN = 13,
  KL_IN_BINARY = 14, KL_IN_GUID = 15, KL_IN_POINTER = 16, KL_IN_FILETIME = 17,
  KL_IN_SYSTEMTIME = 18, KL_IN_SID = 19, KL_IN_HEXINT32 = 20, KL_IN_HEXINT64 = 21,
  KL_IN_COUNTEDSTRING = 300, KL_IN_COUNTEDANSISTRING = 301, KL_IN_SIZET = 309,
  KL_IN_WBEMSID = 311
};

/* 100 ns ticks between 1601-01-01 and 1970-01-01. */
#define KL_FILETIME_UNIX 116444736000000000ULL

typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  char *data;  /* right after the header, in the same allocation */
} chunk;

typedef struct rec {
  const char *system, *name;
  uint64_t time;
  int cpu, pid;
  size_t nfields;
  kl_field *fields;
} rec;

struct kl_trace {
  char path[KL_PATH_MAX];
  chunk *arena;
  rec *recs;
  size_t nrecs, cap, pos;
  kl_event_count *types;
  size_t ntypes;
  int ncpus, pointer_size;
  uint64_t first_ts, last_ts;
  int failed;  /* out of memory inside the callback */
};

static void *arena_alloc(kl_trace *t, size_t n) {
  chunk *c = t->arena;
  n = (n + 7) & ~(size_t)7;
  if (c == NULL || c->cap - c->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    c = malloc(sizeof *c + cap);
    if (c == NULL) return NULL;
    c->data = (char *)(c + 1);
    c->next = t->arena;
    c->used = 0;
    c->cap = cap;
    t->arena = c;
  }
  c->used += n;
  return c->data + c->used - n;
}

static const char *arena_str(kl_trace *t, const char *s, size_t len) {
  char *p = arena_alloc(t, len + 1);
  if (p == NULL) return NULL;
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

static const char *arena_wstr(kl_trace *t, const WCHAR *w) {
  char buf[1024];
  kl_etw_to_utf8(w, buf, sizeof buf);
  return arena_str(t, buf, strlen(buf));
}

/* Event names repeat: keep one copy per (system, name) in the type list. */
static kl_event_count *type_find(kl_trace *t, const char *system, const char *name) {
  size_t i;
  kl_event_count *n;
  for (i = 0; i < t->ntypes; i++)
    if (strcmp(t->types[i].system, system) == 0 && strcmp(t->types[i].name, name) == 0)
      return &t->types[i];
  n = realloc(t->types, (t->ntypes + 1) * sizeof *n);
  if (n == NULL) return NULL;
  t->types = n;
  n = &t->types[t->ntypes];
  n->system = arena_str(t, system, strlen(system));
  n->name = arena_str(t, name, strlen(name));
  n->count = 0;
  if (n->system == NULL || n->name == NULL) return NULL;
  t->ntypes++;
  return n;
}

static const WCHAR *info_str(const TRACE_EVENT_INFO *info, ULONG off, ULONG size) {
  if (off == 0 || off >= size) return NULL;
  return (const WCHAR *)((const char *)info + off);
}

static void decode_field(kl_trace *t, kl_field *f, USHORT intype, const BYTE *p, ULONG n) {
  char tmp[64];
  switch (intype) {
    case KL_IN_INT8: f->type = KL_F_INT; f->v.i = n >= 1 ? (int8_t)p[0] : 0; return;
    case KL_IN_INT16: { int16_t v = 0; if (n >= 2) memcpy(&v, p, 2); f->type = KL_F_INT; f->v.i = v; return; }
    case KL_IN_INT32: { int32_t v = 0; if (n >= 4) memcpy(&v, p, 4); f->type = KL_F_INT; f->v.i = v; return; }
    case KL_IN_INT64: { int64_t v = 0; if (n >= 8) memcpy(&v, p, 8); f->type = KL_F_INT; f->v.i = v; return; }
    case KL_IN_UINT8: case KL_IN_BOOLEAN: case KL_IN_UINT16: case KL_IN_UINT32:
    case KL_IN_UINT64: case KL_IN_HEXINT32: case KL_IN_HEXINT64: case KL_IN_POINTER:
    case KL_IN_SIZET: case KL_IN_FILETIME: {
      uint64_t v = 0;
      memcpy(&v, p, n < 8 ? n : 8);
      f->type = KL_F_UINT;
      f->v.u = v;
      return;
    }
    case KL_IN_FLOAT: { float v = 0; if (n >= 4) memcpy(&v, p, 4); f->type = KL_F_FLOAT; f->v.d = v; return; }
    case KL_IN_DOUBLE: { double v = 0; if (n >= 8) memcpy(&v, p, 8); f->type = KL_F_FLOAT; f->v.d = v; return; }
    case KL_IN_UNICODESTRING: case KL_IN_COUNTEDSTRING: {
      WCHAR *w = malloc(n + sizeof(WCHAR));
      const char *s;
      if (w == NULL) break;
      memcpy(w, p, n);
      w[n / sizeof(WCHAR)] = 0;
      s = arena_wstr(t, w);
      free(w);
      f->type = KL_F_STR;
      f->v.s.p = s ? s : "";
      f->v.s.len = s ? strlen(s) : 0;
      return;
    }
    case KL_IN_ANSISTRING: case KL_IN_COUNTEDANSISTRING: {
      size_t len = strnlen((const char *)p, n);
      const char *s = arena_str(t, (const char *)p, len);
      f->type = KL_F_STR;
      f->v.s.p = s ? s : "";
      f->v.s.len = s ? len : 0;
      return;
    }
    case KL_IN_GUID:
      if (n >= sizeof(GUID)) {
        GUID g;
        memcpy(&g, p, sizeof g);
        snprintf(tmp, sizeof tmp, "{%08lx-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x}",
                 (unsigned long)g.Data1, g.Data2, g.Data3, g.Data4[0], g.Data4[1], g.Data4[2],
                 g.Data4[3], g.Data4[4], g.Data4[5], g.Data4[6], g.Data4[7]);
        f->type = KL_F_STR;
        f->v.s.p = arena_str(t, tmp, strlen(tmp));
        f->v.s.len = f->v.s.p ? strlen(tmp) : 0;
        if (f->v.s.p == NULL) f->v.s.p = "";
        return;
      }
      break;
    default:
      break;
  }
  /* Anything else (binary, SID, ...): the raw bytes as an array. */
  {
    void *copy = arena_alloc(t, n ? n : 1);
    if (copy != NULL && n) memcpy(copy, p, n);
    f->type = KL_F_ARRAY;
    f->v.a.p = copy;
    f->v.a.count = copy ? n : 0;
    f->v.a.elem_size = 1;
    f->v.a.is_signed = 0;
  }
}

static void decode_props(kl_trace *t, rec *r, PEVENT_RECORD er, TRACE_EVENT_INFO *info,
                         ULONG size) {
  ULONG i, n = info->TopLevelPropertyCount;
  if (n == 0 || n > 256) return;
  r->fields = arena_alloc(t, n * sizeof *r->fields);
  if (r->fields == NULL) return;
  for (i = 0; i < n; i++) {
    EVENT_PROPERTY_INFO *pi = &info->EventPropertyInfoArray[i];
    PROPERTY_DATA_DESCRIPTOR d;
    ULONG psize = 0;
    BYTE stackbuf[256], *buf = stackbuf;
    const WCHAR *pname = info_str(info, pi->NameOffset, size);
    kl_field *f = &r->fields[r->nfields];
    if (pname == NULL || (pi->Flags & (PropertyStruct | PropertyParamCount))) continue;
    ZeroMemory(&d, sizeof d);
    d.PropertyName = (ULONGLONG)(ULONG_PTR)pname;
    d.ArrayIndex = ULONG_MAX;
    if (kl_etw.TdhGetPropertySize(er, 0, NULL, 1, &d, &psize) != ERROR_SUCCESS) continue;
    if (psize > sizeof stackbuf && (buf = malloc(psize)) == NULL) continue;
    if (kl_etw.TdhGetProperty(er, 0, NULL, 1, &d, psize, buf) == ERROR_SUCCESS) {
      f->name = arena_wstr(t, pname);
      if (f->name != NULL) {
        decode_field(t, f, pi->nonStructType.InType, buf, psize);
        r->nfields++;
      }
    }
    if (buf != stackbuf) free(buf);
  }
}

static void WINAPI on_event(PEVENT_RECORD er) {
  kl_trace *t = er->UserContext;
  TRACE_EVENT_INFO *info = NULL;
  ULONG size = 0, rc;
  rec *r;
  char sysbuf[128], namebuf[128];
  kl_event_count *ty;
  const WCHAR *w;
  if (t == NULL || t->failed) return;
  if (t->nrecs == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    rec *n = realloc(t->recs, cap * sizeof *n);
    if (n == NULL) { t->failed = 1; return; }
    t->recs = n;
    t->cap = cap;
  }
  r = &t->recs[t->nrecs];
  ZeroMemory(r, sizeof *r);
  snprintf(sysbuf, sizeof sysbuf, "{%08lx-%04x-%04x}", (unsigned long)er->EventHeader.ProviderId.Data1,
           er->EventHeader.ProviderId.Data2, er->EventHeader.ProviderId.Data3);
  snprintf(namebuf, sizeof namebuf, "opcode_%u", (unsigned)er->EventHeader.EventDescriptor.Opcode);
  rc = kl_etw.TdhGetEventInformation(er, 0, NULL, NULL, &size);
  if (rc == ERROR_INSUFFICIENT_BUFFER && size > 0 && (info = malloc(size)) != NULL &&
      kl_etw.TdhGetEventInformation(er, 0, NULL, info, &size) == ERROR_SUCCESS) {
    if ((w = info_str(info, info->TaskNameOffset, size)) != NULL && w[0])
      kl_etw_to_utf8(w, sysbuf, sizeof sysbuf);
    else if ((w = info_str(info, info->ProviderNameOffset, size)) != NULL && w[0])
      kl_etw_to_utf8(w, sysbuf, sizeof sysbuf);
    if ((w = info_str(info, info->OpcodeNameOffset, size)) != NULL && w[0])
      kl_etw_to_utf8(w, namebuf, sizeof namebuf);
  } else {
    free(info);
    info = NULL;
  }
  ty = type_find(t, sysbuf, namebuf);
  if (ty == NULL) { free(info); t->failed = 1; return; }
  ty->count++;
  r->system = ty->system;
  r->name = ty->name;
  {
    uint64_t ft = (uint64_t)er->EventHeader.TimeStamp.QuadPart;
    r->time = ft > KL_FILETIME_UNIX ? (ft - KL_FILETIME_UNIX) * 100u : 0;
  }
  r->cpu = er->BufferContext.ProcessorNumber;
  r->pid = er->EventHeader.ProcessId == 0xFFFFFFFFu ? -1 : (int)er->EventHeader.ProcessId;
  if (info != NULL) decode_props(t, r, er, info, size);
  free(info);
  if (t->nrecs == 0 || r->time < t->first_ts) t->first_ts = r->time;
  if (r->time > t->last_ts) t->last_ts = r->time;
  t->nrecs++;
}

void kl_etw_trace_close(kl_trace *t) {
  chunk *c, *n;
  if (t == NULL) return;
  for (c = t->arena; c != NULL; c = n) {
    n = c->next;
    free(c);
  }
  free(t->recs);
  free(t->types);
  free(t);
}

/* A file ETW does not recognise is "invalid", as a file that is not a
 * trace.dat is on Linux; the message keeps the Win32 number. */
static void bad_format(kl_err *err, DWORD e, const char *path, const char *fn) {
  char detail[64];
  snprintf(detail, sizeof detail, "not an .etl file (%s refused it)", fn);
  kl_etw_err(err, e, "open", path, detail);
  if (err != NULL) err->code = KL_E_INVALID;
}

kl_trace *kl_etw_trace_open(const char *path, kl_err *err) {
  kl_trace *t = NULL;
  EVENT_TRACE_LOGFILEW lf;
  WCHAR wpath[KL_ETW_NAME_WCHARS];
  TRACEHANDLE h = INVALID_PROCESSTRACE_HANDLE;
  ULONG rc;
  DWORD attrs;
  char detail[64];

  if (kl_etw_to_wide(path, wpath, KL_ETW_NAME_WCHARS, "open", NULL, "path", err) != 0) goto error;
  /* A directory is no capture (as on Linux); anything missing is left to
   * OpenTraceW, whose error says which part of the path is absent. */
  attrs = GetFileAttributesW(wpath);
  if (attrs != INVALID_FILE_ATTRIBUTES && (attrs & FILE_ATTRIBUTE_DIRECTORY)) {
    kl_etw_err(err, ERROR_DIRECTORY, "open", path, "not a regular file (a directory)");
    if (err != NULL) err->code = KL_E_INVALID;
    goto error;
  }
  t = calloc(1, sizeof *t);
  if (t == NULL) {
    kl_err_set(err, KL_E_NO_RESOURCES, ERROR_NOT_ENOUGH_MEMORY, "open '%s': out of memory", path);
    goto error;
  }
  snprintf(t->path, sizeof t->path, "%s", path);
  ZeroMemory(&lf, sizeof lf);
  lf.LogFileName = wpath;
  lf.ProcessTraceMode = PROCESS_TRACE_MODE_EVENT_RECORD;
  lf.EventRecordCallback = on_event;
  lf.Context = t;
  h = kl_etw.OpenTraceW(&lf);
  if (h == INVALID_PROCESSTRACE_HANDLE) {
    rc = GetLastError();
    if (rc == ERROR_BAD_FORMAT) {
      bad_format(err, rc, path, "OpenTraceW");
      goto error;
    }
    kl_etw_err(err, rc, "open", path, "OpenTraceW cannot read the file");
    goto error;
  }
  t->ncpus = (int)lf.LogfileHeader.NumberOfProcessors;
  t->pointer_size = (int)lf.LogfileHeader.PointerSize;
  rc = kl_etw.ProcessTrace(&h, 1, NULL, NULL);
  (void)kl_etw.CloseTrace(h);
  h = INVALID_PROCESSTRACE_HANDLE;
  if (rc == ERROR_BAD_FORMAT && t->nrecs == 0) {
    bad_format(err, rc, path, "ProcessTrace");
    goto error;
  }
  if (rc != ERROR_SUCCESS && rc != ERROR_CANCELLED) {
    snprintf(detail, sizeof detail, "ProcessTrace failed after %u events", (unsigned)t->nrecs);
    kl_etw_err(err, rc, "open", path, detail);
    goto error;
  }
  if (t->failed) {
    kl_err_set(err, KL_E_NO_RESOURCES, ERROR_NOT_ENOUGH_MEMORY,
               "open '%s': out of memory after %u events", path, (unsigned)t->nrecs);
    goto error;
  }
  return t;
error:
  if (h != INVALID_PROCESSTRACE_HANDLE) (void)kl_etw.CloseTrace(h);
  kl_etw_trace_close(t);
  return NULL;
}

int kl_etw_trace_info(kl_trace *t, kl_trace_info *info, kl_err *err) {
  (void)err;
  ZeroMemory(info, sizeof *info);
  snprintf(info->format, sizeof info->format, "etl");
  info->version = 0;
  info->big_endian = 0;
  info->long_size = 4; /* LLP64 */
  info->page_size = 4096;
  info->ncpus = t->ncpus;
  snprintf(info->clock, sizeof info->clock, "filetime");
  info->first_ts = t->first_ts;
  info->last_ts = t->last_ts;
  info->nevent_types = t->ntypes;
  info->event_types = t->types;
  return 0;
}

static int name_match(const kl_filter *f, const rec *r) {
  size_t i;
  if (f->names == NULL || f->nnames == 0) return 1;
  for (i = 0; i < f->nnames; i++) {
    const char *n = f->names[i], *colon = strchr(n, ':');
    if (colon != NULL) {
      size_t sl = (size_t)(colon - n);
      if (_strnicmp(n, r->system, sl) == 0 && r->system[sl] == '\0' &&
          _stricmp(colon + 1, r->name) == 0)
        return 1;
    } else if (_stricmp(n, r->name) == 0 || _stricmp(n, r->system) == 0) {
      return 1;
    }
  }
  return 0;
}

int kl_etw_trace_next(kl_trace *t, const kl_filter *f, int rewind, kl_event *ev, kl_err *err) {
  (void)err;
  if (rewind) t->pos = 0;
  while (t->pos < t->nrecs) {
    const rec *r = &t->recs[t->pos++];
    if (f != NULL) {
      if (f->cpu >= 0 && r->cpu != f->cpu) continue;
      if (f->pid >= 0 && r->pid != f->pid) continue;
      if (r->time < f->t0 || (f->t1 != 0 && r->time > f->t1)) continue;
      if (!name_match(f, r)) continue;
    }
    ZeroMemory(ev, sizeof *ev);
    ev->name = r->name;
    ev->system = r->system;
    ev->time = r->time;
    ev->cpu = r->cpu;
    ev->pid = r->pid;
    ev->comm = NULL;
    ev->lost = 0;
    ev->nfields = r->nfields;
    ev->fields = r->fields;
    return 1;
  }
  return 0;
}
