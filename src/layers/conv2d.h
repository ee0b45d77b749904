/* Internal: conv2d's fast backward in parts, for layers that are conv2d run the other way round
 * (convtranspose2d: its forward is conv2d's input gradient, its backward conv2d's forward and
 * weight gradient). `l` describes a conv2d: its options in l->o.conv (ph2, pw2 set), its shapes,
 * l->param[0] the weight [oc, c/groups, kh, kw] (and l->param[1] the bias, if o.conv.bias),
 * l->grad likewise, l->keep NULL or what conv2d_ops.forward kept. ws holds
 * conv2d_ops.workspace(l, n) floats. conv2d_ops.forward is the forward. */
#ifndef CNN_CONV2D_H
#define CNN_CONV2D_H

#include "layers/layer.h"

/* dx [n, c, h, w] = conv2d's input gradient of dy [n, oc, oh, ow] (overwritten); no dW, no db. */
void conv2d_fast_input_grad(const layer *l, int n, const float *dy, float *dx, float *ws);

/* l->grad[0] += dW (and l->grad[1] += db when o.conv.bias) of x [n, c, h, w] and dy; no dx. */
void conv2d_fast_weight_grad(const layer *l, int n, const float *x, const float *dy, float *ws);

/* Σ d[0..n), in a fixed order: a bias gradient's sum over one plane. */
float conv2d_plane_sum(const float *d, int n);

#endif
