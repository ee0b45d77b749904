/* leakyrelu: y = x for x > 0, else a·x.  Backward: dx = dy for x > 0, else a·dy (so at 0 it is a),
 * as PyTorch does. a = negative_slope, 0.01 by default. */
#include "layers/layer.h"
#include "kernels/kernels.h"

#include <string.h>

static void leakyrelu_defaults(layer *l) { l->o.negative_slope = 0.01; }

static cnn_status leakyrelu_option(layer *l, const char *key, const char *value) {
    if (!strcmp(key, "negative_slope")) return opt_double(l, key, value, &l->o.negative_slope);
    return opt_unknown(l, key);
}

static void leakyrelu_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    const double a = l->o.negative_slope;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = x[i] > 0.0 ? x[i] : a * x[i];
}

static void leakyrelu_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                   const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)p, (void)y, (void)dp;
    const double a = l->o.negative_slope;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) dx[i] = x[i] > 0.0 ? dy[i] : a * dy[i];
}

CNN_CLONES static void leakyrelu_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    (void)ws;
    const float a = (float)l->o.negative_slope;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : a * x[i];
}

CNN_CLONES static void leakyrelu_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                               float *const *dxs, float *ws) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)y, (void)ws;
    const float a = (float)l->o.negative_slope;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) {
        const float g = dy[i];
        dx[i] = x[i] > 0.0f ? g : a * g;
    }
}

const layer_ops leakyrelu_ops = {
    .name = "leakyrelu",
    .torch_name = "LeakyReLU",
    .defaults = leakyrelu_defaults,
    .option = leakyrelu_option,
    .forward = leakyrelu_forward,
    .backward = leakyrelu_backward,
    .forward_ref = leakyrelu_forward_ref,
    .backward_ref = leakyrelu_backward_ref,
};
