/*
 * live.c - events of a real-time session, consumed live (s:events{}).
 *
 * The first events() call opens the session by its logger name (OpenTraceW
 * with PROCESS_TRACE_MODE_REAL_TIME | PROCESS_TRACE_MODE_EVENT_RECORD) and
 * runs ProcessTrace on a consumer thread: ProcessTrace blocks, calling back
 * once per event, until CloseTrace or the end of the session.  The callback
 * decodes each event (names and properties through TDH, as kl_etw's table
 * binds it) into one allocation and appends it to a bounded queue;
 * live_next takes from the queue with a timeout.
 *
 * Not ordinary events, so never queued: the trace header (EventTrace),
 * SystemConfig rundown and StackWalk records.  Lost data becomes
 * lost_events markers: RT_LostEvent records (one or more events or buffers
 * lost by ETW, counted one per record) and the events the full queue had to
 * drop (counted exactly).
 *
 * The decoding here is the small self-contained part a live consumer
 * needs; a shared .etl decoder can replace decode_event() later.
 */
#include "etw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE_QUEUE_MAX 8192   /* events held for live_next before dropping */
#define LIVE_MAX_FIELDS 128
/* 100 ns ticks between 1601-01-01 and 1970-01-01. */
#define LIVE_FILETIME_UNIX 116444736000000000ULL

/* Kernel classes that are not events of the groups asked for. */
static const GUID g_eventtrace = {0x68fdd900, 0x4a3e, 0x11d1, {0x84, 0xf4, 0x00, 0x00, 0xf8, 0x04, 0x64, 0xe3}};
static const GUID g_sysconfig = {0x01853a65, 0x418f, 0x4f36, {0xae, 0xfc, 0xdc, 0x0f, 0x1d, 0x2f, 0xd2, 0x35}};
static const GUID g_stackwalk = {0xdef2fe46, 0x7bd6, 0x4b80, {0xbd, 0x94, 0xf5, 0x7f, 0xe2, 0x0d, 0x0c, 0xe3}};
static const GUID g_lost = {0x6a399ae0, 0x4bc6, 0x4de9, {0x87, 0x0b, 0x36, 0x57, 0xf8, 0x94, 0x7e, 0x7e}};

/* _TDH_IN_TYPE values used here (not all in mingw-w64's tdh.h). */
enum {
  IN_UNICODESTRING = 1, IN_ANSISTRING = 2, IN_INT8 = 3, IN_UINT8 = 4, IN_INT16 = 5,
  IN_UINT16 = 6, IN_INT32 = 7, IN_UINT32 = 8, IN_INT64 = 9, IN_UINT64 = 10, IN_FLOAT = 11,
  IN_DOUBLE = 12, IN_BOOLEAN = 13, IN_GUID = 15, IN_POINTER = 16, IN_FILETIME = 17,
  IN_HEXINT32 = 20, IN_HEXINT64 = 21, IN_COUNTEDSTRING = 300, IN_COUNTEDANSISTRING = 301,
  IN_SIZET = 308
};

/* ---- building one event in a growing buffer, pointers fixed at the end ---- */

typedef struct dbuf {
  char *p;
  size_t used, cap;
  int failed;
  kl_field fields[LIVE_MAX_FIELDS];
  size_t name_off[LIVE_MAX_FIELDS], str_off[LIVE_MAX_FIELDS];
  size_t nfields;
} dbuf;

typedef struct live_item {
  struct live_item *next;
  kl_event ev;            /* names, strings and fields point into the same allocation */
} live_item;

struct kl_etw_live {
  EVENT_TRACE_LOGFILEW lf;
  TRACEHANDLE h;
  HANDLE thread;
  CRITICAL_SECTION lock;
  CONDITION_VARIABLE cv;
  live_item *head, *tail;
  size_t n;
  uint64_t lost;          /* lost events no marker could be queued for (out of memory) */
  uint64_t lost_time;     /* ns, when the first of them was noticed */
  int ended;              /* ProcessTrace returned */
  ULONG rc;               /* what it returned */
  live_item *cur;         /* handed out by the last live_next */
  dbuf scratch;           /* the consumer thread's decoding buffer */
};

static size_t put(dbuf *d, const void *src, size_t n) {
  size_t at = d->used;
  if (d->failed) return 0;
  if (d->cap - d->used < n + 1) {
    size_t cap = d->cap ? d->cap : 256;
    char *np;
    while (cap - d->used < n + 1) cap *= 2;
    if ((np = realloc(d->p, cap)) == NULL) {
      d->failed = 1;
      return 0;
    }
    d->p = np;
    d->cap = cap;
  }
  if (n) memcpy(d->p + at, src, n);
  d->p[at + n] = '\0';
  d->used += n + 1;
  return at;
}

/* UTF-16 of any length (n WCHARs, or up to the NUL when n < 0) as UTF-8. */
static size_t put_wide(dbuf *d, const WCHAR *w, int n, size_t *len) {
  int m = WideCharToMultiByte(CP_UTF8, 0, w, n, NULL, 0, NULL, NULL);
  char *tmp;
  size_t at;
  *len = 0;
  if (m <= 0) return put(d, "", 0);
  if ((tmp = malloc((size_t)m)) == NULL) {
    d->failed = 1;
    return 0;
  }
  WideCharToMultiByte(CP_UTF8, 0, w, n, tmp, m, NULL, NULL);
  *len = strnlen(tmp, (size_t)m);  /* without the NUL that a counted string may carry */
  at = put(d, tmp, *len);
  free(tmp);
  return at;
}

static const WCHAR *info_str(const TRACE_EVENT_INFO *info, ULONG off, ULONG size) {
  if (off == 0 || off + sizeof(WCHAR) > size) return NULL;
  return (const WCHAR *)((const char *)info + off);
}

/* One property's bytes as a field (strings whole, however long). */
static void decode_value(dbuf *d, size_t i, USHORT intype, const BYTE *p, ULONG n) {
  kl_field *f = &d->fields[i];
  uint64_t u = 0;
  d->str_off[i] = (size_t)-1;
  switch (intype) {
    case IN_INT8: case IN_INT16: case IN_INT32: case IN_INT64: {
      int64_t v = 0;
      memcpy(&u, p, n < 8 ? n : 8);
      if (n == 1) v = (int8_t)u; else if (n == 2) v = (int16_t)u;
      else if (n == 4) v = (int32_t)u; else v = (int64_t)u;
      f->type = KL_F_INT;
      f->v.i = v;
      return;
    }
    case IN_UINT8: case IN_UINT16: case IN_UINT32: case IN_UINT64: case IN_BOOLEAN:
    case IN_POINTER: case IN_FILETIME: case IN_HEXINT32: case IN_HEXINT64: case IN_SIZET:
      memcpy(&u, p, n < 8 ? n : 8);
      f->type = KL_F_UINT;
      f->v.u = u;
      return;
    case IN_FLOAT: case IN_DOUBLE: {
      float fv = 0;
      double dv = 0;
      if (n == 4) { memcpy(&fv, p, 4); dv = fv; } else if (n >= 8) memcpy(&dv, p, 8);
      f->type = KL_F_FLOAT;
      f->v.d = dv;
      return;
    }
    case IN_UNICODESTRING: case IN_COUNTEDSTRING: {
      size_t len;
      f->type = KL_F_STR;
      d->str_off[i] = put_wide(d, (const WCHAR *)p, (int)(n / sizeof(WCHAR)), &len);
      f->v.s.len = len;
      return;
    }
    case IN_ANSISTRING: case IN_COUNTEDANSISTRING:
      f->type = KL_F_STR;
      f->v.s.len = strnlen((const char *)p, n);
      d->str_off[i] = put(d, p, f->v.s.len);
      return;
    default:
      /* GUIDs, SIDs, binary: the bytes */
      f->type = KL_F_ARRAY;
      f->v.a.count = n;
      f->v.a.elem_size = 1;
      f->v.a.is_signed = 0;
      d->str_off[i] = put(d, p, n);
      return;
  }
}

static void decode_props(dbuf *d, PEVENT_RECORD er, const TRACE_EVENT_INFO *info, ULONG size) {
  ULONG i;
  for (i = 0; i < info->TopLevelPropertyCount && d->nfields < LIVE_MAX_FIELDS; i++) {
    const EVENT_PROPERTY_INFO *pi = &info->EventPropertyInfoArray[i];
    const WCHAR *pname = info_str(info, pi->NameOffset, size);
    PROPERTY_DATA_DESCRIPTOR pd;
    ULONG psize = 0;
    BYTE *buf;
    size_t len;
    if (pname == NULL || (pi->Flags & (PropertyStruct | PropertyParamCount))) continue;
    ZeroMemory(&pd, sizeof pd);
    pd.PropertyName = (ULONGLONG)(ULONG_PTR)pname;
    pd.ArrayIndex = ULONG_MAX;
    if (kl_etw.TdhGetPropertySize(er, 0, NULL, 1, &pd, &psize) != ERROR_SUCCESS) continue;
    if ((buf = malloc(psize ? psize : 1)) == NULL) {
      d->failed = 1;
      return;
    }
    if (kl_etw.TdhGetProperty(er, 0, NULL, 1, &pd, psize, buf) == ERROR_SUCCESS) {
      d->name_off[d->nfields] = put_wide(d, pname, -1, &len);
      decode_value(d, d->nfields, pi->nonStructType.InType, buf, psize);
      d->nfields++;
    }
    free(buf);
  }
}

/* The names (task/opcode, else the provider GUID and opcode number). */
static void decode_names(dbuf *d, PEVENT_RECORD er, const TRACE_EVENT_INFO *info, ULONG size,
                         size_t *sys, size_t *name) {
  const WCHAR *w;
  char tmp[64];
  size_t len;
  const GUID *g = &er->EventHeader.ProviderId;
  if (info != NULL && (w = info_str(info, info->TaskNameOffset, size)) != NULL && w[0]) {
    *sys = put_wide(d, w, -1, &len);
  } else {
    snprintf(tmp, sizeof tmp, "{%08lx-%04x-%04x}", (unsigned long)g->Data1, g->Data2, g->Data3);
    *sys = put(d, tmp, strlen(tmp));
  }
  if (info != NULL && (w = info_str(info, info->OpcodeNameOffset, size)) != NULL && w[0]) {
    *name = put_wide(d, w, -1, &len);
  } else {
    snprintf(tmp, sizeof tmp, "opcode_%u", (unsigned)er->EventHeader.EventDescriptor.Opcode);
    *name = put(d, tmp, strlen(tmp));
  }
}

static uint64_t event_ns(PEVENT_RECORD er) {
  uint64_t ft = (uint64_t)er->EventHeader.TimeStamp.QuadPart;
  return ft > LIVE_FILETIME_UNIX ? (ft - LIVE_FILETIME_UNIX) * 100u : 0;
}

/* One queued item from the decoded parts. */
static live_item *item_from(dbuf *d, PEVENT_RECORD er, size_t sys, size_t name) {
  size_t fbytes = d->nfields * sizeof(kl_field), i;
  live_item *it = malloc(sizeof *it + fbytes + d->used);
  char *base;
  kl_field *fields;
  if (it == NULL) return NULL;
  fields = (kl_field *)(it + 1);
  base = (char *)fields + fbytes;
  memcpy(base, d->p, d->used);
  ZeroMemory(&it->ev, sizeof it->ev);
  it->next = NULL;
  it->ev.system = base + sys;
  it->ev.name = base + name;
  it->ev.time = event_ns(er);
  it->ev.cpu = er->BufferContext.ProcessorIndex;  /* not the 8-bit ProcessorNumber */
  it->ev.pid = er->EventHeader.ProcessId == 0xFFFFFFFFu ? -1 : (int)er->EventHeader.ProcessId;
  for (i = 0; i < d->nfields; i++) {
    fields[i] = d->fields[i];
    fields[i].name = base + d->name_off[i];
    if (d->str_off[i] == (size_t)-1) continue;
    if (fields[i].type == KL_F_STR) fields[i].v.s.p = base + d->str_off[i];
    else fields[i].v.a.p = base + d->str_off[i];
  }
  it->ev.nfields = d->nfields;
  it->ev.fields = fields;
  return it;
}

static live_item *decode_event(dbuf *d, PEVENT_RECORD er) {
  TRACE_EVENT_INFO *info = NULL;
  ULONG size = 0;
  size_t sys = 0, name = 0;
  live_item *it = NULL;
  d->used = 0;
  d->nfields = 0;
  d->failed = 0;
  if (kl_etw.TdhGetEventInformation(er, 0, NULL, NULL, &size) == ERROR_INSUFFICIENT_BUFFER &&
      size > 0 && (info = malloc(size)) != NULL &&
      kl_etw.TdhGetEventInformation(er, 0, NULL, info, &size) != ERROR_SUCCESS) {
    free(info);
    info = NULL;
  }
  decode_names(d, er, info, size, &sys, &name);
  if (info != NULL) decode_props(d, er, info, size);
  if (!d->failed) it = item_from(d, er, sys, name);
  free(info);
  return it;
}

/* ---- the consumer thread ---- */

/* A loss goes into the queue where it happened: a lost_events marker after
 * the events that came before it (consecutive losses share one marker).
 * Markers take no room from the events. */
static void note_lost(kl_etw_live *lv, uint64_t n, uint64_t when) {
  live_item *m;
  if (lv->tail != NULL && lv->tail->ev.lost > 0) {
    lv->tail->ev.lost += n;
    return;
  }
  if ((m = calloc(1, sizeof *m)) == NULL) {
    if (lv->lost == 0) lv->lost_time = when;
    lv->lost += n;
    return;
  }
  m->ev.name = "lost_events";
  m->ev.time = when;
  m->ev.cpu = -1;
  m->ev.pid = -1;
  m->ev.lost = n;
  if (lv->tail) lv->tail->next = m; else lv->head = m;
  lv->tail = m;
}

static void WINAPI on_event(PEVENT_RECORD er) {
  kl_etw_live *lv = er->UserContext;
  const GUID *g = &er->EventHeader.ProviderId;
  live_item *it;
  int room;
  if (IsEqualGUID(g, &g_eventtrace) || IsEqualGUID(g, &g_sysconfig) ||
      IsEqualGUID(g, &g_stackwalk))
    return;
  if (IsEqualGUID(g, &g_lost)) {
    EnterCriticalSection(&lv->lock);
    note_lost(lv, 1, event_ns(er));
    LeaveCriticalSection(&lv->lock);
    WakeAllConditionVariable(&lv->cv);
    return;
  }
  EnterCriticalSection(&lv->lock);
  room = lv->n < LIVE_QUEUE_MAX; /* only this thread adds: the room stays */
  LeaveCriticalSection(&lv->lock);
  it = room ? decode_event(&lv->scratch, er) : NULL;
  EnterCriticalSection(&lv->lock);
  if (it == NULL) { /* no room, or no memory to decode it */
    note_lost(lv, 1, event_ns(er));
  } else {
    if (lv->tail) lv->tail->next = it; else lv->head = it;
    lv->tail = it;
    lv->n++;
  }
  LeaveCriticalSection(&lv->lock);
  WakeAllConditionVariable(&lv->cv);
}

static DWORD WINAPI consumer(LPVOID arg) {
  kl_etw_live *lv = arg;
  ULONG rc = kl_etw.ProcessTrace(&lv->h, 1, NULL, NULL);
  EnterCriticalSection(&lv->lock);
  lv->ended = 1;
  lv->rc = rc;
  LeaveCriticalSection(&lv->lock);
  WakeAllConditionVariable(&lv->cv);
  return 0;
}

static int live_open(kl_session *s, kl_err *err) {
  kl_etw_live *lv = calloc(1, sizeof *lv);
  if (lv == NULL)
    return kl_err_set(err, KL_E_NO_RESOURCES, ERROR_NOT_ENOUGH_MEMORY,
                      "events '%s': out of memory", s->name);
  InitializeCriticalSection(&lv->lock);
  InitializeConditionVariable(&lv->cv);
  lv->lf.LoggerName = s->wname;
  lv->lf.ProcessTraceMode = PROCESS_TRACE_MODE_REAL_TIME | PROCESS_TRACE_MODE_EVENT_RECORD;
  lv->lf.EventRecordCallback = on_event;
  lv->lf.Context = lv;
  lv->h = kl_etw.OpenTraceW(&lv->lf);
  if (lv->h == INVALID_PROCESSTRACE_HANDLE) {
    DWORD e = GetLastError();
    DeleteCriticalSection(&lv->lock);
    free(lv);
    return kl_etw_err(err, e ? e : ERROR_WMI_INSTANCE_NOT_FOUND, "events", s->name, NULL);
  }
  lv->thread = CreateThread(NULL, 0, consumer, lv, 0, NULL);
  if (lv->thread == NULL) {
    DWORD e = GetLastError();
    (void)kl_etw.CloseTrace(lv->h);
    DeleteCriticalSection(&lv->lock);
    free(lv);
    return kl_etw_err(err, e, "events", s->name, "cannot start the consumer thread");
  }
  s->live = lv;
  return 0;
}

void kl_etw_live_close(kl_session *s) {
  kl_etw_live *lv = s->live;
  live_item *it, *next;
  if (lv == NULL) return;
  /* ERROR_CTX_CLOSE_PENDING: ProcessTrace returns once its buffers are done. */
  (void)kl_etw.CloseTrace(lv->h);
  WaitForSingleObject(lv->thread, INFINITE);
  CloseHandle(lv->thread);
  for (it = lv->head; it != NULL; it = next) {
    next = it->next;
    free(it);
  }
  free(lv->cur);
  free(lv->scratch.p);
  DeleteCriticalSection(&lv->lock);
  free(lv);
  s->live = NULL;
}

/* ---- live_next ---- */

static int name_match(const kl_filter *f, const char *system, const char *name) {
  size_t i;
  if (f == NULL || f->names == NULL || f->nnames == 0) return 1;
  for (i = 0; i < f->nnames; i++) {
    const char *n = f->names[i], *colon = strchr(n, ':');
    if (colon != NULL) {
      size_t sl = (size_t)(colon - n);
      if (_strnicmp(n, system, sl) == 0 && system[sl] == '\0' && _stricmp(colon + 1, name) == 0)
        return 1;
    } else if (_stricmp(n, name) == 0 || _stricmp(n, system) == 0) {
      return 1;
    }
  }
  return 0;
}

static int wants(const kl_filter *f, const kl_event *ev) {
  if (f == NULL) return 1;
  if (ev->lost) return f->pid < 0 && name_match(f, "", "lost_events");
  if (f->cpu >= 0 && ev->cpu != f->cpu) return 0;
  if (f->pid >= 0 && ev->pid != f->pid) return 0;
  return name_match(f, ev->system, ev->name);
}

/* Take the next event or marker; 0 when the deadline passed or the
 * consumer ended with nothing left. */
static int take(kl_etw_live *lv, double deadline, kl_event *ev) {
  int got = 0;
  EnterCriticalSection(&lv->lock);
  for (;;) {
    if (lv->head != NULL) {
      lv->cur = lv->head;
      lv->head = lv->head->next;
      if (lv->head == NULL) lv->tail = NULL;
      if (lv->cur->ev.lost == 0) lv->n--;
      *ev = lv->cur->ev;
      got = 1;
      break;
    }
    if (lv->lost > 0) { /* what no marker could be allocated for */
      ZeroMemory(ev, sizeof *ev);
      ev->name = "lost_events";
      ev->time = lv->lost_time;
      ev->cpu = -1;
      ev->pid = -1;
      ev->lost = lv->lost;
      lv->lost = 0;
      got = 1;
      break;
    }
    if (lv->ended) break;
    {
      double left = deadline < 0 ? -1 : deadline - kl_monotime();
      DWORD ms = left < 0 ? INFINITE : (DWORD)(left * 1000.0 + 0.5);
      if (deadline >= 0 && left <= 0) break;
      SleepConditionVariableCS(&lv->cv, &lv->lock, ms);
    }
  }
  LeaveCriticalSection(&lv->lock);
  return got;
}

static int drained_end(kl_etw_live *lv) {
  int done;
  EnterCriticalSection(&lv->lock);
  done = lv->ended && lv->head == NULL && lv->lost == 0;
  LeaveCriticalSection(&lv->lock);
  return done;
}

/* 0 at the end of the events; -1 (once) when ProcessTrace ended on an error. */
static int consumer_failed(kl_session *s, kl_err *err) {
  kl_etw_live *lv = s->live;
  ULONG rc;
  EnterCriticalSection(&lv->lock);
  rc = lv->ended ? lv->rc : ERROR_SUCCESS;
  if (lv->ended) lv->rc = ERROR_SUCCESS;
  LeaveCriticalSection(&lv->lock);
  if (rc == ERROR_SUCCESS || rc == ERROR_CANCELLED || rc == ERROR_CTX_CLOSE_PENDING) return 0;
  return kl_etw_err(err, rc, "events", s->name, "ProcessTrace ended the real-time consumer");
}

int kl_etw_live_next(kl_session *s, const kl_filter *f, int fresh, double timeout, kl_event *ev,
                     kl_err *err) {
  double deadline = timeout >= 0 ? kl_monotime() + timeout : -1;
  /* Events that arrived between two iterations stay queued; a new
   * iteration after the consumer ended (and was drained) opens a new one. */
  if (fresh && s->live != NULL && drained_end(s->live)) kl_etw_live_close(s);
  if (!s->realtime)
    return kl_err_set(err, KL_E_INVALID, 0,
                      "events '%s': not a real-time session (start or update it with "
                      "realtime = true)", s->name);
  if (s->live == NULL && live_open(s, err) != 0) return -1;
  for (;;) {
    free(s->live->cur);
    s->live->cur = NULL;
    if (!take(s->live, deadline, ev)) return consumer_failed(s, err);
    if (wants(f, ev)) return 1;
  }
}
