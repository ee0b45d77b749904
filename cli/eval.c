/* cnn eval: the loss, the accuracy and the confusion matrix of trained weights on a data set. */
#include "cli.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char eval_usage[] =
    "usage: cnn eval --model NET.cnn --weights W.safetensors --data SOURCE [--split test|train]\n"
    "                [--batch B] [--threads T] [--data-dir DIR]\n"
    "\n"
    "Prints the mean cross-entropy loss, the accuracy and the confusion matrix (rows: true class,\n"
    "columns: predicted) on the test split (or the training split). W may be a cnn checkpoint or\n"
    "any safetensors file with the model's state_dict, PyTorch's included. --threads defaults to\n"
    "CNN_NUM_THREADS, else every core.\n"
    "\n"
    "example:\n"
    "  cnn eval --model models/lenet5.cnn --weights lenet5.safetensors --data mnist\n";

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *weights = NULL, *source = NULL, *split = "test", *data_dir = NULL;
    unsigned long long batch = 256, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(eval_usage, stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            cli_error("eval", "option %s needs a value\n\n%s", k, eval_usage);
            return EXIT_BAD_INPUT;
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--weights")) weights = v;
        else if (!strcmp(k, "--data")) source = v;
        else if (!strcmp(k, "--data-dir")) data_dir = v;
        else if (!strcmp(k, "--split") && (!strcmp(v, "test") || !strcmp(v, "train"))) split = v;
        else if (!strcmp(k, "--batch") && cli_parse_u64(v, &batch) && batch >= 1 && batch <= 65536) continue;
        else if (!strcmp(k, "--threads") && cli_parse_u64(v, &threads) && threads >= 1 && threads <= 1024) continue;
        else {
            cli_error("eval", "bad option '%s %s'\n\n%s", k, v, eval_usage);
            return EXIT_BAD_INPUT;
        }
    }
    if (!model || !weights || !source) {
        cli_error("eval", "--model, --weights and --data are required\n\n%s", eval_usage);
        return EXIT_BAD_INPUT;
    }
    cnn_net *net = NULL;
    cnn_st *wst = NULL;
    cnn_data data;
    memset(&data, 0, sizeof data);
    int64_t *confusion = NULL, *ybuf = NULL;
    int rc = EXIT_BAD_INPUT;
    cnn_status st = CNN_ERR_ARG;
    const int n_threads = cli_threads(threads);
    if (!n_threads) goto fail;
    if ((st = cnn_net_load(model, &net)) || (st = cnn_st_load(weights, &wst))) goto fail;
    if ((st = cnn_net_load_weights(net, wst, 0))) {
        cnn_error_prefix(weights);
        goto fail;
    }
    if ((st = cnn_data_open(source, data_dir, &data))) goto fail;
    int in[3], out[3];
    cnn_net_input_shape(net, in);
    cnn_net_output_shape(net, out);
    const cnn_dataset *d = !strcmp(split, "test") ? &data.test : &data.train;
    if (d->n == 0) {
        cli_error("eval", "%s has no %s split", source, split);
        goto done;
    }
    if (!cnn_net_output_is_flat(net) || d->c != in[0] || d->h != in[1] || d->w != in[2]) {
        cli_error("eval", "%s: samples are %dx%dx%d, but %s takes %dx%dx%d and must give flat class scores", source,
                  d->c, d->h, d->w, model, in[0], in[1], in[2]);
        goto done;
    }
    const int classes = out[0];
    if (data.num_classes > classes) {
        cli_error("eval", "%s: label %d is out of range for the model's %d outputs", source, data.num_classes - 1,
                  classes);
        goto done;
    }
    confusion = calloc((size_t)classes * classes, sizeof *confusion);
    ybuf = malloc(batch * sizeof *ybuf);
    if (!confusion || !ybuf) {
        cli_error("eval", "out of memory");
        rc = 1;
        goto done;
    }
    double loss, acc;
    if ((st = cnn_net_reserve(net, (int)batch))) goto fail;
    if (!evaluate(net, d, (int)batch, classes, ybuf, &loss, &acc, confusion)) {
        st = CNN_ERR_ARG;
        goto fail;
    }
    printf("%s on %s (%s split, %lld samples, %d thread%s)\n", weights, data.name, split, (long long)d->n, n_threads,
           n_threads == 1 ? "" : "s");
    printf("loss %.4f\naccuracy %.2f%%\n\nconfusion matrix (rows: true class, columns: predicted)\n", loss, 100 * acc);
    printf("%14s", "");
    for (int j = 0; j < classes; j++) printf(" %6d", j);
    printf("\n");
    for (int i = 0; i < classes; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        if (data.class_names) snprintf(name, sizeof name, "%.13s", data.class_names[i]);
        printf("%-14s", name);
        for (int j = 0; j < classes; j++) printf(" %6lld", (long long)confusion[(size_t)i * classes + j]);
        printf("\n");
    }
    rc = 0;
    goto done;
fail:
    rc = cli_report("eval", st);
done:
    free(confusion);
    free(ybuf);
    cnn_data_free(&data);
    cnn_st_free(wst);
    cnn_net_free(net);
    return rc;
}
