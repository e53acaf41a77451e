/*
 * reader.c - kl_etl_*: an .etl capture behind the same contract as the
 * backends' trace_* functions (kl.h): open checks the log-file header and
 * every buffer header; next hands out events in time order, filtered before
 * any field is decoded; info counts the event types in one extra pass.
 */
#include "etl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 256
#define NEXTRA 20

typedef struct etype {
  struct etype *next;
  kl_event_count c;
  char text[1];          /* system, NUL, name, NUL */
} etype;

struct kl_etl {
  etl_src src;
  etl_loghdr hdr;
  int ncpus;                  /* processors with buffers */
  int *cpus;
  uint64_t *first;            /* each one's first buffer */
  uint32_t *peak;             /* each one's largest buffer once uncompressed */
  uint64_t nbuffers, ncompressed, skipped;
  etl_cursor cur;             /* the events() position */
  etl_out *out;
  char name[64], system[128]; /* built names of the current event */
  /* info(): counted once */
  int have_info;
  uint64_t first_ts, last_ts;
  etype *buckets[NBUCKETS];
  kl_event_count *types;
  size_t ntypes;
  kl_field extra[NEXTRA];
  size_t nextra_used;
  char extra_text[256];
};

/* ---- open: the log-file header and every buffer header ----------------- */

static int read_loghdr(kl_etl *t, kl_err *err) {
  etl_bufhdr h;
  etl_rec r;
  uint8_t *b;
  long n;
  int rc = etl_buf_header(&t->src, 0, &h, err);
  if (rc == 0) return kl_err_set(err, KL_E_INVALID, 0, "not an .etl file: empty");
  if (rc < 0) return -1;
  if (h.flags & 0x40u)
    return kl_err_set(err, KL_E_INVALID, 0, "not an .etl file: the first buffer is compressed");
  if ((b = (uint8_t *)malloc(h.size)) == NULL)
    return kl_err_set(err, KL_E_NO_RESOURCES, 0, "out of memory");
  if (t->src.read_at(t->src.ud, 0, b, h.size) != (long)h.size) {
    free(b);
    return kl_err_set(err, KL_E_IO, 0, "short read in the first buffer");
  }
  n = etl_rec_parse(b + ETL_BUF_HDR, h.filled - ETL_BUF_HDR, &r);
  rc = n > 0 ? etl_loghdr_parse(&r, &t->hdr, err)
             : kl_err_set(err, KL_E_INVALID, 0, "not an .etl file: no record in the first buffer");
  free(b);
  return rc;
}

/* The processor's index in cpus[] (added at its first buffer), or -1. */
static int add_cpu(kl_etl *t, int cpu, uint64_t off, kl_err *err) {
  int i;
  for (i = 0; i < t->ncpus; i++)
    if (t->cpus[i] == cpu) return i;
  if ((t->ncpus & 15) == 0) {
    size_t n = (size_t)t->ncpus + 16;
    int *c = (int *)realloc(t->cpus, n * sizeof *c);
    uint64_t *f;
    uint32_t *p;
    if (c) t->cpus = c;
    f = c ? (uint64_t *)realloc(t->first, n * sizeof *f) : NULL;
    if (f) t->first = f;
    p = f ? (uint32_t *)realloc(t->peak, n * sizeof *p) : NULL;
    if (p == NULL) return kl_err_set(err, KL_E_NO_RESOURCES, 0, "out of memory");
    t->peak = p;
  }
  t->cpus[t->ncpus] = cpu;
  t->peak[t->ncpus] = 0;
  t->first[t->ncpus] = off;
  return t->ncpus++;
}

/* Reading keeps one buffer per processor in memory (file.c): their sum may
 * not exceed ETL_MEM_FACTOR times the file's size (or ETL_BUF_MAX for small
 * files), so compressed buffers claiming more than MS-XCA plausibly gives
 * (a decompression bomb) are refused before anything is allocated. */
static int check_memory(const kl_etl *t, uint64_t off, kl_err *err) {
  uint64_t sum = 0, cap = t->src.size * ETL_MEM_FACTOR;
  int i;
  for (i = 0; i < t->ncpus; i++) sum += t->peak[i];
  if (cap < ETL_BUF_MAX) cap = ETL_BUF_MAX;
  if (sum > cap)
    return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu: the buffers claim %llu "
                      "bytes once uncompressed, more than %d times the file's %llu bytes",
                      (unsigned long long)off, (unsigned long long)sum, ETL_MEM_FACTOR,
                      (unsigned long long)t->src.size);
  return 0;
}

/* 1 if the file is zeros from off to its end, 0 if not, -1 on a read error. */
static int zero_tail(const etl_src *s, uint64_t off, kl_err *err) {
  uint8_t b[4096];
  while (off < s->size) {
    size_t n = s->size - off < sizeof b ? (size_t)(s->size - off) : sizeof b, i;
    if (s->read_at(s->ud, off, b, n) != (long)n)
      return kl_err_set(err, KL_E_IO, 0, "read error at offset %llu", (unsigned long long)off);
    for (i = 0; i < n; i++)
      if (b[i] != 0) return 0;
    off += n;
  }
  return 1;
}

/* The buffers end at off (a zero BufferSize) before the file does: fine for
 * a zero-filled tail, or when the header counts no more buffers than were
 * found; otherwise the rest of the capture would be silently lost. */
static int check_end(const kl_etl *t, uint64_t off, kl_err *err) {
  int z;
  if (off >= t->src.size || t->nbuffers >= t->hdr.buffers_written) return 0;
  if ((z = zero_tail(&t->src, off, err)) != 0) return z < 0 ? -1 : 0;
  return kl_err_set(err, KL_E_INVALID, 0, "buffer at offset %llu: BufferSize 0 after %llu of "
                    "the %lu buffers written, with data after it", (unsigned long long)off,
                    (unsigned long long)t->nbuffers, (unsigned long)t->hdr.buffers_written);
}

static int scan_buffers(kl_etl *t, kl_err *err) {
  uint64_t off = 0;
  etl_bufhdr h;
  int r;
  /* from here on, buffers are checked against the header's limits */
  t->src.fill_max = t->hdr.buffer_size > ETL_BUF_HDR && t->hdr.buffer_size < ETL_BUF_MAX
                        ? t->hdr.buffer_size : ETL_BUF_MAX;
  t->src.ncpus = (int)t->hdr.ncpus;
  while ((r = etl_buf_header(&t->src, off, &h, err)) == 1) {
    int k = add_cpu(t, h.cpu, off, err);
    if (k < 0) return -1;
    if (h.filled > t->peak[k]) {
      t->peak[k] = h.filled;
      if (check_memory(t, off, err) != 0) return -1;
    }
    t->nbuffers++;
    if (h.flags & 0x40u) t->ncompressed++;
    off += h.size;
  }
  t->src.buffers_end = off;
  return r == 0 ? check_end(t, off, err) : r;
}

kl_etl *kl_etl_open_src(etl_src *src, const char *what, kl_err *err) {
  kl_etl *t = (kl_etl *)calloc(1, sizeof *t);
  if (t == NULL || (t->out = (etl_out *)malloc(sizeof *t->out)) == NULL ||
      etl_out_init(t->out, &t->hdr) != 0) {
    if (t) free(t->out);
    free(t);
    if (src->close) src->close(src->ud);
    kl_err_set(err, KL_E_NO_RESOURCES, 0, "open %s: out of memory", what);
    return NULL;
  }
  t->src = *src;
  if (read_loghdr(t, err) != 0 || scan_buffers(t, err) != 0) {
    char m[KL_MSG_MAX];
    snprintf(m, sizeof m, "%s", err->msg);
    kl_err_set(err, err->code, err->sys, "open %s: %s", what, m);
    kl_etl_close(t);
    return NULL;
  }
  return t;
}

kl_etl *kl_etl_open(const char *path, kl_err *err) {
  etl_src s;
  if (etl_src_file(&s, path, err) != 0) return NULL;
  return kl_etl_open_src(&s, path, err);
}

/* Forget what info() counted (also after a failed count). */
static void drop_types(kl_etl *t) {
  size_t i;
  for (i = 0; i < NBUCKETS; i++)
    while (t->buckets[i]) {
      etype *e = t->buckets[i];
      t->buckets[i] = e->next;
      free(e);
    }
  free(t->types);
  t->types = NULL;
  t->ntypes = 0;
  t->first_ts = t->last_ts = 0;
  t->skipped = 0;
}

void kl_etl_close(kl_etl *t) {
  if (t == NULL) return;
  etl_cursor_free(&t->cur);
  if (t->src.close) t->src.close(t->src.ud);
  drop_types(t);
  free(t->cpus);
  free(t->first);
  free(t->peak);
  if (t->out) etl_out_free(t->out);
  free(t->out);
  free(t);
}

int kl_etl_sniff(const uint8_t *p, size_t n) {
  /* a buffer header, then a SYSTEM32/64 header record with hook 0 */
  if (n < ETL_BUF_HDR + 8 || etl_u32(p) < ETL_BUF_HDR) return 0;
  p += ETL_BUF_HDR;
  return p[3] == 0xC0 && (p[2] == 1 || p[2] == 2) && etl_u16(p + 6) == 0;
}

/* ---- naming ------------------------------------------------------------ */

/* Providers and classic classes worth a name (as registered on Windows). */
static const char *const known_guids[][2] = {
  {"dd5ef90a-6398-47a4-ad34-4dcecdef795f", "Microsoft-Windows-HttpService"},
  {"7dd42a49-5329-4832-8dfd-43d979153a88", "Microsoft-Windows-Kernel-Network"},
  {"e13c0d23-ccbc-4e12-931b-d9cc2eee27e4", "Microsoft-Windows-DotNETRuntime"},
  {"a669021c-c450-4609-a035-5af59af4df18", "Microsoft-Windows-DotNETRuntimeRundown"},
  {"9b79ee91-b5fd-41c0-a243-4248e266e9d0", "SysConfig"},
  {"b3e675d7-2554-4f18-830b-2762732560de", "KernelTraceControl"},
  {"ed54dff8-c409-4cf6-bf83-05e1e61a09c4", "WinSat"},
  {"bbccf6c1-6cd1-48c4-80ff-839482e37671", "MetaData"}};

static const char *guid_name(etl_out *o, const uint8_t *g) {
  char t[37];
  size_t i;
  etl_guid_text(g, t);
  for (i = 0; i < sizeof known_guids / sizeof known_guids[0]; i++)
    if (strcmp(known_guids[i][0], t) == 0) return known_guids[i][1];
  return etl_out_str(o, t, 36);
}

static const char *opcode_name(etl_out *o, int opcode) {
  static const char *const generic[] = {"Info", "Start", "Stop", "DCStart", "DCStop"};
  char b[24];
  int n;
  if (opcode < 5) return generic[opcode];
  n = snprintf(b, sizeof b, "Opcode(%d)", opcode);
  return etl_out_str(o, b, (size_t)n);
}

typedef struct ident {
  const char *system, *name;
  int kernel;            /* decode the payload as kernel hook `hook` */
  uint16_t hook;
  int pid, tid;
} ident;

/* A u32 at off of the payload, or -1 if the payload is shorter. */
static int payload_u32(const etl_rec *r, size_t off) {
  return r->len >= off + 4 ? (int)etl_u32(r->data + off) : -1;
}

static int ident_kernel(const etl_rec *r, uint16_t hook, ident *id) {
  etl_kname kn;
  size_t p = (size_t)r->ptr;
  int group = hook >> 8, type = hook & 0xFF;
  if (!etl_kernel_name(hook, &kn)) return 0;
  id->system = kn.system;
  id->name = kn.name;
  id->kernel = 1;
  id->hook = hook;
  if (hook == 0x1820) {                     /* StackWalk: whose stack */
    id->pid = payload_u32(r, 8);
    id->tid = payload_u32(r, 12);
  } else if (id->pid < 0) {                 /* no ids in the header: the payload's */
    if ((group == 6 || group == 8) && type != 0x11) id->pid = payload_u32(r, 0);
    else if (group == 3 && ((type >= 1 && type <= 4) || type == 0x27)) id->pid = payload_u32(r, p);
    else if (group == 0x14 || hook == 0x030A) id->pid = payload_u32(r, 2 * p);
    else if (hook == 0x0F2E) id->tid = payload_u32(r, p);
  }
  return 1;
}

/* system and name of a record; 0 if it is of an unknown class (skipped). */
static int identify(etl_out *o, const etl_rec *r, ident *id) {
  char b[32];
  int g, n;
  memset(id, 0, sizeof *id);
  id->pid = r->pid == 0xFFFFFFFFu ? -1 : (int)r->pid;
  id->tid = r->tid == 0xFFFFFFFFu ? -1 : (int)r->tid;
  switch (r->kind) {
    case ETL_K_SYSTEM: case ETL_K_PERFINFO: return ident_kernel(r, r->hook, id);
    case ETL_K_FULL: case ETL_K_INSTANCE:
      if ((g = etl_kernel_group(r->guid)) >= 0)
        return ident_kernel(r, (uint16_t)(g << 8 | r->opcode), id);
      id->system = guid_name(o, r->guid);
      id->name = opcode_name(o, r->opcode);
      return id->system && id->name;
    case ETL_K_EVENT:
      if (r->schema) {
        id->system = r->traits ? etl_tlg_provider(o, r->traits, r->ntraits) : NULL;
        id->name = etl_tlg_name(o, r->schema, r->nschema);
      }
      if (id->system == NULL) id->system = guid_name(o, r->guid);
      if (id->name == NULL) {
        n = snprintf(b, sizeof b, "EventID(%u)", (unsigned)r->id);
        id->name = etl_out_str(o, b, (size_t)n);
      }
      return id->system && id->name;
    case ETL_K_MESSAGE:
      id->system = "WPP";
      n = snprintf(b, sizeof b, "Message(%u)", (unsigned)r->id);
      id->name = etl_out_str(o, b, (size_t)n);
      return id->name != NULL;
    default: return 0;
  }
}

/* identify() into a fresh output, grown and run again if it ran short. */
static int identify_fresh(etl_out *o, const etl_rec *r, ident *id) {
  int ok;
  for (;;) {
    etl_out_reset(o);
    ok = identify(o, r, id);
    if (!o->grow || etl_out_grow(o) != 0) return ok;
  }
}

static int eq_nocase(const char *a, const char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    int x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return 0;
    if (x == 0) return 1;
  }
  return 1;
}

/* "name", "system" or "system:name", case-insensitive. */
static int name_match(const kl_filter *f, const ident *id) {
  size_t i, sl = strlen(id->system), nl = strlen(id->name);
  if (f == NULL || f->names == NULL || f->nnames == 0) return 1;
  for (i = 0; i < f->nnames; i++) {
    const char *n = f->names[i], *colon = strchr(n, ':');
    if (colon != NULL) {
      if ((size_t)(colon - n) == sl && eq_nocase(n, id->system, sl) &&
          strlen(colon + 1) == nl && eq_nocase(colon + 1, id->name, nl))
        return 1;
    } else if ((strlen(n) == nl && eq_nocase(n, id->name, nl)) ||
               (strlen(n) == sl && eq_nocase(n, id->system, sl))) {
      return 1;
    }
  }
  return 0;
}

/* ---- fields -------------------------------------------------------------- */

static void add_uint(etl_out *o, const char *name, uint64_t v) {
  kl_field *f = etl_out_field(o, name);
  if (f) etl_set_uint(f, v);
}

/* provider, id, version, channel, level, opcode, task, keyword */
static void event_header_fields(etl_out *o, const etl_rec *r) {
  kl_field *f = etl_out_field(o, "provider");
  if (f) etl_set_guid(o, f, r->guid);
  add_uint(o, "id", r->id);
  add_uint(o, "version", r->version);
  add_uint(o, "channel", r->channel);
  add_uint(o, "level", r->level);
  add_uint(o, "opcode", r->opcode);
  add_uint(o, "task", r->task);
  add_uint(o, "keyword", r->keyword);
}

static void payload_fields(kl_etl *t, const etl_rec *r, const ident *id) {
  etl_out *o = t->out;
  kl_field *f;
  if (id->kernel && id->hook == 0) {
    etl_loghdr h;
    kl_err ignored;
    if (etl_loghdr_parse(r, &h, &ignored) == 0) {
      etl_loghdr_fields(o, &h);
      return;
    }
  } else if (id->kernel) {
    if (etl_kernel_fields(o, id->hook, r->version, r->ptr, r->data, r->len) == 0) return;
  } else if (r->kind == ETL_K_EVENT && r->schema) {
    if (etl_tlg_fields(o, r->schema, r->nschema, r->data, r->len, r->ptr) == 0) return;
  } else if (r->kind == ETL_K_EVENT && (r->evflags & 0x4u)) {   /* a string-only event */
    int term;
    size_t k = etl_strlen(r->data, r->len, 2, &term);
    if ((f = etl_out_field(o, "message")) != NULL && etl_set_utf16(o, f, r->data, k / 2) == 0)
      return;
  }
  if (r->len > 0 && (f = etl_out_field(o, "data")) != NULL)   /* no schema: raw bytes */
    etl_set_bytes(o, f, r->data, r->len);
}

static void decode(kl_etl *t, const etl_rec *r, const ident *id, int cpu, kl_event *ev) {
  etl_out *o = t->out;
  kl_field *f;
  if (id->tid >= 0) add_uint(o, "tid", (uint64_t)id->tid);
  if (r->kind == ETL_K_EVENT) event_header_fields(o, r);
  else if (r->kind != ETL_K_MESSAGE) add_uint(o, "version", r->version);
  payload_fields(t, r, id);
  if (r->stack && r->nstack >= 8 && (f = etl_out_field(o, "stack")) != NULL) {
    f->type = KL_F_ARRAY;           /* a STACK_TRACE item: match id, then frames */
    f->v.a.p = r->stack + 8;
    f->v.a.count = (r->nstack - 8) / (size_t)r->stack_ptr;
    f->v.a.elem_size = r->stack_ptr;
    f->v.a.is_signed = 0;
  }
  memset(ev, 0, sizeof *ev);
  ev->system = id->system;
  ev->name = id->name;
  ev->cpu = cpu;
  ev->pid = id->pid;
  ev->fields = o->fields;
  ev->nfields = o->nf;
}

/* ---- next ---------------------------------------------------------------- */

int kl_etl_next(kl_etl *t, const kl_filter *f, int rewind, kl_event *ev, kl_err *err) {
  if (rewind && etl_cursor_start(&t->cur, &t->src, &t->hdr, t->cpus, t->first, t->ncpus,
                                 f ? f->cpu : -1, err) != 0)
    return -1;
  for (;;) {
    int i = etl_cursor_next(&t->cur, err);
    const etl_rec *r;
    ident id;
    uint64_t ts;
    if (i == -2) return -1;
    if (i < 0) return 0;
    r = &t->cur.s[i].head;
    ts = etl_time_ns(&t->hdr, r->raw);
    if (f && f->t1 && ts > f->t1) return 0;   /* in time order: nothing later matches */
    if (f && ts < f->t0) continue;
    if (!identify_fresh(t->out, r, &id)) continue;
    if (f && f->pid >= 0 && id.pid != f->pid) continue;
    if (!name_match(f, &id)) continue;
    decode(t, r, &id, t->cur.s[i].cpu, ev);
    /* the output ran short: grow it and decode again from the start */
    while (t->out->grow && etl_out_grow(t->out) == 0) {
      identify_fresh(t->out, r, &id);
      decode(t, r, &id, t->cur.s[i].cpu, ev);
    }
    ev->time = ts;
    return 1;
  }
}

/* ---- info ----------------------------------------------------------------- */

static int count_type(kl_etl *t, const char *system, const char *name, kl_err *err) {
  size_t sl = strlen(system), nl = strlen(name), h = 2166136261u, i;
  etype *e;
  for (i = 0; i < sl; i++) h = (h ^ (unsigned char)system[i]) * 16777619u;
  for (i = 0; i < nl; i++) h = (h ^ (unsigned char)name[i]) * 16777619u;
  h %= NBUCKETS;
  for (e = t->buckets[h]; e; e = e->next)
    if (strcmp(e->c.system, system) == 0 && strcmp(e->c.name, name) == 0) {
      e->c.count++;
      return 0;
    }
  if ((e = (etype *)malloc(sizeof *e + sl + nl + 2)) == NULL)
    return kl_err_set(err, KL_E_NO_RESOURCES, 0, "out of memory");
  memcpy(e->text, system, sl + 1);
  memcpy(e->text + sl + 1, name, nl + 1);
  e->c.system = e->text;
  e->c.name = e->text + sl + 1;
  e->c.count = 1;
  e->next = t->buckets[h];
  t->buckets[h] = e;
  t->ntypes++;
  return 0;
}

static int by_name(const void *a, const void *b) {
  const kl_event_count *x = (const kl_event_count *)a, *y = (const kl_event_count *)b;
  int c = strcmp(x->system, y->system);
  return c ? c : strcmp(x->name, y->name);
}

/* One pass over every record: types with counts, first and last time. */
static int scan_events(kl_etl *t, kl_err *err) {
  etl_cursor c;
  size_t i, k = 0;
  int s;
  memset(&c, 0, sizeof c);
  if (etl_cursor_start(&c, &t->src, &t->hdr, t->cpus, t->first, t->ncpus, -1, err) != 0) goto fail;
  while ((s = etl_cursor_next(&c, err)) >= 0) {
    const etl_rec *r = &c.s[s].head;
    ident id;
    uint64_t ts = etl_time_ns(&t->hdr, r->raw);
    if (!identify_fresh(t->out, r, &id)) {
      t->skipped++;
      continue;
    }
    if (t->first_ts == 0) t->first_ts = ts;
    t->last_ts = ts;
    if (count_type(t, id.system, id.name, err) != 0) goto fail;
  }
  if (s == -2) goto fail;
  t->skipped += c.skipped;
  etl_cursor_free(&c);
  if ((t->types = (kl_event_count *)malloc((t->ntypes + 1) * sizeof *t->types)) == NULL) {
    drop_types(t);
    return kl_err_set(err, KL_E_NO_RESOURCES, 0, "out of memory");
  }
  for (i = 0; i < NBUCKETS; i++) {
    const etype *e;
    for (e = t->buckets[i]; e; e = e->next) t->types[k++] = e->c;
  }
  qsort(t->types, t->ntypes, sizeof *t->types, by_name);
  return 0;
fail:
  etl_cursor_free(&c);
  drop_types(t);
  return -1;
}

static const char *clock_name(const etl_loghdr *h) {
  if (h->clock_type == 2 || (h->clock_type == 0 && h->perf_freq == 0)) return "system";
  return h->clock_type == 3 ? "cycle" : "qpc";
}

static void extra_fields(kl_etl *t) {
  const etl_loghdr *h = &t->hdr;
  kl_field *e = t->extra;
  size_t n = 0;
  int k = snprintf(t->extra_text, sizeof t->extra_text, "%u.%u", h->major, h->minor);
#define XU(nm, x) (e[n].name = nm, e[n].type = KL_F_UINT, e[n++].v.u = (uint64_t)(x))
#define XS(nm, x, l) (e[n].name = nm, e[n].type = KL_F_STR, e[n].v.s.p = x, e[n++].v.s.len = l)
  XS("os_version", t->extra_text, (size_t)k);
  XU("os_build", h->build);
  XU("pointer_size", h->ptr_size);
  XU("start_time", etl_filetime_ns(h->start_time));
  XU("end_time", etl_filetime_ns(h->end_time));
  XU("boot_time", etl_filetime_ns(h->boot_time));
  XU("perf_freq", h->perf_freq);
  XU("buffer_size", h->buffer_size);
  XU("buffers", t->nbuffers);
  XU("buffers_written", h->buffers_written);
  XU("compressed_buffers", t->ncompressed);
  XU("events_lost", h->events_lost);
  XU("buffers_lost", h->buffers_lost);
  XU("log_file_mode", h->mode);
  XU("skipped", t->skipped);
  XS("logger", h->logger, strlen(h->logger));
  XS("log_file", h->logfile, strlen(h->logfile));
#undef XU
#undef XS
  t->nextra_used = n;
}

int kl_etl_info(kl_etl *t, kl_trace_info *info, kl_err *err) {
  if (!t->have_info) {
    if (scan_events(t, err) != 0) return -1;
    extra_fields(t);
    t->have_info = 1;
  }
  memset(info, 0, sizeof *info);
  snprintf(info->format, sizeof info->format, "etl");
  info->long_size = (int)t->hdr.ptr_size;
  info->ncpus = (int)t->hdr.ncpus;
  snprintf(info->clock, sizeof info->clock, "%s", clock_name(&t->hdr));
  info->first_ts = t->first_ts;
  info->last_ts = t->last_ts;
  info->nevent_types = t->ntypes;
  info->event_types = t->types;
  info->nextra = t->nextra_used;
  info->extra = t->extra;
  return 0;
}
