/*
 * etwsim_rt.c - real-time consumers of simulated sessions, as ETW documents
 * them (OpenTrace, ProcessTrace, CloseTrace, EVENT_RECORD):
 *
 *   - OpenTraceW with LoggerName and PROCESS_TRACE_MODE_REAL_TIME attaches to
 *     a running session in EVENT_TRACE_REAL_TIME_MODE
 *     (ERROR_WMI_INSTANCE_NOT_FOUND otherwise; ERROR_ACCESS_DENIED when not
 *     an administrator); the events the session logged while no consumer
 *     was attached (its playback file, etwsim.c) come first;
 *   - ProcessTrace blocks, calling EventRecordCallback once per event, until
 *     CloseTrace or the end of the session; the first record is the trace
 *     header (EventTrace class), then a SystemConfig rundown record, then
 *     the events of each buffer, each followed by a StackWalk record when
 *     stacks are on; buffers the consumer had no room for come back as one
 *     RT_LostEvent/RTLostBuffer record each, before the next events;
 *   - CloseTrace while ProcessTrace runs answers ERROR_CTX_CLOSE_PENDING:
 *     ProcessTrace delivers what is queued, receives nothing new, returns.
 *
 * Events carry the kernel classes' layouts for the two groups the specs
 * read (64-bit pointers): Process/Start (Process_TypeGroup1, version 4) for
 * EVENT_TRACE_FLAG_PROCESS and TcpIp/Send (TcpIp_SendIPV4, version 2) for
 * EVENT_TRACE_FLAG_NETWORK_TCPIP; other groups use the generic EtwSim
 * record.  BufferContext.ProcessorIndex carries the CPU (it may exceed 255;
 * ProcessorNumber keeps only its low byte), TimeStamp is system time.
 */
#define ETWSIM_BUILD
#include "etwsim_int.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#ifndef ERROR_CTX_CLOSE_PENDING
#define ERROR_CTX_CLOSE_PENDING 7007L
#endif
#define SIM_RT_HANDLE_BASE 0x1000
#define SIM_MAX_RT 64

static const GUID g_process = {0x3d6fa8d0, 0xfe05, 0x11d0, {0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c}};
static const GUID g_tcpip = {0x9a280ac0, 0xc8e0, 0x11d1, {0x84, 0xe2, 0x00, 0xc0, 0x4f, 0xb9, 0x98, 0xa2}};
static const GUID g_eventtrace = {0x68fdd900, 0x4a3e, 0x11d1, {0x84, 0xf4, 0x00, 0x00, 0xf8, 0x04, 0x64, 0xe3}};
static const GUID g_sysconfig = {0x01853a65, 0x418f, 0x4f36, {0xae, 0xfc, 0xdc, 0x0f, 0x1d, 0x2f, 0xd2, 0x35}};
static const GUID g_stackwalk = {0xdef2fe46, 0x7bd6, 0x4b80, {0xbd, 0x94, 0xf5, 0x7f, 0xe2, 0x0d, 0x0c, 0xe3}};
static const GUID g_lost = {0x6a399ae0, 0x4bc6, 0x4de9, {0x87, 0x0b, 0x36, 0x57, 0xf8, 0x94, 0x7e, 0x7e}};
static const GUID g_generic = {0x6b1d5e1a, 0x1c2f, 0x4b0a, {0x9a, 0x1e, 0x53, 0x49, 0x4d, 0x45, 0x54, 0x57}};

/* ---- kernel classes: property lists in payload order ---- */

enum { T_UNICODE = 1, T_ANSI = 2, T_INT32 = 7, T_UINT16 = 6, T_UINT32 = 8, T_POINTER = 16,
       T_WBEMSID = 310 };

typedef struct rt_prop {
  const WCHAR *name;
  USHORT intype;
} rt_prop;

typedef struct rt_class {
  const GUID *guid;
  UCHAR opcode, version;
  const WCHAR *task, *opname;
  const rt_prop *props;
  ULONG nprops;
} rt_class;

static const rt_prop process_props[] = {
  {L"UniqueProcessKey", T_POINTER}, {L"ProcessId", T_UINT32}, {L"ParentId", T_UINT32},
  {L"SessionId", T_UINT32}, {L"ExitStatus", T_INT32}, {L"DirectoryTableBase", T_POINTER},
  {L"Flags", T_UINT32}, {L"UserSID", T_WBEMSID}, {L"ImageFileName", T_ANSI},
  {L"CommandLine", T_UNICODE}, {L"PackageFullName", T_UNICODE}, {L"ApplicationId", T_UNICODE},
};

static const rt_prop tcp_send_props[] = {
  {L"PID", T_UINT32}, {L"size", T_UINT32}, {L"daddr", T_UINT32}, {L"saddr", T_UINT32},
  {L"dport", T_UINT16}, {L"sport", T_UINT16}, {L"startime", T_UINT32}, {L"endtime", T_UINT32},
  {L"seqnum", T_UINT32}, {L"connid", T_POINTER},
};

static const rt_class classes[] = {
  {&g_process, 1, 4, L"Process", L"Start", process_props,
   sizeof process_props / sizeof process_props[0]},
  {&g_tcpip, 10, 2, L"TcpIp", L"Send", tcp_send_props,
   sizeof tcp_send_props / sizeof tcp_send_props[0]},
};

const void *etwsim_rt_class(PEVENT_RECORD er) {
  size_t i;
  for (i = 0; i < sizeof classes / sizeof classes[0]; i++)
    if (IsEqualGUID(&er->EventHeader.ProviderId, classes[i].guid) &&
        er->EventHeader.EventDescriptor.Opcode == classes[i].opcode)
      return &classes[i];
  return NULL;
}

/* Bytes of one property at p (n bytes left); 0 if it does not fit. */
static ULONG prop_size(USHORT t, const BYTE *p, ULONG n) {
  ULONG k;
  switch (t) {
    case T_UINT16: return n >= 2 ? 2 : 0;
    case T_INT32: case T_UINT32: return n >= 4 ? 4 : 0;
    case T_POINTER: return n >= 8 ? 8 : 0;
    case T_WBEMSID: {
      /* TOKEN_USER (two pointers) then the SID; a 0 first ULONG: no SID */
      ULONG first = 0;
      if (n < 4) return 0;
      memcpy(&first, p, 4);
      if (first == 0) return 4;
      if (n < 16 + 8) return 0;
      k = 16 + 8 + 4u * p[16 + 1];
      return n >= k ? k : 0;
    }
    case T_ANSI:
      for (k = 0; k < n; k++)
        if (p[k] == 0) return k + 1;
      return 0;
    case T_UNICODE:
      for (k = 0; k + 1 < n; k += 2)
        if (p[k] == 0 && p[k + 1] == 0) return k + 2;
      return 0;
    default: return 0;
  }
}

int etwsim_rt_slice(PEVENT_RECORD er, const WCHAR *name, const BYTE **p, ULONG *len) {
  const rt_class *c = etwsim_rt_class(er);
  const BYTE *at = er->UserData;
  ULONG left = er->UserDataLength, i;
  if (c == NULL || name == NULL || at == NULL) return -1;
  for (i = 0; i < c->nprops; i++) {
    ULONG sz = prop_size(c->props[i].intype, at, left);
    if (sz == 0) return -1;
    if (wcscmp(c->props[i].name, name) == 0) {
      *p = at;
      *len = sz;
      return 0;
    }
    at += sz;
    left -= sz;
  }
  return -1;
}

ULONG etwsim_rt_event_info(PEVENT_RECORD er, PTRACE_EVENT_INFO info, PULONG size) {
  const rt_class *c = etwsim_rt_class(er);
  ULONG need, at, i;
  if (c == NULL) return ERROR_NOT_FOUND;
  at = (ULONG)(sizeof(TRACE_EVENT_INFO) + (c->nprops - 1) * sizeof(EVENT_PROPERTY_INFO));
  need = at + (ULONG)((wcslen(c->task) + 1 + wcslen(c->opname) + 1) * sizeof(WCHAR));
  for (i = 0; i < c->nprops; i++) need += (ULONG)((wcslen(c->props[i].name) + 1) * sizeof(WCHAR));
  if (info == NULL || *size < need) {
    *size = need;
    return ERROR_INSUFFICIENT_BUFFER;
  }
  ZeroMemory(info, need);
  info->ProviderGuid = *c->guid;
  info->EventDescriptor = er->EventHeader.EventDescriptor;
  info->DecodingSource = DecodingSourceWbem;
  info->TaskNameOffset = at;
  memcpy((char *)info + at, c->task, (wcslen(c->task) + 1) * sizeof(WCHAR));
  at += (ULONG)((wcslen(c->task) + 1) * sizeof(WCHAR));
  info->OpcodeNameOffset = at;
  memcpy((char *)info + at, c->opname, (wcslen(c->opname) + 1) * sizeof(WCHAR));
  at += (ULONG)((wcslen(c->opname) + 1) * sizeof(WCHAR));
  info->PropertyCount = info->TopLevelPropertyCount = c->nprops;
  for (i = 0; i < c->nprops; i++) {
    size_t nb = (wcslen(c->props[i].name) + 1) * sizeof(WCHAR);
    info->EventPropertyInfoArray[i].NameOffset = at;
    info->EventPropertyInfoArray[i].nonStructType.InType = c->props[i].intype;
    info->EventPropertyInfoArray[i].count = 1;
    memcpy((char *)info + at, c->props[i].name, nb);
    at += (ULONG)nb;
  }
  *size = need;
  return ERROR_SUCCESS;
}

/* ---- payloads ---- */

typedef struct payload {
  BYTE b[2 * SIM_CMDLINE_WCHARS * sizeof(WCHAR) + 256];
  ULONG n;
} payload;

static void add(payload *pl, const void *p, ULONG n) {
  if (pl->n + n > sizeof pl->b) return;
  memcpy(pl->b + pl->n, p, n);
  pl->n += n;
}

static void add32(payload *pl, uint32_t v) { add(pl, &v, 4); }
static void add16(payload *pl, uint16_t v) { add(pl, &v, 2); }
static void add64(payload *pl, uint64_t v) { add(pl, &v, 8); }

static void process_start(payload *pl, const sim_record *r, const WCHAR *cmdline) {
  /* S-1-5-18 after a TOKEN_USER (SID pointer + attributes) */
  static const BYTE sid[12] = {1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0};
  add64(pl, 0xFFFF800000000000ull + r->value);
  add32(pl, 1000 + (uint32_t)r->value);   /* ProcessId */
  add32(pl, r->pid);                      /* ParentId */
  add32(pl, 1);                           /* SessionId */
  add32(pl, 259);                         /* ExitStatus: STILL_ACTIVE */
  add64(pl, 0x1aa000);                    /* DirectoryTableBase */
  add32(pl, 0);                           /* Flags */
  add64(pl, 0xFFFF900000001000ull);
  add64(pl, 0);
  add(pl, sid, sizeof sid);
  add(pl, "sim.exe", 8);
  add(pl, cmdline, (ULONG)((wcslen(cmdline) + 1) * sizeof(WCHAR)));
  add16(pl, 0);                           /* PackageFullName "" */
  add16(pl, 0);                           /* ApplicationId "" */
}

static void tcp_send(payload *pl, const sim_record *r) {
  add32(pl, r->pid);
  add32(pl, 100 + (uint32_t)r->value);    /* size */
  add32(pl, 0x0100007f);                  /* daddr 127.0.0.1 */
  add32(pl, 0x0100007f);                  /* saddr */
  add16(pl, 0x901f);                      /* dport 8080, network order */
  add16(pl, 0x50c3);                      /* sport 50000 */
  add32(pl, 0);
  add32(pl, 0);
  add32(pl, (uint32_t)r->value);          /* seqnum */
  add64(pl, 0);                           /* connid */
}

/* ---- consumers ---- */

typedef struct rt_reader {
  int used, closed, gone, running;
  TRACEHANDLE logger;
  PEVENT_TRACE_LOGFILEW lf;
  sim_record *q;
  ULONG head, count, cap;
  ULONG lost_buffers;
} rt_reader;

static rt_reader rts[SIM_MAX_RT];
static int hold; /* a slow consumer: ProcessTrace takes nothing while set */
static ULONG inflight; /* records taken from a queue whose callback has not returned */
static SRWLOCK lock = SRWLOCK_INIT;
static CONDITION_VARIABLE cv = CONDITION_VARIABLE_INIT;

int etwsim_rt_deliver(TRACEHANDLE h, const sim_record *r, unsigned n, int *dropped) {
  int took = 0;
  size_t i;
  unsigned k;
  AcquireSRWLockExclusive(&lock);
  for (i = 0; i < SIM_MAX_RT; i++) {
    rt_reader *c = &rts[i];
    if (!c->used || c->closed || c->gone || c->logger != h) continue;
    took++;
    if (c->count + n > c->cap) {
      c->lost_buffers++; /* the whole buffer is lost to this consumer */
      (*dropped)++;
      continue;
    }
    for (k = 0; k < n; k++) c->q[(c->head + c->count++) % c->cap] = r[k];
  }
  ReleaseSRWLockExclusive(&lock);
  WakeAllConditionVariable(&cv);
  return took;
}

void etwsim_rt_gone(TRACEHANDLE h) {
  size_t i;
  AcquireSRWLockExclusive(&lock);
  for (i = 0; i < SIM_MAX_RT; i++)
    if (rts[i].used && rts[i].logger == h) rts[i].gone = 1;
  ReleaseSRWLockExclusive(&lock);
  WakeAllConditionVariable(&cv);
}

ULONG etwsim_rt_pending(void) {
  ULONG n;
  size_t i;
  AcquireSRWLockExclusive(&lock);
  n = inflight;
  for (i = 0; i < SIM_MAX_RT; i++)
    if (rts[i].used) n += rts[i].count + rts[i].lost_buffers;
  ReleaseSRWLockExclusive(&lock);
  return n;
}

void etwsim_rt_hold(int on) {
  AcquireSRWLockExclusive(&lock);
  hold = on;
  ReleaseSRWLockExclusive(&lock);
  WakeAllConditionVariable(&cv);
}

void etwsim_rt_reset(void) {
  size_t i;
  AcquireSRWLockExclusive(&lock);
  hold = 0;
  for (i = 0; i < SIM_MAX_RT; i++)
    if (rts[i].used) rts[i].gone = 1;
  ReleaseSRWLockExclusive(&lock);
  WakeAllConditionVariable(&cv);
}

TRACEHANDLE etwsim_rt_open(PEVENT_TRACE_LOGFILEW lf) {
  sim_logger *l;
  size_t i;
  unsigned long ma, mi, bu;
  etwsim_version(&ma, &mi, &bu); /* initialises */
  l = etwsim_find_name(lf->LoggerName);
  if (l == NULL || !(l->mode & EVENT_TRACE_REAL_TIME_MODE)) {
    SetLastError(ERROR_WMI_INSTANCE_NOT_FOUND);
    return INVALID_PROCESSTRACE_HANDLE;
  }
  if (!sim.admin) {
    SetLastError(ERROR_ACCESS_DENIED);
    return INVALID_PROCESSTRACE_HANDLE;
  }
  AcquireSRWLockExclusive(&lock);
  for (i = 0; i < SIM_MAX_RT; i++) {
    rt_reader *c = &rts[i];
    if (c->used) continue;
    ZeroMemory(c, sizeof *c);
    c->cap = sim.rt_queue_max ? sim.rt_queue_max : 1;
    c->q = malloc(c->cap * sizeof *c->q);
    if (c->q == NULL) break;
    c->used = 1;
    c->logger = l->handle;
    c->lf = lf;
    /* The playback file comes first. */
    c->count = l->playback_n < c->cap ? l->playback_n : c->cap;
    if (c->count) memcpy(c->q, l->playback, c->count * sizeof *c->q);
    if (l->playback_n > c->cap) c->lost_buffers++;
    l->playback_n = 0;
    ReleaseSRWLockExclusive(&lock);
    ZeroMemory(&lf->LogfileHeader, sizeof lf->LogfileHeader);
    lf->LogfileHeader.NumberOfProcessors = sim.ncpus;
    lf->LogfileHeader.PointerSize = 8;
    lf->LogfileHeader.LogFileMode = l->mode;
    return SIM_RT_HANDLE_BASE + i;
  }
  ReleaseSRWLockExclusive(&lock);
  SetLastError(ERROR_NO_SYSTEM_RESOURCES);
  return INVALID_PROCESSTRACE_HANDLE;
}

static rt_reader *rt_get(TRACEHANDLE h) {
  if (h < SIM_RT_HANDLE_BASE || h >= SIM_RT_HANDLE_BASE + SIM_MAX_RT) return NULL;
  return rts[h - SIM_RT_HANDLE_BASE].used ? &rts[h - SIM_RT_HANDLE_BASE] : NULL;
}

/* One callback: header fields as ETW fills them for a kernel event. */
static void emit(rt_reader *c, const GUID *g, UCHAR opcode, UCHAR version,
                 const sim_record *r, const payload *pl) {
  EVENT_RECORD er;
  FILETIME ft;
  ZeroMemory(&er, sizeof er);
  er.EventHeader.Size = sizeof er.EventHeader;
  er.EventHeader.Flags = EVENT_HEADER_FLAG_CLASSIC_HEADER | EVENT_HEADER_FLAG_64_BIT_HEADER;
  er.EventHeader.ProviderId = *g;
  er.EventHeader.EventDescriptor.Opcode = opcode;
  er.EventHeader.EventDescriptor.Version = version;
  if (r != NULL) {
    er.EventHeader.TimeStamp.QuadPart = (LONGLONG)r->time;
    er.EventHeader.ProcessId = r->pid;
    er.BufferContext.ProcessorIndex = r->cpu; /* ProcessorNumber is its low byte */
  } else {
    GetSystemTimeAsFileTime(&ft);
    er.EventHeader.TimeStamp.QuadPart = (LONGLONG)(((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime);
    er.EventHeader.ProcessId = 0xFFFFFFFFu;
  }
  er.EventHeader.ThreadId = 1;
  er.UserDataLength = pl ? (USHORT)pl->n : 0;
  er.UserData = pl ? (PVOID)pl->b : NULL;
  er.UserContext = c->lf->Context;
  if (c->lf->EventRecordCallback != NULL) c->lf->EventRecordCallback(&er);
}

static void emit_record(rt_reader *c, const sim_record *r, payload *pl, const WCHAR *cmdline) {
  uint64_t v = r->value;
  pl->n = 0;
  if (r->opcode == 0) { /* EVENT_TRACE_FLAG_PROCESS */
    process_start(pl, r, cmdline);
    emit(c, &g_process, 1, 4, r, pl);
  } else if (r->opcode == 16) { /* EVENT_TRACE_FLAG_NETWORK_TCPIP */
    tcp_send(pl, r);
    emit(c, &g_tcpip, 10, 2, r, pl);
  } else {
    add32(pl, r->pid);
    add64(pl, v);
    add(pl, L"sim", 8);
    emit(c, &g_generic, r->opcode, 0, r, pl);
  }
  if (r->flags & SIM_REC_STACK) {
    pl->n = 0;
    add64(pl, r->time);
    add32(pl, r->pid);
    add32(pl, 1);
    add64(pl, 0xFFFFF80000001234ull);
    emit(c, &g_stackwalk, 32, 2, r, pl); /* StackWalk_Event */
  }
}

ULONG etwsim_rt_process(TRACEHANDLE h) {
  rt_reader *c = rt_get(h);
  payload *pl;
  sim_record r;
  ULONG lost, k;
  WCHAR *cmdline;
  if (c == NULL) return ERROR_INVALID_HANDLE;
  if ((k = etwsim_take_failure("process")) != 0) return k; /* a spec's injected failure */
  pl = malloc(sizeof *pl);
  cmdline = malloc(sizeof sim.command_line);
  if (pl == NULL || cmdline == NULL) {
    free(pl);
    free(cmdline);
    return ERROR_NOT_ENOUGH_MEMORY;
  }
  AcquireSRWLockExclusive(&lock);
  c->running = 1;
  memcpy(cmdline, sim.command_line, sizeof sim.command_line);
  ReleaseSRWLockExclusive(&lock);
  pl->n = 0;
  add32(pl, 64 * 1024); /* a piece of TRACE_LOGFILE_HEADER: BufferSize */
  emit(c, &g_eventtrace, 0, 2, NULL, pl);   /* the header */
  pl->n = 0;
  add32(pl, 2000);      /* a piece of SystemConfig_CPU: MHz */
  emit(c, &g_sysconfig, 10, 3, NULL, pl);   /* rundown */
  for (;;) {
    AcquireSRWLockExclusive(&lock);
    while (((c->count == 0 && c->lost_buffers == 0) || hold) && !c->closed && !c->gone)
      SleepConditionVariableSRW(&cv, &lock, INFINITE, 0);
    lost = c->lost_buffers;
    c->lost_buffers = 0;
    if (lost == 0 && c->count == 0) break; /* closed or gone, nothing left */
    if (lost == 0) {
      r = c->q[c->head];
      c->head = (c->head + 1) % c->cap;
      c->count--;
    }
    inflight++;
    ReleaseSRWLockExclusive(&lock);
    for (k = 0; k < lost; k++) emit(c, &g_lost, 33, 2, NULL, NULL); /* RTLostBuffer */
    if (lost == 0) emit_record(c, &r, pl, cmdline);
    AcquireSRWLockExclusive(&lock);
    inflight--;
    ReleaseSRWLockExclusive(&lock);
  }
  c->running = 0;
  if (c->closed) { /* CloseTrace came first: the handle is done */
    free(c->q);
    c->used = 0;
  }
  ReleaseSRWLockExclusive(&lock);
  free(pl);
  free(cmdline);
  return ERROR_SUCCESS;
}

ULONG etwsim_rt_close(TRACEHANDLE h) {
  rt_reader *c;
  ULONG rc = ERROR_SUCCESS;
  AcquireSRWLockExclusive(&lock);
  c = rt_get(h);
  if (c == NULL || c->closed) {
    rc = ERROR_INVALID_HANDLE;
  } else if (c->running) {
    c->closed = 1;
    rc = ERROR_CTX_CLOSE_PENDING;
  } else {
    free(c->q);
    c->used = 0;
  }
  ReleaseSRWLockExclusive(&lock);
  WakeAllConditionVariable(&cv);
  return rc;
}
