/*
 * record.c - the headers that start each record of a buffer, and the
 * log-file header carried by the first record.  Layouts: docs/etl-format.md
 * ("Records", "The log-file header").
 */
#include "etl.h"

#include <stdio.h>
#include <string.h>

/* SYSTEM_TRACE_HEADER (0x20 bytes; 0x18 in the compact form) and
 * PERFINFO_TRACE_HEADER (0x10): a kernel event identified by its hook id. */
static long kernel_rec(const uint8_t *p, size_t size, int type, etl_rec *r) {
  uint16_t ver = etl_u16(p);
  size_t hdr;
  if (type >= 0x10) {           /* PERFINFO32/64 */
    hdr = 0x10;
    r->kind = ETL_K_PERFINFO;
    r->ptr = type == 0x10 ? 4 : 8;
    r->raw = (int64_t)etl_u64(p + 8);
  } else {                      /* SYSTEM32/64, COMPACT32/64 */
    hdr = type <= 2 ? 0x20 : 0x18;
    r->kind = ETL_K_SYSTEM;
    r->ptr = (type & 1) ? 4 : 8;
    r->tid = etl_u32(p + 8);
    r->pid = etl_u32(p + 12);
    r->raw = (int64_t)etl_u64(p + 16);
  }
  /* performance-counter words, then a PEBS index, before the event data */
  hdr += 8u * ((ver >> 8) & 7u) + ((ver & 0x8000u) ? 8u : 0u);
  if (hdr > size) return -1;
  r->version = (uint8_t)ver;
  r->hook = etl_u16(p + 6);
  r->opcode = (uint8_t)r->hook;
  r->data = p + hdr;
  r->len = size - hdr;
  return (long)size;
}

/* EVENT_TRACE_HEADER (0x30) and EVENT_INSTANCE_GUID_HEADER (0x48): classic
 * events identified by a class GUID and Class.Type. */
static long classic_rec(const uint8_t *p, size_t size, int type, etl_rec *r) {
  size_t hdr = (type == 0x0B || type == 0x15) ? 0x48 : 0x30;
  if (hdr > size) return -1;
  r->kind = hdr == 0x48 ? ETL_K_INSTANCE : ETL_K_FULL;
  r->ptr = (type == 0x0A || type == 0x0B) ? 4 : 8;
  r->opcode = p[4];
  r->level = p[5];
  r->version = (uint8_t)etl_u16(p + 6);
  r->tid = etl_u32(p + 8);
  r->pid = etl_u32(p + 12);
  r->raw = (int64_t)etl_u64(p + 16);
  r->guid = p + 0x18;
  r->data = p + hdr;
  r->len = size - hdr;
  return (long)size;
}

/* The extended data items of an EVENT_HEADER record: chained, each with
 * its total size at +0, type at +2, "another follows" at +4, data size at
 * +6 and the data from +8. */
static int ext_items(const uint8_t *p, size_t size, size_t *pos, etl_rec *r) {
  int more = 1;
  while (more) {
    const uint8_t *it = p + *pos;
    size_t isz, dsz;
    if (*pos + 8 > size) return -1;
    isz = etl_u16(it);
    dsz = etl_u16(it + 6);
    if (isz < 8 || dsz > isz - 8 || *pos + isz > size) return -1;
    more = etl_u16(it + 4) & 1;
    switch (etl_u16(it + 2)) {
      case 0x000B: r->schema = it + 8; r->nschema = dsz; break;
      case 0x000C: r->traits = it + 8; r->ntraits = dsz; break;
      case 0x0005: r->stack = it + 8; r->nstack = dsz; r->stack_ptr = 4; break;
      case 0x0006: r->stack = it + 8; r->nstack = dsz; r->stack_ptr = 8; break;
      default: break;
    }
    *pos += isz;
  }
  return 0;
}

/* EVENT_HEADER (0x50): manifest, TraceLogging and EventSource events. */
static long event_rec(const uint8_t *p, size_t size, int type, etl_rec *r) {
  size_t pos = 0x50;
  if (size < 0x50) return -1;
  r->kind = ETL_K_EVENT;
  r->ptr = type == 0x12 ? 4 : 8;
  r->evflags = etl_u16(p + 4);
  r->tid = etl_u32(p + 8);
  r->pid = etl_u32(p + 12);
  r->raw = (int64_t)etl_u64(p + 16);
  r->guid = p + 0x18;
  r->id = etl_u16(p + 0x28);
  r->version = p[0x2A];
  r->channel = p[0x2B];
  r->level = p[0x2C];
  r->opcode = p[0x2D];
  r->task = etl_u16(p + 0x2E);
  r->keyword = etl_u64(p + 0x30);
  if ((r->evflags & 1u) && ext_items(p, size, &pos, r) != 0) return -1;
  r->data = p + pos;
  r->len = size - pos;
  return (long)size;
}

/* MESSAGE_TRACE_HEADER (WPP): optional items by OptionFlags. */
static long message_rec(const uint8_t *p, size_t size, etl_rec *r) {
  uint16_t opt;
  size_t pos = 8;
  if (size < 8) return -1;
  opt = etl_u16(p + 6);
  r->kind = ETL_K_MESSAGE;
  r->id = etl_u16(p + 4);
  r->ptr = (opt & 0x40u) ? 4 : 8;
  if (opt & 0x01u) pos += 4;                    /* sequence number */
  if (opt & 0x04u) pos += 4;                    /* component id */
  else if (opt & 0x02u) pos += 16;              /* message GUID */
  if (opt & 0x08u) {                            /* timestamp */
    if (pos + 8 > size) return -1;
    r->raw = (int64_t)etl_u64(p + pos);
    pos += 8;
  } else {
    r->kind = ETL_K_SKIP;                       /* cannot be placed in time */
  }
  if (opt & 0x20u) {                            /* thread and process ids */
    if (pos + 8 > size) return -1;
    r->tid = etl_u32(p + pos);
    r->pid = etl_u32(p + pos + 4);
    pos += 8;
  }
  if (pos > size) return -1;
  r->data = p + pos;
  r->len = size - pos;
  return (long)size;
}

long etl_rec_parse(const uint8_t *p, size_t avail, etl_rec *r) {
  uint32_t m;
  size_t size;
  int type;
  if (avail < 4) return 0;
  m = etl_u32(p);
  if (m == 0xFFFFFFFFu) return 0;
  memset(r, 0, sizeof *r);
  r->pid = r->tid = 0xFFFFFFFFu;
  type = (int)((m >> 16) & 0xFF);
  if ((m >> 24) == 0x90) {
    size = etl_u16(p);
    if (size == 0 || size > avail) return size == 0 ? 0 : -1;
    return message_rec(p, size, r);
  }
  if ((m >> 24) != 0xC0) return -1;
  size = (type >= 1 && type <= 4) || type == 0x10 || type == 0x11 ? etl_u16(p + 4) : etl_u16(p);
  if (size == 0) return 0;
  if (size > avail || size < 8) return -1;
  switch (type) {
    case 0x01: case 0x02: case 0x03: case 0x04:
      if (size < (type <= 2 ? 0x20u : 0x18u)) return -1;
      return kernel_rec(p, size, type, r);
    case 0x10: case 0x11:
      if (size < 0x10) return -1;
      return kernel_rec(p, size, type, r);
    case 0x0A: case 0x0B: case 0x14: case 0x15: return classic_rec(p, size, type, r);
    case 0x12: case 0x13: return event_rec(p, size, type, r);
    default:
      r->kind = ETL_K_SKIP;   /* ERROR, TIMED, ... : size at +0, skipped and counted */
      return (long)size;
  }
}

/* The UTF-16 NUL-terminated string at p (n bytes) as UTF-8 into out (cut
 * at a character boundary when it does not fit).  Returns the bytes read. */
static size_t wname(const uint8_t *p, size_t n, char *out, size_t cap) {
  size_t i, o = 0;
  for (i = 0; i + 1 < n; i += 2) {
    uint32_t c = etl_u16(p + i);
    char b[4];
    size_t k;
    if (c == 0) { i += 2; break; }
    if (c >= 0xD800 && c < 0xDC00 && i + 3 < n && (etl_u16(p + i + 2) & 0xFC00) == 0xDC00) {
      c = 0x10000 + ((c - 0xD800) << 10) + (etl_u16(p + i + 2) - 0xDC00u);
      i += 2;
    } else if (c >= 0xD800 && c < 0xE000) {
      c = 0xFFFD;
    }
    if (c < 0x80) { b[0] = (char)c; k = 1; }
    else if (c < 0x800) { b[0] = (char)(0xC0 | c >> 6); b[1] = (char)(0x80 | (c & 0x3F)); k = 2; }
    else if (c < 0x10000) {
      b[0] = (char)(0xE0 | c >> 12); b[1] = (char)(0x80 | ((c >> 6) & 0x3F));
      b[2] = (char)(0x80 | (c & 0x3F)); k = 3;
    } else {
      b[0] = (char)(0xF0 | c >> 18); b[1] = (char)(0x80 | ((c >> 12) & 0x3F));
      b[2] = (char)(0x80 | ((c >> 6) & 0x3F)); b[3] = (char)(0x80 | (c & 0x3F)); k = 4;
    }
    if (o + k < cap) {
      memcpy(out + o, b, k);
      o += k;
    } else {
      cap = o + 1;   /* full: keep reading to the terminator, write no more */
    }
  }
  out[o] = '\0';
  return i;
}

int etl_loghdr_parse(const etl_rec *r, etl_loghdr *h, kl_err *err) {
  const uint8_t *p = r->data;
  int x64 = r->ptr == 8;
  size_t base = x64 ? 0x118 : 0x110, tz = x64 ? 0x48 : 0x40, used;
  memset(h, 0, sizeof *h);
  if (r->kind != ETL_K_SYSTEM || r->hook != 0 || r->len < base)
    return kl_err_set(err, KL_E_INVALID, 0,
                      "not an .etl file: the first record is not a log-file header");
  h->hdr_ptr = r->ptr;
  h->buffer_size = etl_u32(p);
  h->major = p[4]; h->minor = p[5]; h->sub = p[6]; h->subminor = p[7];
  h->build = etl_u32(p + 8);
  h->ncpus = etl_u32(p + 0x0C);
  h->end_time = etl_u64(p + 0x10);
  h->timer_res = etl_u32(p + 0x18);
  h->max_file_mb = etl_u32(p + 0x1C);
  h->mode = etl_u32(p + 0x20);
  h->buffers_written = etl_u32(p + 0x24);
  h->start_buffers = etl_u32(p + 0x28);
  h->ptr_size = etl_u32(p + 0x2C);
  h->events_lost = etl_u32(p + 0x30);
  h->cpu_mhz = etl_u32(p + 0x34);
  h->boot_time = etl_u64(p + tz + 0xB0);
  h->perf_freq = etl_u64(p + tz + 0xB8);
  h->start_time = etl_u64(p + tz + 0xC0);
  h->clock_type = etl_u32(p + tz + 0xC8);
  h->buffers_lost = etl_u32(p + tz + 0xCC);
  h->raw0 = r->raw;
  used = wname(p + base, r->len - base, h->logger, sizeof h->logger);
  wname(p + base + used, r->len - base - used, h->logfile, sizeof h->logfile);
  if (h->ptr_size != 4 && h->ptr_size != 8)
    return kl_err_set(err, KL_E_INVALID, 0, "log-file header: PointerSize %u is not 4 or 8",
                      (unsigned)h->ptr_size);
  if (h->clock_type != 2 && h->clock_type != 3 && h->perf_freq == 0 && h->clock_type != 0)
    return kl_err_set(err, KL_E_INVALID, 0, "log-file header: clock type %u with PerfFreq 0",
                      (unsigned)h->clock_type);
  if (h->ncpus == 0 || h->ncpus > ETL_MAX_CPU)
    return kl_err_set(err, KL_E_INVALID, 0, "log-file header: NumberOfProcessors %lu out of "
                      "range", (unsigned long)h->ncpus);
  if (h->clock_type == 3 && h->cpu_mhz == 0)
    return kl_err_set(err, KL_E_INVALID, 0, "log-file header: cycle clock with CpuSpeedInMHz 0");
  return 0;
}
