/* NaN and Inf in what cnn reads: weights, optimizer state, data sets, and F64 values that are
 * finite but beyond float32's range (they would turn into Inf when rounded). Each is rejected on
 * load with a message that names the tensor and the element, by the library and by every command
 * that reads such a file (train, train --resume, eval, predict, grad). */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <float.h>
#include <sys/stat.h>

static char dir[64];
static char model_p[512], data_p[512], good_w[512], image_p[512];

static const char MODEL[] = "input 1 4 4\nconv2d out_channels=2 kernel_size=3\nrelu\nflatten\nlinear out_features=3\n";

static char *path(char *buf, const char *name) { return tu_join(buf, dir, name); }

/* The net's four parameters (0.weight [2,1,3,3], 0.bias [2], 3.weight [3,8], 3.bias [3]) in
 * double, and a writer of them as F32 or F64 with element k of tensor i set to v. */
static double w[4][24];
static const int64_t SHAPES[4][4] = {{2, 1, 3, 3}, {2}, {3, 8}, {3}};
static const int NDIM[4] = {4, 1, 2, 1}, NUMEL[4] = {18, 2, 24, 3};
static const char *const NAMES[4] = {"0.weight", "0.bias", "3.weight", "3.bias"};

static void write_weights(const char *p, cnn_dtype dtype, int i_bad, int k_bad, double v, const char *const *meta,
                          int n_meta) {
    static float f[4][24];
    static double d[4][24];
    cnn_tensor t[4];
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < NUMEL[i]; k++) {
            d[i][k] = i == i_bad && k == k_bad ? v : w[i][k];
            f[i][k] = (float)d[i][k];
        }
        t[i] = (cnn_tensor){.name = NAMES[i], .dtype = dtype, .ndim = NDIM[i], .data = dtype == CNN_F32 ? (void *)f[i] : (void *)d[i]};
        memcpy(t[i].shape, SHAPES[i], sizeof SHAPES[i]);
    }
    assert_int_equal(cnn_st_save(p, t, 4, meta, n_meta), CNN_OK);
}

static int setup(void **state) {
    (void)state;
    if (tu_make_temp_dir(dir, "test_nonfinite")) return -1;
    tu_write_text(path(model_p, "model.cnn"), MODEL);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < NUMEL[i]; k++) w[i][k] = (double)((k * 7 + i) % 11 - 5) / 10.0;
    write_weights(path(good_w, "good.safetensors"), CNN_F32, -1, -1, 0, NULL, 0);
    /* A data set of 8 samples, and a 4×4 grey image (binary PGM). */
    float x[8 * 16];
    int64_t y[8];
    for (int i = 0; i < 8 * 16; i++) x[i] = (float)(i % 5) / 5.0f;
    for (int i = 0; i < 8; i++) y[i] = i % 3;
    const cnn_tensor d[2] = {{.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {8, 1, 4, 4}, .data = x},
                             {.name = "target", .dtype = CNN_I64, .ndim = 1, .shape = {8}, .data = y}};
    assert_int_equal(cnn_st_save(path(data_p, "data.safetensors"), d, 2, NULL, 0), CNN_OK);
    FILE *f = fopen(path(image_p, "digit.pgm"), "wb");
    if (!f) return -1;
    fputs("P5 4 4 255 ", f);
    for (int i = 0; i < 16; i++) fputc(i * 16, f);
    fclose(f);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* Loads weights file p into the net; returns the status, the message in cnn_last_error(). */
static cnn_status load(const char *p) {
    cnn_net *net = NULL;
    cnn_st *st = NULL;
    assert_int_equal(cnn_net_parse(MODEL, &net), CNN_OK);
    cnn_status s = cnn_st_load(p, &st);
    if (s == CNN_OK) s = cnn_net_load_weights(net, st, 0);
    cnn_st_free(st);
    cnn_net_free(net);
    return s;
}

static void expect_message(const char *const *subs) {
    for (int i = 0; subs[i]; i++)
        if (!strstr(cnn_last_error(), subs[i]))
            fail_msg("message \"%s\" lacks \"%s\"", cnn_last_error(), subs[i]);
}
#define EXPECT_MESSAGE(...) expect_message((const char *const[]){__VA_ARGS__, NULL})

/* NaN, Inf and -Inf, F32 and F64, in any tensor: named with the element. */
static void test_weights_nan_inf(void **state) {
    (void)state;
    char p[512];
    path(p, "bad.safetensors");
    write_weights(p, CNN_F32, 2, 17, NAN, NULL, 0);
    assert_int_equal(load(p), CNN_ERR_NONFINITE);
    EXPECT_MESSAGE("tensor '3.weight'", "NaN", "element 17");
    write_weights(p, CNN_F64, 1, 1, -INFINITY, NULL, 0);
    assert_int_equal(load(p), CNN_ERR_NONFINITE);
    EXPECT_MESSAGE("tensor '0.bias'", "Inf", "element 1");
}

/* F64 weights are rounded to float32: a value that is finite in double but rounds to Inf is an
 * error too, while the largest that rounds to FLT_MAX is not. */
static void test_weights_f64_beyond_float(void **state) {
    (void)state;
    char p[512];
    path(p, "big.safetensors");
    write_weights(p, CNN_F64, 0, 4, 1e300, NULL, 0);
    assert_int_equal(load(p), CNN_ERR_NONFINITE);
    EXPECT_MESSAGE("tensor '0.weight'", "1e+300", "element 4", "beyond float32's range");
    write_weights(p, CNN_F64, 3, 0, -0x1.ffffffp127, NULL, 0); /* FLT_MAX + half an ulp: rounds to -Inf */
    assert_int_equal(load(p), CNN_ERR_NONFINITE);
    EXPECT_MESSAGE("tensor '3.bias'", "element 0");
    write_weights(p, CNN_F64, 3, 0, 0x1.fffffefffffffp127, NULL, 0); /* just below: rounds to -FLT_MAX */
    assert_int_equal(load(p), CNN_OK);
    write_weights(p, CNN_F64, 3, 0, (double)FLT_MAX, NULL, 0);
    assert_int_equal(load(p), CNN_OK);
}

/* The optimizer state of a checkpoint, F32 and F64. */
static void test_optimizer_state(void **state) {
    (void)state;
    cnn_net *net = NULL;
    cnn_optim *opt = NULL;
    assert_int_equal(cnn_net_parse(MODEL, &net), CNN_OK);
    const cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_ADAM, 0.001);
    assert_int_equal(cnn_optim_create(net, &cfg, &opt), CNN_OK);
    cnn_tensor t[8];
    assert_int_equal(cnn_optim_state(opt, t, 8), 8);
    static double d[8][24];
    cnn_tensor td[8];
    for (int i = 0; i < 8; i++) {
        td[i] = t[i];
        td[i].dtype = CNN_F64;
        td[i].data = d[i];
    }
    char p[512];
    for (int k = 0; k < 3; k++) {
        const double bad = k == 0 ? NAN : k == 1 ? INFINITY : 1e39;
        d[5][1] = bad;
        assert_int_equal(cnn_st_save(path(p, "state.safetensors"), td, 8, NULL, 0), CNN_OK);
        cnn_st *st = NULL;
        assert_int_equal(cnn_st_load(p, &st), CNN_OK);
        assert_int_equal(cnn_optim_load_state(opt, st, 3), CNN_ERR_NONFINITE);
        EXPECT_MESSAGE("optimizer state", "tensor 'optim.", "element 1");
        if (k == 2) EXPECT_MESSAGE("beyond float32's range");
        assert_non_null(strstr(cnn_last_error(), td[5].name));
        cnn_st_free(st);
    }
    cnn_optim_free(opt);
    cnn_net_free(net);
}

/* ---- the commands ------------------------------------------------------------------------- */

static void test_train_weights(void **state) {
    (void)state;
    char p[512], out[512];
    write_weights(path(p, "train_nan.safetensors"), CNN_F32, 0, 3, NAN, NULL, 0);
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--weights", p, "--out", path(out, "never.safetensors"));
    CLI_EXPECT(&r, 2, p, "tensor '0.weight'", "NaN", "element 3");
    write_weights(p, CNN_F64, 2, 5, -1e300, NULL, 0);
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--weights", p, "--out", out);
    CLI_EXPECT(&r, 2, "tensor '3.weight'", "beyond float32's range");
    struct stat sb;
    assert_true(stat(out, &sb) != 0);
}

/* A checkpoint whose optimizer state holds NaN: --resume names the buffer. */
static void test_train_resume(void **state) {
    (void)state;
    char ck[512];
    path(ck, "ck.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--optimizer", "adam", "--batch", "4", "--out", ck);
    CLI_EXPECT(&r, 0, "epoch 1/1");
    /* Rewrite it with one NaN in optim.3.bias.exp_avg_sq, keeping the metadata. */
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(ck, &st), CNN_OK);
    const int n = cnn_st_count(st);
    cnn_tensor t[16];
    static float copy[16][64];
    int hit = 0;
    for (int i = 0; i < n; i++) {
        t[i] = *cnn_st_tensor(st, i);
        memcpy(copy[i], t[i].data, (size_t)cnn_tensor_numel(&t[i]) * sizeof(float));
        t[i].data = copy[i];
        if (!strcmp(t[i].name, "optim.3.bias.exp_avg_sq")) copy[i][2] = NAN, hit = 1;
    }
    assert_true(hit);
    static const char *const keys[] = {"format", "model", "epoch", "epochs", "step", "batch", "optimizer", "lr", "seed"};
    const char *meta[18];
    for (int i = 0; i < 9; i++) meta[2 * i] = keys[i], meta[2 * i + 1] = cnn_st_metadata(st, keys[i]);
    char bad[512];
    assert_int_equal(cnn_st_save(path(bad, "ck_nan.safetensors"), t, n, meta, 9), CNN_OK);
    cnn_st_free(st);
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", bad, "--epochs", "2", "--out", bad);
    CLI_EXPECT(&r, 2, bad, "optimizer state", "tensor 'optim.3.bias.exp_avg_sq'", "NaN", "element 2");
}

/* A data set with Inf in its input. */
static void test_train_data(void **state) {
    (void)state;
    float x[4 * 16] = {0};
    x[21] = INFINITY;
    int64_t y[4] = {0, 1, 2, 0};
    const cnn_tensor d[2] = {{.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {4, 1, 4, 4}, .data = x},
                             {.name = "target", .dtype = CNN_I64, .ndim = 1, .shape = {4}, .data = y}};
    char p[512];
    assert_int_equal(cnn_st_save(path(p, "inf_data.safetensors"), d, 2, NULL, 0), CNN_OK);
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", p);
    CLI_EXPECT(&r, 2, "tensor 'input' has Inf at index 21 (sample 1)");
    CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", good_w, "--data", p);
    CLI_EXPECT(&r, 2, "tensor 'input' has Inf at index 21");
}

static void test_eval_predict_grad_weights(void **state) {
    (void)state;
    char p[512], in[512], out[512];
    write_weights(path(p, "use_nan.safetensors"), CNN_F32, 3, 2, NAN, NULL, 0);
    cli_result r;
    CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", p, "--data", data_p);
    CLI_EXPECT(&r, 2, p, "tensor '3.bias'", "NaN", "element 2");
    CLI_RUN(&r, dir, "predict", "--model", model_p, "--weights", p, image_p);
    CLI_EXPECT(&r, 2, p, "tensor '3.bias'", "NaN", "element 2");
    assert_string_equal(r.out, "");
    /* cnn grad: the weights F64 beyond float32, then the input with a NaN. */
    write_weights(p, CNN_F64, 1, 0, 1e40, NULL, 0);
    float x[16] = {0};
    int64_t y[1] = {1};
    cnn_tensor t[2] = {{.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {1, 1, 4, 4}, .data = x},
                       {.name = "target", .dtype = CNN_I64, .ndim = 1, .shape = {1}, .data = y}};
    assert_int_equal(cnn_st_save(path(in, "in.safetensors"), t, 2, NULL, 0), CNN_OK);
    CLI_RUN(&r, dir, "grad", "--model", model_p, "--weights", p, "--input", in, "--out", path(out, "g.safetensors"),
            "--loss", "cross_entropy");
    CLI_EXPECT(&r, 2, p, "tensor '0.bias'", "1e+40", "beyond float32's range");
    x[9] = -INFINITY;
    assert_int_equal(cnn_st_save(in, t, 2, NULL, 0), CNN_OK);
    CLI_RUN(&r, dir, "grad", "--model", model_p, "--weights", good_w, "--input", in, "--out", out, "--loss",
            "cross_entropy");
    CLI_EXPECT(&r, 2, in, "tensor 'input'", "Inf", "element 9");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weights_nan_inf),
        cmocka_unit_test(test_weights_f64_beyond_float),
        cmocka_unit_test(test_optimizer_state),
        cmocka_unit_test(test_train_weights),
        cmocka_unit_test(test_train_resume),
        cmocka_unit_test(test_train_data),
        cmocka_unit_test(test_eval_predict_grad_weights),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
