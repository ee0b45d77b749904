/* Elementwise loops shared by the layers and the net (see kernels.h). */
#include "kernels/kernels.h"

/* Not restrict: y may be x. */
CNN_CLONES void relu_into(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

CNN_CLONES void add_into(float *restrict y, const float *restrict a, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a[i];
}
