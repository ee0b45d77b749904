/* General matrix multiply: C = beta·C + op(A)·op(B), blocked the way BLIS does it.
 *
 * B is packed into panels of NR columns and A into panels of MR rows, each a kc-long strip, so the
 * micro-kernel reads both with unit stride; it keeps an MR×NR tile of C in registers and adds kc
 * rank-1 updates to it: acc[i][j] += a[k][i]·b[k][j]. Packing also absorbs the transposes.
 *
 * Micro-kernels: AVX-512 (6×32) and AVX2+FMA (6×16) with intrinsics, chosen at run time from
 * what the CPU supports, and plain C (6×8) for every other CPU. Each element of C is a sum over k
 * in increasing order, kc blocks in order, so the result does not depend on how the work is split
 * into tiles or threads; it can differ between kernels only by FMA rounding.
 */
#include "kernels.h"
#include "base/threads.h"

#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

#define MAX_MR 8
#define MAX_NR 32
#define KC 256                  /* the most k per block: a kc block of A's MR rows stays in L1 */
#define A_BLOCK (64 * 1024)     /* the most floats of packed A per block (256 KB), in L2 */
#define B_BLOCK (128 * 1024)    /* the most floats of packed B per block (512 KB), in L2 */
#ifndef PREFETCH_LOCALITY
#define PREFETCH_LOCALITY 2
#endif

/* The loops the compiler vectorises, compiled for AVX-512, AVX2 and the baseline (kernels.h). */
#define CNN_GEMM_CLONES CNN_CLONES

/* A micro-kernel: tile = A[mr×kc]·B[kc×nr] for an mr×nr tile of C; adds it to C (add = 1) or stores
 * it (add = 0), in the m×n valid part only. A is a packed panel, element (i, k) at a[k·mr + i]
 * (lda = 0), or A's own rows, element (i, k) at a[i·lda + k], of which only m exist. B is a packed
 * panel, element (k, j) at b[k·nr + j], zero-padded to nr columns. */
typedef void (*kernel_fn)(int kc, const float *a, ptrdiff_t lda, const float *b, float *c, ptrdiff_t ldc, int m,
                          int n, int add);

/* Writes the m×n valid part of an mr×nr tile held in t to C. */
static void put_tile(const float *t, int nr, float *c, ptrdiff_t ldc, int m, int n, int add) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c[i * ldc + j] = add ? c[i * ldc + j] + t[i * nr + j] : t[i * nr + j];
}

/* Plain C: acc[6][8], which the compiler may vectorise for the baseline ISA. */
static void kernel_c(int kc, const float *restrict a, ptrdiff_t lda, const float *restrict b, float *restrict c,
                     ptrdiff_t ldc, int m, int n, int add) {
    enum { MR = 6, NR = 8 };
    float acc[MR][NR] = {{0}};
    for (int k = 0; k < kc; k++)
        for (int i = 0; i < MR; i++) {
            const float ai = lda ? a[(i < m ? i : m - 1) * lda + k] : a[k * MR + i];
            for (int j = 0; j < NR; j++) acc[i][j] += ai * b[k * NR + j];
        }
    put_tile(&acc[0][0], NR, c, ldc, m, n, add);
}

#ifdef HAVE_X86
__attribute__((target("avx2,fma"))) static void kernel_avx2(int kc, const float *restrict a, ptrdiff_t lda,
                                                            const float *restrict b, float *restrict c,
                                                            ptrdiff_t ldc, int m, int n, int add) {
    enum { MR = 6, NR = 16 };
    __m256 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    if (!lda) {
        for (int k = 0; k < kc; k++) {
            const __m256 b0 = _mm256_load_ps(b + k * NR), b1 = _mm256_load_ps(b + k * NR + 8);
            for (int i = 0; i < MR; i++) {
                const __m256 ai = _mm256_broadcast_ss(a + k * MR + i);
                acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
            }
        }
    } else {
        const float *r[MR];
        for (int i = 0; i < MR; i++) r[i] = a + (i < m ? i : m - 1) * lda;
        for (int k = 0; k < kc; k++) {
            const __m256 b0 = _mm256_load_ps(b + k * NR), b1 = _mm256_load_ps(b + k * NR + 8);
            for (int i = 0; i < MR; i++) {
                const __m256 ai = _mm256_broadcast_ss(r[i] + k);
                acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
            }
        }
    }
    if (m == MR && n == NR) {
        for (int i = 0; i < MR; i++) {
            float *ci = c + i * ldc;
            if (add) {
                acc[i][0] = _mm256_add_ps(_mm256_loadu_ps(ci), acc[i][0]);
                acc[i][1] = _mm256_add_ps(_mm256_loadu_ps(ci + 8), acc[i][1]);
            }
            _mm256_storeu_ps(ci, acc[i][0]);
            _mm256_storeu_ps(ci + 8, acc[i][1]);
        }
        return;
    }
    float t[MR * NR];
    for (int i = 0; i < MR; i++) _mm256_storeu_ps(t + i * NR, acc[i][0]), _mm256_storeu_ps(t + i * NR + 8, acc[i][1]);
    put_tile(t, NR, c, ldc, m, n, add);
}

/* AVX-512, 8 rows × W columns (W = 32, or 16 for a last panel at most 16 wide): 2·8 or 8
 * accumulators. Partial tiles store through masks. */
#define MR512 8
__attribute__((target("avx512f"), always_inline)) static inline void
kernel_avx512_w(int kc, const float *restrict a, ptrdiff_t lda, const float *restrict b, float *restrict c,
                ptrdiff_t ldc, int m, int n, int add, const int W) {
    enum { MR = MR512 };
    __m512 acc[MR][2];
    _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    if (!lda) {
        for (int k = 0; k < kc; k++) {
            const __m512 b0 = _mm512_load_ps(b + k * W);
            const __m512 b1 = W == 32 ? _mm512_load_ps(b + k * W + 16) : b0;
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {
                const __m512 ai = _mm512_set1_ps(a[k * MR + i]);
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                if (W == 32) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            }
        }
    } else {
        const float *r[MR];
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) r[i] = a + (i < m ? i : m - 1) * lda;
        for (int k = 0; k < kc; k++) {
            const __m512 b0 = _mm512_load_ps(b + k * W);
            const __m512 b1 = W == 32 ? _mm512_load_ps(b + k * W + 16) : b0;
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {
                const __m512 ai = _mm512_set1_ps(r[i][k]);
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                if (W == 32) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            }
        }
    }
    if (n == W) {
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {
            if (i >= m) break;
            float *ci = c + i * ldc;
            if (add) acc[i][0] = _mm512_add_ps(_mm512_loadu_ps(ci), acc[i][0]);
            _mm512_storeu_ps(ci, acc[i][0]);
            if (W == 32) {
                if (add) acc[i][1] = _mm512_add_ps(_mm512_loadu_ps(ci + 16), acc[i][1]);
                _mm512_storeu_ps(ci + 16, acc[i][1]);
            }
        }
        return;
    }
    const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
    _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {
        if (i >= m) break;
        float *ci = c + i * ldc;
        if (add) acc[i][0] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), acc[i][0]);
        _mm512_mask_storeu_ps(ci, m0, acc[i][0]);
        if (W == 32) {
            if (add) acc[i][1] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), acc[i][1]);
            _mm512_mask_storeu_ps(ci + 16, m1, acc[i][1]);
        }
    }
}

__attribute__((target("avx512f"))) static void kernel_avx512(int kc, const float *restrict a, ptrdiff_t lda,
                                                             const float *restrict b, float *restrict c,
                                                             ptrdiff_t ldc, int m, int n, int add) {
    kernel_avx512_w(kc, a, lda, b, c, ldc, m, n, add, 32);
}

__attribute__((target("avx512f"))) static void kernel_avx512_16(int kc, const float *restrict a, ptrdiff_t lda,
                                                                const float *restrict b, float *restrict c,
                                                                ptrdiff_t ldc, int m, int n, int add) {
    kernel_avx512_w(kc, a, lda, b, c, ldc, m, n, add, 16);
}
#endif

typedef struct kernel {
    kernel_fn fn;
    kernel_fn half;     /* the same kernel nr/2 wide, for a last panel at most that wide; or NULL */
    int mr, nr;
    const char *name;
} kernel;

static const kernel all_kernels[] = {
    {kernel_c, NULL, 6, 8, "c"},
#ifdef HAVE_X86
    {kernel_avx2, NULL, 6, 16, "avx2"},
    {kernel_avx512, kernel_avx512_16, MR512, 32, "avx512"},
#endif
};

/* The widest micro-kernel this CPU runs. */
static kernel pick_kernel(void) {
#ifdef HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return all_kernels[2];
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return all_kernels[1];
#endif
    return all_kernels[0];
}

static kernel chosen;      /* set once; a race writes the same value */

static kernel the_kernel(void) {
    if (!chosen.fn) chosen = pick_kernel();
    return chosen;
}

const char *gemm_kernel_name(void) { return the_kernel().name; }

int gemm_use_kernel(const char *name) {
    const kernel best = pick_kernel();
    for (size_t i = 0; i < sizeof all_kernels / sizeof all_kernels[0]; i++) {
        if (strcmp(all_kernels[i].name, name)) continue;
        /* Only kernels this CPU can run: the widest one, or a narrower one. */
        if (all_kernels[i].nr > best.nr) return 0;
        chosen = all_kernels[i];
        return 1;
    }
    return 0;
}

/* dst[0, n) = src[0, n): loops of a constant length for the panel widths, which the compiler
 * turns into a few vector moves rather than a call to memcpy. */
static inline void copy_floats(float *restrict dst, const float *restrict src, int n) {
    switch (n) {
    case 32: for (int j = 0; j < 32; j++) dst[j] = src[j]; break;
    case 16: for (int j = 0; j < 16; j++) dst[j] = src[j]; break;
    case 8: for (int j = 0; j < 8; j++) dst[j] = src[j]; break;
    case 6: for (int j = 0; j < 6; j++) dst[j] = src[j]; break;
    default: for (int j = 0; j < n; j++) dst[j] = src[j];
    }
}

/* dst[k·ldd + i] = src[i·lds + k] for 8 rows i and k in [0, n): 8×8 blocks transposed in AVX
 * registers, the last n mod 8 one by one. For CPUs with AVX2 (the AVX2 and AVX-512 kernels). */
#ifdef HAVE_X86
__attribute__((target("avx2"))) static void transpose_8_rows(const float *restrict src, size_t lds, int n,
                                                            float *restrict dst, size_t ldd) {
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 r[8], t[8], u[8];
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds + k);
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 8; i += 4) {
            u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
            u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
            u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
            u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
        }
        for (int i = 0; i < 4; i++) {
            _mm256_storeu_ps(dst + (k + i) * ldd, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
            _mm256_storeu_ps(dst + (k + i + 4) * ldd, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
        }
    }
    for (; k < n; k++)
        for (int i = 0; i < 8; i++) dst[k * ldd + i] = src[i * lds + k];
}
#endif

/* Packs rows [i0, i0+mc) × k [p0, p0+kc) of op(A) into mr-row panels, zero-padded. */
CNN_GEMM_CLONES static void pack_a(int ta, const float *restrict A, int M, int K, int i0, int mc, int p0, int kc,
                                   int mr, int avx2, float *restrict out) {
    for (int ib = 0; ib < mc; ib += mr) {
        float *panel = out + (size_t)ib * kc;
        const int h = mc - ib < mr ? mc - ib : mr;
#ifdef HAVE_X86
        if (!ta && avx2 && h == 8 && mr == 8) {
            transpose_8_rows(A + (size_t)(i0 + ib) * K + p0, (size_t)K, kc, panel, 8);
            continue;
        }
#else
        (void)avx2;
#endif
        for (int p = 0; p < kc; p++) {
            float *dst = panel + (size_t)p * mr;
            if (!ta)
                for (int i = 0; i < h; i++) dst[i] = A[(size_t)(i0 + ib + i) * K + p0 + p];
            else
                copy_floats(dst, A + (size_t)(p0 + p) * M + i0 + ib, h);
            for (int i = h; i < mr; i++) dst[i] = 0.0f;
        }
    }
}

/* The width of the panel at column jb of a block nc wide: nr, or nr/2 for a last one that narrow. */
static int panel_width(const kernel *kn, int nc, int jb) {
    return kn->half && nc - jb <= kn->nr / 2 ? kn->nr / 2 : kn->nr;
}

/* Packs k [p0, p0+kc) × columns [j0, j0+nc) of op(B) into panels (panel_width), zero-padded; the
 * panel at column jb starts at out + jb·kc. B as it is goes row by row, each row once and in order. */
CNN_GEMM_CLONES static void pack_b(int tb, const float *restrict B, int N, int K, int p0, int kc, int j0, int nc,
                                   int nr, int half, int avx2, float *restrict out) {
    const int last = nc - (nc - 1) % nr - 1, lw = half && nc - last <= nr / 2 ? nr / 2 : nr;
    if (!tb) {
        for (int p = 0; p < kc; p++) {
            const float *src = B + (size_t)(p0 + p) * N + j0;
            int jb = 0;
            for (; jb < last; jb += nr) {
                copy_floats(out + (size_t)jb * kc + (size_t)p * nr, src + jb, nr);
            }
            float *dst = out + (size_t)jb * kc + (size_t)p * lw;
            copy_floats(dst, src + jb, nc - jb);
            for (int j = nc - jb; j < lw; j++) dst[j] = 0.0f;
        }
        return;
    }
    /* Bᵀ: read w rows of B side by side, write each panel row once and in order. */
    for (int jb = 0; jb < nc; jb += nr) {
        const int pw = jb == last ? lw : nr, w = nc - jb < pw ? nc - jb : pw;
        float *panel = out + (size_t)jb * kc;
        const float *src = B + (size_t)(j0 + jb) * K + p0;
        int j8 = 0;     /* columns done 8 at a time */
#ifdef HAVE_X86
        if (avx2)
            for (; j8 + 8 <= w; j8 += 8) transpose_8_rows(src + (size_t)j8 * K, (size_t)K, kc, panel + j8, (size_t)pw);
#else
        (void)avx2;
#endif
        for (int p = 0; p < kc; p++) {
            float *dst = panel + (size_t)p * pw;
            for (int j = j8; j < w; j++) dst[j] = src[(size_t)j * K + p];
            for (int j = w; j < pw; j++) dst[j] = 0.0f;
        }
    }
}

/* A few rows of C (a batch of one or two through a linear layer): packing B would cost more than
 * the product, so work on A and B as they are. With B transposed each C element is a dot product
 * of two contiguous rows, summed in 16 interleaved lanes added in a fixed order; otherwise each
 * row of C gathers rows of B scaled by A's entries, in increasing k. */
#define SMALL_M 4

/* The end of a 16-lane dot product: the terms from k16 to K in one chain, the lanes added
 * pairwise in a fixed order. */
static inline float dot_finish(float *lane, const float *a, const float *b, int k16, int K) {
    float tail = 0.0f;
    for (int p = k16; p < K; p++) tail += a[p] * b[p];
    for (int u = 8; u > 0; u /= 2)
        for (int v = 0; v < u; v++) lane[v] += lane[v + u];
    return lane[0] + tail;
}

CNN_GEMM_CLONES static void gemm_small_m(int ta, int tb, int M, int N, int K, const float *restrict A,
                                         const float *restrict B, float *restrict C) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * N;
        if (tb && !ta) {
            /* Four dot products at a time: four independent chains of additions instead of one,
             * each summed exactly as it would be alone. */
            const float *a = A + (size_t)i * K;
            const int K16 = K / 16 * 16;
            int j = 0;
            for (; j + 4 <= N; j += 4) {
                const float *b0 = B + (size_t)j * K, *b1 = b0 + K, *b2 = b1 + K, *b3 = b2 + K;
                float l0[16] = {0}, l1[16] = {0}, l2[16] = {0}, l3[16] = {0};
                for (int p = 0; p < K16; p += 16)
                    for (int u = 0; u < 16; u++) {
                        const float av = a[p + u];
                        l0[u] += av * b0[p + u];
                        l1[u] += av * b1[p + u];
                        l2[u] += av * b2[p + u];
                        l3[u] += av * b3[p + u];
                    }
                c[j] += dot_finish(l0, a, b0, K16, K);
                c[j + 1] += dot_finish(l1, a, b1, K16, K);
                c[j + 2] += dot_finish(l2, a, b2, K16, K);
                c[j + 3] += dot_finish(l3, a, b3, K16, K);
            }
            for (; j < N; j++) {
                const float *b = B + (size_t)j * K;
                float lane[16] = {0};
                for (int p = 0; p < K16; p += 16)
                    for (int u = 0; u < 16; u++) lane[u] += a[p + u] * b[p + u];
                c[j] += dot_finish(lane, a, b, K16, K);
            }
            continue;
        }
        for (int p = 0; p < K; p++) {
            const float a = ta ? A[(size_t)p * M + i] : A[(size_t)i * K + p];
            if (!tb) {
                const float *b = B + (size_t)p * N;
                for (int j = 0; j < N; j++) c[j] += a * b[j];
            } else {
                for (int j = 0; j < N; j++) c[j] += a * B[(size_t)j * K + p];
            }
        }
    }
}

/* One GEMM's shape, operands and blocking. */
typedef struct job {
    int ta, tb, M, N, K;
    const float *A, *B;
    float *C;
    int add;            /* C += (beta = 1) or C = (beta = 0) in the first kc block */
    kernel kn;
    int direct_a;       /* the kernel reads A's rows as they are, unpacked */
    int nkb, mc, nc;    /* number of kc blocks; rows and columns per block */
} job;

/* k block b of nkb: [K·b/nkb, K·(b+1)/nkb), all about the same size. */
static int kb_start(int K, int nkb, int b) { return (int)((long)K * b / nkb); }

/* n split into about equal blocks of at most most, each a multiple of unit (but the last). */
static int even_block(int n, int most, int unit) {
    if (most < unit) most = unit;
    const int blocks = (n + most - 1) / most, per = (n + blocks - 1) / blocks;
    return (per + unit - 1) / unit * unit;
}

/* A walk over the cache lines of a block of rows (of B, to be packed next), a few at a time. */
typedef struct prefetch {
    const char *row;        /* the first row */
    size_t stride;          /* bytes from a row to the next */
    int rows, lines;        /* rows, and cache lines in each */
    int r, l;               /* the next line: row r, line l */
} prefetch;

static prefetch prefetch_rows(const float *first, size_t stride, int rows, int len) {
    const uintptr_t a = (uintptr_t)first;
    const int lines = (int)(((a + (size_t)len * sizeof(float) + 63) & ~(uintptr_t)63) - (a & ~(uintptr_t)63)) / 64;
    return (prefetch){(const char *)(a & ~(uintptr_t)63), stride * sizeof(float), rows, lines, 0, 0};
}

static inline void prefetch_some(prefetch *pf, int count) {
    for (; count > 0 && pf->r < pf->rows; count--) {
        __builtin_prefetch(pf->row + pf->r * pf->stride + (size_t)pf->l * 64, 0, PREFETCH_LOCALITY);
        if (++pf->l == pf->lines) pf->l = 0, pf->r++;
    }
}

/* Rows [r0, r1) × columns [c0, c1) of C, on this thread, with its own buffers. */
static void run_part(const job *jb, int r0, int r1, int c0, int c1) {
    static _Thread_local float apack[A_BLOCK + MAX_MR * KC] __attribute__((aligned(64)));
    static _Thread_local float bpack[B_BLOCK + MAX_NR * KC] __attribute__((aligned(64)));
    const kernel *kn = &jb->kn;
    const int N = jb->N, K = jb->K, mr = kn->mr, nr = kn->nr;
    for (int j0 = c0; j0 < c1; j0 += jb->nc) {
        const int nc = c1 - j0 < jb->nc ? c1 - j0 : jb->nc;
        for (int b = 0; b < jb->nkb; b++) {
            const int p0 = kb_start(K, jb->nkb, b), kc = kb_start(K, jb->nkb, b + 1) - p0;
            const int add = jb->add || b > 0;
            pack_b(jb->tb, jb->B, N, K, p0, kc, j0, nc, nr, kn->half != NULL, nr >= 16, bpack);
            /* The block of B packed next comes into cache while the kernels run on this one. */
            prefetch pf = {0};
            {
                int j1 = j0, b1 = b + 1;
                if (b1 == jb->nkb) j1 += jb->nc, b1 = 0;
                if (j1 < c1) {
                    const int p1 = kb_start(K, jb->nkb, b1), kc1 = kb_start(K, jb->nkb, b1 + 1) - p1;
                    const int nc1 = c1 - j1 < jb->nc ? c1 - j1 : jb->nc;
                    pf = jb->tb ? prefetch_rows(jb->B + (size_t)j1 * K + p1, (size_t)K, nc1, kc1)
                                : prefetch_rows(jb->B + (size_t)p1 * N + j1, (size_t)N, kc1, nc1);
                }
            }
            const int tiles = (r1 - r0 + mr - 1) / mr * ((nc + nr - 1) / nr);
            const int per_tile = (pf.rows * pf.lines + tiles - 1) / tiles;
            for (int i0 = r0; i0 < r1; i0 += jb->mc) {
                const int mc = r1 - i0 < jb->mc ? r1 - i0 : jb->mc;
                const float *ap = apack;
                ptrdiff_t lda = 0, astep = (ptrdiff_t)mr * kc;
                if (jb->direct_a) {
                    ap = jb->A + (size_t)i0 * K + p0;
                    lda = K, astep = (ptrdiff_t)mr * K;
                } else {
                    pack_a(jb->ta, jb->A, jb->M, K, i0, mc, p0, kc, mr, nr >= 16, apack);
                }
                for (int ib = 0; ib < mc; ib += mr) {
                    const int m = mc - ib < mr ? mc - ib : mr;
                    const float *a = ap + (ib / mr) * astep;
                    float *c = jb->C + (size_t)(i0 + ib) * N + j0;
                    for (int q = 0; q < nc; q += nr) {
                        const int n = nc - q < nr ? nc - q : nr;
                        const kernel_fn fn = panel_width(kn, nc, q) == nr ? kn->fn : kn->half;
                        fn(kc, a, lda, bpack + (size_t)q * kc, c + q, N, m, n, add);
                        prefetch_some(&pf, per_tile);
                    }
                }
            }
        }
    }
}

void gemm(int ta, int tb, int M, int N, int K, const float *A, const float *B, float beta, float *C) {
    if (M == 0 || N == 0) return;
    if (K == 0 || M <= SMALL_M) {
        if (beta == 0.0f)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * N, 0, (size_t)N * sizeof *C);
        if (K > 0) gemm_small_m(ta, tb, M, N, K, A, B, C);
        return;
    }
    job jb = {ta, tb, M, N, K, A, B, C, beta != 0.0f, the_kernel(), 0, 0, 0, 0};
    /* Every block size depends on the shape alone, and each element of C is summed over k in
     * increasing order, kc blocks in order: the result does not depend on the thread count. */
    jb.nkb = (K + KC - 1) / KC;
    const int kcmax = (K + jb.nkb - 1) / jb.nkb;
    /* With few columns each element of A serves few tiles (at most 8): the kernel reads A's rows
     * in place rather than pack them. */
    jb.direct_a = !ta && N <= 8 * jb.kn.nr;
    jb.mc = even_block(M, A_BLOCK / kcmax / jb.kn.mr * jb.kn.mr, jb.kn.mr);
    jb.nc = even_block(N, B_BLOCK / kcmax / jb.kn.nr * jb.kn.nr, jb.kn.nr);
    /* Threads only at the outermost level: a GEMM called from a parallel loop stays on its thread. */
    int threads = cnn_get_threads();
#ifdef _OPENMP
    if (omp_in_parallel()) threads = 1;
#endif
    if (threads <= 1 || (double)M * N * K < (double)(1 << 20)) {
        run_part(&jb, 0, M, 0, N);
        return;
    }
    /* Each thread computes whole tiles of its own band of columns (or of rows, for a tall C). */
    const int by_cols = N >= M, unit = by_cols ? jb.kn.nr : jb.kn.mr, len = by_cols ? N : M;
    const int units = (len + unit - 1) / unit;
    CNN_PRAGMA(omp parallel num_threads(threads))
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num(), nt = omp_get_num_threads();
#endif
        int lo = (int)((long)units * t / nt) * unit, hi = (int)((long)units * (t + 1) / nt) * unit;
        if (hi > len) hi = len;
        if (lo < hi) {
            if (by_cols) run_part(&jb, 0, M, lo, hi);
            else run_part(&jb, lo, hi, 0, N);
        }
    }
}
