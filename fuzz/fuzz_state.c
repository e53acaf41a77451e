/*
 * fuzz_state.c - libFuzzer harness: the session state-file parser
 * (parse_state in csrc/ftrace/session.c, what read_state does with a
 * file's contents) on arbitrary contents, and the round trip: what it
 * parsed, formatted back by format_state (what write_state writes) and
 * parsed again, must give the same values.
 *
 * Everything stays in memory: reading and writing the file itself
 * (open, atomic temp + rename) is covered by the session specs.  The
 * functions are private to session.c, so the file is included here whole.
 */
#include "../csrc/ftrace/session.c"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SAME(field) do { if (a.field != b.field) abort(); } while (0)
#define SAME_STR(field) do { if (strcmp(a.field, b.field) != 0) abort(); } while (0)

static void check_bounds(const kl_state *s) {
  if (!s->present) abort();
  if (s->mode < KL_MODE_BUFFERING || s->mode > KL_MODE_REALTIME) abort();
  if (strlen(s->file) >= sizeof s->file || strlen(s->flags) >= sizeof s->flags ||
      strlen(s->tracepoints) >= sizeof s->tracepoints || strlen(s->clock) >= sizeof s->clock ||
      strlen(s->data_dir) >= sizeof s->data_dir)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static kl_state a, b;
  static char text[24576]; /* what write_state formats into */
  int n;

  parse_state((const char *)data, size, &a);
  check_bounds(&a);
  n = format_state(&a, text, sizeof text);
  if (n < 0) return 0; /* too large to write back: write_state refuses it */
  parse_state(text, (size_t)n, &b);
  check_bounds(&b);
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
  SAME_STR(data_dir);
  SAME(flush_timer);
  SAME(rec_pid);
  SAME(rec_start);
  SAME(starting);
  return 0;
}
