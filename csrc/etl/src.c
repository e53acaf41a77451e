/*
 * src.c - where the reader's bytes come from: a file read by position
 * (stdio with 64-bit seeks, so the same code builds with mingw), or a
 * block of memory (the fuzzer).  Nothing is loaded whole.
 */
#if !defined(_WIN32) && !defined(_FILE_OFFSET_BITS)
#define _FILE_OFFSET_BITS 64
#endif
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "etl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef _WIN32
#include <wchar.h>
#define etl_fseek _fseeki64
#define etl_ftell _ftelli64

/* Paths are UTF-8 (as everywhere in kernellogger); the C runtime's narrow
 * functions take the ANSI code page, so convert and use the wide ones. */
static int widen(const char *s, wchar_t *w, size_t cap) {
  const unsigned char *p = (const unsigned char *)s;
  size_t o = 0;
  while (*p) {
    uint32_t c = *p++;
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (more) c &= 0x3Fu >> more;
    for (; more > 0; more--) {
      if ((*p & 0xC0) != 0x80) return -1;
      c = c << 6 | (*p++ & 0x3Fu);
    }
    if (o + 3 > cap) return -1;
    if (c >= 0x10000) {
      w[o++] = (wchar_t)(0xD800 + ((c - 0x10000) >> 10));
      w[o++] = (wchar_t)(0xDC00 + ((c - 0x10000) & 0x3FF));
    } else {
      w[o++] = (wchar_t)c;
    }
  }
  w[o] = 0;
  return 0;
}

FILE *etl_fopen(const char *path) {
  wchar_t w[KL_PATH_MAX];
  return widen(path, w, KL_PATH_MAX) == 0 ? _wfopen(w, L"rb") : NULL;
}

int etl_stat(const char *path, int *regular) {
  wchar_t w[KL_PATH_MAX];
  struct _stat64 st;
  if (widen(path, w, KL_PATH_MAX) != 0) {
    errno = ENOENT;
    return -1;
  }
  if (_wstat64(w, &st) != 0) return -1;
  *regular = (st.st_mode & _S_IFMT) == _S_IFREG;
  return 0;
}
#else
#define etl_fseek fseeko
#define etl_ftell ftello

FILE *etl_fopen(const char *path) { return fopen(path, "rb"); }

int etl_stat(const char *path, int *regular) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  *regular = S_ISREG(st.st_mode);
  return 0;
}
#endif

static long file_read_at(void *ud, uint64_t off, void *buf, size_t n) {
  FILE *f = (FILE *)ud;
  size_t got;
  if (etl_fseek(f, (long long)off, SEEK_SET) != 0) return -1;
  got = fread(buf, 1, n, f);
  if (got < n && ferror(f)) return -1;
  return (long)got;
}

static void file_close(void *ud) { fclose((FILE *)ud); }

int etl_src_file(etl_src *s, const char *path, kl_err *err) {
  int regular;
  FILE *f;
  long long end;
  memset(s, 0, sizeof *s);
  if (etl_stat(path, &regular) != 0) {
    int e = errno;
    return kl_err_set(err, kl_code_from_errno(e), e, "open %s: %s", path, strerror(e));
  }
  if (!regular) return kl_err_set(err, KL_E_INVALID, 0, "open %s: not a regular file", path);
  f = etl_fopen(path);
  if (f == NULL) {
    int e = errno;
    return kl_err_set(err, kl_code_from_errno(e), e, "open %s: %s", path, strerror(e));
  }
  setvbuf(f, NULL, _IONBF, 0);   /* whole buffers are read at once: no copy */
  if (etl_fseek(f, 0, SEEK_END) != 0 || (end = (long long)etl_ftell(f)) < 0) {
    fclose(f);
    return kl_err_set(err, KL_E_IO, errno, "open %s: cannot find the file's size", path);
  }
  s->read_at = file_read_at;
  s->close = file_close;
  s->ud = f;
  s->size = (uint64_t)end;
  return 0;
}

typedef struct memsrc {
  const uint8_t *p;
  size_t n;
} memsrc;

static long mem_read_at(void *ud, uint64_t off, void *buf, size_t n) {
  const memsrc *m = (const memsrc *)ud;
  if (off >= m->n) return 0;
  if (n > m->n - off) n = (size_t)(m->n - off);
  memcpy(buf, m->p + off, n);
  return (long)n;
}

static void mem_close(void *ud) { free(ud); }

void etl_src_mem(etl_src *s, const void *data, size_t size) {
  memsrc *m = (memsrc *)malloc(sizeof *m);
  memset(s, 0, sizeof *s);
  if (m == NULL) return;
  m->p = (const uint8_t *)data;
  m->n = size;
  s->read_at = mem_read_at;
  s->close = mem_close;
  s->ud = m;
  s->size = size;
}
