/* gelu approximate=none|tanh: PyTorch's GELU, y = x·Φ(x) with Φ the standard normal CDF.
 *
 * approximate=none (the default):
 *   y = 0.5·x·(1 + erf(x/√2)) = x·Φ(x)
 *   dy/dx = Φ(x) + x·Φ'(x) = 0.5·(1 + erf(x/√2)) + x·φ(x),  φ(x) = e^(−x²/2)/√(2π)
 *   (the product rule on x·Φ(x); Φ' = φ because d/dz erf(z) = (2/√π)·e^(−z²) and z = x/√2 gives
 *   0.5·(2/√π)·e^(−x²/2)·(1/√2) = e^(−x²/2)/√(2π)).
 *
 * approximate=tanh:
 *   u = k·(x + a·x³),  k = √(2/π), a = 0.044715,  t = tanh(u)
 *   y = 0.5·x·(1 + t)
 *   dy/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·k·(1 + 3a·x²)
 *   (the product rule on 0.5·x·(1 + t); dt/dx = (1 − t²)·du/dx and du/dx = k·(1 + 3a·x²)).
 *
 * Backward: y_i depends on x_i alone, so dx_i = dy_i · dy/dx at x_i.
 *
 * The fast path computes the same functions in float with forms that stay accurate where y is
 * small (x very negative), where 1 + erf and 1 + tanh cancel in float:
 *   Φ(x) = 0.5·erfc(−x/√2), and 0.5·(1 + tanh(u)) = 1/(1 + e^(−2u)) = s, 1 − t² = 4·s·(1 − s).
 */
#include "layers/layer.h"
#include "base/error.h"
#include "base/threads.h"

#include <math.h>
#include <string.h>

#define CHUNK 4096   /* elements per parallel iteration */
#define KAPPA 0.044715

static cnn_status gelu_option(layer *l, const char *key, const char *value) {
    if (!strcmp(key, "approximate")) {
        if (!strcmp(value, "none")) l->o.approximate = 0;
        else if (!strcmp(value, "tanh")) l->o.approximate = 1;
        else
            return cnn_fail(CNN_ERR_PARSE, "line %d: gelu: option approximate=%s: expected none or tanh", l->line,
                            value);
        return CNN_OK;
    }
    return opt_unknown(l, key);
}

/* ---- reference path ------------------------------------------------------------------------ */

static const double SQRT_2_OVER_PI = 0.79788456080286535588;   /* √(2/π) */
static const double INV_SQRT_2PI = 0.39894228040143267794;     /* 1/√(2π) */

static void gelu_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) {
        const double v = x[i];
        if (l->o.approximate) y[i] = 0.5 * v * (1.0 + tanh(SQRT_2_OVER_PI * (v + KAPPA * v * v * v)));
        else y[i] = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    }
}

static void gelu_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                              const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)p, (void)y, (void)dp;
    if (!dx) return;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    for (size_t i = 0; i < count; i++) {
        const double v = x[i];
        double d;
        if (l->o.approximate) {
            const double t = tanh(SQRT_2_OVER_PI * (v + KAPPA * v * v * v));
            d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * KAPPA * v * v);
        } else {
            d = 0.5 * (1.0 + erf(v / sqrt(2.0))) + v * INV_SQRT_2PI * exp(-0.5 * v * v);
        }
        dx[i] = dy[i] * d;
    }
}

/* ---- fast path ----------------------------------------------------------------------------- */

static const float SQRT1_2F = 0.70710678118654752440f;      /* 1/√2 */
static const float SQRT_2_OVER_PIF = 0.79788456080286535588f;
static const float INV_SQRT_2PIF = 0.39894228040143267794f;

/* y = gelu(x) over one chunk. */
static void gelu_chunk_forward(int approximate, const float *restrict x, float *restrict y, size_t len) {
    const float a = (float)KAPPA;
    if (approximate)
        for (size_t i = 0; i < len; i++) {
            const float v = x[i], u = SQRT_2_OVER_PIF * (v + a * v * v * v);
            y[i] = v / (1.0f + expf(-2.0f * u));   /* v · 0.5·(1 + tanh u) */
        }
    else
        for (size_t i = 0; i < len; i++) y[i] = x[i] * (0.5f * erfcf(-x[i] * SQRT1_2F));   /* x·Φ(x) */
}

/* dx = dy · gelu'(x) over one chunk. */
static void gelu_chunk_backward(int approximate, const float *restrict x, const float *restrict dy,
                                float *restrict dx, size_t len) {
    const float a = (float)KAPPA;
    if (approximate)
        for (size_t i = 0; i < len; i++) {
            const float v = x[i], u = SQRT_2_OVER_PIF * (v + a * v * v * v);
            const float s = 1.0f / (1.0f + expf(-2.0f * u));   /* 0.5·(1 + t), and 0.5·(1 − t²) = 2·s·(1 − s) */
            dx[i] = dy[i] * (s + v * (2.0f * s * (1.0f - s)) * SQRT_2_OVER_PIF * (1.0f + 3.0f * a * v * v));
        }
    else
        for (size_t i = 0; i < len; i++) {
            const float v = x[i];
            dx[i] = dy[i] * (0.5f * erfcf(-v * SQRT1_2F) + v * INV_SQRT_2PIF * expf(-0.5f * v * v));
        }
}

static void gelu_run(const layer *l, int n, const float *x, const float *dy, float *out) {
    const size_t count = (size_t)n * l->c * l->h * l->w, chunks = (count + CHUNK - 1) / CHUNK;
    PARALLEL_FOR(ch, chunks) {
        const size_t i0 = (size_t)ch * CHUNK, len = count - i0 < CHUNK ? count - i0 : CHUNK;
        if (dy) gelu_chunk_backward(l->o.approximate, x + i0, dy + i0, out + i0, len);
        else gelu_chunk_forward(l->o.approximate, x + i0, out + i0, len);
    }
}

static void gelu_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    (void)ws;
    gelu_run(l, n, xs[0], NULL, y);
}

static void gelu_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                          float *const *dxs, float *ws) {
    (void)y, (void)ws;
    if (dxs[0]) gelu_run(l, n, xs[0], dy, dxs[0]);
}

const layer_ops gelu_ops = {
    .name = "gelu",
    .torch_name = "GELU",
    .option = gelu_option,
    .forward = gelu_forward,
    .backward = gelu_backward,
    .forward_ref = gelu_forward_ref,
    .backward_ref = gelu_backward_ref,
};
