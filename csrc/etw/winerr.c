/*
 * winerr.c - Win32 errors as the shared kl_code strings.
 *
 * One table: every error ETW is documented or observed to return
 * (docs/windows.md, "Errors") with its code.  Messages always carry the number.
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

int kl_etw_err(kl_err *err, DWORD e, const char *op, const char *session, const char *detail) {
  char text[256];
  if (detail == NULL) {
    /* What every operation should say about the common ones. */
    if (e == ERROR_ACCESS_DENIED)
      detail = "administrator rights are needed to control kernel sessions (run elevated)";
    else if (e == ERROR_WMI_INSTANCE_NOT_FOUND)
      detail = "the session is not running";
  }
  kl_etw_strerror(e, text, sizeof text);
  return kl_err_set(err, kl_etw_code(e), (long)e, "%s '%s': %s%s(Win32 error %lu: %s)", op,
                    session ? session : "", detail ? detail : "", detail ? " " : "",
                    (unsigned long)e, text);
}
