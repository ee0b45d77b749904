/* Elementwise loops shared by the layers and the net (see kernels.h). */
#include "kernels/kernels.h"

CNN_CLONES void add_into(float *restrict y, const float *restrict a, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a[i];
}
