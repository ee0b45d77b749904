/* cnn grad: one forward and one backward pass, with every tensor written to a safetensors file.
 *
 * With no --loss, the input file holds grad_output = dL/doutput, so L = Σ output·grad_output, as
 * the notes take ∂L/∂O as given. With --loss, it holds target and the loss starts the backward.
 */
#include "cli.h"
#include "files.h"
#include "io/safe_write.h"
#include "base/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char grad_usage[] =
    "usage: cnn grad --model NET.cnn (--weights W.safetensors | --init SEED | both)\n"
    "                --input IN.safetensors --out OUT.safetensors [--loss cross_entropy|mse]\n"
    "                [--eval] [--seed S] [--activations]\n"
    "\n"
    "IN holds 'input' [N,C,H,W] float32, and either 'grad_output' (dL/doutput, the output's shape;\n"
    "no --loss) or 'target' (--loss cross_entropy: int64 or int32 class indices [N]; --loss mse: float32\n"
    "with the output's shape). OUT gets 'output', 'grad_input', '<param>.grad' for every parameter,\n"
    "and 'loss' with --loss. A parameter missing from W is an error unless --init SEED draws it\n"
    "(PyTorch's default initialisation: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))).\n"
    "\n"
    "The pass runs in training mode, as a PyTorch module does by default: batch norm uses the batch's\n"
    "statistics and OUT also gets every buffer after its update ('<name>.running_mean',\n"
    "'<name>.running_var', '<name>.num_batches_tracked'); dropout draws its masks from --seed S\n"
    "(default 0). --eval runs eval mode: running statistics, no dropout. --activations also writes\n"
    "every line's output and its gradient as '<name>:output' and '<name>:grad'.\n";
static const char grad_example[] =
    "example:\n"
    "  cnn grad --model models/lenet5.cnn --init 1 --input in.safetensors --out grads.safetensors \\\n"
    "           --loss cross_entropy\n";

typedef struct grad_args {
    const char *model, *weights, *input, *out, *loss;
    int have_seed, eval, activations;
    unsigned long long seed, dropout_seed;
} grad_args;

/* Returns -1 to go on, or the exit status (0 after --help). */
static int parse_args(int argc, char **argv, grad_args *a) {
    memset(a, 0, sizeof *a);
    const char *init = NULL, *seed = NULL;
    const cli_opt opts[] = {
        CLI_VALUE("model", "NET.cnn", &a->model, "the model (see README, 'The model format')"),
        CLI_VALUE("weights", "W.safetensors", &a->weights, "the parameters, by their state_dict names"),
        CLI_VALUE("init", "SEED", &init, "PyTorch's default initialisation from SEED (with --weights: what W lacks)"),
        CLI_VALUE("input", "IN.safetensors", &a->input, "'input', and 'grad_output' or 'target'"),
        CLI_VALUE("out", "OUT.safetensors", &a->out, "where the output and the gradients go"),
        CLI_VALUE("loss", "LOSS", &a->loss, "cross_entropy or mse: the backward starts from this loss"),
        CLI_FLAG("eval", &a->eval, "eval mode: running statistics, no dropout"),
        CLI_VALUE("seed", "S", &seed, "the seed of dropout's masks (default 0)"),
        CLI_FLAG("activations", &a->activations, "also write every line's output and gradient"),
        CLI_END,
    };
    const cli_cmd cmd = {"grad", grad_usage, opts, grad_example, NULL};
    const int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if (init && !cli_u64("grad", "--init", init, 0, ~0ULL, &a->seed)) return EXIT_BAD_INPUT;
    if (seed && !cli_u64("grad", "--seed", seed, 0, ~0ULL, &a->dropout_seed)) return EXIT_BAD_INPUT;
    a->have_seed = init != NULL;
    if (!a->model || !a->input || !a->out || (!a->weights && !a->have_seed))
        return cli_usage_error("grad", "--model, --input, --out and one of --weights or --init are required");
    static const char *const losses[] = {"cross_entropy", "mse", NULL};
    int which;
    if (a->loss && !cli_choice("grad", "--loss", a->loss, losses, &which)) return EXIT_BAD_INPUT;
    return -1;
}

/* Value v's shape as PyTorch gives it: [N, C] when flat, else [N, C, H, W]. */
static int value_shape(const cnn_net *net, int v, int n, int64_t *shape) {
    int chw[3], flat;
    cnn_net_value_shape(net, v, chw, &flat);
    shape[0] = n, shape[1] = chw[0], shape[2] = chw[1], shape[3] = chw[2];
    return flat ? 2 : 4;
}

static int check_finite(const char *what, const cnn_tensor *t) {
    const int64_t count = cnn_tensor_numel(t);
    for (int64_t i = 0; i < count; i++) {
        const double v = t->dtype == CNN_F64 ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
        if (!isfinite(v)) {
            cli_error("grad", "%s: tensor '%s' holds %s at element %lld", what, t->name, isnan(v) ? "NaN" : "Inf",
                      (long long)i);
            return 0;
        }
    }
    return 1;
}

/* One line per tensor written: name, shape and L2 norm (and the loss itself). */
static void print_summary(const char *path, const cnn_tensor *t, int count) {
    printf("wrote %s\n", path);
    int nw = 16;   /* the name column fits the longest name */
    for (int i = 0; i < count; i++) nw = (int)strlen(t[i].name) > nw ? (int)strlen(t[i].name) : nw;
    for (int i = 0; i < count; i++) {
        char shape[96];
        int at = snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t[i].ndim && at < (int)sizeof shape; d++)
            at += snprintf(shape + at, sizeof shape - (size_t)at, d ? ", %lld" : "%lld", (long long)t[i].shape[d]);
        if (at < (int)sizeof shape) snprintf(shape + at, sizeof shape - (size_t)at, "]");
        if (t[i].dtype == CNN_I64) {   /* a counter: num_batches_tracked */
            int64_t c;
            memcpy(&c, t[i].data, sizeof c);
            printf("  %-*s %-16s value %lld\n", nw, t[i].name, shape, (long long)c);
            continue;
        }
        const float *v = t[i].data;
        double norm = 0.0;
        for (int64_t k = 0; k < cnn_tensor_numel(&t[i]); k++) norm += (double)v[k] * v[k];
        if (t[i].ndim == 0) printf("  %-*s %-16s value %.6g\n", nw, t[i].name, shape, (double)v[0]);
        else printf("  %-*s %-16s norm  %.6g\n", nw, t[i].name, shape, sqrt(norm));
    }
}

int cmd_grad(int argc, char **argv) {
    grad_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    /* Before any work: --out must be replaceable, and none of the inputs. */
    const cli_file out_file[1] = {{"--out", a.out}};
    const cli_file in_files[3] = {{"--model", a.model}, {"--weights", a.weights}, {"--input", a.input}};
    if (!cli_output_ok("grad", "--out", a.out)) return EXIT_BAD_INPUT;
    if (!cli_check_same_files("grad", out_file, 1, in_files, 3, NULL, NULL)) return EXIT_BAD_INPUT;
    if (cnn_safe_check_target(a.out) != CNN_OK) {
        cli_error("grad", "--out %s", cnn_last_error());
        return EXIT_BAD_INPUT;
    }

    cnn_net *net = NULL;
    cnn_st *wst = NULL, *ist = NULL;
    cnn_tensor *outs = NULL;
    char *names = NULL;
    float *dy = NULL;
    int64_t *labels = NULL;
    cnn_status st;
    int saving = 0;
    rc = EXIT_BAD_INPUT;

    if ((st = cnn_net_load(a.model, &net))) goto fail;
    if (a.have_seed && (st = cnn_net_init(net, a.seed))) goto fail;
    if (a.weights) {
        if ((st = cnn_st_load(a.weights, &wst))) goto fail;
        if ((st = cnn_net_load_weights(net, wst, a.have_seed))) {
            cnn_error_prefix(a.weights);
            goto fail;
        }
    }
    if ((st = cnn_st_load(a.input, &ist))) goto fail;

    int chw[3];
    cnn_net_input_shape(net, chw);
    const int64_t in_shape[4] = {-1, chw[0], chw[1], chw[2]};
    const cnn_tensor *x;
    if ((st = cnn_st_require(ist, a.input, "input", CNN_F32, 4, in_shape, &x))) goto fail;
    if (x->shape[0] < 1 || x->shape[0] > (1 << 20)) {
        cli_error("grad", "%s: tensor 'input' has batch size %lld; it must be 1 to 1048576", a.input,
                  (long long)x->shape[0]);
        goto done;
    }
    if (!check_finite(a.input, x)) goto done;
    const int n = (int)x->shape[0];
    int64_t oshape[4];
    const int ondim = value_shape(net, cnn_net_value_count(net) - 1, n, oshape);
    int64_t ocount = 1;
    for (int d = 0; d < ondim; d++) ocount *= oshape[d];

    if ((st = cnn_net_reserve(net, n))) goto fail;
    cnn_net_set_training(net, !a.eval);
    cnn_net_set_seed(net, a.dropout_seed);
    if ((st = cnn_net_forward(net, x->data, n))) goto fail;
    const float *y = cnn_net_output(net);

    float loss = 0.0f;
    dy = malloc((size_t)ocount * sizeof *dy);
    if (!dy) {
        cli_error("grad", "out of memory");
        rc = 1;
        goto done;
    }
    if (!a.loss) {
        const cnn_tensor *g;
        if ((st = cnn_st_require(ist, a.input, "grad_output", CNN_F32, ondim, oshape, &g))) goto fail;
        if (!check_finite(a.input, g)) goto done;
        memcpy(dy, g->data, (size_t)ocount * sizeof *dy);
    } else if (!strcmp(a.loss, "cross_entropy")) {
        if (ondim != 2) {
            cli_error("grad", "--loss cross_entropy needs a flat output [N, classes], but this model's output is "
                              "[%lld, %lld, %lld, %lld]; end it with flatten or linear",
                      (long long)oshape[0], (long long)oshape[1], (long long)oshape[2], (long long)oshape[3]);
            goto done;
        }
        const int64_t tshape[1] = {n};
        const cnn_tensor *t = cnn_st_find(ist, "target");
        const int i32 = t && t->dtype == CNN_I32;      /* labels may be int32 as well as int64 */
        if (t && !i32 && t->dtype != CNN_I64) {
            cli_error("grad", "%s: tensor 'target' is %s, but class indices must be I64 or I32", a.input,
                      cnn_dtype_name(t->dtype));
            goto done;
        }
        if ((st = cnn_st_require(ist, a.input, "target", i32 ? CNN_I32 : CNN_I64, 1, tshape, &t))) goto fail;
        labels = malloc((size_t)n * sizeof *labels);
        if (!labels) {
            cli_error("grad", "out of memory");
            rc = 1;
            goto done;
        }
        for (int i = 0; i < n; i++) labels[i] = i32 ? ((const int32_t *)t->data)[i] : ((const int64_t *)t->data)[i];
        if ((st = cnn_loss_cross_entropy(y, labels, n, (int)oshape[1], &loss, dy))) goto fail;
    } else {
        const cnn_tensor *t;
        if ((st = cnn_st_require(ist, a.input, "target", CNN_F32, ondim, oshape, &t))) goto fail;
        if (!check_finite(a.input, t)) goto done;
        if ((st = cnn_loss_mse(y, t->data, ocount, &loss, dy))) goto fail;
    }
    cnn_net_zero_grad(net);
    if ((st = cnn_net_backward(net, dy))) goto fail;

    /* output, grad_input, every <param>.grad, loss; in training mode every buffer; with
     * --activations every line's output and gradient. */
    const int np = cnn_net_param_count(net), nb = a.eval ? 0 : cnn_net_buffer_count(net);
    const int nv = a.activations ? cnn_net_value_count(net) - 1 : 0;
    const int count = 2 + np + (a.loss ? 1 : 0) + nb + 2 * nv;
    enum { NAME = 160 };
    outs = calloc((size_t)count, sizeof *outs);
    names = calloc((size_t)(np + 2 * nv) + 1, NAME);
    if (!outs || !names) {
        cli_error("grad", "out of memory");
        rc = 1;
        goto done;
    }
    int at = 0;
    outs[at] = (cnn_tensor){.name = "output", .dtype = CNN_F32, .ndim = ondim, .data = (void *)y};
    memcpy(outs[at++].shape, oshape, sizeof oshape);
    outs[at] = (cnn_tensor){.name = "grad_input", .dtype = CNN_F32, .ndim = 4, .data = (void *)cnn_net_grad_input(net)};
    outs[at].shape[0] = n, outs[at].shape[1] = chw[0], outs[at].shape[2] = chw[1], outs[at].shape[3] = chw[2];
    at++;
    char *name = names;
    for (int i = 0; i < np; i++, name += NAME) {
        const cnn_param p = cnn_net_param(net, i);
        snprintf(name, NAME, "%s.grad", p.name);
        outs[at] = (cnn_tensor){.name = name, .dtype = CNN_F32, .ndim = p.ndim, .data = p.grad};
        memcpy(outs[at++].shape, p.shape, sizeof p.shape);
    }
    if (a.loss) outs[at++] = (cnn_tensor){.name = "loss", .dtype = CNN_F32, .ndim = 0, .data = &loss};
    for (int i = 0; i < nb; i++) outs[at++] = cnn_net_buffer(net, i);
    for (int v = 1; v <= nv; v++)
        for (int g = 0; g < 2; g++, name += NAME) {
            snprintf(name, NAME, "%s:%s", cnn_net_value_name(net, v), g ? "grad" : "output");
            outs[at] = (cnn_tensor){.name = name, .dtype = CNN_F32,
                                    .data = (void *)(g ? cnn_net_value_grad(net, v) : cnn_net_value_data(net, v))};
            outs[at].ndim = value_shape(net, v, n, outs[at].shape);
            at++;
        }
    saving = 1;   /* from here a failure is the machine's: --out was checked before any work */
    if ((st = cnn_st_save(a.out, outs, count, NULL, 0))) goto fail;
    print_summary(a.out, outs, count);
    rc = 0;
    goto done;

fail:
    rc = saving && st == CNN_ERR_IO ? cli_io_failure("grad", st) : cli_report("grad", st);
done:
    free(outs);
    free(names);
    free(dy);
    free(labels);
    cnn_st_free(wst);
    cnn_st_free(ist);
    cnn_net_free(net);
    return rc;
}
