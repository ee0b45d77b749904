/* A checkpoint's __metadata__ is input like any other: `cnn train --resume` refuses, with exit 2
 * and the field's name, every edited field it would otherwise have believed (a NaN or a word as
 * lr, a missing optimizer beside Adam's state, a step count that disagrees with the epoch or
 * overflows, more correct answers than samples), and `cnn predict` a normalisation that is not
 * finite or divides by next to nothing. `cnn eval`, `predict` and `summary` refuse a --model that
 * differs from the model text the checkpoint records, unless --force-model. */
#include "testutil.h"
#include "clirun.h"

#include <sys/stat.h>

static char dir[64];
static char model_p[512], tanh_p[512], data_p[512], ck_p[512], img_p[512];

static const char MODEL[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\nrelu\nmaxpool2d kernel_size=2\n"
                            "flatten\nlinear out_features=3\n";
static const char TANH_MODEL[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\ntanh\n"
                                 "maxpool2d kernel_size=2\nflatten\nlinear out_features=3\n";

/* Every key cnn train writes, and the library's own two. */
static const char *const KEYS[] = {"format", "step", "model", "data", "source", "epoch", "epoch_step",
                                   "epoch_loss_sum", "epoch_correct", "epoch_seconds", "samples", "epochs",
                                   "checkpoint_every", "seed", "rng", "shuffle", "batch", "optimizer", "lr",
                                   "momentum", "nesterov", "weight_decay", "betas", "eps", "schedule", "step_size",
                                   "gamma", "test_acc", "mean", "std", "history", NULL};

static void write_text(const char *p, const char *text) {
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_dataset(const char *p, int n, int n_test) {
    const int total = n + n_test;
    float *x = calloc((size_t)total * 36, sizeof *x);
    int64_t *y = calloc((size_t)total, sizeof *y);
    assert_true(x && y);
    uint64_t s = 12345;
    for (int i = 0; i < total; i++) {
        y[i] = i % 3;
        for (int j = 0; j < 36; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[i * 36 + j] = (float)((s >> 40) % 1000) / 1000.0f;
        }
    }
    cnn_tensor t[4] = {
        {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {n, 1, 6, 6}, .data = x},
        {.name = "target", .dtype = CNN_I64, .ndim = 1, .shape = {n}, .data = y},
        {.name = "test_input", .dtype = CNN_F32, .ndim = 4, .shape = {n_test, 1, 6, 6}, .data = x + (size_t)n * 36},
        {.name = "test_target", .dtype = CNN_I64, .ndim = 1, .shape = {n_test}, .data = y + n},
    };
    assert_int_equal(cnn_st_save(p, t, 4, NULL, 0), CNN_OK);
    free(x);
    free(y);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cnn_test_resume_meta_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(model_p, sizeof model_p, "%s/model.cnn", dir);
    snprintf(tanh_p, sizeof tanh_p, "%s/tanh.cnn", dir);
    snprintf(data_p, sizeof data_p, "%s/data.safetensors", dir);
    snprintf(ck_p, sizeof ck_p, "%s/ck.safetensors", dir);
    snprintf(img_p, sizeof img_p, "%s/digit.pgm", dir);
    write_text(model_p, MODEL);
    write_text(tanh_p, TANH_MODEL);
    make_dataset(data_p, 60, 30);
    /* A 6×6 grey image. */
    FILE *f = fopen(img_p, "wb");
    if (!f) return -1;
    fprintf(f, "P5\n6 6\n255\n");
    for (int i = 0; i < 36; i++) fputc(i * 7, f);
    fclose(f);
    /* One epoch of Adam: a checkpoint with Adam's moments, epoch 1, step 6. */
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--optimizer", "adam", "--epochs", "1",
            "--batch", "10", "--threads", "1", "--out", ck_p);
    CLI_EXPECT(&r, 0, "checkpoint");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* Writes `out`: the checkpoint with metadata `key` set to `value` (NULL: removed), and up to two
 * more edits (key2/value2, key3/value3). */
static void edit(const char *out, const char *key, const char *value, const char *key2, const char *value2,
                 const char *key3, const char *value3) {
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(ck_p, &st), CNN_OK);
    const char *kv[2 * 40];
    int n = 0;
    const char *edits[3][2] = {{key, value}, {key2, value2}, {key3, value3}};
    for (int i = 0; KEYS[i]; i++) {
        const char *v = cnn_st_metadata(st, KEYS[i]);
        for (int e = 0; e < 3; e++)
            if (edits[e][0] && !strcmp(edits[e][0], KEYS[i])) v = edits[e][1], edits[e][0] = NULL;
        if (v) kv[2 * n] = KEYS[i], kv[2 * n + 1] = v, n++;
    }
    for (int e = 0; e < 3; e++)
        if (edits[e][0] && edits[e][1]) kv[2 * n] = edits[e][0], kv[2 * n + 1] = edits[e][1], n++;
    const int nt = cnn_st_count(st);
    cnn_tensor *t = calloc((size_t)nt, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < nt; i++) t[i] = *cnn_st_tensor(st, i);
    assert_int_equal(cnn_st_save(out, t, nt, kv, n), CNN_OK);
    free(t);
    cnn_st_free(st);
}

static void resume(cli_result *r, const char *ck) {
    char out[600];
    snprintf(out, sizeof out, "%s/resumed.safetensors", dir);
    CLI_RUN(r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--threads", "1", "--resume", ck,
            "--out", out);
}

/* The checkpoint as written resumes: the edits below are what is refused. */
static void test_unedited_resumes(void **state) {
    (void)state;
    char ck[600];
    snprintf(ck, sizeof ck, "%s/same.safetensors", dir);
    edit(ck, NULL, NULL, NULL, NULL, NULL, NULL);
    cli_result r;
    resume(&r, ck);
    CLI_EXPECT(&r, 0, "epoch 2/2");
}

static void refused(const char *what, const char *key, const char *value, const char *key2, const char *value2,
                    const char *key3, const char *value3, const char *want) {
    char ck[600];
    snprintf(ck, sizeof ck, "%s/%s.safetensors", dir, what);
    edit(ck, key, value, key2, value2, key3, value3);
    cli_result r;
    resume(&r, ck);
    CLI_EXPECT(&r, 2, want);
    assert_null(strstr(r.err, "epoch 2/2"));
}

static void test_lr_nan(void **s) { (void)s, refused("lr_nan", "lr", "nan", NULL, NULL, NULL, NULL, "\"lr\" is 'nan'"); }
static void test_lr_word(void **s) { (void)s, refused("lr_abc", "lr", "abc", NULL, NULL, NULL, NULL, "\"lr\" is 'abc'"); }
static void test_lr_negative(void **s) {
    (void)s, refused("lr_neg", "lr", "-0.1", NULL, NULL, NULL, NULL, "\"lr\" is '-0.1', not a finite number >= 0");
}
static void test_betas_out_of_range(void **s) {
    (void)s, refused("betas", "betas", "0.9,1.5", NULL, NULL, NULL, NULL, "\"betas\"");
}
static void test_unknown_schedule(void **s) {
    (void)s, refused("schedule", "schedule", "linear", NULL, NULL, NULL, NULL, "\"schedule\" is 'linear'");
}
static void test_missing_optimizer(void **s) {
    (void)s, refused("no_optimizer", "optimizer", NULL, NULL, NULL, NULL, NULL, "no \"optimizer\"");
}
static void test_step_zero_after_an_epoch(void **s) {
    (void)s, refused("step0", "step", "0", NULL, NULL, NULL, NULL, "\"step\" is 0");
}
/* Step 0 with the epoch and batch counts at 0 too, but Adam's moments of 6 steps. */
static void test_step_zero_with_moments(void **s) {
    (void)s, refused("step0_moments", "step", "0", "epoch", "0", NULL, NULL, "\"step\" is 0, but the file holds Adam's moments");
}
static void test_step_overflows(void **s) {
    (void)s, refused("step_max", "step", "9223372036854775807", NULL, NULL, NULL, NULL, "\"step\"");
}
static void test_correct_over_samples(void **s) {
    (void)s, refused("correct", "epoch_correct", "1000", NULL, NULL, NULL, NULL, "\"epoch_correct\" is 1000");
}
/* In the middle of an epoch: 2 batches of 10 done, so at most 20 correct, and at most 6 batches. */
static void test_correct_over_seen(void **s) {
    (void)s, refused("correct_mid", "epoch_step", "2", "epoch_correct", "21", "epoch_loss_sum", "2.5",
                     "\"epoch_correct\" is 21, more than the 20 samples seen");
}
static void test_epoch_step_over_epoch(void **s) {
    (void)s, refused("estep", "epoch_step", "7", "epoch_correct", "0", "epoch_loss_sum", "2.5",
                     "\"epoch_step\" is 7, more than the 6 steps");
}
static void test_loss_sum_nan(void **s) {
    (void)s, refused("loss_nan", "epoch_step", "2", "epoch_correct", "3", "epoch_loss_sum", "nan",
                     "\"epoch_loss_sum\" is 'nan'");
}

/* ---- the model a checkpoint records ------------------------------------------------------ */

static void test_other_model_refused(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "eval", "--model", tanh_p, "--weights", ck_p, "--threads", "1");
    CLI_EXPECT(&r, 2, "differs from the model", "--force-model");
    CLI_RUN(&r, dir, "predict", "--model", tanh_p, "--weights", ck_p, "--threads", "1", img_p);
    CLI_EXPECT(&r, 2, "differs from the model", "--force-model");
    assert_string_equal(r.out, "");
    CLI_RUN(&r, dir, "summary", "--model", tanh_p, "--weights", ck_p);
    CLI_EXPECT(&r, 2, "differs from the model", "--force-model");
    assert_string_equal(r.out, "");
    /* The same model file is no mismatch. */
    CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", ck_p, "--threads", "1");
    CLI_EXPECT(&r, 0, "");
    assert_null(strstr(r.err, "differs"));
}

static void test_force_model(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "eval", "--model", tanh_p, "--weights", ck_p, "--threads", "1", "--force-model");
    CLI_EXPECT(&r, 0, "warning", "differs");
    assert_non_null(strstr(r.out, "acc"));
    CLI_RUN(&r, dir, "predict", "--model", tanh_p, "--weights", ck_p, "--threads", "1", "--force-model", img_p);
    CLI_EXPECT(&r, 0, "warning");
    assert_true(strlen(r.out) > 0);
    CLI_RUN(&r, dir, "summary", "--model", tanh_p, "--weights", ck_p, "--force-model");
    CLI_EXPECT(&r, 0, "warning");
    assert_non_null(strstr(r.out, "tanh"));
}

/* ---- predict's normalisation --------------------------------------------------------------- */

static void predict_refused(const char *what, const char *key, const char *value, const char *want) {
    char ck[600];
    snprintf(ck, sizeof ck, "%s/%s.safetensors", dir, what);
    edit(ck, key, value, NULL, NULL, NULL, NULL);
    cli_result r;
    CLI_RUN(&r, dir, "predict", "--weights", ck, "--threads", "1", img_p);
    CLI_EXPECT(&r, 2, want);
    assert_string_equal(r.out, "");
}

static void test_predict_mean_nan(void **s) { (void)s, predict_refused("mean_nan", "mean", "nan,0,0", "\"mean\""); }
static void test_predict_std_tiny(void **s) {
    (void)s, predict_refused("std_tiny", "std", "1e-45,1,1", "\"std\" is '1e-45,1,1'");
}
static void test_predict_std_inf(void **s) { (void)s, predict_refused("std_inf", "std", "inf,1,1", "at least 1e-6"); }

static void test_predict_unedited(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "predict", "--weights", ck_p, "--threads", "1", img_p);
    CLI_EXPECT(&r, 0, "");
    assert_true(strlen(r.out) > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unedited_resumes),
        cmocka_unit_test(test_lr_nan),
        cmocka_unit_test(test_lr_word),
        cmocka_unit_test(test_lr_negative),
        cmocka_unit_test(test_betas_out_of_range),
        cmocka_unit_test(test_unknown_schedule),
        cmocka_unit_test(test_missing_optimizer),
        cmocka_unit_test(test_step_zero_after_an_epoch),
        cmocka_unit_test(test_step_zero_with_moments),
        cmocka_unit_test(test_step_overflows),
        cmocka_unit_test(test_correct_over_samples),
        cmocka_unit_test(test_correct_over_seen),
        cmocka_unit_test(test_epoch_step_over_epoch),
        cmocka_unit_test(test_loss_sum_nan),
        cmocka_unit_test(test_other_model_refused),
        cmocka_unit_test(test_force_model),
        cmocka_unit_test(test_predict_mean_nan),
        cmocka_unit_test(test_predict_std_tiny),
        cmocka_unit_test(test_predict_std_inf),
        cmocka_unit_test(test_predict_unedited),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
