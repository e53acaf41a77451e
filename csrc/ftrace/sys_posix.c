/*
 * sys_posix.c - the small OS services of kl.h for POSIX systems.
 */
#define _POSIX_C_SOURCE 200809L
#include "../kl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
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

FILE *kl_create_exclusive(const char *path, kl_err *err) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  FILE *f;
  int e;
  if (fd < 0) {
    kl_err_errno(err, KL_E_IO, "%s", path);
    return NULL;
  }
  f = fdopen(fd, "wb");
  if (f == NULL) {
    e = errno;
    close(fd);
    unlink(path);
    errno = e;
    kl_err_errno(err, KL_E_IO, "%s", path);
  }
  return f;
}

int kl_rename_noreplace(const char *from, const char *to, kl_err *err) {
  /* link() fails with EEXIST whatever is at `to`, a symbolic link included,
   * and never follows it: the check and the naming are one step. */
  if (link(from, to) != 0) return kl_err_errno(err, KL_E_IO, "%s", to);
  unlink(from);
  return 0;
}

int kl_path_kind(const char *path, kl_err *err) {
  struct stat st;
  int e;
  if (lstat(path, &st) != 0) {
    e = errno;
    if (e == ENOENT) return 0;
    return kl_err_errno(err, KL_E_IO, "%s", path);
  }
  if (S_ISLNK(st.st_mode)) return 'l';
  if (S_ISDIR(st.st_mode)) return 'd';
  return S_ISREG(st.st_mode) ? 'f' : 'o';
}
