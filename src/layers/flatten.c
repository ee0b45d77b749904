/* flatten: [n, c, h, w] → [n, c·h·w, 1, 1]. NCHW is already row-major in that order, so forward
 * and backward copy the data as it is. */
#include "layers/layer.h"

#include <string.h>

static cnn_status flatten_setup(layer *l) {
    l->oc = l->c * l->h * l->w;
    l->oh = l->ow = 1;
    l->flat = 1;
    return CNN_OK;
}

static void flatten_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    memcpy(y, x, (size_t)n * l->oc * sizeof *y);
}

static void flatten_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                 const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)x, (void)p, (void)y, (void)dp;
    memcpy(dx, dy, (size_t)n * l->oc * sizeof *dx);
}

static void flatten_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    (void)ws;
    memcpy(y, x, (size_t)n * l->oc * sizeof *y);
}

static void flatten_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                             float *const *dxs, float *ws) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)x, (void)y, (void)ws;
    memcpy(dx, dy, (size_t)n * l->oc * sizeof *dx);
}

const layer_ops flatten_ops = {
    .name = "flatten",
    .torch_name = "Flatten",
    .setup = flatten_setup,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .forward_ref = flatten_forward_ref,
    .backward_ref = flatten_backward_ref,
};
