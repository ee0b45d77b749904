/* General matrix multiply through OpenBLAS: the gemm() of `make BLAS=openblas`, in place of cnn's
 * own micro-kernels (gemm.c). The Makefile compiles one of the two files, never both.
 *
 * OpenBLAS runs on one thread (openblas_set_num_threads(1), once, before the first product): the
 * parallelism stays cnn's own, over fixed chunks of the batch, so a product's bits depend on its
 * shape and operands alone, not on the thread count. Its buffers are OpenBLAS's own, allocated
 * when the library loads or at the first product and reused after that; this file allocates
 * nothing.
 */
#include "kernels.h"

#include <cblas.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

/* Declared by OpenBLAS's cblas.h; again here, with the same prototype, so that another cblas.h
 * (the reference one that Debian's alternatives may point at) builds too. */
void openblas_set_num_threads(int num_threads);

static pthread_once_t single_thread_once = PTHREAD_ONCE_INIT;

static void single_thread(void) { openblas_set_num_threads(1); }

const char *gemm_kernel_name(void) { return "openblas"; }

/* OpenBLAS picks its own kernels for the CPU: there is nothing to choose. */
int gemm_use_kernel(const char *name) {
    (void)name;
    return 0;
}

void gemm(int ta, int tb, int M, int N, int K, const float *A, const float *B, float beta, float *C) {
    if (M == 0 || N == 0) return;
    if (K == 0) {   /* BLAS wants lda ≥ 1 even with nothing to read: C = beta·C here */
        if (beta == 0.0f)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * N, 0, (size_t)N * sizeof *C);
        return;
    }
    pthread_once(&single_thread_once, single_thread);
    /* Row-major: op(A) is [M,K], stored [M,K] (lda K) or [K,M] (lda M); op(B) likewise. With
     * beta = 0, C is only written, as in gemm.c. */
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                ta ? M : K, B, tb ? K : N, beta, C, N);
}
