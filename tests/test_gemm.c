/* The GEMM micro-kernels this CPU runs (AVX-512, AVX2+FMA, plain C), each against a plain
 * triple loop in double, over shapes with ragged edges and every transpose the layers use; the
 * same bits on 1 and 2 threads; and LeNet-5's gradients on each kernel against the reference path.
 * In the OpenBLAS build (`make test BLAS=openblas`) the same checks run once, on OpenBLAS. */
#include "testutil.h"

#include "kernels/kernels.h"

static const char *const kernels[] = {"c", "avx2", "avx512"};
#define NKERNELS (sizeof kernels / sizeof kernels[0])

/* Makes gemm use the k-th GEMM of this build: 1, or 0 where the CPU lacks it. The OpenBLAS build
 * has one, OpenBLAS, which picks its own kernels. */
static int use_gemm(size_t k) {
#ifdef CNN_BLAS_OPENBLAS
    return k == 0;
#else
    return gemm_use_kernel(kernels[k]);
#endif
}

static void check_shape(int ta, int tb, int M, int N, int K, float beta) {
    float *A = malloc((size_t)M * K * sizeof *A), *B = malloc((size_t)K * N * sizeof *B);
    float *C = malloc((size_t)M * N * sizeof *C);
    double *want = malloc((size_t)M * N * sizeof *want);
    for (int i = 0; i < M * K; i++) A[i] = (float)((i * 7 % 13) - 6) / 8.0f;
    for (int i = 0; i < K * N; i++) B[i] = (float)((i * 5 % 11) - 5) / 4.0f;
    for (int i = 0; i < M * N; i++) C[i] = (float)(i % 3);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = beta * C[(size_t)i * N + j];
            for (int p = 0; p < K; p++)
                acc += (double)(ta ? A[(size_t)p * M + i] : A[(size_t)i * K + p]) *
                       (tb ? B[(size_t)j * K + p] : B[(size_t)p * N + j]);
            want[(size_t)i * N + j] = acc;
        }
    gemm(ta, tb, M, N, K, A, B, beta, C);
    char what[96];
    snprintf(what, sizeof what, "%s gemm ta=%d tb=%d %dx%dx%d", gemm_kernel_name(), ta, tb, M, N, K);
    tu_close(what, C, want, M * N, 1e-5);    /* inputs are multiples of 1/32: sums are exact up to K·2^-24 */
    free(A), free(B), free(C), free(want);
}

static void test_every_kernel_every_shape(void **state) {
    (void)state;
    /* Ragged edges for 6- and 8-row tiles and 8-, 16- and 32-wide panels (a last panel at most 16
     * wide takes a narrower kernel), several kc blocks, and column counts at most 256, where A's
     * rows are read in place (a ragged last tile of them must not read past A). */
    static const int shapes[][3] = {{1, 1, 1},      {6, 32, 5},    {7, 33, 257},  {13, 100, 150}, {64, 196, 288},
                                    {121, 17, 3},   {5, 3100, 9},  {2, 2, 600},   {9, 48, 40},    {17, 36, 513},
                                    {15, 128, 70},  {23, 129, 31}, {8, 16, 1},    {31, 4, 700},   {11, 784, 20},
                                    {40, 1100, 3},  {24, 300, 100}, {70, 520, 300},
                                    /* at most 4 rows: dot products four columns at a time, and the rest */
                                    {3, 10, 37},    {1, 121, 400}};
    int ran = 0;
    for (size_t k = 0; k < NKERNELS; k++) {
        if (!use_gemm(k)) continue;
        ran++;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int t = 0; t < 3; t++)
                check_shape(t == 1, t == 2, shapes[s][0], shapes[s][1], shapes[s][2], s % 2 ? 1.0f : 0.0f);
    }
    assert_true(ran >= 1);
#ifdef CNN_BLAS_OPENBLAS
    assert_string_equal(gemm_kernel_name(), "openblas");
    assert_false(gemm_use_kernel("c"));     /* nothing to choose from */
#else
    assert_true(gemm_use_kernel("c"));      /* every CPU runs the plain C kernel */
#endif
    assert_false(gemm_use_kernel("sse9"));
}

/* beta = 0: C is only written, so whatever it held (here NaN) does not reach the result. */
static void test_beta_zero_ignores_c(void **state) {
    (void)state;
    static const int shapes[][5] = {{0, 0, 3, 50, 7}, {0, 1, 64, 120, 400}, {1, 0, 120, 40, 64}, {0, 0, 20, 0, 5}};
    for (size_t k = 0; k < NKERNELS; k++) {
        if (!use_gemm(k)) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int ta = shapes[s][0], tb = shapes[s][1], M = shapes[s][2], N = shapes[s][3], K = shapes[s][4];
            float *A = malloc((size_t)M * K * sizeof *A), *B = malloc(((size_t)K * N + 1) * sizeof *B);
            float *C = malloc(((size_t)M * N + 1) * sizeof *C);
            for (int i = 0; i < M * K; i++) A[i] = 0.25f;
            for (int i = 0; i < K * N; i++) B[i] = 0.5f;
            for (int i = 0; i < M * N; i++) C[i] = NAN;
            gemm(ta, tb, M, N, K, A, B, 0.0f, C);
            for (int i = 0; i < M * N; i++) assert_true(C[i] == 0.125f * K);
            free(A), free(B), free(C);
        }
    }
}

/* K = 0: C = beta·C, with nothing added. */
static void test_empty_sum(void **state) {
    (void)state;
    float C[12 * 40];
    for (int beta = 0; beta < 2; beta++) {
        for (int i = 0; i < 12 * 40; i++) C[i] = 1.5f;
        gemm(0, 0, 12, 40, 0, NULL, NULL, (float)beta, C);
        for (int i = 0; i < 12 * 40; i++) assert_true(C[i] == (beta ? 1.5f : 0.0f));
    }
}

/* 1 and 2 threads give the same bits, whether the threads split C's columns or its rows, on
 * every kernel. */
static void test_threads_same_bits(void **state) {
    (void)state;
    static const int shapes[][5] = {{0, 0, 64, 700, 300}, {1, 0, 300, 190, 64}, {0, 1, 300, 40, 500},
                                    {0, 0, 250, 100, 260}, {1, 1, 77, 90, 600}};
    for (size_t k = 0; k < NKERNELS; k++) {
        if (!use_gemm(k)) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int ta = shapes[s][0], tb = shapes[s][1], M = shapes[s][2], N = shapes[s][3], K = shapes[s][4];
            float *A = malloc((size_t)M * K * sizeof *A), *B = malloc((size_t)K * N * sizeof *B);
            float *C1 = malloc((size_t)M * N * sizeof *C1), *C2 = malloc((size_t)M * N * sizeof *C2);
            for (int i = 0; i < M * K; i++) A[i] = (float)sin(0.37 * i);
            for (int i = 0; i < K * N; i++) B[i] = (float)cos(0.11 * i);
            for (int beta = 0; beta < 2; beta++) {
                for (int i = 0; i < M * N; i++) C1[i] = C2[i] = (float)(i % 5) - 2.0f;
                assert_int_equal(cnn_set_threads(1), CNN_OK);
                gemm(ta, tb, M, N, K, A, B, (float)beta, C1);
                assert_int_equal(cnn_set_threads(2), CNN_OK);
                gemm(ta, tb, M, N, K, A, B, (float)beta, C2);
                assert_memory_equal(C1, C2, (size_t)M * N * sizeof *C1);
            }
            free(A), free(B), free(C1), free(C2);
        }
    }
    assert_int_equal(cnn_set_threads(1), CNN_OK);
}

/* LeNet-5 forward and backward on each kernel agree with the double reference path. */
static void test_lenet_on_every_kernel(void **state) {
    (void)state;
    cnn_net *ref = NULL;
    assert_int_equal(cnn_net_load("models/lenet5.cnn", &ref), CNN_OK);
    assert_int_equal(cnn_net_init(ref, 5), CNN_OK);
    assert_int_equal(cnn_net_set_path(ref, CNN_PATH_REFERENCE), CNN_OK);
    assert_int_equal(cnn_net_reserve(ref, 3), CNN_OK);
    static float x[3 * 784], dy[3 * 10];
    for (int i = 0; i < 3 * 784; i++) x[i] = (float)((i * 31 % 97) / 48.0 - 1.0);
    for (int i = 0; i < 30; i++) dy[i] = (float)((i * 7 % 11) / 5.0 - 1.0);
    tu_run(ref, x, 3, dy);
    for (size_t k = 0; k < NKERNELS; k++) {
        if (!use_gemm(k)) continue;
        cnn_net *fast = NULL;
        assert_int_equal(cnn_net_load("models/lenet5.cnn", &fast), CNN_OK);
        assert_int_equal(cnn_net_init(fast, 5), CNN_OK);
        assert_int_equal(cnn_net_reserve(fast, 3), CNN_OK);
        tu_run(fast, x, 3, dy);
        for (int p = 0; p < cnn_net_param_count(ref); p++) {
            const cnn_param a = cnn_net_param(ref, p), b = cnn_net_param(fast, p);
            double *g = malloc((size_t)a.numel * sizeof *g);
            for (int64_t i = 0; i < a.numel; i++) g[i] = a.grad[i];
            tu_close(a.name, b.grad, g, (int)a.numel, 1e-5);
            free(g);
        }
        cnn_net_free(fast);
    }
    cnn_net_free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kernel_every_shape),
        cmocka_unit_test(test_empty_sum),
        cmocka_unit_test(test_beta_zero_ignores_c),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_lenet_on_every_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
