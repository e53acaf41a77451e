/*
 * pages.c - the records of a trace.dat file (v6, v7 uncompressed, and v7
 * compressed through zchunks.c), read page by page with pread and checked
 * before anything else looks at them.
 *
 * libtracecmd maps each CPU's data and hands every page to libtraceevent's
 * kbuffer as it is, so a page whose commit field runs past the page, or a
 * record whose length does, makes it read outside the mapping; a file that
 * shrinks while it is mapped raises SIGBUS.  Here a page is copied into a
 * buffer first, and every length it contains is checked against what was
 * read before a record is handed out: the worst a bad file can do is an
 * error naming the file offset of the bad page.
 *
 * The page layout (the kernel's ring buffer page, described by the
 * header_page section of the file): a u64 timestamp, a commit word of the
 * file's long size whose low 27 bits are the bytes of records that follow
 * and whose bits 31 and 30 say events were lost before the page (and
 * whether their count is stored after the records), then the records.
 * Each record starts with a 32-bit word: type_len (5 bits) and a time
 * delta (27 bits); type_len 1..28 is a record of type_len * 4 bytes, 0 a
 * record whose length (plus 4) is in the next word, 29 padding (its
 * length in the next word; delta 0: the rest of the page is empty), 30 a
 * time extension (the next word holds the delta's upper bits) and 31 an
 * absolute timestamp.  In a big-endian file type_len is the word's top 5
 * bits.
 */
#define _GNU_SOURCE
#include "ftrace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event-parse.h>

#define KL_COMMIT_MASK ((1u << 27) - 1)
#define KL_MISSED_EVENTS (1ull << 31)
#define KL_MISSED_STORED (1ull << 30)
#define KL_PAGE_SLACK 64  /* zeroed bytes after a page: readers of a record's
                           * common header never leave the buffer */

static uint32_t get32(const unsigned char *p, int big) {
  return big ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
             : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

static uint64_t get64(const unsigned char *p, int big) {
  uint64_t lo = get32(p + (big ? 4 : 0), big), hi = get32(p + (big ? 0 : 4), big);
  return hi << 32 | lo;
}

int kl_pages_init(kl_pages *p, const kl_pages_geom *g, kl_err *err) {
  int c;
  memset(p, 0, sizeof *p);
  p->g = *g;
  p->hdr = 8u + (unsigned)g->long_size;
  p->cpu = calloc((size_t)g->ncpus + 1, sizeof *p->cpu);
  if (!p->cpu) goto oom;
  for (c = 0; c < g->ncpus; c++) {
    kl_pcpu *q = &p->cpu[c];
    q->buf[0] = calloc(1, (size_t)g->page_size + KL_PAGE_SLACK);
    q->buf[1] = calloc(1, (size_t)g->page_size + KL_PAGE_SLACK);
    if (!q->buf[0] || !q->buf[1]) goto oom;
    kl_pages_rewind(p, c);
  }
  return 0;

oom:
  kl_pages_free(p);
  return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "read trace %s: out of memory", g->path);
}

void kl_pages_free(kl_pages *p) {
  int c;
  if (!p->cpu) return;
  for (c = 0; c < p->g.ncpus; c++) {
    free(p->cpu[c].buf[0]);
    free(p->cpu[c].buf[1]);
    kl_zchunk_free(&p->cpu[c].z);
  }
  free(p->cpu);
  p->cpu = NULL;
}

void kl_pages_rewind(kl_pages *p, int c) {
  kl_pcpu *q = &p->cpu[c];
  q->off = p->g.cpu_off[c];
  kl_zchunk_rewind(&q->z, p->g.cpu_off[c]);
  q->size = q->pos = 0;
  q->last_page_ts = 0;
}

static int bad_page(const kl_pages *p, int c, uint64_t off, const char *what, kl_err *err) {
  return kl_err_set(err, KL_E_INVALID, 0,
                    "read trace %s: corrupt page at file offset %llu (CPU %d): %s",
                    p->g.path, (unsigned long long)off, c, what);
}

/* A read at off found the end of the file: say where it really ends now
 * (it may have shrunk below off since it was opened). */
static int cut_short(const kl_pages *p, int c, uint64_t off, kl_err *err) {
  struct stat st;
  uint64_t at = off;
  if (fstat(p->g.fd, &st) == 0 && (uint64_t)st.st_size < off) at = (uint64_t)st.st_size;
  return kl_err_set(err, KL_E_INVALID, 0,
                    "read trace %s: the file ends at offset %llu, inside CPU %d's data "
                    "(which needs offset %llu: truncated, or changed while it was read)",
                    p->g.path, (unsigned long long)at, c, (unsigned long long)off);
}

/* The raw bytes of CPU c's next page into b: *n bytes, from file offset
 * *at (compressed files: the offset of the page's chunk).  1: read; 0: no
 * more pages; -1: error. */
static int fetch_page(kl_pages *p, int c, unsigned char *b, size_t *n, uint64_t *at,
                      kl_err *err) {
  kl_pcpu *q = &p->cpu[c];
  uint64_t end = p->g.cpu_off[c] + p->g.cpu_size[c];
  size_t got = 0;

  if (p->g.zalg) {
    kl_zsrc s;
    if (p->g.cpu_size[c] == 0) return 0;  /* no chunks (or a CPU the table lacks) */
    s.fd = p->g.fd;
    s.big = p->g.big;
    s.alg = p->g.zalg;
    s.path = p->g.path;
    /* the size in the BUFFER option leaves out the chunk count */
    return kl_zchunk_page(&s, &q->z, c, end + 4, b, (size_t)p->g.page_size, n, at, err);
  }
  if (q->off >= end) return 0;
  *n = end - q->off < (uint64_t)p->g.page_size ? (size_t)(end - q->off) : (size_t)p->g.page_size;
  *at = q->off;
  while (got < *n) {
    ssize_t r = pread(p->g.fd, b + got, *n - got, (off_t)(q->off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      return kl_err_set(err, KL_E_IO, e, "read trace %s: read at file offset %llu: %s",
                        p->g.path, (unsigned long long)(q->off + got), strerror(e));
    }
    if (r == 0) return cut_short(p, c, q->off + got, err);
    got += (size_t)r;
  }
  q->off += *n;
  return 1;
}

/* Read the next page of CPU c into the buffer not holding the current
 * one (a record handed out from it stays valid) and check its header.
 * 1: loaded; 0: no more pages; -1: error. */
static int load_page(kl_pages *p, int c, kl_err *err) {
  kl_pcpu *q = &p->cpu[c];
  uint64_t flags, room, at = 0;
  size_t n = 0;
  unsigned char *b;
  int which = !q->which, got;

  b = q->buf[which];
  got = fetch_page(p, c, b, &n, &at, err);
  if (got <= 0) return got;
  q->page_off = at;
  if (n < p->hdr) return bad_page(p, c, at, "shorter than a page header", err);
  flags = p->g.long_size == 8 ? get64(b + 8, p->g.big) : get32(b + 8, p->g.big);
  room = n - p->hdr;
  q->size = (uint32_t)(flags & KL_COMMIT_MASK);
  if (q->size > room) return bad_page(p, c, at, "its commit size exceeds the page", err);
  q->missed = 0;
  if (flags & KL_MISSED_EVENTS) {
    q->missed = -1;
    if (flags & KL_MISSED_STORED) {
      if (room - q->size < (uint64_t)p->g.long_size)
        return bad_page(p, c, at, "its lost-event count lies outside the page", err);
      q->missed = (long long)(p->g.long_size == 8 ? get64(b + p->hdr + q->size, p->g.big)
                                                  : get32(b + p->hdr + q->size, p->g.big));
    }
  }
  q->ts = get64(b, p->g.big);
  if (q->size > 0) {
    if (q->ts < q->last_page_ts)
      return bad_page(p, c, at, "its timestamp is older than the previous page's", err);
    q->last_page_ts = q->ts;
  }
  q->which = which;
  q->pos = 0;
  return 1;
}

/* The next data record of CPU c into r (its data points into the page
 * buffer).  1: r filled; 0: no more; -1: error with the file offset. */
int kl_pages_next(kl_pages *p, int c, struct tep_record *r, kl_err *err) {
  kl_pcpu *q = &p->cpu[c];
  int big = p->g.big;

  for (;;) {
    const unsigned char *d;
    uint32_t w, type_len, delta, pos, start, len;
    while (q->pos >= q->size) {
      int got = load_page(p, c, err);
      if (got <= 0) return got;
    }
    d = q->buf[q->which] + p->hdr;
    start = pos = q->pos;
    if (q->size - pos < 4) return bad_page(p, c, q->page_off, "a record header is cut", err);
    w = get32(d + pos, big);
    type_len = big ? w >> 27 : (w & 31u);
    delta = big ? (w & KL_COMMIT_MASK) : (w >> 5);
    pos += 4;
    if (type_len >= 29) {
      uint32_t arg;
      if (q->size - pos < 4) {
        if (type_len == 29) {  /* a padding word at the very end */
          q->pos = q->size;
          continue;
        }
        return bad_page(p, c, q->page_off, "a time record is cut", err);
      }
      arg = get32(d + pos, big);
      if (type_len == 29) {
        q->ts += delta;
        if (delta == 0 || arg > q->size - pos) {
          if (delta != 0) return bad_page(p, c, q->page_off, "a padding runs past the commit", err);
          q->pos = q->size;  /* the rest of the page is empty */
        } else {
          q->pos = pos + (arg ? arg : 4);
        }
        continue;
      }
      if (type_len == 30) q->ts += ((uint64_t)arg << 27) + delta;
      else q->ts = ((uint64_t)arg << 27) + delta;
      q->pos = pos + 4;
      continue;
    }
    if (type_len == 0) {
      if (q->size - pos < 4) return bad_page(p, c, q->page_off, "a record length is cut", err);
      len = get32(d + pos, big);
      if (len < 4 || len > (uint32_t)p->g.page_size)
        return bad_page(p, c, q->page_off, "a record has an impossible length", err);
      len = (len - 4 + 3) & ~3u;
      pos += 4;
    } else {
      len = type_len * 4;
    }
    if (len > q->size - pos) return bad_page(p, c, q->page_off, "a record runs past the commit", err);
    q->ts += delta;
    q->pos = pos + len;
    memset(r, 0, sizeof *r);
    r->ts = kl_tsfix_apply(&p->g.tsfix, q->ts);
    r->offset = q->page_off + p->hdr + start;
    r->missed_events = start == 0 ? q->missed : 0;  /* only the page's first record */
    r->record_size = (int)(pos + len - start);
    r->size = (int)len;
    r->data = (void *)(d + pos);
    r->cpu = c;
    return 1;
  }
}
