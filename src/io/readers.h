/* Internal: the IDX and CIFAR-10 readers on an open file descriptor.
 *
 * cnn_idx_read and cnn_data_open take paths; these take a descriptor, so that a caller holding
 * bytes rather than a file (the fuzz targets, which put each input in a memfd) runs exactly the
 * code that reads real files: the same fstat, the same stdio and zlib calls, the same checks.
 * Not part of the public API.
 */
#ifndef CNN_IO_READERS_H
#define CNN_IO_READERS_H

#include "cnn.h"

#include <stdio.h>
#include <sys/stat.h>

/* As cnn_idx_read, from `fd` (at offset 0; raw, or gzip when `gz` is nonzero), named `name` in
 * messages. Always closes fd. Errors: as cnn_idx_read. */
cnn_status cnn_idx_read_fd(int fd, const char *name, int gz, uint8_t **data, int *ndim,
                           int64_t dims[4]);

/* Reads one CIFAR-10 binary batch (records of 1 label byte + 3072 pixel bytes) from `fd` into ds
 * as a whole split, scaled and normalised as cnn_data_open does, named `name` in messages. fd must
 * be a regular file (its size says how many records there are) and is always closed. On error ds
 * may hold allocations: free ds->x and ds->y. Errors: CNN_ERR_IO, CNN_ERR_FORMAT (a size that is
 * not whole records, a label above 9), CNN_ERR_NOMEM. */
cnn_status cnn_cifar_read_fd(int fd, const char *name, cnn_dataset *ds);

/* Opens `path` for reading if it is a regular file, without ever blocking: a FIFO, a socket, a
 * device or a directory is refused before it is read (src/io/openfile.c). Returns the descriptor
 * (blocking, close-on-exec; its fstat in *sb when sb is not NULL), or -1 with *why set to the
 * reason: strerror's text, or "it is a FIFO, not a regular file" and the like. Sets no error
 * message of its own: callers name the path their way. */
int cnn_i_open_regular(const char *path, const char **why, struct stat *sb);

/* As cnn_i_open_regular, as a stdio stream ("rb"). */
FILE *cnn_i_fopen_regular(const char *path, const char **why);

#endif
