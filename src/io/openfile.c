/* Opening outside input: only a regular file is read.
 *
 * A FIFO, a socket or a device given where a file is expected would block the reader forever (a
 * FIFO with no writer blocks open(2) itself) or feed it without end (/dev/zero). So the path is
 * checked with stat(2) before it is opened (a device is never opened: opening some has effects),
 * opened with O_NONBLOCK (a FIFO swapped in after the stat cannot block the open), checked again
 * on the descriptor with fstat(2) (what was opened is what is read), and only then made blocking
 * again for the reads. */
#include "io/readers.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Why a file of mode `m` is not read, or NULL for a regular file. */
static const char *not_regular(mode_t m) {
    if (S_ISREG(m)) return NULL;
    if (S_ISFIFO(m)) return "it is a FIFO, not a regular file";
    if (S_ISSOCK(m)) return "it is a socket, not a regular file";
    if (S_ISCHR(m)) return "it is a character device, not a regular file";
    if (S_ISBLK(m)) return "it is a block device, not a regular file";
    if (S_ISDIR(m)) return "it is a directory, not a regular file";
    return "it is not a regular file";
}

int cnn_i_open_regular(const char *path, const char **why, struct stat *sb) {
    struct stat own;
    if (!sb) sb = &own;
    if (stat(path, sb) != 0) {
        *why = strerror(errno);
        return -1;
    }
    if ((*why = not_regular(sb->st_mode))) return -1;
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    int flags;
    if (fstat(fd, sb) != 0 || (flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        *why = strerror(errno);
        close(fd);
        return -1;
    }
    if ((*why = not_regular(sb->st_mode))) {
        close(fd);
        return -1;
    }
    return fd;
}

FILE *cnn_i_fopen_regular(const char *path, const char **why) {
    const int fd = cnn_i_open_regular(path, why, NULL);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        *why = strerror(errno);
        close(fd);
    }
    return f;
}
