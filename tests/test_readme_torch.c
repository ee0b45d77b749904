/* test_readme_torch.c - the README's "Use from PyTorch" snippet runs as written and predicts what
 * `cnn predict` predicts.
 *
 * The test takes the python block that follows the marker comment in README.md, trains LeNet-5
 * (models/lenet5.cnn) with `cnn train` for a few epochs on a small synthetic data set of 1x28x28
 * images, writes the weights with `cnn export` under the name the snippet reads, and makes ten new
 * images twice over: as PGM files for `cnn predict`, and as the `input` tensor of the snippet's
 * digits.safetensors, with the same values (the byte / 255, as cnn_image_load scales it; a data set
 * from a .safetensors file is not normalised). It then runs the snippet with /usr/bin/python3 in a
 * directory that holds those files and a link to tools/ (the snippet imports
 * tools/safetensors_file.py), so the snippet's nn.Sequential must take the exported file with
 * load_state_dict(strict=True), and its printed classes must equal `cnn predict`'s, image by image.
 * python3-torch is needed (make test installs it): without it this test fails, it does not skip.
 * The test runs from the repository root, as tests/run.sh runs it. */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <sys/stat.h>

#define PYTHON "/usr/bin/python3"
#define MARKER "<!-- test_readme_torch:"
#define TRAIN_N 100
#define IMAGES 10

static char dir[64];

static char *path(char *buf, const char *name) { return tu_join(buf, dir, name); }

static int setup(void **state) {
    (void)state;
    return tu_make_temp_dir(dir, "test_readme_torch");
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* The python block after README.md's marker, into `out` (NUL-terminated). */
static void readme_snippet(char *out, size_t cap) {
    static char readme[1 << 18];
    FILE *f = fopen("README.md", "rb");
    if (!f) fail_msg("cannot open README.md (run the test from the repository root): %s", strerror(errno));
    const size_t n = fread(readme, 1, sizeof readme - 1, f);
    fclose(f);
    readme[n] = '\0';
    const char *m = strstr(readme, MARKER);
    if (!m) fail_msg("README.md has no '%s' marker before the PyTorch snippet", MARKER);
    const char *open = strstr(m, "```python\n");
    if (!open) fail_msg("README.md has no ```python block after its '%s' marker", MARKER);
    open += strlen("```python\n");
    const char *close = strstr(open, "\n```");
    if (!close) fail_msg("README.md's PyTorch snippet is not closed with ```");
    if ((size_t)(close - open) + 2 > cap) fail_msg("README.md's PyTorch snippet is too long for the test");
    memcpy(out, open, (size_t)(close - open));
    out[close - open] = '\n';
    out[close - open + 1] = '\0';
}

static uint64_t next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* One image of class k as bytes: dark noise and a bright 5x5 patch at a k-dependent place. */
static void draw(uint8_t img[28 * 28], int k, uint64_t *s) {
    for (int j = 0; j < 28 * 28; j++) img[j] = (uint8_t)(next(s) % 60);
    const int r = 2 + (k % 5) * 5, c = 3 + (k / 5) * 12 + (k % 3) * 2;
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++) img[(r + a) * 28 + c + b] = (uint8_t)(200 + next(s) % 56);
}

/* Bytes to what cnn_image_load gives for them: byte / 255 in double, rounded to float. */
static void to_floats(const uint8_t *img, float *x) {
    for (int j = 0; j < 28 * 28; j++) x[j] = (float)(img[j] / 255.0);
}

static void make_training_set(const char *p) {
    float *x = calloc((size_t)TRAIN_N * 28 * 28, sizeof *x);
    int64_t *y = calloc(TRAIN_N, sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    uint64_t s = 2024;
    uint8_t img[28 * 28];
    for (int i = 0; i < TRAIN_N; i++) {
        y[i] = i % 10;
        draw(img, (int)y[i], &s);
        to_floats(img, x + (size_t)i * 28 * 28);
    }
    cnn_tensor t[2] = {
        {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {TRAIN_N, 1, 28, 28}, .data = x},
        {.name = "target", .dtype = CNN_I64, .ndim = 1, .shape = {TRAIN_N}, .data = y},
    };
    assert_int_equal(cnn_st_save(p, t, 2, NULL, 0), CNN_OK);
    free(x);
    free(y);
}

/* IMAGES new images: dir/img<i>.pgm (binary PGM) and dir/digits.safetensors (`input`). */
static void make_images(char names[IMAGES][512]) {
    static float x[IMAGES * 28 * 28];
    uint64_t s = 777;
    uint8_t img[28 * 28];
    for (int i = 0; i < IMAGES; i++) {
        draw(img, (i * 3) % 10, &s);
        to_floats(img, x + (size_t)i * 28 * 28);
        char file[32];
        snprintf(file, sizeof file, "img%d.pgm", i);
        path(names[i], file);
        FILE *f = fopen(names[i], "wb");
        assert_non_null(f);
        fprintf(f, "P5\n28 28\n255\n");
        assert_int_equal(fwrite(img, 1, sizeof img, f), sizeof img);
        assert_int_equal(fclose(f), 0);
    }
    char p[512];
    cnn_tensor t = {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {IMAGES, 1, 28, 28}, .data = x};
    assert_int_equal(cnn_st_save(path(p, "digits.safetensors"), &t, 1, NULL, 0), CNN_OK);
}

/* `cnn predict --top 1`'s class for each image, in order: the number after each "1." line. */
static int predict_classes(const char *out, int *cls, int cap) {
    int n = 0;
    for (const char *line = out; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : line + strlen(line)) {
        int rank, k;
        if (sscanf(line, " %d. %d", &rank, &k) == 2 && rank == 1 && n < cap) cls[n++] = k;
    }
    return n;
}

static void test_readme_snippet_predicts_as_cnn(void **state) {
    (void)state;
    static char snippet[1 << 14];
    readme_snippet(snippet, sizeof snippet);
    if (!strstr(snippet, "load_state_dict(") || !strstr(snippet, "strict=True") ||
        !strstr(snippet, "lenet5-weights.safetensors") || !strstr(snippet, "digits.safetensors"))
        fail_msg("README.md's PyTorch snippet should load lenet5-weights.safetensors strictly and read "
                 "digits.safetensors:\n%s", snippet);
    char script[512], data[512], ck[512], weights[512], tools[512], link[512], out[512], err[512];
    tu_write_bytes(path(script, "snippet.py"), snippet, strlen(snippet));
    char cwd[400];
    if (!getcwd(cwd, sizeof cwd)) fail_msg("getcwd: %s", strerror(errno));
    snprintf(tools, sizeof tools, "%s/tools", cwd);   /* the snippet's sys.path entry, "tools" */
    if (symlink(tools, path(link, "tools"))) fail_msg("symlink %s: %s", link, strerror(errno));

    make_training_set(path(data, "train.safetensors"));
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", "models/lenet5.cnn", "--data", data, "--epochs", "4", "--batch", "10",
            "--optimizer", "adam", "--lr", "0.003", "--init", "1", "--out", path(ck, "lenet5.safetensors"));
    CLI_EXPECT(&r, 0, "epoch 4/4");
    CLI_RUN(&r, dir, "export", "--weights", ck, "--out", path(weights, "lenet5-weights.safetensors"));
    cli_expect(&r, 0, NULL);

    static char names[IMAGES][512];
    make_images(names);
    const char *args[IMAGES + 8] = {"predict", "--model", "models/lenet5.cnn", "--weights", weights, "--top", "1"};
    for (int i = 0; i < IMAGES; i++) args[7 + i] = names[i];
    args[7 + IMAGES] = NULL;
    cli_run(&r, dir, args);
    cli_expect(&r, 0, NULL);
    int cnn_cls[IMAGES];
    if (predict_classes(r.out, cnn_cls, IMAGES) != IMAGES)
        fail_msg("cnn predict did not give a class for each of %d images:\n%.2000s", IMAGES, r.out);

    /* No __pycache__ in the repository's tools/, and torch on one thread. */
    const char *const py[] = {PYTHON, "snippet.py", NULL};
    const char *const env[] = {"PYTHONDONTWRITEBYTECODE", "1", "OMP_NUM_THREADS", "1", NULL};
    const int ws = cli_run_program(py, dir, path(out, "snippet.out"), path(err, "snippet.err"), env, NULL);
    static char text[1 << 16], errs[1 << 16];
    cli_read_file(out, text, sizeof text);
    cli_read_file(err, errs, sizeof errs);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        fail_msg("%s README.md's PyTorch snippet %s (python3-torch is needed; make test installs it):\n%s%s", PYTHON,
                 WIFEXITED(ws) ? "failed" : "was killed", errs, text);
    const char *list = strrchr(text, '[');
    int torch_cls[IMAGES], n = 0;
    for (const char *p = list ? list + 1 : NULL; p && n < IMAGES;) {
        char *end;
        const long v = strtol(p, &end, 10);
        if (end == p) break;
        torch_cls[n++] = (int)v;
        p = end + strspn(end, ", ");
    }
    if (n != IMAGES) fail_msg("the snippet printed no list of %d classes:\n%s", IMAGES, text);

    int distinct = 0, seen[10] = {0};
    for (int i = 0; i < IMAGES; i++) {
        if (torch_cls[i] != cnn_cls[i])
            fail_msg("image %d: PyTorch predicts %d, cnn predict %d\nPyTorch: %scnn predict:\n%.2000s", i, torch_cls[i],
                     cnn_cls[i], text, r.out);
        if (cnn_cls[i] >= 0 && cnn_cls[i] < 10 && !seen[cnn_cls[i]]++) distinct++;
    }
    /* A trained net tells the classes apart; agreeing on one class for everything would prove little. */
    if (distinct < 5) fail_msg("only %d distinct classes predicted for %d images: the net did not learn", distinct,
                               IMAGES);
    print_message("PyTorch and cnn predict agree on %d images (%d distinct classes): %s", IMAGES, distinct, text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_snippet_predicts_as_cnn),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
