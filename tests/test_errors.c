/* test_errors.c - bad input never crashes.
 *
 * Every kind of bad input gets a message that names the line, the option or the tensor (and, for
 * shapes, the shapes), a precise status (exit status 2 from the CLI) and no crash, also under
 * AddressSanitizer and UndefinedBehaviorSanitizer (`make test SANITIZE=1`). Two layers:
 *
 * 1. Library. cnn_net_parse on bad model texts, and cnn_net_load_weights on bad weights (written
 *    with cnn_st_save, read back with cnn_st_load). Each parse runs in a forked child, so that a
 *    crash or a sanitizer report fails that one test instead of ending the whole program; the child
 *    sends back the status and cnn_last_error(), and exits through exit() so that LeakSanitizer
 *    also checks the error paths for leaks.
 * 2. CLI. "$CNN_BIN grad ..." and "$CNN_BIN gradcheck ..." run with fork/exec on files written
 *    into a mkdtemp directory (bad bytes are crafted by hand: an 8-byte little-endian header
 *    length, the JSON header, the data). Each case checks that the process exited (no signal),
 *    with status 2, and that stderr names what is wrong. One success case per command shows the
 *    harness works.
 *
 * CNN_BIN defaults to build/cnn, relative to the repository root where tests/run.sh runs tests. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <cmocka.h>

#include "cnn.h"
#include "clirun.h"
#include "testutil.h"

#define PATH_LEN 1024
#define MSG_LEN 4096
#define CLI_TIMEOUT_S 120

/* ---------------------------------------------------------------------------------------------
 * Temporary directory and files
 * ------------------------------------------------------------------------------------------- */

static char tmpdir[64];


/* buf = tmpdir/name (buf holds PATH_LEN). */
static char *tmp_path(char *buf, const char *name) {
    int n = snprintf(buf, PATH_LEN, "%s/%s", tmpdir, name);
    assert_true(n > 0 && n < PATH_LEN);
    return buf;
}

static void write_text(const char *path, const char *text) { tu_write_bytes(path, text, strlen(text)); }

/* Reads up to cap - 1 bytes of a file into buf as a NUL-terminated string ("" if it cannot be
 * read). The buffers are static, never malloc'd: a failing test longjmps out of its body, and
 * memory it had allocated would then show up as a leak in the next forked child. */
static char *read_into(const char *path, char *buf, size_t cap) {
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        len = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[len] = '\0';
    return buf;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Removes the directory `dir` and everything in it (two levels are enough here). */
/* Fails unless `haystack` contains every string of the NULL-terminated `subs`. */
static void assert_contains_all(const char *what, const char *haystack, const char *const *subs) {
    for (int i = 0; subs[i]; i++)
        if (!strstr(haystack, subs[i]))
            fail_msg("%s \"%.500s\" does not contain \"%.100s\"", what, haystack, subs[i]);
}

/* ---------------------------------------------------------------------------------------------
 * The standard model, weights and inputs, written by the group setup
 *
 *   line 1  # the standard test model
 *   line 2  input 1 4 4
 *   line 3  conv2d out_channels=2 kernel_size=3     layer 0: 0.weight [2, 1, 3, 3], 0.bias [2]
 *   line 4  relu                                    layer 1
 *   line 5  flatten                                 layer 2: [8]
 *   line 6  linear out_features=3                   layer 3: 3.weight [3, 8], 3.bias [3]
 * ------------------------------------------------------------------------------------------- */

static const char MODEL[] = "# the standard test model\n"
                            "input 1 4 4\n"
                            "conv2d out_channels=2 kernel_size=3\n"
                            "relu\n"
                            "flatten\n"
                            "linear out_features=3\n";

/* Its output is not flat: [N, 2, 2, 2]. */
static const char MODEL_4D[] = "input 1 4 4\nconv2d out_channels=2 kernel_size=3\n";

#define BATCH 2
static float W0[18], B0[2], W3[24], B3[3];
static float X[BATCH * 16], GO[BATCH * 3], T_MSE[BATCH * 3], GO_4D[BATCH * 8];
static int64_t T_CE[BATCH] = {0, 2};
static unsigned char DATA[188]; /* W0, B0, W3, B3 back to back, as the crafted files hold them */

static char model_path[PATH_LEN], model_4d_path[PATH_LEN], weights_path[PATH_LEN];
static char in_go_path[PATH_LEN], in_ce_path[PATH_LEN], in_mse_path[PATH_LEN], in_4d_path[PATH_LEN];

static cnn_tensor f32(const char *name, int ndim, const int64_t *shape, const void *data) {
    cnn_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.dtype = CNN_F32;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    t.data = (void *)data;
    return t;
}

static cnn_tensor typed(const char *name, cnn_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    cnn_tensor t = f32(name, ndim, shape, data);
    t.dtype = dtype;
    return t;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* A float32 tensor: F32T("name", data, dims...) */
#define F32T(name, data, ...) f32((name), NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), (data))

static void save(const char *path, const cnn_tensor *t, int n) {
    cnn_status s = cnn_st_save(path, t, n, NULL, 0);
    if (s != CNN_OK) fail_msg("cnn_st_save(%s): %.500s", path, cnn_last_error());
}

/* The four standard parameters; callers may replace entries before saving. */
static void std_params(cnn_tensor t[4]) {
    t[0] = F32T("0.weight", W0, 2, 1, 3, 3);
    t[1] = F32T("0.bias", B0, 2);
    t[2] = F32T("3.weight", W3, 3, 8);
    t[3] = F32T("3.bias", B3, 3);
}

static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_errors_XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    for (int i = 0; i < 18; i++) W0[i] = 0.1f * (float)((i * 5) % 7 - 3);
    for (int i = 0; i < 2; i++) B0[i] = 0.05f * (float)(i + 1);
    for (int i = 0; i < 24; i++) W3[i] = 0.07f * (float)((i * 3) % 11 - 5);
    for (int i = 0; i < 3; i++) B3[i] = -0.02f * (float)i;
    for (int i = 0; i < BATCH * 16; i++) X[i] = 0.13f * (float)((i * 7) % 13 - 6);
    for (int i = 0; i < BATCH * 3; i++) GO[i] = 0.5f - 0.25f * (float)i, T_MSE[i] = 0.1f * (float)i;
    for (int i = 0; i < BATCH * 8; i++) GO_4D[i] = 0.1f * (float)(i % 5) - 0.2f;
    memcpy(DATA, W0, 72);
    memcpy(DATA + 72, B0, 8);
    memcpy(DATA + 80, W3, 96);
    memcpy(DATA + 176, B3, 12);

    snprintf(model_path, PATH_LEN, "%s/model.cnn", tmpdir);
    snprintf(model_4d_path, PATH_LEN, "%s/model_4d.cnn", tmpdir);
    snprintf(weights_path, PATH_LEN, "%s/weights.safetensors", tmpdir);
    snprintf(in_go_path, PATH_LEN, "%s/in_go.safetensors", tmpdir);
    snprintf(in_ce_path, PATH_LEN, "%s/in_ce.safetensors", tmpdir);
    snprintf(in_mse_path, PATH_LEN, "%s/in_mse.safetensors", tmpdir);
    snprintf(in_4d_path, PATH_LEN, "%s/in_4d.safetensors", tmpdir);

    FILE *f = fopen(model_path, "wb");
    if (!f) return -1;
    fputs(MODEL, f);
    fclose(f);
    f = fopen(model_4d_path, "wb");
    if (!f) return -1;
    fputs(MODEL_4D, f);
    fclose(f);

    cnn_tensor p[4];
    std_params(p);
    if (cnn_st_save(weights_path, p, 4, NULL, 0)) return -1;
    cnn_tensor go[2] = {F32T("input", X, BATCH, 1, 4, 4), F32T("grad_output", GO, BATCH, 3)};
    if (cnn_st_save(in_go_path, go, 2, NULL, 0)) return -1;
    cnn_tensor ce[2] = {F32T("input", X, BATCH, 1, 4, 4), typed("target", CNN_I64, 1, SHAPE(BATCH), T_CE)};
    if (cnn_st_save(in_ce_path, ce, 2, NULL, 0)) return -1;
    cnn_tensor mse[2] = {F32T("input", X, BATCH, 1, 4, 4), F32T("target", T_MSE, BATCH, 3)};
    if (cnn_st_save(in_mse_path, mse, 2, NULL, 0)) return -1;
    cnn_tensor g4[2] = {F32T("input", X, BATCH, 1, 4, 4), F32T("grad_output", GO_4D, BATCH, 2, 2, 2)};
    if (cnn_st_save(in_4d_path, g4, 2, NULL, 0)) return -1;
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    tu_remove_tree(tmpdir);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Library level: cnn_net_parse in a child process
 * ------------------------------------------------------------------------------------------- */

typedef struct parse_result {
    int status;
    int out_was_null; /* on failure *out must be NULL */
    char msg[1100];
} parse_result;

/* Parses `text` in a forked child and returns what it saw. Fails the test (showing the child's
 * stderr, where a sanitizer writes its report) when the child does not exit normally with 0. */
static void parse_isolated(const char *text, parse_result *r) {
    char err_path[PATH_LEN];
    tmp_path(err_path, "parse_child.stderr");
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL); /* so that the child does not print the parent's buffered output again */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        parse_result res;
        memset(&res, 0, sizeof res);
        cnn_net *net = (cnn_net *)&res; /* must be set to NULL on failure */
        res.status = (int)cnn_net_parse(text, &net);
        res.out_was_null = net == NULL;
        snprintf(res.msg, sizeof res.msg, "%s", cnn_last_error());
        if (res.status == CNN_OK) cnn_net_free(net);
        ssize_t w = write(fds[1], &res, sizeof res);
        close(fds[1]);
        exit(w == (ssize_t)sizeof res ? 0 : 3); /* exit(), not _exit(): LeakSanitizer runs at exit */
    }
    close(fds[1]);
    memset(r, 0, sizeof *r);
    size_t got = 0;
    while (got < sizeof *r) {
        ssize_t k = read(fds[0], (char *)r + got, sizeof *r - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fds[0]);
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
    static char err[MSG_LEN];
    read_into(err_path, err, sizeof err);
    if (WIFSIGNALED(ws)) fail_msg("cnn_net_parse crashed with signal %d; stderr:\n%.700s", WTERMSIG(ws), err);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0 || got != sizeof *r)
        fail_msg("cnn_net_parse: the child exited with status %d (a sanitizer report?); stderr:\n%.700s",
                 WIFEXITED(ws) ? WEXITSTATUS(ws) : -1, err);
}

/* cnn_net_parse(text) must fail with `status`, leave *out NULL, and say every one of `subs`. */
static void expect_parse_error(const char *text, cnn_status status, const char *const *subs) {
    parse_result r;
    parse_isolated(text, &r);
    if (r.status != (int)status)
        fail_msg("cnn_net_parse: status %s (\"%.500s\"), expected %s", cnn_status_name((cnn_status)r.status), r.msg,
                 cnn_status_name(status));
    if (!r.out_was_null) fail_msg("cnn_net_parse failed but did not set *out to NULL");
    assert_contains_all("error message", r.msg, subs);
}

/* A test that parses TEXT and expects STATUS and a message holding each of the other arguments. */
#define PARSE_ERROR_TEST(fn, text, status, ...)                                                     \
    static void fn(void **state) {                                                                 \
        (void)state;                                                                               \
        expect_parse_error((text), (status), (const char *const[]){__VA_ARGS__, NULL});            \
    }

/* The harness itself: a good model parses in the child. */
static void test_parse_good_model_parses(void **state) {
    (void)state;
    parse_result r;
    parse_isolated(MODEL, &r);
    if (r.status != CNN_OK) fail_msg("the standard model does not parse: %.500s", r.msg);
}

/* ---- unknown layers and options ---- */
PARSE_ERROR_TEST(test_parse_unknown_layer, "input 1 8 8\nconv2d out_channels=2 kernel_size=3\nrelux\n", CNN_ERR_PARSE,
                 "line 3", "unknown layer 'relux'")
PARSE_ERROR_TEST(test_parse_unknown_layer_with_options, "input 1 8 8\n\n# comment\ngroupnorm num_groups=1\n",
                 CNN_ERR_PARSE, "line 4", "'groupnorm'")
PARSE_ERROR_TEST(test_parse_unknown_option_conv2d, "input 1 8 8\nconv2d out_channels=2 kernal_size=3\n", CNN_ERR_PARSE,
                 "line 2", "conv2d", "unknown option 'kernal_size'")
PARSE_ERROR_TEST(test_parse_unknown_option_relu, "input 1 8 8\nrelu inplace=true\n", CNN_ERR_PARSE, "line 2", "relu",
                 "unknown option 'inplace'")
PARSE_ERROR_TEST(test_parse_unknown_option_flatten, "input 1 8 8\nflatten start_dim=1\n", CNN_ERR_PARSE, "line 2",
                 "flatten", "'start_dim'")
PARSE_ERROR_TEST(test_parse_count_include_pad_on_maxpool2d,
                 "input 1 8 8\nmaxpool2d kernel_size=2 count_include_pad=false\n", CNN_ERR_PARSE, "line 2",
                 "maxpool2d", "unknown option 'count_include_pad'")
PARSE_ERROR_TEST(test_parse_unknown_option_linear, "input 1 8 8\nflatten\nlinear out_features=3 in_features=64\n",
                 CNN_ERR_PARSE, "line 3", "linear", "unknown option 'in_features'")
PARSE_ERROR_TEST(test_parse_option_without_equals, "input 1 8 8\nconv2d out_channels=2 3\n", CNN_ERR_PARSE, "line 2",
                 "conv2d", "key=value", "'3'")
PARSE_ERROR_TEST(test_parse_option_with_empty_key, "input 1 8 8\nconv2d out_channels=2 =3\n", CNN_ERR_PARSE,
                 "line 2", "conv2d", "key=value", "'=3'")
PARSE_ERROR_TEST(test_parse_duplicated_option, "input 1 8 8\nconv2d out_channels=2 kernel_size=3 kernel_size=5\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "'kernel_size'", "twice")
PARSE_ERROR_TEST(test_parse_duplicated_option_pool, "input 1 8 8\nmaxpool2d stride=1 kernel_size=2 stride=2\n",
                 CNN_ERR_PARSE, "line 2", "maxpool2d", "'stride'", "twice")

/* ---- required options ---- */
PARSE_ERROR_TEST(test_parse_conv2d_without_out_channels, "input 1 8 8\nconv2d kernel_size=3\n", CNN_ERR_PARSE,
                 "line 2", "conv2d", "out_channels")
PARSE_ERROR_TEST(test_parse_conv2d_without_kernel_size, "input 1 8 8\nconv2d out_channels=2\n", CNN_ERR_PARSE,
                 "line 2", "conv2d", "kernel_size")
PARSE_ERROR_TEST(test_parse_linear_without_out_features, "input 1 8 8\nflatten\nlinear\n", CNN_ERR_PARSE, "line 3",
                 "linear", "out_features")
PARSE_ERROR_TEST(test_parse_maxpool2d_without_kernel_size, "input 1 8 8\nmaxpool2d stride=2\n", CNN_ERR_PARSE,
                 "line 2", "maxpool2d", "kernel_size")
PARSE_ERROR_TEST(test_parse_avgpool2d_without_kernel_size, "input 1 8 8\navgpool2d\n", CNN_ERR_PARSE, "line 2",
                 "avgpool2d", "kernel_size")

/* ---- values out of range or malformed: the message names the line, the layer and key=value ---- */
#define CONV "input 1 8 8\nconv2d out_channels=2 kernel_size=3 "
PARSE_ERROR_TEST(test_parse_conv2d_kernel_size_0, "input 1 8 8\nconv2d out_channels=2 kernel_size=0\n", CNN_ERR_PARSE,
                 "line 2", "conv2d", "kernel_size=0")
PARSE_ERROR_TEST(test_parse_conv2d_stride_0, CONV "stride=0\n", CNN_ERR_PARSE, "line 2", "conv2d", "stride=0")
PARSE_ERROR_TEST(test_parse_conv2d_padding_negative, CONV "padding=-1\n", CNN_ERR_PARSE, "line 2", "conv2d",
                 "padding=-1")
PARSE_ERROR_TEST(test_parse_conv2d_groups_0, CONV "groups=0\n", CNN_ERR_PARSE, "line 2", "conv2d", "groups=0")
PARSE_ERROR_TEST(test_parse_conv2d_dilation_0, CONV "dilation=0\n", CNN_ERR_PARSE, "line 2", "conv2d", "dilation=0")
PARSE_ERROR_TEST(test_parse_conv2d_out_channels_0, "input 1 8 8\nconv2d out_channels=0 kernel_size=3\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "out_channels=0")
PARSE_ERROR_TEST(test_parse_conv2d_out_channels_negative, "input 1 8 8\nconv2d out_channels=-4 kernel_size=3\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "out_channels=-4")
PARSE_ERROR_TEST(test_parse_conv2d_out_channels_overflows_long,
                 "input 1 8 8\nconv2d out_channels=99999999999999999999 kernel_size=3\n", CNN_ERR_PARSE, "line 2",
                 "conv2d", "out_channels=99999999999999999999")
PARSE_ERROR_TEST(test_parse_conv2d_out_channels_very_long,
                 "input 1 8 8\nconv2d out_channels=0000000000000000000000000000000000000000000001 kernel_size=3\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "out_channels=")
PARSE_ERROR_TEST(test_parse_conv2d_kernel_size_over_limit, "input 1 8 8\nconv2d out_channels=2 kernel_size=1048577\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "kernel_size=1048577")
PARSE_ERROR_TEST(test_parse_conv2d_kernel_size_pair_not_number, "input 1 8 8\nconv2d out_channels=2 kernel_size=3,x\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "kernel_size=3,x")
PARSE_ERROR_TEST(test_parse_conv2d_kernel_size_triple, "input 1 8 8\nconv2d out_channels=2 kernel_size=3,4,5\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "kernel_size=3,4,5")
PARSE_ERROR_TEST(test_parse_conv2d_kernel_size_empty, "input 1 8 8\nconv2d out_channels=2 kernel_size=\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "kernel_size=")
PARSE_ERROR_TEST(test_parse_conv2d_kernel_size_half_pair, "input 1 8 8\nconv2d out_channels=2 kernel_size=3,\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "kernel_size=3,")
PARSE_ERROR_TEST(test_parse_conv2d_kernel_size_plus_sign, "input 1 8 8\nconv2d out_channels=2 kernel_size=+3\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "kernel_size=+3")
PARSE_ERROR_TEST(test_parse_conv2d_kernel_size_fraction, "input 1 8 8\nconv2d out_channels=2 kernel_size=2.5\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "kernel_size=2.5")
PARSE_ERROR_TEST(test_parse_conv2d_bias_maybe, CONV "bias=maybe\n", CNN_ERR_PARSE, "line 2", "conv2d", "bias=maybe")
PARSE_ERROR_TEST(test_parse_leakyrelu_slope_abc, "input 1 8 8\nleakyrelu negative_slope=abc\n", CNN_ERR_PARSE,
                 "line 2", "leakyrelu", "negative_slope=abc")
PARSE_ERROR_TEST(test_parse_leakyrelu_slope_nan, "input 1 8 8\nleakyrelu negative_slope=nan\n", CNN_ERR_PARSE,
                 "line 2", "leakyrelu", "negative_slope=nan")
PARSE_ERROR_TEST(test_parse_leakyrelu_slope_overflows, "input 1 8 8\nleakyrelu negative_slope=1e999\n", CNN_ERR_PARSE,
                 "line 2", "leakyrelu", "negative_slope=1e999")
PARSE_ERROR_TEST(test_parse_leakyrelu_slope_empty, "input 1 8 8\nleakyrelu negative_slope=\n", CNN_ERR_PARSE,
                 "line 2", "leakyrelu", "negative_slope=")
PARSE_ERROR_TEST(test_parse_maxpool2d_ceil_mode_2, "input 1 8 8\nmaxpool2d kernel_size=2 ceil_mode=2\n",
                 CNN_ERR_PARSE, "line 2", "maxpool2d", "ceil_mode=2")
PARSE_ERROR_TEST(test_parse_maxpool2d_stride_0, "input 1 8 8\nmaxpool2d kernel_size=2 stride=0\n", CNN_ERR_PARSE,
                 "line 2", "maxpool2d", "stride=0")
PARSE_ERROR_TEST(test_parse_maxpool2d_kernel_size_0, "input 1 8 8\nmaxpool2d kernel_size=0\n", CNN_ERR_PARSE,
                 "line 2", "maxpool2d", "kernel_size=0")
PARSE_ERROR_TEST(test_parse_avgpool2d_padding_negative, "input 1 8 8\navgpool2d kernel_size=2 padding=-1\n",
                 CNN_ERR_PARSE, "line 2", "avgpool2d", "padding=-1")
PARSE_ERROR_TEST(test_parse_avgpool2d_count_include_pad_yes,
                 "input 1 8 8\navgpool2d kernel_size=2 count_include_pad=yes\n", CNN_ERR_PARSE, "line 2", "avgpool2d",
                 "count_include_pad=yes")
PARSE_ERROR_TEST(test_parse_linear_out_features_0, "input 1 8 8\nflatten\nlinear out_features=0\n", CNN_ERR_PARSE,
                 "line 3", "linear", "out_features=0")
PARSE_ERROR_TEST(test_parse_linear_bias_2, "input 1 8 8\nflatten\nlinear out_features=3 bias=2\n", CNN_ERR_PARSE,
                 "line 3", "linear", "bias=2")

/* ---- the input line ---- */
PARSE_ERROR_TEST(test_parse_no_input_line, "conv2d out_channels=2 kernel_size=3\n", CNN_ERR_PARSE, "line 1",
                 "input C H W")
PARSE_ERROR_TEST(test_parse_no_input_line_after_comments, "# a model\n\n   # indented comment\nrelu\n",
                 CNN_ERR_PARSE, "line 4", "input C H W", "'relu'")
PARSE_ERROR_TEST(test_parse_empty_text, "", CNN_ERR_PARSE, "input C H W")
PARSE_ERROR_TEST(test_parse_only_comments, "# nothing here\n\n", CNN_ERR_PARSE, "input C H W")
PARSE_ERROR_TEST(test_parse_input_without_layers, "input 1 8 8\n", CNN_ERR_PARSE, "no layers")
PARSE_ERROR_TEST(test_parse_input_two_values, "input 1 8\nrelu\n", CNN_ERR_PARSE, "line 1", "input",
                 "got 2 value(s)")
PARSE_ERROR_TEST(test_parse_input_four_values, "input 1 8 8 8\nrelu\n", CNN_ERR_PARSE, "line 1", "input",
                 "got 4 value(s)")
PARSE_ERROR_TEST(test_parse_input_no_values, "\ninput\nrelu\n", CNN_ERR_PARSE, "line 2", "input", "got 0 value(s)")
PARSE_ERROR_TEST(test_parse_input_zero, "input 1 0 8\nrelu\n", CNN_ERR_PARSE, "line 1", "input", "'0'")
PARSE_ERROR_TEST(test_parse_input_negative, "input -1 8 8\nrelu\n", CNN_ERR_PARSE, "line 1", "input", "'-1'")
PARSE_ERROR_TEST(test_parse_input_not_a_number, "input 1 8 x\nrelu\n", CNN_ERR_PARSE, "line 1", "input", "'x'")
PARSE_ERROR_TEST(test_parse_input_over_limit, "input 1 1048577 1\nrelu\n", CNN_ERR_PARSE, "line 1", "input",
                 "'1048577'")
PARSE_ERROR_TEST(test_parse_input_too_many_elements, "input 1048576 1024 1\nrelu\n", CNN_ERR_SHAPE, "line 1",
                 "input", "1048576x1024x1", "too large")
PARSE_ERROR_TEST(test_parse_input_given_twice, "input 1 8 8\nrelu\ninput 1 8 8\n", CNN_ERR_PARSE, "line 3", "input",
                 "twice")

/* ---- shapes that do not fit: the message names the line, the layer and the shapes ---- */
PARSE_ERROR_TEST(test_parse_groups_do_not_divide_in_channels, "input 3 8 8\nconv2d out_channels=4 kernel_size=3 groups=2\n",
                 CNN_ERR_SHAPE, "line 2", "conv2d", "groups=2", "in_channels (3)", "out_channels (4)")
PARSE_ERROR_TEST(test_parse_groups_do_not_divide_out_channels,
                 "input 4 8 8\nconv2d out_channels=3 kernel_size=3 groups=2\n", CNN_ERR_SHAPE, "line 2", "conv2d",
                 "groups=2", "in_channels (4)", "out_channels (3)")
PARSE_ERROR_TEST(test_parse_conv2d_kernel_larger_than_input, "input 1 4 4\nconv2d out_channels=2 kernel_size=5\n",
                 CNN_ERR_SHAPE, "line 2", "conv2d", "1x4x4", "5x5")
PARSE_ERROR_TEST(test_parse_conv2d_kernel_larger_than_padded_input,
                 "input 1 4 4\nconv2d out_channels=2 kernel_size=7 padding=1\n", CNN_ERR_SHAPE, "line 2", "conv2d",
                 "1x4x4", "6x6", "7x7")
PARSE_ERROR_TEST(test_parse_conv2d_rectangular_kernel_too_tall,
                 "input 2 3 9\nconv2d out_channels=2 kernel_size=4,3\n", CNN_ERR_SHAPE, "line 2", "conv2d", "2x3x9",
                 "4x3")
PARSE_ERROR_TEST(test_parse_conv2d_dilated_kernel_too_large,
                 "input 1 5 5\nconv2d out_channels=1 kernel_size=3 dilation=3\n", CNN_ERR_SHAPE, "line 2", "conv2d",
                 "1x5x5", "7x7")
PARSE_ERROR_TEST(test_parse_maxpool2d_kernel_larger_than_input, "input 2 2 2\nmaxpool2d kernel_size=3\n",
                 CNN_ERR_SHAPE, "line 2", "maxpool2d", "2x2x2", "3x3")
PARSE_ERROR_TEST(test_parse_avgpool2d_kernel_larger_than_padded_input,
                 "input 2 4 2\navgpool2d kernel_size=1,5 padding=0,1\n", CNN_ERR_SHAPE, "line 2", "avgpool2d", "2x4x2",
                 "4x4", "1x5")
PARSE_ERROR_TEST(test_parse_maxpool2d_padding_over_half_kernel, "input 1 8 8\nmaxpool2d kernel_size=2 padding=2\n",
                 CNN_ERR_PARSE, "line 2", "maxpool2d", "padding 2,2", "kernel_size 2,2")
PARSE_ERROR_TEST(test_parse_avgpool2d_padding_over_half_kernel, "input 1 8 8\navgpool2d kernel_size=3 padding=1,2\n",
                 CNN_ERR_PARSE, "line 2", "avgpool2d", "padding 1,2", "kernel_size 3,3")
PARSE_ERROR_TEST(test_parse_linear_on_non_flat_input, "input 1 4 4\nlinear out_features=3\n", CNN_ERR_SHAPE,
                 "line 2", "linear", "1x4x4", "flatten")
PARSE_ERROR_TEST(test_parse_conv2d_after_flatten, "input 1 4 4\nflatten\nconv2d out_channels=2 kernel_size=1\n",
                 CNN_ERR_SHAPE, "line 3", "conv2d", "[16]", "flat")
PARSE_ERROR_TEST(test_parse_maxpool2d_after_linear,
                 "input 1 4 4\nflatten\nlinear out_features=5\nmaxpool2d kernel_size=1\n", CNN_ERR_SHAPE, "line 4",
                 "maxpool2d", "[5]", "flat")
/* ---- padding=same (conv2d) and convtranspose2d: PyTorch's rules ---- */
PARSE_ERROR_TEST(test_parse_conv2d_same_strided, "input 1 8 8\nconv2d out_channels=2 kernel_size=3 stride=2 padding=same\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "padding='same' is not supported for strided convolutions")
PARSE_ERROR_TEST(test_parse_conv2d_same_strided_columns,
                 "input 1 8 8\n# comment\nconv2d out_channels=2 kernel_size=3 padding=same stride=1,2\n", CNN_ERR_PARSE,
                 "line 3", "conv2d", "padding='same' is not supported", "stride=1,2")
PARSE_ERROR_TEST(test_parse_conv2d_padding_word, "input 1 8 8\nconv2d out_channels=2 kernel_size=3 padding=full\n",
                 CNN_ERR_PARSE, "line 2", "conv2d", "padding=full")
PARSE_ERROR_TEST(test_parse_convtranspose2d_output_padding_not_below_stride,
                 "input 1 4 4\nconvtranspose2d out_channels=2 kernel_size=3 stride=2 output_padding=2\n", CNN_ERR_PARSE,
                 "line 2", "convtranspose2d", "output padding must be smaller than either stride or dilation",
                 "output_padding=2,2", "stride=2,2", "dilation=1,1")
PARSE_ERROR_TEST(test_parse_convtranspose2d_output_padding_default_stride,
                 "input 1 4 4\nconvtranspose2d out_channels=2 kernel_size=3 output_padding=0,1\n", CNN_ERR_PARSE,
                 "line 2", "convtranspose2d", "output padding must be smaller", "output_padding=0,1")
/* output_padding 2 < dilation 3 is allowed in rows; in columns 2 is neither below stride 2 nor dilation 1 */
PARSE_ERROR_TEST(test_parse_convtranspose2d_output_padding_not_below_dilation,
                 "input 1 4 4\nconvtranspose2d out_channels=2 kernel_size=3 stride=2 dilation=3,1 output_padding=2\n",
                 CNN_ERR_PARSE, "line 2", "convtranspose2d", "output_padding=2,2", "stride=2,2", "dilation=3,1")
PARSE_ERROR_TEST(test_parse_convtranspose2d_groups_do_not_divide_in_channels,
                 "input 3 4 4\nconvtranspose2d out_channels=4 kernel_size=3 groups=2\n", CNN_ERR_SHAPE, "line 2",
                 "convtranspose2d", "groups=2", "in_channels (3)", "out_channels (4)")
PARSE_ERROR_TEST(test_parse_convtranspose2d_groups_do_not_divide_out_channels,
                 "input 4 4 4\nconvtranspose2d out_channels=3 kernel_size=3 groups=2\n", CNN_ERR_SHAPE, "line 2",
                 "convtranspose2d", "groups=2", "in_channels (4)", "out_channels (3)")
PARSE_ERROR_TEST(test_parse_convtranspose2d_without_kernel_size, "input 1 4 4\nconvtranspose2d out_channels=2\n",
                 CNN_ERR_PARSE, "line 2", "convtranspose2d", "kernel_size")
PARSE_ERROR_TEST(test_parse_convtranspose2d_padding_same,
                 "input 1 4 4\nconvtranspose2d out_channels=2 kernel_size=3 padding=same\n", CNN_ERR_PARSE, "line 2",
                 "convtranspose2d", "padding=same")
/* (2 − 1)·1 − 2·3 + 2 + 1 = −2: PyTorch's "Output size is too small" */
PARSE_ERROR_TEST(test_parse_convtranspose2d_output_too_small,
                 "input 1 2 2\nconvtranspose2d out_channels=2 kernel_size=3 padding=3\n", CNN_ERR_SHAPE, "line 2",
                 "convtranspose2d", "1x2x2", "-2x-2", "too small")
/* (1024 − 1)·2^20 + 1 rows: over 2^28, rejected before any int overflows */
PARSE_ERROR_TEST(test_parse_convtranspose2d_output_too_large,
                 "input 1 1024 1\nconvtranspose2d out_channels=1 kernel_size=1 stride=1048576\n", CNN_ERR_SHAPE,
                 "line 2", "convtranspose2d", "1x1024x1", "too large")
PARSE_ERROR_TEST(test_parse_convtranspose2d_after_flatten,
                 "input 1 4 4\nflatten\nconvtranspose2d out_channels=2 kernel_size=1\n", CNN_ERR_SHAPE, "line 3",
                 "convtranspose2d", "[16]", "flat")
/* Each pooling halves the input until the next kernel no longer fits: the output would be empty. */
PARSE_ERROR_TEST(test_parse_shape_no_longer_fits_after_pooling,
                 "input 1 8 8\nmaxpool2d kernel_size=2\nmaxpool2d kernel_size=2\nmaxpool2d kernel_size=2\n"
                 "maxpool2d kernel_size=2\n",
                 CNN_ERR_SHAPE, "line 5", "maxpool2d", "1x1x1", "2x2")
PARSE_ERROR_TEST(test_parse_output_would_be_empty_conv2d,
                 "input 1 8 8\nconv2d out_channels=6 kernel_size=5\nmaxpool2d kernel_size=2\n"
                 "conv2d out_channels=16 kernel_size=5\n",
                 CNN_ERR_SHAPE, "line 4", "conv2d", "6x2x2", "5x5")

/* ---- huge values: rejected cleanly, without overflow and without allocating gigabytes ---- */
PARSE_ERROR_TEST(test_parse_conv2d_kernel_size_1048576, "input 1 28 28\nconv2d out_channels=6 kernel_size=1048576\n",
                 CNN_ERR_SHAPE, "line 2", "conv2d", "1x28x28", "1048576x1048576")
PARSE_ERROR_TEST(test_parse_maxpool2d_kernel_size_1048576, "input 1 28 28\nmaxpool2d kernel_size=1048576\n",
                 CNN_ERR_SHAPE, "line 2", "maxpool2d", "1x28x28", "1048576x1048576")
/* weight [1048576, 2, 16, 16]: 2^29 elements. */
PARSE_ERROR_TEST(test_parse_conv2d_huge_out_channels, "input 2 16 16\nconv2d out_channels=1048576 kernel_size=16\n",
                 CNN_ERR_SHAPE, "line 2", "conv2d", "[1048576, 2, 16, 16]", "too large")
/* weight [1048576, 1024]: 2^30 elements. */
PARSE_ERROR_TEST(test_parse_linear_huge_out_features, "input 1 32 32\nflatten\nlinear out_features=1048576\n",
                 CNN_ERR_SHAPE, "line 3", "linear", "[1048576, 1024]", "too large")
/* The conv2d output is 2^28 elements (the limit, allowed); the linear weight after it is 2^29. */
PARSE_ERROR_TEST(test_parse_huge_conv2d_then_linear,
                 "input 1 16 16\nconv2d out_channels=1048576 kernel_size=1\nflatten\nlinear out_features=2\n",
                 CNN_ERR_SHAPE, "line 4", "linear", "[2, 268435456]", "too large")
PARSE_ERROR_TEST(test_parse_conv2d_output_too_large,
                 "input 1 16 16\nconv2d out_channels=1048576 kernel_size=1 padding=1\n", CNN_ERR_SHAPE, "line 2",
                 "conv2d", "1048576x18x18", "too large")
/* weight [2^20, 2^20, 2^20, 2^20] = 2^80 elements: the product must not overflow int64 (and wrap to
 * 0, which would let the model through). The output, 2^20 x 2 x 2, is small. */
PARSE_ERROR_TEST(test_parse_conv2d_parameter_count_overflows_int64,
                 "input 1048576 1 1\nconv2d out_channels=1048576 kernel_size=1048576 padding=524288 "
                 "stride=1048576\n",
                 CNN_ERR_SHAPE, "line 2", "conv2d", "[1048576, 1048576, 1048576, 1048576]", "too large")
/* The dilated kernel is 1048576 * 4095 + 1 = 4293918721 wide: more than an int holds. */
PARSE_ERROR_TEST(test_parse_conv2d_huge_dilation,
                 "input 1 4 4\nconv2d out_channels=1 kernel_size=4096 dilation=1048576\n", CNN_ERR_SHAPE, "line 2",
                 "conv2d", "1x4x4", "4293918721x4293918721")

/* 40 linear layers of 16384 x 16384: each weight is 2^28 elements (the per-parameter limit, allowed),
 * but together they are 10.7e9 parameters, 43 GB for the values and 43 GB for the gradients. The
 * model must be rejected as too large, not left to fail in calloc (CNN_ERR_NOMEM, exit status 1)
 * or to abort under AddressSanitizer ("allocator is out of memory"). */
static char *forty_linears(void) {
    static char text[2048];
    strcpy(text, "input 16384 1 1\nflatten\n");
    for (int i = 0; i < 40; i++) strcat(text, "linear out_features=16384\n");
    return text;
}

static void test_parse_total_parameters_too_large(void **state) {
    (void)state;
    expect_parse_error(forty_linears(), CNN_ERR_SHAPE, (const char *const[]){"line ", "linear", "too large", NULL});
}

/* ---- lexical oddities ---- */
static void test_parse_too_many_options(void **state) {
    (void)state;
    char text[2048] = "input 1 8 8\nrelu";
    for (int i = 0; i < 70; i++) strcat(text, " a=1");
    strcat(text, "\n");
    expect_parse_error(text, CNN_ERR_PARSE, (const char *const[]){"line 2", NULL});
}

static void test_parse_very_long_layer_name(void **state) {
    (void)state;
    enum { n = 100000 };
    static char text[n + 32];
    strcpy(text, "input 1 8 8\n");
    size_t at = strlen(text);
    memset(text + at, 'x', n);
    strcpy(text + at + n, "\n");
    expect_parse_error(text, CNN_ERR_PARSE, (const char *const[]){"line 2", "unknown layer", NULL});
}

static void test_parse_very_long_option_value(void **state) {
    (void)state;
    enum { n = 100000 };
    static char text[n + 64];
    strcpy(text, "input 1 8 8\nconv2d out_channels=2 kernel_size=");
    size_t at = strlen(text);
    memset(text + at, '7', n);
    strcpy(text + at + n, "\n");
    expect_parse_error(text, CNN_ERR_PARSE, (const char *const[]){"line 2", "conv2d", "kernel_size=777", NULL});
}

/* cnn_net_load puts the path in front of the message. */
static void test_load_model_message_names_file(void **state) {
    (void)state;
    char p[PATH_LEN];
    tmp_path(p, "lib_bad.cnn");
    write_text(p, "input 1 8 8\nconv2d out_channels=2 kernel_size=3\nrelux\n");
    cnn_net *net = (cnn_net *)p;
    assert_int_equal(cnn_net_load(p, &net), CNN_ERR_PARSE);
    assert_null(net);
    assert_contains_all("error message", cnn_last_error(), (const char *const[]){p, "line 3", "relux", NULL});
}

static void test_load_model_missing_file(void **state) {
    (void)state;
    char p[PATH_LEN];
    tmp_path(p, "no_such_model.cnn");
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_load(p, &net), CNN_ERR_IO);
    assert_null(net);
    assert_contains_all("error message", cnn_last_error(), (const char *const[]){p, NULL});
}

static void test_load_model_with_nul_byte(void **state) {
    (void)state;
    char p[PATH_LEN];
    tmp_path(p, "lib_nul.cnn");
    tu_write_bytes(p, "input 1 8 8\nre\0lu\n", 18);
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_load(p, &net), CNN_ERR_PARSE);
    assert_null(net);
    assert_contains_all("error message", cnn_last_error(), (const char *const[]){p, "NUL", NULL});
}

/* ---------------------------------------------------------------------------------------------
 * Library level: cnn_net_load_weights
 * ------------------------------------------------------------------------------------------- */

/* Parses MODEL, saves `t` to a file, loads it and returns the status of cnn_net_load_weights. */
static cnn_status load_weights_from(const char *file, const cnn_tensor *t, int n, int allow_missing,
                                    cnn_net **net_out) {
    char p[PATH_LEN];
    tmp_path(p, file);
    save(p, t, n);
    cnn_st *st = NULL;
    if (cnn_st_load(p, &st) != CNN_OK) fail_msg("cnn_st_load(%s): %.500s", p, cnn_last_error());
    cnn_net *net = NULL;
    if (cnn_net_parse(MODEL, &net) != CNN_OK) fail_msg("cnn_net_parse: %.500s", cnn_last_error());
    cnn_status s = cnn_net_load_weights(net, st, allow_missing);
    cnn_st_free(st);
    if (net_out) *net_out = net;
    else cnn_net_free(net);
    return s;
}

static void expect_weights_error(const char *file, const cnn_tensor *t, int n, cnn_status status,
                                 const char *const *subs) {
    cnn_status s = load_weights_from(file, t, n, 0, NULL);
    if (s != status)
        fail_msg("cnn_net_load_weights: status %s (\"%.500s\"), expected %s", cnn_status_name(s), cnn_last_error(),
                 cnn_status_name(status));
    assert_contains_all("error message", cnn_last_error(), subs);
}

static void test_weights_good(void **state) {
    (void)state;
    cnn_tensor t[4];
    std_params(t);
    cnn_net *net = NULL;
    assert_int_equal(load_weights_from("lib_good.safetensors", t, 4, 0, &net), CNN_OK);
    cnn_param p = cnn_net_param_by_name(net, "3.weight");
    assert_non_null(p.data);
    assert_memory_equal(p.data, W3, sizeof W3);
    cnn_net_free(net);
}

static void test_weights_missing_tensor(void **state) {
    (void)state;
    cnn_tensor t[4];
    std_params(t);
    t[2] = t[3]; /* no 3.weight */
    expect_weights_error("lib_missing.safetensors", t, 3, CNN_ERR_MISSING,
                         (const char *const[]){"'3.weight'", "[3, 8]", "linear", "missing", NULL});
}

static void test_weights_missing_tensor_allowed(void **state) {
    (void)state;
    cnn_tensor t[4];
    std_params(t);
    t[2] = t[3]; /* no 3.weight */
    cnn_net *net = NULL;
    assert_int_equal(load_weights_from("lib_allow_missing.safetensors", t, 3, 1, &net), CNN_OK);
    cnn_param p = cnn_net_param_by_name(net, "0.weight");
    assert_memory_equal(p.data, W0, sizeof W0);
    cnn_net_free(net);
}

static void test_weights_wrong_shape(void **state) {
    (void)state;
    float w[24] = {0};
    cnn_tensor t[4];
    std_params(t);
    t[2] = F32T("3.weight", w, 8, 3);
    expect_weights_error("lib_shape.safetensors", t, 4, CNN_ERR_SHAPE,
                         (const char *const[]){"'3.weight'", "[8, 3]", "[3, 8]", "linear", "line 6", NULL});
}

static void test_weights_wrong_rank(void **state) {
    (void)state;
    cnn_tensor t[4];
    std_params(t);
    t[1] = F32T("0.bias", B0, 1, 2);
    expect_weights_error("lib_rank.safetensors", t, 4, CNN_ERR_SHAPE,
                         (const char *const[]){"'0.bias'", "[1, 2]", "[2]", "conv2d", "line 3", NULL});
}

static void test_weights_wrong_dtype_i64(void **state) {
    (void)state;
    int64_t b[2] = {1, 2};
    cnn_tensor t[4];
    std_params(t);
    t[1] = typed("0.bias", CNN_I64, 1, SHAPE(2), b);
    expect_weights_error("lib_i64.safetensors", t, 4, CNN_ERR_DTYPE, (const char *const[]){"'0.bias'", "I64", NULL});
}

static void test_weights_nan(void **state) {
    (void)state;
    float w[18];
    memcpy(w, W0, sizeof w);
    w[4] = NAN;
    cnn_tensor t[4];
    std_params(t);
    t[0] = F32T("0.weight", w, 2, 1, 3, 3);
    expect_weights_error("lib_nan.safetensors", t, 4, CNN_ERR_NONFINITE,
                         (const char *const[]){"'0.weight'", "NaN", "element 4", NULL});
}

static void test_weights_inf_f64(void **state) {
    (void)state;
    double b[3] = {0.0, -INFINITY, 1.0};
    cnn_tensor t[4];
    std_params(t);
    t[3] = typed("3.bias", CNN_F64, 1, SHAPE(3), b);
    expect_weights_error("lib_inf.safetensors", t, 4, CNN_ERR_NONFINITE,
                         (const char *const[]){"'3.bias'", "Inf", "element 1", NULL});
}

static void test_weights_parameter_not_in_model(void **state) {
    (void)state;
    float w[4] = {0};
    cnn_tensor t[5];
    std_params(t);
    t[4] = F32T("7.weight", w, 4);
    expect_weights_error("lib_extra.safetensors", t, 5, CNN_ERR_SHAPE, (const char *const[]){"'7.weight'", NULL});
}

/* ---------------------------------------------------------------------------------------------
 * CLI level
 * ------------------------------------------------------------------------------------------- */

static void cli_free(cli_result *r) { r->out = r->err = NULL; }

/* The CLI runs through tests/clirun.h, its output files in tmpdir. */
#define CLI(r, ...) cli_run((r), tmpdir, (const char *const[]){__VA_ARGS__, NULL})

/* The command ran to its end (no signal) with exit status `code`, and stderr says every `subs`. */
static void expect_exit(const cli_result *r, int code, const char *const *subs) { cli_expect(r, code, subs); }

#define EXPECT_BAD_INPUT(r, ...) expect_exit((r), 2, (const char *const[]){__VA_ARGS__, NULL})

/* A fresh output path for a test: tmpdir/NAME.out.safetensors, removed if it is there. */
static char *out_path_for(char *buf, const char *name) {
    char file[256];
    snprintf(file, sizeof file, "%s.out.safetensors", name);
    tmp_path(buf, file);
    unlink(buf);
    return buf;
}

/* A failed grad must leave no output file behind, not even PATH.tmp. */
static void assert_no_output(const char *out) {
    char tmp[PATH_LEN + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    if (file_exists(out)) fail_msg("a failed command left %s", out);
    if (file_exists(tmp)) fail_msg("a failed command left %s", tmp);
}

/* cnn grad --model MODEL --weights WEIGHTS --input INPUT --out OUT [extra...], which must exit 2
 * with every `subs` in stderr and write nothing. `name` makes OUT. */
static void grad_expect_bad(const char *name, const char *model, const char *weights, const char *input,
                            const char *loss, const char *const *subs) {
    char out[PATH_LEN];
    out_path_for(out, name);
    cli_result r;
    if (loss)
        CLI(&r, "grad", "--model", model, "--weights", weights, "--input", input, "--out", out, "--loss", loss);
    else
        CLI(&r, "grad", "--model", model, "--weights", weights, "--input", input, "--out", out);
    expect_exit(&r, 2, subs);
    if (strncmp(r.err, "cnn grad: ", 10) != 0) fail_msg("stderr does not start with 'cnn grad: ': %.500s", r.err);
    assert_no_output(out);
    cli_free(&r);
}

#define GRAD_BAD(name, model, weights, input, loss, ...)                                            \
    grad_expect_bad((name), (model), (weights), (input), (loss), (const char *const[]){__VA_ARGS__, NULL})

/* Writes a crafted safetensors file: header_len (or, if 0, the JSON's length) as 8 LE bytes,
 * the JSON, then data_len bytes of data. */
static void write_crafted(const char *path, uint64_t header_len, const char *json, const void *data,
                          size_t data_len) {
    size_t j = strlen(json);
    unsigned char *buf = malloc(8 + j + data_len);
    assert_non_null(buf);
    if (!header_len) header_len = j;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(header_len >> (8 * i));
    memcpy(buf + 8, json, j);
    if (data_len) memcpy(buf + 8 + j, data, data_len);
    tu_write_bytes(path, buf, 8 + j + data_len);
    free(buf);
}

/* The header of the standard parameters, with 3 slots to vary: the dtype of 0.bias, the shape of
 * 3.weight and the data_offsets of 3.bias. */
static char *std_json(char *buf, size_t cap, const char *bias0_dtype, const char *w3_shape, const char *b3_offsets) {
    snprintf(buf, cap,
             "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[0,72]},"
             "\"0.bias\":{\"dtype\":\"%s\",\"shape\":[2],\"data_offsets\":[72,80]},"
             "\"3.weight\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[80,176]},"
             "\"3.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":%s}}",
             bias0_dtype, w3_shape, b3_offsets);
    return buf;
}

static const char *crafted(char *path, const char *name, uint64_t header_len, const char *json, size_t data_len) {
    tmp_path(path, name);
    write_crafted(path, header_len, json, DATA, data_len);
    return path;
}

/* ---- success cases: the harness works ---- */

/* Checks that `st` holds an F32 tensor `name` of the given shape, and returns it. */
static const cnn_tensor *expect_tensor(const cnn_st *st, const char *name, int ndim, const int64_t *shape) {
    const cnn_tensor *t = NULL;
    if (cnn_st_require(st, "out", name, CNN_F32, ndim, shape, &t) != CNN_OK) fail_msg("%.500s", cnn_last_error());
    return t;
}

static void test_cli_grad_success(void **state) {
    (void)state;
    char out[PATH_LEN];
    out_path_for(out, "grad_success");
    cli_result r;
    CLI(&r, "grad", "--model", model_path, "--weights", weights_path, "--input", in_go_path, "--out", out);
    expect_exit(&r, 0, NULL);
    cli_free(&r);

    cnn_st *st = NULL;
    if (cnn_st_load(out, &st) != CNN_OK) fail_msg("%.500s", cnn_last_error());
    assert_int_equal(cnn_st_count(st), 6);
    const cnn_tensor *y = expect_tensor(st, "output", 2, SHAPE(BATCH, 3));
    const cnn_tensor *dx = expect_tensor(st, "grad_input", 4, SHAPE(BATCH, 1, 4, 4));
    expect_tensor(st, "0.weight.grad", 4, SHAPE(2, 1, 3, 3));
    expect_tensor(st, "0.bias.grad", 1, SHAPE(2));
    expect_tensor(st, "3.weight.grad", 2, SHAPE(3, 8));
    expect_tensor(st, "3.bias.grad", 1, SHAPE(3));
    assert_null(cnn_st_find(st, "loss"));

    /* The same numbers as the library gives in this process. */
    cnn_net *net = NULL;
    cnn_st *w = NULL;
    assert_int_equal(cnn_net_parse(MODEL, &net), CNN_OK);
    assert_int_equal(cnn_st_load(weights_path, &w), CNN_OK);
    assert_int_equal(cnn_net_load_weights(net, w, 0), CNN_OK);
    assert_int_equal(cnn_net_reserve(net, BATCH), CNN_OK);
    cnn_net_zero_grad(net);
    assert_int_equal(cnn_net_forward(net, X, BATCH), CNN_OK);
    const float *yy = cnn_net_output(net);
    for (int i = 0; i < BATCH * 3; i++)
        if (!(fabsf(yy[i] - ((const float *)y->data)[i]) <= 1e-5f))
            fail_msg("output[%d] = %g from the CLI, %g from the library", i, ((const float *)y->data)[i], yy[i]);
    assert_int_equal(cnn_net_backward(net, GO), CNN_OK);
    const float *gx = cnn_net_grad_input(net);
    for (int i = 0; i < BATCH * 16; i++)
        if (!(fabsf(gx[i] - ((const float *)dx->data)[i]) <= 1e-5f))
            fail_msg("grad_input[%d] = %g from the CLI, %g from the library", i, ((const float *)dx->data)[i],
                     gx[i]);
    cnn_net_free(net);
    cnn_st_free(w);
    cnn_st_free(st);
}

static void test_cli_grad_cross_entropy_success(void **state) {
    (void)state;
    char out[PATH_LEN];
    out_path_for(out, "grad_ce_success");
    cli_result r;
    CLI(&r, "grad", "--model", model_path, "--init", "3", "--input", in_ce_path, "--out", out, "--loss",
        "cross_entropy");
    expect_exit(&r, 0, NULL);
    cli_free(&r);
    cnn_st *st = NULL;
    if (cnn_st_load(out, &st) != CNN_OK) fail_msg("%.500s", cnn_last_error());
    assert_int_equal(cnn_st_count(st), 7);
    expect_tensor(st, "output", 2, SHAPE(BATCH, 3));
    expect_tensor(st, "grad_input", 4, SHAPE(BATCH, 1, 4, 4));
    expect_tensor(st, "0.weight.grad", 4, SHAPE(2, 1, 3, 3));
    expect_tensor(st, "0.bias.grad", 1, SHAPE(2));
    expect_tensor(st, "3.weight.grad", 2, SHAPE(3, 8));
    expect_tensor(st, "3.bias.grad", 1, SHAPE(3));
    const cnn_tensor *loss = expect_tensor(st, "loss", 0, NULL);
    const float l = *(const float *)loss->data;
    if (!(isfinite(l) && l > 0.0f)) fail_msg("loss = %g", l);
    cnn_st_free(st);
}

/* A crafted weights file with nothing wrong: the crafting itself is right. */
static void test_cli_grad_crafted_weights_success(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN], out[PATH_LEN];
    crafted(w, "crafted_good.safetensors", 0, std_json(json, sizeof json, "F32", "[3,8]", "[176,188]"), 188);
    out_path_for(out, "crafted_good");
    cli_result r;
    CLI(&r, "grad", "--model", model_path, "--weights", w, "--input", in_go_path, "--out", out);
    expect_exit(&r, 0, NULL);
    assert_true(file_exists(out));
    cli_free(&r);
}

static void test_cli_gradcheck_success(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "gradcheck", "--model", model_path, "--weights", weights_path, "--seed", "7");
    expect_exit(&r, 0, NULL);
    if (!strstr(r.out, "passed")) fail_msg("stdout does not say passed:\n%.800s", r.out);
    cli_free(&r);
}

/* ---- grad: the model ---- */

static void test_cli_grad_model_unknown_layer(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "unknown_layer.cnn");
    write_text(m, "input 1 4 4\nconv2d out_channels=2 kernel_size=3\nrelux\nflatten\nlinear out_features=3\n");
    GRAD_BAD("model_unknown_layer", m, weights_path, in_go_path, NULL, m, "line 3", "unknown layer 'relux'");
}

static void test_cli_grad_model_unknown_option(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "unknown_option.cnn");
    write_text(m, "input 1 4 4\nconv2d out_channels=2 kernal_size=3\nrelu\nflatten\nlinear out_features=3\n");
    GRAD_BAD("model_unknown_option", m, weights_path, in_go_path, NULL, m, "line 2", "conv2d", "'kernal_size'");
}

static void test_cli_grad_model_shape_does_not_fit(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "no_fit.cnn");
    write_text(m, "input 1 4 4\nconv2d out_channels=2 kernel_size=3\nmaxpool2d kernel_size=3\nflatten\n"
                  "linear out_features=3\n");
    GRAD_BAD("model_no_fit", m, weights_path, in_go_path, NULL, m, "line 3", "maxpool2d", "2x2x2", "3x3");
}

static void test_cli_grad_missing_model_file(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "no_such_model.cnn");
    GRAD_BAD("missing_model", m, weights_path, in_go_path, NULL, m, "cannot open");
}

static void test_cli_grad_model_is_a_directory(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "model_dir.cnn");
    mkdir(m, 0700);
    GRAD_BAD("model_dir", m, weights_path, in_go_path, NULL, m, "is a directory, not a regular file");
}

static void test_cli_grad_model_with_nul_byte(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "nul.cnn");
    tu_write_bytes(m, "input 1 4 4\nre\0lu\n", 18);
    GRAD_BAD("model_nul", m, weights_path, in_go_path, NULL, m, "NUL");
}

static void test_cli_grad_empty_model(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "empty.cnn");
    write_text(m, "");
    GRAD_BAD("model_empty", m, weights_path, in_go_path, NULL, m, "input C H W");
}

/* ---- grad: malformed weights files ---- */

static void test_cli_grad_weights_truncated(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    /* The data stops after 100 of its 188 bytes: 3.weight [80, 176] is the first to reach past it. */
    crafted(w, "w_truncated.safetensors", 0, std_json(json, sizeof json, "F32", "[3,8]", "[176,188]"), 100);
    GRAD_BAD("w_truncated", model_path, w, in_go_path, NULL, w, "'3.weight'", "truncated");
}

static void test_cli_grad_weights_cut_inside_header(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    std_json(json, sizeof json, "F32", "[3,8]", "[176,188]");
    const uint64_t full = strlen(json);
    json[40] = '\0'; /* the file ends in the middle of its header */
    crafted(w, "w_cut_header.safetensors", full, json, 0);
    GRAD_BAD("w_cut_header", model_path, w, in_go_path, NULL, w, "header length");
}

static void test_cli_grad_weights_shorter_than_8_bytes(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "w_5_bytes.safetensors");
    tu_write_bytes(w, "\x10\0\0\0\0", 5);
    GRAD_BAD("w_5_bytes", model_path, w, in_go_path, NULL, w, "5 bytes", "fewer than the 8");
}

static void test_cli_grad_weights_offsets_past_end(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    crafted(w, "w_past_end.safetensors", 0, std_json(json, sizeof json, "F32", "[3,8]", "[188,200]"), 188);
    GRAD_BAD("w_past_end", model_path, w, in_go_path, NULL, w, "'3.bias'", "[188, 200]", "past the end");
}

static void test_cli_grad_weights_header_length_past_file(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    std_json(json, sizeof json, "F32", "[3,8]", "[176,188]");
    crafted(w, "w_header_len.safetensors", strlen(json) + 1000, json, 188);
    GRAD_BAD("w_header_len", model_path, w, in_go_path, NULL, w, "header length");
}

static void test_cli_grad_weights_header_length_huge(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    std_json(json, sizeof json, "F32", "[3,8]", "[176,188]");
    crafted(w, "w_header_huge.safetensors", UINT64_MAX, json, 188);
    GRAD_BAD("w_header_huge", model_path, w, in_go_path, NULL, w, "header length");
}

static void test_cli_grad_weights_unknown_dtype(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    crafted(w, "w_dtype.safetensors", 0, std_json(json, sizeof json, "F99", "[3,8]", "[176,188]"), 188);
    GRAD_BAD("w_dtype", model_path, w, in_go_path, NULL, w, "'0.bias'", "F99");
}

static void test_cli_grad_weights_shape_disagrees_with_size(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    crafted(w, "w_size.safetensors", 0, std_json(json, sizeof json, "F32", "[3,9]", "[176,188]"), 188);
    GRAD_BAD("w_size", model_path, w, in_go_path, NULL, w, "'3.weight'", "[3, 9]", "96", "108");
}

static void test_cli_grad_weights_header_not_json(void **state) {
    (void)state;
    char w[PATH_LEN];
    crafted(w, "w_not_json.safetensors", 0, "{\"0.weight\": {\"dtype\": \"F32\", ", 0);
    GRAD_BAD("w_not_json", model_path, w, in_go_path, NULL, w, "not valid JSON");
}

static void test_cli_grad_weights_negative_shape(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    crafted(w, "w_negative.safetensors", 0, std_json(json, sizeof json, "F32", "[-3,-8]", "[176,188]"), 188);
    GRAD_BAD("w_negative", model_path, w, in_go_path, NULL, w, "'3.weight'", "shape entry 0");
}

static void test_cli_grad_missing_weights_file(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "no_such_weights.safetensors");
    GRAD_BAD("missing_weights", model_path, w, in_go_path, NULL, w, "cannot open");
}

/* ---- grad: weights that do not fit the model ---- */

static void test_cli_grad_weights_missing_parameter(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "w_missing_param.safetensors");
    cnn_tensor t[4];
    std_params(t);
    t[2] = t[3];
    save(w, t, 3);
    GRAD_BAD("w_missing_param", model_path, w, in_go_path, NULL, w, "'3.weight'", "[3, 8]", "missing");
}

static void test_cli_grad_weights_wrong_shape(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "w_wrong_shape.safetensors");
    float w0[2 * 1 * 2 * 2] = {0};
    cnn_tensor t[4];
    std_params(t);
    t[0] = F32T("0.weight", w0, 2, 1, 2, 2);
    save(w, t, 4);
    GRAD_BAD("w_wrong_shape", model_path, w, in_go_path, NULL, w, "'0.weight'", "[2, 1, 2, 2]", "[2, 1, 3, 3]",
             "line 3");
}

static void test_cli_grad_weights_wrong_dtype(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "w_i64.safetensors");
    int64_t b[3] = {0, 1, 2};
    cnn_tensor t[4];
    std_params(t);
    t[3] = typed("3.bias", CNN_I64, 1, SHAPE(3), b);
    save(w, t, 4);
    GRAD_BAD("w_i64", model_path, w, in_go_path, NULL, w, "'3.bias'", "I64");
}

static void test_cli_grad_weights_nan(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "w_nan.safetensors");
    float w3[24];
    memcpy(w3, W3, sizeof w3);
    w3[17] = NAN;
    cnn_tensor t[4];
    std_params(t);
    t[2] = F32T("3.weight", w3, 3, 8);
    save(w, t, 4);
    GRAD_BAD("w_nan", model_path, w, in_go_path, NULL, w, "'3.weight'", "NaN", "17");
}

static void test_cli_grad_weights_extra_parameter(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "w_extra.safetensors");
    float e[3] = {0};
    cnn_tensor t[5];
    std_params(t);
    t[4] = F32T("1.weight", e, 3); /* layer 1 is relu: no parameters */
    save(w, t, 5);
    GRAD_BAD("w_extra", model_path, w, in_go_path, NULL, w, "'1.weight'");
}

/* With --init, a parameter missing from the weights is drawn instead: not an error. */
static void test_cli_grad_weights_missing_parameter_with_init(void **state) {
    (void)state;
    char w[PATH_LEN], out[PATH_LEN];
    tmp_path(w, "w_missing_init.safetensors");
    cnn_tensor t[4];
    std_params(t);
    t[2] = t[3];
    save(w, t, 3);
    out_path_for(out, "w_missing_init");
    cli_result r;
    CLI(&r, "grad", "--model", model_path, "--weights", w, "--init", "5", "--input", in_go_path, "--out", out);
    expect_exit(&r, 0, NULL);
    assert_true(file_exists(out));
    cli_free(&r);
}

/* ---- grad: the input file ---- */

static void test_cli_grad_missing_input_file(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "no_such_input.safetensors");
    GRAD_BAD("missing_input_file", model_path, weights_path, in, NULL, in, "cannot open");
}

static void test_cli_grad_input_file_truncated(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "in_truncated.safetensors");
    static char bytes[4096];
    struct stat sb;
    assert_int_equal(stat(in_go_path, &sb), 0);
    assert_true(sb.st_size > 9 && (size_t)sb.st_size < sizeof bytes);
    read_into(in_go_path, bytes, sizeof bytes); /* binary, but every byte is read */
    tu_write_bytes(in, bytes, (size_t)sb.st_size - 9);
    GRAD_BAD("in_truncated", model_path, weights_path, in, NULL, in, "truncated");
}

static void test_cli_grad_input_missing_input_tensor(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "in_no_input.safetensors");
    cnn_tensor t[1] = {F32T("grad_output", GO, BATCH, 3)};
    save(in, t, 1);
    GRAD_BAD("in_no_input", model_path, weights_path, in, NULL, in, "'input'", "missing", "[?, 1, 4, 4]");
}

static void test_cli_grad_input_wrong_shape(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "in_wrong_shape.safetensors");
    float x[2 * 1 * 5 * 5] = {0};
    cnn_tensor t[2] = {F32T("input", x, 2, 1, 5, 5), F32T("grad_output", GO, BATCH, 3)};
    save(in, t, 2);
    GRAD_BAD("in_wrong_shape", model_path, weights_path, in, NULL, in, "'input'", "[2, 1, 5, 5]", "[?, 1, 4, 4]");
}

static void test_cli_grad_input_wrong_rank(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "in_wrong_rank.safetensors");
    cnn_tensor t[2] = {F32T("input", X, BATCH, 16), F32T("grad_output", GO, BATCH, 3)};
    save(in, t, 2);
    GRAD_BAD("in_wrong_rank", model_path, weights_path, in, NULL, in, "'input'", "[2, 16]", "[?, 1, 4, 4]");
}

static void test_cli_grad_input_wrong_dtype(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "in_f64.safetensors");
    double x[BATCH * 16] = {0};
    cnn_tensor t[2] = {typed("input", CNN_F64, 4, SHAPE(BATCH, 1, 4, 4), x), F32T("grad_output", GO, BATCH, 3)};
    save(in, t, 2);
    GRAD_BAD("in_f64", model_path, weights_path, in, NULL, in, "'input'", "F64", "F32");
}

static void test_cli_grad_input_batch_zero(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "in_batch0.safetensors");
    cnn_tensor t[2] = {F32T("input", X, 0, 1, 4, 4), F32T("grad_output", GO, 0, 3)};
    save(in, t, 2);
    GRAD_BAD("in_batch0", model_path, weights_path, in, NULL, in, "'input'", "batch size 0");
}

static void test_cli_grad_input_nan(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "in_nan.safetensors");
    float x[BATCH * 16];
    memcpy(x, X, sizeof x);
    x[21] = NAN;
    cnn_tensor t[2] = {F32T("input", x, BATCH, 1, 4, 4), F32T("grad_output", GO, BATCH, 3)};
    save(in, t, 2);
    GRAD_BAD("in_nan", model_path, weights_path, in, NULL, in, "'input'", "NaN", "21");
}

static void test_cli_grad_input_inf(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "in_inf.safetensors");
    float x[BATCH * 16];
    memcpy(x, X, sizeof x);
    x[0] = -INFINITY;
    cnn_tensor t[2] = {F32T("input", x, BATCH, 1, 4, 4), F32T("grad_output", GO, BATCH, 3)};
    save(in, t, 2);
    GRAD_BAD("in_inf", model_path, weights_path, in, NULL, in, "'input'", "Inf");
}

/* ---- grad: grad_output and targets ---- */

static void test_cli_grad_grad_output_missing(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "go_missing.safetensors");
    cnn_tensor t[1] = {F32T("input", X, BATCH, 1, 4, 4)};
    save(in, t, 1);
    GRAD_BAD("go_missing", model_path, weights_path, in, NULL, in, "'grad_output'", "missing", "[2, 3]");
}

static void test_cli_grad_grad_output_wrong_shape(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "go_wrong_shape.safetensors");
    float go[BATCH * 4] = {0};
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), F32T("grad_output", go, BATCH, 4)};
    save(in, t, 2);
    GRAD_BAD("go_wrong_shape", model_path, weights_path, in, NULL, in, "'grad_output'", "[2, 4]", "[2, 3]");
}

static void test_cli_grad_grad_output_wrong_batch(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "go_wrong_batch.safetensors");
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), F32T("grad_output", GO, 1, 3)};
    save(in, t, 2);
    GRAD_BAD("go_wrong_batch", model_path, weights_path, in, NULL, in, "'grad_output'", "[1, 3]", "[2, 3]");
}

static void test_cli_grad_grad_output_4d_wrong_shape(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "go_4d_wrong.safetensors");
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), F32T("grad_output", GO_4D, BATCH, 8)};
    save(in, t, 2);
    /* The model's output is [2, 2, 2, 2]: a flat grad_output does not fit it. */
    char w[PATH_LEN];
    tmp_path(w, "w_4d.safetensors");
    cnn_tensor p[4];
    std_params(p);
    save(w, p, 2); /* 0.weight and 0.bias */
    GRAD_BAD("go_4d_wrong", model_4d_path, w, in, NULL, in, "'grad_output'", "[2, 8]", "[2, 2, 2, 2]");
}

static void test_cli_grad_grad_output_nan(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "go_nan.safetensors");
    float go[BATCH * 3];
    memcpy(go, GO, sizeof go);
    go[5] = NAN;
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), F32T("grad_output", go, BATCH, 3)};
    save(in, t, 2);
    GRAD_BAD("go_nan", model_path, weights_path, in, NULL, in, "'grad_output'", "NaN", "5");
}

static void test_cli_grad_cross_entropy_target_out_of_range(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "ce_range.safetensors");
    int64_t target[BATCH] = {1, 3};
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), typed("target", CNN_I64, 1, SHAPE(BATCH), target)};
    save(in, t, 2);
    GRAD_BAD("ce_range", model_path, weights_path, in, "cross_entropy", "target[1]", "3", "0..2");
}

static void test_cli_grad_cross_entropy_int32_target_out_of_range(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "ce_i32_range.safetensors");
    int32_t target[BATCH] = {2, 2147483647};
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), typed("target", CNN_I32, 1, SHAPE(BATCH), target)};
    save(in, t, 2);
    GRAD_BAD("ce_i32_range", model_path, weights_path, in, "cross_entropy", "target[1]", "2147483647", "0..2");
}

static void test_cli_grad_cross_entropy_target_negative(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "ce_negative.safetensors");
    int64_t target[BATCH] = {-1, 0};
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), typed("target", CNN_I64, 1, SHAPE(BATCH), target)};
    save(in, t, 2);
    GRAD_BAD("ce_negative", model_path, weights_path, in, "cross_entropy", "target[0]", "-1");
}

static void test_cli_grad_cross_entropy_target_huge(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "ce_huge.safetensors");
    int64_t target[BATCH] = {0, INT64_MIN};
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), typed("target", CNN_I64, 1, SHAPE(BATCH), target)};
    save(in, t, 2);
    GRAD_BAD("ce_huge", model_path, weights_path, in, "cross_entropy", "target[1]");
}

static void test_cli_grad_cross_entropy_target_wrong_dtype(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "ce_f32.safetensors");
    float target[BATCH] = {0, 1};
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), F32T("target", target, BATCH)};
    save(in, t, 2);
    GRAD_BAD("ce_f32", model_path, weights_path, in, "cross_entropy", in, "'target'", "F32", "I64");
}

static void test_cli_grad_cross_entropy_target_wrong_shape(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "ce_shape.safetensors");
    int64_t target[3] = {0, 1, 2};
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), typed("target", CNN_I64, 1, SHAPE(3), target)};
    save(in, t, 2);
    GRAD_BAD("ce_shape", model_path, weights_path, in, "cross_entropy", in, "'target'", "[3]", "[2]");
}

static void test_cli_grad_cross_entropy_target_missing(void **state) {
    (void)state;
    /* in_go has input and grad_output, but no target. */
    GRAD_BAD("ce_missing", model_path, weights_path, in_go_path, "cross_entropy", in_go_path, "'target'", "missing");
}

static void test_cli_grad_cross_entropy_on_non_flat_output(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "w_ce_4d.safetensors");
    cnn_tensor p[4];
    std_params(p);
    save(w, p, 2); /* 0.weight and 0.bias */
    GRAD_BAD("ce_4d", model_4d_path, w, in_ce_path, "cross_entropy", "cross_entropy", "[2, 2, 2, 2]");
}

static void test_cli_grad_mse_target_wrong_shape(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "mse_shape.safetensors");
    float target[BATCH * 2] = {0};
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), F32T("target", target, BATCH, 2)};
    save(in, t, 2);
    GRAD_BAD("mse_shape", model_path, weights_path, in, "mse", in, "'target'", "[2, 2]", "[2, 3]");
}

static void test_cli_grad_mse_target_nan(void **state) {
    (void)state;
    char in[PATH_LEN];
    tmp_path(in, "mse_nan.safetensors");
    float target[BATCH * 3] = {0, 0, NAN, 0, 0, 0};
    cnn_tensor t[2] = {F32T("input", X, BATCH, 1, 4, 4), F32T("target", target, BATCH, 3)};
    save(in, t, 2);
    GRAD_BAD("mse_nan", model_path, weights_path, in, "mse", in, "'target'", "NaN");
}

/* ---- grad: the command line ---- */

static void test_cli_grad_loss_unknown(void **state) {
    (void)state;
    GRAD_BAD("loss_unknown", model_path, weights_path, in_ce_path, "hinge", "--loss", "hinge");
}

static void test_cli_grad_unknown_option(void **state) {
    (void)state;
    char out[PATH_LEN];
    out_path_for(out, "unknown_option");
    cli_result r;
    CLI(&r, "grad", "--model", model_path, "--weights", weights_path, "--input", in_go_path, "--out", out,
        "--bogus", "1");
    EXPECT_BAD_INPUT(&r, "cnn grad: ", "unknown option '--bogus'");
    assert_no_output(out);
    cli_free(&r);
}

static void test_cli_grad_missing_out_option(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "grad", "--model", model_path, "--weights", weights_path, "--input", in_go_path);
    EXPECT_BAD_INPUT(&r, "cnn grad: ", "--out");
    cli_free(&r);
}

static void test_cli_grad_missing_weights_and_init(void **state) {
    (void)state;
    char out[PATH_LEN];
    out_path_for(out, "no_weights_no_init");
    cli_result r;
    CLI(&r, "grad", "--model", model_path, "--input", in_go_path, "--out", out);
    EXPECT_BAD_INPUT(&r, "cnn grad: ", "--weights", "--init");
    assert_no_output(out);
    cli_free(&r);
}

static void test_cli_grad_no_options(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "grad");
    EXPECT_BAD_INPUT(&r, "cnn grad: ", "--model");
    cli_free(&r);
}

static void test_cli_grad_option_without_value(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "grad", "--init", "1", "--input", in_go_path, "--model");
    EXPECT_BAD_INPUT(&r, "cnn grad: ", "--model", "needs a value");
    cli_free(&r);
}

static void test_cli_grad_init_not_a_number(void **state) {
    (void)state;
    char out[PATH_LEN];
    out_path_for(out, "init_abc");
    cli_result r;
    CLI(&r, "grad", "--model", model_path, "--init", "abc", "--input", in_go_path, "--out", out);
    EXPECT_BAD_INPUT(&r, "cnn grad: ", "--init", "abc");
    assert_no_output(out);
    cli_free(&r);
}

static void test_cli_grad_init_negative(void **state) {
    (void)state;
    char out[PATH_LEN];
    out_path_for(out, "init_negative");
    cli_result r;
    CLI(&r, "grad", "--model", model_path, "--init", "-1", "--input", in_go_path, "--out", out);
    EXPECT_BAD_INPUT(&r, "cnn grad: ", "--init", "-1");
    assert_no_output(out);
    cli_free(&r);
}

static void test_cli_grad_out_unwritable(void **state) {
    (void)state;
    char out[PATH_LEN];
    tmp_path(out, "no_such_dir/out.safetensors");
    cli_result r;
    CLI(&r, "grad", "--model", model_path, "--weights", weights_path, "--input", in_go_path, "--out", out);
    EXPECT_BAD_INPUT(&r, "cnn grad: ", out, "does not exist");
    cli_free(&r);
}

/* ---- grad: huge models must fail cleanly, not crash or allocate without bound ---- */

/* conv2d with a 8192x8192 kernel over 1x1x1 padded by 8192: each parameter and the output
 * (8194x8194) are under the 2^28-element limit, but im2col needs 8192^2 x 8194^2 floats (18 PB).
 * Bad input: exit status 2 with a message naming the layer, not an out-of-memory exit or a
 * sanitizer's "allocation-size-too-big" report. */
static void test_cli_grad_conv2d_workspace_too_large(void **state) {
    (void)state;
    char m[PATH_LEN], in[PATH_LEN];
    tmp_path(m, "huge_workspace.cnn");
    write_text(m, "input 1 1 1\nconv2d out_channels=1 kernel_size=8192 padding=8192\n");
    tmp_path(in, "in_1x1.safetensors");
    float x[1] = {1.0f};
    cnn_tensor t[1] = {F32T("input", x, 1, 1, 1, 1)};
    save(in, t, 1);
    char out[PATH_LEN];
    out_path_for(out, "huge_workspace");
    cli_result r;
    CLI(&r, "grad", "--model", m, "--init", "1", "--input", in, "--out", out);
    EXPECT_BAD_INPUT(&r, "cnn grad: ", m, "line 2", "conv2d", "too large");
    assert_no_output(out);
    cli_free(&r);
}

/* avgpool2d with a 1048576x1048576 kernel (allowed values) over 1x1x1 padded by 524288: one output
 * cell whose window holds 2^40 cells, so its divisor overflows an int. It must either be rejected
 * (exit 2) or give PyTorch's answer, input / 2^40 (finite, and not 0/0). */
static void test_cli_grad_avgpool2d_kernel_1048576(void **state) {
    (void)state;
    char m[PATH_LEN], in[PATH_LEN];
    tmp_path(m, "huge_avgpool.cnn");
    write_text(m, "input 1 1 1\navgpool2d kernel_size=1048576 padding=524288\n");
    tmp_path(in, "in_avg.safetensors");
    float x[1] = {1.0f}, go[1] = {1.0f};
    cnn_tensor t[2] = {F32T("input", x, 1, 1, 1, 1), F32T("grad_output", go, 1, 1, 1, 1)};
    save(in, t, 2);
    char out[PATH_LEN];
    out_path_for(out, "huge_avgpool");
    cli_result r;
    CLI(&r, "grad", "--model", m, "--init", "1", "--input", in, "--out", out);
    if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 2) {
        EXPECT_BAD_INPUT(&r, "cnn grad: ", "line 2", "avgpool2d");
        assert_no_output(out);
    } else {
        if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
            fail_msg("%.300s\n  exited with wait status 0x%x, expected exit status 2 (rejected) or 0 (computed); "
                     "stderr:\n%.500s", r.cmd, (unsigned)r.status, r.err);
        cnn_st *st = NULL;
        if (cnn_st_load(out, &st) != CNN_OK) fail_msg("%.500s", cnn_last_error());
        const cnn_tensor *y = expect_tensor(st, "output", 4, SHAPE(1, 1, 1, 1));
        const cnn_tensor *dx = expect_tensor(st, "grad_input", 4, SHAPE(1, 1, 1, 1));
        const float yv = *(const float *)y->data, dxv = *(const float *)dx->data;
        const float want = 1.0f / 1099511627776.0f;
        if (!(fabsf(yv - want) <= 1e-3f * want) || !(fabsf(dxv - want) <= 1e-3f * want))
            fail_msg("avgpool2d over 2^40 cells: output %g and grad_input %g, expected %g for both", yv, dxv, want);
        cnn_st_free(st);
    }
    cli_free(&r);
}

/* ---- gradcheck ---- */

static void gradcheck_expect_bad(const char *const *args, const char *const *subs) {
    cli_result r;
    cli_run(&r, tmpdir, args);
    expect_exit(&r, 2, subs);
    if (strncmp(r.err, "cnn gradcheck: ", 15) != 0) fail_msg("stderr does not start with 'cnn gradcheck: ': %.500s", r.err);
    cli_free(&r);
}

#define GRADCHECK_BAD(args, ...) gradcheck_expect_bad((args), (const char *const[]){__VA_ARGS__, NULL})
#define ARGS(...) ((const char *const[]){"gradcheck", __VA_ARGS__, NULL})

static void test_cli_gradcheck_model_unknown_option(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "gc_unknown_option.cnn");
    write_text(m, "input 1 6 6\n\nconv2d out_channels=2 kernel_size=3 strides=2\n");
    GRADCHECK_BAD(ARGS("--model", m), m, "line 3", "conv2d", "'strides'");
}

static void test_cli_gradcheck_model_unknown_layer(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "gc_unknown_layer.cnn");
    write_text(m, "input 1 6 6\nlstm hidden_size=4\n");
    GRADCHECK_BAD(ARGS("--model", m), m, "line 2", "'lstm'");
}

static void test_cli_gradcheck_model_shape_does_not_fit(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "gc_no_fit.cnn");
    write_text(m, "input 3 6 6\nconv2d out_channels=4 kernel_size=7 padding=0\n");
    GRADCHECK_BAD(ARGS("--model", m), m, "line 2", "conv2d", "3x6x6", "7x7");
}

static void test_cli_gradcheck_missing_model_file(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "gc_no_such_model.cnn");
    GRADCHECK_BAD(ARGS("--model", m), m, "cannot open");
}

static void test_cli_gradcheck_missing_model_option(void **state) {
    (void)state;
    GRADCHECK_BAD(ARGS("--seed", "1"), "--model");
}

static void test_cli_gradcheck_unknown_option(void **state) {
    (void)state;
    GRADCHECK_BAD(ARGS("--model", model_path, "--epsilon", "1e-3"), "unknown option '--epsilon'");
}

static void test_cli_gradcheck_option_without_value(void **state) {
    (void)state;
    GRADCHECK_BAD(ARGS("--model", model_path, "--seed"), "--seed", "needs a value");
}

static void test_cli_gradcheck_batch_zero(void **state) {
    (void)state;
    GRADCHECK_BAD(ARGS("--model", model_path, "--batch", "0"), "--batch", "0");
}

static void test_cli_gradcheck_batch_too_large(void **state) {
    (void)state;
    GRADCHECK_BAD(ARGS("--model", model_path, "--batch", "65"), "--batch", "65");
}

static void test_cli_gradcheck_seed_not_a_number(void **state) {
    (void)state;
    GRADCHECK_BAD(ARGS("--model", model_path, "--seed", "12x"), "--seed", "12x");
}

static void test_cli_gradcheck_max_checks_negative(void **state) {
    (void)state;
    GRADCHECK_BAD(ARGS("--model", model_path, "--max-checks", "-5"), "--max-checks", "-5");
}

static void test_cli_gradcheck_weights_missing_parameter(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "gc_w_missing.safetensors");
    cnn_tensor t[4];
    std_params(t);
    t[2] = t[3];
    save(w, t, 3);
    GRADCHECK_BAD(ARGS("--model", model_path, "--weights", w), "'3.weight'", "missing");
}

static void test_cli_gradcheck_weights_wrong_shape(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "gc_w_shape.safetensors");
    float b[4] = {0};
    cnn_tensor t[4];
    std_params(t);
    t[3] = F32T("3.bias", b, 4);
    save(w, t, 4);
    GRADCHECK_BAD(ARGS("--model", model_path, "--weights", w), "'3.bias'", "[4]", "[3]");
}

static void test_cli_gradcheck_weights_nan(void **state) {
    (void)state;
    char w[PATH_LEN];
    tmp_path(w, "gc_w_nan.safetensors");
    float b[2] = {0.0f, NAN};
    cnn_tensor t[4];
    std_params(t);
    t[1] = F32T("0.bias", b, 2);
    save(w, t, 4);
    GRADCHECK_BAD(ARGS("--model", model_path, "--weights", w), "'0.bias'", "NaN");
}

static void test_cli_gradcheck_weights_truncated(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    crafted(w, "gc_w_truncated.safetensors", 0, std_json(json, sizeof json, "F32", "[3,8]", "[176,188]"), 180);
    GRADCHECK_BAD(ARGS("--model", model_path, "--weights", w), w, "'3.bias'", "truncated");
}

static void test_cli_gradcheck_weights_unknown_dtype(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    crafted(w, "gc_w_dtype.safetensors", 0, std_json(json, sizeof json, "float32", "[3,8]", "[176,188]"), 188);
    GRADCHECK_BAD(ARGS("--model", model_path, "--weights", w), w, "'0.bias'", "float32");
}

static void test_cli_gradcheck_weights_header_length_past_file(void **state) {
    (void)state;
    char json[1024], w[PATH_LEN];
    std_json(json, sizeof json, "F32", "[3,8]", "[176,188]");
    crafted(w, "gc_w_header_len.safetensors", strlen(json) + 189, json, 188);
    GRADCHECK_BAD(ARGS("--model", model_path, "--weights", w), w, "header length");
}

/* As test_parse_total_parameters_too_large, through the CLI: exit status 2, not 1. */
static void test_cli_gradcheck_total_parameters_too_large(void **state) {
    (void)state;
    char m[PATH_LEN];
    tmp_path(m, "gc_forty_linears.cnn");
    write_text(m, forty_linears());
    GRADCHECK_BAD(ARGS("--model", m), m, "line ", "linear", "too large");
}

/* ---- the command itself ---- */

static void test_cli_no_command(void **state) {
    (void)state;
    cli_result r;
    cli_run(&r, tmpdir, (const char *const[]){NULL});
    expect_exit(&r, 2, (const char *const[]){"usage", NULL});
    cli_free(&r);
}

static void test_cli_unknown_command(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "frobnicate");
    EXPECT_BAD_INPUT(&r, "unknown command 'frobnicate'");
    cli_free(&r);
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

int main(void) {
    const struct CMUnitTest tests[] = {
        /* library: cnn_net_parse */
        cmocka_unit_test(test_parse_good_model_parses),
        cmocka_unit_test(test_parse_unknown_layer),
        cmocka_unit_test(test_parse_unknown_layer_with_options),
        cmocka_unit_test(test_parse_unknown_option_conv2d),
        cmocka_unit_test(test_parse_unknown_option_relu),
        cmocka_unit_test(test_parse_unknown_option_flatten),
        cmocka_unit_test(test_parse_count_include_pad_on_maxpool2d),
        cmocka_unit_test(test_parse_unknown_option_linear),
        cmocka_unit_test(test_parse_option_without_equals),
        cmocka_unit_test(test_parse_option_with_empty_key),
        cmocka_unit_test(test_parse_duplicated_option),
        cmocka_unit_test(test_parse_duplicated_option_pool),
        cmocka_unit_test(test_parse_conv2d_without_out_channels),
        cmocka_unit_test(test_parse_conv2d_without_kernel_size),
        cmocka_unit_test(test_parse_linear_without_out_features),
        cmocka_unit_test(test_parse_maxpool2d_without_kernel_size),
        cmocka_unit_test(test_parse_avgpool2d_without_kernel_size),
        cmocka_unit_test(test_parse_conv2d_kernel_size_0),
        cmocka_unit_test(test_parse_conv2d_stride_0),
        cmocka_unit_test(test_parse_conv2d_padding_negative),
        cmocka_unit_test(test_parse_conv2d_groups_0),
        cmocka_unit_test(test_parse_conv2d_dilation_0),
        cmocka_unit_test(test_parse_conv2d_out_channels_0),
        cmocka_unit_test(test_parse_conv2d_out_channels_negative),
        cmocka_unit_test(test_parse_conv2d_out_channels_overflows_long),
        cmocka_unit_test(test_parse_conv2d_out_channels_very_long),
        cmocka_unit_test(test_parse_conv2d_kernel_size_over_limit),
        cmocka_unit_test(test_parse_conv2d_kernel_size_pair_not_number),
        cmocka_unit_test(test_parse_conv2d_kernel_size_triple),
        cmocka_unit_test(test_parse_conv2d_kernel_size_empty),
        cmocka_unit_test(test_parse_conv2d_kernel_size_half_pair),
        cmocka_unit_test(test_parse_conv2d_kernel_size_plus_sign),
        cmocka_unit_test(test_parse_conv2d_kernel_size_fraction),
        cmocka_unit_test(test_parse_conv2d_bias_maybe),
        cmocka_unit_test(test_parse_leakyrelu_slope_abc),
        cmocka_unit_test(test_parse_leakyrelu_slope_nan),
        cmocka_unit_test(test_parse_leakyrelu_slope_overflows),
        cmocka_unit_test(test_parse_leakyrelu_slope_empty),
        cmocka_unit_test(test_parse_maxpool2d_ceil_mode_2),
        cmocka_unit_test(test_parse_maxpool2d_stride_0),
        cmocka_unit_test(test_parse_maxpool2d_kernel_size_0),
        cmocka_unit_test(test_parse_avgpool2d_padding_negative),
        cmocka_unit_test(test_parse_avgpool2d_count_include_pad_yes),
        cmocka_unit_test(test_parse_linear_out_features_0),
        cmocka_unit_test(test_parse_linear_bias_2),
        cmocka_unit_test(test_parse_no_input_line),
        cmocka_unit_test(test_parse_no_input_line_after_comments),
        cmocka_unit_test(test_parse_empty_text),
        cmocka_unit_test(test_parse_only_comments),
        cmocka_unit_test(test_parse_input_without_layers),
        cmocka_unit_test(test_parse_input_two_values),
        cmocka_unit_test(test_parse_input_four_values),
        cmocka_unit_test(test_parse_input_no_values),
        cmocka_unit_test(test_parse_input_zero),
        cmocka_unit_test(test_parse_input_negative),
        cmocka_unit_test(test_parse_input_not_a_number),
        cmocka_unit_test(test_parse_input_over_limit),
        cmocka_unit_test(test_parse_input_too_many_elements),
        cmocka_unit_test(test_parse_input_given_twice),
        cmocka_unit_test(test_parse_groups_do_not_divide_in_channels),
        cmocka_unit_test(test_parse_groups_do_not_divide_out_channels),
        cmocka_unit_test(test_parse_conv2d_kernel_larger_than_input),
        cmocka_unit_test(test_parse_conv2d_kernel_larger_than_padded_input),
        cmocka_unit_test(test_parse_conv2d_rectangular_kernel_too_tall),
        cmocka_unit_test(test_parse_conv2d_dilated_kernel_too_large),
        cmocka_unit_test(test_parse_maxpool2d_kernel_larger_than_input),
        cmocka_unit_test(test_parse_avgpool2d_kernel_larger_than_padded_input),
        cmocka_unit_test(test_parse_maxpool2d_padding_over_half_kernel),
        cmocka_unit_test(test_parse_avgpool2d_padding_over_half_kernel),
        cmocka_unit_test(test_parse_linear_on_non_flat_input),
        cmocka_unit_test(test_parse_conv2d_after_flatten),
        cmocka_unit_test(test_parse_conv2d_same_strided),
        cmocka_unit_test(test_parse_conv2d_same_strided_columns),
        cmocka_unit_test(test_parse_conv2d_padding_word),
        cmocka_unit_test(test_parse_convtranspose2d_output_padding_not_below_stride),
        cmocka_unit_test(test_parse_convtranspose2d_output_padding_default_stride),
        cmocka_unit_test(test_parse_convtranspose2d_output_padding_not_below_dilation),
        cmocka_unit_test(test_parse_convtranspose2d_groups_do_not_divide_in_channels),
        cmocka_unit_test(test_parse_convtranspose2d_groups_do_not_divide_out_channels),
        cmocka_unit_test(test_parse_convtranspose2d_without_kernel_size),
        cmocka_unit_test(test_parse_convtranspose2d_padding_same),
        cmocka_unit_test(test_parse_convtranspose2d_output_too_small),
        cmocka_unit_test(test_parse_convtranspose2d_output_too_large),
        cmocka_unit_test(test_parse_convtranspose2d_after_flatten),
        cmocka_unit_test(test_parse_maxpool2d_after_linear),
        cmocka_unit_test(test_parse_shape_no_longer_fits_after_pooling),
        cmocka_unit_test(test_parse_output_would_be_empty_conv2d),
        cmocka_unit_test(test_parse_conv2d_kernel_size_1048576),
        cmocka_unit_test(test_parse_maxpool2d_kernel_size_1048576),
        cmocka_unit_test(test_parse_conv2d_huge_out_channels),
        cmocka_unit_test(test_parse_linear_huge_out_features),
        cmocka_unit_test(test_parse_huge_conv2d_then_linear),
        cmocka_unit_test(test_parse_conv2d_output_too_large),
        cmocka_unit_test(test_parse_conv2d_parameter_count_overflows_int64),
        cmocka_unit_test(test_parse_conv2d_huge_dilation),
        cmocka_unit_test(test_parse_total_parameters_too_large),
        cmocka_unit_test(test_parse_too_many_options),
        cmocka_unit_test(test_parse_very_long_layer_name),
        cmocka_unit_test(test_parse_very_long_option_value),
        cmocka_unit_test(test_load_model_message_names_file),
        cmocka_unit_test(test_load_model_missing_file),
        cmocka_unit_test(test_load_model_with_nul_byte),
        /* library: cnn_net_load_weights */
        cmocka_unit_test(test_weights_good),
        cmocka_unit_test(test_weights_missing_tensor),
        cmocka_unit_test(test_weights_missing_tensor_allowed),
        cmocka_unit_test(test_weights_wrong_shape),
        cmocka_unit_test(test_weights_wrong_rank),
        cmocka_unit_test(test_weights_wrong_dtype_i64),
        cmocka_unit_test(test_weights_nan),
        cmocka_unit_test(test_weights_inf_f64),
        cmocka_unit_test(test_weights_parameter_not_in_model),
        /* CLI: success */
        cmocka_unit_test(test_cli_grad_success),
        cmocka_unit_test(test_cli_grad_cross_entropy_success),
        cmocka_unit_test(test_cli_grad_crafted_weights_success),
        cmocka_unit_test(test_cli_gradcheck_success),
        /* CLI: grad */
        cmocka_unit_test(test_cli_grad_model_unknown_layer),
        cmocka_unit_test(test_cli_grad_model_unknown_option),
        cmocka_unit_test(test_cli_grad_model_shape_does_not_fit),
        cmocka_unit_test(test_cli_grad_missing_model_file),
        cmocka_unit_test(test_cli_grad_model_is_a_directory),
        cmocka_unit_test(test_cli_grad_model_with_nul_byte),
        cmocka_unit_test(test_cli_grad_empty_model),
        cmocka_unit_test(test_cli_grad_weights_truncated),
        cmocka_unit_test(test_cli_grad_weights_cut_inside_header),
        cmocka_unit_test(test_cli_grad_weights_shorter_than_8_bytes),
        cmocka_unit_test(test_cli_grad_weights_offsets_past_end),
        cmocka_unit_test(test_cli_grad_weights_header_length_past_file),
        cmocka_unit_test(test_cli_grad_weights_header_length_huge),
        cmocka_unit_test(test_cli_grad_weights_unknown_dtype),
        cmocka_unit_test(test_cli_grad_weights_shape_disagrees_with_size),
        cmocka_unit_test(test_cli_grad_weights_header_not_json),
        cmocka_unit_test(test_cli_grad_weights_negative_shape),
        cmocka_unit_test(test_cli_grad_missing_weights_file),
        cmocka_unit_test(test_cli_grad_weights_missing_parameter),
        cmocka_unit_test(test_cli_grad_weights_wrong_shape),
        cmocka_unit_test(test_cli_grad_weights_wrong_dtype),
        cmocka_unit_test(test_cli_grad_weights_nan),
        cmocka_unit_test(test_cli_grad_weights_extra_parameter),
        cmocka_unit_test(test_cli_grad_weights_missing_parameter_with_init),
        cmocka_unit_test(test_cli_grad_missing_input_file),
        cmocka_unit_test(test_cli_grad_input_file_truncated),
        cmocka_unit_test(test_cli_grad_input_missing_input_tensor),
        cmocka_unit_test(test_cli_grad_input_wrong_shape),
        cmocka_unit_test(test_cli_grad_input_wrong_rank),
        cmocka_unit_test(test_cli_grad_input_wrong_dtype),
        cmocka_unit_test(test_cli_grad_input_batch_zero),
        cmocka_unit_test(test_cli_grad_input_nan),
        cmocka_unit_test(test_cli_grad_input_inf),
        cmocka_unit_test(test_cli_grad_grad_output_missing),
        cmocka_unit_test(test_cli_grad_grad_output_wrong_shape),
        cmocka_unit_test(test_cli_grad_grad_output_wrong_batch),
        cmocka_unit_test(test_cli_grad_grad_output_4d_wrong_shape),
        cmocka_unit_test(test_cli_grad_grad_output_nan),
        cmocka_unit_test(test_cli_grad_cross_entropy_target_out_of_range),
        cmocka_unit_test(test_cli_grad_cross_entropy_int32_target_out_of_range),
        cmocka_unit_test(test_cli_grad_cross_entropy_target_negative),
        cmocka_unit_test(test_cli_grad_cross_entropy_target_huge),
        cmocka_unit_test(test_cli_grad_cross_entropy_target_wrong_dtype),
        cmocka_unit_test(test_cli_grad_cross_entropy_target_wrong_shape),
        cmocka_unit_test(test_cli_grad_cross_entropy_target_missing),
        cmocka_unit_test(test_cli_grad_cross_entropy_on_non_flat_output),
        cmocka_unit_test(test_cli_grad_mse_target_wrong_shape),
        cmocka_unit_test(test_cli_grad_mse_target_nan),
        cmocka_unit_test(test_cli_grad_loss_unknown),
        cmocka_unit_test(test_cli_grad_unknown_option),
        cmocka_unit_test(test_cli_grad_missing_out_option),
        cmocka_unit_test(test_cli_grad_missing_weights_and_init),
        cmocka_unit_test(test_cli_grad_no_options),
        cmocka_unit_test(test_cli_grad_option_without_value),
        cmocka_unit_test(test_cli_grad_init_not_a_number),
        cmocka_unit_test(test_cli_grad_init_negative),
        cmocka_unit_test(test_cli_grad_out_unwritable),
        cmocka_unit_test(test_cli_grad_conv2d_workspace_too_large),
        cmocka_unit_test(test_cli_grad_avgpool2d_kernel_1048576),
        /* CLI: gradcheck */
        cmocka_unit_test(test_cli_gradcheck_model_unknown_option),
        cmocka_unit_test(test_cli_gradcheck_model_unknown_layer),
        cmocka_unit_test(test_cli_gradcheck_model_shape_does_not_fit),
        cmocka_unit_test(test_cli_gradcheck_missing_model_file),
        cmocka_unit_test(test_cli_gradcheck_missing_model_option),
        cmocka_unit_test(test_cli_gradcheck_unknown_option),
        cmocka_unit_test(test_cli_gradcheck_option_without_value),
        cmocka_unit_test(test_cli_gradcheck_batch_zero),
        cmocka_unit_test(test_cli_gradcheck_batch_too_large),
        cmocka_unit_test(test_cli_gradcheck_seed_not_a_number),
        cmocka_unit_test(test_cli_gradcheck_max_checks_negative),
        cmocka_unit_test(test_cli_gradcheck_weights_missing_parameter),
        cmocka_unit_test(test_cli_gradcheck_weights_wrong_shape),
        cmocka_unit_test(test_cli_gradcheck_weights_nan),
        cmocka_unit_test(test_cli_gradcheck_weights_truncated),
        cmocka_unit_test(test_cli_gradcheck_weights_unknown_dtype),
        cmocka_unit_test(test_cli_gradcheck_weights_header_length_past_file),
        cmocka_unit_test(test_cli_gradcheck_total_parameters_too_large),
        /* CLI: the command */
        cmocka_unit_test(test_cli_no_command),
        cmocka_unit_test(test_cli_unknown_command),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
