/* im2col and its adjoint col2im: the unrolling that turns a convolution into one GEMM.
 * For each (channel, kernel row r, kernel column t) and output row i, the output columns j that
 * read inside the input form one interval [j0, j1); outside it the cells are padding. With
 * stride 1 the interval is a contiguous copy. */
#include "kernels.h"

#include <stddef.h>
#include <string.h>

/* The output columns j in [*j0, *j1) with 0 ≤ j·sw + off < w. */
static void valid_cols(int ow, int sw, int off, int w, int *j0, int *j1) {
    int a = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int b = w - off <= 0 ? 0 : (w - 1 - off) / sw + 1;
    if (b > ow) b = ow;
    if (a > b) a = b;
    *j0 = a, *j1 = b;
}

void im2col(const im2col_geom *g, const float *x, float *col) {
    const int P = g->oh * g->ow;
    for (int ci = 0; ci < g->c; ci++) {
        const float *xc = x + (size_t)ci * g->h * g->w;
        for (int r = 0; r < g->kh; r++) {
            for (int t = 0; t < g->kw; t++) {
                float *row = col + ((size_t)(ci * g->kh + r) * g->kw + t) * P;
                const int off = t * g->dw - g->pw;
                int j0, j1;
                valid_cols(g->ow, g->sw, off, g->w, &j0, &j1);
                for (int i = 0; i < g->oh; i++) {
                    const int hi = i * g->sh + r * g->dh - g->ph;
                    float *out = row + (size_t)i * g->ow;
                    if (hi < 0 || hi >= g->h) {
                        memset(out, 0, (size_t)g->ow * sizeof *out);
                        continue;
                    }
                    const float *xr = xc + (size_t)hi * g->w;   /* x[hi][j·sw + off] for j in [j0, j1) */
                    for (int j = 0; j < j0; j++) out[j] = 0.0f;
                    if (g->sw == 1) /* rows are short: a loop beats a call to memcpy */
                        for (int j = j0; j < j1; j++) out[j] = xr[j + off];
                    else
                        for (int j = j0; j < j1; j++) out[j] = xr[j * g->sw + off];
                    for (int j = j1; j < g->ow; j++) out[j] = 0.0f;
                }
            }
        }
    }
}

void col2im(const im2col_geom *g, const float *col, float *x) {
    const int P = g->oh * g->ow;
    for (int ci = 0; ci < g->c; ci++) {
        float *xc = x + (size_t)ci * g->h * g->w;
        for (int r = 0; r < g->kh; r++) {
            for (int t = 0; t < g->kw; t++) {
                const float *row = col + ((size_t)(ci * g->kh + r) * g->kw + t) * P;
                const int off = t * g->dw - g->pw;
                int j0, j1;
                valid_cols(g->ow, g->sw, off, g->w, &j0, &j1);
                for (int i = 0; i < g->oh; i++) {
                    const int hi = i * g->sh + r * g->dh - g->ph;
                    if (hi < 0 || hi >= g->h) continue;
                    float *xr = xc + (size_t)hi * g->w;
                    const float *in = row + (size_t)i * g->ow;
                    for (int j = j0; j < j1; j++) xr[j * g->sw + off] += in[j];
                }
            }
        }
    }
}
