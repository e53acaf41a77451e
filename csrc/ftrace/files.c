/*
 * files.c - files written safely: a temporary file beside the target,
 * created with O_EXCL|O_NOFOLLOW, fsync'ed, renamed into place, then the
 * folder fsync'ed.  A failure at any step leaves the target untouched.
 */
#define _GNU_SOURCE
#include "ftrace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int dir_of(const char *path, char *out, size_t n) {
  char tmp[KL_PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -1;
  if (snprintf(out, n, "%s", dirname(tmp)) >= (int)n) return -1;
  return 0;
}

/* A path problem: access_denied for EACCES/EPERM/EROFS, else bad_path. */
static int path_err(kl_err *err, const char *fmt, ...) KL_PRINTF(2, 3);
static int path_err(kl_err *err, const char *fmt, ...) {
  char head[KL_MSG_MAX / 2];
  int e = errno;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(head, sizeof head, fmt, ap);
  va_end(ap);
  errno = e;
  kl_err_errno(err, KL_E_BAD_PATH, "%s", head);
  if (err && err->code != KL_E_ACCESS_DENIED) err->code = KL_E_BAD_PATH;
  return -1;
}

int kl_path_check(const char *path, int overwrite, kl_err *err) {
  struct stat st;
  char dir[KL_PATH_MAX];
  if (path == NULL || path[0] == '\0')
    return kl_err_set(err, KL_E_BAD_PATH, 0, "file name is empty");
  if (strlen(path) >= KL_PATH_MAX - 32)
    return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "%s: path too long", path);
  if (path[strlen(path) - 1] == '/')
    return kl_err_set(err, KL_E_BAD_PATH, EISDIR, "%s: is a folder, not a file", path);
  if (lstat(path, &st) == 0) {
    if (S_ISLNK(st.st_mode))
      return kl_err_set(err, KL_E_BAD_PATH, ELOOP,
                        "%s: is a symbolic link; refusing to follow it", path);
    if (S_ISDIR(st.st_mode))
      return kl_err_set(err, KL_E_BAD_PATH, EISDIR, "%s: is a folder, not a file", path);
    if (!S_ISREG(st.st_mode))
      return kl_err_set(err, KL_E_BAD_PATH, EINVAL, "%s: is not a regular file", path);
    /* bad_path, not already_exists: that code means "session name taken"
     * and drives the conflict policies */
    if (!overwrite)
      return kl_err_set(err, KL_E_BAD_PATH, EEXIST,
                        "%s: the file exists; overwrite = true replaces it", path);
  } else if (errno != ENOENT) {
    return path_err(err, "%s", path);
  }
  if (dir_of(path, dir, sizeof dir) != 0)
    return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "%s: path too long", path);
  if (stat(dir, &st) != 0) return path_err(err, "%s: folder %s", path, dir);
  if (!S_ISDIR(st.st_mode))
    return kl_err_set(err, KL_E_BAD_PATH, ENOTDIR, "%s: %s is not a folder", path, dir);
  if (access(dir, W_OK | X_OK) != 0) return path_err(err, "%s: folder %s", path, dir);
  return 0;
}

int kl_abs_path(const char *path, char *out, size_t n, kl_err *err) {
  char cwd[KL_PATH_MAX];
  if (path == NULL || path[0] == '\0')
    return kl_err_set(err, KL_E_BAD_PATH, 0, "file name is empty");
  if (path[0] == '/') {
    if (snprintf(out, n, "%s", path) >= (int)n) goto toolong;
    return 0;
  }
  if (getcwd(cwd, sizeof cwd) == NULL) return path_err(err, "%s: the current folder", path);
  while (path[0] == '.' && path[1] == '/') path += 2;
  if (snprintf(out, n, "%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "", path) >= (int)n) goto toolong;
  return 0;
toolong:
  return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "%s: path too long", path);
}

/* The temporaries of writers that died before their rename (a stopper
 * killed during assembly): exactly NAME.tmp.PID.N beside path, whose PID
 * is no process.  A live pid's file is left alone, whoever it is. */
static void remove_stale_tmps(const char *path, const char *dir) {
  const char *base = strrchr(path, '/');
  size_t bl;
  DIR *d;
  struct dirent *de;
  base = base ? base + 1 : path;
  bl = strlen(base);
  if ((d = opendir(dir)) == NULL) return;
  while ((de = readdir(d)) != NULL) {
    long pid;
    unsigned n;
    int used = 0;
    struct stat sb;
    if (strncmp(de->d_name, base, bl) != 0 || strncmp(de->d_name + bl, ".tmp.", 5) != 0) continue;
    if (sscanf(de->d_name + bl + 5, "%ld.%u%n", &pid, &n, &used) != 2 || used <= 0 ||
        de->d_name[bl + 5 + (size_t)used] != '\0' || pid <= 0 || pid == kl_getpid())
      continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
    if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode))
      unlinkat(dirfd(d), de->d_name, 0);
  }
  closedir(d);
}

void kl_remove_stale_tmps(const char *path) {
  char dir[KL_PATH_MAX];
  if (dir_of(path, dir, sizeof dir) == 0) remove_stale_tmps(path, dir);
}

int kl_data_dir_open(const char *path) {
  struct stat sb;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  if (fstat(fd, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() ||
      (sb.st_mode & 077) != 0) {
    close(fd);
    errno = EPERM;
    return -1;
  }
  return fd;
}

int kl_atomic_open(kl_atomic_file *f, const char *path, int overwrite,
                   unsigned mode, kl_err *err) {
  char dir[KL_PATH_MAX];
  unsigned attempt;
  int e;

  f->fd = -1;
  f->tmp[0] = '\0';
  f->overwrite = overwrite;
  f->durable = 1;
  if (kl_path_check(path, overwrite, err) != 0) return -1;
  snprintf(f->path, sizeof f->path, "%s", path);
  if (dir_of(path, dir, sizeof dir) != 0)
    return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "%s: path too long", path);
  remove_stale_tmps(path, dir);

  for (attempt = 0; attempt < 100; attempt++) {
    if (snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld.%u", path, kl_getpid(), attempt) >=
        (int)sizeof f->tmp)
      return kl_err_set(err, KL_E_BAD_PATH, ENAMETOOLONG, "%s: path too long", path);
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 (mode_t)(mode & 07777));
    if (f->fd >= 0) break;
    if (errno != EEXIST) break;
  }
  if (f->fd < 0) {
    f->tmp[0] = '\0';
    kl_err_errno(err, KL_E_IO, "%s: cannot create a file in %s", path, dir);
    if (err->code == KL_E_NOT_FOUND) err->code = KL_E_BAD_PATH;
    return -1;
  }
  /* The umask must not narrow or widen what the caller asked for. */
  if (fchmod(f->fd, (mode_t)(mode & 07777)) != 0) {
    e = errno;
    kl_atomic_abort(f);
    errno = e;
    return kl_err_errno(err, KL_E_IO, "%s: chmod", path);
  }
  return 0;
}

int kl_atomic_commit(kl_atomic_file *f, kl_err *err) {
  char dir[KL_PATH_MAX];
  struct stat st;
  int e, dfd;

  if (f->durable && fsync(f->fd) != 0) goto fail;
  if (close(f->fd) != 0) {
    f->fd = -1;
    goto fail;
  }
  f->fd = -1;
  /* Re-check the target just before the rename: a symlink or folder that
   * appeared meanwhile is never replaced, and neither is a new file when
   * the caller did not allow it. */
  if (lstat(f->path, &st) == 0) {
    if (S_ISLNK(st.st_mode) || S_ISDIR(st.st_mode)) {
      kl_atomic_abort(f);
      return kl_err_set(err, KL_E_BAD_PATH, ELOOP,
                        "%s: became a link or folder while writing; left alone", f->path);
    }
    if (!f->overwrite) {
      kl_atomic_abort(f);
      return kl_err_set(err, KL_E_BAD_PATH, EEXIST,
                        "%s: the file exists (it appeared while writing); overwrite = true "
                        "replaces it",
                        f->path);
    }
  }
  if (rename(f->tmp, f->path) != 0) goto fail;
  f->tmp[0] = '\0';
  if (f->durable && dir_of(f->path, dir, sizeof dir) == 0) {
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
  }
  return 0;
fail:
  e = errno;
  kl_atomic_abort(f);
  errno = e;
  return kl_err_errno(err, KL_E_IO, "%s", f->path);
}

void kl_atomic_abort(kl_atomic_file *f) {
  if (f->fd >= 0) {
    close(f->fd);
    f->fd = -1;
  }
  if (f->tmp[0] != '\0') {
    unlink(f->tmp);
    f->tmp[0] = '\0';
  }
}
