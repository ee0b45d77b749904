/* cnn predict on real-looking images, cnn eval's per-class figures and --json, and the model and
 * data both take from the checkpoint.
 *
 * Setup draws a tiny MNIST-like data set: 28×28 white strokes on black in three classes, the
 * digits 0 (an ellipse), 1 (a vertical bar) and 7 (a bar and a diagonal), at random offsets, sizes
 * and stroke widths, written as IDX files in <tmp>/mnist, so that `cnn train --data mnist
 * --data-dir <tmp>` trains on it as MNIST (its normalisation, its class names, "data": "mnist" in
 * the checkpoint, hence the dark-background rule of predict). Every tenth test sample carries a
 * wrong label, so that the confusion matrix has errors off the diagonal for precision and recall.
 *
 * The test images are drawn by the same function at other sizes (resized by cnn_image_load), the
 * way people write digits: black ink on a transparent background (RGBA PNG, the transparent
 * pixels black too, so that ignoring alpha would give a black square), and dark ink on light
 * paper (RGB JPEG with noise; a grey PNG and its exact negative for the --invert/--no-invert
 * identities). */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <jansson.h>
#include <math.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>

static char dir[64];
static char model_p[512], ckpt_p[512], idx_ckpt_p[512], plain_w[512], imgs_d[512], empty_d[512];

static char *path(char *buf, const char *name) { return tu_join(buf, dir, name); }

static const char MODEL[] = "input 1 28 28\nconv2d out_channels=4 kernel_size=5 padding=2\nrelu\n"
                            "maxpool2d kernel_size=4\nflatten\nlinear out_features=10\n";

/* ---- drawing ------------------------------------------------------------------------------- */

static double seg_dist(double u, double v, double u0, double v0, double u1, double v1) {
    const double du = u1 - u0, dv = v1 - v0;
    double t = ((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return hypot(u - (u0 + t * du), v - (v0 + t * dv));
}

/* Distance from (u, v) in the digit's unit box to the digit's centre line. */
static double digit_dist(int digit, double u, double v) {
    if (digit == 0) {
        const double rx = 0.3, ry = 0.42, du = (u - 0.5) / rx, dv = (v - 0.5) / ry;
        return fabs(sqrt(du * du + dv * dv) - 1.0) * rx;
    }
    if (digit == 1) return seg_dist(u, v, 0.5, 0.05, 0.5, 0.95);
    const double a = seg_dist(u, v, 0.15, 0.1, 0.85, 0.1), b = seg_dist(u, v, 0.85, 0.1, 0.45, 0.95);
    return a < b ? a : b;
}

/* ink[S×S] in [0,1]: the digit in a 20×20 box (times `scale`) centred in a 28×28 frame, shifted by
 * (dx, dy) and with strokes `thick` wide, in units of the 28-pixel frame; antialiased. */
static void draw(double *ink, int S, int digit, double dx, double dy, double scale, double thick) {
    const double box = 20.0 * scale, px = 28.0 / S;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            const double X = (x + 0.5) * px, Y = (y + 0.5) * px;
            const double u = (X - 14.0 - dx) / box + 0.5, v = (Y - 14.0 - dy) / box + 0.5;
            const double d = digit_dist(digit, u, v) * box; /* in frame pixels */
            double c = (thick / 2 - d) / px + 0.5;
            ink[y * S + x] = c < 0 ? 0 : c > 1 ? 1 : c;
        }
}

static uint64_t rng = 88172645463325252ull;
static double uniform(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static const int DIGITS[3] = {0, 1, 7};

static void write_idx(const char *p, int type_dims, const uint32_t *dims, const uint8_t *data, size_t len) {
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    const uint8_t magic[4] = {0, 0, 8, (uint8_t)type_dims};
    fwrite(magic, 1, 4, f);
    for (int i = 0; i < type_dims; i++) {
        const uint8_t be[4] = {(uint8_t)(dims[i] >> 24), (uint8_t)(dims[i] >> 16), (uint8_t)(dims[i] >> 8),
                               (uint8_t)dims[i]};
        fwrite(be, 1, 4, f);
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

#define N_TRAIN 300
#define N_TEST 60

/* Writes the four IDX files of n_train + n_test random digits into directory d. */
static void write_digits(const char *d) {
    mkdir(d, 0700);
    static uint8_t px[(N_TRAIN + N_TEST) * 784], lab[N_TRAIN + N_TEST];
    static double ink[784];
    for (int i = 0; i < N_TRAIN + N_TEST; i++) {
        const int k = i % 3;
        draw(ink, 28, DIGITS[k], 4 * uniform() - 2, 4 * uniform() - 2, 0.85 + 0.25 * uniform(), 2 + 1.5 * uniform());
        for (int j = 0; j < 784; j++) px[(size_t)i * 784 + j] = (uint8_t)lround(255 * ink[j]);
        lab[i] = (uint8_t)DIGITS[k];
        if (i >= N_TRAIN && (i - N_TRAIN) % 10 == 9) lab[i] = (uint8_t)DIGITS[(k + 1) % 3]; /* a wrong label */
    }
    char p[600];
    const uint32_t tr[3] = {N_TRAIN, 28, 28}, te[3] = {N_TEST, 28, 28}, trl[1] = {N_TRAIN}, tel[1] = {N_TEST};
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", d);
    write_idx(p, 3, tr, px, (size_t)N_TRAIN * 784);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", d);
    write_idx(p, 1, trl, lab, N_TRAIN);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", d);
    write_idx(p, 3, te, px + (size_t)N_TRAIN * 784, (size_t)N_TEST * 784);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", d);
    write_idx(p, 1, tel, lab + N_TRAIN, N_TEST);
}

/* The test images of `digit`, drawn upright and centred:
 *   ink_D.png    S=56 RGBA: black ink, alpha = ink, every pixel's colour black;
 *   paper_D.jpg  S=84 RGB: dark blue-grey ink on cream paper with noise, quality 90;
 *   paper_D.png  S=56 grey: ink 30 on paper 225 (lossless), and dark_D.png its negative. */
static void write_test_images(const char *d, int digit) {
    static double ink[84 * 84];
    static unsigned char rgba[56 * 56 * 4], rgb[84 * 84 * 3], grey[56 * 56], neg[56 * 56];
    char p[600];
    draw(ink, 56, digit, 0, 0, 1.0, 2.8);
    for (int i = 0; i < 56 * 56; i++) {
        rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = 0;
        rgba[4 * i + 3] = (unsigned char)lround(255 * ink[i]);
        grey[i] = (unsigned char)lround(225 - 195 * ink[i]);
        neg[i] = (unsigned char)(255 - grey[i]);
    }
    snprintf(p, sizeof p, "%s/ink_%d.png", d, digit);
    assert_true(stbi_write_png(p, 56, 56, 4, rgba, 56 * 4));
    snprintf(p, sizeof p, "%s/paper_%d.png", d, digit);
    assert_true(stbi_write_png(p, 56, 56, 1, grey, 56));
    snprintf(p, sizeof p, "%s/dark_%d.png", d, digit);
    assert_true(stbi_write_png(p, 56, 56, 1, neg, 56));
    draw(ink, 84, digit, 0, 0, 1.0, 2.8);
    const double paper[3] = {236, 230, 212}, pen[3] = {35, 40, 70};
    for (int i = 0; i < 84 * 84; i++)
        for (int c = 0; c < 3; c++) {
            const double v = paper[c] + ink[i] * (pen[c] - paper[c]) + 12 * (uniform() - 0.5);
            rgb[3 * i + c] = (unsigned char)lround(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    snprintf(p, sizeof p, "%s/paper_%d.jpg", d, digit);
    assert_true(stbi_write_jpg(p, 84, 84, 3, rgb, 90));
}

static int setup(void **state) {
    (void)state;
    if (tu_make_temp_dir(dir, "test_predict")) return -1;
    char p[600];
    tu_write_bytes(path(model_p, "model.cnn"), MODEL, strlen(MODEL));
    write_digits(path(p, "mnist"));
    rng = 88172645463325252ull; /* the same digits again, as "Fashion-MNIST" for the mismatch */
    write_digits(path(p, "fashion-mnist"));
    for (int k = 0; k < 3; k++) write_test_images(dir, DIGITS[k]);

    /* A directory of three images (two kinds), a text file and a directory named like an image. */
    path(imgs_d, "imgs");
    mkdir(imgs_d, 0700);
    for (int k = 0; k < 3; k++) {
        char from[600], to[600];
        const char *name = k == 1 ? "paper_1.jpg" : k == 0 ? "ink_0.png" : "ink_7.png";
        snprintf(from, sizeof from, "%s/%s", dir, name);
        snprintf(to, sizeof to, "%s/%s", imgs_d, name);
        if (link(from, to)) return -1;
    }
    snprintf(p, sizeof p, "%s/notes.txt", imgs_d);
    tu_write_bytes(p, "not an image\n", 13);
    snprintf(p, sizeof p, "%s/sub.png", imgs_d);
    mkdir(p, 0700);
    path(empty_d, "empty");
    mkdir(empty_d, 0700);

    /* Train on the digits as MNIST; and once on the directory itself (a data set of kind idx). */
    cli_result r;
    path(ckpt_p, "digits.safetensors");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", "mnist", "--data-dir", dir, "--epochs", "4", "--batch",
            "10", "--optimizer", "adam", "--lr", "0.01", "--seed", "3", "--out", ckpt_p);
    CLI_EXPECT(&r, 0, "epoch 4/4");
    char d[512];
    path(idx_ckpt_p, "idx.safetensors");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", path(d, "mnist"), "--epochs", "1", "--batch", "50",
            "--out", idx_ckpt_p);
    CLI_EXPECT(&r, 0, "epoch 1/1");

    /* The trained weights without the metadata (no model text, no data set), as PyTorch writes them. */
    cnn_st *st;
    if (cnn_st_load(ckpt_p, &st)) return -1;
    const int n = cnn_st_count(st);
    cnn_tensor t[64];
    assert_true(n <= 64);
    for (int i = 0; i < n; i++) t[i] = *cnn_st_tensor(st, i);
    const cnn_status s = cnn_st_save(path(plain_w, "plain.safetensors"), t, n, NULL, 0);
    cnn_st_free(st);
    return s ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* ---- helpers ------------------------------------------------------------------------------- */

#define ASSERT_HAS(text, sub)                                                                   \
    do {                                                                                        \
        if (!strstr((text), (sub))) fail_msg("\"%s\" not in:\n%.3000s", (sub), (text));         \
    } while (0)
#define ASSERT_LACKS(text, sub)                                                                 \
    do {                                                                                        \
        if (strstr((text), (sub))) fail_msg("\"%s\" unexpected in:\n%.3000s", (sub), (text));   \
    } while (0)

/* The JSON Lines of predict --json: one object per line, `n` of them, into objs (json_decref each). */
static void parse_lines(const char *out, json_t **objs, int n) {
    const char *at = out;
    for (int i = 0; i < n; i++) {
        const char *nl = strchr(at, '\n');
        if (!nl) fail_msg("line %d missing in:\n%.2000s", i + 1, out);
        json_error_t e;
        objs[i] = json_loadb(at, (size_t)(nl - at), 0, &e);
        if (!json_is_object(objs[i])) fail_msg("line %d is not a JSON object (%s):\n%.*s", i + 1, e.text, (int)(nl - at), at);
        at = nl + 1;
    }
    if (*at) fail_msg("more than %d lines:\n%.2000s", n, out);
}

static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) fail_msg("\"%s\" is not a string", key);
    return json_string_value(v);
}

static double jnum(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) fail_msg("\"%s\" is not a number", key);
    return json_number_value(v);
}

/* p[10]: the probability of each class from an object's "top" (which must hold all 10). */
static void probabilities(json_t *o, double *p) {
    json_t *top = json_object_get(o, "top");
    assert_true(json_is_array(top));
    assert_int_equal(json_array_size(top), 10);
    for (int k = 0; k < 10; k++) p[k] = -1;
    for (size_t i = 0; i < 10; i++) {
        json_t *e = json_array_get(top, i);
        const int k = (int)jnum(e, "class");
        assert_true(k >= 0 && k < 10);
        p[k] = jnum(e, "probability");
    }
    for (int k = 0; k < 10; k++) assert_true(p[k] >= 0);
}

static void assert_same_probabilities(const double *a, const double *b, const char *what) {
    for (int k = 0; k < 10; k++)
        if (fabs(a[k] - b[k]) > 1e-5) fail_msg("%s: class %d: %.9g vs %.9g", what, k, a[k], b[k]);
}

/* ---- predict ------------------------------------------------------------------------------- */

/* Black ink on a transparent PNG and dark ink on light paper (JPEG): the right digit with no
 * option but the weights, each with the line that says it was inverted. */
static void test_real_images_right_digit(void **state) {
    (void)state;
    for (int k = 0; k < 3; k++) {
        const int digit = DIGITS[k];
        for (int kind = 0; kind < 2; kind++) {
            char img[600], want[64];
            snprintf(img, sizeof img, "%s/%s_%d.%s", dir, kind ? "paper" : "ink", digit, kind ? "jpg" : "png");
            cli_result r;
            CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--top", "2", img);
            cli_expect(&r, 0, NULL);
            snprintf(want, sizeof want, "\n  1. %d ", digit);
            ASSERT_HAS(r.out, want);
            ASSERT_HAS(r.out, "\n  inverted: light background (mean border ");
            ASSERT_HAS(r.out, "); --no-invert to keep it\n");
            /* Composited over white, the transparent PNG's border is exactly white. */
            if (!kind) ASSERT_HAS(r.out, "(mean border 1.00)");
            const char *m = strstr(r.out, "(mean border ");
            const double border = strtod(m + strlen("(mean border "), NULL);
            if (kind && !(border > 0.85 && border < 0.95)) fail_msg("%s: border mean %g, expected about 0.90", img, border);
            /* The block: the path, the inverted line, then the two rows. */
            char head[700];
            snprintf(head, sizeof head, "%s\n  inverted: ", img);
            if (strncmp(r.out, head, strlen(head))) fail_msg("block starts:\n%.300s", r.out);
            assert_string_equal(r.err, "");
        }
    }
}

/* --no-invert feeds the image as it is: the light image kept equals its negative inverted, and
 * the light image inverted (by the rule) equals its negative as it is (no inversion: a dark
 * border). The model reads the same numbers both ways, to float rounding. */
static void test_invert_identities(void **state) {
    (void)state;
    char paper[600], dark[600];
    snprintf(paper, sizeof paper, "%s/paper_7.png", dir);
    snprintf(dark, sizeof dark, "%s/dark_7.png", dir);
    cli_result r;
    json_t *o[2];
    double auto_paper[10], auto_dark[10], kept_paper[10], forced_dark[10];

    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--json", "--top", "10", paper, dark);
    cli_expect(&r, 0, NULL);
    parse_lines(r.out, o, 2);
    assert_true(json_is_true(json_object_get(o[0], "inverted")));
    assert_true(json_is_false(json_object_get(o[1], "inverted")));
    assert_true(jnum(o[0], "border_mean") > 0.85 && jnum(o[1], "border_mean") < 0.15);
    probabilities(o[0], auto_paper), probabilities(o[1], auto_dark);
    assert_same_probabilities(auto_paper, auto_dark, "paper inverted vs its negative");
    assert_true(auto_paper[7] > 0.5);
    json_decref(o[0]), json_decref(o[1]);

    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--json", "--top", "10", "--no-invert", paper);
    cli_expect(&r, 0, NULL);
    parse_lines(r.out, o, 1);
    assert_true(json_is_false(json_object_get(o[0], "inverted")));
    probabilities(o[0], kept_paper);
    json_decref(o[0]);
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--json", "--top", "10", "--invert", dark);
    cli_expect(&r, 0, NULL);
    parse_lines(r.out, o, 1);
    assert_true(json_is_true(json_object_get(o[0], "inverted")));
    probabilities(o[0], forced_dark);
    json_decref(o[0]);
    assert_same_probabilities(kept_paper, forced_dark, "paper kept vs its negative inverted");
    /* ... and the model does see something else than with the inversion. */
    if (!(fabs(kept_paper[7] - auto_paper[7]) > 0.01))
        fail_msg("p(7) is %.6f with --no-invert and %.6f inverted", kept_paper[7], auto_paper[7]);

    /* In text: no inverted line with --no-invert, nor with --invert (asked for, not guessed). */
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--no-invert", paper);
    cli_expect(&r, 0, NULL);
    ASSERT_LACKS(r.out, "inverted");
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--invert", dark);
    cli_expect(&r, 0, NULL);
    ASSERT_LACKS(r.out, "inverted");
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--invert", "--no-invert", dark);
    CLI_EXPECT(&r, 2, "--invert or --no-invert");
}

/* Several images, and a directory (its image files, sorted; the text file and the directory named
 * sub.png skipped), mixed with a file; an empty directory is an error. */
static void test_several_and_directory(void **state) {
    (void)state;
    char a[600], b[600], want[4096];
    snprintf(a, sizeof a, "%s/ink_1.png", dir);
    snprintf(b, sizeof b, "%s/paper_0.jpg", dir);
    cli_result r;
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--top", "1", a, imgs_d, b);
    cli_expect(&r, 0, NULL);
    const char *order[5][2] = {{a, "1"}, {"imgs/ink_0.png", "0"}, {"imgs/ink_7.png", "7"}, {"imgs/paper_1.jpg", "1"},
                               {b, "0"}};
    const char *at = r.out;
    for (int i = 0; i < 5; i++) {
        char name[600];
        if (i == 0 || i == 4) snprintf(name, sizeof name, "%s", order[i][0]);
        else snprintf(name, sizeof name, "%s/%s", dir, order[i][0]);
        snprintf(want, sizeof want, "%s%s\n  inverted: ", i ? "\n" : "", name);
        const char *hit = strstr(at, want);
        if (!hit) fail_msg("block %d (%s) not next in:\n%.3000s", i + 1, name, r.out);
        at = hit + strlen(want);
        snprintf(want, sizeof want, "\n  1. %s ", order[i][1]);
        const char *row = strstr(at, want), *next = strstr(at, "\n\n");
        if (!row || (next && row > next)) fail_msg("block %d (%s): not %s:\n%.3000s", i + 1, name, order[i][1], r.out);
    }
    ASSERT_LACKS(r.out, "notes.txt");
    ASSERT_LACKS(r.out, "sub.png");
    /* A trailing slash gives the same paths. */
    char slashed[600];
    snprintf(slashed, sizeof slashed, "%s/", imgs_d);
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--top", "1", slashed);
    cli_expect(&r, 0, NULL);
    snprintf(want, sizeof want, "%s/ink_0.png\n", imgs_d);
    if (strncmp(r.out, want, strlen(want))) fail_msg("starts:\n%.300s", r.out);
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, empty_d);
    CLI_EXPECT(&r, 2, empty_d, "no image files");
    assert_string_equal(r.out, "");
}

/* --json: one object per line; image, inverted, border_mean, and the --top classes in order. */
static void test_predict_json(void **state) {
    (void)state;
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/ink_7.png", dir);
    snprintf(b, sizeof b, "%s/paper_0.jpg", dir);
    cli_result r;
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--json", "--top", "3", a, b);
    cli_expect(&r, 0, NULL);
    json_t *o[2];
    parse_lines(r.out, o, 2);
    const char *names[2] = {a, b}, *want[2] = {"7", "0"};
    for (int i = 0; i < 2; i++) {
        assert_string_equal(jstr(o[i], "image"), names[i]);
        assert_true(json_is_true(json_object_get(o[i], "inverted")));
        const double border = jnum(o[i], "border_mean");
        assert_true(i ? border > 0.85 && border < 0.95 : border == 1.0);
        json_t *top = json_object_get(o[i], "top");
        assert_true(json_is_array(top));
        assert_int_equal(json_array_size(top), 3);
        assert_string_equal(jstr(json_array_get(top, 0), "name"), want[i]);
        assert_int_equal((int)jnum(json_array_get(top, 0), "class"), atoi(want[i]));
        double sum = 0, last = 2;
        for (size_t t = 0; t < 3; t++) {
            const double p = jnum(json_array_get(top, t), "probability");
            assert_true(p >= 0 && p <= last);
            sum += p, last = p;
            char idx[16];
            snprintf(idx, sizeof idx, "%d", (int)jnum(json_array_get(top, t), "class"));
            assert_string_equal(jstr(json_array_get(top, t), "name"), idx); /* MNIST's names are the digits */
        }
        assert_true(sum <= 1 + 1e-9);
        json_decref(o[i]);
    }
    /* The text output's probabilities are the JSON's, rounded. */
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--json", "--top", "1", a);
    parse_lines(r.out, o, 1);
    char row[64];
    snprintf(row, sizeof row, "  1. 7 %7.2f%%\n", 100 * jnum(json_array_get(json_object_get(o[0], "top"), 0), "probability"));
    json_decref(o[0]);
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--top", "1", a);
    ASSERT_HAS(r.out, row);
}

/* The model from the checkpoint gives what --model gives; weights without model text need --model;
 * --data that differs from the checkpoint's is used, with a warning. */
static void test_predict_model_and_data_from_checkpoint(void **state) {
    (void)state;
    char a[600], first[8192];
    snprintf(a, sizeof a, "%s/paper_1.jpg", dir);
    cli_result r;
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, a);
    cli_expect(&r, 0, NULL);
    snprintf(first, sizeof first, "%s", r.out);
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--model", model_p, a);
    cli_expect(&r, 0, NULL);
    assert_string_equal(r.out, first);
    assert_string_equal(r.err, "");
    CLI_RUN(&r, dir, "predict", "--weights", plain_w, a);
    CLI_EXPECT(&r, 2, plain_w, "--model");
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--data", "fashion-mnist", a);
    CLI_EXPECT(&r, 0, "warning: ", ckpt_p, "was trained on mnist", "fashion-mnist");
    ASSERT_HAS(r.out, "Trouser"); /* Fashion-MNIST's class names, as asked */
    CLI_RUN(&r, dir, "predict", "--weights", ckpt_p, "--data", "mnist", a);
    cli_expect(&r, 0, NULL);
    assert_string_equal(r.err, "");
}

/* ---- eval ---------------------------------------------------------------------------------- */

/* --json's per-class precision and recall are those of its confusion matrix, and the text output
 * shows the same numbers; the accuracy line keeps its form. The model and the data come from the
 * checkpoint. */
static void test_eval_json_and_per_class(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "eval", "--weights", ckpt_p, "--data-dir", dir, "--json");
    cli_expect(&r, 0, NULL);
    assert_string_equal(r.err, "");
    json_error_t e;
    json_t *o = json_loads(r.out, 0, &e);
    if (!json_is_object(o)) fail_msg("not a JSON object (%s):\n%.2000s", e.text, r.out);
    assert_string_equal(jstr(o, "data"), "mnist");
    assert_string_equal(jstr(o, "source"), "mnist");
    assert_string_equal(jstr(o, "split"), "test");
    assert_true(json_is_null(json_object_get(o, "model")));
    assert_int_equal((int)jnum(o, "samples"), N_TEST);
    json_t *conf = json_object_get(o, "confusion"), *cls = json_object_get(o, "classes");
    assert_true(json_is_array(conf) && json_is_array(cls));
    assert_int_equal(json_array_size(conf), 10);
    assert_int_equal(json_array_size(cls), 10);
    long c[10][10], total = 0, trace = 0;
    for (int i = 0; i < 10; i++) {
        json_t *row = json_array_get(conf, i);
        assert_int_equal(json_array_size(row), 10);
        for (int j = 0; j < 10; j++) {
            c[i][j] = (long)json_integer_value(json_array_get(row, j));
            total += c[i][j];
            if (i == j) trace += c[i][j];
        }
    }
    assert_int_equal(total, N_TEST);
    /* Six test labels are wrong on purpose: at least six errors, off the diagonal. */
    assert_true(trace <= N_TEST - 6);
    assert_true(fabs(jnum(o, "accuracy") - (double)trace / N_TEST) < 1e-12);

    CLI_RUN(&r, dir, "eval", "--weights", ckpt_p, "--data-dir", dir);
    cli_expect(&r, 0, NULL);
    char want[1024];
    snprintf(want, sizeof want, "\naccuracy %.2f%%\n", 100.0 * trace / N_TEST);
    ASSERT_HAS(r.out, want);
    snprintf(want, sizeof want, "%s on mnist (test split, %d samples, 1 thread)\nloss ", ckpt_p, N_TEST);
    ASSERT_HAS(r.out, want);
    ASSERT_HAS(r.out, "\nconfusion matrix (rows: true class, columns: predicted)\n");
    ASSERT_HAS(r.out, "\nclass          precision    recall  support predicted\n");

    int undefined = 0;
    for (int k = 0; k < 10; k++) {
        json_t *ck = json_array_get(cls, (size_t)k);
        long support = 0, predicted = 0;
        for (int j = 0; j < 10; j++) support += c[k][j], predicted += c[j][k];
        assert_int_equal((int)jnum(ck, "class"), k);
        assert_int_equal((long)jnum(ck, "support"), support);
        assert_int_equal((long)jnum(ck, "predicted"), predicted);
        char name[16], p[16] = "-", rc[16] = "-";
        snprintf(name, sizeof name, "%d", k);
        assert_string_equal(jstr(ck, "name"), name);
        json_t *pj = json_object_get(ck, "precision"), *rj = json_object_get(ck, "recall");
        if (predicted) {
            assert_true(fabs(json_number_value(pj) - (double)c[k][k] / predicted) < 1e-12);
            snprintf(p, sizeof p, "%.2f%%", 100.0 * c[k][k] / predicted);
        } else {
            assert_true(json_is_null(pj));
            undefined++;
        }
        if (support) {
            assert_true(fabs(json_number_value(rj) - (double)c[k][k] / support) < 1e-12);
            snprintf(rc, sizeof rc, "%.2f%%", 100.0 * c[k][k] / support);
        } else {
            assert_true(json_is_null(rj));
        }
        snprintf(want, sizeof want, "\n%-14s %9s %9s %8ld %9ld\n", name, p, rc, support, predicted);
        ASSERT_HAS(r.out, want);
    }
    assert_true(undefined >= 1); /* classes never predicted (2..6, 8, 9, most likely): null, '-' */
    /* The wrong labels: each of 0, 1 and 7 has 20 samples, 2 of them labelled as the next digit. */
    for (int k = 0; k < 3; k++) {
        long support = 0;
        for (int j = 0; j < 10; j++) support += c[DIGITS[k]][j];
        assert_int_equal(support, 20);
    }
    json_decref(o);

    /* --model given: the same figures. */
    char first[16384];
    snprintf(first, sizeof first, "%s", r.out);
    CLI_RUN(&r, dir, "eval", "--weights", ckpt_p, "--data-dir", dir, "--model", model_p, "--data", "mnist");
    cli_expect(&r, 0, NULL);
    assert_string_equal(r.out, first);
    assert_string_equal(r.err, "");
}

/* Other data than the checkpoint's: evaluated, with a warning; none for the same data. */
static void test_eval_data_mismatch_warns(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "eval", "--weights", ckpt_p, "--data", "fashion-mnist", "--data-dir", dir);
    CLI_EXPECT(&r, 0, "cnn eval: warning: ", ckpt_p, "was trained on mnist, evaluating on fashion-mnist");
    ASSERT_HAS(r.out, "\naccuracy ");
    ASSERT_HAS(r.out, "on fashion-mnist (test split");
    CLI_RUN(&r, dir, "eval", "--weights", ckpt_p, "--data", "fashion-mnist", "--data-dir", dir, "--json");
    CLI_EXPECT(&r, 0, "warning: ", "evaluating on fashion-mnist");
    json_t *o = json_loads(r.out, 0, NULL);
    assert_true(json_is_object(o));
    json_decref(o);

    /* A data set of kind idx: the same directory (another spelling) is no mismatch, another is. */
    char same[600], other[600];
    snprintf(same, sizeof same, "%s/./mnist/", dir);
    snprintf(other, sizeof other, "%s/fashion-mnist", dir);
    CLI_RUN(&r, dir, "eval", "--weights", idx_ckpt_p, "--data", same);
    cli_expect(&r, 0, NULL);
    assert_string_equal(r.err, "");
    CLI_RUN(&r, dir, "eval", "--weights", idx_ckpt_p, "--data", other);
    CLI_EXPECT(&r, 0, "warning: ", "trained on idx data from", other);
    CLI_RUN(&r, dir, "eval", "--weights", idx_ckpt_p);
    cli_expect(&r, 0, NULL);
    ASSERT_HAS(r.out, "on idx (test split");
}

/* Without model text or a recorded data set, --model and --data are needed, and say so. */
static void test_eval_needs_model_and_data(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "eval", "--weights", plain_w, "--data", "mnist", "--data-dir", dir);
    CLI_EXPECT(&r, 2, plain_w, "--model");
    assert_string_equal(r.out, "");
    CLI_RUN(&r, dir, "eval", "--weights", plain_w, "--model", model_p);
    CLI_EXPECT(&r, 2, "--data is required", plain_w);
    CLI_RUN(&r, dir, "eval", "--data", "mnist");
    CLI_EXPECT(&r, 2, "--weights");
    /* The checkpoint's data set where it is not: the message says where the name came from. */
    CLI_RUN(&r, dir, "eval", "--weights", ckpt_p, "--data-dir", empty_d);
    CLI_EXPECT(&r, 2, ckpt_p, "was trained on 'mnist'", "give --data", "train-images-idx3-ubyte");
    assert_string_equal(r.out, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_images_right_digit),
        cmocka_unit_test(test_invert_identities),
        cmocka_unit_test(test_several_and_directory),
        cmocka_unit_test(test_predict_json),
        cmocka_unit_test(test_predict_model_and_data_from_checkpoint),
        cmocka_unit_test(test_eval_json_and_per_class),
        cmocka_unit_test(test_eval_data_mismatch_warns),
        cmocka_unit_test(test_eval_needs_model_and_data),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
