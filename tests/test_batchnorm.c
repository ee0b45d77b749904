/* test_batchnorm.c - batchnorm2d and batchnorm1d against their formulas, computed here in double.
 *
 * The grid (test_grid.c) holds their backward to central differences and the fast path to the
 * reference; this file checks what a gradient check cannot see: the running statistics after one
 * and three training forwards (the unbiased variance, num_batches_tracked, momentum=none's
 * cumulative average), that eval mode normalises with them, PyTorch's error for one value per
 * channel, the shape errors, the same bits on 1 and 2 threads, and the buffers' names, dtypes and
 * round trip through a weights file. */
#include "testutil.h"
#include "clirun.h"

#include <stdint.h>

/* The per-sample shape of a test: C channels of HW values (HW = 1 for batchnorm1d). */
typedef struct bn_case {
    const char *text;
    int n, c, hw;
    double eps, momentum;   /* momentum < 0: none */
} bn_case;

static float input_value(int pass, int i) { return (float)(1.5 * sin(0.37 * i + 1.3 * pass) + 0.4 * pass - 0.2); }
static float grad_value(int i) { return (float)cos(0.23 * i + 0.5); }

static void fill_input(float *x, int count, int pass) {
    for (int i = 0; i < count; i++) x[i] = input_value(pass, i);
}

/* Channel c's mean and biased variance of x [n, C, hw], in double. */
static void moments(const bn_case *t, const float *x, int c, double *mu, double *var) {
    const int m = t->n * t->hw;
    double s = 0.0, q = 0.0;
    for (int k = 0; k < t->n; k++)
        for (int i = 0; i < t->hw; i++) s += x[(k * t->c + c) * t->hw + i];
    *mu = s / m;
    for (int k = 0; k < t->n; k++)
        for (int i = 0; i < t->hw; i++) {
            const double d = x[(k * t->c + c) * t->hw + i] - *mu;
            q += d * d;
        }
    *var = q / m;
}

/* The net's buffer `name` ("0.running_mean", ...). */
static cnn_tensor buffer(const cnn_net *net, const char *name) {
    for (int i = 0; i < cnn_net_buffer_count(net); i++) {
        cnn_tensor b = cnn_net_buffer(net, i);
        if (!strcmp(b.name, name)) return b;
    }
    fail_msg("no buffer %s", name);
    cnn_tensor none = {0};
    return none;
}

static void set_affine(cnn_net *net, const char *layer, int c) {
    char name[64];
    float *v = malloc((size_t)c * sizeof *v);
    for (int k = 0; k < c; k++) v[k] = 0.6f + 0.3f * k;
    snprintf(name, sizeof name, "%s.weight", layer);
    tu_set(net, name, v, c);
    for (int k = 0; k < c; k++) v[k] = 0.25f * k - 0.3f;
    snprintf(name, sizeof name, "%s.bias", layer);
    tu_set(net, name, v, c);
    free(v);
}

/* Three training forwards of case t on `path`: after the first and the third, the running
 * statistics equal the update rule with the unbiased variance, num_batches_tracked counts the
 * forwards, and the output is (x − μ)/√(σ² + ε)·γ + β with the batch's biased variance. */
static void check_running_stats(const bn_case *t, cnn_path path, const char *layer) {
    cnn_net *net = tu_net(t->text, t->n, path);
    assert_int_equal(cnn_net_init(net, 1), CNN_OK);
    set_affine(net, layer, t->c);
    const int count = t->n * t->c * t->hw, m = t->n * t->hw;
    float *x = malloc((size_t)count * sizeof *x);
    double *rm = malloc((size_t)t->c * sizeof *rm), *rv = malloc((size_t)t->c * sizeof *rv);
    double *want = malloc((size_t)count * sizeof *want);
    for (int c = 0; c < t->c; c++) rm[c] = 0.0, rv[c] = 1.0;
    char name[64];
    for (int pass = 0; pass < 3; pass++) {
        fill_input(x, count, pass);
        assert_status(cnn_net_forward(net, x, t->n), CNN_OK);
        const double f = t->momentum < 0 ? 1.0 / (pass + 1) : t->momentum;
        for (int c = 0; c < t->c; c++) {
            double mu, var;
            moments(t, x, c, &mu, &var);
            rm[c] = (1 - f) * rm[c] + f * mu;
            rv[c] = (1 - f) * rv[c] + f * var * m / (m - 1);   /* unbiased */
            for (int k = 0; k < t->n; k++)
                for (int i = 0; i < t->hw; i++) {
                    const int e = (k * t->c + c) * t->hw + i;
                    want[e] = (x[e] - mu) / sqrt(var + t->eps) * (0.6 + 0.3 * c) + (0.25 * c - 0.3);
                }
        }
        tu_close("training output", cnn_net_output(net), want, count, 1e-5);
        if (pass == 1) continue;
        snprintf(name, sizeof name, "%s.running_mean", layer);
        tu_close(name, buffer(net, name).data, rm, t->c, 1e-6);
        snprintf(name, sizeof name, "%s.running_var", layer);
        tu_close(name, buffer(net, name).data, rv, t->c, 1e-6);
        snprintf(name, sizeof name, "%s.num_batches_tracked", layer);
        assert_int_equal(*(const int64_t *)buffer(net, name).data, pass + 1);
    }
    free(x), free(rm), free(rv), free(want);
    cnn_net_free(net);
}

static const bn_case bn2d = {"input 3 4 5\nbatchnorm2d momentum=0.3\n", 2, 3, 20, 1e-5, 0.3};
static const bn_case bn2d_eps = {"input 2 3 3\nbatchnorm2d eps=0.001\n", 3, 2, 9, 1e-3, 0.1};
static const bn_case bn1d = {"input 5 1 1\nflatten\nbatchnorm1d\n", 4, 5, 1, 1e-5, 0.1};
static const bn_case bn2d_none = {"input 3 2 3\nbatchnorm2d momentum=none\n", 2, 3, 6, 1e-5, -1};
static const bn_case bn1d_none = {"input 4 1 1\nflatten\nbatchnorm1d momentum=None\n", 3, 4, 1, 1e-5, -1};

static void test_running_stats(void **state) {
    (void)state;
    for (int path = 0; path < 2; path++) {
        check_running_stats(&bn2d, (cnn_path)path, "0");
        check_running_stats(&bn2d_eps, (cnn_path)path, "0");
        check_running_stats(&bn1d, (cnn_path)path, "1");
    }
}

/* momentum=none: the factor is 1/num_batches_tracked, so after three forwards the running
 * statistics are the plain averages of the three batches' mean and unbiased variance. */
static void test_cumulative_average(void **state) {
    (void)state;
    const bn_case *cases[2] = {&bn2d_none, &bn1d_none};
    const char *layers[2] = {"0", "1"};
    for (int path = 0; path < 2; path++)
        for (int ci = 0; ci < 2; ci++) {
            const bn_case *t = cases[ci];
            check_running_stats(t, (cnn_path)path, layers[ci]);
            cnn_net *net = tu_net(t->text, t->n, (cnn_path)path);
            assert_int_equal(cnn_net_init(net, 1), CNN_OK);
            const int count = t->n * t->c * t->hw, m = t->n * t->hw;
            float *x = malloc((size_t)count * sizeof *x);
            double mean[8] = {0}, var[8] = {0};
            for (int pass = 0; pass < 3; pass++) {
                fill_input(x, count, pass);
                assert_status(cnn_net_forward(net, x, t->n), CNN_OK);
                for (int c = 0; c < t->c; c++) {
                    double mu, v;
                    moments(t, x, c, &mu, &v);
                    mean[c] += mu / 3;
                    var[c] += v * m / (m - 1) / 3;
                }
            }
            char name[64];
            snprintf(name, sizeof name, "%s.running_mean", layers[ci]);
            tu_close(name, buffer(net, name).data, mean, t->c, 1e-6);
            snprintf(name, sizeof name, "%s.running_var", layers[ci]);
            tu_close(name, buffer(net, name).data, var, t->c, 1e-6);
            free(x);
            cnn_net_free(net);
        }
}

/* Eval mode: the output is (x − running_mean)/√(running_var + ε)·γ + β, the input gradient
 * dy·γ/√(running_var + ε), dγ = Σ dy·x̂, dβ = Σ dy; an eval forward changes no buffer. */
static void test_eval_uses_running_stats(void **state) {
    (void)state;
    const bn_case *cases[2] = {&bn2d, &bn1d};
    const char *layers[2] = {"0", "1"};
    for (int path = 0; path < 2; path++)
        for (int ci = 0; ci < 2; ci++) {
            const bn_case *t = cases[ci];
            cnn_net *net = tu_net(t->text, t->n, (cnn_path)path);
            assert_int_equal(cnn_net_init(net, 1), CNN_OK);
            set_affine(net, layers[ci], t->c);
            const int count = t->n * t->c * t->hw;
            float *x = malloc((size_t)count * sizeof *x), *dy = malloc((size_t)count * sizeof *dy);
            double *want = malloc((size_t)count * sizeof *want);
            for (int pass = 0; pass < 2; pass++) {
                fill_input(x, count, pass);
                assert_status(cnn_net_forward(net, x, t->n), CNN_OK);
            }
            char mname[64], vname[64], cname[64], wname[64], bname[64];
            snprintf(mname, sizeof mname, "%s.running_mean", layers[ci]);
            snprintf(vname, sizeof vname, "%s.running_var", layers[ci]);
            snprintf(cname, sizeof cname, "%s.num_batches_tracked", layers[ci]);
            snprintf(wname, sizeof wname, "%s.weight", layers[ci]);
            snprintf(bname, sizeof bname, "%s.bias", layers[ci]);
            float rm[8], rv[8];
            memcpy(rm, buffer(net, mname).data, (size_t)t->c * sizeof *rm);
            memcpy(rv, buffer(net, vname).data, (size_t)t->c * sizeof *rv);
            for (int c = 0; c < t->c; c++) assert_true(rm[c] != 0.0f && rv[c] != 1.0f);

            cnn_net_set_training(net, 0);
            assert_int_equal(cnn_net_training(net), 0);
            fill_input(x, count, 5);
            for (int i = 0; i < count; i++) dy[i] = grad_value(i);
            tu_run(net, x, t->n, dy);
            double dg[8] = {0}, db[8] = {0};
            for (int k = 0; k < t->n; k++)
                for (int c = 0; c < t->c; c++)
                    for (int i = 0; i < t->hw; i++) {
                        const int e = (k * t->c + c) * t->hw + i;
                        const double xhat = (x[e] - (double)rm[c]) / sqrt((double)rv[c] + t->eps);
                        want[e] = xhat * (0.6 + 0.3 * c) + (0.25 * c - 0.3);
                        dg[c] += dy[e] * xhat;
                        db[c] += dy[e];
                    }
            tu_close("eval output", cnn_net_output(net), want, count, 1e-5);
            for (int k = 0; k < t->n; k++)
                for (int c = 0; c < t->c; c++)
                    for (int i = 0; i < t->hw; i++) {
                        const int e = (k * t->c + c) * t->hw + i;
                        want[e] = dy[e] * (0.6 + 0.3 * c) / sqrt((double)rv[c] + t->eps);
                    }
            tu_close("eval grad_input", cnn_net_grad_input(net), want, count, 1e-5);
            tu_close("eval weight grad", cnn_net_param_by_name(net, wname).grad, dg, t->c, 1e-5);
            tu_close("eval bias grad", cnn_net_param_by_name(net, bname).grad, db, t->c, 1e-5);
            assert_memory_equal(buffer(net, mname).data, rm, (size_t)t->c * sizeof *rm);
            assert_memory_equal(buffer(net, vname).data, rv, (size_t)t->c * sizeof *rv);
            assert_int_equal(*(const int64_t *)buffer(net, cname).data, 2);
            free(x), free(dy), free(want);
            cnn_net_free(net);
        }
}

/* Without running statistics there are no buffers, and eval mode normalises with the batch's
 * statistics, as PyTorch does. */
static void test_eval_without_running_stats(void **state) {
    (void)state;
    const bn_case t = {"input 3 4 5\nbatchnorm2d track_running_stats=false affine=false\n", 2, 3, 20, 1e-5, 0.1};
    for (int path = 0; path < 2; path++) {
        cnn_net *net = tu_net(t.text, t.n, (cnn_path)path);
        assert_int_equal(cnn_net_buffer_count(net), 0);
        assert_int_equal(cnn_net_param_count(net), 0);
        cnn_net_set_training(net, 0);
        const int count = t.n * t.c * t.hw;
        float *x = malloc((size_t)count * sizeof *x);
        double *want = malloc((size_t)count * sizeof *want);
        fill_input(x, count, 1);
        assert_status(cnn_net_forward(net, x, t.n), CNN_OK);
        for (int c = 0; c < t.c; c++) {
            double mu, var;
            moments(&t, x, c, &mu, &var);
            for (int k = 0; k < t.n; k++)
                for (int i = 0; i < t.hw; i++) {
                    const int e = (k * t.c + c) * t.hw + i;
                    want[e] = (x[e] - mu) / sqrt(var + t.eps);
                }
        }
        tu_close("eval output without running stats", cnn_net_output(net), want, count, 1e-5);
        free(x), free(want);
        cnn_net_free(net);
    }
}

/* One value per channel with batch statistics is PyTorch's error, from forward and gradcheck;
 * eval mode with running statistics takes it. */
static void test_batch_of_one(void **state) {
    (void)state;
    static const float x[6] = {0.5f, -1.0f, 2.0f, 0.25f, 1.0f, -0.5f};
    cnn_net *net = tu_net("input 3 1 1\nbatchnorm2d\n", 2, CNN_PATH_FAST);
    assert_status(cnn_net_forward(net, x, 1), CNN_ERR_SHAPE);
    assert_error_contains("line 2: batchnorm2d: expected more than 1 value per channel when training");
    assert_error_contains("got input [1, 3, 1, 1]");
    assert_int_equal(*(const int64_t *)buffer(net, "0.num_batches_tracked").data, 0);   /* nothing ran */
    cnn_gradcheck_row rows[8];
    int nrows;
    assert_status(cnn_gradcheck(net, 1, 1, 0, rows, 8, &nrows), CNN_ERR_SHAPE);
    assert_error_contains("more than 1 value per channel");
    assert_status(cnn_net_forward(net, x, 2), CNN_OK);   /* two values per channel */
    cnn_net_set_training(net, 0);
    assert_status(cnn_net_forward(net, x, 1), CNN_OK);
    cnn_net_free(net);

    net = tu_net("input 5 1 1\nflatten\nbatchnorm1d\n", 1, CNN_PATH_REFERENCE);
    assert_status(cnn_net_forward(net, x, 1), CNN_ERR_SHAPE);
    assert_error_contains("line 3: batchnorm1d: expected more than 1 value per channel when training, "
                          "got input [1, 5]");
    cnn_net_free(net);

    /* without running statistics eval mode uses the batch's too, and so fails as in training */
    net = tu_net("input 3 1 1\nbatchnorm2d track_running_stats=false\n", 1, CNN_PATH_FAST);
    cnn_net_set_training(net, 0);
    assert_status(cnn_net_forward(net, x, 1), CNN_ERR_SHAPE);
    assert_error_contains("more than 1 value per channel");
    cnn_net_free(net);

    /* the CLI: exit status 2 and the message */
    char dir[] = "/tmp/cnn_bn_XXXXXX", model[64];
    assert_non_null(mkdtemp(dir));
    snprintf(model, sizeof model, "%s/bn.cnn", dir);
    const char text[] = "input 3 1 1\nbatchnorm2d\n";
    tu_write_bytes(model, text, sizeof text - 1);
    cli_result r;
    CLI_RUN(&r, dir, "gradcheck", "--model", model, "--batch", "1");
    CLI_EXPECT(&r, 2, "line 2: batchnorm2d", "more than 1 value per channel");
    CLI_RUN(&r, dir, "gradcheck", "--model", model, "--batch", "2");
    CLI_EXPECT(&r, 0, NULL);
    assert_int_equal(tu_remove_tree(dir), 0);
}

static void expect_parse_error(const char *text, cnn_status want, const char *const *subs) {
    cnn_net *net = NULL;
    assert_status(cnn_net_parse(text, &net), want);
    assert_null(net);
    for (int i = 0; subs[i]; i++) assert_error_contains(subs[i]);
}

#define EXPECT_PARSE_ERROR(text, want, ...) expect_parse_error((text), (want), (const char *const[]){__VA_ARGS__, NULL})

static void test_shape_and_option_errors(void **state) {
    (void)state;
    EXPECT_PARSE_ERROR("input 3 4 4\nflatten\nbatchnorm2d\n", CNN_ERR_SHAPE, "line 3: batchnorm2d",
                       "input [48] is flat", "batchnorm1d");
    EXPECT_PARSE_ERROR("input 3 4 4\nbatchnorm1d\n", CNN_ERR_SHAPE, "line 2: batchnorm1d", "input 3x4x4 is not flat",
                       "batchnorm2d");
    EXPECT_PARSE_ERROR("input 3 4 4\nbatchnorm2d num_features=4\n", CNN_ERR_SHAPE, "line 2: batchnorm2d",
                       "num_features=4", "3 channels");
    EXPECT_PARSE_ERROR("input 3 4 4\nflatten\nbatchnorm1d num_features=3\n", CNN_ERR_SHAPE, "line 3: batchnorm1d",
                       "48 features");
    EXPECT_PARSE_ERROR("input 3 4 4\nbatchnorm2d momentum=fast\n", CNN_ERR_PARSE, "line 2: batchnorm2d",
                       "momentum=fast");
    EXPECT_PARSE_ERROR("input 3 4 4\nbatchnorm2d eps=-1\n", CNN_ERR_PARSE, "line 2: batchnorm2d", "eps=-1");
    EXPECT_PARSE_ERROR("input 3 4 4\nbatchnorm2d affine=maybe\n", CNN_ERR_PARSE, "affine=maybe");
    EXPECT_PARSE_ERROR("input 3 4 4\nbatchnorm2d running=true\n", CNN_ERR_PARSE, "unknown option 'running'");
    cnn_net *net = NULL;   /* PyTorch's class names and num_features equal to the input's are fine */
    assert_status(cnn_net_parse("input 3 4 4\nBatchNorm2d num_features=3\nflatten\nBatchNorm1d num_features=48\n",
                                &net), CNN_OK);
    assert_int_equal(cnn_net_layer_kind(net, 0), CNN_LAYER_BATCHNORM2D);
    assert_int_equal(cnn_net_layer_kind(net, 2), CNN_LAYER_BATCHNORM1D);
    cnn_net_free(net);
}

/* One training forward and backward, then an eval one, on `threads` threads: every output,
 * gradient and buffer, copied out. */
typedef struct run_bits {
    float *out[2], *gin[2], *grads, *bufs;   /* grads: training's, then eval's */
    size_t np, nb;                           /* parameter and F32 buffer elements */
    int64_t counts[2];                       /* the num_batches_tracked */
} run_bits;

static const char threads_model[] =
    "input 6 9 11\nconv2d out_channels=8 kernel_size=3 padding=1\nbatchnorm2d name=bn\nrelu\n"
    "flatten\nlinear out_features=40\nbatchnorm1d momentum=none\n";
enum { THREADS_N = 24 };

static run_bits run_threads(int threads) {
    assert_status(cnn_set_threads(threads), CNN_OK);
    cnn_net *net = tu_net(threads_model, THREADS_N, CNN_PATH_FAST);
    assert_int_equal(cnn_net_init(net, 5), CNN_OK);
    int in[3], out[3];
    cnn_net_input_shape(net, in);
    cnn_net_output_shape(net, out);
    const int xi = THREADS_N * in[0] * in[1] * in[2], yo = THREADS_N * out[0];
    float *x = malloc((size_t)xi * sizeof *x), *dy = malloc((size_t)yo * sizeof *dy);
    fill_input(x, xi, 0);
    for (int i = 0; i < yo; i++) dy[i] = grad_value(i);
    run_bits b = {0};
    size_t np = 0, nb = 0;
    for (int i = 0; i < cnn_net_param_count(net); i++) np += (size_t)cnn_net_param(net, i).numel;
    for (int i = 0; i < cnn_net_buffer_count(net); i++) {
        const cnn_tensor t = cnn_net_buffer(net, i);
        if (t.dtype == CNN_F32) nb += (size_t)cnn_tensor_numel(&t);
    }
    b.np = np, b.nb = nb;
    b.grads = malloc(2 * np * sizeof *b.grads);
    b.bufs = malloc(nb * sizeof *b.bufs);
    for (int mode = 0; mode < 2; mode++) {
        cnn_net_set_training(net, mode == 0);
        tu_run(net, x, THREADS_N, dy);
        b.out[mode] = malloc((size_t)yo * sizeof(float));
        b.gin[mode] = malloc((size_t)xi * sizeof(float));
        memcpy(b.out[mode], cnn_net_output(net), (size_t)yo * sizeof(float));
        memcpy(b.gin[mode], cnn_net_grad_input(net), (size_t)xi * sizeof(float));
        size_t at = 0;
        for (int i = 0; i < cnn_net_param_count(net); i++) {
            const cnn_param p = cnn_net_param(net, i);
            memcpy(b.grads + mode * np + at, p.grad, (size_t)p.numel * sizeof(float));
            at += (size_t)p.numel;
        }
    }
    size_t at = 0;
    int ci = 0;
    for (int i = 0; i < cnn_net_buffer_count(net); i++) {
        const cnn_tensor t = cnn_net_buffer(net, i);
        if (t.dtype == CNN_I64) {
            assert_true(ci < 2);
            b.counts[ci++] = *(const int64_t *)t.data;
            continue;
        }
        memcpy(b.bufs + at, t.data, (size_t)t.shape[0] * sizeof(float));
        at += (size_t)t.shape[0];
    }
    assert_int_equal(ci, 2);
    free(x), free(dy);
    cnn_net_free(net);
    assert_status(cnn_set_threads(1), CNN_OK);
    return b;
}

static void free_bits(run_bits *b) {
    for (int m = 0; m < 2; m++) free(b->out[m]), free(b->gin[m]);
    free(b->grads), free(b->bufs);
}

static void test_threads_same_bits(void **state) {
    (void)state;
    run_bits a = run_threads(1), b = run_threads(2);
    int in[3] = {6, 9, 11};
    const size_t xi = (size_t)THREADS_N * in[0] * in[1] * in[2], yo = (size_t)THREADS_N * 40;
    for (int m = 0; m < 2; m++) {
        assert_memory_equal(a.out[m], b.out[m], yo * sizeof(float));
        assert_memory_equal(a.gin[m], b.gin[m], xi * sizeof(float));
    }
    assert_memory_equal(a.grads, b.grads, 2 * a.np * sizeof(float));
    assert_memory_equal(a.bufs, b.bufs, a.nb * sizeof(float));
    for (int k = 0; k < 2; k++) {   /* one training forward each */
        assert_int_equal(a.counts[k], 1);
        assert_int_equal(b.counts[k], 1);
    }
    free_bits(&a), free_bits(&b);
}

/* Fails unless the relative L2 error of got against want is at most tol. */
static void assert_rel_l2(const char *what, const float *got, const double *want, int count, double tol) {
    double num = 0.0, den = 0.0;
    for (int i = 0; i < count; i++) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    const double err = sqrt(num) / (den > 0.0 ? sqrt(den) : 1.0);
    if (!(err <= tol)) fail_msg("%s: the fast path differs from the reference by %.3e (relative L2)", what, err);
}

/* A whole model, fast against reference: outputs, gradients and buffers after two training
 * forwards and an eval one. Each layer alone is held to 1e-5 by the grid; through the chain,
 * batch norm divides by the batch's σ, which for some of the 40 features of 8 samples is near
 * 0.01, so the float rounding of the linear layer's output (~3e-7) grows to ~1e-5 there and in
 * every gradient upstream. Outputs and gradients are compared by their relative L2 error, with
 * the CLI gradcheck's tolerance for the fast path, 1e-4; the running statistics elementwise. */
static void test_fast_matches_reference(void **state) {
    (void)state;
    enum { N = 8 };
    static const char model[] =   /* no biases before batch norm: their gradient would be 0 */
        "input 6 9 11\nconv2d out_channels=8 kernel_size=3 padding=1 bias=false\nbatchnorm2d name=bn\nrelu\n"
        "flatten\nlinear out_features=40 bias=false\nbatchnorm1d momentum=none\n";
    cnn_net *nets[2];
    for (int path = 0; path < 2; path++) {
        nets[path] = tu_net(model, N, (cnn_path)path);
        assert_int_equal(cnn_net_init(nets[path], 5), CNN_OK);
    }
    const int xi = N * 6 * 9 * 11, yo = N * 40;
    float *x = malloc(xi * sizeof *x), *dy = malloc(yo * sizeof *dy);
    double *want = malloc((size_t)(xi > 40 * 792 ? xi : 40 * 792) * sizeof *want);   /* the largest: 4.weight */
    for (int pass = 0; pass < 3; pass++) {
        fill_input(x, xi, pass);
        for (int i = 0; i < yo; i++) dy[i] = grad_value(i + pass);
        for (int path = 0; path < 2; path++) {
            cnn_net_set_training(nets[path], pass < 2);
            tu_run(nets[path], x, N, dy);
        }
        for (int i = 0; i < yo; i++) want[i] = cnn_net_output(nets[1])[i];
        assert_rel_l2("output", cnn_net_output(nets[0]), want, yo, 1e-4);
        for (int i = 0; i < xi; i++) want[i] = cnn_net_grad_input(nets[1])[i];
        assert_rel_l2("grad_input", cnn_net_grad_input(nets[0]), want, xi, 1e-4);
        for (int p = 0; p < cnn_net_param_count(nets[0]); p++) {
            const cnn_param a = cnn_net_param(nets[0], p), r = cnn_net_param(nets[1], p);
            for (int64_t i = 0; i < r.numel; i++) want[i] = r.grad[i];
            assert_rel_l2(a.name, a.grad, want, (int)a.numel, 1e-4);
        }
        for (int i = 0; i < cnn_net_buffer_count(nets[0]); i++) {
            const cnn_tensor a = cnn_net_buffer(nets[0], i), r = cnn_net_buffer(nets[1], i);
            assert_string_equal(a.name, r.name);
            if (a.dtype == CNN_I64) {
                assert_int_equal(*(const int64_t *)a.data, *(const int64_t *)r.data);
                assert_int_equal(*(const int64_t *)a.data, pass < 2 ? pass + 1 : 2);
                continue;
            }
            for (int64_t e = 0; e < a.shape[0]; e++) want[e] = ((const float *)r.data)[e];
            tu_close(a.name, a.data, want, (int)a.shape[0], 1e-5);
        }
    }
    free(x), free(dy), free(want);
    cnn_net_free(nets[0]);
    cnn_net_free(nets[1]);
}

/* A deterministic N(0, 1)-like value: the sum of four uniforms from an LCG, centred and scaled. */
static double noise(uint32_t *state) {
    double t = 0.0;
    for (int k = 0; k < 4; k++) {
        *state = *state * 1664525u + 1013904223u;
        t += (*state >> 8) / 16777216.0;
    }
    return (t - 2.0) * sqrt(3.0);
}

/* The fast path against the reference, one training forward and backward, where float sums are
 * most at risk: channels of a large mean and a small spread (x ~ 1000 + N(0, 1), −500 + 0.01·N),
 * whose variance a one-pass Σx² − (Σx)²/m in float would lose entirely, next to plain ones; and
 * m = 2, where the input gradient is a small difference of nearly equal terms (the header comment
 * of batchnorm.c). Held to the grid's tolerance for one layer, 1e-5 relative L2, in each channel. */
static void check_fast_offsets(const char *text, int n, int c, int hw) {
    static const double offset[4] = {1000.0, 0.0, -500.0, 3.0}, spread[4] = {1.0, 1.0, 0.01, 2.0};
    cnn_net *nets[2];
    const int count = n * c * hw;
    float *x = malloc((size_t)count * sizeof *x), *dy = malloc((size_t)count * sizeof *dy);
    double *want = malloc((size_t)count * sizeof *want);
    uint32_t st = 12345u;
    for (int k = 0; k < n; k++)
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < hw; i++) {
                const int e = (k * c + ch) * hw + i;
                x[e] = (float)(offset[ch % 4] + spread[ch % 4] * noise(&st));
                dy[e] = (float)noise(&st);
            }
    for (int path = 0; path < 2; path++) {
        nets[path] = tu_net(text, n, (cnn_path)path);
        assert_int_equal(cnn_net_init(nets[path], 7), CNN_OK);
        tu_run(nets[path], x, n, dy);
    }
    /* channel by channel: the tensor's relative L2 would be the largest channel's alone */
    float *got = malloc((size_t)n * hw * sizeof *got);
    for (int which = 0; which < 2; which++)
        for (int ch = 0; ch < c; ch++) {
            const float *fast = which ? cnn_net_grad_input(nets[0]) : cnn_net_output(nets[0]);
            const float *ref = which ? cnn_net_grad_input(nets[1]) : cnn_net_output(nets[1]);
            for (int k = 0; k < n; k++)
                for (int i = 0; i < hw; i++) {
                    const int e = (k * c + ch) * hw + i;
                    got[k * hw + i] = fast[e];
                    want[k * hw + i] = ref[e];
                }
            assert_rel_l2(which ? "grad_input" : "output", got, want, n * hw, 1e-5);
        }
    free(got);
    for (int p = 0; p < cnn_net_param_count(nets[0]); p++) {
        const cnn_param a = cnn_net_param(nets[0], p), r = cnn_net_param(nets[1], p);
        for (int64_t i = 0; i < r.numel; i++) want[i] = r.grad[i];
        assert_rel_l2(a.name, a.grad, want, (int)a.numel, 1e-5);
    }
    for (int i = 0; i < cnn_net_buffer_count(nets[0]); i++) {
        const cnn_tensor a = cnn_net_buffer(nets[0], i), r = cnn_net_buffer(nets[1], i);
        if (a.dtype == CNN_I64) continue;
        for (int64_t e = 0; e < a.shape[0]; e++) want[e] = ((const float *)r.data)[e];
        tu_close(a.name, a.data, want, (int)a.shape[0], 1e-5);
    }
    free(x), free(dy), free(want);
    cnn_net_free(nets[0]);
    cnn_net_free(nets[1]);
}

static void test_fast_offsets_and_two_values(void **state) {
    (void)state;
    check_fast_offsets("input 4 32 32\nbatchnorm2d\n", 8, 4, 1024);      /* m = 8192, rows of 32 lanes */
    check_fast_offsets("input 4 5 7\nbatchnorm2d\n", 16, 4, 35);         /* rows with a tail */
    check_fast_offsets("input 4 1 2\nbatchnorm2d\n", 1, 4, 2);           /* m = 2 in one row */
    check_fast_offsets("input 4 1 1\nbatchnorm2d\n", 2, 4, 1);           /* m = 2 in two rows */
    check_fast_offsets("input 4 1 1\nflatten\nbatchnorm1d\n", 2, 4, 1);  /* m = 2 */
    check_fast_offsets("input 4 1 1\nflatten\nbatchnorm1d\n", 3, 4, 1);  /* m = 3 */
}

/* The buffers are listed by name and dtype in state_dict order, and a weights file round-trips
 * them with the parameters. */
static void test_buffers_save_load(void **state) {
    (void)state;
    const char text[] = "input 3 4 4\nbatchnorm2d name=bn1\nflatten\nbatchnorm1d affine=false momentum=none\n";
    cnn_net *net = tu_net(text, 4, CNN_PATH_FAST);
    assert_int_equal(cnn_net_init(net, 3), CNN_OK);
    set_affine(net, "bn1", 3);
    static const struct {
        const char *name;
        cnn_dtype dtype;
        int ndim, dim;
    } want[] = {{"bn1.running_mean", CNN_F32, 1, 3}, {"bn1.running_var", CNN_F32, 1, 3},
                {"2.running_mean", CNN_F32, 1, 48},  {"2.running_var", CNN_F32, 1, 48},
                {"bn1.num_batches_tracked", CNN_I64, 0, 0}, {"2.num_batches_tracked", CNN_I64, 0, 0}};
    assert_int_equal(cnn_net_buffer_count(net), 6);
    for (int i = 0; i < 6; i++) {   /* F32 buffers first, then the I64 ones (the state layout) */
        const cnn_tensor b = cnn_net_buffer(net, i);
        int found = 0;
        for (int j = 0; j < 6; j++)
            if (!strcmp(b.name, want[j].name)) {
                found = 1;
                assert_int_equal(b.dtype, want[j].dtype);
                assert_int_equal(b.ndim, want[j].ndim);
                if (b.ndim) assert_int_equal(b.shape[0], want[j].dim);
            }
        if (!found) fail_msg("unexpected buffer %s", b.name);
    }
    assert_int_equal(cnn_net_param_count(net), 2);
    assert_string_equal(cnn_net_param(net, 0).name, "bn1.weight");
    assert_string_equal(cnn_net_param(net, 1).name, "bn1.bias");
    float x[4 * 48];
    for (int pass = 0; pass < 3; pass++) {
        fill_input(x, 4 * 48, pass);
        assert_status(cnn_net_forward(net, x, 4), CNN_OK);
    }

    char dir[] = "/tmp/cnn_bn_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    assert_status(cnn_net_save_weights(net, path, 0), CNN_OK);
    cnn_st *st = NULL;
    assert_status(cnn_st_load(path, &st), CNN_OK);
    assert_int_equal(cnn_st_count(st), 8);
    const cnn_tensor *nbt = cnn_st_find(st, "bn1.num_batches_tracked");
    assert_non_null(nbt);
    assert_int_equal(nbt->dtype, CNN_I64);
    assert_int_equal(nbt->ndim, 0);
    assert_int_equal(*(const int64_t *)nbt->data, 3);

    cnn_net *back = tu_net(text, 4, CNN_PATH_FAST);   /* fresh: weight 1, running_var 1, counts 0 */
    assert_status(cnn_net_load_weights(back, st, 0), CNN_OK);
    for (int i = 0; i < cnn_net_buffer_count(net); i++) {
        const cnn_tensor a = cnn_net_buffer(net, i), b = cnn_net_buffer(back, i);
        assert_string_equal(a.name, b.name);
        assert_int_equal(a.dtype, b.dtype);
        const size_t bytes = (size_t)cnn_tensor_numel(&a) * cnn_dtype_size(a.dtype);
        assert_memory_equal(a.data, b.data, bytes);
    }
    for (int i = 0; i < cnn_net_param_count(net); i++)
        assert_memory_equal(cnn_net_param(net, i).data, cnn_net_param(back, i).data, 3 * sizeof(float));
    /* and the loaded net goes on counting, with the same eval output */
    cnn_net_set_training(net, 0);
    cnn_net_set_training(back, 0);
    assert_status(cnn_net_forward(net, x, 4), CNN_OK);
    assert_status(cnn_net_forward(back, x, 4), CNN_OK);
    assert_memory_equal(cnn_net_output(net), cnn_net_output(back), 4 * 48 * sizeof(float));
    cnn_st_free(st);
    cnn_net_free(back);
    cnn_net_free(net);
    assert_int_equal(tu_remove_tree(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_running_stats),
        cmocka_unit_test(test_cumulative_average),
        cmocka_unit_test(test_eval_uses_running_stats),
        cmocka_unit_test(test_eval_without_running_stats),
        cmocka_unit_test(test_batch_of_one),
        cmocka_unit_test(test_shape_and_option_errors),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_fast_matches_reference),
        cmocka_unit_test(test_fast_offsets_and_two_values),
        cmocka_unit_test(test_buffers_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
