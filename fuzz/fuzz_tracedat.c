/*
 * fuzz_tracedat.c - libFuzzer harness: the trace.dat reader as the module
 * uses it (kl_backend_impl.trace_open / trace_next / trace_info) on the
 * input written to an anonymous in-memory file.
 *
 * Every open forks the reader's probe child, so this harness runs a few
 * dozen inputs per second; fuzz_pages.c drives the page reader alone and
 * fuzz_header.c the header walk, both much faster.
 */
#define _GNU_SOURCE
#include "kl.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);

/* Full stacks for every allocation: libtracecmd allocates with sscanf's
 * %ms, and the fast unwinder stops in libc (built without frame pointers),
 * so its leaks on corrupt input would show no libtracecmd frame and escape
 * fuzz/lsan.supp.  Allocation is not what makes this harness slow. */
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  kl_err err;
  kl_trace *t;
  kl_event ev;
  kl_trace_info info;
  int fd = memfd_create("fuzz.dat", MFD_CLOEXEC), n = 0;

  if (fd < 0) return 0;
  if (size && write(fd, data, size) != (ssize_t)size) {
    close(fd);
    return 0;
  }
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  t = kl_backend_impl.trace_open(path, &err);
  if (t) {
    kl_filter f = {NULL, 0, -1, -1, 0, 0};
    while (n < 100000 && kl_backend_impl.trace_next(t, &f, n == 0, &ev, &err) > 0) n++;
    (void)kl_backend_impl.trace_info(t, &info, &err);
    kl_backend_impl.trace_close(t);
  }
  close(fd);
  return 0;
}
