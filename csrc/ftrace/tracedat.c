/*
 * tracedat.c - a trace.dat version 6 writer, from man 5 trace-cmd.dat.v6.
 *
 * The file is laid out as:
 *   magic, "tracing", "6", endianness, long size, page size
 *   header_page, header_event
 *   ftrace event formats (events/ftrace/STAR/format)
 *   the formats of the enabled events only, grouped by system
 *   kallsyms (empty unless asked for; read as /proc/kallsyms shows it)
 *   printk_formats, saved_cmdlines, CPU count
 *   options: one CPUSTAT per CPU (per_cpu/cpuN/stats after the read), TRACECLOCK
 *   "flyrecord": per CPU (offset, size), then the trace_clock text
 *   padding to a page boundary, then each CPU's raw ring pages
 *
 * The header is built in memory (it is small but for kallsyms), the page
 * data is moved from trace_pipe_raw to the file with splice(2) and never
 * looked at.  Reading trace_pipe_raw consumes the ring.
 *
 * Facts the man page leaves out, checked against trace-cmd 3.1.6's reader:
 * option ids CPUSTAT = 2 and TRACECLOCK = 4; a CPUSTAT option is a
 * NUL-terminated string; when a TRACECLOCK option is present a version 6
 * reader expects an 8-byte size and the trace_clock file's text right
 * after the flyrecord offset/size table.
 */
#define _GNU_SOURCE
#include "ftrace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <tracefs.h>

enum { OPT_DONE = 0, OPT_CPUSTAT = 2, OPT_TRACECLOCK = 4 };

#define PIPE_BYTES (1024 * 1024)

/* ---- a growable in-memory header ---- */

typedef struct hbuf {
  char *p;
  size_t len, cap;
} hbuf;

static int hb_reserve(hbuf *b, size_t more) {
  size_t cap;
  char *np;
  if (b->len + more <= b->cap) return 0;
  cap = b->cap ? b->cap : 65536;
  while (cap < b->len + more) cap *= 2;
  np = realloc(b->p, cap);
  if (np == NULL) return -1;
  b->p = np;
  b->cap = cap;
  return 0;
}

static int hb_put(hbuf *b, const void *d, size_t n) {
  if (hb_reserve(b, n) != 0) return -1;
  memcpy(b->p + b->len, d, n);
  b->len += n;
  return 0;
}

/* Numbers are written in host order: the file declares the host's
 * endianness in its header. */
static int hb_u16(hbuf *b, uint16_t v) { return hb_put(b, &v, sizeof v); }
static int hb_u32(hbuf *b, uint32_t v) { return hb_put(b, &v, sizeof v); }
static int hb_u64(hbuf *b, uint64_t v) { return hb_put(b, &v, sizeof v); }
static int hb_str(hbuf *b, const char *s) { return hb_put(b, s, strlen(s) + 1); }

static int oom(kl_err *err, const kl_dump_opts *o) {
  return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "writing '%s' (session %s): out of memory",
                    o->path, o->session ? o->session : "?");
}

/* Append the content of a (tracefs or proc) file, preceded by its size on
 * `width` bytes (4 or 8), or with no size when width is 0.  tracefs files
 * report size 0 in stat, so read until EOF. */
static int hb_file(hbuf *b, const char *path, int width, const kl_dump_opts *o, kl_err *err) {
  size_t at = b->len, start;
  uint64_t n;
  int fd = -1;
  uint8_t zero[8] = {0};

  if (width && hb_put(b, zero, (size_t)width) != 0) return oom(err, o);
  start = b->len;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    kl_err_errno(err, KL_E_IO, "writing '%s' (session %s): cannot open %s", o->path,
                 o->session ? o->session : "?", path);
    goto error;
  }
  for (;;) {
    ssize_t r;
    if (hb_reserve(b, 65536) != 0) {
      oom(err, o);
      goto error;
    }
    r = read(fd, b->p + b->len, b->cap - b->len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      kl_err_errno(err, KL_E_IO, "writing '%s' (session %s): cannot read %s", o->path,
                   o->session ? o->session : "?", path);
      goto error;
    }
    if (r == 0) break;
    b->len += (size_t)r;
  }
  close(fd);
  n = b->len - start;
  if (width == 4) {
    uint32_t v = (uint32_t)n;
    memcpy(b->p + at, &v, 4);
  } else if (width == 8) {
    memcpy(b->p + at, &n, 8);
  }
  return 0;

error:
  if (fd >= 0) close(fd);
  b->len = at;
  return -1;
}

/* ---- small helpers ---- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int path_join(char *out, size_t sz, const char *a, const char *b) {
  int n = snprintf(out, sz, "%s/%s", a, b);
  return (n < 0 || (size_t)n >= sz) ? -1 : 0;
}

/* path_join, with err filled when the result does not fit. */
static int jpath(char *out, size_t sz, const char *a, const char *b, kl_err *err) {
  if (path_join(out, sz, a, b) == 0) return 0;
  return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "path too long: %s/%s", a, b);
}

/* Highest per_cpu/cpuN index + 1, or 0 when the folder is unreadable. */
static int count_cpus(const char *dir) {
  char path[KL_PATH_MAX];
  DIR *d;
  struct dirent *de;
  int max = -1;
  if (path_join(path, sizeof path, dir, "per_cpu") != 0) return 0;
  d = opendir(path);
  if (d == NULL) return 0;
  while ((de = readdir(d)) != NULL) {
    char *end;
    long n;
    if (strncmp(de->d_name, "cpu", 3) != 0) continue;
    n = strtol(de->d_name + 3, &end, 10);
    if (end == de->d_name + 3 || *end != '\0' || n < 0 || n >= KL_MAX_CPUS) continue;
    if (n > max) max = (int)n;
  }
  closedir(d);
  return max + 1;
}

/* The ftrace event formats: every events/ftrace/NAME/format, sorted. */
static int put_ftrace_formats(hbuf *b, const char *events_dir, const kl_dump_opts *o,
                              kl_err *err) {
  char path[KL_PATH_MAX];
  char **names = NULL;
  size_t n = 0, cap = 0, i, count_at;
  uint32_t count = 0;
  DIR *d = NULL;
  struct dirent *de;
  int rc = -1;

  if (path_join(path, sizeof path, events_dir, "ftrace") != 0) {
    kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "tracefs path too long");
    goto done;
  }
  count_at = b->len;
  if (hb_u32(b, 0) != 0) {
    oom(err, o);
    goto done;
  }
  d = opendir(path);
  if (d != NULL) {
    while ((de = readdir(d)) != NULL) {
      if (de->d_name[0] == '.' || strcmp(de->d_name, "enable") == 0 ||
          strcmp(de->d_name, "filter") == 0)
        continue;
      if (n == cap) {
        char **nn = realloc(names, (cap ? cap * 2 : 32) * sizeof *names);
        if (nn == NULL) {
          oom(err, o);
          goto done;
        }
        names = nn;
        cap = cap ? cap * 2 : 32;
      }
      names[n] = strdup(de->d_name);
      if (names[n] == NULL) {
        oom(err, o);
        goto done;
      }
      n++;
    }
    if (n) qsort(names, n, sizeof *names, cmp_str);
  }
  for (i = 0; i < n; i++) {
    char fmt[KL_PATH_MAX];
    struct stat st;
    if (snprintf(fmt, sizeof fmt, "%s/%s/format", path, names[i]) >= (int)sizeof fmt) continue;
    if (stat(fmt, &st) != 0) continue;
    if (hb_file(b, fmt, 8, o, err) != 0) goto done;
    count++;
  }
  memcpy(b->p + count_at, &count, 4);
  rc = 0;

done:
  if (d) closedir(d);
  for (i = 0; i < n; i++) free(names[i]);
  free(names);
  return rc;
}

/* The formats of the enabled events only, grouped by system; "ftrace"
 * events are already in the ftrace section. */
/* The enabled events but ftrace's, sorted, without duplicates, in *evs
 * (*n of them, to be freed); 0 or -1 with err. */
static int event_list(const kl_dump_opts *o, char ***evs_out, size_t *n_out, kl_err *err) {
  char **evs = NULL;
  size_t n = 0, i, j;
  *evs_out = NULL;
  *n_out = 0;
  if (o->nevents) {
    evs = calloc(o->nevents, sizeof *evs);
    if (evs == NULL) return oom(err, o);
  }
  for (i = 0; i < o->nevents; i++) {
    const char *ev = o->events[i];
    const char *colon = ev ? strchr(ev, ':') : NULL;
    if (colon == NULL || colon == ev || colon[1] == '\0') {
      kl_err_set(err, KL_E_INVALID, 0,
                 "writing '%s' (session %s): event '%s' is not of the form system:event",
                 o->path, o->session ? o->session : "?", ev ? ev : "(null)");
      goto done;
    }
    if ((size_t)(colon - ev) == 6 && strncmp(ev, "ftrace", 6) == 0) continue;
    evs[n] = strdup(ev);
    if (evs[n] == NULL) {
      oom(err, o);
      goto done;
    }
    n++;
  }
  if (n) qsort(evs, n, sizeof *evs, cmp_str);
  /* drop duplicates */
  for (i = 0, j = 0; i < n; i++) {
    if (j > 0 && strcmp(evs[j - 1], evs[i]) == 0) {
      free(evs[i]);
      continue;
    }
    evs[j++] = evs[i];
  }
  *evs_out = evs;
  *n_out = j;
  return 0;
done:
  for (i = 0; i < n; i++) free(evs[i]);
  free(evs);
  return -1;
}

static int put_event_formats(hbuf *b, const char *events_dir, const kl_dump_opts *o,
                             kl_err *err) {
  char **evs = NULL;
  size_t n = 0, i;
  uint32_t nsys = 0;
  size_t nsys_at;
  int rc = -1;

  if (event_list(o, &evs, &n, err) != 0) return -1;
  nsys_at = b->len;
  if (hb_u32(b, 0) != 0) {
    oom(err, o);
    goto done;
  }
  for (i = 0; i < n;) {
    size_t syslen = (size_t)(strchr(evs[i], ':') - evs[i]);
    size_t count_at;
    uint32_t count = 0;
    char sys[256];
    if (syslen >= sizeof sys) {
      kl_err_set(err, KL_E_INVALID, 0, "event system name too long: %s", evs[i]);
      goto done;
    }
    memcpy(sys, evs[i], syslen);
    sys[syslen] = '\0';
    if (hb_str(b, sys) != 0) {
      oom(err, o);
      goto done;
    }
    count_at = b->len;
    if (hb_u32(b, 0) != 0) {
      oom(err, o);
      goto done;
    }
    for (; i < n && strncmp(evs[i], sys, syslen) == 0 && evs[i][syslen] == ':'; i++) {
      char fmt[KL_PATH_MAX];
      int k = snprintf(fmt, sizeof fmt, "%s/%s/%s/format", events_dir, sys, evs[i] + syslen + 1);
      if (k < 0 || (size_t)k >= sizeof fmt) {
        kl_err_set(err, KL_E_INVALID, 0, "event name too long: %s", evs[i]);
        goto done;
      }
      {
        struct stat st;
        /* a tracepoint gone since it was enabled (module unloaded): its
         * records cannot be decoded, but the rest of the capture can */
        if (stat(fmt, &st) != 0 && errno == ENOENT) continue;
      }
      if (hb_file(b, fmt, 8, o, err) != 0) goto done;
      count++;
    }
    memcpy(b->p + count_at, &count, 4);
    nsys++;
  }
  memcpy(b->p + nsys_at, &nsys, 4);
  rc = 0;

done:
  if (evs) {
    for (i = 0; i < n; i++) free(evs[i]);
    free(evs);
  }
  return rc;
}

/* ---- writing ---- */

static int wr_fail(kl_err *err, const kl_dump_opts *o, const char *what, int e) {
  errno = e;
  return kl_err_errno(err, KL_E_IO, "writing '%s' (session %s): %s", o->path,
                      o->session ? o->session : "?", what);
}

static int write_all(int fd, const void *p, size_t n, const kl_dump_opts *o, kl_err *err) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return wr_fail(err, o, "write failed", errno);
    if (w == 0) return wr_fail(err, o, "write failed", ENOSPC);
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Write zeros from *off up to `target`. */
static int pad_to(int fd, uint64_t *off, uint64_t target, const kl_dump_opts *o, kl_err *err) {
  static const char zeros[4096];
  while (*off < target) {
    size_t k = target - *off > sizeof zeros ? sizeof zeros : (size_t)(target - *off);
    if (write_all(fd, zeros, k, o, err) != 0) return -1;
    *off += k;
  }
  return 0;
}

/* Move one CPU's ring pages into fd at its current offset: splice whole
 * pages while there are any, then read() the partly filled page.  At most
 * `limit` bytes are taken, so a busy producer cannot keep the dump going
 * forever.  *moved receives the bytes written. */
static int dump_cpu(const char *dir, int cpu, int out, int pipefd[2], char *page,
                    size_t page_size, uint64_t limit, uint64_t *moved, const kl_dump_opts *o,
                    kl_err *err) {
  char path[KL_PATH_MAX];
  int in = -1, rc = -1, use_splice = pipefd[0] >= 0;
  uint64_t total = 0;

  *moved = 0;
  if (snprintf(path, sizeof path, "%s/per_cpu/cpu%d/trace_pipe_raw", dir, cpu) >=
      (int)sizeof path) {
    kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "tracefs path too long");
    goto done;
  }
  in = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (in < 0) {
    if (errno == ENOENT) { /* an offline CPU: no data */
      rc = 0;
      goto done;
    }
    kl_err_errno(err, KL_E_IO, "writing '%s' (session %s): cannot open %s", o->path,
                 o->session ? o->session : "?", path);
    goto done;
  }
  while (total < limit) {
    ssize_t got = -1;
    if (use_splice) {
      size_t want = (size_t)((limit - total) < PIPE_BYTES ? (limit - total) : PIPE_BYTES);
      want -= want % page_size;
      if (want == 0) break;
      got = splice(in, NULL, pipefd[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && errno == EINVAL) {
        use_splice = 0; /* a tracefs without splice: fall back to read() */
        continue;
      }
      if (got > 0) {
        ssize_t left = got;
        while (left > 0) {
          ssize_t w = splice(pipefd[0], NULL, out, NULL, (size_t)left, SPLICE_F_MOVE);
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) {
            wr_fail(err, o, "write failed", w < 0 ? errno : ENOSPC);
            goto done;
          }
          left -= w;
        }
        total += (uint64_t)got;
        continue;
      }
    }
    /* No whole page left (or no splice): read() hands out the page being
     * filled. */
    got = read(in, page, page_size);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break; /* EAGAIN: the ring is empty */
    if ((size_t)got < page_size) memset(page + got, 0, page_size - (size_t)got);
    if (write_all(out, page, page_size, o, err) != 0) goto done;
    total += page_size;
  }
  *moved = total;
  rc = 0;

done:
  if (in >= 0) close(in);
  return rc;
}

static long read_long_file(const char *path) {
  char buf[64];
  ssize_t r;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  r = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (r <= 0) return -1;
  buf[r] = '\0';
  return strtol(buf, NULL, 10);
}

/* ---- carrying the previous file's pages (circular files) ---- */

typedef struct carry {
  int fd;
  int ncpus;
  uint64_t *off, *size;
} carry;

static void carry_close(carry *c) {
  if (c->fd >= 0) close(c->fd);
  free(c->off);
  free(c->size);
  c->fd = -1;
  c->off = c->size = NULL;
  c->ncpus = 0;
}

static int rd(int fd, uint64_t *pos, void *buf, size_t n) {
  ssize_t r = pread(fd, buf, n, (off_t)*pos);
  if (r != (ssize_t)n) return -1;
  *pos += n;
  return 0;
}

static int skip_sized(int fd, uint64_t *pos, int width, uint64_t end) {
  uint64_t n = 0;
  if (width == 8) {
    if (rd(fd, pos, &n, 8)) return -1;
  } else {
    uint32_t v;
    if (rd(fd, pos, &v, 4)) return -1;
    n = v;
  }
  if (n > end || *pos + n > end) return -1;
  *pos += n;
  return 0;
}

static int skip_string(int fd, uint64_t *pos, uint64_t end) {
  char ch;
  int i;
  for (i = 0; i < 4096; i++) {
    if (*pos >= end || rd(fd, pos, &ch, 1)) return -1;
    if (ch == '\0') return 0;
  }
  return -1;
}

/* Find the per-CPU data of a trace.dat v6 written by this writer (or any
 * v6 of the same layout).  Returns 0 with c filled, -1 when the file is not
 * usable (no error: nothing is carried then). */
static int carry_open(carry *c, const char *path, uint64_t expect_size, uint32_t page_size) {
  static const char magic[] = {0x17, 0x08, 0x44, 't', 'r', 'a', 'c', 'i', 'n', 'g', '6', 0};
  union { uint16_t u; uint8_t b[2]; } endian = {1};
  char head[sizeof magic + 2];
  uint64_t pos = 0, end;
  uint32_t u32, i, j, nsys, nev;
  uint16_t id;
  char label[10];
  struct stat st;

  c->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  c->off = c->size = NULL;
  c->ncpus = 0;
  if (c->fd < 0) return -1;
  if (fstat(c->fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != expect_size)
    goto bad;
  end = (uint64_t)st.st_size;
  if (rd(c->fd, &pos, head, sizeof head) || memcmp(head, magic, sizeof magic) != 0 ||
      head[sizeof magic] != (endian.b[0] == 1 ? 0 : 1) ||
      head[sizeof magic + 1] != (char)sizeof(long))
    goto bad;
  if (rd(c->fd, &pos, &u32, 4) || u32 != page_size) goto bad;
  if (skip_string(c->fd, &pos, end) || skip_sized(c->fd, &pos, 8, end)) goto bad; /* header_page */
  if (skip_string(c->fd, &pos, end) || skip_sized(c->fd, &pos, 8, end)) goto bad; /* header_event */
  if (rd(c->fd, &pos, &nev, 4)) goto bad;                                         /* ftrace */
  for (i = 0; i < nev; i++)
    if (skip_sized(c->fd, &pos, 8, end)) goto bad;
  if (rd(c->fd, &pos, &nsys, 4)) goto bad;                                        /* events */
  for (i = 0; i < nsys; i++) {
    if (skip_string(c->fd, &pos, end) || rd(c->fd, &pos, &nev, 4)) goto bad;
    for (j = 0; j < nev; j++)
      if (skip_sized(c->fd, &pos, 8, end)) goto bad;
  }
  if (skip_sized(c->fd, &pos, 4, end) || skip_sized(c->fd, &pos, 4, end) || /* kallsyms, printk */
      skip_sized(c->fd, &pos, 8, end))                                       /* cmdlines */
    goto bad;
  if (rd(c->fd, &pos, &u32, 4) || u32 == 0 || u32 > KL_MAX_CPUS) goto bad;
  c->ncpus = (int)u32;
  if (rd(c->fd, &pos, label, 10)) goto bad;
  if (memcmp(label, "options  ", 10) == 0) {
    for (;;) {
      if (rd(c->fd, &pos, &id, 2)) goto bad;
      if (id == 0) break;
      if (skip_sized(c->fd, &pos, 4, end)) goto bad;
    }
    if (rd(c->fd, &pos, label, 10)) goto bad;
  }
  if (memcmp(label, "flyrecord", 10) != 0) goto bad;
  c->off = calloc((size_t)c->ncpus, sizeof *c->off);
  c->size = calloc((size_t)c->ncpus, sizeof *c->size);
  if (c->off == NULL || c->size == NULL) goto bad;
  for (i = 0; i < (uint32_t)c->ncpus; i++) {
    if (rd(c->fd, &pos, &c->off[i], 8) || rd(c->fd, &pos, &c->size[i], 8)) goto bad;
    if (c->size[i] % page_size != 0 || c->off[i] > end || c->size[i] > end - c->off[i]) goto bad;
  }
  return 0;

bad:
  carry_close(c);
  return -1;
}

/* Append len bytes of `in` at `from` to out (at its file position):
 * copy_file_range keeps the data in the kernel (a reflink on XFS/Btrfs);
 * across file systems it says EXDEV, and then the data goes through one
 * page-sized buffer. */
static int copy_range(int in, uint64_t from, uint64_t len, int out, char *page,
                      size_t page_size, const kl_dump_opts *o, kl_err *err) {
  while (len) {
    loff_t in_off = (loff_t)from;
    ssize_t n = copy_file_range(in, &in_off, out, NULL, (size_t)(len > (1u << 30) ? (1u << 30) : len), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP))
      break; /* not on this file system: copy by hand below */
    if (n < 0) return wr_fail(err, o, "copying capture data failed", errno);
    if (n == 0) return wr_fail(err, o, "copying capture data failed", EIO);
    from += (uint64_t)n;
    len -= (uint64_t)n;
  }
  while (len) {
    size_t k = len < page_size ? (size_t)len : page_size;
    ssize_t r = pread(in, page, k, (off_t)from);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return wr_fail(err, o, "reading capture data failed", r < 0 ? errno : EIO);
    if (write_all(out, page, (size_t)r, o, err) != 0) return -1;
    from += (uint64_t)r;
    len -= (uint64_t)r;
  }
  return 0;
}

/* The "bytes:" line of a per_cpu stats file (unread bytes in the ring),
 * or UINT64_MAX when unknown. */
static uint64_t stat_bytes(const char *path) {
  char buf[1024], *p;
  ssize_t r;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return UINT64_MAX;
  r = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (r <= 0) return UINT64_MAX;
  buf[r] = '\0';
  p = strstr(buf, "\nbytes:");
  if (p == NULL) return UINT64_MAX;
  return strtoull(p + 8, NULL, 10);
}

/* The end of the header: options (one CPUSTAT per CPU with its stats as
 * they read now, TRACECLOCK), "flyrecord", the per-CPU offset/size table
 * and the clock text (NUL-terminated: readers print it as a C string). */
static int put_tail(hbuf *t, const char *dir, int ncpus, const uint64_t *cpu_off,
                    const uint64_t *cpu_size, const char *clock_path, const kl_dump_opts *o,
                    kl_err *err) {
  char path[KL_PATH_MAX];
  size_t size_at, start;
  uint32_t sz;
  uint64_t sz8;
  int cpu;

  if (hb_put(t, "options  ", 10)) return oom(err, o);
  for (cpu = 0; cpu < ncpus; cpu++) {
    char label[32];
    int n = snprintf(label, sizeof label, "CPU: %d\n", cpu);
    if (hb_u16(t, OPT_CPUSTAT) || hb_u32(t, 0)) return oom(err, o);
    size_at = t->len - 4;
    start = t->len;
    if (hb_put(t, label, (size_t)n)) return oom(err, o);
    if (snprintf(path, sizeof path, "%s/per_cpu/cpu%d/stats", dir, cpu) < (int)sizeof path)
      (void)hb_file(t, path, 0, o, err); /* an offline CPU has no stats: keep the label */
    if (hb_put(t, "", 1)) return oom(err, o);
    sz = (uint32_t)(t->len - start);
    memcpy(t->p + size_at, &sz, 4);
  }
  if (hb_u16(t, OPT_TRACECLOCK) || hb_u32(t, 0)) return oom(err, o);
  size_at = t->len - 4;
  start = t->len;
  if (hb_file(t, clock_path, 0, o, err) != 0) return -1;
  if (hb_put(t, "", 1)) return oom(err, o);
  sz = (uint32_t)(t->len - start);
  memcpy(t->p + size_at, &sz, 4);
  if (hb_u16(t, OPT_DONE)) return oom(err, o);

  if (hb_put(t, "flyrecord", 10)) return oom(err, o);
  for (cpu = 0; cpu < ncpus; cpu++)
    if (hb_u64(t, cpu_off[cpu]) || hb_u64(t, cpu_size[cpu])) return oom(err, o);
  /* with a TRACECLOCK option, the clock text follows the table */
  size_at = t->len;
  if (hb_file(t, clock_path, 8, o, err) != 0) return -1;
  if (hb_put(t, "", 1)) return oom(err, o);
  sz8 = (uint64_t)(t->len - size_at - 8);
  memcpy(t->p + size_at, &sz8, 8);
  return 0;
}

/* ---- one file being written, in phases ---- */

typedef struct tdw {
  const kl_dump_opts *o;
  char *dir;                       /* the instance's tracefs folder */
  const char *top;                 /* the tracefs root */
  char events_dir[KL_PATH_MAX], clock_path[KL_PATH_MAX];
  size_t page_size;                /* the sub-buffer size */
  int ncpus;
  uint64_t *cpu_off, *cpu_size;
  hbuf h, t;                       /* header up to the CPU count; its tail */
  uint64_t data_start, off;        /* first data byte; current end */
  kl_atomic_file af;
  char *page;
} tdw;

static void tdw_free(tdw *w) {
  kl_atomic_abort(&w->af);
  free(w->page);
  free(w->cpu_off);
  free(w->cpu_size);
  free(w->h.p);
  free(w->t.p);
  if (w->dir) tracefs_put_tracing_file(w->dir);
}

/* Folders, the page size (the sub-buffer's) and the CPU count. */
static int tdw_init(tdw *w, struct tracefs_instance *inst, const kl_dump_opts *o, kl_err *err) {
  char path[KL_PATH_MAX];
  long kb;
  memset(w, 0, sizeof *w);
  w->o = o;
  w->af.fd = -1;
  w->top = tracefs_tracing_dir();
  if (w->top == NULL)
    return kl_err_set(err, KL_E_UNAVAILABLE, errno,
                      "writing '%s' (session %s): tracefs is not mounted", o->path,
                      o->session ? o->session : "?");
  w->dir = inst ? tracefs_instance_get_dir(inst) : strdup(w->top);
  if (w->dir == NULL) return oom(err, o);
  if (jpath(w->events_dir, sizeof w->events_dir, w->dir, "events", err) != 0 ||
      jpath(w->clock_path, sizeof w->clock_path, w->dir, "trace_clock", err) != 0)
    return -1;
  w->page_size = (size_t)sysconf(_SC_PAGESIZE);
  if (path_join(path, sizeof path, w->dir, "buffer_subbuf_size_kb") == 0) {
    kb = read_long_file(path);
    if (kb > 0) w->page_size = (size_t)kb * 1024;
  }
  w->ncpus = count_cpus(w->dir);
  if (w->ncpus <= 0)
    return kl_err_set(err, KL_E_UNAVAILABLE, 0, "writing '%s' (session %s): no per_cpu folders in %s",
                      o->path, o->session ? o->session : "?", w->dir);
  w->cpu_off = calloc((size_t)w->ncpus, sizeof *w->cpu_off);
  w->cpu_size = calloc((size_t)w->ncpus, sizeof *w->cpu_size);
  w->page = malloc(w->page_size);
  if (w->cpu_off == NULL || w->cpu_size == NULL || w->page == NULL) return oom(err, o);
  return 0;
}

/* A header file of the instance, with its label and 8-byte size. */
static int put_labeled(tdw *w, const char *label, kl_err *err) {
  char path[KL_PATH_MAX];
  if (hb_str(&w->h, label)) return oom(err, w->o);
  if (jpath(path, sizeof path, w->events_dir, label, err) != 0) return -1;
  return hb_file(&w->h, path, 8, w->o, err);
}

/* Everything before the data, in memory: initial format, header pages,
 * formats, kallsyms, printk formats, task names, CPU count; then a first
 * tail (options, flyrecord table) to know how much room it needs. */
static int tdw_header(tdw *w, kl_err *err) {
  static const char magic[] = {0x17, 0x08, 0x44, 't', 'r', 'a', 'c', 'i', 'n', 'g'};
  union { uint16_t u; uint8_t b[2]; } endian = {1};
  uint8_t e = endian.b[0] == 1 ? 0 : 1, ls = (uint8_t)sizeof(long);
  const kl_dump_opts *o = w->o;
  char path[KL_PATH_MAX];
  hbuf *h = &w->h;
  if (hb_put(h, magic, sizeof magic) || hb_str(h, "6") || hb_put(h, &e, 1) ||
      hb_put(h, &ls, 1) || hb_u32(h, (uint32_t)w->page_size))
    return oom(err, o);
  if (put_labeled(w, "header_page", err) != 0 || put_labeled(w, "header_event", err) != 0)
    return -1;
  if (put_ftrace_formats(h, w->events_dir, o, err) != 0 ||
      put_event_formats(h, w->events_dir, o, err) != 0)
    return -1;
  /* kallsyms as /proc/kallsyms shows it to us; never touch kptr_restrict */
  if (o->kallsyms ? hb_file(h, "/proc/kallsyms", 4, o, err) != 0 : hb_u32(h, 0) != 0)
    return o->kallsyms ? -1 : oom(err, o);
  if (jpath(path, sizeof path, w->top, "printk_formats", err) != 0 ||
      hb_file(h, path, 4, o, err) != 0)
    return -1;
  if (jpath(path, sizeof path, w->top, "saved_cmdlines", err) != 0 ||
      hb_file(h, path, 8, o, err) != 0)
    return -1;
  if (hb_u32(h, (uint32_t)w->ncpus)) return oom(err, o);
  /* The tail is built once now to know its size and again after the data,
   * so that the stats say what trace-cmd's do ("read events" taken). */
  if (put_tail(&w->t, w->dir, w->ncpus, w->cpu_off, w->cpu_size, w->clock_path, o, err) != 0)
    return -1;
  w->data_start = h->len + w->t.len + (uint64_t)w->ncpus * 256; /* room for the stats to grow */
  w->data_start = (w->data_start + w->page_size - 1) / w->page_size * w->page_size;
  return 0;
}

/* Open the temporary file and write the header, zeros up to the data. */
static int tdw_reserve(tdw *w, kl_err *err) {
  const kl_dump_opts *o = w->o;
  if (kl_atomic_open(&w->af, o->path, o->overwrite, o->file_mode ? o->file_mode : 0600, err) != 0)
    return -1;
  if (write_all(w->af.fd, w->h.p, w->h.len, o, err) != 0 ||
      write_all(w->af.fd, w->t.p, w->t.len, o, err) != 0)
    return -1;
  w->off = w->h.len + w->t.len;
  return pad_to(w->af.fd, &w->off, w->data_start, o, err);
}

/* The final tail (stats as they read now, the real offsets) over the
 * first one, then fsync + rename. */
static int tdw_finish(tdw *w, uint64_t *bytes_written, kl_err *err) {
  const kl_dump_opts *o = w->o;
  size_t len = (size_t)(w->data_start - w->h.len);
  off_t at = (off_t)w->h.len;
  const char *p;
  w->t.len = 0;
  if (put_tail(&w->t, w->dir, w->ncpus, w->cpu_off, w->cpu_size, w->clock_path, o, err) != 0)
    return -1;
  if (w->h.len + w->t.len > w->data_start)
    return kl_err_set(err, KL_E_IO, 0, "writing '%s' (session %s): the header outgrew its room",
                      o->path, o->session ? o->session : "?");
  if (hb_reserve(&w->t, len - w->t.len) != 0) return oom(err, o);
  memset(w->t.p + w->t.len, 0, len - w->t.len);
  for (p = w->t.p; len;) {
    ssize_t n = pwrite(w->af.fd, p, len, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return wr_fail(err, o, "write failed", n < 0 ? errno : ENOSPC);
    p += n;
    at += n;
    len -= (size_t)n;
  }
  if (kl_atomic_commit(&w->af, err) != 0) return -1;
  if (bytes_written) *bytes_written = w->off;
  return 0;
}

/* ---- from the ring (buffering sessions) ---- */

/* Reading the ring consumes it: make sure the data fits on the disk
 * before taking any, so that a full disk costs no events.  Fills the
 * per-CPU limits (in cpu_size) and the previous file's pages to keep. */
static int ring_plan(tdw *w, carry *prev, uint64_t *keep, kl_err *err) {
  const kl_dump_opts *o = w->o;
  uint64_t need = w->off, ps = w->page_size;
  struct statvfs vfs;
  int cpu;
  for (cpu = 0; cpu < w->ncpus; cpu++) {
    char path[KL_PATH_MAX];
    uint64_t est;
    long kb;
    snprintf(path, sizeof path, "%s/per_cpu/cpu%d/buffer_size_kb", w->dir, cpu);
    kb = read_long_file(path);
    /* The ring's pages (each holds page_size less its header of data,
     * and the kernel rounds up), the reader page and one being filled. */
    w->cpu_size[cpu] = kb > 0 ? ((uint64_t)kb * 1024 / (ps - 64) + 4) * ps : (uint64_t)1 << 40;
    snprintf(path, sizeof path, "%s/per_cpu/cpu%d/stats", w->dir, cpu);
    est = stat_bytes(path);
    est = est == UINT64_MAX ? w->cpu_size[cpu] : (est / (ps - 64) + 3) * ps;
    if (est > w->cpu_size[cpu]) est = w->cpu_size[cpu];
    /* the newest pages of the previous file that still fit in the ring */
    if (prev->fd >= 0 && cpu < prev->ncpus && prev->size[cpu] > 0 && est < w->cpu_size[cpu]) {
      keep[cpu] = (w->cpu_size[cpu] - est) / ps * ps;
      if (keep[cpu] > prev->size[cpu]) keep[cpu] = prev->size[cpu];
    }
    need += est + keep[cpu];
  }
  if (fstatvfs(w->af.fd, &vfs) == 0 && (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize < need - w->off) {
    errno = ENOSPC;
    return kl_err_errno(err, KL_E_DISK_FULL,
                        "writing '%s' (session %s): not enough space: %llu bytes free, about "
                        "%llu needed",
                        o->path, o->session ? o->session : "?",
                        (unsigned long long)vfs.f_bavail * (unsigned long long)vfs.f_frsize,
                        (unsigned long long)need);
  }
  return 0;
}

/* Each CPU: the carried pages, then the ring's. */
static int ring_data(tdw *w, carry *prev, const uint64_t *keep, kl_err *err) {
  int pipefd[2] = {-1, -1}, cpu, rc = 0;
  if (pipe2(pipefd, O_CLOEXEC) == 0)
    (void)fcntl(pipefd[1], F_SETPIPE_SZ, PIPE_BYTES);
  else
    pipefd[0] = pipefd[1] = -1;
  for (cpu = 0; cpu < w->ncpus && rc == 0; cpu++) {
    uint64_t limit = w->cpu_size[cpu], moved = 0;
    w->cpu_off[cpu] = w->off;
    if (keep[cpu]) {
      rc = copy_range(prev->fd, prev->off[cpu] + prev->size[cpu] - keep[cpu], keep[cpu],
                      w->af.fd, w->page, w->page_size, w->o, err);
      w->off += keep[cpu];
      limit = limit > keep[cpu] ? limit - keep[cpu] : w->page_size;
    }
    if (rc == 0)
      rc = dump_cpu(w->dir, cpu, w->af.fd, pipefd, w->page, w->page_size, limit, &moved, w->o, err);
    w->cpu_size[cpu] = keep[cpu] + moved;
    w->off += moved;
  }
  if (pipefd[0] >= 0) close(pipefd[0]);
  if (pipefd[1] >= 0) close(pipefd[1]);
  return rc;
}

int kl_tracedat_write(struct tracefs_instance *inst, const kl_dump_opts *o,
                      uint64_t *bytes_written, kl_err *err) {
  tdw w;
  carry prev = {-1, 0, NULL, NULL};
  uint64_t *keep = NULL;
  int rc = -1;
  if (bytes_written) *bytes_written = 0;
  if (tdw_init(&w, inst, o, err) != 0 || tdw_header(&w, err) != 0) goto done;
  keep = calloc((size_t)w.ncpus, sizeof *keep);
  if (keep == NULL) {
    oom(err, o);
    goto done;
  }
  if (o->carry != NULL && carry_open(&prev, o->carry, o->carry_size, (uint32_t)w.page_size) != 0)
    prev.fd = -1; /* not ours any more, or not readable: start afresh */
  if (tdw_reserve(&w, err) == 0 && ring_plan(&w, &prev, keep, err) == 0 &&
      ring_data(&w, &prev, keep, err) == 0 && tdw_finish(&w, bytes_written, err) == 0)
    rc = 0;
done:
  carry_close(&prev);
  free(keep);
  tdw_free(&w);
  return rc;
}

/* ---- from chunk files (streaming sessions) ---- */

/* CPU cpu's chunks, oldest first, at most budget bytes of the newest
 * (whole pages dropped from the front), appended to the file. */
static int chunk_data(tdw *w, int cpu, const char *data_dir, const kl_chunks *ch,
                      uint64_t budget, int consume, kl_err *err) {
  unsigned seq, n = ch->cpu[cpu].next_seq - ch->cpu[cpu].first_seq, k = 0;
  int *fds = n ? calloc(n, sizeof *fds) : NULL, rc = 0;
  uint64_t *len = n ? calloc(n, sizeof *len) : NULL, total = 0, skip;
  char path[KL_PATH_MAX];
  w->cpu_off[cpu] = w->off;
  if (n && (fds == NULL || len == NULL)) rc = oom(err, w->o);
  /* open them all first: a rotation meanwhile unlinks, never truncates */
  for (seq = ch->cpu[cpu].first_seq; rc == 0 && seq < ch->cpu[cpu].next_seq; seq++, k++) {
    struct stat sb;
    snprintf(path, sizeof path, "%s/cpu%d.%u", data_dir, cpu, seq);
    fds[k] = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    len[k] = fds[k] >= 0 && fstat(fds[k], &sb) == 0 ? (uint64_t)sb.st_size : 0;
    len[k] -= len[k] % w->page_size; /* a page being written is not taken */
    total += len[k];
    if (consume && fds[k] >= 0) unlink(path);
  }
  skip = budget && total > budget ? (total - budget + w->page_size - 1) / w->page_size * w->page_size : 0;
  for (k = 0; rc == 0 && k < n; k++) {
    uint64_t s = skip < len[k] ? skip : len[k];
    skip -= s;
    if (fds[k] >= 0 && len[k] > s)
      rc = copy_range(fds[k], s, len[k] - s, w->af.fd, w->page, w->page_size, w->o, err);
    if (rc == 0) w->off += len[k] - s;
    if (fds[k] >= 0) close(fds[k]);
    fds[k] = -1; /* consumed chunks free their room here */
  }
  for (; k < n && fds; k++)
    if (fds[k] >= 0) close(fds[k]);
  w->cpu_size[cpu] = w->off - w->cpu_off[cpu];
  free(fds);
  free(len);
  return rc;
}

int kl_tracedat_assemble(struct tracefs_instance *inst, const kl_dump_opts *o,
                         const char *data_dir, uint64_t cpu_budget, int consume,
                         uint64_t *bytes_written, kl_err *err) {
  tdw w;
  kl_chunks *ch = malloc(sizeof *ch);
  int cpu, rc = -1;
  if (bytes_written) *bytes_written = 0;
  if (ch == NULL) return oom(err, o);
  if (tdw_init(&w, inst, o, err) != 0 || tdw_header(&w, err) != 0) goto done;
  if (kl_chunks_list(data_dir, w.ncpus, ch) != 0) {
    kl_err_errno(err, KL_E_IO, "writing '%s' (session %s): data folder %s", o->path,
                 o->session ? o->session : "?", data_dir);
    goto done;
  }
  if (tdw_reserve(&w, err) != 0) goto done;
  for (cpu = 0; cpu < w.ncpus; cpu++)
    if (chunk_data(&w, cpu, data_dir, ch, cpu_budget, consume, err) != 0) goto done;
  rc = tdw_finish(&w, bytes_written, err);
done:
  free(ch);
  tdw_free(&w);
  return rc;
}
