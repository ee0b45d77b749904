/* IDX files of unsigned bytes (the format of MNIST and Fashion-MNIST), raw or gzipped.
 *
 * A file is four magic bytes, 0x00 0x00 <type> <ndim>, then ndim big-endian 32-bit dimensions,
 * then the product of the dimensions in elements, row-major. Only type 0x08 (unsigned byte) is
 * read. Nothing is allocated from the dimensions before they have been checked: their product
 * must not pass IDX_MAX_BYTES, a raw file must be exactly as long as they say (compared with its
 * size on disk), and a gzipped file, whose length is known only once it has been inflated, is
 * read into a buffer that grows with what the stream really holds, never past what the
 * dimensions need; a stream that ends early or goes on after them is rejected.
 */
#include "base/error.h"
#include "io/readers.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The most data bytes a file may hold (2^31): far above any data set read whole into memory. */
#define IDX_MAX_BYTES (INT64_C(1) << 31)
#define IDX_MAX_DIMS 4

/* The first buffer for a gzipped file's data, and the chunk read from zlib at a time. */
#define GZ_FIRST_CAP (INT64_C(1) << 20)
#define GZ_CHUNK (1u << 24)

/* Room for "4294967295x4294967295x4294967295x4294967295". */
#define DIMS_TEXT 48

/* Writes the dims as "60000x28x28" into buf[DIMS_TEXT] and returns buf. */
static const char *dims_text(char *buf, const int64_t *dims, int ndim) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim; i++)
        used += (size_t)snprintf(buf + used, DIMS_TEXT - used, "%s%" PRId64, i ? "x" : "", dims[i]);
    return buf;
}

/* The name of an IDX element type, for messages. */
static const char *type_name(unsigned t) {
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    }
    return "unknown";
}

/* An open IDX file, raw or gzipped, so that the header is read the same way for both. */
struct source {
    const char *path;
    FILE *f;    /* raw, or NULL */
    gzFile gz;  /* gzipped, or NULL */
};

/* Reads up to n bytes into buf and sets *got to how many were read (fewer only at the end).
 * Errors: CNN_ERR_IO (a read error), CNN_ERR_FORMAT (a damaged gzip stream). */
static cnn_status src_read(struct source *s, void *buf, int64_t n, int64_t *got) {
    *got = 0;
    if (s->f) {
        size_t k = fread(buf, 1, (size_t)n, s->f);
        if (k < (size_t)n && ferror(s->f))
            return cnn_fail(CNN_ERR_IO, "%s: cannot read: %s", s->path, strerror(errno));
        *got = (int64_t)k;
        return CNN_OK;
    }
    int64_t done = 0;
    while (done < n) {
        unsigned want = n - done > GZ_CHUNK ? GZ_CHUNK : (unsigned)(n - done);
        int k = gzread(s->gz, (unsigned char *)buf + done, want);
        if (k <= 0) break;
        done += k;
    }
    int err;
    const char *msg = gzerror(s->gz, &err);
    if (err == Z_ERRNO)
        return cnn_fail(CNN_ERR_IO, "%s: cannot read: %s", s->path, strerror(errno));
    /* zlib puts its own name of the stream in front, "<fd:N>: ", which says nothing here. */
    if (msg && !strncmp(msg, "<fd:", 4) && strstr(msg, ">: ")) msg = strstr(msg, ">: ") + 3;
    if (err != Z_OK && err != Z_STREAM_END)
        return cnn_fail(err == Z_MEM_ERROR ? CNN_ERR_NOMEM : CNN_ERR_FORMAT,
                        "%s: the gzip stream is damaged or cut short (zlib: %s)", s->path,
                        msg && *msg ? msg : "unknown error");
    *got = done;
    return CNN_OK;
}

/* Counts the bytes left in a gzipped stream into *rest (for the message about extra bytes).
 * Errors: as src_read. */
static cnn_status gz_count_rest(struct source *s, int64_t *rest) {
    unsigned char scratch[1 << 14];
    *rest = 0;
    for (;;) {
        int64_t got;
        cnn_status st = src_read(s, scratch, sizeof scratch, &got);
        if (st != CNN_OK) return st;
        *rest += got;
        if (got < (int64_t)sizeof scratch) return CNN_OK;
    }
}

/* Reads the gzipped data, `need` bytes, into a buffer that grows as the stream delivers them
 * (never past `need`), and checks that the stream ends right after them. `header` (the header's
 * size) and `dims` are for messages. Errors: CNN_ERR_FORMAT (shorter, longer, damaged),
 * CNN_ERR_IO, CNN_ERR_NOMEM. */
static cnn_status read_gz_data(struct source *s, int64_t need, int header, const char *dims,
                               uint8_t **out) {
    int64_t cap = need < GZ_FIRST_CAP ? need : GZ_FIRST_CAP, have = 0, got, extra;
    uint8_t *buf = malloc(cap > 0 ? (size_t)cap : 1);
    if (!buf) return cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate %" PRId64 " bytes", s->path, cap);
    cnn_status st;
    for (;;) {
        if ((st = src_read(s, buf + have, cap - have, &got)) != CNN_OK) goto fail;
        have += got;
        if (have < cap || cap == need) break; /* the stream ended, or all is read */
        int64_t bigger = cap < need / 2 ? cap * 2 : need;
        uint8_t *grown = realloc(buf, (size_t)bigger);
        if (!grown) {
            st = cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate %" PRId64 " bytes", s->path, bigger);
            goto fail;
        }
        buf = grown;
        cap = bigger;
    }
    if (have < need) {
        st = cnn_fail(CNN_ERR_FORMAT, "%s: truncated: dims %s need %" PRId64 " bytes after the "
                      "%d-byte header, the file holds %" PRId64, s->path, dims, need, header, have);
        goto fail;
    }
    if ((st = gz_count_rest(s, &extra)) != CNN_OK) goto fail;
    if (extra > 0) {
        st = cnn_fail(CNN_ERR_FORMAT, "%s: %" PRId64 " extra bytes: dims %s need %" PRId64
                      " bytes after the %d-byte header, the file holds %" PRId64, s->path, extra,
                      dims, need, header, need + extra);
        goto fail;
    }
    *out = buf;
    return CNN_OK;
fail:
    free(buf);
    return st;
}

/* Returns 1 if path ends in ".gz". */
static int is_gz(const char *path) {
    size_t n = strlen(path);
    return n >= 3 && strcmp(path + n - 3, ".gz") == 0;
}

cnn_status cnn_idx_read(const char *path, uint8_t **data, int *ndim, int64_t dims[4]) {
    if (data) *data = NULL;
    if (ndim) *ndim = 0;
    if (dims) memset(dims, 0, IDX_MAX_DIMS * sizeof *dims);
    if (!path || !data || !ndim || !dims)
        return cnn_fail(CNN_ERR_ARG, "cnn_idx_read: NULL %s",
                        !path ? "path" : !data ? "data" : !ndim ? "ndim" : "dims");
    const char *why;
    const int fd = cnn_i_open_regular(path, &why, NULL);
    if (fd < 0) return cnn_fail(CNN_ERR_IO, "cannot open '%s': %s", path, why);
    return cnn_idx_read_fd(fd, path, is_gz(path), data, ndim, dims);
}

cnn_status cnn_idx_read_fd(int fd, const char *path, int gz, uint8_t **data, int *ndim,
                           int64_t dims[4]) {
    if (data) *data = NULL;
    if (ndim) *ndim = 0;
    if (dims) memset(dims, 0, IDX_MAX_DIMS * sizeof *dims);
    if (fd < 0 || !path || !data || !ndim || !dims) {
        if (fd >= 0) close(fd);
        return cnn_fail(CNN_ERR_ARG, "cnn_idx_read_fd: %s",
                        fd < 0 ? "negative fd" : !path ? "NULL name" : "NULL output");
    }

    struct source s = {.path = path};
    int64_t file_size = -1; /* raw files only */
    if (gz) {
        s.gz = gzdopen(fd, "rb"); /* fails only when out of memory */
        if (!s.gz) {
            close(fd);
            return cnn_fail(CNN_ERR_NOMEM, "cannot open '%s': out of memory", path);
        }
        gzbuffer(s.gz, 1 << 17);
    } else {
        s.f = fdopen(fd, "rb");
        if (!s.f) {
            const int e = errno;
            close(fd);
            return cnn_fail(CNN_ERR_IO, "cannot open '%s': %s", path, strerror(e));
        }
        struct stat sb;
        const char *why = fstat(fd, &sb) != 0 ? strerror(errno)
                          : !S_ISREG(sb.st_mode) ? "not a regular file"
                                                 : NULL;
        if (why) {
            fclose(s.f);
            return cnn_fail(CNN_ERR_IO, "cannot read '%s': %s", path, why);
        }
        file_size = (int64_t)sb.st_size;
    }

    uint8_t *buf = NULL;
    unsigned char magic[4], raw_dims[4 * IDX_MAX_DIMS];
    int64_t got;
    cnn_status st = src_read(&s, magic, 4, &got);
    if (st != CNN_OK) goto done;
    if (got < 4) {
        st = cnn_fail(CNN_ERR_FORMAT, "%s: truncated: %" PRId64 " bytes, fewer than the 4 of the "
                      "IDX magic", path, got);
        goto done;
    }
    if (magic[0] != 0 || magic[1] != 0) {
        st = cnn_fail(CNN_ERR_FORMAT, "%s: bad magic %02x %02x %02x %02x: not an IDX file "
                      "(expected 00 00 08 <ndim>)%s", path, magic[0], magic[1], magic[2], magic[3],
                      magic[0] == 0x1f && magic[1] == 0x8b ? "; it looks gzipped: name it .gz"
                                                           : "");
        goto done;
    }
    if (magic[2] != 0x08) {
        st = cnn_fail(CNN_ERR_FORMAT, "%s: element type 0x%02x (%s) is not supported; only 0x08 "
                      "(unsigned byte) is", path, magic[2], type_name(magic[2]));
        goto done;
    }
    const int nd = magic[3];
    if (nd < 1 || nd > IDX_MAX_DIMS) {
        st = cnn_fail(CNN_ERR_FORMAT, "%s: %d dimensions; 1 to %d are supported", path, nd,
                      IDX_MAX_DIMS);
        goto done;
    }
    const int header = 4 + 4 * nd;
    if ((st = src_read(&s, raw_dims, 4 * nd, &got)) != CNN_OK) goto done;
    if (got < 4 * nd) {
        st = cnn_fail(CNN_ERR_FORMAT, "%s: truncated: the header of %d dimensions needs %d bytes, "
                      "the file holds %" PRId64, path, nd, header, 4 + got);
        goto done;
    }
    int64_t d[IDX_MAX_DIMS], need = 1;
    int too_big = 0;
    for (int i = 0; i < nd; i++) {
        const unsigned char *p = raw_dims + 4 * i;
        d[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    }
    for (int i = 0; i < nd && !too_big; i++) {
        need *= d[i]; /* need ≤ 2^31 and d[i] < 2^32 here, so this cannot overflow int64 */
        too_big = need > IDX_MAX_BYTES;
    }
    for (int i = 0; i < nd; i++)
        if (d[i] == 0) need = 0, too_big = 0; /* an empty array, whatever the other dims */
    char dt[DIMS_TEXT];
    dims_text(dt, d, nd);
    if (too_big) {
        st = cnn_fail(CNN_ERR_FORMAT, "%s: dims %s hold more than %" PRId64 " bytes", path, dt,
                      IDX_MAX_BYTES);
        goto done;
    }

    if (s.f) {
        const int64_t holds = file_size - header;
        if (holds != need) {
            if (holds < need)
                st = cnn_fail(CNN_ERR_FORMAT, "%s: truncated: dims %s need %" PRId64 " bytes "
                              "after the %d-byte header, the file holds %" PRId64, path, dt, need,
                              header, holds);
            else
                st = cnn_fail(CNN_ERR_FORMAT, "%s: %" PRId64 " extra bytes: dims %s need %" PRId64
                              " bytes after the %d-byte header, the file holds %" PRId64, path,
                              holds - need, dt, need, header, holds);
            goto done;
        }
        buf = malloc(need > 0 ? (size_t)need : 1);
        if (!buf) {
            st = cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate %" PRId64 " bytes", path, need);
            goto done;
        }
        if ((st = src_read(&s, buf, need, &got)) != CNN_OK) goto done;
        if (got < need) { /* the file shrank while we read it */
            st = cnn_fail(CNN_ERR_FORMAT, "%s: truncated: dims %s need %" PRId64 " bytes after "
                          "the %d-byte header, the file holds %" PRId64, path, dt, need, header,
                          got);
            goto done;
        }
    } else if ((st = read_gz_data(&s, need, header, dt, &buf)) != CNN_OK) {
        goto done;
    }

    *data = buf;
    buf = NULL;
    *ndim = nd;
    memcpy(dims, d, (size_t)nd * sizeof *d);

done:
    free(buf);
    if (s.f) fclose(s.f);
    if (s.gz) gzclose(s.gz);
    return st;
}
