/* cnn predict: classifies images with a trained model and prints each one's most likely classes.
 *
 * Every image is decoded, composited over white when it has alpha, converted to the model's
 * channels and resized to its input size (cnn_image_load), inverted when asked or when a data set
 * of light strokes on a dark background (MNIST, Fashion-MNIST) meets an image with a light
 * background, normalised with the data set's mean and std, and the whole set goes through the
 * net in batches; the softmax of the logits gives the probabilities. Every image is decoded
 * before anything is printed, so a bad one fails the command (exit status 2) and the output is
 * never partial. The model, the data set and its normalisation default to what the checkpoint
 * records (cnn train stores them in its metadata).
 */
#include "cli.h"
#include "trained.h"
#include "base/error.h"

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define PREDICT_BATCH 64      /* images per forward pass: bounds the activations' memory */
#define LIGHT_BORDER 0.5      /* a border mean above this is a light background */

static const char predict_usage[] =
    "usage: cnn predict --weights W.safetensors [--model NET.cnn] [--data NAME]\n"
    "                   [--invert | --no-invert] [--top K] [--threads T] [--json] IMAGE|DIR...\n"
    "\n"
    "Classifies each IMAGE (PNG, JPEG, BMP, PGM/PPM), and each image file of a directory DIR (by\n"
    "extension: .png .jpg .jpeg .bmp .pgm .ppm .pnm, in sorted order), and prints its K most likely\n"
    "classes (default 5) with their probabilities. Images with alpha are composited over white (so\n"
    "black ink on a transparent background is black on white), converted to the model's channels\n"
    "(grey = 0.299 R + 0.587 G + 0.114 B), resized to its input size by bilinear interpolation,\n"
    "scaled to [0,1] and normalised with the data set's mean and std. The model is --model, or else\n"
    "the one a checkpoint of cnn train stores. The data set (mnist, fashion-mnist, cifar10) is\n"
    "--data NAME, or else the \"data\" entry of the weights file's metadata; it also gives the class\n"
    "names. For an unknown data set the pixels are normalised with the checkpoint's \"mean\" and\n"
    "\"std\" (when it has them) and classes are shown by index.\n"
    "\n"
    "MNIST and Fashion-MNIST are light strokes on a black background. For them an image whose\n"
    "border (its outermost pixels at the model's input size, after compositing) has a mean above\n"
    "0.5 is taken for dark ink on light paper and inverted (v -> 1 - v), with a line that says so.\n"
    "--invert inverts every image, --no-invert none. --threads defaults to CNN_NUM_THREADS, else\n"
    "every core.\n"
    "\n"
    "--json prints one JSON object per image, one per line (JSON Lines): image, inverted,\n"
    "border_mean, and top, the K classes as {class, name, probability}, most likely first.\n";
static const char predict_example[] =
    "example:\n"
    "  $ cnn predict --weights lenet5.safetensors --top 3 digit7.png\n"
    "  digit7.png\n"
    "    inverted: light background (mean border 0.93); --no-invert to keep it\n"
    "    1. 7   98.12%\n"
    "    2. 1    1.03%\n"
    "    3. 9    0.41%\n";

typedef struct predict_args {
    const char *model, *weights, *data;
    int invert;               /* -1: by the background (the default), 0: --no-invert, 1: --invert */
    int json, force_model;
    int top;                  /* 0: the default, min(5, classes) */
    unsigned long long threads; /* 0: the default (cli_threads) */
    int n_images;
    const char **images;      /* n_images paths, allocated */
} predict_args;

/* Returns -1 to go on, or the exit status (0 after --help). */
static int parse_args(int argc, char **argv, predict_args *a) {
    memset(a, 0, sizeof *a);
    a->invert = -1;
    a->images = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *a->images);
    if (!a->images) {
        cli_error("predict", "out of memory");
        return 1;
    }
    const char *top = NULL, *threads = NULL;
    int invert = 0, no_invert = 0;
    const cli_opt opts[] = {
        CLI_VALUE("model", "NET.cnn", &a->model, "the model (default: the checkpoint's own)"),
        CLI_VALUE("weights", "W.safetensors", &a->weights, "a checkpoint, or any file of the model's state_dict"),
        CLI_VALUE("data", "NAME", &a->data, "mnist, fashion-mnist or cifar10 (default: the checkpoint's)"),
        CLI_FLAG("invert", &invert, "map each pixel v to 1 - v (default: by the background)"),
        CLI_FLAG("no-invert", &no_invert, "never invert"),
        CLI_VALUE("top", "K", &top, "how many classes to print (default 5)"),
        CLI_VALUE("threads", "T", &threads, "threads, 1 to 1024 (default: CNN_NUM_THREADS, else every core)"),
        CLI_FLAG("json", &a->json, "one JSON object per image, one per line"),
        CLI_FLAG("force-model", &a->force_model, "use --model even where it differs from the checkpoint's model"),
        CLI_END,
    };
    const cli_cmd cmd = {"predict", predict_usage, opts, predict_example, "IMAGE|DIR"};
    const int rc = cli_parse(&cmd, argc, argv, a->images, &a->n_images);
    if (rc >= 0) return rc;
    if (invert && no_invert) return cli_usage_error("predict", "give --invert or --no-invert, not both");
    a->invert = invert ? 1 : no_invert ? 0 : -1;
    if (threads && !cli_u64("predict", "--threads", threads, 1, 1024, &a->threads)) return EXIT_BAD_INPUT;
    unsigned long long k;
    if (top) {
        if (!cli_u64("predict", "--top", top, 1, 1000000, &k)) return EXIT_BAD_INPUT;
        a->top = (int)k;
    }
    if (!a->weights || !a->n_images)
        return cli_usage_error("predict", "--weights and at least one IMAGE are required");
    return -1;
}

/* ---- the images: files as given, directories listed ---------------------------------------- */

typedef struct image_list {
    const char **paths;            /* n paths; owned[i] says whether paths[i] is allocated here */
    char *owned;
    int n, cap;
} image_list;

static int list_add(image_list *l, const char *path, int owned) {
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 16;
        const char **p = realloc(l->paths, (size_t)cap * sizeof *p);
        if (!p) return 0;
        l->paths = p;
        char *o = realloc(l->owned, (size_t)cap);
        if (!o) return 0;
        l->owned = o;
        l->cap = cap;
    }
    l->paths[l->n] = path, l->owned[l->n] = (char)owned;
    l->n++;
    return 1;
}

static void list_free(image_list *l) {
    for (int i = 0; i < l->n; i++)
        if (l->owned[i]) free((void *)l->paths[i]);
    free(l->paths);
    free(l->owned);
}

static int is_image_name(const char *name) {
    static const char *const EXT[] = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm"};
    const size_t n = strlen(name);
    if (name[0] == '.') return 0; /* hidden files */
    for (size_t i = 0; i < sizeof EXT / sizeof EXT[0]; i++) {
        const size_t k = strlen(EXT[i]);
        if (n > k && !strcasecmp(name + n - k, EXT[i])) return 1;
    }
    return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Adds the image files of directory `dir`, sorted by name (bytewise). Returns 0, or the exit status. */
static int add_directory(image_list *l, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        cli_error("predict", "%s: cannot list the directory: %s", dir, strerror(errno));
        return EXIT_BAD_INPUT;
    }
    const int first = l->n;
    const size_t dl = strlen(dir);
    const int slash = dl > 0 && dir[dl - 1] == '/';
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!is_image_name(e->d_name)) continue;
        const size_t len = dl + 1 + strlen(e->d_name) + 1;
        char *p = malloc(len);
        if (!p) {
            rc = 1;
            break;
        }
        snprintf(p, len, "%s%s%s", dir, slash ? "" : "/", e->d_name);
        struct stat sb;
        if (stat(p, &sb) || !S_ISREG(sb.st_mode)) { /* a directory named x.png, a dangling link */
            free(p);
            continue;
        }
        if (!list_add(l, p, 1)) {
            free(p);
            rc = 1;
            break;
        }
    }
    closedir(d);
    if (rc) {
        cli_error("predict", "out of memory listing %s", dir);
        return rc;
    }
    if (l->n == first) {
        cli_error("predict", "%s: no image files in the directory (.png, .jpg, .jpeg, .bmp, .pgm, .ppm, .pnm)", dir);
        return EXIT_BAD_INPUT;
    }
    qsort(l->paths + first, (size_t)(l->n - first), sizeof *l->paths, by_name);
    return 0;
}

/* Every argument: a directory's image files, or the file itself (whose errors the decoder reports). */
static int expand_images(const predict_args *a, image_list *l) {
    for (int i = 0; i < a->n_images; i++) {
        struct stat sb;
        if (!stat(a->images[i], &sb) && S_ISDIR(sb.st_mode)) {
            const int rc = add_directory(l, a->images[i]);
            if (rc) return rc;
        } else if (!list_add(l, a->images[i], 0)) {
            cli_error("predict", "out of memory");
            return 1;
        }
    }
    return 0;
}

/* The mean of an image's outermost ring of pixels, over every channel (values in [0,1]). */
static double border_mean(const float *x, int c, int h, int w) {
    double sum = 0.0;
    long count = 0;
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++)
                if (y == 0 || y == h - 1 || xx == 0 || xx == w - 1) {
                    sum += x[((size_t)ch * h + y) * w + xx];
                    count++;
                }
    return sum / (double)count;
}

/* p[k] = softmax(logits)[k], computed in double with the maximum subtracted. */
static void softmax(const float *logits, int classes, double *p) {
    double max = logits[0], sum = 0.0;
    for (int k = 1; k < classes; k++)
        if (logits[k] > max) max = logits[k];
    for (int k = 0; k < classes; k++) sum += p[k] = exp((double)logits[k] - max);
    for (int k = 0; k < classes; k++) p[k] /= sum;
}

/* A checkpoint's "mean" and "std" metadata: `channels` comma-separated numbers each, every mean
 * finite and every std finite and at least STD_MIN (a smaller one would turn a pixel into
 * a value of 1e6 or more, or Inf, and print confident nonsense). Prints why and returns 0 if not. */
#define STD_MIN 1e-6
static int read_normalisation(const char *weights, const char *m, const char *s, int channels, float *mean, float *std) {
    const char *const m0 = m, *const s0 = s;
    for (int c = 0; c < channels; c++) {
        char *end_m, *end_s;
        const double vm = strtod(m, &end_m), vs = strtod(s, &end_s);
        const int bad_m = end_m == m || !isfinite(vm) || fabs(vm) > FLT_MAX;
        const int bad_s = end_s == s || !isfinite(vs) || vs > FLT_MAX || !(vs >= STD_MIN);
        if (bad_m || bad_s) {
            cli_error("predict", "%s: __metadata__ \"%s\" is '%.60s': it needs %d comma-separated finite number(s)%s",
                      weights, bad_m ? "mean" : "std", bad_m ? m0 : s0, channels,
                      bad_m ? "" : ", each at least 1e-6");
            return 0;
        }
        mean[c] = (float)vm, std[c] = (float)vs;
        m = *end_m == ',' ? end_m + 1 : end_m;
        s = *end_s == ',' ? end_s + 1 : end_s;
    }
    return 1;
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
    double *probs = NULL, *border = NULL;
    char *inverted = NULL;
    ranked *order = NULL;
    image_list list = {0};
    cnn_status st;
    char model_name[1024];
    rc = EXIT_BAD_INPUT;

    if (!cli_threads(a.threads)) {
        st = CNN_ERR_ARG;
        goto fail;
    }
    /* The model file first when it is given (its errors before the weights'), else the checkpoint's. */
    if (a.model && (st = trained_model(a.model, NULL, a.weights, &net, model_name, sizeof model_name))) goto fail;
    if ((st = cnn_st_load(a.weights, &wst))) goto fail;
    if (!trained_model_agrees("predict", a.model, wst, a.weights, a.force_model)) goto done;
    if (!a.model && (st = trained_model(NULL, wst, a.weights, &net, model_name, sizeof model_name))) goto fail;
    int chw[3], ochw[3];
    cnn_net_input_shape(net, chw);
    cnn_net_output_shape(net, ochw);
    if (chw[0] != 1 && chw[0] != 3) {
        cli_error("predict", "%s: the model's input is %dx%dx%d; images need 1 (grey) or 3 (RGB) channels", model_name,
                  chw[0], chw[1], chw[2]);
        goto done;
    }
    if (ochw[1] != 1 || ochw[2] != 1) {
        cli_error("predict", "%s: the model's output is %dx%dx%d; classifying needs one score per class (end the "
                             "model with flatten or linear)", model_name, ochw[0], ochw[1], ochw[2]);
        goto done;
    }
    const int classes = ochw[0];
    if ((st = cnn_net_load_weights(net, wst, 0))) {
        cnn_error_prefix(a.weights);
        goto fail;
    }

    /* The data set: its normalisation and class names. */
    const char *data = a.data ? a.data : cnn_st_metadata(wst, "data");
    float mean[3] = {0.0f, 0.0f, 0.0f}, std[3] = {1.0f, 1.0f, 1.0f};
    const char *const *names = NULL;
    int dark_background = 0;  /* light strokes on black: a light background is inverted */
    if (data) {
        int dchw[3], dclasses = 0;
        float dmean[3], dstd[3];
        const char *const *dnames = NULL;
        if (cnn_data_known(data, dchw, dmean, dstd, &dclasses, &dnames)) {
            if (dchw[0] != chw[0] || dclasses != classes) {
                cli_error("predict", "data set '%s'%s has %d channel(s) and %d classes, but the model %s takes %d "
                                     "channel(s) and gives %d classes", data, a.data ? "" : " (from the weights' metadata)",
                          dchw[0], dclasses, model_name, chw[0], classes);
                goto done;
            }
            if (a.data) trained_data_check("predict", wst, a.weights, NULL, a.data, "normalising and naming classes as");
            memcpy(mean, dmean, sizeof mean);
            memcpy(std, dstd, sizeof std);
            names = dnames;
            dark_background = !strcmp(data, "mnist") || !strcmp(data, "fashion-mnist");
        } else if (a.data) {
            cli_error("predict", "--data %s: unknown data set (known: mnist, fashion-mnist, cifar10)", a.data);
            goto done;
        } else {
            /* A checkpoint trained on other data records the normalisation it used. */
            const char *m = cnn_st_metadata(wst, "mean"), *s = cnn_st_metadata(wst, "std");
            if (m && s && !read_normalisation(a.weights, m, s, chw[0], mean, std)) goto done;
        }
    }

    int top = a.top ? a.top : (classes < 5 ? classes : 5);
    if (top > classes) {
        cli_error("predict", "--top %d: the model has only %d classes", top, classes);
        goto done;
    }
    if ((rc = expand_images(&a, &list))) goto done;
    rc = EXIT_BAD_INPUT;

    /* Decode everything first: a bad image fails the command before anything is printed. */
    const size_t per = (size_t)chw[0] * (size_t)chw[1] * (size_t)chw[2];
    const int n = list.n;
    x = malloc((size_t)n * per * sizeof *x);
    probs = malloc((size_t)n * (size_t)classes * sizeof *probs);
    border = malloc((size_t)n * sizeof *border);
    inverted = malloc((size_t)n);
    order = malloc((size_t)classes * sizeof *order);
    if (!x || !probs || !border || !inverted || !order) {
        cli_error("predict", "out of memory for %d images", n);
        rc = 1;
        goto done;
    }
    const size_t plane = (size_t)chw[1] * (size_t)chw[2];
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * per;
        if ((st = cnn_image_load(list.paths[i], chw[0], chw[1], chw[2], xi))) goto fail;
        border[i] = border_mean(xi, chw[0], chw[1], chw[2]);
        inverted[i] = (char)(a.invert >= 0 ? a.invert : dark_background && border[i] > LIGHT_BORDER);
        for (int c = 0; c < chw[0]; c++)
            for (size_t j = 0; j < plane; j++) {
                float v = xi[(size_t)c * plane + j];
                if (inverted[i]) v = 1.0f - v;
                xi[(size_t)c * plane + j] = (v - mean[c]) / std[c];
            }
    }

    const int batch = n < PREDICT_BATCH ? n : PREDICT_BATCH;
    if ((st = cnn_net_reserve(net, batch))) goto fail;
    /* Inference: batch norm's running statistics, folded into the convolutions; no dropout. */
    if ((st = cnn_net_set_inference(net, 1))) goto fail;
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
        /* Inverted by the rule (not by --invert): say so, and how to keep the image. */
        const int auto_inverted = inverted[i] && a.invert < 0;
        if (a.json) {
            json_t *o = json_object(), *tops = json_array();
            json_object_set_new(o, "image", json_string(list.paths[i]));
            json_object_set_new(o, "inverted", json_boolean(inverted[i]));
            json_object_set_new(o, "border_mean", json_real(border[i]));
            for (int t = 0; t < top; t++) {
                char idx[16];
                snprintf(idx, sizeof idx, "%d", order[t].k);
                json_t *e = json_object();
                json_object_set_new(e, "class", json_integer(order[t].k));
                json_object_set_new(e, "name", json_string(names ? names[order[t].k] : idx));
                json_object_set_new(e, "probability", json_real(order[t].p));
                json_array_append_new(tops, e);
            }
            json_object_set_new(o, "top", tops);
            char *text = json_dumps(o, JSON_PRESERVE_ORDER);
            json_decref(o);
            if (!text) {
                cli_error("predict", "out of memory");
                rc = 1;
                goto done;
            }
            puts(text);
            free(text);
            continue;
        }
        printf("%s%s\n", i ? "\n" : "", list.paths[i]);
        if (auto_inverted)
            printf("  inverted: light background (mean border %.2f); --no-invert to keep it\n", border[i]);
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
    free(border);
    free(inverted);
    free(order);
    free(a.images);
    list_free(&list);
    cnn_st_free(wst);
    cnn_net_free(net);
    return rc;
}
