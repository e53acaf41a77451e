/* dumptest.c - hand-built harness for the trace.dat writer (not part of the
 * build): make a unique instance, enable events, make loopback TCP
 * connections, dump to a file, remove the instance.
 * usage: dumptest OUT [nconn] [ring_kb] [overwrite] */
#define _GNU_SOURCE
#include "../../csrc/ftrace/ftrace.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <tracefs.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  const char *events[] = {"sock:inet_sock_set_state", "sched:sched_switch",
                          "sched:sched_process_exec", "sched:sched_wakeup", "nosuch:event"};
  char name[64], dir[256];
  int n = argc > 2 ? atoi(argv[2]) : 5, ring_kb = argc > 3 ? atoi(argv[3]) : 1024;
  struct tracefs_instance *inst;
  kl_dump_opts o;
  kl_err err;
  uint64_t bytes;
  int i, rc;
  double t0;

  snprintf(name, sizeof name, "klt_dump_%d", (int)getpid());
  snprintf(dir, sizeof dir, "/sys/kernel/tracing/instances/%s", name);
  if (mkdir(dir, 0755) != 0) { perror(dir); return 1; }
  inst = tracefs_instance_alloc(NULL, name);
  tracefs_instance_set_buffer_size(inst, ring_kb, -1);
  tracefs_event_enable(inst, "sock", "inet_sock_set_state");
  tracefs_event_enable(inst, "sched", "sched_switch");
  tracefs_event_enable(inst, "sched", "sched_process_exec");
  tracefs_event_enable(inst, "sched", "sched_wakeup");
  {
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {0};
    socklen_t al = sizeof a;
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bind(ls, (void *)&a, sizeof a);
    listen(ls, 64);
    getsockname(ls, (void *)&a, &al);
    printf("listen port %d\n", ntohs(a.sin_port));
    for (i = 0; i < n; i++) {
      int c = socket(AF_INET, SOCK_STREAM, 0), s;
      connect(c, (void *)&a, sizeof a);
      s = accept(ls, NULL, NULL);
      close(c);
      close(s);
    }
    close(ls);
  }
  if (argc > 5) { /* fill the ring with markers */
    char buf[512];
    FILE *m;
    snprintf(buf, sizeof buf, "%s/trace_marker", dir);
    m = fopen(buf, "w");
    int pad = getenv("PAD") ? atoi(getenv("PAD")) : 0;
    for (i = 0; i < atoi(argv[5]); i++) { fprintf(m, "klseq %d %*s\n", i, pad, ""); fflush(m); }
    fclose(m);
  }
  memset(&o, 0, sizeof o);
  o.path = argv[1];
  o.overwrite = argc > 4 ? atoi(argv[4]) : 1;
  o.file_mode = 0600;
  o.events = events;
  o.nevents = 5;
  o.session = name;
  o.kallsyms = getenv("KALLSYMS") != NULL;
  t0 = now();
  rc = kl_tracedat_write(inst, &o, &bytes, &err);
  t0 = now() - t0;
  if (rc != 0) printf("error %s (%ld): %s\n", kl_code_name(err.code), err.sys, err.msg);
  else printf("wrote %llu bytes in %.3f ms (%.1f MB/s)\n", (unsigned long long)bytes, t0 * 1e3,
              bytes / t0 / 1e6);
  tracefs_instance_destroy(inst);
  tracefs_instance_free(inst);
  return rc ? 2 : 0;
}
