/* cnn gradcheck: every layer of a model checked by central differences in double precision, and
 * the fast path checked against the reference path. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Thresholds: central differences in double agree to ~1e-9 on smooth layers; 1e-6 leaves room for
 * the rounding of L. The fast path computes in float, so it may differ by float rounding. */
#define NUMERIC_TOL 1e-6
#define FAST_TOL 1e-4

static const char gradcheck_usage[] =
    "usage: cnn gradcheck --model NET.cnn [--weights W.safetensors] [--seed S] [--batch N]\n"
    "                     [--max-checks K] [--eval]\n"
    "\n"
    "For each layer (each node of the graph), with random inputs and L = sum(output * dy) for a random dy, compares the\n"
    "reference backward pass with central differences (step 1e-6, double precision) of the\n"
    "reference forward pass, and the fast path with the reference. Parameters come from W, or\n"
    "else PyTorch's default initialisation drawn from the seed. At most K elements of each tensor\n"
    "are perturbed (default 256; 0 checks all). Layers run in training mode (batch norm through\n"
    "the batch's statistics, dropout with a fixed mask), or in eval mode with --eval. A layer of\n"
    "several inputs (add, concat) gets one row per input. Exits 1 if any check fails.\n";
static const char gradcheck_example[] =
    "example:\n"
    "  cnn gradcheck --model models/lenet5.cnn --seed 1\n";

typedef struct gradcheck_args {
    const char *model, *weights;
    unsigned long long seed, batch, max_checks;
    int eval;
} gradcheck_args;

/* Returns -1 to go on, or the exit status (0 after --help). */
static int parse_args(int argc, char **argv, gradcheck_args *a) {
    memset(a, 0, sizeof *a);
    a->seed = 1, a->batch = 2, a->max_checks = 256;
    const char *seed = NULL, *batch = NULL, *max_checks = NULL;
    const cli_opt opts[] = {
        CLI_VALUE("model", "NET.cnn", &a->model, "the model (see README, 'The model format')"),
        CLI_VALUE("weights", "W.safetensors", &a->weights, "parameters (default: drawn from the seed)"),
        CLI_VALUE("seed", "S", &seed, "the seed of the parameters, inputs and dy (default 1)"),
        CLI_VALUE("batch", "N", &batch, "samples per check, 1 to 64 (default 2)"),
        CLI_VALUE("max-checks", "K", &max_checks, "elements perturbed per tensor (default 256; 0: all)"),
        CLI_FLAG("eval", &a->eval, "eval mode: running statistics, no dropout"),
        CLI_END,
    };
    const cli_cmd cmd = {"gradcheck", gradcheck_usage, opts, gradcheck_example, NULL};
    const int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if ((seed && !cli_u64("gradcheck", "--seed", seed, 0, ~0ULL, &a->seed)) ||
        (batch && !cli_u64("gradcheck", "--batch", batch, 1, 64, &a->batch)) ||
        (max_checks && !cli_u64("gradcheck", "--max-checks", max_checks, 0, ~0ULL, &a->max_checks)))
        return EXIT_BAD_INPUT;
    if (!a->model) return cli_usage_error("gradcheck", "--model is required");
    return -1;
}

int cmd_gradcheck(int argc, char **argv) {
    gradcheck_args a;
    const int prc = parse_args(argc, argv, &a);
    if (prc >= 0) return prc;
    const char *model = a.model, *weights = a.weights;
    const unsigned long long seed = a.seed, batch = a.batch, max_checks = a.max_checks;
    const int eval = a.eval;
    cnn_net *net = NULL;
    cnn_st *wst = NULL;
    cnn_gradcheck_row *rows = NULL;
    int rc = EXIT_BAD_INPUT;
    cnn_status st;
    if ((st = cnn_net_load(model, &net)) || (st = cnn_net_init(net, seed))) goto fail;
    if (weights && ((st = cnn_st_load(weights, &wst)) || (st = cnn_net_load_weights(net, wst, 0)))) goto fail;
    cnn_net_set_training(net, !eval);
    int cap = 0;   /* rows: output, each input, each parameter (at most 8) */
    for (int i = 0; i < cnn_net_layer_count(net); i++) cap += 9 + cnn_net_layer_input_count(net, i);
    rows = calloc((size_t)cap, sizeof *rows);
    if (!rows) {
        cli_error("gradcheck", "out of memory");
        rc = 1;
        goto done;
    }
    int nrows = 0;
    if ((st = cnn_gradcheck(net, (int)batch, seed, (long long)max_checks, rows, cap, &nrows))) goto fail;

    printf("gradcheck %s: batch %llu, seed %llu, central differences in double (step 1e-6)\n", model, batch, seed);
    printf("%s mode\n", eval ? "eval" : "training");
    int kw = 10;   /* the kind column fits the longest kind name */
    for (int i = 0; i < cnn_net_layer_count(net); i++) {
        const int len = (int)strlen(cnn_layer_kind_name(cnn_net_layer_kind(net, i)));
        kw = len > kw ? len : kw;
    }
    printf("%-5s %-5s %-*s %-7s %9s %14s %14s  %s\n", "layer", "line", kw, "kind", "tensor", "checked",
           "max rel err", "fast vs ref", "result");
    int failed = 0;
    for (int i = 0; i < nrows; i++) {
        const cnn_gradcheck_row *r = &rows[i];
        const int is_output = !strcmp(r->tensor, "output");
        const int bad = (!is_output && !(r->max_rel_err <= NUMERIC_TOL)) || !(r->fast_rel_err <= FAST_TOL);
        failed += bad;
        char checked[32] = "-", err[32] = "-";
        if (!is_output) {
            snprintf(checked, sizeof checked, "%lld", (long long)r->checked);
            snprintf(err, sizeof err, "%.3e", r->max_rel_err);
        }
        char layer[16], named[160] = "";
        snprintf(layer, sizeof layer, "%d", r->layer);
        if (strcmp(layer, cnn_net_layer_name(net, r->layer)))
            snprintf(named, sizeof named, "  %s", cnn_net_layer_name(net, r->layer));
        printf("%-5d %-5d %-*s %-7s %9s %14s %14.3e  %s%s\n", r->layer, cnn_net_layer_line(net, r->layer), kw,
               cnn_layer_kind_name(cnn_net_layer_kind(net, r->layer)), r->tensor, checked, err, r->fast_rel_err,
               bad ? "FAIL" : "ok", named);
    }
    printf("%s: %d of %d checks failed (tolerances: numeric %.0e, fast path %.0e)\n", failed ? "FAILED" : "passed",
           failed, nrows, NUMERIC_TOL, FAST_TOL);
    rc = failed ? 1 : 0;
    goto done;
fail:
    rc = cli_report("gradcheck", st);
done:
    free(rows);
    cnn_st_free(wst);
    cnn_net_free(net);
    return rc;
}
