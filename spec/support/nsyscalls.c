/*
 * nsyscalls N [DELAY_MS] - make exactly N getppid() system calls, for specs
 * and benches that count a workload's events.  It prints its pid and the
 * system call's number (the `id` of raw_syscalls:sys_enter: 110 on x86_64)
 * on one line, waits DELAY_MS (default 0), then makes the calls.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long n, i, delay;
  struct timespec ts;
  if (argc < 2 || (n = strtol(argv[1], NULL, 10)) < 0) {
    fprintf(stderr, "usage: nsyscalls N [DELAY_MS]\n");
    return 2;
  }
  delay = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
  printf("%ld %d\n", (long)getpid(), (int)SYS_getppid);
  fflush(stdout);
  if (delay > 0) {
    ts.tv_sec = delay / 1000;
    ts.tv_nsec = (delay % 1000) * 1000000L;
    nanosleep(&ts, NULL);
  }
  for (i = 0; i < n; i++) syscall(SYS_getppid);
  return 0;
}
