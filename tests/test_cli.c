/* test_cli.c - the command line that every cnn command shares (cli/args.c), through the real
 * binary: --opt=value and --opt value give the same results in every subcommand, and so does a
 * unique prefix; an ambiguous prefix, a typo, a repeated option, a missing value, a value given
 * to a flag and a stray argument are each one line with the same wording and exit status 2; a
 * typo names the option or command that was meant; --version, cnn help and cnn help COMMAND. */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

static char dir[64];

static char *path(char *buf, const char *name) { return tu_join(buf, dir, name); }

static const char MODEL[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\nrelu\nmaxpool2d kernel_size=2\n"
                            "flatten\nlinear out_features=3\n";

static char model_p[512], data_p[512], input_p[512], image_p[512], dash_image_p[512], ckpt_p[512];

/* grad's input: 'input' [2,1,6,6] and 'target' [2]. */
static void make_grad_input(const char *p) {
    float x[72];
    for (int i = 0; i < 72; i++) x[i] = (float)((i * 37) % 11) / 10.0f - 0.5f;
    int64_t y[2] = {2, 0};
    cnn_tensor t[2] = {
        {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {2, 1, 6, 6}, .data = x},
        {.name = "target", .dtype = CNN_I64, .ndim = 1, .shape = {2}, .data = y},
    };
    assert_int_equal(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
}

/* A 6×6 grey PGM with a bright patch. */
static void make_image(const char *p) {
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fprintf(f, "P5\n6 6\n255\n");
    for (int i = 0; i < 36; i++) fputc((i / 6 >= 2 && i / 6 < 4 && i % 6 >= 3 && i % 6 < 5) ? 250 : 20, f);
    fclose(f);
}

/* The run's stdout, copied (clirun's buffer lasts until the next run). */
static char *run_out(const char *const *args) {
    cli_result r;
    cli_run(&r, dir, args);
    cli_expect(&r, 0, NULL);
    char *s = strdup(r.out);
    assert_non_null(s);
    return s;
}

/* stdout without its first line (which names an output path). */
static const char *after_first_line(const char *s) {
    const char *nl = strchr(s, '\n');
    return nl ? nl + 1 : s;
}

static void assert_same_text(const char *what, const char *a, const char *b) {
    if (strcmp(a, b)) fail_msg("%s: the outputs differ:\n--- one\n%.1500s\n--- other\n%.1500s", what, a, b);
}

/* The run failed with status 2 and one line on stderr that holds every string of subs. */
static void expect_usage_error(const char *const *args, const char *const *subs) {
    cli_result r;
    cli_run(&r, dir, args);
    cli_expect(&r, 2, subs);
    const char *nl = strchr(r.err, '\n');
    if (!nl || nl[1]) fail_msg("%.300s\n  stderr is not one line:\n%.1500s", r.cmd, r.err);
    if (strstr(r.err, "usage:")) fail_msg("%.300s\n  prints the usage on an error:\n%.1500s", r.cmd, r.err);
    if (r.out[0]) fail_msg("%.300s\n  prints on stdout on an error:\n%.500s", r.cmd, r.out);
}

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define USAGE_ERROR(args, ...) expect_usage_error((args), ARGV(__VA_ARGS__))

static int setup(void **state) {
    (void)state;
    if (tu_make_temp_dir(dir, "test_cli")) return -1;
    tu_write_text(path(model_p, "model.cnn"), MODEL);
    /* A learnable synthetic data set of 1×6×6 samples in 3 classes (testdata.h). */
    tu_make_dataset(path(data_p, "data.safetensors"), (tu_dataset){.n = 24, .n_test = 12});
    make_grad_input(path(input_p, "in.safetensors"));
    make_image(path(image_p, "digit.pgm"));
    make_image(path(dash_image_p, "-dash.pgm"));
    path(ckpt_p, "trained.safetensors");
    /* The weights that eval and predict read. */
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--batch", "4", "--lr", "0.1",
            "--seed", "3", "--out", ckpt_p);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        fprintf(stderr, "setup: %s failed:\n%s\n", r.cmd, r.err);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* ---- --opt=value, --opt value and a prefix: the same run ------------------------------------- */

static void test_grad_forms(void **state) {
    (void)state;
    char o1[512], o2[512], o3[512];
    path(o1, "grad1.safetensors"), path(o2, "grad2.safetensors"), path(o3, "grad3.safetensors");
    char *a = run_out(ARGV("grad", "--model", model_p, "--init", "5", "--input", input_p, "--out", o1, "--loss",
                           "cross_entropy", "--seed", "2", "--activations"));
    char mo[600], io[600], oo[600];
    snprintf(mo, sizeof mo, "--model=%s", model_p);
    snprintf(io, sizeof io, "--input=%s", input_p);
    snprintf(oo, sizeof oo, "--out=%s", o2);
    char *b = run_out(ARGV("grad", mo, "--init=5", io, oo, "--loss=cross_entropy", "--seed=2", "--activations"));
    char *c = run_out(ARGV("grad", "--mod", model_p, "--ini=5", "--inp", input_p, "--ou", o3, "--lo", "cross_entropy",
                           "--se", "2", "--act"));
    assert_non_null(strstr(a, "loss"));
    assert_same_text("grad: --opt=value", after_first_line(a), after_first_line(b));
    assert_same_text("grad: prefixes", after_first_line(a), after_first_line(c));
    assert_true(tu_same_tensors(o1, o2, " (grad, --opt=value)") > 10);   /* activations included */
    assert_true(tu_same_tensors(o1, o3, " (grad, prefixes)") > 10);
    free(a), free(b), free(c);
}

static void test_gradcheck_forms(void **state) {
    (void)state;
    char mo[600];
    snprintf(mo, sizeof mo, "--model=%s", model_p);
    char *a = run_out(ARGV("gradcheck", "--model", model_p, "--seed", "4", "--batch", "3", "--max-checks", "16",
                           "--eval"));
    char *b = run_out(ARGV("gradcheck", mo, "--seed=4", "--batch=3", "--max-checks=16", "--eval"));
    char *c = run_out(ARGV("gradcheck", "--mo", model_p, "--se=4", "--ba", "3", "--max=16", "--ev"));
    assert_non_null(strstr(a, "batch 3, seed 4"));
    assert_non_null(strstr(a, "eval mode"));
    assert_same_text("gradcheck: --opt=value", a, b);
    assert_same_text("gradcheck: prefixes", a, c);
    free(a), free(b), free(c);
}

static void test_train_forms(void **state) {
    (void)state;
    char o1[512], o2[512], o3[512], mo[600], dd[600], oo[600];
    path(o1, "train1.safetensors"), path(o2, "train2.safetensors"), path(o3, "train3.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--batch", "6", "--optimizer",
            "sgd", "--lr", "0.05", "--momentum", "0.9", "--nesterov", "--weight-decay", "0.001", "--schedule", "step",
            "--step-size", "1", "--gamma", "0.5", "--seed", "7", "--no-shuffle", "--out", o1);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    snprintf(mo, sizeof mo, "--model=%s", model_p);
    snprintf(dd, sizeof dd, "--data=%s", data_p);
    snprintf(oo, sizeof oo, "--out=%s", o2);
    CLI_RUN(&r, dir, "train", mo, dd, "--epochs=2", "--batch=6", "--optimizer=sgd", "--lr=0.05", "--momentum=0.9",
            "--nesterov", "--weight-decay=0.001", "--schedule=step", "--step-size=1", "--gamma=0.5", "--seed=7",
            "--no-shuffle", oo);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    CLI_RUN(&r, dir, "train", "--mod", model_p, "--data", data_p, "--ep=2", "--ba", "6", "--opt", "sgd", "--lr=0.05",
            "--mom", "0.9", "--nes", "--weight-d=0.001", "--schedule", "step", "--step", "1", "--ga=0.5", "--see", "7",
            "--no-s", "--ou", o3);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    assert_true(tu_same_tensors(o1, o2, " (train, --opt=value)") > 4);
    assert_true(tu_same_tensors(o1, o3, " (train, prefixes)") > 4);
    /* and not the same as a run that differs in one option: the options were read */
    char o4[512];
    path(o4, "train4.safetensors");
    CLI_RUN(&r, dir, "train", mo, dd, "--epochs=2", "--batch=6", "--lr=0.05", "--momentum=0.9", "--nesterov",
            "--weight-decay=0.001", "--schedule=step", "--step-size=1", "--gamma=0.5", "--seed=7", "--out", o4);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    cnn_st *a = NULL, *b = NULL;
    assert_int_equal(cnn_st_load(o1, &a), CNN_OK);
    assert_int_equal(cnn_st_load(o4, &b), CNN_OK);
    const cnn_tensor *wa = cnn_st_find(a, "4.weight"), *wb = cnn_st_find(b, "4.weight");
    assert_non_null(wa), assert_non_null(wb);
    assert_true(memcmp(wa->data, wb->data, (size_t)cnn_tensor_numel(wa) * sizeof(float)) != 0);   /* shuffled */
    cnn_st_free(a), cnn_st_free(b);
}

static void test_eval_forms(void **state) {
    (void)state;
    char mo[600], wo[600], dd[600];
    snprintf(mo, sizeof mo, "--model=%s", model_p);
    snprintf(wo, sizeof wo, "--weights=%s", ckpt_p);
    snprintf(dd, sizeof dd, "--data=%s", data_p);
    char *a = run_out(ARGV("eval", "--model", model_p, "--weights", ckpt_p, "--data", data_p, "--split", "train",
                           "--batch", "5"));
    char *b = run_out(ARGV("eval", mo, wo, dd, "--split=train", "--batch=5"));
    char *c = run_out(ARGV("eval", "--m", model_p, "--w", ckpt_p, "--data", data_p, "--sp=train", "--b", "5"));
    assert_non_null(strstr(a, "train split, 24 samples"));
    assert_non_null(strstr(a, "accuracy "));
    assert_same_text("eval: --opt=value", a, b);
    assert_same_text("eval: prefixes", a, c);
    free(a), free(b), free(c);
}

static void test_predict_forms(void **state) {
    (void)state;
    char mo[600], wo[600];
    snprintf(mo, sizeof mo, "--model=%s", model_p);
    snprintf(wo, sizeof wo, "--weights=%s", ckpt_p);
    char *a = run_out(ARGV("predict", "--model", model_p, "--weights", ckpt_p, "--top", "2", "--invert", image_p));
    char *b = run_out(ARGV("predict", image_p, mo, "--invert", wo, "--top=2"));   /* an image before the options */
    char *c = run_out(ARGV("predict", "--mo", model_p, "--we", ckpt_p, "--to=2", "--inv", image_p));
    assert_non_null(strstr(a, "digit.pgm"));
    assert_non_null(strstr(a, "2. "));
    assert_null(strstr(a, "3. "));
    assert_same_text("predict: --opt=value", a, b);
    assert_same_text("predict: prefixes", a, c);
    /* After --, an argument that begins with '-' is an image. */
    char *d = run_out(ARGV("predict", "--model", model_p, "--weights", ckpt_p, "--top", "2", "--invert", "--",
                           dash_image_p));
    assert_non_null(strstr(d, "-dash.pgm"));
    assert_same_text("predict: after --", after_first_line(a), after_first_line(d));
    free(a), free(b), free(c), free(d);
}

static void test_explain_forms(void **state) {
    (void)state;
    char *a = run_out(ARGV("explain", "conv", "--input", "1 2 3; 4 5 6; 7 8 9", "--kernel", "1 -2; 3 4", "--stride",
                           "2", "--padding", "1", "--format", "markdown"));
    char *b = run_out(ARGV("explain", "conv", "--input=1 2 3; 4 5 6; 7 8 9", "--kernel=1 -2; 3 4", "--stride=2",
                           "--padding=1", "--format=markdown"));
    char *c = run_out(ARGV("explain", "conv", "--in", "1 2 3; 4 5 6; 7 8 9", "--k=1 -2; 3 4", "--st", "2", "--pad=1",
                           "--fo", "markdown"));
    assert_non_null(strstr(a, "**agree**"));
    assert_same_text("explain conv: --opt=value", a, b);
    assert_same_text("explain conv: prefixes", a, c);
    free(a), free(b), free(c);
    /* A value that begins with '-' stays a value, in both forms. */
    a = run_out(ARGV("explain", "chain", "--x", "-3", "--y", "-1", "--z", "2"));
    b = run_out(ARGV("explain", "chain", "--x=-3", "--y=-1", "--z=2"));
    assert_non_null(strstr(a, "x = -3, y = -1, z = 2"));
    assert_same_text("explain chain: --opt=value", a, b);
    free(a), free(b);
    /* explain network, on a model file */
    char mo[600];
    snprintf(mo, sizeof mo, "--model=%s", model_p);
    a = run_out(ARGV("explain", "network", "--model", model_p, "--init", "2", "--seed", "5", "--target", "1", "--mode",
                     "eval"));
    b = run_out(ARGV("explain", "network", mo, "--init=2", "--seed=5", "--target=1", "--mode=eval"));
    assert_same_text("explain network: --opt=value", a, b);
    free(a), free(b);
    /* the aliases of explain residual and explain maxpool */
    a = run_out(ARGV("explain", "residual", "--input", "1 -2; 3 4", "--weight", "0.5", "--bias", "0", "--dy", "1 1; 1 2"));
    b = run_out(ARGV("explain", "residual", "--x=1 -2; 3 4", "--w=0.5", "--b=0", "--grad-output=1 1; 1 2"));
    assert_same_text("explain residual: aliases", a, b);
    free(a), free(b);
    a = run_out(ARGV("explain", "maxpool", "--grad-output", "1 2; 3 4"));
    b = run_out(ARGV("explain", "maxpool", "--delta=1 2; 3 4"));
    assert_same_text("explain maxpool: --delta", a, b);
    free(a), free(b);
}

/* ---- errors: one line, the same wording, exit status 2 ------------------------------------ */

static void test_option_typo(void **state) {
    (void)state;
    USAGE_ERROR(ARGV("train", "--model", model_p, "--data", data_p, "--epohcs", "2"),
                "cnn train: unknown option '--epohcs'; did you mean '--epochs'? (cnn help train for the options)");
    USAGE_ERROR(ARGV("train", "--model", model_p, "--data", data_p, "--weight_decay=0.1"),
                "cnn train: unknown option '--weight_decay'; did you mean '--weight-decay'?");
    USAGE_ERROR(ARGV("eval", "--model", model_p, "--wieghts", ckpt_p, "--data", data_p),
                "cnn eval: unknown option '--wieghts'; did you mean '--weights'? (cnn help eval for the options)");
    USAGE_ERROR(ARGV("predict", "--model", model_p, "--weights", ckpt_p, "--tpo", "2", image_p),
                "cnn predict: unknown option '--tpo'; did you mean '--top'?");
    USAGE_ERROR(ARGV("grad", "--model", model_p, "--init", "1", "--input", input_p, "--out", "x", "--activatoins"),
                "cnn grad: unknown option '--activatoins'; did you mean '--activations'?");
    USAGE_ERROR(ARGV("gradcheck", "--model", model_p, "--max-chekcs", "3"),
                "cnn gradcheck: unknown option '--max-chekcs'; did you mean '--max-checks'?");
    USAGE_ERROR(ARGV("explain", "conv", "--kernal", "1"),
                "cnn explain conv: unknown option '--kernal'; did you mean '--kernel'? "
                "(cnn help explain conv for the options)");
    /* a single dash for a long name */
    USAGE_ERROR(ARGV("gradcheck", "-model", model_p), "cnn gradcheck: unknown option '-model'; did you mean '--model'?");
    /* nothing near: no suggestion */
    cli_result r;
    CLI_RUN(&r, dir, "gradcheck", "--model", model_p, "--frobnicate", "1");
    CLI_EXPECT(&r, 2, "cnn gradcheck: unknown option '--frobnicate' (cnn help gradcheck for the options)");
    assert_null(strstr(r.err, "did you mean"));
}

static void test_command_typo(void **state) {
    (void)state;
    USAGE_ERROR(ARGV("trian"), "cnn: unknown command 'trian'; did you mean 'train'? (cnn help for the commands)");
    USAGE_ERROR(ARGV("evla", "--model", model_p), "cnn: unknown command 'evla'; did you mean 'eval'?");
    USAGE_ERROR(ARGV("gradchek"), "did you mean 'gradcheck'?");
    USAGE_ERROR(ARGV("help", "predcit"), "cnn help: unknown command 'predcit'; did you mean 'predict'?");
    USAGE_ERROR(ARGV("explain", "cnov"), "cnn explain: unknown topic 'cnov'; did you mean 'conv'?");
    USAGE_ERROR(ARGV("--verison"), "cnn: unknown option '--verison'; did you mean '--version'?");
    cli_result r;
    CLI_RUN(&r, dir, "frobnicate");
    CLI_EXPECT(&r, 2, "cnn: unknown command 'frobnicate' (cnn help for the commands)");
}

static void test_ambiguous_prefix(void **state) {
    (void)state;
    USAGE_ERROR(ARGV("train", "--model", model_p, "--data", data_p, "--s", "1"),
                "cnn train: option '--s' is ambiguous: ", "--schedule", "--step-size", "--seed",
                "(cnn help train for the options)");
    USAGE_ERROR(ARGV("eval", "--model", model_p, "--weights", ckpt_p, "--dat", data_p),
                "cnn eval: option '--dat' is ambiguous: --data, --data-dir");
    USAGE_ERROR(ARGV("grad", "--in=1"), "cnn grad: option '--in' is ambiguous: --init, --input");
    USAGE_ERROR(ARGV("explain", "batchnorm", "--g", "1"), "option '--g' is ambiguous: --gamma, --grad-output");
    /* the full name of an option that begins another is exact, not ambiguous */
    char *a = run_out(ARGV("eval", "--model", model_p, "--weights", ckpt_p, "--data", data_p));
    assert_non_null(strstr(a, "accuracy "));
    free(a);
    /* a prefix of an alias is the alias: --del is --delta, which is --grad-output */
    a = run_out(ARGV("explain", "maxpool", "--del", "1 2; 3 4"));
    char *b = run_out(ARGV("explain", "maxpool", "--grad-output", "1 2; 3 4"));
    assert_same_text("explain maxpool: --del", a, b);
    free(a), free(b);
}

static void test_repeated_option(void **state) {
    (void)state;
    USAGE_ERROR(ARGV("train", "--model", model_p, "--data", data_p, "--lr", "0.1", "--lr=0.2"),
                "cnn train: option --lr given twice (cnn help train for the options)");
    USAGE_ERROR(ARGV("grad", "--eval", "--model", model_p, "--eval"), "cnn grad: option --eval given twice");
    USAGE_ERROR(ARGV("predict", "--top", "1", "--to", "2", image_p), "cnn predict: option --top given twice");
    USAGE_ERROR(ARGV("explain", "residual", "--x", "1", "--input", "2"),
                "cnn explain residual: option --input given twice (also as --x)");
    USAGE_ERROR(ARGV("explain", "chain", "--format", "text", "--format", "text"),
                "cnn explain chain: option --format given twice");
}

static void test_values_and_arguments(void **state) {
    (void)state;
    USAGE_ERROR(ARGV("gradcheck", "--model"), "cnn gradcheck: option --model needs a value (cnn help gradcheck for the options)");
    USAGE_ERROR(ARGV("eval", "--model=m.cnn", "--weights"), "cnn eval: option --weights needs a value");
    USAGE_ERROR(ARGV("train", "--model", model_p, "--data", data_p, "--nesterov=1"),
                "cnn train: option --nesterov takes no value");
    USAGE_ERROR(ARGV("train", "--model", model_p, "--data", data_p, "stray"),
                "cnn train: unexpected argument 'stray' (cnn help train for the options)");
    USAGE_ERROR(ARGV("gradcheck", "--model", model_p, "--", "--eval"), "cnn gradcheck: unexpected argument '--eval'");
    USAGE_ERROR(ARGV("train", "--data", data_p), "cnn train: --model and --data are required (cnn help train");
    USAGE_ERROR(ARGV("predict", "--model", model_p, "--weights", ckpt_p), "cnn predict: ", "at least one IMAGE",
                "(cnn help predict for the options)");
    USAGE_ERROR(ARGV("explain", "network"), "cnn explain network: --model is required (cnn help explain network");
    /* A bad value: the option, the value and what was expected. */
    USAGE_ERROR(ARGV("train", "--model", model_p, "--data", data_p, "--epochs", "0"),
                "cnn train: --epochs 0: expected a whole number from 1 to 100000");
    USAGE_ERROR(ARGV("train", "--model", model_p, "--data", data_p, "--lr=-1"), "cnn train: --lr -1: expected a number >= 0");
    USAGE_ERROR(ARGV("train", "--model", model_p, "--data", data_p, "--optimizer", "adm"),
                "cnn train: --optimizer adm: expected sgd, adam or adamw; did you mean 'adam'?");
    USAGE_ERROR(ARGV("eval", "--model", model_p, "--weights", ckpt_p, "--data", data_p, "--split=valid"),
                "cnn eval: --split valid: expected test or train");
    USAGE_ERROR(ARGV("gradcheck", "--model", model_p, "--batch=65"), "cnn gradcheck: --batch 65: expected a whole number from 1 to 64");
    /* --help wins where it comes, and -h is --help */
    char *a = run_out(ARGV("train", "--help"));
    char *b = run_out(ARGV("train", "-h"));
    char *c = run_out(ARGV("train", "--he"));
    assert_same_text("train -h", a, b);
    assert_same_text("train --he", a, c);
    free(a), free(b), free(c);
}

/* ---- --version and help ------------------------------------------------------------------------ */

static void test_version(void **state) {
    (void)state;
    char want[64];
    snprintf(want, sizeof want, "cnn %s\n", cnn_version());
    char *a = run_out(ARGV("--version"));
    assert_string_equal(a, want);
    free(a);
    char macros[64];
    snprintf(macros, sizeof macros, "%d.%d.%d", CNN_VERSION_MAJOR, CNN_VERSION_MINOR, CNN_VERSION_PATCH);
    assert_string_equal(cnn_version(), macros);
    USAGE_ERROR(ARGV("--version", "train"), "cnn: unexpected argument 'train'");
}

/* The GOMP_SPINCOUNT that libgomp's threads run with, from its OMP_DISPLAY_ENV=verbose report on
 * stderr (the last one: cnn starts itself again once to set it, src/base/omp_spin.h). */
static long spin_count_of_run(const char *const *env) {
    char dir[] = "/tmp/cnn_test_spin_XXXXXX", out[128], err[128];
    assert_non_null(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    const char *argv[] = {cli_bin(), "--version", NULL};
    const int ws = cli_run_program(argv, NULL, out, err, env, "cnn --version");
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    static char buf[1 << 16];
    const char *text = cli_read_file(err, buf, sizeof buf), *last = NULL;
    for (const char *p = text; (p = strstr(p, "GOMP_SPINCOUNT = '")); p++) last = p;
    unlink(out), unlink(err), rmdir(dir);
    if (!last) fail_msg("no GOMP_SPINCOUNT in libgomp's report:\n%.2000s", text);
    return strtol(last + strlen("GOMP_SPINCOUNT = '"), NULL, 10);
}

/* OpenMP's threads spin 10,000 rounds at a barrier, not libgomp's 300,000, unless the user chose. */
static void test_omp_spin(void **state) {
    (void)state;
    const char *plain[] = {"OMP_DISPLAY_ENV", "verbose", "OMP_WAIT_POLICY", "", "GOMP_SPINCOUNT", "", NULL};
    assert_int_equal(spin_count_of_run(plain), 10000);
    const char *own[] = {"OMP_DISPLAY_ENV", "verbose", "OMP_WAIT_POLICY", "", "GOMP_SPINCOUNT", "5000", NULL};
    assert_int_equal(spin_count_of_run(own), 5000);
}

static void test_help(void **state) {
    (void)state;
    const char *commands[] = {"grad", "gradcheck", "train", "eval", "predict", "explain"};
    char *all = run_out(ARGV("help"));
    char *dashes = run_out(ARGV("--help"));
    assert_same_text("cnn help", all, dashes);
    assert_non_null(strstr(all, "cnn --version"));
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        char line[64];
        snprintf(line, sizeof line, "\n  %s ", commands[i]);
        if (!strstr(all, line)) fail_msg("cnn help does not list %s:\n%s", commands[i], all);
        char *h = run_out(ARGV("help", commands[i]));
        char *d = run_out(ARGV(commands[i], "--help"));
        assert_same_text(commands[i], h, d);
        char usage[64];
        snprintf(usage, sizeof usage, "usage: cnn %s", commands[i]);
        if (strncmp(h, usage, strlen(usage))) fail_msg("cnn help %s does not begin with '%s':\n%.500s", commands[i], usage, h);
        free(h), free(d);
    }
    free(all), free(dashes);
    /* train's help: its usage, every option with a line of its own, the example */
    char *t = run_out(ARGV("help", "train"));
    const char *opts[] = {"--model NET.cnn", "--epochs E", "--lr LR", "--nesterov", "--no-shuffle", "--checkpoint-every N",
                          "-h, --help", "example:"};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        if (!strstr(t, opts[i])) fail_msg("cnn help train lacks '%s':\n%s", opts[i], t);
    free(t);
    /* an explain topic */
    char *h = run_out(ARGV("help", "explain", "conv"));
    char *d = run_out(ARGV("explain", "conv", "--help"));
    assert_same_text("explain conv", h, d);
    assert_non_null(strstr(h, "usage: cnn explain conv"));
    free(h), free(d);
    /* and bare cnn: the commands, on stderr, status 2 */
    cli_result r;
    cli_run(&r, dir, (const char *const[]){NULL});
    CLI_EXPECT(&r, 2, "usage: cnn COMMAND", "commands:");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_forms),        cmocka_unit_test(test_gradcheck_forms),
        cmocka_unit_test(test_train_forms),       cmocka_unit_test(test_eval_forms),
        cmocka_unit_test(test_predict_forms),     cmocka_unit_test(test_explain_forms),
        cmocka_unit_test(test_option_typo),       cmocka_unit_test(test_command_typo),
        cmocka_unit_test(test_ambiguous_prefix),  cmocka_unit_test(test_repeated_option),
        cmocka_unit_test(test_values_and_arguments), cmocka_unit_test(test_version),
        cmocka_unit_test(test_help), cmocka_unit_test(test_omp_spin),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
