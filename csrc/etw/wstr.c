/*
 * wstr.c - UTF-8 <-> UTF-16 for session names and paths, so that non-ASCII
 * names reach ETW intact.
 */
#include "etw.h"

#include <stdio.h>
#include <string.h>

/* s for a message: as it is if it is UTF-8, else with every byte outside
 * printable ASCII written as \xNN. */
static const char *printable(const char *s, char *out, size_t cap) {
  size_t used = 0;
  if (s == NULL) return "";
  if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0) > 0) return s;
  for (; *s != '\0' && used + 5 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c < 0x7f) out[used++] = (char)c;
    else used += (size_t)snprintf(out + used, cap - used, "\\x%02X", c);
  }
  out[used] = '\0';
  return out;
}

int kl_etw_to_wide(const char *s, WCHAR *out, size_t cap, const char *op, const char *session,
                   const char *what, kl_err *err) {
  int n;
  char shown[KL_NAME_MAX * 4 + 1], detail[160];
  DWORD e;
  if (s == NULL) s = "";
  if (cap == 0 || cap > 0x7fffffff)
    return kl_err_set(err, KL_E_INVALID, 0, "%s '%s': %s: no room to convert", op, session,
                      what);
  if (s[0] == '\0') {
    out[0] = 0;
    return 0;
  }
  n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, out, (int)cap);
  if (n > 0) return 0;
  e = GetLastError();
  out[0] = 0;
  if (e == ERROR_INSUFFICIENT_BUFFER) {
    n = MultiByteToWideChar(CP_UTF8, 0, s, -1, NULL, 0);
    snprintf(detail, sizeof detail,
             "%s is too long: %d UTF-16 characters, the limit is %u", what, n > 0 ? n - 1 : 0,
             (unsigned)(cap - 1));
  } else {
    snprintf(detail, sizeof detail, "%s is not valid UTF-8", what);
  }
  kl_etw_err(err, e, op, session ? printable(session, shown, sizeof shown) : NULL, detail);
  err->code = KL_E_INVALID;
  return -1;
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
