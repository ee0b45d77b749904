/* adaptiveavgpool2d, adaptivemaxpool2d: pooling to a fixed output size oh×ow, whatever the input's
 * H×W (PyTorch's AdaptiveAvgPool2d and AdaptiveMaxPool2d; output_size=h,w or one number for both).
 *
 * Window i along the height covers the rows [⌊i·H/oh⌋, ⌈(i+1)·H/oh⌉), window j along the width
 * the columns [⌊j·W/ow⌋, ⌈(j+1)·W/ow⌉), as PyTorch's start_index and end_index. Windows differ in
 * size when oh does not divide H, neighbours share a row when H/oh is not whole, and with oh > H
 * rows repeat; every cell lies in at least one window. Padding there is none.
 *
 * adaptiveavgpool2d, A(i,j) the window's area:
 *   Forward:  y[i,j] = Σ_{(h,w) in window(i,j)} x[h,w] / A(i,j)
 *   Backward: y[i,j] depends on each cell of its window with the local gradient ∂y[i,j]/∂x[h,w] =
 *   1/A(i,j), and x[h,w] reaches the loss through every window that holds it, so by the chain rule
 *   dx[h,w] = Σ_{windows (i,j) holding (h,w)} dy[i,j] / A(i,j): each dy is spread evenly over its
 *   window, and where windows overlap the shares add.
 * adaptivemaxpool2d:
 *   Forward:  y[i,j] = x at the window's first maximum in row-major order; a NaN wins (the last
 *   NaN of the window, as in PyTorch's loop `val > max || isnan(val)`), as in maxpool2d.
 *   Backward: the local gradient is 1 at the argmax and 0 elsewhere (notes 001 and 004), so
 *   dx[h,w] = Σ_{windows whose argmax is (h,w)} dy[i,j]; only that cell of a window gets gradient.
 *
 * output_size=1 is global pooling (the head of a ResNet): the fast path reduces a whole plane at
 * once, in 16 independent lanes that the compiler turns into vector registers, then combines the
 * lanes in a fixed order; every other output size (and a max over a plane holding a NaN or an
 * infinity) goes through the window loops. Both run one plane
 * (sample, channel) per iteration of PARALLEL_FOR, so the bits do not depend on the thread count.
 */
#include "layers/layer.h"
#include "base/threads.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static cnn_status adaptive_option(layer *l, const char *key, const char *value) {
    if (!strcmp(key, "output_size")) return opt_pair(l, key, value, 1, &l->o.adapt.oh, &l->o.adapt.ow);
    return opt_unknown(l, key);
}

static cnn_status adaptive_setup(layer *l) {
    const char *name = layer_ops_of(l->kind)->name;
    if (l->o.adapt.oh == 0) return layer_fail(l, CNN_ERR_PARSE, "output_size= is required");
    if (l->in_flat)
        return layer_fail(l, CNN_ERR_SHAPE, "input [%d] is flat (after flatten or linear); %s needs C H W", l->c,
                          name);
    l->oc = l->c;
    l->oh = l->o.adapt.oh;
    l->ow = l->o.adapt.ow;
    return CNN_OK;
}

/* Rows (or columns) [*a, *b) of window i of `out` over an input of `in`: ⌊i·in/out⌋ and
 * ⌈(i+1)·in/out⌉, in 64 bits (in and out go up to 2^20 each). */
static void span(int i, int in, int out, int *a, int *b) {
    *a = (int)((long long)i * in / out);
    *b = (int)(((long long)(i + 1) * in + out - 1) / out);
}

static void window(const layer *l, int i, int j, int *h0, int *h1, int *w0, int *w1) {
    span(i, l->h, l->oh, h0, h1);
    span(j, l->w, l->ow, w0, w1);
}

static int is_global(const layer *l) { return l->oh == 1 && l->ow == 1; }

/* ---- reference path ------------------------------------------------------------------------ */

static void adaptiveavgpool2d_forward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                          double *y) {
    const double *x = xs[0];
    (void)p;
    for (int s = 0; s < n * l->c; s++) {
        const double *xc = x + (size_t)s * l->h * l->w;
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) {
                int h0, h1, w0, w1;
                window(l, i, j, &h0, &h1, &w0, &w1);
                double acc = 0.0;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) acc += xc[(size_t)h * l->w + w];
                y[((size_t)s * l->oh + i) * l->ow + j] = acc / ((double)(h1 - h0) * (w1 - w0));
            }
    }
}

/* dx[h,w] = Σ over the windows holding (h,w) of dy[i,j] / A(i,j). */
static void adaptiveavgpool2d_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                           const double *y, const double *dy, double *const *dxs,
                                           double *const *dp) {
    double *dx = dxs[0];
    (void)xs, (void)p, (void)y, (void)dp;
    memset(dx, 0, (size_t)n * l->c * l->h * l->w * sizeof *dx);
    for (int s = 0; s < n * l->c; s++) {
        double *dxc = dx + (size_t)s * l->h * l->w;
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) {
                int h0, h1, w0, w1;
                window(l, i, j, &h0, &h1, &w0, &w1);
                const double g = dy[((size_t)s * l->oh + i) * l->ow + j] / ((double)(h1 - h0) * (w1 - w0));
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) dxc[(size_t)h * l->w + w] += g;
            }
    }
}

/* The index in the plane of window (i, j)'s first maximum; a NaN wins. */
static size_t argmax_ref(const layer *l, const double *xc, int i, int j) {
    int h0, h1, w0, w1;
    window(l, i, j, &h0, &h1, &w0, &w1);
    size_t best = (size_t)h0 * l->w + w0;
    double m = -INFINITY;
    for (int h = h0; h < h1; h++)
        for (int w = w0; w < w1; w++) {
            const double v = xc[(size_t)h * l->w + w];
            if (v > m || isnan(v)) {
                m = v;
                best = (size_t)h * l->w + w;
            }
        }
    return best;
}

static void adaptivemaxpool2d_forward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                          double *y) {
    const double *x = xs[0];
    (void)p;
    for (int s = 0; s < n * l->c; s++) {
        const double *xc = x + (size_t)s * l->h * l->w;
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) y[((size_t)s * l->oh + i) * l->ow + j] = xc[argmax_ref(l, xc, i, j)];
    }
}

/* dx[argmax of window (i,j)] += dy[i,j]; every other cell 0. */
static void adaptivemaxpool2d_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                           const double *y, const double *dy, double *const *dxs,
                                           double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)p, (void)y, (void)dp;
    memset(dx, 0, (size_t)n * l->c * l->h * l->w * sizeof *dx);
    for (int s = 0; s < n * l->c; s++) {
        const double *xc = x + (size_t)s * l->h * l->w;
        double *dxc = dx + (size_t)s * l->h * l->w;
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) dxc[argmax_ref(l, xc, i, j)] += dy[((size_t)s * l->oh + i) * l->ow + j];
    }
}

/* ---- fast path ----------------------------------------------------------------------------- */

#define LANES 16

/* Σ x[0..n): lane t sums x[t], x[t + 16], ...; then the lanes are added pairwise in a fixed order. */
CNN_CLONES static float plane_sum(const float *restrict x, size_t n) {
    float lane[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int t = 0; t < LANES; t++) lane[t] += x[i + t];
    for (int t = 0; i < n; i++, t++) lane[t] += x[i];
    for (int half = LANES / 2; half; half /= 2)
        for (int t = 0; t < half; t++) lane[t] += lane[t + half];
    return lane[0];
}

/* The index of the plane's first maximum, for a plane of finite numbers, else SIZE_MAX. The lanes
 * find the maximum m and whether a NaN or an infinity is there (v − v is 0 for finite v, else NaN);
 * a second pass finds the first cell equal to m (−0 == +0, and the window loop also keeps the first
 * of them). The caller runs the window loop on planes that are not finite. */
CNN_CLONES static size_t plane_argmax(const float *restrict x, size_t n) {
    float lane[LANES], probe[LANES] = {0};
    for (int t = 0; t < LANES; t++) lane[t] = -INFINITY;
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
#pragma GCC unroll 1   /* unrolled, the lanes' selects stay scalar; as a loop they vectorise */
        for (int t = 0; t < LANES; t++) {
            const float v = x[i + t];
            lane[t] = v > lane[t] ? v : lane[t];
            probe[t] += v - v;
        }
    }
    for (int t = 0; i < n; i++, t++) {
        lane[t] = x[i] > lane[t] ? x[i] : lane[t];
        probe[t] += x[i] - x[i];
    }
    float m = -INFINITY, finite = 0.0f;
    for (int t = 0; t < LANES; t++) {
        m = lane[t] > m ? lane[t] : m;
        finite += probe[t];
    }
    if (finite != 0.0f) return SIZE_MAX;
    for (size_t k = 0; k < n; k++)
        if (x[k] == m) return k;
    return SIZE_MAX;   /* not reached */
}

/* As argmax_ref, in float. */
static size_t argmax(const layer *l, const float *xc, int i, int j) {
    int h0, h1, w0, w1;
    window(l, i, j, &h0, &h1, &w0, &w1);
    size_t best = (size_t)h0 * l->w + w0;
    float m = -INFINITY;
    for (int h = h0; h < h1; h++)
        for (int w = w0; w < w1; w++) {
            const float v = xc[(size_t)h * l->w + w];
            if (v > m || v != v) m = v, best = (size_t)h * l->w + w;
        }
    return best;
}

/* Sets plane[0..n) to g. */
CNN_CLONES static void fill(float *restrict plane, size_t n, float g) {
    for (size_t i = 0; i < n; i++) plane[i] = g;
}

static void adaptiveavgpool2d_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    (void)ws;
    const size_t hw = (size_t)l->h * l->w;
    const int global = is_global(l);
    PARALLEL_FOR(s, (long)n * l->c) {
        const float *xc = x + (size_t)s * hw;
        float *yc = y + (size_t)s * l->oh * l->ow;
        if (global) {
            yc[0] = (float)(plane_sum(xc, hw) / (double)hw);
            continue;
        }
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) {
                int h0, h1, w0, w1;
                window(l, i, j, &h0, &h1, &w0, &w1);
                float acc = 0.0f;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) acc += xc[(size_t)h * l->w + w];
                yc[(size_t)i * l->ow + j] = (float)(acc / ((double)(h1 - h0) * (w1 - w0)));
            }
    }
}

static void adaptiveavgpool2d_backward(const layer *l, int n, const float *const *xs, const float *y,
                                       const float *dy, float *const *dxs, float *ws) {
    float *dx = dxs[0];
    (void)xs, (void)y, (void)ws;
    const size_t hw = (size_t)l->h * l->w;
    const int global = is_global(l);
    PARALLEL_FOR(s, (long)n * l->c) {
        float *dxc = dx + (size_t)s * hw;
        const float *dyc = dy + (size_t)s * l->oh * l->ow;
        if (global) {
            fill(dxc, hw, (float)(dyc[0] / (double)hw));
            continue;
        }
        memset(dxc, 0, hw * sizeof *dxc);   /* overlapping windows add up below */
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) {
                int h0, h1, w0, w1;
                window(l, i, j, &h0, &h1, &w0, &w1);
                const float g = (float)(dyc[(size_t)i * l->ow + j] / ((double)(h1 - h0) * (w1 - w0)));
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) dxc[(size_t)h * l->w + w] += g;
            }
    }
}

static void adaptivemaxpool2d_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    (void)ws;
    const size_t hw = (size_t)l->h * l->w;
    const int global = is_global(l);
    PARALLEL_FOR(s, (long)n * l->c) {
        const float *xc = x + (size_t)s * hw;
        float *yc = y + (size_t)s * l->oh * l->ow;
        const size_t k = global ? plane_argmax(xc, hw) : SIZE_MAX;
        if (k != SIZE_MAX) {
            yc[0] = xc[k];
            continue;
        }
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) yc[(size_t)i * l->ow + j] = xc[argmax(l, xc, i, j)];
    }
}

static void adaptivemaxpool2d_backward(const layer *l, int n, const float *const *xs, const float *y,
                                       const float *dy, float *const *dxs, float *ws) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)y, (void)ws;
    const size_t hw = (size_t)l->h * l->w;
    const int global = is_global(l);
    PARALLEL_FOR(s, (long)n * l->c) {
        const float *xc = x + (size_t)s * hw;
        const float *dyc = dy + (size_t)s * l->oh * l->ow;
        float *dxc = dx + (size_t)s * hw;
        memset(dxc, 0, hw * sizeof *dxc);
        const size_t k = global ? plane_argmax(xc, hw) : SIZE_MAX;
        if (k != SIZE_MAX) {
            dxc[k] = dyc[0];
            continue;
        }
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) dxc[argmax(l, xc, i, j)] += dyc[(size_t)i * l->ow + j];
    }
}

const layer_ops adaptiveavgpool2d_ops = {
    .name = "adaptiveavgpool2d",
    .torch_name = "AdaptiveAvgPool2d",
    .option = adaptive_option,
    .setup = adaptive_setup,
    .forward = adaptiveavgpool2d_forward,
    .backward = adaptiveavgpool2d_backward,
    .forward_ref = adaptiveavgpool2d_forward_ref,
    .backward_ref = adaptiveavgpool2d_backward_ref,
};

const layer_ops adaptivemaxpool2d_ops = {
    .name = "adaptivemaxpool2d",
    .torch_name = "AdaptiveMaxPool2d",
    .option = adaptive_option,
    .setup = adaptive_setup,
    .forward = adaptivemaxpool2d_forward,
    .backward = adaptivemaxpool2d_backward,
    .forward_ref = adaptivemaxpool2d_forward_ref,
    .backward_ref = adaptivemaxpool2d_backward_ref,
};
