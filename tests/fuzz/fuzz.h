/* Shared by the fuzz targets: a check that aborts (so that libFuzzer reports it with the input),
 * and a memfd that holds the input for the readers that take a file descriptor. */
#ifndef CNN_FUZZ_H
#define CNN_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Aborts with a message when an invariant of the library does not hold. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A fresh descriptor at offset 0 of an in-memory file that holds exactly `size` bytes of `data`
 * (one memfd, reused: truncated and rewritten for each input). The caller's reader closes it.
 * Returns -1 if the memfd cannot be made or written. */
static inline int fuzz_memfd(const uint8_t *data, size_t size) {
    static int base = -1;
    if (base < 0 && (base = memfd_create("cnn-fuzz", MFD_CLOEXEC)) < 0) return -1;
    if (ftruncate(base, 0) != 0) return -1;
    for (size_t at = 0; at < size;) {
        const ssize_t k = pwrite(base, data + at, size - at, (off_t)at);
        if (k <= 0) return -1;
        at += (size_t)k;
    }
    if (lseek(base, 0, SEEK_SET) != 0) return -1;
    return dup(base); /* shares base's offset, which the next input puts back to 0 */
}

#endif
