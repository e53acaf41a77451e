/*
 * ftrace.h - private to the Linux backend (csrc/ftrace/).
 *
 *   session.c   control plane: instances, state files, the ops table
 *   tracedat.c  the trace.dat v6 writer
 *   files.c     safe file creation: temp + fsync + rename, no symlinks
 *   reader.c    reading trace.dat through libtracecmd
 */
#ifndef KL_FTRACE_H
#define KL_FTRACE_H

#include "../kl.h"

#include <stdint.h>
#include <sys/types.h>

struct tracefs_instance;

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

/* ---- safe files (files.c) ---- */
typedef struct kl_atomic_file {
  int fd;                          /* open on the temporary file, -1 when closed */
  char tmp[KL_PATH_MAX];           /* temporary path in the target's folder */
  char path[KL_PATH_MAX];          /* the target */
  int overwrite;
} kl_atomic_file;

/* Would a file at path be written?  bad_path for a symlink, a folder, a
 * missing folder; already_exists for an existing file when !overwrite. */
KL_INTERNAL int kl_path_check(const char *path, int overwrite, kl_err *err);
/* Open a temporary file beside path (O_EXCL, O_NOFOLLOW, mode).  Fails
 * with already_exists when path exists and !overwrite, bad_path when path
 * is a symlink, a folder, or its folder is missing. */
KL_INTERNAL int kl_atomic_open(kl_atomic_file *f, const char *path, int overwrite,
                               unsigned mode, kl_err *err);
/* fsync, close, rename into place, fsync the folder. */
KL_INTERNAL int kl_atomic_commit(kl_atomic_file *f, kl_err *err);
/* Close and unlink the temporary file; safe to call twice. */
KL_INTERNAL void kl_atomic_abort(kl_atomic_file *f);

/* ---- reader (reader.c) ---- */
KL_INTERNAL kl_trace *kl_ftrace_trace_open(const char *path, kl_err *err);
KL_INTERNAL int kl_ftrace_trace_info(kl_trace *t, kl_trace_info *info, kl_err *err);
KL_INTERNAL int kl_ftrace_trace_next(kl_trace *t, const kl_filter *f, int rewind,
                                     kl_event *ev, kl_err *err);
KL_INTERNAL void kl_ftrace_trace_close(kl_trace *t);

#endif
