/* cnn.h - convolutional neural networks in C, with backpropagation you can read.
 *
 * The whole public API is in this one header. A working example:
 *
 *     #include "cnn.h"
 *     #include <stdio.h>
 *
 *     int main(void) {
 *         cnn_net *net = NULL;
 *         if (cnn_net_load("models/lenet5.cnn", &net) != CNN_OK ||
 *             cnn_net_init(net, 42) != CNN_OK ||
 *             cnn_net_reserve(net, 8) != CNN_OK) {
 *             fprintf(stderr, "%s\n", cnn_last_error());
 *             cnn_net_free(net);
 *             return 2;
 *         }
 *         static float x[8 * 1 * 28 * 28];            // NCHW input, batch 8
 *         int64_t target[8] = {0, 1, 2, 3, 4, 5, 6, 7};
 *         static float dlogits[8 * 10];
 *         float loss;
 *         cnn_net_zero_grad(net);
 *         cnn_net_forward(net, x, 8);
 *         cnn_loss_cross_entropy(cnn_net_output(net), target, 8, 10, &loss, dlogits);
 *         cnn_net_backward(net, dlogits);              // fills every <param>.grad
 *         printf("loss %.4f\n", loss);
 *         cnn_net_free(net);
 *         return 0;
 *     }
 *
 * Conventions
 * - Tensors are float32, NCHW, row-major. A per-sample shape is (C, H, W); the batch size N comes with
 *   each call.
 * - d<x> always means dL/d<x>. Parameter gradients accumulate (+=) until cnn_net_zero_grad, as in PyTorch.
 * - Every function that can fail returns a cnn_status. On failure the calling thread's message,
 *   cnn_last_error(), names the layer (by its line in the model file), the tensor and the shapes.
 *   The library never prints and never exits.
 * - Objects that a function creates are freed by the matching _free function, which accepts NULL.
 * - Forward and backward never allocate: parameters, gradients, activations and workspaces live in
 *   arenas allocated by cnn_net_parse (parameters) and cnn_net_reserve (batch-sized buffers).
 */
#ifndef CNN_H
#define CNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every function declared here is exported from libcnn.so; the library is compiled with
 * -fvisibility=hidden, so nothing else is. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* ---------------------------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------------------------- */

/* The version of this header, MAJOR.MINOR.PATCH. cnn_version() gives the library's, which is the
 * same when the program was built against the library it runs with. */
#define CNN_VERSION_MAJOR 0
#define CNN_VERSION_MINOR 2
#define CNN_VERSION_PATCH 0

/* The library's version as "MAJOR.MINOR.PATCH", e.g. "0.2.0"; a static string, never NULL. */
const char *cnn_version(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes and errors
 * ------------------------------------------------------------------------------------------- */

typedef enum cnn_status {
    CNN_OK = 0,
    CNN_ERR_ARG,       /* a NULL or out-of-range argument passed by the caller */
    CNN_ERR_PARSE,     /* a model file that does not parse: unknown layer, unknown option, bad value */
    CNN_ERR_SHAPE,     /* shapes that do not fit: a layer's output would be empty, a tensor of the wrong shape */
    CNN_ERR_IO,        /* a file that cannot be opened, read or written */
    CNN_ERR_FORMAT,    /* a malformed file: truncated, bad header, offsets past the end */
    CNN_ERR_DTYPE,     /* a tensor of the wrong or an unknown dtype */
    CNN_ERR_MISSING,   /* a tensor that a caller asked for is not there */
    CNN_ERR_NOMEM,     /* an allocation failed, or a size overflowed */
    CNN_ERR_NONFINITE  /* NaN or Inf where a finite number is needed */
} cnn_status;

/* The message of the last failure on this thread ("" if none). The string belongs to the library and
 * stays valid until the next failing call on the same thread. */
const char *cnn_last_error(void);

/* A fixed English name for a status code, such as "parse error". Never NULL. */
const char *cnn_status_name(cnn_status s);

/* ---------------------------------------------------------------------------------------------
 * Tensors and safetensors files
 * ------------------------------------------------------------------------------------------- */

typedef enum cnn_dtype {
    CNN_F32 = 0,
    CNN_F64,
    CNN_I64,
    CNN_I32,
    CNN_U8,
    CNN_F16,  /* read only as raw bytes: cnn_tensor_to_f32 rejects it */
    CNN_BF16, /* read only as raw bytes */
    CNN_I16,
    CNN_I8,
    CNN_BOOL
} cnn_dtype;

#define CNN_MAX_DIMS 8

/* A view of an n-dimensional array. The tensor does not own `data`: whoever made it does. */
typedef struct cnn_tensor {
    const char *name;                  /* the tensor's key in its file, or NULL */
    cnn_dtype dtype;
    int ndim;                          /* 0 (a scalar) .. CNN_MAX_DIMS */
    int64_t shape[CNN_MAX_DIMS];
    void *data;                        /* numel * cnn_dtype_size(dtype) bytes, little-endian */
} cnn_tensor;

/* Bytes per element of a dtype (1, 2, 4 or 8); 0 for an invalid value. */
size_t cnn_dtype_size(cnn_dtype t);
/* The safetensors name of a dtype ("F32", "I64", ...), or NULL for an invalid value. */
const char *cnn_dtype_name(cnn_dtype t);
/* The number of elements: the product of the shape (1 for a scalar); −1 for NULL, an ndim outside
 * 0..CNN_MAX_DIMS, a negative dimension or a product that overflows. */
int64_t cnn_tensor_numel(const cnn_tensor *t);

/* A safetensors file held in memory. */
typedef struct cnn_st cnn_st;

/* Reads and validates a whole safetensors file: an 8-byte little-endian header length N, N bytes of
 * JSON, then the data buffer. Validation: N ≤ 100 MB and within the file, the JSON is an object of
 * {"dtype", "shape", "data_offsets"} entries plus an optional "__metadata__" of string values, every
 * dtype is known, no shape product overflows, end − begin equals numel × dtype size, offsets lie
 * inside the data buffer, tensors do not overlap and together cover it. Names and metadata are
 * UTF-8. Dtypes the library does not read (U16, U32, U64, F8_*) are rejected with CNN_ERR_DTYPE.
 * On success *out owns a copy of the file; free it with cnn_st_free. On error *out is NULL.
 * Errors: CNN_ERR_ARG (NULL), CNN_ERR_IO (open/read), CNN_ERR_FORMAT (any malformation, the message
 * names the tensor), CNN_ERR_DTYPE (unknown dtype), CNN_ERR_NOMEM. */
cnn_status cnn_st_load(const char *path, cnn_st **out);

/* As cnn_st_load, from `len` bytes at `buf` (copied; the caller keeps `buf`). */
cnn_status cnn_st_parse(const void *buf, size_t len, cnn_st **out);

void cnn_st_free(cnn_st *st);

/* The number of tensors, and the i-th in file order (0 ≤ i < count). The returned tensor and its
 * name and data belong to `st`. Data is aligned for its dtype. */
int cnn_st_count(const cnn_st *st);
const cnn_tensor *cnn_st_tensor(const cnn_st *st, int i);

/* The tensor named `name`, or NULL (no error is set). */
const cnn_tensor *cnn_st_find(const cnn_st *st, const char *name);

/* The value of `key` in __metadata__, or NULL. The string belongs to `st`. */
const char *cnn_st_metadata(const cnn_st *st, const char *key);

/* Looks up `name` and checks it: dtype must be `dtype`, and when ndim ≥ 0 the shape must equal
 * shape[0..ndim-1] (a shape entry of -1 matches any size). On success *out is the tensor.
 * `out` may be NULL to check only. Errors: CNN_ERR_MISSING ("in.safetensors: tensor 'input' is
 * missing (F32 [?, 1, 28, 28] is needed)"), CNN_ERR_DTYPE, CNN_ERR_SHAPE, each naming the tensor,
 * the expected and the actual dtype and shape ('?' stands for −1); CNN_ERR_ARG for a shape entry
 * below −1. `what` starts the message (the file's name or role). */
cnn_status cnn_st_require(const cnn_st *st, const char *what, const char *name, cnn_dtype dtype,
                          int ndim, const int64_t *shape, const cnn_tensor **out);

/* Writes `n` tensors and `n_meta` metadata pairs (meta[2i] = key, meta[2i+1] = value) as a
 * safetensors file, in the layout of the safetensors project: tensors sorted by dtype in the order
 * I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL, then by name; header padded with spaces to a
 * multiple of 8. Names and metadata must be UTF-8; "__metadata__" is reserved.
 * The file is written to a new temporary file in PATH's directory (never an existing name or a
 * symlink), fsynced and renamed over PATH, and the directory fsynced, so a crash never leaves half
 * a file; a replaced file's mode is kept. A PATH that exists and is not a regular file (a device,
 * a FIFO, a directory) is refused, and so is a PATH that another process is writing (a lock file
 * .NAME.lock beside it, held with flock while the file is written; the message names that process).
 * Errors: CNN_ERR_ARG (NULL, duplicate name, bad dtype), CNN_ERR_IO, CNN_ERR_NOMEM. */
cnn_status cnn_st_save(const char *path, const cnn_tensor *tensors, int n, const char *const *meta,
                       int n_meta);

/* ---------------------------------------------------------------------------------------------
 * Networks
 *
 * A model file has one layer per line. Read top to bottom it is a torch.nn.Sequential; with names
 * and from= lists it is any graph of layers (a residual net, a DenseNet):
 *
 *     input 3 32 32                        # C H W of one sample; this value is named "input"
 *     conv2d out_channels=16 kernel_size=3 padding=1 bias=false name=conv1
 *     batchnorm2d name=bn1
 *     relu name=stem
 *     conv2d out_channels=16 kernel_size=3 padding=1 bias=false name=layer1.0.conv1
 *     batchnorm2d name=layer1.0.bn1
 *     relu
 *     conv2d out_channels=16 kernel_size=3 padding=1 bias=false name=layer1.0.conv2
 *     batchnorm2d name=layer1.0.bn2
 *     add from=stem                        # the line above + stem: the residual shortcut
 *     relu name=layer1.0
 *     adaptiveavgpool2d output_size=1
 *     flatten
 *     linear out_features=10 name=fc
 *
 * - name=NAME names a line's output (letters, digits, '_', '.', '-'; at most 100 bytes); without it
 *   the name is the layer's index, counted from 0 without `input`. Parameters and buffers are
 *   "<name>.weight", "<name>.bias", "<name>.running_mean", ...: the state_dict keys of the
 *   equivalent PyTorch module (nested modules for dotted names such as layer1.0.conv1).
 * - from=A[,B...] lists a line's inputs by name or index, in order; without it the input is the
 *   line above. For add and concat a single name means the line above and that one, in that order
 *   (concat from=B is torch.cat([previous, B], 1)).
 * - The net's output is the last line. A line whose output nothing reads, an unknown name, a name
 *   used twice, and a cycle (a from= that names the line itself or a line below that reads it) are
 *   parse errors naming the line.
 * - Layer names are case-insensitive, and PyTorch's class names are aliases (Conv2d, BatchNorm2d,
 *   ReLU, MaxPool2d, AdaptiveAvgPool2d, Linear, Dropout, GELU, SiLU, LeakyReLU, ConvTranspose2d,
 *   Flatten, Softmax, ...). '#' starts a comment; blank lines are ignored.
 *
 * Layers and options (defaults are PyTorch's; a pair "3,5" means (height, width)):
 *     conv2d       out_channels= kernel_size= stride=1 padding=0 dilation=1 groups=1 bias=true
 *                  (padding=same: stride 1 only, the odd cell of padding at the right and bottom;
 *                  padding=valid is 0)
 *     convtranspose2d  out_channels= kernel_size= stride=1 padding=0 output_padding=0 dilation=1
 *                  groups=1 bias=true; weight [in, out/groups, kh, kw]
 *     maxpool2d    kernel_size= stride=kernel_size padding=0 ceil_mode=false
 *     avgpool2d    kernel_size= stride=kernel_size padding=0 ceil_mode=false count_include_pad=true
 *     adaptiveavgpool2d, adaptivemaxpool2d   output_size=1 (or h,w)
 *     batchnorm2d  eps=1e-5 momentum=0.1 affine=true track_running_stats=true (momentum=none: the
 *                  cumulative average); batchnorm1d the same, for a flat [N, F] input
 *     dropout      p=0.5
 *     relu, sigmoid, tanh, silu, flatten
 *     leakyrelu    negative_slope=0.01
 *     gelu         approximate=none (or tanh)
 *     softmax      dim=1 (over channels)
 *     linear       out_features= bias=true
 *     add          two or more inputs of one shape; concat: along channels, other sizes equal
 * Conv weights are [out, in/groups, kh, kw] and linear weights [out, in], as in PyTorch.
 * ------------------------------------------------------------------------------------------- */

typedef struct cnn_net cnn_net;

typedef enum cnn_layer_kind {
    CNN_LAYER_CONV2D = 0,
    CNN_LAYER_MAXPOOL2D,
    CNN_LAYER_AVGPOOL2D,
    CNN_LAYER_RELU,
    CNN_LAYER_LEAKYRELU,
    CNN_LAYER_SIGMOID,
    CNN_LAYER_TANH,
    CNN_LAYER_FLATTEN,
    CNN_LAYER_LINEAR,
    CNN_LAYER_BATCHNORM2D,
    CNN_LAYER_BATCHNORM1D,
    CNN_LAYER_DROPOUT,
    CNN_LAYER_ADAPTIVEAVGPOOL2D,
    CNN_LAYER_ADAPTIVEMAXPOOL2D,
    CNN_LAYER_ADD,
    CNN_LAYER_CONCAT,
    CNN_LAYER_CONVTRANSPOSE2D,
    CNN_LAYER_GELU,
    CNN_LAYER_SILU,
    CNN_LAYER_SOFTMAX,
    CNN_LAYER_KIND_COUNT
} cnn_layer_kind;

/* Parses model text and builds the net: resolves every from=, infers every shape, checks that each
 * layer fits, and allocates the parameter, buffer and gradient arenas (parameters are zero until
 * cnn_net_init or cnn_net_load_weights; batch norm's weight and running_var start at 1). `text` is
 * NUL-terminated. Errors: CNN_ERR_PARSE ("line 3: conv2d: unknown option 'kernal_size'", "line 4:
 * relu: from=b makes a cycle: ..."), CNN_ERR_SHAPE ("line 5: maxpool2d: input 16x2x2 is smaller
 * than kernel 3x3", "line 9: add: input 1 is 32x16x16 but input 0 is 16x32x32"), CNN_ERR_NOMEM.
 * On error *out is NULL. */
cnn_status cnn_net_parse(const char *text, cnn_net **out);

/* Reads a model file and parses it as cnn_net_parse does; messages start with the path. */
cnn_status cnn_net_load(const char *path, cnn_net **out);

void cnn_net_free(cnn_net *net);

/* The per-sample input and output shapes (C, H, W); a flat output has H = W = 1. */
void cnn_net_input_shape(const cnn_net *net, int chw[3]);
void cnn_net_output_shape(const cnn_net *net, int chw[3]);
/* Nonzero when the output is flat, [N, C] (after a flatten or linear), rather than [N, C, H, W]. */
int cnn_net_output_is_flat(const cnn_net *net);

/* The number of layers (not counting `input`), and facts about layer i (0 ≤ i < count). Layers
 * are in the file's order, which is a topological order of the graph. in_chw is the shape of the
 * layer's first input. */
int cnn_net_layer_count(const cnn_net *net);
cnn_layer_kind cnn_net_layer_kind(const cnn_net *net, int i);
const char *cnn_layer_kind_name(cnn_layer_kind kind);     /* "conv2d", ...; NULL if invalid */
void cnn_net_layer_shapes(const cnn_net *net, int i, int in_chw[3], int out_chw[3]);
int cnn_net_layer_line(const cnn_net *net, int i);           /* its line in the model text */

/* The graph. Layer i is node i; its output is value i + 1, and value 0 is the net's input. Values
 * are named by their line's name= (the layer's index when it has none); the input is "input". */
const char *cnn_net_layer_name(const cnn_net *net, int i);   /* "layer1.0.conv1", or "3" */
int cnn_net_layer_input_count(const cnn_net *net, int i);    /* 1, or 2+ for add and concat */
int cnn_net_layer_input(const cnn_net *net, int i, int k);   /* the value index of input k */
int cnn_net_value_count(const cnn_net *net);                 /* layers + 1 */
/* The value named `name`, or −1. */
int cnn_net_value_find(const cnn_net *net, const char *name);
const char *cnn_net_value_name(const cnn_net *net, int v);
/* The per-sample shape (C, H, W) of value v; *flat (when not NULL) is 1 for a flat [N, C] value. */
void cnn_net_value_shape(const cnn_net *net, int v, int chw[3], int *flat);
/* Value v's data after the last forward, [n] + its shape, owned by the net (NULL before any
 * forward; for value 0, the caller's input). */
const float *cnn_net_value_data(const cnn_net *net, int v);
/* dL/d(value v) after the last backward, owned by the net (for the output value: the dy given to
 * cnn_net_backward, which the net reads in place); NULL when v needs no gradient (no parameter lies
 * upstream of it and it is not the input, or the input's gradient is off). */
const float *cnn_net_value_grad(const cnn_net *net, int v);

/* Parameters. The float arrays belong to the net; they stay valid until cnn_net_free. */
typedef struct cnn_param {
    const char *name;             /* "0.weight", "layer1.0.conv1.weight" */
    int layer;                    /* the layer's index */
    int ndim;
    int64_t shape[4];
    int64_t numel;
    float *data;
    float *grad;                  /* same layout as data */
} cnn_param;

int cnn_net_param_count(const cnn_net *net);
/* The i-th parameter, in state_dict order (0 ≤ i < count). */
cnn_param cnn_net_param(const cnn_net *net, int i);
/* The parameter named `name`, or a cnn_param with data == NULL. */
cnn_param cnn_net_param_by_name(const cnn_net *net, const char *name);

/* Buffers: tensors of the state that are not trained, such as batch norm's running_mean (F32),
 * running_var (F32) and num_batches_tracked (I64, a scalar), in state_dict order. The tensor's name
 * and data belong to the net. cnn_net_load_weights reads them and cnn_net_save_weights writes them
 * beside the parameters. */
int cnn_net_buffer_count(const cnn_net *net);
cnn_tensor cnn_net_buffer(const cnn_net *net, int i);

/* Training or eval mode, as PyTorch's module.train() and module.eval(); a net starts in training
 * mode. In training mode batch norm normalises with the batch's statistics and updates its
 * running statistics, and dropout zeroes inputs at random; in eval mode batch norm uses the
 * running statistics and dropout is the identity. */
void cnn_net_set_training(cnn_net *net, int on);
int cnn_net_training(const cnn_net *net);
/* Inference mode (on = 1): eval mode, and forward passes that fold what a deployed net does not
 * need to run separately. Each conv2d absorbs the nodes that follow it on the next lines and alone
 * read what it makes: a batchnorm2d with running statistics (folded into its weights and bias:
 * W' = W·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β), then an add of two inputs (a residual block's
 * shortcut, added as the convolution writes its output), then a relu. Every convolution's weights
 * are packed for its kernels once. That work is done on the first forward after this call, and
 * again after cnn_net_init, cnn_net_load_weights or cnn_optim_step; it is a snapshot, as PyTorch's
 * fuse_conv_bn_eval: a program that writes a parameter's or buffer's data itself (cnn_net_param)
 * calls cnn_net_set_inference(net, 1) again before the next forward. The outputs agree with eval
 * mode's to float rounding (relative 1e-6, test_inference), not bit for bit. The values that the
 * absorbed nodes read (the convolution's output, and the batch norm's or the add's before the
 * last absorbed node) are not computed: cnn_net_value_data and cnn_net_layer_output return NULL
 * for them. cnn_net_backward is refused (CNN_ERR_ARG). The reference path (cnn_net_set_path)
 * folds nothing. on = 0 leaves inference mode for plain eval mode; cnn_net_set_training(net, 1)
 * leaves it too. The first call allocates the folded weights, once per net (about the size of the
 * convolutions' parameters, twice). Errors: CNN_ERR_ARG (NULL net), CNN_ERR_NOMEM. */
cnn_status cnn_net_set_inference(cnn_net *net, int on);
int cnn_net_inference(const cnn_net *net);
/* Seeds dropout's random numbers (0 by default) and restarts their stream. Each training forward
 * draws new masks; the same seed gives the same masks for any thread count. */
void cnn_net_set_seed(cnn_net *net, uint64_t seed);

/* Seeded initialisation, PyTorch's default in distribution: conv and linear weights and biases
 * uniform in (−1/√fan_in, 1/√fan_in) (kaiming-uniform with a = √5), drawn in state_dict order;
 * batch norm's weight 1 and bias 0; buffers reset (running_mean 0, running_var 1,
 * num_batches_tracked 0). Errors: CNN_ERR_ARG for a NULL net. */
cnn_status cnn_net_init(cnn_net *net, uint64_t seed);

/* Copies every parameter and buffer from `st` by its state_dict name. Float tensors may be F32 or
 * F64 (F64 is rounded); num_batches_tracked is I64. When `allow_missing` is nonzero, tensors absent
 * from `st` keep their values. Other entries of `st` (such as a checkpoint's optim.*) are ignored,
 * except one that looks like a tensor of this model that it does not have ("3.weight" of a
 * Sequential, "<a node's name>.<x>"). Everything is checked before anything is copied.
 * Errors: CNN_ERR_MISSING ("weights: tensor '3.weight' is missing"), CNN_ERR_SHAPE (names the
 * tensor and both shapes, or a tensor the model lacks), CNN_ERR_DTYPE, CNN_ERR_NONFINITE (a NaN or
 * Inf in a parameter), CNN_ERR_FORMAT (a negative count). */
cnn_status cnn_net_load_weights(cnn_net *net, const cnn_st *st, int allow_missing);

/* Writes every parameter and buffer under its state_dict name (and, when `with_grads` is nonzero,
 * each parameter's gradient as "<param>.grad") to a safetensors file: the file loads into the
 * equivalent PyTorch module with load_state_dict(strict=True). Errors: as cnn_st_save. */
cnn_status cnn_net_save_weights(const cnn_net *net, const char *path, int with_grads);

/* Allocates the batch-sized arenas (activations, their gradients, workspaces) for batches of up to
 * max_batch samples. Call it before forward; calling it again with a smaller or equal size does
 * nothing. Errors: CNN_ERR_ARG (max_batch < 1), CNN_ERR_NOMEM. */
cnn_status cnn_net_reserve(cnn_net *net, int max_batch);

/* Which implementation the layers run: the plain loops that follow the notes, computed in double
 * precision (CNN_PATH_REFERENCE), or the fast kernels (CNN_PATH_FAST, the default). The reference
 * path needs double-precision arenas, allocated here or by cnn_net_reserve.
 * Errors: CNN_ERR_ARG (NULL net or unknown path), CNN_ERR_NOMEM. */
typedef enum cnn_path { CNN_PATH_FAST = 0, CNN_PATH_REFERENCE = 1 } cnn_path;
cnn_status cnn_net_set_path(cnn_net *net, cnn_path path);

/* Forward pass of n samples, x of shape [n, C, H, W], in the net's mode (training by default, see
 * cnn_net_set_training): every layer in the file's order, each reading the values its from= names.
 * In training mode batch norm updates its running statistics. The net keeps a pointer to x: it must
 * stay unchanged until the matching backward. Errors: CNN_ERR_ARG (NULL, n < 1 or n above the
 * reserved batch), CNN_ERR_SHAPE (batch norm in training mode with one value per channel:
 * "line 4: batchnorm2d: expected more than 1 value per channel when training, ..."). The output is
 * at cnn_net_output(net), [n, out C, out H, out W], owned by the net. */
cnn_status cnn_net_forward(cnn_net *net, const float *x, int n);
const float *cnn_net_output(const cnn_net *net);

/* Backward pass for the last forward: dy is dL/doutput with the output's shape. The layers run in
 * reverse; where one value feeds several layers its gradient is the sum of theirs (note 000's rule
 * at a fork in the graph). Accumulates every parameter's gradient and writes dL/dinput to
 * cnn_net_grad_input(net), [n, C, H, W], owned by the net; every value's gradient stays readable
 * with cnn_net_value_grad until the next backward. Errors: CNN_ERR_ARG (NULL, or no forward
 * before). */
cnn_status cnn_net_backward(cnn_net *net, const float *dy);
const float *cnn_net_grad_input(const cnn_net *net);

/* Whether cnn_net_backward computes dL/dinput (on by default). Training needs only the parameter
 * gradients: turning it off skips the first layer's input gradient (cnn_net_grad_input is then
 * stale). */
void cnn_net_set_input_grad(cnn_net *net, int on);

/* The number of threads the fast kernels use (OpenMP), 1 to 1024; the default is the
 * CNN_NUM_THREADS environment variable, else 1. Results do not depend on it: every reduction runs
 * in a fixed order, so 1 and 2 threads give the same bits. Errors: CNN_ERR_ARG. */
cnn_status cnn_set_threads(int n);
int cnn_get_threads(void);

/* The output of layer i after the last forward ([n] + its out shape), owned by the net. */
const float *cnn_net_layer_output(const cnn_net *net, int i);

/* Sets every parameter gradient to zero. */
void cnn_net_zero_grad(cnn_net *net);

/* ---------------------------------------------------------------------------------------------
 * Losses. Both average as PyTorch's reduction='mean' does, and accumulate in double.
 * ------------------------------------------------------------------------------------------- */

/* Softmax cross-entropy of logits [n, classes] against class indices target[n], averaged over the
 * batch, computed stably with log-sum-exp. *loss = mean(logsumexp(x) − x[target]); when dx is not
 * NULL, dx = (softmax(x) − onehot(target)) / n. Errors: CNN_ERR_ARG (NULL, n or classes < 1, a
 * target outside 0..classes-1: the message names the sample and the value). */
cnn_status cnn_loss_cross_entropy(const float *logits, const int64_t *target, int n, int classes,
                                  float *loss, float *dx);

/* CrossEntropyLoss(label_smoothing = eps): *loss = mean over the batch of
 * (1 − eps)·(lse(x) − x[target]) + eps·mean_k(lse(x) − x[k]); dx (if not NULL) =
 * (softmax(x) − (1 − eps)·onehot − eps/classes)/n. eps 0 is cnn_loss_cross_entropy.
 * Errors: those of cnn_loss_cross_entropy, and CNN_ERR_ARG for eps outside [0, 1). */
cnn_status cnn_loss_cross_entropy_smooth(const float *logits, const int64_t *target, int n, int classes,
                                         double eps, float *loss, float *dx);

/* Mean squared error over `count` elements: *loss = mean((y − t)²); when dy is not NULL,
 * dy = 2(y − t)/count. Errors: CNN_ERR_ARG. */
cnn_status cnn_loss_mse(const float *y, const float *t, int64_t count, float *loss, float *dy);

/* ---------------------------------------------------------------------------------------------
 * Data sets
 * ------------------------------------------------------------------------------------------- */

/* One split of a data set: n samples of shape (c, h, w) with integer class labels. */
typedef struct cnn_dataset {
    int64_t n;
    int c, h, w;
    float *x;                     /* [n, c, h, w], owned: scaled to [0,1] and normalised, or as given */
    int64_t *y;                   /* [n] labels in 0..num_classes-1, owned */
} cnn_dataset;

/* A data set with its training and (optional) test split. */
typedef struct cnn_data {
    char name[32];                /* "mnist", "fashion-mnist", "cifar10", "idx", "safetensors" */
    cnn_dataset train, test;      /* test.n == 0 when the source has no test split */
    int num_classes;              /* 1 + the largest label, or the data set's known count */
    const char *const *class_names; /* num_classes names for the known data sets, else NULL */
    float mean[3], std[3];        /* the normalisation applied (std 1, mean 0 when none) */
} cnn_data;

/* Opens a data source and reads it whole:
 *   "mnist", "fashion-mnist"  the IDX files under data_dir/mnist or data_dir/fashion-mnist
 *                             (train-images-idx3-ubyte, ... , raw or .gz);
 *   a directory of IDX files  (train-images*, train-labels*, t10k-images*, t10k-labels*, raw or .gz);
 *   "cifar10"                 the CIFAR-10 directory data_dir/cifar-10-batches-bin (the binary
 *                             version; when absent, the CNN_ERR_IO message says where to get it);
 *   a CIFAR-10 directory      (data_batch_*.bin and test_batch.bin, records of 1 + 3072 bytes);
 *   a .safetensors file       holding input [N,C,H,W] F32 and target [N] I64 (or I32), with
 *                             optional test_input and test_target: used as they are, unscaled.
 * Images are scaled to [0,1] and normalised with the data set's mean and std (MNIST 0.1307/0.3081,
 * Fashion-MNIST 0.2860/0.3530, CIFAR-10 per channel; other IDX data: their own mean and std).
 * data_dir may be NULL for "data". On error *out is zeroed. Errors: CNN_ERR_IO (missing files:
 * the message says how to get them), CNN_ERR_FORMAT (bad magic, truncated, counts that disagree),
 * CNN_ERR_DTYPE, CNN_ERR_SHAPE, CNN_ERR_NOMEM. */
cnn_status cnn_data_open(const char *source, const char *data_dir, cnn_data *out);
void cnn_data_free(cnn_data *d);

/* Reads one IDX file (raw, or gzip when the name ends in .gz) of unsigned bytes. On success *data
 * (owned by the caller, free()) holds the bytes and dims[0..*ndim-1] the dimensions. Errors:
 * CNN_ERR_IO, CNN_ERR_FORMAT (bad magic, a type other than 0x08, too many dims, a file shorter or
 * longer than its dimensions say; checked before allocating), CNN_ERR_NOMEM. */
cnn_status cnn_idx_read(const char *path, uint8_t **data, int *ndim, int64_t dims[4]);

/* Facts about a known data set ("mnist", "fashion-mnist", "cifar10"): its shape, normalisation and
 * class names (static strings). Returns 0 for an unknown name. Any output may be NULL. */
int cnn_data_known(const char *name, int chw[3], float mean[3], float std[3], int *num_classes,
                   const char *const **class_names);

/* ---------------------------------------------------------------------------------------------
 * Data augmentation (src/io/augment.c)
 * ------------------------------------------------------------------------------------------- */

/* What to do to each training sample, in this order (torchvision's): crop = P > 0 pads the image
 * by P pixels on every side (with the fill, or mirrored without repeating the edge when reflect,
 * PyTorch's padding_mode='reflect') and takes a random window of the image's size from it; flip
 * mirrors it left to right with probability 1/2; translate = T > 0 shifts it by a random whole
 * number of pixels in [−T, T] each way (the fill where it leaves the image); cutout = S > 0 sets a
 * random SxS square to 0 (its centre anywhere on the image, so it may be partly outside; 0 in the
 * normalised space, as DeVries & Taylor 2017 do it after Normalize). fill[ch] is channel ch's value
 * of the padding: 0 after cnn_augment_init, the normalised value of a black pixel after
 * cnn_augment_set_fill. Zero everywhere (cnn_augment_init) does nothing. */
typedef struct cnn_augment {
    int crop, reflect, flip, translate, cutout;
    float fill[3];
} cnn_augment;

void cnn_augment_init(cnn_augment *a);

/* Parses a comma-separated list of keys into *out (all others off, fill 0):
 *   crop=P  crop=P:reflect  crop=P:zero  flip  translate=T  cutout=S   (P, T, S whole, >= 1)
 * as in "crop=4,flip". Errors: CNN_ERR_ARG with a message naming the key (an unknown key, a
 * missing or malformed value, an empty list). *out is unchanged on error. */
cnn_status cnn_augment_parse(const char *spec, cnn_augment *out);

/* Writes the canonical text of a (as cnn_augment_parse reads it; "" when nothing is on) to buf, of
 * cap bytes, truncated to fit; returns its length. */
int cnn_augment_format(const cnn_augment *a, char *buf, size_t cap);

/* 1 if a does anything to a sample. */
int cnn_augment_active(const cnn_augment *a);

/* Checks a against images of c x h x w: the padding of crop and translate must be below the
 * image's smaller side, cutout at most that side. Errors: CNN_ERR_ARG naming the key, CNN_ERR_SHAPE. */
cnn_status cnn_augment_check(const cnn_augment *a, int c, int h, int w);

/* Sets a->fill to the normalised value of a 0 byte, (0 − mean[ch]) / std[ch], for the first c
 * channels (0 past them): what padding a black border before normalising gives (cnn_data's mean
 * and std; a source used unscaled has mean 0 and std 1, and so pads with 0). */
void cnn_augment_set_fill(cnn_augment *a, int c, const float mean[3], const float std[3]);

/* Writes to out[i] the sample in[i] transformed as a says, for i < n (both [n, c, h, w], not
 * overlapping; the caller owns both). Sample i's random draws come from a hash of (seed, epoch,
 * index[i]) alone (index[i]: its index in the data set), so the result does not depend on the
 * batch, the order or the number of threads (the samples run on the thread pool). Errors:
 * CNN_ERR_ARG (NULL, overlapping buffers, n < 0, a too large for the images: cnn_augment_check). */
cnn_status cnn_augment_batch(const cnn_augment *a, const float *in, float *out, int n, int c, int h, int w,
                             uint64_t seed, uint64_t epoch, const int64_t *index);

/* ---------------------------------------------------------------------------------------------
 * Images
 * ------------------------------------------------------------------------------------------- */

/* Decodes a PNG, JPEG, PGM/PPM or BMP image (with stb_image), composites an image with alpha
 * (grey + alpha, RGBA, a transparent PNG palette) over white (v' = αv + (1 − α)), converts it to
 * c channels (1: the luminance 0.299R + 0.587G + 0.114B; 3: RGB, grey replicated), resizes it to
 * h×w by bilinear interpolation, and writes it scaled to [0,1] to out[c·h·w] (CHW, caller-owned).
 * Errors: CNN_ERR_IO (cannot open), CNN_ERR_FORMAT (does not decode: the message gives the
 * decoder's reason; or is larger than 16384×16384), CNN_ERR_ARG (c not 1 or 3, h or w < 1). */
cnn_status cnn_image_load(const char *path, int c, int h, int w, float *out);
/* As cnn_image_load, from `len` bytes of an encoded image in memory. */
cnn_status cnn_image_decode(const void *buf, size_t len, int c, int h, int w, float *out);

/* ---------------------------------------------------------------------------------------------
 * Optimizers and learning-rate schedules, with torch.optim's formulas
 * ------------------------------------------------------------------------------------------- */

typedef enum cnn_optim_kind { CNN_OPTIM_SGD = 0, CNN_OPTIM_ADAM, CNN_OPTIM_ADAMW } cnn_optim_kind;

typedef struct cnn_optim_config {
    cnn_optim_kind kind;
    double lr;
    double momentum;              /* SGD; 0 = none */
    double dampening;             /* SGD; 0 */
    int nesterov;                 /* SGD; needs momentum > 0 and dampening 0 */
    double weight_decay;          /* SGD and Adam: g += wd·p; AdamW: p *= 1 − lr·wd */
    double beta1, beta2, eps;     /* Adam, AdamW: 0.9, 0.999, 1e-8 */
    int no_decay_bn_bias;         /* 1: no weight decay for the parameters of batch-norm layers
                                   * (weight and bias) and for every bias (a parameter named
                                   * "….bias"): torch's two param groups, [conv/linear weights:
                                   * weight_decay] and [the rest: 0]. Default 0: decay everything. */
} cnn_optim_config;

/* torch.optim's defaults for `kind` with learning rate lr (weight_decay 0, or 0.01 for AdamW). */
cnn_optim_config cnn_optim_defaults(cnn_optim_kind kind, double lr);

typedef struct cnn_optim cnn_optim;

/* Creates an optimizer over every parameter of `net`, with its state buffers allocated once. It
 * keeps a pointer to the net: free the optimizer before the net.
 * Errors: CNN_ERR_ARG (a bad setting: negative lr, nesterov without momentum, betas outside
 * [0,1)), CNN_ERR_NOMEM. */
cnn_status cnn_optim_create(cnn_net *net, const cnn_optim_config *cfg, cnn_optim **out);
void cnn_optim_free(cnn_optim *opt);

/* One update of every parameter from its gradient, with learning rate lr (the schedule's value
 * for this epoch). Never allocates. */
void cnn_optim_step(cnn_optim *opt, double lr);

/* The number of steps taken (Adam's t). */
int64_t cnn_optim_step_count(const cnn_optim *opt);

/* Sets the momentum of the following steps (SGD's momentum, Adam's and AdamW's beta1), as a
 * scheduler that cycles momentum (OneCycleLR) writes it into torch's param group; rounded to float
 * in each step as the other hyperparameters are. Errors: CNN_ERR_ARG (NULL, a value outside [0, 1),
 * or a nonzero momentum for an SGD optimizer created with momentum 0, which has no buffers). */
cnn_status cnn_optim_set_momentum(cnn_optim *opt, double momentum);

/* torch.nn.utils.clip_grad_norm_(parameters, max_norm) over every gradient of `net`: the L2 norm
 * of each parameter's gradient, then the norm of those norms, in float as torch 1.13 does;
 * coef = max_norm / (total + 1e-6), and when coef < 1 every gradient is multiplied by it. The
 * norm is summed in one fixed order (the same bits for any thread count). *total (may be NULL)
 * gets the norm before clipping. Errors: CNN_ERR_ARG (NULL net, max_norm not finite or ≤ 0). */
cnn_status cnn_net_clip_grad_norm(cnn_net *net, double max_norm, double *total);

/* The optimizer's state as tensors named "optim.<param>.<buffer>" (momentum_buffer for SGD;
 * exp_avg and exp_avg_sq for Adam and AdamW), F32, each with its parameter's shape. Fills up to
 * `cap` tensors of `t` and returns how many there are in all; the tensors' names and data belong
 * to the optimizer. */
int cnn_optim_state(const cnn_optim *opt, cnn_tensor *t, int cap);

/* Restores state saved by cnn_optim_state (F32, or F64 rounded) and the step count; with steps 0
 * nothing is read and the state is zero, as torch keeps no buffers before the first step. Every
 * tensor is checked before anything changes. Errors: CNN_ERR_MISSING, CNN_ERR_SHAPE, CNN_ERR_DTYPE,
 * CNN_ERR_NONFINITE, each naming the tensor; CNN_ERR_ARG for negative steps. */
cnn_status cnn_optim_load_state(cnn_optim *opt, const cnn_st *st, int64_t steps);

typedef enum cnn_schedule {
    CNN_SCHEDULE_CONSTANT = 0, CNN_SCHEDULE_STEP, CNN_SCHEDULE_COSINE, CNN_SCHEDULE_MULTISTEP,
    CNN_SCHEDULE_ONECYCLE
} cnn_schedule;

/* The learning rate for (0-based) epoch e of `epochs`: constant; StepLR, base·gamma^floor(e /
 * step_size) (multiplied once per boundary, as torch does); CosineAnnealingLR with T_max = epochs,
 * eta_min 0, base·(1 + cos(π·e/epochs))/2. NaN for arguments that make no schedule (e < 0,
 * step_size < 1, cosine with epochs < 1, multistep and onecycle: see cnn_schedule_at). */
double cnn_schedule_lr(cnn_schedule s, double base, int epoch, int epochs, int step_size, double gamma);

#define CNN_MAX_MILESTONES 64

/* A whole schedule, evaluated at any step of a run of `total_steps` steps of `steps_per_epoch`
 * each. `per_step` 0: the schedule's clock t is the epoch (step / steps_per_epoch), 1: the step;
 * onecycle always runs per step. With T the length of the run on that clock (epochs, or
 * total_steps):
 *   constant   base
 *   step       StepLR(step_size, gamma): base·gamma^floor(t / step_size)
 *   cosine     CosineAnnealingLR(T_max = T, eta_min 0): base·(1 + cos(π·t/T))/2
 *   multistep  MultiStepLR(milestones, gamma): base·gamma^(number of milestones ≤ t); the
 *              milestones strictly increasing, ≥ 1, at most CNN_MAX_MILESTONES
 *   onecycle   OneCycleLR(max_lr = base, total_steps; pct_start 0.3, anneal cos, div_factor 25,
 *              final_div_factor 1e4, three_phase False, cycle_momentum 0.85..0.95)
 * warmup N > 0 multiplies the value at step k by min(1, (k + 1)/N): torch's chained
 * LinearLR(start_factor = 1/N, end_factor 1, total_iters = N − 1), stepped per batch beside the
 * schedule's own scheduler (not with onecycle, which warms up itself). */
typedef struct cnn_schedule_config {
    cnn_schedule kind;
    double base;                  /* --lr; max_lr for onecycle */
    int per_step;
    int64_t total_steps, steps_per_epoch;
    int64_t step_size;            /* step */
    double gamma;                 /* step, multistep */
    int n_milestones;
    int64_t milestones[CNN_MAX_MILESTONES];
    int64_t warmup;
} cnn_schedule_config;

/* Checks a schedule. Errors: CNN_ERR_ARG naming the setting (base not finite or < 0, steps < 1,
 * step_size < 1, gamma not finite or ≤ 0, milestones not strictly increasing positive, warmup < 0
 * or with onecycle). */
cnn_status cnn_schedule_check(const cnn_schedule_config *s);

/* The learning rate of (0-based) step k of the run, in double; *momentum (may be NULL) gets
 * onecycle's momentum (SGD's momentum, Adam's beta1) for that step, and NAN for the other kinds
 * (which leave momentum alone). Equal to torch 1.13's schedulers to 1e-12 relative. NaN for a
 * schedule that cnn_schedule_check rejects, or k outside 0..total_steps − 1. */
double cnn_schedule_at(const cnn_schedule_config *s, int64_t k, double *momentum);

/* ---------------------------------------------------------------------------------------------
 * Checkpoints: a training run's state in one safetensors file, to resume it exactly
 *
 *     cnn_checkpoint_save("run.safetensors", net, opt, (const char *[]){"epoch", "3"}, 1);
 *     ...
 *     cnn_st *ck = NULL;       // a new process: the same model file, the same optimizer settings
 *     if (cnn_checkpoint_load("run.safetensors", net, opt, &ck) == CNN_OK) {
 *         int epoch = atoi(cnn_st_metadata(ck, "epoch"));
 *         cnn_st_free(ck);
 *     }
 * ------------------------------------------------------------------------------------------- */

/* The value of "format" in a checkpoint's __metadata__. */
#define CNN_CHECKPOINT_FORMAT "cnn-checkpoint-1"

/* Writes a checkpoint of `net` and, when opt is not NULL, of its optimizer (created over this net)
 * to `path`, atomically as cnn_st_save does. The file holds every parameter and buffer under its
 * state_dict name (so cnn_net_load_weights and PyTorch's load_state_dict, leaving out optim.*,
 * read it as weights), the optimizer's state under "optim.<param>.<buffer>" (cnn_optim_state),
 * and in __metadata__ "format" = CNN_CHECKPOINT_FORMAT, "step" = cnn_optim_step_count(opt) (when
 * opt is given), then the caller's n_meta pairs, meta[2i] = key and meta[2i+1] = value (UTF-8;
 * meta may be NULL when n_meta is 0). The library reads none of the caller's keys; the cnn tool
 * reads "model" (the model text) to know the net, and train --resume its own keys (cli/train.c).
 * The caller keeps every string. Errors: CNN_ERR_ARG (NULL path or net, an optimizer of another
 * net, a key "format" or "step", a key given twice, a NULL or non-UTF-8 string), CNN_ERR_IO,
 * CNN_ERR_NOMEM. */
cnn_status cnn_checkpoint_save(const char *path, const cnn_net *net, const cnn_optim *opt,
                               const char *const *meta, int n_meta);

/* Reads a checkpoint written by cnn_checkpoint_save (or cnn train) into `net`, every parameter and
 * buffer (none may be missing: cnn_net_load_weights with allow_missing 0), and when opt is not NULL
 * into the optimizer, its state and step count (cnn_optim_load_state with the file's "step"); opt
 * must be created over this net with the kind of optimizer that wrote the state. When out is not
 * NULL, *out receives the file, for its metadata (cnn_st_metadata): free it with cnn_st_free; on
 * error *out is NULL. The net is checked whole before any of it changes, then the optimizer: an
 * error in the optimizer's state leaves the net loaded and the optimizer as it was. Messages start
 * with the path. Errors: CNN_ERR_ARG (NULL path or net, an optimizer of another net), CNN_ERR_IO,
 * CNN_ERR_FORMAT (not safetensors, no format=cnn-checkpoint-1, a "step" that is not a count),
 * CNN_ERR_MISSING (a tensor, or the optimizer's "step" of a checkpoint saved without one),
 * CNN_ERR_SHAPE, CNN_ERR_DTYPE, CNN_ERR_NONFINITE, CNN_ERR_NOMEM. */
cnn_status cnn_checkpoint_load(const char *path, cnn_net *net, cnn_optim *opt, cnn_st **out);

/* ---------------------------------------------------------------------------------------------
 * Gradient check: every layer of a net, in double precision, by central differences.
 * ------------------------------------------------------------------------------------------- */

typedef struct cnn_gradcheck_row {
    int layer;                    /* layer index */
    char tensor[32];              /* "output" (fast against reference only), "input" ("input.K" for
                                   * layers of several inputs), or a parameter: "weight", "bias" */
    int64_t checked;              /* elements checked (all, or a seeded sample of large tensors) */
    double max_rel_err;           /* worst |analytic − numeric| / max(1, |analytic|, |numeric|) */
    double fast_rel_err;          /* fast float path against the reference: relative L2 error */
} cnn_gradcheck_row;

/* For each layer of `net`, in the net's mode (batch norm in training mode goes through the batch's
 * statistics; dropout uses a fixed mask), with its parameters as they are (their gradients are
 * overwritten, so call cnn_net_zero_grad before training again; buffers are left as they were) and
 * a batch of `n` random inputs
 * drawn from `seed`, computes L = Σ y·dy for a random dy, the analytic gradients of the reference
 * path, and central differences (step 1e-6) of the reference forward, all in double. At most
 * `max_checks` elements of each tensor are perturbed (a seeded sample; 0 means all). It also runs
 * the fast path on the same data. Fills up to `cap` rows and sets *n_rows to the number of rows.
 * Errors: CNN_ERR_ARG, CNN_ERR_NOMEM. */
cnn_status cnn_gradcheck(cnn_net *net, int n, uint64_t seed, int64_t max_checks,
                         cnn_gradcheck_row *rows, int cap, int *n_rows);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CNN_H */
