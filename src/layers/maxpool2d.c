/* maxpool2d: the maximum of each kh×kw window; padded cells count as −∞.
 *
 * Forward:  y[n,c,i,j] = max over the window of xp[n,c, i·sh + r, j·sw + t]
 * Backward (notes 001 and 004): the gradient of each output goes to the cell that held the window's
 * maximum, and nowhere else: dx = Σ_windows dy[i,j] · mask_ij, where mask_ij is 1 at the argmax.
 * Ties go to the first maximum in row-major window order, and a NaN wins, as in PyTorch. With
 * overlapping windows (stride < kernel, note 003) a cell can be the argmax of several windows and
 * then receives the sum of their gradients.
 */
#include "layers/layer.h"
#include "core/threads.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

/* The window of output (i, j), clipped to the real input: rows [*h0, *h1), columns [*w0, *w1). */
static void window(const layer *l, int i, int j, int *h0, int *h1, int *w0, int *w1) {
    const pool_opts *o = &l->o.pool;
    const int hs = i * o->sh - o->ph, ws = j * o->sw - o->pw;
    *h0 = hs < 0 ? 0 : hs;
    *w0 = ws < 0 ? 0 : ws;
    *h1 = hs + o->kh < l->h ? hs + o->kh : l->h;
    *w1 = ws + o->kw < l->w ? ws + o->kw : l->w;
}

/* ---- reference path ------------------------------------------------------------------------ */

/* The row-major index (within the plane) of the window's first maximum. */
static int argmax_ref(const layer *l, const double *xc, int i, int j) {
    int h0, h1, w0, w1;
    window(l, i, j, &h0, &h1, &w0, &w1);
    int best = h0 * l->w + w0;
    double m = -INFINITY;
    for (int h = h0; h < h1; h++)
        for (int w = w0; w < w1; w++) {
            const double v = xc[h * l->w + w];
            if (v > m || isnan(v)) {
                m = v;
                best = h * l->w + w;
            }
        }
    return best;
}

static void maxpool2d_forward_ref(const layer *l, int n, const double *x, const double *const *p, double *y) {
    (void)p;
    for (int s = 0; s < n * l->c; s++) {
        const double *xc = x + (size_t)s * l->h * l->w;
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++)
                y[((size_t)s * l->oh + i) * l->ow + j] = xc[argmax_ref(l, xc, i, j)];
    }
}

/* Upsample dy through the mask of each window: dx[argmax] += dy[i,j]. */
static void maxpool2d_backward_ref(const layer *l, int n, const double *x, const double *const *p,
                                   const double *y, const double *dy, double *dx, double *const *dp) {
    (void)p, (void)y, (void)dp;
    memset(dx, 0, (size_t)n * l->c * l->h * l->w * sizeof *dx);
    for (int s = 0; s < n * l->c; s++) {
        const double *xc = x + (size_t)s * l->h * l->w;
        double *dxc = dx + (size_t)s * l->h * l->w;
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++)
                dxc[argmax_ref(l, xc, i, j)] += dy[((size_t)s * l->oh + i) * l->ow + j];
    }
}

/* ---- fast path ----------------------------------------------------------------------------- */

/* The index in the plane of the first maximum of window (i, j); NaN wins, as in the reference. */
static inline int argmax(const layer *l, const float *xc, int i, int j) {
    int h0, h1, w0, w1;
    window(l, i, j, &h0, &h1, &w0, &w1);
    int best = h0 * l->w + w0;
    float m = -INFINITY;
    for (int h = h0; h < h1; h++)
        for (int w = w0; w < w1; w++) {
            const float v = xc[h * l->w + w];
            if (v > m || v != v) m = v, best = h * l->w + w;
        }
    return best;
}

static int is_2x2(const layer *l) {
    const pool_opts *o = &l->o.pool;
    return o->kh == 2 && o->kw == 2 && o->sh == 2 && o->sw == 2 && o->ph == 0 && o->pw == 0 &&
           2 * l->oh <= l->h && 2 * l->ow <= l->w;
}

/* The common 2×2, stride 2, unpadded case, written as selects that vectorise: which of the cells
 * a, b, c, d (row-major) is the first maximum, NaN winning. Returns 0..3. */
static inline int first_max4(float a, float b, float c, float d) {
    int k = 0;
    float m = a;
    int t = (b > m) | (b != b);
    k = t ? 1 : k, m = t ? b : m;
    t = (c > m) | (c != c);
    k = t ? 2 : k, m = t ? c : m;
    t = (d > m) | (d != d);
    return t ? 3 : k;
}

CNN_CLONES static void forward_2x2(const layer *l, const float *restrict xc, float *restrict yc) {
    for (int i = 0; i < l->oh; i++) {
        const float *r0 = xc + (size_t)2 * i * l->w, *r1 = r0 + l->w;
        float *out = yc + (size_t)i * l->ow;
        for (int j = 0; j < l->ow; j++) {
            const float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
            const int k = first_max4(a, b, c, d);
            out[j] = k == 0 ? a : k == 1 ? b : k == 2 ? c : d;
        }
    }
}

/* Each cell lies in at most one window: it gets dy of its window if it is the window's first
 * maximum, else 0. Rows and columns that no window covers (odd sizes) get 0. */
CNN_CLONES static void backward_2x2(const layer *l, const float *restrict xc, const float *restrict dyc, float *restrict dxc) {
    for (int i = 0; i < l->oh; i++) {
        const float *r0 = xc + (size_t)2 * i * l->w, *r1 = r0 + l->w;
        float *d0 = dxc + (size_t)2 * i * l->w, *d1 = d0 + l->w;
        const float *g = dyc + (size_t)i * l->ow;
        for (int j = 0; j < l->ow; j++) {
            const int k = first_max4(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]);
            d0[2 * j] = k == 0 ? g[j] : 0.0f;
            d0[2 * j + 1] = k == 1 ? g[j] : 0.0f;
            d1[2 * j] = k == 2 ? g[j] : 0.0f;
            d1[2 * j + 1] = k == 3 ? g[j] : 0.0f;
        }
        for (int j = 2 * l->ow; j < l->w; j++) d0[j] = d1[j] = 0.0f;
    }
    for (int h = 2 * l->oh; h < l->h; h++) memset(dxc + (size_t)h * l->w, 0, (size_t)l->w * sizeof *dxc);
}

static void maxpool2d_forward(const layer *l, int n, const float *x, float *y, float *ws) {
    (void)ws;
    const int fast = is_2x2(l);
    PARALLEL_FOR(s, (long)n * l->c) {
        const float *xc = x + (size_t)s * l->h * l->w;
        float *yc = y + (size_t)s * l->oh * l->ow;
        if (fast) {
            forward_2x2(l, xc, yc);
            continue;
        }
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) yc[i * l->ow + j] = xc[argmax(l, xc, i, j)];
    }
}

static void maxpool2d_backward(const layer *l, int n, const float *x, const float *y, const float *dy,
                               float *dx, float *ws) {
    (void)y, (void)ws;
    const int fast = is_2x2(l);
    PARALLEL_FOR(s, (long)n * l->c) {
        const float *xc = x + (size_t)s * l->h * l->w;
        const float *dyc = dy + (size_t)s * l->oh * l->ow;
        float *dxc = dx + (size_t)s * l->h * l->w;
        if (fast) {
            backward_2x2(l, xc, dyc, dxc);
            continue;
        }
        memset(dxc, 0, (size_t)l->h * l->w * sizeof *dxc);
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) dxc[argmax(l, xc, i, j)] += dyc[i * l->ow + j];
    }
}

const layer_ops maxpool2d_ops = {
    .name = "maxpool2d",
    .defaults = pool_defaults,
    .option = pool_option,
    .setup = pool_setup,
    .forward = maxpool2d_forward,
    .backward = maxpool2d_backward,
    .forward_ref = maxpool2d_forward_ref,
    .backward_ref = maxpool2d_backward_ref,
};
