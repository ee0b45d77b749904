/* silu: PyTorch's SiLU (swish), y = x·σ(x) with σ(x) = 1/(1 + e^−x).
 *
 * Backward: y_i depends on x_i alone. By the product rule and σ' = σ·(1 − σ) (note 001, eq. 1),
 *   dy/dx = σ(x) + x·σ(x)·(1 − σ(x)),   so   dx = dy · (s + x·s·(1 − s)),  s = σ(x).
 * The backward recomputes s from x (one exponential) rather than keeping it.
 */
#include "layers/layer.h"
#include "base/threads.h"

#include <math.h>

#define CHUNK 4096   /* elements per parallel iteration */

/* ---- reference path ------------------------------------------------------------------------ */

static void silu_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) {
        const double s = 1.0 / (1.0 + exp(-x[i]));
        y[i] = x[i] * s;
    }
}

static void silu_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                              const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)p, (void)y, (void)dp;
    if (!dx) return;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) {
        const double s = 1.0 / (1.0 + exp(-x[i]));
        dx[i] = dy[i] * (s + x[i] * s * (1.0 - s));
    }
}

/* ---- fast path ----------------------------------------------------------------------------- */

static void silu_chunk_forward(const float *restrict x, float *restrict y, size_t len) {
    for (size_t i = 0; i < len; i++) y[i] = x[i] / (1.0f + expf(-x[i]));   /* x·σ(x) as PyTorch computes it */
}

static void silu_chunk_backward(const float *restrict x, const float *restrict dy, float *restrict dx, size_t len) {
    for (size_t i = 0; i < len; i++) {
        const float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] = dy[i] * (s + x[i] * s * (1.0f - s));
    }
}

static void silu_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w, chunks = (count + CHUNK - 1) / CHUNK;
    PARALLEL_FOR(ch, chunks) {
        const size_t i0 = (size_t)ch * CHUNK, len = count - i0 < CHUNK ? count - i0 : CHUNK;
        silu_chunk_forward(x + i0, y + i0, len);
    }
}

static void silu_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                          float *const *dxs, float *ws) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)y, (void)ws;
    if (!dx) return;
    const size_t count = (size_t)n * l->c * l->h * l->w, chunks = (count + CHUNK - 1) / CHUNK;
    PARALLEL_FOR(ch, chunks) {
        const size_t i0 = (size_t)ch * CHUNK, len = count - i0 < CHUNK ? count - i0 : CHUNK;
        silu_chunk_backward(x + i0, dy + i0, dx + i0, len);
    }
}

const layer_ops silu_ops = {
    .name = "silu",
    .torch_name = "SiLU",
    .forward = silu_forward,
    .backward = silu_backward,
    .forward_ref = silu_forward_ref,
    .backward_ref = silu_backward_ref,
};
