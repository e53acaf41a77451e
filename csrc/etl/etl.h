/*
 * etl.h - the portable .etl (ETW log file) reader, internal to csrc/etl.
 *
 * No Windows headers: the file is read as bytes (little-endian) on every
 * platform.  The layouts it relies on are described in docs/etl-format.md.
 *
 *   src.c     where bytes come from (a file through positioned reads, or
 *             memory for the fuzzer)
 *   xca.c     MS-XCA plain LZ77 decompression (compressed buffers)
 *   file.c    buffers: header checks, the per-CPU streams and their merge
 *   record.c  record headers: which kind, where the payload is
 *   out.c     the per-event arena of fields and text conversions
 *   kernel.c  kernel (MOF) classes: names and payload layouts
 *   tlg.c     TraceLogging (self-describing) payloads
 *   reader.c  the kl_etl_* entry points (open, info, next, close)
 */
#ifndef KL_ETL_H
#define KL_ETL_H

#include <stdio.h>

#include "kl.h"

/* ---- byte access ---------------------------------------------------- */
static inline uint16_t etl_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t etl_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t etl_u64(const uint8_t *p) {
  return (uint64_t)etl_u32(p) | (uint64_t)etl_u32(p + 4) << 32;
}

/* ---- sources --------------------------------------------------------- */
typedef struct etl_src {
  /* Read n bytes at off into buf: returns the count read (short at the end) or -1. */
  long (*read_at)(void *ud, uint64_t off, void *buf, size_t n);
  void (*close)(void *ud);
  void *ud;
  uint64_t size;
  /* Limits from the log-file header once it is read (0: none yet): the
   * largest FilledBytes of a compressed buffer, the number of processors. */
  uint32_t fill_max;
  int ncpus;
  /* Where open found the buffers to end (0: not scanned yet); a stream
   * that runs out of buffers before it means the file changed since. */
  uint64_t buffers_end;
} etl_src;

KL_INTERNAL int etl_src_file(etl_src *s, const char *path, kl_err *err);
/* fopen(path, "rb") and stat() for UTF-8 paths on every platform (the wide
 * functions on Windows).  etl_stat: 0 and *regular, or -1 with errno. */
KL_INTERNAL FILE *etl_fopen(const char *path);
KL_INTERNAL int etl_stat(const char *path, int *regular);
KL_INTERNAL void etl_src_mem(etl_src *s, const void *data, size_t size);

/* ---- MS-XCA ------------------------------------------------------------ */
/* Decompress in[0..nin) into exactly nout bytes of out.  0 or -1 (corrupt). */
KL_INTERNAL int etl_xca_decompress(const uint8_t *in, size_t nin, uint8_t *out, size_t nout);

/* ---- buffers ----------------------------------------------------------- */
#define ETL_BUF_HDR 0x48
#define ETL_BUF_MAX (64u << 20)   /* the largest buffer accepted */
#define ETL_MAX_CPU 4096          /* processor numbers above are corrupt */
#define ETL_MEM_FACTOR 16         /* buffers in memory: at most this times the file size */

typedef struct etl_bufhdr {
  uint32_t size;     /* on disk, header included */
  uint32_t filled;   /* valid bytes once uncompressed, header included */
  uint16_t flags, type;
  int cpu;
} etl_bufhdr;

/* Read and check the buffer header at off.  1: *h filled; 0: end of the
 * buffers (end of file or a zero size); -1: corrupt (err says why). */
KL_INTERNAL int etl_buf_header(const etl_src *s, uint64_t off, etl_bufhdr *h, kl_err *err);

/* ---- the log-file header ---------------------------------------------- */
typedef struct etl_loghdr {
  uint32_t buffer_size, build, ncpus, timer_res, max_file_mb, mode, buffers_written,
           start_buffers, ptr_size, events_lost, cpu_mhz, clock_type, buffers_lost;
  uint8_t major, minor, sub, subminor;
  uint64_t end_time, boot_time, perf_freq, start_time;   /* FILETIME / Hz */
  int64_t raw0;            /* the header record's own raw timestamp */
  int hdr_ptr;             /* 4 or 8: the record's bitness */
  char logger[128], logfile[512];
} etl_loghdr;

/* ---- records ------------------------------------------------------------ */
enum { ETL_K_SYSTEM = 1, ETL_K_PERFINFO, ETL_K_FULL, ETL_K_INSTANCE, ETL_K_EVENT,
       ETL_K_MESSAGE, ETL_K_SKIP };

typedef struct etl_rec {
  int kind, ptr;             /* ETL_K_*, pointer size 4/8 */
  int64_t raw;               /* timestamp in the session clock */
  uint32_t pid, tid;         /* 0xFFFFFFFF: not in the header */
  uint16_t hook;             /* SYSTEM/PERFINFO: group << 8 | type */
  uint8_t version, opcode, level, channel;
  uint16_t id, task, evflags;
  uint64_t keyword;
  const uint8_t *guid;       /* FULL/INSTANCE: class, EVENT: provider */
  const uint8_t *data;       /* payload */
  size_t len;
  const uint8_t *traits, *schema, *stack;  /* EVENT extended items, or NULL */
  size_t ntraits, nschema, nstack;
  int stack_ptr;
} etl_rec;

/* Parse the record at p (avail bytes to the end of the buffer's valid
 * area).  Returns the record size (>0; the next one is 8-aligned after it),
 * 0 at the end-of-records filler, or -1 if corrupt. */
KL_INTERNAL long etl_rec_parse(const uint8_t *p, size_t avail, etl_rec *r);
/* The log-file header from the first record.  0 or -1. */
KL_INTERNAL int etl_loghdr_parse(const etl_rec *r, etl_loghdr *h, kl_err *err);

/* One processor's records: its current buffer and next record. */
typedef struct etl_stream {
  int cpu;
  uint64_t scan;            /* file offset where to look for its next buffer */
  uint64_t buf_off;         /* file offset of the current buffer */
  uint8_t *buf;             /* the current buffer, decompressed */
  size_t cap, pos, end;     /* allocated, next record, end of the valid bytes */
  int has_head;
  struct etl_rec head;      /* the next record */
  size_t head_at;           /* its byte in buf */
  int64_t last_raw;         /* the timestamp of the stream's previous record */
  int has_last;
} etl_stream;

typedef struct etl_cursor {
  const etl_src *src;
  const etl_loghdr *hdr;    /* for the timestamp checks */
  etl_stream *s;
  int n;
  int pending;              /* stream whose head was handed out, -1 none */
  uint8_t *zbuf;            /* compressed input */
  size_t zcap;
  uint64_t nbuffers, skipped;
} etl_cursor;

/* Start streams for the processors cpus[0..n) whose first buffers are at
 * first[]; only_cpu >= 0 keeps that one.  0 or -1.  A record whose
 * timestamp goes back within its processor's stream, or does not convert
 * to a time (etl_time_valid), is an error naming its offset. */
KL_INTERNAL int etl_cursor_start(etl_cursor *c, const etl_src *src, const etl_loghdr *hdr,
                                 const int *cpus,
                                 const uint64_t *first, int n, int only_cpu, kl_err *err);
/* Index of the stream holding the earliest record (c->s[i].head), -1 at the
 * end, -2 on error (err set). */
KL_INTERNAL int etl_cursor_next(etl_cursor *c, kl_err *err);
KL_INTERNAL void etl_cursor_free(etl_cursor *c);

/* ---- the per-event output arena ---------------------------------------- */
#define ETL_MAX_FIELDS 8192
#define ETL_ARENA (5u * 65536u)

/* The arrays start small and grow, up to ETL_MAX_FIELDS slots each and
 * ETL_ARENA bytes, only when an event needs more: a request over the
 * current size but within those limits fails like a full arena and sets
 * grow; the reader then calls etl_out_grow and decodes the event again.
 * So a reader costs a few KB until its events are large, and every event
 * gets exactly the room it got from fixed arrays of the limits' sizes. */
typedef struct etl_out {
  kl_field *fields;          /* the event's own fields */
  size_t nf, capf;
  kl_field *nested;          /* members of tables inside them */
  size_t nn, capn;
  char *arena;
  size_t used, capa;
  int full;                  /* set when a field or byte did not fit */
  int grow;                  /* ... and would fit once grown (want*) */
  size_t wantf, wantn, wanta;
  const etl_loghdr *hdr;     /* for time conversion */
} etl_out;

/* Allocate the starting arrays; -1 when out of memory. */
KL_INTERNAL int etl_out_init(etl_out *o, const etl_loghdr *hdr);
KL_INTERNAL void etl_out_free(etl_out *o);
/* After an event set grow: enlarge to what it asked for (at least double);
 * -1 when out of memory (the arrays stay as they were). */
KL_INTERNAL int etl_out_grow(etl_out *o);
KL_INTERNAL void etl_out_reset(etl_out *o);
/* The next free field slot (named), or NULL when full. */
KL_INTERNAL kl_field *etl_out_field(etl_out *o, const char *name);
/* n consecutive top-level slots, or NULL. */
KL_INTERNAL kl_field *etl_out_fields(etl_out *o, size_t n);
/* n consecutive slots for a table's members, or NULL. */
KL_INTERNAL kl_field *etl_out_nested(etl_out *o, size_t n);
KL_INTERNAL void etl_set_int(kl_field *f, int64_t v);
KL_INTERNAL void etl_set_uint(kl_field *f, uint64_t v);
/* Copy text into the arena; NULL when full. */
KL_INTERNAL const char *etl_out_str(etl_out *o, const char *p, size_t len);
KL_INTERNAL int etl_set_bytes(etl_out *o, kl_field *f, const uint8_t *p, size_t len);
/* UTF-16LE (n code units, no NUL needed) as UTF-8. */
KL_INTERNAL int etl_set_utf16(etl_out *o, kl_field *f, const uint8_t *p, size_t units);
KL_INTERNAL int etl_set_guid(etl_out *o, kl_field *f, const uint8_t *g);
KL_INTERNAL void etl_guid_text(const uint8_t *g, char out[37]);
KL_INTERNAL int etl_set_ip4(etl_out *o, kl_field *f, const uint8_t *a);
KL_INTERNAL int etl_set_ip6(etl_out *o, kl_field *f, const uint8_t *a);
/* A SID (revision, count, authority, subauthorities) as "S-1-5-...".
 * Returns the SID's size in bytes, or -1 if it does not fit in n. */
KL_INTERNAL long etl_set_sid(etl_out *o, kl_field *f, const uint8_t *p, size_t n);
KL_INTERNAL int etl_set_filetime(etl_out *o, kl_field *f, uint64_t ft);
KL_INTERNAL int etl_set_systemtime(etl_out *o, kl_field *f, const uint8_t *p);
/* Length in bytes of a NUL-terminated string of unit bytes per character
 * inside n bytes, without the terminator; *term gets 1 if the NUL was found. */
KL_INTERNAL size_t etl_strlen(const uint8_t *p, size_t n, int unit, int *term);

/* Session clock -> ns since 1970 (the consumer API's conversion). */
KL_INTERNAL uint64_t etl_time_ns(const etl_loghdr *h, int64_t raw);
/* 1 if raw converts to a time after 1970 that fits an int64 of ns. */
KL_INTERNAL int etl_time_valid(const etl_loghdr *h, int64_t raw);
/* FILETIME -> ns since 1970 (0 before 1970). */
KL_INTERNAL uint64_t etl_filetime_ns(uint64_t ft);

/* ---- kernel classes ------------------------------------------------------ */
typedef struct etl_kname {
  const char *system, *name;
} etl_kname;

/* system/name of a kernel hook (group << 8 | type); 0 if unknown. */
KL_INTERNAL int etl_kernel_name(uint16_t hook, etl_kname *n);
/* Group of a kernel event class GUID, or -1. */
KL_INTERNAL int etl_kernel_group(const uint8_t *guid);
/* Payload fields of a kernel event.  0, or -1 when the arena was full. */
KL_INTERNAL int etl_kernel_fields(etl_out *o, uint16_t hook, int version, int ptr,
                                  const uint8_t *p, size_t n);
/* The log-file header as fields of EventTrace/Header. */
KL_INTERNAL void etl_loghdr_fields(etl_out *o, const etl_loghdr *h);

/* ---- TraceLogging --------------------------------------------------------- */
/* The event name from a schema item (into the arena), or NULL if malformed. */
KL_INTERNAL const char *etl_tlg_name(etl_out *o, const uint8_t *schema, size_t n);
/* The provider name from a traits item, or NULL. */
KL_INTERNAL const char *etl_tlg_provider(etl_out *o, const uint8_t *traits, size_t n);
/* Decode the payload by the schema: 0, or -1 (malformed: nothing added). */
KL_INTERNAL int etl_tlg_fields(etl_out *o, const uint8_t *schema, size_t ns,
                               const uint8_t *data, size_t nd, int ptr);

/* ---- the reader (reader.c / file.c) ------------------------------------ */
typedef struct kl_etl kl_etl;

KL_INTERNAL kl_etl *kl_etl_open_src(etl_src *src, const char *what, kl_err *err);
KL_INTERNAL kl_etl *kl_etl_open(const char *path, kl_err *err);
KL_INTERNAL int kl_etl_info(kl_etl *t, kl_trace_info *info, kl_err *err);
KL_INTERNAL int kl_etl_next(kl_etl *t, const kl_filter *f, int rewind, kl_event *ev,
                            kl_err *err);
KL_INTERNAL void kl_etl_close(kl_etl *t);
/* 1 if the first bytes look like an .etl file's first buffer. */
KL_INTERNAL int kl_etl_sniff(const uint8_t *p, size_t n);

#endif /* KL_ETL_H */
