/* cnn explain network: note 001's summary algorithm, run for real on a model file and one input.
 *
 *   2. forward, layer by layer;
 *   3. the output error δ^L = ∂L/∂output (softmax cross-entropy for a flat output, else L = Σ output);
 *   4. for l = L, L−1, ..., 1: δ^(l−1) = the layer's backward formula applied to δ^l;
 *   5. each layer's parameter gradients from its δ and its input.
 * Step 4 is done here literally, one layer at a time: every layer is rebuilt as a net of its own
 * (from its line of the model file without name= and from=, its input shape, its parameters and
 * buffers), run forward on the input the whole net gave it, and backward on the δ that the layers
 * reading its output sent back. On a graph (name=, from=, add, concat) the layers are visited in
 * reverse file order, a reverse topological order, so every value's gradient is complete when the
 * layer that made it runs; a value read by several layers gets the sum of what they send back
 * (note 000's fork), and the output says so. add and concat, which take several inputs, are not
 * rebuilt (a net has one input): their backward is applied by its formula, add copying δ to every
 * input and concat splitting it by channels, and the whole net's gradient check covers them.
 * The result must equal the whole net's backward pass (reference path, and the fast path) for the
 * input, every parameter and every value in between, and each layer is also checked by central
 * differences (cnn_gradcheck, in double, on random inputs).
 */
#include "explain.h"
#include "layer_rebuild.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char network_usage[] =
    "usage: cnn explain network --model NET.cnn [--weights W.safetensors] [--init SEED]\n"
    "                           [--input X | --image PATH | --seed S] [--target CLASS]\n"
    "                           [--mode train|eval] [--format text|markdown]\n"
    "\n"
    "One backward pass through a model on one input, layer by layer from the last to the first, as\n"
    "note 001's summary algorithm goes: for each layer its shapes, the formula its backward pass\n"
    "uses, and the norms of the gradients it receives and sends on. Each layer is run on its own\n"
    "and the chain is checked against the whole net's backward pass and by central differences.\n"
    "Graphs (name=, from=, add, concat) work too: where a value is read by several layers, the\n"
    "gradients they send back add up, and the output shows each one and the sum.\n"
    "\n"
    "  --model NET.cnn     the model (see README, 'The model format')\n"
    "  --weights W         parameters from a safetensors file; else --init\n"
    "  --init SEED         PyTorch's default initialisation from SEED (default 1; with --weights, only\n"
    "                      the parameters W lacks)\n"
    "  --input X           the input as matrices, one per channel separated by '|'\n"
    "  --image PATH        the input from a PNG, JPEG, BMP or PGM image, resized to the model's input\n"
    "  --seed S            else random numbers in [0, 1) from seed S (default 1)\n"
    "  --target CLASS      for a flat output: the class of the softmax cross-entropy loss (default 0);\n"
    "                      an output with H x W uses L = sum of the output\n"
    "  --mode MODE         train (default: batch norm uses the batch's statistics) or eval (running\n"
    "                      statistics; dropout is the identity)\n"
    "\n"
    "examples:\n"
    "  cnn explain network --model models/lenet5.cnn --init 1 --seed 7 --target 3\n"
    "  cnn explain network --model models/resnet20.cnn --mode eval --seed 3\n";

/* PyTorch's and the notes' formula for each layer's backward pass, as text and as TeX; batch norm
 * and dropout depend on the mode. */
static void formula(cnn_layer_kind k, int training, const char **text, const char **tex) {
    switch (k) {
    case CNN_LAYER_CONV2D:
        *text = "∂L/∂X(c) = Σ_k fullconv(padded ∂L/∂O(k), rot180(W(k,c))); ∂L/∂W(k,c) = X(c) ⋆ ∂L/∂O(k); "
                "∂L/∂b(k) = Σ ∂L/∂O(k)   (notes 002-004; cnn explain conv)";
        *tex = "\\frac{\\partial L}{\\partial X^{(c)}} = \\sum_k \\mathrm{fullconv}\\big(\\frac{\\partial L}{\\partial "
               "O^{(k)}}, \\mathrm{rot180}(W^{(k,c)})\\big),\\ \\frac{\\partial L}{\\partial W^{(k,c)}} = X^{(c)} "
               "\\star \\frac{\\partial L}{\\partial O^{(k)}},\\ \\frac{\\partial L}{\\partial b^{(k)}} = \\sum "
               "\\frac{\\partial L}{\\partial O^{(k)}}";
        return;
    case CNN_LAYER_CONVTRANSPOSE2D:
        *text = "∂L/∂X(c) = Σ_k ∂L/∂O(k) ⋆ W(c,k), strided (a transposed convolution's backward is a convolution's "
                "forward); ∂L/∂W(c,k) = X(c) spread over ∂L/∂O(k)'s windows; ∂L/∂b(k) = Σ ∂L/∂O(k)";
        *tex = "\\frac{\\partial L}{\\partial X^{(c)}} = \\sum_k \\frac{\\partial L}{\\partial O^{(k)}} \\star_s "
               "W^{(c,k)},\\ \\frac{\\partial L}{\\partial W^{(c,k)}} = \\sum_{ij} x^{(c)}_{ij} \\cdot "
               "\\frac{\\partial L}{\\partial O^{(k)}}[\\text{window}_{ij}],\\ \\frac{\\partial L}{\\partial b^{(k)}} = \\sum "
               "\\frac{\\partial L}{\\partial O^{(k)}}";
        return;
    case CNN_LAYER_MAXPOOL2D:
        *text = "∂L/∂X = upsample(∂L/∂O) ⊙ mask of each window's maximum   (notes 001, 003; cnn explain maxpool)";
        *tex = "\\frac{\\partial L}{\\partial X} = \\mathrm{upsample}\\big(\\frac{\\partial L}{\\partial O}\\big) "
               "\\odot M_{\\max}";
        return;
    case CNN_LAYER_AVGPOOL2D:
        *text = "∂L/∂X = upsample(∂L/∂O) / the window's size (kh·kw)   (notes 001, 004; cnn explain avgpool)";
        *tex = "\\frac{\\partial L}{\\partial X} = \\mathrm{upsample}\\big(\\frac{\\partial L}{\\partial O}\\big) / "
               "(k_h k_w)";
        return;
    case CNN_LAYER_ADAPTIVEMAXPOOL2D:
        *text = "∂L/∂X = each ∂L/∂o_ij sent to the (first) maximum of its window, rows ⌊i·H/OH⌋ ≤ h < "
                "⌈(i+1)·H/OH⌉ (windows may overlap: what reaches one x adds up)";
        *tex = "\\frac{\\partial L}{\\partial x} = \\sum_{ij:\\ x = \\max \\text{ of window } ij} \\frac{\\partial "
               "L}{\\partial o_{ij}},\\ \\text{rows } \\lfloor iH/O_H \\rfloor \\le h < \\lceil (i+1)H/O_H \\rceil";
        return;
    case CNN_LAYER_ADAPTIVEAVGPOOL2D:
        *text = "∂L/∂X = each ∂L/∂o_ij shared equally over its window, rows ⌊i·H/OH⌋ ≤ h < ⌈(i+1)·H/OH⌉ "
                "(windows may overlap: what reaches one x adds up)";
        *tex = "\\frac{\\partial L}{\\partial x} = \\sum_{ij:\\ x \\in \\text{window } ij} "
               "\\frac{1}{|\\text{window}_{ij}|} \\frac{\\partial L}{\\partial o_{ij}}";
        return;
    case CNN_LAYER_RELU:
        *text = "∂L/∂X = ∂L/∂O ⊙ relu'(X), relu'(x) = 1 if x > 0 else 0   (note 004; cnn explain relu)";
        *tex = "\\frac{\\partial L}{\\partial X} = \\frac{\\partial L}{\\partial O} \\odot \\mathrm{relu}'(X)";
        return;
    case CNN_LAYER_LEAKYRELU:
        *text = "∂L/∂X = ∂L/∂O ⊙ (1 if x > 0 else the negative slope)";
        *tex = "\\frac{\\partial L}{\\partial X} = \\frac{\\partial L}{\\partial O} \\odot (x > 0\\ ?\\ 1 : a)";
        return;
    case CNN_LAYER_SIGMOID:
        *text = "∂L/∂X = ∂L/∂O ⊙ σ(X)(1 − σ(X))   (note 001, eq. 1; cnn explain sigmoid)";
        *tex = "\\frac{\\partial L}{\\partial X} = \\frac{\\partial L}{\\partial O} \\odot \\sigma(X)(1 - \\sigma(X))";
        return;
    case CNN_LAYER_TANH:
        *text = "∂L/∂X = ∂L/∂O ⊙ (1 − tanh²(X))";
        *tex = "\\frac{\\partial L}{\\partial X} = \\frac{\\partial L}{\\partial O} \\odot (1 - \\tanh^2 X)";
        return;
    case CNN_LAYER_GELU:
        *text = "∂L/∂X = ∂L/∂O ⊙ (Φ(X) + X·φ(X)), Φ and φ the normal distribution's CDF and density "
                "(approximate=tanh: the derivative of 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))))";
        *tex = "\\frac{\\partial L}{\\partial X} = \\frac{\\partial L}{\\partial O} \\odot \\big(\\Phi(X) + X "
               "\\varphi(X)\\big)";
        return;
    case CNN_LAYER_SILU:
        *text = "∂L/∂X = ∂L/∂O ⊙ σ(X)(1 + X(1 − σ(X))), the derivative of x·σ(x)";
        *tex = "\\frac{\\partial L}{\\partial X} = \\frac{\\partial L}{\\partial O} \\odot \\sigma(X)\\big(1 + "
               "X(1 - \\sigma(X))\\big)";
        return;
    case CNN_LAYER_SOFTMAX:
        *text = "∂L/∂x_c = y_c·(∂L/∂y_c − Σ_k ∂L/∂y_k·y_k), over the channels at each position";
        *tex = "\\frac{\\partial L}{\\partial x_c} = y_c \\big(\\frac{\\partial L}{\\partial y_c} - \\sum_k "
               "\\frac{\\partial L}{\\partial y_k} y_k\\big)";
        return;
    case CNN_LAYER_DROPOUT:
        *text = training ? "∂L/∂X = ∂L/∂O ⊙ mask/(1 − p), the same mask as the forward"
                         : "∂L/∂X = ∂L/∂O (eval mode: dropout is the identity)";
        *tex = training ? "\\frac{\\partial L}{\\partial X} = \\frac{\\partial L}{\\partial O} \\odot \\frac{M}{1 - p}"
                        : "\\frac{\\partial L}{\\partial X} = \\frac{\\partial L}{\\partial O}";
        return;
    case CNN_LAYER_BATCHNORM2D:
    case CNN_LAYER_BATCHNORM1D:
        if (training) {
            *text = "per channel: ∂L/∂x = (γ/σ)(∂L/∂y − mean(∂L/∂y) − x̂·mean(∂L/∂y·x̂)); ∂L/∂γ = Σ ∂L/∂y·x̂; "
                    "∂L/∂β = Σ ∂L/∂y   (training: the batch's statistics; cnn explain batchnorm)";
            *tex = "\\frac{\\partial L}{\\partial x} = \\frac{\\gamma}{\\sigma}\\Big(\\frac{\\partial L}{\\partial y} "
                   "- \\mathrm{mean}\\big(\\frac{\\partial L}{\\partial y}\\big) - \\hat{x}\\,\\mathrm{mean}\\big("
                   "\\frac{\\partial L}{\\partial y}\\hat{x}\\big)\\Big),\\ \\frac{\\partial L}{\\partial \\gamma} = "
                   "\\sum \\frac{\\partial L}{\\partial y}\\hat{x},\\ \\frac{\\partial L}{\\partial \\beta} = \\sum "
                   "\\frac{\\partial L}{\\partial y}";
        } else {
            *text = "per channel: ∂L/∂x = ∂L/∂y·γ/√(running_var + ε); ∂L/∂γ = Σ ∂L/∂y·x̂; ∂L/∂β = Σ ∂L/∂y   (eval: "
                    "the running statistics, a fixed linear map)";
            *tex = "\\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y} \\frac{\\gamma}{\\sqrt{"
                   "\\mathrm{running\\_var} + \\varepsilon}},\\ \\frac{\\partial L}{\\partial \\gamma} = \\sum "
                   "\\frac{\\partial L}{\\partial y}\\hat{x},\\ \\frac{\\partial L}{\\partial \\beta} = \\sum "
                   "\\frac{\\partial L}{\\partial y}";
        }
        return;
    case CNN_LAYER_ADD:
        *text = "∂L/∂x_k = ∂L/∂y for every input k: the add gate copies the gradient to each (note 000; cnn "
                "explain residual)";
        *tex = "\\frac{\\partial L}{\\partial x_k} = \\frac{\\partial L}{\\partial y} \\text{ for every input } k";
        return;
    case CNN_LAYER_CONCAT:
        *text = "∂L/∂x_k = the channels of ∂L/∂y that came from input k: concat's backward splits the gradient";
        *tex = "\\frac{\\partial L}{\\partial x_k} = \\frac{\\partial L}{\\partial y}[\\text{channels of } x_k]";
        return;
    case CNN_LAYER_FLATTEN:
        *text = "∂L/∂X = ∂L/∂O reshaped to C×H×W (the same numbers: flatten computes nothing)";
        *tex = "\\frac{\\partial L}{\\partial X} = \\mathrm{reshape}\\big(\\frac{\\partial L}{\\partial O}\\big)";
        return;
    case CNN_LAYER_LINEAR:
        *text = "∂L/∂x = ∂L/∂Out·Wᵀ; ∂L/∂W = xᵀ·∂L/∂Out; ∂L/∂b = ∂L/∂Out, with note 004's W = the "
                "library's weightᵀ   (note 004; cnn explain linear)";
        *tex = "\\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial Out} W^T,\\ \\frac{\\partial "
               "L}{\\partial W} = x^T \\frac{\\partial L}{\\partial Out},\\ \\frac{\\partial L}{\\partial b} = "
               "\\frac{\\partial L}{\\partial Out}";
        return;
    default:
        *text = *tex = "?";
    }
}

static double norm(const double *v, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += v[i] * v[i];
    return sqrt(s);
}

static void shape_str(char *buf, size_t cap, const int chw[3], int flat) {
    if (flat) snprintf(buf, cap, "[%d]", chw[0]);
    else snprintf(buf, cap, "[%d, %d, %d]", chw[0], chw[1], chw[2]);
}

/* splitmix64: the random input. */
static double uniform(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

/* The model file's text, for the layers' lines: all of it, as cnn_net_load read it. */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t n = 0, cap = 1 << 16;
    char *t = malloc(cap + 1);
    for (size_t got; t && (got = fread(t + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *bigger = cap <= ((size_t)1 << 40) ? realloc(t, 2 * cap + 1) : NULL;
            if (!bigger) free(t);
            t = bigger, cap *= 2;
        }
    }
    const int bad = ferror(f);
    fclose(f);
    if (t && bad) free(t), t = NULL;
    if (t) t[n] = '\0';
    return t;
}

typedef struct layer_row {
    double n_dout, n_dw, n_db, fd_err;
    int has_w, has_b;
    int64_t fd_checked;
} layer_row;

static size_t value_elems(const cnn_net *net, int v) {
    int chw[3];
    cnn_net_value_shape(net, v, chw, NULL);
    return (size_t)chw[0] * chw[1] * chw[2];
}

static void value_shape_str(const cnn_net *net, int v, char *buf, size_t cap) {
    int chw[3], flat;
    cnn_net_value_shape(net, v, chw, &flat);
    shape_str(buf, cap, chw, flat);
}

/* Every parameter and buffer of `src` into `dst`, a net of the same model. */
static void copy_state(cnn_net *dst, const cnn_net *src) {
    for (int i = 0; i < cnn_net_param_count(src); i++) {
        const cnn_param a = cnn_net_param(src, i), b = cnn_net_param(dst, i);
        memcpy(b.data, a.data, (size_t)a.numel * sizeof *a.data);
    }
    for (int i = 0; i < cnn_net_buffer_count(src); i++) {
        const cnn_tensor a = cnn_net_buffer(src, i), b = cnn_net_buffer(dst, i);
        memcpy(b.data, a.data, (size_t)cnn_tensor_numel(&a) * cnn_dtype_size(a.dtype));
    }
}

/* The layers that read value v, and the norm of what each sent back: "layer 3: 1.2, layer 9: 0.5". */
static void readers_str(const cnn_net *net, int v, const double *sent, const size_t *soff, char *buf, size_t cap) {
    size_t at = 0;
    buf[0] = '\0';
    for (int j = v > 0 ? v : 0; j < cnn_net_layer_count(net) && at < cap; j++)
        for (int k = 0; k < cnn_net_layer_input_count(net, j) && at < cap; k++)
            if (cnn_net_layer_input(net, j, k) == v)
                at += (size_t)snprintf(buf + at, cap - at, "%s‖from layer %d (%s)‖ = %.6g", at ? ", " : "", j,
                                       cnn_layer_kind_name(cnn_net_layer_kind(net, j)), sent[soff[j] + (size_t)k]);
}

/* "a fork: ..." for a value that several layers read: its gradient is the sum of theirs. */
static void print_fork(const ex *e, const cnn_net *net, int v, int readers, const double *sent, const size_t *soff,
                       double sum) {
    char list[1200];
    readers_str(net, v, sent, soff, list, sizeof list);
    const char *name = cnn_net_value_name(net, v);
    if (e->fmt == EX_MARKDOWN)
        printf("A fork: `%s` is read %d times, so ∂L/∂%s is the sum of what those layers send back (note 000: the "
               "gradients that meet at a fork add up): %s; ‖sum‖ = %.6g.\n\n",
               name, readers, name, list, sum);
    else
        printf("    a fork: %s is read %d times, so ∂L/∂%s is the sum of what those layers send back (note 000):\n"
               "      %s; ‖sum‖ = %.6g\n",
               name, readers, name, list, sum);
}

int explain_network(ex *e, int argc, char **argv) {
    const char *model = NULL, *weights = NULL, *init = NULL, *input = NULL, *image = NULL, *seed_s = NULL,
               *target_s = NULL, *mode_s = NULL;
    const ex_opt opts[] = {{"--model", &model}, {"--weights", &weights}, {"--init", &init},       {"--input", &input},
                           {"--image", &image}, {"--seed", &seed_s},     {"--target", &target_s}, {"--mode", &mode_s},
                           {NULL, NULL}};
    int rc = ex_args(e, argc, argv, opts, network_usage);
    if (rc >= 0) return rc;
    if (!model) return cli_usage_error("explain network", "--model is required");
    if ((input != NULL) + (image != NULL) + (seed_s != NULL) > 1) {
        cli_error("explain", "network: give one of --input, --image and --seed");
        return EXIT_BAD_INPUT;
    }
    unsigned long long init_seed = 1, seed = 1;
    if (init && !cli_parse_u64(init, &init_seed)) {
        cli_error("explain", "--init %s: expected a non-negative integer seed", init);
        return EXIT_BAD_INPUT;
    }
    if (seed_s && !cli_parse_u64(seed_s, &seed)) {
        cli_error("explain", "--seed %s: expected a non-negative integer seed", seed_s);
        return EXIT_BAD_INPUT;
    }
    int training = 1;
    if (mode_s && !strcmp(mode_s, "eval")) training = 0;
    else if (mode_s && strcmp(mode_s, "train")) {
        cli_error("explain", "--mode %s: expected train or eval", mode_s);
        return EXIT_BAD_INPUT;
    }

    cnn_net *net = NULL, *fast = NULL, *one = NULL, *gcn = NULL;
    cnn_st *wst = NULL;
    char *text = NULL, *line = NULL;
    float *x = NULL, *dlast = NULL, *fdy = NULL;
    double *chain_g = NULL, *dval = NULL, *dcur = NULL, *sent = NULL, *whole[2] = {NULL, NULL}, *mine = NULL;
    size_t *voff = NULL, *soff = NULL;
    int *readers = NULL;
    layer_row *rows = NULL;
    cnn_gradcheck_row *gc = NULL, *gcw = NULL;
    int ngcw = -1;
    cnn_status st;
    rc = EXIT_BAD_INPUT;

    if ((st = cnn_net_load(model, &net))) goto fail;
    if ((!weights || init) && (st = cnn_net_init(net, init_seed))) goto fail;
    if (weights && ((st = cnn_st_load(weights, &wst)) || (st = cnn_net_load_weights(net, wst, init != NULL)))) goto fail;
    cnn_net_set_training(net, training);
    if (!(text = read_text(model))) {
        cli_error("explain", "%s: cannot read", model);
        goto done;
    }
    const int nl = cnn_net_layer_count(net), np = cnn_net_param_count(net), nv = cnn_net_value_count(net);
    for (int i = 0; i < nl; i++)
        if (training && cnn_net_layer_kind(net, i) == CNN_LAYER_DROPOUT) {
            cli_error("explain", "network: line %d: dropout in training mode draws a random mask in each forward, "
                                 "which a layer run on its own cannot repeat: use --mode eval (dropout is then the "
                                 "identity), or 'cnn grad --activations' for the whole net's gradients",
                      cnn_net_layer_line(net, i));
            goto done;
        }
    /* The graph: who reads each value, and whether the model is more than a chain. */
    readers = calloc((size_t)nv, sizeof *readers);
    soff = calloc((size_t)nl + 1, sizeof *soff);
    voff = calloc((size_t)nv + 1, sizeof *voff);
    rows = calloc((size_t)nl + 1, sizeof *rows);
    if (!readers || !soff || !voff || !rows) goto nomem;
    int graph = 0, multi = 0;
    for (int i = 0; i < nl; i++) {
        const int k = cnn_net_layer_input_count(net, i);
        soff[i + 1] = soff[i] + (size_t)k;
        multi |= k > 1;
        graph |= k != 1 || cnn_net_layer_input(net, i, 0) != i;
        for (int j = 0; j < k; j++) readers[cnn_net_layer_input(net, i, j)]++;
    }
    for (int v = 0; v < nv; v++) {
        graph |= readers[v] > 1;
        voff[v + 1] = voff[v] + value_elems(net, v);
    }
    int in[3], out[3];
    cnn_net_input_shape(net, in);
    cnn_net_output_shape(net, out);
    const size_t nin = (size_t)in[0] * in[1] * in[2], nout = (size_t)out[0] * out[1] * out[2];
    const int flat_out = cnn_net_output_is_flat(net);

    /* The fast path's net, with the same parameters and buffers (before any forward updates them). */
    if ((st = cnn_net_load(model, &fast))) goto fail;
    copy_state(fast, net);
    cnn_net_set_training(fast, training);

    /* The input. */
    x = malloc(nin * sizeof *x);
    if (!x) goto nomem;
    char source[320];
    if (input) {
        double *m = malloc((size_t)EX_MAX_STACK * EX_MAX_DIM * EX_MAX_DIM * sizeof *m);
        int count = 0, r = 0, c = 0;
        const int ok = m && ex_stack("--input", input, m, EX_MAX_STACK, &count, &r, &c);
        if (ok && (count != in[0] || r != in[1] || c != in[2]))
            cli_error("explain", "--input is %d matri%s of %dx%d, but %s takes %d of %dx%d (one per channel)", count,
                      count == 1 ? "x" : "ces", r, c, model, in[0], in[1], in[2]);
        else if (ok)
            for (size_t i = 0; i < nin; i++) x[i] = (float)m[i];
        const int good = ok && count == in[0] && r == in[1] && c == in[2];
        free(m);
        if (!good) goto done;
        snprintf(source, sizeof source, "given by --input");
    } else if (image) {
        if ((st = cnn_image_load(image, in[0], in[1], in[2], x))) goto fail;
        snprintf(source, sizeof source, "%.200s, scaled to [0, 1]", image);
    } else {
        uint64_t s = seed;
        for (size_t i = 0; i < nin; i++) x[i] = (float)uniform(&s);
        snprintf(source, sizeof source, "random numbers in [0, 1) from seed %llu", seed);
    }

    /* The whole net, reference path: forward, loss, backward. */
    if ((st = cnn_net_set_path(net, CNN_PATH_REFERENCE)) || (st = cnn_net_reserve(net, 1))) goto fail;
    if ((st = cnn_net_forward(net, x, 1))) {
        rc = cli_report("explain", st);
        if (st == CNN_ERR_SHAPE && training)
            cli_error("explain", "network: the pass runs one sample; batch norm in training mode needs more than one "
                                 "value per channel: use --mode eval (running statistics)");
        goto done;
    }
    dlast = malloc(nout * sizeof *dlast);
    if (!dlast) goto nomem;
    float loss = 0.0f;
    long long target = 0;
    if (flat_out) {
        if (target_s) {
            unsigned long long t;
            if (!cli_parse_u64(target_s, &t) || t >= (unsigned long long)out[0]) {
                cli_error("explain", "--target %s: expected a class from 0 to %d", target_s, out[0] - 1);
                goto done;
            }
            target = (long long)t;
        }
        const int64_t t64 = target;
        if ((st = cnn_loss_cross_entropy(cnn_net_output(net), &t64, 1, out[0], &loss, dlast))) goto fail;
    } else {
        if (target_s) {
            cli_error("explain", "--target needs a flat output (end the model with flatten or linear)");
            goto done;
        }
        for (size_t i = 0; i < nout; i++) loss += cnn_net_output(net)[i], dlast[i] = 1.0f;
    }
    cnn_net_zero_grad(net);
    if ((st = cnn_net_backward(net, dlast))) goto fail;

    /* The fast path on the same input and δ^L. */
    if ((st = cnn_net_reserve(fast, 1)) || (st = cnn_net_forward(fast, x, 1))) goto fail;
    cnn_net_zero_grad(fast);
    if ((st = cnn_net_backward(fast, dlast))) goto fail;

    /* What the whole net computed, on both paths: ∂L/∂input, the parameters' gradients and every value's
     * gradient between the input and the output. */
    size_t ptotal = 0;
    for (int i = 0; i < np; i++) ptotal += (size_t)cnn_net_param(net, i).numel;
    const size_t ninner = voff[nv - 1] - voff[1], total = nin + ptotal + ninner;
    whole[0] = malloc((total + 1) * sizeof *whole[0]);
    whole[1] = malloc((total + 1) * sizeof *whole[1]);
    mine = malloc((total + 1) * sizeof *mine);
    if (!whole[0] || !whole[1] || !mine) goto nomem;
    for (int pass = 0; pass < 2; pass++) {
        const cnn_net *w = pass ? fast : net;
        double *d = whole[pass];
        size_t at = 0;
        for (size_t j = 0; j < nin; j++) d[at++] = cnn_net_grad_input(w)[j];
        for (int p = 0; p < np; p++) {
            const cnn_param a = cnn_net_param(w, p);
            for (int64_t j = 0; j < a.numel; j++) d[at++] = a.grad[j];
        }
        for (int v = 1; v < nv - 1; v++) {
            const float *g = cnn_net_value_grad(w, v);
            for (size_t j = 0; j < voff[v + 1] - voff[v]; j++) d[at++] = g ? g[j] : NAN;
        }
    }

    ex_title(e, "one backward pass through %s, layer by layer (note 001's summary algorithm)", model);
    char shape[64];
    shape_str(shape, sizeof shape, in, 0);
    ex_say(e, "The input %s: %s. Parameters: %s. Mode: %s.", shape, source,
           weights ? (init ? "from the weights file, the missing ones from PyTorch's default initialisation"
                           : "from the weights file")
                   : "PyTorch's default initialisation",
           training ? "training (batch norm uses the batch's statistics; --mode eval for the running ones)"
                    : "eval (batch norm uses its running statistics, dropout is the identity)");
    if (graph)
        ex_say(e, "The model is a graph (lines with name= and from=): backward visits the layers in reverse file "
                  "order, which is a reverse topological order, so a value's gradient is complete before the layer "
                  "that made it runs. Where a value is read more than once, the gradients sent back to it add up "
                  "(note 000; cnn explain residual shows one fork by hand).");

    ex_heading(e, "1. forward (001, step 2): each layer's output is %s", graph ? "read by the layers its name is "
                                                                                "given to" : "the next one's input");
    int wkind = 4, wname = 4, wreads = 5;
    for (int i = 0; i < nl; i++) {
        const int kl = (int)strlen(cnn_layer_kind_name(cnn_net_layer_kind(net, i)));
        const int nlen = (int)strlen(cnn_net_layer_name(net, i));
        int rl = 0;
        for (int k = 0; k < cnn_net_layer_input_count(net, i); k++)
            rl += (int)strlen(cnn_net_value_name(net, cnn_net_layer_input(net, i, k))) + (k ? 1 : 0);
        if (kl > wkind) wkind = kl;
        if (nlen > wname) wname = nlen;
        if (rl > wreads) wreads = rl;
    }
    if (e->fmt == EX_MARKDOWN)
        printf(graph ? "| layer | line | kind | name | reads | input | output | ‖output‖ |\n"
                       "|--:|--:|---|---|---|---|---|--:|\n"
                     : "| layer | line | kind | input | output | ‖output‖ |\n|--:|--:|---|---|---|--:|\n");
    else if (graph)
        printf("  %-5s %-5s %-*s %-*s %-*s %-14s %-14s %12s\n", "layer", "line", wkind, "kind", wname, "name", wreads,
               "reads", "input", "output", "‖output‖");
    else printf("  %-5s %-5s %-*s %-14s %-14s %12s\n", "layer", "line", wkind, "kind", "input", "output", "‖output‖");
    for (int i = 0; i < nl; i++) {
        char si[64], so[64], reads[600];
        value_shape_str(net, cnn_net_layer_input(net, i, 0), si, sizeof si);
        value_shape_str(net, i + 1, so, sizeof so);
        size_t at = 0;
        reads[0] = '\0';
        for (int k = 0; k < cnn_net_layer_input_count(net, i) && at < sizeof reads; k++)
            at += (size_t)snprintf(reads + at, sizeof reads - at, "%s%s", k ? "," : "",
                                   cnn_net_value_name(net, cnn_net_layer_input(net, i, k)));
        const size_t n = value_elems(net, i + 1);
        const float *y = cnn_net_layer_output(net, i);
        double s = 0.0;
        for (size_t j = 0; j < n; j++) s += (double)y[j] * y[j];
        const char *kind = cnn_layer_kind_name(cnn_net_layer_kind(net, i)), *name = cnn_net_layer_name(net, i);
        const int line = cnn_net_layer_line(net, i);
        if (e->fmt == EX_MARKDOWN && graph)
            printf("| %d | %d | %s | `%s` | `%s` | %s | %s | %.6g |\n", i, line, kind, name, reads, si, so, sqrt(s));
        else if (e->fmt == EX_MARKDOWN)
            printf("| %d | %d | %s | %s | %s | %.6g |\n", i, line, kind, si, so, sqrt(s));
        else if (graph)
            printf("  %-5d %-5d %-*s %-*s %-*s %-14s %-14s %12.6g\n", i, line, wkind, kind, wname, name, wreads, reads,
                   si, so, sqrt(s));
        else printf("  %-5d %-5d %-*s %-14s %-14s %12.6g\n", i, line, wkind, kind, si, so, sqrt(s));
    }
    if (e->fmt == EX_MARKDOWN) printf("\n");

    ex_heading(e, "2. the output error (001, step 3): δ^L = ∂L/∂output");
    double nd = 0.0;
    for (size_t i = 0; i < nout; i++) nd += (double)dlast[i] * dlast[i];
    if (flat_out)
        ex_say(e, "Softmax cross-entropy against class %lld: L = %.6g, and δ^L = softmax(output) − onehot(%lld), with "
                  "norm ‖δ^L‖ = %.6g.",
               target, (double)loss, target, sqrt(nd));
    else
        ex_say(e, "The output has a height and width, so L = Σ output (%.6g) and δ^L = 1 everywhere, ‖δ^L‖ = %.6g.",
               (double)loss, sqrt(nd));

    ex_heading(e, "3. backward (001, steps 4 and 5): from the last layer to the first, each layer on its own");
    ex_say(e, "Each layer is rebuilt as a net of its own from its line of %s%s, run forward on the input the whole "
              "net gave it, and backward on the δ that %s sent back.%s",
           model, graph ? " (without its name= and from=)" : "", graph ? "the layers reading its output" :
           "the layer after it", multi ? " add and concat, which take several inputs, are applied by their formulas "
                                         "here: add copies δ to each input, concat splits it by channels." : "");
    size_t maxe = 1;
    for (int v = 0; v < nv; v++)
        if (voff[v + 1] - voff[v] > maxe) maxe = voff[v + 1] - voff[v];
    dval = calloc(voff[nv] + 1, sizeof *dval);
    dcur = malloc(maxe * sizeof *dcur);
    fdy = malloc(maxe * sizeof *fdy);
    sent = calloc(soff[nl] + 1, sizeof *sent);
    chain_g = calloc(ptotal ? ptotal : 1, sizeof *chain_g);
    gc = calloc(16, sizeof *gc);
    if (!dval || !dcur || !fdy || !sent || !chain_g || !gc) goto nomem;
    for (size_t i = 0; i < nout; i++) dval[voff[nv - 1] + i] = dlast[i];
    ex_check c;
    ex_check_init(&c, "", NULL);
    snprintf(c.label[EX_BY_REF], sizeof c.label[0], "the whole net's backward, reference path");
    snprintf(c.label[EX_BY_FAST], sizeof c.label[0], "the whole net's backward, fast path (float)");
    snprintf(c.label[EX_BY_FD], sizeof c.label[0], "central differences, each layer (cnn_gradcheck)");
    snprintf(c.rule, sizeof c.rule, "The chain's numbers (note 001's loop) are compared with each of the whole net's "
                                      "backward passes: a number agrees when |Δ| ≤ tolerance × max(1, |its value|); "
                                      "for central differences the column holds cnn_gradcheck's relative error.");
    snprintf(c.mine, sizeof c.mine, "note 001's loop (one layer at a time)");
    for (int i = nl - 1; i >= 0; i--) {
        layer_row *r = &rows[i];
        const cnn_layer_kind kind = cnn_net_layer_kind(net, i);
        const int nk = cnn_net_layer_input_count(net, i), v0 = cnn_net_layer_input(net, i, 0);
        const char *lname = cnn_net_layer_name(net, i);
        const double *delta = dval + voff[i + 1];
        const size_t no = voff[i + 2] - voff[i + 1];
        free(line);
        if (!(line = model_line(text, cnn_net_layer_line(net, i)))) goto nomem;
        r->n_dout = norm(delta, no);

        /* The header: the layer, what it reads, the shapes. */
        char shapes[400], reads[700];
        size_t at = 0, rat = 0;
        shapes[0] = reads[0] = '\0';
        for (int k = 0; k < nk; k++) {
            char sk[64];
            const int vk = cnn_net_layer_input(net, i, k);
            value_shape_str(net, vk, sk, sizeof sk);
            if (at < sizeof shapes) at += (size_t)snprintf(shapes + at, sizeof shapes - at, "%s%s", k ? ", " : "", sk);
            const char *sep = k == 0 ? "" : k == nk - 1 ? " and " : ", ";
            if (rat < sizeof reads)
                rat += (size_t)snprintf(reads + rat, sizeof reads - rat, "%s%s", sep, cnn_net_value_name(net, vk));
        }
        char so[64];
        value_shape_str(net, i + 1, so, sizeof so);
        if (e->fmt == EX_MARKDOWN) {
            printf("**layer %d** (line %d): `%s`, %s → %s\n\n", i, cnn_net_layer_line(net, i), line, shapes, so);
        } else if (graph) {
            char index[16], named[160] = "";
            snprintf(index, sizeof index, "%d", i);
            if (strcmp(lname, index)) snprintf(named, sizeof named, ", named %.140s", lname);
            printf("\n  layer %d, line %d: %s%s, reads %s: %s → %s\n", i, cnn_net_layer_line(net, i),
                   cnn_layer_kind_name(kind), named, reads, shapes, so);
        } else {
            printf("\n  layer %d, line %d: %s, %s → %s\n", i, cnn_net_layer_line(net, i), cnn_layer_kind_name(kind),
                   shapes, so);
        }
        if (readers[i + 1] > 1) print_fork(e, net, i + 1, readers[i + 1], sent, soff, r->n_dout);

        char norms[900];
        int nat = snprintf(norms, sizeof norms, "‖∂L/∂out‖ = %.6g", r->n_dout);
        if (nk > 1) {
            /* add and concat: their backward by formula. */
            size_t off = 0;
            for (int k = 0; k < nk; k++) {
                const int vk = cnn_net_layer_input(net, i, k);
                const size_t ek = voff[vk + 1] - voff[vk];
                const double *part = kind == CNN_LAYER_ADD ? delta : delta + off;
                if (kind == CNN_LAYER_CONCAT) off += ek;
                else if (kind != CNN_LAYER_ADD) {
                    cli_error("explain", "internal error: layer %d (%s) has %d inputs; explain network knows only add "
                                         "and concat", i, cnn_layer_kind_name(kind), nk);
                    rc = 1;
                    goto done;
                }
                for (size_t j = 0; j < ek; j++) dval[voff[vk] + j] += part[j];
                sent[soff[i] + (size_t)k] = norm(part, ek);
                if (nat < (int)sizeof norms)
                    nat += snprintf(norms + nat, sizeof norms - (size_t)nat, ", ‖∂L/∂in.%d‖ = %.6g", k,
                                    sent[soff[i] + (size_t)k]);
            }
            /* Central differences: the whole net's gradient check, which checks every layer on its own. */
            if (ngcw < 0) {
                int cap = 4;
                for (int j = 0; j < nl; j++) cap += cnn_net_layer_input_count(net, j) + 3;
                gcw = calloc((size_t)cap, sizeof *gcw);
                if (!gcw) goto nomem;
                if ((st = cnn_net_load(model, &gcn))) goto fail;
                copy_state(gcn, net);
                cnn_net_set_training(gcn, training);
                if ((st = cnn_gradcheck(gcn, 1, seed, 64, gcw, cap, &ngcw))) goto fail;
            }
            for (int g = 0; g < ngcw; g++)
                if (gcw[g].layer == i && strcmp(gcw[g].tensor, "output")) {
                    r->fd_checked += gcw[g].checked;
                    if (gcw[g].max_rel_err > r->fd_err || isnan(gcw[g].max_rel_err)) r->fd_err = gcw[g].max_rel_err;
                }
        } else {
            int me;
            cnn_net_free(one);
            one = NULL;
            if ((st = rebuild_layer(text, net, i, training, &one, &me))) {
                cli_report("explain", st);
                rc = 1;
                goto done;
            }
            const size_t ni = voff[v0 + 1] - voff[v0];
            for (size_t j = 0; j < no; j++) fdy[j] = (float)delta[j];
            cnn_net_zero_grad(one);
            if ((st = cnn_net_forward(one, cnn_net_value_data(net, v0), 1)) || (st = cnn_net_backward(one, fdy)))
                goto fail;
            const float *gi = cnn_net_grad_input(one);
            for (size_t j = 0; j < ni; j++) dcur[j] = gi[j], dval[voff[v0] + j] += gi[j];
            sent[soff[i]] = norm(dcur, ni);
            if (nat < (int)sizeof norms)
                nat += snprintf(norms + nat, sizeof norms - (size_t)nat, ", ‖∂L/∂in‖ = %.6g", sent[soff[i]]);
            size_t poff = 0;
            const size_t ll = strlen(lname);
            for (int p = 0; p < np; p++) {
                const cnn_param a = cnn_net_param(net, p);
                if (a.layer == i) {
                    char name[300];
                    snprintf(name, sizeof name, "%d.%s", me, a.name + ll + 1);
                    const cnn_param b = cnn_net_param_by_name(one, name);
                    double s = 0.0;
                    for (int64_t j = 0; j < a.numel; j++)
                        chain_g[poff + (size_t)j] = b.grad[j], s += (double)b.grad[j] * b.grad[j];
                    if (strstr(a.name + ll, "weight")) r->has_w = 1, r->n_dw = sqrt(s);
                    else r->has_b = 1, r->n_db = sqrt(s);
                }
                poff += (size_t)a.numel;
            }
            /* Central differences of this layer, in double, on random inputs (its parameters as they are). */
            int ngc = 0;
            if ((st = cnn_gradcheck(one, 1, seed + (uint64_t)i, 64, gc, 16, &ngc))) goto fail;
            for (int g = 0; g < ngc; g++)
                if (gc[g].layer == me && strcmp(gc[g].tensor, "output")) {
                    r->fd_checked += gc[g].checked;
                    if (gc[g].max_rel_err > r->fd_err || isnan(gc[g].max_rel_err)) r->fd_err = gc[g].max_rel_err;
                }
        }
        if (r->has_w && nat < (int)sizeof norms)
            nat += snprintf(norms + nat, sizeof norms - (size_t)nat, ", ‖∂L/∂weight‖ = %.6g", r->n_dw);
        if (r->has_b && nat < (int)sizeof norms)
            snprintf(norms + nat, sizeof norms - (size_t)nat, ", ‖∂L/∂bias‖ = %.6g", r->n_db);
        c.count[EX_BY_FD] += r->fd_checked;
        if (r->fd_err > c.maxdiff[EX_BY_FD] || isnan(r->fd_err)) c.maxdiff[EX_BY_FD] = r->fd_err;
        if (!(r->fd_err <= c.tol[EX_BY_FD]) && !c.failed[EX_BY_FD]++)
            snprintf(c.first_fail[EX_BY_FD], sizeof c.first_fail[0],
                     "layer %d (%s): central differences differ from its backward pass by %.3g (relative)", i,
                     cnn_layer_kind_name(kind), r->fd_err);

        const char *ft, *ftex;
        formula(kind, training, &ft, &ftex);
        if (e->fmt == EX_MARKDOWN)
            printf("$$%s$$\n\n%s; central differences: max relative error %.3g over %lld numbers.\n\n", ftex, norms,
                   r->fd_err, (long long)r->fd_checked);
        else
            printf("    %s\n    %s\n    central differences: max relative error %.3g over %lld numbers\n", ft, norms,
                   r->fd_err, (long long)r->fd_checked);
    }
    if (readers[0] > 1) {
        if (e->fmt == EX_TEXT) printf("\n  the input, %s\n", shape);
        print_fork(e, net, 0, readers[0], sent, soff, norm(dval, nin));
    }

    /* The chain against the whole net: ∂L/∂input, every parameter gradient and every value's gradient. */
    size_t at = 0;
    for (size_t j = 0; j < nin; j++) mine[at++] = dval[j];
    memcpy(mine + at, chain_g, ptotal * sizeof *mine);
    at += ptotal;
    memcpy(mine + at, dval + voff[1], ninner * sizeof *mine);
    for (int pass = 0; pass < 2; pass++)
        ex_check_cmp(&c, pass ? EX_BY_FAST : EX_BY_REF, "∂L/∂input, the parameter gradients and the values' gradients",
                     mine, whole[pass], NULL, (int)total, NULL);
    char what[200];
    snprintf(what, sizeof what, "∂L/∂input, %zu parameter gradients and %zu gradients of the values between the %d "
             "layers", ptotal, ninner, nl);
    rc = ex_check_report(e, &c,
                         "The chain above (one layer at a time) against the whole net's backward pass on both paths "
                         "(the input's, the parameters' and every value's gradient); each layer also against central "
                         "differences of its forward pass, in double on random inputs.",
                         what);
    goto done;

nomem:
    cli_error("explain", "out of memory");
    rc = 1;
    goto done;
fail:
    rc = cli_report("explain", st);
done:
    free(text);
    free(line);
    free(x);
    free(dlast);
    free(fdy);
    free(chain_g);
    free(dval);
    free(dcur);
    free(sent);
    free(whole[0]);
    free(whole[1]);
    free(mine);
    free(voff);
    free(soff);
    free(readers);
    free(rows);
    free(gc);
    free(gcw);
    cnn_st_free(wst);
    cnn_net_free(one);
    cnn_net_free(gcn);
    cnn_net_free(fast);
    cnn_net_free(net);
    return rc;
}
