/* cnn eval: the loss, the accuracy and the confusion matrix of trained weights on a data set. */
#include "cli.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char eval_usage[] =
    "usage: cnn eval --model NET.cnn --weights W.safetensors --data SOURCE [--split test|train]\n"
    "                [--batch B] [--data-dir DIR]\n"
    "\n"
    "Prints the mean cross-entropy loss, the accuracy and the confusion matrix (rows: true class,\n"
    "columns: predicted) on the test split (or the training split). W may be a cnn checkpoint or\n"
    "any safetensors file with the model's state_dict, PyTorch's included.\n";
static const char eval_example[] =
    "example:\n"
    "  cnn eval --model models/lenet5.cnn --weights lenet5.safetensors --data mnist\n";

typedef struct eval_args {
    const char *model, *weights, *source, *split, *data_dir;
    unsigned long long batch;
} eval_args;

/* Returns -1 to go on, or the exit status (0 after --help). */
static int parse_args(int argc, char **argv, eval_args *a) {
    memset(a, 0, sizeof *a);
    a->split = "test", a->batch = 256;
    const char *batch = NULL;
    const cli_opt opts[] = {
        CLI_VALUE("model", "NET.cnn", &a->model, "the model (see README, 'The model format')"),
        CLI_VALUE("weights", "W.safetensors", &a->weights, "a checkpoint, or any file of the model's state_dict"),
        CLI_VALUE("data", "SOURCE", &a->source, "mnist, fashion-mnist, an IDX or CIFAR-10 directory, a .safetensors"),
        CLI_VALUE("split", "test|train", &a->split, "the split to evaluate (default test)"),
        CLI_VALUE("batch", "B", &batch, "samples per forward pass, 1 to 65536 (default 256)"),
        CLI_VALUE("data-dir", "DIR", &a->data_dir, "where mnist and fashion-mnist are (default data/)"),
        CLI_END,
    };
    const cli_cmd cmd = {"eval", eval_usage, opts, eval_example, NULL};
    const int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    static const char *const splits[] = {"test", "train", NULL};
    int which;
    if (!cli_choice("eval", "--split", a->split, splits, &which)) return EXIT_BAD_INPUT;
    if (batch && !cli_u64("eval", "--batch", batch, 1, 65536, &a->batch)) return EXIT_BAD_INPUT;
    if (!a->model || !a->weights || !a->source)
        return cli_usage_error("eval", "--model, --weights and --data are required");
    return -1;
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    const int prc = parse_args(argc, argv, &a);
    if (prc >= 0) return prc;
    const char *model = a.model, *weights = a.weights, *source = a.source, *split = a.split, *data_dir = a.data_dir;
    const unsigned long long batch = a.batch;
    cnn_net *net = NULL;
    cnn_st *wst = NULL;
    cnn_data data;
    memset(&data, 0, sizeof data);
    int64_t *confusion = NULL, *ybuf = NULL;
    int rc = EXIT_BAD_INPUT;
    cnn_status st;
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
    printf("%s on %s (%s split, %lld samples)\n", weights, data.name, split, (long long)d->n);
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
