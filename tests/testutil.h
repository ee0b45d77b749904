/* Helpers shared by the tests: build a net from model text, run it on one path, compare arrays;
 * assert on statuses and messages; write files and remove a temporary directory. */
#ifndef CNN_TESTUTIL_H
#define CNN_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cnn.h"

/* Parses `text` into a net reserved for `n` samples on `path`; fails the test on error. */
static inline cnn_net *tu_net(const char *text, int n, cnn_path path) {
    cnn_net *net = NULL;
    if (cnn_net_parse(text, &net) != CNN_OK) fail_msg("parse failed: %s\n%s", cnn_last_error(), text);
    assert_int_equal(cnn_net_set_path(net, path), CNN_OK);
    assert_int_equal(cnn_net_reserve(net, n), CNN_OK);
    return net;
}

/* Sets parameter `name` to `count` values. */
static inline void tu_set(cnn_net *net, const char *name, const float *v, int64_t count) {
    cnn_param p = cnn_net_param_by_name(net, name);
    if (!p.data) fail_msg("no parameter %s", name);
    assert_int_equal(p.numel, count);
    memcpy(p.data, v, (size_t)count * sizeof *v);
}

/* One forward and one backward with dy; parameter gradients start at zero. */
static inline void tu_run(cnn_net *net, const float *x, int n, const float *dy) {
    cnn_net_zero_grad(net);
    assert_int_equal(cnn_net_forward(net, x, n), CNN_OK);
    assert_int_equal(cnn_net_backward(net, dy), CNN_OK);
}

/* Asserts got[i] == want[i] exactly, naming `what` and i on failure. */
static inline void tu_exact(const char *what, const float *got, const double *want, int count) {
    for (int i = 0; i < count; i++)
        if ((double)got[i] != want[i]) fail_msg("%s[%d] = %.9g, expected %.9g", what, i, (double)got[i], want[i]);
}

/* Asserts |got − want| ≤ tol·max(1, |want|) elementwise. */
static inline void tu_close(const char *what, const float *got, const double *want, int count, double tol) {
    for (int i = 0; i < count; i++) {
        const double scale = fabs(want[i]) > 1.0 ? fabs(want[i]) : 1.0;
        if (!(fabs((double)got[i] - want[i]) <= tol * scale))
            fail_msg("%s[%d] = %.9g, expected %.9g", what, i, (double)got[i], want[i]);
    }
}

/* Fails the test, showing the message, unless cnn_last_error() contains `sub`. */
#define assert_error_contains(sub)                                                                 \
    do {                                                                                           \
        if (!strstr(cnn_last_error(), (sub)))                                                      \
            fail_msg("error message \"%s\" does not contain \"%s\"", cnn_last_error(), (sub));     \
    } while (0)

/* Fails unless status `s` is `want`, showing the message. */
#define assert_status(s, want)                                                                     \
    do {                                                                                           \
        cnn_status s_ = (s);                                                                       \
        if (s_ != (want))                                                                          \
            fail_msg("status %s (\"%s\"), expected %s", cnn_status_name(s_), cnn_last_error(),     \
                     cnn_status_name(want));                                                       \
    } while (0)

/* Writes len bytes to path, replacing it; fails the test if it cannot. */
static inline void tu_write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s: %s", path, strerror(errno));
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Removes path and, if it is a directory, everything under it (a test's temporary directory).
 * Returns 0, or -1 if something could not be removed. */
static inline int tu_remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return -1;
    if (!S_ISDIR(sb.st_mode)) return remove(path);
    DIR *d = opendir(path);
    if (!d) return -1;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        if (snprintf(p, sizeof p, "%s/%s", path, e->d_name) >= (int)sizeof p || tu_remove_tree(p)) rc = -1;
    }
    closedir(d);
    return rmdir(path) || rc ? -1 : 0;
}

/* Asserts that checkpoints pa and pb hold the same tensors, bit for bit (`context` is added to a
 * failure's message, "" for none). Returns how many were compared. */
static inline int tu_same_tensors(const char *pa, const char *pb, const char *context) {
    cnn_st *a = NULL, *b = NULL;
    assert_int_equal(cnn_st_load(pa, &a), CNN_OK);
    assert_int_equal(cnn_st_load(pb, &b), CNN_OK);
    int compared = 0;
    for (int i = 0; i < cnn_st_count(a); i++) {
        const cnn_tensor *ta = cnn_st_tensor(a, i), *tb = cnn_st_find(b, ta->name);
        if (!tb) fail_msg("%s lacks %s%s", pb, ta->name, context);
        const size_t bytes = (size_t)cnn_tensor_numel(ta) * cnn_dtype_size(ta->dtype);
        if (ta->dtype != tb->dtype || cnn_tensor_numel(ta) != cnn_tensor_numel(tb) || memcmp(ta->data, tb->data, bytes))
            fail_msg("%s differs between %s and %s%s", ta->name, pa, pb, context);
        compared++;
    }
    assert_int_equal(cnn_st_count(a), cnn_st_count(b));
    cnn_st_free(a);
    cnn_st_free(b);
    return compared;
}

/* Notes 002–004's worked convolution: a 3×3 input X (x11 x12 x13 / x21 ... row by row) under a
 * 2×2 kernel W (w11 w12 / w21 w22), no bias, and a given ∂L/∂O (d11 d12 / d21 d22). The output
 * o, the nine ∂L/∂x (rot180(W) fully convolved with the zero-padded ∂L/∂O) and the four ∂L/∂w
 * (the valid correlation of X with ∂L/∂O, four terms each: 003 lists two, a slip), written out
 * term by term as the notes write them. */
static inline void tu_notes_conv_3x3_by_2x2(const double x[9], const double w[4], const double d[4], double o[4],
                                            double dx[9], double dw[4]) {
    const double x11 = x[0], x12 = x[1], x13 = x[2], x21 = x[3], x22 = x[4], x23 = x[5], x31 = x[6],
                 x32 = x[7], x33 = x[8];
    const double w11 = w[0], w12 = w[1], w21 = w[2], w22 = w[3];
    const double d11 = d[0], d12 = d[1], d21 = d[2], d22 = d[3];
    o[0] = w11 * x11 + w12 * x12 + w21 * x21 + w22 * x22;
    o[1] = w11 * x12 + w12 * x13 + w21 * x22 + w22 * x23;
    o[2] = w11 * x21 + w12 * x22 + w21 * x31 + w22 * x32;
    o[3] = w11 * x22 + w12 * x23 + w21 * x32 + w22 * x33;
    dx[0] = d11 * w11;
    dx[1] = d11 * w12 + d12 * w11;
    dx[2] = d12 * w12;
    dx[3] = d11 * w21 + d21 * w11;
    dx[4] = d11 * w22 + d12 * w21 + d21 * w12 + d22 * w11;
    dx[5] = d12 * w22 + d22 * w12;
    dx[6] = d21 * w21;
    dx[7] = d21 * w22 + d22 * w21;
    dx[8] = d22 * w22;
    dw[0] = d11 * x11 + d12 * x12 + d21 * x21 + d22 * x22;
    dw[1] = d11 * x12 + d12 * x13 + d21 * x22 + d22 * x23;
    dw[2] = d11 * x21 + d12 * x22 + d21 * x31 + d22 * x32;
    dw[3] = d11 * x22 + d12 * x23 + d21 * x32 + d22 * x33;
}

#endif
