/* Internal: one node's layer, and the table of functions each layer kind provides.
 *
 * Every layer kind lives in one file under src/layers/ with its forward and backward side by side,
 * twice: the reference path (plain loops in double, written the way the notes write them) and the
 * fast path (float, the kernels under src/kernels/). The tests hold the fast path to the reference.
 *
 * A layer knows nothing of the graph around it: it reads nin input values of known per-sample
 * shapes and writes one output value. The net (src/net/) decides where each value lives, which
 * gradients are needed, and adds up the gradients that meet where one value feeds several nodes.
 *
 * Shapes are per sample: in[k] = (c, h, w) for input k, (oc, oh, ow) out; the batch size n comes
 * with each call. Shape checking happens once, in setup(); forward and backward cannot fail and
 * never allocate.
 */
#ifndef CNN_LAYER_H
#define CNN_LAYER_H

#include "cnn.h"

#define LAYER_MAX_INPUTS 64      /* from= lists: a DenseNet block concatenates up to ~50 values */
#define LAYER_MAX_TENSORS 8      /* parameters and buffers of one layer */
/* Floats per iteration of the elementwise layers' parallel loops (add, relu; the net's sums at
 * forks): 64 KiB, large enough that waking the threads pays, small enough to balance. */
#define LAYER_CHUNK ((size_t)1 << 14)
/* Such a loop over count floats has layer_chunks(count) iterations; iteration c starts at
 * c·LAYER_CHUNK and runs layer_chunk_len(c, count) floats. */
static inline size_t layer_chunks(size_t count) { return (count + LAYER_CHUNK - 1) / LAYER_CHUNK; }
static inline size_t layer_chunk_len(long c, size_t count) {
    const size_t at = (size_t)c * LAYER_CHUNK;
    return count - at < LAYER_CHUNK ? count - at : LAYER_CHUNK;
}

typedef struct conv2d_opts {
    int out_channels;
    int kh, kw;         /* kernel_size */
    int sh, sw;         /* stride */
    int ph, pw;         /* padding (zeros) before; padding=same may put one more after (ph2, pw2) */
    int ph2, pw2;       /* padding after (bottom, right), set by setup: ph, pw but for padding=same */
    int dh, dw;         /* dilation */
    int groups;
    int bias;
    int same;           /* padding=same: ph, pw are ⌊total/2⌋ and the rest goes right and bottom */
    int oph, opw;       /* convtranspose2d: output_padding */
    unsigned plan;      /* the fast path, chosen once when the net is built (conv2d_plan) */
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

typedef struct norm_opts {      /* batchnorm2d, batchnorm1d */
    double eps, momentum;
    int cumulative;             /* momentum=none: the cumulative average, 1/num_batches_tracked */
    int affine, track;          /* affine, track_running_stats */
} norm_opts;

typedef struct adaptive_opts {  /* adaptiveavgpool2d, adaptivemaxpool2d: output_size */
    int oh, ow;
} adaptive_opts;

/* How the net initialises a tensor (cnn_net_init); parsing leaves every tensor at its constant
 * (fan-in tensors at 0) so that a net is well defined before any initialisation. */
typedef enum layer_init {
    LAYER_INIT_FAN_IN = 0,      /* uniform(−1/√fan_in, 1/√fan_in), PyTorch's default for weights and biases */
    LAYER_INIT_ZERO,
    LAYER_INIT_ONE
} layer_init;

/* A parameter or buffer, declared by the layer's setup() with layer_add_tensor. Its state_dict key
 * is "<node name>.<name>". */
typedef struct layer_tensor {
    const char *name;           /* "weight", "running_var", ...: a static string */
    cnn_dtype dtype;            /* CNN_F32, or CNN_I64 for a counter (num_batches_tracked) */
    int trainable;              /* 1: a parameter, with a gradient; 0: a buffer */
    layer_init init;
    int ndim;                   /* 0 (a scalar) .. 4 */
    int64_t shape[4];
} layer_tensor;

/* The per-sample shape of a value: (c, h, w), or [c] when flat (h = w = 1). */
typedef struct value_shape {
    int c, h, w;
    int flat;
} value_shape;

typedef struct layer {
    cnn_layer_kind kind;
    int line;                       /* line in the model text, for messages */
    int nin;                        /* number of inputs */
    value_shape in[LAYER_MAX_INPUTS];
    int c, h, w;                    /* in[0], for the layers of one input */
    int in_flat;                    /* in[0] is flat (after flatten or linear) */
    int oc, oh, ow;                 /* output shape of one sample */
    int flat;                       /* the output is [n, features] */
    union {
        conv2d_opts conv;
        pool_opts pool;
        linear_opts lin;
        norm_opts norm;
        adaptive_opts adapt;
        double negative_slope;      /* leakyrelu */
        double p;                   /* dropout */
        int approximate;            /* gelu: 0 none, 1 tanh */
    } o;
    int ntensors;                   /* parameters and buffers, in state_dict order */
    layer_tensor t[LAYER_MAX_TENSORS];
    /* Set by the net. */
    float *param[LAYER_MAX_TENSORS];    /* F32 tensors' data, else NULL */
    float *grad[LAYER_MAX_TENSORS];     /* trainable tensors' gradients, else NULL */
    int64_t *count[LAYER_MAX_TENSORS];  /* I64 tensors' data, else NULL */
    float *keep;                    /* what the fast forward leaves for the fast backward
                                     * (keep_floats), for batches of up to keep_n; or NULL */
    int keep_n;
    int training;                   /* 1 in training mode (batch statistics, dropout), 0 in eval */
    /* conv2d in inference mode (src/net/inference.c): the weights and bias to use instead of its
     * own (the batch norm after it folded in; NULL: its own), the same packed for the direct
     * kernels (NULL: packed on each call), an add after it, and whether a relu after that runs on
     * its output. */
    const float *fold_w, *fold_b, *fold_wt;
    const float *fold_add;          /* a value [n, oc, oh, ow] added to the output before the relu
                                     * (an add fused in), set by the net before each forward; or NULL */
    int fold_relu;
    uint64_t seed;                  /* this node's random stream for the current pass (dropout) */
} layer;

/* The functions of one layer kind. x[k], dx[k], y, dy hold n samples; p/dp are the layer's tensors
 * (parameters and buffers, in the order of l->t) and their gradients (NULL for buffers).
 *
 * Backward writes dx[k] (overwrites it): the net sums the gradients of a value that feeds several
 * nodes (note 000's rule at a fork), and zeroes nothing. dx[k] is NULL when input k needs no
 * gradient (the net's input in training, or a value no parameter depends on): the backward then
 * skips it. Parameter gradients accumulate (+=) into l->grad / dp until the caller zeroes them.
 * ws is the fast path's workspace of workspace(l, n) floats. */
typedef struct layer_ops {
    const char *name;               /* the model file's name, lower case: "conv2d" */
    const char *torch_name;         /* PyTorch's class name, accepted as an alias: "Conv2d" */
    int min_inputs, max_inputs;     /* 0 means 1 */
    /* Sets PyTorch's default options (required options stay 0, and setup() asks for them). */
    void (*defaults)(layer *l);
    /* Parses one option key=value; returns CNN_OK, or a CNN_ERR_PARSE whose message names it. */
    cnn_status (*option)(layer *l, const char *key, const char *value);
    /* Checks the options against the inputs' shapes, sets the output shape and declares the
     * tensors (layer_add_tensor). */
    cnn_status (*setup)(layer *l);
    /* Makes the node's choices once, when the net is built (after setup and the net's size
     * checks): which kernel path it takes, and so its workspace. NULL: nothing to choose. */
    void (*plan)(layer *l);
    /* fan_in for LAYER_INIT_FAN_IN tensors. */
    int64_t (*fan_in)(const layer *l);
    size_t (*workspace)(const layer *l, int n);
    /* Floats the fast forward keeps for the fast backward (0: none; the backward recomputes). */
    size_t (*keep_floats)(const layer *l, int n);
    /* Checks what setup cannot know: the batch size and mode of a forward (batch norm in training
     * needs more than one value per channel). NULL: every batch fits. */
    cnn_status (*check_batch)(const layer *l, int n);

    void (*forward)(const layer *l, int n, const float *const *x, float *y, float *ws);
    void (*backward)(const layer *l, int n, const float *const *x, const float *y, const float *dy,
                     float *const *dx, float *ws);

    void (*forward_ref)(const layer *l, int n, const double *const *x, double *const *p, double *y);
    void (*backward_ref)(const layer *l, int n, const double *const *x, double *const *p,
                         const double *y, const double *dy, double *const *dx, double *const *dp);
} layer_ops;

/* The library's symbol table names these cnn_i_<name>, so that they cannot collide with a
 * program's own (README: "Use from C"); the code calls them by the short names. */
/* batchnorm2d or batchnorm1d with running statistics, in eval mode, is y = scale·x + shift per
 * channel: scale = γ/√(running_var + ε), shift = β − running_mean·scale (γ = 1, β = 0 without
 * affine). Writes l->c of each. Only for a layer with track_running_stats. */
#define batchnorm_eval_affine cnn_i_batchnorm_eval_affine
void batchnorm_eval_affine(const layer *l, double *scale, double *shift);

#define conv2d_ops            cnn_i_conv2d_ops
#define maxpool2d_ops         cnn_i_maxpool2d_ops
#define avgpool2d_ops         cnn_i_avgpool2d_ops
#define relu_ops              cnn_i_relu_ops
#define leakyrelu_ops         cnn_i_leakyrelu_ops
#define sigmoid_ops           cnn_i_sigmoid_ops
#define tanh_ops              cnn_i_tanh_ops
#define flatten_ops           cnn_i_flatten_ops
#define linear_ops            cnn_i_linear_ops
#define batchnorm2d_ops       cnn_i_batchnorm2d_ops
#define batchnorm1d_ops       cnn_i_batchnorm1d_ops
#define dropout_ops           cnn_i_dropout_ops
#define adaptiveavgpool2d_ops cnn_i_adaptiveavgpool2d_ops
#define adaptivemaxpool2d_ops cnn_i_adaptivemaxpool2d_ops
#define add_ops               cnn_i_add_ops
#define concat_ops            cnn_i_concat_ops
#define convtranspose2d_ops   cnn_i_convtranspose2d_ops
#define gelu_ops              cnn_i_gelu_ops
#define silu_ops              cnn_i_silu_ops
#define softmax_ops           cnn_i_softmax_ops
#define layer_ops_of          cnn_i_layer_ops_of
#define layer_kind_by_name    cnn_i_layer_kind_by_name
#define layer_add_tensor      cnn_i_layer_add_tensor
#define value_shape_str       cnn_i_value_shape_str
#define layer_in_elems        cnn_i_layer_in_elems
#define layer_out_elems       cnn_i_layer_out_elems
#define opt_int               cnn_i_opt_int
#define opt_pair              cnn_i_opt_pair
#define opt_bool              cnn_i_opt_bool
#define opt_double            cnn_i_opt_double
#define opt_unknown           cnn_i_opt_unknown
#define layer_fail            cnn_i_layer_fail
#define pool_defaults         cnn_i_pool_defaults
#define pool_option           cnn_i_pool_option
#define pool_setup            cnn_i_pool_setup
#define pool_is_2x2           cnn_i_pool_is_2x2
#define pool_out_size         cnn_i_pool_out_size

extern const layer_ops conv2d_ops, maxpool2d_ops, avgpool2d_ops, relu_ops, leakyrelu_ops,
    sigmoid_ops, tanh_ops, flatten_ops, linear_ops, batchnorm2d_ops, batchnorm1d_ops;
extern const layer_ops adaptiveavgpool2d_ops, adaptivemaxpool2d_ops, add_ops, concat_ops;
extern const layer_ops dropout_ops, gelu_ops, silu_ops, softmax_ops;
extern const layer_ops convtranspose2d_ops;

/* The table for a kind, and the kind of a name (case-insensitive; PyTorch's class names too).
 * layer_kind_by_name returns 0 for an unknown name. */
const layer_ops *layer_ops_of(cnn_layer_kind kind);
int layer_kind_by_name(const char *name, cnn_layer_kind *out);

/* Declares a tensor of the layer (in setup); returns its index in l->t, the index the layer's
 * code uses for l->param, l->grad, l->count, p and dp. Shapes beyond ndim are ignored. */
int layer_add_tensor(layer *l, const char *name, cnn_dtype dtype, int trainable, layer_init init, int ndim,
                     int64_t d0, int64_t d1, int64_t d2, int64_t d3);

/* A value's per-sample shape for messages: "16x32x32", or "[10] (flat)". Returns buf. */
const char *value_shape_str(char *buf, size_t cap, const value_shape *s);

/* Elements of one sample of input k, and of the output. */
size_t layer_in_elems(const layer *l, int k);
size_t layer_out_elems(const layer *l);

/* Option parsing helpers shared by the layers: a non-negative or positive int, a pair "a,b" or a
 * single value used for both, a boolean true|false|1|0, and a finite number. They report errors
 * as "line L: KIND: option KEY=VALUE: ...". */
cnn_status opt_int(const layer *l, const char *key, const char *value, int min, int *out);
cnn_status opt_pair(const layer *l, const char *key, const char *value, int min, int *a, int *b);
cnn_status opt_bool(const layer *l, const char *key, const char *value, int *out);
cnn_status opt_double(const layer *l, const char *key, const char *value, double *out);
cnn_status opt_unknown(const layer *l, const char *key);
/* Fails with `code` and the message "line L: KIND: MESSAGE", for setup()'s errors. */
cnn_status layer_fail(const layer *l, cnn_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
