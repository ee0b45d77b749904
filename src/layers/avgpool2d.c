/* avgpool2d: the mean of each kh×kw window.
 *
 * For the window of output i along one dimension, hs = i·s − p and he = min(hs + k, H + p): the
 * window clipped to the padded input (this matters with ceil_mode). With count_include_pad the
 * divisor is the window's size before clipping to the real input, (he − hs)·(we − ws); without it,
 * the number of real cells in the window. Padded cells are zeros.
 *   Forward:  y[i,j] = Σ_{cells of window} x / divisor(i,j)
 *   Backward (notes 001 and 004): the gradient is spread evenly, each real cell of the window gets
 *   dy[i,j] / divisor(i,j), so the sum of the gradient is kept (up to the padded cells' share).
 */
#include "layers/layer.h"
#include "base/threads.h"
#include "kernels/kernels.h"

#include <string.h>

/* The window of output (i, j) clipped to the real input, and its divisor. */
static double window(const layer *l, int i, int j, int *h0, int *h1, int *w0, int *w1) {
    const pool_opts *o = &l->o.pool;
    int hs = i * o->sh - o->ph, ws = j * o->sw - o->pw;
    int he = hs + o->kh < l->h + o->ph ? hs + o->kh : l->h + o->ph;
    int we = ws + o->kw < l->w + o->pw ? ws + o->kw : l->w + o->pw;
    const double padded_size = (double)(he - hs) * (we - ws);   /* may exceed INT_MAX */
    hs = hs < 0 ? 0 : hs;
    ws = ws < 0 ? 0 : ws;
    he = he < l->h ? he : l->h;
    we = we < l->w ? we : l->w;
    *h0 = hs, *h1 = he, *w0 = ws, *w1 = we;
    return o->count_include_pad ? padded_size : (double)(he - hs) * (we - ws);
}

/* ---- reference path ------------------------------------------------------------------------ */

static void avgpool2d_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    for (int s = 0; s < n * l->c; s++) {
        const double *xc = x + (size_t)s * l->h * l->w;
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) {
                int h0, h1, w0, w1;
                const double div = window(l, i, j, &h0, &h1, &w0, &w1);
                double acc = 0.0;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) acc += xc[h * l->w + w];
                y[((size_t)s * l->oh + i) * l->ow + j] = acc / div;
            }
    }
}

/* Upsample: every real cell of window (i, j) receives dy[i,j] / divisor. */
static void avgpool2d_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                   const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)x, (void)p, (void)y, (void)dp;
    memset(dx, 0, (size_t)n * l->c * l->h * l->w * sizeof *dx);
    for (int s = 0; s < n * l->c; s++) {
        double *dxc = dx + (size_t)s * l->h * l->w;
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) {
                int h0, h1, w0, w1;
                const double div = window(l, i, j, &h0, &h1, &w0, &w1);
                const double g = dy[((size_t)s * l->oh + i) * l->ow + j] / div;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) dxc[h * l->w + w] += g;
            }
    }
}

/* ---- fast path ----------------------------------------------------------------------------- */

/* The common 2×2, stride 2, unpadded case (pool_is_2x2) over whole rows, so that it vectorises.
 * The divisor is 4 whatever count_include_pad says (no window reaches past the input), and x / 4
 * in double rounded to float is x · 0.25f: the same bits as the general loop, whose order of
 * addition (a + b) + c + d this keeps. */
CNN_CLONES static void forward_row_2x2(const float *restrict r0, const float *restrict r1, float *restrict out,
                                       int ow) {
    for (int j = 0; j < ow; j++) out[j] = (((r0[2 * j] + r0[2 * j + 1]) + r1[2 * j]) + r1[2 * j + 1]) * 0.25f;
}

/* Every cell of a window gets a quarter of its dy; cells no window covers (odd sizes) get 0. */
CNN_CLONES static void backward_row_2x2(const float *restrict gr, float *restrict d0, float *restrict d1, int ow) {
    for (int j = 0; j < ow; j++) {
        const float g = gr[j] * 0.25f;
        d0[2 * j] = d0[2 * j + 1] = d1[2 * j] = d1[2 * j + 1] = g;
    }
}

static void avgpool2d_forward(const layer *l, int n, const float *const *xs, float *y, float *ws_) {
    const float *x = xs[0];
    (void)ws_;
    const int fast = pool_is_2x2(l);
    PARALLEL_FOR(s, (long)n * l->c) {
        const float *xc = x + (size_t)s * l->h * l->w;
        float *yc = y + (size_t)s * l->oh * l->ow;
        if (fast) {
            for (int i = 0; i < l->oh; i++)
                forward_row_2x2(xc + (size_t)2 * i * l->w, xc + (size_t)(2 * i + 1) * l->w, yc + (size_t)i * l->ow,
                                l->ow);
            continue;
        }
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) {
                int h0, h1, w0, w1;
                const double div = window(l, i, j, &h0, &h1, &w0, &w1);
                float acc = 0.0f;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) acc += xc[h * l->w + w];
                yc[i * l->ow + j] = (float)(acc / div);
            }
    }
}

static void avgpool2d_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                               float *const *dxs, float *ws_) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)x, (void)y, (void)ws_;
    const int fast = pool_is_2x2(l);
    PARALLEL_FOR(s, (long)n * l->c) {
        float *dxc = dx + (size_t)s * l->h * l->w;
        const float *dyc = dy + (size_t)s * l->oh * l->ow;
        if (fast) {
            for (int i = 0; i < l->oh; i++) {
                float *d0 = dxc + (size_t)2 * i * l->w;
                backward_row_2x2(dyc + (size_t)i * l->ow, d0, d0 + l->w, l->ow);
                for (int j = 2 * l->ow; j < l->w; j++) d0[j] = d0[l->w + j] = 0.0f;
            }
            for (int h = 2 * l->oh; h < l->h; h++) memset(dxc + (size_t)h * l->w, 0, (size_t)l->w * sizeof *dxc);
            continue;
        }
        memset(dxc, 0, (size_t)l->h * l->w * sizeof *dxc);
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) {
                int h0, h1, w0, w1;
                const double div = window(l, i, j, &h0, &h1, &w0, &w1);
                const float g = (float)(dyc[i * l->ow + j] / div);
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) dxc[h * l->w + w] += g;
            }
    }
}

const layer_ops avgpool2d_ops = {
    .name = "avgpool2d",
    .torch_name = "AvgPool2d",
    .defaults = pool_defaults,
    .option = pool_option,
    .setup = pool_setup,
    .forward = avgpool2d_forward,
    .backward = avgpool2d_backward,
    .forward_ref = avgpool2d_forward_ref,
    .backward_ref = avgpool2d_backward_ref,
};
