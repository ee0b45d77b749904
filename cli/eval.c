/* cnn eval: the loss, the accuracy, the confusion matrix and each class's precision and recall of
 * trained weights on a data set, as text or (--json) as one JSON object.
 *
 * The model and the data set default to what the checkpoint records (its "model" and "source"
 * metadata, written by cnn train); data other than what it was trained on is evaluated, with a
 * warning. */
#include "cli.h"
#include "trained.h"
#include "base/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char eval_usage[] =
    "usage: cnn eval --weights W.safetensors [--model NET.cnn] [--data SOURCE] [--split test|train]\n"
    "                [--batch B] [--threads T] [--data-dir DIR] [--json]\n"
    "\n"
    "Prints the mean cross-entropy loss, the accuracy, the confusion matrix (rows: true class,\n"
    "columns: predicted) and each class's precision (of the samples predicted as the class, the\n"
    "share that are) and recall (of the class's samples, the share predicted as it) on the test\n"
    "split (or the training split). W may be a cnn checkpoint or any safetensors file with the\n"
    "model's state_dict, PyTorch's included. Without --model the model is the checkpoint's own\n"
    "(the model text cnn train stores in it); without --data the data is what it was trained on\n"
    "(under --data-dir, default data/). Data other than that is evaluated with a warning.\n"
    "--json prints one JSON object on one line instead: weights, model (null: the checkpoint's),\n"
    "data, source, split, samples, loss, accuracy (a fraction), classes (per class: class, name,\n"
    "support, predicted, precision, recall; fractions, null where there is nothing to divide by)\n"
    "and confusion (rows: true class).\n";
static const char eval_example[] =
    "example:\n"
    "  cnn eval --weights lenet5.safetensors\n"
    "  cnn eval --model models/lenet5.cnn --weights lenet5.safetensors --data mnist --json\n";

/* The share num/den, or -1 when den is 0. */
static double share(int64_t num, int64_t den) { return den ? (double)num / (double)den : -1.0; }

static json_t *json_share(double v) { return v < 0 ? json_null() : json_real(v); }

/* Class k's name in buf: the data set's, or the index (for unnamed classes, and for outputs past
 * the data set's classes). */
static const char *class_name(const cnn_data *data, int k, char *buf, size_t cap) {
    if (data->class_names && k < data->num_classes) snprintf(buf, cap, "%s", data->class_names[k]);
    else snprintf(buf, cap, "%d", k);
    return buf;
}

typedef struct eval_args {
    const char *model, *weights, *source, *split, *data_dir;
    unsigned long long batch, threads;
    int json, force_model;
} eval_args;

/* Returns -1 to go on, or the exit status (0 after --help). */
static int parse_args(int argc, char **argv, eval_args *a) {
    memset(a, 0, sizeof *a);
    a->split = "test", a->batch = 256;
    const char *batch = NULL, *threads = NULL;
    const cli_opt opts[] = {
        CLI_VALUE("model", "NET.cnn", &a->model, "the model (default: the checkpoint's own)"),
        CLI_VALUE("weights", "W.safetensors", &a->weights, "a checkpoint, or any file of the model's state_dict"),
        CLI_VALUE("data", "SOURCE", &a->source, "mnist, fashion-mnist, an IDX or CIFAR-10 directory, a .safetensors "
                                                "(default: the checkpoint's)"),
        CLI_VALUE("split", "test|train", &a->split, "the split to evaluate (default test)"),
        CLI_VALUE("batch", "B", &batch, "samples per forward pass, 1 to 65536 (default 256)"),
        CLI_VALUE("data-dir", "DIR", &a->data_dir, "where mnist and fashion-mnist are (default data/)"),
        CLI_VALUE("threads", "T", &threads, "threads, 1 to 1024 (default: CNN_NUM_THREADS, else every core)"),
        CLI_FLAG("json", &a->json, "one JSON object on one line instead of the text"),
        CLI_FLAG("force-model", &a->force_model, "use --model even where it differs from the checkpoint's model"),
        CLI_END,
    };
    const cli_cmd cmd = {"eval", eval_usage, opts, eval_example, NULL};
    const int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    static const char *const splits[] = {"test", "train", NULL};
    int which;
    if (!cli_choice("eval", "--split", a->split, splits, &which)) return EXIT_BAD_INPUT;
    if (batch && !cli_u64("eval", "--batch", batch, 1, 65536, &a->batch)) return EXIT_BAD_INPUT;
    if (threads && !cli_u64("eval", "--threads", threads, 1, 1024, &a->threads)) return EXIT_BAD_INPUT;
    if (!a->weights) return cli_usage_error("eval", "--weights is required");
    return -1;
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    const int prc = parse_args(argc, argv, &a);
    if (prc >= 0) return prc;
    const char *model = a.model, *weights = a.weights, *source = a.source, *split = a.split, *data_dir = a.data_dir;
    const unsigned long long batch = a.batch;
    const int as_json = a.json;
    const unsigned long long threads = a.threads;
    cnn_net *net = NULL;
    cnn_st *wst = NULL;
    cnn_data data;
    memset(&data, 0, sizeof data);
    int64_t *confusion = NULL, *ybuf = NULL;
    json_t *doc = NULL;
    int rc = EXIT_BAD_INPUT;
    cnn_status st = CNN_ERR_ARG;
    const int n_threads = cli_threads(threads);
    if (!n_threads) goto fail;
    char model_name[1024];
    if ((st = cnn_st_load(weights, &wst))) goto fail;
    if (!trained_model_agrees("eval", model, wst, weights, a.force_model)) goto done;
    if ((st = trained_model(model, wst, weights, &net, model_name, sizeof model_name))) goto fail;
    if ((st = cnn_net_load_weights(net, wst, 0))) {
        cnn_error_prefix(weights);
        goto fail;
    }
    /* The data: --data, else the source the checkpoint was trained on. */
    const int data_given = source != NULL;
    if (!source) source = cnn_st_metadata(wst, "source");
    if (!source) {
        cli_error("eval", "--data is required: %s does not say what it was trained on (no \"source\" in its "
                          "metadata)", weights);
        goto done;
    }
    if ((st = cnn_data_open(source, data_dir, &data))) {
        if (!data_given) {
            char what[1200];
            snprintf(what, sizeof what, "%s was trained on '%s' (give --data to evaluate on other data)", weights,
                     source);
            cnn_error_prefix(what);
        }
        goto fail;
    }
    if (data_given) trained_data_check("eval", wst, weights, source, data.name, "evaluating on");
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
                  d->c, d->h, d->w, model_name, in[0], in[1], in[2]);
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

    /* Per class k: support = row k's sum (samples of class k), predicted = column k's sum,
     * precision = C[k][k] / predicted, recall = C[k][k] / support. */
    if (as_json) {
        doc = json_object();
        json_t *cls = json_array(), *conf = json_array();
        json_object_set_new(doc, "weights", json_string(weights));
        json_object_set_new(doc, "model", model ? json_string(model) : json_null());
        json_object_set_new(doc, "data", json_string(data.name));
        json_object_set_new(doc, "source", json_string(source));
        json_object_set_new(doc, "split", json_string(split));
        json_object_set_new(doc, "samples", json_integer((json_int_t)d->n));
        json_object_set_new(doc, "loss", json_real(loss));
        json_object_set_new(doc, "accuracy", json_real(acc));
        for (int k = 0; k < classes; k++) {
            int64_t support = 0, predicted = 0;
            json_t *row = json_array();
            for (int j = 0; j < classes; j++) {
                support += confusion[(size_t)k * classes + j];
                predicted += confusion[(size_t)j * classes + k];
                json_array_append_new(row, json_integer((json_int_t)confusion[(size_t)k * classes + j]));
            }
            json_array_append_new(conf, row);
            const int64_t hit = confusion[(size_t)k * classes + k];
            char name[64];
            json_t *c = json_object();
            json_object_set_new(c, "class", json_integer(k));
            json_object_set_new(c, "name", json_string(class_name(&data, k, name, sizeof name)));
            json_object_set_new(c, "support", json_integer((json_int_t)support));
            json_object_set_new(c, "predicted", json_integer((json_int_t)predicted));
            json_object_set_new(c, "precision", json_share(share(hit, predicted)));
            json_object_set_new(c, "recall", json_share(share(hit, support)));
            json_array_append_new(cls, c);
        }
        json_object_set_new(doc, "classes", cls);
        json_object_set_new(doc, "confusion", conf);
        char *text = json_dumps(doc, JSON_PRESERVE_ORDER);
        if (!text) {
            cli_error("eval", "out of memory");
            rc = 1;
            goto done;
        }
        puts(text);
        free(text);
        rc = 0;
        goto done;
    }

    printf("%s on %s (%s split, %lld samples, %d thread%s)\n", weights, data.name, split, (long long)d->n, n_threads,
           n_threads == 1 ? "" : "s");
    printf("loss %.4f\naccuracy %.2f%%\n\nconfusion matrix (rows: true class, columns: predicted)\n", loss, 100 * acc);
    printf("%14s", "");
    for (int j = 0; j < classes; j++) printf(" %6d", j);
    printf("\n");
    for (int i = 0; i < classes; i++) {
        char name[14];
        printf("%-14s", class_name(&data, i, name, sizeof name));
        for (int j = 0; j < classes; j++) printf(" %6lld", (long long)confusion[(size_t)i * classes + j]);
        printf("\n");
    }
    printf("\nper class (precision: of the samples predicted as the class, the share that are; recall: of the\n"
           "class's samples, the share predicted as it; '-' where there are none)\n");
    printf("%-14s %9s %9s %8s %9s\n", "class", "precision", "recall", "support", "predicted");
    for (int k = 0; k < classes; k++) {
        int64_t support = 0, predicted = 0;
        for (int j = 0; j < classes; j++) {
            support += confusion[(size_t)k * classes + j];
            predicted += confusion[(size_t)j * classes + k];
        }
        const int64_t hit = confusion[(size_t)k * classes + k];
        char name[14], p[16] = "-", r[16] = "-";
        const double pk = share(hit, predicted), rk = share(hit, support);
        if (pk >= 0) snprintf(p, sizeof p, "%.2f%%", 100 * pk);
        if (rk >= 0) snprintf(r, sizeof r, "%.2f%%", 100 * rk);
        printf("%-14s %9s %9s %8lld %9lld\n", class_name(&data, k, name, sizeof name), p, r, (long long)support,
               (long long)predicted);
    }
    rc = 0;
    goto done;
fail:
    rc = cli_report("eval", st);
done:
    json_decref(doc);
    free(confusion);
    free(ybuf);
    cnn_data_free(&data);
    cnn_st_free(wst);
    cnn_net_free(net);
    return rc;
}
