/* cnn summary: a model's layers, one row per node of the graph (its name, kind, output shape,
 * parameters, multiply-adds per sample and inputs), then the totals, the memory at a batch size
 * and the training FLOPs per image, as torchinfo or Darknet print them.
 *
 * Counting (it gives the figures commonly quoted: LeNet-5 0.42 M, ResNet-20 41 M):
 * - a multiply-add (MAC) is one multiplication and one addition; FLOPs = 2 · MACs;
 * - conv2d: out_h · out_w · numel(weight) = out_elems · (in_c / groups) · kh · kw;
 *   convtranspose2d: in_h · in_w · numel(weight) = in_elems · (out_c / groups) · kh · kw;
 *   linear: numel(weight) = in · out; as fvcore counts these layers. Biases, batch norm, pooling,
 *   activations, add and concat count 0 (fvcore adds one or two per element for batch norm;
 *   torchinfo's "mult-adds" add the biases and batch norm's weight and bias: LeNet-5 423,038).
 * - training FLOPs per image = 3 · 2 · MACs: the forward pass, and a backward pass of about twice
 *   its work (the input gradient and the weight gradient are each a product the size of the
 *   forward's).
 * Memory is what the net's arenas hold, in float32: the parameters and buffers, the parameters'
 * gradients, every layer's output for a batch (the forward values) and, in training, a gradient
 * for every value, the input's included; the layers' workspaces are not counted.
 */
#include "cli.h"
#include "trained.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char summary_usage[] =
    "usage: cnn summary --model NET.cnn [--weights W.safetensors] [--batch N]\n"
    "       cnn summary --weights CKPT.safetensors [--batch N]\n"
    "\n"
    "Prints one row per layer (node of the graph): its name, kind, output shape per sample,\n"
    "parameters, multiply-adds per sample and the values it reads; then the totals, the memory\n"
    "of the parameters, buffers and activations at batch N (default 64, or a checkpoint's batch)\n"
    "and the training FLOPs per image. Without --model the model is the one a cnn checkpoint\n"
    "stores in its metadata; with both, the weights must fit the model.\n"
    "\n"
    "Multiply-adds count the products of conv2d, convtranspose2d and linear layers, as fvcore\n"
    "counts them (a multiply-add is one MAC, 2 FLOPs); biases and the other layers count 0.\n"
    "Training FLOPs per image = 6 x multiply-adds: forward 2 FLOPs per multiply-add, backward\n"
    "about twice the forward.\n";
static const char summary_example[] =
    "example:\n"
    "  cnn summary --model models/resnet20.cnn --batch 128\n";

typedef struct summary_args {
    const char *model, *weights;
    unsigned long long batch;
    int batch_given, force_model;
} summary_args;

/* Returns -1 to go on, or the exit status (0 after --help). */
static int parse_args(int argc, char **argv, summary_args *a) {
    memset(a, 0, sizeof *a);
    a->batch = 64;
    const char *batch = NULL;
    const cli_opt opts[] = {
        CLI_VALUE("model", "NET.cnn", &a->model, "the model (default: the checkpoint's own)"),
        CLI_VALUE("weights", "W.safetensors", &a->weights, "a checkpoint, or any file of the model's state_dict"),
        CLI_VALUE("batch", "N", &batch, "the batch of the memory figures, 1 to 1000000 (default 64)"),
        CLI_FLAG("force-model", &a->force_model, "use --model even where it differs from the checkpoint's model"),
        CLI_END,
    };
    const cli_cmd cmd = {"summary", summary_usage, opts, summary_example, NULL};
    const int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if (batch) {
        if (!cli_u64("summary", "--batch", batch, 1, 1000000, &a->batch)) return EXIT_BAD_INPUT;
        a->batch_given = 1;
    }
    if (!a->model && !a->weights) return cli_usage_error("summary", "--model or --weights is required");
    return -1;
}

/* v with thousands separators: 61706 -> "61,706". Returns buf. */
static const char *grouped(char *buf, size_t cap, long long v) {
    char digits[32];
    const int len = snprintf(digits, sizeof digits, "%lld", v < 0 ? -v : v);
    size_t at = 0;
    if (v < 0 && at + 1 < cap) buf[at++] = '-';
    for (int i = 0; i < len && at + 1 < cap; i++) {
        if (i && (len - i) % 3 == 0 && at + 1 < cap) buf[at++] = ',';
        if (at + 1 < cap) buf[at++] = digits[i];
    }
    buf[at] = '\0';
    return buf;
}

/* A size in bytes: "512 B", "241.0 KiB", "12.3 MiB", "1.50 GiB". Returns buf. */
static const char *bytes_str(char *buf, size_t cap, double b) {
    if (b < 1024) snprintf(buf, cap, "%.0f B", b);
    else if (b < 1024.0 * 1024) snprintf(buf, cap, "%.1f KiB", b / 1024);
    else if (b < 1024.0 * 1024 * 1024) snprintf(buf, cap, "%.1f MiB", b / (1024.0 * 1024));
    else snprintf(buf, cap, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    return buf;
}

/* A count in thousands ("61.71 K"), from 100,000 in millions ("0.42 M"), from a billion in
 * billions ("1.82 G"). Returns buf. */
static const char *short_count(char *buf, size_t cap, double v) {
    if (v >= 1e9) snprintf(buf, cap, "%.2f G", v / 1e9);
    else if (v >= 1e5) snprintf(buf, cap, "%.2f M", v / 1e6);
    else snprintf(buf, cap, "%.2f K", v / 1e3);
    return buf;
}

/* Value v's per-sample shape as the table shows it: "6x28x28", or "120" for a flat value. */
static const char *shape_str(char *buf, size_t cap, const cnn_net *net, int v, long long *elems) {
    int chw[3], flat = 0;
    cnn_net_value_shape(net, v, chw, &flat);
    if (flat) snprintf(buf, cap, "%d", chw[0]);
    else snprintf(buf, cap, "%dx%dx%d", chw[0], chw[1], chw[2]);
    if (elems) *elems = (long long)chw[0] * chw[1] * chw[2];
    return buf;
}

/* Multiply-adds of layer i for one sample (see the top of the file). */
static long long layer_macs(const cnn_net *net, int i) {
    const cnn_layer_kind kind = cnn_net_layer_kind(net, i);
    if (kind != CNN_LAYER_CONV2D && kind != CNN_LAYER_CONVTRANSPOSE2D && kind != CNN_LAYER_LINEAR) return 0;
    char name[160];
    snprintf(name, sizeof name, "%s.weight", cnn_net_layer_name(net, i));
    const cnn_param w = cnn_net_param_by_name(net, name);
    if (!w.data) return 0;
    int in[3], out[3];
    cnn_net_layer_shapes(net, i, in, out);
    if (kind == CNN_LAYER_CONV2D) return (long long)out[1] * out[2] * w.numel;
    if (kind == CNN_LAYER_CONVTRANSPOSE2D) return (long long)in[1] * in[2] * w.numel;
    return w.numel;
}

/* The checkpoint's facts worth a line: data set, epoch, step. */
static void print_weights_line(const char *path, const cnn_st *st) {
    printf("weights %s", path);
    const char *keys[] = {"data", "epoch", "step"};
    const char *sep = " (";
    for (int k = 0; k < 3; k++) {
        const char *v = cnn_st_metadata(st, keys[k]);
        if (!v) continue;
        printf("%s%s %s", sep, keys[k], v);
        sep = ", ";
    }
    printf("%s\n", strcmp(sep, " (") ? ")" : "");
}

int cmd_summary(int argc, char **argv) {
    summary_args a;
    const int parsed = parse_args(argc, argv, &a);
    if (parsed >= 0) return parsed;

    cnn_net *net = NULL;
    cnn_st *wst = NULL;
    long long *params = NULL;
    int rc = EXIT_BAD_INPUT;
    cnn_status st;
    if (a.weights && (st = cnn_st_load(a.weights, &wst))) goto fail;
    if (a.model) {
        if (!trained_model_agrees("summary", a.model, wst, a.weights, a.force_model)) goto done;
        if ((st = cnn_net_load(a.model, &net))) goto fail;
    } else {
        const char *text = cnn_st_metadata(wst, "model");
        if (!text) {
            cli_error("summary", "%s has no model text in its metadata (it is not a cnn checkpoint): give --model NET.cnn",
                      a.weights);
            goto done;
        }
        if ((st = cnn_net_parse(text, &net))) {
            cnn_error_prefix("the model text in its metadata");
            cnn_error_prefix(a.weights);
            goto fail;
        }
    }
    if (wst && (st = cnn_net_load_weights(net, wst, 0))) {
        cnn_error_prefix(a.weights);
        goto fail;
    }
    int batch_from_checkpoint = 0;
    if (!a.batch_given && wst) {   /* a checkpoint's own batch size */
        const char *b = cnn_st_metadata(wst, "batch");
        unsigned long long v;
        if (b && cli_parse_u64(b, &v) && v >= 1 && v <= 1000000) a.batch = v, batch_from_checkpoint = 1;
    }

    const int L = cnn_net_layer_count(net);
    params = calloc((size_t)L + 1, sizeof *params);
    if (!params) {
        cli_error("summary", "out of memory");
        rc = 1;
        goto done;
    }
    long long total_params = 0, total_buffer_bytes = 0, total_buffers = 0;
    for (int p = 0; p < cnn_net_param_count(net); p++) {
        const cnn_param prm = cnn_net_param(net, p);
        params[prm.layer] += prm.numel;
        total_params += prm.numel;
    }
    for (int b = 0; b < cnn_net_buffer_count(net); b++) {
        const cnn_tensor t = cnn_net_buffer(net, b);
        const long long n = cnn_tensor_numel(&t);
        total_buffers += n;
        total_buffer_bytes += n * (long long)cnn_dtype_size(t.dtype);
    }

    /* The columns are as wide as their widest cell. */
    int wname = 4, wkind = 4, wout = 6;
    char buf[64], buf2[64], buf3[64];
    for (int i = 0; i < L; i++) {
        int n = (int)strlen(cnn_net_layer_name(net, i));
        wname = n > wname ? n : wname;
        n = (int)strlen(cnn_layer_kind_name(cnn_net_layer_kind(net, i)));
        wkind = n > wkind ? n : wkind;
        n = (int)strlen(shape_str(buf, sizeof buf, net, i + 1, NULL));
        wout = n > wout ? n : wout;
    }

    long long in_elems;
    const char *source = a.model ? a.model : a.weights;
    printf("%s: input %s, %d layer%s\n", source, shape_str(buf, sizeof buf, net, 0, &in_elems), L, L == 1 ? "" : "s");
    if (wst) print_weights_line(a.weights, wst);
    printf("\n%-*s  %-*s  %-*s  %10s  %12s  %s\n", wname, "name", wkind, "kind", wout, "output", "parameters",
           "mult-adds", "inputs");
    long long total_macs = 0, act_elems = 0, grad_elems = in_elems;
    for (int i = 0; i < L; i++) {
        long long out_elems;
        const long long macs = layer_macs(net, i);
        total_macs += macs;
        shape_str(buf, sizeof buf, net, i + 1, &out_elems);
        act_elems += out_elems;
        grad_elems += out_elems;
        printf("%-*s  %-*s  %-*s  %10s  %12s  ", wname, cnn_net_layer_name(net, i), wkind,
               cnn_layer_kind_name(cnn_net_layer_kind(net, i)), wout, buf, grouped(buf2, sizeof buf2, params[i]),
               grouped(buf3, sizeof buf3, macs));
        for (int k = 0; k < cnn_net_layer_input_count(net, i); k++)
            printf("%s%s", k ? "," : "", cnn_net_value_name(net, cnn_net_layer_input(net, i, k)));
        printf("\n");
    }

    const long long N = (long long)a.batch;
    const double param_bytes = 4.0 * (double)total_params, buffer_bytes = (double)total_buffer_bytes;
    const double act_bytes = 4.0 * (double)act_elems * (double)N, grad_bytes = 4.0 * (double)grad_elems * (double)N;
    char m[32];
    printf("\nparameters      %12s  (%s)\n", grouped(buf, sizeof buf, total_params),
           short_count(m, sizeof m, (double)total_params));
    printf("buffers         %12s%s\n", grouped(buf, sizeof buf, total_buffers),
           total_buffers ? "  (batch norm's running statistics)" : "");
    printf("mult-adds       %12s  per sample (%s): conv2d, convtranspose2d, linear\n",
           grouped(buf, sizeof buf, total_macs), short_count(m, sizeof m, (double)total_macs));
    printf("training FLOPs  %12s  per image (%s): 6 per mult-add, forward + backward\n",
           grouped(buf, sizeof buf, 6 * total_macs), short_count(m, sizeof m, 6.0 * (double)total_macs));
    printf("\nmemory at batch %lld%s, float32:\n", N, batch_from_checkpoint ? " (the checkpoint's)" : "");
    printf("  parameters and buffers  %12s\n", bytes_str(buf, sizeof buf, param_bytes + buffer_bytes));
    printf("  activations             %12s  (every layer's output: %s values per sample)\n",
           bytes_str(buf, sizeof buf, act_bytes), grouped(buf2, sizeof buf2, act_elems));
    printf("  parameter gradients     %12s  (training)\n", bytes_str(buf, sizeof buf, param_bytes));
    printf("  activation gradients    %12s  (training: every value's, the input's included)\n",
           bytes_str(buf, sizeof buf, grad_bytes));
    printf("  inference               %12s\n", bytes_str(buf, sizeof buf, param_bytes + buffer_bytes + act_bytes));
    printf("  training                %12s  (without the optimizer's state)\n",
           bytes_str(buf, sizeof buf, 2 * param_bytes + buffer_bytes + act_bytes + grad_bytes));
    rc = 0;
    goto done;
fail:
    rc = cli_report("summary", st);
done:
    free(params);
    cnn_st_free(wst);
    cnn_net_free(net);
    return rc;
}
