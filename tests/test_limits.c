/* Resource limits on input: a file cannot make cnn allocate more than it is. For each limit a
 * crafted file claims far more than it holds (a safetensors header longer than the file or than
 * 100 MB, a shape whose product overflows, IDX dims that the file is too short for, raw and
 * gzipped, a CIFAR-10 batch cut inside a record, an image that claims 100000×100000 pixels), and
 * the test asserts both the message and that the allocation the claim asks for was never tried.
 *
 * How allocations are seen: this test binary is linked with -Wl,--wrap=malloc,--wrap=calloc,
 * --wrap=realloc (see the Makefile), so every call that cnn's own code makes goes through the
 * __wrap_ functions below, which record the largest size asked for while a test is watching;
 * jansson's allocations (the safetensors header) are recorded through json_set_alloc_funcs. The
 * positive controls (a valid file of each kind) check that the watch does see the allocations
 * that a real read makes. Allocations inside other system libraries (zlib's inflate state,
 * stb_image) are not seen; none of them is sized by cnn from the file's claims. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cnn.h"
#include "testutil.h"

/* ---------------------------------------------------------------------------------------------
 * Watching allocations
 * ------------------------------------------------------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);

static int watching;
static size_t largest;   /* the largest request seen while watching, in bytes */
static long requests;    /* how many requests were seen while watching */

static void note(size_t n) {
    if (!watching) return;
    requests++;
    if (n > largest) largest = n;
}

void *__wrap_malloc(size_t n) {
    note(n);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n) {
    note(n && k > SIZE_MAX / n ? SIZE_MAX : k * n);
    return __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n) {
    note(n);
    return __real_realloc(p, n);
}

static void *json_watch_malloc(size_t n) {
    note(n);
    return __real_malloc(n);
}

static void watch(void) {
    largest = 0;
    requests = 0;
    watching = 1;
}

/* Stops watching and asserts that no request reached `claimed` (the size the file's numbers ask
 * for) nor passed `bound` (what reading a file of its real size may take). */
static void assert_never_tried(const char *what, uint64_t claimed, size_t bound) {
    watching = 0;
    if (largest >= claimed)
        fail_msg("%s: an allocation of %zu bytes was tried; the file claims %llu", what, largest,
                 (unsigned long long)claimed);
    if (largest > bound)
        fail_msg("%s: an allocation of %zu bytes was tried, more than the %zu that a file of this "
                 "size may take", what, largest, bound);
}

/* What reading a file may take beyond its own size: the 64 KiB first buffer of cnn_st_load and
 * small fixed structures. */
#define SLACK 65536

/* ---------------------------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------------------------- */

static char tmpdir[64];

static int group_setup(void **state) {
    (void)state;
    json_set_alloc_funcs(json_watch_malloc, free);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_limits_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    return tu_remove_tree(tmpdir);
}

static const char *tpath(char *buf, const char *name) {
    snprintf(buf, 256, "%s/%s", tmpdir, name);
    return buf;
}

static void write_file(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const void *buf, size_t len) {
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, buf, (unsigned)len), (int)len);
    assert_int_equal(gzclose(gz), Z_OK);
}

/* A safetensors file in buf[cap]: the 8-byte header length `hlen`, `json`, then `data_len` bytes.
 * Returns its length. */
static size_t st_craft(unsigned char *buf, size_t cap, uint64_t hlen, const char *json, size_t data_len) {
    const size_t j = strlen(json);
    assert_true(8 + j + data_len <= cap);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, json, j);
    memset(buf + 8 + j, 0x3f, data_len);
    return 8 + j + data_len;
}

/* Parses the crafted file from memory and from disk: both must fail with `status` and `sub`,
 * trying no allocation of `claimed` bytes or more than the file's size plus SLACK. */
static void st_expect(const unsigned char *buf, size_t len, const char *name, cnn_status status,
                      const char *sub, uint64_t claimed) {
    cnn_st *st = NULL;
    watch();
    assert_status(cnn_st_parse(buf, len, &st), status);
    assert_never_tried(name, claimed, len + SLACK);
    assert_null(st);
    assert_error_contains(sub);

    char p[256];
    write_file(tpath(p, name), buf, len);
    watch();
    assert_status(cnn_st_load(p, &st), status);
    assert_never_tried(name, claimed, len + SLACK);
    assert_null(st);
    assert_error_contains(sub);
}

/* An IDX header (magic 00 00 08 nd and the dims) followed by n data bytes, in buf. */
static size_t idx_craft(unsigned char *buf, int nd, const uint32_t *dims, size_t n) {
    buf[0] = 0, buf[1] = 0, buf[2] = 8, buf[3] = (unsigned char)nd;
    for (int i = 0; i < nd; i++)
        for (int b = 0; b < 4; b++) buf[4 + 4 * i + b] = (unsigned char)(dims[i] >> (24 - 8 * b));
    memset(buf + 4 + 4 * nd, 7, n);
    return 4 + 4 * (size_t)nd + n;
}

static void idx_expect(const char *path, const char *sub, uint64_t claimed, size_t bound) {
    uint8_t *data = NULL;
    int nd;
    int64_t dims[4];
    watch();
    assert_status(cnn_idx_read(path, &data, &nd, dims), CNN_ERR_FORMAT);
    assert_never_tried(path, claimed, bound);
    assert_null(data);
    assert_error_contains(sub);
}

/* ---------------------------------------------------------------------------------------------
 * Positive controls: the watch sees what a real read allocates
 * ------------------------------------------------------------------------------------------- */

static void test_watch_sees_allocations(void **state) {
    (void)state;
    /* safetensors: the copy of the whole file. */
    unsigned char buf[256];
    const char *j = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    const size_t len = st_craft(buf, sizeof buf, strlen(j), j, 8);
    cnn_st *st = NULL;
    watch();
    assert_status(cnn_st_parse(buf, len, &st), CNN_OK);
    watching = 0;
    assert_true(largest >= len);
    cnn_st_free(st);

    /* IDX, raw and gzipped: the data buffer, as large as the dims say. */
    static unsigned char big[16 + 3 * 100 * 100];
    const uint32_t d[3] = {3, 100, 100};
    const size_t n = idx_craft(big, 3, d, 30000);
    char p[256], q[256];
    write_file(tpath(p, "ok-idx"), big, n);
    write_gz(tpath(q, "ok-idx.gz"), big, n);
    for (int k = 0; k < 2; k++) {
        uint8_t *data = NULL;
        int nd;
        int64_t dims[4];
        watch();
        assert_status(cnn_idx_read(k ? q : p, &data, &nd, dims), CNN_OK);
        watching = 0;
        assert_true(largest >= 30000);
        free(data);
    }
}

/* ---------------------------------------------------------------------------------------------
 * safetensors
 * ------------------------------------------------------------------------------------------- */

/* A header length over 100 MB, in a 10-byte file. */
static void test_st_header_over_limit(void **state) {
    (void)state;
    static const uint64_t lens[] = {100000001u, UINT64_C(1) << 40, UINT64_MAX};
    unsigned char buf[64];
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        const size_t len = st_craft(buf, sizeof buf, lens[i], "{}", 0);
        st_expect(buf, len, "over_limit.safetensors", CNN_ERR_FORMAT,
                  "is more than the limit of 100000000 bytes", 100000000u);
    }
}

/* A header length within the limit but past the end of the file: 50 MB claimed, 70 bytes held. */
static void test_st_header_past_file(void **state) {
    (void)state;
    unsigned char buf[128];
    const size_t len = st_craft(buf, sizeof buf, 50000000u,
                                "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    st_expect(buf, len, "past_file.safetensors", CNN_ERR_FORMAT,
              "header length 50000000 is more than the 62 bytes after it", 50000000u);
}

/* A shape whose product overflows int64, and one whose byte count does. */
static void test_st_shape_overflow(void **state) {
    (void)state;
    unsigned char buf[256];
    const char *j1 = "{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}";
    size_t len = st_craft(buf, sizeof buf, strlen(j1), j1, 8);
    st_expect(buf, len, "overflow.safetensors", CNN_ERR_FORMAT,
              "tensor 'x': the product of shape [4294967296, 4294967296] overflows int64", UINT64_C(1) << 32);
    const char *j2 = "{\"x\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}";
    len = st_craft(buf, sizeof buf, strlen(j2), j2, 8);
    st_expect(buf, len, "overflow_bytes.safetensors", CNN_ERR_FORMAT,
              "shape [4611686018427387904] of F64 needs more bytes than int64 can count", UINT64_C(1) << 32);
}

/* A tensor of 2^38 floats (1 TiB) whose offsets reach past the 8 bytes the file holds. */
static void test_st_tensor_past_file(void **state) {
    (void)state;
    unsigned char buf[256];
    const char *j = "{\"x\":{\"dtype\":\"F32\",\"shape\":[274877906944],\"data_offsets\":[0,1099511627776]}}";
    const size_t len = st_craft(buf, sizeof buf, strlen(j), j, 8);
    st_expect(buf, len, "huge_tensor.safetensors", CNN_ERR_FORMAT,
              "data_offsets [0, 1099511627776] reach past the end of the 8-byte data buffer",
              UINT64_C(1) << 32);
}

/* ---------------------------------------------------------------------------------------------
 * IDX
 * ------------------------------------------------------------------------------------------- */

/* MNIST's dims (47 MB of pixels) in a file of 1000 bytes, raw and gzipped. The gzip reader's
 * first buffer is min(dims, 1 MiB): a fixed size, which a compressed stream of 1000 bytes may
 * well fill, never the 47 MB the dims claim. */
static void test_idx_count_too_short(void **state) {
    (void)state;
    static unsigned char buf[16 + 1000];
    const uint32_t d[3] = {60000, 28, 28};
    const size_t len = idx_craft(buf, 3, d, 1000);
    char p[256];
    write_file(tpath(p, "train-images-idx3-ubyte"), buf, len);
    idx_expect(p, "truncated: dims 60000x28x28 need 47040000 bytes after the 16-byte header, the file "
                  "holds 1000", 47040000u, len + SLACK);
    write_gz(tpath(p, "train-images-idx3-ubyte.gz"), buf, len);
    idx_expect(p, "truncated: dims 60000x28x28 need 47040000 bytes after the 16-byte header, the file "
                  "holds 1000", 47040000u, (1u << 20) + SLACK);
}

/* Dims whose product passes the 2^31-byte limit (and would overflow 32 bits), in 20 bytes. */
static void test_idx_dims_over_limit(void **state) {
    (void)state;
    unsigned char buf[64];
    const uint32_t d[4] = {65535, 65535, 65535, 65535};
    const size_t len = idx_craft(buf, 4, d, 4);
    char p[256];
    write_file(tpath(p, "huge"), buf, len);
    idx_expect(p, "dims 65535x65535x65535x65535 hold more than 2147483648 bytes", UINT64_C(1) << 31,
               len + SLACK);
    write_gz(tpath(p, "huge.gz"), buf, len);
    idx_expect(p, "hold more than 2147483648 bytes", UINT64_C(1) << 31, len + SLACK);
}

/* ---------------------------------------------------------------------------------------------
 * CIFAR-10 and images
 * ------------------------------------------------------------------------------------------- */

/* A batch of 2 records whose second is cut short: rejected from the file's size, before the
 * split (2 × 3072 floats) is allocated. */
static void test_cifar_partial_record(void **state) {
    (void)state;
    static unsigned char buf[2 * 3073];
    char d[256], p[300];
    tpath(d, "cifar");
    assert_int_equal(mkdir(d, 0700), 0);
    snprintf(p, sizeof p, "%s/data_batch_1.bin", d);
    write_file(p, buf, sizeof buf - 100);
    cnn_data data;
    watch();
    assert_status(cnn_data_open(d, NULL, &data), CNN_ERR_FORMAT);
    assert_never_tried(p, 3072 * sizeof(float), sizeof buf);
    assert_error_contains("6046 bytes is not a whole number of CIFAR-10 records");
}

/* A PNG header that claims 100000×100000 pixels (40 GB as RGBA) in 33 bytes: rejected from the
 * header, before any pixel buffer. */
static void test_image_claims_too_many_pixels(void **state) {
    (void)state;
    unsigned char png[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    const uint32_t side = 100000;
    for (int k = 0; k < 2; k++)
        for (int b = 0; b < 4; b++) png[16 + 4 * k + b] = (unsigned char)(side >> (24 - 8 * b));
    png[24] = 8, png[25] = 6; /* 8-bit RGBA */
    const uint32_t crc = (uint32_t)crc32(0, png + 12, 17);
    for (int b = 0; b < 4; b++) png[29 + b] = (unsigned char)(crc >> (24 - 8 * b));
    char p[256];
    write_file(tpath(p, "huge.png"), png, sizeof png);
    float out[4];
    watch();
    assert_status(cnn_image_load(p, 1, 2, 2, out), CNN_ERR_FORMAT);
    assert_never_tried(p, (uint64_t)side * side, sizeof png + SLACK);
    assert_error_contains("PNG image is 100000x100000, too large (the limit is 16384x16384)");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch_sees_allocations),
        cmocka_unit_test(test_st_header_over_limit),
        cmocka_unit_test(test_st_header_past_file),
        cmocka_unit_test(test_st_shape_overflow),
        cmocka_unit_test(test_st_tensor_past_file),
        cmocka_unit_test(test_idx_count_too_short),
        cmocka_unit_test(test_idx_dims_over_limit),
        cmocka_unit_test(test_cifar_partial_record),
        cmocka_unit_test(test_image_claims_too_many_pixels),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
