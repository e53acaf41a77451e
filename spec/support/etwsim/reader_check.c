/*
 * reader_check.c - the .etl reader (csrc/etw/reader.c) against the ETW
 * contract simulator, at the C level: this program drives kl_backend_impl
 * directly (spec/etw_trace_spec.lua reads through the binding's open()).  A simulated private kernel
 * session writes a file (one record per enabled flag per buffer); the reader
 * reads it back through OpenTraceW/ProcessTrace/Tdh* (the simulator's).
 * Prints TAP; run under Wine by .ci/windows:  etw_reader_check.exe DIR
 */
#include "../../../csrc/etw/etw.h"

#include <stdio.h>
#include <string.h>

static int ntest, nfail;

static void ok(int cond, const char *what) {
  ntest++;
  if (!cond) nfail++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntest, what);
}

static int count(kl_trace *t, const kl_filter *f) {
  kl_event ev;
  kl_err err;
  int n = 0, r = kl_backend_impl.trace_next(t, f, 1, &ev, &err);
  while (r == 1) {
    n++;
    r = kl_backend_impl.trace_next(t, f, 0, &ev, &err);
  }
  return r == 0 ? n : -1;
}

static const kl_field *field(const kl_event *ev, const char *name) {
  size_t i;
  for (i = 0; i < ev->nfields; i++)
    if (strcmp(ev->fields[i].name, name) == 0) return &ev->fields[i];
  return NULL;
}

/* Missing and foreign files fail with the right codes. */
static void check_open_errors(const char *bad) {
  kl_err err;
  kl_trace *t = kl_backend_impl.trace_open(bad, &err);
  FILE *fp;
  ok(t == NULL && err.code == KL_E_NOT_FOUND && strstr(err.msg, "Win32 error 2") != NULL,
     "a missing file gives not_found with Win32 error 2");
  fp = fopen(bad, "wb");
  if (fp != NULL) {
    fputs("not a trace at all", fp);
    fclose(fp);
  }
  t = kl_backend_impl.trace_open(bad, &err);
  ok(t == NULL && err.code == KL_E_INVALID && strstr(err.msg, "Win32 error 11") != NULL,
     "a file that is not a trace gives invalid with Win32 error 11");
  remove(bad);
}

/* A simulated session writes path; returns the number of events, -1. */
static int write_capture(const char *name, const char *path) {
  const kl_backend *B = &kl_backend_impl;
  kl_config cfg;
  kl_err err;
  kl_status st;
  kl_session *s;
  int i, r;
  memset(&cfg, 0, sizeof cfg);
  cfg.name = name;
  cfg.flags[0] = kl_flag_find("process");
  cfg.flags[1] = kl_flag_find("thread");
  cfg.nflags = 2;
  cfg.file = path;
  cfg.mode = KL_MODE_SEQUENTIAL;
  cfg.max_mb = 4;
  cfg.overwrite = 1;
  s = B->start(&cfg, &err);
  ok(s != NULL, "a simulated private kernel session starts, writing a UTF-8 named file");
  if (s == NULL) {
    printf("# %s\n", err.msg);
    return -1;
  }
  for (i = 0; i < 5; i++) B->flush(s, NULL, 0, &err);
  kl_status_init(&st);
  r = B->stop(s, NULL, 0, &st, &err);
  B->release(s);
  ok(r == 0 && st.buffers_written > 0, "it stops with buffers written");
  return (int)(st.buffers_written * 2); /* two flags: two records per buffer */
}

static void check_info(kl_trace *t, int total) {
  kl_trace_info info;
  kl_err err;
  int64_t sum = 0;
  size_t k;
  int names = 1;
  ok(kl_backend_impl.trace_info(t, &info, &err) == 0 && strcmp(info.format, "etl") == 0 &&
         info.ncpus == 4 && info.nevent_types == 2,
     "trace_info: etl, the header's CPU count, two event types");
  for (k = 0; k < info.nevent_types; k++) {
    sum += info.event_types[k].count;
    if (strcmp(info.event_types[k].system, "SimKernel") != 0) names = 0;
  }
  ok(sum == total && names, "event type counts add up; the system is TDH's task name");
}

/* Every event in order with its fields; returns how many ran on CPU 0. */
static int check_events(kl_trace *t, int total) {
  const kl_backend *B = &kl_backend_impl;
  kl_event ev;
  kl_err err;
  int all = 0, cpu0 = 0, fields_ok = 1, order_ok = 1;
  uint64_t last_value = 0, prev_time = 0;
  int r = B->trace_next(t, NULL, 1, &ev, &err);
  while (r == 1) {
    const kl_field *pidf = field(&ev, "ProcessId"), *val = field(&ev, "Value"),
                   *txt = field(&ev, "Text");
    all++;
    if (ev.cpu == 0) cpu0++;
    if (ev.nfields != 3 || pidf == NULL || pidf->type != KL_F_UINT ||
        pidf->v.u != GetCurrentProcessId() || val == NULL || val->type != KL_F_UINT ||
        txt == NULL || txt->type != KL_F_STR || txt->v.s.len != 3 ||
        memcmp(txt->v.s.p, "sim", 3) != 0 || ev.pid != (int)GetCurrentProcessId())
      fields_ok = 0;
    if (val != NULL && all > 1 && val->v.u <= last_value) order_ok = 0;
    if (val != NULL) last_value = val->v.u;
    if (ev.time < prev_time || ev.time == 0) order_ok = 0;
    prev_time = ev.time;
    r = B->trace_next(t, NULL, 0, &ev, &err);
  }
  ok(r == 0 && all == total, "trace_next gives every event, then 0");
  ok(fields_ok, "TDH properties decode: ProcessId (uint), Value (uint), Text (string), pid");
  ok(order_ok, "events come in file order with FILETIME-based ns timestamps");
  ok(B->trace_next(t, NULL, 0, &ev, &err) == 0, "the end stays the end");
  printf("# %d events read\n", all);
  return cpu0;
}

static void check_filters(kl_trace *t, int total, int cpu0) {
  const char *n1[] = {"flag_0x00000001"}, *n2[] = {"SimKernel:flag_0x00000002"},
             *n3[] = {"SimKernel"};
  kl_filter f;
  memset(&f, 0, sizeof f);
  f.cpu = -1;
  f.pid = -1;
  f.names = n1;
  f.nnames = 1;
  ok(count(t, &f) == total / 2, "filter by event name");
  f.names = n2;
  ok(count(t, &f) == total / 2, "filter by system:event");
  f.names = n3;
  ok(count(t, &f) == total, "filter by system");
  f.names = NULL;
  f.nnames = 0;
  f.cpu = 0;
  ok(count(t, &f) == cpu0 && cpu0 > 0, "filter by cpu");
  f.cpu = -1;
  f.pid = (int)GetCurrentProcessId() + 1;
  ok(count(t, &f) == 0, "filter by another pid gives nothing; rewind restarts");
}

int main(int argc, char **argv) {
  char path[1024], bad[1024], name[64];
  kl_err err;
  kl_trace *t;
  const char *dir = argc > 1 ? argv[1] : ".";
  int total, cpu0;
  WCHAR w[1024];

  printf("1..16\n");
  snprintf(name, sizeof name, "klt_reader_%lu", (unsigned long)GetCurrentProcessId());
  /* UTF-8 in the file name: e with an acute accent. */
  snprintf(path, sizeof path, "%s\\klt_r\xc3\xa9" "ader_%lu.etl", dir,
           (unsigned long)GetCurrentProcessId());
  snprintf(bad, sizeof bad, "%s\\klt_reader_bad_%lu.etl", dir, (unsigned long)GetCurrentProcessId());
  check_open_errors(bad);
  if ((total = write_capture(name, path)) < 0) return 1;
  t = kl_backend_impl.trace_open(path, &err);
  ok(t != NULL, "the reader opens the file through OpenTraceW/ProcessTrace");
  if (t == NULL) {
    printf("# %s\n", err.msg);
    return 1;
  }
  check_info(t, total);
  cpu0 = check_events(t, total);
  check_filters(t, total, cpu0);
  kl_backend_impl.trace_close(t);
  MultiByteToWideChar(CP_UTF8, 0, path, -1, w, 1024);
  DeleteFileW(w);
  return nfail ? 1 : 0;
}
