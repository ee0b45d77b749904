/* softmax dim=1: PyTorch's Softmax(dim=1), over the channels. A flat [N, C] value is normalised
 * over C in each row; an [N, C, H, W] value over C at each position (h, w). dim=1 is the only dim
 * accepted (and the default: PyTorch's implicit dim for 2-D and 4-D inputs is 1 too).
 *
 * Forward, for one position with channel values x_1..x_C (stable: the maximum m subtracted first,
 * which changes nothing since e^(x − m)/Σ e^(x − m) = e^x/Σ e^x):
 *   y_c = e^(x_c − m) / Σ_j e^(x_j − m)
 * Backward: every y_c depends on every x_j of the position, with the local gradients
 *   ∂y_c/∂x_j = y_c·(δ_cj − y_j)
 * (the quotient rule: ∂y_c/∂x_j = (δ_cj·e^x_c·S − e^x_c·e^x_j)/S², S = Σ e^x). The chain rule sums
 * over every output the input reaches:
 *   dx_j = Σ_c dy_c·∂y_c/∂x_j = y_j·dy_j − y_j·Σ_c dy_c·y_c = y_j·(dy_j − Σ_c dy_c·y_c)
 * so the backward needs only the output y and one dot product per position.
 *
 * The fast path sums over the channels in channel order, so every thread count gives the same bits;
 * over H×W positions it runs the channel loops with the positions innermost (contiguous), keeping
 * the per-position maximum and sum in the workspace.
 */
#include "layers/layer.h"
#include "base/error.h"
#include "base/threads.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

static cnn_status softmax_option(layer *l, const char *key, const char *value) {
    if (!strcmp(key, "dim")) {
        if (strcmp(value, "1"))
            return cnn_fail(CNN_ERR_PARSE, "line %d: softmax: option dim=%s: only dim=1 (over the channels) is "
                            "supported", l->line, value);
        return CNN_OK;
    }
    return opt_unknown(l, key);
}

/* Positions per sample: h·w (1 for a flat value). */
static size_t positions(const layer *l) { return (size_t)l->h * l->w; }

/* The forward's maximum and sum per position (the backward needs half of it, the dot products). */
static size_t softmax_workspace(const layer *l, int n) {
    return positions(l) > 1 ? 2 * (size_t)n * positions(l) : 0;
}

/* ---- reference path ------------------------------------------------------------------------ */

static void softmax_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    const size_t hw = positions(l), C = (size_t)l->c;
    for (size_t s = 0; s < (size_t)n; s++)
        for (size_t q = 0; q < hw; q++) {
            const double *xq = x + s * C * hw + q;   /* channel c at xq[c·hw] */
            double *yq = y + s * C * hw + q;
            double m = xq[0];
            for (size_t c = 1; c < C; c++) m = xq[c * hw] > m ? xq[c * hw] : m;
            double sum = 0.0;
            for (size_t c = 0; c < C; c++) sum += exp(xq[c * hw] - m);
            for (size_t c = 0; c < C; c++) yq[c * hw] = exp(xq[c * hw] - m) / sum;
        }
}

static void softmax_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                 const double *y, const double *dy, double *const *dxs, double *const *dp) {
    double *dx = dxs[0];
    (void)xs, (void)p, (void)dp;
    if (!dx) return;
    const size_t hw = positions(l), C = (size_t)l->c;
    for (size_t s = 0; s < (size_t)n; s++)
        for (size_t q = 0; q < hw; q++) {
            const size_t at = s * C * hw + q;
            double dot = 0.0;   /* Σ_c dy_c·y_c */
            for (size_t c = 0; c < C; c++) dot += dy[at + c * hw] * y[at + c * hw];
            for (size_t c = 0; c < C; c++) dx[at + c * hw] = y[at + c * hw] * (dy[at + c * hw] - dot);
        }
}

/* ---- fast path ----------------------------------------------------------------------------- */

/* One row of C contiguous values (a flat value, or H = W = 1). */
static void forward_row(const float *restrict x, float *restrict y, int C) {
    float m = x[0];
    for (int c = 1; c < C; c++) m = x[c] > m ? x[c] : m;
    float sum = 0.0f;
    for (int c = 0; c < C; c++) {
        y[c] = expf(x[c] - m);
        sum += y[c];
    }
    for (int c = 0; c < C; c++) y[c] /= sum;
}

static void backward_row(const float *restrict y, const float *restrict dy, float *restrict dx, int C) {
    float dot = 0.0f;
    for (int c = 0; c < C; c++) dot += dy[c] * y[c];
    for (int c = 0; c < C; c++) dx[c] = y[c] * (dy[c] - dot);
}

/* One sample of C planes of hw positions; m and sum are hw floats each. */
CNN_CLONES static void forward_planes(const float *restrict x, float *restrict y, int C, size_t hw,
                                      float *restrict m, float *restrict sum) {
    memcpy(m, x, hw * sizeof *m);
    for (int c = 1; c < C; c++) {
        const float *restrict xc = x + c * hw;
        for (size_t q = 0; q < hw; q++) m[q] = xc[q] > m[q] ? xc[q] : m[q];
    }
    memset(sum, 0, hw * sizeof *sum);
    for (int c = 0; c < C; c++) {
        const float *restrict xc = x + c * hw;
        float *restrict yc = y + c * hw;
        for (size_t q = 0; q < hw; q++) {
            yc[q] = expf(xc[q] - m[q]);
            sum[q] += yc[q];
        }
    }
    for (int c = 0; c < C; c++) {
        float *restrict yc = y + c * hw;
        for (size_t q = 0; q < hw; q++) yc[q] /= sum[q];
    }
}

CNN_CLONES static void backward_planes(const float *restrict y, const float *restrict dy, float *restrict dx, int C,
                                       size_t hw, float *restrict dot) {
    memset(dot, 0, hw * sizeof *dot);
    for (int c = 0; c < C; c++)
        for (size_t q = 0; q < hw; q++) dot[q] += dy[c * hw + q] * y[c * hw + q];
    for (int c = 0; c < C; c++)
        for (size_t q = 0; q < hw; q++) dx[c * hw + q] = y[c * hw + q] * (dy[c * hw + q] - dot[q]);
}

static void softmax_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    const size_t hw = positions(l), per = (size_t)l->c * hw;
    if (hw == 1) {
        PARALLEL_FOR(s, n) forward_row(x + s * per, y + s * per, l->c);
    } else {
        PARALLEL_FOR(s, n) {
            float *m = ws + (size_t)s * 2 * hw;
            forward_planes(x + s * per, y + s * per, l->c, hw, m, m + hw);
        }
    }
}

static void softmax_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                             float *const *dxs, float *ws) {
    float *dx = dxs[0];
    (void)xs;
    if (!dx) return;
    const size_t hw = positions(l), per = (size_t)l->c * hw;
    if (hw == 1) {
        PARALLEL_FOR(s, n) backward_row(y + s * per, dy + s * per, dx + s * per, l->c);
    } else {
        PARALLEL_FOR(s, n) backward_planes(y + s * per, dy + s * per, dx + s * per, l->c, hw, ws + (size_t)s * 2 * hw);
    }
}

const layer_ops softmax_ops = {
    .name = "softmax",
    .torch_name = "Softmax",
    .option = softmax_option,
    .workspace = softmax_workspace,
    .forward = softmax_forward,
    .backward = softmax_backward,
    .forward_ref = softmax_forward_ref,
    .backward_ref = softmax_backward_ref,
};
