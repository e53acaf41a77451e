/*
 * fuzz_state.c - libFuzzer harness: the session state-file parser
 * (read_state in csrc/ftrace/session.c) on arbitrary file contents, and
 * the round trip: what it parsed, written back by write_state and read
 * again, must give the same values.
 *
 * read_state and write_state are private to session.c, so the file is
 * included here whole; build.sh compiles it with KL_STATE_DIR pointing at
 * a folder of the harness's own (it is never the real state folder).
 */
#include "../csrc/ftrace/session.c"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put(const char *name, const uint8_t *data, size_t size) {
  char path[KL_PATH_MAX];
  FILE *f;
  mkdir(KL_STATE_DIR, 0700);
  if (state_path(path, sizeof path, name) != 0) abort();
  f = fopen(path, "we");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  fclose(f);
}

#define SAME(field) do { if (a.field != b.field) abort(); } while (0)
#define SAME_STR(field) do { if (strcmp(a.field, b.field) != 0) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static kl_state a, b;
  kl_err err;

  put("fuzz", data, size);
  if (read_state("fuzz", &a) != 0) abort();
  if (a.mode < KL_MODE_BUFFERING || a.mode > KL_MODE_REALTIME) abort();
  if (strlen(a.file) >= sizeof a.file || strlen(a.flags) >= sizeof a.flags ||
      strlen(a.tracepoints) >= sizeof a.tracepoints || strlen(a.clock) >= sizeof a.clock)
    abort();
  if (write_state("fuzz", &a, &err) != 0) return 0;  /* too large to write back: fine */
  if (read_state("fuzz", &b) != 0) abort();
  SAME_STR(file);
  SAME(mode);
  SAME_STR(flags);
  SAME_STR(tracepoints);
  SAME_STR(clock);
  SAME(circular_mb);
  SAME(max_mb);
  SAME(file_mode);
  SAME(overwrite);
  SAME(kallsyms);
  SAME(stacks);
  SAME(owner_pid);
  SAME(owner_start);
  SAME(bytes_written);
  return 0;
}
