/*
 * winerr.c - Win32 errors as the shared kl_code strings, and what each
 * operation says about them.
 *
 * Two tables: every error ETW is documented or observed to return with its
 * code (docs/windows.md, "Errors"), and the texts the messages carry for
 * them, per operation.  Messages always carry the number.
 */
#include "etw.h"

#include <stdio.h>
#include <string.h>

static const struct {
  DWORD win32;
  kl_code code;
} win_codes[] = {
  {ERROR_ALREADY_EXISTS, KL_E_ALREADY_EXISTS},
  {ERROR_FILE_EXISTS, KL_E_ALREADY_EXISTS},
  {ERROR_WMI_INSTANCE_NOT_FOUND, KL_E_NOT_FOUND},
  {ERROR_FILE_NOT_FOUND, KL_E_NOT_FOUND},
  {ERROR_ACCESS_DENIED, KL_E_ACCESS_DENIED},
  {ERROR_PRIVILEGE_NOT_HELD, KL_E_ACCESS_DENIED},
  {ERROR_WRITE_PROTECT, KL_E_ACCESS_DENIED},
  {ERROR_NOT_SUPPORTED, KL_E_NOT_SUPPORTED},
  {ERROR_CALL_NOT_IMPLEMENTED, KL_E_NOT_SUPPORTED},
  {ERROR_INVALID_FLAGS, KL_E_NOT_SUPPORTED},
  {ERROR_NO_SYSTEM_RESOURCES, KL_E_NO_RESOURCES},
  {ERROR_NOT_ENOUGH_MEMORY, KL_E_NO_RESOURCES},
  {ERROR_OUTOFMEMORY, KL_E_NO_RESOURCES},
  {ERROR_TOO_MANY_OPEN_FILES, KL_E_NO_RESOURCES},
  {ERROR_DISK_FULL, KL_E_DISK_FULL},
  {ERROR_HANDLE_DISK_FULL, KL_E_DISK_FULL},
  {ERROR_BAD_PATHNAME, KL_E_BAD_PATH},
  {ERROR_PATH_NOT_FOUND, KL_E_BAD_PATH},
  {ERROR_INVALID_NAME, KL_E_BAD_PATH},
  {ERROR_DIRECTORY, KL_E_BAD_PATH},
  {ERROR_FILENAME_EXCED_RANGE, KL_E_BAD_PATH},
  {ERROR_INVALID_DRIVE, KL_E_BAD_PATH},
  {ERROR_BUSY, KL_E_BUSY},
  {ERROR_ACTIVE_CONNECTIONS, KL_E_BUSY},
  {ERROR_SHARING_VIOLATION, KL_E_BUSY},
  {ERROR_LOCK_VIOLATION, KL_E_BUSY},
  {ERROR_TIMEOUT, KL_E_BUSY},
  {ERROR_INVALID_PARAMETER, KL_E_INVALID},
  {ERROR_BAD_LENGTH, KL_E_INVALID},
  {ERROR_INVALID_HANDLE, KL_E_INVALID},
  {ERROR_NOACCESS, KL_E_INVALID},
  {ERROR_MORE_DATA, KL_E_INVALID},
  {ERROR_INVALID_DATA, KL_E_IO},
  {ERROR_BAD_FORMAT, KL_E_IO},
  {ERROR_SERVICE_NOT_ACTIVE, KL_E_UNAVAILABLE},
  {ERROR_WMI_GUID_NOT_FOUND, KL_E_UNAVAILABLE},
};

#define CLOCK_NOTE                                                                     \
  "refused; before Windows 10 1703 the kernel/system loggers running at once may use at " \
  "most two distinct clock types, and two others may already be in use (%s)"

/* What a message says about error e in operation (or case) key; NULL key
 * rows apply to every operation.  A "%s" receives the caller's extra. */
static const struct {
  DWORD win32;
  const char *key;
  const char *text;
} win_texts[] = {
  {ERROR_ALREADY_EXISTS, "start",
   "the session is already running; %s stop it first (kl.stop) or use another name"},
  {ERROR_ACCESS_DENIED, "start",
   "administrator rights are needed to start a kernel session (run elevated)"},
  {ERROR_NO_SYSTEM_RESOURCES, "start",
   "too many trace sessions are running (at most 64, and 8 kernel/system loggers); "
   "running: %s;"},
  {ERROR_BAD_PATHNAME, "start",
   "the file '%s' is not usable (bad path, or another session writes it)"},
  {ERROR_FILE_NOT_FOUND, "start-file", "file: ETW cannot create '%s'"},
  {ERROR_PATH_NOT_FOUND, "start-file", "file: ETW cannot create '%s' (its folder does not exist)"},
  {ERROR_INVALID_NAME, "start-file", "file: ETW cannot create '%s' (not a valid file name)"},
  {ERROR_FILENAME_EXCED_RANGE, "start-file", "file: ETW cannot create '%s' (name too long)"},
  {ERROR_INVALID_HANDLE, "start-file", "file: ETW cannot create '%s' (not a file it can write)"},
  {ERROR_BAD_PATHNAME, "start-nofile",
   "ETW refused the log file settings (this session names no file)"},
  {ERROR_DISK_FULL, "start",
   "not enough disk space for a %s MB file (ETW also keeps ~200 MB free)"},
  {ERROR_DISK_FULL, "start-nosize",
   "not enough disk space (ETW keeps about 200 MB free on the volume it logs to)"},
  {ERROR_INVALID_FLAGS, "start", "this Windows refuses one of the flags (%s)"},
  {ERROR_BUSY, "start", "kernel tracing is busy (security software may hold it)"},
  {ERROR_INVALID_PARAMETER, "start-clock", CLOCK_NOTE},
  {ERROR_NOT_SUPPORTED, "start-clock", CLOCK_NOTE},
  {ERROR_INVALID_FUNCTION, "start-clock", CLOCK_NOTE},
  {ERROR_ACTIVE_CONNECTIONS, "stop", "the session is already stopping"},
  {ERROR_INVALID_PARAMETER, "stop",
   "refused (older Windows answers this for a session another user owns)"},
  {ERROR_WMI_INSTANCE_NOT_FOUND, "events",
   "no real-time session of this name is running (OpenTraceW)"},
  {ERROR_WMI_INSTANCE_NOT_FOUND, NULL, "the session is not running"},
  {ERROR_ACCESS_DENIED, NULL,
   "administrator rights are needed to control kernel sessions (run elevated)"},
};

static const char *text_for(DWORD e, const char *key) {
  size_t i;
  for (i = 0; i < sizeof win_texts / sizeof win_texts[0]; i++)
    if (win_texts[i].win32 == e && win_texts[i].key != NULL && key != NULL &&
        strcmp(win_texts[i].key, key) == 0)
      return win_texts[i].text;
  for (i = 0; i < sizeof win_texts / sizeof win_texts[0]; i++)
    if (win_texts[i].win32 == e && win_texts[i].key == NULL) return win_texts[i].text;
  return NULL;
}

kl_code kl_etw_code(DWORD e) {
  size_t i;
  for (i = 0; i < sizeof win_codes / sizeof win_codes[0]; i++)
    if (win_codes[i].win32 == e) return win_codes[i].code;
  return KL_E_IO;
}

void kl_etw_strerror(DWORD e, char *out, size_t cap) {
  WCHAR buf[512];
  DWORD n;
  size_t len;
  if (cap == 0) return;
  out[0] = '\0';
  n = FormatMessageW(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, e,
                     0, buf, (DWORD)(sizeof buf / sizeof buf[0]), NULL);
  if (n == 0) {
    snprintf(out, cap, "unknown error");
    return;
  }
  kl_etw_to_utf8(buf, out, cap);
  len = strlen(out);
  while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r' || out[len - 1] == ' ' ||
                     out[len - 1] == '.'))
    out[--len] = '\0';
}

static int fill(kl_err *err, DWORD e, const char *op, const char *session,
                const char *detail) {
  char text[256];
  kl_etw_strerror(e, text, sizeof text);
  return kl_err_set(err, kl_etw_code(e), (long)e, "%s%s%s%s: %s%s(Win32 error %lu: %s)", op,
                    session ? " '" : "", session ? session : "", session ? "'" : "",
                    detail ? detail : "", detail ? " " : "", (unsigned long)e, text);
}

int kl_etw_err(kl_err *err, DWORD e, const char *op, const char *session, const char *detail) {
  return fill(err, e, op, session, detail ? detail : text_for(e, op));
}

int kl_etw_errx(kl_err *err, DWORD e, const char *op, const char *key, const char *session,
                const char *extra) {
  const char *t = text_for(e, key ? key : op);
  char detail[900];
  if (t == NULL) return fill(err, e, op, session, extra);
  if (strstr(t, "%s") == NULL) return fill(err, e, op, session, t);
  {
    const char *at = strstr(t, "%s");
    snprintf(detail, sizeof detail, "%.*s%s%s", (int)(at - t), t, extra ? extra : "?", at + 2);
  }
  return fill(err, e, op, session, detail);
}
