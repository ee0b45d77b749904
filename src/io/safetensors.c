/* safetensors files: a validating reader and a writer that lays files out as the safetensors
 * project does.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON, then the data buffer:
 *
 *     {"__metadata__": {"format": "pt"},
 *      "0.weight": {"dtype": "F32", "shape": [6, 1, 5, 5], "data_offsets": [0, 600]}, ...}
 *
 * Reading trusts nothing in the file: every length and offset is checked against what is really
 * there before it is used, every size is computed with overflow checks, and nothing is allocated
 * from a number in the file before that number has been checked against the file's size. A
 * loaded cnn_st owns the whole file; the tensors point into it (or, for the rare tensor whose
 * offset is not aligned for its dtype, into an aligned copy).
 */
#include "base/error.h"
#include "io/readers.h"
#include "io/safe_write.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The largest header we accept, as the safetensors project does (100 MB). */
#define ST_MAX_HEADER 100000000u

/* Room for a formatted shape: "[" + 8 × ("-9223372036854775808" + ", ") + "]". */
#define SHAPE_TEXT 256

/* ---------------------------------------------------------------------------------------------
 * dtypes
 * ------------------------------------------------------------------------------------------- */

/* Per cnn_dtype: its safetensors name, its size, and its position in the safetensors project's
 * Dtype enum (BOOL < U8 < I8 < ... < F64 < I64), by which writers sort tensors, largest first. */
static const struct dtype_info {
    const char *name;
    size_t size;
    int rank;
} DTYPES[] = {
    [CNN_F32] = {"F32", 4, 11}, [CNN_F64] = {"F64", 8, 12}, [CNN_I64] = {"I64", 8, 13},
    [CNN_I32] = {"I32", 4, 9},  [CNN_U8] = {"U8", 1, 1},    [CNN_F16] = {"F16", 2, 7},
    [CNN_BF16] = {"BF16", 2, 8}, [CNN_I16] = {"I16", 2, 5}, [CNN_I8] = {"I8", 1, 2},
    [CNN_BOOL] = {"BOOL", 1, 0},
};
#define N_DTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

static int dtype_valid(cnn_dtype t) { return (unsigned)t < (unsigned)N_DTYPES; }

size_t cnn_dtype_size(cnn_dtype t) { return dtype_valid(t) ? DTYPES[t].size : 0; }

const char *cnn_dtype_name(cnn_dtype t) { return dtype_valid(t) ? DTYPES[t].name : NULL; }

/* The dtype called `name` in a safetensors header; returns 0 if there is none. */
static int dtype_from_name(const char *name, cnn_dtype *out) {
    for (int i = 0; i < N_DTYPES; i++) {
        if (strcmp(DTYPES[i].name, name) == 0) {
            *out = (cnn_dtype)i;
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Shapes and checked arithmetic
 * ------------------------------------------------------------------------------------------- */

/* *out = a * b for non-negative a and b; returns 0 (leaving *out alone) if it overflows int64. */
static int mul_i64(int64_t a, int64_t b, int64_t *out) {
    if (b != 0 && a > INT64_MAX / b) return 0;
    *out = a * b;
    return 1;
}

/* The product of `ndim` non-negative dims in *numel; returns 0 if it overflows int64. */
static int shape_numel(const int64_t *shape, int ndim, int64_t *numel) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (!mul_i64(n, shape[i], &n)) return 0;
    *numel = n;
    return 1;
}

/* Writes "[2, 3, 5]" ("[]" for a scalar) into buf[SHAPE_TEXT] and returns buf. When `wildcards`
 * is set, an entry of -1 is written as "?" (any size). */
static const char *shape_text(char *buf, const int64_t *shape, int ndim, int wildcards) {
    size_t used = 0;
    buf[used++] = '[';
    for (int i = 0; i < ndim && i < CNN_MAX_DIMS; i++) {
        const char *sep = i ? ", " : "";
        int k = (wildcards && shape[i] == -1)
                    ? snprintf(buf + used, SHAPE_TEXT - used, "%s?", sep)
                    : snprintf(buf + used, SHAPE_TEXT - used, "%s%" PRId64, sep, shape[i]);
        used += (size_t)k; /* cannot overflow: SHAPE_TEXT holds CNN_MAX_DIMS of the longest */
    }
    snprintf(buf + used, SHAPE_TEXT - used, "]");
    return buf;
}

int64_t cnn_tensor_numel(const cnn_tensor *t) {
    if (!t || t->ndim < 0 || t->ndim > CNN_MAX_DIMS) return -1;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0) return -1;
    int64_t n;
    return shape_numel(t->shape, t->ndim, &n) ? n : -1;
}

/* ---------------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------------- */

struct cnn_st {
    unsigned char *file;         /* the whole file, malloc'd (so aligned for any dtype) */
    unsigned char *moved;        /* aligned copies of the tensors at misaligned offsets, or NULL */
    json_t *header;              /* the parsed header; tensor names and metadata point into it */
    json_t *meta;                /* header's "__metadata__" object (borrowed), or NULL */
    int count;
    cnn_tensor *tensors;         /* in file order */
    const cnn_tensor **by_name;  /* the same tensors sorted by name, for cnn_st_find */
};

/* Where a tensor's bytes lie in the data buffer, for the overlap check. */
struct span {
    uint64_t begin, end;
    int index;
};

/* Names in messages are cut to this many bytes, so that the numbers after them always fit. */
#define NAME_MAX_SHOWN 200

/* Reads the integer `v` as a non-negative int64; returns 0 if it is not one. */
static int json_nonneg(const json_t *v, int64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = (int64_t)json_integer_value(v);
    return 1;
}

/* Parses and checks one header entry, `name`: {"dtype", "shape", "data_offsets"}. Fills t (except
 * data) and *sp with the entry's offsets; `data_len` is the size of the data buffer.
 * Errors: CNN_ERR_FORMAT (a missing or ill-typed field, a bad shape, offsets that do not fit),
 * CNN_ERR_DTYPE (an unknown dtype); every message starts with "tensor 'NAME': ". */
static cnn_status parse_entry(const char *name, const json_t *v, uint64_t data_len, cnn_tensor *t,
                              struct span *sp) {
    const int w = NAME_MAX_SHOWN;
    if (!json_is_object(v))
        return cnn_fail(CNN_ERR_FORMAT,
                        "tensor '%.*s': entry is not an object of dtype, shape and data_offsets", w,
                        name);
    t->name = name;

    const json_t *dt = json_object_get(v, "dtype");
    if (!json_is_string(dt))
        return cnn_fail(CNN_ERR_FORMAT, "tensor '%.*s': \"dtype\" is missing or not a string", w,
                        name);
    if (!dtype_from_name(json_string_value(dt), &t->dtype))
        return cnn_fail(CNN_ERR_DTYPE,
                        "tensor '%.*s': unknown dtype '%.32s' (known: F64, F32, F16, BF16, I64, "
                        "I32, I16, I8, U8, BOOL)",
                        w, name, json_string_value(dt));

    const json_t *sh = json_object_get(v, "shape");
    if (!json_is_array(sh))
        return cnn_fail(CNN_ERR_FORMAT, "tensor '%.*s': \"shape\" is missing or not an array", w,
                        name);
    if (json_array_size(sh) > CNN_MAX_DIMS)
        return cnn_fail(CNN_ERR_FORMAT, "tensor '%.*s': shape has %zu dimensions, more than the %d "
                        "supported", w, name, json_array_size(sh), CNN_MAX_DIMS);
    t->ndim = (int)json_array_size(sh);
    for (int i = 0; i < t->ndim; i++)
        if (!json_nonneg(json_array_get(sh, (size_t)i), &t->shape[i]))
            return cnn_fail(CNN_ERR_FORMAT,
                            "tensor '%.*s': shape entry %d is not a non-negative integer", w, name,
                            i);

    char st[SHAPE_TEXT];
    int64_t numel, nbytes;
    if (!shape_numel(t->shape, t->ndim, &numel))
        return cnn_fail(CNN_ERR_FORMAT, "tensor '%.*s': the product of shape %s overflows int64", w,
                        name, shape_text(st, t->shape, t->ndim, 0));
    if (!mul_i64(numel, (int64_t)DTYPES[t->dtype].size, &nbytes))
        return cnn_fail(CNN_ERR_FORMAT, "tensor '%.*s': shape %s of %s needs more bytes than int64 "
                        "can count", w, name, shape_text(st, t->shape, t->ndim, 0),
                        DTYPES[t->dtype].name);

    const json_t *off = json_object_get(v, "data_offsets");
    int64_t begin, end;
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !json_nonneg(json_array_get(off, 0), &begin) || !json_nonneg(json_array_get(off, 1), &end))
        return cnn_fail(CNN_ERR_FORMAT, "tensor '%.*s': \"data_offsets\" is not two non-negative "
                        "integers [begin, end]", w, name);
    if (begin > end)
        return cnn_fail(CNN_ERR_FORMAT, "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64 "] "
                        "begin after they end", w, name, begin, end);
    if ((uint64_t)end > data_len)
        return cnn_fail(CNN_ERR_FORMAT, "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64 "] "
                        "reach past the end of the %" PRIu64 "-byte data buffer (is the file "
                        "truncated?)", w, name, begin, end, data_len);
    if (end - begin != nbytes)
        return cnn_fail(CNN_ERR_FORMAT, "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64 "] "
                        "hold %" PRId64 " bytes but shape %s of %s needs %" PRId64, w, name, begin,
                        end, end - begin, shape_text(st, t->shape, t->ndim, 0),
                        DTYPES[t->dtype].name, nbytes);
    sp->begin = (uint64_t)begin;
    sp->end = (uint64_t)end;
    return CNN_OK;
}

/* Checks "__metadata__": an object whose values are all strings. Errors: CNN_ERR_FORMAT. */
static cnn_status check_metadata(json_t *meta) {
    if (!json_is_object(meta))
        return cnn_fail(CNN_ERR_FORMAT, "__metadata__ is not an object of strings");
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        if (!json_is_string(value))
            return cnn_fail(CNN_ERR_FORMAT, "__metadata__ value of '%.*s' is not a string",
                            NAME_MAX_SHOWN, key);
    }
    return CNN_OK;
}

static int span_cmp(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Checks that the tensors' byte ranges do not overlap and that together they cover the data buffer
 * of `data_len` bytes with no gap, as the format requires. Sorts `spans`.
 * Errors: CNN_ERR_FORMAT. */
static cnn_status check_spans(const cnn_st *st, struct span *spans, uint64_t data_len) {
    const int w = NAME_MAX_SHOWN;
    qsort(spans, (size_t)st->count, sizeof *spans, span_cmp);
    uint64_t covered = 0; /* every byte before this belongs to a tensor */
    for (int i = 0; i < st->count; i++) {
        const struct span *s = &spans[i];
        const char *name = st->tensors[s->index].name;
        if (s->begin < covered) {
            const struct span *p = &spans[i - 1]; /* covered > 0 means there is one before */
            return cnn_fail(CNN_ERR_FORMAT, "tensors '%.*s' (data_offsets [%" PRIu64 ", %" PRIu64
                            "]) and '%.*s' (data_offsets [%" PRIu64 ", %" PRIu64 "]) overlap",
                            w, st->tensors[p->index].name, p->begin, p->end, w, name, s->begin,
                            s->end);
        }
        if (s->begin > covered)
            return cnn_fail(CNN_ERR_FORMAT, "bytes [%" PRIu64 ", %" PRIu64 ") of the data buffer, "
                            "before tensor '%.*s', belong to no tensor; tensors must cover the "
                            "buffer with no gap", covered, s->begin, w, name);
        covered = s->end;
    }
    if (covered != data_len)
        return cnn_fail(CNN_ERR_FORMAT, "the data buffer has %" PRIu64 " bytes but the tensors "
                        "cover only the first %" PRIu64 "; tensors must cover the buffer with no "
                        "gap", data_len, covered);
    return CNN_OK;
}

static int tensor_name_cmp(const void *a, const void *b) {
    const cnn_tensor *x = *(const cnn_tensor *const *)a, *y = *(const cnn_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Points every tensor at its bytes. A tensor whose bytes are not aligned for its dtype (possible
 * only when N or an offset is not a multiple of the dtype size) gets an 8-aligned copy in
 * st->moved.
 * Errors: CNN_ERR_NOMEM. */
static cnn_status place_data(cnn_st *st, unsigned char *base, const struct span *by_index) {
    size_t moved = 0; /* bytes needed for the copies, each rounded up to 8 */
    for (int i = 0; i < st->count; i++) {
        cnn_tensor *t = &st->tensors[i];
        size_t n = (size_t)(by_index[i].end - by_index[i].begin);
        t->data = base + by_index[i].begin;
        if (n == 0)
            t->data = st->file; /* no bytes: any aligned pointer will do */
        else if ((uintptr_t)t->data % DTYPES[t->dtype].size != 0)
            moved += (n + 7) & ~(size_t)7;
    }
    if (moved == 0) return CNN_OK;
    st->moved = malloc(moved);
    if (!st->moved)
        return cnn_fail(CNN_ERR_NOMEM, "cannot allocate %zu bytes to align tensor data", moved);
    size_t at = 0;
    for (int i = 0; i < st->count; i++) {
        cnn_tensor *t = &st->tensors[i];
        size_t n = (size_t)(by_index[i].end - by_index[i].begin);
        if (n == 0 || (uintptr_t)t->data % DTYPES[t->dtype].size == 0) continue;
        memcpy(st->moved + at, t->data, n);
        t->data = st->moved + at;
        at += (n + 7) & ~(size_t)7;
    }
    return CNN_OK;
}

/* Checks the header length n of a file of `len` bytes (at least 8). Errors: CNN_ERR_FORMAT. */
static cnn_status check_header_len(uint64_t n, uint64_t len) {
    if (n > ST_MAX_HEADER)
        return cnn_fail(CNN_ERR_FORMAT, "header length %" PRIu64 " is more than the limit of %u "
                        "bytes (is this a safetensors file?)", n, ST_MAX_HEADER);
    if (n > len - 8)
        return cnn_fail(CNN_ERR_FORMAT, "header length %" PRIu64 " is more than the %" PRIu64 " bytes "
                        "after it (is the file truncated?)", n, len - 8);
    return CNN_OK;
}

/* Parses and validates the safetensors file of `len` bytes at `file`, taking ownership of `file`
 * (a malloc'd buffer, freed here on failure). On success *out owns it. Errors: as cnn_st_parse. */
static cnn_status st_build(unsigned char *file, size_t len, cnn_st **out) {
    if (len < 8) {
        free(file);
        return cnn_fail(CNN_ERR_FORMAT, "the file has %zu bytes, fewer than the 8 of the header "
                        "length (is it truncated?)", len);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | file[i];
    cnn_status hs = check_header_len(n, len);
    if (hs != CNN_OK) {
        free(file);
        return hs;
    }

    cnn_st *st = calloc(1, sizeof *st);
    if (!st) {
        free(file);
        return cnn_fail(CNN_ERR_NOMEM, "cannot allocate a safetensors file");
    }
    st->file = file;
    struct span *spans = NULL;
    cnn_status s = CNN_OK;

    json_error_t jerr;
    /* DECODE_ANY: a header of "12" is reported as "a JSON number", not as a syntax error. */
    st->header = json_loadb((const char *)file + 8, (size_t)n,
                            JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!st->header) {
        s = cnn_fail(CNN_ERR_FORMAT, "the header is not valid JSON: %s (at byte %d of %" PRIu64
                     ")", jerr.text, jerr.position, n);
        goto fail;
    }
    if (!json_is_object(st->header)) {
        s = cnn_fail(CNN_ERR_FORMAT, "the header is a JSON %s, not an object",
                     json_is_array(st->header)    ? "array"
                     : json_is_string(st->header) ? "string"
                     : json_is_number(st->header) ? "number"
                                                  : "literal");
        goto fail;
    }

    st->meta = json_object_get(st->header, "__metadata__");
    if (st->meta && (s = check_metadata(st->meta)) != CNN_OK) goto fail;

    size_t count = json_object_size(st->header) - (st->meta ? 1 : 0);
    if (count > INT32_MAX) { /* unreachable with a 100 MB header; keeps the casts below honest */
        s = cnn_fail(CNN_ERR_FORMAT, "the header lists %zu tensors, too many", count);
        goto fail;
    }
    st->count = (int)count;
    st->tensors = calloc(count + 1, sizeof *st->tensors);
    st->by_name = calloc(count + 1, sizeof *st->by_name);
    spans = calloc(count + 1, sizeof *spans);
    if (!st->tensors || !st->by_name || !spans) {
        s = cnn_fail(CNN_ERR_NOMEM, "cannot allocate %zu tensors", count);
        goto fail;
    }

    /* jansson keeps keys in file order, so this is the order of cnn_st_tensor. */
    uint64_t data_len = (uint64_t)(len - 8 - (size_t)n);
    const char *key;
    json_t *value;
    int i = 0;
    json_object_foreach(st->header, key, value) {
        if (value == st->meta) continue;
        if ((s = parse_entry(key, value, data_len, &st->tensors[i], &spans[i])) != CNN_OK)
            goto fail;
        spans[i].index = i;
        st->by_name[i] = &st->tensors[i];
        i++;
    }
    if ((s = place_data(st, file + 8 + n, spans)) != CNN_OK) goto fail;
    if ((s = check_spans(st, spans, data_len)) != CNN_OK) goto fail;
    qsort(st->by_name, count, sizeof *st->by_name, tensor_name_cmp);

    free(spans);
    *out = st;
    return CNN_OK;

fail:
    free(spans);
    cnn_st_free(st);
    return s;
}

cnn_status cnn_st_parse(const void *buf, size_t len, cnn_st **out) {
    if (out) *out = NULL;
    if (!buf || !out) return cnn_fail(CNN_ERR_ARG, "cnn_st_parse: NULL %s", buf ? "out" : "buf");
    if (len < 8) return st_build(NULL, len, out); /* reports the short file */
    unsigned char *copy = malloc(len);
    if (!copy)
        return cnn_fail(CNN_ERR_NOMEM, "cannot allocate %zu bytes for a safetensors file", len);
    memcpy(copy, buf, len);
    return st_build(copy, len, out);
}

/* Reads exactly n bytes of fd into buf. Returns 1, or 0 with *why (a short read: the file
 * shrank since its size was taken). */
static int read_exact(int fd, unsigned char *buf, size_t n, const char **why) {
    for (size_t got = 0; got < n;) {
        const ssize_t k = read(fd, buf + got, n - got > (1u << 30) ? (1u << 30) : n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            *why = k < 0 ? strerror(errno) : "the file shrank while being read";
            return 0;
        }
        got += (size_t)k;
    }
    return 1;
}

/* The bytes of data that a header of n bytes at hdr describes: the largest end of the tensors'
 * data_offsets, or -1 when the header does not say (it is not a JSON object of entries with two
 * non-negative integer offsets; st_build reports why). */
static int64_t described_data(const unsigned char *hdr, uint64_t n) {
    json_t *h = json_loadb((const char *)hdr, (size_t)n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    int64_t most = 0;
    const char *key;
    json_t *v;
    if (!json_is_object(h)) most = -1;
    else
        json_object_foreach(h, key, v) {
            if (!strcmp(key, "__metadata__")) continue;
            const json_t *off = json_object_get(v, "data_offsets");
            int64_t b, e;
            if (!json_is_array(off) || json_array_size(off) != 2 || !json_nonneg(json_array_get(off, 0), &b) ||
                !json_nonneg(json_array_get(off, 1), &e)) {
                most = -1;
                break;
            }
            if (e > most) most = e;
        }
    json_decref(h);
    return most;
}

/* Reading a file checks each part before it reads the next, and reads no more than the header
 * describes: the 8-byte length, checked against the limit and the file's size; the header; then the
 * data, whose size the header's offsets must agree with. Only a regular file is read (a FIFO or
 * /dev/zero is refused before a byte is read), so the size is known before anything is allocated. */
cnn_status cnn_st_load(const char *path, cnn_st **out) {
    if (out) *out = NULL;
    if (!path || !out) return cnn_fail(CNN_ERR_ARG, "cnn_st_load: NULL %s", path ? "out" : "path");
    const char *why;
    struct stat sb;
    const int fd = cnn_i_open_regular(path, &why, &sb);
    if (fd < 0) return cnn_fail(CNN_ERR_IO, "cannot open '%s': %s", path, why);
    const uint64_t size = sb.st_size > 0 ? (uint64_t)sb.st_size : 0;
    cnn_status s;
    unsigned char *buf = NULL, head[8];
    if (size < 8) { /* st_build reports the short file */
        close(fd);
        s = st_build(NULL, (size_t)size, out);
        cnn_error_prefix(path);
        return s;
    }
    if (!read_exact(fd, head, 8, &why)) goto read_fail;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | head[i];
    if ((s = check_header_len(n, size)) != CNN_OK) {
        close(fd);
        cnn_error_prefix(path);
        return s;
    }
    if (size > SIZE_MAX) {
        close(fd);
        return cnn_fail(CNN_ERR_NOMEM, "'%s' has %" PRIu64 " bytes, more than memory can hold", path, size);
    }
    if (!(buf = malloc(8 + (size_t)n))) {
        close(fd);
        return cnn_fail(CNN_ERR_NOMEM, "cannot allocate %" PRIu64 " bytes for the header of '%s'", n, path);
    }
    memcpy(buf, head, 8);
    if (!read_exact(fd, buf + 8, (size_t)n, &why)) goto read_fail;
    const uint64_t data_len = size - 8 - n;
    const int64_t described = described_data(buf + 8, n);
    if (described >= 0 && (uint64_t)described < data_len) {
        close(fd);
        free(buf);
        s = cnn_fail(CNN_ERR_FORMAT, "the data buffer has %" PRIu64 " bytes but the tensors cover only the "
                     "first %" PRId64 "; tensors must cover the buffer with no gap", data_len, described);
        cnn_error_prefix(path);
        return s;
    }
    /* The header describes at least the bytes there are (more: st_build reports the truncation). */
    unsigned char *whole = realloc(buf, (size_t)size);
    if (!whole) {
        close(fd);
        free(buf);
        return cnn_fail(CNN_ERR_NOMEM, "cannot allocate %" PRIu64 " bytes to read '%s'", size, path);
    }
    buf = whole;
    if (!read_exact(fd, buf + 8 + n, (size_t)data_len, &why)) goto read_fail;
    close(fd);
    s = st_build(buf, (size_t)size, out);
    if (s != CNN_OK) cnn_error_prefix(path);
    return s;

read_fail:
    close(fd);
    free(buf);
    return cnn_fail(CNN_ERR_IO, "cannot read '%s': %s", path, why);
}

void cnn_st_free(cnn_st *st) {
    if (!st) return;
    json_decref(st->header);
    free(st->tensors);
    free(st->by_name);
    free(st->moved);
    free(st->file);
    free(st);
}

int cnn_st_count(const cnn_st *st) { return st ? st->count : 0; }

const cnn_tensor *cnn_st_tensor(const cnn_st *st, int i) {
    return st && i >= 0 && i < st->count ? &st->tensors[i] : NULL;
}

const cnn_tensor *cnn_st_find(const cnn_st *st, const char *name) {
    if (!st || !name) return NULL;
    cnn_tensor key = {.name = name};
    const cnn_tensor *pkey = &key;
    const cnn_tensor **hit =
        bsearch(&pkey, st->by_name, (size_t)st->count, sizeof *st->by_name, tensor_name_cmp);
    return hit ? *hit : NULL;
}

const char *cnn_st_metadata(const cnn_st *st, const char *key) {
    if (!st || !st->meta || !key) return NULL;
    return json_string_value(json_object_get(st->meta, key));
}

cnn_status cnn_st_require(const cnn_st *st, const char *what, const char *name, cnn_dtype dtype,
                          int ndim, const int64_t *shape, const cnn_tensor **out) {
    if (out) *out = NULL;
    if (!what) what = "safetensors";
    if (!st || !name)
        return cnn_fail(CNN_ERR_ARG, "%s: cnn_st_require: NULL %s", what, st ? "name" : "file");
    if (!dtype_valid(dtype))
        return cnn_fail(CNN_ERR_ARG, "%s: cnn_st_require: invalid dtype %d", what, (int)dtype);
    if (ndim > CNN_MAX_DIMS || (ndim > 0 && !shape))
        return cnn_fail(CNN_ERR_ARG, "%s: cnn_st_require: invalid expected shape (ndim %d)", what,
                        ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < -1)
            return cnn_fail(CNN_ERR_ARG, "%s: cnn_st_require: expected shape entry %d is %" PRId64,
                            what, i, shape[i]);

    char want[SHAPE_TEXT], have[SHAPE_TEXT];
    if (ndim >= 0)
        shape_text(want, shape, ndim, 1);
    else
        snprintf(want, sizeof want, "of any shape");
    const cnn_tensor *t = cnn_st_find(st, name);
    if (!t)
        return cnn_fail(CNN_ERR_MISSING, "%s: tensor '%.*s' is missing (%s %s is needed)", what,
                        NAME_MAX_SHOWN, name, DTYPES[dtype].name, want);
    shape_text(have, t->shape, t->ndim, 0);
    if (t->dtype != dtype)
        return cnn_fail(CNN_ERR_DTYPE, "%s: tensor '%.*s' is %s %s but %s %s is needed", what,
                        NAME_MAX_SHOWN, name, DTYPES[t->dtype].name, have, DTYPES[dtype].name,
                        want);
    if (ndim >= 0) {
        int ok = t->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = shape[i] == -1 || shape[i] == t->shape[i];
        if (!ok)
            return cnn_fail(CNN_ERR_SHAPE, "%s: tensor '%.*s' has shape %s but %s is needed", what,
                            NAME_MAX_SHOWN, name, have, want);
    }
    if (out) *out = t;
    return CNN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------------- */

/* Returns 1 if s is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, ≤ U+10FFFF),
 * which JSON strings must be. */
static int utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p++;
        int more;
        unsigned min;
        if (c < 0x80) continue;
        if (c >= 0xC2 && c <= 0xDF) { more = 1; min = 0x80; c &= 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { more = 2; min = 0x800; c &= 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { more = 3; min = 0x10000; c &= 0x07; }
        else return 0;
        for (int i = 0; i < more; i++, p++) {
            if ((*p & 0xC0) != 0x80) return 0; /* also stops at the NUL */
            c = (c << 6) | (*p & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    }
    return 1;
}

/* The safetensors project's order: dtype rank descending, then name (bytewise). */
static int save_order_cmp(const void *a, const void *b) {
    const cnn_tensor *x = *(const cnn_tensor *const *)a, *y = *(const cnn_tensor *const *)b;
    if (DTYPES[x->dtype].rank != DTYPES[y->dtype].rank)
        return DTYPES[y->dtype].rank - DTYPES[x->dtype].rank;
    return strcmp(x->name, y->name);
}

/* Checks the tensors and metadata given to cnn_st_save. Errors: CNN_ERR_ARG. */
static cnn_status check_save_args(const cnn_tensor *tensors, int n, const char *const *meta,
                                  int n_meta) {
    if (n < 0 || n_meta < 0 || (n > 0 && !tensors) || (n_meta > 0 && !meta))
        return cnn_fail(CNN_ERR_ARG, "cnn_st_save: %d tensors at %p, %d metadata pairs at %p", n,
                        (const void *)tensors, n_meta, (const void *)meta);
    for (int i = 0; i < n; i++) {
        const cnn_tensor *t = &tensors[i];
        if (!t->name || !utf8_valid(t->name) || strcmp(t->name, "__metadata__") == 0)
            return cnn_fail(CNN_ERR_ARG, "cnn_st_save: tensor %d has %s name", i,
                            t->name ? "an invalid (non-UTF-8 or reserved)" : "a NULL");
        if (!dtype_valid(t->dtype))
            return cnn_fail(CNN_ERR_ARG, "cnn_st_save: tensor '%.*s' has invalid dtype %d",
                            NAME_MAX_SHOWN, t->name, (int)t->dtype);
        int64_t numel = cnn_tensor_numel(t), nbytes;
        if (numel < 0 || !mul_i64(numel, (int64_t)DTYPES[t->dtype].size, &nbytes))
            return cnn_fail(CNN_ERR_ARG, "cnn_st_save: tensor '%.*s' has an invalid shape (ndim "
                            "%d, negative or overflowing dims)", NAME_MAX_SHOWN, t->name, t->ndim);
        if (nbytes > 0 && !t->data)
            return cnn_fail(CNN_ERR_ARG, "cnn_st_save: tensor '%.*s' has NULL data", NAME_MAX_SHOWN,
                            t->name);
    }
    for (int i = 0; i < 2 * n_meta; i++)
        if (!meta[i] || !utf8_valid(meta[i]))
            return cnn_fail(CNN_ERR_ARG, "cnn_st_save: metadata %s %d is NULL or not UTF-8",
                            i % 2 ? "value" : "key", i / 2);
    return CNN_OK;
}

/* Builds the compact JSON header of the tensors in `order` (file order) and the metadata, in
 * *text (malloc'd by jansson). Errors: CNN_ERR_ARG (a duplicate name or key), CNN_ERR_NOMEM. */
static cnn_status build_header(const cnn_tensor *const *order, int n, const char *const *meta,
                               int n_meta, char **text) {
    cnn_status s = CNN_OK;
    json_t *root = json_object();
    if (!root) return cnn_fail(CNN_ERR_NOMEM, "cnn_st_save: cannot build the header");
    if (n_meta > 0) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m) != 0) goto nomem;
        for (int i = 0; i < n_meta; i++) {
            if (json_object_get(m, meta[2 * i])) {
                s = cnn_fail(CNN_ERR_ARG, "cnn_st_save: metadata key '%.*s' appears twice",
                             NAME_MAX_SHOWN, meta[2 * i]);
                goto done;
            }
            if (json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1])) != 0) goto nomem;
        }
    }
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const cnn_tensor *t = order[i];
        if (json_object_get(root, t->name)) {
            s = cnn_fail(CNN_ERR_ARG, "cnn_st_save: tensor name '%.*s' appears twice",
                         NAME_MAX_SHOWN, t->name);
            goto done;
        }
        int64_t nbytes = cnn_tensor_numel(t) * (int64_t)DTYPES[t->dtype].size; /* checked */
        if (offset > INT64_MAX - nbytes) {
            s = cnn_fail(CNN_ERR_ARG, "cnn_st_save: the tensors hold more bytes than int64 counts");
            goto done;
        }
        /* Each _new call takes its value even when it fails, so nothing leaks or is used after. */
        json_t *shape = json_array(), *offs = json_array(), *e = json_object();
        int bad = 0;
        for (int d = 0; d < t->ndim; d++)
            bad |= json_array_append_new(shape, json_integer(t->shape[d]));
        bad |= json_array_append_new(offs, json_integer(offset));
        bad |= json_array_append_new(offs, json_integer(offset + nbytes));
        bad |= json_object_set_new(e, "dtype", json_string(DTYPES[t->dtype].name));
        bad |= json_object_set_new(e, "shape", shape);
        bad |= json_object_set_new(e, "data_offsets", offs);
        bad |= json_object_set_new(root, t->name, e);
        if (bad) goto nomem;
        offset += nbytes;
    }
    *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!*text) goto nomem;
    goto done;
nomem:
    s = cnn_fail(CNN_ERR_NOMEM, "cnn_st_save: cannot build the header");
done:
    json_decref(root);
    return s;
}

/* Writes the header length, the header padded with spaces to `padded` bytes, and the data of the
 * tensors in `order` to f. Returns 0 on a write error (errno says why). */
static int write_file(FILE *f, const char *header, size_t padded, const cnn_tensor *const *order,
                      int n) {
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    size_t hlen = strlen(header);
    if (fwrite(len, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen) return 0;
    for (size_t i = hlen; i < padded; i++)
        if (fputc(' ', f) == EOF) return 0;
    for (int i = 0; i < n; i++) {
        size_t nbytes = (size_t)cnn_tensor_numel(order[i]) * DTYPES[order[i]->dtype].size;
        if (nbytes > 0 && fwrite(order[i]->data, 1, nbytes, f) != nbytes) return 0;
    }
    return 1;
}

cnn_status cnn_st_save(const char *path, const cnn_tensor *tensors, int n, const char *const *meta,
                       int n_meta) {
    if (!path) return cnn_fail(CNN_ERR_ARG, "cnn_st_save: NULL path");
    cnn_status s = check_save_args(tensors, n, meta, n_meta);
    if (s != CNN_OK) return s;

    const cnn_tensor **order = malloc(((size_t)n + 1) * sizeof *order);
    char *header = NULL;
    if (!order) {
        s = cnn_fail(CNN_ERR_NOMEM, "cnn_st_save: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) order[i] = &tensors[i];
    qsort(order, (size_t)n, sizeof *order, save_order_cmp);
    if ((s = build_header(order, n, meta, n_meta, &header)) != CNN_OK) goto done;

    size_t hlen = strlen(header), padded = (hlen + 7) & ~(size_t)7;
    if (padded > ST_MAX_HEADER) {
        s = cnn_fail(CNN_ERR_ARG, "cnn_st_save: the header would be %zu bytes, more than the %u "
                     "that readers accept", padded, ST_MAX_HEADER);
        goto done;
    }

    /* A temporary file beside it, renamed over it: readers see the old file or the new one. */
    cnn_safe_file sf;
    if ((s = cnn_safe_open(&sf, path)) != CNN_OK) goto done;
    if (!write_file(sf.f, header, padded, order, n)) {
        s = cnn_fail(CNN_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        cnn_safe_abort(&sf);
        goto done;
    }
    s = cnn_safe_commit(&sf);

done:
    if (header) {
        json_malloc_t jmalloc;
        json_free_t jfree;
        json_get_alloc_funcs(&jmalloc, &jfree); /* json_dumps allocated it */
        jfree(header);
    }
    free(order);
    return s;
}
