/*
 * files.c - safe creation of capture files.
 *
 * A capture file is written to a temporary file in the target's folder
 * (O_CREAT|O_EXCL|O_NOFOLLOW, so nothing pre-planted is ever followed or
 * reused), fsync'd, then renamed into place and the folder fsync'd.  Until
 * the rename the previous file at the target is untouched, so a failed
 * write (disk full, I/O error) never leaves a half-written capture behind.
 * Without overwrite the final step is link(2), which fails atomically with
 * EEXIST if a file appeared at the target in the meantime.
 */
#define _GNU_SOURCE
#include "ftrace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Split path into its folder ("." when none) and check that the folder is
 * a real, existing directory. */
static int folder_of(const char *path, char *dir, size_t dirsz, const char **base,
                     kl_err *err) {
  const char *slash = strrchr(path, '/');
  struct stat st;
  size_t n;
  if (slash == NULL) {
    snprintf(dir, dirsz, ".");
    *base = path;
  } else {
    n = (size_t)(slash - path);
    if (n == 0) n = 1; /* "/file" */
    if (n >= dirsz)
      return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "file '%s': path is too long", path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    *base = slash + 1;
  }
  if (**base == '\0')
    return kl_err_set(err, KL_E_BAD_PATH, EISDIR, "file '%s': the path names a folder", path);
  if (stat(dir, &st) != 0) {
    int e = errno;
    return kl_err_set(err, e == ENOENT || e == ENOTDIR ? KL_E_BAD_PATH : kl_code_from_errno(e),
                      e, "file '%s': folder '%s' is not usable: %s (errno %d)", path, dir,
                      strerror(e), e);
  }
  if (!S_ISDIR(st.st_mode))
    return kl_err_set(err, KL_E_BAD_PATH, ENOTDIR, "file '%s': '%s' is not a folder", path, dir);
  return 0;
}

/* What is at the target now: 0 nothing or a regular file we may replace. */
static int check_target(const char *path, int overwrite, kl_err *err) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    int e = errno;
    if (e == ENOENT) return 0;
    return kl_err_set(err, kl_code_from_errno(e), e, "file '%s': %s (errno %d)", path,
                      strerror(e), e);
  }
  if (S_ISLNK(st.st_mode))
    return kl_err_set(err, KL_E_BAD_PATH, ELOOP,
                      "file '%s' is a symbolic link; refusing to write through it", path);
  if (S_ISDIR(st.st_mode))
    return kl_err_set(err, KL_E_BAD_PATH, EISDIR, "file '%s' is a folder", path);
  if (!S_ISREG(st.st_mode))
    return kl_err_set(err, KL_E_BAD_PATH, EINVAL, "file '%s' is not a regular file", path);
  if (!overwrite)
    return kl_err_set(err, KL_E_ALREADY_EXISTS, EEXIST,
                      "file '%s' already exists (pass overwrite = true to replace it)", path);
  return 0;
}

int kl_atomic_open(kl_atomic_file *f, const char *path, int overwrite, unsigned mode,
                   kl_err *err) {
  static unsigned counter;
  char dir[KL_PATH_MAX];
  const char *base;
  int tries, n;

  f->fd = -1;
  f->tmp[0] = '\0';
  f->path[0] = '\0';
  f->overwrite = overwrite;
  if (path == NULL || path[0] == '\0')
    return kl_err_set(err, KL_E_BAD_PATH, 0, "file name is empty");
  if (strlen(path) >= sizeof f->path)
    return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "file '%.200s...': path is too long",
                      path);
  snprintf(f->path, sizeof f->path, "%s", path);
  if (folder_of(path, dir, sizeof dir, &base, err) != 0) goto error;
  if (check_target(path, overwrite, err) != 0) goto error;

  for (tries = 0; tries < 100; tries++) {
    unsigned r = (unsigned)time(NULL) ^ ((unsigned)getpid() << 12) ^ (++counter * 2654435761u);
    n = snprintf(f->tmp, sizeof f->tmp, "%s/.%s.%08x.tmp", dir, base, r);
    if (n < 0 || (size_t)n >= sizeof f->tmp) {
      kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "file '%s': path is too long", path);
      goto error;
    }
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f->fd >= 0) break;
    if (errno != EEXIST) {
      int e = errno;
      kl_err_set(err, kl_code_from_errno(e), e,
                 "file '%s': cannot create a temporary file in '%s': %s (errno %d)", path, dir,
                 strerror(e), e);
      goto error;
    }
  }
  if (f->fd < 0) {
    kl_err_set(err, KL_E_IO, EEXIST, "file '%s': no free temporary name in '%s'", path, dir);
    goto error;
  }
  /* The exact mode asked for, whatever the umask. */
  if (fchmod(f->fd, (mode_t)(mode & 07777)) != 0) {
    int e = errno;
    kl_err_set(err, kl_code_from_errno(e), e, "file '%s': cannot set mode %o: %s (errno %d)",
               path, mode, strerror(e), e);
    goto error;
  }
  return 0;

error:
  kl_atomic_abort(f);
  return -1;
}

int kl_atomic_commit(kl_atomic_file *f, kl_err *err) {
  char dir[KL_PATH_MAX];
  const char *base;
  int dfd = -1, e;

  if (f->fd < 0)
    return kl_err_set(err, KL_E_INVALID, 0, "file '%s': not open", f->path);
  if (fsync(f->fd) != 0) {
    e = errno;
    kl_err_set(err, kl_code_from_errno(e), e, "file '%s': fsync failed: %s (errno %d)",
               f->path, strerror(e), e);
    goto error;
  }
  e = close(f->fd);
  f->fd = -1;
  if (e != 0) {
    e = errno;
    kl_err_set(err, kl_code_from_errno(e), e, "file '%s': close failed: %s (errno %d)",
               f->path, strerror(e), e);
    goto error;
  }
  /* The target may have changed since open: check again. */
  if (check_target(f->path, f->overwrite, err) != 0) goto error;
  if (f->overwrite) {
    if (rename(f->tmp, f->path) != 0) {
      e = errno;
      kl_err_set(err, kl_code_from_errno(e), e, "file '%s': rename failed: %s (errno %d)",
                 f->path, strerror(e), e);
      goto error;
    }
  } else {
    /* link() never replaces: a file that appeared meanwhile wins. */
    if (link(f->tmp, f->path) != 0) {
      e = errno;
      kl_err_set(err, kl_code_from_errno(e), e, "file '%s': %s (errno %d)", f->path,
                 e == EEXIST ? "already exists" : strerror(e), e);
      goto error;
    }
    unlink(f->tmp);
  }
  f->tmp[0] = '\0';
  if (folder_of(f->path, dir, sizeof dir, &base, err) == 0) {
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)fsync(dfd); /* the rename is done; a folder fsync error cannot undo it */
      close(dfd);
    }
  }
  return 0;

error:
  kl_atomic_abort(f);
  return -1;
}

void kl_atomic_abort(kl_atomic_file *f) {
  if (f == NULL) return;
  if (f->fd >= 0) {
    close(f->fd);
    f->fd = -1;
  }
  if (f->tmp[0] != '\0') {
    unlink(f->tmp);
    f->tmp[0] = '\0';
  }
}
