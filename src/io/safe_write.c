/* Writing a file safely: a unique temporary file in the destination's directory, checked writes,
 * fsync, rename, fsync of the directory, the old file's mode kept, a lock per destination. See
 * safe_write.h for the guarantees; the why of each step is at the step. */
#define _DEFAULT_SOURCE /* flock */
#include "io/safe_write.h"

#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef NAME_MAX
#define NAME_MAX 255
#endif

/* ---- paths --------------------------------------------------------------------------------- */

/* The directory part of `path` ("." when it has none, "/" for a file in /), malloc'd. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    const size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) memcpy(d, path, n), d[n] = '\0';
    return d;
}

static const char *base_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* dir + "/" + name, malloc'd. */
static char *join(const char *dir, const char *name) {
    const size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static const char *kind_of(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

cnn_status cnn_safe_check_target(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) return CNN_OK; /* a new file (or a dangling symlink, which rename replaces) */
        return cnn_fail(CNN_ERR_IO, "%s: cannot be written: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode))
        return cnn_fail(CNN_ERR_IO, "%s exists and is %s; cnn writes only regular files", path, kind_of(sb.st_mode));
    return CNN_OK;
}

/* ---- locks --------------------------------------------------------------------------------- */

struct cnn_safe_lock {
    char *file;         /* the lock file */
    int fd;
    dev_t dev;
    ino_t ino;
    int count;          /* takes in this process */
    cnn_safe_lock *next;
};

/* The locks this process holds: a second take of one of them (cnn train holds its checkpoint's
 * lock for the whole run, and cnn_st_save takes it again for each write) must not wait on
 * itself, which flock would make it do through a second descriptor. */
static cnn_safe_lock *held;
static pthread_mutex_t held_mutex = PTHREAD_MUTEX_INITIALIZER;

/* The lock file of `path`: `.<name>.lock` in its directory, or, where that would pass NAME_MAX,
 * `.cnn-<64-bit FNV-1a of the name>.lock`. */
static char *lock_file_of(const char *path) {
    const char *name = base_of(path);
    char *dir = dir_of(path);
    if (!dir) return NULL;
    const size_t n = strlen(name);
    char *lname = malloc(n + 8);
    char *file = NULL;
    if (lname) {
        if (n + 6 <= NAME_MAX) {
            snprintf(lname, n + 8, ".%s.lock", name);
        } else {
            uint64_t h = 14695981039346656037ull;
            for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
            snprintf(lname, n + 8, ".cnn-%016llx.lock", (unsigned long long)h);
        }
        file = join(dir, lname);
    }
    free(lname);
    free(dir);
    return file;
}

/* The pid written in the lock file open as fd, or 0. */
static long read_pid(int fd) {
    char buf[32];
    const ssize_t k = pread(fd, buf, sizeof buf - 1, 0);
    if (k <= 0) return 0;
    buf[k] = '\0';
    char *end;
    const long pid = strtol(buf, &end, 10);
    return pid > 0 && (*end == '\n' || *end == '\0') ? pid : 0;
}

/* Opens the lock file without following a symlink and without blocking on a FIFO. */
static int open_lock_file(const char *file, cnn_status *s) {
    const int fd = open(file, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0) {
        *s = cnn_fail(CNN_ERR_IO, "cannot create the lock file %s: %s", file, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        *s = cnn_fail(CNN_ERR_IO, "the lock file %s is not a regular file", file);
        return -1;
    }
    return fd;
}

cnn_status cnn_safe_lock_take(const char *path, cnn_safe_lock **out) {
    if (!path || !out) return cnn_fail(CNN_ERR_ARG, "cnn_safe_lock_take: NULL %s", path ? "out" : "path");
    *out = NULL;
    char *file = lock_file_of(path);
    if (!file) return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", path);
    cnn_status s = CNN_OK;
    pthread_mutex_lock(&held_mutex);
    struct stat sb;
    if (lstat(file, &sb) == 0)
        for (cnn_safe_lock *l = held; l; l = l->next)
            if (l->dev == sb.st_dev && l->ino == sb.st_ino) {
                l->count++;
                *out = l;
                goto done;
            }
    /* Another process may remove the lock file between our open and our flock (it releases by
     * unlinking, then closing): then the lock we hold is on a file no one else will see, and we
     * start again on the new one. */
    for (int tries = 0;; tries++) {
        const int fd = open_lock_file(file, &s);
        if (fd < 0) goto done;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int e = errno;
            long pid = 0;
            /* The holder writes its pid just after it takes the lock: give it a moment. */
            for (int k = 0; k < 20 && e == EWOULDBLOCK && !(pid = read_pid(fd)); k++) usleep(5000);
            close(fd);
            if (e != EWOULDBLOCK) {
                s = cnn_fail(CNN_ERR_IO, "cannot lock %s: %s", file, strerror(e));
            } else if (pid) {
                s = cnn_fail(CNN_ERR_IO, "%s is being written by another process (pid %ld; lock file %s)", path,
                             pid, file);
            } else {
                s = cnn_fail(CNN_ERR_IO, "%s is being written by another process (lock file %s)", path, file);
            }
            goto done;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && lstat(file, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            char pid[32];
            const int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
                s = cnn_fail(CNN_ERR_IO, "cannot write the lock file %s: %s", file, strerror(errno));
                close(fd);
                goto done;
            }
            cnn_safe_lock *l = malloc(sizeof *l);
            if (!l) {
                unlink(file);
                close(fd);
                s = cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
            *l = (cnn_safe_lock){.file = file, .fd = fd, .dev = a.st_dev, .ino = a.st_ino, .count = 1, .next = held};
            held = l;
            file = NULL;
            *out = l;
            goto done;
        }
        close(fd);
        if (tries == 100) {
            s = cnn_fail(CNN_ERR_IO, "cannot lock %s: it keeps being replaced", file);
            goto done;
        }
    }
done:
    pthread_mutex_unlock(&held_mutex);
    free(file);
    return s;
}

void cnn_safe_lock_release(cnn_safe_lock *lk) {
    if (!lk) return;
    pthread_mutex_lock(&held_mutex);
    if (--lk->count == 0) {
        for (cnn_safe_lock **p = &held; *p; p = &(*p)->next)
            if (*p == lk) {
                *p = lk->next;
                break;
            }
        unlink(lk->file); /* while it is still locked: see cnn_safe_lock_take */
        close(lk->fd);
        free(lk->file);
        free(lk);
    }
    pthread_mutex_unlock(&held_mutex);
}

/* ---- writing ------------------------------------------------------------------------------- */

cnn_status cnn_safe_open(cnn_safe_file *sf, const char *path) {
    memset(sf, 0, sizeof *sf);
    if (!path || !*path) return cnn_fail(CNN_ERR_ARG, "cnn_safe_open: %s path", path ? "empty" : "NULL");
    cnn_status s;
    if ((s = cnn_safe_check_target(path)) != CNN_OK) return s;
    sf->path = strdup(path);
    sf->dir = dir_of(path);
    sf->tmp = sf->dir ? join(sf->dir, ".cnn-XXXXXX") : NULL; /* short: a 255-byte name still has room */
    if (!sf->path || !sf->dir || !sf->tmp) {
        s = cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    struct stat sb;
    if (stat(sf->dir, &sb) != 0) {
        s = cnn_fail(CNN_ERR_IO, "cannot open %s for writing: its directory %s: %s", path, sf->dir, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(sb.st_mode)) {
        s = cnn_fail(CNN_ERR_IO, "cannot open %s for writing: %s is not a directory", path, sf->dir);
        goto fail;
    }
    if ((s = cnn_safe_lock_take(path, &sf->lock)) != CNN_OK) goto fail;
    /* Checked again under the lock: a FIFO or device put there before it is not replaced. */
    if ((s = cnn_safe_check_target(path)) != CNN_OK) goto fail;
    /* The mode: the old file's, else what open(2) would give a new one. umask is read by setting
     * it, and set back at once. */
    mode_t mode;
    if (stat(path, &sb) == 0) {
        mode = sb.st_mode & 07777;
    } else {
        const mode_t mask = umask(022);
        umask(mask);
        mode = 0666 & ~mask;
    }
    const int fd = mkstemp(sf->tmp); /* O_CREAT|O_EXCL, mode 0600: never an existing file or a symlink */
    if (fd < 0) {
        s = cnn_fail(CNN_ERR_IO, "%s: cannot create a temporary file in %s: %s", path, sf->dir, strerror(errno));
        free(sf->tmp), sf->tmp = NULL;
        goto fail;
    }
    if (fchmod(fd, mode) != 0 || !(sf->f = fdopen(fd, "wb"))) {
        s = cnn_fail(CNN_ERR_IO, "%s: cannot write %s: %s", path, sf->tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    return CNN_OK;
fail:
    cnn_safe_abort(sf);
    return s;
}

void cnn_safe_abort(cnn_safe_file *sf) {
    if (sf->f) fclose(sf->f);
    if (sf->tmp) unlink(sf->tmp);
    cnn_safe_lock_release(sf->lock);
    free(sf->path), free(sf->dir), free(sf->tmp);
    memset(sf, 0, sizeof *sf);
}

cnn_status cnn_safe_commit(cnn_safe_file *sf) {
    if (!sf->f) return cnn_fail(CNN_ERR_ARG, "cnn_safe_commit: no file open");
    cnn_status s = CNN_OK;
    FILE *f = sf->f;
    sf->f = NULL;
    const int bad = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
    const int e = errno;
    if (fclose(f) != 0 || bad) {
        s = cnn_fail(CNN_ERR_IO, "cannot write %s: %s", sf->path, strerror(bad ? e : errno));
        goto done;
    }
    /* Checked once more: what was made there since cnn_safe_open is not replaced either. */
    if ((s = cnn_safe_check_target(sf->path)) != CNN_OK) goto done;
    if (rename(sf->tmp, sf->path) != 0) {
        s = cnn_fail(CNN_ERR_IO, "cannot rename %s to %s: %s", sf->tmp, sf->path, strerror(errno));
        goto done;
    }
    free(sf->tmp), sf->tmp = NULL;
    /* The rename is in the directory: fsync it, so that the new name survives a crash. */
    const int dfd = open(sf->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL)
            s = cnn_fail(CNN_ERR_IO, "cannot sync the directory %s of %s: %s", sf->dir, sf->path, strerror(errno));
        close(dfd);
    }
done:
    cnn_safe_abort(sf);
    return s;
}

cnn_status cnn_safe_write_bytes(const char *path, const void *data, size_t n) {
    cnn_safe_file sf;
    cnn_status s = cnn_safe_open(&sf, path);
    if (s != CNN_OK) return s;
    if (n && fwrite(data, 1, n, sf.f) != n) {
        s = cnn_fail(CNN_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        cnn_safe_abort(&sf);
        return s;
    }
    return cnn_safe_commit(&sf);
}
