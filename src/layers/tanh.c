/* tanh: y = tanh(x).  Backward: dx = dy · (1 − y²), from the saved output. */
#include "layers/layer.h"

#include <math.h>

static void tanh_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = tanh(x[i]);
}

static void tanh_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                              const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)x, (void)p, (void)dp;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) dx[i] = dy[i] * (1.0 - y[i] * y[i]);
}

static void tanh_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = tanhf(x[i]);
}

static void tanh_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                          float *const *dxs, float *ws) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)x, (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

const layer_ops tanh_ops = {
    .name = "tanh",
    .torch_name = "Tanh",
    .forward = tanh_forward,
    .backward = tanh_backward,
    .forward_ref = tanh_forward_ref,
    .backward_ref = tanh_backward_ref,
};
