/* linear: y = x·Wᵀ + b, x [n, in], W [out, in] (PyTorch's layout), b [out].
 *
 * Backward (note 004 writes Out = x·W with W [in, out]; in PyTorch's layout W is its transpose):
 *   dx = dy · W        (note 004: ∂L/∂x = ∂L/∂Out · Wᵀ)
 *   dW += dyᵀ · x      (note 004: ∂L/∂W = xᵀ · ∂L/∂Out, transposed)
 *   db += Σ_n dy
 * The input must be flat, [n, features], as after a flatten: PyTorch's Linear would read only the
 * last dimension of a 4-D tensor, which is never what a model file means.
 */
#include "layers/layer.h"
#include "base/error.h"
#include "kernels/kernels.h"

#include <string.h>

static void linear_defaults(layer *l) { l->o.lin.bias = 1; }

static cnn_status linear_option(layer *l, const char *key, const char *value) {
    if (!strcmp(key, "out_features")) return opt_int(l, key, value, 1, &l->o.lin.out_features);
    if (!strcmp(key, "bias")) return opt_bool(l, key, value, &l->o.lin.bias);
    return opt_unknown(l, key);
}

static cnn_status linear_setup(layer *l) {
    if (l->o.lin.out_features == 0)
        return cnn_fail(CNN_ERR_PARSE, "line %d: linear: out_features= is required", l->line);
    if (!l->in_flat)
        return cnn_fail(CNN_ERR_SHAPE,
                        "line %d: linear: input %dx%dx%d is not flat; put a flatten line before it",
                        l->line, l->c, l->h, l->w);
    l->oc = l->o.lin.out_features;
    l->oh = l->ow = 1;
    l->flat = 1;
    layer_add_tensor(l, "weight", CNN_F32, 1, LAYER_INIT_FAN_IN, 2, l->oc, l->c, 0, 0);
    if (l->o.lin.bias) layer_add_tensor(l, "bias", CNN_F32, 1, LAYER_INIT_FAN_IN, 1, l->oc, 0, 0, 0);
    return CNN_OK;
}

static int64_t linear_fan_in(const layer *l) { return l->c; }

static void linear_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    const int in = l->c, out = l->oc;
    for (int s = 0; s < n; s++)
        for (int o = 0; o < out; o++) {
            double acc = l->o.lin.bias ? p[1][o] : 0.0;
            for (int i = 0; i < in; i++) acc += x[(size_t)s * in + i] * p[0][(size_t)o * in + i];
            y[(size_t)s * out + o] = acc;
        }
}

static void linear_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)y;
    const int in = l->c, out = l->oc;
    for (int s = 0; dx && s < n; s++)    /* dx = dy · W, unless the input needs no gradient */
        for (int i = 0; i < in; i++) {
            double acc = 0.0;
            for (int o = 0; o < out; o++) acc += dy[(size_t)s * out + o] * p[0][(size_t)o * in + i];
            dx[(size_t)s * in + i] = acc;
        }
    for (int o = 0; o < out; o++)        /* dW = dyᵀ · x */
        for (int i = 0; i < in; i++) {
            double acc = 0.0;
            for (int s = 0; s < n; s++) acc += dy[(size_t)s * out + o] * x[(size_t)s * in + i];
            dp[0][(size_t)o * in + i] += acc;
        }
    if (l->o.lin.bias)                   /* db = Σ_n dy */
        for (int s = 0; s < n; s++)
            for (int o = 0; o < out; o++) dp[1][o] += dy[(size_t)s * out + o];
}

static void linear_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    (void)ws;
    const int in = l->c, out = l->oc;
    gemm(0, 1, n, out, in, x, l->param[0], 0.0f, y);
    if (l->o.lin.bias)
        for (int s = 0; s < n; s++)
            for (int o = 0; o < out; o++) y[(size_t)s * out + o] += l->param[1][o];
}

static void linear_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                            float *const *dxs, float *ws) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)y, (void)ws;
    const int in = l->c, out = l->oc;
    if (dx) gemm(0, 0, n, in, out, dy, l->param[0], 0.0f, dx);
    gemm(1, 0, out, in, n, dy, x, 1.0f, l->grad[0]);
    if (l->o.lin.bias)
        for (int s = 0; s < n; s++)
            for (int o = 0; o < out; o++) l->grad[1][o] += dy[(size_t)s * out + o];
}

const layer_ops linear_ops = {
    .name = "linear",
    .torch_name = "Linear",
    .defaults = linear_defaults,
    .option = linear_option,
    .setup = linear_setup,
    .fan_in = linear_fan_in,
    .forward = linear_forward,
    .backward = linear_backward,
    .forward_ref = linear_forward_ref,
    .backward_ref = linear_backward_ref,
};
