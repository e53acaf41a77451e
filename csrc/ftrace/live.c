/*
 * live.c - real-time sessions on Linux: the instance's per-CPU
 * trace_pipe_raw files read as the kernel fills them.
 *
 * Each CPU's file hands out ring sub-buffers (a partial one when the
 * writer is still on it); kbuffer walks the records of the page it holds.
 * The next event is the oldest among the CPUs' current records.  Events
 * are decoded by decode.c, exactly as the trace.dat reader decodes them,
 * with a tep built from the live tracefs.
 *
 * Waiting: non-blocking reads, then poll() on every CPU's file in slices
 * of at most 100 ms (the instance's buffer_percent is 0, so poll wakes on
 * any event); between slices tracing_on is checked, so that a stop from
 * any process (which turns tracing off first, then removes the instance)
 * ends the iteration and the readers close in time for its rmdir.
 */
#define _GNU_SOURCE
#include "ftrace.h"

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

#define SLICE_MS 100
#define COMM_RELOAD_S 0.5

typedef struct live_cpu {
  int fd;                   /* trace_pipe_raw, -1 when closed */
  struct kbuffer *kbuf;
  unsigned char *page;
  int loaded;               /* a page is in kbuf */
  void *data;               /* the current record, NULL if the page is used up */
  unsigned long long ts;
  int stats_fd;             /* per_cpu/cpuN/stats, -1 when closed */
  long long dropped;        /* its "dropped events" when last read */
  int lost_pending;         /* a lost-events marker is due before the next record */
  long long missed;         /* its count, -1 unknown */
  unsigned long long lost_ts;
} live_cpu;

struct kl_live {
  char name[KL_NAME_MAX + 1];
  struct tracefs_instance *inst;
  struct tep_handle *tep;
  kl_decoder *dec;
  int ncpus;
  size_t subbuf;
  live_cpu *cpus;
  struct pollfd *pfds;
  double comm_loaded;        /* kl_monotime of the last saved_cmdlines read */
  int ended;                 /* tracing went off and the ring is drained */
};

void kl_live_close(kl_live *lv) {
  int c;
  if (!lv) return;
  for (c = 0; lv->cpus && c < lv->ncpus; c++) {
    if (lv->cpus[c].fd >= 0) close(lv->cpus[c].fd);
    if (lv->cpus[c].stats_fd >= 0) close(lv->cpus[c].stats_fd);
    if (lv->cpus[c].kbuf) kbuffer_free(lv->cpus[c].kbuf);
    free(lv->cpus[c].page);
  }
  free(lv->cpus);
  free(lv->pfds);
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

/* Register the comms the kernel saved (the global saved_cmdlines, read only). */
static void load_comms(kl_live *lv) {
  char *buf = tracefs_instance_file_read(NULL, "saved_cmdlines", NULL), *line, *save = NULL;
  lv->comm_loaded = kl_monotime();
  if (!buf) return;
  for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *sp = strchr(line, ' ');
    int pid;
    if (!sp) continue;
    *sp = '\0';
    pid = atoi(line);
    if (pid > 0 && !tep_is_pid_registered(lv->tep, pid)) tep_register_comm(lv->tep, sp + 1, pid);
  }
  free(buf);
}

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

kl_live *kl_live_open(struct tracefs_instance *inst, const char *name, kl_err *err) {
  kl_live *lv = calloc(1, sizeof *lv);
  long long kb = 0;
  int c, e;
  char what[KL_NAME_MAX + 16];

  if (!lv) goto oom;
  snprintf(lv->name, sizeof lv->name, "%s", name);
  lv->inst = inst;
  errno = 0;
  lv->tep = tracefs_local_events(NULL);
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
  if (!lv->cpus || !lv->pfds) goto oom;
  for (c = 0; c < lv->ncpus; c++) lv->cpus[c].fd = lv->cpus[c].stats_fd = -1;
  for (c = 0; c < lv->ncpus; c++) {
    live_cpu *lc = &lv->cpus[c];
    char file[64], *path;
    snprintf(file, sizeof file, "per_cpu/cpu%d/trace_pipe_raw", c);
    path = tracefs_instance_get_file(inst, file);
    if (!path) goto oom;
    lc->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    e = errno;
    tracefs_put_tracing_file(path);
    if (lc->fd < 0) {
      kl_err_set(err, kl_code_from_errno(e), e, "events %s: cannot open CPU %d's %s: %s (errno %d)",
                 name, c, file, strerror(e), e);
      goto error;
    }
    snprintf(file, sizeof file, "per_cpu/cpu%d/stats", c);
    path = tracefs_instance_get_file(inst, file);
    if (!path) goto oom;
    lc->stats_fd = open(path, O_RDONLY | O_CLOEXEC);
    tracefs_put_tracing_file(path);
    /* counted from the start of the session: what was dropped before this
     * reader opened is lost to it too */
    lc->dropped = lc->stats_fd >= 0 ? 0 : -1;
    lc->kbuf = tep_kbuffer(lv->tep);
    lc->page = malloc(lv->subbuf);
    if (!lc->kbuf || !lc->page) goto oom;
    lv->pfds[c].fd = lc->fd;
    lv->pfds[c].events = POLLIN;
  }
  load_comms(lv);
  return lv;

oom:
  kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "events %s: out of memory", name);
error:
  kl_live_close(lv);
  return NULL;
}

/* Note events lost on CPU c: a marker is due before its next record. */
static void note_lost(live_cpu *lc, long long missed, unsigned long long ts) {
  if (lc->lost_pending) {
    if (lc->missed >= 0) lc->missed = missed < 0 ? -1 : lc->missed + missed;
    return;
  }
  lc->lost_pending = 1;
  lc->missed = missed;
  lc->lost_ts = ts;
}

/* Read CPU c's next page if its current one is used up.  1: a record or a
 * lost-events marker is ready; 0: nothing now; -1: error. */
static int fill_cpu(kl_live *lv, int c, kl_err *err) {
  live_cpu *lc = &lv->cpus[c];
  for (;;) {
    ssize_t n;
    long long d;
    if (lc->data || lc->lost_pending) return 1;
    /* drops happen while the ring is full: they are newer than what was
     * read so far on this CPU, and the marker goes here */
    d = cpu_dropped(lc);
    if (d > lc->dropped && lc->dropped >= 0) note_lost(lc, d - lc->dropped, lc->ts);
    if (d >= 0) lc->dropped = d;
    if (lc->lost_pending) return 1;
    n = read(lc->fd, lc->page, lv->subbuf);
    if (n < 0) {
      int e = errno;
      if (e == EAGAIN || e == EINTR) return 0;
      return kl_err_set(err, kl_code_from_errno(e), e,
                        "events %s: reading CPU %d's trace_pipe_raw: %s (errno %d)", lv->name,
                        c, strerror(e), e);
    }
    if (n == 0) return 0;
    if ((size_t)n < lv->subbuf) memset(lc->page + n, 0, lv->subbuf - (size_t)n);
    if (kbuffer_load_subbuffer(lc->kbuf, lc->page) < 0) continue;
    lc->data = kbuffer_read_event(lc->kbuf, &lc->ts);
    d = kbuffer_missed_events(lc->kbuf);  /* overwritten: -1 when the count is unknown */
    if (d != 0) note_lost(lc, d, lc->ts);
  }
}

static unsigned long long head_ts(const live_cpu *lc) {
  return lc->lost_pending ? lc->lost_ts : lc->ts;
}

/* The CPU whose current record is the oldest, -1 if none is ready. */
static int oldest(kl_live *lv, const kl_filter *f, kl_err *err, int *failed) {
  int c, best = -1;
  *failed = 0;
  for (c = 0; c < lv->ncpus; c++) {
    int r;
    if (f && f->cpu >= 0 && f->cpu != c) {
      /* not wanted: still consume it, so the ring does not fill up */
      while ((r = fill_cpu(lv, c, err)) == 1) {
        live_cpu *lc = &lv->cpus[c];
        lc->lost_pending = 0;
        if (lc->data) lc->data = kbuffer_next_event(lc->kbuf, &lc->ts);
      }
      if (r < 0) *failed = 1;
      continue;
    }
    r = fill_cpu(lv, c, err);
    if (r < 0) {
      *failed = 1;
      return -1;
    }
    if (r == 1 && (best < 0 || head_ts(&lv->cpus[c]) < head_ts(&lv->cpus[best]))) best = c;
  }
  return best;
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

int kl_live_next(kl_live *lv, const kl_filter *f, int fresh, double timeout, kl_event *ev,
                 kl_err *err) {
  double deadline = timeout >= 0 ? kl_monotime() + timeout : -1;
  if (fresh) kl_decoder_new_filter(lv->dec);
  for (;;) {
    int c, failed, got, wait_ms, off = 0;
    live_cpu *lc;
    struct tep_record rec;

    c = oldest(lv, f, err, &failed);
    if (failed) return -1;
    if (c >= 0) {
      lc = &lv->cpus[c];
      if (lc->lost_pending) {
        lc->lost_pending = 0;
        if (kl_filter_wants_lost(f) && (!f || f->pid < 0)) {
          ev->time = lc->lost_ts;
          ev->cpu = c;
          ev->pid = -1;
          ev->comm = NULL;
          ev->nfields = 0;
          ev->fields = NULL;
          ev->name = "lost_events";
          ev->system = NULL;
          ev->lost = lc->missed > 0 ? (uint64_t)lc->missed : UINT64_MAX;
          return 1;
        }
        continue;
      }
      memset(&rec, 0, sizeof rec);
      rec.ts = lc->ts;
      rec.cpu = c;
      rec.data = lc->data;
      rec.size = kbuffer_event_size(lc->kbuf);
      rec.record_size = rec.size;
      /* the record stays in lc->page until the next call: move on now */
      lc->data = kbuffer_next_event(lc->kbuf, &lc->ts);
      got = kl_decoder_event(lv->dec, f, &rec, ev, err);
      if (got < 0) return -1;
      if (got == 0) continue;
      if (ev->comm && strcmp(ev->comm, "<...>") == 0 &&
          kl_monotime() - lv->comm_loaded > COMM_RELOAD_S) {
        load_comms(lv);
        ev->comm = tep_data_comm_from_pid(lv->tep, ev->pid);
      }
      return 1;
    }
    if (lv->ended) return 0;
    /* nothing ready: wait for data, the deadline, or the end of tracing */
    if (!tracing_is_on(lv)) {
      off = 1;
    } else {
      wait_ms = SLICE_MS;
      if (deadline >= 0) {
        double left = deadline - kl_monotime();
        if (left <= 0) return 0;
        if (left * 1000 < wait_ms) wait_ms = (int)(left * 1000) + 1;
      }
      if (poll(lv->pfds, (nfds_t)lv->ncpus, wait_ms) < 0 && errno == EINTR)
        return kl_err_set(err, KL_E_IO, EINTR, "events %s: interrupted by a signal", lv->name);
    }
    if (off) {
      /* tracing is off: drain what is left, then end */
      c = oldest(lv, f, err, &failed);
      if (failed) return -1;
      if (c < 0) {
        lv->ended = 1;
        return 0;
      }
    }
  }
}
