/* The losses that start the backward pass (note 001, step 3: the output error δ^L = ∂C/∂a).
 *
 * Softmax cross-entropy over classes, averaged over the batch:
 *   L = (1/N) Σ_n [ logsumexp(x_n) − x_n[t_n] ],  logsumexp(x) = m + log Σ_j e^(x_j − m), m = max_j x_j
 *   dL/dx_n = (softmax(x_n) − onehot(t_n)) / N
 * Subtracting the maximum keeps e^(·) ≤ 1, so large logits neither overflow nor lose the answer.
 *
 * Mean squared error over all elements:  L = (1/M) Σ (y − t)²,  dL/dy = 2(y − t)/M.
 */
#include "layers/loss.h"
#include "base/error.h"

#include <math.h>
#include <stdlib.h>

double loss_cross_entropy_ref(const double *x, const int64_t *target, int n, int classes, double *dx) {
    double total = 0.0;
    for (int s = 0; s < n; s++) {
        const double *xs = x + (size_t)s * classes;
        double m = xs[0];
        for (int j = 1; j < classes; j++) m = xs[j] > m ? xs[j] : m;
        double sum = 0.0;
        for (int j = 0; j < classes; j++) sum += exp(xs[j] - m);
        const double lse = m + log(sum);
        total += lse - xs[target[s]];
        if (dx)
            for (int j = 0; j < classes; j++)
                dx[(size_t)s * classes + j] = (exp(xs[j] - lse) - (j == target[s])) / n;
    }
    return total / n;
}

double loss_mse_ref(const double *y, const double *t, int64_t count, double *dy) {
    double total = 0.0;
    for (int64_t i = 0; i < count; i++) {
        const double e = y[i] - t[i];
        total += e * e;
        if (dy) dy[i] = 2.0 * e / (double)count;
    }
    return total / (double)count;
}

/* The float versions read float and accumulate in double, one sample at a time. */
cnn_status cnn_loss_cross_entropy(const float *logits, const int64_t *target, int n, int classes, float *loss,
                                  float *dx) {
    if (!logits || !target || !loss || n < 1 || classes < 1)
        return cnn_fail(CNN_ERR_ARG, "cross_entropy: need logits, targets, a loss pointer, n >= 1 and classes >= 1");
    for (int s = 0; s < n; s++)
        if (target[s] < 0 || target[s] >= classes)
            return cnn_fail(CNN_ERR_ARG, "cross_entropy: target[%d] = %lld is outside 0..%d", s, (long long)target[s],
                            classes - 1);
    double total = 0.0;
    for (int s = 0; s < n; s++) {
        const float *xs = logits + (size_t)s * classes;
        double m = xs[0];
        for (int j = 1; j < classes; j++) m = xs[j] > m ? xs[j] : m;
        double sum = 0.0;
        for (int j = 0; j < classes; j++) sum += exp((double)xs[j] - m);
        const double lse = m + log(sum);
        total += lse - xs[target[s]];
        if (dx)
            for (int j = 0; j < classes; j++)
                dx[(size_t)s * classes + j] = (float)((exp((double)xs[j] - lse) - (j == target[s])) / n);
    }
    *loss = (float)(total / n);
    return CNN_OK;
}

cnn_status cnn_loss_mse(const float *y, const float *t, int64_t count, float *loss, float *dy) {
    if (!y || !t || !loss || count < 1)
        return cnn_fail(CNN_ERR_ARG, "mse: need outputs, targets, a loss pointer and count >= 1");
    double total = 0.0;
    for (int64_t i = 0; i < count; i++) {
        const double e = (double)y[i] - t[i];
        total += e * e;
        if (dy) dy[i] = (float)(2.0 * e / (double)count);
    }
    *loss = (float)(total / (double)count);
    return CNN_OK;
}
