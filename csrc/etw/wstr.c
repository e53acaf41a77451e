/*
 * wstr.c - UTF-8 <-> UTF-16 for session names and paths, so that non-ASCII
 * names reach ETW intact.
 */
#include "etw.h"

#include <string.h>

int kl_etw_to_wide(const char *s, WCHAR *out, size_t cap, const char *what, kl_err *err) {
  int n;
  if (s == NULL) s = "";
  if (cap == 0 || cap > 0x7fffffff)
    return kl_err_set(err, KL_E_INVALID, 0, "%s: no room to convert", what);
  if (s[0] == '\0') {
    out[0] = 0;
    return 0;
  }
  n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, out, (int)cap);
  if (n <= 0) {
    DWORD e = GetLastError();
    out[0] = 0;
    if (e == ERROR_INSUFFICIENT_BUFFER)
      return kl_err_set(err, KL_E_INVALID, (long)e,
                        "%s is too long: the limit is %u UTF-16 characters (Win32 error %lu)",
                        what, (unsigned)(cap - 1), (unsigned long)e);
    return kl_err_set(err, KL_E_INVALID, (long)e,
                      "%s is not valid UTF-8 (Win32 error %lu)", what, (unsigned long)e);
  }
  return 0;
}

void kl_etw_to_utf8(const WCHAR *w, char *out, size_t cap) {
  int n;
  if (cap == 0) return;
  out[0] = '\0';
  if (w == NULL || w[0] == 0 || cap > 0x7fffffff) return;
  n = WideCharToMultiByte(CP_UTF8, 0, w, -1, out, (int)cap, NULL, NULL);
  if (n <= 0) {
    /* Too long for out: convert what fits, character by character. */
    size_t used = 0, i;
    char tmp[8];
    for (i = 0; w[i] != 0; i++) {
      int len = (w[i] >= 0xD800 && w[i] <= 0xDBFF && w[i + 1] != 0) ? 2 : 1;
      int m = WideCharToMultiByte(CP_UTF8, 0, w + i, len, tmp, (int)sizeof tmp, NULL, NULL);
      if (m <= 0 || used + (size_t)m + 1 > cap) break;
      memcpy(out + used, tmp, (size_t)m);
      used += (size_t)m;
      i += (size_t)(len - 1);
    }
    out[used] = '\0';
  }
}
