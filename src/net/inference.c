/* Inference mode (cnn_net_set_inference, in net.c, which calls the functions here): eval mode with batch norm folded into the convolution
 * before it, a residual add and a relu after it run inside the convolution, and the convolutions'
 * weights packed once.
 *
 * In eval mode batch norm is an affine map per channel, y = scale·x + shift (scale = γ/√(σ²+ε),
 * shift = β − μ·scale, from the running statistics), and a convolution is linear in its weights,
 * so the two are one convolution: W' = W·scale (each output channel's kernel scaled), b' =
 * b·scale + shift. That saves batch norm's pass over memory, and the fused add and relu theirs; what
 * remains is the convolution, whose weights are also packed for the direct kernels only when they
 * change instead of on every call.
 *
 * The plan is made once per net (which nodes fuse, where each convolution's folded form lives);
 * the folded forms are made on the first forward after cnn_net_set_inference, and again after
 * anything of the library that writes parameters or buffers (cnn_net_init, cnn_net_load_weights,
 * cnn_optim_step: inference_stale). They are a snapshot, as PyTorch's fuse_conv_bn_eval is: a
 * program that writes a parameter's array itself calls cnn_net_set_inference(net, 1) again (a
 * check of every tensor on every forward, by comparing it with a copy, cost 8% of ResNet-20's
 * forward at batch 1: more than the packing it saved). */
#include "net/net.h"
#include "base/error.h"
#include "layers/conv2d.h"

#include <stdlib.h>
#include <string.h>

/* Node i + 1, when it is of `kind`, reads value i + 1 as its only input, and nothing else reads
 * that value; else −1. */
static int sole_next_reader(const cnn_net *net, int i, cnn_layer_kind kind) {
    if (i + 1 >= net->nlayers) return -1;
    const node *nx = &net->nodes[i + 1];
    return nx->l.kind == kind && nx->l.nin == 1 && nx->from[0] == i + 1 && net->values[i + 1].consumers == 1 ? i + 1
                                                                                                           : -1;
}

/* Node i + 1, when it is an add of two inputs of which value i + 1 is one (read by it alone) and
 * the other is computed (not folded away) and another value; else −1. The residual add after a
 * block's second convolution: the convolution adds the shortcut as it writes its output. */
static int fusable_add(const cnn_net *net, int i) {
    if (i + 1 >= net->nlayers) return -1;
    const node *nx = &net->nodes[i + 1];
    if (nx->l.kind != CNN_LAYER_ADD || nx->l.nin != 2 || net->values[i + 1].consumers != 1) return -1;
    const int mine = nx->from[0] == i + 1 ? 0 : nx->from[1] == i + 1 ? 1 : -1;
    if (mine < 0) return -1;
    const int other = nx->from[1 - mine];
    return other != i + 1 && !net->values[other].folded ? i + 1 : -1;
}

static size_t max_channels(const cnn_net *net) {
    size_t m = 0;
    for (int i = 0; i < net->nlayers; i++)
        if ((size_t)net->nodes[i].l.oc > m) m = (size_t)net->nodes[i].l.oc;
    return m;
}

cnn_status inference_plan(cnn_net *net) {
    if (net->fold) return CNN_OK;
    size_t total = 0;
    for (int i = 0; i < net->nlayers; i++) {
        node *nd = &net->nodes[i];
        nd->fused = 0, nd->out = i, nd->fold_bn = -1, nd->fold_add_from = -1, nd->fold_at = 0;
    }
    for (int i = 0; i < net->nlayers; i++) {
        node *nd = &net->nodes[i];
        if (nd->l.kind != CNN_LAYER_CONV2D) continue;
        const int bn = sole_next_reader(net, i, CNN_LAYER_BATCHNORM2D);
        if (bn >= 0 && net->nodes[bn].l.o.norm.track) {
            nd->fold_bn = bn;
            net->nodes[bn].fused = 1;
            net->values[i + 1].folded = 1;
            nd->out = bn;
        }
        const int add = fusable_add(net, nd->out);
        if (add >= 0) {
            const node *a = &net->nodes[add];
            nd->fold_add_from = a->from[0] == nd->out + 1 ? a->from[1] : a->from[0];
            net->nodes[add].fused = 1;
            net->values[nd->out + 1].folded = 1;
            nd->out = add;
        }
        const int relu = sole_next_reader(net, nd->out, CNN_LAYER_RELU);
        if (relu >= 0) {
            net->nodes[relu].fused = 1;
            net->values[nd->out + 1].folded = 1;
            nd->out = relu;
        }
        nd->fold_at = total;
        total += conv2d_fold_floats(&nd->l, nd->fold_bn >= 0);
        total += total % 2;   /* the scale and shift doubles after the last */
    }
    /* Then one scale and one shift per channel, in double, for whichever folding runs. */
    float *f = malloc((total + 4 * max_channels(net)) * sizeof *f);
    if (!f) {
        for (int i = 0; i < net->nlayers; i++) net->nodes[i].fused = 0, net->nodes[i].out = i;
        for (int v = 0; v <= net->nlayers; v++) net->values[v].folded = 0;
        return cnn_fail(CNN_ERR_NOMEM, "cnn_net_set_inference: out of memory for the folded weights (%zu floats)",
                        total);
    }
    net->fold = f;
    net->fold_scratch = total;
    return CNN_OK;
}

void inference_refresh(cnn_net *net) {
    if (net->fold_made) return;
    double *scale = (double *)(net->fold + net->fold_scratch), *shift = scale + max_channels(net);
    for (int i = 0; i < net->nlayers; i++) {
        node *nd = &net->nodes[i];
        if (nd->l.kind != CNN_LAYER_CONV2D) continue;
        if (nd->fold_bn >= 0) batchnorm_eval_affine(&net->nodes[nd->fold_bn].l, scale, shift);
        conv2d_fold(&nd->l, nd->fold_bn >= 0 ? scale : NULL, shift, net->fold + nd->fold_at);
        nd->l.fold_relu = net->nodes[nd->out].l.kind == CNN_LAYER_RELU;
    }
    net->fold_made = 1;
}

void inference_stale(cnn_net *net) { net->fold_made = 0; }

/* Every convolution back to its own weights, packed per call, and no fused add or relu. */
void inference_leave(cnn_net *net) {
    for (int i = 0; i < net->nlayers; i++) {
        layer *l = &net->nodes[i].l;
        l->fold_w = l->fold_b = l->fold_wt = l->fold_add = NULL;
        l->fold_relu = 0;
    }
    net->inference = 0;
    net->fold_made = 0;
}
