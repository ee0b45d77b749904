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
#include "testdata.h"

#include <sys/stat.h>

#define PYTHON "/usr/bin/python3"
#define SAMPLES 48
#define BATCH 8

static char dir[64];

static char *path(char *buf, const char *name) { return tu_join(buf, dir, name); }

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

/* The inputs of `cnn grad`: 5 new samples, and grad_output [5, 3] (no loss). */
static void make_grad_input(const char *p) {
    static float x[5 * 2 * 6 * 6], g[5 * 3];
    uint64_t s = 4242;
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = 4.0f * tu_next_float(&s) - 0.5f;
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) g[i] = tu_next_float(&s) - 0.125f;
    cnn_tensor t[2] = {
        {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {5, 2, 6, 6}, .data = x},
        {.name = "grad_output", .dtype = CNN_F32, .ndim = 2, .shape = {5, 3}, .data = g},
    };
    assert_int_equal(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
}

static int setup(void **state) {
    (void)state;
    return tu_make_temp_dir(dir, "test_torch_interop");
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
    /* A learnable data set of SAMPLES 2x6x6 samples in 3 classes; class k's bright 2x2 patch is in
     * channel k % 2 (testdata.h). */
    tu_make_dataset(path(data, "data.safetensors"), (tu_dataset){.n = SAMPLES, .channels = 2, .seed = 777});
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
    const int ws = cli_run_program(argv, NULL, path(log, "check.log"), NULL, NULL, NULL);
    static char text[1 << 16];
    cli_read_file(log, text, sizeof text);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        fail_msg("%s tools/check_state_dict.py %s (python3-torch is needed; make test installs it):\n%s", PYTHON,
                 WIFEXITED(ws) ? "failed" : "was killed", text);
    if (!strstr(text, "loaded with strict=True") || !strstr(text, "\nok\n"))
        fail_msg("tools/check_state_dict.py exited 0 but did not report a strict load and 'ok':\n%s", text);
    print_message("%s", text);
}

/* The repository's ResNets (the README's recipes train them): a checkpoint of `cnn train` with the
 * recipe's options (batch norm, residual adds, augmentation, one-cycle, label smoothing) loads into
 * tools/cnnmodel.py's module strictly and gives cnn's eval-mode outputs. C x S x S is the model's
 * input; two training steps are enough to move every running statistic. */
static void repository_model(const char *model, int c, int s, const char *name) {
    char data[512], ck[512], in[512], out[512], log[512], sub[600];
    snprintf(sub, sizeof sub, "%s.data.safetensors", name);
    tu_make_dataset(path(data, sub), (tu_dataset){.n = 16, .channels = c, .size = s, .classes = 10, .seed = 99,
                                                  .patch = 4});
    snprintf(sub, sizeof sub, "%s.ck.safetensors", name);
    path(ck, sub);
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model, "--data", data, "--epochs", "1", "--batch", "8", "--optimizer", "sgd",
            "--lr", "0.1", "--momentum", "0.9", "--nesterov", "--weight-decay", "5e-4", "--no-decay-bn-bias",
            "--schedule", "onecycle", "--label-smoothing", "0.1", "--augment", "crop=2,flip", "--init", "5", "--out",
            ck, "--threads", "1");
    CLI_EXPECT(&r, 0, "epoch 1/1");

    /* 3 inputs and a grad_output of the model's 10 classes. */
    const int per = c * s * s;
    float *x = malloc((size_t)3 * per * sizeof *x), g[3 * 10];
    assert_non_null(x);
    uint64_t seed = 31;
    for (int i = 0; i < 3 * per; i++) x[i] = 2.0f * tu_next_float(&seed) - 1.0f;
    for (int i = 0; i < 30; i++) g[i] = tu_next_float(&seed) - 0.5f;
    cnn_tensor t[2] = {
        {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {3, c, s, s}, .data = x},
        {.name = "grad_output", .dtype = CNN_F32, .ndim = 2, .shape = {3, 10}, .data = g},
    };
    snprintf(sub, sizeof sub, "%s.in.safetensors", name);
    assert_int_equal(cnn_st_save(path(in, sub), t, 2, NULL, 0), CNN_OK);
    free(x);
    snprintf(sub, sizeof sub, "%s.out.safetensors", name);
    path(out, sub);
    CLI_RUN(&r, dir, "grad", "--model", model, "--weights", ck, "--input", in, "--out", out, "--eval");
    cli_expect(&r, 0, NULL);

    snprintf(sub, sizeof sub, "%s.check.log", name);
    const char *argv[] = {PYTHON, "tools/check_state_dict.py", "--model", model, "--checkpoint", ck, "--input", in,
                          "--cnn-output", out, NULL};
    const int ws = cli_run_program(argv, NULL, path(log, sub), NULL, NULL, NULL);
    static char text[1 << 16];
    cli_read_file(log, text, sizeof text);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        fail_msg("%s tools/check_state_dict.py on %s %s:\n%s", PYTHON, model, WIFEXITED(ws) ? "failed" : "was killed",
                 text);
    if (!strstr(text, "loaded with strict=True") || !strstr(text, "\nok\n"))
        fail_msg("tools/check_state_dict.py on %s did not report a strict load and 'ok':\n%s", model, text);
}

static void test_resnet_fashion_loads_strictly(void **state) {
    (void)state;
    repository_model("models/resnet-fashion.cnn", 1, 28, "resnet-fashion");
}

static void test_resnet20_loads_strictly(void **state) {
    (void)state;
    repository_model("models/resnet20.cnn", 3, 32, "resnet20");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_loads_strictly_into_pytorch),
        cmocka_unit_test(test_resnet_fashion_loads_strictly),
        cmocka_unit_test(test_resnet20_loads_strictly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
