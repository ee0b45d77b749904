/* cnn train, eval: PyTorch parity of five optimizer steps, exact resume, determinism, the
 * non-finite guard, logs, plots, checkpoints, and every kind of bad input. Small synthetic data. */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <dirent.h>
#include <sys/stat.h>

static char dir[64];

static char *path(char *buf, const char *name) { return tu_join(buf, dir, name); }

static const char MODEL[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\nrelu\nmaxpool2d kernel_size=2\n"
                            "flatten\nlinear out_features=3\n";
static const char OTHER_MODEL[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\ntanh\n"
                                  "maxpool2d kernel_size=2\nflatten\nlinear out_features=3\n";

static char model_p[512], other_p[512], data_p[512];

static int setup(void **state) {
    (void)state;
    if (tu_make_temp_dir(dir, "test_train")) return -1;
    tu_write_text(path(model_p, "model.cnn"), MODEL);
    tu_write_text(path(other_p, "other.cnn"), OTHER_MODEL);
    /* 60 training and 30 test samples of 1×6×6 in 3 classes (testdata.h) */
    tu_make_dataset(path(data_p, "data.safetensors"), (tu_dataset){.n = 60, .n_test = 30});
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* ---- PyTorch parity: five steps of cnn train against torch.optim ------------------------- */

/* Every parameter, buffer and optimizer state of the case's expected.safetensors (F64; I64
 * num_batches_tracked exactly) against cnn train's checkpoint, within 1e-5 relative L2. */
static void parity_in(const char *root, const char *name) {
    char fx[512], m[640], d[640], w[640], e[640], args_p[640], out[512], args[512];
    snprintf(fx, sizeof fx, "%s/%s", root, name);
    snprintf(m, sizeof m, "%s/model.cnn", fx);
    snprintf(d, sizeof d, "%s/data.safetensors", fx);
    snprintf(w, sizeof w, "%s/init.safetensors", fx);
    snprintf(e, sizeof e, "%s/expected.safetensors", fx);
    snprintf(args_p, sizeof args_p, "%s/args", fx);
    snprintf(out, sizeof out, "%s/parity_%s.safetensors", dir, name);
    cli_read_file(args_p, args, sizeof args);
    const char *argv[48] = {"train", "--model", m, "--data", d, "--weights", w, "--out", out};
    int argc = 9;
    for (char *tok = strtok(args, " \n"); tok && argc < 46; tok = strtok(NULL, " \n")) argv[argc++] = tok;
    argv[argc] = NULL;
    cli_result r;
    cli_run(&r, dir, argv);
    CLI_EXPECT(&r, 0, "epoch 1/1");
    cnn_st *got = NULL, *want = NULL;
    assert_int_equal(cnn_st_load(out, &got), CNN_OK);
    assert_int_equal(cnn_st_load(e, &want), CNN_OK);
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < cnn_st_count(want); i++) {
        const cnn_tensor *tw = cnn_st_tensor(want, i);
        if (!strncmp(tw->name, "f32.", 4) || !strcmp(tw->name, "loss")) continue;
        const cnn_tensor *tg = cnn_st_find(got, tw->name);
        if (!tg) fail_msg("%s: the checkpoint lacks %s", name, tw->name);
        if (tw->dtype == CNN_I64) {   /* num_batches_tracked */
            assert_int_equal(tg->dtype, CNN_I64);
            assert_int_equal(cnn_tensor_numel(tg), cnn_tensor_numel(tw));
            assert_memory_equal(tg->data, tw->data, (size_t)cnn_tensor_numel(tw) * sizeof(int64_t));
            checked++;
            continue;
        }
        assert_int_equal(tg->dtype, CNN_F32);
        assert_int_equal(cnn_tensor_numel(tg), cnn_tensor_numel(tw));
        double num = 0, den = 0;
        for (int64_t k = 0; k < cnn_tensor_numel(tw); k++) {
            const double a = ((const float *)tg->data)[k], b = ((const double *)tw->data)[k];
            num += (a - b) * (a - b), den += b * b;
        }
        const double rel = sqrt(num) / (sqrt(den) > 1e-12 ? sqrt(den) : 1e-12);
        if (!(rel <= 1e-5)) fail_msg("%s: %s differs from torch.optim by %.3e (relative L2)", name, tw->name, rel);
        worst = rel > worst ? rel : worst;
        checked++;
    }
    print_message("%s: %d tensors, worst relative L2 error %.2e\n", name, checked, worst);
    assert_true(checked >= 4);
    assert_string_equal(cnn_st_metadata(got, "step"), "5");
    cnn_st_free(got);
    cnn_st_free(want);
}

static void parity(const char *name) { parity_in("tests/train_fixtures", name); }

static void test_parity_sgd(void **s) { (void)s, parity("sgd"); }
static void test_parity_sgd_momentum(void **s) { (void)s, parity("sgd_momentum"); }
static void test_parity_sgd_nesterov_wd(void **s) { (void)s, parity("sgd_nesterov_wd"); }
static void test_parity_adam(void **s) { (void)s, parity("adam"); }
static void test_parity_adam_wd(void **s) { (void)s, parity("adam_wd"); }
static void test_parity_adamw(void **s) { (void)s, parity("adamw"); }
static void test_parity_res_onecycle(void **s) { (void)s, parity("res_onecycle"); }
static void test_parity_res_onecycle_nomomentum(void **s) { (void)s, parity("res_onecycle_nomomentum"); }
static void test_parity_res_onecycle_adam(void **s) { (void)s, parity("res_onecycle_adam"); }
static void test_parity_res_warmup_cosine(void **s) { (void)s, parity("res_warmup_cosine"); }
static void test_parity_res_label_smoothing(void **s) { (void)s, parity("res_label_smoothing"); }
static void test_parity_res_clip(void **s) { (void)s, parity("res_clip"); }
static void test_parity_res_no_decay(void **s) { (void)s, parity("res_no_decay"); }

/* ResNet-20 at batch 2: its expected files would be megabytes, so torch makes them now
 * (tools/make_train_fixtures.py --live; python3-torch is needed, make test installs it). */
static void parity_live(const char *name) {
    char root[512], out_p[640], err_p[640];
    path(root, "live");
    mkdir(root, 0700);
    snprintf(out_p, sizeof out_p, "%s/%s.out", root, name);
    snprintf(err_p, sizeof err_p, "%s/%s.err", root, name);
    const char *const py[] = {"/usr/bin/python3", "tools/make_train_fixtures.py", "--live", name, root, NULL};
    const char *const env[] = {"PYTHONDONTWRITEBYTECODE", "1", "OMP_NUM_THREADS", "1", NULL};
    const int ws = cli_run_program(py, ".", out_p, err_p, env, NULL);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        static char errs[1 << 14];
        cli_read_file(err_p, errs, sizeof errs);
        fail_msg("tools/make_train_fixtures.py --live %s failed (python3-torch is needed):\n%s", name, errs);
    }
    parity_in(root, name);
}
static void test_parity_resnet20_onecycle(void **s) { (void)s, parity_live("resnet20_onecycle"); }
static void test_parity_resnet20_warmup_cosine(void **s) { (void)s, parity_live("resnet20_warmup_cosine"); }

/* ---- resume and determinism --------------------------------------------------------------- */

static void train(cli_result *r, const char *out, const char *epochs, const char *extra1, const char *extra2) {
    CLI_RUN(r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", epochs, "--batch", "8", "--optimizer",
            "sgd", "--lr", "0.1", "--momentum", "0.9", "--nesterov", "--weight-decay", "0.001", "--seed", "7",
            "--out", out, extra1 ? extra1 : "--schedule", extra2 ? extra2 : "cosine");
}

/* 2 epochs in one run equal 1 epoch + resume + 1 epoch, bit for bit, optimizer state included. */
static void test_resume_is_exact(void **state) {
    (void)state;
    char a[512], b[512];
    path(a, "straight.safetensors");
    path(b, "resumed.safetensors");
    cli_result r;
    train(&r, a, "2", NULL, NULL);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    train(&r, b, "1", NULL, NULL);
    CLI_EXPECT(&r, 0, "epoch 1/1");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", b, "--epochs", "2", "--out", b);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    assert_null(strstr(r.err, "epoch 1/2"));   /* only the one missing epoch ran */
    assert_true(tu_same_tensors(a, b, "") >= 8);      /* 4 weights + 4 momentum buffers */
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(b, &st), CNN_OK);
    assert_string_equal(cnn_st_metadata(st, "epoch"), "2");
    assert_string_equal(cnn_st_metadata(st, "step"), "16");   /* 60 samples / 8 = 8 steps per epoch */
    assert_non_null(cnn_st_metadata(st, "model"));
    cnn_st_free(st);
}

/* A graph with batch norm and dropout: a resumed run (mid-epoch too) and a 2-thread run end with
 * the bits of a straight one, running statistics and num_batches_tracked included, because
 * dropout's masks are drawn from (seed, step). */
static void test_graph_resume_and_threads_are_exact(void **state) {
    (void)state;
    static const char graph[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1 name=c1\n"
                                "batchnorm2d name=bn\nrelu name=a\nconv2d out_channels=3 kernel_size=3 padding=1\n"
                                "add from=a\ndropout p=0.3\nadaptiveavgpool2d output_size=1\nflatten\n"
                                "linear out_features=4 name=fc\n";
    char m[512], a[512], b[512], c[512];
    tu_write_text(path(m, "graph.cnn"), graph);
    path(a, "graph_straight.safetensors");
    path(b, "graph_resumed.safetensors");
    path(c, "graph_threads.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", m, "--data", data_p, "--epochs", "2", "--batch", "8", "--seed", "3",
            "--out", a);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    CLI_RUN(&r, dir, "train", "--model", m, "--data", data_p, "--epochs", "1", "--batch", "8", "--seed", "3",
            "--checkpoint-every", "3", "--out", b);
    CLI_EXPECT(&r, 0, "epoch 1/1");
    CLI_RUN(&r, dir, "train", "--model", m, "--data", data_p, "--resume", b, "--epochs", "2", "--out", b);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    assert_true(tu_same_tensors(a, b, "") >= 11);   /* 8 parameters and 3 buffers */
    CLI_RUN(&r, dir, "train", "--model", m, "--data", data_p, "--epochs", "2", "--batch", "8", "--seed", "3",
            "--threads", "2", "--out", c);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    assert_true(tu_same_tensors(a, c, "") >= 11);
    cnn_st *st = NULL;   /* 60 samples / 8 = 8 steps per epoch: the counter saw every training batch */
    assert_int_equal(cnn_st_load(a, &st), CNN_OK);
    const cnn_tensor *t = cnn_st_find(st, "bn.num_batches_tracked");
    assert_non_null(t);
    assert_int_equal(t->dtype, CNN_I64);
    assert_int_equal(t->ndim, 0);
    int64_t count;
    memcpy(&count, t->data, sizeof count);
    assert_int_equal(count, 16);
    cnn_st_free(st);
}

/* The same seed, data and settings give the same weights bit for bit; another seed does not. */
static void test_determinism(void **state) {
    (void)state;
    char a[512], b[512], c[512];
    path(a, "det_a.safetensors");
    path(b, "det_b.safetensors");
    path(c, "det_c.safetensors");
    cli_result r;
    train(&r, a, "2", NULL, NULL);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    train(&r, b, "2", NULL, NULL);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    assert_true(tu_same_tensors(a, b, "") >= 8);
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--batch", "8", "--lr", "0.1",
            "--seed", "8", "--out", c);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    cnn_st *sa = NULL, *sc = NULL;
    assert_int_equal(cnn_st_load(a, &sa), CNN_OK);
    assert_int_equal(cnn_st_load(c, &sc), CNN_OK);
    const cnn_tensor *wa = cnn_st_find(sa, "0.weight"), *wc = cnn_st_find(sc, "0.weight");
    assert_true(memcmp(wa->data, wc->data, 27 * sizeof(float)) != 0);
    cnn_st_free(sa);
    cnn_st_free(sc);
}

/* 1 and 2 threads give the same weights bit for bit: every reduction runs in a fixed order. */
static void test_threads_do_not_change_results(void **state) {
    (void)state;
    char a[512], b[512];
    path(a, "threads1.safetensors");
    path(b, "threads2.safetensors");
    cli_result r;
    train(&r, a, "2", "--threads", "1");
    CLI_EXPECT(&r, 0, "epoch 2/2");
    train(&r, b, "2", "--threads", "2");
    CLI_EXPECT(&r, 0, "epoch 2/2");
    assert_true(tu_same_tensors(a, b, "") >= 8);
}

/* Training learns the synthetic task, the log has one JSON object per epoch, the plot is a PNG,
 * and cnn eval agrees with the accuracy the checkpoint records. */
static void test_learns_logs_plots_and_evaluates(void **state) {
    (void)state;
    char out[512], log[512], plot[512], svg[512], buf[8192];
    path(out, "learn.safetensors");
    path(log, "learn.jsonl");
    path(plot, "learn.png");
    path(svg, "learn.svg");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "6", "--batch", "8", "--optimizer",
            "adam", "--lr", "0.01", "--seed", "1", "--out", out, "--log", log, "--plot", plot);
    CLI_EXPECT(&r, 0, "epoch 6/6");
    assert_non_null(strstr(r.out, "test accuracy 100.00%"));
    cli_read_file(log, buf, sizeof buf);
    int lines = 0;
    for (char *p = buf; (p = strstr(p, "{\"epoch\": ")); p++) lines++;
    assert_int_equal(lines, 6);
    assert_non_null(strstr(buf, "\"test_acc\": 1.000000"));
    cli_read_file(plot, buf, sizeof buf);
    assert_memory_equal(buf, "\x89PNG", 4);
    CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", out, "--data", data_p);
    CLI_EXPECT(&r, 0, NULL);
    assert_non_null(strstr(r.out, "accuracy 100.00%"));
    assert_non_null(strstr(r.out, "confusion matrix"));
    assert_non_null(strstr(r.out, "      10      0      0"));   /* 30 test samples, 10 per class */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "1", "--plot", svg, "--out", out);
    CLI_EXPECT(&r, 0, NULL);
    cli_read_file(svg, buf, sizeof buf);
    assert_non_null(strstr(buf, "<svg"));
}

/* A huge learning rate makes the net diverge: training stops, names the step and the layer, and
 * keeps the last good checkpoint. */
static void test_nonfinite_guard(void **state) {
    (void)state;
    char out[512];
    path(out, "diverge.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "3", "--batch", "8", "--lr", "1e30",
            "--seed", "1", "--out", out);
    CLI_EXPECT(&r, 1, "step ", "non-finite", "layer ", "Try a lower --lr");
    assert_false(tu_exists(out));   /* it diverged within the first epoch: no checkpoint was ever good */
}

/* ---- bad input ---------------------------------------------------------------------------- */

static void expect_bad(cli_result *r, const char *out, const char *sub) {
    CLI_EXPECT(r, 2, sub);
    if (out) assert_false(tu_exists(out));
}

static void write_idx(const char *p, const uint8_t *magic, const uint32_t *dims, int ndim, const uint8_t *data,
                      size_t len) {
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite(magic, 1, 4, f);
    for (int i = 0; i < ndim; i++) {
        const uint8_t be[4] = {(uint8_t)(dims[i] >> 24), (uint8_t)(dims[i] >> 16), (uint8_t)(dims[i] >> 8),
                               (uint8_t)dims[i]};
        fwrite(be, 1, 4, f);
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

/* An IDX directory of 6×6 images; `how` breaks one thing. */
static void make_idx_dir(const char *d, const char *how) {
    mkdir(d, 0700);
    static uint8_t pix[12 * 36], lab[12];
    for (int i = 0; i < 12; i++) lab[i] = (uint8_t)(i % 3);
    if (!strcmp(how, "label 7")) lab[5] = 7;
    const uint8_t img_magic[4] = {0, 0, 8, 3}, lab_magic[4] = {0, 0, 8, 1}, bad_magic[4] = {1, 2, 8, 3};
    const uint32_t idims[3] = {12, 6, 6}, ldims[1] = {12}, short_ldims[1] = {11};
    char p[600];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", d);
    write_idx(p, !strcmp(how, "magic") ? bad_magic : img_magic, idims, 3, pix,
              !strcmp(how, "truncated") ? 100 : sizeof pix);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", d);
    write_idx(p, lab_magic, !strcmp(how, "counts") ? short_ldims : ldims, 1, lab, !strcmp(how, "counts") ? 11 : 12);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", d);
    write_idx(p, img_magic, idims, 3, pix, sizeof pix);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", d);
    write_idx(p, lab_magic, ldims, 1, lab, 12);
}

static void test_idx_directory_trains(void **state) {
    (void)state;
    char d[512], out[512];
    path(d, "idx_ok");
    path(out, "idx_ok.safetensors");
    make_idx_dir(d, "ok");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", d, "--epochs", "1", "--batch", "4", "--out", out);
    CLI_EXPECT(&r, 0, "epoch 1/1", "(12 train, 12 test)");
}

static void bad_idx(const char *how, const char *sub) {
    char d[512], out[512];
    snprintf(d, sizeof d, "%s/idx_%s", dir, how);
    for (char *p = d + strlen(dir); *p; p++)
        if (*p == ' ') *p = '_';
    make_idx_dir(d, how);
    path(out, "never.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", d, "--epochs", "1", "--out", out);
    expect_bad(&r, out, sub);
}

static void test_bad_idx_magic(void **s) { (void)s, bad_idx("magic", "train-images-idx3-ubyte"); }
static void test_bad_idx_truncated(void **s) { (void)s, bad_idx("truncated", "truncated"); }
static void test_bad_idx_counts(void **s) { (void)s, bad_idx("counts", "12"); }

static void test_missing_data(void **state) {
    (void)state;
    char empty[512], out[512];
    path(empty, "no_data_here");
    mkdir(empty, 0700);
    path(out, "never.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", "mnist", "--data-dir", empty, "--out", out);
    expect_bad(&r, out, "make data");
}

static void test_label_out_of_range(void **state) {
    (void)state;
    char d[512], out[512];
    path(d, "five_classes.safetensors");
    tu_make_dataset(d, (tu_dataset){.n = 20, .classes = 5}); /* labels 0..4, but the model has 3 outputs */
    path(out, "never.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", d, "--out", out);
    expect_bad(&r, out, "label 4 is out of range for the model's 3 outputs");
    CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", d, "--data", d);
    CLI_EXPECT(&r, 2, NULL);
}

static void test_checkpoint_of_another_model(void **state) {
    (void)state;
    char ck[512], out[512];
    path(ck, "other_ck.safetensors");
    path(out, "never.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", other_p, "--data", data_p, "--epochs", "1", "--out", ck);
    CLI_EXPECT(&r, 0, NULL);
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--epochs", "2", "--out", out);
    expect_bad(&r, out, "different model");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--weights", ck, "--out", out);
    expect_bad(&r, out, "different model");
}

static void test_resume_missing_file(void **state) {
    (void)state;
    char ck[512], out[512];
    path(ck, "does_not_exist.safetensors");
    path(out, "never.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--out", out);
    expect_bad(&r, out, "does_not_exist.safetensors");
}

static void test_bad_options(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--optimizer", "rmsprop");
    expect_bad(&r, NULL, "--optimizer rmsprop");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--lr", "-1");
    expect_bad(&r, NULL, "--lr -1");
    CLI_RUN(&r, dir, "train", "--model", model_p);
    expect_bad(&r, NULL, "--data are required");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--nesterov");
    expect_bad(&r, NULL, "nesterov");
}

/* The recipe's options: each bad value exits 2 with a message naming the option, before any
 * training (no checkpoint). */
static void test_bad_recipe_options(void **state) {
    (void)state;
    char out[512];
    path(out, "bad_recipe.safetensors");
    static const char *const cases[][5] = {
        {"--schedule", "multistep", "--milestones", "4,2", "--milestones 4,2"},
        {"--schedule", "multistep", "--milestones", "2,2", "--milestones 2,2"},
        {"--schedule", "multistep", "--milestones", "0,3", "--milestones 0,3"},
        {"--schedule", "multistep", "--milestones", "2,x", "--milestones 2,x"},
        {"--schedule", "multistep", "--milestones", "-1", "--milestones -1"},
        {"--schedule", "multistep", "--milestones", "2,", "--milestones 2,"},
        {"--schedule", "cosine", "--milestones", "2,4", "--milestones belongs to --schedule multistep"},
        {"--schedule", "multistep", "--gamma", "0.5", "--schedule multistep needs --milestones"},
        {"--label-smoothing", "1", "--epochs", "1", "--label-smoothing 1"},
        {"--label-smoothing", "-0.1", "--epochs", "1", "--label-smoothing -0.1"},
        {"--label-smoothing", "nan", "--epochs", "1", "--label-smoothing nan"},
        {"--clip-grad-norm", "0", "--epochs", "1", "--clip-grad-norm 0"},
        {"--clip-grad-norm", "-1", "--epochs", "1", "--clip-grad-norm -1"},
        {"--clip-grad-norm", "inf", "--epochs", "1", "--clip-grad-norm inf"},
        {"--warmup", "-3", "--epochs", "1", "--warmup -3"},
        {"--warmup", "3", "--schedule", "onecycle", "--warmup"},
        {"--schedule-per", "batch", "--epochs", "1", "--schedule-per batch"},
        {"--schedule-per", "epoch", "--schedule", "onecycle", "--schedule-per epoch"},
        {"--schedule", "twocycle", "--epochs", "1", "--schedule twocycle"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cli_result r;
        CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--out", out, cases[i][0], cases[i][1],
                cases[i][2], cases[i][3]);
        expect_bad(&r, out, cases[i][4]);
    }
    /* --help lists every one of them */
    cli_result r;
    CLI_RUN(&r, dir, "train", "--help");
    CLI_EXPECT(&r, 0, NULL);
    static const char *const words[] = {"--schedule-per", "--milestones", "--warmup", "--label-smoothing",
                                        "--clip-grad-norm", "--no-decay-bn-bias", "onecycle", "OneCycleLR",
                                        "LinearLR(start_factor=1/N", "clip_grad_norm_(", "MultiStepLR"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strstr(r.out, words[i])) fail_msg("cnn train --help lacks '%s':\n%s", words[i], r.out);
}

/* The recipe on the graph with batch norm: 1 and 2 threads give the same bits (clipping's norm is
 * summed in one order), and each option changes the result (it was applied). */
static void test_recipe_threads_and_effect(void **state) {
    (void)state;
    static const char graph[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1 bias=false name=c1\n"
                                "batchnorm2d name=bn\nrelu name=a\nconv2d out_channels=3 kernel_size=3 padding=1\n"
                                "add from=a\nadaptiveavgpool2d output_size=1\nflatten\nlinear out_features=4\n";
    char m[512], a[512], b[512], c[512];
    tu_write_text(path(m, "recipe_graph.cnn"), graph);
    path(a, "recipe_t1.safetensors");
    path(b, "recipe_t2.safetensors");
    path(c, "recipe_other.safetensors");
#define RECIPE(clip, smooth, sched, wd)                                                                   \
    "--epochs", "2", "--batch", "8", "--seed", "3", "--lr", "0.1", "--momentum", "0.9", "--nesterov",          \
        "--weight-decay", wd, "--schedule", sched, "--label-smoothing", smooth, "--clip-grad-norm", clip,        \
        "--no-decay-bn-bias"
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", m, "--data", data_p, RECIPE("0.3", "0.1", "onecycle", "0.01"), "--threads",
            "1", "--out", a);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    CLI_RUN(&r, dir, "train", "--model", m, "--data", data_p, RECIPE("0.3", "0.1", "onecycle", "0.01"), "--threads",
            "2", "--out", b);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    assert_true(tu_same_tensors(a, b, "") >= 11);
    /* without one option at a time, the weights differ */
    static const char *const drop[][4] = {{"100", "0.1", "onecycle", "0.01"}, {"0.3", "0", "onecycle", "0.01"},
                                          {"0.3", "0.1", "constant", "0.01"}, {"0.3", "0.1", "onecycle", "0"}};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        CLI_RUN(&r, dir, "train", "--model", m, "--data", data_p, RECIPE(drop[i][0], drop[i][1], drop[i][2], drop[i][3]),
                "--out", c);
        CLI_EXPECT(&r, 0, "epoch 2/2");
        cnn_st *sa = NULL, *sc = NULL;
        assert_int_equal(cnn_st_load(a, &sa), CNN_OK);
        assert_int_equal(cnn_st_load(c, &sc), CNN_OK);
        const cnn_tensor *wa = cnn_st_find(sa, "c1.weight"), *wc = cnn_st_find(sc, "c1.weight");
        if (!memcmp(wa->data, wc->data, 27 * sizeof(float))) fail_msg("variant %zu changed nothing", i);
        cnn_st_free(sa);
        cnn_st_free(sc);
    }
#undef RECIPE
}

/* The recipe's settings are in the checkpoint's metadata, and --resume takes them from there. */
static void test_recipe_metadata(void **state) {
    (void)state;
    char out[512];
    path(out, "recipe_meta.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "1", "--batch", "8", "--out", out,
            "--schedule", "multistep", "--schedule-per", "step", "--milestones", "3,5", "--warmup", "2",
            "--label-smoothing", "0.2", "--clip-grad-norm", "0.75", "--no-decay-bn-bias", "--weight-decay", "0.01");
    CLI_EXPECT(&r, 0, "epoch 1/1");
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(out, &st), CNN_OK);
    assert_string_equal(cnn_st_metadata(st, "schedule"), "multistep");
    assert_string_equal(cnn_st_metadata(st, "schedule_per"), "step");
    assert_string_equal(cnn_st_metadata(st, "milestones"), "3,5");
    assert_string_equal(cnn_st_metadata(st, "warmup"), "2");
    assert_string_equal(cnn_st_metadata(st, "label_smoothing"), "0.20000000000000001");
    assert_string_equal(cnn_st_metadata(st, "clip_grad_norm"), "0.75");
    assert_string_equal(cnn_st_metadata(st, "no_decay_bn_bias"), "1");
    cnn_st_free(st);
    /* resumed for a second epoch with none of them given: the run's own settings go on */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", out, "--epochs", "2");
    CLI_EXPECT(&r, 0, "epoch 2/2");
    assert_int_equal(cnn_st_load(out, &st), CNN_OK);
    assert_string_equal(cnn_st_metadata(st, "milestones"), "3,5");
    assert_string_equal(cnn_st_metadata(st, "label_smoothing"), "0.20000000000000001");
    assert_string_equal(cnn_st_metadata(st, "no_decay_bn_bias"), "1");
    cnn_st_free(st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_sgd),
        cmocka_unit_test(test_parity_sgd_momentum),
        cmocka_unit_test(test_parity_sgd_nesterov_wd),
        cmocka_unit_test(test_parity_adam),
        cmocka_unit_test(test_parity_adam_wd),
        cmocka_unit_test(test_parity_adamw),
        cmocka_unit_test(test_parity_res_onecycle),
        cmocka_unit_test(test_parity_res_onecycle_nomomentum),
        cmocka_unit_test(test_parity_res_onecycle_adam),
        cmocka_unit_test(test_parity_res_warmup_cosine),
        cmocka_unit_test(test_parity_res_label_smoothing),
        cmocka_unit_test(test_parity_res_clip),
        cmocka_unit_test(test_parity_res_no_decay),
        cmocka_unit_test(test_parity_resnet20_onecycle),
        cmocka_unit_test(test_parity_resnet20_warmup_cosine),
        cmocka_unit_test(test_bad_recipe_options),
        cmocka_unit_test(test_recipe_metadata),
        cmocka_unit_test(test_recipe_threads_and_effect),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_graph_resume_and_threads_are_exact),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_threads_do_not_change_results),
        cmocka_unit_test(test_learns_logs_plots_and_evaluates),
        cmocka_unit_test(test_nonfinite_guard),
        cmocka_unit_test(test_idx_directory_trains),
        cmocka_unit_test(test_bad_idx_magic),
        cmocka_unit_test(test_bad_idx_truncated),
        cmocka_unit_test(test_bad_idx_counts),
        cmocka_unit_test(test_missing_data),
        cmocka_unit_test(test_label_out_of_range),
        cmocka_unit_test(test_checkpoint_of_another_model),
        cmocka_unit_test(test_resume_missing_file),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
