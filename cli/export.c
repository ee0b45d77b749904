/* cnn export: a checkpoint's model alone, as a PyTorch state_dict.
 *
 * A training checkpoint holds the weights and buffers under their state_dict names, and beside
 * them the optimizer's state (optim.<param>.<buffer>), which PyTorch's load_state_dict(strict=True)
 * rejects as unexpected keys. The exported file holds the parameters (float32) and buffers
 * (float32, num_batches_tracked int64) and nothing else, every one checked against the model by
 * cnn_net_load_weights first. Its __metadata__ keeps the model text and what cnn eval and
 * predict read (the data set's name, source and normalisation), so the file is still a model
 * source; "format": "pt" is the safetensors convention for a PyTorch state_dict. The training
 * position and settings are dropped: the file resumes nothing (cnn train --weights takes it).
 */
#include "cli.h"
#include "files.h"
#include "io/safe_write.h"
#include "base/error.h"
#include "io/readers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL_TEXT_MAX (1 << 20)

static const char export_usage[] =
    "usage: cnn export --weights CKPT.safetensors --out W.safetensors [--model NET.cnn]\n"
    "\n"
    "Writes the model's parameters and buffers alone, under their state_dict names (float32;\n"
    "num_batches_tracked int64), without the optimizer's state (optim.*), so that PyTorch's\n"
    "load_state_dict(strict=True) takes W. W's metadata keeps the model text and the data set's\n"
    "name and normalisation, so cnn summary, eval and predict still read the model from it.\n"
    "The model is the one the checkpoint stores; with --model NET.cnn, CKPT may be any safetensors\n"
    "file with NET's state_dict (float32 or float64), PyTorch's included.\n";
static const char export_example[] =
    "example:\n"
    "  cnn export --weights lenet5.safetensors --out lenet5-weights.safetensors\n";

typedef struct export_args {
    const char *weights, *out, *model;
} export_args;

/* Returns -1 to go on, or the exit status (0 after --help). */
static int parse_args(int argc, char **argv, export_args *a) {
    memset(a, 0, sizeof *a);
    const cli_opt opts[] = {
        CLI_VALUE("weights", "CKPT.safetensors", &a->weights, "the checkpoint"),
        CLI_VALUE("out", "W.safetensors", &a->out, "the file to write"),
        CLI_VALUE("model", "NET.cnn", &a->model, "the model, for a file without one (default: the checkpoint's)"),
        CLI_END,
    };
    const cli_cmd cmd = {"export", export_usage, opts, export_example, NULL};
    const int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if (!a->weights || !a->out) return cli_usage_error("export", "--weights and --out are required");
    return -1;
}

/* The whole of a text file (at most MODEL_TEXT_MAX bytes), or NULL with the reason printed. */
static char *read_text(const char *path) {
    const char *why;
    FILE *f = cnn_i_fopen_regular(path, &why);
    if (!f) {
        cli_error("export", "%s: cannot open the model file: %s", path, why);
        return NULL;
    }
    char *text = malloc(MODEL_TEXT_MAX + 1);
    size_t n = text ? fread(text, 1, MODEL_TEXT_MAX + 1, f) : 0;
    fclose(f);
    if (!text) {
        cli_error("export", "out of memory");
        return NULL;
    }
    if (n > MODEL_TEXT_MAX) {
        cli_error("export", "%s: a model file of more than %d bytes", path, MODEL_TEXT_MAX);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

int cmd_export(int argc, char **argv) {
    export_args a;
    const int parsed = parse_args(argc, argv, &a);
    if (parsed >= 0) return parsed;
    if (!cli_output_ok("export", "--out", a.out)) return EXIT_BAD_INPUT;
    const cli_file outs[1] = {{"--out", a.out}};
    const cli_file ins[2] = {{"--weights", a.weights}, {"--model", a.model}};
    if (!cli_check_same_files("export", outs, 1, ins, 2, NULL, NULL)) return EXIT_BAD_INPUT;
    if (cnn_safe_check_target(a.out) != CNN_OK) {
        cli_error("export", "--out %s", cnn_last_error());
        return EXIT_BAD_INPUT;
    }

    cnn_st *wst = NULL;
    cnn_net *net = NULL;
    char *model_text = NULL;
    cnn_tensor *t = NULL;
    int rc = EXIT_BAD_INPUT;
    cnn_status st;
    int saving = 0;
    if ((st = cnn_st_load(a.weights, &wst))) goto fail;
    const char *text = cnn_st_metadata(wst, "model");
    if (a.model) {
        if (!(model_text = read_text(a.model))) goto done;
        text = model_text;
        if ((st = cnn_net_parse(text, &net))) {
            cnn_error_prefix(a.model);
            goto fail;
        }
    } else if (!text) {
        cli_error("export", "%s has no model text in its metadata (it is not a cnn checkpoint): give --model NET.cnn",
                  a.weights);
        goto done;
    } else if ((st = cnn_net_parse(text, &net))) {
        cnn_error_prefix("the model text in its metadata");
        cnn_error_prefix(a.weights);
        goto fail;
    }
    if ((st = cnn_net_load_weights(net, wst, 0))) {   /* every tensor of the model, checked */
        cnn_error_prefix(a.weights);
        goto fail;
    }

    const int np = cnn_net_param_count(net), nb = cnn_net_buffer_count(net);
    t = calloc((size_t)(np + nb) + 1, sizeof *t);
    if (!t) {
        cli_error("export", "out of memory");
        rc = 1;
        goto done;
    }
    for (int i = 0; i < np; i++) {
        const cnn_param p = cnn_net_param(net, i);
        t[i] = (cnn_tensor){.name = p.name, .dtype = CNN_F32, .ndim = p.ndim, .data = p.data};
        memcpy(t[i].shape, p.shape, sizeof p.shape);
    }
    for (int i = 0; i < nb; i++) t[np + i] = cnn_net_buffer(net, i);

    /* The model text, and what eval and predict take from a checkpoint when not told. */
    const char *meta[12];
    int nm = 0;
    meta[2 * nm] = "format", meta[2 * nm + 1] = "pt", nm++;
    meta[2 * nm] = "model", meta[2 * nm + 1] = text, nm++;
    const char *keep[] = {"data", "source", "mean", "std"};
    for (int k = 0; k < 4; k++) {
        const char *v = cnn_st_metadata(wst, keep[k]);
        if (v) meta[2 * nm] = keep[k], meta[2 * nm + 1] = v, nm++;
    }
    saving = 1;   /* from here a failure is the machine's: --out was checked before any work */
    if ((st = cnn_st_save(a.out, t, np + nb, meta, nm))) goto fail;
    long long numel = 0;
    for (int i = 0; i < np; i++) numel += cnn_net_param(net, i).numel;
    printf("%s: %d parameter tensors (%lld values) and %d buffers of %s, without the optimizer's state\n", a.out, np, numel,
           nb, a.model ? a.model : "the checkpoint's model");
    rc = 0;
    goto done;
fail:
    rc = saving && st == CNN_ERR_IO ? cli_io_failure("export", st) : cli_report("export", st);
done:
    free(t);
    free(model_text);
    cnn_net_free(net);
    cnn_st_free(wst);
    return rc;
}
