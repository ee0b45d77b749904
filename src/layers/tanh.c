/* tanh: y = tanh(x).  Backward: dx = dy · (1 − y²), from the saved output. */
#include "layers/layer.h"

#include <math.h>

static void tanh_forward_ref(const layer *l, int n, const double *x, const double *const *p, double *y) {
    (void)p;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = tanh(x[i]);
}

static void tanh_backward_ref(const layer *l, int n, const double *x, const double *const *p,
                              const double *y, const double *dy, double *dx, double *const *dp) {
    (void)x, (void)p, (void)dp;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) dx[i] = dy[i] * (1.0 - y[i] * y[i]);
}

static void tanh_forward(const layer *l, int n, const float *x, float *y, float *ws) {
    (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = tanhf(x[i]);
}

static void tanh_backward(const layer *l, int n, const float *x, const float *y, const float *dy,
                          float *dx, float *ws) {
    (void)x, (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

const layer_ops tanh_ops = {
    .name = "tanh",
    .forward = tanh_forward,
    .backward = tanh_backward,
    .forward_ref = tanh_forward_ref,
    .backward_ref = tanh_backward_ref,
};
