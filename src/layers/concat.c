/* concat: torch.cat(inputs, dim=1), the channels of x₀, then those of x₁, ...; 2 to
 * LAYER_MAX_INPUTS inputs whose heights and widths agree (a DenseNet block's concatenation).
 * Flat inputs ([n, features]) concatenate their features; flat and C H W inputs do not mix.
 * dim=1 may be given; it is the only one.
 *
 * NCHW keeps each sample's channels contiguous, so per sample the output is the inputs' blocks one
 * after another: y[s] = [x₀[s], x₁[s], ...], input k at channel offset c₀ + ... + c_{k−1}.
 * Backward: each output cell is one input cell, with the local gradient 1, and no input cell is
 * used twice, so by the chain rule dx_k is dy's block of input k's channels, sample by sample.
 */
#include "layers/layer.h"
#include "base/threads.h"

#include <string.h>

#define MAX_ELEMS ((long long)1 << 28)   /* the net's limit on one sample's value */

static cnn_status concat_option(layer *l, const char *key, const char *value) {
    if (!strcmp(key, "dim")) {
        int dim;
        cnn_status st = opt_int(l, key, value, 0, &dim);
        if (st) return st;
        if (dim != 1)
            return layer_fail(l, CNN_ERR_PARSE, "option dim=%s: only dim=1 (the channels) is supported", value);
        return CNN_OK;
    }
    return opt_unknown(l, key);
}

static cnn_status concat_setup(layer *l) {
    const value_shape *a = &l->in[0];
    long long channels = 0;
    for (int k = 0; k < l->nin; k++) {
        const value_shape *b = &l->in[k];
        char sa[48], sb[48];
        if (b->flat != a->flat)
            return layer_fail(l, CNN_ERR_SHAPE, "input %d is %s but input 0 is %s: flat and C H W inputs do not "
                              "concatenate", k, value_shape_str(sb, sizeof sb, b), value_shape_str(sa, sizeof sa, a));
        if (b->h != a->h || b->w != a->w)
            return layer_fail(l, CNN_ERR_SHAPE, "input %d is %s but input 0 is %s: concatenating channels needs "
                              "equal heights and widths", k, value_shape_str(sb, sizeof sb, b),
                              value_shape_str(sa, sizeof sa, a));
        channels += b->c;
    }
    if (channels * a->h * a->w > MAX_ELEMS)
        return layer_fail(l, CNN_ERR_SHAPE, "output of %lld channels of %dx%d is too large", channels, a->h, a->w);
    l->oc = (int)channels;
    return CNN_OK;
}

/* ---- reference path ------------------------------------------------------------------------ */

static void concat_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    (void)p;
    const size_t out = layer_out_elems(l);
    for (int s = 0; s < n; s++) {
        size_t at = (size_t)s * out;
        for (int k = 0; k < l->nin; k++) {
            const size_t e = layer_in_elems(l, k);
            for (size_t i = 0; i < e; i++) y[at + i] = xs[k][(size_t)s * e + i];
            at += e;
        }
    }
}

/* dx_k[s] = dy[s]'s block of input k. */
static void concat_backward_ref(const layer *l, int n, const double *const *xs, double *const *p, const double *y,
                                const double *dy, double *const *dxs, double *const *dp) {
    (void)xs, (void)p, (void)y, (void)dp;
    const size_t out = layer_out_elems(l);
    for (int s = 0; s < n; s++) {
        size_t at = (size_t)s * out;
        for (int k = 0; k < l->nin; k++) {
            const size_t e = layer_in_elems(l, k);
            if (dxs[k])
                for (size_t i = 0; i < e; i++) dxs[k][(size_t)s * e + i] = dy[at + i];
            at += e;
        }
    }
}

/* ---- fast path ----------------------------------------------------------------------------- */

/* Input k's offset in one output sample. */
static void offsets(const layer *l, size_t *off) {
    size_t at = 0;
    for (int k = 0; k < l->nin; k++) off[k] = at, at += layer_in_elems(l, k);
}

/* One copy per (sample, input), in parallel. */
static void concat_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    (void)ws;
    size_t off[LAYER_MAX_INPUTS];
    offsets(l, off);
    const size_t out = layer_out_elems(l);
    PARALLEL_FOR(t, (long)n * l->nin) {
        const int s = (int)(t / l->nin), k = (int)(t % l->nin);
        const size_t e = layer_in_elems(l, k);
        memcpy(y + (size_t)s * out + off[k], xs[k] + (size_t)s * e, e * sizeof *y);
    }
}

static void concat_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                            float *const *dxs, float *ws) {
    (void)xs, (void)y, (void)ws;
    size_t off[LAYER_MAX_INPUTS];
    offsets(l, off);
    const size_t out = layer_out_elems(l);
    PARALLEL_FOR(t, (long)n * l->nin) {
        const int s = (int)(t / l->nin), k = (int)(t % l->nin);
        const size_t e = layer_in_elems(l, k);
        if (dxs[k]) memcpy(dxs[k] + (size_t)s * e, dy + (size_t)s * out + off[k], e * sizeof *dy);
    }
}

const layer_ops concat_ops = {
    .name = "concat",
    .torch_name = "cat",   /* torch.cat, a function: PyTorch has no class for it */
    .min_inputs = 2,
    .max_inputs = LAYER_MAX_INPUTS,
    .option = concat_option,
    .setup = concat_setup,
    .forward = concat_forward,
    .backward = concat_backward,
    .forward_ref = concat_forward_ref,
    .backward_ref = concat_backward_ref,
};
