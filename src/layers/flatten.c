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

static void flatten_forward_ref(const layer *l, int n, const double *x, const double *const *p, double *y) {
    (void)p;
    memcpy(y, x, (size_t)n * l->oc * sizeof *y);
}

static void flatten_backward_ref(const layer *l, int n, const double *x, const double *const *p,
                                 const double *y, const double *dy, double *dx, double *const *dp) {
    (void)x, (void)p, (void)y, (void)dp;
    memcpy(dx, dy, (size_t)n * l->oc * sizeof *dx);
}

static void flatten_forward(const layer *l, int n, const float *x, float *y, float *ws) {
    (void)ws;
    memcpy(y, x, (size_t)n * l->oc * sizeof *y);
}

static void flatten_backward(const layer *l, int n, const float *x, const float *y, const float *dy,
                             float *dx, float *ws) {
    (void)x, (void)y, (void)ws;
    memcpy(dx, dy, (size_t)n * l->oc * sizeof *dx);
}

const layer_ops flatten_ops = {
    .name = "flatten",
    .setup = flatten_setup,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .forward_ref = flatten_forward_ref,
    .backward_ref = flatten_backward_ref,
};
