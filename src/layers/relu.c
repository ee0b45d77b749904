/* relu: y = max(0, x).  Backward (note 004): dx = dy where x > 0, else 0 (the derivative at 0 is 0). */
#include "layers/layer.h"
#include "base/threads.h"
#include "kernels/kernels.h"

static void relu_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) y[i] = x[i] > 0.0 ? x[i] : 0.0;
}

static void relu_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                              const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)p, (void)y, (void)dp;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) dx[i] = x[i] > 0.0 ? dy[i] : 0.0;
}

CNN_CLONES static void relu_grad_span(const float *restrict x, const float *restrict dy, float *restrict dx,
                                      size_t len) {
    for (size_t i = 0; i < len; i++) {
        const float g = dy[i];   /* loaded unconditionally, so the loop vectorises without branches */
        dx[i] = x[i] > 0.0f ? g : 0.0f;
    }
}

/* Chunks of the whole batch in parallel: each element stands alone, so any split gives the same
 * bits. */
static void relu_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    PARALLEL_FOR(c, layer_chunks(count)) {
        const size_t at = (size_t)c * LAYER_CHUNK, len = layer_chunk_len(c, count);
        relu_into(y + at, xs[0] + at, len);
    }
}

static void relu_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                          float *const *dxs, float *ws) {
    (void)y, (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    PARALLEL_FOR(c, layer_chunks(count)) {
        const size_t at = (size_t)c * LAYER_CHUNK, len = layer_chunk_len(c, count);
        relu_grad_span(xs[0] + at, dy + at, dxs[0] + at, len);
    }
}

const layer_ops relu_ops = {
    .name = "relu",
    .torch_name = "ReLU",
    .forward = relu_forward,
    .backward = relu_backward,
    .forward_ref = relu_forward_ref,
    .backward_ref = relu_backward_ref,
};
