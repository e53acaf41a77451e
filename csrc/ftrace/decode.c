/*
 * decode.c - turning ftrace records into kl_event / kl_field, shared by
 * the trace.dat reader (reader.c) and the live reader of real-time
 * sessions (live.c).
 *
 * Every event type gets a decoding plan the first time it is seen (which
 * fields, how to read each one); after that an event costs no allocation:
 * its fields are written into one array owned by the decoder and reused.
 */
#define _GNU_SOURCE
#include "ftrace.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event-parse.h>

#define KL_ADDR_TEXT 48          /* INET6_ADDRSTRLEN (46) rounded up */

/* How one field of an event type is decoded. */
typedef enum {
  FD_INT,        /* scalar, sign-extended */
  FD_UINT,       /* scalar, zero-extended (pointers and longs too) */
  FD_STR,        /* fixed char[N]: up to the first NUL */
  FD_BSTR,       /* fixed u8[N]: a string when printable, else an array */
  FD_ARRAY,      /* fixed array of elem bytes */
  FD_DSTR,       /* __data_loc / __rel_loc char[] */
  FD_DARRAY,     /* __data_loc / __rel_loc other[] */
  FD_IP4,        /* u8[4] of a network event: "a.b.c.d" */
  FD_IP6,        /* u8[16] of a network event: IPv6 text */
  FD_SOCKADDR    /* u8[sizeof sockaddr_in6] of a network event: by family */
} fd_kind;

typedef struct fdesc {
  const char *name;
  fd_kind kind;
  int offset, size;
  int elem;         /* element size of arrays */
  int is_signed;
  int relative;     /* __rel_loc */
  int tail;         /* an array of words that ends the record: its length is the record's */
} fdesc;

typedef struct evplan {
  int id;                       /* event id; -1: free slot */
  struct tep_event *event;
  size_t nfields;
  fdesc *fields;
  size_t naddr;                 /* address fields: text slots needed */
  unsigned match_gen;           /* filter generation of `match` */
  int match;                    /* does the name filter accept it */
} evplan;

struct kl_decoder {
  char what[KL_PATH_MAX + 32];  /* "read trace PATH" or "events SESSION", for messages */
  struct tep_handle *tep;
  int long_size;
  int swap;                     /* the data's endianness differs from ours */
  size_t common_end;            /* bytes a record needs for libtraceevent's type and pid */

  /* decoding plans, open addressing on the event id */
  evplan *plans;
  size_t nplans, plancap;

  /* per-event output, reused */
  kl_field *out;
  size_t outcap;
  char *addrtext;               /* KL_ADDR_TEXT bytes per address field */
  size_t addrcap;
  unsigned char *swapbuf;       /* arrays of foreign-endian data */
  size_t swapcap;

  /* the name filter, matched once per event type */
  unsigned filter_gen;
  const char *const *fnames;
  size_t fnnames;
};

static void free_plans(kl_decoder *t) {
  size_t i;
  if (!t->plans) return;
  for (i = 0; i < t->plancap; i++) free(t->plans[i].fields);
  free(t->plans);
  t->plans = NULL;
  t->nplans = t->plancap = 0;
}


/* ------------------------------------------------------------------ */
/* Decoding plans                                                      */
/* ------------------------------------------------------------------ */

static int is_net_event(const struct tep_event *ev) {
  if (!ev->system || !ev->name) return 0;
  if (strcmp(ev->system, "tcp") == 0) return 1;
  return strcmp(ev->system, "sock") == 0 && strcmp(ev->name, "inet_sock_set_state") == 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Element size from a C type name, for arrays whose format gives none. */
static int type_size(const char *type, int long_size) {
  static const struct { const char *word; int size; } sizes[] = {
    {"64", 8}, {"32", 4}, {"16", 2}, {"8", 1}, {"char", 1}, {"long long", 8},
    {"short", 2}, {"int", 4},
  };
  size_t i;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (strstr(type, sizes[i].word)) return sizes[i].size;
  }
  if (strstr(type, "long")) return long_size;
  return 1;
}

static int build_plan(kl_decoder *t, evplan *p, struct tep_event *ev) {
  struct tep_format_field *f;
  size_t n = 0, i = 0;
  int net = is_net_event(ev);

  for (f = ev->format.fields; f; f = f->next) n++;
  p->fields = calloc(n ? n : 1, sizeof *p->fields);
  if (!p->fields) return -1;
  p->naddr = 0;
  for (f = ev->format.fields; f; f = f->next) {
    fdesc *d = &p->fields[i++];
    unsigned long fl = f->flags;
    d->name = f->name;
    d->offset = f->offset;
    d->size = f->size;
    d->is_signed = (fl & TEP_FIELD_IS_SIGNED) != 0;
    d->relative = (fl & TEP_FIELD_IS_RELATIVE) != 0;
    d->elem = f->elementsize > 0 ? (int)f->elementsize : type_size(f->type, t->long_size);
    if (fl & TEP_FIELD_IS_DYNAMIC) {
      d->kind = (fl & TEP_FIELD_IS_STRING) ? FD_DSTR : FD_DARRAY;
    } else if (fl & TEP_FIELD_IS_ARRAY) {
      if (net && d->elem == 1 && (ends_with(f->name, "addr") ||
                                  ends_with(f->name, "addr_v6"))) {
        if (f->size == 4) d->kind = FD_IP4;
        else if (f->size == 16 && ends_with(f->name, "_v6")) d->kind = FD_IP6;
        else if (f->size >= 16) d->kind = FD_SOCKADDR;
        else d->kind = FD_ARRAY;
        if (d->kind != FD_ARRAY) p->naddr++;
      } else if (fl & TEP_FIELD_IS_STRING) {
        /* char[] is text; u8[] is text only when it reads as text */
        d->kind = strstr(f->type, "char") ? FD_STR : FD_BSTR;
      } else {
        d->kind = FD_ARRAY;
      }
      if (d->elem > f->size || d->elem <= 0 || (d->elem & (d->elem - 1)) != 0 || d->elem > 8) {
        d->elem = 1;
      }
    } else if ((fl & (TEP_FIELD_IS_POINTER | TEP_FIELD_IS_LONG)) || !d->is_signed) {
      d->kind = FD_UINT;
    } else {
      d->kind = FD_INT;
    }
    if (d->kind == FD_INT || d->kind == FD_UINT) {
      if (d->size != 1 && d->size != 2 && d->size != 4 && d->size != 8) d->kind = FD_ARRAY;
    }
  }
  /* The kernel declares some trailing arrays with a nominal length and
   * records as many elements as it has: ftrace:kernel_stack says
   * caller[8] and stores `size` entries.  An array of words (elements of 4
   * bytes or more, so that record padding never adds one) that ends the
   * record takes its length from the record. */
  if (n > 0) {
    fdesc *last = NULL;
    for (i = 0; i < n; i++)
      if (!last || p->fields[i].offset > last->offset) last = &p->fields[i];
    if (last->kind == FD_ARRAY && last->elem >= 4) last->tail = 1;
  }
  p->nfields = n;
  p->event = ev;
  p->match_gen = 0;
  if (n > t->outcap) {
    kl_field *o = realloc(t->out, n * sizeof *o);
    if (!o) return -1;
    t->out = o;
    t->outcap = n;
  }
  if (p->naddr > t->addrcap) {
    char *a = realloc(t->addrtext, p->naddr * KL_ADDR_TEXT);
    if (!a) return -1;
    t->addrtext = a;
    t->addrcap = p->naddr;
  }
  return 0;
}

static evplan *find_plan(kl_decoder *t, int id) {
  size_t mask, i;
  if (t->plancap == 0) return NULL;
  mask = t->plancap - 1;
  for (i = (size_t)id & mask;; i = (i + 1) & mask) {
    if (t->plans[i].id == id) return &t->plans[i];
    if (t->plans[i].id == -1) return NULL;
  }
}

static int grow_plans(kl_decoder *t) {
  size_t cap = t->plancap ? t->plancap * 2 : 64, i, j;
  evplan *np = calloc(cap, sizeof *np);
  if (!np) return -1;
  for (i = 0; i < cap; i++) np[i].id = -1;
  for (i = 0; i < t->plancap; i++) {
    if (t->plans[i].id < 0) continue;
    for (j = (size_t)t->plans[i].id & (cap - 1); np[j].id != -1; j = (j + 1) & (cap - 1)) {}
    np[j] = t->plans[i];
  }
  free(t->plans);
  t->plans = np;
  t->plancap = cap;
  return 0;
}

static evplan *get_plan(kl_decoder *t, int id, kl_err *err) {
  evplan *p = find_plan(t, id);
  struct tep_event *ev;
  size_t i;

  if (p) return p;
  ev = tep_find_event(t->tep, id);
  if (!ev) return NULL;  /* unknown type: the caller skips the record */
  if ((t->nplans + 1) * 2 > t->plancap && grow_plans(t) < 0) goto oom;
  for (i = (size_t)id & (t->plancap - 1); t->plans[i].id != -1; i = (i + 1) & (t->plancap - 1)) {}
  p = &t->plans[i];
  memset(p, 0, sizeof *p);
  if (build_plan(t, p, ev) < 0) {
    free(p->fields);
    memset(p, 0, sizeof *p);
    p->id = -1;
    goto oom;
  }
  p->id = id;
  t->nplans++;
  return p;

oom:
  kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "%s: out of memory", t->what);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Filters                                                             */
/* ------------------------------------------------------------------ */

static int name_matches(const struct tep_event *ev, const kl_filter *f) {
  size_t i, sl;
  if (!f || !f->names) return 1;
  for (i = 0; i < f->nnames; i++) {
    const char *n = f->names[i], *colon;
    if (!n) continue;
    colon = strchr(n, ':');
    if (colon) {
      sl = (size_t)(colon - n);
      if (ev->system && strlen(ev->system) == sl && strncmp(ev->system, n, sl) == 0 &&
          ev->name && strcmp(ev->name, colon + 1) == 0) {
        return 1;
      }
    } else if ((ev->name && strcmp(ev->name, n) == 0) ||
               (ev->system && strcmp(ev->system, n) == 0)) {
      return 1;
    }
  }
  return 0;
}

static int lost_matches(const kl_filter *f) {
  size_t i;
  if (!f || !f->names) return 1;
  for (i = 0; i < f->nnames; i++) {
    if (f->names[i] && strcmp(f->names[i], "lost_events") == 0) return 1;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Decoding one record                                                 */
/* ------------------------------------------------------------------ */

static uint64_t rdnum(const unsigned char *p, int size, int swap) {
  uint64_t v = 0;
  switch (size) {
    case 1: return p[0];
    case 2: { uint16_t x; memcpy(&x, p, 2); v = swap ? __builtin_bswap16(x) : x; break; }
    case 4: { uint32_t x; memcpy(&x, p, 4); v = swap ? __builtin_bswap32(x) : x; break; }
    case 8: { uint64_t x; memcpy(&x, p, 8); v = swap ? __builtin_bswap64(x) : x; break; }
    default: break;
  }
  return v;
}

static int64_t sext(uint64_t v, int size) {
  switch (size) {
    case 1: return (int8_t)v;
    case 2: return (int16_t)v;
    case 4: return (int32_t)v;
    default: return (int64_t)v;
  }
}

/* Put an array into out, byte-swapping its elements into swapbuf when the
 * file's endianness is not ours. */
static int set_array(kl_decoder *t, kl_field *o, const unsigned char *p, size_t len,
                     int elem, int is_signed, size_t *swapused) {
  size_t count = len / (size_t)elem, i;
  o->type = KL_F_ARRAY;
  o->v.a.count = count;
  o->v.a.elem_size = elem;
  o->v.a.is_signed = is_signed;
  o->v.a.p = p;
  if (t->swap && elem > 1 && count > 0) {
    unsigned char *dst;
    if (*swapused + len > t->swapcap) {
      size_t cap = (*swapused + len) * 2;
      unsigned char *nb = realloc(t->swapbuf, cap);
      if (!nb) return -1;
      /* earlier fields of this event may point into the old buffer */
      for (i = 0; i < (size_t)(o - t->out); i++) {
        if (t->out[i].type == KL_F_ARRAY && t->swapbuf && (const unsigned char *)t->out[i].v.a.p >= t->swapbuf &&
            (const unsigned char *)t->out[i].v.a.p < t->swapbuf + t->swapcap) {
          t->out[i].v.a.p = nb + ((const unsigned char *)t->out[i].v.a.p - t->swapbuf);
        }
      }
      t->swapbuf = nb;
      t->swapcap = cap;
    }
    dst = t->swapbuf + *swapused;
    for (i = 0; i < count; i++) {
      uint64_t v = rdnum(p + i * (size_t)elem, elem, 1);
      switch (elem) {
        case 2: { uint16_t x = (uint16_t)v; memcpy(dst + i * 2, &x, 2); break; }
        case 4: { uint32_t x = (uint32_t)v; memcpy(dst + i * 4, &x, 4); break; }
        default: memcpy(dst + i * 8, &v, 8); break;
      }
    }
    o->v.a.p = dst;
    *swapused += count * (size_t)elem;
  }
  return 0;
}

static void set_str(kl_field *o, const unsigned char *p, size_t len) {
  const unsigned char *z = memchr(p, '\0', len);
  o->type = KL_F_STR;
  o->v.s.p = (const char *)p;
  o->v.s.len = z ? (size_t)(z - p) : len;
}

/* Text up to the first NUL, as libtraceevent judges it. */
static int printable(const unsigned char *p, size_t len) {
  size_t i;
  for (i = 0; i < len && p[i]; i++) {
    if (!isprint(p[i]) && !isspace(p[i])) return 0;
  }
  return 1;
}

/* An address field as text (IPv4, IPv6, or a sockaddr by its family, in
 * txt); as a byte list when it does not read as one.  -1 out of memory. */
static int set_addr(kl_decoder *t, int kind, kl_field *o, const unsigned char *a, size_t len,
                    char *txt, size_t *swapused) {
  int ok = 0;
  if (kind == FD_IP4) {
    ok = inet_ntop(AF_INET, a, txt, KL_ADDR_TEXT) != NULL;
  } else if (kind == FD_IP6) {
    ok = inet_ntop(AF_INET6, a, txt, KL_ADDR_TEXT) != NULL;
  } else {
    /* struct sockaddr_in / sockaddr_in6: family in the recording
     * machine's byte order, then the port, then the address */
    unsigned fam = (unsigned)rdnum(a, 2, t->swap);
    if (fam == AF_INET && len >= 8) ok = inet_ntop(AF_INET, a + 4, txt, KL_ADDR_TEXT) != NULL;
    else if (fam == AF_INET6 && len >= 24) ok = inet_ntop(AF_INET6, a + 8, txt, KL_ADDR_TEXT) != NULL;
  }
  if (!ok) return set_array(t, o, a, len, 1, 0, swapused) < 0 ? -1 : 0;
  o->type = KL_F_STR;
  o->v.s.p = txt;
  o->v.s.len = strlen(txt);
  return 0;
}

/* Fill t->out from record r with plan p; returns the number of fields. */
static int decode(kl_decoder *t, const evplan *p, const struct tep_record *r, size_t *nout,
                  kl_err *err) {
  const unsigned char *data = r->data;
  size_t dsize = r->size > 0 ? (size_t)r->size : 0, i, n = 0, addr = 0, swapused = 0;

  for (i = 0; i < p->nfields; i++) {
    const fdesc *d = &p->fields[i];
    kl_field *o = &t->out[n];
    size_t off = (size_t)d->offset, len = (size_t)d->size;

    if (d->offset < 0 || off > dsize) continue;  /* short record: skip field */
    if (len == 0 && d->kind != FD_INT && d->kind != FD_UINT) {
      len = dsize - off;  /* flexible array member: the rest of the record */
    }
    if (d->tail) len = (dsize - off) / (size_t)d->elem * (size_t)d->elem;
    if (len > dsize - off) continue;
    o->name = d->name;
    switch (d->kind) {
      case FD_INT:
        o->type = KL_F_INT;
        o->v.i = sext(rdnum(data + off, d->size, t->swap), d->size);
        break;
      case FD_UINT:
        o->type = KL_F_UINT;
        o->v.u = rdnum(data + off, d->size, t->swap);
        break;
      case FD_STR:
        set_str(o, data + off, len);
        break;
      case FD_BSTR:
        if (printable(data + off, len)) set_str(o, data + off, len);
        else if (set_array(t, o, data + off, len, 1, 0, &swapused) < 0) goto oom;
        break;
      case FD_ARRAY:
        if (set_array(t, o, data + off, len, d->elem, d->is_signed, &swapused) < 0) goto oom;
        break;
      case FD_DSTR:
      case FD_DARRAY: {
        uint32_t loc;
        size_t doff, dlen;
        if (len < 4) continue;
        loc = (uint32_t)rdnum(data + off, 4, t->swap);
        doff = loc & 0xffff;
        dlen = loc >> 16;
        if (d->relative) doff += off + 4;
        if (doff > dsize || dlen > dsize - doff) continue;  /* corrupt: skip field */
        if (d->kind == FD_DSTR) set_str(o, data + doff, dlen);
        else if (set_array(t, o, data + doff, dlen, d->elem, d->is_signed, &swapused) < 0) goto oom;
        break;
      }
      case FD_IP4:
      case FD_IP6:
      case FD_SOCKADDR:
        if (set_addr(t, d->kind, o, data + off, len, t->addrtext + (addr++) * KL_ADDR_TEXT,
                     &swapused) < 0)
          goto oom;
        break;
    }
    n++;
  }
  *nout = n;
  return 0;

oom:
  kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "%s: out of memory", t->what);
  return -1;
}

/* ------------------------------------------------------------------ */
/* The shared entry points                                             */
/* ------------------------------------------------------------------ */

/* The end of the common_type and common_pid fields over every format:
 * libtraceevent reads them from any record without checking its size, so
 * a shorter record (or a format that places them far away) is skipped. */
static size_t common_end_of(struct tep_handle *tep) {
  struct tep_event **events = tep ? tep_list_events(tep, TEP_EVENT_SORT_ID) : NULL;
  int i, n = tep ? tep_get_events_count(tep) : 0;
  size_t end = 8;  /* the kernel's common header: type, flags, preempt count, pid */
  static const char *const names[] = {"common_type", "common_pid"};
  for (i = 0; events && i < n; i++) {
    size_t k;
    for (k = 0; k < 2; k++) {
      struct tep_format_field *f = tep_find_common_field(events[i], names[k]);
      if (f && f->offset >= 0 && f->size >= 0 && (size_t)f->offset + (size_t)f->size > end)
        end = (size_t)f->offset + (size_t)f->size;
    }
  }
  return end;
}

kl_decoder *kl_decoder_new(struct tep_handle *tep, int long_size, int swap, const char *what,
                           kl_err *err) {
  kl_decoder *d = calloc(1, sizeof *d);
  if (!d) {
    kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "%s: out of memory", what);
    return NULL;
  }
  snprintf(d->what, sizeof d->what, "%s", what);
  d->tep = tep;
  d->common_end = common_end_of(tep);
  d->long_size = long_size;
  d->swap = swap;
  d->filter_gen = 1;
  return d;
}

void kl_decoder_set_tep(kl_decoder *d, struct tep_handle *tep) {
  free_plans(d);
  d->tep = tep;
  d->common_end = common_end_of(tep);
  d->filter_gen++;
}

size_t kl_decoder_common_end(const kl_decoder *d) {
  return d->common_end;
}

void kl_decoder_new_filter(kl_decoder *d) {
  d->filter_gen++;
}

int kl_filter_wants_lost(const kl_filter *f) {
  return lost_matches(f);
}

int kl_decoder_event(kl_decoder *t, const kl_filter *f, const struct tep_record *r,
                     kl_event *ev, kl_err *err) {
  evplan *p;
  int id, pid;
  size_t n;

  if (!f || f->names != t->fnames || f->nnames != t->fnnames) {
    t->fnames = f ? f->names : NULL;
    t->fnnames = f ? f->nnames : 0;
    t->filter_gen++;
  }
  if (f && r->ts < f->t0) return 0;
  if (r->size < 0 || (size_t)r->size < t->common_end) return 0;
  id = tep_data_type(t->tep, (struct tep_record *)r);
  if (err) err->code = KL_OK;
  p = get_plan(t, id, err);
  if (!p) return err && err->code == KL_E_NO_RESOURCES ? -1 : 0;  /* no format: skipped */
  if (p->match_gen != t->filter_gen) {
    p->match = name_matches(p->event, f);
    p->match_gen = t->filter_gen;
  }
  if (!p->match) return 0;
  pid = tep_data_pid(t->tep, (struct tep_record *)r);
  if (f && f->pid >= 0 && pid != f->pid) return 0;
  if (decode(t, p, r, &n, err) < 0) return -1;
  ev->time = r->ts;
  ev->cpu = r->cpu;
  ev->lost = 0;
  ev->name = p->event->name;
  ev->system = p->event->system;
  ev->pid = pid;
  ev->comm = tep_data_comm_from_pid(t->tep, pid);
  ev->nfields = n;
  ev->fields = t->out;
  return 1;
}

void kl_decoder_free(kl_decoder *d) {
  if (!d) return;
  free_plans(d);
  free(d->out);
  free(d->addrtext);
  free(d->swapbuf);
  free(d);
}
