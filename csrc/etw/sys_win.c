/*
 * sys_win.c - the small OS services of kl.h for Windows.
 */
#include "etw.h"

#include <io.h>

double kl_monotime(void) {
  LARGE_INTEGER f, c;
  QueryPerformanceFrequency(&f);
  QueryPerformanceCounter(&c);
  return (double)c.QuadPart / (double)f.QuadPart;
}

double kl_walltime(void) {
  FILETIME ft;
  ULARGE_INTEGER u;
  GetSystemTimeAsFileTime(&ft);
  u.LowPart = ft.dwLowDateTime;
  u.HighPart = ft.dwHighDateTime;
  /* 100 ns ticks since 1601-01-01; 11644473600 s to 1970-01-01. */
  return (double)u.QuadPart / 1e7 - 11644473600.0;
}

void kl_sleep(double seconds) {
  if (seconds <= 0) return;
  if (seconds > 4000000.0) seconds = 4000000.0;
  /* Alertable: returns early when an APC (e.g. a console handler) arrives. */
  SleepEx((DWORD)(seconds * 1000.0 + 0.5), TRUE);
}

int kl_isatty(int fd) {
  return _isatty(fd) ? 1 : 0;
}

long kl_getpid(void) {
  return (long)GetCurrentProcessId();
}
