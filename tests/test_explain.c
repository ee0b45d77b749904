/* test_explain.c - `cnn explain`: the printed numbers, not only the exit status.
 *
 * Each test runs the CLI ($CNN_BIN, see tests/clirun.h), reads numbers back from what it printed
 * (a matrix under its header "LABEL (R×C) =", or the value after the last '=' of a formula line),
 * and checks them: against the notes' worked examples written out here (000's chain rule, the 3×3
 * input under a 2×2 kernel, 001's pooling matrices), and, for random matrices the test makes up,
 * against the library's own layers run here on both paths (tu_net). Batch norm's ∂L/∂x is computed
 * here in double by the folded formula, the residual fork's sum from its two contributions, and
 * explain network's fork on a graph from the library's value gradients. So the agreement the
 * command prints is verified by the test, not only read from its last line. Bad input must exit 2
 * with a message and no crash.
 */
#include "testutil.h"
#include "clirun.h"

#include <stdint.h>
#include <sys/stat.h>

static char dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cnn_test_explain_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char path[128];
    const char *files[] = {"cli.stdout", "cli.stderr", "net.cnn", "graph.cnn", "bn1d.cnn", "w.safetensors",
                           "w.safetensors.tmp"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

/* ---- reading the output --------------------------------------------------------------------- */

/* Reads n numbers from the lines after "\n  <header>" (the header of a printed matrix). */
static void read_matrix(const cli_result *r, const char *header, double *dst, int n) {
    char key[256];
    snprintf(key, sizeof key, "\n  %s\n", header);
    const char *p = strstr(r->out, key);
    if (!p) fail_msg("%.300s\n  output lacks the matrix \"%s\":\n%.3000s", r->cmd, header, r->out);
    p += strlen(key);
    for (int i = 0; i < n; i++) {
        char *end;
        dst[i] = strtod(p, &end);
        if (end == p) fail_msg("%.300s\n  matrix \"%s\": number %d does not parse", r->cmd, header, i + 1);
        p = end;
    }
}

/* The value after the last "= " of the (unwrapped) line that starts with "  <prefix>". */
static double line_value(const cli_result *r, const char *prefix) {
    char key[256];
    snprintf(key, sizeof key, "\n  %s", prefix);
    const char *p = strstr(r->out, key);
    if (!p) fail_msg("%.300s\n  output lacks a line \"%s\":\n%.3000s", r->cmd, prefix, r->out);
    p += 1;
    const char *eol = strchr(p, '\n'), *last = NULL;
    if (!eol) eol = p + strlen(p);
    for (const char *q = p; q + 1 < eol; q++)
        if (q[0] == '=' && q[1] == ' ') last = q + 2;
    if (!last) fail_msg("line \"%s\" has no '= '", prefix);
    char *end;
    const double v = strtod(last, &end);
    if (end == last) fail_msg("line \"%s\": no number after the last '='", prefix);
    return v;
}

/* strstr on the output with every run of whitespace taken as one space (prose is wrapped). */
static int has_words(const char *text, const char *words) {
    static char flat[1 << 16];
    size_t n = 0;
    for (const char *p = text; *p && n + 1 < sizeof flat; p++) {
        const int space = *p == ' ' || *p == '\n' || *p == '\t';
        if (space && (n == 0 || flat[n - 1] == ' ')) continue;
        flat[n++] = space ? ' ' : *p;
    }
    flat[n] = '\0';
    return strstr(flat, words) != NULL;
}

static void expect_words(const cli_result *r, const char *words) {
    if (!has_words(r->out, words)) fail_msg("%.300s\n  output lacks \"%s\":\n%.4000s", r->cmd, words, r->out);
}

/* Exit 0 and the verdict line. */
static void expect_agree(const cli_result *r) {
    CLI_EXPECT(r, 0, NULL);
    if (!strstr(r->out, "\nagree: ")) fail_msg("%.300s\n  no \"agree:\" line:\n%.4000s", r->cmd, r->out);
    if (strstr(r->out, "DISAGREE")) fail_msg("%.300s\n  DISAGREE:\n%.4000s", r->cmd, r->out);
}

static void expect_exact(const char *what, const double *got, const double *want, int n) {
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("%s[%d]: printed %.9g, expected %.9g", what, i, got[i], want[i]);
}

/* Printed (6 significant digits) against the library's float results. */
static void expect_close(const char *what, const double *printed, const float *lib, int n, double tol) {
    double scale = 1.0;
    for (int i = 0; i < n; i++) scale = fabs((double)lib[i]) > scale ? fabs((double)lib[i]) : scale;
    for (int i = 0; i < n; i++)
        if (!(fabs(printed[i] - (double)lib[i]) <= tol * scale))
            fail_msg("%s[%d]: explain printed %.9g, the library gives %.9g", what, i, printed[i], (double)lib[i]);
}

/* Printed (6 significant digits) against a value the test computes in double. */
static void expect_near(const char *what, const double *printed, const double *want, int n) {
    for (int i = 0; i < n; i++)
        if (!(fabs(printed[i] - want[i]) <= 1e-5 * fmax(1.0, fabs(want[i]))))
            fail_msg("%s[%d]: explain printed %.9g, the test computes %.9g", what, i, printed[i], want[i]);
}

/* The number after `key` in the output, searched from `from` (NULL: the start). */
static double value_after(const cli_result *r, const char *from, const char *key) {
    const char *p = strstr(from ? from : r->out, key);
    if (!p) fail_msg("%.300s\n  output lacks \"%s\":\n%.4000s", r->cmd, key, r->out);
    char *end;
    const double v = strtod(p + strlen(key), &end);
    if (end == p + strlen(key)) fail_msg("no number after \"%s\"", key);
    return v;
}

/* ---- random matrices ------------------------------------------------------------------------ */

static uint64_t rng = 12345;

/* A number with two decimals in [-3, 3]. */
static double rnd(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)((int)((rng >> 33) % 601) - 300) / 100.0;
}

/* Fills v with `count` matrices of r×c random numbers and writes them as "a b; c d | ...". */
static void rnd_stack(double *v, int count, int r, int c, char *text, size_t cap) {
    size_t at = 0;
    text[0] = '\0';
    for (int k = 0; k < count; k++)
        for (int i = 0; i < r; i++)
            for (int j = 0; j < c; j++) {
                const double x = rnd();
                v[(k * r + i) * c + j] = x;
                const char *sep = j ? " " : i ? "; " : k ? " | " : "";
                at += (size_t)snprintf(text + at, cap - at, "%s%.2f", sep, x);
                assert_true(at < cap);
            }
}

static void to_float(const double *d, float *f, int n) {
    for (int i = 0; i < n; i++) f[i] = (float)d[i];
}

static const cnn_path paths[2] = {CNN_PATH_REFERENCE, CNN_PATH_FAST};
static const double path_tol[2] = {2e-6, 1e-4};
/* For numbers that are not short decimals: 6 significant digits are within 5e-6 of the value. */
static const double printed_tol[2] = {1e-5, 1e-4};

/* ---- help ----------------------------------------------------------------------------------- */

static void test_help(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "explain", "--help");
    CLI_EXPECT(&r, 0, NULL);
    const char *topics[] = {"chain",  "conv",   "maxpool",   "avgpool",  "relu",
                            "sigmoid", "linear", "batchnorm", "residual", "network"};
    for (size_t i = 0; i < sizeof topics / sizeof *topics; i++) {
        char line[64];
        snprintf(line, sizeof line, "\n  %s ", topics[i]);
        if (!strstr(r.out, line)) fail_msg("cnn explain --help does not list %s:\n%s", topics[i], r.out);
    }
    for (size_t i = 0; i < sizeof topics / sizeof *topics; i++) {
        CLI_RUN(&r, dir, "explain", topics[i], "--help");
        CLI_EXPECT(&r, 0, NULL);
        char want[64];
        snprintf(want, sizeof want, "cnn explain %s", topics[i]);
        if (!strstr(r.out, "example") || !strstr(r.out, want))
            fail_msg("cnn explain %s --help gives no example:\n%s", topics[i], r.out);
    }
    CLI_RUN(&r, dir, "--help");
    CLI_EXPECT(&r, 0, NULL);
    assert_non_null(strstr(r.out, "explain"));
}

/* ---- note 000: the chain rule --------------------------------------------------------------- */

static void test_chain_defaults(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "explain", "chain");
    expect_agree(&r);
    /* The note's inputs x = −2, y = 5, z = 4 give the true values, not the note's f = −12. */
    assert_true(line_value(&r, "q = x + y") == 3);
    assert_true(line_value(&r, "f = q·z") == 12);
    assert_true(line_value(&r, "∂f/∂x = ∂f/∂q·∂q/∂x") == 4);
    assert_true(line_value(&r, "∂f/∂y = ∂f/∂q·∂q/∂y") == 4);
    assert_true(line_value(&r, "∂f/∂q = z") == 4);
    assert_true(line_value(&r, "∂f/∂z = q") == 3);
    assert_non_null(strstr(r.out, "\n  result: f = 12, ∂f/∂x = 4, ∂f/∂y = 4, ∂f/∂z = 3\n"));
    /* The remark: the note's f = −12 is the original figure's, with z = −4. */
    expect_words(&r, "About note 000: it gives x = -2, y = 5, z = 4 and f = -12, but (-2 + 5)·4 = 12.");
    expect_words(&r, "where z = -4: try --z -4");
}

static void test_chain_original_figure(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "explain", "chain", "--z", "-4");
    expect_agree(&r);
    assert_true(line_value(&r, "f = q·z") == -12);
    assert_non_null(strstr(r.out, "\n  result: f = -12, ∂f/∂x = -4, ∂f/∂y = -4, ∂f/∂z = 3\n"));
    expect_words(&r, "these are the original figure's inputs (CS231n), which give f = -12 as the note says");
    /* Any numbers: the products of the chain rule. */
    CLI_RUN(&r, dir, "explain", "chain", "--x=1.5", "--y", "-0.25", "--z", "2");
    expect_agree(&r);
    assert_non_null(strstr(r.out, "\n  result: f = 2.5, ∂f/∂x = 2, ∂f/∂y = 2, ∂f/∂z = 1.25\n"));
    assert_null(strstr(r.out, "About note 000"));
}

/* ---- notes 002-004: the 3×3 input under a 2×2 kernel --------------------------------------- */

static void test_conv_defaults(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "explain", "conv");
    expect_agree(&r);
    /* The defaults, printed first: X = 1..9, W = [1 -2; 3 4], ∂L/∂O = [1 -1; 2 3]. */
    double x[9], w[4], d[4];
    read_matrix(&r, "X (3×3) =", x, 9);
    read_matrix(&r, "W (2×2) =", w, 4);
    read_matrix(&r, "∂L/∂O (2×2) =", d, 4);
    const double want_x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, want_w[4] = {1, -2, 3, 4}, want_d[4] = {1, -1, 2, 3};
    expect_exact("X", x, want_x, 9);
    expect_exact("W", w, want_w, 4);
    expect_exact("dL/dO", d, want_d, 4);
    /* Note 003's forward and notes 003/004's nine ∂L/∂x and four ∂L/∂w, term by term. */
    double o[4], dx[9], dw[4];
    tu_notes_conv_3x3_by_2x2(x, w, d, o, dx, dw);
    const double x11 = x[0], x21 = x[3];
    const double w11 = w[0], w12 = w[1], w21 = w[2], w22 = w[3];
    const double d11 = d[0], d12 = d[1], d21 = d[2], d22 = d[3];
    double got[9];
    read_matrix(&r, "O (2×2) =", got, 4);
    expect_exact("O", got, o, 4);
    read_matrix(&r, "∂L/∂X (3×3) =", got, 9);
    expect_exact("dL/dX", got, dx, 9);
    read_matrix(&r, "∂L/∂W (2×2) =", got, 4);
    expect_exact("dL/dW", got, dw, 4);
    /* Each element's own line ends in the same value, and is written as the notes write it. */
    const char *xs[9] = {"x11", "x12", "x13", "x21", "x22", "x23", "x31", "x32", "x33"};
    for (int i = 0; i < 9; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "∂L/∂%s = ", xs[i]);
        if (line_value(&r, prefix) != dx[i]) fail_msg("the line of ∂L/∂%s ends in %g", xs[i], line_value(&r, prefix));
    }
    const char *ws[4] = {"w11", "w12", "w21", "w22"};
    for (int i = 0; i < 4; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "∂L/∂%s = ", ws[i]);
        assert_true(line_value(&r, prefix) == dw[i]);
    }
    assert_non_null(strstr(r.out, "\n  ∂L/∂x22 = ∂L/∂o11·w22 + ∂L/∂o12·w21 + ∂L/∂o21·w12 + ∂L/∂o22·w11 = "
                                  "1·4 + (-1)·3 + 2·(-2) + 3·1 = 0\n"));
    assert_non_null(strstr(r.out, "\n  ∂L/∂w11 = ∂L/∂o11·x11 + ∂L/∂o12·x12 + ∂L/∂o21·x21 + ∂L/∂o22·x22 = "));
    assert_non_null(strstr(r.out, "\n  o11 = w11·x11 + w12·x12 + w21·x21 + w22·x22 + b = "));
    assert_true(line_value(&r, "∂L/∂b = ") == d11 + d12 + d21 + d22);
    /* The full convolution's pieces: rot180(W) and the zero-padded ∂L/∂O. */
    const double rot[4] = {w22, w21, w12, w11};
    read_matrix(&r, "rot180(W) (2×2) =", got, 4);
    expect_exact("rot180(W)", got, rot, 4);
    const double padded[16] = {0, 0, 0, 0, 0, d11, d12, 0, 0, d21, d22, 0, 0, 0, 0, 0};
    double p[16];
    read_matrix(&r, "padded ∂L/∂O (4×4) =", p, 16);
    expect_exact("padded dL/dO", p, padded, 16);
    /* The remark on note 003's slip: its ∂L/∂w11 would be d11·x11 + d12·x21. */
    char slip[160];
    snprintf(slip, sizeof slip, "note 003's formula would give %g instead of %g", d11 * x11 + d12 * x21, dw[0]);
    expect_words(&r, slip);
}

/* Random matrices through the CLI and through the library's conv2d here, on both paths. */
static void conv_case(int C, int K, int H, int W, int kh, int kw, int stride, int pad) {
    static double x[8 * 256], w[64 * 256], dy[8 * 256], b[8], got[64 * 256];
    static char tx[16384], tw[65536], td[16384], tb[256];
    const int OH = (H + 2 * pad - kh) / stride + 1, OW = (W + 2 * pad - kw) / stride + 1;
    rnd_stack(x, C, H, W, tx, sizeof tx);
    rnd_stack(w, K * C, kh, kw, tw, sizeof tw);
    rnd_stack(dy, K, OH, OW, td, sizeof td);
    rnd_stack(b, 1, 1, K, tb, sizeof tb);
    char ss[16], ps[16], cs[16], ks[16];
    snprintf(ss, sizeof ss, "%d", stride);
    snprintf(ps, sizeof ps, "%d", pad);
    snprintf(cs, sizeof cs, "%d", C);
    snprintf(ks, sizeof ks, "%d", K);
    cli_result r;
    CLI_RUN(&r, dir, "explain", "conv", "--input", tx, "--kernel", tw, "--grad-output", td, "--bias", tb, "--stride", ss,
            "--padding", ps, "--channels", cs, "--filters", ks);
    expect_agree(&r);

    char model[256];
    snprintf(model, sizeof model, "input %d %d %d\nconv2d out_channels=%d kernel_size=%d,%d stride=%d padding=%d\n", C,
             H, W, K, kh, kw, stride, pad);
    static float fx[8 * 256], fw[64 * 256], fdy[8 * 256], fb[8];
    to_float(x, fx, C * H * W);
    to_float(w, fw, K * C * kh * kw);
    to_float(dy, fdy, K * OH * OW);
    to_float(b, fb, K);
    const int multi = C > 1 || K > 1;
    for (int k = 0; k < 2; k++) {
        cnn_net *net = tu_net(model, 1, paths[k]);
        tu_set(net, "0.weight", fw, K * C * kh * kw);
        tu_set(net, "0.bias", fb, K);
        tu_run(net, fx, 1, fdy);
        char header[64];
        for (int f = 0; f < K; f++) {
            if (K > 1) snprintf(header, sizeof header, "O(%d) (%d×%d) =", f + 1, OH, OW);
            else snprintf(header, sizeof header, "O (%d×%d) =", OH, OW);
            read_matrix(&r, header, got, OH * OW);
            expect_close("O", got, cnn_net_output(net) + f * OH * OW, OH * OW, path_tol[k]);
            char prefix[64];
            snprintf(prefix, sizeof prefix, K > 1 ? "∂L/∂b(%d) = " : "∂L/∂b = ", f + 1);
            const double db = line_value(&r, prefix);
            expect_close("dL/db", &db, cnn_net_param_by_name(net, "0.bias").grad + f, 1, path_tol[k]);
            for (int c = 0; c < C; c++) {
                if (multi) snprintf(header, sizeof header, "∂L/∂W(%d,%d) (%d×%d) =", f + 1, c + 1, kh, kw);
                else snprintf(header, sizeof header, "∂L/∂W (%d×%d) =", kh, kw);
                read_matrix(&r, header, got, kh * kw);
                expect_close("dL/dW", got, cnn_net_param_by_name(net, "0.weight").grad + (f * C + c) * kh * kw, kh * kw,
                             path_tol[k]);
            }
        }
        for (int c = 0; c < C; c++) {
            if (C > 1) snprintf(header, sizeof header, "∂L/∂X(%d) (%d×%d) =", c + 1, H, W);
            else snprintf(header, sizeof header, "∂L/∂X (%d×%d) =", H, W);
            read_matrix(&r, header, got, H * W);
            expect_close("dL/dX", got, cnn_net_grad_input(net) + c * H * W, H * W, path_tol[k]);
        }
        cnn_net_free(net);
    }
}

static void test_conv_random(void **state) {
    (void)state;
    conv_case(1, 1, 3, 3, 2, 2, 1, 0);   /* the notes' shapes */
    conv_case(1, 1, 5, 4, 3, 2, 1, 0);   /* rectangular */
    conv_case(1, 1, 5, 5, 3, 3, 2, 0);   /* stride 2 */
    conv_case(1, 1, 4, 4, 3, 3, 1, 1);   /* padding 1 */
    conv_case(1, 1, 6, 5, 3, 3, 2, 1);   /* both; a row and a column no window reaches */
    conv_case(2, 3, 5, 5, 3, 3, 2, 1);   /* 2 channels × 3 filters, stride 2, padding 1 */
    conv_case(3, 2, 4, 4, 2, 2, 1, 0);
}

/* ---- note 001: pooling ---------------------------------------------------------------------- */

static void test_pool_defaults(void **state) {
    (void)state;
    cli_result r;
    double got[16];
    CLI_RUN(&r, dir, "explain", "maxpool");
    expect_agree(&r);
    const double delta[4] = {2, 8, 4, 6};
    read_matrix(&r, "δ (2×2) =", got, 4);
    expect_exact("delta", got, delta, 4);
    /* Maxima at top-left, bottom-right, top-right and bottom-left, as 001 says. */
    expect_words(&r, "= 9, at x11 (top-left)");
    expect_words(&r, "= 9, at x24 (bottom-right)");
    expect_words(&r, "= 9, at x32 (top-right)");
    expect_words(&r, "= 9, at x43 (bottom-left)");
    const double max_dx[16] = {2, 0, 0, 0, 0, 0, 0, 8, 0, 4, 0, 0, 0, 0, 6, 0};
    read_matrix(&r, "∂L/∂X (4×4) =", got, 16);
    expect_exact("max dL/dX", got, max_dx, 16);
    const double up[16] = {2, 2, 8, 8, 2, 2, 8, 8, 4, 4, 6, 6, 4, 4, 6, 6};
    read_matrix(&r, "upsample(δ) (4×4) =", got, 16);
    expect_exact("upsample", got, up, 16);
    const double mask[16] = {1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0};
    read_matrix(&r, "M (4×4) =", got, 16);
    expect_exact("mask", got, mask, 16);

    CLI_RUN(&r, dir, "explain", "avgpool");
    expect_agree(&r);
    const double avg_dx[16] = {0.5, 0.5, 2, 2, 0.5, 0.5, 2, 2, 1, 1, 1.5, 1.5, 1, 1, 1.5, 1.5};
    read_matrix(&r, "∂L/∂X (4×4) =", got, 16);
    expect_exact("avg dL/dX", got, avg_dx, 16);
    assert_true(line_value(&r, "∂L/∂x11 = ") == 0.5);
    assert_true(line_value(&r, "∂L/∂x44 = ") == 1.5);

    /* Note 003's overlapping windows: the centre is the maximum of all four. */
    CLI_RUN(&r, dir, "explain", "maxpool", "--input", "1 2 3; 4 9 5; 6 7 8", "--grad-output", "1 2; 3 4", "--stride",
            "1");
    expect_agree(&r);
    const double ov[9] = {0, 0, 0, 0, 10, 0, 0, 0, 0};
    read_matrix(&r, "∂L/∂X (3×3) =", got, 9);
    expect_exact("overlapping dL/dX", got, ov, 9);
}

static void pool_case(int avg, int H, int W, int k, int stride) {
    double x[256], dy[256], got[256];
    char tx[4096], td[4096], ks[16], ss[16];
    const int OH = (H - k) / stride + 1, OW = (W - k) / stride + 1;
    rnd_stack(x, 1, H, W, tx, sizeof tx);
    rnd_stack(dy, 1, OH, OW, td, sizeof td);
    snprintf(ks, sizeof ks, "%d", k);
    snprintf(ss, sizeof ss, "%d", stride);
    cli_result r;
    CLI_RUN(&r, dir, "explain", avg ? "avgpool" : "maxpool", "--input", tx, "--grad-output", td, "--kernel-size", ks,
            "--stride", ss);
    expect_agree(&r);
    char model[128], header[64];
    snprintf(model, sizeof model, "input 1 %d %d\n%s kernel_size=%d stride=%d\n", H, W, avg ? "avgpool2d" : "maxpool2d",
             k, stride);
    float fx[256], fdy[256];
    to_float(x, fx, H * W);
    to_float(dy, fdy, OH * OW);
    for (int p = 0; p < 2; p++) {
        cnn_net *net = tu_net(model, 1, paths[p]);
        tu_run(net, fx, 1, fdy);
        snprintf(header, sizeof header, "O (%d×%d) =", OH, OW);
        read_matrix(&r, header, got, OH * OW);
        expect_close("O", got, cnn_net_output(net), OH * OW, path_tol[p]);
        snprintf(header, sizeof header, "∂L/∂X (%d×%d) =", H, W);
        read_matrix(&r, header, got, H * W);
        expect_close("dL/dX", got, cnn_net_grad_input(net), H * W, path_tol[p]);
        cnn_net_free(net);
    }
}

static void test_pool_random(void **state) {
    (void)state;
    for (int avg = 0; avg < 2; avg++) {
        pool_case(avg, 4, 4, 2, 2);
        pool_case(avg, 5, 6, 2, 1);    /* overlapping (note 003) */
        pool_case(avg, 7, 7, 3, 2);    /* overlapping, the last row and column unread */
        pool_case(avg, 6, 5, 2, 3);    /* gaps between the windows */
    }
}

/* ---- note 004: relu, sigmoid and the fully connected layer ---------------------------------- */

static void test_relu_sigmoid(void **state) {
    (void)state;
    cli_result r;
    double got[256];
    CLI_RUN(&r, dir, "explain", "relu");
    expect_agree(&r);
    const double relu_dx[6] = {0, 0, 2, 0.5, 0, -2};   /* x = [-1 0 2; 3 -0.5 1], dy = [1 -1 2; 0.5 3 -2] */
    read_matrix(&r, "∂L/∂X (2×3) =", got, 6);
    expect_exact("relu dL/dX", got, relu_dx, 6);
    assert_non_null(strstr(r.out, "\n  ∂L/∂x12 = ∂L/∂o12·relu'(x12) = (-1)·0 = 0\n"));
    for (int sig = 0; sig < 2; sig++) {
        double x[20], dy[20];
        char tx[512], td[512], header[64];
        rnd_stack(x, 1, 4, 5, tx, sizeof tx);
        rnd_stack(dy, 1, 4, 5, td, sizeof td);
        CLI_RUN(&r, dir, "explain", sig ? "sigmoid" : "relu", "--input", tx, "--grad-output", td);
        expect_agree(&r);
        float fx[20], fdy[20];
        to_float(x, fx, 20);
        to_float(dy, fdy, 20);
        for (int p = 0; p < 2; p++) {
            cnn_net *net = tu_net(sig ? "input 1 4 5\nsigmoid\n" : "input 1 4 5\nrelu\n", 1, paths[p]);
            tu_run(net, fx, 1, fdy);
            snprintf(header, sizeof header, "O (4×5) =");
            read_matrix(&r, header, got, 20);
            expect_close("O", got, cnn_net_output(net), 20, path_tol[p]);
            read_matrix(&r, "∂L/∂X (4×5) =", got, 20);
            expect_close("dL/dX", got, cnn_net_grad_input(net), 20, path_tol[p]);
            cnn_net_free(net);
        }
    }
}

static void test_linear(void **state) {
    (void)state;
    cli_result r;
    double got[256];
    /* Defaults: tests/test_notes.c's fc example, with the note's W = PyTorch's weightᵀ. */
    CLI_RUN(&r, dir, "explain", "linear");
    expect_agree(&r);
    const double dx[6] = {1, -4, -3, 3, 9, -2}, dw[6] = {-2, -3, 2, -4, 9, -4};
    read_matrix(&r, "∂L/∂x (2×3) =", got, 6);
    expect_exact("dL/dx", got, dx, 6);
    read_matrix(&r, "∂L/∂W (3×2) =", got, 6);
    expect_exact("dL/dW", got, dw, 6);
    assert_true(line_value(&r, "∂L/∂b1 = ") == 4);
    assert_true(line_value(&r, "∂L/∂b2 = ") == -1);

    const int N = 3, n = 4, m = 5;
    double x[12], w[20], b[5], dy[15];
    char tx[512], tw[512], tb[128], td[512];
    rnd_stack(x, 1, N, n, tx, sizeof tx);
    rnd_stack(w, 1, n, m, tw, sizeof tw);
    rnd_stack(b, 1, 1, m, tb, sizeof tb);
    rnd_stack(dy, 1, N, m, td, sizeof td);
    CLI_RUN(&r, dir, "explain", "linear", "--input", tx, "--weight", tw, "--bias", tb, "--grad-output", td);
    expect_agree(&r);
    float fx[12], fwt[20], fb[5], fdy[15];
    to_float(x, fx, 12);
    to_float(b, fb, 5);
    to_float(dy, fdy, 15);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) fwt[j * n + i] = (float)w[i * m + j];
    for (int p = 0; p < 2; p++) {
        cnn_net *net = tu_net("input 4 1 1\nflatten\nlinear out_features=5\n", N, paths[p]);
        tu_set(net, "1.weight", fwt, 20);
        tu_set(net, "1.bias", fb, 5);
        tu_run(net, fx, N, fdy);
        read_matrix(&r, "Out (3×5) =", got, 15);
        expect_close("Out", got, cnn_net_output(net), 15, path_tol[p]);
        read_matrix(&r, "∂L/∂x (3×4) =", got, 12);
        expect_close("dL/dx", got, cnn_net_grad_input(net), 12, path_tol[p]);
        read_matrix(&r, "∂L/∂W (4×5) =", got, 20);
        const float *g = cnn_net_param_by_name(net, "1.weight").grad;
        float gt[20];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) gt[i * m + j] = g[j * n + i];
        expect_close("dL/dW", got, gt, 20, path_tol[p]);
        for (int j = 0; j < m; j++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "∂L/∂b%d = ", j + 1);
            const double v = line_value(&r, prefix);
            expect_close("dL/db", &v, cnn_net_param_by_name(net, "1.bias").grad + j, 1, path_tol[p]);
        }
        cnn_net_free(net);
    }
}

/* ---- network: note 001's summary algorithm -------------------------------------------------- */

static void test_network(void **state) {
    (void)state;
    const char *model = "input 1 6 6\nconv2d out_channels=2 kernel_size=3 padding=1\nrelu\nmaxpool2d kernel_size=2\n"
                        "flatten\nlinear out_features=3\n";
    char path[128];
    snprintf(path, sizeof path, "%s/net.cnn", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(model, f);
    fclose(f);
    double x[36];
    char tx[512];
    rnd_stack(x, 1, 6, 6, tx, sizeof tx);
    cli_result r;
    CLI_RUN(&r, dir, "explain", "network", "--model", path, "--init", "3", "--input", tx, "--target", "1");
    expect_agree(&r);
    /* Every layer appears, last first, with its formula. */
    const char *at = r.out;
    const char *layers[] = {"layer 4, line 6: linear", "layer 3, line 5: flatten", "layer 2, line 4: maxpool2d",
                            "layer 1, line 3: relu", "layer 0, line 2: conv2d"};
    for (int i = 0; i < 5; i++) {
        const char *p = strstr(at, layers[i]);
        if (!p) fail_msg("no \"%s\" after the previous layer:\n%.4000s", layers[i], r.out);
        at = p;
    }
    assert_non_null(strstr(r.out, "rot180"));
    assert_non_null(strstr(r.out, "∂L/∂Out·Wᵀ"));
    /* The norms it prints are the library's own. */
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_parse(model, &net), CNN_OK);
    assert_int_equal(cnn_net_init(net, 3), CNN_OK);
    assert_int_equal(cnn_net_set_path(net, CNN_PATH_REFERENCE), CNN_OK);
    assert_int_equal(cnn_net_reserve(net, 1), CNN_OK);
    float fx[36], dlogits[3], loss;
    to_float(x, fx, 36);
    const int64_t target = 1;
    assert_int_equal(cnn_net_forward(net, fx, 1), CNN_OK);
    assert_int_equal(cnn_loss_cross_entropy(cnn_net_output(net), &target, 1, 3, &loss, dlogits), CNN_OK);
    cnn_net_zero_grad(net);
    assert_int_equal(cnn_net_backward(net, dlogits), CNN_OK);
    double nin = 0, nw = 0;
    for (int i = 0; i < 36; i++) nin += (double)cnn_net_grad_input(net)[i] * cnn_net_grad_input(net)[i];
    const cnn_param w0 = cnn_net_param_by_name(net, "0.weight");
    for (int i = 0; i < w0.numel; i++) nw += (double)w0.grad[i] * w0.grad[i];
    const char *l0 = strstr(r.out, "layer 0, line 2: conv2d");
    const char *p = strstr(l0, "‖∂L/∂in‖ = "), *q = strstr(l0, "‖∂L/∂weight‖ = ");
    assert_non_null(p);
    assert_non_null(q);
    const double pin = strtod(p + strlen("‖∂L/∂in‖ = "), NULL), pw = strtod(q + strlen("‖∂L/∂weight‖ = "), NULL);
    if (fabs(pin - sqrt(nin)) > 1e-5 * sqrt(nin) || fabs(pw - sqrt(nw)) > 1e-5 * sqrt(nw))
        fail_msg("printed norms %g and %g, the library's %g and %g", pin, pw, sqrt(nin), sqrt(nw));
    char lossline[64];
    snprintf(lossline, sizeof lossline, "L = %.6g", (double)loss);
    expect_words(&r, lossline);
    cnn_net_free(net);

    CLI_RUN(&r, dir, "explain", "network", "--model", "models/lenet5.cnn", "--seed", "2", "--target", "7");
    expect_agree(&r);
    expect_words(&r, "Softmax cross-entropy against class 7");
}

/* ---- batch norm in training mode ------------------------------------------------------------ */

/* Batch norm of the test's own, in double: x and dy channel by channel (c·m + j, with j over sample
 * 1's matrix row by row, then sample 2's), as the topic numbers the values. */
typedef struct bn_ref {
    int C, m;
    double mu[8], var[8], s[8], dg[8], db[8], rm[8], rv[8];
    double xh[2048], y[2048], dx[2048];
} bn_ref;

static void bn_reference(bn_ref *b, int C, int m, const double *x, const double *dy, const double *g,
                         const double *beta, double eps) {
    b->C = C, b->m = m;
    for (int c = 0; c < C; c++) {
        const double *xc = x + c * m, *d = dy + c * m;
        double sum = 0, sq = 0, mdy = 0, mdyx = 0;
        for (int j = 0; j < m; j++) sum += xc[j];
        b->mu[c] = sum / m;
        for (int j = 0; j < m; j++) sq += (xc[j] - b->mu[c]) * (xc[j] - b->mu[c]);
        b->var[c] = sq / m;
        b->s[c] = 1.0 / sqrt(b->var[c] + eps);
        b->dg[c] = b->db[c] = 0;
        for (int j = 0; j < m; j++) {
            b->xh[c * m + j] = (xc[j] - b->mu[c]) * b->s[c];
            b->y[c * m + j] = g[c] * b->xh[c * m + j] + beta[c];
            b->dg[c] += d[j] * b->xh[c * m + j], b->db[c] += d[j];
            mdy += d[j] / m, mdyx += d[j] * b->xh[c * m + j] / m;
        }
        /* the folded formula */
        for (int j = 0; j < m; j++) b->dx[c * m + j] = g[c] * b->s[c] * (d[j] - mdy - b->xh[c * m + j] * mdyx);
        b->rm[c] = 0.1 * b->mu[c];
        b->rv[c] = 0.9 + 0.1 * b->var[c] * m / (m - 1.0);
    }
}

static void test_batchnorm_defaults(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "explain", "batchnorm");
    expect_agree(&r);
    /* The defaults: two samples of one channel, γ = 1.5, β = 0.5, ε = 1e-5, dy small integers. */
    double x[8], dy[8], got[8];
    read_matrix(&r, "X(1) (2×2) =", x, 4);
    read_matrix(&r, "X(2) (2×2) =", x + 4, 4);
    read_matrix(&r, "∂L/∂Y(1) (2×2) =", dy, 4);
    read_matrix(&r, "∂L/∂Y(2) (2×2) =", dy + 4, 4);
    const double want_x[8] = {-1, 4, 2, 1, 5, 1, 4, 0};
    expect_exact("X", x, want_x, 8);
    const double g = 1.5, b = 0.5;
    bn_ref ref;
    bn_reference(&ref, 1, 8, x, dy, &g, &b, 1e-5);
    /* μ = 2 and the biased σ² = 32/8 = 4: the defaults are chosen so. */
    assert_true(line_value(&r, "μ = ") == 2);
    assert_true(line_value(&r, "σ² = ") == 4);
    const double s = 1.0 / sqrt(4 + 1e-5);
    double v = line_value(&r, "s = 1/√(σ² + ε)");
    expect_near("s", &v, &s, 1);
    read_matrix(&r, "X̂(1) (2×2) =", got, 4);
    read_matrix(&r, "X̂(2) (2×2) =", got + 4, 4);
    expect_near("x̂", got, ref.xh, 8);
    read_matrix(&r, "Y(1) (2×2) =", got, 4);
    read_matrix(&r, "Y(2) (2×2) =", got + 4, 4);
    expect_near("y", got, ref.y, 8);
    /* ∂L/∂β = Σ dy, ∂L/∂γ = Σ dy·x̂. */
    assert_true(line_value(&r, "∂L/∂β = ") == ref.db[0]);
    v = line_value(&r, "∂L/∂γ = ");
    expect_near("dγ", &v, ref.dg, 1);
    /* ∂L/∂x: the three paths as printed, against the folded formula computed here. */
    read_matrix(&r, "∂L/∂X(1) (2×2) =", got, 4);
    read_matrix(&r, "∂L/∂X(2) (2×2) =", got + 4, 4);
    expect_near("dx", got, ref.dx, 8);
    for (int j = 0; j < 8; j++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "∂L/∂x%d = ∂L/∂x̂%d·s + ", j + 1, j + 1);
        v = line_value(&r, prefix);
        expect_near("dx (three paths)", &v, ref.dx + j, 1);
        snprintf(prefix, sizeof prefix, "∂L/∂x%d (folded) = ", j + 1);
        v = line_value(&r, prefix);
        expect_near("dx (folded)", &v, ref.dx + j, 1);
    }
    /* ∂L/∂μ: its two paths; the one through σ² is 0 since the deviations sum to 0. */
    double sum_dxh = 0;
    for (int j = 0; j < 8; j++) sum_dxh += dy[j] * g;
    const double dmu = -s * sum_dxh;
    v = line_value(&r, "∂L/∂μ = ");
    expect_near("dμ", &v, &dmu, 1);
    expect_words(&r, "three paths, added up where they meet at x (note 000)");
    expect_words(&r, "μ feeds every x̂ and σ²: two paths, added up.");
    /* The running statistics: 0.9·0 + 0.1·μ and 0.9·1 + 0.1·σ²·8/7 (the unbiased variance). */
    v = line_value(&r, "running_mean = ");
    expect_near("running_mean", &v, ref.rm, 1);
    v = line_value(&r, "unbiased variance = ");
    const double unb = 4.0 * 8 / 7;
    expect_near("unbiased", &v, &unb, 1);
    v = line_value(&r, "running_var = ");
    expect_near("running_var", &v, ref.rv, 1);
    /* Eval mode's factor γ/√(running_var + ε). */
    char words[96];
    snprintf(words, sizeof words, "∂L/∂x = ∂L/∂y times %.6g", g / sqrt(ref.rv[0] + 1e-5));
    expect_words(&r, words);
    /* The graph, and the library's batchnorm2d in training mode, here, on both paths. */
    expect_words(&r, "x ──→ μ ────→ σ² ────→ x̂ ──→ y");
    float fx[8], fdy[8], fg = 1.5f, fb = 0.5f;
    to_float(x, fx, 8);
    to_float(dy, fdy, 8);
    for (int p = 0; p < 2; p++) {
        cnn_net *net = tu_net("input 1 2 2\nbatchnorm2d\n", 2, paths[p]);
        tu_set(net, "0.weight", &fg, 1);
        tu_set(net, "0.bias", &fb, 1);
        tu_run(net, fx, 2, fdy);
        read_matrix(&r, "∂L/∂X(1) (2×2) =", got, 4);
        read_matrix(&r, "∂L/∂X(2) (2×2) =", got + 4, 4);
        expect_close("dL/dX", got, cnn_net_grad_input(net), 8, printed_tol[p]);
        read_matrix(&r, "Y(1) (2×2) =", got, 4);
        read_matrix(&r, "Y(2) (2×2) =", got + 4, 4);
        expect_close("Y", got, cnn_net_output(net), 8, printed_tol[p]);
        v = line_value(&r, "∂L/∂γ = ");
        expect_close("dγ", &v, cnn_net_param_by_name(net, "0.weight").grad, 1, printed_tol[p]);
        cnn_net_free(net);
    }
}

/* N samples of C channels of H×W, random, through the CLI; the test's own batch norm and the library. */
static void batchnorm_case(int N, int C, int H, int W) {
    static double x[2048], dy[2048], xc[2048], dyc[2048], got[256];
    static char tx[32768], td[32768];
    double g[8], b[8];
    char tg[128], tb[128], cs[16];
    const int hw = H * W, m = N * hw;
    rnd_stack(x, N * C, H, W, tx, sizeof tx);
    rnd_stack(dy, N * C, H, W, td, sizeof td);
    rnd_stack(g, 1, 1, C, tg, sizeof tg);
    rnd_stack(b, 1, 1, C, tb, sizeof tb);
    snprintf(cs, sizeof cs, "%d", C);
    cli_result r;
    CLI_RUN(&r, dir, "explain", "batchnorm", "--input", tx, "--channels", cs, "--gamma", tg, "--beta", tb, "--dy", td);
    expect_agree(&r);
    for (int c = 0; c < C; c++)
        for (int j = 0; j < m; j++) {
            const int at = ((j / hw) * C + c) * hw + j % hw;
            xc[c * m + j] = x[at], dyc[c * m + j] = dy[at];
        }
    static bn_ref ref;
    bn_reference(&ref, C, m, xc, dyc, g, b, 1e-5);
    float fx[2048], fdy[2048], fg[8], fb[8];
    to_float(x, fx, N * C * hw);
    to_float(dy, fdy, N * C * hw);
    to_float(g, fg, C);
    to_float(b, fb, C);
    char model[96];
    snprintf(model, sizeof model, "input %d %d %d\nbatchnorm2d\n", C, H, W);
    for (int p = 0; p < 2; p++) {
        cnn_net *net = tu_net(model, N, paths[p]);
        tu_set(net, "0.weight", fg, C);
        tu_set(net, "0.bias", fb, C);
        tu_run(net, fx, N, fdy);
        float lib[256];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                char header[64], tag[32];
                if (C > 1) snprintf(tag, sizeof tag, "(%d,%d)", n + 1, c + 1);
                else snprintf(tag, sizeof tag, "(%d)", n + 1);
                snprintf(header, sizeof header, "∂L/∂X%s (%d×%d) =", tag, H, W);
                read_matrix(&r, header, got, hw);
                expect_near("dL/dX (folded, in the test)", got, ref.dx + c * m + n * hw, hw);
                memcpy(lib, cnn_net_grad_input(net) + (n * C + c) * hw, (size_t)hw * sizeof *lib);
                expect_close("dL/dX (library)", got, lib, hw, printed_tol[p]);
                snprintf(header, sizeof header, "Y%s (%d×%d) =", tag, H, W);
                read_matrix(&r, header, got, hw);
                expect_near("Y", got, ref.y + c * m + n * hw, hw);
            }
        const cnn_param wg = cnn_net_param_by_name(net, "0.weight"), wb = cnn_net_param_by_name(net, "0.bias");
        for (int c = 0; c < C; c++) {
            char prefix[64];
            if (C > 1) snprintf(prefix, sizeof prefix, "∂L/∂γ(%d) = ", c + 1);
            else snprintf(prefix, sizeof prefix, "∂L/∂γ = ");
            double v = line_value(&r, prefix);
            expect_near("dγ", &v, ref.dg + c, 1);
            expect_close("dγ (library)", &v, wg.grad + c, 1, printed_tol[p]);
            if (C > 1) snprintf(prefix, sizeof prefix, "∂L/∂β(%d) = ", c + 1);
            else snprintf(prefix, sizeof prefix, "∂L/∂β = ");
            v = line_value(&r, prefix);
            expect_near("dβ", &v, ref.db + c, 1);
            expect_close("dβ (library)", &v, wb.grad + c, 1, printed_tol[p]);
            if (C > 1) snprintf(prefix, sizeof prefix, "running_var(%d) = ", c + 1);
            else snprintf(prefix, sizeof prefix, "running_var = ");
            v = line_value(&r, prefix);
            expect_near("running_var", &v, ref.rv + c, 1);
        }
        /* The library's running statistics after its training forward. */
        for (int k = 0; k < cnn_net_buffer_count(net); k++) {
            const cnn_tensor t = cnn_net_buffer(net, k);
            if (strcmp(t.name, "0.running_var")) continue;
            float rv[8];
            for (int c = 0; c < C; c++) rv[c] = ((const float *)t.data)[c];
            expect_close("running_var (library)", ref.rv, rv, C, 1e-6);
        }
        cnn_net_free(net);
    }
}

static void test_batchnorm_random(void **state) {
    (void)state;
    batchnorm_case(1, 1, 2, 3);    /* one sample: the statistics over H·W */
    batchnorm_case(4, 1, 1, 1);    /* one number per sample: a batch of four */
    batchnorm_case(2, 2, 3, 2);    /* two channels, each its own statistics */
    batchnorm_case(3, 2, 1, 4);
    /* Options: --eps, --momentum, and --grad-output for --dy. */
    cli_result r;
    CLI_RUN(&r, dir, "explain", "batchnorm", "--input", "1 2 3 4", "--eps", "0.5", "--momentum", "0.5",
            "--grad-output", "1 0 0 0");
    expect_agree(&r);
    /* μ = 2.5, σ² = 1.25, s = 1/√1.75; running_var = 0.5 + 0.5·1.25·4/3. */
    const double s = 1.0 / sqrt(1.75), rv = 0.5 + 0.5 * 1.25 * 4 / 3;
    double v = line_value(&r, "s = 1/√(σ² + ε)");
    expect_near("s", &v, &s, 1);
    v = line_value(&r, "running_var = ");
    expect_near("running_var", &v, &rv, 1);
    expect_words(&r, "momentum 0.5");
    assert_null(strstr(r.out, "rounded to float"));
    /* A large mean and a small spread: rounding the inputs to float moves the deviations, so the
     * library (which holds floats) is compared with the arithmetic on the rounded numbers, and says so. */
    CLI_RUN(&r, dir, "explain", "batchnorm", "--input", "1000.1 1000.2 1000.4 1000.3");
    expect_agree(&r);
    expect_words(&r, "compared with the arithmetic above on the numbers rounded to float");
    v = line_value(&r, "μ = ");
    const double mu = 1000.25;
    expect_near("μ", &v, &mu, 1);
}

/* ---- a fork: the residual shortcut ---------------------------------------------------------- */

static void test_residual_defaults(void **state) {
    (void)state;
    cli_result r;
    double got[6];
    CLI_RUN(&r, dir, "explain", "residual");
    expect_agree(&r);
    /* a = [1 -2 0.25; 3 -0.5 2], w = 2, b = -1, dy = [1 -1 2; 0.5 3 -2]: z = 2a − 1 = [1 -5 -0.5; 5 -2 3],
     * so relu passes elements 11, 21 and 23; the branch sends back dy·relu'(z)·w, the shortcut dy. */
    const double a[6] = {1, -2, 0.25, 3, -0.5, 2}, dy[6] = {1, -1, 2, 0.5, 3, -2};
    double branch[6], sum[6], dw = 0, db = 0;
    for (int i = 0; i < 6; i++) {
        const double z = 2 * a[i] - 1, dz = z > 0 ? dy[i] : 0;
        branch[i] = dz * 2, sum[i] = branch[i] + dy[i];
        dw += dz * a[i], db += dz;
    }
    read_matrix(&r, "A (2×3) =", got, 6);
    expect_exact("A", got, a, 6);
    read_matrix(&r, "∂L/∂A (branch) (2×3) =", got, 6);
    expect_exact("branch", got, branch, 6);
    read_matrix(&r, "∂L/∂A (shortcut) (2×3) =", got, 6);
    expect_exact("shortcut", got, dy, 6);
    read_matrix(&r, "∂L/∂A (2×3) =", got, 6);
    expect_exact("dL/dA", got, sum, 6);
    const double want_sum[6] = {3, -1, 2, 1.5, 3, -6};
    expect_exact("dL/dA (by hand)", got, want_sum, 6);
    assert_true(line_value(&r, "∂L/∂w = ") == dw);
    assert_true(line_value(&r, "∂L/∂b = ") == db);
    assert_true(dw == -1.5 && db == -0.5);
    assert_non_null(strstr(r.out, "\n  ∂L/∂a11 = ∂L/∂a11 (branch) + ∂L/∂a11 (shortcut) = 2 + 1 = 3\n"));
    assert_non_null(strstr(r.out, "\n  ∂L/∂a23 = ∂L/∂a23 (branch) + ∂L/∂a23 (shortcut) = -4 + (-2) = -6\n"));
    assert_non_null(strstr(r.out, "\n  ∂L/∂z12 = ∂L/∂u12·relu'(z12) = (-1)·0 = 0\n"));
    expect_words(&r, "Where relu is off (z ≤ 0: 3 of the 6 elements) the branch sends back 0");
    /* Each fork line's two contributions add up to its result. */
    const char *ids[6] = {"11", "12", "13", "21", "22", "23"};
    for (int i = 0; i < 6; i++) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "\n  ∂L/∂a%s = ∂L/∂a%s (branch) + ∂L/∂a%s (shortcut) = ", ids[i], ids[i],
                 ids[i]);
        const char *p = strstr(r.out, prefix);
        assert_non_null(p);
        char *end;
        const double u = strtod(p + strlen(prefix), &end);
        assert_true(!strncmp(end, " + ", 3));
        const char *q = end + 3;
        const double sc = strtod(q + (*q == '('), &end);
        assert_true(u == branch[i] && sc == dy[i]);
        assert_true(line_value(&r, prefix + 3) == u + sc);
    }
}

/* Random numbers, with relu or a linear branch, against the test's own arithmetic and the library's
 * graph and value gradients. */
static void residual_case(int rows, int cols, int relu) {
    double a[256], dy[256], w, b, got[256];
    char ta[4096], td[4096], tw[32], tb[32], header[64];
    const int n = rows * cols;
    rnd_stack(a, 1, rows, cols, ta, sizeof ta);
    rnd_stack(dy, 1, rows, cols, td, sizeof td);
    rnd_stack(&w, 1, 1, 1, tw, sizeof tw);
    rnd_stack(&b, 1, 1, 1, tb, sizeof tb);
    cli_result r;
    CLI_RUN(&r, dir, "explain", "residual", "--x", ta, "--w", tw, "--b", tb, "--dy", td, "--branch",
            relu ? "relu" : "linear");
    expect_agree(&r);
    double branch[256], sum[256], dz[256];
    for (int i = 0; i < n; i++) {
        const double z = w * a[i] + b;
        dz[i] = relu && !(z > 0) ? 0.0 : dy[i];
        branch[i] = dz[i] * w, sum[i] = branch[i] + dy[i];
    }
    snprintf(header, sizeof header, "∂L/∂A (branch) (%d×%d) =", rows, cols);
    read_matrix(&r, header, got, n);
    expect_near("branch", got, branch, n);
    snprintf(header, sizeof header, "∂L/∂A (%d×%d) =", rows, cols);
    read_matrix(&r, header, got, n);
    expect_near("sum", got, sum, n);
    for (int i = 0; i < n; i++)
        if (fabs(got[i] - (branch[i] + dy[i])) > 1e-5 * fmax(1, fabs(got[i])))
            fail_msg("element %d: the sum %g is not branch %g + shortcut %g", i, got[i], branch[i], dy[i]);
    char model[160];
    snprintf(model, sizeof model, "input 1 %d %d\nconv2d out_channels=1 kernel_size=1 name=z\n%sadd from=input\n", rows,
             cols, relu ? "relu\n" : "");
    float fa[256], fdy[256], fw = (float)w, fb = (float)b;
    to_float(a, fa, n);
    to_float(dy, fdy, n);
    for (int p = 0; p < 2; p++) {
        cnn_net *net = tu_net(model, 1, paths[p]);
        tu_set(net, "z.weight", &fw, 1);
        tu_set(net, "z.bias", &fb, 1);
        tu_run(net, fa, 1, fdy);
        read_matrix(&r, header, got, n);
        expect_close("dL/dA (library)", got, cnn_net_grad_input(net), n, printed_tol[p]);
        snprintf(header, sizeof header, "∂L/∂Z (%d×%d) =", rows, cols);
        read_matrix(&r, header, got, n);
        expect_near("dL/dZ", got, dz, n);
        expect_close("dL/dZ (library)", got, cnn_net_value_grad(net, cnn_net_value_find(net, "z")), n, printed_tol[p]);
        const double v = line_value(&r, "∂L/∂w = ");
        expect_close("dL/dw (library)", &v, cnn_net_param_by_name(net, "z.weight").grad, 1, printed_tol[p]);
        snprintf(header, sizeof header, "∂L/∂A (%d×%d) =", rows, cols);
        cnn_net_free(net);
    }
}

static void test_residual_random(void **state) {
    (void)state;
    residual_case(3, 4, 1);
    residual_case(5, 5, 1);
    residual_case(2, 3, 0);
    /* A weight of −1 with the linear branch: the branch cancels the shortcut, ∂L/∂a = 0. */
    cli_result r;
    CLI_RUN(&r, dir, "explain", "residual", "--branch", "linear", "--weight", "-1", "--input", "1 2; 3 4", "--dy",
            "1 -2; 3 0.5");
    expect_agree(&r);
    double got[4];
    const double zero[4] = {0, 0, 0, 0};
    read_matrix(&r, "∂L/∂A (2×2) =", got, 4);
    expect_exact("dL/dA", got, zero, 4);
    assert_null(strstr(r.out, "relu(z)"));
}

/* ---- network on a graph --------------------------------------------------------------------- */

static const char graph_model[] =
    "input 2 5 5\n"
    "conv2d out_channels=3 kernel_size=3 padding=1 name=conv1\n"
    "batchnorm2d name=bn1\n"
    "relu name=stem\n"
    "conv2d out_channels=3 kernel_size=3 padding=1 bias=false name=layer1.0.conv1\n"
    "batchnorm2d name=layer1.0.bn1\n"
    "add from=stem   # the shortcut\n"
    "relu name=block\n"
    "concat from=stem name=cat\n"
    "adaptiveavgpool2d output_size=1\n"
    "flatten\n"
    "linear out_features=3 name=fc\n";

static void bad(const char *msg, const char *const *args);

static void write_text(const char *name, const char *text, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static double fnorm(const float *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

static void test_network_graph(void **state) {
    (void)state;
    char path[128], wpath[128];
    write_text("graph.cnn", graph_model, path, sizeof path);
    double x[50];
    char tx[1024];
    rnd_stack(x, 2, 5, 5, tx, sizeof tx);
    cli_result r;
    CLI_RUN(&r, dir, "explain", "network", "--model", path, "--init", "2", "--input", tx, "--target", "1");
    expect_agree(&r);
    expect_words(&r, "The model is a graph");
    /* Reverse file order, with what each layer reads. */
    const char *order[] = {"layer 10, line 12: linear, named fc, reads 9",
                           "layer 7, line 9: concat, named cat, reads block and stem",
                           "layer 5, line 7: add, reads layer1.0.bn1 and stem",
                           "layer 2, line 4: relu, named stem, reads bn1",
                           "layer 0, line 2: conv2d, named conv1, reads input"};
    const char *at = r.out;
    for (int i = 0; i < 5; i++) {
        const char *p = strstr(at, order[i]);
        if (!p) fail_msg("no \"%s\" after the previous layer:\n%.6000s", order[i], r.out);
        at = p;
    }
    assert_non_null(strstr(r.out, "the add gate copies the gradient to each"));
    assert_non_null(strstr(r.out, "concat's backward splits the gradient"));
    /* The fork at stem: three readers, each contribution and the sum, against the library here. */
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_parse(graph_model, &net), CNN_OK);
    assert_int_equal(cnn_net_init(net, 2), CNN_OK);
    assert_int_equal(cnn_net_set_path(net, CNN_PATH_REFERENCE), CNN_OK);
    assert_int_equal(cnn_net_reserve(net, 1), CNN_OK);
    float fx[50], dlogits[3], loss;
    to_float(x, fx, 50);
    const int64_t target = 1;
    assert_int_equal(cnn_net_forward(net, fx, 1), CNN_OK);
    assert_int_equal(cnn_loss_cross_entropy(cnn_net_output(net), &target, 1, 3, &loss, dlogits), CNN_OK);
    cnn_net_zero_grad(net);
    assert_int_equal(cnn_net_backward(net, dlogits), CNN_OK);
    const int stem = cnn_net_value_find(net, "stem"), add = stem + 3, cat = cnn_net_value_find(net, "cat");
    assert_int_equal(cnn_net_layer_kind(net, add - 1), CNN_LAYER_ADD);
    const float *g_stem = cnn_net_value_grad(net, stem), *g_add = cnn_net_value_grad(net, add),
                *g_cat = cnn_net_value_grad(net, cat);
    /* stem's gradient = conv's contribution + add's (its δ, copied) + concat's (its δ's last 3 channels). */
    float conv_part[75];
    for (int i = 0; i < 75; i++) conv_part[i] = g_stem[i] - g_add[i] - g_cat[75 + i];
    const char *fork = strstr(r.out, "a fork: stem is read 3 times, so ∂L/∂stem is the sum of what those layers send "
                                     "back");
    if (!fork) fail_msg("no fork at stem:\n%.6000s", r.out);
    const double printed[4] = {value_after(&r, fork, "‖from layer 3 (conv2d)‖ = "),
                               value_after(&r, fork, "‖from layer 5 (add)‖ = "),
                               value_after(&r, fork, "‖from layer 7 (concat)‖ = "), value_after(&r, fork, "‖sum‖ = ")};
    const double lib[4] = {fnorm(conv_part, 75), fnorm(g_add, 75), fnorm(g_cat + 75, 75), fnorm(g_stem, 75)};
    for (int i = 0; i < 4; i++)
        if (fabs(printed[i] - lib[i]) > 1e-5 * lib[i]) fail_msg("fork term %d: printed %g, the library's %g", i,
                                                                printed[i], lib[i]);
    /* The sum is a sum of vectors, not of norms: the three parts are not parallel. */
    assert_true(lib[3] < lib[0] + lib[1] + lib[2] - 1e-6);
    /* ‖∂L/∂input‖ as the first layer printed it. */
    const char *l0 = strstr(r.out, "layer 0, line 2: conv2d");
    const double pin = value_after(&r, l0, "‖∂L/∂in‖ = "), nin = fnorm(cnn_net_grad_input(net), 50);
    if (fabs(pin - nin) > 1e-5 * nin) fail_msg("‖∂L/∂in‖ printed %g, the library's %g", pin, nin);
    cnn_net_free(net);

    /* Markdown, and eval mode with running statistics from a weights file: the layers on their own
     * must get the buffers too, or the chain would not match the whole net. */
    CLI_RUN(&r, dir, "explain", "network", "--model", path, "--seed", "4", "--format", "markdown");
    CLI_EXPECT(&r, 0, NULL);
    assert_non_null(strstr(r.out, "| layer | line | kind | name | reads |"));
    assert_non_null(strstr(r.out, "A fork: `stem` is read 3 times"));
    assert_non_null(strstr(r.out, "**agree**"));
    net = tu_net(graph_model, 4, CNN_PATH_FAST);
    assert_int_equal(cnn_net_init(net, 5), CNN_OK);
    float batch[200];
    for (int i = 0; i < 200; i++) batch[i] = (float)(rnd() + 1.0);
    for (int k = 0; k < 3; k++) assert_int_equal(cnn_net_forward(net, batch, 4), CNN_OK);   /* running statistics */
    snprintf(wpath, sizeof wpath, "%s/w.safetensors", dir);
    assert_int_equal(cnn_net_save_weights(net, wpath, 0), CNN_OK);
    cnn_net_set_training(net, 0);
    assert_int_equal(cnn_net_forward(net, fx, 1), CNN_OK);
    assert_int_equal(cnn_loss_cross_entropy(cnn_net_output(net), &target, 1, 3, &loss, dlogits), CNN_OK);
    cnn_net_free(net);
    CLI_RUN(&r, dir, "explain", "network", "--model", path, "--weights", wpath, "--input", tx, "--target", "1",
            "--mode", "eval");
    expect_agree(&r);
    expect_words(&r, "Mode: eval");
    assert_non_null(strstr(r.out, "the running statistics, a fixed linear map"));
    const double pl = value_after(&r, NULL, "against class 1: L = ");
    if (fabs(pl - loss) > 1e-5 * fmax(1, loss)) fail_msg("eval loss printed %g, the library's %g", pl, (double)loss);

    /* A Sequential model with batch norm, in training mode. */
    CLI_RUN(&r, dir, "explain", "network", "--model", "models/lenet5.cnn", "--seed", "3");
    expect_agree(&r);
    write_text("net.cnn", "input 1 6 6\nconv2d out_channels=2 kernel_size=3\nbatchnorm2d\nrelu\nflatten\n"
                          "linear out_features=4\nbatchnorm1d\nlinear out_features=2\n", path, sizeof path);
    CLI_RUN(&r, dir, "explain", "network", "--model", path, "--mode", "eval");
    expect_agree(&r);
    assert_null(strstr(r.out, "The model is a graph"));
    assert_non_null(strstr(r.out, "layer 1, line 3: batchnorm2d, [2, 4, 4] → [2, 4, 4]"));
    assert_null(strstr(r.out, "\n    ?\n"));
    /* In training mode batchnorm1d sees one value per feature: PyTorch's error, and a hint. */
    bad("use --mode eval", (const char *const[]){"explain", "network", "--model", path, NULL});
}

/* ---- markdown ------------------------------------------------------------------------------- */

static void test_markdown(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "explain", "conv", "--format", "markdown");
    CLI_EXPECT(&r, 0, NULL);
    const char *want[] = {"## `cnn explain conv`",
                          "### 3. ∂L/∂X",
                          "$$\\frac{\\partial L}{\\partial x_{22}} = \\frac{\\partial L}{\\partial o_{11}} \\cdot w_{22}",
                          "$\\mathrm{rot180}(W)$ (2×2):\n\n|   | 1 | 2 |\n|---|--:|--:|\n| **1** | 4 | 3 |\n"
                          "| **2** | -2 | 1 |\n",
                          "| computed by | numbers |",
                          "\n**agree**: "};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(r.out, want[i])) fail_msg("markdown lacks \"%s\":\n%.3000s", want[i], r.out);
    const char *topics[] = {"chain", "maxpool", "avgpool", "relu", "sigmoid", "linear", "batchnorm", "residual"};
    for (size_t i = 0; i < sizeof topics / sizeof *topics; i++) {
        CLI_RUN(&r, dir, "explain", topics[i], "--format", "markdown");
        CLI_EXPECT(&r, 0, NULL);
        if (!strstr(r.out, "$$") || !strstr(r.out, "**agree**")) fail_msg("%s in markdown:\n%.2000s", topics[i], r.out);
    }
}

/* ---- bad input ------------------------------------------------------------------------------ */

/* The message begins "cnn explain: " (the topic's own checks of values) or "cnn explain TOPIC: "
 * (the command line's syntax, and options left out). */
static void bad(const char *msg, const char *const *args) {
    cli_result r;
    cli_run(&r, dir, args);
    const char *subs[] = {msg, NULL};
    cli_expect(&r, 2, subs);
    char topic[96];
    snprintf(topic, sizeof topic, "cnn explain %s: ", args[1]);
    if (strncmp(r.err, "cnn explain: ", 13) && strncmp(r.err, topic, strlen(topic)))
        fail_msg("%.300s\n  stderr begins neither \"cnn explain: \" nor \"%s\":\n%.800s", r.cmd, topic, r.err);
}

#define BAD(msg, ...) bad((msg), (const char *const[]){"explain", __VA_ARGS__, NULL})

static void test_bad_input(void **state) {
    (void)state;
    BAD("row 2 has 2 numbers, but row 1 has 3", "conv", "--input", "1 2 3; 4 5; 6 7 8");
    BAD("'x' is not a number (row 1, column 2)", "conv", "--kernel", "1 x; 3 4");
    BAD("'0x10' is not a number", "maxpool", "--input", "0x10 1; 2 3");
    BAD("'nan' is not a number", "relu", "--input", "nan");
    BAD("is out of range", "sigmoid", "--input", "1e999");
    BAD("no numbers", "conv", "--input", " ; ");
    BAD("the kernel (4x4) is larger than the padded input (3x3 with padding 0,0: 3x3)", "conv", "--kernel",
        "1 2 3 4; 5 6 7 8; 9 1 2 3; 4 5 6 7");
    BAD("the kernel (3x3) is larger than the input (2x2)", "maxpool", "--input", "1 2; 3 4", "--kernel-size", "3");
    BAD("the kernel (3x3) is larger than the input (2x2)", "avgpool", "--input", "1 2; 3 4", "--kernel-size", "3");
    BAD("--grad-output is 1 matrix of 3x3, but the output is 1 of 2x2", "conv", "--grad-output", "1 2 3; 4 5 6; 7 8 9");
    BAD("--grad-output is 2x2, but the output is 2x3", "relu", "--grad-output", "1 2; 3 4");
    BAD("--input has 1 matrix but --channels 2 needs 2", "conv", "--channels", "2", "--input", "1 2; 3 4");
    BAD("--kernel has 3 matrices, but with 2 input channels it needs a multiple of 2", "conv", "--input",
        "1 2; 3 4 | 5 6; 7 8", "--kernel", "1 | 2 | 3");
    BAD("matrix 2 is 1x2, but matrix 1 is 2x2", "conv", "--input", "1 2; 3 4 | 5 6");
    BAD("--bias has 2 numbers, but there is 1 filter", "conv", "--bias", "1 2");
    BAD("--stride 0: expected a whole number from 1 to 16", "conv", "--stride", "0");
    BAD("--padding -1: expected a whole number", "conv", "--padding", "-1");
    BAD("limited to 16x16", "relu", "--input",
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17");
    BAD("--weight has 2 rows, but the input has 3 features", "linear", "--weight", "1 2; 3 4");
    BAD("--z abc: expected one number", "chain", "--z", "abc");
    BAD("--format html: expected text or markdown", "chain", "--format", "html");
    BAD("unknown option '--kernal'", "conv", "--kernal", "1");
    BAD("option --input needs a value", "conv", "--input");
    BAD("unknown topic 'convolution'", "convolution");
    BAD("--model is required", "network");
    BAD("--mode fast: expected train or eval", "network", "--model", "models/lenet5.cnn", "--mode", "fast");
    BAD("--input has 3 matrices, but with 2 channels it needs a multiple of 2", "batchnorm", "--channels", "2",
        "--input", "1 2 | 3 4 | 5 6");
    BAD("batch norm in training mode needs more than 1 value per channel", "batchnorm", "--input", "7");
    BAD("--gamma has 2 numbers, but the input has 1 channel", "batchnorm", "--gamma", "1 2");
    BAD("--beta has 3 numbers, but the input has 2 channels", "batchnorm", "--channels", "2", "--input", "1 2 | 3 4",
        "--beta", "1 2 3");
    BAD("--dy is 1 matrix of 1x2, but the input (and y) is 2 of 2x2", "batchnorm", "--dy", "1 2");
    BAD("--eps -1: expected a number >= 0", "batchnorm", "--eps", "-1");
    BAD("σ² + ε = 0", "batchnorm", "--input", "3 3; 3 3", "--eps", "0");
    BAD("--channels 9: expected a whole number from 1 to 8", "batchnorm", "--channels", "9");
    BAD("'q' is not a number", "batchnorm", "--input", "1 q");
    BAD("--dy is 2x2, but out (the input's shape) is 2x3", "residual", "--dy", "1 2; 3 4");
    BAD("--branch tanh: expected relu or linear", "residual", "--branch", "tanh");
    BAD("--weight 1 2: expected one number", "residual", "--weight", "1 2");
    BAD("unknown option '--gamma'", "residual", "--gamma", "1");
    BAD("cannot open", "network", "--model", "/nonexistent/net.cnn");
    BAD("--target 10: expected a class from 0 to 9", "network", "--model", "models/lenet5.cnn", "--target", "10");
    BAD("--input is 1 matrix of 2x2, but models/lenet5.cnn takes 1 of 28x28", "network", "--model",
        "models/lenet5.cnn", "--input", "1 2; 3 4");
    cli_result r;
    CLI_RUN(&r, dir, "explain");
    CLI_EXPECT(&r, 2, "usage: cnn explain TOPIC");
}

/* ---- no line limit, steps that scale, limits that are named -------------------------------- */

/* explain network rebuilds each layer from its line: a line of 2000 characters (spaces between the
 * options, a long name, a long comment) is the same layer, not one cut to other options (which read
 * past the end of the gradient's buffer: ASan in the SANITIZE build). */
static void test_network_long_lines(void **state) {
    (void)state;
    static char model[16384];
    char spaces[2001], name[91], comment[1501];
    memset(spaces, ' ', 2000), spaces[2000] = '\0';
    memset(name, 'r', 90), name[90] = '\0';   /* a name may have 100 bytes */
    memset(comment, 'x', 1500), comment[1500] = '\0';
    snprintf(model, sizeof model,
             "input 1 5 5\nconv2d out_channels=2 kernel_size=3%spadding=1\nrelu name=%s\nmaxpool2d kernel_size=2 "
             "from=%s\nflatten\nlinear%sout_features=3 # %s\n", spaces, name, name, spaces, comment);
    char path[256];
    write_text("long.cnn", model, path, sizeof path);
    cli_result r;
    CLI_RUN(&r, dir, "explain", "network", "--model", path, "--seed", "3", "--target", "2");
    expect_agree(&r);
    assert_non_null(strstr(r.out, "layer 0, line 2: conv2d"));
    assert_non_null(strstr(r.out, "layer 4, line 6: linear"));
}

/* Central differences step with the values: 1e6 in conv and 1e8 in linear agree, also beside
 * small values. */
static void test_large_values_agree(void **state) {
    (void)state;
    cli_result r;
    CLI_RUN(&r, dir, "explain", "conv", "--input", "1e6 2e6 3e6; 4e6 5e6 6e6; 7e6 8e6 9e6");
    expect_agree(&r);
    CLI_RUN(&r, dir, "explain", "conv", "--input", "1e6 2e6 3; 4 5e6 6; 7 8 9e6");
    expect_agree(&r);
    CLI_RUN(&r, dir, "explain", "linear", "--input", "1e8 2e8 3e8; -1e8 0 2e8");
    expect_agree(&r);
    CLI_RUN(&r, dir, "explain", "linear", "--input", "1e8 2 3; -1 0 2e8");
    expect_agree(&r);
    /* The step is in the table, and the rule says what each row is compared with. */
    assert_non_null(strstr(r.out, "central differences (step 2e+04)"));
    assert_non_null(strstr(r.out, "Each row is compared with the notes' arithmetic"));
}

static void test_limits_named(void **state) {
    (void)state;
    static char many[8192];
    size_t at = 0;
    for (int i = 0; i < 1025; i++) at += (size_t)snprintf(many + at, sizeof many - at, "%s1", i ? "|" : "");
    BAD("--input: 1025 matrices, but at most 8 are allowed here (the limit on channels and filters)", "conv",
        "--input", many);
    BAD("--input: 1025 matrices, but at most 8 are allowed here", "batchnorm", "--input", many);
    BAD("--kernel: 1025 matrices, but at most 64 are allowed here (the limit on filters × channels)", "conv",
        "--kernel", many);
    /* 17×17 numbers: more than a matrix holds, and the message names the 16x16 limit. */
    static char big[4096];
    at = 0;
    for (int i = 0; i < 17; i++)
        for (int j = 0; j < 17; j++) at += (size_t)snprintf(big + at, sizeof big - at, j ? " 1" : i ? "; 1" : "1");
    BAD("more than 256 numbers; explain prints every element's derivation, so matrices are limited to 16x16", "relu",
        "--input", big);
    BAD("--input: the matrix is 17x17; explain prints every element's derivation, so matrices are limited to 16x16",
        "conv", "--input", big);
}

/* fuzz_explain_network's finding (tests/fuzz/regressions/explain_network/conv-stride-7186-phases):
 * a conv2d of 26 channels with stride 7186 made the parser size the strided input gradient's
 * workspace over all 7186² phases, for 6 s (23 s in the fuzz build); only the phases with cells
 * count now. */
static void test_huge_stride_parses_at_once(void **state) {
    (void)state;
    const char *model = "input 26 7 5\nconv2d out_channels=5 kernel_size=4,2 stride=7186\ntanh\n";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cnn_net *net = NULL;
    assert_int_equal(cnn_net_parse(model, &net), CNN_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (s > 2.0) fail_msg("parsing took %.1f s", s);
    int out[3];
    cnn_net_output_shape(net, out);
    assert_int_equal(out[0], 5), assert_int_equal(out[1], 1), assert_int_equal(out[2], 1);
    cnn_net_free(net);
    char path[256];
    write_text("stride.cnn", model, path, sizeof path);
    cli_result r;
    CLI_RUN(&r, dir, "explain", "network", "--model", path, "--seed", "1");
    expect_agree(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),          cmocka_unit_test(test_chain_defaults),
        cmocka_unit_test(test_chain_original_figure), cmocka_unit_test(test_conv_defaults),
        cmocka_unit_test(test_conv_random),   cmocka_unit_test(test_pool_defaults),
        cmocka_unit_test(test_pool_random),   cmocka_unit_test(test_relu_sigmoid),
        cmocka_unit_test(test_linear),        cmocka_unit_test(test_batchnorm_defaults),
        cmocka_unit_test(test_batchnorm_random), cmocka_unit_test(test_residual_defaults),
        cmocka_unit_test(test_residual_random), cmocka_unit_test(test_network),
        cmocka_unit_test(test_network_graph),
        cmocka_unit_test(test_markdown),      cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_network_long_lines), cmocka_unit_test(test_large_values_agree),
        cmocka_unit_test(test_limits_named),        cmocka_unit_test(test_huge_stride_parses_at_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
