/*
 * ftrace.h - private to the Linux backend (csrc/ftrace/).
 *
 *   session.c   control plane: instances, state files, the ops table
 *   tracedat.c  the trace.dat v6 writer
 *   files.c     safe file creation: temp + fsync + rename, no symlinks
 *   reader.c    reading trace.dat through libtracecmd
 *   pages.c     trace.dat v6 records, page by page, checked before use
 *   decode.c    records -> kl_event (shared by reader.c and live.c)
 *   live.c      real-time sessions: the per-CPU trace_pipe_raw, read live
 *   recorder.c  file sessions: the detached worker that streams the rings
 *               to chunk files while the session runs
 */
#ifndef KL_FTRACE_H
#define KL_FTRACE_H

#include "../kl.h"

#include <stdint.h>
#include <sys/types.h>

struct tracefs_instance;
struct tep_handle;
struct tep_record;

/* ---- trace.dat writer (tracedat.c) ---- */
typedef struct kl_dump_opts {
  const char *path;                /* the target file */
  int overwrite;                   /* may replace an existing regular file */
  unsigned file_mode;              /* e.g. 0600 */
  int kallsyms;                    /* copy /proc/kallsyms as it reads */
  const char *const *events;       /* enabled "system:event" names, for formats */
  size_t nevents;
  const char *session;             /* session name, for messages */
  /* Circular files: the file this session wrote last (NULL: none) and its
   * size.  Reading the ring consumes it, so its pages from the previous
   * flush go first in the new file, the oldest dropped to keep each CPU
   * within its ring size.  Ignored unless the file still has that size
   * and is a trace.dat v6 of the same page size. */
  const char *carry;
  uint64_t carry_size;
} kl_dump_opts;

/* Drain the instance's ring (all CPUs) into a trace.dat v6 file written
 * atomically at o->path.  On failure nothing at o->path changes.
 * *bytes_written receives the file size. */
KL_INTERNAL int kl_tracedat_write(struct tracefs_instance *inst, const kl_dump_opts *o,
                                  uint64_t *bytes_written, kl_err *err);

/* ---- the streaming recorder (recorder.c) ---- */
/* What the worker runs with; written to DATA_DIR/config at start so that a
 * stopper in any process can finish the job of a dead worker. */
typedef struct kl_rec_cfg {
  char inst_dir[KL_PATH_MAX];      /* tracefs instances/NAME */
  char data_dir[KL_PATH_MAX];      /* the session's chunk folder (0700) */
  char name[KL_NAME_MAX + 1];
  int ncpus;
  int circular;                    /* drop the oldest chunks beyond cpu_budget */
  uint32_t subbuf;                 /* sub-buffer bytes: the unit of everything */
  uint64_t cpu_budget;             /* circular: bytes per CPU kept on disk */
  uint64_t data_budget;            /* sequential: bytes over all CPUs; 0 no bound */
  uint64_t chunk_bytes;            /* size of one chunk file */
  uint64_t reserve_bytes;          /* room held for the assembly */
  unsigned flush_ms;               /* flush_timer */
  int exclude;                     /* write its tid to set_event_notrace_pid */
  int32_t starter_pid;             /* until DATA_DIR/started exists, its death ends the worker */
} kl_rec_cfg;

/* DATA_DIR/status, rewritten in place by the worker (seq == seq_end when
 * consistent). */
typedef struct kl_rec_state {
  uint32_t seq;
  int32_t pid;
  int32_t ready, failed, done;     /* life cycle */
  int32_t file_full, disk_full;    /* why it stopped taking data */
  int32_t stopped;                 /* takes no more data (full) */
  int32_t gone;                    /* the instance disappeared */
  int32_t sys;                     /* errno of a failure */
  uint32_t flush_ack;              /* bumped after each requested drain */
  uint64_t bytes;                  /* on disk now, all CPUs */
  uint64_t written_total;          /* ever written, chunks dropped since included */
  uint32_t seq_end;
} kl_rec_state;

typedef struct kl_chunks {
  int ncpus;
  struct { uint64_t bytes; unsigned first_seq, next_seq; } cpu[KL_MAX_CPUS];
} kl_chunks;

/* Start the worker (config, status and reserve files first); returns once
 * it has excluded itself and opened every CPU. */
KL_INTERNAL int kl_rec_spawn(const kl_rec_cfg *cfg, kl_rec_state *st, kl_err *err);
KL_INTERNAL int kl_rec_read(const char *data_dir, kl_rec_state *st);
KL_INTERNAL int kl_rec_read_cfg(const char *data_dir, kl_rec_cfg *cfg);
/* 1 while the worker lives (it holds an flock on its status file). */
KL_INTERNAL int kl_rec_alive(const char *data_dir);
KL_INTERNAL int kl_rec_signal(const char *data_dir, int sig);
/* Have the worker drain everything now: 0 done, 1 no worker, -1 error. */
KL_INTERNAL int kl_rec_flush(const char *data_dir, const char *name, kl_err *err);
/* Have the worker drain and exit; 0 done, 1 it was dead already, -1 error. */
KL_INTERNAL int kl_rec_finish(const char *data_dir, const char *name, kl_err *err);
/* Drain the rings in this process (the worker died). */
KL_INTERNAL int kl_rec_drain_here(const kl_rec_cfg *cfg, kl_err *err);
KL_INTERNAL int kl_chunks_list(const char *data_dir, int ncpus, kl_chunks *ch);

/* Build a trace.dat at o->path from the chunk files in data_dir (after the
 * worker drained).  cpu_budget: keep at most that many bytes per CPU, the
 * newest (0: all).  consume: unlink each chunk once copied (a nearly full
 * disk holds one copy only). */
KL_INTERNAL int kl_tracedat_assemble(struct tracefs_instance *inst, const kl_dump_opts *o,
                                     const char *data_dir, uint64_t cpu_budget, int consume,
                                     uint64_t *bytes_written, kl_err *err);

/* ---- safe files (files.c) ---- */
typedef struct kl_atomic_file {
  int fd;                          /* open on the temporary file, -1 when closed */
  char tmp[KL_PATH_MAX];           /* temporary path in the target's folder */
  char path[KL_PATH_MAX];          /* the target */
  int overwrite;
  int durable;                     /* fsync before and after the rename (the default) */
} kl_atomic_file;

/* path made absolute against the current folder (not resolved: a link in
 * it is still refused where the file is created). */
KL_INTERNAL int kl_abs_path(const char *path, char *out, size_t n, kl_err *err);
/* Would a file at path be written?  bad_path for a symlink, a folder, a
 * missing or read-only folder, and for an existing file when !overwrite
 * (already_exists is kept for "session name taken"). */
KL_INTERNAL int kl_path_check(const char *path, int overwrite, kl_err *err);
/* Open a temporary file beside path (O_EXCL, O_NOFOLLOW, mode).  Fails
 * with bad_path when path exists and !overwrite, is a symlink, a folder,
 * or its folder is missing. */
/* Remove PATH.tmp.PID.N beside path whose PID is no process. */
KL_INTERNAL void kl_remove_stale_tmps(const char *path);
/* The recorder's data folder, opened only if it is the folder a start made:
 * a real folder (never a link to one), ours, closed to group and others.
 * An fd, or -1 (errno EPERM when something else took its name).  Every
 * deletion in it goes through this fd, so a folder swapped for a link
 * makes a stop delete nothing elsewhere. */
KL_INTERNAL int kl_data_dir_open(const char *path);
/* A pidfd for pid (pidfd_open), or -1 with errno. */
KL_INTERNAL int kl_pidfd_open(long pid);
/* Wait up to seconds for the process of pidfd to end: 1 when it did, 0 on
 * the timeout or a signal. */
KL_INTERNAL int kl_pidfd_wait(int pidfd, double seconds);
/* The starter says the start completed: DATA_DIR/started. */
KL_INTERNAL int kl_rec_started(const char *data_dir, const char *name, kl_err *err);
KL_INTERNAL int kl_atomic_open(kl_atomic_file *f, const char *path, int overwrite,
                               unsigned mode, kl_err *err);
/* fsync (when durable), close, rename into place, fsync the folder (when durable). */
KL_INTERNAL int kl_atomic_commit(kl_atomic_file *f, kl_err *err);
/* Close and unlink the temporary file; safe to call twice. */
KL_INTERNAL void kl_atomic_abort(kl_atomic_file *f);

/* ---- reader (reader.c) ---- */
KL_INTERNAL kl_trace *kl_ftrace_trace_open(const char *path, kl_err *err);
KL_INTERNAL int kl_ftrace_trace_info(kl_trace *t, kl_trace_info *info, kl_err *err);
KL_INTERNAL int kl_ftrace_trace_next(kl_trace *t, const kl_filter *f, int rewind,
                                     kl_event *ev, kl_err *err);
KL_INTERNAL void kl_ftrace_trace_close(kl_trace *t);

/* ---- checked page reading (pages.c) ---- */
/* ---- timestamp corrections of a trace.dat file's options (tsfix.c) ---- */
typedef struct kl_tsfix {
  uint32_t mult, shift;            /* TSC2NSEC: ts * mult >> shift (mult 0: none) */
  int64_t offset;                  /* DATE and OFFSET: ns added after that */
} kl_tsfix;
/* Is option id one that corrects timestamps (DATE, OFFSET, TIME_SHIFT, TSC2NSEC)? */
KL_INTERNAL int kl_tsfix_option(unsigned id);
KL_INTERNAL const char *kl_tsfix_name(unsigned id);
/* Note option id's first n bytes d.  -1: malformed, or an option not applied. */
KL_INTERNAL int kl_tsfix_add(kl_tsfix *f, unsigned id, const unsigned char *d, uint32_t n,
                             int big);
KL_INTERNAL uint64_t kl_tsfix_apply(const kl_tsfix *f, uint64_t ts);

/* ---- compressed v7 data, chunk by chunk (zchunks.c) ---- */
#define KL_Z_ZSTD 1
#define KL_Z_ZLIB 2
#define KL_CHUNK_MAX (64u << 20)       /* largest chunk accepted, either size */
typedef struct kl_zsrc {
  int fd, big, alg;                /* alg: KL_Z_* */
  const char *path;
} kl_zsrc;
typedef struct kl_zchunk {
  uint64_t next;                   /* file offset of the next chunk (or the count) */
  uint64_t at;                     /* file offset of the loaded chunk */
  uint32_t left;                   /* chunks not yet loaded */
  int started;                     /* the count was read */
  unsigned char *buf;              /* the decompressed chunk */
  uint32_t cap, len, pos;
} kl_zchunk;
/* KL_Z_* for the header's algorithm name, -1 for an unknown one. */
KL_INTERNAL int kl_chunk_alg(const char *name);
KL_INTERNAL void kl_zchunk_rewind(kl_zchunk *z, uint64_t off);
KL_INTERNAL void kl_zchunk_free(kl_zchunk *z);
KL_INTERNAL int kl_zchunk_page(const kl_zsrc *s, kl_zchunk *z, int c, uint64_t end,
                               unsigned char *dst, size_t page_size, size_t *n, uint64_t *off,
                               kl_err *err);

typedef struct kl_pages_geom {
  int fd;                          /* open on the file, read with pread */
  const char *path;                /* for messages */
  int page_size, long_size, big;   /* from the file header */
  int ncpus;
  const uint64_t *cpu_off, *cpu_size;  /* each CPU's data in the file */
  int zalg;                        /* 0: pages stored as they are; KL_Z_*: in chunks */
  kl_tsfix tsfix;                  /* applied to every record's timestamp */
} kl_pages_geom;

typedef struct kl_pcpu {
  uint64_t off;                    /* file offset of the next page */
  uint64_t page_off;               /* file offset of the loaded page */
  unsigned char *buf[2];           /* two pages: the loaded one, the one before */
  int which;                       /* buf[which] is the loaded page */
  uint32_t size, pos;              /* its commit; the next record's index */
  uint64_t ts, last_page_ts;
  long long missed;                /* lost before the page (-1: unknown count) */
  kl_zchunk z;                     /* compressed files: the current chunk */
} kl_pcpu;

typedef struct kl_pages {
  kl_pages_geom g;
  unsigned hdr;                    /* bytes of a page header */
  kl_pcpu *cpu;
} kl_pages;

KL_INTERNAL int kl_pages_init(kl_pages *p, const kl_pages_geom *g, kl_err *err);
KL_INTERNAL void kl_pages_free(kl_pages *p);
/* Back to CPU c's first page. */
KL_INTERNAL void kl_pages_rewind(kl_pages *p, int c);
/* The next record of CPU c (data valid until the call after next for
 * that CPU).  1: r filled; 0: end; -1: error naming the file offset. */
KL_INTERNAL int kl_pages_next(kl_pages *p, int c, struct tep_record *r, kl_err *err);

/* ---- decoding records (decode.c) ---- */
typedef struct kl_decoder kl_decoder;
/* what names the source in messages ("read trace PATH", "events NAME");
 * swap: the data's byte order is not ours. */
KL_INTERNAL kl_decoder *kl_decoder_new(struct tep_handle *tep, int long_size, int swap,
                                       const char *what, kl_err *err);
/* Another tep for the same data (plans are dropped, names matched again). */
KL_INTERNAL void kl_decoder_set_tep(kl_decoder *d, struct tep_handle *tep);
/* Bytes a record needs before libtraceevent may read its type and pid. */
KL_INTERNAL size_t kl_decoder_common_end(const kl_decoder *d);
/* A new iteration: its filter's names are matched again. */
KL_INTERNAL void kl_decoder_new_filter(kl_decoder *d);
/* Does the filter let lost_events markers through? */
KL_INTERNAL int kl_filter_wants_lost(const kl_filter *f);
/* Decode r (r->data, size, ts, cpu) into ev with the filter's names, pid
 * and t0 applied.  1: ev filled (its fields valid until the next call and
 * while r's data lives); 0: filtered out or a type without a format;
 * -1: error (out of memory). */
KL_INTERNAL int kl_decoder_event(kl_decoder *d, const kl_filter *f, const struct tep_record *r,
                                 kl_event *ev, kl_err *err);
KL_INTERNAL void kl_decoder_free(kl_decoder *d);

/* ---- live reading of real-time sessions (live.c) ---- */
typedef struct kl_live kl_live;
/* Open the instance's per-CPU trace_pipe_raw files; name for messages.
 * asked: the comma list of "system:event" the session enabled; the
 * process-naming tracepoints the reader enables for itself and that are
 * not in it are read for comms but never yielded. */
KL_INTERNAL kl_live *kl_live_open(struct tracefs_instance *inst, const char *name,
                                  const char *asked, kl_err *err);
/* The next live event: 1 ev filled; 0 timeout seconds passed with no
 * event (timeout < 0: no bound) or tracing was turned off and the ring is
 * drained; -1 error.  fresh: first call of a new iteration (f->self is
 * applied then: the reading process is excluded unless it is set). */
KL_INTERNAL int kl_live_next(kl_live *lv, const kl_filter *f, int fresh, double timeout,
                             kl_event *ev, kl_err *err);
/* 1 once tracing went off (or the instance went away) and all was read. */
KL_INTERNAL int kl_live_ended(const kl_live *lv);
/* Close the readers (stop's rmdir fails with EBUSY while one is open). */
KL_INTERNAL void kl_live_close(kl_live *lv);

#endif
