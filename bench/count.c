/*
 * count FILE ID PID... - for bench/load: read a trace.dat with libtracecmd
 * and print "events N" (all records) and "getppid N" (sys_enter records with
 * id ID, the system call bench/load's getppid_n workers make, from the given
 * pids).
 */
#include <stdio.h>
#include <string.h>
#include <trace-cmd.h>
#include <event-parse.h>

#include <stdlib.h>

struct counts { long events, getppid; unsigned long long id; int npids; const int *pids; };

static int on_event(struct tracecmd_input *h, struct tep_record *r, int cpu, void *data) {
  struct counts *c = data;
  struct tep_handle *tep = tracecmd_get_tep(h);
  struct tep_event *ev = tep_find_event_by_record(tep, r);
  unsigned long long id;
  (void)cpu;
  c->events++;
  if (ev && strcmp(ev->name, "sys_enter") == 0 &&
      tep_get_field_val(NULL, ev, "id", r, &id, 0) == 0 && id == c->id) {
    int pid = tep_data_pid(tep, r), i;
    for (i = 0; i < c->npids; i++)
      if (c->pids[i] == pid) c->getppid++;
  }
  return 0;
}

int main(int argc, char **argv) {
  struct tracecmd_input *h;
  struct counts c = {0, 0, 0, 0, NULL};
  int pids[64], i;
  if (argc < 3) return 2;
  c.id = strtoull(argv[2], NULL, 10);
  for (i = 3; i < argc && i - 3 < 64; i++) pids[i - 3] = atoi(argv[i]);
  c.npids = i - 3;
  c.pids = pids;
  h = tracecmd_open(argv[1], 0);
  if (h == NULL) {
    fprintf(stderr, "count: cannot open %s\n", argv[1]);
    return 1;
  }
  tracecmd_iterate_events(h, NULL, 0, on_event, &c);
  tracecmd_close(h);
  printf("events %ld\ngetppid %ld\n", c.events, c.getppid);
  return 0;
}
