/*
 * etl_dump.c - reads an .etl file with the production reader (csrc/etw/
 * reader.c bound to the real advapi32/tdh) and prints what it found:
 *   etl_dump FILE      -> "events N", then "types M", one line per event type
 * Exit 0 when the file was read and held at least one event.  Test support
 * for the Windows workflow (the binding has no open() yet); never installed.
 */
#include "../../../csrc/etw/etw.h"

#include <stdio.h>

int main(int argc, char **argv) {
  kl_err err;
  kl_trace *t;
  kl_trace_info info;
  kl_event ev;
  size_t i, n = 0;
  int r;
  if (argc != 2) {
    fprintf(stderr, "usage: etl_dump FILE.etl\n");
    return 2;
  }
  t = kl_backend_impl.trace_open(argv[1], &err);
  if (t == NULL) {
    printf("error %s: %s\n", kl_code_name(err.code), err.msg);
    return 1;
  }
  for (r = kl_backend_impl.trace_next(t, NULL, 1, &ev, &err); r == 1;
       r = kl_backend_impl.trace_next(t, NULL, 0, &ev, &err))
    n++;
  kl_backend_impl.trace_info(t, &info, &err);
  printf("events %u\ntypes %u\n", (unsigned)n, (unsigned)info.nevent_types);
  for (i = 0; i < info.nevent_types; i++)
    printf("%s:%s %lld\n", info.event_types[i].system, info.event_types[i].name,
           (long long)info.event_types[i].count);
  kl_backend_impl.trace_close(t);
  return r == 0 && n > 0 ? 0 : 1;
}
