/* floor.c - the raw kernel floor of a start/stop cycle: mkdir an ftrace
 * instance, size its ring, enable the tracepoints, disable them, rmdir.
 * Nothing else: no library, no state file, no capture file.
 *
 * usage: floor RUNS RING_KB_PER_CPU system:event...
 * prints one line per cycle: "cycle_ms X" */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TRACING "/sys/kernel/tracing/instances/"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int put(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
  ssize_t n;
  if (fd < 0) return -1;
  n = write(fd, value, strlen(value));
  close(fd);
  return n == (ssize_t)strlen(value) ? 0 : -1;
}

static int set_events(const char *dir, int argc, char **argv, const char *value) {
  char path[512], sys[128];
  int i;
  for (i = 3; i < argc; i++) {
    const char *colon = strchr(argv[i], ':');
    if (colon == NULL || (size_t)(colon - argv[i]) >= sizeof sys) return -1;
    memcpy(sys, argv[i], (size_t)(colon - argv[i]));
    sys[colon - argv[i]] = '\0';
    snprintf(path, sizeof path, "%s/events/%s/%s/enable", dir, sys, colon + 1);
    if (put(path, value) != 0) {
      fprintf(stderr, "floor: %s: %s\n", path, strerror(errno));
      return -1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  char dir[256], path[512];
  int runs, r;
  if (argc < 4) {
    fprintf(stderr, "usage: floor RUNS RING_KB_PER_CPU system:event...\n");
    return 2;
  }
  runs = atoi(argv[1]);
  for (r = 0; r < runs; r++) {
    double t0 = now();
    snprintf(dir, sizeof dir, TRACING "klt_floor_%d_%d", (int)getpid(), r);
    if (mkdir(dir, 0755) != 0) {
      fprintf(stderr, "floor: mkdir %s: %s\n", dir, strerror(errno));
      return 1;
    }
    snprintf(path, sizeof path, "%s/buffer_size_kb", dir);
    if (put(path, argv[2]) != 0 || set_events(dir, argc, argv, "1") != 0 ||
        set_events(dir, argc, argv, "0") != 0) {
      fprintf(stderr, "floor: setting up %s failed: %s\n", dir, strerror(errno));
      rmdir(dir);
      return 1;
    }
    if (rmdir(dir) != 0) {
      fprintf(stderr, "floor: rmdir %s: %s\n", dir, strerror(errno));
      return 1;
    }
    printf("cycle_ms %.3f\n", (now() - t0) * 1e3);
  }
  return 0;
}
