/* sigmoid: y = 1 / (1 + e^−x).  Backward: dx = dy · y · (1 − y), from the saved output. */
#include "layers/layer.h"

#include <math.h>

static void sigmoid_forward_ref(const layer *l, int n, const double *x, const double *const *p, double *y) {
    (void)p;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = 1.0 / (1.0 + exp(-x[i]));
}

static void sigmoid_backward_ref(const layer *l, int n, const double *x, const double *const *p,
                                 const double *y, const double *dy, double *dx, double *const *dp) {
    (void)x, (void)p, (void)dp;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) dx[i] = dy[i] * y[i] * (1.0 - y[i]);
}

static void sigmoid_forward(const layer *l, int n, const float *x, float *y, float *ws) {
    (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

static void sigmoid_backward(const layer *l, int n, const float *x, const float *y, const float *dy,
                             float *dx, float *ws) {
    (void)x, (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

const layer_ops sigmoid_ops = {
    .name = "sigmoid",
    .forward = sigmoid_forward,
    .backward = sigmoid_backward,
    .forward_ref = sigmoid_forward_ref,
    .backward_ref = sigmoid_backward_ref,
};
