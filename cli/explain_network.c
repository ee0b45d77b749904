/* cnn explain network: note 001's summary algorithm, run for real on a model file and one input.
 *
 *   2. forward, layer by layer;
 *   3. the output error δ^L = ∂L/∂output (softmax cross-entropy for a flat output, else L = Σ output);
 *   4. for l = L, L−1, ..., 1: δ^(l−1) = the layer's backward formula applied to δ^l;
 *   5. each layer's parameter gradients from its δ and its input.
 * Step 4 is done here literally, one layer at a time: every layer is rebuilt as a net of its own
 * (from its line of the model file, its input shape and its parameters), run forward on the input
 * the whole net gave it, and backward on the δ the layer after it sent back. The result must equal
 * the whole net's backward pass (reference path, and the fast path), and each layer is also checked
 * by central differences (cnn_gradcheck, in double, on random inputs).
 */
#include "explain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char network_usage[] =
    "usage: cnn explain network --model NET.cnn [--weights W.safetensors] [--init SEED]\n"
    "                           [--input X | --image PATH | --seed S] [--target CLASS]\n"
    "                           [--format text|markdown]\n"
    "\n"
    "One backward pass through a model on one input, layer by layer from the last to the first, as\n"
    "note 001's summary algorithm goes: for each layer its shapes, the formula its backward pass\n"
    "uses, and the norms of the gradients it receives and sends on. Each layer is run on its own\n"
    "and the chain is checked against the whole net's backward pass and by central differences.\n"
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
    "\n"
    "example:\n"
    "  cnn explain network --model models/lenet5.cnn --init 1 --seed 7 --target 3\n";

/* PyTorch's and the notes' formula for each layer's backward pass, as text and as TeX. */
static void formula(cnn_layer_kind k, const char **text, const char **tex) {
    switch (k) {
    case CNN_LAYER_CONV2D:
        *text = "∂L/∂X(c) = Σ_k fullconv(padded ∂L/∂O(k), rot180(W(k,c))); ∂L/∂W(k,c) = X(c) ⋆ ∂L/∂O(k); "
                "∂L/∂b(k) = Σ ∂L/∂O(k)   (notes 002-004; cnn explain conv)";
        *tex = "\\frac{\\partial L}{\\partial X^{(c)}} = \\sum_k \\mathrm{fullconv}\\big(\\frac{\\partial L}{\\partial "
               "O^{(k)}}, \\mathrm{rot180}(W^{(k,c)})\\big),\\ \\frac{\\partial L}{\\partial W^{(k,c)}} = X^{(c)} "
               "\\star \\frac{\\partial L}{\\partial O^{(k)}},\\ \\frac{\\partial L}{\\partial b^{(k)}} = \\sum "
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

/* The model file's text, for the layers' lines. */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *t = malloc((1 << 20) + 1);
    size_t n = t ? fread(t, 1, 1 << 20, f) : 0;
    fclose(f);
    if (t) t[n] = '\0';
    return t;
}

/* Line `line` (from 1) of text, without its newline, into buf. */
static void text_line(const char *text, int line, char *buf, size_t cap) {
    const char *p = text;
    for (int i = 1; i < line && p; i++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    size_t n = 0;
    if (p)
        while (p[n] && p[n] != '\n') n++;
    if (n >= cap) n = cap - 1;
    if (p) memcpy(buf, p, n);
    buf[n] = '\0';
}

typedef struct layer_row {
    int in[3], out[3], in_flat, out_flat;
    double n_dout, n_din, n_dw, n_db, fd_err;
    int has_w, has_b;
    int64_t fd_checked;
} layer_row;

int explain_network(ex *e, int argc, char **argv) {
    const char *model = NULL, *weights = NULL, *init = NULL, *input = NULL, *image = NULL, *seed_s = NULL,
               *target_s = NULL;
    const ex_opt opts[] = {{"--model", &model}, {"--weights", &weights}, {"--init", &init},     {"--input", &input},
                           {"--image", &image}, {"--seed", &seed_s},     {"--target", &target_s}, {NULL, NULL}};
    int rc = ex_args(e, argc, argv, opts, network_usage);
    if (rc >= 0) return rc;
    if (!model) {
        cli_error("explain", "network: --model is required\n\n%s", network_usage);
        return EXIT_BAD_INPUT;
    }
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

    cnn_net *net = NULL, *fast = NULL, *one = NULL;
    cnn_st *wst = NULL;
    char *text = NULL;
    float *x = NULL, *dlast = NULL, *fdy = NULL;
    double *chain_g = NULL, *dnext = NULL, *dcur = NULL;
    layer_row *rows = NULL;
    cnn_gradcheck_row *gc = NULL;
    cnn_status st;
    rc = EXIT_BAD_INPUT;

    if ((st = cnn_net_load(model, &net))) goto fail;
    if ((!weights || init) && (st = cnn_net_init(net, init_seed))) goto fail;
    if (weights && ((st = cnn_st_load(weights, &wst)) || (st = cnn_net_load_weights(net, wst, init != NULL)))) goto fail;
    if (!(text = read_text(model))) {
        cli_error("explain", "%s: cannot read", model);
        goto done;
    }
    const int nl = cnn_net_layer_count(net), np = cnn_net_param_count(net);
    int in[3], out[3];
    cnn_net_input_shape(net, in);
    cnn_net_output_shape(net, out);
    const size_t nin = (size_t)in[0] * in[1] * in[2], nout = (size_t)out[0] * out[1] * out[2];
    const int flat_out = cnn_net_output_is_flat(net);

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
    if ((st = cnn_net_set_path(net, CNN_PATH_REFERENCE)) || (st = cnn_net_reserve(net, 1)) ||
        (st = cnn_net_forward(net, x, 1)))
        goto fail;
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
    if ((st = cnn_net_load(model, &fast))) goto fail;
    for (int i = 0; i < np; i++) {
        const cnn_param a = cnn_net_param(net, i), b = cnn_net_param(fast, i);
        memcpy(b.data, a.data, (size_t)a.numel * sizeof *a.data);
    }
    if ((st = cnn_net_reserve(fast, 1)) || (st = cnn_net_forward(fast, x, 1))) goto fail;
    cnn_net_zero_grad(fast);
    if ((st = cnn_net_backward(fast, dlast))) goto fail;

    ex_title(e, "one backward pass through %s, layer by layer (note 001's summary algorithm)", model);
    char shape[64];
    shape_str(shape, sizeof shape, in, 0);
    ex_say(e, "The input %s: %s. Parameters: %s.", shape, source,
           weights ? (init ? "from the weights file, the missing ones from PyTorch's default initialisation"
                           : "from the weights file")
                   : "PyTorch's default initialisation");

    ex_heading(e, "1. forward (001, step 2): each layer's output is the next one's input");
    rows = calloc((size_t)nl, sizeof *rows);
    if (!rows) goto nomem;
    int flat = 0;
    for (int i = 0; i < nl; i++) {
        layer_row *r = &rows[i];
        cnn_net_layer_shapes(net, i, r->in, r->out);
        r->in_flat = flat;
        const cnn_layer_kind k = cnn_net_layer_kind(net, i);
        if (k == CNN_LAYER_FLATTEN || k == CNN_LAYER_LINEAR) flat = 1;
        r->out_flat = flat;
    }
    if (e->fmt == EX_MARKDOWN)
        printf("| layer | line | kind | input | output | ‖output‖ |\n|--:|--:|---|---|---|--:|\n");
    else printf("  %-5s %-5s %-10s %-14s %-14s %12s\n", "layer", "line", "kind", "input", "output", "‖output‖");
    for (int i = 0; i < nl; i++) {
        char si[64], so[64];
        shape_str(si, sizeof si, rows[i].in, rows[i].in_flat);
        shape_str(so, sizeof so, rows[i].out, rows[i].out_flat);
        const size_t n = (size_t)rows[i].out[0] * rows[i].out[1] * rows[i].out[2];
        const float *y = cnn_net_layer_output(net, i);
        double s = 0.0;
        for (size_t j = 0; j < n; j++) s += (double)y[j] * y[j];
        const char *kind = cnn_layer_kind_name(cnn_net_layer_kind(net, i));
        if (e->fmt == EX_MARKDOWN)
            printf("| %d | %d | %s | %s | %s | %.6g |\n", i, cnn_net_layer_line(net, i), kind, si, so, sqrt(s));
        else printf("  %-5d %-5d %-10s %-14s %-14s %12.6g\n", i, cnn_net_layer_line(net, i), kind, si, so, sqrt(s));
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
    ex_say(e, "Each layer is rebuilt as a net of its own from its line of %s, run forward on the input the whole "
              "net gave it, and backward on the δ that the layer after it sent back.",
           model);
    size_t maxe = nin;
    for (int i = 0; i < nl; i++) {
        const size_t n = (size_t)rows[i].out[0] * rows[i].out[1] * rows[i].out[2];
        if (n > maxe) maxe = n;
    }
    size_t ptotal = 0;
    for (int i = 0; i < np; i++) ptotal += (size_t)cnn_net_param(net, i).numel;
    dnext = malloc(maxe * sizeof *dnext);
    dcur = malloc(maxe * sizeof *dcur);
    fdy = malloc(maxe * sizeof *fdy);
    chain_g = calloc(ptotal ? ptotal : 1, sizeof *chain_g);
    gc = calloc(16, sizeof *gc);
    if (!dnext || !dcur || !fdy || !chain_g || !gc) goto nomem;
    for (size_t i = 0; i < nout; i++) dnext[i] = dlast[i];
    ex_check c;
    ex_check_init(&c, "", NULL);
    snprintf(c.label[EX_BY_REF], sizeof c.label[0], "the whole net's backward, reference path");
    snprintf(c.label[EX_BY_FAST], sizeof c.label[0], "the whole net's backward, fast path (float)");
    snprintf(c.label[EX_BY_FD], sizeof c.label[0], "central differences, each layer (cnn_gradcheck)");
    snprintf(c.rule, sizeof c.rule, "Each number agrees when |Δ| ≤ tolerance × max(1, |its value|); for central "
                                      "differences the column holds cnn_gradcheck's relative error.");
    snprintf(c.mine, sizeof c.mine, "note 001's loop (one layer at a time)");
    for (int i = nl - 1; i >= 0; i--) {
        layer_row *r = &rows[i];
        const cnn_layer_kind kind = cnn_net_layer_kind(net, i);
        char line[1100], mtext[1200];
        text_line(text, cnn_net_layer_line(net, i), line, sizeof line);
        snprintf(mtext, sizeof mtext, "input %d %d %d\n%s%s\n", r->in[0], r->in[1], r->in[2],
                 r->in_flat ? "flatten\n" : "", line);
        const int me = r->in_flat ? 1 : 0;       /* the layer's index in its own net */
        cnn_net_free(one);
        one = NULL;
        if ((st = cnn_net_parse(mtext, &one)) || (st = cnn_net_set_path(one, CNN_PATH_REFERENCE)) ||
            (st = cnn_net_reserve(one, 1)))
            goto fail;
        for (int p = 0; p < np; p++) {
            const cnn_param a = cnn_net_param(net, p);
            if (a.layer != i) continue;
            char name[48];
            snprintf(name, sizeof name, "%d.%s", me, strchr(a.name, '.') + 1);
            const cnn_param b = cnn_net_param_by_name(one, name);
            if (!b.data || b.numel != a.numel) {
                cli_error("explain", "internal error: layer %d's parameter %s does not fit its own net", i, a.name);
                rc = 1;
                goto done;
            }
            memcpy(b.data, a.data, (size_t)a.numel * sizeof *a.data);
        }
        const size_t ni = (size_t)r->in[0] * r->in[1] * r->in[2], no = (size_t)r->out[0] * r->out[1] * r->out[2];
        const float *xi = i ? cnn_net_layer_output(net, i - 1) : x;
        for (size_t j = 0; j < no; j++) fdy[j] = (float)dnext[j];
        cnn_net_zero_grad(one);
        if ((st = cnn_net_forward(one, xi, 1)) || (st = cnn_net_backward(one, fdy))) goto fail;
        const float *gi = cnn_net_grad_input(one);
        for (size_t j = 0; j < ni; j++) dcur[j] = gi[j];
        r->n_dout = norm(dnext, no);
        r->n_din = norm(dcur, ni);
        size_t off = 0;
        for (int p = 0; p < np; p++) {
            const cnn_param a = cnn_net_param(net, p);
            if (a.layer == i) {
                char name[48];
                snprintf(name, sizeof name, "%d.%s", me, strchr(a.name, '.') + 1);
                const cnn_param b = cnn_net_param_by_name(one, name);
                double s = 0.0;
                for (int64_t j = 0; j < a.numel; j++) chain_g[off + j] = b.grad[j], s += (double)b.grad[j] * b.grad[j];
                if (strstr(a.name, "weight")) r->has_w = 1, r->n_dw = sqrt(s);
                else r->has_b = 1, r->n_db = sqrt(s);
            }
            off += (size_t)a.numel;
        }
        /* Central differences of this layer, in double, on random inputs (its parameters as they are). */
        int ngc = 0;
        if ((st = cnn_gradcheck(one, 1, seed + (uint64_t)i, 64, gc, 16, &ngc))) goto fail;
        for (int g = 0; g < ngc; g++)
            if (gc[g].layer == me && strcmp(gc[g].tensor, "output")) {
                r->fd_checked += gc[g].checked;
                if (gc[g].max_rel_err > r->fd_err || isnan(gc[g].max_rel_err)) r->fd_err = gc[g].max_rel_err;
            }
        c.count[EX_BY_FD] += r->fd_checked;
        if (r->fd_err > c.maxdiff[EX_BY_FD] || isnan(r->fd_err)) c.maxdiff[EX_BY_FD] = r->fd_err;
        if (!(r->fd_err <= c.tol[EX_BY_FD]) && !c.failed[EX_BY_FD]++)
            snprintf(c.first_fail[EX_BY_FD], sizeof c.first_fail[0],
                     "layer %d (%s): central differences differ from its backward pass by %.3g (relative)", i,
                     cnn_layer_kind_name(kind), r->fd_err);

        const char *ft, *ftex;
        formula(kind, &ft, &ftex);
        char si[64], so[64];
        shape_str(si, sizeof si, r->in, r->in_flat);
        shape_str(so, sizeof so, r->out, r->out_flat);
        char norms[256];
        int at = snprintf(norms, sizeof norms, "‖∂L/∂out‖ = %.6g, ‖∂L/∂in‖ = %.6g", r->n_dout, r->n_din);
        if (r->has_w) at += snprintf(norms + at, sizeof norms - (size_t)at, ", ‖∂L/∂weight‖ = %.6g", r->n_dw);
        if (r->has_b) snprintf(norms + at, sizeof norms - (size_t)at, ", ‖∂L/∂bias‖ = %.6g", r->n_db);
        if (e->fmt == EX_MARKDOWN) {
            printf("**layer %d** (line %d): `%s`, %s → %s\n\n$$%s$$\n\n%s; central differences: max relative error "
                   "%.3g over %lld numbers.\n\n",
                   i, cnn_net_layer_line(net, i), line, si, so, ftex, norms, r->fd_err, (long long)r->fd_checked);
        } else {
            printf("\n  layer %d, line %d: %s, %s → %s\n", i, cnn_net_layer_line(net, i), cnn_layer_kind_name(kind),
                   si, so);
            printf("    %s\n    %s\n    central differences: max relative error %.3g over %lld numbers\n", ft, norms,
                   r->fd_err, (long long)r->fd_checked);
        }
        double *t = dnext;
        dnext = dcur;
        dcur = t;
    }

    /* The chain against the whole net: ∂L/∂input and every parameter gradient. */
    double *whole = malloc((nin + ptotal) * sizeof *whole), *mine = malloc((nin + ptotal) * sizeof *mine);
    if (!whole || !mine) {
        free(whole), free(mine);
        goto nomem;
    }
    for (int pass = 0; pass < 2; pass++) {
        cnn_net *w = pass ? fast : net;
        const float *gin = cnn_net_grad_input(w);
        size_t at = 0;
        for (size_t j = 0; j < nin; j++) mine[at] = dnext[j], whole[at++] = gin[j];
        for (int p = 0; p < np; p++) {
            const cnn_param a = cnn_net_param(w, p);
            for (int64_t j = 0; j < a.numel; j++) whole[at + (size_t)j] = a.grad[j];
            at += (size_t)a.numel;
        }
        memcpy(mine + nin, chain_g, ptotal * sizeof *mine);
        ex_check_cmp(&c, pass ? EX_BY_FAST : EX_BY_REF, "∂L/∂input and the parameter gradients", mine, whole, NULL,
                     (int)(nin + ptotal), NULL);
    }
    free(whole);
    free(mine);
    char what[160];
    snprintf(what, sizeof what, "∂L/∂input and %zu parameter gradients of %d layers", ptotal, nl);
    rc = ex_check_report(e, &c,
                         "The chain above (one layer at a time) against the whole net's backward pass on both paths; "
                         "each layer also against central differences of its forward pass, in double on random "
                         "inputs.",
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
    free(x);
    free(dlast);
    free(fdy);
    free(chain_g);
    free(dnext);
    free(dcur);
    free(rows);
    free(gc);
    cnn_st_free(wst);
    cnn_net_free(one);
    cnn_net_free(fast);
    cnn_net_free(net);
    return rc;
}
