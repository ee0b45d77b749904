/* Streams: every reader of outside input reads regular files only, never blocks on what is not
 * one, and reads no more than the file's header describes.
 *
 *   - a FIFO (with no writer: opening it for reading would block forever) given as a model, as
 *     weights, as grad's --input, as an IDX file of a data set and as an image: each refused at
 *     once, exit 2, the message naming the path and saying it is a FIFO; the runs are killed after
 *     CLI_TIMEOUT_S, so a regression fails rather than hangs;
 *   - /dev/zero as weights: refused as a device, under a 200 MB address-space limit;
 *   - a 1.1 GB sparse file whose header length is 2^63: refused after its first 8 bytes, under the
 *     same limit; a sparse file with a valid header followed by 1.1 GB the header does not
 *     describe: refused before the data is read;
 *   - hostile images through predict: a 16-bit PGM with half its samples, an 11-digit size
 *     (the library cases are in test_image_hostile.c);
 *   - the library readers themselves (cnn_net_load, cnn_st_load, cnn_idx_read, cnn_image_load) on
 *     a FIFO, a socket and /dev/null.
 * The same runs with a regular file in place of each FIFO succeed, so that each refusal is of the
 * FIFO and not of something else. */
#include "testutil.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CLI_TIMEOUT_S 30
#include "clirun.h"

#define PATH_LEN 512
#define MEM_LIMIT (200ull << 20)

static char dir[64];
static char model_p[PATH_LEN], weights_p[PATH_LEN], input_p[PATH_LEN], image_p[PATH_LEN], data_d[PATH_LEN];
static char fifo_p[PATH_LEN], fifo_img_p[PATH_LEN], out_p[PATH_LEN];

static const char MODEL[] = "input 1 4 4\nflatten\nlinear out_features=3\n";

static char *path(char *buf, const char *name) {
    snprintf(buf, PATH_LEN, "%s/%s", dir, name);
    return buf;
}

static void write_idx(const char *p, int ndim, const uint32_t *dims, const uint8_t *data, size_t n) {
    uint8_t head[16] = {0, 0, 0x08, (uint8_t)ndim};
    for (int i = 0; i < ndim; i++)
        head[4 + 4 * i] = (uint8_t)(dims[i] >> 24), head[5 + 4 * i] = (uint8_t)(dims[i] >> 16),
                    head[6 + 4 * i] = (uint8_t)(dims[i] >> 8), head[7 + 4 * i] = (uint8_t)dims[i];
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(head, 1, 4 + 4 * (size_t)ndim, f), 4 + 4 * (size_t)ndim);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A data set of four 4×4 images in IDX files, train and test. */
static void write_data(const char *d) {
    mkdir(d, 0700);
    uint8_t px[4 * 16], lab[4] = {0, 1, 2, 1};
    for (int i = 0; i < 4 * 16; i++) px[i] = (uint8_t)(i * 37);
    const uint32_t im[3] = {4, 4, 4}, lb[1] = {4};
    char p[PATH_LEN + 32];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", d), write_idx(p, 3, im, px, sizeof px);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", d), write_idx(p, 1, lb, lab, sizeof lab);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", d), write_idx(p, 3, im, px, sizeof px);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", d), write_idx(p, 1, lb, lab, sizeof lab);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cnn_test_streams_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    tu_write_bytes(path(model_p, "model.cnn"), MODEL, strlen(MODEL));
    cnn_net *net = NULL;
    if (cnn_net_load(model_p, &net) || cnn_net_init(net, 7) || cnn_net_save_weights(net, path(weights_p, "w.safetensors"), 0))
        return -1;
    cnn_net_free(net);
    static float x[2 * 16], go[2 * 3];
    for (int i = 0; i < 32; i++) x[i] = 0.1f * (float)(i % 7) - 0.3f;
    for (int i = 0; i < 6; i++) go[i] = 0.5f - 0.2f * (float)i;
    const cnn_tensor in[2] = {{"input", CNN_F32, 4, {2, 1, 4, 4}, x}, {"grad_output", CNN_F32, 2, {2, 3}, go}};
    if (cnn_st_save(path(input_p, "in.safetensors"), in, 2, NULL, 0)) return -1;
    const char pgm[] = "P5 4 4 255\n0123456789abcdef";
    tu_write_bytes(path(image_p, "digit.pgm"), pgm, sizeof pgm - 1);
    write_data(path(data_d, "data"));
    if (mkfifo(path(fifo_p, "fifo"), 0600) || mkfifo(path(fifo_img_p, "fifo.png"), 0600)) return -1;
    path(out_p, "out.safetensors");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* Runs the CLI, which must exit 2 within a few seconds with `subs` on stderr. */
#define EXPECT_REFUSED(...)                                                                                \
    do {                                                                                                   \
        cli_result r_;                                                                                     \
        const struct timespec t0_ = now();                                                                 \
        CLI_RUN(&r_, dir, __VA_ARGS__);                                                                    \
        if (seconds_since(t0_) > 10) fail_msg("%.300s took %.1f s", r_.cmd, seconds_since(t0_));         \
        cli_expect(&r_, 2, expect_subs);                                                                   \
    } while (0)

static const char *const *expect_subs;

static struct timespec now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t;
}

static double seconds_since(struct timespec t0) {
    const struct timespec t = now();
    return (double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec);
}

#define FIFO_SAYS(p) ((const char *const[]){(p), "is a FIFO, not a regular file", NULL})

/* grad with every input regular succeeds: the refusals below are of the FIFO alone. */
static void test_grad_reads_regular_files(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "grad", "--model", model_p, "--weights", weights_p, "--input", input_p, "--out", out_p);
    CLI_EXPECT(&r, 0, "");
}

static void test_fifo_as_model(void **state) {
    (void)state;
    expect_subs = FIFO_SAYS(fifo_p);
    EXPECT_REFUSED("grad", "--model", fifo_p, "--weights", weights_p, "--input", input_p, "--out", out_p);
    EXPECT_REFUSED("summary", "--model", fifo_p);
    EXPECT_REFUSED("export", "--weights", weights_p, "--model", fifo_p, "--out", out_p);
}

static void test_fifo_as_weights(void **state) {
    (void)state;
    expect_subs = FIFO_SAYS(fifo_p);
    EXPECT_REFUSED("grad", "--model", model_p, "--weights", fifo_p, "--input", input_p, "--out", out_p);
    EXPECT_REFUSED("eval", "--model", model_p, "--weights", fifo_p, "--data", data_d);
    EXPECT_REFUSED("summary", "--model", model_p, "--weights", fifo_p);
    EXPECT_REFUSED("export", "--weights", fifo_p, "--out", out_p);
}

static void test_fifo_as_grad_input(void **state) {
    (void)state;
    expect_subs = FIFO_SAYS(fifo_p);
    EXPECT_REFUSED("grad", "--model", model_p, "--weights", weights_p, "--input", fifo_p, "--out", out_p);
}

/* A data set whose test images are a FIFO; with the regular file back it evaluates. */
static void test_fifo_as_idx_file(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", weights_p, "--data", data_d);
    CLI_EXPECT(&r, 0, "");
    char images[PATH_LEN + 32], saved[PATH_LEN + 32];
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte", data_d);
    snprintf(saved, sizeof saved, "%s/saved-images", dir);
    assert_int_equal(rename(images, saved), 0);
    assert_int_equal(mkfifo(images, 0600), 0);
    expect_subs = FIFO_SAYS(images);
    EXPECT_REFUSED("eval", "--model", model_p, "--weights", weights_p, "--data", data_d);
    EXPECT_REFUSED("train", "--model", model_p, "--data", data_d, "--epochs", "1", "--out", out_p);
    assert_int_equal(rename(saved, images), 0); /* replaces the FIFO */
}

static void test_fifo_as_image(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "predict", "--model", model_p, "--weights", weights_p, image_p);
    CLI_EXPECT(&r, 0, "");
    expect_subs = FIFO_SAYS(fifo_img_p);
    EXPECT_REFUSED("predict", "--model", model_p, "--weights", weights_p, fifo_img_p);
}

/* Hostile images through predict: a PGM with maxval 65535 and half its samples, and one whose
 * size has 11 digits, are refused with their reason (not classified). */
static void test_hostile_images(void **state) {
    (void)state;
    char half[PATH_LEN], huge[PATH_LEN];
    static uint8_t b[64 + 2 * 16];
    size_t n = (size_t)sprintf((char *)b, "P5 4 4 65535\n");
    memset(b + n, 0x80, 16);
    tu_write_bytes(path(half, "half.pgm"), b, n + 16);
    n = (size_t)sprintf((char *)b, "P5\n12345678901 12345678901\n255\n");
    memset(b + n, 0x80, 16);
    tu_write_bytes(path(huge, "huge.pgm"), b, n + 16);
    expect_subs = (const char *const[]){half, "PGM image is truncated: 4x4 with maxval 65535 needs 32 bytes", NULL};
    EXPECT_REFUSED("predict", "--model", model_p, "--weights", weights_p, half);
    expect_subs = (const char *const[]){huge, "too large (the limit is 16384x16384)", NULL};
    EXPECT_REFUSED("predict", "--model", model_p, "--weights", weights_p, huge);
}

/* /dev/zero never ends: it is refused as a device before a byte is read. */
static void test_dev_zero_as_weights(void **state) {
    (void)state;
#ifndef __SANITIZE_ADDRESS__
    cli_mem_limit = MEM_LIMIT;
#else
    print_message("[ NOTE     ] AddressSanitizer build: /dev/zero is run without the 200 MB memory limit\n");
#endif
    expect_subs = (const char *const[]){"/dev/zero", "is a character device, not a regular file", NULL};
    EXPECT_REFUSED("grad", "--model", model_p, "--weights", "/dev/zero", "--input", input_p, "--out", out_p);
    EXPECT_REFUSED("eval", "--model", model_p, "--weights", "/dev/zero", "--data", data_d);
    cli_mem_limit = 0;
}

/* A sparse file of `size` bytes that starts with `head` (hlen bytes). */
static void write_sparse(const char *p, const void *head, size_t hlen, off_t size) {
    const int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, head, hlen), (ssize_t)hlen);
    assert_int_equal(ftruncate(fd, size), 0);
    assert_int_equal(close(fd), 0);
}

/* 1.1 GB, but its header length is 2^63: refused from its first 8 bytes, within 200 MB. */
static void test_sparse_header_length_2_63(void **state) {
    (void)state;
    char p[PATH_LEN];
    const uint8_t head[8] = {0, 0, 0, 0, 0, 0, 0, 0x80};
    write_sparse(path(p, "sparse.safetensors"), head, 8, (off_t)1100 << 20);
#ifndef __SANITIZE_ADDRESS__
    cli_mem_limit = MEM_LIMIT;
#endif
    expect_subs = (const char *const[]){p, "header length 9223372036854775808 is more than the limit", NULL};
    EXPECT_REFUSED("grad", "--model", model_p, "--weights", p, "--input", input_p, "--out", out_p);
    cli_mem_limit = 0;
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(p, &st), CNN_ERR_FORMAT);
    assert_null(st);
    unlink(p);
}

/* A valid header describing 12 bytes, then 1.1 GB it does not describe: refused before the data
 * is read, within 200 MB. */
static void test_sparse_data_beyond_header(void **state) {
    (void)state;
    char p[PATH_LEN];
    const char json[] = "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
    uint8_t head[8 + sizeof json];
    const uint64_t n = sizeof json - 1;
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)(n >> (8 * i));
    memcpy(head + 8, json, n);
    write_sparse(path(p, "long.safetensors"), head, 8 + n, (off_t)1100 << 20);
#ifndef __SANITIZE_ADDRESS__
    cli_mem_limit = MEM_LIMIT;
#endif
    expect_subs = (const char *const[]){p, "the tensors cover only the first 12", NULL};
    EXPECT_REFUSED("grad", "--model", model_p, "--weights", p, "--input", input_p, "--out", out_p);
    cli_mem_limit = 0;
    unlink(p);
}

/* The library's readers on a FIFO, a socket and a device: each fails at once with CNN_ERR_IO, its
 * message naming the path and what it is. */
static void expect_io(cnn_status s, const char *p, const char *what) {
    if (s != CNN_ERR_IO) fail_msg("%s: status %s (%s), expected an I/O error", p, cnn_status_name(s), cnn_last_error());
    if (!strstr(cnn_last_error(), p) || !strstr(cnn_last_error(), what))
        fail_msg("%s: message \"%s\" lacks the path or \"%s\"", p, cnn_last_error(), what);
}

static void test_library_readers(void **state) {
    (void)state;
    char sock_p[PATH_LEN];
    path(sock_p, "sock");
    const int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(sfd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(sock_p) < sizeof sa.sun_path);
    memcpy(sa.sun_path, sock_p, strlen(sock_p) + 1);
    assert_int_equal(bind(sfd, (struct sockaddr *)&sa, sizeof sa), 0);
    const struct {
        const char *p, *what;
    } cases[] = {{fifo_p, "is a FIFO, not a regular file"},
                 {sock_p, "is a socket, not a regular file"},
                 {"/dev/null", "is a character device, not a regular file"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *p = cases[i].p, *what = cases[i].what;
        cnn_net *net = NULL;
        expect_io(cnn_net_load(p, &net), p, what);
        assert_null(net);
        cnn_st *st = NULL;
        expect_io(cnn_st_load(p, &st), p, what);
        assert_null(st);
        uint8_t *data = NULL;
        int ndim;
        int64_t dims[4];
        expect_io(cnn_idx_read(p, &data, &ndim, dims), p, what);
        assert_null(data);
        float px[16];
        expect_io(cnn_image_load(p, 1, 4, 4, px), p, what);
        cnn_data d; /* a data source is a name or a directory: not one, but refused at once */
        assert_int_not_equal(cnn_data_open(p, NULL, &d), CNN_OK);
    }
    close(sfd);
    unlink(sock_p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_reads_regular_files),
        cmocka_unit_test(test_fifo_as_model),
        cmocka_unit_test(test_fifo_as_weights),
        cmocka_unit_test(test_fifo_as_grad_input),
        cmocka_unit_test(test_fifo_as_idx_file),
        cmocka_unit_test(test_fifo_as_image),
        cmocka_unit_test(test_hostile_images),
        cmocka_unit_test(test_dev_zero_as_weights),
        cmocka_unit_test(test_sparse_header_length_2_63),
        cmocka_unit_test(test_sparse_data_beyond_header),
        cmocka_unit_test(test_library_readers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
