/* Internal: the one way cnn writes a file (checkpoints, safetensors files, exports, logs, plots).
 *
 * A file is written to a new temporary file in the destination's directory (a short unique name,
 * made with mkstemp: O_CREAT|O_EXCL, so an existing name or a symlink is never opened), every
 * write is checked, the file is fsynced and renamed over the destination, and the directory is
 * fsynced: a reader sees the old file or the whole new one, never a part, even after a crash.
 * The new file keeps the mode of the one it replaces (a 0600 checkpoint stays 0600); a new one
 * gets 0666 & ~umask. A destination that exists and is not a regular file (a device node, a
 * FIFO, a socket, a directory) is refused. While it writes, the writer holds the destination's
 * lock (cnn_safe_lock_take), so that two processes never write the same file at once. */
#ifndef CNN_SAFE_WRITE_H
#define CNN_SAFE_WRITE_H

#include "cnn.h"

#include <stdio.h>

/* The lock of one destination: a lock file in its directory, `.<name>.lock` (or, where that name
 * would be longer than NAME_MAX, `.cnn-<hash of name>.lock`), held with flock(2) and holding the
 * holder's pid. flock ends with the process, so the lock of a process that died is taken over
 * by the next writer. Locks are counted per process: a second take of a lock this process holds
 * succeeds (and needs its own release). */
typedef struct cnn_safe_lock cnn_safe_lock;

/* Takes the lock of the file `path` (which need not exist). Errors: CNN_ERR_IO "PATH is being
 * written by another process (pid N, lock file L)", or one naming the lock file that cannot be
 * made; CNN_ERR_NOMEM. */
cnn_status cnn_safe_lock_take(const char *path, cnn_safe_lock **out);

/* Releases (and removes) the lock; accepts NULL. */
void cnn_safe_lock_release(cnn_safe_lock *lk);

/* Checks that `path` may be replaced: it does not exist, or it is a regular file (a symlink is
 * followed for this check; the rename replaces the link itself). Errors: CNN_ERR_IO naming the
 * path and what it is. */
cnn_status cnn_safe_check_target(const char *path);

/* A file being written. */
typedef struct cnn_safe_file {
    FILE *f;            /* write here */
    char *path;         /* the destination, as given */
    char *tmp;          /* the temporary file */
    char *dir;          /* the destination's directory */
    cnn_safe_lock *lock;
} cnn_safe_file;

/* Checks the destination, takes its lock and creates the temporary file. Errors: CNN_ERR_IO
 * (naming the path), CNN_ERR_NOMEM. On failure nothing is left behind. */
cnn_status cnn_safe_open(cnn_safe_file *sf, const char *path);

/* Flushes, fsyncs and closes the temporary file, renames it over the destination, fsyncs the
 * directory and releases the lock. On a failure (CNN_ERR_IO, naming the path and the reason) the
 * temporary file is removed and the destination is as it was. */
cnn_status cnn_safe_commit(cnn_safe_file *sf);

/* Gives up: closes and removes the temporary file, releases the lock. Accepts a cnn_safe_file that
 * failed to open or was committed. */
void cnn_safe_abort(cnn_safe_file *sf);

/* Writes `n` bytes as the whole content of `path`, as above. */
cnn_status cnn_safe_write_bytes(const char *path, const void *data, size_t n);

#endif
