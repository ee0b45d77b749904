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
#include "base/threads.h"
#include "kernels/direct.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_POOL16 1
#endif

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

static void maxpool2d_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    (void)p;
    for (int s = 0; s < n * l->c; s++) {
        const double *xc = x + (size_t)s * l->h * l->w;
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++)
                y[((size_t)s * l->oh + i) * l->ow + j] = xc[argmax_ref(l, xc, i, j)];
    }
}

/* Upsample dy through the mask of each window: dx[argmax] += dy[i,j]. */
static void maxpool2d_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                   const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
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

/* The common 2×2, stride 2, unpadded case, written as selects over whole rows so that it
 * vectorises. The window's cells a, b (top row) and c, d are in row-major order. */
CNN_CLONES static void forward_row_2x2(const float *restrict r0, const float *restrict r1, float *restrict out,
                                       int ow) {
    for (int j = 0; j < ow; j++) {
        const float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
        float m = a;
        m = b > m ? b : m;
        m = c > m ? c : m;
        m = d > m ? d : m;
        const int nan = (a != a) | (b != b) | (c != c) | (d != d);
        out[j] = nan ? a + b + c + d : m;   /* a NaN in the window makes the output NaN */
    }
}

#ifdef HAVE_POOL16
#define T16 __attribute__((target("avx512f")))

/* The same rows 8 windows at a time in AVX-512: 16 cells of each row loaded at once and split into
 * the windows' a, b (c, d) by permutes. The rows of LeNet-5 (14 and 5 windows) are too short for
 * the compiler's own vectorising of the stride-2 loops above to pay; the selects are the same, so
 * are the results. */
static T16 void split_pairs(const float *r, int n, __m512 *even, __m512 *odd) {
    const __m512i ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i io = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << (2 * n)) - 1), r);
    *even = _mm512_permutexvar_ps(ie, v);
    *odd = _mm512_permutexvar_ps(io, v);
}

static T16 void forward_row_2x2_16(const float *r0, const float *r1, float *out, int ow) {
    for (int j = 0; j < ow; j += 8) {
        const int n = ow - j < 8 ? ow - j : 8;
        __m512 a, b, c, d;
        split_pairs(r0 + 2 * j, n, &a, &b);
        split_pairs(r1 + 2 * j, n, &c, &d);
        __m512 m = a;
        m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(b, m, _CMP_GT_OQ), m, b);
        m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(c, m, _CMP_GT_OQ), m, c);
        m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, m, _CMP_GT_OQ), m, d);
        const __mmask16 nan = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q) |
                              _mm512_cmp_ps_mask(c, c, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q);
        const __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), c), d);
        _mm512_mask_storeu_ps(out + j, (__mmask16)((1u << n) - 1), _mm512_mask_blend_ps(nan, m, sum));
    }
}

static T16 void backward_row_2x2_16(const float *r0, const float *r1, const float *gr, float *d0, float *d1, int ow) {
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int j = 0; j < ow; j += 8) {
        const int n = ow - j < 8 ? ow - j : 8;
        __m512 a, b, c, d;
        split_pairs(r0 + 2 * j, n, &a, &b);
        split_pairs(r1 + 2 * j, n, &c, &d);
        const __m512 g = _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), gr + j);
        const __mmask16 a_b = _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ), a_c = _mm512_cmp_ps_mask(a, c, _CMP_GE_OQ),
                        a_d = _mm512_cmp_ps_mask(a, d, _CMP_GE_OQ), b_a = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ),
                        b_c = _mm512_cmp_ps_mask(b, c, _CMP_GE_OQ), b_d = _mm512_cmp_ps_mask(b, d, _CMP_GE_OQ);
        const __m512 mab = _mm512_mask_blend_ps(b_a, a, b);
        const __mmask16 c_m = _mm512_cmp_ps_mask(c, mab, _CMP_GT_OQ), c_d = _mm512_cmp_ps_mask(c, d, _CMP_GE_OQ);
        const __m512 mabc = _mm512_mask_blend_ps(c_m, mab, c);
        const __mmask16 d_m = _mm512_cmp_ps_mask(d, mabc, _CMP_GT_OQ);
        const __m512 ga = _mm512_maskz_mov_ps(a_b & a_c & a_d, g), gb = _mm512_maskz_mov_ps(b_a & b_c & b_d, g);
        const __m512 gc = _mm512_maskz_mov_ps(c_m & c_d, g), gd = _mm512_maskz_mov_ps(d_m, g);
        const __mmask16 row = (__mmask16)((1u << (2 * n)) - 1);
        _mm512_mask_storeu_ps(d0 + 2 * j, row, _mm512_permutex2var_ps(ga, lo, gb));
        _mm512_mask_storeu_ps(d1 + 2 * j, row, _mm512_permutex2var_ps(gc, lo, gd));
    }
}
#endif

/* The AVX-512 rows where the CPU has them (and the direct kernels are on: the tests turn both
 * off to hold the plain rows to the reference too). */
static int pool16(void) {
#ifdef HAVE_POOL16
    return direct16_available();
#else
    return 0;
#endif
}

static void forward_2x2(const layer *l, const float *xc, float *yc, int v16) {
    for (int i = 0; i < l->oh; i++) {
        const float *r0 = xc + (size_t)2 * i * l->w, *r1 = r0 + l->w;
#ifdef HAVE_POOL16
        if (v16) {
            forward_row_2x2_16(r0, r1, yc + (size_t)i * l->ow, l->ow);
            continue;
        }
#endif
        (void)v16;
        forward_row_2x2(r0, r1, yc + (size_t)i * l->ow, l->ow);
    }
}

CNN_CLONES static int any_nan(const float *restrict v, size_t n) {
    int r = 0;
    for (size_t i = 0; i < n; i++) r |= v[i] != v[i];
    return r;
}

/* g where keep is 1, else +0, by masking the bits: no branch, and exact for any g. */
static inline float keep_if(float g, int keep) {
    uint32_t bits;
    memcpy(&bits, &g, sizeof bits);
    bits &= 0u - (uint32_t)keep;
    memcpy(&g, &bits, sizeof g);
    return g;
}

/* Each cell lies in at most one window and gets dy of its window if it is the window's first
 * maximum (a wins ties over b, c, d; b over c, d; c over d), else 0. One row of windows. */
CNN_CLONES static void backward_row_2x2(const float *restrict r0, const float *restrict r1,
                                        const float *restrict gr, float *restrict d0, float *restrict d1, int ow) {
    for (int j = 0; j < ow; j++) {
        const float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1], g = gr[j];
        const float mab = b > a ? b : a, mabc = c > mab ? c : mab;
        d0[2 * j] = keep_if(g, (a >= b) & (a >= c) & (a >= d));
        d0[2 * j + 1] = keep_if(g, (b > a) & (b >= c) & (b >= d));
        d1[2 * j] = keep_if(g, (c > mab) & (c >= d));
        d1[2 * j + 1] = keep_if(g, d > mabc);
    }
}

/* Cells that no window covers (odd sizes) get 0. A plane with a NaN goes through the general
 * loop instead, where the NaN wins. */
static void backward_2x2(const layer *l, const float *xc, const float *dyc, float *dxc, int v16) {
    for (int i = 0; i < l->oh; i++) {
        float *d0 = dxc + (size_t)2 * i * l->w;
        const float *r0 = xc + (size_t)2 * i * l->w;
#ifdef HAVE_POOL16
        if (v16) backward_row_2x2_16(r0, r0 + l->w, dyc + (size_t)i * l->ow, d0, d0 + l->w, l->ow);
        else
#endif
            backward_row_2x2(r0, r0 + l->w, dyc + (size_t)i * l->ow, d0, d0 + l->w, l->ow);
        (void)v16;
        for (int j = 2 * l->ow; j < l->w; j++) d0[j] = d0[l->w + j] = 0.0f;
    }
    for (int h = 2 * l->oh; h < l->h; h++) memset(dxc + (size_t)h * l->w, 0, (size_t)l->w * sizeof *dxc);
}

static void maxpool2d_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    (void)ws;
    const int fast = pool_is_2x2(l), v16 = pool16();
    PARALLEL_FOR(s, (long)n * l->c) {
        const float *xc = x + (size_t)s * l->h * l->w;
        float *yc = y + (size_t)s * l->oh * l->ow;
        if (fast) {
            forward_2x2(l, xc, yc, v16);
            continue;
        }
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) yc[i * l->ow + j] = xc[argmax(l, xc, i, j)];
    }
}

static void maxpool2d_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                               float *const *dxs, float *ws) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)y, (void)ws;
    const int fast = pool_is_2x2(l), v16 = pool16();
    PARALLEL_FOR(s, (long)n * l->c) {
        const float *xc = x + (size_t)s * l->h * l->w;
        const float *dyc = dy + (size_t)s * l->oh * l->ow;
        float *dxc = dx + (size_t)s * l->h * l->w;
        if (fast && !any_nan(xc, (size_t)l->h * l->w)) {
            backward_2x2(l, xc, dyc, dxc, v16);
            continue;
        }
        memset(dxc, 0, (size_t)l->h * l->w * sizeof *dxc);
        for (int i = 0; i < l->oh; i++)
            for (int j = 0; j < l->ow; j++) dxc[argmax(l, xc, i, j)] += dyc[i * l->ow + j];
    }
}

const layer_ops maxpool2d_ops = {
    .name = "maxpool2d",
    .torch_name = "MaxPool2d",
    .defaults = pool_defaults,
    .option = pool_option,
    .setup = pool_setup,
    .forward = maxpool2d_forward,
    .backward = maxpool2d_backward,
    .forward_ref = maxpool2d_forward_ref,
    .backward_ref = maxpool2d_backward_ref,
};
