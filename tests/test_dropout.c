/* Dropout's masks, and the values of gelu, silu and softmax.
 *
 * Dropout, over 200,000 elements for p in {0.1, 0.5, 0.9, 0.15}: the fraction of zeros is within 3
 * standard deviations of p; every survivor is x·scale exactly, with PyTorch's float scale
 * 1.0f / (float)(1 − p); the gradient is dy·scale where the output survived and 0 elsewhere; the
 * reference path drops the same elements. 1 and 2 threads give the same bits; consecutive training
 * forwards draw new masks and cnn_net_set_seed replays them; eval mode, and p = 0 in training, are
 * the identity; p = 1 zeroes everything. Option errors.
 *
 * gelu (both forms), silu and softmax: outputs and input gradients at a few points, on both paths,
 * against the formulas evaluated here in double and values from PyTorch (float64).
 */
#include "testutil.h"

#include <float.h>
#include <stdint.h>

#define PI 3.14159265358979323846

enum { N = 10, C = 8, H = 50, W = 50, COUNT = N * C * H * W };   /* 200,000 elements */
static const char *const MODEL_FMT = "input 8 50 50\ndropout p=%s\n";

static float xs[COUNT], dys[COUNT];

/* x and dy: nonzero everywhere, so that a zero in the output is a dropped element. */
static int setup(void **state) {
    (void)state;
    for (int i = 0; i < COUNT; i++) {
        xs[i] = (float)((i * 37) % 101 + 1) / 32.0f * (i % 3 ? 1.0f : -1.0f);
        dys[i] = (float)((i * 13) % 17 + 1) / 8.0f * (i % 2 ? -1.0f : 1.0f);
    }
    return 0;
}

static cnn_net *dropout_net(const char *p, cnn_path path) {
    char text[128];
    snprintf(text, sizeof text, MODEL_FMT, p);
    return tu_net(text, N, path);
}

/* One forward and backward of the batch; copies the output and the input gradient. */
static void pass(cnn_net *net, float *y, float *g) {
    tu_run(net, xs, N, dys);
    memcpy(y, cnn_net_output(net), sizeof xs);
    memcpy(g, cnn_net_grad_input(net), sizeof xs);
}

static float ya[COUNT], ga[COUNT], yb[COUNT], gb[COUNT];

static void test_dropout_fraction_and_scale(void **state) {
    (void)state;
    /* at 0.15, PyTorch's 1.0f / 0.85f (1.17647052) is one float below (float)(1/0.85) */
    static const char *const ps[] = {"0.1", "0.5", "0.9", "0.15"};
    for (int k = 0; k < 4; k++) {
        const double p = atof(ps[k]);
        const float scale = 1.0f / (float)(1.0 - p);
        cnn_net *fast = dropout_net(ps[k], CNN_PATH_FAST), *ref = dropout_net(ps[k], CNN_PATH_REFERENCE);
        pass(fast, ya, ga);
        pass(ref, yb, gb);
        int zeros = 0;
        for (int i = 0; i < COUNT; i++) {
            const int dropped = ya[i] == 0.0f;
            zeros += dropped;
            if (dropped != (yb[i] == 0.0f)) fail_msg("p=%s: element %d: the paths' masks differ", ps[k], i);
            if (dropped) {
                if (ga[i] != 0.0f || gb[i] != 0.0f) fail_msg("p=%s: dropped element %d has gradient %g", ps[k], i, ga[i]);
            } else {
                if (ya[i] != xs[i] * scale)
                    fail_msg("p=%s: y[%d] = %.9g, expected x·scale = %.9g", ps[k], i, ya[i], xs[i] * scale);
                if (ga[i] != dys[i] * scale)
                    fail_msg("p=%s: dx[%d] = %.9g, expected dy·scale = %.9g", ps[k], i, ga[i], dys[i] * scale);
                /* the reference path in double, rounded once */
                if (yb[i] != (float)((double)xs[i] * (1.0 / (1.0 - p))) ||
                    gb[i] != (float)((double)dys[i] * (1.0 / (1.0 - p))))
                    fail_msg("p=%s: reference y[%d] = %.9g, dx = %.9g", ps[k], i, yb[i], gb[i]);
            }
        }
        const double frac = (double)zeros / COUNT, sigma = sqrt(p * (1.0 - p) / COUNT);
        if (!(fabs(frac - p) <= 3.0 * sigma))
            fail_msg("p=%s: %.5f of the elements are zero, %.2f standard deviations from p", ps[k], frac,
                     fabs(frac - p) / sigma);
        cnn_net_free(fast);
        cnn_net_free(ref);
    }
}

static void test_dropout_same_bits_for_any_thread_count(void **state) {
    (void)state;
    const int threads = cnn_get_threads();
    cnn_net *net = dropout_net("0.5", CNN_PATH_FAST);
    cnn_net_set_seed(net, 12345);
    assert_int_equal(cnn_set_threads(1), CNN_OK);
    pass(net, ya, ga);
    cnn_net_set_seed(net, 12345);
    assert_int_equal(cnn_set_threads(2), CNN_OK);
    pass(net, yb, gb);
    assert_int_equal(cnn_set_threads(threads), CNN_OK);
    assert_memory_equal(ya, yb, sizeof ya);
    assert_memory_equal(ga, gb, sizeof ga);
    cnn_net_free(net);
}

/* Elements dropped in one output and not in the other. */
static int mask_differences(const float *a, const float *b) {
    int d = 0;
    for (int i = 0; i < COUNT; i++) d += (a[i] == 0.0f) != (b[i] == 0.0f);
    return d;
}

static void test_dropout_new_masks_and_seeds(void **state) {
    (void)state;
    static float y2[COUNT], y3[COUNT];
    cnn_net *net = dropout_net("0.5", CNN_PATH_FAST), *other = dropout_net("0.5", CNN_PATH_FAST);
    cnn_net_set_seed(net, 99);
    pass(net, ya, ga);
    pass(net, yb, gb);
    /* consecutive forwards: independent masks differ in about half the elements */
    const int d = mask_differences(ya, yb);
    if (!(fabs((double)d / COUNT - 0.5) < 0.01)) fail_msg("consecutive masks differ in %d of %d elements", d, COUNT);
    /* the same seed replays the same masks, pass by pass */
    cnn_net_set_seed(net, 99);
    pass(net, y2, gb);
    pass(net, y3, gb);
    assert_memory_equal(ya, y2, sizeof ya);
    assert_memory_equal(yb, y3, sizeof yb);
    /* a second net with the same seed draws the same masks; another seed others */
    cnn_net_set_seed(other, 99);
    pass(other, y2, gb);
    assert_memory_equal(ya, y2, sizeof ya);
    cnn_net_set_seed(other, 100);
    pass(other, y2, gb);
    assert_true(mask_differences(ya, y2) > COUNT / 3);
    cnn_net_free(net);
    cnn_net_free(other);
}

/* Eval mode for any p, and p = 0 in training: the output is the input, the gradient dy. */
static void test_dropout_identity(void **state) {
    (void)state;
    static const char *const ps[] = {"0.5", "1", "0"};
    for (int k = 0; k < 3; k++)
        for (int path = 0; path < 2; path++) {
            cnn_net *net = dropout_net(ps[k], path ? CNN_PATH_REFERENCE : CNN_PATH_FAST);
            if (k < 2) cnn_net_set_training(net, 0);
            pass(net, ya, ga);
            if (memcmp(ya, xs, sizeof xs) || memcmp(ga, dys, sizeof dys))
                fail_msg("p=%s, %s mode, %s path: not the identity", ps[k], k < 2 ? "eval" : "training",
                         path ? "reference" : "fast");
            cnn_net_free(net);
        }
}

static void test_dropout_p1_zeroes_everything(void **state) {
    (void)state;
    for (int path = 0; path < 2; path++) {
        cnn_net *net = dropout_net("1", path ? CNN_PATH_REFERENCE : CNN_PATH_FAST);
        pass(net, ya, ga);
        for (int i = 0; i < COUNT; i++)
            if (ya[i] != 0.0f || ga[i] != 0.0f) fail_msg("p=1: y[%d] = %g, dx = %g", i, ya[i], ga[i]);
        cnn_net_free(net);
    }
}

static void expect_parse_error(const char *text, const char *sub) {
    cnn_net *net = NULL;
    assert_status(cnn_net_parse(text, &net), CNN_ERR_PARSE);
    assert_null(net);
    assert_error_contains(sub);
    assert_error_contains("line 2");
}

static void test_option_errors(void **state) {
    (void)state;
    expect_parse_error("input 1 2 2\ndropout p=1.5\n", "between 0 and 1");
    expect_parse_error("input 1 2 2\ndropout p=-0.1\n", "between 0 and 1");
    expect_parse_error("input 1 2 2\ndropout p=half\n", "p=half");
    expect_parse_error("input 1 2 2\ndropout inplace=maybe\n", "inplace=maybe");
    expect_parse_error("input 1 2 2\ndropout rate=0.5\n", "'rate'");
    expect_parse_error("input 1 2 2\ngelu approximate=erf\n", "expected none or tanh");
    expect_parse_error("input 1 2 2\nsilu inplace=true\n", "'inplace'");
    expect_parse_error("input 1 2 2\nsoftmax dim=0\n", "only dim=1");
    expect_parse_error("input 1 2 2\nsoftmax dim=-1\n", "only dim=1");
    expect_parse_error("input 1 2 2\nsoftmax dim=2\n", "only dim=1");
    /* accepted: PyTorch's spellings */
    static const char *const ok[] = {"input 1 2 2\nDropout p=0.2 inplace=true\n", "input 1 2 2\nGELU approximate=none\n",
                                     "input 1 2 2\nSiLU\n", "input 1 2 2\nSoftmax dim=1\n", "input 1 2 2\ndropout\n"};
    for (int i = 0; i < 5; i++) {
        cnn_net *net = NULL;
        if (cnn_net_parse(ok[i], &net) != CNN_OK) fail_msg("%s: %s", ok[i], cnn_last_error());
        cnn_net_free(net);
    }
}

/* ---- gelu, silu, softmax ------------------------------------------------------------------- */

#define NPTS 9
static const float PTS[NPTS] = {1.0f, -0.5f, 2.5f, -3.0f, 0.0f, 0.125f, -5.0f, 8.0f, -12.0f};

static double gelu_d(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double gelu_grad_d(double x) { return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2.0 * PI); }
/* 0.5·x·(1 + tanh u) written as x/(1 + e^(−2u)), which does not cancel for very negative x */
static double tgelu_d(double x) { return x / (1.0 + exp(-2.0 * sqrt(2.0 / PI) * (x + 0.044715 * x * x * x))); }
static double tgelu_grad_d(double x) {
    const double k = sqrt(2.0 / PI), t = tanh(k * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
}
static double silu_d(double x) { return x / (1.0 + exp(-x)); }
static double silu_grad_d(double x) {
    const double s = 1.0 / (1.0 + exp(-x));
    return s + x * s * (1.0 - s);
}

/* Runs the one-layer net `layer` over PTS (as 9 channels of one sample) with dy = 1 on both paths,
 * and checks y and dx against f and f'. The fast path's outputs are held to a relative error of
 * 1e-5 too wherever they are normal floats, so that a form that cancels in float (1 + erf(x/√2)
 * for x = −5 is 5.7e−7, a few float ulps of 1) would fail. */
static void check_pointwise(const char *layer, double (*f)(double), double (*df)(double)) {
    char text[128];
    snprintf(text, sizeof text, "input %d 1 1\n%s\n", NPTS, layer);
    const float ones[NPTS] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    double want[NPTS], dwant[NPTS];
    for (int i = 0; i < NPTS; i++) want[i] = f(PTS[i]), dwant[i] = df(PTS[i]);
    for (int path = 0; path < 2; path++) {
        cnn_net *net = tu_net(text, 1, path ? CNN_PATH_REFERENCE : CNN_PATH_FAST);
        tu_run(net, PTS, 1, ones);
        tu_close(layer, cnn_net_output(net), want, NPTS, 1e-6);
        tu_close(layer, cnn_net_grad_input(net), dwant, NPTS, 1e-6);
        for (int i = 0; path == 0 && i < NPTS; i++) {
            const double got = cnn_net_output(net)[i];
            if (fabs(want[i]) >= FLT_MIN && !(fabs(got - want[i]) <= 1e-5 * fabs(want[i])))
                fail_msg("%s (fast path) at %g: %.9g, expected %.9g (relative error %.2e)", layer, PTS[i], got,
                         want[i], fabs(got - want[i]) / fabs(want[i]));
            if (want[i] == 0.0 && got != 0.0) fail_msg("%s (fast path) at %g: %.9g, expected 0", layer, PTS[i], got);
        }
        cnn_net_free(net);
    }
}

static void test_gelu_silu_values(void **state) {
    (void)state;
    /* the test's own formulas against PyTorch 1.13 in float64 */
    assert_true(fabs(gelu_d(1.0) - 0.8413447460685429) < 1e-15);
    assert_true(fabs(tgelu_d(1.0) - 0.8411919906082768) < 1e-15);
    assert_true(fabs(silu_d(1.0) - 0.7310585786300049) < 1e-15);
    assert_true(fabs(gelu_d(-3.0) - -0.00404969409489031) < 1e-15);
    assert_true(fabs(tgelu_d(-3.0) - -0.0036373920817729943) < 1e-15);
    assert_true(fabs(gelu_grad_d(-0.5) - 0.13250487534383712) < 1e-15);
    assert_true(fabs(tgelu_grad_d(-0.5) - 0.13263009646535764) < 1e-15);
    assert_true(fabs(silu_grad_d(2.5) - 1.0994011113415267) < 1e-15);
    /* gelu(−12) ≈ −2.1e−32 and silu(−12) ≈ −7.4e−5 keep their relative precision in float */
    check_pointwise("gelu", gelu_d, gelu_grad_d);
    check_pointwise("gelu approximate=none", gelu_d, gelu_grad_d);
    check_pointwise("gelu approximate=tanh", tgelu_d, tgelu_grad_d);
    check_pointwise("silu", silu_d, silu_grad_d);
}

/* softmax over the channels: each position's values sum to 1 and match exp(x − m)/Σ; the input
 * gradient sums to 0 over the channels. */
static void check_softmax(const char *text, int n, int c, int hw) {
    const int count = n * c * hw;
    float *x = malloc(count * sizeof *x), *dy = malloc(count * sizeof *dy);
    double *want = malloc(count * sizeof *want), *dwant = malloc(count * sizeof *dwant);
    for (int i = 0; i < count; i++) x[i] = (float)((i * 29) % 23 - 11) / 3.0f, dy[i] = (float)((i * 7) % 5 - 2);
    x[0] = 1000.0f, x[hw] = -1000.0f;   /* huge logits stay finite */
    for (int s = 0; s < n; s++)
        for (int q = 0; q < hw; q++) {
            const int at = s * c * hw + q;
            double m = -INFINITY, sum = 0.0, dot = 0.0;
            for (int k = 0; k < c; k++) m = fmax(m, x[at + k * hw]);
            for (int k = 0; k < c; k++) sum += exp(x[at + k * hw] - m);
            for (int k = 0; k < c; k++) want[at + k * hw] = exp(x[at + k * hw] - m) / sum;
            for (int k = 0; k < c; k++) dot += dy[at + k * hw] * want[at + k * hw];
            for (int k = 0; k < c; k++) dwant[at + k * hw] = want[at + k * hw] * (dy[at + k * hw] - dot);
        }
    for (int path = 0; path < 2; path++) {
        cnn_net *net = tu_net(text, n, path ? CNN_PATH_REFERENCE : CNN_PATH_FAST);
        tu_run(net, x, n, dy);
        const float *y = cnn_net_output(net), *g = cnn_net_grad_input(net);
        tu_close("softmax", y, want, count, 1e-6);
        tu_close("softmax dx", g, dwant, count, 1e-6);
        for (int s = 0; s < n; s++)
            for (int q = 0; q < hw; q++) {
                double sum = 0.0, gsum = 0.0;
                for (int k = 0; k < c; k++) sum += y[s * c * hw + q + k * hw], gsum += g[s * c * hw + q + k * hw];
                if (!(fabs(sum - 1.0) < 1e-6 && fabs(gsum) < 1e-6))
                    fail_msg("%s path, sample %d position %d: Σ y = %.9g, Σ dx = %.3g", path ? "reference" : "fast",
                             s, q, sum, gsum);
            }
        assert_true(y[0] == 1.0f && y[hw] == 0.0f);
        cnn_net_free(net);
    }
    free(x), free(dy), free(want), free(dwant);
}

static void test_softmax_values(void **state) {
    (void)state;
    /* PyTorch: softmax([1, 2, 3]) = [0.09003057317038045, 0.2447284710547976, 0.6652409557748218] */
    const float x[3] = {1, 2, 3}, dy[3] = {0, 0, 0};
    const double want[3] = {0.09003057317038045, 0.2447284710547976, 0.6652409557748218};
    for (int path = 0; path < 2; path++) {
        cnn_net *net = tu_net("input 3 1 1\nflatten\nsoftmax\n", 1, path ? CNN_PATH_REFERENCE : CNN_PATH_FAST);
        tu_run(net, x, 1, dy);
        tu_close("softmax([1, 2, 3])", cnn_net_output(net), want, 3, 1e-7);
        cnn_net_free(net);
    }
    check_softmax("input 6 1 1\nflatten\nsoftmax\n", 4, 6, 1);
    check_softmax("input 5 1 1\nsoftmax dim=1\n", 3, 5, 1);
    check_softmax("input 4 3 7\nsoftmax\n", 3, 4, 21);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropout_fraction_and_scale),
        cmocka_unit_test(test_dropout_same_bits_for_any_thread_count),
        cmocka_unit_test(test_dropout_new_masks_and_seeds),
        cmocka_unit_test(test_dropout_identity),
        cmocka_unit_test(test_dropout_p1_zeroes_everything),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_gelu_silu_values),
        cmocka_unit_test(test_softmax_values),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
