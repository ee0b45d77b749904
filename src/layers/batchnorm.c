/* batchnorm2d, batchnorm1d: batch normalisation per channel, as PyTorch's BatchNorm2d and
 * BatchNorm1d. batchnorm2d reads [N, C, H, W] and normalises each channel over its m = N·H·W
 * values; batchnorm1d reads a flat [N, F] (after flatten or linear; PyTorch's [N, C, L] form is
 * not taken) and normalises each feature over its m = N values. It is the same math with
 * H·W = 1, so both kinds share every function below.
 *
 * Options (PyTorch's names and defaults): eps=1e-5 momentum=0.1 affine=true
 * track_running_stats=true; momentum=none is the cumulative moving average (the factor is
 * 1/num_batches_tracked); num_features= may be given but must equal the input's channels.
 * Tensors, in state_dict order: with affine, weight γ [C] (init 1) and bias β [C] (init 0); with
 * track_running_stats, the buffers running_mean [C] (0), running_var [C] (1) and
 * num_batches_tracked (int64 scalar, 0).
 *
 * Forward, per channel, over its values x_1 .. x_m:
 *   training (or no running statistics):  μ = (1/m) Σ x_i,  σ² = (1/m) Σ (x_i − μ)²  (biased);
 *   eval with running statistics:         μ = running_mean, σ² = running_var;
 *   x̂_i = (x_i − μ) / √(σ² + ε),   y_i = γ x̂_i + β          (γ = 1, β = 0 without affine).
 * A training forward with running statistics then updates them, with f the momentum (or
 * 1/num_batches_tracked after counting this batch, for momentum=none):
 *   num_batches_tracked += 1,  running_mean ← (1 − f)·running_mean + f·μ,
 *   running_var ← (1 − f)·running_var + f·σ²·m/(m − 1)   (the unbiased variance).
 * Batch statistics of one value per channel (m = 1) are an error, PyTorch's: check_batch.
 *
 * Backward in eval mode: μ and σ² are constants, so y is affine in x:
 *   dx_i = dy_i · γ / √(σ² + ε),   dγ += Σ dy_i x̂_i,   dβ += Σ dy_i.
 *
 * Backward with batch statistics. The computational graph of one channel (note 000), for one
 * value x_i (the others enter μ and σ² the same way):
 *
 *   ┌────────────────────┐
 *   ├────────────┐       │
 *   │            ↓       ↓
 *   x ──→ μ ───→ σ² ───→ x̂ ──→ y ←── γ, β
 *         │              ↑
 *         └──────────────┘
 *
 * x_i reaches x̂_i three ways: directly, through μ, and through σ² (which itself reads μ). The
 * local gradients, with s = 1/√(σ² + ε):
 *   ∂y_i/∂x̂_i = γ,   ∂y_i/∂γ = x̂_i,   ∂y_i/∂β = 1
 *   ∂x̂_i/∂x_i = s  (holding μ and σ²),   ∂x̂_i/∂μ = −s,   ∂x̂_i/∂σ² = −½ (x_i − μ) s³
 *   ∂σ²/∂x_i = 2(x_i − μ)/m  (holding μ),   ∂σ²/∂μ = −(2/m) Σ_j (x_j − μ)
 *   ∂μ/∂x_i = 1/m
 * The chain rule, node by node from y back to x (each x̂_j feeds only y_j; μ feeds every x̂_j and
 * σ²; σ² feeds every x̂_j):
 *   dx̂_i = dy_i γ
 *   dσ²  = Σ_j dx̂_j · (−½)(x_j − μ) s³
 *   dμ   = Σ_j dx̂_j · (−s)  +  dσ² · (−(2/m) Σ_j (x_j − μ))
 *   dx_i = dx̂_i · s  +  dσ² · 2(x_i − μ)/m  +  dμ · 1/m
 * The last line is note 000's rule at a fork: x_i feeds three paths, and their gradients add up
 * where they meet at x_i; μ forks too (into every x̂_j and into σ²), hence the two terms of dμ.
 * The parameters: dγ = Σ_i dy_i x̂_i, dβ = Σ_i dy_i.
 * Folded: Σ_j (x_j − μ) = 0, so dμ = −s Σ_j dx̂_j; and x_j − μ = x̂_j / s, so
 * dσ² = −½ s² Σ_j dx̂_j x̂_j. Then
 *   dx_i = s dx̂_i − (s/m) Σ_j dx̂_j x̂_j · x̂_i − (s/m) Σ_j dx̂_j
 *        = (γ s) · (dy_i − mean(dy) − x̂_i · mean(dy · x̂)).
 *
 * The reference path (double) follows the graph literally: dx̂, dσ², dμ, then dx. The fast path
 * computes the folded formula on float data, in float where that is safe:
 *   forward: one pass for the statistics, of d = x − sh with sh a value near μ (the mean of the
 *     channel's first few values): μ = sh + Σd/m, σ² = Σd²/m − (Σd/m)². Without the shift, a
 *     large mean (x ~ 1000 + N(0, 1)) would leave σ² to the rounding of Σx² − (Σx)²/m; with it,
 *     x − sh is even exact there (Sterbenz). The sums run in float, in 32 partial sums per
 *     quantity (two AVX-512 vectors), added into doubles after every 512 values of a row (or
 *     every few rows of fewer), so that no float partial takes more than 16 terms; those are
 *     combined in double in one fixed order. Then one pass y = (x − sh)·γs + (β − γs(μ − sh)),
 *     in float with the per-channel coefficients computed in double (in eval mode too, with the
 *     running statistics' μ and σ²).
 *   backward: one pass for Σdy, Σdy·(x − sh) and Σdy², in float partials as above (Σdy·x̂ is
 *     s·(Σdy·(x − sh) − (μ − sh)Σdy)), and one pass dx = a·dy + b·(x − sh) + c in float, with a, b
 *     and c from the folded formula, in double.
 * At small m the input gradient is a small difference of nearly equal terms, which float loses
 * (with m = 2, dx_1 = −dx_2 = γ s (dy_1 − dy_2)/2 · ε/(σ² + ε): terms of the size of dy that
 * cancel to a part in 10⁴ or 10⁵). The backward sees it per channel: dx/(γs) is what is left of
 * dy after its projection on 1 and x̂, whose square sum is Σdy² − m·mean(dy)² − m·mean(dy·x̂)²
 * (1 + εs²); where that is under a quarter of Σdy² (always at m = 2, rarely at large m), the
 * channel's backward runs in double throughout (sums and per-element arithmetic, μ and σ²
 * recomputed in double), as the fast path did everywhere before. Eval mode's backward (no
 * cancellation) stays in double too.
 * It keeps each channel's μ and s, in double, from the forward for the backward
 * (keep_floats: 4·C floats, whatever the batch), or recomputes them from x when there is no keep.
 * It runs in parallel over channels, and each channel's sums run in one fixed order, so any
 * thread count gives the same bits.
 */
#include "layers/layer.h"
#include "base/error.h"
#include "base/threads.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* ---- options and shapes -------------------------------------------------------------------- */

static void bn_defaults(layer *l) {
    norm_opts *o = &l->o.norm;
    o->eps = 1e-5;
    o->momentum = 0.1;
    o->cumulative = 0;
    o->affine = 1;
    o->track = 1;
}

static cnn_status bn_option(layer *l, const char *key, const char *value) {
    norm_opts *o = &l->o.norm;
    if (!strcmp(key, "eps")) {
        cnn_status st = opt_double(l, key, value, &o->eps);
        if (!st && o->eps < 0)
            st = cnn_fail(CNN_ERR_PARSE, "line %d: %s: option eps=%s: expected a number >= 0", l->line,
                          layer_ops_of(l->kind)->name, value);
        return st;
    }
    if (!strcmp(key, "momentum")) {
        o->cumulative = !strcasecmp(value, "none");
        return o->cumulative ? CNN_OK : opt_double(l, key, value, &o->momentum);
    }
    if (!strcmp(key, "affine")) return opt_bool(l, key, value, &o->affine);
    if (!strcmp(key, "track_running_stats")) return opt_bool(l, key, value, &o->track);
    if (!strcmp(key, "num_features")) {
        int f;
        cnn_status st = opt_int(l, key, value, 1, &f);
        if (!st && f != l->c)   /* the input's shape is known while the options are read */
            st = layer_fail(l, CNN_ERR_SHAPE, "num_features=%d, but the input has %d %s", f, l->c,
                            l->in_flat ? "features" : "channels");
        return st;
    }
    return opt_unknown(l, key);
}

static cnn_status bn_setup(layer *l) {
    const norm_opts *o = &l->o.norm;
    if (l->kind == CNN_LAYER_BATCHNORM2D && l->in_flat)
        return layer_fail(l, CNN_ERR_SHAPE,
                          "input [%d] is flat (after flatten or linear); batchnorm2d needs C H W (use batchnorm1d)",
                          l->c);
    if (l->kind == CNN_LAYER_BATCHNORM1D && !l->in_flat)
        return layer_fail(l, CNN_ERR_SHAPE,
                          "input %dx%dx%d is not flat; batchnorm1d takes [N, features] (after flatten or linear; "
                          "use batchnorm2d for C H W)", l->c, l->h, l->w);
    if (o->affine) {
        layer_add_tensor(l, "weight", CNN_F32, 1, LAYER_INIT_ONE, 1, l->c, 0, 0, 0);
        layer_add_tensor(l, "bias", CNN_F32, 1, LAYER_INIT_ZERO, 1, l->c, 0, 0, 0);
    }
    if (o->track) {
        layer_add_tensor(l, "running_mean", CNN_F32, 0, LAYER_INIT_ZERO, 1, l->c, 0, 0, 0);
        layer_add_tensor(l, "running_var", CNN_F32, 0, LAYER_INIT_ONE, 1, l->c, 0, 0, 0);
        layer_add_tensor(l, "num_batches_tracked", CNN_I64, 0, LAYER_INIT_ZERO, 0, 0, 0, 0, 0);
    }
    return CNN_OK;
}

/* Tensor indices: weight 0 and bias 1 with affine; running_mean at RM(l), running_var at
 * RM(l) + 1, num_batches_tracked at RM(l) + 2 with track_running_stats. */
#define RM(l) ((l)->o.norm.affine ? 2 : 0)

/* Whether the forward normalises with the batch's statistics: in training, and in eval mode
 * without running statistics (PyTorch's bn_training). */
static int batch_stats(const layer *l) { return l->training || !l->o.norm.track; }

static cnn_status bn_check_batch(const layer *l, int n) {
    if (!batch_stats(l) || (long long)n * l->h * l->w > 1) return CNN_OK;
    if (l->in_flat)
        return layer_fail(l, CNN_ERR_SHAPE, "expected more than 1 value per channel when training, got input [%d, %d]",
                          n, l->c);
    return layer_fail(l, CNN_ERR_SHAPE,
                      "expected more than 1 value per channel when training, got input [%d, %d, %d, %d]", n, l->c,
                      l->h, l->w);
}

/* The running statistics' factor for this training forward, after num_batches_tracked counted
 * it (nbt): the momentum, or 1/nbt for the cumulative average. */
static double update_factor(const layer *l, double nbt) {
    return l->o.norm.cumulative ? 1.0 / nbt : l->o.norm.momentum;
}

/* ---- reference path ------------------------------------------------------------------------ */

/* x[s][c][i] of a batch laid out [n, C, hw]. */
#define AT(v, s, c, i) (v)[((size_t)(s) * C + (c)) * hw + (i)]

/* Channel c's batch mean and biased variance, as the forward defines them. */
static void batch_moments_ref(const layer *l, int n, const double *x, int c, double *mu, double *var) {
    const int C = l->c;
    const size_t hw = (size_t)l->h * l->w;
    const double m = (double)n * (double)hw;
    double sum = 0.0;
    for (int s = 0; s < n; s++)
        for (size_t i = 0; i < hw; i++) sum += AT(x, s, c, i);
    *mu = sum / m;
    double sq = 0.0;
    for (int s = 0; s < n; s++)
        for (size_t i = 0; i < hw; i++) sq += (AT(x, s, c, i) - *mu) * (AT(x, s, c, i) - *mu);
    *var = sq / m;
}

static void bn_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    const norm_opts *o = &l->o.norm;
    const int C = l->c, r = RM(l);
    const size_t hw = (size_t)l->h * l->w;
    const double m = (double)n * (double)hw;
    const int batch = batch_stats(l), update = l->training && o->track;
    double f = 0.0;
    if (update) {
        p[r + 2][0] += 1.0;
        f = update_factor(l, p[r + 2][0]);
    }
    for (int c = 0; c < C; c++) {
        double mu, var;
        if (batch) batch_moments_ref(l, n, x, c, &mu, &var);
        else mu = p[r][c], var = p[r + 1][c];
        const double sd = sqrt(var + o->eps);
        const double g = o->affine ? p[0][c] : 1.0, b = o->affine ? p[1][c] : 0.0;
        for (int s = 0; s < n; s++)
            for (size_t i = 0; i < hw; i++) {
                const double xhat = (AT(x, s, c, i) - mu) / sd;
                AT(y, s, c, i) = g * xhat + b;
            }
        if (update) {
            p[r][c] = (1.0 - f) * p[r][c] + f * mu;
            p[r + 1][c] = (1.0 - f) * p[r + 1][c] + f * var * m / (m - 1.0);   /* m > 1: check_batch */
        }
    }
}

/* The graph of the header comment, node by node: dx̂, dσ², dμ, then dx. */
static void bn_backward_ref(const layer *l, int n, const double *const *xs, double *const *p, const double *y,
                            const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    const norm_opts *o = &l->o.norm;
    (void)y;
    const int C = l->c, r = RM(l);
    const size_t hw = (size_t)l->h * l->w;
    const double m = (double)n * (double)hw;
    const int batch = batch_stats(l);
    for (int c = 0; c < C; c++) {
        double mu, var;
        if (batch) batch_moments_ref(l, n, x, c, &mu, &var);
        else mu = p[r][c], var = p[r + 1][c];
        const double sd = sqrt(var + o->eps), s = 1.0 / sd;
        const double g = o->affine ? p[0][c] : 1.0;
        if (o->affine)   /* dγ = Σ dy·x̂, dβ = Σ dy */
            for (int t = 0; t < n; t++)
                for (size_t i = 0; i < hw; i++) {
                    dp[0][c] += AT(dy, t, c, i) * (AT(x, t, c, i) - mu) / sd;
                    dp[1][c] += AT(dy, t, c, i);
                }
        if (!dx) continue;
        if (!batch) {    /* μ and σ² are constants: dx = dy·γ·s */
            for (int t = 0; t < n; t++)
                for (size_t i = 0; i < hw; i++) AT(dx, t, c, i) = AT(dy, t, c, i) * g * s;
            continue;
        }
        /* dσ² = Σ dx̂·(−½)(x − μ)s³, with dx̂ = dy·γ */
        double dvar = 0.0;
        for (int t = 0; t < n; t++)
            for (size_t i = 0; i < hw; i++) {
                const double dxhat = AT(dy, t, c, i) * g;
                dvar += dxhat * -0.5 * (AT(x, t, c, i) - mu) * s * s * s;
            }
        /* dμ = Σ dx̂·(−s) + dσ²·(−(2/m) Σ (x − μ)) */
        double dmu = 0.0, dev = 0.0;
        for (int t = 0; t < n; t++)
            for (size_t i = 0; i < hw; i++) {
                const double dxhat = AT(dy, t, c, i) * g;
                dmu += dxhat * -s;
                dev += AT(x, t, c, i) - mu;
            }
        dmu += dvar * (-2.0 / m) * dev;
        /* dx = dx̂·s + dσ²·2(x − μ)/m + dμ/m: the three paths into x add up */
        for (int t = 0; t < n; t++)
            for (size_t i = 0; i < hw; i++) {
                const double dxhat = AT(dy, t, c, i) * g;
                AT(dx, t, c, i) = dxhat * s + dvar * 2.0 * (AT(x, t, c, i) - mu) / m + dmu / m;
            }
    }
}

/* ---- fast path ----------------------------------------------------------------------------- */

/* The double kernels: eval mode's backward and the channels whose input gradient would cancel.
 * Sums over one channel: n rows of hw floats, `stride` floats apart, in double. Each row's first
 * hw − hw % LANES values go to LANES partial sums (so that the loop vectorises), the rest to one
 * more, and they are combined in a fixed order: the same bits for any thread count. */
#define LANES 8

static double combine(const double *lane, double tail) {
    return (((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))) + tail;
}

/* Σ x */
CNN_CLONES static double sum_x(const float *restrict x, size_t stride, int n, size_t hw) {
    double lane[LANES] = {0}, tail = 0.0;
    for (int s = 0; s < n; s++) {
        const float *restrict p = x + (size_t)s * stride;
        size_t i = 0;
        for (; i + LANES <= hw; i += LANES)
            for (int j = 0; j < LANES; j++) lane[j] += (double)p[i + j];
        for (; i < hw; i++) tail += (double)p[i];
    }
    return combine(lane, tail);
}

/* Σ (x − mu)² */
CNN_CLONES static double sum_sq(const float *restrict x, size_t stride, int n, size_t hw, double mu) {
    double lane[LANES] = {0}, tail = 0.0;
    for (int s = 0; s < n; s++) {
        const float *restrict p = x + (size_t)s * stride;
        size_t i = 0;
        for (; i + LANES <= hw; i += LANES)
            for (int j = 0; j < LANES; j++) {
                const double d = (double)p[i + j] - mu;
                lane[j] += d * d;
            }
        for (; i < hw; i++) {
            const double d = (double)p[i] - mu;
            tail += d * d;
        }
    }
    return combine(lane, tail);
}

/* Σ dy into *sdy and Σ dy·(x − mu) into *sdyx. */
CNN_CLONES static void sum_dy(const float *restrict x, const float *restrict dy, size_t stride, int n, size_t hw,
                              double mu, double *sdy, double *sdyx) {
    double a[LANES] = {0}, b[LANES] = {0}, ta = 0.0, tb = 0.0;
    for (int s = 0; s < n; s++) {
        const float *restrict p = x + (size_t)s * stride, *restrict g = dy + (size_t)s * stride;
        size_t i = 0;
        for (; i + LANES <= hw; i += LANES)
            for (int j = 0; j < LANES; j++) {
                a[j] += (double)g[i + j];
                b[j] += (double)g[i + j] * ((double)p[i + j] - mu);
            }
        for (; i < hw; i++) {
            ta += (double)g[i];
            tb += (double)g[i] * ((double)p[i] - mu);
        }
    }
    *sdy = combine(a, ta);
    *sdyx = combine(b, tb);
}

/* dx = scale·(dy − a − (x − mu)·b) over one channel's rows: the folded formula, with
 * a = mean(dy) and b = mean(dy·x̂)·s. */
CNN_CLONES static void input_grad(const float *restrict x, const float *restrict dy, float *restrict dx,
                                  size_t stride, int n, size_t hw, double mu, double scale, double a, double b) {
    for (int s = 0; s < n; s++) {
        const float *restrict p = x + (size_t)s * stride, *restrict g = dy + (size_t)s * stride;
        float *restrict q = dx + (size_t)s * stride;
        for (size_t i = 0; i < hw; i++) q[i] = (float)(scale * (((double)g[i] - a) - ((double)p[i] - mu) * b));
    }
}

/* dx = dy·scale (eval mode). */
CNN_CLONES static void scale_grad(const float *restrict dy, float *restrict dx, size_t stride, int n, size_t hw,
                                  double scale) {
    for (int s = 0; s < n; s++) {
        const float *restrict g = dy + (size_t)s * stride;
        float *restrict q = dx + (size_t)s * stride;
        for (size_t i = 0; i < hw; i++) q[i] = (float)((double)g[i] * scale);
    }
}

/* The float kernels. The summing ones sum over one channel's n rows of hw values, in float, of
 * x − sh with sh a value near the channel's mean (shift_of), into FL partial sums per quantity
 * (two AVX-512 vectors, so that the loop vectorises); after every FLUSH values of a row, or
 * every rows_per_flush rows of fewer, the partials are added into FL doubles and restarted, so
 * that no float partial takes more than FLUSH/FL = 16 terms. A row's last hw % FL values go to
 * double sums directly. The doubles are combined in one fixed order (combine_fl): the same bits
 * for any thread count. */
#define FL 32
#define FLUSH 512

static double combine_fl(const double *v) {
    double t[FL / 2];
    for (int k = 0; k < FL / 2; k++) t[k] = v[k] + v[k + FL / 2];
    for (int w = FL / 4; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) t[k] += t[k + w];
    return t[0];
}

/* The row that the summing passes prefetch while they read row s: AHEAD rows on (a channel's rows
 * are C·hw floats apart, and the hardware's prefetcher does not cross a page), or s itself at
 * the end. Measured: ~5% off the forward and the backward at hw = 1024; prefetching the rows that
 * the writing passes write made them slower. */
#define AHEAD 4
static int ahead(int s, int n) { return s + AHEAD < n ? s + AHEAD : s; }

static int rows_per_flush(size_t hw) { return hw >= FLUSH ? 1 : (int)(FLUSH / hw); }

/* The shift: the mean of the channel's first min(hw, 16) values, rounded to float. Any value of
 * the channel's range would do; one near μ keeps Σ(x − sh)² − (Σ(x − sh))²/m from cancelling
 * (it would lose all of σ² to a large mean, x ~ 1000 + N(0, 1)), and x − sh is exact in float
 * wherever x and sh are within a factor 2 of each other (Sterbenz), which a large mean makes so. */
static float shift_of(const float *xc, size_t hw) {
    const size_t k = hw < 16 ? hw : 16;
    double t = 0.0;
    for (size_t i = 0; i < k; i++) t += xc[i];
    return (float)(t / (double)k);
}

/* Σ (x − sh) into *s1 and Σ (x − sh)² into *s2. */
CNN_CLONES static void sum_shifted(const float *restrict x, size_t stride, int n, size_t hw, float sh, double *s1,
                                   double *s2) {
    float a[FL] = {0}, q[FL] = {0};
    double da[FL] = {0}, dq[FL] = {0}, ta = 0.0, tq = 0.0;
    const int per = rows_per_flush(hw);
    for (int s = 0; s < n; s++) {
        const float *restrict p = x + (size_t)s * stride, *pf = x + (size_t)ahead(s, n) * stride;
        size_t i = 0;
        while (i + FL <= hw) {
            const size_t end = i + FLUSH <= hw ? i + FLUSH : hw;
            for (; i + FL <= end; i += FL) {
                __builtin_prefetch(pf + i), __builtin_prefetch(pf + i + 16);
                for (int j = 0; j < FL; j++) {
                    const float d = p[i + j] - sh;
                    a[j] += d;
                    q[j] += d * d;
                }
            }
            if (hw >= FLUSH)
                for (int j = 0; j < FL; j++) {
                    da[j] += a[j], dq[j] += q[j];
                    a[j] = 0.0f, q[j] = 0.0f;
                }
        }
        for (; i < hw; i++) {
            const double d = (double)p[i] - (double)sh;
            ta += d;
            tq += d * d;
        }
        if (hw < FLUSH && ((s + 1) % per == 0 || s == n - 1))
            for (int j = 0; j < FL; j++) {
                da[j] += a[j], dq[j] += q[j];
                a[j] = 0.0f, q[j] = 0.0f;
            }
    }
    *s1 = combine_fl(da) + ta;
    *s2 = combine_fl(dq) + tq;
}

/* Σ dy into *sdy, Σ dy·(x − sh) into *sdyd and Σ dy² into *sdy2. */
CNN_CLONES static void sum_dy_shifted(const float *restrict x, const float *restrict dy, size_t stride, int n,
                                      size_t hw, float sh, double *sdy, double *sdyd, double *sdy2) {
    float a[FL] = {0}, b[FL] = {0}, q[FL] = {0};
    double da[FL] = {0}, db[FL] = {0}, dq[FL] = {0}, ta = 0.0, tb = 0.0, tq = 0.0;
    const int per = rows_per_flush(hw);
    for (int s = 0; s < n; s++) {
        const float *restrict p = x + (size_t)s * stride, *restrict g = dy + (size_t)s * stride;
        const float *pf = x + (size_t)ahead(s, n) * stride, *gf = dy + (size_t)ahead(s, n) * stride;
        size_t i = 0;
        while (i + FL <= hw) {
            const size_t end = i + FLUSH <= hw ? i + FLUSH : hw;
            for (; i + FL <= end; i += FL) {
                __builtin_prefetch(pf + i), __builtin_prefetch(pf + i + 16);
                __builtin_prefetch(gf + i), __builtin_prefetch(gf + i + 16);
                for (int j = 0; j < FL; j++) {
                    const float d = p[i + j] - sh, e = g[i + j];
                    a[j] += e;
                    b[j] += e * d;
                    q[j] += e * e;
                }
            }
            if (hw >= FLUSH)
                for (int j = 0; j < FL; j++) {
                    da[j] += a[j], db[j] += b[j], dq[j] += q[j];
                    a[j] = 0.0f, b[j] = 0.0f, q[j] = 0.0f;
                }
        }
        for (; i < hw; i++) {
            const double d = (double)p[i] - (double)sh, e = g[i];
            ta += e;
            tb += e * d;
            tq += e * e;
        }
        if (hw < FLUSH && ((s + 1) % per == 0 || s == n - 1))
            for (int j = 0; j < FL; j++) {
                da[j] += a[j], db[j] += b[j], dq[j] += q[j];
                a[j] = 0.0f, b[j] = 0.0f, q[j] = 0.0f;
            }
    }
    *sdy = combine_fl(da) + ta;
    *sdyd = combine_fl(db) + tb;
    *sdy2 = combine_fl(dq) + tq;
}

/* How many of a row's first values the writing passes do one by one, so that the vector loop's
 * stores start on a 64-byte line (large malloc'd buffers, the arena's among them, start 16 bytes
 * into one, and a store that splits two lines costs two). Per-element results do not depend on
 * it. */
static size_t head(const float *q, size_t hw) {
    const size_t h = (64 - (size_t)((uintptr_t)q % 64)) % 64 / sizeof *q;
    return h < hw ? h : hw;
}

/* y = (x − sh)·scale + shift over one channel's rows, in float. */
CNN_CLONES static void normalise_f(const float *restrict x, float *restrict y, size_t stride, int n, size_t hw,
                                   float sh, float scale, float shift) {
    for (int s = 0; s < n; s++) {
        const float *restrict p = x + (size_t)s * stride;
        float *restrict q = y + (size_t)s * stride;
        size_t i = 0;
        for (const size_t h = head(q, hw); i < h; i++) q[i] = (p[i] - sh) * scale + shift;
        for (; i < hw; i++) q[i] = (p[i] - sh) * scale + shift;
    }
}

/* dx = ca·dy + (cb·(x − sh) + cc) over one channel's rows, in float: the folded formula with its
 * per-channel coefficients (bn_backward). */
CNN_CLONES static void input_grad_f(const float *restrict x, const float *restrict dy, float *restrict dx,
                                    size_t stride, int n, size_t hw, float sh, float ca, float cb, float cc) {
    for (int s = 0; s < n; s++) {
        const float *restrict p = x + (size_t)s * stride, *restrict g = dy + (size_t)s * stride;
        float *restrict q = dx + (size_t)s * stride;
        size_t i = 0;
        for (const size_t h = head(q, hw); i < h; i++) q[i] = ca * g[i] + (cb * (p[i] - sh) + cc);
        for (; i < hw; i++) q[i] = ca * g[i] + (cb * (p[i] - sh) + cc);
    }
}

/* Channel c's batch mean and biased variance over its n·hw values starting at xc, in double
 * throughout: for the backward's channels whose input gradient would cancel (bn_backward). */
static void batch_moments_exact(int n, size_t hw, size_t stride, const float *xc, double *mu, double *var) {
    const double m = (double)n * (double)hw;
    *mu = sum_x(xc, stride, n, hw) / m;
    *var = sum_sq(xc, stride, n, hw, *mu) / m;
}

/* The same from the float sums of x − sh: μ = sh + Σ(x − sh)/m, σ² = Σ(x − sh)²/m − (μ − sh)². */
static void batch_moments(int n, size_t hw, size_t stride, const float *xc, double *mu, double *var) {
    const double m = (double)n * (double)hw;
    const float sh = shift_of(xc, hw);
    double s1, s2;
    sum_shifted(xc, stride, n, hw, sh, &s1, &s2);
    const double e = s1 / m, v = s2 / m - e * e;
    *mu = (double)sh + e;
    *var = v > 0.0 ? v : 0.0;
}

/* Channel c's μ and s = 1/√(σ² + ε) as the forward uses them: from the batch, or from the running
 * statistics in eval mode. */
static void channel_stats(const layer *l, int n, const float *x, int c, double *mu, double *s) {
    const size_t hw = (size_t)l->h * l->w, stride = (size_t)l->c * hw;
    double var;
    if (batch_stats(l)) {
        batch_moments(n, hw, stride, x + (size_t)c * hw, mu, &var);
    } else {
        const int r = RM(l);
        *mu = l->param[r][c];
        var = l->param[r + 1][c];
    }
    *s = 1.0 / sqrt(var + l->o.norm.eps);
}

static size_t bn_keep_floats(const layer *l, int n) {
    (void)n;
    return (size_t)4 * l->c;   /* μ and s of each channel, as two doubles */
}

static void keep_put(const layer *l, int c, double mu, double s) {
    memcpy(l->keep + (size_t)4 * c, &mu, sizeof mu);   /* keep is float-aligned only */
    memcpy(l->keep + (size_t)4 * c + 2, &s, sizeof s);
}

static void keep_get(const layer *l, int c, double *mu, double *s) {
    memcpy(mu, l->keep + (size_t)4 * c, sizeof *mu);
    memcpy(s, l->keep + (size_t)4 * c + 2, sizeof *s);
}

static void bn_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    const norm_opts *o = &l->o.norm;
    (void)ws;
    const int C = l->c, r = RM(l);
    const size_t hw = (size_t)l->h * l->w, stride = (size_t)C * hw;
    const double m = (double)n * (double)hw;
    const int batch = batch_stats(l), update = l->training && o->track;
    double f = 0.0;
    if (update) {
        l->count[r + 2][0] += 1;
        f = update_factor(l, (double)l->count[r + 2][0]);
    }
    PARALLEL_FOR(c, C) {
        const float *xc = x + (size_t)c * hw;
        double mu, var, s;
        if (batch) {
            batch_moments(n, hw, stride, xc, &mu, &var);
            s = 1.0 / sqrt(var + o->eps);
            if (update) {
                float *rm = l->param[r], *rv = l->param[r + 1];
                rm[c] = (float)((1.0 - f) * rm[c] + f * mu);
                rv[c] = (float)((1.0 - f) * rv[c] + f * var * m / (m - 1.0));   /* m > 1: check_batch */
            }
        } else {
            channel_stats(l, n, x, (int)c, &mu, &s);
        }
        if (l->keep) keep_put(l, (int)c, mu, s);
        const double g = o->affine ? l->param[0][c] : 1.0, b = o->affine ? l->param[1][c] : 0.0;
        const float sh = shift_of(xc, hw);   /* y = γ s (x − sh) + (β − γ s (μ − sh)) */
        normalise_f(xc, y + (size_t)c * hw, stride, n, hw, sh, (float)(g * s), (float)(b - g * s * (mu - sh)));
    }
}

/* The backward of one channel with batch statistics, in double throughout, μ and s recomputed so:
 * for the channels whose input gradient is a small difference of large terms (bn_backward). */
static void backward_exact(const layer *l, int n, const float *x, const float *dy, float *dx, int c) {
    const size_t hw = (size_t)l->h * l->w, stride = (size_t)l->c * hw, off = (size_t)c * hw;
    const double m = (double)n * (double)hw;
    const norm_opts *o = &l->o.norm;
    double mu, var, sdy, sdyx;
    batch_moments_exact(n, hw, stride, x + off, &mu, &var);
    const double s = 1.0 / sqrt(var + o->eps), g = o->affine ? l->param[0][c] : 1.0;
    sum_dy(x + off, dy + off, stride, n, hw, mu, &sdy, &sdyx);
    if (o->affine) {
        l->grad[0][c] += (float)(sdyx * s);
        l->grad[1][c] += (float)sdy;
    }
    input_grad(x + off, dy + off, dx + off, stride, n, hw, mu, g * s, sdy / m, sdyx * s * s / m);
}

static void bn_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                        float *const *dxs, float *ws) {
    const float *x = xs[0];
    float *dx = dxs[0];
    const norm_opts *o = &l->o.norm;
    (void)y, (void)ws;
    const int C = l->c;
    const size_t hw = (size_t)l->h * l->w, stride = (size_t)C * hw;
    const double m = (double)n * (double)hw;
    const int batch = batch_stats(l);
    PARALLEL_FOR(c, C) {
        const size_t off = (size_t)c * hw;
        double mu, s;
        if (l->keep) keep_get(l, (int)c, &mu, &s);
        else channel_stats(l, n, x, (int)c, &mu, &s);
        const double g = o->affine ? l->param[0][c] : 1.0;
        if (!batch) {   /* eval mode: dx = dy·γ·s, in double */
            double sdy = 0.0, sdyx = 0.0;   /* Σ dy and Σ dy·(x − μ) = Σ dy·x̂ / s */
            if (o->affine) {
                sum_dy(x + off, dy + off, stride, n, hw, mu, &sdy, &sdyx);
                l->grad[0][c] += (float)(sdyx * s);
                l->grad[1][c] += (float)sdy;
            }
            if (dx) scale_grad(dy + off, dx + off, stride, n, hw, g * s);
            continue;
        }
        const float sh = shift_of(x + off, hw);
        const double e = mu - (double)sh;
        double sdy, sdyd, sdy2;   /* Σ dy, Σ dy·(x − sh), Σ dy² */
        sum_dy_shifted(x + off, dy + off, stride, n, hw, sh, &sdy, &sdyd, &sdy2);
        const double a = sdy / m, bx = (sdyd - e * sdy) * s / m;   /* mean(dy), mean(dy·x̂) */
        if (dx) {
            /* dx/(γs) = dy − a − x̂·bx is what is left of dy after its projection on 1 and x̂; its
             * square sum is Σdy² − m a² − m bx² (1 + ε s²). Where that is under a quarter of Σdy²
             * (always at m = 2, see the header comment), float would lose too much of it. */
            const double rest = sdy2 - m * a * a - m * bx * bx * (1.0 + o->eps * s * s);
            if (!(rest >= 0.25 * sdy2)) {
                backward_exact(l, n, x, dy, dx, (int)c);
                continue;
            }
        }
        if (o->affine) {
            l->grad[0][c] += (float)(bx * m);
            l->grad[1][c] += (float)sdy;
        }
        if (!dx) continue;
        /* dx = γs (dy − a − s·bx·((x − sh) − e)) */
        const double ca = g * s, cb = -ca * s * bx, cc = ca * (s * bx * e - a);
        input_grad_f(x + off, dy + off, dx + off, stride, n, hw, sh, (float)ca, (float)cb, (float)cc);
    }
}

const layer_ops batchnorm2d_ops = {
    .name = "batchnorm2d",
    .torch_name = "BatchNorm2d",
    .defaults = bn_defaults,
    .option = bn_option,
    .setup = bn_setup,
    .keep_floats = bn_keep_floats,
    .check_batch = bn_check_batch,
    .forward = bn_forward,
    .backward = bn_backward,
    .forward_ref = bn_forward_ref,
    .backward_ref = bn_backward_ref,
};

const layer_ops batchnorm1d_ops = {
    .name = "batchnorm1d",
    .torch_name = "BatchNorm1d",
    .defaults = bn_defaults,
    .option = bn_option,
    .setup = bn_setup,
    .keep_floats = bn_keep_floats,
    .check_batch = bn_check_batch,
    .forward = bn_forward,
    .backward = bn_backward,
    .forward_ref = bn_forward_ref,
    .backward_ref = bn_backward_ref,
};

void batchnorm_eval_affine(const layer *l, double *scale, double *shift) {
    const norm_opts *o = &l->o.norm;
    const int r = RM(l);
    for (int c = 0; c < l->c; c++) {
        const double g = o->affine ? l->param[0][c] : 1.0, b = o->affine ? l->param[1][c] : 0.0;
        scale[c] = g / sqrt((double)l->param[r + 1][c] + o->eps);
        shift[c] = b - (double)l->param[r][c] * scale[c];
    }
}
