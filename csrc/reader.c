/*
 * reader.c - which reader serves kl.open(path): the file's first bytes
 * decide.  An .etl file (a WMI buffer header followed by the log-file
 * header record) goes to the portable reader in csrc/etl on every
 * platform; anything else to the backend's trace_* functions (trace.dat
 * through libtracecmd on Linux; on Windows the backend's reader, which
 * serves the ETW simulator's files in the test build).
 */
#include "kl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etl/etl.h"

struct kl_reader {
  kl_etl *etl;       /* one of the two */
  kl_trace *backend;
  char path[KL_PATH_MAX];  /* for the .etl reader's messages */
};

/* An .etl read error names the file, as the trace.dat reader's do. */
static int etl_fail(const kl_reader *r, kl_err *err) {
  char m[KL_MSG_MAX];
  snprintf(m, sizeof m, "%s", err->msg);
  kl_err_set(err, err->code, err->sys, "read trace %s: %s", r->path, m);
  return -1;
}

static int looks_like_etl(const char *path) {
  uint8_t b[ETL_BUF_HDR + 8];
  size_t n = 0;
  int regular;
  FILE *f;
  /* only regular files are looked into (opening a FIFO would block); the
   * backend reports on anything else */
  if (etl_stat(path, &regular) != 0 || !regular) return 0;
  if ((f = etl_fopen(path)) == NULL) return 0;
  n = fread(b, 1, sizeof b, f);
  fclose(f);
  return kl_etl_sniff(b, n);
}

kl_reader *kl_reader_open(const char *path, kl_err *err) {
  kl_reader *r = (kl_reader *)calloc(1, sizeof *r);
  if (r == NULL) {
    kl_err_set(err, KL_E_NO_RESOURCES, 0, "open %s: out of memory", path);
    return NULL;
  }
  snprintf(r->path, sizeof r->path, "%s", path);
  if (looks_like_etl(path)) r->etl = kl_etl_open(path, err);
  else r->backend = kl_backend_impl.trace_open(path, err);
  if (r->etl == NULL && r->backend == NULL) {
    free(r);
    return NULL;
  }
  return r;
}

int kl_reader_info(kl_reader *r, kl_trace_info *info, kl_err *err) {
  memset(info, 0, sizeof *info);
  if (r->etl) return kl_etl_info(r->etl, info, err) == 0 ? 0 : etl_fail(r, err);
  return kl_backend_impl.trace_info(r->backend, info, err);
}

int kl_reader_next(kl_reader *r, const kl_filter *f, int rewind, kl_event *ev, kl_err *err) {
  if (r->etl) {
    int rc = kl_etl_next(r->etl, f, rewind, ev, err);
    return rc < 0 ? etl_fail(r, err) : rc;
  }
  return kl_backend_impl.trace_next(r->backend, f, rewind, ev, err);
}

void kl_reader_close(kl_reader *r) {
  if (r == NULL) return;
  if (r->etl) kl_etl_close(r->etl);
  if (r->backend) kl_backend_impl.trace_close(r->backend);
  free(r);
}
