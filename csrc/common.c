/*
 * common.c - portable helpers behind kl.h: error codes, names, status.
 */
#include "kl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* EDQUOT (quota exceeded) is POSIX but not in every C library's errno.h. */
#ifdef EDQUOT
#define CASE_EDQUOT case EDQUOT:
#else
#define CASE_EDQUOT
#endif

/* The one list of error code strings, indexed by kl_code. */
static const char *const code_names[KL_E__COUNT] = {
  "ok",
  "already_exists",
  "not_found",
  "access_denied",
  "not_supported",
  "no_resources",
  "disk_full",
  "bad_path",
  "busy",
  "invalid",
  "unavailable",
  "io",
};

const char *const kl_mode_names[] = {"buffering", "circular", "sequential", "realtime", NULL};
const char *const kl_clock_names[] = {"default", "qpc", "system", "cycle",
                                      "mono", "boot", "global", "local", NULL};

const char *kl_code_name(kl_code c) {
  if ((int)c < 0 || c >= KL_E__COUNT) return "io";
  return code_names[c];
}

int kl_err_set(kl_err *err, kl_code code, long sys, const char *fmt, ...) {
  va_list ap;
  if (err == NULL) return -1;
  err->code = code;
  err->sys = sys;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return -1;
}

kl_code kl_code_from_errno(int e) {
  switch (e) {
    case EEXIST: return KL_E_ALREADY_EXISTS;
    case ENOENT: case ESRCH: return KL_E_NOT_FOUND;
    case EACCES: case EPERM: case EROFS: return KL_E_ACCESS_DENIED;
    case ENOSYS: case EOPNOTSUPP: return KL_E_NOT_SUPPORTED;
    case ENOMEM: case EMFILE: case ENFILE: return KL_E_NO_RESOURCES;
    case ENOSPC: case EFBIG: CASE_EDQUOT
      return KL_E_DISK_FULL;
    case ENOTDIR: case EISDIR: case ENAMETOOLONG: case ELOOP: case EXDEV:
      return KL_E_BAD_PATH;
    case EBUSY: case EAGAIN: return KL_E_BUSY;
    case EINVAL: case ERANGE: return KL_E_INVALID;
    case ENODEV: return KL_E_UNAVAILABLE;
    default: return KL_E_IO;
  }
}

int kl_name_check(const char *name, kl_err *err) {
  size_t i, n;
  if (name == NULL || name[0] == '\0')
    return kl_err_set(err, KL_E_INVALID, 0, "session name is empty");
  n = strlen(name);
  if (n > KL_NAME_MAX)
    return kl_err_set(err, KL_E_INVALID, 0,
                      "session name is %u bytes long; the limit is %d",
                      (unsigned)n, KL_NAME_MAX);
  if (strcmp(name, ".") == 0 || strstr(name, "..") != NULL)
    return kl_err_set(err, KL_E_INVALID, 0, "session name may not contain '..' or be '.'");
  if (name[0] == '.')
    return kl_err_set(err, KL_E_INVALID, 0, "session name may not start with '.'");
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c == '/' || c == '\\')
      return kl_err_set(err, KL_E_INVALID, 0,
                        "session name may not contain '%c'", (int)c);
    if (c < 0x20 || c == 0x7f)
      return kl_err_set(err, KL_E_INVALID, 0,
                        "session name may not contain control character 0x%02x", (unsigned)c);
  }
  return 0;
}

void kl_status_init(kl_status *st) {
  memset(st, 0, sizeof *st);
  st->mode = KL_MODE_BUFFERING;
  st->owner_alive = -1;
  st->buffer_kb = st->buffers = st->free_buffers = st->events_lost = KL_UNSET;
  st->buffers_written = st->max_file_mb = st->flush_timer = KL_UNSET;
  st->min_buffers = st->max_buffers = KL_UNSET;
  st->entries = st->overrun = st->dropped = st->commit_overrun = st->bytes = KL_UNSET;
  st->owner_pid = st->bytes_written = st->circular_mb = KL_UNSET;
  st->cpu_buffer_kb = st->ring_kb = KL_UNSET;
  st->logger_thread_id = st->log_buffers_lost = st->realtime_buffers_lost = KL_UNSET;
  st->enable_flags = st->log_file_mode = KL_UNSET;
  st->start_time = -1;
  st->last_flush = -1;
  st->file_full = st->disk_full = st->recorder_alive = -1;
}

int kl_err_errno(kl_err *err, kl_code fallback, const char *fmt, ...) {
  int e = errno ? errno : EIO;
  kl_code code = errno ? kl_code_from_errno(e) : fallback;
  char head[KL_MSG_MAX];
  va_list ap;
  if (code == KL_E_IO) code = fallback;
  if (err == NULL) return -1;
  va_start(ap, fmt);
  vsnprintf(head, sizeof head, fmt, ap);
  va_end(ap);
  return kl_err_set(err, code, e, "%s: %s (errno %d)", head, strerror(e), e);
}
