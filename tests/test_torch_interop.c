/* test_torch_interop.c - a cnn checkpoint of a batch-norm net is a PyTorch state_dict: its parameters
 * and buffers (without the optim.* entries) load into the equivalent PyTorch module with
 * load_state_dict(strict=True), num_batches_tracked included, and give cnn's outputs in eval mode.
 *
 * `cnn train` trains a small residual net with batch norm (conv2d, batchnorm2d, relu, add,
 * adaptiveavgpool2d, flatten, linear) for one epoch on a tiny synthetic data set and writes a
 * checkpoint; `cnn grad --eval` runs it on other inputs; then tools/check_state_dict.py (run with
 * /usr/bin/python3, so python3-torch must be installed: this test fails, not skips, without it) loads
 * the checkpoint into tools/cnnmodel.py's module strictly and compares the eval-mode outputs. The test
 * runs from the repository root, as tests/run.sh runs it. */
#include "testutil.h"
#include "clirun.h"

#include <sys/stat.h>

#define PYTHON "/usr/bin/python3"
#define SAMPLES 48
#define BATCH 8

static char dir[64];

static char *path(char *buf, const char *name) {
    snprintf(buf, 512, "%s/%s", dir, name);
    return buf;
}

/* Two residual stages would test no more: one skip over conv + batch norm is the point. */
static const char MODEL[] =
    "input 2 6 6\n"
    "conv2d out_channels=4 kernel_size=3 padding=1 bias=false name=conv1\n"
    "batchnorm2d name=bn1\n"
    "relu name=stem\n"
    "conv2d out_channels=4 kernel_size=3 padding=1 bias=false name=layer1.0.conv1\n"
    "batchnorm2d name=layer1.0.bn1\n"
    "add from=stem\n"
    "relu name=layer1.0\n"
    "adaptiveavgpool2d output_size=1\n"
    "flatten\n"
    "linear out_features=3 name=fc\n";

/* Deterministic pseudo-random floats in [0, 0.25). */
static float next_float(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) % 1000) / 4000.0f;
}

/* A learnable data set: class k has a bright 2x2 patch in channel k % 2 at a k-dependent place. */
static void make_dataset(const char *p) {
    enum { PER = 2 * 6 * 6 };
    float *x = calloc((size_t)SAMPLES * PER, sizeof *x);
    int64_t *y = calloc(SAMPLES, sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    uint64_t s = 777;
    for (int i = 0; i < SAMPLES; i++) {
        const int k = i % 3;
        y[i] = k;
        for (int j = 0; j < PER; j++) x[i * PER + j] = next_float(&s);
        const int r = (k * 2) % 5, c = (k * 3) % 5;
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) x[i * PER + (k % 2) * 36 + (r + a) * 6 + c + b] += 1.0f;
    }
    cnn_tensor t[2] = {
        {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {SAMPLES, 2, 6, 6}, .data = x},
        {.name = "target", .dtype = CNN_I64, .ndim = 1, .shape = {SAMPLES}, .data = y},
    };
    assert_int_equal(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
    free(x);
    free(y);
}

/* The inputs of `cnn grad`: 5 new samples, and grad_output [5, 3] (no loss). */
static void make_grad_input(const char *p) {
    static float x[5 * 2 * 6 * 6], g[5 * 3];
    uint64_t s = 4242;
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = 4.0f * next_float(&s) - 0.5f;
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) g[i] = next_float(&s) - 0.125f;
    cnn_tensor t[2] = {
        {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {5, 2, 6, 6}, .data = x},
        {.name = "grad_output", .dtype = CNN_F32, .ndim = 2, .shape = {5, 3}, .data = g},
    };
    assert_int_equal(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
}

/* Runs argv[0] (a path) with stdout and stderr into `log`; returns the wait status, killing it after
 * CLI_TIMEOUT_S. Exit status 127 means it could not be run. */
static int run_logged(const char *const *argv, const char *log) {
    fflush(NULL);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const int in = open("/dev/null", O_RDONLY);
        const int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0) _exit(126);
        dup2(in, STDIN_FILENO), dup2(out, STDOUT_FILENO), dup2(out, STDERR_FILENO);
        close(in), close(out);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    const struct timespec tick = {0, 10 * 1000 * 1000};
    int ws = 0;
    for (long waited = 0;; waited++) {
        const pid_t w = waitpid(pid, &ws, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
        if (waited * 10 > CLI_TIMEOUT_S * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            fail_msg("%s: still running after %d s, killed", argv[0], CLI_TIMEOUT_S);
        }
        nanosleep(&tick, NULL);
    }
    return ws;
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cnn_test_torch_interop_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* The checkpoint's I64 scalar `name` (num_batches_tracked). */
static int64_t counter(const cnn_st *st, const char *name) {
    const cnn_tensor *t = cnn_st_find(st, name);
    if (!t) fail_msg("the checkpoint has no tensor '%s'", name);
    if (t->dtype != CNN_I64 || t->ndim != 0)
        fail_msg("the checkpoint's '%s' is %s with %d dimension(s), expected an I64 scalar as in PyTorch", name,
                 cnn_dtype_name(t->dtype) ? cnn_dtype_name(t->dtype) : "?", t->ndim);
    return *(const int64_t *)t->data;
}

static void test_checkpoint_loads_strictly_into_pytorch(void **state) {
    (void)state;
    char model[512], data[512], ck[512], in[512], out[512], log[512];
    tu_write_bytes(path(model, "model.cnn"), MODEL, strlen(MODEL));
    make_dataset(path(data, "data.safetensors"));
    make_grad_input(path(in, "in.safetensors"));
    path(ck, "ck.safetensors");
    path(out, "out.safetensors");

    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model, "--data", data, "--epochs", "1", "--batch", "8", "--optimizer", "sgd",
            "--lr", "0.1", "--momentum", "0.9", "--init", "3", "--out", ck);
    CLI_EXPECT(&r, 0, "epoch 1/1");

    /* One epoch of SAMPLES / BATCH training steps: every batch norm counted each of them, and its running
     * statistics moved away from their initial 0 and 1. */
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(ck, &st), CNN_OK);
    assert_int_equal(counter(st, "bn1.num_batches_tracked"), SAMPLES / BATCH);
    assert_int_equal(counter(st, "layer1.0.bn1.num_batches_tracked"), SAMPLES / BATCH);
    const cnn_tensor *rm = cnn_st_find(st, "bn1.running_mean");
    assert_non_null(rm);
    assert_int_equal(rm->dtype, CNN_F32);
    double moved = 0;
    for (int64_t k = 0; k < cnn_tensor_numel(rm); k++) moved += fabs(((const float *)rm->data)[k]);
    assert_true(moved > 1e-3);
    cnn_st_free(st);

    CLI_RUN(&r, dir, "grad", "--model", model, "--weights", ck, "--input", in, "--out", out, "--eval");
    cli_expect(&r, 0, NULL);

    const char *argv[] = {PYTHON, "tools/check_state_dict.py", "--model", model, "--checkpoint", ck, "--input", in,
                          "--cnn-output", out, NULL};
    const int ws = run_logged(argv, path(log, "check.log"));
    static char text[1 << 16];
    cli_read_file(log, text, sizeof text);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        fail_msg("%s tools/check_state_dict.py %s (python3-torch is needed; make test installs it):\n%s", PYTHON,
                 WIFEXITED(ws) ? "failed" : "was killed", text);
    if (!strstr(text, "loaded with strict=True") || !strstr(text, "\nok\n"))
        fail_msg("tools/check_state_dict.py exited 0 but did not report a strict load and 'ok':\n%s", text);
    print_message("%s", text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_loads_strictly_into_pytorch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
