/* cnn predict: classifies images with a trained model and prints each one's most likely classes.
 *
 * Every image is decoded, converted to the model's channels and resized to its input size
 * (cnn_image_load), optionally inverted, normalised with the data set's mean and std, and the
 * whole set goes through the net in batches; the softmax of the logits gives the probabilities.
 * Every image is decoded before anything is printed, so a bad one fails the command (exit status
 * 2) and the output is never partial.
 */
#include "cli.h"
#include "base/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREDICT_BATCH 64      /* images per forward pass: bounds the activations' memory */

static const char predict_usage[] =
    "usage: cnn predict --model NET.cnn --weights W.safetensors [--data NAME] [--invert] [--top K]\n"
    "                   [--threads T] IMAGE...\n"
    "\n"
    "Classifies each IMAGE (PNG, JPEG, BMP, PGM/PPM) and prints its K most likely classes (default 5)\n"
    "with their probabilities. Images are converted to the model's channels (grey = 0.299 R + 0.587 G\n"
    "+ 0.114 B; alpha is ignored), resized to its input size by bilinear interpolation, scaled to\n"
    "[0,1] and normalised with the data set's mean and std. The data set (mnist, fashion-mnist,\n"
    "cifar10) is --data NAME, or else the \"data\" entry of the weights file's metadata, as training\n"
    "checkpoints store it; it also gives the class names. For an unknown data set the pixels are\n"
    "not normalised and classes are shown by index.\n"
    "\n"
    "--invert maps each pixel v to 1 - v before normalising: MNIST digits are white on black, so a\n"
    "photo or scan of dark ink on white paper needs it. --threads defaults to CNN_NUM_THREADS, else\n"
    "every core.\n"
    "\n"
    "example:\n"
    "  $ cnn predict --model models/lenet5.cnn --weights lenet5.safetensors --data mnist --invert \\\n"
    "                --top 3 digit7.png\n"
    "  digit7.png\n"
    "    1. 7   98.12%\n"
    "    2. 1    1.03%\n"
    "    3. 9    0.41%\n";

typedef struct predict_args {
    const char *model, *weights, *data;
    int invert;
    int top;                  /* 0: the default, min(5, classes) */
    unsigned long long threads; /* 0: the default (cli_threads) */
    int n_images;
    char **images;            /* n_images paths, allocated */
} predict_args;

/* Returns -1 to go on, or the exit status (0 after --help). */
static int parse_args(int argc, char **argv, predict_args *a) {
    memset(a, 0, sizeof *a);
    a->images = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *a->images);
    if (!a->images) {
        cli_error("predict", "out of memory");
        return 1;
    }
    int options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (options_done || k[0] != '-' || !k[1]) {
            a->images[a->n_images++] = argv[i];
            continue;
        }
        if (!strcmp(k, "--")) {
            options_done = 1;
            continue;
        }
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(predict_usage, stdout);
            return 0;
        }
        if (!strcmp(k, "--invert")) {
            a->invert = 1;
            continue;
        }
        if (strcmp(k, "--model") && strcmp(k, "--weights") && strcmp(k, "--data") && strcmp(k, "--top") &&
            strcmp(k, "--threads")) {
            cli_error("predict", "unknown option '%s'\n\n%s", k, predict_usage);
            return EXIT_BAD_INPUT;
        }
        if (i + 1 >= argc) {
            cli_error("predict", "option %s needs a value\n\n%s", k, predict_usage);
            return EXIT_BAD_INPUT;
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--model")) a->model = v;
        else if (!strcmp(k, "--weights")) a->weights = v;
        else if (!strcmp(k, "--data")) a->data = v;
        else if (!strcmp(k, "--threads")) {
            if (!cli_parse_u64(v, &a->threads) || a->threads < 1 || a->threads > 1024) {
                cli_error("predict", "--threads %s: expected 1 to 1024", v);
                return EXIT_BAD_INPUT;
            }
        } else {
            unsigned long long top;
            if (!cli_parse_u64(v, &top) || top < 1 || top > 1000000) {
                cli_error("predict", "--top %s: expected a positive number of classes", v);
                return EXIT_BAD_INPUT;
            }
            a->top = (int)top;
        }
    }
    if (!a->model || !a->weights || !a->n_images) {
        cli_error("predict", "--model, --weights and at least one IMAGE are required\n\n%s", predict_usage);
        return EXIT_BAD_INPUT;
    }
    return -1;
}

/* p[k] = softmax(logits)[k], computed in double with the maximum subtracted. */
static void softmax(const float *logits, int classes, double *p) {
    double max = logits[0], sum = 0.0;
    for (int k = 1; k < classes; k++)
        if (logits[k] > max) max = logits[k];
    for (int k = 0; k < classes; k++) sum += p[k] = exp((double)logits[k] - max);
    for (int k = 0; k < classes; k++) p[k] /= sum;
}

typedef struct ranked {
    double p;
    int k;
} ranked;

/* Larger probability first; ties: the lower class index. */
static int by_probability(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->k > y->k) - (x->k < y->k);
}

int cmd_predict(int argc, char **argv) {
    predict_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) {
        free(a.images);
        return rc;
    }

    cnn_net *net = NULL;
    cnn_st *wst = NULL;
    float *x = NULL;
    double *probs = NULL;
    ranked *order = NULL;
    cnn_status st;
    rc = EXIT_BAD_INPUT;

    if (!cli_threads(a.threads)) {
        st = CNN_ERR_ARG;
        goto fail;
    }
    if ((st = cnn_net_load(a.model, &net))) goto fail;
    int chw[3], ochw[3];
    cnn_net_input_shape(net, chw);
    cnn_net_output_shape(net, ochw);
    if (chw[0] != 1 && chw[0] != 3) {
        cli_error("predict", "%s: the model's input is %dx%dx%d; images need 1 (grey) or 3 (RGB) channels", a.model,
                  chw[0], chw[1], chw[2]);
        goto done;
    }
    if (ochw[1] != 1 || ochw[2] != 1) {
        cli_error("predict", "%s: the model's output is %dx%dx%d; classifying needs one score per class (end the "
                             "model with flatten or linear)", a.model, ochw[0], ochw[1], ochw[2]);
        goto done;
    }
    const int classes = ochw[0];
    if ((st = cnn_st_load(a.weights, &wst))) goto fail;
    if ((st = cnn_net_load_weights(net, wst, 0))) {
        cnn_error_prefix(a.weights);
        goto fail;
    }

    /* The data set: its normalisation and class names. */
    const char *data = a.data ? a.data : cnn_st_metadata(wst, "data");
    float mean[3] = {0.0f, 0.0f, 0.0f}, std[3] = {1.0f, 1.0f, 1.0f};
    const char *const *names = NULL;
    if (data) {
        int dchw[3], dclasses = 0;
        float dmean[3], dstd[3];
        const char *const *dnames = NULL;
        if (cnn_data_known(data, dchw, dmean, dstd, &dclasses, &dnames)) {
            if (dchw[0] != chw[0] || dclasses != classes) {
                cli_error("predict", "data set '%s'%s has %d channel(s) and %d classes, but the model %s takes %d "
                                     "channel(s) and gives %d classes", data, a.data ? "" : " (from the weights' metadata)",
                          dchw[0], dclasses, a.model, chw[0], classes);
                goto done;
            }
            memcpy(mean, dmean, sizeof mean);
            memcpy(std, dstd, sizeof std);
            names = dnames;
        } else if (a.data) {
            cli_error("predict", "--data %s: unknown data set (known: mnist, fashion-mnist, cifar10)", a.data);
            goto done;
        } else {
            /* A checkpoint trained on other data records the normalisation it used. */
            const char *m = cnn_st_metadata(wst, "mean"), *s = cnn_st_metadata(wst, "std");
            for (int c = 0; m && s && c < chw[0]; c++) {
                char *end_m, *end_s;
                const double vm = strtod(m, &end_m), vs = strtod(s, &end_s);
                if (end_m == m || end_s == s || !(vs > 0)) break;
                mean[c] = (float)vm, std[c] = (float)vs;
                m = *end_m == ',' ? end_m + 1 : end_m;
                s = *end_s == ',' ? end_s + 1 : end_s;
            }
        }
    }

    int top = a.top ? a.top : (classes < 5 ? classes : 5);
    if (top > classes) {
        cli_error("predict", "--top %d: the model has only %d classes", top, classes);
        goto done;
    }

    /* Decode everything first: a bad image fails the command before anything is printed. */
    const size_t per = (size_t)chw[0] * (size_t)chw[1] * (size_t)chw[2];
    const int n = a.n_images;
    x = malloc((size_t)n * per * sizeof *x);
    probs = malloc((size_t)n * (size_t)classes * sizeof *probs);
    order = malloc((size_t)classes * sizeof *order);
    if (!x || !probs || !order) {
        cli_error("predict", "out of memory for %d images", n);
        rc = 1;
        goto done;
    }
    const size_t plane = (size_t)chw[1] * (size_t)chw[2];
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * per;
        if ((st = cnn_image_load(a.images[i], chw[0], chw[1], chw[2], xi))) goto fail;
        for (int c = 0; c < chw[0]; c++)
            for (size_t j = 0; j < plane; j++) {
                float v = xi[(size_t)c * plane + j];
                if (a.invert) v = 1.0f - v;
                xi[(size_t)c * plane + j] = (v - mean[c]) / std[c];
            }
    }

    const int batch = n < PREDICT_BATCH ? n : PREDICT_BATCH;
    if ((st = cnn_net_reserve(net, batch))) goto fail;
    cnn_net_set_training(net, 0);   /* inference: batch norm's running statistics, no dropout */
    for (int i0 = 0; i0 < n; i0 += batch) {
        const int m = n - i0 < batch ? n - i0 : batch;
        if ((st = cnn_net_forward(net, x + (size_t)i0 * per, m))) goto fail;
        const float *logits = cnn_net_output(net);
        for (int i = 0; i < m; i++)
            softmax(logits + (size_t)i * (size_t)classes, classes, probs + (size_t)(i0 + i) * (size_t)classes);
    }

    /* The names' column is as wide as the longest name shown (at least the index's digits). */
    int width = 1;
    for (int k = 0; k < classes; k++) {
        char idx[16];
        const int len = names ? (int)strlen(names[k]) : snprintf(idx, sizeof idx, "%d", k);
        if (len > width) width = len;
    }
    if (width > 40) width = 40;
    int rank_width = 1;
    for (int t = top; t >= 10; t /= 10) rank_width++;
    for (int i = 0; i < n; i++) {
        const double *p = probs + (size_t)i * (size_t)classes;
        for (int k = 0; k < classes; k++) order[k] = (ranked){p[k], k};
        qsort(order, (size_t)classes, sizeof *order, by_probability);
        printf("%s%s\n", i ? "\n" : "", a.images[i]);
        for (int t = 0; t < top; t++) {
            char idx[16];
            snprintf(idx, sizeof idx, "%d", order[t].k);
            printf("  %*d. %-*s %7.2f%%\n", rank_width, t + 1, width, names ? names[order[t].k] : idx,
                   100.0 * order[t].p);
        }
    }
    rc = 0;
    goto done;

fail:
    rc = cli_report("predict", st);
done:
    free(x);
    free(probs);
    free(order);
    free(a.images);
    cnn_st_free(wst);
    cnn_net_free(net);
    return rc;
}
