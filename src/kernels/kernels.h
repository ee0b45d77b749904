/* Internal: the fast kernels shared by the layers. All float32, row-major, no allocation. */
#ifndef CNN_KERNELS_H
#define CNN_KERNELS_H

#include <stddef.h>

/* The library's symbol table names these cnn_i_<name>, so that they cannot collide with a
 * program's own (README: "Use from C"); the code calls them by the short names. */
#define gemm             cnn_i_gemm
#define gemm_kernel_name cnn_i_gemm_kernel_name
#define gemm_use_kernel  cnn_i_gemm_use_kernel
#define im2col           cnn_i_im2col
#define col2im           cnn_i_col2im
#define add_into         cnn_i_add_into
#define relu_into        cnn_i_relu_into

/* Hot loops that the compiler vectorises are compiled for AVX-512, AVX2 and the baseline on x86-64
 * with GCC, and the CPU picks one when the library loads. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define CNN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CNN_CLONES
#endif

/* y[i] += a[i] for i < n (elementwise.c): add's third and later inputs, and the net's sums at
 * forks. y and a do not overlap. */
void add_into(float *restrict y, const float *restrict a, size_t n);

/* y[i] = x[i] > 0 ? x[i] : 0 (NaN gives 0) for i < n: relu's forward, and a relu fused into a
 * convolution (x = y, in place). */
void relu_into(float *y, const float *x, size_t n);

/* C[M,N] = beta·C + op(A)·op(B), where op(A) is A [M,K] (ta = 0) or Aᵀ with A stored [K,M]
 * (ta = 1), and op(B) is B [K,N] (tb = 0) or Bᵀ with B stored [N,K] (tb = 1). beta is 0 or 1.
 * cnn's own packed micro-kernels (gemm.c), or with `make BLAS=openblas` (CNN_BLAS_OPENBLAS defined)
 * OpenBLAS's cblas_sgemm on one thread (gemm_openblas.c). */
void gemm(int ta, int tb, int M, int N, int K, const float *A, const float *B, float beta, float *C);

/* The micro-kernel gemm runs on this CPU: "avx512", "avx2" or "c"; "openblas" in that build. */
const char *gemm_kernel_name(void);

/* For tests and benchmarks: makes gemm use the named micro-kernel, if this CPU runs it.
 * Returns 1, or 0 (nothing changes) for an unknown name or one the CPU lacks; always 0 in the
 * OpenBLAS build, which has no kernels of its own to choose from. */
int gemm_use_kernel(const char *name);

/* The im2col geometry of a convolution over one image of c channels. */
typedef struct im2col_geom {
    int c, h, w;          /* input */
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int oh, ow;           /* output */
} im2col_geom;

/* col[(ci·kh + r)·kw + t][i·ow + j] = x[ci][i·sh + r·dh − ph][j·sw + t·dw − pw], or 0 in the padding.
 * col is [c·kh·kw, oh·ow]. */
void im2col(const im2col_geom *g, const float *x, float *col);

/* The adjoint of im2col: x[ci][...] += col[...] for every cell that im2col read. x is not cleared. */
void col2im(const im2col_geom *g, const float *col, float *x);

#endif
