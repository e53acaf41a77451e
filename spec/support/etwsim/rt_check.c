/*
 * rt_check.c - the simulator's real-time consumer side against what
 * Microsoft documents for OpenTrace, ProcessTrace and CloseTrace, at the C
 * level (no backend in between):
 *   - OpenTraceW on a name that no real-time session has fails with
 *     ERROR_WMI_INSTANCE_NOT_FOUND;
 *   - ProcessTrace blocks and calls back once per event, the trace header
 *     first; EVENT_RECORDs carry the kernel layout (classic header flags,
 *     ProcessorIndex, system-time stamps);
 *   - CloseTrace while ProcessTrace runs answers ERROR_CTX_CLOSE_PENDING and
 *     ProcessTrace returns; the end of the session ends ProcessTrace too;
 *   - a closed handle is invalid.
 * Prints TAP; run under Wine by .ci/windows:  etwsim_rt_check.exe
 */
#include "etwsim.h"

#include <stdio.h>
#include <string.h>

#ifndef ERROR_CTX_CLOSE_PENDING
#define ERROR_CTX_CLOSE_PENDING 7007L
#endif
#ifndef ERROR_WMI_INSTANCE_NOT_FOUND
#define ERROR_WMI_INSTANCE_NOT_FOUND 4201L
#endif

static const GUID g_eventtrace = {0x68fdd900, 0x4a3e, 0x11d1, {0x84, 0xf4, 0x00, 0x00, 0xf8, 0x04, 0x64, 0xe3}};
static const GUID g_sysconfig = {0x01853a65, 0x418f, 0x4f36, {0xae, 0xfc, 0xdc, 0x0f, 0x1d, 0x2f, 0xd2, 0x35}};
static const GUID g_process = {0x3d6fa8d0, 0xfe05, 0x11d0, {0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c}};

static int ntest, nfail;

static void ok(int cond, const char *what) {
  ntest++;
  if (!cond) nfail++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntest, what);
}

typedef struct seen {
  CRITICAL_SECTION lock;
  LONG n;
  GUID first, second;
  int process, classic, sane_time;
} seen;

static void WINAPI on_event(PEVENT_RECORD er) {
  seen *s = er->UserContext;
  const EVENT_HEADER *h = &er->EventHeader;
  EnterCriticalSection(&s->lock);
  if (s->n == 0) s->first = h->ProviderId;
  if (s->n == 1) s->second = h->ProviderId;
  if (IsEqualGUID(&h->ProviderId, &g_process) && h->EventDescriptor.Opcode == 1) {
    s->process++;
    if ((h->Flags & EVENT_HEADER_FLAG_CLASSIC_HEADER) && er->UserDataLength > 0) s->classic++;
    /* 100 ns ticks since 1601: after 2020 */
    if ((ULONGLONG)h->TimeStamp.QuadPart > 132223104000000000ULL) s->sane_time++;
  }
  s->n++;
  LeaveCriticalSection(&s->lock);
}

typedef struct consumer {
  TRACEHANDLE h;
  ULONG rc;
} consumer;

static DWORD WINAPI run(LPVOID arg) {
  consumer *c = arg;
  c->rc = etwsim_ProcessTrace(&c->h, 1, NULL, NULL);
  return 0;
}

/* A real-time private kernel session through a hand-made block. */
static ULONG start_rt(const WCHAR *name, TRACEHANDLE *h) {
  static struct {
    EVENT_TRACE_PROPERTIES p;
    WCHAR names[2 * 1024];
  } b;
  ZeroMemory(&b, sizeof b);
  b.p.Wnode.BufferSize = sizeof b;
  b.p.Wnode.Flags = WNODE_FLAG_TRACED_GUID;
  b.p.Wnode.ClientContext = 1;
  b.p.LoggerNameOffset = sizeof b.p;
  b.p.LogFileMode = EVENT_TRACE_REAL_TIME_MODE | 0x02000000 /* SYSTEM_LOGGER_MODE */;
  b.p.EnableFlags = EVENT_TRACE_FLAG_PROCESS | EVENT_TRACE_FLAG_NETWORK_TCPIP;
  return etwsim_StartTraceW(h, name, &b.p);
}

static ULONG control(const WCHAR *name, ULONG code) {
  static struct {
    EVENT_TRACE_PROPERTIES p;
    WCHAR names[2 * 1024];
  } b;
  ZeroMemory(&b, sizeof b);
  b.p.Wnode.BufferSize = sizeof b;
  b.p.Wnode.Flags = WNODE_FLAG_TRACED_GUID;
  b.p.LoggerNameOffset = sizeof b.p;
  b.p.LogFileNameOffset = sizeof b.p + 1024 * sizeof(WCHAR);
  return etwsim_ControlTraceW(0, name, &b.p, code);
}

static int wait_for(seen *s, LONG n) {
  int i;
  for (i = 0; i < 400; i++) {
    LONG got;
    EnterCriticalSection(&s->lock);
    got = s->n;
    LeaveCriticalSection(&s->lock);
    if (got >= n) return 1;
    Sleep(5);
  }
  return 0;
}

static HANDLE open_consumer(const WCHAR *name, EVENT_TRACE_LOGFILEW *lf, seen *s,
                            consumer *c) {
  ZeroMemory(lf, sizeof *lf);
  lf->LoggerName = (LPWSTR)name;
  lf->ProcessTraceMode = PROCESS_TRACE_MODE_REAL_TIME | PROCESS_TRACE_MODE_EVENT_RECORD;
  lf->EventRecordCallback = on_event;
  lf->Context = s;
  c->h = etwsim_OpenTraceW(lf);
  c->rc = 0xFFFFFFFF;
  if (c->h == INVALID_PROCESSTRACE_HANDLE) return NULL;
  return CreateThread(NULL, 0, run, c, 0, NULL);
}

static void check_close(const WCHAR *name) {
  EVENT_TRACE_LOGFILEW lf;
  seen s;
  consumer c;
  HANDLE t;
  int i;
  ZeroMemory(&s, sizeof s);
  InitializeCriticalSection(&s.lock);
  t = open_consumer(name, &lf, &s, &c);
  ok(t != NULL && lf.LogfileHeader.PointerSize == 8, "OpenTraceW attaches to a real-time session");
  if (t == NULL) return;
  for (i = 0; i < 3; i++) control(name, EVENT_TRACE_CONTROL_QUERY); /* 3 buffers pass */
  ok(wait_for(&s, 2 + 6), "ProcessTrace calls back once per event: header, rundown, 6 events");
  ok(IsEqualGUID(&s.first, &g_eventtrace) && IsEqualGUID(&s.second, &g_sysconfig),
     "the trace header comes first, then SystemConfig");
  ok(s.process == 3 && s.classic == 3 && s.sane_time == 3,
     "Process/Start records: classic header, payload, system-time stamps");
  ok(WaitForSingleObject(t, 100) == WAIT_TIMEOUT, "ProcessTrace keeps blocking while the session runs");
  ok(etwsim_CloseTrace(c.h) == ERROR_CTX_CLOSE_PENDING,
     "CloseTrace while ProcessTrace runs answers ERROR_CTX_CLOSE_PENDING");
  ok(WaitForSingleObject(t, 5000) == WAIT_OBJECT_0 && c.rc == ERROR_SUCCESS,
     "then ProcessTrace returns ERROR_SUCCESS");
  ok(etwsim_CloseTrace(c.h) == ERROR_INVALID_HANDLE, "the closed handle is invalid");
  CloseHandle(t);
  DeleteCriticalSection(&s.lock);
}

static void check_session_end(const WCHAR *name) {
  EVENT_TRACE_LOGFILEW lf;
  seen s;
  consumer c;
  HANDLE t;
  ZeroMemory(&s, sizeof s);
  InitializeCriticalSection(&s.lock);
  t = open_consumer(name, &lf, &s, &c);
  ok(t != NULL, "a second consumer attaches");
  if (t == NULL) return;
  ok(wait_for(&s, 2), "it gets its header and rundown");
  ok(control(name, EVENT_TRACE_CONTROL_STOP) == ERROR_SUCCESS, "the session stops");
  ok(WaitForSingleObject(t, 5000) == WAIT_OBJECT_0 && c.rc == ERROR_SUCCESS,
     "the end of the session ends ProcessTrace");
  ok(s.process == 1, "the buffer written at STOP is delivered before ProcessTrace ends");
  ok(etwsim_CloseTrace(c.h) == ERROR_SUCCESS, "CloseTrace after ProcessTrace returned succeeds");
  CloseHandle(t);
  DeleteCriticalSection(&s.lock);
}

int main(void) {
  WCHAR name[64];
  EVENT_TRACE_LOGFILEW lf;
  TRACEHANDLE h = 0, r;
  printf("1..16\n");
  swprintf(name, 64, L"klt_rtcheck_%lu", (unsigned long)GetCurrentProcessId());
  ZeroMemory(&lf, sizeof lf);
  lf.LoggerName = name;
  lf.ProcessTraceMode = PROCESS_TRACE_MODE_REAL_TIME | PROCESS_TRACE_MODE_EVENT_RECORD;
  r = etwsim_OpenTraceW(&lf);
  ok(r == INVALID_PROCESSTRACE_HANDLE && GetLastError() == ERROR_WMI_INSTANCE_NOT_FOUND,
     "OpenTraceW on a session that does not run: ERROR_WMI_INSTANCE_NOT_FOUND");
  ok(start_rt(name, &h) == ERROR_SUCCESS, "a real-time private kernel session starts");
  check_close(name);
  check_session_end(name);
  return nfail ? 1 : 0;
}
