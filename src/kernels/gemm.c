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
#include "core/threads.h"

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

#define MR 6
#define MAX_NR 32
#define KC 256
#define MC 120        /* a multiple of MR */
#define NC 3072       /* a multiple of every NR */

/* The loops the compiler vectorises, compiled for AVX-512, AVX2 and the baseline (kernels.h). */
#define CNN_GEMM_CLONES CNN_CLONES

typedef void (*kernel_fn)(int kc, const float *a, const float *b, float *c, int ldc, int m, int n);

/* Adds the m×n valid part of an MR×nr tile held in t to C. */
static void add_tile(const float *t, int nr, float *c, int ldc, int m, int n) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] += t[i * nr + j];
}

/* Plain C: acc[MR][8], which the compiler may vectorise for the baseline ISA. */
static void kernel_c(int kc, const float *restrict a, const float *restrict b, float *restrict c, int ldc, int m,
                     int n) {
    enum { NR = 8 };
    float acc[MR][NR] = {{0}};
    for (int k = 0; k < kc; k++)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] += a[k * MR + i] * b[k * NR + j];
    add_tile(&acc[0][0], NR, c, ldc, m, n);
}

#ifdef HAVE_X86
__attribute__((target("avx2,fma"))) static void kernel_avx2(int kc, const float *restrict a, const float *restrict b,
                                                            float *restrict c, int ldc, int m, int n) {
    enum { NR = 16 };
    __m256 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(b + k * NR), b1 = _mm256_load_ps(b + k * NR + 8);
        for (int i = 0; i < MR; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + k * MR + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    if (m == MR && n == NR) {
        for (int i = 0; i < MR; i++) {
            float *ci = c + (size_t)i * ldc;
            _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), acc[i][0]));
            _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), acc[i][1]));
        }
        return;
    }
    float t[MR * NR];
    for (int i = 0; i < MR; i++) _mm256_storeu_ps(t + i * NR, acc[i][0]), _mm256_storeu_ps(t + i * NR + 8, acc[i][1]);
    add_tile(t, NR, c, ldc, m, n);
}

__attribute__((target("avx512f"))) static void kernel_avx512(int kc, const float *restrict a,
                                                             const float *restrict b, float *restrict c, int ldc,
                                                             int m, int n) {
    enum { NR = 32 };
    __m512 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(b + k * NR), b1 = _mm512_load_ps(b + k * NR + 16);
        for (int i = 0; i < MR; i++) {
            const __m512 ai = _mm512_set1_ps(a[k * MR + i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    if (m == MR && n == NR) {
        for (int i = 0; i < MR; i++) {
            float *ci = c + (size_t)i * ldc;
            _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_loadu_ps(ci), acc[i][0]));
            _mm512_storeu_ps(ci + 16, _mm512_add_ps(_mm512_loadu_ps(ci + 16), acc[i][1]));
        }
        return;
    }
    float t[MR * NR];
    for (int i = 0; i < MR; i++) _mm512_storeu_ps(t + i * NR, acc[i][0]), _mm512_storeu_ps(t + i * NR + 16, acc[i][1]);
    add_tile(t, NR, c, ldc, m, n);
}
#endif

typedef struct kernel {
    kernel_fn fn;
    int nr;
    const char *name;
} kernel;

/* The widest micro-kernel this CPU runs. */
static kernel pick_kernel(void) {
#ifdef HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return (kernel){kernel_avx512, 32, "avx512"};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return (kernel){kernel_avx2, 16, "avx2"};
#endif
    return (kernel){kernel_c, 8, "c"};
}

static kernel chosen;      /* set once; a race writes the same value */

static kernel the_kernel(void) {
    if (!chosen.fn) chosen = pick_kernel();
    return chosen;
}

const char *gemm_kernel_name(void) { return the_kernel().name; }

int gemm_use_kernel(const char *name) {
    const kernel best = pick_kernel();
    const kernel all[] = {
        {kernel_c, 8, "c"},
#ifdef HAVE_X86
        {kernel_avx2, 16, "avx2"},
        {kernel_avx512, 32, "avx512"},
#endif
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(all[i].name, name)) continue;
        /* Only kernels this CPU can run: the widest one, or a narrower one. */
        if (all[i].nr > best.nr) return 0;
        chosen = all[i];
        return 1;
    }
    return 0;
}

/* Packs rows [i0, i0+mc) × k [p0, p0+kc) of op(A) into MR-row panels, zero-padded. */
static void pack_a(int ta, const float *A, int M, int K, int i0, int mc, int p0, int kc, float *out) {
    for (int ib = 0; ib < mc; ib += MR) {
        float *panel = out + (size_t)ib * kc;
        const int h = mc - ib < MR ? mc - ib : MR;
        if (!ta) {
            for (int i = 0; i < h; i++) {
                const float *src = A + (size_t)(i0 + ib + i) * K + p0;
                for (int p = 0; p < kc; p++) panel[(size_t)p * MR + i] = src[p];
            }
        } else {
            for (int p = 0; p < kc; p++) {
                const float *src = A + (size_t)(p0 + p) * M + i0 + ib;
                for (int i = 0; i < h; i++) panel[(size_t)p * MR + i] = src[i];
            }
        }
        for (int i = h; i < MR; i++)
            for (int p = 0; p < kc; p++) panel[(size_t)p * MR + i] = 0.0f;
    }
}

/* Packs k [p0, p0+kc) × columns [j0, j0+nc) of op(B) into nr-column panels, zero-padded. */
static void pack_b(int tb, const float *B, int N, int K, int p0, int kc, int j0, int nc, int nr, float *out) {
    for (int jb = 0; jb < nc; jb += nr) {
        float *panel = out + (size_t)jb * kc;
        const int w = nc - jb < nr ? nc - jb : nr;
        if (!tb) {
            for (int p = 0; p < kc; p++) {
                const float *src = B + (size_t)(p0 + p) * N + j0 + jb;
                float *dst = panel + (size_t)p * nr;
                for (int j = 0; j < w; j++) dst[j] = src[j];
                for (int j = w; j < nr; j++) dst[j] = 0.0f;
            }
        } else {
            /* Bᵀ: read w rows of B side by side, write each panel row once and in order. */
            const float *src = B + (size_t)(j0 + jb) * K + p0;
            for (int p = 0; p < kc; p++) {
                float *dst = panel + (size_t)p * nr;
                for (int j = 0; j < w; j++) dst[j] = src[(size_t)j * K + p];
                for (int j = w; j < nr; j++) dst[j] = 0.0f;
            }
        }
    }
}

/* A few rows of C (a batch of one or two through a linear layer): packing B would cost more than
 * the product, so work on A and B as they are. With B transposed each C element is a dot product
 * of two contiguous rows, summed in 16 interleaved lanes added in a fixed order; otherwise each
 * row of C gathers rows of B scaled by A's entries, in increasing k. */
#define SMALL_M 4

CNN_GEMM_CLONES static void gemm_small_m(int ta, int tb, int M, int N, int K, const float *restrict A,
                                         const float *restrict B, float *restrict C) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * N;
        if (tb && !ta) {
            const float *a = A + (size_t)i * K;
            for (int j = 0; j < N; j++) {
                const float *b = B + (size_t)j * K;
                float lane[16] = {0};
                int p = 0;
                for (; p + 16 <= K; p += 16)
                    for (int u = 0; u < 16; u++) lane[u] += a[p + u] * b[p + u];
                float tail = 0.0f;
                for (; p < K; p++) tail += a[p] * b[p];
                for (int u = 8; u > 0; u /= 2)
                    for (int v = 0; v < u; v++) lane[v] += lane[v + u];
                c[j] += lane[0] + tail;
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

void gemm(int ta, int tb, int M, int N, int K, const float *A, const float *B, float beta, float *C) {
    if (beta == 0.0f)
        for (int i = 0; i < M; i++) memset(C + (size_t)i * N, 0, (size_t)N * sizeof *C);
    if (M == 0 || N == 0 || K == 0) return;
    if (M <= SMALL_M) {
        gemm_small_m(ta, tb, M, N, K, A, B, C);
        return;
    }
    kernel kn = the_kernel();
    /* Threads only at the outermost level: a GEMM called from a parallel loop stays on its thread. */
    int threads = cnn_get_threads();
#ifdef _OPENMP
    if (omp_in_parallel()) threads = 1;
#endif
#ifdef HAVE_X86
    /* A matrix at most 16 wide would fill half of each 32-wide AVX-512 tile: use the 16-wide one.
     * The choice depends on the shape alone, so results stay the same for any thread count. */
    if (N <= 16 && kn.nr == 32) kn = (kernel){kernel_avx2, 16, "avx2"};
#endif
    /* Per-thread buffers sized for the largest blocks: no allocation per call. */
    static _Thread_local float apack[MC * KC] __attribute__((aligned(64)));
    static _Thread_local float bpack[(size_t)NC * KC] __attribute__((aligned(64)));
    for (int j0 = 0; j0 < N; j0 += NC) {
        const int nc = N - j0 < NC ? N - j0 : NC;
        for (int p0 = 0; p0 < K; p0 += KC) {
            const int kc = K - p0 < KC ? K - p0 : KC;
            pack_b(tb, B, N, K, p0, kc, j0, nc, kn.nr, bpack);
            for (int i0 = 0; i0 < M; i0 += MC) {
                const int mc = M - i0 < MC ? M - i0 : MC;
                pack_a(ta, A, M, K, i0, mc, p0, kc, apack);
                /* Column panels may go to different threads: each tile of C is computed whole by
                 * one thread, in the same order, so the result does not depend on the split. The
                 * packed blocks live in this thread's buffers, which the others read. */
                const float *ap = apack, *bp = bpack;
                const int panels = (nc + kn.nr - 1) / kn.nr;
                const int par = threads > 1 && (long)mc * nc * kc >= (1L << 17);
                CNN_PRAGMA(omp parallel for schedule(static) num_threads(threads) if (par))
                for (int q = 0; q < panels; q++) {
                    const int jb = q * kn.nr;
                    for (int ib = 0; ib < mc; ib += MR)
                        kn.fn(kc, ap + (size_t)ib * kc, bp + (size_t)jb * kc, C + (size_t)(i0 + ib) * N + j0 + jb, N,
                              mc - ib < MR ? mc - ib : MR, nc - jb < kn.nr ? nc - jb : kn.nr);
                }
            }
        }
    }
}
