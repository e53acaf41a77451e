/*
 * getppid_n N [CPU] - make exactly N getppid() system calls (raw, not
 * through a cached libc wrapper) and nothing else in between; optionally
 * pinned to CPU.  Prints its pid first, so a spec can find its events.
 * Used by spec/stream_spec.lua and bench/load.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long n, i;
  if (argc < 2) {
    fprintf(stderr, "usage: getppid_n N [CPU]\n");
    return 2;
  }
  n = strtol(argv[1], NULL, 10);
  if (argc > 2) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(atoi(argv[2]), &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");
  }
  printf("%ld\n", (long)getpid());
  fflush(stdout);
  for (i = 0; i < n; i++) syscall(SYS_getppid);
  return 0;
}
