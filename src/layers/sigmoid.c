/* sigmoid: y = 1 / (1 + e^−x).  Backward: dx = dy · y · (1 − y), from the saved output. */
#include "layers/layer.h"

#include <math.h>

static void sigmoid_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = 1.0 / (1.0 + exp(-x[i]));
}

static void sigmoid_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                 const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)x, (void)p, (void)dp;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) dx[i] = dy[i] * y[i] * (1.0 - y[i]);
}

static void sigmoid_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

static void sigmoid_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                             float *const *dxs, float *ws) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)x, (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

const layer_ops sigmoid_ops = {
    .name = "sigmoid",
    .torch_name = "Sigmoid",
    .forward = sigmoid_forward,
    .backward = sigmoid_backward,
    .forward_ref = sigmoid_forward_ref,
    .backward_ref = sigmoid_backward_ref,
};
