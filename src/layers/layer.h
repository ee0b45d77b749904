/* Internal: one layer of a net, and the table of functions each layer kind provides.
 *
 * Every layer kind lives in one file under src/layers/ with its forward and backward side by side,
 * twice: the reference path (plain loops in double, written the way the notes write them) and the
 * fast path (float, the kernels under src/kernels/). The tests hold the fast path to the reference.
 *
 * Shapes are per sample: (c, h, w) in, (oc, oh, ow) out; the batch size n comes with each call.
 * Shape checking happens once, in setup(); forward and backward cannot fail and never allocate.
 */
#ifndef CNN_LAYER_H
#define CNN_LAYER_H

#include "cnn.h"

typedef struct conv2d_opts {
    int out_channels;
    int kh, kw;         /* kernel_size */
    int sh, sw;         /* stride */
    int ph, pw;         /* padding (zeros) */
    int dh, dw;         /* dilation */
    int groups;
    int bias;
} conv2d_opts;

typedef struct pool_opts {
    int kh, kw, sh, sw, ph, pw;
    int ceil_mode;
    int count_include_pad;   /* avgpool2d only */
} pool_opts;

typedef struct linear_opts {
    int out_features;
    int bias;
} linear_opts;

typedef struct layer {
    cnn_layer_kind kind;
    int line;                       /* line in the model text, for messages */
    int c, h, w;                    /* input shape of one sample */
    int oc, oh, ow;                 /* output shape of one sample */
    int in_flat, flat;              /* input / output is [n, features] (after flatten or linear) */
    union {
        conv2d_opts conv;
        pool_opts pool;
        linear_opts lin;
        double negative_slope;      /* leakyrelu */
    } o;
    int nparams;                    /* 0, 1 (weight) or 2 (weight, bias) */
    int pndim[2];
    int64_t pshape[2][4];
    float *param[2];                /* set by the net: views into its parameter arena */
    float *grad[2];                 /* views into its gradient arena */
    float *keep;                    /* set by the net: what the fast forward leaves for the fast
                                     * backward (keep_floats), for batches of up to keep_n; or NULL */
    int keep_n;
} layer;

/* The functions of one layer kind. x, y, dx, dy hold n samples; p/dp are the parameters and their
 * gradients in the same order as layer.param. Backward adds into dp (gradients accumulate) and
 * writes dx (overwrites); the fast backward of a layer with parameters accepts dx == NULL (the
 * first layer in training) and then computes only the parameter gradients. ws is the fast path's
 * workspace of workspace(l, n) floats. */
typedef struct layer_ops {
    const char *name;
    /* Sets PyTorch's default options (required options stay 0, and setup() asks for them). */
    void (*defaults)(layer *l);
    /* Parses one option key=value; returns CNN_OK, or a CNN_ERR_PARSE whose message names it. */
    cnn_status (*option)(layer *l, const char *key, const char *value);
    /* Checks the options, infers the output shape and the parameter shapes from (c, h, w). */
    cnn_status (*setup)(layer *l);
    /* fan_in for the default initialisation (0 for layers without parameters). */
    int64_t (*fan_in)(const layer *l);
    size_t (*workspace)(const layer *l, int n);
    /* Floats the fast forward keeps for the fast backward (0: none; the backward recomputes). */
    size_t (*keep_floats)(const layer *l, int n);

    void (*forward)(const layer *l, int n, const float *x, float *y, float *ws);
    void (*backward)(const layer *l, int n, const float *x, const float *y, const float *dy,
                     float *dx, float *ws);

    void (*forward_ref)(const layer *l, int n, const double *x, const double *const *p, double *y);
    void (*backward_ref)(const layer *l, int n, const double *x, const double *const *p,
                         const double *y, const double *dy, double *dx, double *const *dp);
} layer_ops;

extern const layer_ops conv2d_ops, maxpool2d_ops, avgpool2d_ops, relu_ops, leakyrelu_ops,
    sigmoid_ops, tanh_ops, flatten_ops, linear_ops;

/* The table for a kind. */
const layer_ops *layer_ops_of(cnn_layer_kind kind);

/* Option parsing helpers shared by the layers: a non-negative or positive int, a pair "a,b" or a
 * single value used for both, and a boolean true|false|1|0. They report errors as
 * "line L: KIND: option KEY=VALUE: ...". */
cnn_status opt_int(const layer *l, const char *key, const char *value, int min, int *out);
cnn_status opt_pair(const layer *l, const char *key, const char *value, int min, int *a, int *b);
cnn_status opt_bool(const layer *l, const char *key, const char *value, int *out);
cnn_status opt_double(const layer *l, const char *key, const char *value, double *out);
cnn_status opt_unknown(const layer *l, const char *key);

/* Options and shapes shared by maxpool2d and avgpool2d (avgpool2d alone takes count_include_pad). */
void pool_defaults(layer *l);
cnn_status pool_option(layer *l, const char *key, const char *value);
cnn_status pool_setup(layer *l);
/* 1 for the pooling fast paths' case: a 2×2 window, stride 2, no padding, every window inside
 * the input (so ceil_mode adds none). */
int pool_is_2x2(const layer *l);

/* Output size of pooling along one dimension, with PyTorch's ceil_mode rule (a window that would
 * start in the right padding is dropped). */
int pool_out_size(int in, int k, int s, int p, int ceil_mode);

#endif
