/*
 * file.c - buffers.  An .etl file is the session's buffers back to back;
 * each one holds the records of one processor, in time order.  A cursor
 * keeps one stream per processor (the buffer being read and its next
 * record) and hands out the record with the smallest timestamp: time order
 * across processors with memory bounded by (processors x buffer size),
 * whatever the file size.  Buffers are read with positioned reads.
 * Layout: docs/etl-format.md ("Buffers", "Compressed buffers").
 */
#include "etl.h"

#include <stdlib.h>
#include <string.h>

int etl_buf_header(const etl_src *s, uint64_t off, etl_bufhdr *h, kl_err *err) {
  uint8_t b[ETL_BUF_HDR];
  long got;
  if (off >= s->size) return 0;
  got = s->read_at(s->ud, off, b, sizeof b);
  if (got < 0) return kl_err_set(err, KL_E_IO, 0, "read error at offset %llu",
                                 (unsigned long long)off);
  if (got >= 4 && etl_u32(b) == 0) return 0;   /* a zero-filled tail */
  if (got < ETL_BUF_HDR)
    return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu: header cut short (%ld of "
                      "%d bytes): truncated file", (unsigned long long)off, got, ETL_BUF_HDR);
  h->size = etl_u32(b);
  h->filled = etl_u32(b + 0x30);
  h->flags = etl_u16(b + 0x34);
  h->type = etl_u16(b + 0x36);
  h->cpu = (h->flags & 0x20u) ? etl_u16(b + 0x28) : b[0x28];
  if (h->size < ETL_BUF_HDR || h->size > ETL_BUF_MAX)
    return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu: BufferSize %lu is not "
                      "between %d and %u", (unsigned long long)off, (unsigned long)h->size,
                      ETL_BUF_HDR, ETL_BUF_MAX);
  if (h->size > s->size - off)
    return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu: BufferSize %lu runs past "
                      "the end of the file (%llu bytes): truncated file",
                      (unsigned long long)off, (unsigned long)h->size,
                      (unsigned long long)s->size);
  /* a compressed buffer holds at most one session buffer (the header's size) */
  if (h->filled < ETL_BUF_HDR ||
      h->filled > ((h->flags & 0x40u) ? (s->fill_max ? s->fill_max : ETL_BUF_MAX) : h->size))
    return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu: FilledBytes %lu out of "
                      "range", (unsigned long long)off, (unsigned long)h->filled);
  if (h->cpu >= (s->ncpus ? s->ncpus : ETL_MAX_CPU))
    return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu: processor %d out of range "
                      "(%d processors)", (unsigned long long)off, h->cpu,
                      s->ncpus ? s->ncpus : ETL_MAX_CPU);
  return 1;
}

void etl_cursor_free(etl_cursor *c) {
  int i;
  for (i = 0; i < c->n; i++) free(c->s[i].buf);
  free(c->s);
  free(c->zbuf);
  memset(c, 0, sizeof *c);
}

static int grow(uint8_t **p, size_t *cap, size_t need, kl_err *err) {
  uint8_t *n;
  if (need <= *cap) return 0;
  n = (uint8_t *)realloc(*p, need);
  if (n == NULL) return kl_err_set(err, KL_E_NO_RESOURCES, 0, "out of memory (%lu bytes)",
                                   (unsigned long)need);
  *p = n;
  *cap = need;
  return 0;
}

/* The body of the buffer at off into st->buf, decompressed if need be. */
static int load_body(etl_cursor *c, etl_stream *st, uint64_t off, const etl_bufhdr *h,
                     kl_err *err) {
  const etl_src *s = c->src;
  size_t body = h->size - ETL_BUF_HDR;
  if (grow(&st->buf, &st->cap, (h->flags & 0x40u) ? h->filled : h->size, err) != 0) return -1;
  if (h->flags & 0x40u) {
    if (grow(&c->zbuf, &c->zcap, body, err) != 0) return -1;
    if (s->read_at(s->ud, off + ETL_BUF_HDR, c->zbuf, body) != (long)body)
      return kl_err_set(err, KL_E_IO, 0, "buffer at offset %llu: short read",
                        (unsigned long long)off);
    if (etl_xca_decompress(c->zbuf, body, st->buf + ETL_BUF_HDR, h->filled - ETL_BUF_HDR))
      return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu: corrupt compressed data",
                        (unsigned long long)off);
  } else if (s->read_at(s->ud, off + ETL_BUF_HDR, st->buf + ETL_BUF_HDR, body) != (long)body) {
    return kl_err_set(err, KL_E_IO, 0, "buffer at offset %llu: short read",
                      (unsigned long long)off);
  }
  st->pos = ETL_BUF_HDR;
  st->end = h->filled;
  st->buf_off = off;
  return 0;
}

/* The stream's next buffer.  1 loaded, 0 none left, -1 error. */
static int next_buffer(etl_cursor *c, etl_stream *st, kl_err *err) {
  etl_bufhdr h;
  for (;;) {
    int r = etl_buf_header(c->src, st->scan, &h, err);
    uint64_t off = st->scan;
    if (r == 0 && off < c->src->buffers_end)
      return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu: no buffer where open found "
                        "one (the file changed while it was read)", (unsigned long long)off);
    if (r <= 0) return r;
    st->scan += h.size;
    if (h.cpu != st->cpu) continue;
    c->nbuffers++;
    return load_body(c, st, off, &h, err) == 0 ? 1 : -1;
  }
}

/* The head's timestamp: converts, and is not before the stream's previous. */
static int check_time(etl_cursor *c, etl_stream *st, kl_err *err) {
  int64_t raw = st->head.raw;
  if (!etl_time_valid(c->hdr, raw))
    return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu, byte %lu: timestamp %lld "
                      "is out of range", (unsigned long long)st->buf_off,
                      (unsigned long)st->head_at, (long long)raw);
  if (st->has_last && raw < st->last_raw)
    return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu, byte %lu: timestamp %lld "
                      "goes back in time (after %lld on processor %d)",
                      (unsigned long long)st->buf_off, (unsigned long)st->head_at,
                      (long long)raw, (long long)st->last_raw, st->cpu);
  st->last_raw = raw;
  st->has_last = 1;
  return 0;
}

/* Move the stream to its next record.  1 head set, 0 stream ended, -1 error. */
static int advance(etl_cursor *c, etl_stream *st, kl_err *err) {
  for (;;) {
    long n = st->pos < st->end ? etl_rec_parse(st->buf + st->pos, st->end - st->pos, &st->head)
                               : 0;
    if (n < 0)
      return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu, byte %lu: corrupt record "
                        "header", (unsigned long long)st->buf_off, (unsigned long)st->pos);
    if (n == 0) {
      int r = next_buffer(c, st, err);
      if (r <= 0) {
        st->has_head = 0;
        return r;
      }
      continue;
    }
    st->head_at = st->pos;
    st->pos += ((size_t)n + 7u) & ~(size_t)7u;
    if (st->head.kind == ETL_K_SKIP) {
      c->skipped++;
      continue;
    }
    if (check_time(c, st, err) != 0) {
      st->has_head = 0;
      return -1;
    }
    st->has_head = 1;
    return 1;
  }
}

int etl_cursor_start(etl_cursor *c, const etl_src *src, const etl_loghdr *hdr, const int *cpus,
                     const uint64_t *first, int n, int only_cpu, kl_err *err) {
  int i, k = 0;
  etl_cursor_free(c);
  c->src = src;
  c->hdr = hdr;
  c->pending = -1;
  c->s = (etl_stream *)calloc((size_t)(n > 0 ? n : 1), sizeof *c->s);
  if (c->s == NULL) return kl_err_set(err, KL_E_NO_RESOURCES, 0, "out of memory");
  for (i = 0; i < n; i++) {
    if (only_cpu >= 0 && cpus[i] != only_cpu) continue;
    c->s[k].cpu = cpus[i];
    c->s[k].scan = first[i];
    c->n = ++k;
    if (advance(c, &c->s[k - 1], err) < 0) return -1;
  }
  return 0;
}

/* The record with the smallest timestamp: its stream index, -1 at the end,
 * -2 on error.  The record stays valid until the next call. */
int etl_cursor_next(etl_cursor *c, kl_err *err) {
  int i, best = -1;
  if (c->pending >= 0 && advance(c, &c->s[c->pending], err) < 0) {
    c->pending = -1;
    return -2;
  }
  c->pending = -1;
  for (i = 0; i < c->n; i++)
    if (c->s[i].has_head && (best < 0 || c->s[i].head.raw < c->s[best].head.raw)) best = i;
  c->pending = best;
  return best;
}
