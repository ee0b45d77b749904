/* Helpers shared by the tests: build a net from model text, run it on one path, compare arrays. */
#ifndef CNN_TESTUTIL_H
#define CNN_TESTUTIL_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#endif
