/*
 * fuzz_etl.c - libFuzzer harness for the portable .etl reader (csrc/etl).
 *
 *   sh fuzz/build.sh build-fuzz
 *   build-fuzz/fuzz_etl build-fuzz/corpus/fuzz_etl fuzz/corpus/fuzz_etl
 *
 * Each input is a whole file, read from memory: open, info (every record
 * once), then every event with all fields decoded; then once more with a
 * filter.  Any crash, leak or undefined behaviour is a finding; errors are
 * the expected outcome for most inputs.
 */
#include <stdint.h>
#include <string.h>

#include "etl/etl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void drain(kl_etl *t, const kl_filter *f) {
  kl_event ev;
  kl_err err;
  int r, rewind = 1, n = 0;
  while ((r = kl_etl_next(t, f, rewind, &ev, &err)) == 1 && n++ < 1000000) rewind = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  etl_src src;
  kl_err err;
  kl_trace_info info;
  kl_etl *t;
  kl_filter f;
  static const char *const names[] = {"Process", "Stack", "TcpIp:SendIPV6"};
  etl_src_mem(&src, data, size);
  if (src.read_at == NULL) return 0;
  t = kl_etl_open_src(&src, "fuzz input", &err);
  if (t == NULL) return 0;
  kl_etl_info(t, &info, &err);
  drain(t, NULL);
  memset(&f, 0, sizeof f);
  f.names = names;
  f.nnames = 3;
  f.cpu = 1;
  f.pid = -1;
  drain(t, &f);
  kl_etl_close(t);
  return 0;
}
