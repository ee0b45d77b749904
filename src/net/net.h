/* Internal: the layout of a net, and the builder that makes one.
 *
 * A net is a list of nodes in topological order. Node i runs one layer: it reads the values
 * listed in from[] and writes value i + 1; value 0 is the net's input. Every value has a place in
 * the activation arena and in the gradient arena (batch-sized, cnn_net_reserve); every node's
 * tensors (parameters and buffers) have a place in the parameter arenas (at build time).
 *
 * Backward runs the nodes in reverse. A layer's backward writes the gradient of each of its inputs;
 * where one value feeds several nodes, its gradient is the sum of what each of them sends back
 * (note 000: at a fork, the gradients that meet add up). The first of them in backward order
 * writes the value's gradient in place (direct[k]); the others write into the scratch arena and
 * the net adds that in. Which is which is decided once, when the net is built.
 */
#ifndef CNN_NET_H
#define CNN_NET_H

/* The library's symbol table names these cnn_i_<name>, so that they cannot collide with a
 * program's own (README: "Use from C"); the code calls them by the short names. */
#define net_begin       cnn_i_net_begin
#define net_add         cnn_i_net_add
#define net_find        cnn_i_net_find
#define net_finish      cnn_i_net_finish
#define net_state_total cnn_i_net_state_total
#define optim_net       cnn_i_optim_net
#define inference_plan    cnn_i_inference_plan
#define inference_refresh cnn_i_inference_refresh
#define inference_leave   cnn_i_inference_leave
#define inference_stale   cnn_i_inference_stale

#include "cnn.h"
#include "layers/layer.h"

#define NET_MAX_NAME 100   /* bytes of a node's name, without the NUL */

typedef struct node {
    layer l;
    const char *name;                   /* name=, or the node's index, in the net's pool (set by net_finish) */
    size_t name_off;                    /* its offset in the pool, which may move until then */
    int from[LAYER_MAX_INPUTS];         /* value index of each input */
    unsigned char direct[LAYER_MAX_INPUTS];   /* backward writes input k's gradient in place */
    size_t scratch[LAYER_MAX_INPUTS];   /* else: per-sample offset of its slot in the scratch arena */
    size_t toff[LAYER_MAX_TENSORS];     /* tensor k's offset in the state layout (see below) */
    /* Inference mode (src/net/inference.c), planned once: */
    int fused;                          /* a batch norm or relu that runs inside the conv2d before it */
    int out;                            /* the node whose value this node's forward writes: itself,
                                         * or (a conv2d) the last node fused into it */
    int fold_bn;                        /* a conv2d: the batch norm folded into it, or −1 */
    int fold_add_from;                  /* a conv2d: the other input of the add fused into it, or −1 */
    size_t fold_at;                     /* a conv2d: its folded form in net->fold */
} node;

typedef struct value {
    value_shape s;
    int consumers;                      /* input slots that read it */
    int needs_grad;                     /* some parameter or the net's input lies upstream */
    int folded;                         /* not computed in inference mode (a fused node's input) */
    float *act, *grad;                  /* views of the batch arenas (act of value 0: the caller's x) */
    double *ract, *rgrad;               /* the reference path's */
} value;

struct cnn_net {
    int in_c, in_h, in_w;               /* per-sample input shape */
    int nlayers, layer_cap;
    node *nodes;
    value *values;                      /* nlayers + 1 */

    /* The state layout: every tensor of every node, trainable F32 first (the parameters, in
     * state_dict order), then F32 buffers, then I64 buffers; toff indexes it. The float arenas
     * hold the first two parts, the int64 arena the third. */
    int nparams;
    cnn_param *params;
    size_t param_total;                 /* floats of parameters (and of gradients) */
    float *pdata, *gdata;
    int nbuffers;
    cnn_tensor *buffers;
    size_t fbuf_total, ibuf_total;      /* F32 and I64 buffer elements */
    float *fbuf;
    int64_t *ibuf;
    char *pool;                         /* node and tensor names */
    size_t pool_len, pool_cap;

    /* Batch-sized arenas (cnn_net_reserve). */
    int cap;
    float *act, *grad, *ws, *keep, *scratch;
    size_t scratch_per_sample;

    /* The reference path's double arenas, laid out like the float ones. */
    cnn_path path;
    int ref_cap;
    double *ref;
    double *rstate, *rgrad, *rscratch;  /* every tensor (state layout), the parameters' gradients */

    int finished;                       /* net_finish has run */
    int no_input_grad;                  /* backward skips dL/dinput (cnn_net_set_input_grad) */
    int training;                       /* training mode (the default) or eval */
    int inference;                      /* inference mode (cnn_net_set_inference) */
    float *fold;                        /* its arena: per conv2d, its folded form (NULL before) */
    int fold_made;                      /* the folded forms are made (reset when they must be again) */
    size_t fold_scratch;                /* floats from net->fold to its scale and shift doubles */
    uint64_t seed, passes;              /* dropout's stream: the seed, and training forwards so far */
    int n;                              /* the batch of the last forward; 0 before any */
    const float *dy;                    /* the output's gradient in the last backward (the caller's) */
};

/* Building a net: the model text (src/io/model_text.c) is one way to describe a graph; ONNX
 * import will be another. Each call checks what it adds and names `line` in its messages.
 *
 * net_begin: an empty net whose input has shape (c, h, w).
 * net_add: a node of `kind` with `name` (NULL: its index), reading the values from[0..nin-1]
 *   (value indices, all below the node's own: 0 is the input, i + 1 is node i's output), with
 *   options keys[i]=vals[i]. Checks the inputs' count and shapes and the options (setup).
 * net_find: the value named `name` ("input" is value 0), or −1.
 * net_finish: checks that every value but the last is read, lays out the parameter arenas and
 *   names the tensors; the net is then ready for cnn_net_init and cnn_net_reserve.
 * On error the net stays valid and is freed with cnn_net_free. */
cnn_status net_begin(int c, int h, int w, cnn_net **out);
cnn_status net_add(cnn_net *net, int line, cnn_layer_kind kind, const char *name, const int *from, int nin,
                   char *const *keys, char *const *vals, int nopts);
int net_find(const cnn_net *net, const char *name);
cnn_status net_finish(cnn_net *net);

/* A node's tensor k in the float state (parameters or F32 buffers), and in a double copy laid out
 * like the state layout. */
size_t net_state_total(const cnn_net *net);

/* Inference mode (src/net/inference.c). inference_plan: chooses the nodes to fuse and lays out and
 * allocates net->fold (once; CNN_ERR_NOMEM). inference_refresh: before a forward in inference mode,
 * makes the conv2d's folded forms when they are not made yet (first forward, or stale). */
cnn_status inference_plan(cnn_net *net);
void inference_refresh(cnn_net *net);
/* Back to plain eval or training mode: every conv2d on its own weights again. */
void inference_leave(cnn_net *net);
/* The parameters or buffers changed (init, load, an optimizer step): fold again before the next
 * inference forward. */
void inference_stale(cnn_net *net);

/* The net an optimizer was created over (src/net/optim.c). */
const cnn_net *optim_net(const cnn_optim *opt);

#endif
