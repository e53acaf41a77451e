/*
 * live.c - real-time sessions on Linux: the instance's per-CPU
 * trace_pipe_raw files read as the kernel fills them.
 *
 * Reading: a CPU's file is read a batch at a time, never an event at a
 * time.  splice() moves the whole sub-buffers the ring holds (up to
 * BATCH_BYTES) into a pipe and one read() brings them into the CPU's batch
 * buffer; when the ring has no whole sub-buffer, one read() takes the page
 * the writer is on (the kernel hands a partial page only to read()).
 * kbuffer then walks the records in memory; decode.c turns them into the
 * same event tables as the trace.dat reader, with a tep built from the
 * live tracefs.
 *
 * Merging: the next event is the oldest among the CPUs' current records.
 * When one CPU's batch runs out, every CPU whose batch is empty is read
 * again in the same pass.  What a CPU yields was therefore read no earlier
 * than any other CPU was last looked at, and the order across CPUs holds
 * up to the few microseconds a pass takes.  A CPU found empty is not read
 * again until another CPU's batch runs out or a wait ends: no system call
 * per event.
 *
 * Waiting: poll() on every CPU's file in slices of at most SLICE_MS.  The
 * instance's buffer_percent (WAKE_PERCENT, set when the reader opens)
 * wakes it early when the ring fills fast; after each slice the partial
 * pages are read, so a quiet CPU's events come out within a slice.
 * Between slices tracing_on is checked, so that a stop from any process
 * (which turns tracing off first, then removes the instance) ends the
 * iteration and the readers close in time for its rmdir.
 *
 * The reading process: its own system calls would fill the ring it reads.
 * Its threads go into the instance's set_event_notrace_pid (Linux 5.8+)
 * while it reads, unless an iteration asks for self = true, and come out
 * when the reader closes.
 *
 * Comms: a pid -> comm table of the reader's own, fed in stream order by
 * task:task_newtask, task:task_rename and sched:sched_process_exec (and
 * sched:sched_process_fork when the session has it).  The reader enables
 * the first three if the session did not ask for them, and then never
 * yields them.  A pid seen without them (it started before the reader
 * opened) is looked up in /proc/PID/comm, then in the kernel's
 * saved_cmdlines.
 */
#define _GNU_SOURCE
#include "ftrace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event-parse.h>
#include <kbuffer.h>
#include <tracefs.h>

#define SLICE_MS 50
#define WAKE_PERCENT "25"
#define BATCH_BYTES (256 * 1024)
#define COMM_LEN 16
#define COMM_RETRY_S 0.5
#define MAX_TIDS 1024
#define SKIPS_PER_CLOCK 4096   /* records filtered out between two deadline checks */

/* ------------------------------------------------------------------ */
/* State                                                               */
/* ------------------------------------------------------------------ */

typedef struct live_cpu {
  int fd;                   /* trace_pipe_raw (O_NONBLOCK), -1 when closed */
  int pipe_rd, pipe_wr;     /* splice's pipe; -1: read() only */
  unsigned char *buf;       /* the batch: len bytes of whole sub-buffers */
  size_t len, off;          /* off: the sub-buffer loaded in kbuf */
  int dry;                  /* the last read found nothing */
  int behind;               /* the last splice filled a whole batch: more may wait */
  struct kbuffer *kbuf;
  void *data;               /* the current record, NULL when the batch is used up */
  unsigned long long ts;
  int stats_fd;             /* per_cpu/cpuN/stats, -1 when closed */
  long long dropped;        /* its "dropped events" when last read */
  int lost_pending;         /* a lost-events marker is due before the next record */
  long long missed;         /* its count, -1 unknown */
  unsigned long long lost_ts;
} live_cpu;

typedef enum { CS_NEWTASK, CS_RENAME, CS_EXEC, CS_FORK } comm_kind;

/* The events that name processes. pid NULL: the task's own (common_pid). */
static const struct {
  const char *sys, *event, *pid, *comm;
  comm_kind kind;
  int enable;               /* the reader turns it on when the session has not */
} comm_defs[] = {
  {"task", "task_newtask", "pid", "comm", CS_NEWTASK, 1},
  {"task", "task_rename", "pid", "newcomm", CS_RENAME, 1},
  {"sched", "sched_process_exec", "pid", "filename", CS_EXEC, 1},
  {"sched", "sched_process_fork", "child_pid", "child_comm", CS_FORK, 0},
};
#define NCOMM_DEFS (sizeof comm_defs / sizeof comm_defs[0])

typedef struct comm_src {
  size_t def;               /* its comm_defs entry */
  int id;
  comm_kind kind;
  int hidden;               /* enabled by the reader: read, never yielded */
  struct tep_format_field *pid, *comm;
} comm_src;

typedef struct comm_slot {
  int pid;                  /* 0: free */
  int known;                /* 0: a guess, looked up again after `retry` */
  double retry;
  char comm[COMM_LEN];
} comm_slot;

struct kl_live {
  char name[KL_NAME_MAX + 1];
  struct tracefs_instance *inst;
  struct tep_handle *tep;
  int full;                 /* tep holds every event format, not only the session's systems */
  unsigned char *idstate;   /* per event id: 0 not looked up, 1 in tep, 2 not in tep */
  kl_decoder *dec;
  int ncpus;
  size_t subbuf, batch;
  live_cpu *cpus;
  struct pollfd *pfds;
  comm_src src[NCOMM_DEFS];
  size_t nsrc;
  comm_slot *comms;         /* open addressing on pid */
  size_t ncomms, commcap;
  char *cmdlines;           /* saved_cmdlines as last read */
  double cmdlines_at;
  int tids[MAX_TIDS];       /* this process's threads in set_event_notrace_pid */
  int ntids;
  int stopping;             /* tracing is off: drain, then end */
  int ended;                /* tracing went off and the ring is drained */
};

/* ------------------------------------------------------------------ */
/* Comms                                                               */
/* ------------------------------------------------------------------ */

static comm_slot *comm_slot_of(kl_live *lv, int pid) {
  size_t mask, i;
  if (lv->commcap == 0) return NULL;
  mask = lv->commcap - 1;
  for (i = (size_t)pid * 2654435761u & mask;; i = (i + 1) & mask) {
    if (lv->comms[i].pid == pid) return &lv->comms[i];
    if (lv->comms[i].pid == 0) return NULL;
  }
}

/* Set pid's comm (len bytes, no NUL needed); NULL when out of memory. */
static comm_slot *comm_put(kl_live *lv, int pid, const char *comm, size_t len, int known) {
  comm_slot *s = comm_slot_of(lv, pid);
  size_t i;
  if (!s) {
    if ((lv->ncomms + 1) * 2 > lv->commcap) {
      size_t cap = lv->commcap ? lv->commcap * 2 : 1024, mask = cap - 1, j;
      comm_slot *n = calloc(cap, sizeof *n);
      if (!n) return NULL;
      for (j = 0; j < lv->commcap; j++) {
        if (lv->comms[j].pid == 0) continue;
        for (i = (size_t)lv->comms[j].pid * 2654435761u & mask; n[i].pid; i = (i + 1) & mask) {}
        n[i] = lv->comms[j];
      }
      free(lv->comms);
      lv->comms = n;
      lv->commcap = cap;
    }
    for (i = (size_t)pid * 2654435761u & (lv->commcap - 1); lv->comms[i].pid;
         i = (i + 1) & (lv->commcap - 1)) {}
    s = &lv->comms[i];
    s->pid = pid;
    lv->ncomms++;
  }
  if (len >= COMM_LEN) len = COMM_LEN - 1;
  memcpy(s->comm, comm, len);
  s->comm[len] = '\0';
  s->known = known;
  s->retry = known ? 0 : kl_monotime() + COMM_RETRY_S;
  return s;
}

/* A field's bytes in a record: fixed arrays, __data_loc and __rel_loc. */
static const char *field_bytes(const struct tep_format_field *fl, const struct tep_record *r,
                               size_t *len) {
  const unsigned char *d = r->data;
  size_t size = (size_t)r->size, off = (size_t)fl->offset, n = (size_t)fl->size;
  if (fl->offset < 0 || off + n > size) return NULL;
  if (fl->flags & TEP_FIELD_IS_DYNAMIC) {
    uint32_t loc;
    if (n < 4) return NULL;
    memcpy(&loc, d + off, 4);
    n = loc >> 16;
    off = (fl->flags & TEP_FIELD_IS_RELATIVE ? off + 4 : 0) + (loc & 0xffff);
    if (off > size || n > size - off) return NULL;
  }
  *len = strnlen((const char *)d + off, n);
  return (const char *)d + off;
}

/* A record of a naming event updates the table; 1 if it is not yielded. */
static int comm_event(kl_live *lv, const struct tep_record *r) {
  const comm_src *cs = NULL;
  const char *txt;
  size_t i, len;
  int id, pid;
  if (lv->nsrc == 0 || r->size < 8) return 0;
  id = tep_data_type(lv->tep, (struct tep_record *)r);
  for (i = 0; i < lv->nsrc && !cs; i++)
    if (lv->src[i].id == id) cs = &lv->src[i];
  if (!cs) return 0;
  pid = tep_data_pid(lv->tep, (struct tep_record *)r);
  if (cs->pid) {
    int32_t v;
    if (cs->pid->offset < 0 || (size_t)cs->pid->offset + 4 > (size_t)r->size) return cs->hidden;
    memcpy(&v, (const unsigned char *)r->data + cs->pid->offset, 4);
    pid = v;
  }
  txt = field_bytes(cs->comm, r, &len);
  if (pid > 0 && txt && len > 0) {
    if (cs->kind == CS_EXEC) {  /* the new comm is the file's name */
      const char *slash = memrchr(txt, '/', len);
      if (slash) {
        len -= (size_t)(slash + 1 - txt);
        txt = slash + 1;
      }
    }
    comm_put(lv, pid, txt, len, 1);
  }
  return cs->hidden;
}

/* pid's comm in the kernel's saved_cmdlines (read again at most every
 * COMM_RETRY_S); 0 if it is not there. */
static int saved_comm(kl_live *lv, int pid, char *out) {
  char key[24], *p;
  size_t n;
  if (!lv->cmdlines || kl_monotime() - lv->cmdlines_at > COMM_RETRY_S) {
    free(lv->cmdlines);
    lv->cmdlines = tracefs_instance_file_read(NULL, "saved_cmdlines", NULL);
    lv->cmdlines_at = kl_monotime();
  }
  if (!lv->cmdlines) return 0;
  n = (size_t)snprintf(key, sizeof key, "%d ", pid);
  for (p = lv->cmdlines; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
    if (strncmp(p, key, n) == 0) {
      size_t len = strcspn(p + n, "\n");
      if (len >= COMM_LEN) len = COMM_LEN - 1;
      memcpy(out, p + n, len);
      out[len] = '\0';
      return len > 0;
    }
  }
  return 0;
}

static int proc_comm(int pid, char *out) {
  char path[48];
  ssize_t n;
  int fd;
  snprintf(path, sizeof path, "/proc/%d/comm", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  n = read(fd, out, COMM_LEN);
  close(fd);
  if (n <= 0) return 0;
  if (n > COMM_LEN - 1) n = COMM_LEN - 1;
  if (out[n - 1] == '\n') n--;
  out[n] = '\0';
  return n > 0;
}

/* The comm of pid for an event: the table, else /proc, else saved_cmdlines. */
static const char *comm_of(kl_live *lv, int pid, const char *fallback) {
  comm_slot *s = comm_slot_of(lv, pid);
  char buf[COMM_LEN];
  if (s && (s->known || kl_monotime() < s->retry)) return s->comm;
  if (proc_comm(pid, buf)) s = comm_put(lv, pid, buf, strlen(buf), 1);
  else if (saved_comm(lv, pid, buf)) s = comm_put(lv, pid, buf, strlen(buf), 0);
  else if (fallback) s = comm_put(lv, pid, fallback, strlen(fallback), 0);
  return s ? s->comm : fallback;
}

static int list_has(const char *list, const char *item) {
  size_t il = strlen(item);
  const char *p = list;
  while (p && (p = strstr(p, item)) != NULL) {
    if ((p == list || p[-1] == ',') && (p[il] == ',' || p[il] == '\0')) return 1;
    p += il;
  }
  return 0;
}

/* Point cs at its event's format in the reader's tep; 0 if it has none. */
static int comm_bind(kl_live *lv, comm_src *cs) {
  struct tep_event *e = tep_find_event_by_name(lv->tep, comm_defs[cs->def].sys,
                                               comm_defs[cs->def].event);
  if (!e) return 0;
  cs->id = e->id;
  cs->kind = comm_defs[cs->def].kind;
  cs->pid = tep_find_field(e, comm_defs[cs->def].pid);  /* task_rename lost its pid in 6.x */
  cs->comm = tep_find_field(e, comm_defs[cs->def].comm);
  return cs->comm && (cs->pid || cs->kind == CS_RENAME);
}

/* Find the naming events; enable those the session lacks (they stay on
 * for the session's life: another reader may rely on them). */
static void comm_setup(kl_live *lv, const char *asked) {
  size_t i;
  for (i = 0; i < NCOMM_DEFS; i++) {
    comm_src *cs = &lv->src[lv->nsrc];
    char full[96], file[128];
    cs->def = i;
    if (!comm_bind(lv, cs)) continue;
    snprintf(full, sizeof full, "%s:%s", comm_defs[i].sys, comm_defs[i].event);
    cs->hidden = !list_has(asked, full);
    if (cs->hidden) {
      if (!comm_defs[i].enable) continue;
      snprintf(file, sizeof file, "events/%s/%s/enable", comm_defs[i].sys, comm_defs[i].event);
      if (tracefs_instance_file_write(lv->inst, file, "1") < 0) continue;
    }
    lv->nsrc++;
  }
}

/* ------------------------------------------------------------------ */
/* The reading process                                                 */
/* ------------------------------------------------------------------ */

static char *notrace_path(kl_live *lv) {
  return tracefs_instance_get_file(lv->inst, "set_event_notrace_pid");
}

/* Write text to the notrace list; trunc: replace it. 0, or an errno. */
static int notrace_write(kl_live *lv, const char *text, int trunc) {
  char *path = notrace_path(lv);
  int fd, e = 0;
  size_t len = strlen(text);
  if (!path) return ENOMEM;
  fd = open(path, O_WRONLY | O_CLOEXEC | (trunc ? O_TRUNC : 0));
  if (fd < 0) e = errno;
  tracefs_put_tracing_file(path);
  if (fd < 0) return e;
  if (len > 0 && write(fd, text, len) != (ssize_t)len) e = errno ? errno : EIO;
  close(fd);
  return e;
}

static int has_tid(const kl_live *lv, long pid) {
  int i;
  for (i = 0; i < lv->ntids; i++)
    if (lv->tids[i] == pid) return 1;
  return 0;
}

/* Put this process's threads into the instance's notrace list (on), or
 * take them out again (off).  A kernel without the list (before 5.8)
 * traces the reader. */
static int self_exclude(kl_live *lv, int on, kl_err *err) {
  char text[MAX_TIDS * 12 + 2], *list, *out, *p, *end;
  size_t n = 0;
  int e;
  if (on == (lv->ntids > 0)) return 0;
  if (on) {
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL && lv->ntids < MAX_TIDS) {
      int tid = atoi(de->d_name);
      if (tid <= 0) continue;
      lv->tids[lv->ntids++] = tid;
      n += (size_t)snprintf(text + n, sizeof text - n, "%d ", tid);
    }
    if (d) closedir(d);
    if (n == 0) return 0;
    e = notrace_write(lv, text, 0);
    if (e == 0 || e == ENOENT) {
      if (e) lv->ntids = 0;
      return 0;
    }
    lv->ntids = 0;
    return kl_err_set(err, kl_code_from_errno(e), e,
                      "events %s: cannot exclude the reading process (set_event_notrace_pid): "
                      "%s (errno %d)", lv->name, strerror(e), e);
  }
  /* off: write back the list without our threads */
  list = tracefs_instance_file_read(lv->inst, "set_event_notrace_pid", NULL);
  out = list ? malloc(strlen(list) + 2) : NULL;
  for (p = list; out && *p; p = end) {
    long pid = strtol(p, &end, 10);
    if (end == p) {
      end = p + 1;
      continue;
    }
    /* each entry is written no longer than it was read, with its separator */
    if (pid > 0 && !has_tid(lv, pid)) n += (size_t)sprintf(out + n, "%ld ", pid);
  }
  lv->ntids = 0;
  free(list);
  if (!out) return 0;
  out[n] = '\0';
  e = notrace_write(lv, out, 1);
  free(out);
  if (e == 0 || e == ENOENT) return 0;
  return kl_err_set(err, kl_code_from_errno(e), e,
                    "events %s: cannot include the reading process (set_event_notrace_pid): "
                    "%s (errno %d)", lv->name, strerror(e), e);
}

/* ------------------------------------------------------------------ */
/* Open and close                                                      */
/* ------------------------------------------------------------------ */

static int tracing_is_on(kl_live *lv);

void kl_live_close(kl_live *lv) {
  int c;
  kl_err ignored;
  if (!lv) return;
  /* Take this process out of the notrace list, unless the session is
   * stopping: the list goes with the instance, and changing it waits for an
   * RCU grace period (about 80 ms measured) while the stopper's rmdir
   * fails with EBUSY as long as the file is open. */
  if (lv->ntids > 0 && !lv->stopping && tracing_is_on(lv)) self_exclude(lv, 0, &ignored);
  for (c = 0; lv->cpus && c < lv->ncpus; c++) {
    live_cpu *lc = &lv->cpus[c];
    if (lc->fd >= 0) close(lc->fd);
    if (lc->pipe_rd >= 0) close(lc->pipe_rd);
    if (lc->pipe_wr >= 0) close(lc->pipe_wr);
    if (lc->stats_fd >= 0) close(lc->stats_fd);
    if (lc->kbuf) kbuffer_free(lc->kbuf);
    free(lc->buf);
  }
  free(lv->cpus);
  free(lv->pfds);
  free(lv->comms);
  free(lv->cmdlines);
  free(lv->idstate);
  kl_decoder_free(lv->dec);
  if (lv->tep) tep_free(lv->tep);
  free(lv);
}

static int count_cpus(struct tracefs_instance *inst) {
  int n = 0;
  char file[64];
  for (;;) {
    char *p;
    int ok;
    snprintf(file, sizeof file, "per_cpu/cpu%d", n);
    p = tracefs_instance_get_file(inst, file);
    ok = p != NULL && access(p, F_OK) == 0;
    tracefs_put_tracing_file(p);
    if (!ok || n >= KL_MAX_CPUS) return n;
    n++;
  }
}

/* The pipe splice fills: batch bytes of whole sub-buffers, or none (read()
 * only) when the system refuses it. */
static void open_pipe(kl_live *lv, live_cpu *lc) {
  int p[2], size;
  lc->pipe_rd = lc->pipe_wr = -1;
  if (pipe2(p, O_CLOEXEC) != 0) return;
  fcntl(p[1], F_SETPIPE_SZ, BATCH_BYTES);
  size = fcntl(p[1], F_GETPIPE_SZ);
  if (size <= 0 || (size_t)size < lv->subbuf) {
    close(p[0]);
    close(p[1]);
    return;
  }
  if (lv->batch == 0 || (size_t)size < lv->batch) lv->batch = (size_t)size / lv->subbuf * lv->subbuf;
  lc->pipe_rd = p[0];
  lc->pipe_wr = p[1];
}

static int open_cpu(kl_live *lv, int c, kl_err *err) {
  live_cpu *lc = &lv->cpus[c];
  char file[64], *path;
  int e;
  snprintf(file, sizeof file, "per_cpu/cpu%d/trace_pipe_raw", c);
  path = tracefs_instance_get_file(lv->inst, file);
  if (!path) goto oom;
  lc->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  e = errno;
  tracefs_put_tracing_file(path);
  if (lc->fd < 0)
    return kl_err_set(err, kl_code_from_errno(e), e,
                      "events %s: cannot open CPU %d's %s: %s (errno %d)", lv->name, c, file,
                      strerror(e), e);
  snprintf(file, sizeof file, "per_cpu/cpu%d/stats", c);
  path = tracefs_instance_get_file(lv->inst, file);
  if (!path) goto oom;
  lc->stats_fd = open(path, O_RDONLY | O_CLOEXEC);
  tracefs_put_tracing_file(path);
  /* counted from the start of the session: what was dropped before this
   * reader opened is lost to it too */
  lc->dropped = lc->stats_fd >= 0 ? 0 : -1;
  open_pipe(lv, lc);
  lc->kbuf = tep_kbuffer(lv->tep);
  if (!lc->kbuf) goto oom;
  lv->pfds[c].fd = lc->fd;
  lv->pfds[c].events = POLLIN;
  return 0;
oom:
  return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "events %s: out of memory", lv->name);
}

/* The whole of a tracefs file, NUL-terminated (malloc'd); NULL on failure. */
static char *slurp(const char *path, size_t *len) {
  size_t cap = 8192, n = 0;
  char *buf = malloc(cap), *nb;
  ssize_t r;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || !buf) goto fail;
  while ((r = read(fd, buf + n, cap - n - 1)) > 0) {
    n += (size_t)r;
    if (n + 1 == cap) {
      if ((nb = realloc(buf, cap * 2)) == NULL) goto fail;
      buf = nb;
      cap *= 2;
    }
  }
  if (r < 0) goto fail;
  close(fd);
  buf[n] = '\0';
  *len = n;
  return buf;
fail:
  if (fd >= 0) close(fd);
  free(buf);
  return NULL;
}

/* Parse the formats of every event of one system into tep. */
static void load_system(struct tep_handle *tep, const char *events_dir, const char *sys) {
  char path[KL_PATH_MAX];
  struct dirent *de;
  DIR *d;
  snprintf(path, sizeof path, "%s/%s", events_dir, sys);
  if ((d = opendir(path)) == NULL) return;
  while ((de = readdir(d)) != NULL) {
    size_t len;
    char *fmt;
    if (de->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s/%s/format", events_dir, sys, de->d_name);
    if ((fmt = slurp(path, &len)) == NULL) continue;
    tep_parse_event(tep, fmt, len, sys);
    free(fmt);
  }
  closedir(d);
}

/* The event formats of the session's systems, plus those the reader itself
 * reads (ftrace: kernel_stack; task and sched: comms), with the instance's
 * page header.  Only these: libtracefs's tracefs_local_events parses every
 * format of the machine and /proc/kallsyms, half a second here, while the
 * ring fills.  NULL on failure (errno). */
static struct tep_handle *load_formats(struct tracefs_instance *inst, const char *asked) {
  char buf[8192], path[KL_PATH_MAX], *tok, *save = NULL, *events_dir, *hp;
  const char *systems[KL_MAX_TRACEPOINTS + 4];
  size_t n = 0, i, len;
  struct tep_handle *tep;
  systems[n++] = "ftrace";
  systems[n++] = "task";
  systems[n++] = "sched";
  snprintf(buf, sizeof buf, "%s", asked);
  for (tok = strtok_r(buf, ",", &save); tok && n < KL_MAX_TRACEPOINTS + 3;
       tok = strtok_r(NULL, ",", &save)) {
    char *colon = strchr(tok, ':');
    if (colon) *colon = '\0';
    for (i = 0; i < n && strcmp(systems[i], tok) != 0; i++) {}
    if (i == n && !strchr(tok, '/') && strcmp(tok, "..") != 0) systems[n++] = tok;
  }
  events_dir = tracefs_instance_get_file(inst, "events");
  if (!events_dir) return NULL;
  snprintf(path, sizeof path, "%s/header_page", events_dir);
  hp = slurp(path, &len);
  tep = hp ? tep_alloc() : NULL;
  if (tep && tep_parse_header_page(tep, hp, len, (int)sizeof(long)) != 0) {
    tep_free(tep);
    tep = NULL;
    errno = EINVAL;
  }
  free(hp);
  for (i = 0; tep && i < n; i++) load_system(tep, events_dir, systems[i]);
  tracefs_put_tracing_file(events_dir);
  return tep;
}

/* A record of a type the tep lacks (the session's events changed since the
 * reader opened): load every format once.  -1 on error. */
static int load_all_formats(kl_live *lv, kl_err *err) {
  struct tep_handle *tep;
  size_t i;
  int e;
  errno = 0;
  tep = tracefs_local_events(NULL);
  lv->full = 1;
  if (!tep) {
    e = errno ? errno : EIO;
    return kl_err_set(err, kl_code_from_errno(e), e,
                      "events %s: cannot read the event formats from tracefs: %s (errno %d)",
                      lv->name, strerror(e), e);
  }
  tep_set_long_size(tep, (int)sizeof(long));
  kl_decoder_set_tep(lv->dec, tep);
  tep_free(lv->tep);
  lv->tep = tep;
  for (i = 0; i < lv->nsrc; i++) comm_bind(lv, &lv->src[i]);
  return 0;
}

kl_live *kl_live_open(struct tracefs_instance *inst, const char *name, const char *asked,
                      kl_err *err) {
  kl_live *lv = calloc(1, sizeof *lv);
  long long kb = 0;
  int c, e;
  char what[KL_NAME_MAX + 16];

  if (!lv) goto oom;
  snprintf(lv->name, sizeof lv->name, "%s", name);
  lv->inst = inst;
  /* first of all, so that opening (thousands of reads of event formats)
   * leaves nothing in the ring; an iteration with self = true undoes it */
  if (self_exclude(lv, 1, err) != 0) goto error;
  errno = 0;
  lv->tep = load_formats(inst, asked ? asked : "");
  if (!lv->tep) {
    e = errno ? errno : EIO;
    kl_err_set(err, kl_code_from_errno(e), e,
               "events %s: cannot read the event formats from tracefs: %s (errno %d)", name,
               strerror(e), e);
    goto error;
  }
  tep_set_long_size(lv->tep, (int)sizeof(long));
  snprintf(what, sizeof what, "events %s", name);
  lv->dec = kl_decoder_new(lv->tep, (int)sizeof(long), 0, what, err);
  if (!lv->dec) goto error;
  if (tracefs_instance_file_read_number(inst, "buffer_subbuf_size_kb", &kb) == 0 && kb > 0)
    lv->subbuf = (size_t)kb * 1024;
  else
    lv->subbuf = (size_t)sysconf(_SC_PAGESIZE);
  lv->ncpus = count_cpus(inst);
  if (lv->ncpus <= 0) {
    kl_err_set(err, KL_E_NOT_FOUND, ENOENT, "events %s: the instance has no per_cpu folder",
               name);
    goto error;
  }
  lv->cpus = calloc((size_t)lv->ncpus, sizeof *lv->cpus);
  lv->pfds = calloc((size_t)lv->ncpus, sizeof *lv->pfds);
  lv->idstate = calloc(65536, 1);
  if (!lv->cpus || !lv->pfds || !lv->idstate) goto oom;
  for (c = 0; c < lv->ncpus; c++)
    lv->cpus[c].fd = lv->cpus[c].stats_fd = lv->cpus[c].pipe_rd = lv->cpus[c].pipe_wr = -1;
  comm_setup(lv, asked ? asked : "");
  /* wake a waiting reader when a quarter of a CPU's ring is full (Linux
   * 5.0+; without it poll wakes on any data, which also works) */
  tracefs_instance_file_write(inst, "buffer_percent", WAKE_PERCENT);
  for (c = 0; c < lv->ncpus; c++)
    if (open_cpu(lv, c, err) != 0) goto error;
  if (lv->batch < lv->subbuf) lv->batch = lv->subbuf;
  for (c = 0; c < lv->ncpus; c++)
    if ((lv->cpus[c].buf = malloc(lv->batch)) == NULL) goto oom;
  return lv;

oom:
  kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "events %s: out of memory", name);
error:
  kl_live_close(lv);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Batches                                                             */
/* ------------------------------------------------------------------ */

/* The CPU's "dropped events" counter: with overwrite off the kernel drops
 * new events when the ring is full and says so only there (pages carry no
 * missed-events mark then).  -1 if unknown. */
static long long cpu_dropped(live_cpu *lc) {
  char buf[512], *p;
  ssize_t n;
  if (lc->stats_fd < 0) return -1;
  n = pread(lc->stats_fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return -1;
  buf[n] = '\0';
  p = strstr(buf, "dropped events:");
  return p ? strtoll(p + 15, NULL, 10) : -1;
}

/* Note events lost on a CPU: a marker is due before its next record. */
static void note_lost(live_cpu *lc, long long missed, unsigned long long ts) {
  if (lc->lost_pending) {
    if (lc->missed >= 0) lc->missed = missed < 0 ? -1 : lc->missed + missed;
    return;
  }
  lc->lost_pending = 1;
  lc->missed = missed;
  lc->lost_ts = ts;
}

/* Load the batch's sub-buffers from lc->off on until one has a record. */
static void load_page(kl_live *lv, live_cpu *lc) {
  lc->data = NULL;
  for (; lc->off < lc->len; lc->off += lv->subbuf) {
    long long missed;
    if (kbuffer_load_subbuffer(lc->kbuf, lc->buf + lc->off) < 0) continue;
    lc->data = kbuffer_read_event(lc->kbuf, &lc->ts);
    missed = kbuffer_missed_events(lc->kbuf);  /* overwritten: -1 when the count is unknown */
    if (missed != 0) note_lost(lc, missed, lc->ts);
    if (lc->data) return;
  }
}

/* Past the current record; the batch stays in memory until the next refill. */
static void advance(kl_live *lv, live_cpu *lc) {
  lc->data = kbuffer_next_event(lc->kbuf, &lc->ts);
  if (!lc->data) {
    lc->off += lv->subbuf;
    load_page(lv, lc);
  }
}

static int has_head(const live_cpu *lc) {
  return lc->data != NULL || lc->lost_pending;
}

static int read_error(kl_live *lv, int c, const char *what, int e, kl_err *err) {
  return kl_err_set(err, kl_code_from_errno(e), e, "events %s: %s CPU %d's trace_pipe_raw: %s (errno %d)",
                    lv->name, what, c, strerror(e), e);
}

/* Splice CPU c's whole sub-buffers into its batch: bytes, 0 none, -1 error. */
static ssize_t splice_batch(kl_live *lv, int c, kl_err *err) {
  live_cpu *lc = &lv->cpus[c];
  ssize_t n = splice(lc->fd, NULL, lc->pipe_wr, NULL, lv->batch, SPLICE_F_NONBLOCK), got = 0;
  if (n < 0) {
    if (errno != EAGAIN && errno != EINTR) {  /* no splice here: read() from now on */
      close(lc->pipe_rd);
      close(lc->pipe_wr);
      lc->pipe_rd = lc->pipe_wr = -1;
    }
    return 0;
  }
  while (got < n) {
    ssize_t r = read(lc->pipe_rd, lc->buf + got, (size_t)(n - got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return read_error(lv, c, "moving", r < 0 ? errno : EIO, err);
    got += r;
  }
  return n;
}

/* Read CPU c's next batch.  1: a record or a marker is ready; 0: nothing
 * now; -1: error. */
static int refill(kl_live *lv, int c, kl_err *err) {
  live_cpu *lc = &lv->cpus[c];
  ssize_t n = 0;
  long long d;
  lc->len = lc->off = 0;
  lc->data = NULL;
  if (lc->pipe_wr >= 0 && (n = splice_batch(lv, c, err)) < 0) return -1;
  lc->behind = n == (ssize_t)lv->batch;
  if (n == 0) {  /* no whole sub-buffer: the page the writer is on */
    n = read(lc->fd, lc->buf, lv->subbuf);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return read_error(lv, c, "reading", errno, err);
    if (n <= 0) return 0;
    if ((size_t)n < lv->subbuf) memset(lc->buf + n, 0, lv->subbuf - (size_t)n);
    n = (ssize_t)lv->subbuf;
  }
  lc->len = (size_t)n;
  /* drops happen while the ring is full: they are newer than what was
   * read so far on this CPU, and the marker goes here */
  d = cpu_dropped(lc);
  if (d > lc->dropped && lc->dropped >= 0) note_lost(lc, d - lc->dropped, lc->ts);
  if (d >= 0) lc->dropped = d;
  load_page(lv, lc);
  return has_head(lc);
}

static int cpu_wanted(const kl_filter *f, int c) {
  return !f || f->cpu < 0 || f->cpu == c;
}

/* Read every CPU whose batch is used up.  A CPU the filter does not want
 * is read too (so its ring does not fill), its naming events noted. */
static int refill_pass(kl_live *lv, const kl_filter *f, kl_err *err) {
  int c, r;
  for (c = 0; c < lv->ncpus; c++) {
    live_cpu *lc = &lv->cpus[c];
    if (has_head(lc)) continue;
    if ((r = refill(lv, c, err)) < 0) return -1;
    lc->dry = r == 0;
    if (cpu_wanted(f, c)) continue;
    while (lc->data) {
      struct tep_record rec;
      memset(&rec, 0, sizeof rec);
      rec.data = lc->data;
      rec.size = kbuffer_event_size(lc->kbuf);
      comm_event(lv, &rec);
      advance(lv, lc);
    }
    lc->lost_pending = 0;
    lc->dry = 1;
  }
  return 0;
}

/* The wanted CPU whose head is the oldest, -1 if none (*failed on error). */
static int oldest(kl_live *lv, const kl_filter *f, kl_err *err, int *failed) {
  int c, best = -1, need = 0;
  unsigned long long best_ts = 0;
  *failed = 0;
  for (c = 0; c < lv->ncpus && !need; c++)
    need = !lv->cpus[c].dry && !has_head(&lv->cpus[c]);
  if (need && refill_pass(lv, f, err) < 0) {
    *failed = 1;
    return -1;
  }
  for (c = 0; c < lv->ncpus; c++) {
    const live_cpu *lc = &lv->cpus[c];
    unsigned long long ts;
    if (!has_head(lc) || !cpu_wanted(f, c)) continue;
    ts = lc->lost_pending ? lc->lost_ts : lc->ts;
    if (best < 0 || ts < best_ts) {
      best = c;
      best_ts = ts;
    }
  }
  return best;
}

/* ------------------------------------------------------------------ */
/* Events                                                              */
/* ------------------------------------------------------------------ */

/* Hand out CPU c's head: 1 ev filled, 0 filtered out, -1 error. */
static int take(kl_live *lv, int c, const kl_filter *f, kl_event *ev, kl_err *err) {
  live_cpu *lc = &lv->cpus[c];
  struct tep_record rec;
  int got;
  if (lc->lost_pending) {
    lc->lost_pending = 0;
    if (!kl_filter_wants_lost(f) || (f && f->pid >= 0)) return 0;
    memset(ev, 0, sizeof *ev);
    ev->time = lc->lost_ts;
    ev->cpu = c;
    ev->pid = -1;
    ev->name = "lost_events";
    ev->lost = lc->missed > 0 ? (uint64_t)lc->missed : UINT64_MAX;
    return 1;
  }
  memset(&rec, 0, sizeof rec);
  rec.ts = lc->ts;
  rec.cpu = c;
  rec.data = lc->data;
  rec.size = kbuffer_event_size(lc->kbuf);
  rec.record_size = rec.size;
  advance(lv, lc);  /* the record stays in the batch until the next call */
  if (!lv->full && rec.size >= 2) {
    int id = tep_data_type(lv->tep, &rec) & 0xffff;
    if (lv->idstate[id] == 0) lv->idstate[id] = tep_find_event(lv->tep, id) ? 1 : 2;
    if (lv->idstate[id] == 2 && load_all_formats(lv, err) != 0) return -1;
  }
  if (comm_event(lv, &rec)) return 0;
  got = kl_decoder_event(lv->dec, f, &rec, ev, err);
  if (got == 1 && ev->pid > 0) ev->comm = comm_of(lv, ev->pid, ev->comm);
  return got;
}

static int tracing_is_on(kl_live *lv) {
  long long on = 1;
  if (!tracefs_instance_exists(lv->name)) return 0;
  if (tracefs_instance_file_read_number(lv->inst, "tracing_on", &on) != 0) return 1;
  return on != 0;
}

int kl_live_ended(const kl_live *lv) {
  return lv == NULL || lv->ended;
}

/* Nothing is ready: wait for data, the deadline, or the end of tracing.
 * 1: read again; 0: the deadline passed or the session ended; -1: error. */
static int wait_data(kl_live *lv, double deadline, kl_err *err) {
  int c, wait_ms = SLICE_MS;
  if (lv->stopping) {  /* tracing was off and a full pass found nothing */
    lv->ended = 1;
    return 0;
  }
  if (!tracing_is_on(lv)) {
    lv->stopping = 1;
  } else {
    if (deadline >= 0) {
      double left = deadline - kl_monotime();
      if (left <= 0) return 0;
      if (left * 1000 < wait_ms) wait_ms = (int)(left * 1000) + 1;
    }
    if (poll(lv->pfds, (nfds_t)lv->ncpus, wait_ms) < 0 && errno == EINTR)
      return kl_err_set(err, KL_E_IO, EINTR, "events %s: interrupted by a signal", lv->name);
  }
  for (c = 0; c < lv->ncpus; c++) lv->cpus[c].dry = 0;
  return 1;
}

/* A filter that drops a steady stream still ends at the deadline, but not
 * while a backlog is being read: the wanted events may be in it. */
static int past_deadline(const kl_live *lv, double deadline) {
  int c;
  if (deadline < 0 || kl_monotime() <= deadline) return 0;
  for (c = 0; c < lv->ncpus; c++)
    if (lv->cpus[c].behind) return 0;
  return 1;
}

int kl_live_next(kl_live *lv, const kl_filter *f, int fresh, double timeout, kl_event *ev,
                 kl_err *err) {
  double deadline = timeout >= 0 ? kl_monotime() + timeout : -1;
  unsigned skipped = 0;
  if (fresh) {
    kl_decoder_new_filter(lv->dec);
    if (self_exclude(lv, !(f && f->self), err) != 0) return -1;
  }
  for (;;) {
    int failed, r, c = oldest(lv, f, err, &failed);
    if (failed) return -1;
    if (c >= 0) {
      if ((r = take(lv, c, f, ev, err)) != 0) return r;
      if (++skipped % SKIPS_PER_CLOCK == 0 && past_deadline(lv, deadline)) return 0;
      continue;
    }
    if (lv->ended) return 0;
    if ((r = wait_data(lv, deadline, err)) <= 0) return r;
  }
}
