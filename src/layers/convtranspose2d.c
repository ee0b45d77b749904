/* convtranspose2d: the transposed 2-D convolution (PyTorch's ConvTranspose2d). Where conv2d
 * gathers a window of its input into one output cell, convtranspose2d scatters each input cell,
 * weighted by the kernel, over a window of its output: it is conv2d run backwards, and upsamples
 * by the stride.
 *   OH = (H − 1)·sh − 2·ph + dh·(kh − 1) + oph + 1      (OW likewise)
 * weight [C_in, C_out/groups, kh, kw] (PyTorch's layout: the input channels first), bias [C_out].
 *
 * Forward (the scatter). With Og = C_out/groups output channels per group, input channel c of
 * group g writes output channels o = g·Og + o', o' < Og:
 *   y[n,o,·,·] = b[o],  then  y[n,o, i·sh − ph + r·dh, j·sw − pw + t·dw] += x[n,c,i,j] · w[c,o',r,t]
 * for every input cell (i, j) and tap (r, t); what lands outside y is dropped. So padding crops ph
 * rows of the full scatter at the top and ph at the bottom, and output_padding gives oph of the
 * bottom ones back (zeros, that is the bias, past the scatter's last row when oph > ph). A conv2d
 * with stride sh maps sh consecutive sizes to H; output_padding picks one of them, and PyTorch
 * requires oph < sh or oph < dh (in each dimension).
 *
 * Backward. The graph: every product x[n,c,i,j] · w[c,o',r,t] flows into one output cell, and each
 * cell sums its products and the bias. The local gradients are
 *   ∂y[n,o, i·sh − ph + r·dh, j·sw − pw + t·dw] / ∂x[n,c,i,j] = w[c,o',r,t],   ∂/∂w[c,o',r,t] = x[n,c,i,j],
 *   ∂y[n,o,·,·] / ∂b[o] = 1,
 * and by the chain rule (note 000: a variable that feeds several cells receives the sum of what
 * each sends back) each sums over the cells it reached:
 *   dx[n,c,i,j] = Σ_{o'<Og, r, t} dy[n, g·Og + o', i·sh − ph + r·dh, j·sw − pw + t·dw] · w[c,o',r,t]
 *   dw[c,o',r,t] = Σ_{n,i,j} x[n,c,i,j] · dy[n, g·Og + o', i·sh − ph + r·dh, j·sw − pw + t·dw]
 *   db[o] = Σ_{n, cells} dy[n,o,·,·]
 * (terms whose dy cell lies outside the output are 0). dx is conv2d's forward over dy with the same
 * stride, padding and dilation, its weight w read as conv2d's [out = C_in, in/groups = C_out/groups,
 * kh, kw]; dw is that conv2d's weight gradient with dy as its input and x as its output gradient.
 * And the forward itself is that conv2d's input gradient with x in the place of its dY: note 002's
 * full convolution of x (with sh − 1 zeros between its cells) with the kernels rotated 180°.
 *
 * The reference path computes the scatter and the three sums above with plain loops in double.
 * The fast path runs conv2d's own fast kernels (the direct AVX-512 kernels or im2col + GEMM, as
 * conv2d chooses for the shape) on the equivalent conv2d, which maps C_out×OH×OW to C_in×H×W:
 * its input gradient is the forward, its forward the input gradient, its weight gradient ours.
 * That conv2d pads ph before; its output has exactly H rows when it pads ph − sh·⌊oph/sh⌋ after,
 * which is ph (conv2d's symmetric padding, and its fast paths) whenever oph < sh: the last oph
 * rows of its padded input are then read by no window, so their gradient, our forward before the
 * bias, is 0 there. Otherwise (oph ≥ sh, allowed when dh > sh) conv2d takes im2col + GEMM with
 * that asymmetric padding.
 */
#include "layers/conv2d.h"
#include "base/error.h"
#include "base/threads.h"

#include <string.h>

static void convtranspose2d_defaults(layer *l) {
    conv2d_opts *o = &l->o.conv;
    o->sh = o->sw = o->dh = o->dw = o->groups = o->bias = 1;
}

static cnn_status convtranspose2d_option(layer *l, const char *key, const char *value) {
    conv2d_opts *o = &l->o.conv;
    if (!strcmp(key, "out_channels")) return opt_int(l, key, value, 1, &o->out_channels);
    if (!strcmp(key, "kernel_size")) return opt_pair(l, key, value, 1, &o->kh, &o->kw);
    if (!strcmp(key, "stride")) return opt_pair(l, key, value, 1, &o->sh, &o->sw);
    if (!strcmp(key, "padding")) return opt_pair(l, key, value, 0, &o->ph, &o->pw);
    if (!strcmp(key, "output_padding")) return opt_pair(l, key, value, 0, &o->oph, &o->opw);
    if (!strcmp(key, "dilation")) return opt_pair(l, key, value, 1, &o->dh, &o->dw);
    if (!strcmp(key, "groups")) return opt_int(l, key, value, 1, &o->groups);
    if (!strcmp(key, "bias")) return opt_bool(l, key, value, &o->bias);
    return opt_unknown(l, key);
}

/* The conv2d that convtranspose2d l runs backwards (see the header): C_out×OH×OW → C_in×H×W, with
 * l's weight (and gradient) as its weight, no bias and nothing kept. */
static void as_conv2d(const layer *l, layer *e) {
    const conv2d_opts *o = &l->o.conv;
    memset(e, 0, sizeof *e);
    e->kind = CNN_LAYER_CONV2D;
    e->line = l->line;
    e->nin = 1;
    e->in[0] = (value_shape){l->oc, l->oh, l->ow, 0};
    e->c = l->oc, e->h = l->oh, e->w = l->ow;
    e->oc = l->c, e->oh = l->h, e->ow = l->w;
    e->o.conv = *o;
    e->o.conv.out_channels = l->c;
    e->o.conv.bias = 0;
    e->o.conv.ph2 = o->ph - o->sh * (o->oph / o->sh);
    e->o.conv.pw2 = o->pw - o->sw * (o->opw / o->sw);
    e->o.conv.oph = e->o.conv.opw = 0;
    e->ntensors = 1;
    e->t[0] = l->t[0];
    e->param[0] = l->param[0];
    e->grad[0] = l->grad[0];
    e->training = l->training;
}

static cnn_status convtranspose2d_setup(layer *l) {
    conv2d_opts *o = &l->o.conv;
    if (o->out_channels == 0) return layer_fail(l, CNN_ERR_PARSE, "out_channels= is required");
    if (o->kh == 0) return layer_fail(l, CNN_ERR_PARSE, "kernel_size= is required");
    if (l->in_flat)
        return layer_fail(l, CNN_ERR_SHAPE, "input [%d] is flat (after flatten or linear); convtranspose2d needs C H W",
                          l->c);
    if (l->c % o->groups || o->out_channels % o->groups)
        return layer_fail(l, CNN_ERR_SHAPE, "groups=%d must divide both in_channels (%d) and out_channels (%d)",
                          o->groups, l->c, o->out_channels);
    if (!((o->oph < o->sh || o->oph < o->dh) && (o->opw < o->sw || o->opw < o->dw)))
        return layer_fail(l, CNN_ERR_PARSE,
                          "output padding must be smaller than either stride or dilation, but got "
                          "output_padding=%d,%d, stride=%d,%d, dilation=%d,%d",
                          o->oph, o->opw, o->sh, o->sw, o->dh, o->dw);
    const long long oh = (long long)(l->h - 1) * o->sh - 2LL * o->ph + (long long)o->dh * (o->kh - 1) + o->oph + 1;
    const long long ow = (long long)(l->w - 1) * o->sw - 2LL * o->pw + (long long)o->dw * (o->kw - 1) + o->opw + 1;
    if (oh < 1 || ow < 1)
        return layer_fail(l, CNN_ERR_SHAPE, "input %dx%dx%d gives an output of %lldx%lld: too small", l->c, l->h,
                          l->w, oh, ow);
    if (oh > (1LL << 28) || ow > (1LL << 28))
        return layer_fail(l, CNN_ERR_SHAPE, "input %dx%dx%d gives an output of %lldx%lld: too large", l->c, l->h,
                          l->w, oh, ow);
    o->ph2 = o->ph, o->pw2 = o->pw;
    l->oc = o->out_channels;
    l->oh = (int)oh;
    l->ow = (int)ow;
    layer_add_tensor(l, "weight", CNN_F32, 1, LAYER_INIT_FAN_IN, 4, l->c, o->out_channels / o->groups, o->kh, o->kw);
    if (o->bias) layer_add_tensor(l, "bias", CNN_F32, 1, LAYER_INIT_FAN_IN, 1, o->out_channels, 0, 0, 0);
    return CNN_OK;
}

/* PyTorch computes fan_in from the weight tensor's dimension 1: (C_out/groups)·kh·kw. */
static int64_t convtranspose2d_fan_in(const layer *l) {
    const conv2d_opts *o = &l->o.conv;
    return (int64_t)(l->oc / o->groups) * o->kh * o->kw;
}

/* ---- reference path: the scatter and its three sums, in double ----------------------------- */

static void convtranspose2d_forward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                        double *y) {
    const double *x = xs[0], *w = p[0];
    const conv2d_opts *o = &l->o.conv;
    const int cg = l->c / o->groups, og = l->oc / o->groups;
    const size_t plane = (size_t)l->oh * l->ow;
    for (int s = 0; s < n; s++)                     /* y = b */
        for (int k = 0; k < l->oc; k++)
            for (size_t q = 0; q < plane; q++) y[((size_t)s * l->oc + k) * plane + q] = o->bias ? p[1][k] : 0.0;
    /* y[n, g·Og + o', i·sh − ph + r·dh, j·sw − pw + t·dw] += x[n,c,i,j] · w[c,o',r,t] */
    for (int s = 0; s < n; s++)
        for (int c = 0; c < l->c; c++) {
            const int o0 = (c / cg) * og;
            for (int i = 0; i < l->h; i++)
                for (int j = 0; j < l->w; j++) {
                    const double xv = x[(((size_t)s * l->c + c) * l->h + i) * l->w + j];
                    for (int ol = 0; ol < og; ol++)
                        for (int r = 0; r < o->kh; r++) {
                            const int yh = i * o->sh - o->ph + r * o->dh;
                            if (yh < 0 || yh >= l->oh) continue;
                            for (int t = 0; t < o->kw; t++) {
                                const int yw = j * o->sw - o->pw + t * o->dw;
                                if (yw < 0 || yw >= l->ow) continue;
                                y[(((size_t)s * l->oc + o0 + ol) * l->oh + yh) * l->ow + yw] +=
                                    xv * w[(((size_t)c * og + ol) * o->kh + r) * o->kw + t];
                            }
                        }
                }
        }
}

/* dy at (yh, yw) of sample s, channel k, or 0 outside the output (a cell the scatter dropped). */
static double dy_at(const layer *l, const double *dy, int s, int k, int yh, int yw) {
    if (yh < 0 || yh >= l->oh || yw < 0 || yw >= l->ow) return 0.0;
    return dy[(((size_t)s * l->oc + k) * l->oh + yh) * l->ow + yw];
}

static void convtranspose2d_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                         const double *y, const double *dy, double *const *dxs,
                                         double *const *dp) {
    const double *x = xs[0], *w = p[0];
    double *dx = dxs[0];
    (void)y;
    const conv2d_opts *o = &l->o.conv;
    const int cg = l->c / o->groups, og = l->oc / o->groups;
    const size_t plane = (size_t)l->oh * l->ow;

    /* db[o] = Σ_{n, cells} dy[n,o,·,·] */
    if (o->bias)
        for (int s = 0; s < n; s++)
            for (int k = 0; k < l->oc; k++)
                for (size_t q = 0; q < plane; q++) dp[1][k] += dy[((size_t)s * l->oc + k) * plane + q];

    /* dw[c,o',r,t] = Σ_{n,i,j} x[n,c,i,j] · dy[n, g·Og + o', i·sh − ph + r·dh, j·sw − pw + t·dw] */
    for (int c = 0; c < l->c; c++) {
        const int o0 = (c / cg) * og;
        for (int ol = 0; ol < og; ol++)
            for (int r = 0; r < o->kh; r++)
                for (int t = 0; t < o->kw; t++) {
                    double acc = 0.0;
                    for (int s = 0; s < n; s++)
                        for (int i = 0; i < l->h; i++)
                            for (int j = 0; j < l->w; j++)
                                acc += x[(((size_t)s * l->c + c) * l->h + i) * l->w + j] *
                                       dy_at(l, dy, s, o0 + ol, i * o->sh - o->ph + r * o->dh,
                                             j * o->sw - o->pw + t * o->dw);
                    dp[0][(((size_t)c * og + ol) * o->kh + r) * o->kw + t] += acc;
                }
    }

    /* dx[n,c,i,j] = Σ_{o',r,t} dy[n, g·Og + o', i·sh − ph + r·dh, j·sw − pw + t·dw] · w[c,o',r,t] */
    if (!dx) return;
    for (int s = 0; s < n; s++)
        for (int c = 0; c < l->c; c++) {
            const int o0 = (c / cg) * og;
            for (int i = 0; i < l->h; i++)
                for (int j = 0; j < l->w; j++) {
                    double acc = 0.0;
                    for (int ol = 0; ol < og; ol++)
                        for (int r = 0; r < o->kh; r++)
                            for (int t = 0; t < o->kw; t++)
                                acc += dy_at(l, dy, s, o0 + ol, i * o->sh - o->ph + r * o->dh,
                                             j * o->sw - o->pw + t * o->dw) *
                                       w[(((size_t)c * og + ol) * o->kh + r) * o->kw + t];
                    dx[(((size_t)s * l->c + c) * l->h + i) * l->w + j] = acc;
                }
        }
}

/* ---- fast path: conv2d's kernels on the equivalent conv2d, in float ----------------------------- */

/* Every call below runs one of the equivalent conv2d's fast passes, with its workspace. */
static size_t convtranspose2d_workspace(const layer *l, int n) {
    layer e;
    as_conv2d(l, &e);
    return conv2d_ops.workspace(&e, n);
}

/* y = the equivalent conv2d's input gradient with x as its dY (overwrites y), then y += b. */
static void convtranspose2d_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    layer e;
    as_conv2d(l, &e);
    conv2d_fast_input_grad(&e, n, xs[0], y, ws);
    if (!l->o.conv.bias) return;
    const size_t plane = (size_t)l->oh * l->ow;
    PARALLEL_FOR(sk, (long)n * l->oc) {
        const float b = l->param[1][sk % l->oc];
        float *yk = y + (size_t)sk * plane;
        for (size_t q = 0; q < plane; q++) yk[q] += b;
    }
}

/* dx = the equivalent conv2d's forward over dy; dW += its weight gradient of input dy and output
 * gradient x; db += Σ dy, per channel over the samples in order. */
static void convtranspose2d_backward(const layer *l, int n, const float *const *xs, const float *y,
                                     const float *dy, float *const *dxs, float *ws) {
    (void)y;
    layer e;
    as_conv2d(l, &e);
    if (dxs[0]) {
        const float *const in[1] = {dy};
        conv2d_ops.forward(&e, n, in, dxs[0], ws);
    }
    conv2d_fast_weight_grad(&e, n, dy, xs[0], ws);
    if (!l->o.conv.bias) return;
    const int plane = l->oh * l->ow;
    PARALLEL_FOR(k, l->oc) {
        float acc = 0.0f;
        for (int s = 0; s < n; s++) acc += conv2d_plane_sum(dy + ((size_t)s * l->oc + k) * plane, plane);
        l->grad[1][k] += acc;
    }
}

const layer_ops convtranspose2d_ops = {
    .name = "convtranspose2d",
    .torch_name = "ConvTranspose2d",
    .defaults = convtranspose2d_defaults,
    .option = convtranspose2d_option,
    .setup = convtranspose2d_setup,
    .fan_in = convtranspose2d_fan_in,
    .workspace = convtranspose2d_workspace,
    .forward = convtranspose2d_forward,
    .backward = convtranspose2d_backward,
    .forward_ref = convtranspose2d_forward_ref,
    .backward_ref = convtranspose2d_backward_ref,
};
