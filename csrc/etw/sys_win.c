/*
 * sys_win.c - the small OS services of kl.h for Windows.
 */
#include "etw.h"

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <string.h>
#include <sys/stat.h>

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

FILE *kl_create_exclusive(const char *path, kl_err *err) {
  int fd = _open(path, _O_WRONLY | _O_CREAT | _O_EXCL | _O_BINARY | _O_NOINHERIT,
                 _S_IREAD | _S_IWRITE);
  FILE *f;
  int e;
  if (fd < 0) {
    kl_err_errno(err, KL_E_IO, "%s", path);
    return NULL;
  }
  f = _fdopen(fd, "wb");
  if (f == NULL) {
    e = errno;
    _close(fd);
    _unlink(path);
    errno = e;
    kl_err_errno(err, KL_E_IO, "%s", path);
  }
  return f;
}

int kl_rename_noreplace(const char *from, const char *to, kl_err *err) {
  /* without MOVEFILE_REPLACE_EXISTING, an existing `to` makes it fail */
  DWORD e;
  char text[256];
  if (MoveFileExA(from, to, MOVEFILE_WRITE_THROUGH)) return 0;
  e = GetLastError();
  kl_etw_strerror(e, text, sizeof text);
  return kl_err_set(err, kl_etw_code(e), (long)e, "%s: %s (Win32 error %lu)", to, text,
                    (unsigned long)e);
}

int kl_path_kind(const char *path, kl_err *err) {
  DWORD a = GetFileAttributesA(path), e;
  char text[256];
  if (a == INVALID_FILE_ATTRIBUTES) {
    e = GetLastError();
    if (e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND) return 0;
    kl_etw_strerror(e, text, sizeof text);
    return kl_err_set(err, kl_etw_code(e), (long)e, "%s: %s (Win32 error %lu)", path, text,
                      (unsigned long)e);
  }
  if (a & FILE_ATTRIBUTE_REPARSE_POINT) return 'l';
  if (a & FILE_ATTRIBUTE_DIRECTORY) return 'd';
  return (a & FILE_ATTRIBUTE_DEVICE) ? 'o' : 'f';
}
