/*
 * zchunks.c - the per-CPU data of a compressed trace.dat v7 file, one
 * chunk at a time.
 *
 * In a compressed v7 file each CPU's data (where the BUFFER option says it
 * is) is a u32 count of chunks, then that many chunks (the size the
 * option gives counts the chunks, not the count before them), each a u32
 * compressed size, a u32 decompressed size and the compressed bytes; the
 * decompressed chunks laid end to end are the CPU's ring-buffer pages.
 * The header names the algorithm ("zstd" or "zlib").  Every size is
 * checked against the CPU's data area and KL_CHUNK_MAX before anything is
 * allocated, and a chunk must decompress to exactly its stated size: at
 * most one decompressed chunk per CPU is held.
 */
#define _GNU_SOURCE
#include "ftrace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>

static uint32_t get32z(const unsigned char *p, int big) {
  return big ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
             : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

int kl_chunk_alg(const char *name) {
  if (strcmp(name, "zstd") == 0) return KL_Z_ZSTD;
  if (strcmp(name, "zlib") == 0) return KL_Z_ZLIB;
  return -1;
}

static int bad_chunk(const kl_zsrc *s, int c, uint64_t off, const char *what, kl_err *err) {
  return kl_err_set(err, KL_E_INVALID, 0,
                    "read trace %s: corrupt compressed chunk at file offset %llu (CPU %d): %s",
                    s->path, (unsigned long long)off, c, what);
}

/* n bytes at off; the area [.., end) must hold them. */
static int read_at(const kl_zsrc *s, int c, uint64_t off, uint64_t end, void *buf,
                   size_t n, const char *what, kl_err *err) {
  size_t got = 0;
  if (off > end || n > end - off) return bad_chunk(s, c, off, what, err);
  while (got < n) {
    ssize_t r = pread(s->fd, (char *)buf + got, n - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      return kl_err_set(err, KL_E_IO, e, "read trace %s: read at file offset %llu: %s", s->path,
                        (unsigned long long)(off + got), strerror(e));
    }
    if (r == 0) return bad_chunk(s, c, off, "the file ends inside it (truncated)", err);
    got += (size_t)r;
  }
  return 0;
}

void kl_zchunk_rewind(kl_zchunk *z, uint64_t off) {
  z->next = off;
  z->left = 0;
  z->started = 0;
  z->len = z->pos = 0;
}

void kl_zchunk_free(kl_zchunk *z) {
  free(z->buf);
  z->buf = NULL;
  z->cap = 0;
}

static int inflate_zlib(unsigned char *dst, size_t n, const unsigned char *src, size_t m) {
  uLongf out = (uLongf)n;
  if (uncompress(dst, &out, src, (uLong)m) != Z_OK) return -1;
  return out == n ? 0 : -1;
}

static int inflate_zstd(unsigned char *dst, size_t n, const unsigned char *src, size_t m) {
  size_t r = ZSTD_decompress(dst, n, src, m);
  if (ZSTD_isError(r)) return -1;
  return r == n ? 0 : -1;
}

/* Read and decompress the chunk at z->next. */
static int load_chunk(const kl_zsrc *s, kl_zchunk *z, int c, uint64_t end, kl_err *err) {
  unsigned char h[8], *src;
  uint32_t csize, usize;
  uint64_t at = z->next;
  int bad;

  if (read_at(s, c, at, end, h, 8, "its sizes are cut", err) < 0) return -1;
  csize = get32z(h, s->big);
  usize = get32z(h + 4, s->big);
  if (usize == 0 || usize > KL_CHUNK_MAX)
    return bad_chunk(s, c, at, "impossible decompressed size", err);
  if (csize == 0 || csize > end - at - 8)
    return bad_chunk(s, c, at, "its compressed size runs past the CPU's data", err);
  if (csize > KL_CHUNK_MAX) return bad_chunk(s, c, at, "impossible compressed size", err);
  if (usize > z->cap) {
    unsigned char *nb = realloc(z->buf, usize);
    if (!nb) goto oom;
    z->buf = nb;
    z->cap = usize;
  }
  src = malloc(csize);
  if (!src) goto oom;
  if (read_at(s, c, at + 8, end, src, csize, "its data is cut", err) < 0) {
    free(src);
    return -1;
  }
  bad = s->alg == KL_Z_ZSTD ? inflate_zstd(z->buf, usize, src, csize)
                            : inflate_zlib(z->buf, usize, src, csize);
  free(src);
  if (bad) return bad_chunk(s, c, at, "it does not decompress to its stated size", err);
  z->at = at;
  z->len = usize;
  z->pos = 0;
  z->next = at + 8 + csize;
  z->left--;
  return 0;

oom:
  return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "read trace %s: out of memory", s->path);
}

/* The next page (up to page_size bytes) of the CPU whose data is [start,
 * end) copied into dst.  *n: its bytes; *off: the file offset of its chunk.
 * 1: copied; 0: no more; -1: error. */
int kl_zchunk_page(const kl_zsrc *s, kl_zchunk *z, int c, uint64_t end, unsigned char *dst,
                   size_t page_size, size_t *n, uint64_t *off, kl_err *err) {
  if (!z->started) {
    unsigned char b[4];
    uint64_t start = z->next;
    if (start >= end) return 0;  /* a CPU without data */
    if (read_at(s, c, start, end, b, 4, "the chunk count is cut", err) < 0) return -1;
    z->left = get32z(b, s->big);
    if (z->left > (end - start - 4) / 8)
      return bad_chunk(s, c, start, "more chunks than the CPU's data can hold", err);
    z->next = start + 4;
    z->started = 1;
  }
  while (z->pos >= z->len) {
    if (z->left == 0) return 0;
    if (load_chunk(s, z, c, end, err) < 0) return -1;
  }
  *n = z->len - z->pos < page_size ? z->len - z->pos : page_size;
  memcpy(dst, z->buf + z->pos, *n);
  *off = z->at;
  z->pos += (uint32_t)*n;
  return 1;
}
