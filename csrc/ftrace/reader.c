/*
 * reader.c - reading trace.dat files (v6 and v7): libtracecmd parses the
 * headers (formats, command lines) after a probe child has survived them;
 * the records are read by pages.c (compressed v7 data through zchunks.c),
 * their timestamps corrected by tsfix.c, and decoded by decode.c.
 *
 * The trace streams: one record per CPU is held at a time (the head of
 * each CPU's stream) and the smallest timestamp wins, so memory does not
 * depend on the file's size.  Every event type gets a decoding plan the
 * first time it is seen (which fields, how to read each one); after that
 * an event costs no allocation: its fields are written into one array
 * owned by the trace and reused.
 *
 * Before libtracecmd sees a file, its header is checked here (magic,
 * version, endianness, long size, page size), so a missing, unreadable or
 * foreign file gets a precise error rather than libtracecmd's silence.
 */
#define _GNU_SOURCE
#include "ftrace.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event-parse.h>
#include <trace-cmd.h>

#define KL_ADDR_TEXT 48          /* INET6_ADDRSTRLEN (46) rounded up */

static int own_init(kl_trace *t, kl_err *err);
static int own_next(kl_trace *t, const kl_filter *f, int rewind, kl_event *ev, kl_err *err);
static int own_scan(kl_trace *t, kl_err *err);

struct kl_trace {
  char path[KL_PATH_MAX];
  struct tracecmd_input *h;
  struct tep_handle *tep;
  int ncpus;
  int version, big_endian, long_size, page_size;
  char clock[32];
  int swap;                     /* file endianness differs from ours */

  int started;                  /* heads positioned at the first records */

  kl_decoder *dec;              /* decoding plans and the reused output (decode.c) */

  /* the records are read by pages.c: libtracecmd only parses the headers
   * (formats, command lines) */
  int fd;                       /* the file, read with pread */
  kl_tsfix tsfix;               /* DATE, OFFSET, TSC2NSEC applied to every timestamp */
  const char *refuse;           /* an option this reader cannot apply (named at open) */
  uint32_t v6_ncpus;            /* CPUs of the CPU table (v7: highest id + 1) */
  int v7_plain, v7_table;       /* v7: uncompressed; its CPU table was read */
  int zalg;                     /* v7: KL_Z_* of compressed data, -1 unknown */
  uint64_t *cpu_off, *cpu_size; /* v6: each CPU's data */
  kl_pages pages;
  struct tep_record *hrec;      /* the head record of each CPU */
  unsigned char *has;           /* hrec[c] is valid */
  struct tep_record taken;      /* the record handed out (or pending) */
  int pend;                     /* taken is to be returned after a lost marker */

  /* info(), computed once by a scan */
  int info_done;
  uint64_t first_ts, last_ts;

  struct stat opened;           /* the file as the probe validated it */
  kl_event_count *counts;
  size_t ncounts;
};

/* ------------------------------------------------------------------ */
/* Header check                                                        */
/* ------------------------------------------------------------------ */

static const unsigned char kl_magic[10] = {0x17, 0x08, 0x44, 't', 'r', 'a', 'c', 'i', 'n', 'g'};

static uint32_t rd32(const unsigned char *p, int big) {
  return big ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
             : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

static uint64_t rd64(const unsigned char *p, int big) {
  uint64_t lo = rd32(p + (big ? 4 : 0), big), hi = rd32(p + (big ? 0 : 4), big);
  return hi << 32 | lo;
}

/* Read exactly n bytes at the current position; 0, or -1 at EOF/error. */
static int read_full(int fd, void *buf, size_t n) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = 0;  /* end of file: not an I/O error */
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Skip n bytes, checking they exist. */
static int skip_bytes(int fd, uint64_t n, off_t fsize) {
  off_t pos = lseek(fd, 0, SEEK_CUR);
  if (pos < 0 || n > (uint64_t)(fsize - pos)) return -1;
  return lseek(fd, (off_t)n, SEEK_CUR) < 0 ? -1 : 0;
}

static int read_cstr(int fd, char *buf, size_t cap) {
  size_t i;
  for (i = 0; i < cap; i++) {
    if (read_full(fd, buf + i, 1) < 0) return -1;
    if (buf[i] == '\0') return 0;
  }
  return -1;
}

/* The printk formats section: lines "ADDRESS : FORMAT".  libtraceevent 1.7
 * takes the format as what follows the first ':' minus one character (the
 * space), drops one leading quote, then looks 3 characters back from the
 * end of what is left; and it reads past its buffer when a NUL cuts a
 * line.  A line that leaves fewer than 3 characters, or a NUL, is refused.
 * Leaves the file position after the section; 0 or -1. */
typedef struct printk_line {
  size_t col;              /* bytes of the line so far */
  int colon;               /* a ':' was seen, not in column 0 */
  size_t after;            /* bytes after the first ':' */
  int quote;               /* the second of those is a '"' */
} printk_line;

static int printk_line_ok(const printk_line *l) {
  return l->col == 0 || (l->colon && l->after >= 1 + (size_t)l->quote + 3);
}

static int printk_ok(int fd, uint32_t size, off_t fsize) {
  char buf[4096];
  uint32_t done = 0;
  printk_line l = {0, 0, 0, 0};
  off_t pos = lseek(fd, 0, SEEK_CUR);

  if (pos < 0 || (uint64_t)size > (uint64_t)(fsize - pos)) return -1;
  while (done < size) {
    size_t n = size - done < sizeof buf ? size - done : sizeof buf, i;
    if (read_full(fd, buf, n) < 0) return -1;
    for (i = 0; i < n; i++) {
      char c = buf[i];
      if (c == '\0') return -1;
      if (c == '\n') {
        if (!printk_line_ok(&l)) return -1;
        memset(&l, 0, sizeof l);
        continue;
      }
      if (l.colon) {
        if (++l.after == 2) l.quote = c == '"';
      } else if (c == ':') {
        if (l.col == 0) return -1;
        l.colon = 1;
      }
      l.col++;
    }
    done += (uint32_t)n;
  }
  return printk_line_ok(&l) ? 0 : -1;
}

/* v6: the flyrecord CPU table (offset and size of each CPU's data), each
 * range checked against the file size. */
static int v6_cpu_table(kl_trace *t, int fd, uint32_t ncpus, off_t fsize, kl_err *err) {
  unsigned char b[16];
  uint32_t i;
  t->cpu_off = calloc((size_t)ncpus + 1, sizeof *t->cpu_off);
  t->cpu_size = calloc((size_t)ncpus + 1, sizeof *t->cpu_size);
  if (!t->cpu_off || !t->cpu_size)
    return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "open trace %s: out of memory", t->path);
  for (i = 0; i < ncpus; i++) {
    uint64_t off, size;
    if (read_full(fd, b, 16) < 0)
      return kl_err_set(err, KL_E_INVALID, 0,
                        "open trace %s: truncated or corrupt trace.dat (CPU table section)",
                        t->path);
    off = rd64(b, t->big_endian);
    size = rd64(b + 8, t->big_endian);
    if (off > (uint64_t)fsize || size > (uint64_t)fsize - off)
      return kl_err_set(err, KL_E_INVALID, 0,
                        "open trace %s: truncated: CPU %u data (offset %llu, %llu bytes) "
                        "runs past the end of the file (%lld bytes)", t->path, i,
                        (unsigned long long)off, (unsigned long long)size, (long long)fsize);
    t->cpu_off[i] = off;
    t->cpu_size[i] = size;
  }
  return 0;
}

/* v6 only: walk every header section to the flyrecord table, checking
 * that each size stays inside the file and that every CPU's data does too
 * (libtracecmd 3.1.6 crashes on some truncated files instead of failing).
 * Reads the trace clock that follows the table on the way. */
/* The body of option id (size bytes at the file position): a timestamp
 * correction is read and noted in t->tsfix (or t->refuse), anything else
 * skipped.  -1: the file ends inside it. */
static int option_body(kl_trace *t, int fd, unsigned id, uint32_t size, off_t fsize) {
  unsigned char d[64];
  uint32_t n = size < sizeof d ? size : (uint32_t)sizeof d;
  if (!kl_tsfix_option(id)) return skip_bytes(fd, size, fsize);
  if (read_full(fd, d, n) < 0 || skip_bytes(fd, size - n, fsize) < 0) return -1;
  if (kl_tsfix_add(&t->tsfix, id, d, n, t->big_endian) < 0 && !t->refuse)
    t->refuse = kl_tsfix_name(id);
  return 0;
}

static int v6_walk(kl_trace *t, int fd, off_t fsize, kl_err *err) {
  unsigned char b[16];
  char name[64];
  uint32_t i, j, n, m, ncpus;
  int big = t->big_endian, have_clock = 0;
  uint64_t sz;
  const char *what = "header";

#define NEED(cond, w) do { if (!(cond)) { what = (w); goto bad; } } while (0)
  NEED(lseek(fd, 0, SEEK_SET) == 0 && read_full(fd, b, 10) == 0, "magic");
  NEED(read_cstr(fd, name, sizeof name) == 0 && read_full(fd, b, 6) == 0, "header");
  for (i = 0; i < 2; i++) {
    NEED(read_cstr(fd, name, sizeof name) == 0 && read_full(fd, b, 8) == 0, "header_page");
    NEED(skip_bytes(fd, rd64(b, big), fsize) == 0, "header_page");
  }
  NEED(read_full(fd, b, 4) == 0, "ftrace formats");
  n = rd32(b, big);
  for (i = 0; i < n; i++) {
    NEED(read_full(fd, b, 8) == 0 && skip_bytes(fd, rd64(b, big), fsize) == 0, "ftrace formats");
  }
  NEED(read_full(fd, b, 4) == 0, "event formats");
  n = rd32(b, big);
  for (i = 0; i < n; i++) {
    NEED(read_cstr(fd, name, sizeof name) == 0 && read_full(fd, b, 4) == 0, "event formats");
    m = rd32(b, big);
    for (j = 0; j < m; j++) {
      NEED(read_full(fd, b, 8) == 0 && skip_bytes(fd, rd64(b, big), fsize) == 0, "event formats");
    }
  }
  NEED(read_full(fd, b, 4) == 0 && skip_bytes(fd, rd32(b, big), fsize) == 0, "kallsyms");
  NEED(read_full(fd, b, 4) == 0 && printk_ok(fd, rd32(b, big), fsize) == 0, "printk formats");
  NEED(read_full(fd, b, 8) == 0 && skip_bytes(fd, rd64(b, big), fsize) == 0, "command lines");
  NEED(read_full(fd, b, 4) == 0, "CPU count");
  ncpus = rd32(b, big);
  NEED(ncpus <= KL_MAX_CPUS, "CPU count");
  t->v6_ncpus = ncpus;
  NEED(read_full(fd, name, 10) == 0, "options");
  if (memcmp(name, "options  ", 10) == 0) {
    for (;;) {
      uint16_t id;
      NEED(read_full(fd, b, 2) == 0, "options");
      id = (uint16_t)(big ? (b[0] << 8 | b[1]) : (b[1] << 8 | b[0]));
      if (id == 0) break;
      NEED(read_full(fd, b, 4) == 0 && option_body(t, fd, id, rd32(b, big), fsize) == 0,
           "options");
      if (id == 4) have_clock = 1;  /* TRACECLOCK */
    }
    NEED(read_full(fd, name, 10) == 0, "data kind");
  }
  if (memcmp(name, "latency  ", 10) == 0) {
    kl_err_set(err, KL_E_NOT_SUPPORTED, 0, "open trace %s: a latency trace (text), not events",
               t->path);
    return -1;
  }
  NEED(memcmp(name, "flyrecord", 10) == 0, "data kind");
  if (v6_cpu_table(t, fd, ncpus, fsize, err) < 0) return -1;
  if (have_clock && read_full(fd, b, 8) == 0) {
    sz = rd64(b, big);
    if (sz > 0 && sz < 4096) {
      char text[4096], *s, *e;
      if (read_full(fd, text, (size_t)sz) == 0) {
        text[sz] = '\0';
        s = strchr(text, '[');
        e = s ? strchr(s, ']') : NULL;
        if (s && e && (size_t)(e - s - 1) < sizeof t->clock) {
          memcpy(t->clock, s + 1, (size_t)(e - s - 1));
          t->clock[e - s - 1] = '\0';
        }
      }
    }
  }
  return 0;
#undef NEED
bad:
  kl_err_set(err, KL_E_INVALID, 0, "open trace %s: truncated or corrupt trace.dat (%s section)",
             t->path, what);
  return -1;
}

/* v7: the top-level BUFFER option: offset, name "", clock, page size, CPU
 * count, then per CPU its id, data offset and size.  Fills the clock and,
 * when every CPU's data lies inside the file, the CPU table. */
static void v7_buffer(kl_trace *t, const unsigned char *d, uint32_t n, off_t fsize) {
  const unsigned char *c, *e = d + n, *p;
  uint32_t i, ncpu, maxid = 0;
  int big = t->big_endian;

  if (n < 10 || d[8] != '\0') return;              /* a sub-buffer, not the top level */
  c = memchr(d + 9, '\0', n - 9);
  if (!c) return;
  snprintf(t->clock, sizeof t->clock, "%.31s", (const char *)d + 9);
  p = c + 1;
  if (e - p < 8) return;
  ncpu = rd32(p + 4, big);
  p += 8;
  if (ncpu > KL_MAX_CPUS || (uint64_t)(e - p) < (uint64_t)ncpu * 20) return;
  for (i = 0; i < ncpu; i++) {
    uint32_t id = rd32(p + i * 20, big);
    uint64_t off = rd64(p + i * 20 + 4, big), size = rd64(p + i * 20 + 12, big);
    if (id >= KL_MAX_CPUS || off > (uint64_t)fsize || size > (uint64_t)fsize - off) return;
    if (id + 1 > maxid) maxid = id + 1;
  }
  free(t->cpu_off), free(t->cpu_size);  /* a second BUFFER (or a section read twice) replaces it */
  t->cpu_off = calloc((size_t)maxid + 1, sizeof *t->cpu_off);
  t->cpu_size = calloc((size_t)maxid + 1, sizeof *t->cpu_size);
  if (!t->cpu_off || !t->cpu_size) return;
  for (i = 0; i < ncpu; i++) {
    uint32_t id = rd32(p + i * 20, big);
    t->cpu_off[id] = rd64(p + i * 20 + 4, big);
    t->cpu_size[id] = rd64(p + i * 20 + 12, big);
  }
  t->v6_ncpus = maxid;
  t->v7_table = 1;
}

/* v7 only: walk the uncompressed options sections for the clock (BUFFER or
 * TRACECLOCK), the CPU table of an uncompressed file, and the options that
 * change timestamps.  Best effort: anything unexpected leaves the clock ""
 * and no CPU table (libtracecmd then reads the records). */
static void v7_options(kl_trace *t, int fd, off_t fsize, uint64_t *printk) {
  unsigned char b[16];
  char name[64];
  unsigned char data[16384];
  uint64_t off;
  int big = t->big_endian, sections;

  /* compression name and version follow the common header */
  if (read_cstr(fd, name, sizeof name) < 0) return;
  t->v7_plain = strcmp(name, "none") == 0;
  t->zalg = t->v7_plain ? 0 : kl_chunk_alg(name);
  if (read_cstr(fd, name, sizeof name) < 0 || read_full(fd, b, 8) < 0) return;
  off = rd64(b, big);
  for (sections = 0; off && sections < 64; sections++) {
    uint64_t size, end, pos;
    if (off > (uint64_t)fsize || lseek(fd, (off_t)off, SEEK_SET) < 0) return;
    if (read_full(fd, b, 16) < 0) return;
    if ((big ? (b[2] << 8 | b[3]) : (b[3] << 8 | b[2])) & 1) return;  /* compressed */
    size = rd64(b + 8, big);
    if (size > (uint64_t)fsize - off - 16) return;
    end = off + 16 + size;
    off = 0;
    for (pos = end - size; pos + 6 <= end;) {
      unsigned id;
      uint32_t osz;
      if (read_full(fd, b, 6) < 0) return;
      id = big ? (unsigned)(b[0] << 8 | b[1]) : (unsigned)(b[1] << 8 | b[0]);
      osz = rd32(b + 2, big);
      pos += 6;
      if (osz > end - pos) return;
      if (id == 0 && osz == 8) {  /* DONE: the next options section */
        if (read_full(fd, b, 8) < 0) return;
        off = rd64(b, big);
        break;
      }
      if (kl_tsfix_option(id)) {
        if (option_body(t, fd, id, osz, fsize) < 0) return;
      } else if (id == 20 && osz == 8) {  /* PRINTK: where its section is */
        if (read_full(fd, b, 8) < 0) return;
        *printk = rd64(b, big);
      } else if ((id == 3 || id == 4) && osz < sizeof data) {  /* BUFFER, TRACECLOCK */
        char *c, *e;
        if (read_full(fd, data, osz) < 0) return;
        data[osz] = '\0';
        if (id == 3) {
          v7_buffer(t, data, osz, fsize);
        } else if ((c = strchr((char *)data, '[')) && (e = strchr(c, ']')) &&
                   (size_t)(e - c - 1) < sizeof t->clock && !t->clock[0]) {
          memcpy(t->clock, c + 1, (size_t)(e - c - 1));
          t->clock[e - c - 1] = '\0';
        }
      } else if (lseek(fd, (off_t)osz, SEEK_CUR) < 0) {
        return;
      }
      pos += osz;
    }
  }
}

/* v7: the options, then the printk section (as in v6_walk) when it is
 * not compressed.  -1 with err when that section is refused. */
static int v7_walk(kl_trace *t, int fd, off_t fsize, kl_err *err) {
  unsigned char b[16];
  uint64_t printk = 0;
  v7_options(t, fd, fsize, &printk);
  if (!printk || printk > (uint64_t)fsize || lseek(fd, (off_t)printk, SEEK_SET) < 0 ||
      read_full(fd, b, 16) < 0)
    return 0;
  if ((t->big_endian ? (b[2] << 8 | b[3]) : (b[3] << 8 | b[2])) & 1) return 0;  /* compressed */
  if (read_full(fd, b, 4) == 0 && printk_ok(fd, rd32(b, t->big_endian), fsize) == 0) return 0;
  return kl_err_set(err, KL_E_INVALID, 0,
                    "open trace %s: truncated or corrupt trace.dat (printk formats section)",
                    t->path);
}

/* Check the header of path; fills version, endianness, sizes. */
static int check_header(kl_trace *t, const char *path, kl_err *err) {
  unsigned char hdr[10];
  char vers[16];
  unsigned char b[6];
  struct stat st;
  int fd = -1, e;
  char *end;
  long v;

  /* O_NONBLOCK: a FIFO in place of the file must not hang the open */
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    e = errno;
    kl_err_set(err, kl_code_from_errno(e), e, "open trace %s: %s (errno %d)", path,
               strerror(e), e);
    goto error;
  }
  if (fstat(fd, &st) < 0) {
    e = errno;
    kl_err_set(err, KL_E_IO, e, "open trace %s: fstat: %s (errno %d)", path, strerror(e), e);
    goto error;
  }
  if (!S_ISREG(st.st_mode)) {
    kl_err_set(err, KL_E_INVALID, 0, "open trace %s: not a regular file", path);
    goto error;
  }
  errno = 0;
  if (read_full(fd, hdr, sizeof hdr) < 0 || memcmp(hdr, kl_magic, sizeof hdr) != 0) {
    e = errno;
    if (e && e != EISDIR) {
      kl_err_set(err, KL_E_IO, e, "open trace %s: read: %s (errno %d)", path, strerror(e), e);
    } else {
      kl_err_set(err, KL_E_INVALID, 0, "open trace %s: not a trace.dat file (bad magic)", path);
    }
    goto error;
  }
  if (read_cstr(fd, vers, sizeof vers) < 0 || read_full(fd, b, 6) < 0) {
    kl_err_set(err, KL_E_INVALID, 0, "open trace %s: truncated header", path);
    goto error;
  }
  v = strtol(vers, &end, 10);
  if (end == vers || *end != '\0' || (v != 6 && v != 7)) {
    kl_err_set(err, KL_E_INVALID, 0,
               "open trace %s: unsupported trace.dat version \"%.15s\" (6 and 7 are read)",
               path, vers);
    goto error;
  }
  t->version = (int)v;
  t->big_endian = b[0] != 0;
  t->long_size = b[1];
  t->page_size = (int)rd32(b + 2, t->big_endian);
  if ((t->long_size != 4 && t->long_size != 8) || t->page_size < 64 ||
      t->page_size > (1 << 24) || (t->page_size & (t->page_size - 1)) != 0) {
    kl_err_set(err, KL_E_INVALID, 0,
               "open trace %s: corrupt header (long size %d, page size %d)", path,
               t->long_size, t->page_size);
    goto error;
  }
  t->clock[0] = '\0';
  if (t->version == 6 && v6_walk(t, fd, st.st_size, err) < 0) goto error;
  if (t->version == 7 && v7_walk(t, fd, st.st_size, err) < 0) goto error;
  t->fd = fd;  /* kept: pages.c reads this very file, whatever the path becomes */
  t->opened = st;
  return 0;

error:
  if (fd >= 0) close(fd);
  return -1;
}

#define KL_TC_FLAGS (TRACECMD_FL_LOAD_NO_PLUGINS | TRACECMD_FL_LOAD_NO_SYSTEM_PLUGINS)

/* libtracecmd 3.1.6 and libtraceevent 1.7 crash on some corrupt headers
 * (a flipped byte in an event format, an error path of tracecmd_open that
 * frees what it never allocated) and on corrupt pages.  Open the file once
 * in a child process first: if that child dies, the file is reported
 * corrupt and this process never runs the code that would crash it.  The
 * child parses the headers only (pages.c reads the records, checking every
 * page itself).  An alarm bounds it in time. */
static int probe_open(kl_trace *t, kl_err *err) {
  pid_t pid, w;
  int status = 0, fds[2];
  char verdict = 0;
  ssize_t got;

  /* the child says how it went through a pipe, so that only its own word
   * counts (a tool such as valgrind may change its exit status) */
  if (pipe(fds) != 0) return 0;  /* cannot probe (no resources): open directly */
  fflush(NULL);
  pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return 0;
  }
  if (pid == 0) {
    struct tracecmd_input *h;
    struct tep_handle *tep;
    char v = 'F';
    close(fds[0]);
    alarm(60);
    h = tracecmd_open_head(t->path, KL_TC_FLAGS);
    tep = h ? tracecmd_get_tep(h) : NULL;
    if (tep) v = 'K';
    if (h) tracecmd_close(h);  /* as the parent will: a close that crashes fails here */
    if (write(fds[1], &v, 1) != 1) _exit(4);
    _exit(v == 'K' ? 0 : 3);
  }
  close(fds[1]);
  do {
    got = read(fds[0], &verdict, 1);
  } while (got < 0 && errno == EINTR);
  close(fds[0]);
  do {
    w = waitpid(pid, &status, 0);
  } while (w < 0 && errno == EINTR);
  if (got == 1 && verdict == 'K') return 0;
  if (got == 1 && verdict == 'F') {
    return kl_err_set(err, KL_E_INVALID, 0,
                      "open trace %s: libtracecmd cannot read it (truncated or corrupt "
                      "trace.dat v%d)", t->path, t->version);
  }
  if (w < 0) return 0;
  return kl_err_set(err, KL_E_INVALID, 0,
                    "open trace %s: corrupt trace.dat v%d (libtracecmd fails on it: %s)",
                    t->path, t->version,
                    WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "no answer");
}

/* ------------------------------------------------------------------ */
/* Open / close                                                        */
/* ------------------------------------------------------------------ */

void kl_ftrace_trace_close(kl_trace *t) {
  size_t i;
  if (!t) return;
  if (t->h) tracecmd_close(t->h);
  kl_decoder_free(t->dec);
  kl_pages_free(&t->pages);
  free(t->hrec);
  free(t->has);
  free(t->cpu_off);
  free(t->cpu_size);
  if (t->fd >= 0) close(t->fd);
  if (t->counts) {
    for (i = 0; i < t->ncounts; i++) {
      free((char *)t->counts[i].system);
      free((char *)t->counts[i].name);
    }
    free(t->counts);
  }
  free(t);
}

kl_trace *kl_ftrace_trace_open(const char *path, kl_err *err) {
  kl_trace *t = NULL;

  if (!path || !*path) {
    kl_err_set(err, KL_E_BAD_PATH, 0, "open trace: empty path");
    goto error;
  }
  t = calloc(1, sizeof *t);
  if (!t) {
    kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "open trace %s: out of memory", path);
    goto error;
  }
  snprintf(t->path, sizeof t->path, "%s", path);
  t->fd = -1;
  if (check_header(t, path, err) < 0) goto error;

  tracecmd_set_loglevel(TEP_LOG_NONE);
  if (t->refuse) {
    kl_err_set(err, KL_E_NOT_SUPPORTED, 0,
               "open trace %s: option %s: its timestamp correction is not applied by this "
               "reader (or its value is malformed)", path, t->refuse);
    goto error;
  }
  if (t->version == 7 && !(t->v7_table && (t->v7_plain || t->zalg > 0))) {
    kl_err_set(err, t->v7_table ? KL_E_NOT_SUPPORTED : KL_E_INVALID, 0,
               t->v7_table ? "open trace %s: compression algorithm not supported (zstd and zlib "
                             "are)"
                           : "open trace %s: no CPU table (a top-level BUFFER option in an "
                             "uncompressed options section) in this trace.dat v7",
               path);
    goto error;
  }
  if (probe_open(t, err) < 0) goto error;
  t->h = tracecmd_open_head(path, KL_TC_FLAGS);
  if (!t->h) {
    kl_err_set(err, KL_E_INVALID, 0,
               "open trace %s: libtracecmd cannot read it (truncated or corrupt trace.dat v%d)",
               path, t->version);
    goto error;
  }
  t->tep = tracecmd_get_tep(t->h);
  t->ncpus = (int)t->v6_ncpus;
  if (!t->tep || t->ncpus < 0 || t->ncpus > KL_MAX_CPUS) {
    kl_err_set(err, KL_E_INVALID, 0, "open trace %s: corrupt header (%d CPUs)", path, t->ncpus);
    goto error;
  }
  t->swap = (t->big_endian != 0) != (tep_is_bigendian() != 0);
  if (own_init(t, err) < 0) goto error;
  {
    char what[KL_PATH_MAX + 16];
    snprintf(what, sizeof what, "read trace %s", path);
    t->dec = kl_decoder_new(t->tep, t->long_size, t->swap, what, err);
    if (!t->dec) goto error;
  }
  return t;

error:
  kl_ftrace_trace_close(t);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Iteration                                                           */
/* ------------------------------------------------------------------ */

static int cpu_wanted(const kl_filter *f, int cpu) {
  return !f || f->cpu < 0 || f->cpu == cpu;
}

/* The header of a lost-events marker for record r. */
static void fill_lost(const struct tep_record *r, kl_event *ev) {
  ev->time = r->ts;
  ev->cpu = r->cpu;
  ev->pid = -1;
  ev->comm = NULL;
  ev->nfields = 0;
  ev->fields = NULL;
  ev->name = "lost_events";
  ev->system = NULL;
  ev->lost = r->missed_events > 0 ? (uint64_t)r->missed_events : UINT64_MAX;
}

int kl_ftrace_trace_next(kl_trace *t, const kl_filter *f, int rewind, kl_event *ev,
                         kl_err *err) {
  if (!t || !ev) return kl_err_set(err, KL_E_INVALID, 0, "read trace: no trace");
  return own_next(t, f, rewind, ev, err);
}

/* ------------------------------------------------------------------ */
/* Info                                                                */
/* ------------------------------------------------------------------ */

static int count_cmp(const void *a, const void *b) {
  const kl_event_count *x = a, *y = b;
  int c = strcmp(x->system, y->system);
  return c ? c : strcmp(x->name, y->name);
}

/* The info() figures from per-id counts. */
static int store_counts(kl_trace *t, struct tep_handle *tep, const int64_t *byid, int maxid,
                        uint64_t first, uint64_t last, kl_err *err) {
  int nev = tep_get_events_count(tep), c;
  struct tep_event **events = tep_list_events(tep, TEP_EVENT_SORT_ID);
  size_t i, n = 0;

  for (c = 0; events && c < nev; c++) {
    if (events[c]->id >= 0 && events[c]->id <= maxid && byid[events[c]->id] > 0) n++;
  }
  t->counts = calloc(n ? n : 1, sizeof *t->counts);
  if (!t->counts) goto oom;
  for (c = 0, i = 0; events && c < nev && i < n; c++) {
    struct tep_event *e = events[c];
    if (e->id < 0 || e->id > maxid || byid[e->id] == 0) continue;
    t->counts[i].system = strdup(e->system ? e->system : "");
    t->counts[i].name = strdup(e->name ? e->name : "");
    t->counts[i].count = byid[e->id];
    t->ncounts = ++i;
    if (!t->counts[i - 1].system || !t->counts[i - 1].name) goto oom;
  }
  qsort(t->counts, t->ncounts, sizeof *t->counts, count_cmp);
  t->first_ts = first == UINT64_MAX ? 0 : first;
  t->last_ts = last;
  t->info_done = 1;
  return 0;

oom:
  return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "read trace %s: out of memory", t->path);
}

int kl_ftrace_trace_info(kl_trace *t, kl_trace_info *info, kl_err *err) {
  if (!t || !info) return kl_err_set(err, KL_E_INVALID, 0, "trace info: no trace");
  if (!t->info_done && own_scan(t, err) < 0) return -1;
  memset(info, 0, sizeof *info);
  snprintf(info->format, sizeof info->format, "trace.dat");
  info->version = t->version;
  info->big_endian = t->big_endian;
  info->long_size = t->long_size;
  info->page_size = t->page_size;
  info->ncpus = t->ncpus;
  snprintf(info->clock, sizeof info->clock, "%s", t->clock);
  info->first_ts = t->first_ts;
  info->last_ts = t->last_ts;
  info->nevent_types = t->ncounts;
  info->event_types = t->counts;
  return 0;
}

/* ------------------------------------------------------------------ */
/* v6 records through pages.c                                          */
/* ------------------------------------------------------------------ */

static int commit_width(const kl_trace *t) {
  int w = t->tep ? tep_get_header_page_size(t->tep) : 0;
  return w == 4 || w == 8 ? w : t->long_size;
}

static int own_init(kl_trace *t, kl_err *err) {
  kl_pages_geom g;
  g.fd = t->fd;
  g.path = t->path;
  g.page_size = t->page_size;
  /* The page header's commit word (and the lost count after the records)
   * is as wide as header_page says, which is not always the file's long
   * size: trace-cmd convert writes 8 there for a 32-bit capture whose
   * pages keep their 4-byte commit. */
  g.long_size = commit_width(t);
  g.big = t->big_endian;
  g.ncpus = t->ncpus;
  g.cpu_off = t->cpu_off;
  g.cpu_size = t->cpu_size;
  g.zalg = t->version == 7 && !t->v7_plain ? t->zalg : 0;
  g.tsfix = t->tsfix;
  t->hrec = calloc((size_t)t->ncpus + 1, sizeof *t->hrec);
  t->has = calloc((size_t)t->ncpus + 1, 1);
  if (!t->hrec || !t->has)
    return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "open trace %s: out of memory", t->path);
  return kl_pages_init(&t->pages, &g, err);
}

/* Every wanted CPU back at its first record. */
static int own_start(kl_trace *t, const kl_filter *f, kl_err *err) {
  int c, got;
  t->pend = 0;
  t->started = 0;
  for (c = 0; c < t->ncpus; c++) {
    t->has[c] = 0;
    kl_pages_rewind(&t->pages, c);
    if (!cpu_wanted(f, c)) continue;
    got = kl_pages_next(&t->pages, c, &t->hrec[c], err);
    if (got < 0) return -1;
    t->has[c] = (unsigned char)got;
  }
  t->started = 1;
  kl_decoder_new_filter(t->dec);
  return 0;
}

/* The head with the smallest timestamp into t->taken, its CPU advanced.
 * 1: taken; 0: end; -1: error. */
static int own_take(kl_trace *t, kl_err *err) {
  int c, best = -1, got;
  for (c = 0; c < t->ncpus; c++) {
    if (t->has[c] && (best < 0 || t->hrec[c].ts < t->hrec[best].ts)) best = c;
  }
  if (best < 0) return 0;
  t->taken = t->hrec[best];
  got = kl_pages_next(&t->pages, best, &t->hrec[best], err);
  t->has[best] = got > 0;
  return got < 0 ? -1 : 1;
}

static int own_next(kl_trace *t, const kl_filter *f, int rewind, kl_event *ev, kl_err *err) {
  if ((rewind || !t->started) && own_start(t, f, err) < 0) return -1;
  for (;;) {
    struct tep_record *r = &t->taken;
    int got;
    if (t->pend) {
      t->pend = 0;
    } else {
      got = own_take(t, err);
      if (got <= 0) return got;
      if (f && f->t1 && r->ts > f->t1) {
        memset(t->has, 0, (size_t)t->ncpus);  /* ordered by time: nothing after matches */
        return 0;
      }
      if (r->missed_events != 0 && cpu_wanted(f, r->cpu) && kl_filter_wants_lost(f) &&
          (!f || f->pid < 0) && (!f || r->ts >= f->t0)) {
        t->pend = 1;
        fill_lost(r, ev);
        return 1;
      }
    }
    got = kl_decoder_event(t->dec, f, r, ev, err);
    if (got != 0) return got;
  }
}

/* info(): every record once, with its own cursors (an iteration in
 * progress is not disturbed). */
static int own_scan(kl_trace *t, kl_err *err) {
  kl_pages ps;
  struct tep_record r;
  int64_t *byid = NULL;
  int maxid = 0, c, nev = tep_get_events_count(t->tep), got = 0;
  struct tep_event **events = tep_list_events(t->tep, TEP_EVENT_SORT_ID);
  uint64_t first = UINT64_MAX, last = 0;

  for (c = 0; events && c < nev; c++) {
    if (events[c]->id > maxid) maxid = events[c]->id;
  }
  byid = calloc((size_t)maxid + 1, sizeof *byid);
  if (!byid)
    return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "read trace %s: out of memory", t->path);
  if (kl_pages_init(&ps, &t->pages.g, err) < 0) {
    free(byid);
    return -1;
  }
  for (c = 0; c < t->ncpus && got >= 0; c++) {
    while ((got = kl_pages_next(&ps, c, &r, err)) > 0) {
      int id = r.size >= 0 && (size_t)r.size >= kl_decoder_common_end(t->dec)
                   ? tep_data_type(t->tep, &r) : -1;
      if (id >= 0 && id <= maxid) byid[id]++;
      if (r.ts < first) first = r.ts;
      if (r.ts > last) last = r.ts;
    }
  }
  kl_pages_free(&ps);
  if (got >= 0) got = store_counts(t, t->tep, byid, maxid, first, last, err);
  free(byid);
  return got < 0 ? -1 : 0;
}
