/* im2col and its adjoint col2im: the unrolling that turns a convolution into one GEMM. */
#include "kernels.h"

#include <stddef.h>

void im2col(const im2col_geom *g, const float *x, float *col) {
    const int P = g->oh * g->ow;
    for (int ci = 0; ci < g->c; ci++) {
        const float *xc = x + (size_t)ci * g->h * g->w;
        for (int r = 0; r < g->kh; r++) {
            for (int t = 0; t < g->kw; t++) {
                float *row = col + ((size_t)(ci * g->kh + r) * g->kw + t) * P;
                for (int i = 0; i < g->oh; i++) {
                    const int hi = i * g->sh + r * g->dh - g->ph;
                    float *out = row + (size_t)i * g->ow;
                    if (hi < 0 || hi >= g->h) {
                        for (int j = 0; j < g->ow; j++) out[j] = 0.0f;
                        continue;
                    }
                    const float *xr = xc + (size_t)hi * g->w;
                    const int off = t * g->dw - g->pw;
                    for (int j = 0; j < g->ow; j++) {
                        const int wi = j * g->sw + off;
                        out[j] = (wi >= 0 && wi < g->w) ? xr[wi] : 0.0f;
                    }
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
                for (int i = 0; i < g->oh; i++) {
                    const int hi = i * g->sh + r * g->dh - g->ph;
                    if (hi < 0 || hi >= g->h) continue;
                    float *xr = xc + (size_t)hi * g->w;
                    const float *in = row + (size_t)i * g->ow;
                    const int off = t * g->dw - g->pw;
                    for (int j = 0; j < g->ow; j++) {
                        const int wi = j * g->sw + off;
                        if (wi >= 0 && wi < g->w) xr[wi] += in[j];
                    }
                }
            }
        }
    }
}
