/* tdcheck.c - read a trace.dat with libtracecmd's public reader.
 * Prints "events N" (counted with tracecmd_read_data, CPU by CPU),
 * "ordered N" (tracecmd_iterate_events, in time order), "markers N" and
 * "last_seq N" for trace_marker lines "klseq N".  Exit 1 when the file
 * cannot be opened or the two counts differ.
 * Built by the specs: cc tdcheck.c $(pkg-config --cflags --libs libtracecmd) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <trace-cmd.h>
#include <event-parse.h>

struct counts { long ordered, markers; int last_seq; };

static int on_event(struct tracecmd_input *h, struct tep_record *r, int cpu, void *data) {
  struct counts *c = data;
  struct tep_event *ev = tep_find_event_by_record(tracecmd_get_tep(h), r);
  (void)cpu;
  c->ordered++;
  if (ev && strcmp(ev->name, "print") == 0) {
    int len;
    const char *buf = tep_get_field_raw(NULL, ev, "buf", r, &len, 0);
    if (buf && strncmp(buf, "klseq ", 6) == 0) {
      c->markers++;
      c->last_seq = atoi(buf + 6); /* time order: the last one seen is the newest */
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  struct tracecmd_input *h;
  struct counts c = {0, 0, -1};
  long total = 0;
  int cpu, ncpus = (int)sysconf(_SC_NPROCESSORS_CONF);
  if (argc < 2) return 2;
  h = tracecmd_open(argv[1], 0);
  if (h == NULL) {
    fprintf(stderr, "tracecmd_open failed for %s\n", argv[1]);
    return 1;
  }
  for (cpu = 0; cpu < ncpus; cpu++) {
    struct tep_record *r;
    while ((r = tracecmd_read_data(h, cpu)) != NULL) {
      total++;
      tracecmd_free_record(r);
    }
  }
  tracecmd_close(h);
  h = tracecmd_open(argv[1], 0);
  if (h == NULL) return 1;
  tracecmd_iterate_events(h, NULL, 0, on_event, &c);
  tracecmd_close(h);
  printf("events %ld\nordered %ld\nmarkers %ld\nlast_seq %d\n", total, c.ordered, c.markers,
         c.last_seq);
  return total == c.ordered ? 0 : 1;
}
