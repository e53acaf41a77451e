/*
 * recorder.c - the streaming recorder of file sessions (docs/design.md,
 * "Streaming to disk").
 *
 * While a file session runs, a detached worker process drains the
 * instance's per-CPU rings into chunk files in the session's data folder:
 * splice(2) moves whole sub-buffers from per_cpu/cpuN/trace_pipe_raw
 * through a pipe into the current chunk file, with no copy through user
 * space.  The worker is a double-forked, setsid child of the module that
 * never returns into Lua: it holds no Lua state, allocates nothing (its
 * memory was prepared by the parent before fork), and leaves by _exit.
 *
 * Data folder (one per session and start, mode 0700):
 *   config          the kl_rec_cfg the worker runs with (written by start)
 *   status          the worker's kl_rec_state, rewritten in place; the
 *                   worker holds an flock on it for its whole life, so
 *                   "alive" is a lock test that a SIGKILL cannot fool
 *   reserve         room kept free for the trace.dat header and one chunk,
 *                   released by stop just before the assembly
 *   cpuN.SEQ        the pages of CPU N, in order of SEQ
 *
 * Control: SIGUSR1 = drain everything and exit; SIGUSR2 = drain everything
 * (the partly filled pages too) and bump flush_ack.  The handlers only set
 * flags; signals are blocked except inside ppoll, so none is missed.
 */
#define _GNU_SOURCE
#include "ftrace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PIPE_BYTES (1024 * 1024)

typedef struct rec_cpu {
  int in;              /* trace_pipe_raw, non-blocking; -1 closed */
  int pipefd[2];
  int out;             /* current chunk; -1 none */
  unsigned seq;        /* its number */
  unsigned first_seq;  /* oldest chunk still on disk (circular) */
  uint64_t in_chunk;   /* bytes in the current chunk */
  uint64_t kept;       /* bytes of this CPU on disk */
  int took;            /* whole pages taken since the last tick */
} rec_cpu;

typedef struct kl_rec {
  kl_rec_cfg cfg;
  kl_rec_state st;
  int status_fd, dir_fd;
  int starter_fd;      /* pidfd of the starter until the start completed; -1 */
  int ready_fd;        /* write end of the starter's ready pipe until ready; -1 */
  char *page;          /* one sub-buffer, for the partly filled page */
  rec_cpu cpu[KL_MAX_CPUS];
} kl_rec;

static volatile sig_atomic_t want_finish, want_flush;

static void on_signal(int sig) {
  if (sig == SIGUSR2) want_flush = 1;
  else want_finish = 1;
}

/* ------------------------------------------------------------------ */
/* the status file                                                     */
/* ------------------------------------------------------------------ */

static void status_put(kl_rec *r) {
  r->st.seq++;
  r->st.seq_end = r->st.seq;
  (void)!pwrite(r->status_fd, &r->st, sizeof r->st, 0);
}

int kl_rec_read(const char *data_dir, kl_rec_state *st) {
  char path[KL_PATH_MAX];
  int fd, tries, rc = -1;
  if (snprintf(path, sizeof path, "%s/status", data_dir) >= (int)sizeof path) return -1;
  fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  for (tries = 0; tries < 100; tries++) {
    if (pread(fd, st, sizeof *st, 0) != (ssize_t)sizeof *st) break;
    if (st->seq == st->seq_end) {
      rc = 0;
      break;
    }
  }
  close(fd);
  return rc;
}

int kl_rec_alive(const char *data_dir) {
  char path[KL_PATH_MAX];
  int fd, alive = 0;
  if (snprintf(path, sizeof path, "%s/status", data_dir) >= (int)sizeof path) return 0;
  fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return 0;
  if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) alive = 1;
  close(fd);
  return alive;
}

/* ------------------------------------------------------------------ */
/* chunks                                                              */
/* ------------------------------------------------------------------ */

static void chunk_name(char *out, size_t n, int cpu, unsigned seq) {
  snprintf(out, n, "cpu%d.%u", cpu, seq);
}

static uint64_t chunk_limit(const kl_rec_cfg *c) {
  return c->chunk_bytes;
}

/* Close the current chunk and open the next; circular sessions drop their
 * oldest chunks so that this CPU stays within its budget. */
static int next_chunk(kl_rec *r, int i) {
  rec_cpu *c = &r->cpu[i];
  char name[64];
  if (c->out >= 0) {
    close(c->out);
    c->seq++;
  }
  c->in_chunk = 0;
  while (r->cfg.circular && c->kept + chunk_limit(&r->cfg) > r->cfg.cpu_budget &&
         c->first_seq < c->seq) {
    struct stat sb;
    chunk_name(name, sizeof name, i, c->first_seq);
    if (fstatat(r->dir_fd, name, &sb, 0) == 0) {
      c->kept -= (uint64_t)sb.st_size < c->kept ? (uint64_t)sb.st_size : c->kept;
      r->st.bytes -= (uint64_t)sb.st_size < r->st.bytes ? (uint64_t)sb.st_size : r->st.bytes;
    }
    unlinkat(r->dir_fd, name, 0);
    c->first_seq++;
  }
  chunk_name(name, sizeof name, i, c->seq);
  c->out = openat(r->dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  return c->out >= 0 ? 0 : -1;
}

/* The disk filled: stop taking data (what stays in the ring counts as
 * lost); the reserve keeps the assembly's room. */
static void disk_full(kl_rec *r, int e) {
  r->st.disk_full = 1;
  r->st.sys = e;
  r->st.stopped = 1;
}

/* How many bytes may the next move of CPU i take? 0: none (full). */
static size_t room(kl_rec *r, int i) {
  rec_cpu *c = &r->cpu[i];
  uint64_t left = PIPE_BYTES, sub = r->cfg.subbuf;
  struct statvfs vfs;
  if (c->in_chunk + sub > chunk_limit(&r->cfg) && next_chunk(r, i) != 0) {
    disk_full(r, errno);
    return 0;
  }
  if (chunk_limit(&r->cfg) - c->in_chunk < left) left = chunk_limit(&r->cfg) - c->in_chunk;
  if (r->cfg.data_budget) {
    uint64_t b = r->cfg.data_budget > r->st.bytes ? r->cfg.data_budget - r->st.bytes : 0;
    if (b < sub) {
      r->st.file_full = 1;
      r->st.stopped = 1;
      return 0;
    }
    if (b < left) left = b;
  }
  /* Pages taken from the ring and refused by the disk would be lost:
   * take no more than the file system can hold. */
  if (fstatvfs(c->out, &vfs) == 0) {
    uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    avail = avail > 2 * sub ? avail - 2 * sub : 0;
    if (avail < sub) {
      disk_full(r, ENOSPC);
      return 0;
    }
    if (avail < left) left = avail;
  }
  return (size_t)(left - left % sub);
}

/* Account n bytes written to CPU i's chunk. */
static void wrote(kl_rec *r, int i, uint64_t n) {
  r->cpu[i].in_chunk += n;
  r->cpu[i].kept += n;
  r->st.bytes += n;
  r->st.written_total += n;
}

/* A short write left part of a page: cut the chunk back to whole pages. */
static void cut_back(kl_rec *r, int i, uint64_t written) {
  rec_cpu *c = &r->cpu[i];
  uint64_t whole = written - written % r->cfg.subbuf;
  if (ftruncate(c->out, (off_t)(c->in_chunk + whole)) == 0) wrote(r, i, whole);
}

/* Move whole pages of CPU i until the ring has none left (or no room). */
static int move_pages(kl_rec *r, int i) {
  rec_cpu *c = &r->cpu[i];
  for (;;) {
    size_t want = r->st.stopped ? 0 : room(r, i);
    ssize_t got, left;
    uint64_t done = 0;
    if (want == 0) return 0;
    got = splice(c->in, NULL, c->pipefd[1], NULL, want, SPLICE_F_NONBLOCK);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == EAGAIN) return 0;
    if (got < 0) return -1;
    if (got == 0) return 0;
    c->took = 1;
    for (left = got; left > 0;) {
      ssize_t w = splice(c->pipefd[0], NULL, c->out, NULL, (size_t)left, 0);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        int e = w < 0 ? errno : ENOSPC;
        cut_back(r, i, done);
        disk_full(r, e);
        return 0;
      }
      left -= w;
      done += (uint64_t)w;
    }
    wrote(r, i, done);
  }
}

/* The page the writer is on comes out only through read(): one whole
 * sub-buffer, zero-padded by the kernel. */
static void move_partial(kl_rec *r, int i) {
  rec_cpu *c = &r->cpu[i];
  ssize_t got, w;
  if (r->st.stopped || room(r, i) == 0) return;
  got = read(c->in, r->page, r->cfg.subbuf);
  if (got <= 0) return;
  if ((size_t)got < r->cfg.subbuf) memset(r->page + got, 0, r->cfg.subbuf - (size_t)got);
  w = write(c->out, r->page, r->cfg.subbuf);
  if (w == (ssize_t)r->cfg.subbuf) {
    wrote(r, i, (uint64_t)w);
    return;
  }
  cut_back(r, i, w > 0 ? (uint64_t)w : 0);
  disk_full(r, w < 0 ? errno : ENOSPC);
}

/* Everything the rings hold now, the partly filled pages too. */
static void drain_all(kl_rec *r) {
  int i;
  for (i = 0; i < r->cfg.ncpus; i++) {
    if (r->cpu[i].in < 0) continue;
    move_pages(r, i);
    move_partial(r, i);
    move_pages(r, i); /* pages completed meanwhile */
  }
}

/* ------------------------------------------------------------------ */
/* opening                                                             */
/* ------------------------------------------------------------------ */

static int exclude_self(const kl_rec_cfg *cfg) {
  char path[KL_PATH_MAX], num[32];
  int fd, n, ok;
  if (snprintf(path, sizeof path, "%s/set_event_notrace_pid", cfg->inst_dir) >= (int)sizeof path)
    return -1;
  fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -1; /* before 5.8: nothing to exclude with */
  n = snprintf(num, sizeof num, "%ld\n", (long)syscall(SYS_gettid));
  ok = write(fd, num, (size_t)n) == n;
  close(fd);
  return ok ? 0 : -1;
}

/* Open CPU i's reader and first chunk (or continue after the last one). */
static int open_cpu(kl_rec *r, int i, unsigned first_seq, unsigned next_seq, uint64_t kept) {
  rec_cpu *c = &r->cpu[i];
  char path[KL_PATH_MAX];
  c->out = -1;
  c->pipefd[0] = c->pipefd[1] = -1;
  c->first_seq = first_seq;
  c->seq = next_seq;
  c->kept = kept;
  if (snprintf(path, sizeof path, "%s/per_cpu/cpu%d/trace_pipe_raw", r->cfg.inst_dir, i) >=
      (int)sizeof path)
    return -1;
  c->in = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (c->in < 0) return errno == ENOENT ? 0 : -1; /* an offline CPU */
  if (pipe2(c->pipefd, O_CLOEXEC) != 0) return -1;
  (void)fcntl(c->pipefd[1], F_SETPIPE_SZ, PIPE_BYTES);
  return next_chunk(r, i);
}

static void close_cpus(kl_rec *r) {
  int i, k;
  for (i = 0; i < r->cfg.ncpus; i++) {
    rec_cpu *c = &r->cpu[i];
    if (c->in >= 0) close(c->in);
    if (c->out >= 0) close(c->out);
    for (k = 0; k < 2; k++)
      if (c->pipefd[k] >= 0) close(c->pipefd[k]);
    c->in = c->out = c->pipefd[0] = c->pipefd[1] = -1;
  }
}

static int instance_there(const kl_rec_cfg *cfg) {
  struct stat sb;
  return stat(cfg->inst_dir, &sb) == 0;
}

/* ------------------------------------------------------------------ */
/* the worker                                                          */
/* ------------------------------------------------------------------ */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A fresh process state: no inherited fd, handler or mask, no terminal.
 * The one fd kept is the ready pipe, moved to READY_FD. */
#define READY_FD 3
static void detach_state(kl_rec *r) {
  const kl_rec_cfg *cfg = &r->cfg;
  struct sigaction sa;
  sigset_t all;
  int sig, fd;
  size_t n;
  char pname[16];
  for (sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    signal(sig, SIG_DFL);
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: a blocked call returns EINTR */
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL); /* delivered inside ppoll only */
  fd = open("/dev/null", O_RDWR);
  if (fd >= 0) {
    dup2(fd, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    if (fd > 2) close(fd);
  }
  if (r->ready_fd != READY_FD) {
    r->ready_fd = dup2(r->ready_fd, READY_FD) == READY_FD ? READY_FD : -1;
  }
#ifdef SYS_close_range
  if (syscall(SYS_close_range, READY_FD + 1u, ~0u, 0u) != 0)
#endif
    for (fd = READY_FD + 1; fd < 1024; fd++) close(fd);
  if (chdir("/") != 0) {}
  umask(077);
  /* "kl:" and the name's tail, where unique names differ (ps, the trace) */
  n = strlen(cfg->name);
  snprintf(pname, sizeof pname, "kl:%s", cfg->name + (n > 12 ? n - 12 : 0));
  prctl(PR_SET_NAME, pname, 0, 0, 0);
}

/* The rings are small, so the recorder must run soon after a wake-up,
 * even when every CPU is busy: the lowest real-time priority (as trace-cmd
 * record -r does), which any ordinary task yields to at once, else a high
 * nice level.  It sleeps in ppoll between wake-ups, and the kernel's
 * real-time throttling still bounds it. */
static void boost(void) {
  struct sched_param sp;
  memset(&sp, 0, sizeof sp);
  sp.sched_priority = 1;
  if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) (void)!setpriority(PRIO_PROCESS, 0, -10);
}

/* A start killed half-way leaves no one to stop this worker: while
 * DATA_DIR/started is missing, the starter's death (its pidfd readable)
 * ends it, so that the instance can go (stop, takeover_stale). */
static int starter_died(kl_rec *r) {
  struct pollfd p;
  if (faccessat(r->dir_fd, "started", F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
    close(r->starter_fd);
    r->starter_fd = -1;
    return 0;
  }
  p.fd = r->starter_fd;
  p.events = POLLIN;
  p.revents = 0;
  return poll(&p, 1, 0) > 0;
}

int kl_pidfd_open(long pid) {
#ifdef SYS_pidfd_open
  return (int)syscall(SYS_pidfd_open, (pid_t)pid, 0u);
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

int kl_pidfd_wait(int pidfd, double seconds) {
  double t0 = kl_monotime(), left;
  struct pollfd p;
  int rc;
  for (;;) {
    left = seconds - (kl_monotime() - t0);
    if (left <= 0) return 0;
    p.fd = pidfd;
    p.events = POLLIN;
    p.revents = 0;
    /* a signal (Lua's SIGINT hook) ends the wait like kl_sleep does */
    rc = poll(&p, 1, left > 1e6 ? 1000000000 : (int)(left * 1000) + 1);
    if (rc > 0) return 1;
    if (rc < 0 && errno == EINTR) return 0;
  }
}

/* One pass of the loop after ppoll returned. */
static void service(kl_rec *r, struct pollfd *pf, int npf, int *idx, double *tick) {
  int k;
  double t;
  for (k = 0; k < npf; k++)
    if (pf[k].revents & (POLLIN | POLLERR | POLLHUP)) move_pages(r, idx[k]);
  t = now_s();
  if (t - *tick >= r->cfg.flush_ms / 1000.0) {
    /* flush_timer: what waited a whole period goes to disk now */
    for (k = 0; k < npf; k++) {
      int i = idx[k];
      if (!r->cpu[i].took) move_partial(r, i);
      r->cpu[i].took = 0;
    }
    *tick = t;
    if (!instance_there(&r->cfg)) r->st.gone = 1;
    if (r->starter_fd >= 0 && starter_died(r)) r->st.gone = 1;
  }
}

static void run_loop(kl_rec *r) {
  struct pollfd pf[KL_MAX_CPUS];
  int idx[KL_MAX_CPUS], npf = 0, i;
  sigset_t none;
  double tick = now_s();
  sigemptyset(&none);
  for (i = 0; i < r->cfg.ncpus; i++) {
    if (r->cpu[i].in < 0) continue;
    pf[npf].fd = r->cpu[i].in;
    pf[npf].events = POLLIN;
    idx[npf++] = i;
  }
  while (!want_finish && !r->st.gone) {
    struct timespec ts;
    uint64_t before = r->st.bytes;
    int full = r->st.stopped;
    ts.tv_sec = r->cfg.flush_ms / 1000;
    ts.tv_nsec = (long)(r->cfg.flush_ms % 1000) * 1000000L;
    for (i = 0; i < npf; i++) pf[i].fd = full ? -1 : r->cpu[idx[i]].in;
    if (ppoll(pf, (nfds_t)npf, &ts, &none) < 0 && errno != EINTR) break;
    if (want_flush) {
      want_flush = 0;
      drain_all(r);
      r->st.flush_ack++;
      status_put(r);
      continue;
    }
    if (!want_finish) service(r, pf, npf, idx, &tick);
    if (r->st.bytes != before || r->st.stopped != full || r->st.gone) status_put(r);
  }
}

/* Wake the starter: the status file says ready (or failed) already; the
 * pipe only ends its wait at once.  Its end of file (this process gone)
 * wakes it too. */
static void say_ready(kl_rec *r) {
  if (r->ready_fd < 0) return;
  (void)!write(r->ready_fd, "r", 1);
  close(r->ready_fd);
  r->ready_fd = -1;
}

/* The worker: open everything, say ready, loop, drain, leave. */
static void worker(kl_rec *r) {
  int i;
  boost(); /* first: on a busy machine the rest then runs at once */
  detach_state(r);
  r->dir_fd = open(r->cfg.data_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  r->status_fd = r->dir_fd < 0 ? -1
                               : openat(r->dir_fd, "status", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (r->status_fd < 0 || flock(r->status_fd, LOCK_EX) != 0) _exit(2);
  r->starter_fd = kl_pidfd_open(r->cfg.starter_pid);
  if (r->starter_fd < 0 && errno == ESRCH) _exit(2); /* the starter is gone already */
  r->st.pid = (int32_t)getpid();
  r->st.sys = 0;
  if (r->cfg.exclude && exclude_self(&r->cfg) != 0) {
    r->st.failed = 1;
    r->st.sys = errno;
    status_put(r);
    _exit(3);
  }
  for (i = 0; i < r->cfg.ncpus; i++) r->cpu[i].in = r->cpu[i].out = -1;
  for (i = 0; i < r->cfg.ncpus; i++) {
    if (open_cpu(r, i, 0, 0, 0) != 0) {
      r->st.failed = 1;
      r->st.sys = errno;
      status_put(r);
      _exit(3);
    }
  }
  r->st.ready = 1;
  status_put(r);
  say_ready(r);
  run_loop(r);
  if (!r->st.gone) drain_all(r);
  close_cpus(r);
  r->st.done = 1;
  status_put(r);
  _exit(0);
}

/* ------------------------------------------------------------------ */
/* the parent side                                                     */
/* ------------------------------------------------------------------ */

static int write_file_at(const char *dir, const char *name, const void *p, size_t n,
                         kl_err *err) {
  char path[KL_PATH_MAX];
  int fd, ok;
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
    return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "recorder: path too long");
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return kl_err_errno(err, KL_E_IO, "recorder: cannot create %s", path);
  ok = write(fd, p, n) == (ssize_t)n;
  if (!ok) {
    int e = errno ? errno : ENOSPC;
    close(fd);
    errno = e;
    return kl_err_errno(err, KL_E_IO, "recorder: cannot write %s", path);
  }
  close(fd);
  return 0;
}

/* Room kept for the assembly: the stopper deletes it before it writes the
 * header, so a full disk still takes the header and one chunk's copy. */
static int make_reserve(const kl_rec_cfg *cfg, kl_err *err) {
  char path[KL_PATH_MAX];
  int fd, e;
  if (snprintf(path, sizeof path, "%s/reserve", cfg->data_dir) >= (int)sizeof path)
    return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "recorder: path too long");
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return kl_err_errno(err, KL_E_IO, "recorder: cannot create %s", path);
  e = posix_fallocate(fd, 0, (off_t)cfg->reserve_bytes);
  close(fd);
  if (e != 0) {
    errno = e;
    return kl_err_errno(err, KL_E_DISK_FULL,
                        "start %s: no room for the capture's first %llu bytes in %s", cfg->name,
                        (unsigned long long)cfg->reserve_bytes, cfg->data_dir);
  }
  return 0;
}

/* Wait until the worker said ready (or failed, or died).  The status file
 * is the truth; the pipe (fd, -1 if none) ends each wait as soon as the
 * worker wrote it or is gone, and the status is read again once more
 * after that, so a worker that died before saying anything is an error
 * rather than a 10 s wait. */
static int wait_ready(const kl_rec_cfg *cfg, int fd, kl_rec_state *st, kl_err *err) {
  double t0 = kl_monotime();
  int woke = 0;
  for (;;) {
    if (kl_rec_read(cfg->data_dir, st) == 0) {
      if (st->ready) return 0;
      if (st->failed) {
        errno = st->sys ? st->sys : EIO;
        return kl_err_errno(err, KL_E_IO, "start %s: the recorder could not open the rings",
                            cfg->name);
      }
    }
    if (woke)
      return kl_err_set(err, KL_E_IO, ECHILD, "start %s: the recorder ended before it was ready",
                        cfg->name);
    if (kl_monotime() - t0 > 10)
      return kl_err_set(err, KL_E_IO, ETIMEDOUT,
                        "start %s: the recorder did not start within 10 s", cfg->name);
    if (fd < 0) {
      kl_sleep(0.0005);
    } else {
      struct pollfd p;
      p.fd = fd;
      p.events = POLLIN;
      p.revents = 0;
      woke = poll(&p, 1, 100) > 0;
    }
  }
}

/* Fork the worker twice removed (see docs/design.md); rd gets the read
 * end of its ready pipe, or -1 when no pipe could be made. */
static int fork_worker(kl_rec *r, int *rd) {
  int fds[2], status;
  pid_t mid;
  *rd = -1;
  r->ready_fd = -1;
  if (pipe2(fds, O_CLOEXEC) == 0) {
    *rd = fds[0];
    r->ready_fd = fds[1];
  }
  fflush(NULL);
  mid = fork();
  if (mid == 0) {
    /* first child: a new session without a terminal; the worker is its
     * child, so it is no session leader and can never get one back */
    if (*rd >= 0) close(*rd);
    if (setsid() < 0) _exit(1);
    if (fork() == 0) worker(r);
    _exit(0);
  }
  if (r->ready_fd >= 0) close(r->ready_fd);
  if (mid < 0) return -1;
  while (waitpid(mid, &status, 0) < 0 && errno == EINTR) {}
  return 0;
}

int kl_rec_spawn(const kl_rec_cfg *cfg, kl_rec_state *st, kl_err *err) {
  kl_rec *r;
  int rd, rc;
  if (write_file_at(cfg->data_dir, "config", cfg, sizeof *cfg, err) != 0) return -1;
  memset(st, 0, sizeof *st);
  if (write_file_at(cfg->data_dir, "status", st, sizeof *st, err) != 0) return -1;
  if (make_reserve(cfg, err) != 0) return -1;
  r = calloc(1, sizeof *r);
  if (r != NULL) r->page = malloc(cfg->subbuf);
  if (r == NULL || r->page == NULL) {
    if (r) free(r);
    return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "start %s: out of memory", cfg->name);
  }
  r->cfg = *cfg;
  rc = fork_worker(r, &rd);
  free(r->page);
  free(r);
  if (rc != 0) {
    if (rd >= 0) close(rd);
    return kl_err_errno(err, KL_E_NO_RESOURCES, "start %s: fork", cfg->name);
  }
  rc = wait_ready(cfg, rd, st, err);
  if (rd >= 0) close(rd);
  return rc;
}

int kl_rec_started(const char *data_dir, const char *name, kl_err *err) {
  if (write_file_at(data_dir, "started", "", 0, err) != 0)
    return kl_err_errno(err, KL_E_IO, "start %s: cannot mark the start done in %s", name,
                        data_dir);
  return 0;
}

int kl_rec_signal(const char *data_dir, int sig) {
  kl_rec_state st;
  if (!kl_rec_alive(data_dir) || kl_rec_read(data_dir, &st) != 0 || st.pid <= 0) return -1;
  /* The flock says the worker holds its status file: st.pid is still it. */
  if (kill((pid_t)st.pid, sig) != 0) return -1;
  (void)kill((pid_t)st.pid, SIGCONT); /* a stopped recorder still answers */
  return 0;
}

int kl_rec_flush(const char *data_dir, const char *name, kl_err *err) {
  kl_rec_state st;
  uint32_t before;
  double t0 = kl_monotime();
  if (kl_rec_read(data_dir, &st) != 0) return kl_err_set(err, KL_E_IO, EIO, "flush %s: no recorder status", name);
  before = st.flush_ack;
  if (kl_rec_signal(data_dir, SIGUSR2) != 0) return 1; /* not running: nothing to wait for */
  while (kl_monotime() - t0 < 30) {
    if (kl_rec_read(data_dir, &st) == 0 && st.flush_ack != before) return 0;
    if (!kl_rec_alive(data_dir)) return 1;
    kl_sleep(0.001);
  }
  return kl_err_set(err, KL_E_IO, ETIMEDOUT, "flush %s: the recorder did not drain within 30 s",
                    name);
}

int kl_rec_finish(const char *data_dir, const char *name, kl_err *err) {
  double t0 = kl_monotime();
  if (kl_rec_signal(data_dir, SIGUSR1) != 0) return 1; /* dead already */
  while (kl_rec_alive(data_dir)) {
    if (kl_monotime() - t0 > 60)
      return kl_err_set(err, KL_E_BUSY, ETIMEDOUT,
                        "stop %s: the recorder did not finish within 60 s", name);
    kl_sleep(0.0005);
  }
  return 0;
}

int kl_rec_read_cfg(const char *data_dir, kl_rec_cfg *cfg) {
  char path[KL_PATH_MAX];
  int fd;
  ssize_t n;
  if (snprintf(path, sizeof path, "%s/config", data_dir) >= (int)sizeof path) return -1;
  fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  n = read(fd, cfg, sizeof *cfg);
  close(fd);
  return n == (ssize_t)sizeof *cfg ? 0 : -1;
}

/* The stopper's drain when the worker died: what is left in the rings
 * goes into new chunks after the last ones. */
int kl_rec_drain_here(const kl_rec_cfg *cfg, kl_err *err) {
  kl_rec *r = calloc(1, sizeof *r);
  kl_chunks ch;
  int i, rc = 0;
  if (r == NULL || (r->page = malloc(cfg->subbuf)) == NULL) {
    free(r);
    return kl_err_set(err, KL_E_NO_RESOURCES, ENOMEM, "stop %s: out of memory", cfg->name);
  }
  r->cfg = *cfg;
  r->status_fd = r->starter_fd = -1;
  if (kl_rec_read(cfg->data_dir, &r->st) != 0) memset(&r->st, 0, sizeof r->st);
  r->dir_fd = kl_data_dir_open(cfg->data_dir);
  if (r->dir_fd < 0 || kl_chunks_list(cfg->data_dir, cfg->ncpus, &ch) != 0) {
    rc = kl_err_errno(err, KL_E_IO, "stop %s: data folder %s", cfg->name, cfg->data_dir);
    goto out;
  }
  r->st.bytes = 0;
  for (i = 0; i < cfg->ncpus; i++) r->st.bytes += ch.cpu[i].bytes;
  for (i = 0; i < cfg->ncpus; i++) r->cpu[i].in = r->cpu[i].out = -1;
  for (i = 0; i < cfg->ncpus && rc == 0; i++)
    if (open_cpu(r, i, ch.cpu[i].first_seq, ch.cpu[i].next_seq, ch.cpu[i].bytes) != 0)
      rc = kl_err_errno(err, KL_E_IO, "stop %s: cannot open CPU %d's ring", cfg->name, i);
  if (rc == 0 && !r->st.stopped) drain_all(r);
  close_cpus(r);
out:
  if (r->dir_fd >= 0) close(r->dir_fd);
  free(r->page);
  free(r);
  return rc;
}

/* ------------------------------------------------------------------ */
/* listing the chunks                                                  */
/* ------------------------------------------------------------------ */

int kl_chunks_list(const char *data_dir, int ncpus, kl_chunks *ch) {
  DIR *d = opendir(data_dir);
  struct dirent *de;
  int i;
  memset(ch, 0, sizeof *ch);
  ch->ncpus = ncpus;
  for (i = 0; i < ncpus && i < KL_MAX_CPUS; i++) ch->cpu[i].first_seq = ~0u;
  if (d == NULL) return -1;
  while ((de = readdir(d)) != NULL) {
    int cpu;
    unsigned seq;
    char tail;
    struct stat sb;
    if (sscanf(de->d_name, "cpu%d.%u%c", &cpu, &seq, &tail) != 2 || cpu < 0 || cpu >= ncpus)
      continue;
    if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
      continue;
    ch->cpu[cpu].bytes += (uint64_t)sb.st_size;
    if (seq < ch->cpu[cpu].first_seq) ch->cpu[cpu].first_seq = seq;
    if (seq + 1 > ch->cpu[cpu].next_seq) ch->cpu[cpu].next_seq = seq + 1;
  }
  closedir(d);
  for (i = 0; i < ncpus; i++)
    if (ch->cpu[i].first_seq == ~0u) ch->cpu[i].first_seq = ch->cpu[i].next_seq;
  return 0;
}
