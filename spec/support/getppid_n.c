/*
 * getppid_n N [CPU] - make exactly N getppid() system calls (raw, not
 * through a cached libc wrapper) and nothing else in between; optionally
 * pinned to CPU.  Prints its pid on the first line and the system call's
 * number (the `id` of raw_syscalls:sys_enter: 110 on x86_64) on the
 * second, so a spec can find and count its events; its comm is getppid_n.
 * Used by spec/stream_spec.lua, spec/live_spec.lua and bench/load.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long n, i;
  if (argc < 2 || (n = strtol(argv[1], NULL, 10)) < 0) {
    fprintf(stderr, "usage: getppid_n N [CPU]\n");
    return 2;
  }
  if (argc > 2) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(atoi(argv[2]), &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");
  }
  printf("%ld\n%d\n", (long)getpid(), (int)SYS_getppid);
  fflush(stdout);
  for (i = 0; i < n; i++) syscall(SYS_getppid);
  return 0;
}
