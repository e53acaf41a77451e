/*
 * tsfix.c - the options of a trace.dat file that correct its timestamps,
 * applied by our own reader the way trace-cmd reports them:
 *   DATE (1)       ASCII number (C syntax, "0x..." allowed): microseconds
 *                  between the trace clock and the time of day; added, in ns.
 *   OFFSET (7)     ASCII number: nanoseconds added.
 *   TSC2NSEC (14)  u32 mult, u32 shift, u64 offset: a TSC count becomes
 *                  ns as ts * mult >> shift (the u64 is not used by
 *                  trace-cmd when it reports).
 *   TIME_SHIFT (12) guest/host clock synchronisation samples: not applied;
 *                  such a file is refused at open, naming the option.
 * The order is trace-cmd's: TSC2NSEC first, then the sum of DATE and OFFSET.
 */
#include "ftrace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_DATE = 1, OPT_OFFSET = 7, OPT_TIME_SHIFT = 12, OPT_TSC2NSEC = 14 };

int kl_tsfix_option(unsigned id) {
  return id == OPT_DATE || id == OPT_OFFSET || id == OPT_TIME_SHIFT || id == OPT_TSC2NSEC;
}

const char *kl_tsfix_name(unsigned id) {
  switch (id) {
    case OPT_DATE: return "DATE";
    case OPT_OFFSET: return "OFFSET";
    case OPT_TIME_SHIFT: return "TIME_SHIFT";
    default: return "TSC2NSEC";
  }
}

static uint32_t u32at(const unsigned char *p, int big) {
  return big ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
             : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

/* The ASCII number at the start of d (up to its NUL or n bytes). */
static int number(const unsigned char *d, uint32_t n, long long *v) {
  char text[64], *end;
  uint32_t len = 0;
  while (len < n && len < sizeof text - 1 && d[len]) len++;
  memcpy(text, d, len);
  text[len] = '\0';
  errno = 0;
  *v = strtoll(text, &end, 0);
  return (len == 0 || end == text || errno) ? -1 : 0;
}

int kl_tsfix_add(kl_tsfix *f, unsigned id, const unsigned char *d, uint32_t n, int big) {
  long long v;
  switch (id) {
    case OPT_DATE:
      if (number(d, n, &v) < 0 || v > INT64_MAX / 1000 || v < INT64_MIN / 1000) return -1;
      f->offset += (int64_t)v * 1000;
      return 0;
    case OPT_OFFSET:
      if (number(d, n, &v) < 0) return -1;
      f->offset += (int64_t)v;
      return 0;
    case OPT_TSC2NSEC:
      if (n < 16) return -1;
      f->mult = u32at(d, big);
      f->shift = u32at(d + 4, big);
      return f->shift < 64 ? 0 : -1;
    default:
      return -1;
  }
}

/* ts * mult >> shift, exact to 128 bits (the low 64 bits of the result) */
static uint64_t mul_shr(uint64_t ts, uint32_t mult, uint32_t shift) {
  uint64_t lo = (ts & 0xffffffffu) * mult, hi = (ts >> 32) * mult;
  uint64_t low = lo + (hi << 32), high = (hi >> 32) + (low < lo);
  if (shift == 0) return low;
  return (low >> shift) | (high << (64 - shift));
}

uint64_t kl_tsfix_apply(const kl_tsfix *f, uint64_t ts) {
  if (f->mult) ts = mul_shr(ts, f->mult, f->shift);
  return ts + (uint64_t)f->offset;
}
