/*
 * out.c - the fields of the event being decoded: one array and one text
 * arena per reader, reset for each event and grown only when an event
 * needs more than they hold (etl.h says how), and
 * the conversions to text (UTF-16, GUIDs, addresses, SIDs, times).
 */
#include "etl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_START_FIELDS 64
#define OUT_START_ARENA 4096u

int etl_out_init(etl_out *o, const etl_loghdr *hdr) {
  memset(o, 0, sizeof *o);
  o->hdr = hdr;
  o->fields = (kl_field *)malloc(OUT_START_FIELDS * sizeof *o->fields);
  o->nested = (kl_field *)malloc(OUT_START_FIELDS * sizeof *o->nested);
  o->arena = (char *)malloc(OUT_START_ARENA);
  if (o->fields == NULL || o->nested == NULL || o->arena == NULL) {
    etl_out_free(o);
    return -1;
  }
  o->capf = o->capn = OUT_START_FIELDS;
  o->capa = OUT_START_ARENA;
  return 0;
}

void etl_out_free(etl_out *o) {
  free(o->fields);
  free(o->nested);
  free(o->arena);
  o->fields = o->nested = NULL;
  o->arena = NULL;
  o->capf = o->capn = o->capa = 0;
}

void etl_out_reset(etl_out *o) {
  o->nf = 0;
  o->nn = 0;
  o->used = 0;
  o->full = 0;
  o->grow = 0;
  o->wantf = o->wantn = o->wanta = 0;
}

/* Room for n more of size, have used, cap allocated, max at most: 1 if it
 * fits; else 0 (full), noting in *want what growing would need. */
static int room(etl_out *o, size_t n, size_t have, size_t cap, size_t max, size_t *want) {
  if (n <= cap - have) return 1;
  o->full = 1;
  if (n <= max - have) {
    o->grow = 1;
    if (have + n > *want) *want = have + n;
  }
  return 0;
}

static void *enlarge(void *p, size_t *cap, size_t want, size_t max, size_t size) {
  size_t n = *cap * 2 > want ? *cap * 2 : want;
  void *q;
  if (want <= *cap) return p;
  if (n > max) n = max;
  if ((q = realloc(p, n * size)) != NULL) *cap = n;
  return q;
}

int etl_out_grow(etl_out *o) {
  kl_field *f;
  char *a;
  if ((f = (kl_field *)enlarge(o->fields, &o->capf, o->wantf, ETL_MAX_FIELDS, sizeof *f)) == NULL)
    return -1;
  o->fields = f;
  if ((f = (kl_field *)enlarge(o->nested, &o->capn, o->wantn, ETL_MAX_FIELDS, sizeof *f)) == NULL)
    return -1;
  o->nested = f;
  if ((a = (char *)enlarge(o->arena, &o->capa, o->wanta, ETL_ARENA, 1)) == NULL) return -1;
  o->arena = a;
  return 0;
}

kl_field *etl_out_fields(etl_out *o, size_t n) {
  kl_field *f;
  if (!room(o, n, o->nf, o->capf, ETL_MAX_FIELDS, &o->wantf)) return NULL;
  f = &o->fields[o->nf];
  memset(f, 0, n * sizeof *f);
  o->nf += n;
  return f;
}

kl_field *etl_out_nested(etl_out *o, size_t n) {
  kl_field *f;
  if (!room(o, n, o->nn, o->capn, ETL_MAX_FIELDS, &o->wantn)) return NULL;
  f = &o->nested[o->nn];
  memset(f, 0, n * sizeof *f);
  o->nn += n;
  return f;
}

kl_field *etl_out_field(etl_out *o, const char *name) {
  kl_field *f = etl_out_fields(o, 1);
  if (f) f->name = name;
  return f;
}

void etl_set_int(kl_field *f, int64_t v) {
  f->type = KL_F_INT;
  f->v.i = v;
}

void etl_set_uint(kl_field *f, uint64_t v) {
  f->type = KL_F_UINT;
  f->v.u = v;
}

static char *reserve(etl_out *o, size_t n) {
  char *p;
  if (!room(o, n, o->used, o->capa, ETL_ARENA, &o->wanta)) return NULL;
  p = o->arena + o->used;
  o->used += n;
  return p;
}

const char *etl_out_str(etl_out *o, const char *p, size_t len) {
  char *d = reserve(o, len + 1);
  if (d == NULL) return NULL;
  memcpy(d, p, len);
  d[len] = '\0';
  return d;
}

static int set_text(kl_field *f, const char *p, size_t len) {
  if (p == NULL) return -1;
  f->type = KL_F_STR;
  f->v.s.p = p;
  f->v.s.len = len;
  return 0;
}

int etl_set_bytes(etl_out *o, kl_field *f, const uint8_t *p, size_t len) {
  return set_text(f, etl_out_str(o, (const char *)p, len), len);
}

int etl_set_utf16(etl_out *o, kl_field *f, const uint8_t *p, size_t units) {
  char *d = reserve(o, units * 3 + 1), *q = d;
  size_t i;
  if (d == NULL) return -1;
  for (i = 0; i < units; i++) {
    uint32_t c = etl_u16(p + 2 * i);
    if (c < 0x80) {   /* the common case: ASCII */
      *q++ = (char)c;
      continue;
    }
    if (c >= 0xD800 && c < 0xDC00 && i + 1 < units) {
      uint32_t lo = etl_u16(p + 2 * i + 2);
      if (lo >= 0xDC00 && lo < 0xE000) {
        c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
        i++;
      }
    }
    if (c >= 0xD800 && c < 0xE000) c = 0xFFFD;  /* a lone surrogate */
    if (c < 0x80) {
      *q++ = (char)c;
    } else if (c < 0x800) {
      *q++ = (char)(0xC0 | c >> 6);
      *q++ = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      *q++ = (char)(0xE0 | c >> 12);
      *q++ = (char)(0x80 | ((c >> 6) & 0x3F));
      *q++ = (char)(0x80 | (c & 0x3F));
    } else {
      *q++ = (char)(0xF0 | c >> 18);
      *q++ = (char)(0x80 | ((c >> 12) & 0x3F));
      *q++ = (char)(0x80 | ((c >> 6) & 0x3F));
      *q++ = (char)(0x80 | (c & 0x3F));
    }
  }
  *q = '\0';
  o->used -= (size_t)(d + units * 3 + 1 - (q + 1));  /* give back the unused tail */
  return set_text(f, d, (size_t)(q - d));
}

void etl_guid_text(const uint8_t *g, char out[37]) {
  snprintf(out, 37, "%08lx-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           (unsigned long)etl_u32(g), (unsigned)etl_u16(g + 4), (unsigned)etl_u16(g + 6),
           g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
}

int etl_set_guid(etl_out *o, kl_field *f, const uint8_t *g) {
  char t[37];
  etl_guid_text(g, t);
  return set_text(f, etl_out_str(o, t, 36), 36);
}

int etl_set_ip4(etl_out *o, kl_field *f, const uint8_t *a) {
  char t[16];
  int n = snprintf(t, sizeof t, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
  return set_text(f, etl_out_str(o, t, (size_t)n), (size_t)n);
}

/* RFC 5952 text: lowercase, the longest run (>= 2) of zero groups as "::",
 * IPv4-mapped addresses with a dotted tail. */
int etl_set_ip6(etl_out *o, kl_field *f, const uint8_t *a) {
  char t[64];
  int i, n = 0, best = -1, bestlen = 0, run = 0;
  unsigned g[8];
  for (i = 0; i < 8; i++) g[i] = (unsigned)(a[2 * i] << 8 | a[2 * i + 1]);
  for (i = 0; i < 8; i++) {
    run = g[i] == 0 ? run + 1 : 0;
    if (run > bestlen) { bestlen = run; best = i - run + 1; }
  }
  if (bestlen < 2) best = -1;
  if (best == 0 && bestlen == 5 && g[5] == 0xffff) {
    n = snprintf(t, sizeof t, "::ffff:%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
    return set_text(f, etl_out_str(o, t, (size_t)n), (size_t)n);
  }
  for (i = 0; i < 8; i++) {
    if (i == best) {
      n += snprintf(t + n, sizeof t - (size_t)n, "::");
      i += bestlen - 1;
      continue;
    }
    n += snprintf(t + n, sizeof t - (size_t)n, "%s%x",
                  (i > 0 && i != best + bestlen) || (i > 0 && best < 0) ? ":" : "", g[i]);
  }
  return set_text(f, etl_out_str(o, t, (size_t)n), (size_t)n);
}

long etl_set_sid(etl_out *o, kl_field *f, const uint8_t *p, size_t n) {
  char t[16 + 15 * 11 + 24];
  size_t len, i;
  int k;
  uint64_t auth = 0;
  if (n < 8 || p[1] > 15 || (len = 8u + 4u * p[1]) > n) return -1;
  for (i = 2; i < 8; i++) auth = auth << 8 | p[i];
  k = snprintf(t, sizeof t, "S-%u-%llu", p[0], (unsigned long long)auth);
  for (i = 0; i < p[1]; i++)
    k += snprintf(t + k, sizeof t - (size_t)k, "-%lu", (unsigned long)etl_u32(p + 8 + 4 * i));
  if (set_text(f, etl_out_str(o, t, (size_t)k), (size_t)k) != 0) return -1;
  return (long)len;
}

/* Days since 1970-01-01 -> civil date (proleptic Gregorian). */
static void civil(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  int64_t era, yoe, doy, mp;
  z += 719468;
  era = (z >= 0 ? z : z - 146096) / 146097;
  yoe = z - era * 146097;
  yoe = (yoe - yoe / 1460 + yoe / 36524 - yoe / 146096) / 365;
  doy = z - era * 146097 - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
  *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

#define FT_UNIX 116444736000000000ULL   /* FILETIME of 1970-01-01 */

int etl_set_filetime(etl_out *o, kl_field *f, uint64_t ft) {
  char t[64];
  int64_t ticks = (int64_t)(ft - FT_UNIX), days, y;  /* wraps to negative before 1970 */
  int64_t rem;
  unsigned m, d;
  int n;
  days = ticks / 864000000000LL;
  rem = ticks % 864000000000LL;
  if (rem < 0) { rem += 864000000000LL; days--; }
  civil(days, &y, &m, &d);
  n = snprintf(t, sizeof t, "%04lld-%02u-%02uT%02u:%02u:%02u.%07uZ", (long long)y, m, d,
               (unsigned)(rem / 36000000000LL), (unsigned)(rem / 600000000 % 60),
               (unsigned)(rem / 10000000 % 60), (unsigned)(rem % 10000000));
  return set_text(f, etl_out_str(o, t, (size_t)n), (size_t)n);
}

int etl_set_systemtime(etl_out *o, kl_field *f, const uint8_t *p) {
  char t[64];
  int n = snprintf(t, sizeof t, "%04u-%02u-%02u %02u:%02u:%02u.%03u", etl_u16(p),
                   etl_u16(p + 2), etl_u16(p + 6), etl_u16(p + 8), etl_u16(p + 10),
                   etl_u16(p + 12), etl_u16(p + 14));
  return set_text(f, etl_out_str(o, t, (size_t)n), (size_t)n);
}

size_t etl_strlen(const uint8_t *p, size_t n, int unit, int *term) {
  size_t i;
  if (unit == 1) {
    const uint8_t *z = (const uint8_t *)memchr(p, 0, n);
    *term = z != NULL;
    return z ? (size_t)(z - p) : n;
  }
  for (i = 0; i + 1 < n; i += 2) {
    if ((p[i] | p[i + 1]) == 0) {
      *term = 1;
      return i;
    }
  }
  *term = 0;
  return i;
}

uint64_t etl_filetime_ns(uint64_t ft) {
  if (ft <= FT_UNIX) return 0;
  ft -= FT_UNIX;
  return ft > UINT64_MAX / 100 ? UINT64_MAX : ft * 100;
}

/* trunc(v * mul / div) for the ranges a clock gives; wraps (never traps)
 * on garbage, as unsigned arithmetic. */
static uint64_t scale(int64_t v, uint64_t mul, uint64_t div) {
  int neg = v < 0;
  uint64_t a = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, q = a / div, r = a % div, t;
  t = q * mul + (r > UINT64_MAX / mul ? (uint64_t)((double)r * ((double)mul / (double)div))
                                       : r * mul / div);
  return neg ? (uint64_t)0 - t : t;
}

/* As the consumer API does it: base = StartTime - scale(raw of the header
 * record), time = base + scale(raw), in FILETIME units (100 ns). */
uint64_t etl_time_ns(const etl_loghdr *h, int64_t raw) {
  uint64_t ft;
  if (h->clock_type == 2 || (h->clock_type == 0 && h->perf_freq == 0)) {
    ft = (uint64_t)raw;
  } else if (h->clock_type == 3) {
    ft = h->start_time - scale(h->raw0, 10, h->cpu_mhz) + scale(raw, 10, h->cpu_mhz);
  } else {
    ft = h->start_time - scale(h->raw0, 10000000, h->perf_freq) +
         scale(raw, 10000000, h->perf_freq);
  }
  return ft >= (uint64_t)1 << 63 ? 0 : etl_filetime_ns(ft);
}

int etl_time_valid(const etl_loghdr *h, int64_t raw) {
  double ft, lim = (double)FT_UNIX + 9.2e18 / 100;   /* ns since 1970 fit an int64 */
  if (raw < 0) return 0;
  if (h->clock_type == 2 || (h->clock_type == 0 && h->perf_freq == 0))
    ft = (double)raw;
  else if (h->clock_type == 3)
    ft = (double)h->start_time + ((double)raw - (double)h->raw0) * 10.0 / (double)h->cpu_mhz;
  else
    ft = (double)h->start_time +
         ((double)raw - (double)h->raw0) * 1e7 / (double)h->perf_freq;
  return ft > (double)FT_UNIX && ft < lim;
}
