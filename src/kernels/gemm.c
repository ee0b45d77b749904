/* General matrix multiply in plain C, with loop orders that keep the innermost loop contiguous so
 * that the compiler vectorises it. */
#include "kernels.h"

#include <string.h>

/* C[i,:] += a·B[p,:] over p: the inner loop runs along a row of B and a row of C. */
static void gemm_nn(int M, int N, int K, const float *A, int ta, const float *B, float *C) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * N;
        for (int p = 0; p < K; p++) {
            const float a = ta ? A[(size_t)p * M + i] : A[(size_t)i * K + p];
            if (a == 0.0f) continue;
            const float *b = B + (size_t)p * N;
            for (int j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
}

/* C[i,j] += dot(A[i,:], B[j,:]): eight independent partial sums, added in a fixed order. */
static void gemm_nt(int M, int N, int K, const float *A, const float *B, float *C) {
    for (int i = 0; i < M; i++) {
        const float *a = A + (size_t)i * K;
        for (int j = 0; j < N; j++) {
            const float *b = B + (size_t)j * K;
            float acc[8] = {0};
            int p = 0;
            for (; p + 8 <= K; p += 8)
                for (int u = 0; u < 8; u++) acc[u] += a[p + u] * b[p + u];
            float s = 0.0f;
            for (; p < K; p++) s += a[p] * b[p];
            s += ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            C[(size_t)i * N + j] += s;
        }
    }
}

void gemm(int ta, int tb, int M, int N, int K, const float *A, const float *B, float beta, float *C) {
    if (beta == 0.0f) memset(C, 0, (size_t)M * N * sizeof *C);
    if (!tb) {
        gemm_nn(M, N, K, A, ta, B, C);
    } else {
        /* Aᵀ·Bᵀ is not needed by any layer; A·Bᵀ is. */
        gemm_nt(M, N, K, A, B, C);
    }
}
