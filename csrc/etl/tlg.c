/*
 * tlg.c - TraceLogging (self-describing) events.  Each such event carries
 * its own schema in an EVENT_SCHEMA_TL extended item and its provider's
 * name in a PROV_TRAITS item; the payload is decoded by that schema:
 * structs become tables, arrays lists.  The encoding (field list, in-types,
 * out-types, arity bits) is the one TraceLoggingProvider.h documents; see
 * docs/etl-format.md ("TraceLogging").
 */
#include "etl.h"

#include <string.h>

#define TLG_MAX_FIELDS 256
#define TLG_MAX_DEPTH 16

typedef struct tfield {
  const char *name;
  uint8_t in, out;   /* in-type (arity bits included), out-type (0 if none) */
  uint16_t count;    /* constant-count arrays */
  uint16_t span;     /* entries this field covers, struct members included */
} tfield;

typedef struct tctx {
  etl_out *o;
  const uint8_t *d;
  size_t n, pos;
  int ptr;
  tfield f[TLG_MAX_FIELDS];
  size_t nf;
} tctx;

/* A NUL-terminated string at s[*pos..n): returns it, or NULL if unterminated. */
static const char *cstr(const uint8_t *s, size_t n, size_t *pos) {
  const char *r = (const char *)s + *pos;
  const void *z = *pos < n ? memchr(s + *pos, 0, n - *pos) : NULL;
  if (z == NULL) return NULL;
  *pos = (size_t)((const uint8_t *)z - s) + 1;
  return r;
}

/* Size, tag bytes and event name: returns the name, *end the blob's end. */
static const char *schema_head(const uint8_t *s, size_t n, size_t *pos, size_t *end) {
  if (n < 3) return NULL;
  *end = etl_u16(s);
  if (*end > n || *end < 3) return NULL;
  *pos = 2;
  while (*pos < *end && (s[*pos] & 0x80)) (*pos)++;
  (*pos)++;
  return cstr(s, *end, pos);
}

const char *etl_tlg_name(etl_out *o, const uint8_t *schema, size_t n) {
  size_t pos, end;
  const char *name = schema_head(schema, n, &pos, &end);
  (void)o;
  return name;
}

const char *etl_tlg_provider(etl_out *o, const uint8_t *traits, size_t n) {
  size_t pos = 2, end;
  (void)o;
  if (n < 3) return NULL;
  end = etl_u16(traits);
  if (end > n) end = n;
  return cstr(traits, end, &pos);
}

/* Spans: a struct covers itself and its members (recursively). */
static int spans(tctx *c, size_t i, size_t *next, int depth) {
  size_t j = i + 1, m, members;
  if (i >= c->nf || depth > TLG_MAX_DEPTH) return -1;
  members = (c->f[i].in & 0x1F) == 24 ? (size_t)(c->f[i].out & 0x7F) : 0;
  for (m = 0; m < members; m++)
    if (spans(c, j, &j, depth + 1) != 0) return -1;
  c->f[i].span = (uint16_t)(j - i);
  *next = j;
  return 0;
}

static int parse_schema(tctx *c, const uint8_t *s, size_t n) {
  size_t pos, end, i;
  if (schema_head(s, n, &pos, &end) == NULL) return -1;
  for (c->nf = 0; pos < end; c->nf++) {
    tfield *f = &c->f[c->nf];
    if (c->nf == TLG_MAX_FIELDS || (f->name = cstr(s, end, &pos)) == NULL || pos >= end)
      return -1;
    f->in = s[pos++];
    f->out = 0;
    f->count = 0;
    if (f->in & 0x80) {
      if (pos >= end) return -1;
      f->out = s[pos++];
      if (f->out & 0x80)                 /* field tag bytes */
        while (pos < end && (s[pos++] & 0x80)) {}
    }
    if ((f->in & 0x60) == 0x20) {
      if (pos + 2 > end) return -1;
      f->count = etl_u16(s + pos);
      pos += 2;
    } else if ((f->in & 0x60) == 0x60) {
      return -1;                         /* custom serializer: not decodable */
    }
  }
  i = 0;
  while (i < c->nf)
    if (spans(c, i, &i, 0) != 0) return -1;
  return 0;
}

static int need(tctx *c, size_t k) { return k <= c->n - c->pos ? 0 : -1; }

/* A u16-counted value (BINARY, COUNTED*): its bytes at *p, count *k. */
static int counted(tctx *c, const uint8_t **p, size_t *k) {
  if (need(c, 2) != 0) return -1;
  *k = etl_u16(c->d + c->pos);
  c->pos += 2;
  if (need(c, *k) != 0) return -1;
  *p = c->d + c->pos;
  c->pos += *k;
  return 0;
}

static int fixed(tctx *c, kl_field *v, int type, int out) {
  static const uint8_t size[26] = {0, 0, 0, 1, 1, 2, 2, 4, 4, 8, 8, 4, 8, 4, 0, 16, 0, 8, 16,
                                   0, 4, 8, 0, 0, 0, 0};
  const uint8_t *p = c->d + c->pos;
  size_t k = type == 16 ? (size_t)c->ptr : size[type];
  if (need(c, k) != 0) return -1;
  c->pos += k;
  switch (type) {
    case 3: etl_set_int(v, (int8_t)p[0]); break;
    case 4:
      etl_set_uint(v, p[0]);
      if (out == 3) v->type = KL_F_BOOL;
      break;
    case 5: etl_set_int(v, (int16_t)etl_u16(p)); break;
    case 6: etl_set_uint(v, out == 7 ? (unsigned)(p[0] << 8 | p[1]) : etl_u16(p)); break;
    case 7: etl_set_int(v, (int32_t)etl_u32(p)); break;
    case 8: if (out == 8) return etl_set_ip4(c->o, v, p);
            etl_set_uint(v, etl_u32(p)); break;
    case 9: etl_set_int(v, (int64_t)etl_u64(p)); break;
    case 11: { uint32_t u = etl_u32(p); float x; memcpy(&x, &u, 4);
               v->type = KL_F_FLOAT; v->v.d = x; break; }
    case 12: { uint64_t u = etl_u64(p); double x; memcpy(&x, &u, 8);
               v->type = KL_F_FLOAT; v->v.d = x; break; }
    case 13: v->type = KL_F_BOOL; v->v.i = etl_u32(p) != 0; break;
    case 15: return etl_set_guid(c->o, v, p);
    case 16: etl_set_uint(v, k == 4 ? etl_u32(p) : etl_u64(p)); break;
    case 17: return etl_set_filetime(c->o, v, etl_u64(p));
    case 18: return etl_set_systemtime(c->o, v, p);
    case 20: etl_set_uint(v, etl_u32(p)); break;
    default: etl_set_uint(v, etl_u64(p)); break;  /* 10 UINT64, 21 HEXINT64 */
  }
  return 0;
}

/* One value of base type `type` at the payload position. */
static int value(tctx *c, kl_field *v, int type, int out) {
  const uint8_t *p;
  size_t k;
  int term;
  long used;
  switch (type) {
    case 0: return etl_set_bytes(c->o, v, c->d, 0);
    case 1:
      k = etl_strlen(c->d + c->pos, c->n - c->pos, 2, &term);
      p = c->d + c->pos;
      c->pos += k + 2u * (size_t)term;
      return etl_set_utf16(c->o, v, p, k / 2);
    case 2:
      k = etl_strlen(c->d + c->pos, c->n - c->pos, 1, &term);
      p = c->d + c->pos;
      c->pos += k + (size_t)term;
      return etl_set_bytes(c->o, v, p, k);
    case 14: case 23: case 25:
      if (counted(c, &p, &k) != 0) return -1;
      if (out == 9 && k == 16) return etl_set_ip6(c->o, v, p);
      return etl_set_bytes(c->o, v, p, k);
    case 22:
      if (counted(c, &p, &k) != 0) return -1;
      return etl_set_utf16(c->o, v, p, k / 2);
    case 19:
      used = etl_set_sid(c->o, v, c->d + c->pos, c->n - c->pos);
      if (used < 0) return -1;
      c->pos += (size_t)used;
      return 0;
    default:
      if (type > 21) return -1;
      return fixed(c, v, type, out);
  }
}

static int field(tctx *c, size_t i, kl_field *slot, int depth);

/* One element of field i: a value, or for a struct a table of its members. */
static int element(tctx *c, size_t i, kl_field *v, int depth) {
  const tfield *f = &c->f[i];
  size_t m, j = i + 1, members = f->out & 0x7F;
  kl_field *t;
  if ((f->in & 0x1F) != 24) return value(c, v, f->in & 0x1F, f->out & 0x7F);
  if (depth > TLG_MAX_DEPTH || (t = etl_out_nested(c->o, members)) == NULL) return -1;
  for (m = 0; m < members; m++) {
    if (field(c, j, &t[m], depth + 1) != 0) return -1;
    j += c->f[j].span;
  }
  v->type = KL_F_TABLE;
  v->v.t.fields = t;
  v->v.t.count = members;
  v->v.t.is_list = 0;
  return 0;
}

/* Field i into slot: one element, or a list for arrays. */
static int field(tctx *c, size_t i, kl_field *slot, int depth) {
  const tfield *f = &c->f[i];
  size_t n, e;
  kl_field *l;
  slot->name = f->name;
  if ((f->in & 0x60) == 0) return element(c, i, slot, depth);
  if ((f->in & 0x60) == 0x20) {
    n = f->count;
  } else {
    if (need(c, 2) != 0) return -1;
    n = etl_u16(c->d + c->pos);
    c->pos += 2;
  }
  if ((l = etl_out_nested(c->o, n)) == NULL && n > 0) return -1;
  for (e = 0; e < n; e++)
    if (element(c, i, &l[e], depth) != 0) return -1;
  slot->type = KL_F_TABLE;
  slot->v.t.fields = l;
  slot->v.t.count = n;
  slot->v.t.is_list = 1;
  return 0;
}

int etl_tlg_fields(etl_out *o, const uint8_t *schema, size_t ns, const uint8_t *data,
                   size_t nd, int ptr) {
  tctx c;
  size_t i, top = 0, k = 0, nf0 = o->nf, nn0 = o->nn, used0 = o->used;
  kl_field *slots;
  c.o = o;
  c.d = data;
  c.n = nd;
  c.pos = 0;
  c.ptr = ptr;
  if (parse_schema(&c, schema, ns) != 0) return -1;
  for (i = 0; i < c.nf; i += c.f[i].span) top++;
  if ((slots = etl_out_fields(o, top)) == NULL) goto fail;
  for (i = 0; i < c.nf; i += c.f[i].span)
    if (field(&c, i, &slots[k++], 0) != 0) goto fail;
  if (c.pos != c.n) goto fail;         /* the schema must account for every byte */
  return 0;
fail:
  o->nf = nf0;
  o->nn = nn0;
  o->used = used0;
  o->full = 0;
  return -1;
}
