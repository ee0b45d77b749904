/* Direct convolution with several input channels (see direct.h). For small convolutions im2col +
 * GEMM spends more on copying and tile edges than on arithmetic (LeNet-5's second layer: 6
 * channels of 14×14 into 16 of 10×10); for large ones these kernels keep 24 accumulators in
 * registers against the GEMM's 12 and never build the im2col matrix.
 *
 * Output channels are vectorised, 16 to an AVX-512 register, so no lane is wasted when a group
 * has 16 or 32 of them; each input value is broadcast once and multiplied into every register
 * of the block:
 *   forward   acc[p] (16 channels at output position p) += xp[c][p + tap] · wᵀ[c, tap][16]
 *   dW        acc[tap] (16 channels)                    += xp[c][p + tap] · dyᵀ[p][16]
 * The input gradient is the full convolution of dy with the rotated kernels (note 002), vectorised
 * over 16 input positions instead:
 *   dxp[c][q..q+15] += w[k][c][r][t] · dyz[k][q + (kh−1−r)·dh·wp + (kw−1−t)·dw .. +15]
 * where dyz is dy inside a border of zeros, laid out at the padded width wp: reads that fall off
 * the left or right of a row land in the zeros of the border, so each tap is one unaligned load.
 * Every element is a sum in a fixed order (taps, then positions), whatever the tiling or threads.
 *
 * Each kernel is written once as an always-inline tile and instantiated for the small register
 * blocks it is called with, so the accumulators stay in registers. */
#include "kernels/direct.h"
#include "base/threads.h"

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_DIRECT16 1
#endif

/* A padded input plane: hp rows of wp. */
static size_t xp_plane(const direct_geom *g) { return (size_t)(g->h + 2 * g->ph) * (size_t)(g->w + 2 * g->pw); }

static int rounded16(int n) { return (n + 15) / 16 * 16; }

/* dyz: dy with (kh−1)·dh zero rows above and below and (kw−1)·dw zero columns on the left, at
 * width wp, and room for the last vector's overrun. */
static size_t z_plane(const direct_geom *g) {
    const int wp = g->w + 2 * g->pw;
    return (size_t)(g->oh + 2 * (g->kh - 1) * g->dh) * wp + 16 + (size_t)(g->kw - 1) * g->dw;
}

/* The input-gradient planes: the h rows of dxp at width wp, rounded up to whole vectors. */
static size_t dxp_plane(const direct_geom *g) { return (size_t)rounded16(g->h * (g->w + 2 * g->pw)); }

/* The input gradient as a forward pass, when it pays and the padding allows: the layer that maps
 * dy (kg channels, oh × ow) to dx (c channels, h × w) through the rotated kernels. */
static int input_by_channels(const direct_geom *g) {
    return g->c >= 16 && (g->c % 16 == 0 || g->c % 16 >= 8) && g->sh == 1 && g->sw == 1 &&
           g->ph <= (g->kh - 1) * g->dh && g->pw <= (g->kw - 1) * g->dw;
}

static direct_geom input_geom(const direct_geom *g) {
    const direct_geom t = {.c = g->kg, .h = g->oh, .w = g->ow, .kg = g->c, .kh = g->kh, .kw = g->kw, .sh = 1,
                           .sw = 1, .ph = (g->kh - 1) * g->dh - g->ph, .pw = (g->kw - 1) * g->dw - g->pw,
                           .dh = g->dh, .dw = g->dw, .oh = g->h, .ow = g->w};
    return t;
}

/* The wide forward (see direct16_forward): at stride 1, output rows taken at the padded width wp,
 * 16 consecutive cells to a vector. */
static int wide_mode = 1;

int direct16_wide(int mode) {
    const int was = wide_mode;
    wide_mode = mode;
    return was;
}

/* Wide rows waste wp − ow cells of each row: they win where that is at most an eighth of it (in
 * ResNet-20, 32 of 34 and 16 of 18, not 8 of 10, where the per-row tiles are as fast). */
static int wide_forward(const direct_geom *g) {
    return wide_mode && g->sh == 1 && g->sw == 1 && (wide_mode == 2 || 8 * g->ow >= 7 * (g->w + 2 * g->pw));
}

/* The wide rows of the output: oh rows of wp cells, in whole vectors. */
static int wide_vectors(const direct_geom *g) { return (g->oh * (g->w + 2 * g->pw) + 15) / 16; }

/* The wide forward's buffers: every padded plane, with room after the last for the last vector's
 * taps, then kg wide output planes. */
static size_t wide_forward_ws(const direct_geom *g) {
    return (size_t)g->c * xp_plane(g) + 16 + (size_t)(g->kw - 1) * g->dw + (size_t)g->kg * 16 * wide_vectors(g);
}

static size_t forward_ws(const direct_geom *g) {
    const size_t xp = g->ph || g->pw ? (size_t)g->c * xp_plane(g) : 0;
    const size_t n = xp + (size_t)g->oh * g->ow * rounded16(g->kg), w = wide_forward(g) ? wide_forward_ws(g) : 0;
    return n > w ? n : w;
}

/* With a stride, dx splits into sh·sw phases: the cells h with (h + ph) mod sh = q, and likewise
 * for columns. Within a phase, h = start + sh·j, and the taps r that reach such a cell are those
 * with r·dh ≡ q (mod sh), L = sh / gcd(sh, dh) apart; tap r reads dy row (h + ph − r·dh) / sh =
 * j + e(r). Taken from the largest r down, e rises by dh / gcd(sh, dh) at each step: each phase is
 * a stride-1 forward pass over dy with a dilated sub-kernel of the rotated kernels. */
typedef struct phase1 {
    int start, count;   /* dx indices start + s·j, j < count */
    int taps, r_hi, L;  /* taps r_hi, r_hi − L, ... */
    int e0, dil;        /* tap number i reads dy index j + e0 + i·dil */
} phase1;

/* PHASES: phase q's first cell is (q − p) mod s, so the phases with cells (start < n) are the
 * q = (start + p) mod s for start < min(s, n): the loops below visit those alone, in that order, and
 * never the s² phases of a stride far larger than the input (stride=7186 made parsing take seconds). */
static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

static phase1 phase_of(int q, int s, int k, int d, int p, int n) {
    phase1 f = {0};
    f.start = ((q - p) % s + s) % s;
    f.count = f.start < n ? (n - f.start + s - 1) / s : 0;
    int r = 0;
    while (r < k && ((q - r * d) % s + s) % s) r++;
    f.L = s / gcd(s, d);
    f.taps = r < k ? (k - 1 - r) / f.L + 1 : 0;
    f.r_hi = r + (f.taps - 1) * f.L;
    f.e0 = (f.start + p - f.r_hi * d) / s;
    f.dil = d / gcd(s, d);
    return f;
}

/* The strided input gradient by phases, when it pays: 16 or more input channels. */
static int input_by_phases(const direct_geom *g) {
    return (g->sh > 1 || g->sw > 1) && g->c >= 16 && (g->c % 16 == 0 || g->c % 16 >= 8);
}

/* Phase (qh, qw)'s forward geometry: dy, cut and padded to the rows and columns it reads. */
static direct_geom phase_geom(const direct_geom *g, const phase1 *fh, const phase1 *fw) {
    const direct_geom t = {.c = g->kg, .h = fh->count + (fh->taps - 1) * fh->dil,
                           .w = fw->count + (fw->taps - 1) * fw->dil, .kg = g->c, .kh = fh->taps, .kw = fw->taps,
                           .sh = 1, .sw = 1, .ph = 0, .pw = 0, .dh = fh->dil, .dw = fw->dil, .oh = fh->count,
                           .ow = fw->count};
    return t;
}

/* Whether phase (qh, qw) has cells and taps; its two halves in *fh, *fw. */
static int phase_at(const direct_geom *g, int qh, int qw, phase1 *fh, phase1 *fw) {
    *fh = phase_of(qh, g->sh, g->kh, g->dh, g->ph, g->h);
    *fw = phase_of(qw, g->sw, g->kw, g->dw, g->pw, g->w);
    return fh->count > 0 && fw->count > 0 && fh->taps > 0 && fw->taps > 0;
}

static size_t phases_ws(const direct_geom *g) {
    size_t most = 0;
    for (int ih = 0; ih < g->sh && ih < g->h; ih++)     /* the phases that have cells (see PHASES) */
        for (int iw = 0; iw < g->sw && iw < g->w; iw++) {
            const int qh = (ih + g->ph) % g->sh, qw = (iw + g->pw) % g->sw;
            phase1 fh, fw;
            if (!phase_at(g, qh, qw, &fh, &fw)) continue;
            const direct_geom t = phase_geom(g, &fh, &fw);
            const size_t n = (size_t)t.c * t.h * t.w + (size_t)t.kg * t.oh * t.ow + forward_ws(&t);
            most = n > most ? n : most;
        }
    return most;
}

size_t direct16_ws_floats(const direct_geom *g) {
    const size_t own = forward_ws(g) + (size_t)g->kg * z_plane(g) + (size_t)g->c * dxp_plane(g);
    size_t in = 0;
    if (input_by_channels(g)) {
        const direct_geom t = input_geom(g);
        in = forward_ws(&t);
    } else if (input_by_phases(g)) {
        in = phases_ws(g);
    }
    return in > own ? in : own;
}

int direct16_input_direct(const direct_geom *g) { return (g->sh == 1 && g->sw == 1) || input_by_phases(g); }

size_t direct16_wti_floats(const direct_geom *g) {
    if (input_by_channels(g)) {
        const direct_geom t = input_geom(g);
        return direct16_wt_floats(&t);
    }
    if (!input_by_phases(g)) return 0;
    size_t n = 0;
    for (int ih = 0; ih < g->sh && ih < g->h; ih++)     /* the phases that have cells (see PHASES) */
        for (int iw = 0; iw < g->sw && iw < g->w; iw++) {
            const int qh = (ih + g->ph) % g->sh, qw = (iw + g->pw) % g->sw;
            phase1 fh, fw;
            if (!phase_at(g, qh, qw, &fh, &fw)) continue;
            const direct_geom t = phase_geom(g, &fh, &fw);
            n += direct16_wt_floats(&t);
        }
    return n;
}

size_t direct16_wt_floats(const direct_geom *g) {
    return (size_t)rounded16(g->kg) * ((size_t)g->c * g->kh * g->kw + 1);
}

#ifdef HAVE_DIRECT16

#define T16 __attribute__((target("avx512f")))
#define TILE static inline __attribute__((always_inline)) T16

/* NAME_tab[A − 1][B − 1] is NAME_tile(a, A, B) compiled with A and B constant, so that the
 * tile's accumulators are registers: one function per register block a kernel is called with. */
#define INSTANCE(NAME, ARGS, A, B) \
    static T16 void NAME##_##A##_##B(const ARGS *a) { NAME##_tile(a, A, B); }
#define ROW_OF_4(NAME, ARGS, A) INSTANCE(NAME, ARGS, A, 1) INSTANCE(NAME, ARGS, A, 2) \
    INSTANCE(NAME, ARGS, A, 3) INSTANCE(NAME, ARGS, A, 4)
#define ROW_OF_5(NAME, ARGS, A) ROW_OF_4(NAME, ARGS, A) INSTANCE(NAME, ARGS, A, 5)
#define ROW_OF_12(NAME, ARGS, A) ROW_OF_4(NAME, ARGS, A) INSTANCE(NAME, ARGS, A, 5) \
    INSTANCE(NAME, ARGS, A, 6) INSTANCE(NAME, ARGS, A, 7) INSTANCE(NAME, ARGS, A, 8) \
    INSTANCE(NAME, ARGS, A, 9) INSTANCE(NAME, ARGS, A, 10) INSTANCE(NAME, ARGS, A, 11) \
    INSTANCE(NAME, ARGS, A, 12)
#define PTRS_4(NAME, A) NAME##_##A##_1, NAME##_##A##_2, NAME##_##A##_3, NAME##_##A##_4
#define PTRS_5(NAME, A) PTRS_4(NAME, A), NAME##_##A##_5
#define PTRS_12(NAME, A) PTRS_5(NAME, A), NAME##_##A##_6, NAME##_##A##_7, NAME##_##A##_8, \
    NAME##_##A##_9, NAME##_##A##_10, NAME##_##A##_11, NAME##_##A##_12
#define INSTANCES_2x12(NAME, ARGS) ROW_OF_12(NAME, ARGS, 1) ROW_OF_12(NAME, ARGS, 2) \
    static void (*const NAME##_tab[2][12])(const ARGS *) = {{PTRS_12(NAME, 1)}, {PTRS_12(NAME, 2)}};
#define INSTANCES_6x4(NAME, ARGS) ROW_OF_4(NAME, ARGS, 1) ROW_OF_4(NAME, ARGS, 2) ROW_OF_4(NAME, ARGS, 3) \
    ROW_OF_4(NAME, ARGS, 4) ROW_OF_4(NAME, ARGS, 5) ROW_OF_4(NAME, ARGS, 6) \
    static void (*const NAME##_tab[6][4])(const ARGS *) = {{PTRS_4(NAME, 1)}, {PTRS_4(NAME, 2)}, \
        {PTRS_4(NAME, 3)}, {PTRS_4(NAME, 4)}, {PTRS_4(NAME, 5)}, {PTRS_4(NAME, 6)}};
#define INSTANCES_4x5(NAME, ARGS) ROW_OF_5(NAME, ARGS, 1) ROW_OF_5(NAME, ARGS, 2) ROW_OF_5(NAME, ARGS, 3) \
    ROW_OF_5(NAME, ARGS, 4) \
    static void (*const NAME##_tab[4][5])(const ARGS *) = {{PTRS_5(NAME, 1)}, {PTRS_5(NAME, 2)}, \
        {PTRS_5(NAME, 3)}, {PTRS_5(NAME, 4)}};

/* dst[0 .. n) = src[0 .. n), in vectors: the rows copied here are a few dozen floats, too short
 * for memcpy's call to pay. */
TILE void copy_floats(float *dst, const float *src, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
    }
}

/* xp = every plane of x with ph rows and pw columns of zeros around it, row by row: each padded
 * row written once, zeros and values together. */
static T16 void pad_planes(const direct_geom *g, const float *x, float *xp) {
    const int wp = g->w + 2 * g->pw, hp = g->h + 2 * g->ph;
    const size_t plane = xp_plane(g);
    for (int c = 0; c < g->c; c++) {
        float *o = xp + c * plane;
        const float *src = x + (size_t)c * g->h * g->w;
        memset(o, 0, (size_t)g->ph * wp * sizeof *o);
        for (int i = 0; i < g->h; i++) {
            float *row = o + (size_t)(i + g->ph) * wp;
            for (int j = 0; j < g->pw; j++) row[j] = row[g->pw + g->w + j] = 0.0f;
            copy_floats(row + g->pw, src + (size_t)i * g->w, g->w);
        }
        memset(o + (size_t)(g->ph + g->h) * wp, 0, (size_t)(hp - g->ph - g->h) * wp * sizeof *o);
    }
}

/* x as the kernels read it: padded into ws when the layer pads, else x itself. */
static T16 const float *padded_input(const direct_geom *g, const float *x, float *ws) {
    if (!g->ph && !g->pw) return x;
    pad_planes(g, x, ws);
    return ws;
}

static int enabled = 1;

int direct16_enable(int on) {
    const int was = enabled;
    enabled = on != 0;
    return was;
}

int direct16_available(void) {
    static int cpu = -1;   /* a race writes the same value */
    if (cpu < 0) {
        __builtin_cpu_init();
        cpu = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return enabled && cpu;
}

/* Phase by phase, the sub-kernels w'[c][k][i][j] = w[k][c][r_hi − i·L][t_hi − j·L'] packed as
 * direct16_pack_weights packs a layer's weights, with a zero bias. */
static void pack_phase_weights(const direct_geom *g, const float *w, float *wti) {
    const int taps = g->kh * g->kw, ck = g->c * taps;
    for (int ih = 0; ih < g->sh && ih < g->h; ih++)     /* the phases that have cells (see PHASES) */
        for (int iw = 0; iw < g->sw && iw < g->w; iw++) {
            const int qh = (ih + g->ph) % g->sh, qw = (iw + g->pw) % g->sw;
            phase1 fh, fw;
            if (!phase_at(g, qh, qw, &fh, &fw)) continue;
            const direct_geom t = phase_geom(g, &fh, &fw);
            const int kt = g->kg * fh.taps * fw.taps;
            for (int cb = 0; cb < rounded16(g->c) / 16; cb++) {
                float *o = wti + (size_t)cb * (kt + 1) * 16;
                for (int k = 0; k < g->kg; k++)
                    for (int i = 0; i < fh.taps; i++)
                        for (int j = 0; j < fw.taps; j++) {
                            const int r = fh.r_hi - i * fh.L, tt = fw.r_hi - j * fw.L;
                            float *row = o + (((size_t)k * fh.taps + i) * fw.taps + j) * 16;
                            for (int u = 0; u < 16; u++) {
                                const int c = cb * 16 + u;
                                row[u] = c < g->c ? w[(size_t)k * ck + (size_t)c * taps + r * g->kw + tt] : 0.0f;
                            }
                        }
                for (int u = 0; u < 16; u++) o[(size_t)kt * 16 + u] = 0.0f;
            }
            wti += direct16_wt_floats(&t);
        }
}

void direct16_pack_input_weights(const direct_geom *g, const float *w, float *wti) {
    if (input_by_phases(g)) {
        pack_phase_weights(g, w, wti);
        return;
    }
    if (!input_by_channels(g)) return;
    const int taps = g->kh * g->kw, ck = g->c * taps, kt = g->kg * taps;
    for (int cb = 0; cb < rounded16(g->c) / 16; cb++) {
        float *o = wti + (size_t)cb * (kt + 1) * 16;
        for (int k = 0; k < g->kg; k++)
            for (int q = 0; q < taps; q++)
                for (int u = 0; u < 16; u++) {
                    const int c = cb * 16 + u;
                    o[((size_t)k * taps + q) * 16 + u] =
                        c < g->c ? w[(size_t)k * ck + (size_t)c * taps + taps - 1 - q] : 0.0f;   /* rot180 */
                }
        for (int u = 0; u < 16; u++) o[(size_t)kt * 16 + u] = 0.0f;
    }
}

/* r[i][j] becomes r[j][i]: a 16×16 transpose in registers (unpack, then shuffles of pairs,
 * then of 128-bit quarters). */
TILE void tr16(__m512 *r) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0x88);
            t[h + 4 + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    }
}

/* dst[j·ldd + i] = src[i·lds + j] for i < rows, j < cols (both at most 16): the transpose of a
 * block, through registers; what lies outside the block is neither read nor written. */
static T16 void transpose_block(const float *src, size_t lds, int rows, int cols, float *dst, size_t ldd) {
    const __mmask16 in = (__mmask16)((1u << cols) - 1), out = (__mmask16)((1u << rows) - 1);
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_maskz_loadu_ps(in, src + i * lds) : _mm512_setzero_ps();
    tr16(r);
    for (int j = 0; j < cols; j++) _mm512_mask_storeu_ps(dst + j * ldd, out, r[j]);
}

/* Each block's [16][ck] rows of w become [ck][16] in 16 × 16 transposes: at batch 1 a loop of
 * scalar moves here took an eighth of ResNet-20's forward pass. */
T16 void direct16_pack_weights(const direct_geom *g, const float *w, const float *b, float *wt) {
    const int ck = g->c * g->kh * g->kw, blocks = rounded16(g->kg) / 16;
    for (int kb = 0; kb < blocks; kb++) {
        float *o = wt + (size_t)kb * (ck + 1) * 16;
        const int rows = g->kg - kb * 16 < 16 ? g->kg - kb * 16 : 16;
        if (rows < 16) memset(o, 0, (size_t)(ck + 1) * 16 * sizeof *o);   /* the channels past kg */
        for (int q0 = 0; q0 < ck; q0 += 16)
            transpose_block(w + (size_t)kb * 16 * ck + q0, (size_t)ck, rows, ck - q0 < 16 ? ck - q0 : 16,
                            o + (size_t)q0 * 16, 16);
        for (int u = 0; u < 16; u++) o[(size_t)ck * 16 + u] = u < rows && b ? b[kb * 16 + u] : 0.0f;
    }
}

/* ---- forward: KB blocks of 16 output channels × M consecutive positions of one output row ---- */

typedef struct fwd_args {
    const float *x;         /* xp at the tile's first position (row oy, column ox) */
    const float *wt;        /* the first block's packed weights; bias at [ck] */
    size_t wstride;         /* floats from one block's packed weights to the next */
    size_t plane;           /* floats per padded input plane */
    int c, kh, kw, dh, dw, wp, sw;
    float *out;             /* [M][KB·16] */
} fwd_args;

TILE void fwd_tile(const fwd_args *a, const int KB, const int M) {
    const int ck = a->c * a->kh * a->kw;
    __m512 acc[2][12];
    for (int kb = 0; kb < KB; kb++)
        for (int i = 0; i < M; i++) acc[kb][i] = _mm512_loadu_ps(a->wt + kb * a->wstride + (size_t)ck * 16);
    const float *w = a->wt;
    for (int c = 0; c < a->c; c++)
        for (int r = 0; r < a->kh; r++) {
            const float *src = a->x + c * a->plane + (size_t)r * a->dh * a->wp;
            for (int t = 0; t < a->kw; t++, w += 16) {
                const float *s = src + t * a->dw;
                const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + (KB > 1 ? a->wstride : 0));
                for (int i = 0; i < M; i++) {
                    const __m512 xv = _mm512_set1_ps(s[i * a->sw]);
                    acc[0][i] = _mm512_fmadd_ps(xv, w0, acc[0][i]);
                    if (KB > 1) acc[1][i] = _mm512_fmadd_ps(xv, w1, acc[1][i]);
                }
            }
        }
    for (int i = 0; i < M; i++)
        for (int kb = 0; kb < KB; kb++) _mm512_storeu_ps(a->out + (size_t)(i * KB + kb) * 16, acc[kb][i]);
}

INSTANCES_2x12(fwd, fwd_args)


/* ---- the wide forward: J ≤ 8 output channels of one block × V vectors of 16 consecutive wide
 * cells. Each tap is one unaligned load per vector and one broadcast weight per channel, and
 * each cell's sum runs in the order of fwd_tile (bias, then channels, rows, columns of taps), so
 * both give the same bits. ---- */

typedef struct wfwd_args {
    const float *x;         /* the padded planes at the tile's first cell */
    const float *wt;        /* the block's packed weights at the tile's first channel; bias at [ck·16] */
    size_t plane;           /* floats per padded input plane */
    int c, kh, kw;
    ptrdiff_t rstep, tstep; /* tap (r, t) reads x + r·rstep + t·tstep */
    float *out;             /* output channel j at out + j·oplane */
    size_t oplane;
} wfwd_args;

TILE void wfwd_tile(const wfwd_args *a, const int J, const int V) {
    const int ck = a->c * a->kh * a->kw;
    __m512 acc[8][3];
    for (int j = 0; j < J; j++)
        for (int v = 0; v < V; v++) acc[j][v] = _mm512_set1_ps(a->wt[(size_t)ck * 16 + j]);
    const float *w = a->wt;
    for (int c = 0; c < a->c; c++)
        for (int r = 0; r < a->kh; r++) {
            const float *src = a->x + c * a->plane + r * a->rstep;
            for (int t = 0; t < a->kw; t++, w += 16) {
                const float *s = src + t * a->tstep;
                __m512 xv[3];
                for (int v = 0; v < V; v++) xv[v] = _mm512_loadu_ps(s + 16 * v);
                for (int j = 0; j < J; j++) {
                    const __m512 wv = _mm512_set1_ps(w[j]);
                    for (int v = 0; v < V; v++) acc[j][v] = _mm512_fmadd_ps(xv[v], wv, acc[j][v]);
                }
            }
        }
    for (int j = 0; j < J; j++)
        for (int v = 0; v < V; v++) _mm512_storeu_ps(a->out + j * a->oplane + 16 * v, acc[j][v]);
}

#define ROW_OF_3(NAME, ARGS, A) INSTANCE(NAME, ARGS, A, 1) INSTANCE(NAME, ARGS, A, 2) INSTANCE(NAME, ARGS, A, 3)
#define PTRS_3(NAME, A) NAME##_##A##_1, NAME##_##A##_2, NAME##_##A##_3
ROW_OF_3(wfwd, wfwd_args, 1) ROW_OF_3(wfwd, wfwd_args, 2) ROW_OF_3(wfwd, wfwd_args, 3) ROW_OF_3(wfwd, wfwd_args, 4)
ROW_OF_3(wfwd, wfwd_args, 5) ROW_OF_3(wfwd, wfwd_args, 6) ROW_OF_3(wfwd, wfwd_args, 7) ROW_OF_3(wfwd, wfwd_args, 8)
static void (*const wfwd_tab[8][3])(const wfwd_args *) = {{PTRS_3(wfwd, 1)}, {PTRS_3(wfwd, 2)}, {PTRS_3(wfwd, 3)},
    {PTRS_3(wfwd, 4)}, {PTRS_3(wfwd, 5)}, {PTRS_3(wfwd, 6)}, {PTRS_3(wfwd, 7)}, {PTRS_3(wfwd, 8)}};

/* par = 1 spreads the tiles over the threads (direct16_forward_par); each output element is still
 * one tile's sum in the order above, so the bits are those of par = 0. */
static T16 void forward_wide(const direct_geom *g, const float *x, const float *wt, float *y, float *ws, int par) {
    const int wp = g->w + 2 * g->pw, nv = wide_vectors(g), ck = g->c * g->kh * g->kw;
    const size_t plane = xp_plane(g), slack = 16 + (size_t)(g->kw - 1) * g->dw, oplane = 16 * (size_t)nv;
    float *xp = ws, *wide = ws + (size_t)g->c * plane + slack;
    pad_planes(g, x, xp);
    memset(xp + (size_t)g->c * plane, 0, slack * sizeof *xp);
    const size_t wstride = (size_t)(ck + 1) * 16;
    const int vt = (nv + 2) / 3, jt = (g->kg + 7) / 8;   /* tiles of 3 vectors × 8 channels */
    PARALLEL_FOR(tile, par ? (long)vt * jt : 1)
        for (long q = par ? tile : 0; q < (par ? tile + 1 : (long)vt * jt); q++) {
            const int v0 = (int)(q / jt) * 3, j0 = (int)(q % jt) * 8;
            const int V = nv - v0 < 3 ? nv - v0 : 3, J = g->kg - j0 < 8 ? g->kg - j0 : 8;
            const wfwd_args a = {.x = xp + 16 * (size_t)v0, .wt = wt + (size_t)(j0 / 16) * wstride + j0 % 16,
                                 .plane = plane, .c = g->c, .kh = g->kh, .kw = g->kw, .rstep = (ptrdiff_t)g->dh * wp,
                                 .tstep = g->dw, .out = wide + j0 * oplane + 16 * (size_t)v0, .oplane = oplane};
            wfwd_tab[J - 1][V - 1](&a);
        }
    PARALLEL_FOR(k, par ? g->kg : 1)
        for (long kk = par ? k : 0; kk < (par ? k + 1 : g->kg); kk++)
            for (int i = 0; i < g->oh; i++)
                copy_floats(y + ((size_t)kk * g->oh + i) * g->ow, wide + kk * oplane + (size_t)i * wp, g->ow);
}

static T16 void forward_rows(const direct_geom *g, const float *x, const float *wt, float *y, float *ws, int par) {
    const float *xp = padded_input(g, x, ws);
    const int ck = g->c * g->kh * g->kw, blocks = rounded16(g->kg) / 16, P = g->oh * g->ow;
    const size_t wstride = (size_t)(ck + 1) * 16;
    const int kbs = (blocks + 1) / 2;   /* pairs of blocks of 16 channels, each × every output row */
    PARALLEL_FOR(task, par ? (long)kbs * g->oh : 1)
        for (long q = par ? task : 0; q < (par ? task + 1 : (long)kbs * g->oh); q++) {
            const int kb0 = (int)(q / g->oh) * 2, oy = (int)(q % g->oh);
            const int KB = blocks - kb0 >= 2 ? 2 : 1;
            const int k0 = kb0 * 16, kn = g->kg - k0 < KB * 16 ? g->kg - k0 : KB * 16;
            float out[12 * 32] __attribute__((aligned(64)));
            fwd_args a = {.wt = wt + (size_t)kb0 * wstride, .wstride = wstride, .plane = xp_plane(g), .c = g->c,
                          .kh = g->kh, .kw = g->kw, .dh = g->dh, .dw = g->dw, .wp = g->w + 2 * g->pw, .sw = g->sw,
                          .out = out};
            /* A row in tiles of at most 12 positions, as even as can be: 14 = 7 + 7, not 12 + 2. */
            const int tiles = (g->ow + 11) / 12;
            for (int ti = 0, ox = 0; ti < tiles; ti++) {
                const int M = g->ow / tiles + (ti < g->ow % tiles);
                a.x = xp + (size_t)oy * g->sh * a.wp + (size_t)ox * g->sw;
                fwd_tab[KB - 1][M - 1](&a);
                /* out [M][KB·16] → y [k][position]: one transpose per block of 16 channels. */
                float *yk = y + (size_t)k0 * P + (size_t)oy * g->ow + ox;
                for (int kb = 0; kb * 16 < kn; kb++)
                    transpose_block(out + kb * 16, (size_t)KB * 16, M, kn - kb * 16 < 16 ? kn - kb * 16 : 16,
                                    yk + (size_t)kb * 16 * P, (size_t)P);
                ox += M;
            }
        }
}

void direct16_forward(const direct_geom *g, const float *x, const float *wt, float *y, float *ws) {
    if (wide_forward(g)) forward_wide(g, x, wt, y, ws, 0);
    else forward_rows(g, x, wt, y, ws, 0);
}

void direct16_forward_par(const direct_geom *g, const float *x, const float *wt, float *y, float *ws) {
    if (wide_forward(g)) forward_wide(g, x, wt, y, ws, 1);
    else forward_rows(g, x, wt, y, ws, 1);
}

/* ---- weight gradient: KB blocks of 16 output channels × TB taps of one input channel ---- */

typedef struct dw_args {
    const float *x;         /* the input channel's padded plane */
    const float *dyt;       /* dyᵀ [oh·ow][ldd] at the first block's channels */
    const int *off;         /* the TB taps' offsets into the plane: r·dh·wp + t·dw */
    int ldd, oh, ow, wp, sh, sw;
    float *out;             /* [TB][KB·16] */
    /* dwr_tile only: x is the unpadded plane; kernel rows r0 .. r0 + R − 1 */
    const float *zero;      /* w zeros: the rows that fall in the padding */
    int h, w, ph, pw, dh, r0;
} dw_args;

TILE void dw_tile(const dw_args *a, const int KB, const int TB) {
    __m512 acc[2][12];
    const float *s[12];
    for (int j = 0; j < TB; j++) {
        acc[0][j] = acc[1][j] = _mm512_setzero_ps();
        s[j] = a->x + a->off[j];
    }
    const float *d = a->dyt;
    for (int oy = 0; oy < a->oh; oy++) {
        const size_t row = (size_t)oy * a->sh * a->wp;
        for (int ox = 0; ox < a->ow; ox++, d += a->ldd) {
            const __m512 d0 = _mm512_loadu_ps(d), d1 = _mm512_loadu_ps(d + (KB > 1 ? 16 : 0));
            const size_t at = row + (size_t)ox * a->sw;
            for (int j = 0; j < TB; j++) {
                const __m512 xv = _mm512_set1_ps(s[j][at]);
                acc[0][j] = _mm512_fmadd_ps(xv, d0, acc[0][j]);
                if (KB > 1) acc[1][j] = _mm512_fmadd_ps(xv, d1, acc[1][j]);
            }
        }
    }
    for (int j = 0; j < TB; j++)
        for (int kb = 0; kb < KB; kb++) _mm512_storeu_ps(a->out + (size_t)(j * KB + kb) * 16, acc[kb][j]);
}

INSTANCES_2x12(dw, dw_args)

/* dw_tile at unit column stride and dilation with 3 taps to a kernel row (R rows, TB = 3·R): the
 * tap t + 1 of position ox is tap t of ox + 1, so each row's three broadcasts roll along with ox
 * and one new broadcast a row per position feeds 3·KB FMAs (with KB = 1, 1 + R loads for 3·R
 * FMAs instead of 1 + 3·R). The same products are added in the same order as dw_tile's. */
TILE void dwr_tile(const dw_args *a, const int KB, const int R) {
    __m512 acc[2][9];
    _Pragma("GCC unroll 9") for (int j = 0; j < 3 * R; j++) acc[0][j] = acc[1][j] = _mm512_setzero_ps();
    const float *d = a->dyt;
    const int pw = a->pw;
    for (int oy = 0; oy < a->oh; oy++) {
        const float *row[3];
        __m512 b0[3], b1[3], b2[3];
        _Pragma("GCC unroll 3") for (int r = 0; r < R; r++) {
            const int iy = oy * a->sh + (a->r0 + r) * a->dh - a->ph;
            row[r] = iy >= 0 && iy < a->h ? a->x + (size_t)iy * a->w : a->zero;
            b0[r] = pw ? _mm512_setzero_ps() : _mm512_set1_ps(row[r][0]);   /* column −pw */
            b1[r] = _mm512_set1_ps(row[r][1 - pw]);
        }
        int ox = 0;
        /* one position: tap 2 reads column ox + 2 − pw, past the row (zero) at the last one when
         * pw = 1 */
#define DWR_STEP(B0, B1, B2, LAST)                                                             \
    do {                                                                                       \
        const __m512 d0 = _mm512_loadu_ps(d), d1 = _mm512_loadu_ps(d + (KB > 1 ? 16 : 0));     \
        _Pragma("GCC unroll 3") for (int r = 0; r < R; r++) {                                  \
            B2[r] = (LAST) && pw ? _mm512_setzero_ps() : _mm512_set1_ps(row[r][ox + 2 - pw]);  \
            acc[0][3 * r] = _mm512_fmadd_ps(B0[r], d0, acc[0][3 * r]);                         \
            acc[0][3 * r + 1] = _mm512_fmadd_ps(B1[r], d0, acc[0][3 * r + 1]);                 \
            acc[0][3 * r + 2] = _mm512_fmadd_ps(B2[r], d0, acc[0][3 * r + 2]);                 \
            if (KB > 1) {                                                                      \
                acc[1][3 * r] = _mm512_fmadd_ps(B0[r], d1, acc[1][3 * r]);                     \
                acc[1][3 * r + 1] = _mm512_fmadd_ps(B1[r], d1, acc[1][3 * r + 1]);             \
                acc[1][3 * r + 2] = _mm512_fmadd_ps(B2[r], d1, acc[1][3 * r + 2]);             \
            }                                                                                  \
        }                                                                                      \
        d += a->ldd;                                                                           \
        ox++;                                                                                  \
    } while (0)
        while (ox + 4 <= a->ow) {   /* three steps, so that the window rolls through the names */
            DWR_STEP(b0, b1, b2, 0);
            DWR_STEP(b1, b2, b0, 0);
            DWR_STEP(b2, b0, b1, 0);
        }
        switch (a->ow - ox) {       /* the last one to three positions */
        case 1: DWR_STEP(b0, b1, b2, 1); break;
        case 2: DWR_STEP(b0, b1, b2, 0); DWR_STEP(b1, b2, b0, 1); break;
        default: DWR_STEP(b0, b1, b2, 0); DWR_STEP(b1, b2, b0, 0); DWR_STEP(b2, b0, b1, 1); break;
        }
#undef DWR_STEP
    }
    _Pragma("GCC unroll 9") for (int j = 0; j < 3 * R; j++)
        for (int kb = 0; kb < KB; kb++) _mm512_storeu_ps(a->out + (size_t)(j * KB + kb) * 16, acc[kb][j]);
}

#define DWR_INSTANCE(KB, R) static T16 void dwr_##KB##_##R(const dw_args *a) { dwr_tile(a, KB, R); }
DWR_INSTANCE(1, 1) DWR_INSTANCE(1, 2) DWR_INSTANCE(1, 3) DWR_INSTANCE(2, 1) DWR_INSTANCE(2, 2) DWR_INSTANCE(2, 3)
static void (*const dwr_tab[2][3])(const dw_args *) = {{dwr_1_1, dwr_1_2, dwr_1_3}, {dwr_2_1, dwr_2_2, dwr_2_3}};

void direct16_weight_grad(const direct_geom *g, const float *x, const float *dy, float *dwt, float *ws) {
    /* Rows of 3 taps at unit column stride and dilation, at most one column of padding: the
     * broadcasts roll (dwr_tile), from x itself, with a row of zeros for the padding rows. */
    const int rolling = g->kw == 3 && g->sw == 1 && g->dw == 1 && g->pw <= 1;
    float *zero = ws;
    const float *xp = rolling ? x : padded_input(g, x, ws);
    if (rolling && g->ph) memset(zero, 0, (size_t)g->w * sizeof *zero);
    float *dyt = ws + (g->ph || g->pw ? (size_t)g->c * xp_plane(g) : 0);
    const int P = g->oh * g->ow, ldd = rounded16(g->kg), taps = g->kh * g->kw, blocks = ldd / 16;
    const int wp = g->w + 2 * g->pw;
    /* dyᵀ: one row of ldd channels per output position, zero past kg. */
    for (int k0 = 0; k0 < ldd; k0 += 16)
        for (int p0 = 0; p0 < P; p0 += 16) {
            const int rows = g->kg - k0 < 16 ? g->kg - k0 : 16, cols = P - p0 < 16 ? P - p0 : 16;
            transpose_block(dy + (size_t)k0 * P + p0, (size_t)P, rows, cols, dyt + (size_t)p0 * ldd + k0, (size_t)ldd);
            if (rows < 16)   /* the channels past kg */
                for (int j = 0; j < cols; j++)
                    for (int i = rows; i < 16; i++) dyt[(size_t)(p0 + j) * ldd + k0 + i] = 0.0f;
        }
    float out[12 * 32] __attribute__((aligned(64)));
    int off[12];
    dw_args a = {.dyt = NULL, .off = off, .ldd = ldd, .oh = g->oh, .ow = g->ow, .wp = wp, .sh = g->sh, .sw = g->sw,
                 .out = out, .zero = zero, .h = g->h, .w = g->w, .ph = g->ph, .pw = g->pw, .dh = g->dh};
    for (int kb0 = 0; kb0 < blocks; kb0 += 2) {
        const int KB = blocks - kb0 >= 2 ? 2 : 1;
        const int k0 = kb0 * 16, kn = g->kg - k0 < KB * 16 ? g->kg - k0 : KB * 16;
        a.dyt = dyt + k0;
        for (int c = 0; c < g->c; c++) {
            a.x = rolling ? x + (size_t)c * g->h * g->w : xp + c * xp_plane(g);
            for (int q0 = 0; q0 < taps; q0 += rolling ? 9 : 12) {
                const int TB = taps - q0 < (rolling ? 9 : 12) ? taps - q0 : rolling ? 9 : 12;
                for (int j = 0; j < TB; j++) {
                    const int r = (q0 + j) / g->kw, t = (q0 + j) % g->kw;
                    off[j] = r * g->dh * wp + t * g->dw;
                }
                if (rolling) {
                    a.r0 = q0 / 3;
                    dwr_tab[KB - 1][TB / 3 - 1](&a);
                }
                else
                    dw_tab[KB - 1][TB - 1](&a);
                for (int j = 0; j < TB; j++) {
                    float *row = dwt + ((size_t)c * taps + q0 + j) * g->kg + k0;
                    for (int k = 0; k < kn; k++) row[k] += out[j * KB * 16 + k];
                }
            }
        }
    }
}

/* ---- the wide tile: J output planes × V vectors of 16 consecutive cells, each a sum over
 * planes p and taps (r, t) of coef(p, j, r·kw + t) · src_p[cell + r·rstep + t·tstep]. The input
 * gradient reads dyz with the taps reversed (rot180); the forward pass of a one-channel layer
 * reads the padded input with them in order. ---- */

typedef struct wide_args {
    const float *src;       /* plane 0 at the tile's first cell, tap (0, 0) */
    size_t splane;          /* floats from one source plane to the next */
    int planes, kh, kw;
    ptrdiff_t rstep, tstep; /* tap (r, t) reads src + r·rstep + t·tstep */
    const float *coef;      /* coef(p, j, q) = coef[p·cps + j·cjs + q] */
    size_t cps;
    int cjs;
    float *out;             /* output plane j at out + j·oplane */
    size_t oplane;
} wide_args;

TILE void wide_tile(const wide_args *a, const int J, const int V) {
    __m512 acc[6][4];
    for (int j = 0; j < J; j++)
        for (int v = 0; v < V; v++) acc[j][v] = _mm512_setzero_ps();
    for (int p = 0; p < a->planes; p++) {
        const float *sp = a->src + p * a->splane, *cp = a->coef + p * a->cps;
        for (int r = 0; r < a->kh; r++)
            for (int t = 0; t < a->kw; t++) {
                const float *src = sp + r * a->rstep + t * a->tstep;
                __m512 dv[4];
                for (int v = 0; v < V; v++) dv[v] = _mm512_loadu_ps(src + 16 * v);
                for (int j = 0; j < J; j++) {
                    const __m512 wv = _mm512_set1_ps(cp[j * a->cjs + r * a->kw + t]);
                    for (int v = 0; v < V; v++) acc[j][v] = _mm512_fmadd_ps(wv, dv[v], acc[j][v]);
                }
            }
    }
    for (int j = 0; j < J; j++)
        for (int v = 0; v < V; v++) _mm512_storeu_ps(a->out + j * a->oplane + 16 * v, acc[j][v]);
}

INSTANCES_6x4(wide, wide_args)

/* Every tile of `rows` output planes × nv vectors: rows in blocks of 6, cells in blocks of 4
 * vectors. a->src, a->coef and a->out are those of the first tile. */
static void wide_run(wide_args a, int rows, int nv) {
    const float *src = a.src, *coef = a.coef;
    float *out = a.out;
    for (int j0 = 0; j0 < rows; j0 += 6) {
        const int J = rows - j0 < 6 ? rows - j0 : 6;
        a.coef = coef + (size_t)j0 * a.cjs;
        for (int v0 = 0; v0 < nv; v0 += 4) {
            const int V = nv - v0 < 4 ? nv - v0 : 4;
            a.src = src + 16 * (size_t)v0;
            a.out = out + j0 * a.oplane + 16 * (size_t)v0;
            wide_tab[J - 1][V - 1](&a);
        }
    }
}

/* The strided input gradient, phase by phase: dy cut and zero-padded to what the phase reads, a
 * forward pass with the phase's sub-kernels, its output spread onto dx's cells of the phase. A
 * phase that no tap reaches gets zeros. */
static void input_grad_phases(const direct_geom *g, const float *dy, const float *wti, float *dx, float *ws) {
    for (int ih = 0; ih < g->sh && ih < g->h; ih++)     /* the phases that have cells (see PHASES) */
        for (int iw = 0; iw < g->sw && iw < g->w; iw++) {
            const int qh = (ih + g->ph) % g->sh, qw = (iw + g->pw) % g->sw;
            phase1 fh, fw;
            const int live = phase_at(g, qh, qw, &fh, &fw);
            if (!live) {
                for (int c = 0; c < g->c; c++)
                    for (int i = 0; i < fh.count; i++)
                        for (int j = 0; j < fw.count; j++)
                            dx[((size_t)c * g->h + fh.start + (size_t)i * g->sh) * g->w + fw.start + j * g->sw] = 0.0f;
                continue;
            }
            const direct_geom t = phase_geom(g, &fh, &fw);
            float *in = ws, *out = in + (size_t)t.c * t.h * t.w, *rest = out + (size_t)t.kg * t.oh * t.ow;
            /* in[k][i][j] = dy[k][e0 + i][e0' + j], zero outside dy: columns j0 .. j1 − 1 are inside. */
            const int j0 = fw.e0 < 0 ? -fw.e0 : 0, j1 = g->ow - fw.e0 < t.w ? g->ow - fw.e0 : t.w;
            for (int k = 0; k < g->kg; k++)
                for (int i = 0; i < t.h; i++) {
                    const int y = fh.e0 + i;
                    float *row = in + ((size_t)k * t.h + i) * t.w;
                    if (y < 0 || y >= g->oh || j1 <= j0) {
                        memset(row, 0, (size_t)t.w * sizeof *row);
                        continue;
                    }
                    memset(row, 0, (size_t)j0 * sizeof *row);
                    const float *src = dy + ((size_t)k * g->oh + y) * g->ow + fw.e0;
                    memcpy(row + j0, src + j0, (size_t)(j1 - j0) * sizeof *row);
                    memset(row + j1, 0, (size_t)(t.w - j1) * sizeof *row);
                }
            direct16_forward(&t, in, wti, out, rest);
            for (int c = 0; c < g->c; c++)
                for (int i = 0; i < t.oh; i++) {
                    const float *src = out + ((size_t)c * t.oh + i) * t.ow;
                    float *dst = dx + ((size_t)c * g->h + fh.start + (size_t)i * g->sh) * g->w + fw.start;
                    for (int j = 0; j < t.ow; j++) dst[(size_t)j * g->sw] = src[j];
                }
            wti += direct16_wt_floats(&t);
        }
}

void direct16_input_grad(const direct_geom *g, const float *dy, const float *w, const float *wti, float *dx,
                         float *ws) {
    if (input_by_channels(g)) {
        const direct_geom t = input_geom(g);
        direct16_forward(&t, dy, wti, dx, ws);
        return;
    }
    if (input_by_phases(g)) {
        input_grad_phases(g, dy, wti, dx, ws);
        return;
    }
    const int wp = g->w + 2 * g->pw, taps = g->kh * g->kw;
    const size_t zplane = z_plane(g), oplane = dxp_plane(g);
    float *z = ws + (g->ph || g->pw ? (size_t)g->c * xp_plane(g) : 0) + (size_t)g->oh * g->ow * rounded16(g->kg);
    float *dxp = z + (size_t)g->kg * zplane;
    /* dyz[k][(i + (kh−1)·dh)·wp + j + (kw−1)·dw] = dy[k][i][j], zero elsewhere. */
    memset(z, 0, (size_t)g->kg * zplane * sizeof *z);
    for (int k = 0; k < g->kg; k++)
        for (int i = 0; i < g->oh; i++)
            memcpy(z + k * zplane + (size_t)(i + (g->kh - 1) * g->dh) * wp + (size_t)(g->kw - 1) * g->dw,
                   dy + ((size_t)k * g->oh + i) * g->ow, (size_t)g->ow * sizeof *dy);
    /* Only the rows of dxp that are rows of dx: cells q = ph·wp + (0 .. h·wp − 1). Tap (r, t)
     * reads dyz[q + (kh−1−r)·dh·wp + (kw−1−t)·dw]: rot180(w). */
    const wide_args a = {.src = z + (size_t)(g->ph + (g->kh - 1) * g->dh) * wp + (size_t)(g->kw - 1) * g->dw,
                         .splane = zplane, .planes = g->kg, .kh = g->kh, .kw = g->kw,
                         .rstep = -(ptrdiff_t)g->dh * wp, .tstep = -(ptrdiff_t)g->dw,
                         .coef = w, .cps = (size_t)g->c * taps, .cjs = taps, .out = dxp, .oplane = oplane};
    wide_run(a, g->c, (int)(oplane / 16));
    for (int c = 0; c < g->c; c++)
        for (int i = 0; i < g->h; i++)
            memcpy(dx + ((size_t)c * g->h + i) * g->w, dxp + c * oplane + (size_t)i * wp + g->pw,
                   (size_t)g->w * sizeof *dx);
}

/* ---- one input channel: forward through the wide tile, weight gradient as dot products ---- */

/* The padded plane, with room for the last vector of the last tap to read zeros. */
static size_t wide_xplane(const direct_geom *g) {
    return xp_plane(g) + 16 + (size_t)(g->kw - 1) * g->dw;
}

/* Output channels go through the wide tiles 6 at a time, so the wide buffer holds 6 planes. */
#define WIDE_ROWS 6

size_t direct1_ws_floats(const direct_geom *g) {
    return wide_xplane(g) + (size_t)WIDE_ROWS * 16 * wide_vectors(g);
}

/* The padded plane with zeros after it, into xp. */
static void pad_wide(const direct_geom *g, const float *x, float *xp) {
    const int wp = g->w + 2 * g->pw;
    memset(xp, 0, wide_xplane(g) * sizeof *xp);
    for (int i = 0; i < g->h; i++)
        memcpy(xp + (size_t)(i + g->ph) * wp + g->pw, x + (size_t)i * g->w, (size_t)g->w * sizeof *x);
}

void direct1_forward(const direct_geom *g, const float *x, const float *w, const float *b, float *y, float *ws) {
    const int wp = g->w + 2 * g->pw, nv = wide_vectors(g), taps = g->kh * g->kw;
    float *xp = ws, *wide = ws + wide_xplane(g);
    const size_t oplane = 16 * (size_t)nv;
    pad_wide(g, x, xp);
    wide_args a = {.src = xp, .splane = 0, .planes = 1, .kh = g->kh, .kw = g->kw, .rstep = (ptrdiff_t)g->dh * wp,
                   .tstep = g->dw, .cps = 0, .cjs = taps, .out = wide, .oplane = oplane};
    for (int k0 = 0; k0 < g->kg; k0 += WIDE_ROWS) {
        const int rows = g->kg - k0 < WIDE_ROWS ? g->kg - k0 : WIDE_ROWS;
        a.coef = w + (size_t)k0 * taps;
        wide_run(a, rows, nv);
        for (int k = k0; k < k0 + rows; k++) {
            const float bias = b ? b[k] : 0.0f;
            for (int i = 0; i < g->oh; i++) {
                const float *src = wide + (k - k0) * oplane + (size_t)i * wp;
                float *dst = y + ((size_t)k * g->oh + i) * g->ow;
                for (int j = 0; j < g->ow; j++) dst[j] = src[j] + bias;
            }
        }
    }
}

/* J output channels × TB taps: acc[j][t] = Σ over the wide cells of dyw[j] · xp[cell + off[t]],
 * 16 lanes, then the lanes added in a fixed order. */
typedef struct red_args {
    const float *x;         /* the padded plane */
    const float *dyw;       /* dy of the first channel at width wp, zeros in the other cells */
    size_t dplane;
    int nv;
    int off[5];             /* the taps' offsets into the plane */
    float *out;             /* [J][TB] */
} red_args;

TILE void red_tile(const red_args *a, const int J, const int TB) {
    __m512 acc[4][5];
    for (int j = 0; j < J; j++)
        for (int t = 0; t < TB; t++) acc[j][t] = _mm512_setzero_ps();
    for (int v = 0; v < a->nv; v++) {
        __m512 dv[4];
        for (int j = 0; j < J; j++) dv[j] = _mm512_loadu_ps(a->dyw + j * a->dplane + 16 * (size_t)v);
        for (int t = 0; t < TB; t++) {
            const __m512 xv = _mm512_loadu_ps(a->x + a->off[t] + 16 * (size_t)v);
            for (int j = 0; j < J; j++) acc[j][t] = _mm512_fmadd_ps(dv[j], xv, acc[j][t]);
        }
    }
    for (int j = 0; j < J; j++)
        for (int t = 0; t < TB; t++) a->out[j * TB + t] = _mm512_reduce_add_ps(acc[j][t]);
}

INSTANCES_4x5(red, red_args)

void direct1_weight_grad(const direct_geom *g, const float *x, const float *dy, float *dwt, float *ws) {
    const int wp = g->w + 2 * g->pw, nv = wide_vectors(g), taps = g->kh * g->kw;
    float *xp = ws, *dyw = ws + wide_xplane(g);
    const size_t dplane = 16 * (size_t)nv;
    pad_wide(g, x, xp);
    float out[4 * 5];
    red_args a = {.x = xp, .dyw = dyw, .dplane = dplane, .nv = nv, .out = out};
    for (int k0 = 0; k0 < g->kg; k0 += 4) {
        const int J = g->kg - k0 < 4 ? g->kg - k0 : 4;
        /* These channels' dy at the padded width: dyw[j][i·wp + c] = dy[k0 + j][i][c] for c < ow,
         * else 0. */
        memset(dyw, 0, (size_t)J * dplane * sizeof *dyw);
        for (int j = 0; j < J; j++)
            for (int i = 0; i < g->oh; i++)
                memcpy(dyw + j * dplane + (size_t)i * wp, dy + ((size_t)(k0 + j) * g->oh + i) * g->ow,
                       (size_t)g->ow * sizeof *dy);
        for (int q0 = 0; q0 < taps; q0 += 5) {
            const int TB = taps - q0 < 5 ? taps - q0 : 5;
            for (int t = 0; t < TB; t++) {
                const int r = (q0 + t) / g->kw, c = (q0 + t) % g->kw;
                a.off[t] = r * g->dh * wp + c * g->dw;
            }
            red_tab[J - 1][TB - 1](&a);
            for (int j = 0; j < J; j++)
                for (int t = 0; t < TB; t++) dwt[(size_t)(q0 + t) * g->kg + k0 + j] += out[j * TB + t];
        }
    }
}

#else

int direct16_available(void) { return 0; }
int direct16_enable(int on) {
    (void)on;
    return 0;
}
void direct16_pack_weights(const direct_geom *g, const float *w, const float *b, float *wt) {
    (void)g, (void)w, (void)b, (void)wt;
}
void direct16_forward(const direct_geom *g, const float *x, const float *wt, float *y, float *ws) {
    (void)g, (void)x, (void)wt, (void)y, (void)ws;
}
void direct16_forward_par(const direct_geom *g, const float *x, const float *wt, float *y, float *ws) {
    (void)g, (void)x, (void)wt, (void)y, (void)ws;
}
void direct16_weight_grad(const direct_geom *g, const float *x, const float *dy, float *dwt, float *ws) {
    (void)g, (void)x, (void)dy, (void)dwt, (void)ws;
}
void direct16_pack_input_weights(const direct_geom *g, const float *w, float *wti) { (void)g, (void)w, (void)wti; }
int direct16_input_direct(const direct_geom *g) {
    (void)g;
    return 0;
}
void direct16_input_grad(const direct_geom *g, const float *dy, const float *w, const float *wti, float *dx,
                         float *ws) {
    (void)g, (void)dy, (void)w, (void)wti, (void)dx, (void)ws;
}
size_t direct1_ws_floats(const direct_geom *g) {
    (void)g;
    return 0;
}
void direct1_forward(const direct_geom *g, const float *x, const float *w, const float *b, float *y, float *ws) {
    (void)g, (void)x, (void)w, (void)b, (void)y, (void)ws;
}
void direct1_weight_grad(const direct_geom *g, const float *x, const float *dy, float *dwt, float *ws) {
    (void)g, (void)x, (void)dy, (void)dwt, (void)ws;
}

#endif
