/* Tests of src/io/safetensors.c: round trips, the writer's exact bytes, a file written by the
 * Python safetensors layout (tests/data/torch_written.safetensors, made by
 * tools/make_test_data.py), and one test per kind of malformed file, each checking the status and
 * the message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnn.h"
#include "testutil.h"

#ifndef TEST_DATA_DIR
#define TEST_DATA_DIR "tests/data"
#endif

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* A temporary directory for the tests that use files, made by the group setup. */
static char tmpdir[64];

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_st_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    return tu_remove_tree(tmpdir);
}

/* A safetensors file in memory: the 8-byte little-endian `header_len`, `json`, then `data`.
 * Returns a malloc'd buffer of *len bytes. */
static unsigned char *craft_n(uint64_t header_len, const char *json, const void *data,
                              size_t data_len, size_t *len) {
    size_t j = strlen(json);
    *len = 8 + j + data_len;
    unsigned char *buf = malloc(*len);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(header_len >> (8 * i));
    memcpy(buf + 8, json, j);
    if (data_len) memcpy(buf + 8 + j, data, data_len);
    return buf;
}

/* As craft_n, with the true header length. */
static unsigned char *craft(const char *json, const void *data, size_t data_len, size_t *len) {
    return craft_n(strlen(json), json, data, data_len, len);
}

/* Parses a crafted file that must fail with `status` and a message containing `sub`. */
static void expect_parse_error(const char *json, const void *data, size_t data_len,
                               cnn_status status, const char *sub) {
    size_t len;
    unsigned char *buf = craft(json, data, data_len, &len);
    cnn_st *st = (cnn_st *)buf; /* must be set to NULL */
    cnn_status s = cnn_st_parse(buf, len, &st);
    free(buf);
    if (s != status)
        fail_msg("status %s (\"%s\"), expected %s", cnn_status_name(s), cnn_last_error(),
                 cnn_status_name(status));
    assert_null(st);
    assert_error_contains(sub);
}

/* Reads a whole file into a malloc'd buffer. */
static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---------------------------------------------------------------------------------------------
 * dtypes and numel
 * ------------------------------------------------------------------------------------------- */

static void test_dtype_table(void **state) {
    (void)state;
    static const struct { cnn_dtype t; const char *name; size_t size; } want[] = {
        {CNN_F32, "F32", 4}, {CNN_F64, "F64", 8},   {CNN_I64, "I64", 8}, {CNN_I32, "I32", 4},
        {CNN_U8, "U8", 1},   {CNN_F16, "F16", 2},   {CNN_BF16, "BF16", 2}, {CNN_I16, "I16", 2},
        {CNN_I8, "I8", 1},   {CNN_BOOL, "BOOL", 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_string_equal(cnn_dtype_name(want[i].t), want[i].name);
        assert_int_equal(cnn_dtype_size(want[i].t), want[i].size);
    }
    assert_null(cnn_dtype_name((cnn_dtype)10));
    assert_null(cnn_dtype_name((cnn_dtype)-1));
    assert_int_equal(cnn_dtype_size((cnn_dtype)10), 0);
    assert_int_equal(cnn_dtype_size((cnn_dtype)-1), 0);
}

static void test_numel(void **state) {
    (void)state;
    cnn_tensor t = {.dtype = CNN_F32, .ndim = 0};
    assert_int_equal(cnn_tensor_numel(&t), 1); /* a scalar */
    t.ndim = 3;
    t.shape[0] = 2, t.shape[1] = 3, t.shape[2] = 5;
    assert_int_equal(cnn_tensor_numel(&t), 30);
    t.shape[1] = 0;
    assert_int_equal(cnn_tensor_numel(&t), 0);
    t.shape[1] = -3;
    assert_int_equal(cnn_tensor_numel(&t), -1);
    t.ndim = 2, t.shape[0] = INT64_C(1) << 32, t.shape[1] = INT64_C(1) << 32;
    assert_int_equal(cnn_tensor_numel(&t), -1); /* overflows */
    t.ndim = CNN_MAX_DIMS + 1;
    assert_int_equal(cnn_tensor_numel(&t), -1);
    assert_int_equal(cnn_tensor_numel(NULL), -1);
}

/* ---------------------------------------------------------------------------------------------
 * Round trip and the writer's layout
 * ------------------------------------------------------------------------------------------- */

static void test_round_trip(void **state) {
    (void)state;
    float w[6] = {-1.5f, 0.0f, 3.25f, 1e-30f, -2e30f, 0.1f};
    double d[2] = {0.1, -1e300};
    int64_t l[3] = {INT64_MIN, -1, INT64_C(9007199254740993)};
    int32_t k[4] = {INT32_MIN, 0, 7, INT32_MAX};
    uint8_t u[5] = {0, 1, 127, 128, 255};
    float s = 42.5f;
    cnn_tensor in[] = {
        {.name = "conv.weight", .dtype = CNN_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "double", .dtype = CNN_F64, .ndim = 1, .shape = {2}, .data = d},
        {.name = "labels", .dtype = CNN_I64, .ndim = 1, .shape = {3}, .data = l},
        {.name = "ints", .dtype = CNN_I32, .ndim = 2, .shape = {2, 2}, .data = k},
        {.name = "bytes", .dtype = CNN_U8, .ndim = 1, .shape = {5}, .data = u},
        {.name = "scale", .dtype = CNN_F32, .ndim = 0, .data = &s},
        {.name = "empty", .dtype = CNN_F32, .ndim = 2, .shape = {0, 4}, .data = NULL},
    };
    const int n = (int)(sizeof in / sizeof in[0]);
    const char *meta[] = {"format", "pt", "epoch", "12"};
    char path[128], tmp[140];
    tmp_path(path, sizeof path, "round.safetensors");
    assert_int_equal(cnn_st_save(path, in, n, meta, 2), CNN_OK);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(file_exists(tmp));

    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(path, &st), CNN_OK);
    assert_non_null(st);
    assert_int_equal(cnn_st_count(st), n);
    assert_string_equal(cnn_st_metadata(st, "format"), "pt");
    assert_string_equal(cnn_st_metadata(st, "epoch"), "12");
    assert_null(cnn_st_metadata(st, "nope"));
    assert_null(cnn_st_find(st, "nope"));
    assert_null(cnn_st_find(st, "__metadata__"));
    assert_null(cnn_st_tensor(st, n));
    assert_null(cnn_st_tensor(st, -1));

    for (int i = 0; i < n; i++) {
        const cnn_tensor *t = cnn_st_find(st, in[i].name);
        assert_non_null(t);
        assert_string_equal(t->name, in[i].name);
        assert_int_equal(t->dtype, in[i].dtype);
        assert_int_equal(t->ndim, in[i].ndim);
        for (int j = 0; j < t->ndim; j++) assert_int_equal(t->shape[j], in[i].shape[j]);
        assert_int_equal(cnn_tensor_numel(t), cnn_tensor_numel(&in[i]));
        assert_int_equal((uintptr_t)t->data % cnn_dtype_size(t->dtype), 0);
        size_t bytes = (size_t)cnn_tensor_numel(t) * cnn_dtype_size(t->dtype);
        if (bytes) assert_memory_equal(t->data, in[i].data, bytes);
    }
    /* Typed spot checks, so that a wrong byte order would show as a wrong number. */
    assert_true(((const float *)cnn_st_find(st, "conv.weight")->data)[2] == 3.25f);
    assert_true(((const double *)cnn_st_find(st, "double")->data)[0] == 0.1);
    assert_true(((const int64_t *)cnn_st_find(st, "labels")->data)[0] == INT64_MIN);
    assert_true(((const int64_t *)cnn_st_find(st, "labels")->data)[2] == INT64_C(9007199254740993));
    assert_int_equal(((const int32_t *)cnn_st_find(st, "ints")->data)[3], INT32_MAX);
    assert_int_equal(((const uint8_t *)cnn_st_find(st, "bytes")->data)[4], 255);
    assert_true(*(const float *)cnn_st_find(st, "scale")->data == 42.5f);

    /* File order is the writer's: dtype (I64, F64, F32, I32, U8), then name. */
    static const char *order[] = {"labels", "double", "conv.weight", "empty", "scale", "ints",
                                  "bytes"};
    for (int i = 0; i < n; i++) assert_string_equal(cnn_st_tensor(st, i)->name, order[i]);
    cnn_st_free(st);
}

/* The exact bytes: length, compact JSON with __metadata__ first, dtype-then-name order, spaces to
 * a multiple of 8, then the data in that order. */
static void test_writer_layout(void **state) {
    (void)state;
    uint8_t b[3] = {1, 2, 3};
    float a[2] = {1.0f, 2.0f}, a0 = 0.5f;
    int64_t c = -5;
    uint8_t z = 1;
    uint16_t h = 0x3f80; /* BF16 1.0 */
    cnn_tensor in[] = {
        {.name = "b", .dtype = CNN_U8, .ndim = 1, .shape = {3}, .data = b},
        {.name = "a0", .dtype = CNN_F32, .ndim = 1, .shape = {1}, .data = &a0},
        {.name = "z", .dtype = CNN_BOOL, .ndim = 1, .shape = {1}, .data = &z},
        {.name = "a", .dtype = CNN_F32, .ndim = 1, .shape = {2}, .data = a},
        {.name = "c", .dtype = CNN_I64, .ndim = 0, .data = &c},
        {.name = "h", .dtype = CNN_BF16, .ndim = 1, .shape = {1}, .data = &h},
    };
    const char *meta[] = {"k", "v"};
    char path[128];
    tmp_path(path, sizeof path, "layout.safetensors");
    assert_int_equal(cnn_st_save(path, in, 6, meta, 1), CNN_OK);

    const char *json =
        "{\"__metadata__\":{\"k\":\"v\"},"
        "\"c\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
        "\"a0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
        "\"h\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[20,22]},"
        "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[22,25]},"
        "\"z\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[25,26]}}";
    size_t jlen = strlen(json), padded = (jlen + 7) / 8 * 8;
    assert_int_not_equal(jlen, padded); /* the test exercises the padding */

    size_t len;
    unsigned char *file = read_all(path, &len);
    assert_int_equal(len, 8 + padded + 26);
    assert_int_equal(le64(file), padded);
    assert_int_equal(le64(file) % 8, 0);
    assert_memory_equal(file + 8, json, jlen);
    for (size_t i = jlen; i < padded; i++) assert_int_equal(file[8 + i], ' ');

    unsigned char data[26], *p = data;
    memcpy(p, &c, 8), p += 8;
    memcpy(p, a, 8), p += 8;
    memcpy(p, &a0, 4), p += 4;
    memcpy(p, &h, 2), p += 2;
    memcpy(p, b, 3), p += 3;
    memcpy(p, &z, 1);
    assert_memory_equal(file + 8 + padded, data, 26);
    free(file);

    /* No tensors and no metadata: "{}" and six spaces. */
    tmp_path(path, sizeof path, "empty.safetensors");
    assert_int_equal(cnn_st_save(path, NULL, 0, NULL, 0), CNN_OK);
    file = read_all(path, &len);
    assert_int_equal(len, 16);
    assert_memory_equal(file, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(file);
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(path, &st), CNN_OK);
    assert_int_equal(cnn_st_count(st), 0);
    assert_null(cnn_st_metadata(st, "k"));
    cnn_st_free(st);
}

/* ---------------------------------------------------------------------------------------------
 * A file in the layout of the Python safetensors library
 * ------------------------------------------------------------------------------------------- */

static void test_torch_written_values(void **state) {
    (void)state;
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(TEST_DATA_DIR "/torch_written.safetensors", &st), CNN_OK);
    assert_int_equal(cnn_st_count(st), 6);
    assert_string_equal(cnn_st_metadata(st, "format"), "pt");

    const cnn_tensor *t = NULL;
    const int64_t s23[] = {2, 3}, s4[] = {4}, s2[] = {2}, s3[] = {3};
    assert_int_equal(cnn_st_require(st, "torch", "weight", CNN_F32, 2, s23, &t), CNN_OK);
    const float *w = t->data;
    for (int i = 0; i < 6; i++) assert_true(w[i] == (float)i * 0.5f - 1.0f);

    assert_int_equal(cnn_st_require(st, "torch", "labels", CNN_I64, 1, s4, &t), CNN_OK);
    const int64_t *l = t->data;
    assert_true(l[0] == 3 && l[1] == -1 && l[2] == 0 && l[3] == INT64_C(9007199254740993));

    assert_int_equal(cnn_st_require(st, "torch", "double", CNN_F64, 1, s2, &t), CNN_OK);
    const double *d = t->data;
    assert_true(d[0] == 0.1 && d[1] == -2.5e300);

    assert_int_equal(cnn_st_require(st, "torch", "bytes", CNN_U8, 1, s3, &t), CNN_OK);
    assert_memory_equal(t->data, "\x00\x07\xff", 3);

    assert_int_equal(cnn_st_require(st, "torch", "half", CNN_F16, 1, s2, &t), CNN_OK);
    assert_memory_equal(t->data, "\x00\x3c\x00\xc0", 4); /* 1.0, -2.0 */

    assert_int_equal(cnn_st_require(st, "torch", "step", CNN_I32, 0, NULL, &t), CNN_OK);
    assert_int_equal(*(const int32_t *)t->data, 7);

    /* File order, as the Python writer sorts: I64, F64, F32, I32, F16, U8. */
    static const char *order[] = {"labels", "double", "weight", "step", "half", "bytes"};
    for (int i = 0; i < 6; i++) assert_string_equal(cnn_st_tensor(st, i)->name, order[i]);
    cnn_st_free(st);
}

/* Saving what was read (in another order) gives back the very bytes the Python layout wrote. */
static void test_writer_matches_torch(void **state) {
    (void)state;
    const char *src = TEST_DATA_DIR "/torch_written.safetensors";
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(src, &st), CNN_OK);
    int n = cnn_st_count(st);
    cnn_tensor in[8];
    for (int i = 0; i < n; i++) in[i] = *cnn_st_tensor(st, n - 1 - i); /* reversed */
    const char *meta[] = {"format", "pt"};
    char path[128];
    tmp_path(path, sizeof path, "torch.safetensors");
    assert_int_equal(cnn_st_save(path, in, n, meta, 1), CNN_OK);
    cnn_st_free(st);

    size_t len_a, len_b;
    unsigned char *a = read_all(src, &len_a), *b = read_all(path, &len_b);
    assert_int_equal(len_a, len_b);
    assert_memory_equal(a, b, len_a);
    free(a);
    free(b);
}

/* ---------------------------------------------------------------------------------------------
 * Well-formed edge cases
 * ------------------------------------------------------------------------------------------- */

/* cnn_st_parse copies: the caller's buffer can be changed and freed at once. */
static void test_parse_copies_buffer(void **state) {
    (void)state;
    float v[2] = {1.25f, -7.0f};
    size_t len;
    unsigned char *buf = craft("{\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                               v, sizeof v, &len);
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_parse(buf, len, &st), CNN_OK);
    memset(buf, 0xAB, len);
    free(buf);
    const float *d = cnn_st_find(st, "v")->data;
    assert_true(d[0] == 1.25f && d[1] == -7.0f);
    assert_null(cnn_st_metadata(st, "format")); /* no __metadata__ at all */
    cnn_st_free(st);
}

/* A header whose length is not a multiple of 8, and offsets that are not multiples of the dtype
 * size: the data still comes out aligned for its dtype, with the right values. */
static void test_misaligned_data_is_aligned(void **state) {
    (void)state;
    unsigned char data[1 + 8 + 4 + 2];
    double dv = -3.5;
    int32_t iv = 123456789;
    int16_t hv = -2;
    data[0] = 9;
    memcpy(data + 1, &dv, 8);
    memcpy(data + 9, &iv, 4);
    memcpy(data + 13, &hv, 2);
    const char *json = "{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                       "\"d\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[1,9]},"
                       "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[9,13]},"
                       "\"h\":{\"dtype\":\"I16\",\"shape\":[1,1],\"data_offsets\":[13,15]}}";
    for (int pad = 0; pad < 8; pad++) { /* every header length modulo 8 */
        char padded[512];
        snprintf(padded, sizeof padded, "%s%.*s", json, pad, "        ");
        size_t len;
        unsigned char *buf = craft(padded, data, sizeof data, &len);
        cnn_st *st = NULL;
        assert_int_equal(cnn_st_parse(buf, len, &st), CNN_OK);
        free(buf);
        for (int i = 0; i < cnn_st_count(st); i++) {
            const cnn_tensor *t = cnn_st_tensor(st, i);
            assert_int_equal((uintptr_t)t->data % cnn_dtype_size(t->dtype), 0);
        }
        assert_int_equal(*(const uint8_t *)cnn_st_find(st, "u")->data, 9);
        assert_true(*(const double *)cnn_st_find(st, "d")->data == -3.5);
        assert_int_equal(*(const int32_t *)cnn_st_find(st, "i")->data, 123456789);
        assert_int_equal(*(const int16_t *)cnn_st_find(st, "h")->data, -2);
        cnn_st_free(st);
    }
}

/* Zero-element tensors take no bytes and may share an offset with their neighbours. */
static void test_zero_size_tensors(void **state) {
    (void)state;
    float v = 2.0f;
    size_t len;
    unsigned char *buf = craft("{\"e0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                               "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                               "\"e1\":{\"dtype\":\"F64\",\"shape\":[3,0],\"data_offsets\":[4,4]}}",
                               &v, 4, &len);
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_parse(buf, len, &st), CNN_OK);
    free(buf);
    assert_int_equal(cnn_st_count(st), 3);
    assert_int_equal(cnn_tensor_numel(cnn_st_find(st, "e1")), 0);
    assert_true(*(const float *)cnn_st_find(st, "v")->data == 2.0f);
    cnn_st_free(st);
}

/* ---------------------------------------------------------------------------------------------
 * Malformed files: one test per malformation
 * ------------------------------------------------------------------------------------------- */

static const char ENTRY_F32_2[] =
    "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

static void test_err_shorter_than_8_bytes(void **state) {
    (void)state;
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_parse("\x02\0\0\0", 4, &st), CNN_ERR_FORMAT);
    assert_null(st);
    assert_error_contains("the file has 4 bytes, fewer than the 8");
}

/* A file cut short in its data: the last tensor's offsets reach past the end. */
static void test_err_truncated_data(void **state) {
    (void)state;
    float v[2] = {1, 2};
    size_t len;
    unsigned char *buf = craft(ENTRY_F32_2, v, sizeof v, &len);
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_parse(buf, len - 3, &st), CNN_ERR_FORMAT);
    free(buf);
    assert_null(st);
    assert_error_contains("tensor 'x': data_offsets [0, 8] reach past the end of the 5-byte data "
                          "buffer (is the file truncated?)");
}

/* The header length says more than the file holds. */
static void test_err_header_len_past_file(void **state) {
    (void)state;
    size_t len;
    unsigned char *buf = craft_n(1000, ENTRY_F32_2, "12345678", 8, &len);
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_parse(buf, len, &st), CNN_ERR_FORMAT);
    assert_error_contains("header length 1000 is more than the 62 bytes after it");
    /* A file cut inside its header is the same error. */
    free(buf);
    buf = craft(ENTRY_F32_2, "12345678", 8, &len);
    assert_int_equal(cnn_st_parse(buf, 20, &st), CNN_ERR_FORMAT);
    assert_error_contains("is more than the 12 bytes after it");
    free(buf);
}

/* A header length over 100 MB fails on its own (the file is 10 bytes: nothing is allocated for the
 * header, and nothing past the file is read). */
static void test_err_header_len_over_limit(void **state) {
    (void)state;
    static const uint64_t lens[] = {100000001u, UINT64_C(1) << 40, UINT64_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t len;
        unsigned char *buf = craft_n(lens[i], "{}", NULL, 0, &len);
        cnn_st *st = NULL;
        assert_int_equal(cnn_st_parse(buf, len, &st), CNN_ERR_FORMAT);
        free(buf);
        assert_null(st);
        assert_error_contains("is more than the limit of 100000000 bytes");
    }
}

static void test_err_offsets_past_end(void **state) {
    (void)state;
    expect_parse_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[274877906944],"
                       "\"data_offsets\":[0,1099511627776]}}",
                       "12345678", 8, CNN_ERR_FORMAT,
                       "tensor 'x': data_offsets [0, 1099511627776] reach past the end of the "
                       "8-byte data buffer");
}

static void test_err_begin_after_end(void **state) {
    (void)state;
    expect_parse_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}",
                       "12345678", 8, CNN_ERR_FORMAT,
                       "tensor 'x': data_offsets [8, 0] begin after they end");
}

static void test_err_unknown_dtype(void **state) {
    (void)state;
    expect_parse_error("{\"x\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                       "12345678", 8, CNN_ERR_DTYPE, "tensor 'x': unknown dtype 'F17'");
    /* Lower case is not the same dtype. */
    expect_parse_error("{\"x\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                       "12345678", 8, CNN_ERR_DTYPE, "unknown dtype 'f32'");
    /* A dtype of safetensors that this library does not read. */
    expect_parse_error("{\"x\":{\"dtype\":\"U16\",\"shape\":[4],\"data_offsets\":[0,8]}}",
                       "12345678", 8, CNN_ERR_DTYPE, "unknown dtype 'U16'");
    expect_parse_error("{\"x\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", "12345678", 8,
                       CNN_ERR_FORMAT, "tensor 'x': \"dtype\" is missing or not a string");
    expect_parse_error("{\"x\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "12345678", 8,
                       CNN_ERR_FORMAT, "tensor 'x': \"dtype\" is missing");
}

static void test_err_shape_disagrees_with_size(void **state) {
    (void)state;
    unsigned char data[96] = {0};
    expect_parse_error("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3,5],"
                       "\"data_offsets\":[0,96]}}",
                       data, sizeof data, CNN_ERR_FORMAT,
                       "tensor '0.weight': data_offsets [0, 96] hold 96 bytes but shape [2, 3, 5] "
                       "of F32 needs 120");
    /* The same bytes as F64 [12] would be right; as I64 [] (a scalar) they are not. */
    expect_parse_error("{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,96]}}", data,
                       sizeof data, CNN_ERR_FORMAT,
                       "tensor 's': data_offsets [0, 96] hold 96 bytes but shape [] of I64 "
                       "needs 8");
}

static void test_err_shape_overflow(void **state) {
    (void)state;
    /* 2^32 · 2^32 elements overflow int64. */
    expect_parse_error("{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
                       "\"data_offsets\":[0,8]}}",
                       "12345678", 8, CNN_ERR_FORMAT,
                       "tensor 'x': the product of shape [4294967296, 4294967296] overflows int64");
    /* 2^62 elements fit, but 2^62 · 8 bytes do not. */
    expect_parse_error("{\"x\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
                       "\"data_offsets\":[0,8]}}",
                       "12345678", 8, CNN_ERR_FORMAT,
                       "shape [4611686018427387904] of F64 needs more bytes than int64 can count");
    /* Beyond int64 in the JSON itself. */
    expect_parse_error("{\"x\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],"
                       "\"data_offsets\":[0,8]}}",
                       "12345678", 8, CNN_ERR_FORMAT, "not valid JSON: too big integer");
}

static void test_err_bad_shape(void **state) {
    (void)state;
    expect_parse_error("{\"x\":{\"dtype\":\"U8\",\"shape\":[2,-4],\"data_offsets\":[0,8]}}",
                       "12345678", 8, CNN_ERR_FORMAT,
                       "tensor 'x': shape entry 1 is not a non-negative integer");
    expect_parse_error("{\"x\":{\"dtype\":\"U8\",\"shape\":[8.0],\"data_offsets\":[0,8]}}",
                       "12345678", 8, CNN_ERR_FORMAT,
                       "tensor 'x': shape entry 0 is not a non-negative integer");
    expect_parse_error("{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,8],"
                       "\"data_offsets\":[0,8]}}",
                       "12345678", 8, CNN_ERR_FORMAT,
                       "tensor 'x': shape has 9 dimensions, more than the 8 supported");
    expect_parse_error("{\"x\":{\"dtype\":\"U8\",\"shape\":8,\"data_offsets\":[0,8]}}", "12345678",
                       8, CNN_ERR_FORMAT, "tensor 'x': \"shape\" is missing or not an array");
}

static void test_err_bad_offsets(void **state) {
    (void)state;
    static const char *bad[] = {"[0]", "[0,8,8]", "[-1,7]", "[0,\"8\"]", "8", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[256];
        snprintf(json, sizeof json,
                 "{\"x\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":%s}}", bad[i]);
        expect_parse_error(json, "12345678", 8, CNN_ERR_FORMAT,
                           "tensor 'x': \"data_offsets\" is not two non-negative integers");
    }
    expect_parse_error("{\"x\":{\"dtype\":\"U8\",\"shape\":[8]}}", "12345678", 8, CNN_ERR_FORMAT,
                       "\"data_offsets\" is not two");
}

static void test_err_overlap(void **state) {
    (void)state;
    unsigned char data[12] = {0};
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                       data, sizeof data, CNN_ERR_FORMAT,
                       "tensors 'a' (data_offsets [0, 8]) and 'b' (data_offsets [4, 12]) overlap");
    /* The same bytes twice, listed in the other order. */
    expect_parse_error("{\"b\":{\"dtype\":\"U8\",\"shape\":[12],\"data_offsets\":[0,12]},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[12],\"data_offsets\":[0,12]}}",
                       data, sizeof data, CNN_ERR_FORMAT, "overlap");
}

/* Tensors must cover the buffer: no gap between them and nothing after the last. */
static void test_err_not_covered(void **state) {
    (void)state;
    unsigned char data[12] = {0};
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                       data, sizeof data, CNN_ERR_FORMAT,
                       "bytes [4, 8) of the data buffer, before tensor 'b', belong to no tensor");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data,
                       sizeof data, CNN_ERR_FORMAT,
                       "the data buffer has 12 bytes but the tensors cover only the first 8");
    expect_parse_error("{}", data, sizeof data, CNN_ERR_FORMAT,
                       "the data buffer has 12 bytes but the tensors cover only the first 0");
}

static void test_err_not_object(void **state) {
    (void)state;
    expect_parse_error("[1, 2]", NULL, 0, CNN_ERR_FORMAT,
                       "the header is a JSON array, not an object");
    expect_parse_error("\"x\"", NULL, 0, CNN_ERR_FORMAT,
                       "the header is a JSON string, not an object");
    expect_parse_error("12", NULL, 0, CNN_ERR_FORMAT, "the header is a JSON number, not an object");
    expect_parse_error("null", NULL, 0, CNN_ERR_FORMAT,
                       "the header is a JSON literal, not an object");
    expect_parse_error("{\"x\":[1]}", NULL, 0, CNN_ERR_FORMAT,
                       "tensor 'x': entry is not an object of dtype, shape and data_offsets");
}

static void test_err_invalid_json(void **state) {
    (void)state;
    expect_parse_error("{\"x\":{\"dtype\":", NULL, 0, CNN_ERR_FORMAT,
                       "the header is not valid JSON");
    expect_parse_error("{} trailing", NULL, 0, CNN_ERR_FORMAT, "the header is not valid JSON");
    expect_parse_error("", NULL, 0, CNN_ERR_FORMAT, "the header is not valid JSON");
    expect_parse_error("{\"\xff\":1}", NULL, 0, CNN_ERR_FORMAT, "the header is not valid JSON");
    /* Names are unique. */
    expect_parse_error("{\"x\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
                       "\"x\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
                       NULL, 0, CNN_ERR_FORMAT, "duplicate object key");
    /* The header length covers only part of the JSON. */
    size_t len;
    unsigned char *buf = craft_n(10, ENTRY_F32_2, "12345678", 8, &len);
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_parse(buf, len, &st), CNN_ERR_FORMAT);
    assert_error_contains("the header is not valid JSON");
    free(buf);
}

static void test_err_metadata_not_strings(void **state) {
    (void)state;
    expect_parse_error("{\"__metadata__\":{\"format\":\"pt\",\"epoch\":3}}", NULL, 0,
                       CNN_ERR_FORMAT, "__metadata__ value of 'epoch' is not a string");
    expect_parse_error("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", NULL, 0, CNN_ERR_FORMAT,
                       "__metadata__ value of 'a' is not a string");
    expect_parse_error("{\"__metadata__\":[\"pt\"]}", NULL, 0, CNN_ERR_FORMAT,
                       "__metadata__ is not an object of strings");
}

/* ---------------------------------------------------------------------------------------------
 * cnn_st_require
 * ------------------------------------------------------------------------------------------- */

static cnn_st *require_fixture(void) {
    static float g[20];
    int64_t l[2] = {1, 2};
    unsigned char data[80 + 16];
    memcpy(data, g, 80);
    memcpy(data + 80, l, 16);
    size_t len;
    unsigned char *buf =
        craft("{\"grad_output\":{\"dtype\":\"F32\",\"shape\":[2,10],\"data_offsets\":[0,80]},"
              "\"labels\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[80,96]}}",
              data, sizeof data, &len);
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_parse(buf, len, &st), CNN_OK);
    free(buf);
    return st;
}

static void test_require_ok(void **state) {
    (void)state;
    cnn_st *st = require_fixture();
    const cnn_tensor *t = NULL;
    const int64_t exact[] = {2, 10}, any_rows[] = {-1, 10}, any_both[] = {-1, -1};
    assert_int_equal(cnn_st_require(st, "input", "grad_output", CNN_F32, 2, exact, &t), CNN_OK);
    assert_ptr_equal(t, cnn_st_find(st, "grad_output"));
    t = NULL;
    assert_int_equal(cnn_st_require(st, "input", "grad_output", CNN_F32, 2, any_rows, &t), CNN_OK);
    assert_non_null(t);
    assert_int_equal(cnn_st_require(st, "input", "grad_output", CNN_F32, 2, any_both, NULL),
                     CNN_OK);
    assert_int_equal(cnn_st_require(st, "input", "labels", CNN_I64, -1, NULL, &t), CNN_OK);
    assert_string_equal(t->name, "labels");
    cnn_st_free(st);
}

static void test_require_missing(void **state) {
    (void)state;
    cnn_st *st = require_fixture();
    const cnn_tensor *t = cnn_st_tensor(st, 0);
    const int64_t want[] = {3, 10};
    assert_int_equal(cnn_st_require(st, "input", "grad_input", CNN_F32, 2, want, &t),
                     CNN_ERR_MISSING);
    assert_null(t);
    assert_string_equal(cnn_last_error(),
                        "input: tensor 'grad_input' is missing (F32 [3, 10] is needed)");
    cnn_st_free(st);
}

static void test_require_wrong_dtype(void **state) {
    (void)state;
    cnn_st *st = require_fixture();
    const cnn_tensor *t = cnn_st_tensor(st, 0);
    const int64_t want[] = {-1};
    assert_int_equal(cnn_st_require(st, "target", "labels", CNN_F32, 1, want, &t), CNN_ERR_DTYPE);
    assert_null(t);
    assert_string_equal(cnn_last_error(),
                        "target: tensor 'labels' is I64 [2] but F32 [?] is needed");
    assert_int_equal(cnn_st_require(st, "target", "labels", CNN_F64, -1, NULL, NULL),
                     CNN_ERR_DTYPE);
    assert_error_contains("tensor 'labels' is I64 [2] but F64 of any shape is needed");
    cnn_st_free(st);
}

static void test_require_wrong_shape(void **state) {
    (void)state;
    cnn_st *st = require_fixture();
    const cnn_tensor *t = cnn_st_tensor(st, 0);
    const int64_t want[] = {3, 10}, want3[] = {2, 10, 1}, wild[] = {-1, 11};
    assert_int_equal(cnn_st_require(st, "input", "grad_output", CNN_F32, 2, want, &t),
                     CNN_ERR_SHAPE);
    assert_null(t);
    assert_string_equal(cnn_last_error(),
                        "input: tensor 'grad_output' has shape [2, 10] but [3, 10] is needed");
    assert_int_equal(cnn_st_require(st, "input", "grad_output", CNN_F32, 3, want3, NULL),
                     CNN_ERR_SHAPE);
    assert_error_contains("has shape [2, 10] but [2, 10, 1] is needed");
    assert_int_equal(cnn_st_require(st, "input", "grad_output", CNN_F32, 2, wild, NULL),
                     CNN_ERR_SHAPE);
    assert_error_contains("has shape [2, 10] but [?, 11] is needed");
    assert_int_equal(cnn_st_require(st, "input", "grad_output", CNN_F32, 0, NULL, NULL),
                     CNN_ERR_SHAPE);
    assert_error_contains("has shape [2, 10] but [] is needed");
    cnn_st_free(st);
}

static void test_require_bad_args(void **state) {
    (void)state;
    cnn_st *st = require_fixture();
    const int64_t bad[] = {-2};
    assert_int_equal(cnn_st_require(NULL, "x", "labels", CNN_I64, -1, NULL, NULL), CNN_ERR_ARG);
    assert_int_equal(cnn_st_require(st, "x", NULL, CNN_I64, -1, NULL, NULL), CNN_ERR_ARG);
    assert_int_equal(cnn_st_require(st, "x", "labels", (cnn_dtype)42, -1, NULL, NULL), CNN_ERR_ARG);
    assert_int_equal(cnn_st_require(st, "x", "labels", CNN_I64, 1, NULL, NULL), CNN_ERR_ARG);
    assert_int_equal(cnn_st_require(st, "x", "labels", CNN_I64, 1, bad, NULL), CNN_ERR_ARG);
    assert_int_equal(cnn_st_require(st, "x", "labels", CNN_I64, CNN_MAX_DIMS + 1, bad, NULL),
                     CNN_ERR_ARG);
    cnn_st_free(st);
}

/* ---------------------------------------------------------------------------------------------
 * Files, arguments and the writer's errors
 * ------------------------------------------------------------------------------------------- */

static void test_load_errors(void **state) {
    (void)state;
    char path[128];
    cnn_st *st = (cnn_st *)path;
    tmp_path(path, sizeof path, "does-not-exist.safetensors");
    assert_int_equal(cnn_st_load(path, &st), CNN_ERR_IO);
    assert_null(st);
    assert_error_contains("cannot open '");
    assert_error_contains("does-not-exist.safetensors': No such file or directory");

    assert_int_equal(cnn_st_load(tmpdir, &st), CNN_ERR_IO); /* a directory */
    assert_error_contains("it is a directory, not a regular file");

    /* A malformed file: the message starts with its path. */
    tmp_path(path, sizeof path, "bad.safetensors");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    size_t len;
    unsigned char *buf = craft(ENTRY_F32_2, "1234", 4, &len);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
    free(buf);
    assert_int_equal(cnn_st_load(path, &st), CNN_ERR_FORMAT);
    char want[256];
    snprintf(want, sizeof want, "%s: tensor 'x': data_offsets [0, 8] reach past the end", path);
    assert_error_contains(want);

    assert_int_equal(cnn_st_load(NULL, &st), CNN_ERR_ARG);
    assert_int_equal(cnn_st_load(path, NULL), CNN_ERR_ARG);
}

static void test_null_arguments(void **state) {
    (void)state;
    cnn_st *st = (cnn_st *)&st;
    assert_int_equal(cnn_st_parse(NULL, 16, &st), CNN_ERR_ARG);
    assert_null(st);
    assert_int_equal(cnn_st_parse("12345678", 8, NULL), CNN_ERR_ARG);
    assert_int_equal(cnn_st_count(NULL), 0);
    assert_null(cnn_st_tensor(NULL, 0));
    assert_null(cnn_st_find(NULL, "x"));
    assert_null(cnn_st_metadata(NULL, "x"));
    cnn_st_free(NULL);
}

static void test_save_errors(void **state) {
    (void)state;
    float v[2] = {1, 2};
    char path[128], tmp[140];
    tmp_path(path, sizeof path, "never.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cnn_tensor t[2] = {
        {.name = "w", .dtype = CNN_F32, .ndim = 1, .shape = {2}, .data = v},
        {.name = "w", .dtype = CNN_F64, .ndim = 1, .shape = {1}, .data = v},
    };
    assert_int_equal(cnn_st_save(path, t, 2, NULL, 0), CNN_ERR_ARG);
    assert_error_contains("tensor name 'w' appears twice");

    t[1].name = "__metadata__";
    assert_int_equal(cnn_st_save(path, t, 2, NULL, 0), CNN_ERR_ARG);
    assert_error_contains("tensor 1 has an invalid");

    t[1].name = "\xc3\x28"; /* not UTF-8 */
    assert_int_equal(cnn_st_save(path, t, 2, NULL, 0), CNN_ERR_ARG);

    t[1].name = "v";
    t[1].dtype = (cnn_dtype)99;
    assert_int_equal(cnn_st_save(path, t, 2, NULL, 0), CNN_ERR_ARG);
    assert_error_contains("tensor 'v' has invalid dtype 99");

    t[1].dtype = CNN_F64;
    t[1].shape[0] = -1;
    assert_int_equal(cnn_st_save(path, t, 2, NULL, 0), CNN_ERR_ARG);
    assert_error_contains("tensor 'v' has an invalid shape");

    t[1].shape[0] = 1;
    t[1].data = NULL;
    assert_int_equal(cnn_st_save(path, t, 2, NULL, 0), CNN_ERR_ARG);
    assert_error_contains("tensor 'v' has NULL data");

    t[1].data = v;
    const char *meta[] = {"k", "a", "k", "b"};
    assert_int_equal(cnn_st_save(path, t, 2, meta, 2), CNN_ERR_ARG);
    assert_error_contains("metadata key 'k' appears twice");
    const char *null_meta[] = {"k", NULL};
    assert_int_equal(cnn_st_save(path, t, 2, null_meta, 1), CNN_ERR_ARG);

    assert_int_equal(cnn_st_save(NULL, t, 2, NULL, 0), CNN_ERR_ARG);
    assert_int_equal(cnn_st_save(path, NULL, 2, NULL, 0), CNN_ERR_ARG);
    assert_int_equal(cnn_st_save(path, t, -1, NULL, 0), CNN_ERR_ARG);
    assert_int_equal(cnn_st_save(path, t, 2, NULL, 1), CNN_ERR_ARG);
    assert_false(file_exists(path));
    assert_false(file_exists(tmp));

    /* A directory that does not exist: an i/o error naming the file and its directory. */
    char nodir[160];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/w.safetensors", tmpdir);
    assert_int_equal(cnn_st_save(nodir, t, 2, NULL, 0), CNN_ERR_IO);
    assert_error_contains("no/such/dir/w.safetensors");
    assert_error_contains("No such file or directory");

    /* A directory is not replaced: refused before anything is written, nothing left behind. */
    assert_int_equal(cnn_st_save(tmpdir, t, 2, NULL, 0), CNN_ERR_IO);
    assert_error_contains("is a directory");
    char tmpdir_tmp[80];
    snprintf(tmpdir_tmp, sizeof tmpdir_tmp, "%s.tmp", tmpdir);
    assert_false(file_exists(tmpdir_tmp));
}

/* Saving over an existing file replaces it whole. */
static void test_save_replaces(void **state) {
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "round.safetensors");
    int32_t a[3] = {1, 2, 3}, b = 9;
    cnn_tensor t = {.name = "a", .dtype = CNN_I32, .ndim = 1, .shape = {3}, .data = a};
    assert_int_equal(cnn_st_save(path, &t, 1, NULL, 0), CNN_OK);
    t = (cnn_tensor){.name = "b", .dtype = CNN_I32, .ndim = 0, .data = &b};
    assert_int_equal(cnn_st_save(path, &t, 1, NULL, 0), CNN_OK);
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(path, &st), CNN_OK);
    assert_int_equal(cnn_st_count(st), 1);
    assert_null(cnn_st_find(st, "a"));
    assert_int_equal(*(const int32_t *)cnn_st_find(st, "b")->data, 9);
    cnn_st_free(st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_numel),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_writer_layout),
        cmocka_unit_test(test_torch_written_values),
        cmocka_unit_test(test_writer_matches_torch),
        cmocka_unit_test(test_parse_copies_buffer),
        cmocka_unit_test(test_misaligned_data_is_aligned),
        cmocka_unit_test(test_zero_size_tensors),
        cmocka_unit_test(test_err_shorter_than_8_bytes),
        cmocka_unit_test(test_err_truncated_data),
        cmocka_unit_test(test_err_header_len_past_file),
        cmocka_unit_test(test_err_header_len_over_limit),
        cmocka_unit_test(test_err_offsets_past_end),
        cmocka_unit_test(test_err_begin_after_end),
        cmocka_unit_test(test_err_unknown_dtype),
        cmocka_unit_test(test_err_shape_disagrees_with_size),
        cmocka_unit_test(test_err_shape_overflow),
        cmocka_unit_test(test_err_bad_shape),
        cmocka_unit_test(test_err_bad_offsets),
        cmocka_unit_test(test_err_overlap),
        cmocka_unit_test(test_err_not_covered),
        cmocka_unit_test(test_err_not_object),
        cmocka_unit_test(test_err_invalid_json),
        cmocka_unit_test(test_err_metadata_not_strings),
        cmocka_unit_test(test_require_ok),
        cmocka_unit_test(test_require_missing),
        cmocka_unit_test(test_require_wrong_dtype),
        cmocka_unit_test(test_require_wrong_shape),
        cmocka_unit_test(test_require_bad_args),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_save_replaces),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
