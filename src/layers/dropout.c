/* dropout p: PyTorch's Dropout. In training mode each element is zeroed with probability p and the
 * others are multiplied by 1/(1 − p), so that the expected output is the input; in eval mode it is
 * the identity. p = 1 zeroes everything.
 *
 *   y_i = x_i · m_i,   m_i = 1/(1 − p) if u_i >= p, else 0,   u_i uniform in [0, 1)
 *
 * Backward: y_i depends on x_i alone, with the local gradient ∂y_i/∂x_i = m_i (the mask is a
 * constant of the pass, not a function of x), so by the chain rule dx_i = dy_i · m_i: the gradient
 * flows through the survivors, scaled like them, and is 0 where the element was dropped.
 *
 * The random numbers: u_i is number i (counting from 0, over the whole batch in NCHW order) of
 * the splitmix64 stream seeded with l->seed (base/rng.h), which the net sets before each training
 * forward. Number i of that stream is mix(seed + (i + 1)·γ) for splitmix64's increment γ and
 * output function mix, so the fast path computes it from i directly (a counter-based hash): the
 * mask is the same bits for any thread count, and the backward recomputes it instead of keeping
 * anything. The reference path draws the stream in order with rng_uniform and compares
 * u = k·2⁻⁵³ (k the top 53 bits) against p; the fast path compares k against ⌈p·2⁵³⌉, which is
 * the same test (p·2⁵³ is exact, and k is an integer), so both paths drop the same elements.
 *
 * As PyTorch does, the fast path multiplies by the float scale 1.0f / (float)(1 − p) and dropped
 * elements by 0 (so −x gives −0, and NaN stays NaN); the backward multiplies dy the same way.
 */
#include "layers/layer.h"
#include "base/error.h"
#include "base/rng.h"
#include "base/threads.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

#define CHUNK 8192   /* elements per parallel iteration */

static void dropout_defaults(layer *l) { l->o.p = 0.5; }

static cnn_status dropout_option(layer *l, const char *key, const char *value) {
    if (!strcmp(key, "p")) {
        cnn_status st = opt_double(l, key, value, &l->o.p);
        if (st) return st;
        if (!(l->o.p >= 0.0 && l->o.p <= 1.0))
            return cnn_fail(CNN_ERR_PARSE, "line %d: dropout: option p=%s: the probability must be between 0 and 1",
                            l->line, value);
        return CNN_OK;
    }
    if (!strcmp(key, "inplace")) {   /* accepted for PyTorch's sake; cnn never writes a layer's input */
        int ignored;
        return opt_bool(l, key, value, &ignored);
    }
    return opt_unknown(l, key);
}

/* ---- reference path ------------------------------------------------------------------------ */

static void dropout_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    if (!l->training) {
        memcpy(y, x, count * sizeof *y);
        return;
    }
    const double drop = l->o.p;
    uint64_t stream = l->seed;
    for (size_t i = 0; i < count; i++) {
        const double u = rng_uniform(&stream);
        const double m = u >= drop ? 1.0 / (1.0 - drop) : 0.0;
        y[i] = x[i] * m;
    }
}

static void dropout_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                 const double *y, const double *dy, double *const *dxs, double *const *dp) {
    double *dx = dxs[0];
    (void)xs, (void)p, (void)y, (void)dp;
    if (!dx) return;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    if (!l->training) {
        memcpy(dx, dy, count * sizeof *dx);
        return;
    }
    const double drop = l->o.p;
    uint64_t stream = l->seed;   /* the forward's mask, drawn again */
    for (size_t i = 0; i < count; i++) {
        const double u = rng_uniform(&stream);
        const double m = u >= drop ? 1.0 / (1.0 - drop) : 0.0;
        dx[i] = dy[i] * m;   /* dx = dy · ∂y/∂x = dy · m */
    }
}

/* ---- fast path ----------------------------------------------------------------------------- */

/* Elements are kept when the top 53 bits of their hash are at least ⌈p·2⁵³⌉ (u >= p). */
static uint64_t keep_threshold(double p) { return (uint64_t)ceil(p * 0x1.0p53); }

/* out[i] = in[i] · (element i0 + i survives ? scale : 0), for i in [0, len). The hash is
 * rng_next's: number i0 + i of the stream seeded with `seed`. */
CNN_CLONES static void mask_mul(const float *restrict in, float *restrict out, size_t i0, size_t len, uint64_t seed,
                                uint64_t threshold, float scale) {
    for (size_t i = 0; i < len; i++) {
        uint64_t z = seed + (uint64_t)(i0 + i + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        out[i] = in[i] * ((z >> 11) >= threshold ? scale : 0.0f);
    }
}

/* The forward's y = x·m and the backward's dx = dy·m, over the batch's `count` elements. */
static void apply_mask(const layer *l, const float *in, float *out, size_t count) {
    const uint64_t threshold = keep_threshold(l->o.p), seed = l->seed;
    const float scale = 1.0f / (float)(1.0 - l->o.p);   /* PyTorch's: 1 / (1 − p) in float; inf for p = 1, unused */
    const size_t chunks = (count + CHUNK - 1) / CHUNK;
    PARALLEL_FOR(ch, chunks) {
        const size_t i0 = (size_t)ch * CHUNK, len = count - i0 < CHUNK ? count - i0 : CHUNK;
        mask_mul(in + i0, out + i0, i0, len, seed, threshold, scale);
    }
}

static void dropout_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    (void)ws;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    if (!l->training) memcpy(y, xs[0], count * sizeof *y);
    else apply_mask(l, xs[0], y, count);
}

static void dropout_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                             float *const *dxs, float *ws) {
    (void)xs, (void)y, (void)ws;
    if (!dxs[0]) return;
    const size_t count = (size_t)n * l->c * l->h * l->w;
    if (!l->training) memcpy(dxs[0], dy, count * sizeof *dy);
    else apply_mask(l, dy, dxs[0], count);
}

const layer_ops dropout_ops = {
    .name = "dropout",
    .torch_name = "Dropout",
    .defaults = dropout_defaults,
    .option = dropout_option,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .forward_ref = dropout_forward_ref,
    .backward_ref = dropout_backward_ref,
};
