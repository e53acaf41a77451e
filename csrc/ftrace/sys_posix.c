/*
 * sys_posix.c - the small OS services of kl.h for POSIX systems.
 */
#define _POSIX_C_SOURCE 200809L
#include "../kl.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

double kl_monotime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double kl_walltime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void kl_sleep(double seconds) {
  struct timespec ts;
  if (!(seconds > 0)) return;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  /* A signal ends the sleep early, so that Lua's SIGINT hook runs soon. */
  nanosleep(&ts, NULL);
}

int kl_isatty(int fd) { return isatty(fd) == 1; }

long kl_getpid(void) { return (long)getpid(); }
