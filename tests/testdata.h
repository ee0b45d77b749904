/* What the tests that run the CLI share: a temporary directory and paths in it, small files, and
 * a learnable synthetic data set. Include after testutil.h. */
#ifndef CNN_TESTDATA_H
#define CNN_TESTDATA_H

#include <time.h>

/* The whole file at p in a malloc'd buffer (NULL if absent; the caller frees it), its length in *len. */
static inline unsigned char *tu_slurp(const char *p, size_t *len) {
    FILE *f = fopen(p, "rb");
    *len = 0;
    if (!f) return NULL;
    size_t cap = 1 << 16;
    unsigned char *b = malloc(cap);
    assert_non_null(b);
    for (size_t k; (k = fread(b + *len, 1, cap - *len, f)) > 0;) {
        *len += k;
        if (*len == cap) assert_non_null(b = realloc(b, cap *= 2));
    }
    fclose(f);
    return b;
}

/* The __metadata__ value `key` of the checkpoint ck, copied into buf ("(none)" when absent); fails
 * the test unless ck loads. */
static inline const char *tu_meta(const char *ck, const char *key, char *buf, size_t len) {
    cnn_st *st = NULL;
    if (cnn_st_load(ck, &st) != CNN_OK) fail_msg("%s does not load: %s", ck, cnn_last_error());
    const char *v = cnn_st_metadata(st, key);
    snprintf(buf, len, "%s", v ? v : "(none)");
    cnn_st_free(st);
    return buf;
}

/* Makes /tmp/cnn_<name>_XXXXXX into dir (64 bytes); 0, or -1 if it cannot (for a cmocka setup). */
static inline int tu_make_temp_dir(char dir[64], const char *name) {
    if (snprintf(dir, 64, "/tmp/cnn_%s_XXXXXX", name) >= 64) return -1;
    return mkdtemp(dir) ? 0 : -1;
}

/* dir/name into buf (512 bytes); fails the test if it does not fit. Returns buf. */
static inline char *tu_join(char *buf, const char *dir, const char *name) {
    if (snprintf(buf, 512, "%s/%s", dir, name) >= 512) fail_msg("%s/%s: too long", dir, name);
    return buf;
}

/* Writes the string text to path, replacing it. */
static inline void tu_write_text(const char *path, const char *text) { tu_write_bytes(path, text, strlen(text)); }

/* Whether path names something stat can see. */
static inline int tu_exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0;
}

/* Seconds on the monotonic clock. */
static inline double tu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The next of the tests' deterministic pseudo-random floats in [0, 0.25): a 64-bit LCG step, then
 * 1000 levels from its high bits. */
static inline float tu_next_float(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) % 1000) / 4000.0f;
}

/* A learnable synthetic data set: n training and n_test test samples of channels×size×size, noise
 * from tu_next_float(seed) drawn sample after sample; sample i is of class k = i % classes, and 1 is
 * added to a patch×patch square of it in channel k % channels at (row, col) = at(k), by default
 * ((2k) % 5, (3k) % 5). Zero fields take the defaults noted. */
typedef struct tu_dataset {
    int n, n_test;
    int channels, size;   /* 0: 1 channel of 6×6 */
    int classes;          /* 0: 3 */
    uint64_t seed;        /* 0: 12345 */
    int patch;            /* 0: 2 */
    void (*at)(int k, int *row, int *col);
} tu_dataset;

/* Writes d's data set to path: tensors input [n, C, S, S] (F32) and target [n] (I64), then, when
 * n_test > 0, test_input and test_target. */
static inline void tu_make_dataset(const char *path, tu_dataset d) {
    const int ch = d.channels ? d.channels : 1, size = d.size ? d.size : 6, classes = d.classes ? d.classes : 3;
    const int patch = d.patch ? d.patch : 2, per = ch * size * size, total = d.n + d.n_test;
    float *x = calloc((size_t)total * (size_t)per, sizeof *x);
    int64_t *y = calloc((size_t)total, sizeof *y);
    assert_true(x && y);
    uint64_t s = d.seed ? d.seed : 12345;
    for (int i = 0; i < total; i++) {
        const int k = i % classes;
        y[i] = k;
        for (int j = 0; j < per; j++) x[(size_t)i * per + j] = tu_next_float(&s);
        int r = (k * 2) % 5, c = (k * 3) % 5;
        if (d.at) d.at(k, &r, &c);
        float *img = x + (size_t)i * per + (size_t)(k % ch) * size * size;
        for (int a = 0; a < patch; a++)
            for (int b = 0; b < patch; b++) img[(r + a) * size + c + b] += 1.0f;
    }
    cnn_tensor t[4] = {
        {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {d.n, ch, size, size}, .data = x},
        {.name = "target", .dtype = CNN_I64, .ndim = 1, .shape = {d.n}, .data = y},
        {.name = "test_input", .dtype = CNN_F32, .ndim = 4, .shape = {d.n_test, ch, size, size},
         .data = x + (size_t)d.n * per},
        {.name = "test_target", .dtype = CNN_I64, .ndim = 1, .shape = {d.n_test}, .data = y + d.n},
    };
    assert_int_equal(cnn_st_save(path, t, d.n_test ? 4 : 2, NULL, 0), CNN_OK);
    free(x);
    free(y);
}

#endif
