/* Internal: conv2d's fast backward in parts, for layers that are conv2d run the other way round
 * (convtranspose2d: its forward is conv2d's input gradient, its backward conv2d's forward and
 * weight gradient). `l` describes a conv2d: its options in l->o.conv (ph2, pw2 set), its shapes,
 * l->param[0] the weight [oc, c/groups, kh, kw] (and l->param[1] the bias, if o.conv.bias),
 * l->grad likewise, l->keep NULL or what conv2d_ops.forward kept. ws holds
 * conv2d_ops.workspace(l, n) floats. conv2d_ops.forward is the forward. */
#ifndef CNN_CONV2D_H
#define CNN_CONV2D_H

#include "layers/layer.h"

/* The library's symbol table names these cnn_i_<name>, so that they cannot collide with a
 * program's own (README: "Use from C"); the code calls them by the short names. */
#define conv2d_plan             cnn_i_conv2d_plan
#define conv2d_fast_input_grad  cnn_i_conv2d_fast_input_grad
#define conv2d_fast_weight_grad cnn_i_conv2d_fast_weight_grad
#define conv2d_plane_sum        cnn_i_conv2d_plane_sum
#define conv2d_fold_floats      cnn_i_conv2d_fold_floats
#define conv2d_fold             cnn_i_conv2d_fold

/* Chooses l's fast path (direct kernels, im2col + GEMM, ...) from its options and shapes, once:
 * conv2d's plan hook, which the net calls when it builds the node; a layer that runs an equivalent
 * conv2d calls it on that layer in its own plan hook and keeps o.conv.plan. */
void conv2d_plan(layer *l);

/* dx [n, c, h, w] = conv2d's input gradient of dy [n, oc, oh, ow] (overwritten); no dW, no db. */
void conv2d_fast_input_grad(const layer *l, int n, const float *dy, float *dx, float *ws);

/* l->grad[0] += dW (and l->grad[1] += db when o.conv.bias) of x [n, c, h, w] and dy; no dx. */
void conv2d_fast_weight_grad(const layer *l, int n, const float *x, const float *dy, float *ws);

/* Inference (src/net/inference.c). conv2d_fold_floats: the floats conv2d_fold writes for l, with
 * a batch norm folded in (bn = 1) or not. conv2d_fold: the weights and bias of the convolution
 * followed by y = scale·y + shift per output channel (scale, shift [oc]; NULL: none), W' = W·scale,
 * b' = (b − 0)·scale + shift, rounded once from double, into out, then (direct kernels) the same
 * packed; points l->fold_w, fold_b and fold_wt at them. */
size_t conv2d_fold_floats(const layer *l, int bn);
void conv2d_fold(layer *l, const double *scale, const double *shift, float *out);

/* Σ d[0..n), in a fixed order: a bias gradient's sum over one plane. */
float conv2d_plane_sum(const float *d, int n);

#endif
