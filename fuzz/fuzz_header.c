/*
 * fuzz_header.c - libFuzzer harness: the trace.dat header walk of the
 * reader, in process (no probe child).  check_header in
 * csrc/ftrace/reader.c runs before libtracecmd sees a file: the magic,
 * version, endianness and page size, then the v6 walk (header pages and
 * events, event formats, kallsyms, printk formats with printk_ok, the CPU
 * count, options, the CPU table) or the v7 walk (the options sections with
 * v7_options and v7_buffer, the printk section).  Any crash, leak or
 * undefined behaviour there is ours; fuzz_tracedat covers the whole open,
 * probe child included, at a few dozen executions a second.
 *
 * The walk is private to reader.c, so the file is included here whole
 * (build.sh links the other sources without it).  Each input is written
 * to one memfd, opened by its /proc/self/fd path as a file on disk is.
 */
#include "../csrc/ftrace/reader.c"

#include <stdlib.h>
#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int input_fd = -1;

static void put(const uint8_t *data, size_t size) {
  size_t done = 0;
  if (input_fd < 0 && (input_fd = memfd_create("fuzz.dat", MFD_CLOEXEC)) < 0) abort();
  if (ftruncate(input_fd, 0) != 0) abort();
  while (done < size) {
    ssize_t w = pwrite(input_fd, data + done, size - done, (off_t)done);
    if (w <= 0) abort();
    done += (size_t)w;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static kl_trace t;
  kl_err err;
  int rc;

  put(data, size);
  err.msg[0] = '\0';
  memset(&t, 0, sizeof t);
  t.fd = -1;
  snprintf(t.path, sizeof t.path, "/proc/self/fd/%d", input_fd);
  rc = check_header(&t, t.path, &err);
  if (rc == 0) {
    /* what open relies on afterwards */
    if (t.version != 6 && t.version != 7) abort();
    if (t.long_size != 4 && t.long_size != 8) abort();
    if (t.page_size < 64 || (t.page_size & (t.page_size - 1)) != 0) abort();
    if (memchr(t.clock, '\0', sizeof t.clock) == NULL) abort();
    if (t.fd < 0) abort();
  } else if (rc != -1 || t.fd >= 0 || err.msg[0] == '\0') {
    abort();
  }
  free(t.cpu_off);
  free(t.cpu_size);
  if (t.fd >= 0) close(t.fd);
  return 0;
}
