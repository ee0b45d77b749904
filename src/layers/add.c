/* add: y = x₀ + x₁ + ... + x_{k−1}, elementwise, for 2 to LAYER_MAX_INPUTS inputs of one shape (no
 * broadcasting): the `out + identity` of a residual block. Flat inputs add if all are flat of one
 * size. The sum runs in input order, ((x₀ + x₁) + x₂) + ..., on both paths.
 *
 * Backward: in the graph x_k → (+) → y every input enters the sum once, with the local gradient
 * ∂y/∂x_k = 1, so by the chain rule dx_k = dy for every k: the gradient is copied to each branch.
 * Where branches start from one value (a residual block's fork, or add from=a,a) the net adds the
 * copies up (note 000's fork rule), so a gets dy from each use.
 */
#include "layers/layer.h"
#include "base/threads.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <string.h>

/* Every input must have input 0's shape; the message lists each one that differs. */
static cnn_status add_setup(layer *l) {
    char msg[640] = "", s0[48], sk[48];
    size_t at = 0;
    int bad = 0;
    for (int k = 1; k < l->nin; k++) {
        const value_shape *a = &l->in[0], *b = &l->in[k];
        if (a->c == b->c && a->h == b->h && a->w == b->w && a->flat == b->flat) continue;
        if (bad++ < 8 && at < sizeof msg)
            at += (size_t)snprintf(msg + at, sizeof msg - at, "%sinput %d is %s", at ? ", " : "", k,
                                   value_shape_str(sk, sizeof sk, b));
    }
    if (!bad) return CNN_OK;   /* the output has input 0's shape, as setup_node sets it */
    return layer_fail(l, CNN_ERR_SHAPE, "%s%s but input 0 is %s (add needs inputs of one shape)", msg,
                      bad > 8 ? " (and more)" : "", value_shape_str(s0, sizeof s0, &l->in[0]));
}

/* ---- reference path ------------------------------------------------------------------------ */

static void add_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    (void)p;
    const size_t count = (size_t)n * layer_out_elems(l);
    for (size_t i = 0; i < count; i++) {
        double acc = xs[0][i];
        for (int k = 1; k < l->nin; k++) acc += xs[k][i];
        y[i] = acc;
    }
}

/* dx_k = dy · ∂y/∂x_k = dy. */
static void add_backward_ref(const layer *l, int n, const double *const *xs, double *const *p, const double *y,
                             const double *dy, double *const *dxs, double *const *dp) {
    (void)xs, (void)p, (void)y, (void)dp;
    const size_t count = (size_t)n * layer_out_elems(l);
    for (int k = 0; k < l->nin; k++)
        if (dxs[k])
            for (size_t i = 0; i < count; i++) dxs[k][i] = dy[i];
}

/* ---- fast path ----------------------------------------------------------------------------- */

/* a and b may be the same array (add from=a,a): both are only read. */
CNN_CLONES static void sum2(float *restrict y, const float *restrict a, const float *restrict b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* Chunks of the whole batch in parallel: each element is summed alone, so any split gives the
 * same bits. */
static void add_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    (void)ws;
    const size_t count = (size_t)n * layer_out_elems(l);
    PARALLEL_FOR(c, layer_chunks(count)) {
        const size_t at = (size_t)c * LAYER_CHUNK, len = layer_chunk_len(c, count);
        sum2(y + at, xs[0] + at, xs[1] + at, len);
        for (int k = 2; k < l->nin; k++) add_into(y + at, xs[k] + at, len);
    }
}

static void add_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                         float *const *dxs, float *ws) {
    (void)xs, (void)y, (void)ws;
    const size_t count = (size_t)n * layer_out_elems(l);
    PARALLEL_FOR(c, layer_chunks(count)) {
        const size_t at = (size_t)c * LAYER_CHUNK, len = layer_chunk_len(c, count);
        for (int k = 0; k < l->nin; k++)
            if (dxs[k] && dxs[k] != dy) memcpy(dxs[k] + at, dy + at, len * sizeof *dy);   /* the net may share dy */
    }
}

const layer_ops add_ops = {
    .name = "add",   /* PyTorch has no class for it: `a + b` in a forward(), torch.add */
    .min_inputs = 2,
    .max_inputs = LAYER_MAX_INPUTS,
    .setup = add_setup,
    .forward = add_forward,
    .backward = add_backward,
    .forward_ref = add_forward_ref,
    .backward_ref = add_backward_ref,
};
