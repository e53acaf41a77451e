/*
 * session.c - the Linux backend's control plane: one ftrace instance per
 * session, driven with libtracefs, plus a root-only state file per session
 * so that any process can query, update, flush or stop it by name.
 *
 * Global tracing state (ftrace_enabled, kptr_restrict, the top-level
 * buffer, top-level events) is never touched: everything happens inside
 * instances/NAME.
 */
#define _GNU_SOURCE
#include "ftrace.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <tracefs.h>

#ifndef KL_STATE_DIR
#define KL_STATE_DIR "/run/kernellogger"
#endif

#define DEFAULT_RING_KB (8u * 1024u) /* total over all CPUs, when nothing says */
#define STREAM_CPU_KB 4096u          /* streaming: ring per CPU by default */
#define STREAM_MAX_KB (64u * 1024u)  /* ... and at most this in all */
#define STREAM_PERCENT "25"          /* buffer_percent of streaming sessions */

/* What the state file records; it is the session's memory across processes. */
typedef struct kl_state {
  int present;                       /* 0: a foreign instance */
  char file[KL_PATH_MAX];
  kl_mode mode;
  char flags[2048];
  char tracepoints[8192];
  char clock[32];
  unsigned circular_mb, max_mb, file_mode;
  int overwrite, kallsyms, stacks;
  long owner_pid;
  unsigned long long owner_start;    /* /proc/PID/stat starttime, clock ticks */
  double start_time, last_flush;
  unsigned long long bytes_written;
  char data_dir[KL_PATH_MAX];        /* streaming sessions: the recorder's folder */
  unsigned flush_timer;              /* seconds (streaming) */
  long rec_pid;                      /* streaming: the recorder, found without its folder */
  unsigned long long rec_start;      /* its /proc starttime */
  int starting;                      /* written before the start completed */
} kl_state;

struct kl_session {
  struct tracefs_instance *inst;
  char name[KL_NAME_MAX + 1];
  kl_live *live;                     /* events() readers, NULL until the first */
  int live_ended;                    /* the session stopped under its readers */
  kl_session *next_live;             /* this process's handles with readers */
};

/* The handles of this process that hold trace_pipe_raw readers: a stop
 * closes those of its session, whichever handle they belong to, before
 * it removes the instance (rmdir fails with EBUSY while one is open). */
static kl_session *live_handles;

static void live_forget(kl_session *s) {
  kl_session **p;
  for (p = &live_handles; *p; p = &(*p)->next_live) {
    if (*p == s) {
      *p = s->next_live;
      break;
    }
  }
  s->next_live = NULL;
  kl_live_close(s->live);
  s->live = NULL;
}

static void live_close_all(const char *name) {
  kl_session *h = live_handles, *next;
  for (; h; h = next) {
    next = h->next_live;
    if (strcmp(h->name, name) == 0) {
      live_forget(h);
      h->live_ended = 1;
    }
  }
}

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

static const char *tracing_dir(kl_err *err, const char *op, const char *name) {
  const char *dir;
  if (geteuid() != 0)
    return kl_err_set(err, KL_E_ACCESS_DENIED, EACCES,
                      "%s %s: kernel tracing needs root; run as root (sudo)", op, name),
           NULL;
  errno = 0;
  dir = tracefs_tracing_dir();
  if (dir == NULL) {
    if (errno == 0) errno = ENODEV;
    kl_err_errno(err, KL_E_UNAVAILABLE,
                 "%s %s: tracefs is not available (mount it with 'mount -t tracefs nodev "
                 "/sys/kernel/tracing' or use a kernel with ftrace)",
                 op, name);
    err->code = KL_E_UNAVAILABLE;
    return NULL;
  }
  if (access(dir, W_OK) != 0) {
    kl_err_errno(err, KL_E_ACCESS_DENIED,
                 "%s %s: %s is not writable (run as root, outside a locked-down container)",
                 op, name, dir);
    err->code = KL_E_ACCESS_DENIED;
    return NULL;
  }
  return dir;
}

static int inst_path(char *out, size_t n, const char *dir, const char *name) {
  return snprintf(out, n, "%s/instances/%s", dir, name) >= (int)n ? -1 : 0;
}

static int state_path(char *out, size_t n, const char *name) {
  return snprintf(out, n, "%s/%s.state", KL_STATE_DIR, name) >= (int)n ? -1 : 0;
}

/* Process start time in clock ticks since boot, 0 if the process is gone. */
static unsigned long long proc_start(long pid) {
  char path[64], buf[1024], *p;
  unsigned long long v = 0;
  int i, fd;
  ssize_t n;
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
  if (p == NULL) return 0;
  p++;
  while (*p == ' ') p++;
  if (*p == 'Z' || *p == 'X') return 0; /* a zombie is dead, reaped or not */
  /* after ')' come fields 3..; starttime is field 22 */
  for (i = 3; i <= 22 && p; i++) {
    while (*p == ' ') p++;
    if (i == 22) {
      v = strtoull(p, NULL, 10);
      break;
    }
    p = strchr(p, ' ');
  }
  return v;
}

/* One "key=value" line of a state file into s; unknown keys are ignored. */
static void state_line(char *line, kl_state *s) {
  char *eq = strchr(line, '='), *v;
  if (eq == NULL) return;
  *eq = '\0';
  v = eq + 1;
  if (!strcmp(line, "file")) snprintf(s->file, sizeof s->file, "%s", v);
  else if (!strcmp(line, "mode")) {
    int m;
    for (m = 0; kl_mode_names[m]; m++)
      if (!strcmp(kl_mode_names[m], v)) s->mode = (kl_mode)m;
  } else if (!strcmp(line, "flags")) snprintf(s->flags, sizeof s->flags, "%s", v);
  else if (!strcmp(line, "tracepoints"))
    snprintf(s->tracepoints, sizeof s->tracepoints, "%s", v);
  else if (!strcmp(line, "clock")) snprintf(s->clock, sizeof s->clock, "%s", v);
  else if (!strcmp(line, "circular_mb")) s->circular_mb = (unsigned)strtoul(v, NULL, 10);
  else if (!strcmp(line, "max_mb")) s->max_mb = (unsigned)strtoul(v, NULL, 10);
  else if (!strcmp(line, "file_mode")) s->file_mode = (unsigned)strtoul(v, NULL, 8);
  else if (!strcmp(line, "overwrite")) s->overwrite = (int)strtol(v, NULL, 10);
  else if (!strcmp(line, "kallsyms")) s->kallsyms = (int)strtol(v, NULL, 10);
  else if (!strcmp(line, "stacks")) s->stacks = (int)strtol(v, NULL, 10);
  else if (!strcmp(line, "owner_pid")) s->owner_pid = strtol(v, NULL, 10);
  else if (!strcmp(line, "owner_start")) s->owner_start = strtoull(v, NULL, 10);
  else if (!strcmp(line, "start_time")) s->start_time = strtod(v, NULL);
  else if (!strcmp(line, "last_flush")) s->last_flush = strtod(v, NULL);
  else if (!strcmp(line, "bytes_written")) s->bytes_written = strtoull(v, NULL, 10);
  else if (!strcmp(line, "data_dir")) snprintf(s->data_dir, sizeof s->data_dir, "%s", v);
  else if (!strcmp(line, "flush_timer")) s->flush_timer = (unsigned)strtoul(v, NULL, 10);
  else if (!strcmp(line, "rec_pid")) s->rec_pid = strtol(v, NULL, 10);
  else if (!strcmp(line, "rec_start")) s->rec_start = strtoull(v, NULL, 10);
  else if (!strcmp(line, "starting")) s->starting = (int)strtol(v, NULL, 10);
}

/* Parse the n bytes of a state file's contents (no NUL needed) into s.
 * Lines end at '\n'; a line is read up to its first NUL byte and its first
 * STATE_LINE_MAX bytes (no value we write is longer), the rest is ignored. */
#define STATE_LINE_MAX 8999
static void parse_state(const char *buf, size_t n, kl_state *s) {
  char line[STATE_LINE_MAX + 1];
  size_t i = 0;
  memset(s, 0, sizeof *s);
  s->start_time = s->last_flush = -1;
  while (i < n) {
    const char *nl = memchr(buf + i, '\n', n - i);
    size_t end = nl ? (size_t)(nl - buf) : n, len = end - i;
    if (len > STATE_LINE_MAX) len = STATE_LINE_MAX;
    memcpy(line, buf + i, len);
    line[len] = '\0';
    state_line(line, s);
    i = end + 1;
  }
  s->present = 1;
}

/* The largest state file read: twice what format_state can write. */
#define STATE_FILE_MAX 49152

static int read_state(const char *name, kl_state *s) {
  char path[KL_PATH_MAX], buf[STATE_FILE_MAX];
  size_t n = 0;
  ssize_t r;
  int fd;
  memset(s, 0, sizeof *s);
  if (state_path(path, sizeof path, name) != 0) return -1;
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  while (n < sizeof buf) { /* a longer file is read up to here */
    r = read(fd, buf + n, sizeof buf - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  parse_state(buf, n, s);
  return 0;
}

/* The state s as the text of a state file into buf (n bytes); its length,
 * or -1 if it does not fit. */
static int format_state(const kl_state *s, char *buf, size_t n) {
  int len = snprintf(buf, n,
               "file=%s\nmode=%s\nflags=%s\ntracepoints=%s\nclock=%s\ncircular_mb=%u\n"
               "max_mb=%u\nfile_mode=%o\noverwrite=%d\nkallsyms=%d\nstacks=%d\nowner_pid=%ld\n"
               "owner_start=%llu\nstart_time=%.6f\nlast_flush=%.6f\nbytes_written=%llu\n"
               "data_dir=%s\nflush_timer=%u\nrec_pid=%ld\nrec_start=%llu\nstarting=%d\n",
               s->file, kl_mode_names[s->mode], s->flags, s->tracepoints, s->clock,
               s->circular_mb, s->max_mb, s->file_mode, s->overwrite, s->kallsyms, s->stacks,
               s->owner_pid, s->owner_start, s->start_time, s->last_flush,
               s->bytes_written, s->data_dir, s->flush_timer, s->rec_pid, s->rec_start,
               s->starting);
  return len < 0 || (size_t)len >= n ? -1 : len;
}

static int write_state(const char *name, const kl_state *s, kl_err *err) {
  char path[KL_PATH_MAX], buf[24576];
  kl_atomic_file af;
  int n;
  if (mkdir(KL_STATE_DIR, 0700) != 0 && errno != EEXIST)
    return kl_err_errno(err, KL_E_IO, "state folder %s", KL_STATE_DIR);
  if (state_path(path, sizeof path, name) != 0)
    return kl_err_set(err, KL_E_INVALID, ENAMETOOLONG, "state path too long");
  n = format_state(s, buf, sizeof buf);
  if (n < 0) return kl_err_set(err, KL_E_INVALID, 0, "session %s: state too large", name);
  if (kl_atomic_open(&af, path, 1, 0600, err) != 0) return -1;
  /* The state describes a kernel instance, which a reboot removes: it need
   * not outlive a power cut, only a crash of any process, which the rename
   * alone gives.  Skipping the two fsyncs saves about 1 ms a start. */
  af.durable = 0;
  if (write(af.fd, buf, (size_t)n) != n) {
    int e = errno ? errno : ENOSPC;
    kl_atomic_abort(&af);
    errno = e;
    return kl_err_errno(err, KL_E_IO, "state file %s", path);
  }
  return kl_atomic_commit(&af, err);
}

static void remove_state(const char *name) {
  char path[KL_PATH_MAX];
  if (state_path(path, sizeof path, name) != 0) return;
  unlink(path);
  kl_remove_stale_tmps(path); /* of writers killed before their rename */
}

/* Serialise the operations of all processes on sessions: an flock on the
 * state folder itself, so no lock file is ever left behind.  Changes
 * (start, update, flush, stop) take it exclusive; readers (query, list)
 * shared, so that a query never holds a stats file open while a stop
 * removes the instance (rmdir would fail with EBUSY).  One lock for all
 * sessions keeps it simple; every holder is brief (a file write at most). */
static int lock_sessions(int how) {
  int fd;
  if (mkdir(KL_STATE_DIR, 0700) != 0 && errno != EEXIST) return -1;
  fd = open(KL_STATE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  while (flock(fd, how) != 0 && errno == EINTR) {}
  return fd;
}
#define lock_session(name) lock_sessions(LOCK_EX)

static void unlock_session(int fd) {
  if (fd >= 0) close(fd);
}

static int valid_tracepoint(const char *tp, char *sys, size_t ns, char *ev, size_t ne) {
  const char *colon = strchr(tp, ':'), *p;
  size_t a, b;
  if (colon == NULL || strchr(colon + 1, ':')) return 0;
  a = (size_t)(colon - tp);
  b = strlen(colon + 1);
  if (a == 0 || b == 0 || a >= ns || b >= ne) return 0;
  for (p = tp; *p; p++)
    if (p != colon && !(isalnum((unsigned char)*p) || *p == '_' || *p == '-')) return 0;
  memcpy(sys, tp, a);
  sys[a] = '\0';
  memcpy(ev, colon + 1, b + 1);
  return 1;
}

static int ftrace_tracepoint_exists(const char *tp) {
  char sys[128], ev[128], path[KL_PATH_MAX];
  const char *dir;
  if (!valid_tracepoint(tp, sys, sizeof sys, ev, sizeof ev)) return 0;
  dir = geteuid() == 0 ? tracefs_tracing_dir() : NULL;
  if (dir == NULL || access(dir, X_OK) != 0) return -1; /* start will say why */
  snprintf(path, sizeof path, "%s/events/%s/%s/enable", dir, sys, ev);
  return access(path, F_OK) == 0;
}

static int ftrace_flag_supported(const kl_flag *f) {
  const char *const *tp;
  int r;
  if (f->tracepoints == NULL) return 0;
  for (tp = f->tracepoints; *tp; tp++)
    if ((r = ftrace_tracepoint_exists(*tp)) != 1) return r;
  return 1;
}

/* Append item to a comma list unless present. */
static int list_add(char *list, size_t n, const char *item) {
  size_t len = strlen(list), il = strlen(item);
  const char *p = list;
  while ((p = strstr(p, item)) != NULL) {
    if ((p == list || p[-1] == ',') && (p[il] == ',' || p[il] == '\0')) return 0;
    p += il;
  }
  if (len + il + 2 > n) return -1;
  if (len) list[len++] = ',';
  memcpy(list + len, item, il + 1);
  return 0;
}

static int list_has(const char *list, const char *item) {
  size_t il = strlen(item);
  const char *p = list;
  while ((p = strstr(p, item)) != NULL) {
    if ((p == list || p[-1] == ',') && (p[il] == ',' || p[il] == '\0')) return 1;
    p += il;
  }
  return 0;
}

/* The flag names and the full tracepoint list a config asks for. */
static int resolve(const kl_config *cfg, char *flags, size_t nf, char *tps, size_t nt,
                   kl_err *err) {
  size_t i;
  const char *const *tp;
  flags[0] = tps[0] = '\0';
  for (i = 0; i < cfg->nflags; i++) {
    if (list_add(flags, nf, cfg->flags[i]->name) != 0) goto toolong;
    for (tp = cfg->flags[i]->tracepoints; tp && *tp; tp++)
      if (list_add(tps, nt, *tp) != 0) goto toolong;
  }
  for (i = 0; i < cfg->ntracepoints; i++) {
    if (list_add(flags, nf, cfg->tracepoints[i]) != 0) goto toolong;
    if (list_add(tps, nt, cfg->tracepoints[i]) != 0) goto toolong;
  }
  return 0;
toolong:
  return kl_err_set(err, KL_E_INVALID, 0, "session %s: too many flags or tracepoints",
                    cfg->name);
}

static int set_event(struct tracefs_instance *inst, const char *tp, int on, kl_err *err,
                     const char *name) {
  char sys[128], ev[128], file[400];
  if (!valid_tracepoint(tp, sys, sizeof sys, ev, sizeof ev))
    return kl_err_set(err, KL_E_INVALID, 0, "session %s: bad tracepoint '%s'", name, tp);
  snprintf(file, sizeof file, "events/%s/%s/enable", sys, ev);
  errno = 0;
  if (tracefs_instance_file_write(inst, file, on ? "1" : "0") < 0) {
    kl_err_errno(err, KL_E_IO, "session %s: cannot %s tracepoint %s", name,
                 on ? "enable" : "disable", tp);
    if (err->sys == ENOENT) err->code = KL_E_NOT_SUPPORTED;
    return -1;
  }
  return 0;
}

/* Enable every tracepoint in the comma list `want`, disable those of `have`
 * that are not wanted. */
static int apply_events(struct tracefs_instance *inst, const char *have, const char *want,
                        kl_err *err, const char *name) {
  char buf[8192], *tok, *save = NULL;
  snprintf(buf, sizeof buf, "%s", want);
  for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    if (!list_has(have, tok) && set_event(inst, tok, 1, err, name) != 0) return -1;
  snprintf(buf, sizeof buf, "%s", have);
  for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    if (!list_has(want, tok) && set_event(inst, tok, 0, err, name) != 0) return -1;
  return 0;
}

static int ncpus_of(struct tracefs_instance *inst) {
  char *dir = tracefs_instance_get_file(inst, "per_cpu");
  DIR *d;
  struct dirent *de;
  int n = 0;
  if (dir == NULL) return 0;
  d = opendir(dir);
  tracefs_put_tracing_file(dir);
  if (d == NULL) return 0;
  while ((de = readdir(d)) != NULL)
    if (!strncmp(de->d_name, "cpu", 3) && isdigit((unsigned char)de->d_name[3])) n++;
  closedir(d);
  return n;
}

/* Total ring size in KB for a config. */
static unsigned ring_kb(const kl_config *cfg) {
  if (cfg->circular_mb) return cfg->circular_mb * 1024u;
  if (cfg->mode == KL_MODE_SEQUENTIAL) return cfg->max_mb * 1024u;
  if (cfg->buffer_kb && cfg->max_buffers) return cfg->buffer_kb * cfg->max_buffers;
  if (cfg->buffer_kb) /* per CPU */
    return cfg->buffer_kb * (unsigned)sysconf(_SC_NPROCESSORS_CONF);
  return DEFAULT_RING_KB;
}

static int resize(struct tracefs_instance *inst, unsigned total_kb, kl_err *err,
                  const char *name) {
  int n = ncpus_of(inst);
  size_t per;
  if (n <= 0) n = 1;
  per = total_kb / (unsigned)n;
  if (per < 4) per = 4;
  errno = 0;
  if (tracefs_instance_set_buffer_size(inst, per, -1) < 0) {
    if (errno == 0) errno = ENOMEM;
    return kl_err_errno(err, KL_E_NO_RESOURCES,
                        "session %s: cannot size the ring to %u KB (%zu KB per CPU)", name,
                        total_kb, per);
  }
  return 0;
}

static const char *ftrace_clock(kl_clock c) {
  switch (c) {
    case KL_CLOCK_DEFAULT: return "local";
    case KL_CLOCK_LOCAL: return "local";
    case KL_CLOCK_GLOBAL: return "global";
    case KL_CLOCK_QPC: /* a monotonic high-resolution counter, as QPC is */
    case KL_CLOCK_MONO: return "mono";
    case KL_CLOCK_BOOT: return "boot";
    case KL_CLOCK_CYCLE: return "x86-tsc";
    case KL_CLOCK_SYSTEM: return NULL;
  }
  return NULL;
}

static int set_clock(struct tracefs_instance *inst, kl_clock c, char *out, size_t n,
                     kl_err *err, const char *name) {
  const char *ck = ftrace_clock(c);
  int e;
  if (ck == NULL)
    return kl_err_set(err, KL_E_NOT_SUPPORTED, 0,
                      "session %s: clock '%s' has no ftrace equivalent on Linux", name,
                      kl_clock_names[c]);
  /* Writing trace_clock resets the ring and waits for an RCU grace period
   * (about 30 ms here) even when the clock does not change: skip it when
   * the instance already uses this clock ("[local] global ..."). */
  {
    char *cur = tracefs_instance_file_read(inst, "trace_clock", NULL);
    char want[40];
    int same;
    snprintf(want, sizeof want, "[%s]", ck);
    same = cur != NULL && strstr(cur, want) != NULL;
    free(cur);
    if (same) {
      snprintf(out, n, "%s", ck);
      return 0;
    }
  }
  errno = 0;
  if (tracefs_instance_file_write(inst, "trace_clock", ck) < 0) {
    e = errno ? errno : EINVAL;
    return kl_err_set(err, e == EINVAL ? KL_E_NOT_SUPPORTED : kl_code_from_errno(e), e,
                      "session %s: clock '%s' is not available on this kernel (errno %d)",
                      name, ck, e);
  }
  snprintf(out, n, "%s", ck);
  return 0;
}

static void holder_text(const char *name, char *out, size_t n) {
  kl_state s;
  if (read_state(name, &s) != 0) {
    snprintf(out, n, "a foreign ftrace instance (not started by kernellogger)");
    return;
  }
  if (s.owner_pid <= 0
          ? snprintf(out, n, "detached (no owner process), file %s, flags %s",
                     s.file[0] ? s.file : "(none)", s.flags[0] ? s.flags : "(none)") >= (int)n
          : snprintf(out, n, "held by pid %ld (%s), file %s, flags %s", s.owner_pid,
                     s.owner_start && proc_start(s.owner_pid) == s.owner_start ? "alive"
                                                                               : "dead",
                     s.file[0] ? s.file : "(none)", s.flags[0] ? s.flags : "(none)") >= (int)n)
    out[n - 1] = '\0'; /* truncated: still a useful message */
}

static void dump_events(const kl_state *s, const char **ev, size_t *nev, char *buf, size_t n) {
  char *tok, *save = NULL;
  *nev = 0;
  snprintf(buf, n, "%s", s->tracepoints);
  for (tok = strtok_r(buf, ",", &save); tok && *nev < KL_MAX_TRACEPOINTS * 2;
       tok = strtok_r(NULL, ",", &save))
    ev[(*nev)++] = tok;
}

/* The writer's options for a file of this session. */
static void dump_opts(kl_session *s, const kl_state *st, const char *file, int overwrite,
                      kl_dump_opts *o, const char **events, char *evbuf, size_t n) {
  size_t nev;
  dump_events(st, events, &nev, evbuf, n);
  memset(o, 0, sizeof *o);
  o->path = file;
  o->overwrite = overwrite;
  o->file_mode = st->file_mode ? st->file_mode : 0600;
  o->kallsyms = st->kallsyms;
  o->events = events;
  o->nevents = nev;
  o->session = s->name;
}

/* Write the ring to the file; updates the state's counters. */
static int write_file(kl_session *s, kl_state *st, const char *file, int overwrite,
                      kl_err *err) {
  const char *events[KL_MAX_TRACEPOINTS * 2];
  char evbuf[8192];
  uint64_t bytes = 0;
  kl_dump_opts o;
  dump_opts(s, st, file, overwrite, &o, events, evbuf, sizeof evbuf);
  /* A circular file flushed before: reading the ring consumed what that
   * flush wrote, so the writer carries its newest pages forward. */
  if (st->mode == KL_MODE_CIRCULAR && st->file[0] && strcmp(file, st->file) == 0 &&
      st->last_flush > 0 && st->bytes_written > 0) {
    o.carry = file;
    o.carry_size = st->bytes_written;
  }
  if (kl_tracedat_write(s->inst, &o, &bytes, err) != 0) return -1;
  st->bytes_written = bytes;
  st->last_flush = kl_walltime();
  return 0;
}

/* ------------------------------------------------------------------ */
/* ops                                                                 */
/* ------------------------------------------------------------------ */

static kl_session *new_handle(const char *name, struct tracefs_instance *inst) {
  kl_session *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  snprintf(s->name, sizeof s->name, "%s", name);
  s->inst = inst;
  return s;
}

/* ---- start, in phases ---- */

static int streaming(const kl_config *cfg) {
  return cfg->file != NULL && (cfg->mode == KL_MODE_CIRCULAR || cfg->mode == KL_MODE_SEQUENTIAL);
}

/* The ring of a streaming session, total KB: buffer_kb x max_buffers, or
 * 4 MB per CPU up to 64 MB in all.  It only has to absorb what arrives
 * between two wake-ups of the recorder, whatever the file's bound. */
static unsigned stream_ring_kb(const kl_config *cfg, int ncpus) {
  unsigned kb;
  if (cfg->max_buffers) return (cfg->buffer_kb ? cfg->buffer_kb : 4u) * cfg->max_buffers;
  kb = STREAM_CPU_KB * (unsigned)(ncpus > 0 ? ncpus : 1);
  return kb > STREAM_MAX_KB ? STREAM_MAX_KB : kb;
}

/* buffer_kb is ETW's buffer size; ftrace's twin is the sub-buffer, which
 * kernels since 6.8 let an instance choose. */
static int set_subbuf(struct tracefs_instance *inst, const kl_config *cfg, kl_err *err) {
  char v[32];
  if (!cfg->buffer_kb || cfg->buffer_kb == (unsigned)(sysconf(_SC_PAGESIZE) / 1024) ||
      !tracefs_file_exists(inst, "buffer_subbuf_size_kb"))
    return 0;
  snprintf(v, sizeof v, "%u", cfg->buffer_kb);
  errno = 0;
  if (tracefs_instance_file_write(inst, "buffer_subbuf_size_kb", v) < 0)
    return kl_err_errno(err, KL_E_INVALID,
                        "start %s: buffer_kb = %u is not a sub-buffer size this kernel takes "
                        "(powers of two from the page size up to 128 pages)",
                        cfg->name, cfg->buffer_kb);
  return 0;
}

/* Make the instance (atomically: EEXIST is already_exists). */
static struct tracefs_instance *make_instance(const kl_config *cfg, const char *path, kl_err *err) {
  char holder[KL_PATH_MAX + 256];
  struct tracefs_instance *inst;
  if (mkdir(path, 0750) != 0) {
    if (errno == EEXIST) {
      holder_text(cfg->name, holder, sizeof holder);
      kl_err_set(err, KL_E_ALREADY_EXISTS, EEXIST,
                 "start %s: the session already exists, %s (EEXIST, errno %d)", cfg->name,
                 holder, EEXIST);
    } else {
      kl_err_errno(err, KL_E_IO, "start %s: mkdir %s", cfg->name, path);
    }
    return NULL;
  }
  inst = tracefs_instance_alloc(NULL, cfg->name);
  if (inst == NULL) {
    kl_err_errno(err, KL_E_NO_RESOURCES, "start %s: tracefs_instance_alloc", cfg->name);
    rmdir(path);
  }
  return inst;
}

/* Ring, overwrite, clock, stacks, wake-up level, events; tracing stays off. */
static int configure(struct tracefs_instance *inst, const kl_config *cfg, kl_state *st,
                     kl_err *err) {
  int stream = streaming(cfg);
  tracefs_instance_file_write(inst, "tracing_on", "0");
  if (stream && set_subbuf(inst, cfg, err) != 0) return -1;
  if (resize(inst, stream ? stream_ring_kb(cfg, ncpus_of(inst)) : ring_kb(cfg), err, cfg->name))
    return -1;
  /* sequential, real-time and streaming: nothing is overwritten before it
   * is read (a loss is counted in "dropped events") */
  errno = 0;
  if ((cfg->mode == KL_MODE_SEQUENTIAL || cfg->mode == KL_MODE_REALTIME || stream
           ? tracefs_option_disable(inst, TRACEFS_OPTION_OVERWRITE)
           : tracefs_option_enable(inst, TRACEFS_OPTION_OVERWRITE)) < 0)
    return kl_err_errno(err, KL_E_IO, "start %s: cannot set the overwrite option", cfg->name);
  if (set_clock(inst, cfg->clock, st->clock, sizeof st->clock, err, cfg->name) != 0) return -1;
  /* stacks: a kernel stack trace recorded after every event (ftrace:kernel_stack) */
  errno = 0;
  if (cfg->stacks && tracefs_option_enable(inst, TRACEFS_OPTION_STACKTRACE) < 0) {
    if (errno == 0) errno = ENOTSUP;
    return kl_err_errno(err, KL_E_NOT_SUPPORTED,
                        "start %s: this kernel cannot record stack traces (options/stacktrace)",
                        cfg->name);
  }
  st->stacks = cfg->stacks;
  /* real-time: poll() on trace_pipe_raw wakes on the first event; streaming:
   * when a quarter of the ring is full (docs/design.md, "Wake-ups") */
  errno = 0;
  if ((cfg->mode == KL_MODE_REALTIME || stream) &&
      tracefs_instance_file_write(inst, "buffer_percent",
                                  cfg->mode == KL_MODE_REALTIME ? "0" : STREAM_PERCENT) < 0)
    return kl_err_errno(err, KL_E_NOT_SUPPORTED, "start %s: cannot set buffer_percent",
                        cfg->name);
  return apply_events(inst, "", st->tracepoints, err, cfg->name);
}

static void fill_state(const kl_config *cfg, const char *file, kl_state *st) {
  snprintf(st->file, sizeof st->file, "%s", file ? file : "");
  st->mode = cfg->mode;
  st->circular_mb = cfg->circular_mb;
  st->max_mb = cfg->max_mb;
  st->file_mode = cfg->file_mode ? cfg->file_mode : 0600;
  st->overwrite = cfg->overwrite;
  st->kallsyms = cfg->kallsyms;
  st->owner_pid = cfg->detached ? 0 : kl_getpid();
  st->owner_start = cfg->detached ? 0 : proc_start(st->owner_pid);
  st->start_time = kl_walltime();
  st->last_flush = -1;
  st->flush_timer = cfg->flush_timer ? cfg->flush_timer : 1;
}

/* The recorder's folder next to the target: same file system (the
 * assembly copies inside the kernel, and the target's disk is the one
 * that fills), unique per start, 0700.  Making it also proves that the
 * target's folder takes new files, before anything else starts. */
static int name_data_dir(const kl_config *cfg, const char *file, kl_state *st, kl_err *err) {
  char dir[KL_PATH_MAX];
  const char *slash = strrchr(file, '/');
  size_t n = slash ? (size_t)(slash - file) : 0;
  if (n >= sizeof dir) n = sizeof dir - 1;
  memcpy(dir, file, n);
  dir[n] = '\0';
  if (snprintf(st->data_dir, sizeof st->data_dir, "%s/.kl-%s.%ld.%.0f", n ? dir : "", cfg->name,
               kl_getpid(), kl_walltime() * 1e6) >= (int)sizeof st->data_dir)
    return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "start %s: %s: path too long",
                      cfg->name, file);
  return 0;
}

static int make_data_dir(const kl_config *cfg, const char *file, kl_state *st, kl_err *err) {
  const char *slash = strrchr(file, '/');
  char dir[KL_PATH_MAX];
  size_t n = slash ? (size_t)(slash - file) : 0;
  if (n >= sizeof dir) n = sizeof dir - 1;
  memcpy(dir, file, n);
  dir[n] = '\0';
  if (mkdir(st->data_dir, 0700) != 0) {
    kl_err_errno(err, KL_E_BAD_PATH, "start %s: %s: cannot create files in %s", cfg->name,
                 file, n ? dir : "/");
    if (err->code == KL_E_NOT_FOUND) err->code = KL_E_BAD_PATH; /* /proc takes no folder */
    st->data_dir[0] = '\0';
    return -1;
  }
  return 0;
}

static void remove_data_dir(const char *data_dir) {
  DIR *d;
  struct dirent *de;
  int fd;
  if (data_dir[0] == '\0' || (fd = kl_data_dir_open(data_dir)) < 0) return;
  if ((d = fdopendir(fd)) == NULL) {
    close(fd);
    return;
  }
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.') unlinkat(dirfd(d), de->d_name, 0);
  closedir(d);
  rmdir(data_dir); /* never follows a link put in its place meanwhile */
}

/* Unlink one file of the data folder, through the checked folder. */
static void unlink_in_data_dir(const char *data_dir, const char *name) {
  int fd = kl_data_dir_open(data_dir);
  if (fd < 0) return;
  unlinkat(fd, name, 0);
  close(fd);
}

/* Room held back for the header (and kallsyms) plus one chunk. */
static uint64_t header_room(const kl_config *cfg) {
  uint64_t room = 1u << 20;
  if (cfg->kallsyms) {
    char buf[65536];
    ssize_t r;
    int fd = open("/proc/kallsyms", O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && (r = read(fd, buf, sizeof buf)) > 0) room += (uint64_t)r;
    if (fd >= 0) close(fd);
  }
  return room;
}

/* Can the recorder's own work raise one of these events?  It makes system
 * calls, sleeps and wakes, faults pages, writes files; it never uses a
 * socket, execs, forks (after it started) or writes trace_marker.  Only
 * for event sets made of those it cannot raise is set_event_notrace_pid
 * skipped: the kernel's pid filter costs 30-80 ms of RCU grace periods
 * when the instance is removed (measured here; docs/design.md). */
static int recorder_can_raise(const char *tracepoints) {
  static const char *const never[] = {"sock:", "tcp:", "udp:", "net:", "skb:", "napi:",
                                      "neigh:", "qdisc:", "cgroup:", "ftrace:",
                                      "sched:sched_process_exec", "sched:sched_process_fork",
                                      "task:task_newtask", "task:task_rename", NULL};
  char buf[8192], *tok, *save = NULL;
  snprintf(buf, sizeof buf, "%s", tracepoints);
  for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    const char *const *n;
    int safe = 0;
    for (n = never; *n && !safe; n++)
      safe = (*n)[strlen(*n) - 1] == ':' ? strncmp(tok, *n, strlen(*n)) == 0 : strcmp(tok, *n) == 0;
    if (!safe) return 1;
  }
  return 0;
}

/* The recorder: sizes from the config, started and ready before tracing. */
static int start_recorder(struct tracefs_instance *inst, const kl_config *cfg, kl_state *st,
                          kl_err *err) {
  kl_rec_cfg rc;
  kl_rec_state rs;
  char *dir = tracefs_instance_get_dir(inst);
  long long sub = 0;
  uint64_t mb = 1024u * 1024u, hdr = header_room(cfg);
  memset(&rc, 0, sizeof rc);
  snprintf(rc.inst_dir, sizeof rc.inst_dir, "%s", dir ? dir : "");
  if (dir) tracefs_put_tracing_file(dir);
  snprintf(rc.data_dir, sizeof rc.data_dir, "%s", st->data_dir);
  snprintf(rc.name, sizeof rc.name, "%s", cfg->name);
  rc.ncpus = ncpus_of(inst);
  if (tracefs_instance_file_read_number(inst, "buffer_subbuf_size_kb", &sub) != 0 || sub <= 0)
    sub = sysconf(_SC_PAGESIZE) / 1024;
  rc.subbuf = (uint32_t)(sub * 1024);
  rc.circular = cfg->mode == KL_MODE_CIRCULAR;
  if (rc.circular) {
    /* circular_mb bounds the data on disk; eight chunks per CPU, so that
     * dropping the oldest keeps 7/8 to 8/8 of it */
    rc.cpu_budget = (uint64_t)cfg->circular_mb * mb / (uint64_t)(rc.ncpus > 0 ? rc.ncpus : 1);
    rc.cpu_budget -= rc.cpu_budget % rc.subbuf;
    if (rc.cpu_budget < 8u * rc.subbuf) rc.cpu_budget = 8u * rc.subbuf;
    rc.chunk_bytes = rc.cpu_budget / 8 / rc.subbuf * rc.subbuf;
  } else {
    /* max_mb bounds the file: the header's room comes off the data's */
    uint64_t file = (uint64_t)cfg->max_mb * mb;
    rc.data_budget = file > 2 * hdr ? file - hdr : file / 2;
    rc.chunk_bytes = mb;
  }
  rc.reserve_bytes = hdr + rc.chunk_bytes;
  rc.flush_ms = st->flush_timer * 1000u;
  rc.exclude = cfg->stacks || recorder_can_raise(st->tracepoints);
  rc.starter_pid = (int32_t)kl_getpid();
  if (kl_rec_spawn(&rc, &rs, err) != 0) return -1;
  st->rec_pid = rs.pid;
  st->rec_start = proc_start(rs.pid);
  return 0;
}

/* Is the recorder alive?  By its pid and start time, so that a deleted
 * folder (or status file) cannot hide it; by its status lock for state
 * files that predate the pid. */
static int rec_alive(const kl_state *st) {
  if (st->rec_pid > 0) return st->rec_start && proc_start(st->rec_pid) == st->rec_start;
  return kl_rec_alive(st->data_dir);
}

/* Has the recorder ended?  With its pidfd, wait up to 50 ms for the exit
 * (woken at once when it comes); without one, look once a millisecond. */
static int rec_gone(const kl_state *st, int pidfd) {
  if (pidfd >= 0) return kl_pidfd_wait(pidfd, 0.05);
  if (!rec_alive(st)) return 1;
  kl_sleep(0.001);
  return 0;
}

/* End the recorder by its pid: SIGUSR1 (drain and leave), then SIGKILL
 * after wait seconds.  0 when it ended it, 1 when there was none alive
 * (dead already: the caller drains the ring itself). */
static int rec_end_by_pid(const kl_state *st, double wait) {
  double t0 = kl_monotime();
  int pidfd;
  if (st->rec_pid <= 0 || !rec_alive(st)) return 1;
  /* the pidfd is the recorder's only if the pid still is after the open */
  pidfd = kl_pidfd_open(st->rec_pid);
  if (pidfd >= 0 && !rec_alive(st)) {
    close(pidfd);
    return 1;
  }
  kill((pid_t)st->rec_pid, SIGUSR1);
  /* a recorder someone stopped (SIGSTOP, a debugger's ^Z) finishes too,
   * instead of losing what sits in its pipe to the SIGKILL below */
  kill((pid_t)st->rec_pid, SIGCONT);
  while (!rec_gone(st, pidfd)) {
    if (kl_monotime() - t0 > wait) {
      kill((pid_t)st->rec_pid, SIGKILL);
      wait = 1e9;
    }
  }
  if (pidfd >= 0) close(pidfd);
  return 0;
}

/* Are the recorder's folder (the very one the start made) and its config
 * still there? */
static int data_dir_lost(const kl_state *st) {
  kl_rec_cfg rc;
  int fd = kl_data_dir_open(st->data_dir);
  if (fd < 0) return 1;
  close(fd);
  return kl_rec_read_cfg(st->data_dir, &rc) != 0;
}

/* Turn tracing on: the last step of a start. */
static int tracing_on(struct tracefs_instance *inst, const char *name, kl_err *err) {
  errno = 0;
  if (tracefs_instance_file_write(inst, "tracing_on", "1") < 0)
    return kl_err_errno(err, KL_E_IO, "start %s: cannot turn tracing on", name);
  return 0;
}

/* Before the instance's mkdir (which takes tens of ms): a state that
 * says "starting", owned by this process, so that a start killed half-way
 * leaves a session that is recognisably ours and stale (stop and
 * takeover_stale end it), not a foreign instance. */
static int mark_starting(const char *name, kl_state *st, kl_err *err) {
  long pid = st->owner_pid;
  unsigned long long t = st->owner_start;
  st->starting = 1;
  st->owner_pid = kl_getpid(); /* a detached start too: until it completed */
  st->owner_start = proc_start(st->owner_pid);
  if (write_state(name, st, err) != 0) return -1;
  st->present = 1;
  st->owner_pid = pid;
  st->owner_start = t;
  return 0;
}

/* Is file (absolute) the target of another running session?  Two
 * sessions on one file would find out only at the second stop, after all
 * their recording (ETW refuses it at once: the first session holds the
 * file).  bad_path naming the holder, or 0. */
static int file_taken(const char *file, const char *self, const char *tdir, const char *op,
                      kl_err *err) {
  DIR *d = opendir(KL_STATE_DIR);
  struct dirent *de;
  kl_state *st = malloc(sizeof *st);
  char name[KL_NAME_MAX + 1], inst[KL_PATH_MAX];
  struct stat sb;
  int rc = 0;
  while (d && st && rc == 0 && (de = readdir(d)) != NULL) {
    size_t n = strlen(de->d_name);
    if (n <= 6 || n - 6 > KL_NAME_MAX || strcmp(de->d_name + n - 6, ".state") != 0) continue;
    snprintf(name, sizeof name, "%.*s", (int)(n - 6), de->d_name);
    if (strcmp(name, self) == 0 || read_state(name, st) != 0 || strcmp(st->file, file) != 0)
      continue;
    if (inst_path(inst, sizeof inst, tdir, name) != 0 || stat(inst, &sb) != 0) continue;
    rc = kl_err_set(err, KL_E_BAD_PATH, EBUSY,
                    "%s %s: %s is the file of running session %s; give another file", op, self,
                    file, name);
  }
  if (d) closedir(d);
  free(st);
  return rc;
}

static kl_session *ftrace_start(const kl_config *cfg, kl_err *err) {
  const char *dir;
  char path[KL_PATH_MAX], file[KL_PATH_MAX];
  struct tracefs_instance *inst = NULL;
  kl_session *s = NULL;
  kl_state st;
  struct stat sb;
  int lock = -1, stream = streaming(cfg);

  memset(&st, 0, sizeof st);
  if (kl_name_check(cfg->name, err) != 0) return NULL;
  if ((dir = tracing_dir(err, "start", cfg->name)) == NULL) return NULL;
  if (cfg->file && kl_abs_path(cfg->file, file, sizeof file, err) != 0) return NULL;
  if (cfg->file && kl_path_check(file, cfg->overwrite, err) != 0) {
    char msg[KL_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", err->msg);
    kl_err_set(err, err->code, err->sys, "start %s: %s", cfg->name, msg);
    return NULL;
  }
  if (cfg->file && file_taken(file, cfg->name, dir, "start", err) != 0) return NULL;
  if (resolve(cfg, st.flags, sizeof st.flags, st.tracepoints, sizeof st.tracepoints, err))
    return NULL;
  if (inst_path(path, sizeof path, dir, cfg->name) != 0) {
    kl_err_set(err, KL_E_INVALID, ENAMETOOLONG, "start %s: name too long", cfg->name);
    return NULL;
  }
  lock = lock_session(cfg->name);
  if (stream && name_data_dir(cfg, file, &st, err) != 0) goto error;
  fill_state(cfg, cfg->file ? file : NULL, &st);
  /* (a name taken: make_instance says so; its state is not ours to touch) */
  if (stat(path, &sb) != 0 && mark_starting(cfg->name, &st, err) != 0) goto error;
  if (stream && make_data_dir(cfg, file, &st, err) != 0) goto error;
  if ((inst = make_instance(cfg, path, err)) == NULL) goto error;
  if (configure(inst, cfg, &st, err) != 0) goto error;
  if (stream && start_recorder(inst, cfg, &st, err) != 0) goto error;
  fill_state(cfg, cfg->file ? file : NULL, &st); /* the owner, once started */
  st.starting = 0;
  if (write_state(cfg->name, &st, err) != 0) goto error;
  if (tracing_on(inst, cfg->name, err) != 0) goto error;
  if (stream && kl_rec_started(st.data_dir, cfg->name, err) != 0) goto error;
  if ((s = new_handle(cfg->name, inst)) == NULL) {
    kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "start %s: out of memory", cfg->name);
    goto error;
  }
  unlock_session(lock);
  return s;

error:
  if (st.present) remove_state(cfg->name);
  if (inst) {
    tracefs_instance_file_write(inst, "tracing_on", "0");
    if (st.data_dir[0]) {
      kl_err ignored;
      kl_rec_finish(st.data_dir, cfg->name, &ignored);
    }
    tracefs_instance_destroy(inst);
    tracefs_instance_free(inst);
  }
  remove_data_dir(st.data_dir);
  unlock_session(lock);
  return NULL;
}

/* The instance went away behind our back (or never came): a state file
 * left for it, the recorder's folder, and the recorder (which leaves when
 * its instance is gone) go too.  inst: its path, NULL when known gone. */
static void forget_gone(const char *name, const char *inst) {
  kl_state state;
  kl_err ignored;
  struct stat sb;
  int lock;
  if (read_state(name, &state) != 0) return;
  lock = lock_sessions(LOCK_EX);
  if (inst == NULL || stat(inst, &sb) != 0) { /* still gone, under the lock */
    if (state.data_dir[0]) {
      if (rec_end_by_pid(&state, 5) != 0) kl_rec_finish(state.data_dir, name, &ignored);
      remove_data_dir(state.data_dir);
    }
    remove_state(name);
  }
  unlock_session(lock);
}

static kl_session *ftrace_open(const char *name, kl_err *err) {
  const char *dir;
  char path[KL_PATH_MAX];
  struct tracefs_instance *inst;
  kl_session *s;
  struct stat sb;
  if (kl_name_check(name, err) != 0) return NULL;
  if ((dir = tracing_dir(err, "open", name)) == NULL) return NULL;
  if (inst_path(path, sizeof path, dir, name) != 0 || stat(path, &sb) != 0 ||
      !S_ISDIR(sb.st_mode)) {
    forget_gone(name, path);
    kl_err_set(err, KL_E_NOT_FOUND, ENOENT, "session %s is not running (no instance %s)",
               name, path);
    return NULL;
  }
  inst = tracefs_instance_alloc(NULL, name);
  if (inst == NULL || (s = new_handle(name, inst)) == NULL) {
    if (inst) tracefs_instance_free(inst);
    kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "open %s: out of memory", name);
    return NULL;
  }
  return s;
}

static int gone(kl_session *s, const char *op, kl_err *err) {
  if (tracefs_instance_exists(s->name)) return 0;
  return kl_err_set(err, KL_E_NOT_FOUND, ENOENT, "%s %s: the session is not running", op,
                    s->name);
}

static void read_cpu_stats(struct tracefs_instance *inst, int cpu, kl_cpu_stats *c) {
  char file[64], *buf, *line, *save = NULL;
  snprintf(file, sizeof file, "per_cpu/cpu%d/stats", cpu);
  memset(c, 0, sizeof *c);
  c->oldest_ts = c->now_ts = -1;
  buf = tracefs_instance_file_read(inst, file, NULL);
  if (buf == NULL) return;
  for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *colon = strchr(line, ':');
    const char *v;
    if (colon == NULL) continue;
    *colon = '\0';
    v = colon + 1;
    if (!strcmp(line, "entries")) c->entries = strtoll(v, NULL, 10);
    else if (!strcmp(line, "overrun")) c->overrun = strtoll(v, NULL, 10);
    else if (!strcmp(line, "commit overrun")) c->commit_overrun = strtoll(v, NULL, 10);
    else if (!strcmp(line, "bytes")) c->bytes = strtoll(v, NULL, 10);
    else if (!strcmp(line, "oldest event ts")) c->oldest_ts = strtod(v, NULL);
    else if (!strcmp(line, "now ts")) c->now_ts = strtod(v, NULL);
    else if (!strcmp(line, "dropped events")) c->dropped = strtoll(v, NULL, 10);
    else if (!strcmp(line, "read events")) c->read_events = strtoll(v, NULL, 10);
  }
  free(buf);
}

/* Chunks that left the folder behind the recorder's back (deleted by
 * another tool): what it wrote there and the folder no longer holds, as
 * ETW's LogBuffersLost (buffers that never reached the file).  Counted
 * once the recorder is gone, when no rotation can be under way. */
static void stream_missing(const kl_state *state, const kl_rec_state *rs, kl_status *st) {
  kl_chunks *ch = malloc(sizeof *ch);
  uint64_t have = 0, sub = (uint64_t)st->buffer_kb * 1024;
  int i;
  if (ch == NULL) return;
  if (kl_chunks_list(state->data_dir, KL_MAX_CPUS, ch) == 0) {
    for (i = 0; i < KL_MAX_CPUS; i++) have += ch->cpu[i].bytes;
    st->log_buffers_lost = rs->bytes > have ? (int64_t)((rs->bytes - have + sub - 1) / sub) : 0;
  }
  free(ch);
}

/* What the recorder adds to a query: its life, why it stopped, the bytes
 * on disk.  Once it stopped taking data (file or disk full), what the ring
 * still holds will never reach the file: counted as lost. */
static void stream_status(const kl_state *state, kl_status *st) {
  kl_rec_state rs;
  st->recorder_alive = rec_alive(state);
  st->flush_timer = state->flush_timer;
  if (kl_rec_read(state->data_dir, &rs) != 0) return;
  st->file_full = rs.file_full != 0;
  st->disk_full = rs.disk_full != 0;
  /* ETW's BuffersWritten: sub-buffers that reached the disk so far
   * (bytes_written stays the size of the file the last flush wrote) */
  if (st->buffer_kb > 0) st->buffers_written = (int64_t)rs.written_total / (st->buffer_kb * 1024);
  if (rs.stopped) st->events_lost += st->entries;
  if (!st->recorder_alive && st->buffer_kb > 0) stream_missing(state, &rs, st);
}

static int fill_status(kl_session *s, const kl_state *state, kl_status *st) {
  char *clk;
  int cpu, n;
  long long kb = 0, sub = 0;
  kl_status_init(st);
  snprintf(st->name, sizeof st->name, "%s", s->name);
  st->foreign = !state->present;
  if (state->present) {
    snprintf(st->file, sizeof st->file, "%s", state->file);
    st->mode = state->mode;
    snprintf(st->flags, sizeof st->flags, "%s", state->flags);
    snprintf(st->tracepoints, sizeof st->tracepoints, "%s", state->tracepoints);
    st->stacks = state->stacks;
    if (state->owner_pid > 0) {
      st->owner_pid = state->owner_pid;
      st->owner_alive = state->owner_start && proc_start(state->owner_pid) == state->owner_start;
    } else {
      st->detached = 1; /* no owner: neither alive nor stale */
    }
    st->start_time = state->start_time;
    st->last_flush = state->last_flush;
    st->bytes_written = (int64_t)state->bytes_written;
    if (state->mode == KL_MODE_CIRCULAR) st->max_file_mb = st->circular_mb = state->circular_mb;
    if (state->mode == KL_MODE_SEQUENTIAL) st->max_file_mb = state->max_mb;
  }
  clk = tracefs_get_clock(s->inst);
  if (clk) {
    snprintf(st->clock, sizeof st->clock, "%s", clk);
    free(clk);
  }
  /* ETW's words for the ring: buffers are ftrace's sub-buffers (pages),
   * buffer_kb the size of one; the per-CPU ring size is cpu_buffer_kb. */
  if (tracefs_instance_file_read_number(s->inst, "buffer_subbuf_size_kb", &sub) != 0 || sub <= 0)
    sub = sysconf(_SC_PAGESIZE) / 1024;
  st->buffer_kb = sub;
  if (tracefs_instance_file_read_number(s->inst, "buffer_size_kb", &kb) == 0)
    st->cpu_buffer_kb = kb;
  n = ncpus_of(s->inst);
  if (n > KL_MAX_CPUS) n = KL_MAX_CPUS;
  st->ncpus = n;
  st->entries = st->overrun = st->commit_overrun = st->bytes = st->dropped = 0;
  st->free_buffers = 0;
  for (cpu = 0; cpu < n; cpu++) {
    kl_cpu_stats *c = &st->per_cpu[cpu];
    read_cpu_stats(s->inst, cpu, c);
    st->entries += c->entries;
    st->overrun += c->overrun;
    st->commit_overrun += c->commit_overrun;
    st->bytes += c->bytes;
    st->dropped += c->dropped;
    if (kb > 0 && kb * 1024 > c->bytes) st->free_buffers += (kb * 1024 - c->bytes) / (sub * 1024);
  }
  if (kb > 0) {
    st->ring_kb = kb * n;
    st->buffers = kb / sub * n;
  }
  st->flush_timer = 0; /* buffering: written on flush/stop only */
  st->buffers_written = state->present ? (int64_t)(state->bytes_written / (uint64_t)(sub * 1024)) : 0;
  st->events_lost = st->dropped + st->commit_overrun;
  if (state->present && state->data_dir[0]) stream_status(state, st);
  return 0;
}

static int ftrace_query(kl_session *s, kl_status *st, kl_err *err) {
  kl_state state;
  int lock = lock_sessions(LOCK_SH), rc = -1;
  if (gone(s, "query", err)) goto out;
  if (read_state(s->name, &state) != 0) state.present = 0;
  rc = fill_status(s, &state, st);
out:
  unlock_session(lock);
  return rc;
}

/* What an update will set, worked out before the kernel changes. */
typedef struct {
  char flags[2048], tps[8192]; /* KL_UPD_FLAGS: the resolved flags and tracepoints */
  char file[KL_PATH_MAX];      /* KL_UPD_FILE: the new file, absolute; "" for none */
} update_plan;

/* What an update changed in the kernel so far, for update_undo. */
typedef struct {
  char old_tps[8192];          /* the state's tracepoints before the update */
  const char *tried;           /* the tracepoints being applied; NULL: not touched */
  long long ring_kb;           /* per CPU before a resize; 0: not resized */
  int overwrite;               /* the overwrite option before a resize */
} update_done;

/* Undo what a failed update changed in the kernel, so that it agrees
 * with the state file again: the tracepoints it tried back to the
 * state's list, the ring back to ring_kb per CPU and the overwrite option.
 * Every step is tried even when one fails; *err keeps the update's error,
 * with a note when the undo failed too. */
static void update_undo(kl_session *s, const update_done *d, kl_err *err) {
  char buf[8192], *tok, *save = NULL;
  kl_err e2;
  int bad = 0;
  if (d->tried) {
    snprintf(buf, sizeof buf, "%s", d->tried);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
      if (!list_has(d->old_tps, tok) && set_event(s->inst, tok, 0, &e2, s->name) != 0)
        bad |= e2.code != KL_E_INVALID && e2.code != KL_E_NOT_SUPPORTED; /* never enabled */
    snprintf(buf, sizeof buf, "%s", d->old_tps);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
      if (set_event(s->inst, tok, 1, &e2, s->name) != 0) bad = 1;
  }
  if (d->ring_kb > 0) {
    if (tracefs_instance_set_buffer_size(s->inst, (size_t)d->ring_kb, -1) < 0) bad = 1;
    if ((d->overwrite ? tracefs_option_enable(s->inst, TRACEFS_OPTION_OVERWRITE)
                      : tracefs_option_disable(s->inst, TRACEFS_OPTION_OVERWRITE)) < 0)
      bad = 1;
  }
  if (bad) {
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n,
             "; undoing the update failed too: the session may not match its query()");
  }
}

/* Everything that can be checked is checked before the kernel changes:
 * an update is all or nothing.  Fills *p with what update_apply sets. */
static int update_check(kl_session *s, const kl_config *cfg, unsigned what,
                        const kl_state *state, update_plan *p, kl_err *err) {
  if ((what & KL_UPD_CIRCULAR_MB) && state->mode != KL_MODE_CIRCULAR &&
      state->mode != KL_MODE_BUFFERING)
    return kl_err_set(err, KL_E_INVALID, 0,
                      "update %s: circular_mb applies to circular or buffering sessions only",
                      s->name);
  if ((what & KL_UPD_FLAGS) &&
      resolve(cfg, p->flags, sizeof p->flags, p->tps, sizeof p->tps, err) != 0)
    return -1;
  if ((what & KL_UPD_CIRCULAR_MB) && state->data_dir[0])
    return kl_err_set(err, KL_E_INVALID, 0,
                      "update %s: circular_mb bounds the file of a streaming session and is "
                      "fixed at start", s->name);
  /* the new file obeys the same rules as at start: an absolute path, no
   * symlink, no folder, no existing file unless overwrite */
  p->file[0] = '\0';
  if ((what & KL_UPD_FILE) && cfg->file &&
      (kl_abs_path(cfg->file, p->file, sizeof p->file, err) != 0 ||
       kl_path_check(p->file, cfg->overwrite, err) != 0)) {
    char m[KL_MSG_MAX];
    snprintf(m, sizeof m, "%s", err->msg);
    return kl_err_set(err, err->code, err->sys, "update %s: %s", s->name, m);
  }
  if (p->file[0] && tracefs_tracing_dir() &&
      file_taken(p->file, s->name, tracefs_tracing_dir(), "update", err) != 0)
    return -1;
  return 0;
}

/* Sets the kernel and *state to the plan, noting in *d what changed so
 * far; on an error the caller undoes that. */
static int update_apply(kl_session *s, const kl_config *cfg, unsigned what, const update_plan *p,
                        kl_state *state, update_done *d, kl_err *err) {
  if (what & KL_UPD_FLAGS) {
    d->tried = p->tps;
    if (apply_events(s->inst, state->tracepoints, p->tps, err, s->name) != 0) return -1;
    snprintf(state->flags, sizeof state->flags, "%s", p->flags);
    snprintf(state->tracepoints, sizeof state->tracepoints, "%s", p->tps);
  }
  if (what & KL_UPD_CIRCULAR_MB) {
    if (tracefs_instance_file_read_number(s->inst, "buffer_size_kb", &d->ring_kb) < 0)
      d->ring_kb = 0;
    d->overwrite = tracefs_option_is_enabled(s->inst, TRACEFS_OPTION_OVERWRITE);
    if (resize(s->inst, cfg->circular_mb * 1024u, err, s->name) != 0) return -1;
    state->circular_mb = cfg->circular_mb;
    state->mode = KL_MODE_CIRCULAR;
    tracefs_option_enable(s->inst, TRACEFS_OPTION_OVERWRITE);
  }
  if (what & KL_UPD_FILE) {
    snprintf(state->file, sizeof state->file, "%s", p->file);
    state->overwrite = cfg->overwrite;
    if (cfg->file && state->mode == KL_MODE_BUFFERING) {
      state->mode = KL_MODE_CIRCULAR;
      if (!state->circular_mb) {
        long long kb = 0;
        tracefs_instance_file_read_number(s->inst, "buffer_total_size_kb", &kb);
        state->circular_mb = (unsigned)((kb + 1023) / 1024);
      }
    }
  }
  return 0;
}

static int ftrace_update(kl_session *s, const kl_config *cfg, unsigned what, kl_err *err) {
  kl_state state;
  update_plan plan;
  update_done done = {{0}, NULL, 0, 0};
  int lock, rc = -1;
  const unsigned allowed = KL_UPD_FLAGS | KL_UPD_FILE | KL_UPD_CIRCULAR_MB;

  if (what & ~allowed)
    return kl_err_set(err, KL_E_INVALID, 0,
                      "update %s: only flags and file can change while a Linux session runs "
                      "(and circular_mb, of a session without a file)",
                      s->name);
  lock = lock_session(s->name);
  if (gone(s, "update", err)) goto out;
  if (read_state(s->name, &state) != 0) {
    kl_err_set(err, KL_E_INVALID, 0,
               "update %s: not a kernellogger session (no state); it cannot be changed",
               s->name);
    goto out;
  }
  snprintf(done.old_tps, sizeof done.old_tps, "%s", state.tracepoints);
  if (update_check(s, cfg, what, &state, &plan, err) != 0) goto out;
  if (update_apply(s, cfg, what, &plan, &state, &done, err) == 0) {
    rc = write_state(s->name, &state, err);
    if (rc == 0) goto out;
  }
  update_undo(s, &done, err);
out:
  unlock_session(lock);
  return rc;
}

/* May the session's own file be replaced?  When the caller allowed it, or
 * when what is there is the file this session wrote last (a regular file
 * of the size it wrote): a circular file is rewritten by every flush. */
static int own_file_replaceable(const kl_state *st) {
  struct stat sb;
  if (st->overwrite) return 1;
  if (st->last_flush <= 0 || st->bytes_written == 0) return 0;
  if (lstat(st->file, &sb) != 0) return 1; /* nothing there: nothing replaced */
  return S_ISREG(sb.st_mode) && (unsigned long long)sb.st_size == st->bytes_written;
}

/* ---- streaming sessions: flush and stop ---- */

/* The chunks into a trace.dat at file. */
static int stream_write(kl_session *s, kl_state *st, const char *file, int overwrite,
                        int consume, kl_err *err) {
  const char *events[KL_MAX_TRACEPOINTS * 2];
  char evbuf[8192];
  uint64_t bytes = 0;
  kl_dump_opts o;
  kl_rec_cfg rc;
  if (kl_rec_read_cfg(st->data_dir, &rc) != 0)
    return kl_err_errno(err, KL_E_IO, "%s %s: the recorder's folder %s", "write", s->name,
                        st->data_dir);
  dump_opts(s, st, file, overwrite, &o, events, evbuf, sizeof evbuf);
  if (kl_tracedat_assemble(s->inst, &o, st->data_dir, rc.circular ? rc.cpu_budget : 0, consume,
                           &bytes, err) != 0)
    return -1;
  st->bytes_written = bytes;
  st->last_flush = kl_walltime();
  return 0;
}

/* Everything in the rings to disk: by the recorder, or here when it died. */
static int stream_drain(kl_session *s, const kl_state *st, int finish, kl_err *err) {
  kl_rec_cfg rc;
  int r;
  /* by pid first: the status file (its lock) may be gone with the recorder alive */
  if (finish && rec_end_by_pid(st, data_dir_lost(st) ? 5 : 60) == 0) return 0;
  r = finish ? kl_rec_finish(st->data_dir, s->name, err)
             : kl_rec_flush(st->data_dir, s->name, err);
  if (r <= 0) return r;
  if (kl_rec_read_cfg(st->data_dir, &rc) != 0)
    return kl_err_errno(err, KL_E_IO, "%s %s: the recorder's folder %s",
                        finish ? "stop" : "flush", s->name, st->data_dir);
  return kl_rec_drain_here(&rc, err);
}

/* Copy the chunks, or move them when the disk cannot hold both copies. */
static int stream_consume(const kl_state *st) {
  kl_chunks *ch = malloc(sizeof *ch);
  struct statvfs vfs;
  uint64_t total = 1u << 20;
  int i, consume = 0;
  if (ch == NULL) return 0;
  if (kl_chunks_list(st->data_dir, KL_MAX_CPUS, ch) == 0 && statvfs(st->data_dir, &vfs) == 0) {
    for (i = 0; i < KL_MAX_CPUS; i++) total += ch->cpu[i].bytes;
    consume = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize < total;
  }
  free(ch);
  return consume;
}

static int stream_stop(kl_session *s, kl_state *state, const char *file, int overwrite,
                       kl_status *st, kl_err *err) {
  if (data_dir_lost(state)) {
    /* nothing to write from: end the recorder, and the session with it */
    rec_end_by_pid(state, 5);
    fill_status(s, state, st);
    return file == NULL ? 0 : 2;
  }
  if (stream_drain(s, state, 1, err) != 0) return -1;
  fill_status(s, state, st); /* after the drain: the final counters */
  if (file == NULL) return 0;
  unlink_in_data_dir(state->data_dir, "reserve"); /* its room is the header's */
  return stream_write(s, state, file, overwrite, stream_consume(state), err);
}

static int ftrace_flush(kl_session *s, const char *file, int overwrite, kl_err *err) {
  kl_state state;
  int lock, rc = -1;
  lock = lock_session(s->name);
  if (gone(s, "flush", err)) goto out;
  if (read_state(s->name, &state) != 0) memset(&state, 0, sizeof state);
  if (file == NULL) {
    file = state.file[0] ? state.file : NULL;
    overwrite = file != NULL && (overwrite || own_file_replaceable(&state));
  }
  if (file == NULL) {
    kl_err_set(err, KL_E_INVALID, 0,
               "flush %s: the session has no file; pass one (s:flush{file = ...}) or set "
               "one with update{file = ...}",
               s->name);
    goto out;
  }
  if (state.data_dir[0] && data_dir_lost(&state)) {
    kl_err_set(err, KL_E_IO, ENOENT,
               "flush %s: the recorder's data folder %s is lost (gone, or not the folder the "
               "start made): nothing to write",
               s->name, state.data_dir);
    goto out;
  }
  if (state.data_dir[0] ? stream_drain(s, &state, 0, err) != 0 ||
                              stream_write(s, &state, file, overwrite, 0, err) != 0
                        : write_file(s, &state, file, overwrite, err) != 0)
    goto out;
  rc = state.present ? write_state(s->name, &state, err) : 0;
out:
  unlock_session(lock);
  return rc;
}

/* rmdir the instance; another tool may hold one of its files for a moment. */
static int remove_instance(kl_session *s, kl_err *err) {
  int e = 0;
  double t0 = kl_monotime(), pause = 0.0005;
  for (;;) {
    errno = 0;
    if (tracefs_instance_destroy(s->inst) == 0) return 0;
    e = errno ? errno : EBUSY;
    if (e != EBUSY || kl_monotime() - t0 > 1.0) break;
    /* a file just closed is often released within a millisecond: start
     * short, back off to 20 ms */
    kl_sleep(pause);
    if (pause < 0.02) pause *= 2;
  }
  errno = e;
  return kl_err_errno(err, KL_E_BUSY, "stop %s: cannot remove the instance%s", s->name,
                      e == EBUSY ? " (a reader still has it open)" : "");
}

/* A start killed half-way (the session lock, which its starter held, says
 * it is gone): nothing was recorded.  Its recorder, instance, folder and
 * state go; no file is written. */
static int end_half_made(kl_session *s, const kl_state *state, kl_status *st, kl_err *err) {
  kl_err ignored;
  if (state->data_dir[0] && rec_end_by_pid(state, 5) != 0)
    kl_rec_finish(state->data_dir, s->name, &ignored);
  fill_status(s, state, st);
  if (remove_instance(s, err) != 0) return -1;
  remove_data_dir(state->data_dir);
  remove_state(s->name);
  return 0;
}

static int ftrace_stop(kl_session *s, const char *file, int overwrite, kl_status *st,
                       kl_err *err) {
  kl_state state;
  int lock, rc = -1, lost = 0;
  lock = lock_session(s->name);
  if (gone(s, "stop", err)) {
    unlock_session(lock);
    forget_gone(s->name, NULL);
    return -1;
  }
  if (read_state(s->name, &state) != 0) memset(&state, 0, sizeof state);
  tracefs_instance_file_write(s->inst, "tracing_on", "0");
  live_close_all(s->name);
  if (state.present && state.starting) {
    rc = end_half_made(s, &state, st, err);
    goto out;
  }
  if (file == NULL && state.file[0]) {
    file = state.file;
    overwrite = overwrite || own_file_replaceable(&state); /* {overwrite = true}: the own file too */
  } else if (file != NULL && file[0] == '\0') {
    file = NULL; /* stop without writing */
  }
  if (state.data_dir[0]) {
    /* a failed write keeps the session (tracing off, data kept) for a retry */
    lost = stream_stop(s, &state, file, overwrite, st, err);
    if (lost < 0) goto out;
  } else {
    /* The final counters are the ring's before the file write drains it. */
    fill_status(s, &state, st);
    if (file != NULL && write_file(s, &state, file, overwrite, err) != 0) {
      /* Keep the session, so the caller can retry to another path. */
      tracefs_instance_file_write(s->inst, "tracing_on", "1");
      goto out;
    }
  }
  if (file && !lost) {
    snprintf(st->file, sizeof st->file, "%s", file);
    st->bytes_written = (int64_t)state.bytes_written;
    st->last_flush = state.last_flush;
    if (st->buffer_kb > 0 && !state.data_dir[0]) /* streaming: the recorder's count */
      st->buffers_written = st->bytes_written / (st->buffer_kb * 1024);
  }
  if (remove_instance(s, err) != 0) goto out;
  remove_data_dir(state.data_dir);
  remove_state(s->name);
  rc = 0;
  if (lost)
    rc = kl_err_set(err, KL_E_IO, ENOENT,
                    "stop %s: the session is stopped, but the recorder's data folder %s was lost: "
                    "no file written to %s",
                    s->name, state.data_dir, file);
out:
  unlock_session(lock);
  return rc;
}

static void ftrace_release(kl_session *s) {
  if (s == NULL) return;
  live_forget(s);
  if (s->inst) tracefs_instance_free(s->inst);
  free(s);
}

static int ftrace_list(kl_list_cb cb, void *ud, kl_err *err) {
  const char *dir;
  char path[KL_PATH_MAX];
  DIR *d;
  struct dirent *de;
  kl_status *st;
  int rc = 0, lock, listed = 0;
  if ((dir = tracing_dir(err, "list", "sessions")) == NULL) return -1;
  snprintf(path, sizeof path, "%s/instances", dir);
  d = opendir(path);
  if (d == NULL) return kl_err_errno(err, KL_E_IO, "list sessions: %s", path);
  st = malloc(sizeof *st);
  if (st == NULL) {
    closedir(d);
    return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "list sessions: out of memory");
  }
  while (rc == 0 && (de = readdir(d)) != NULL) {
    kl_session *s;
    kl_err ignored;
    kl_state state;
    if (de->d_name[0] == '.' || kl_name_check(de->d_name, &ignored) != 0) continue;
    s = ftrace_open(de->d_name, &ignored);
    if (s == NULL) continue;
    lock = lock_sessions(LOCK_SH);
    if (!gone(s, "list", &ignored)) {
      if (read_state(s->name, &state) != 0) state.present = 0;
      fill_status(s, &state, st);
      listed = 1;
    }
    unlock_session(lock);
    ftrace_release(s);
    if (listed) rc = cb(ud, st); /* outside the lock: cb runs Lua */
    listed = 0;
  }
  free(st);
  closedir(d);
  return rc == 0 ? 0 : -1;
}

static int ftrace_live_next(kl_session *s, const kl_filter *f, int fresh, double timeout,
                            kl_event *ev, kl_err *err) {
  kl_state state;
  int r;
  if (s->live_ended) return 0;
  if (s->live == NULL) {
    int lock = lock_sessions(LOCK_SH), bad = 0;
    if (gone(s, "events", err)) {
      bad = 1;
    } else if (read_state(s->name, &state) != 0 || state.mode != KL_MODE_REALTIME) {
      kl_err_set(err, KL_E_INVALID, 0,
                 "events %s: not a real-time session; start it with realtime = true, or "
                 "read a capture file with kernellogger.open",
                 s->name);
      bad = 1;
    } else {
      s->live = kl_live_open(s->inst, s->name, state.tracepoints, err);
      if (s->live == NULL) bad = 1;
    }
    unlock_session(lock);
    if (bad) return -1;
    s->next_live = live_handles;
    live_handles = s;
    fresh = 1;
  }
  r = kl_live_next(s->live, f, fresh, timeout, ev, err);
  if (r == 0 && kl_live_ended(s->live)) {
    /* tracing went off (a stop, maybe from another process): close the
     * readers now, so that its rmdir of the instance succeeds */
    live_forget(s);
    s->live_ended = 1;
  }
  return r;
}

const kl_backend kl_backend_impl = {
  "linux",
  "kernellogger",
  1,
  ftrace_flag_supported,
  ftrace_tracepoint_exists,
  ftrace_start,
  ftrace_open,
  ftrace_query,
  ftrace_update,
  ftrace_flush,
  ftrace_stop,
  ftrace_release,
  ftrace_list,
  kl_ftrace_trace_open,
  kl_ftrace_trace_info,
  kl_ftrace_trace_next,
  kl_ftrace_trace_close,
  ftrace_live_next,
};
