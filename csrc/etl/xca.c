/*
 * xca.c - MS-XCA "plain LZ77" decompression, written from Microsoft's
 * open specification [MS-XCA] "Xpress Compression Algorithm", section
 * 2.4.4 "Processing" (plain LZ77 decompression).  Compressed .etl buffers
 * use it for their record area (docs/etl-format.md, "Compressed buffers").
 *
 * Every read and write is bounds-checked: a corrupt stream gives -1, never
 * an access outside in[] or out[].
 */
#include "etl.h"

#include <string.h>

typedef struct xca {
  const uint8_t *in;
  size_t nin, i;
  size_t nibble_at;  /* input position of the byte whose high nibble is pending; 0: none */
} xca;

/* The length of a match whose 3-bit code is 7: the shared-nibble and
 * escape forms.  Returns the length or 0 on overrun. */
static size_t long_length(xca *x) {
  size_t len, nib;
  if (x->nibble_at == 0) {
    if (x->i >= x->nin) return 0;
    nib = x->in[x->i] & 15u;
    x->nibble_at = x->i++;
  } else {
    nib = x->in[x->nibble_at] >> 4;
    x->nibble_at = 0;
  }
  if (nib < 15) return nib + 7 + 3;
  if (x->i >= x->nin) return 0;
  len = x->in[x->i++];
  if (len < 255) return len + 15 + 7 + 3;
  if (x->i + 2 > x->nin) return 0;
  len = etl_u16(x->in + x->i);
  x->i += 2;
  if (len == 0) {
    if (x->i + 4 > x->nin) return 0;
    len = etl_u32(x->in + x->i);
    x->i += 4;
  }
  if (len < 15 + 7) return 0;  /* the spec rejects escaped values this small */
  return len + 3;
}

/* out[o + k] = out[o + k - off] for k in 0..len-1, as the byte-by-byte
 * definition reads: when the match overlaps what it writes (off < len),
 * the bytes repeat with period off, so each chunk copies from a distance
 * that is a multiple of off, doubling, and never overlaps its source. */
static void copy_match(uint8_t *out, size_t o, size_t off, size_t len) {
  size_t d = off;
  while (len > 0) {
    size_t n = len < d ? len : d;
    memcpy(out + o, out + o - d, n);
    o += n;
    len -= n;
    d += n;
  }
}

int etl_xca_decompress(const uint8_t *in, size_t nin, uint8_t *out, size_t nout) {
  xca x;
  size_t o = 0;
  uint32_t flags = 0;
  int nflags = 0;
  x.in = in;
  x.nin = nin;
  x.i = 0;
  x.nibble_at = 0;
  while (o < nout) {
    if (nflags == 0) {
      if (x.i + 4 > nin) return -1;
      flags = etl_u32(in + x.i);
      x.i += 4;
      nflags = 32;
    }
    nflags--;
    if (((flags >> nflags) & 1u) == 0) {
      if (x.i >= nin) return -1;
      out[o++] = in[x.i++];
    } else {
      size_t m, off, len;
      if (x.i + 2 > nin) return -1;
      m = etl_u16(in + x.i);
      x.i += 2;
      off = (m >> 3) + 1;
      len = m & 7u;
      len = len < 7 ? len + 3 : long_length(&x);
      if (len == 0 || off > o || len > nout - o) return -1;
      copy_match(out, o, off, len);
      o += len;
    }
  }
  return 0;
}
