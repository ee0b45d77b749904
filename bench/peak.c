/* The machine's FP32 FMA peak and memory bandwidth, for the percentage-of-peak columns of
 * BENCHMARKS.md. Prints one JSON object:
 *
 *   peak [--threads 1,2] [--isa avx512|avx2|scalar]
 *
 *   {"isa": "avx512", "threads": [1, 2], "fma_gflops": {"1": ..., "2": ...},
 *    "copy_gbs": {...}, "triad_gbs": {...}}
 *
 * FMA peak: each thread runs independent chains of fused multiply-adds that stay in registers
 * (16 chains of 512-bit FMAs on AVX-512, 12 of 256-bit on AVX2, 8 scalar chains elsewhere; enough
 * to cover the FMA latency times the number of FMA pipes on current x86 cores), the best of 7
 * trials. Memory bandwidth: STREAM-style copy (c = a) and triad (a = b + s·c) over 64 MiB arrays,
 * far larger than the last-level cache, about 1 GB of traffic for each, the best pass, counting
 * the bytes read and written as STREAM does (no write-allocate traffic).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define X86 1
#else
#define X86 0
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static volatile float sink;

#if X86
/* 16 independent chains of acc = acc·m + a in zmm registers: 16 × 16 lanes × 2 flops a step. */
__attribute__((target("avx512f"))) static double fma_avx512(long steps) {
    __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
    __m512 c0 = _mm512_set1_ps(0.1f), c1 = _mm512_set1_ps(0.2f), c2 = _mm512_set1_ps(0.3f),
           c3 = _mm512_set1_ps(0.4f), c4 = _mm512_set1_ps(0.5f), c5 = _mm512_set1_ps(0.6f),
           c6 = _mm512_set1_ps(0.7f), c7 = _mm512_set1_ps(0.8f), c8 = _mm512_set1_ps(0.9f),
           c9 = _mm512_set1_ps(1.0f), c10 = _mm512_set1_ps(1.1f), c11 = _mm512_set1_ps(1.2f),
           c12 = _mm512_set1_ps(1.3f), c13 = _mm512_set1_ps(1.4f), c14 = _mm512_set1_ps(1.5f),
           c15 = _mm512_set1_ps(1.6f);
    for (long i = 0; i < steps; i++) {
        c0 = _mm512_fmadd_ps(c0, m, a), c1 = _mm512_fmadd_ps(c1, m, a);
        c2 = _mm512_fmadd_ps(c2, m, a), c3 = _mm512_fmadd_ps(c3, m, a);
        c4 = _mm512_fmadd_ps(c4, m, a), c5 = _mm512_fmadd_ps(c5, m, a);
        c6 = _mm512_fmadd_ps(c6, m, a), c7 = _mm512_fmadd_ps(c7, m, a);
        c8 = _mm512_fmadd_ps(c8, m, a), c9 = _mm512_fmadd_ps(c9, m, a);
        c10 = _mm512_fmadd_ps(c10, m, a), c11 = _mm512_fmadd_ps(c11, m, a);
        c12 = _mm512_fmadd_ps(c12, m, a), c13 = _mm512_fmadd_ps(c13, m, a);
        c14 = _mm512_fmadd_ps(c14, m, a), c15 = _mm512_fmadd_ps(c15, m, a);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                                       _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
    sink = _mm512_reduce_add_ps(s);
    return (double)steps * 16 * 16 * 2;
}

/* 12 independent chains in ymm registers: 12 × 8 lanes × 2 flops a step. */
__attribute__((target("avx2,fma"))) static double fma_avx2(long steps) {
    __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
    __m256 c0 = _mm256_set1_ps(0.1f), c1 = _mm256_set1_ps(0.2f), c2 = _mm256_set1_ps(0.3f),
           c3 = _mm256_set1_ps(0.4f), c4 = _mm256_set1_ps(0.5f), c5 = _mm256_set1_ps(0.6f),
           c6 = _mm256_set1_ps(0.7f), c7 = _mm256_set1_ps(0.8f), c8 = _mm256_set1_ps(0.9f),
           c9 = _mm256_set1_ps(1.0f), c10 = _mm256_set1_ps(1.1f), c11 = _mm256_set1_ps(1.2f);
    for (long i = 0; i < steps; i++) {
        c0 = _mm256_fmadd_ps(c0, m, a), c1 = _mm256_fmadd_ps(c1, m, a);
        c2 = _mm256_fmadd_ps(c2, m, a), c3 = _mm256_fmadd_ps(c3, m, a);
        c4 = _mm256_fmadd_ps(c4, m, a), c5 = _mm256_fmadd_ps(c5, m, a);
        c6 = _mm256_fmadd_ps(c6, m, a), c7 = _mm256_fmadd_ps(c7, m, a);
        c8 = _mm256_fmadd_ps(c8, m, a), c9 = _mm256_fmadd_ps(c9, m, a);
        c10 = _mm256_fmadd_ps(c10, m, a), c11 = _mm256_fmadd_ps(c11, m, a);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float v[8];
    _mm256_storeu_ps(v, s);
    sink = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    return (double)steps * 12 * 8 * 2;
}
#endif

/* Plain C: 8 scalar chains (the compiler contracts them into FMAs where the target has them). */
static double fma_scalar(long steps) {
    float m = 0.999999f, a = 1e-7f;
    float c[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    for (long i = 0; i < steps; i++) {
        for (int j = 0; j < 8; j++) c[j] = c[j] * m + a;
    }
    sink = c[0] + c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7];
    return (double)steps * 8 * 2;
}

typedef double (*fma_fn)(long);

/* The widest FMA this CPU has, or the one named by --isa (when the CPU has it). */
static fma_fn pick(const char *want, const char **isa, long *steps) {
#if X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && (!want || !strcmp(want, "avx512"))) {
        *isa = "avx512", *steps = 20000000;
        return fma_avx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && (!want || strcmp(want, "scalar"))) {
        *isa = "avx2", *steps = 30000000;
        return fma_avx2;
    }
#endif
    *isa = "scalar", *steps = 50000000;
    return fma_scalar;
}

/* GFLOP/s of t threads running the FMA chains at once: the best of 7 trials. */
static double fma_peak(fma_fn f, long steps, int t) {
    double best = 0;
    for (int trial = 0; trial < 7; trial++) {
        double flops = 0;
        const double t0 = now();
#pragma omp parallel num_threads(t) reduction(+ : flops)
        flops += f(steps);
        const double dt = now() - t0;
        if (flops / dt > best) best = flops / dt;
    }
    return best / 1e9;
}

#define N (16L << 20)   /* floats in each array: 64 MiB */
#define PASSES 5

/* GB/s of copy (c = a) and triad (a = b + s·c) with t threads: the best of PASSES passes each. */
static void bandwidth(float *a, float *b, float *c, int t, double *copy, double *triad) {
#pragma omp parallel for simd num_threads(t) schedule(static)
    for (long i = 0; i < N; i++) a[i] = 1.0f, b[i] = 2.0f, c[i] = 0.5f;   /* first touch by the same threads */
    *copy = *triad = 0;
    for (int p = 0; p < PASSES; p++) {
        double t0 = now();
#pragma omp parallel for simd num_threads(t) schedule(static)
        for (long i = 0; i < N; i++) c[i] = a[i];
        double dt = now() - t0;
        if (2.0 * N * sizeof(float) / dt > *copy) *copy = 2.0 * N * sizeof(float) / dt;
        t0 = now();
#pragma omp parallel for simd num_threads(t) schedule(static)
        for (long i = 0; i < N; i++) a[i] = b[i] + 0.5f * c[i];
        dt = now() - t0;
        if (3.0 * N * sizeof(float) / dt > *triad) *triad = 3.0 * N * sizeof(float) / dt;
    }
    sink = a[N / 2] + c[N / 3];
    *copy /= 1e9, *triad /= 1e9;
}

int main(int argc, char **argv) {
    int threads[16], nt = 0;
    const char *want = NULL;
    threads[nt++] = 1, threads[nt++] = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nt = 0;
            for (char *s = argv[++i], *end; *s && nt < 16; s = *end ? end + 1 : end) {
                const long v = strtol(s, &end, 10);
                if (end == s || v < 1 || v > 1024) {
                    fprintf(stderr, "peak: bad --threads list\n");
                    return 2;
                }
                threads[nt++] = (int)v;
            }
        } else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            want = argv[++i];
        } else {
            fprintf(stderr, "usage: peak [--threads 1,2] [--isa avx512|avx2|scalar]\n");
            return 2;
        }
    }
    const char *isa;
    long steps;
    const fma_fn f = pick(want, &isa, &steps);
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *c = malloc(N * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "peak: out of memory\n");
        return 1;
    }
    double gf[16], cp[16], tr[16];
    for (int k = 0; k < nt; k++) {
        gf[k] = fma_peak(f, steps, threads[k]);
        bandwidth(a, b, c, threads[k], &cp[k], &tr[k]);
    }
    free(a), free(b), free(c);
    printf("{\"isa\": \"%s\", \"threads\": [", isa);
    for (int k = 0; k < nt; k++) printf("%s%d", k ? ", " : "", threads[k]);
    printf("], \"fma_gflops\": {");
    for (int k = 0; k < nt; k++) printf("%s\"%d\": %.1f", k ? ", " : "", threads[k], gf[k]);
    printf("}, \"copy_gbs\": {");
    for (int k = 0; k < nt; k++) printf("%s\"%d\": %.2f", k ? ", " : "", threads[k], cp[k]);
    printf("}, \"triad_gbs\": {");
    for (int k = 0; k < nt; k++) printf("%s\"%d\": %.2f", k ? ", " : "", threads[k], tr[k]);
    printf("}}\n");
    return 0;
}
