/* The losses that start the backward pass (note 001, step 3: the output error δ^L = ∂C/∂a).
 *
 * Softmax cross-entropy over classes, averaged over the batch:
 *   L = (1/N) Σ_n [ logsumexp(x_n) − x_n[t_n] ],  logsumexp(x) = m + log Σ_j e^(x_j − m), m = max_j x_j
 *   dL/dx_n = (softmax(x_n) − onehot(t_n)) / N
 * Subtracting the maximum keeps e^(·) ≤ 1, so large logits neither overflow nor lose the answer.
 *
 * With label smoothing ε (CrossEntropyLoss(label_smoothing=ε)) the target is the distribution
 * q = (1 − ε)·onehot(t) + ε/C, and the loss its cross-entropy with softmax(x):
 *   L_n = Σ_j q_j (lse(x_n) − x_n[j]) = (1 − ε)(lse − x_n[t_n]) + (ε/C) Σ_j (lse − x_n[j])
 * Since Σ_j q_j = 1 and ∂lse/∂x_j = softmax_j, ∂L_n/∂x_j = softmax_j − q_j, then /N for the mean.
 *
 * Mean squared error over all elements:  L = (1/M) Σ (y − t)²,  dL/dy = 2(y − t)/M.
 */
#include "layers/loss.h"
#include "base/error.h"

#include <math.h>
#include <stdlib.h>

/* log Σ_j exp(x_j), shifted by the largest x_j so that no exp overflows. */
static double log_sum_exp_ref(const double *xs, int classes) {
    double m = xs[0];
    for (int j = 1; j < classes; j++) m = xs[j] > m ? xs[j] : m;
    double sum = 0.0;
    for (int j = 0; j < classes; j++) sum += exp(xs[j] - m);
    return m + log(sum);
}

double loss_cross_entropy_ref(const double *x, const int64_t *target, int n, int classes, double *dx) {
    double total = 0.0;
    for (int s = 0; s < n; s++) {
        const double *xs = x + (size_t)s * classes;
        const double lse = log_sum_exp_ref(xs, classes);
        total += lse - xs[target[s]];
        if (dx)
            for (int j = 0; j < classes; j++)
                dx[(size_t)s * classes + j] = (exp(xs[j] - lse) - (j == target[s])) / n;
    }
    return total / n;
}

double loss_cross_entropy_smooth_ref(const double *x, const int64_t *target, int n, int classes, double eps,
                                     double *dx) {
    double total = 0.0;
    for (int s = 0; s < n; s++) {
        const double *xs = x + (size_t)s * classes;
        const double lse = log_sum_exp_ref(xs, classes);
        double smooth = 0.0;   /* Σ_j (lse − x_j) */
        for (int j = 0; j < classes; j++) smooth += lse - xs[j];
        total += (1 - eps) * (lse - xs[target[s]]) + eps / classes * smooth;
        if (dx)
            for (int j = 0; j < classes; j++) {
                const double q = (1 - eps) * (j == target[s]) + eps / classes;
                dx[(size_t)s * classes + j] = (exp(xs[j] - lse) - q) / n;
            }
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
/* The arguments both cross-entropies need, with the same messages. */
static cnn_status check_cross_entropy(const float *logits, const int64_t *target, int n, int classes,
                                      const float *loss) {
    if (!logits || !target || !loss || n < 1 || classes < 1)
        return cnn_fail(CNN_ERR_ARG, "cross_entropy: need logits, targets, a loss pointer, n >= 1 and classes >= 1");
    for (int s = 0; s < n; s++)
        if (target[s] < 0 || target[s] >= classes)
            return cnn_fail(CNN_ERR_ARG, "cross_entropy: target[%d] = %lld is outside 0..%d", s, (long long)target[s],
                            classes - 1);
    return CNN_OK;
}

/* log Σ_j exp(x_j) in double, shifted by the largest x_j; *xsum (when not NULL) gets Σ_j x_j. */
static double log_sum_exp(const float *xs, int classes, double *xsum) {
    double m = xs[0];
    for (int j = 1; j < classes; j++) m = xs[j] > m ? xs[j] : m;
    double sum = 0.0, xs_sum = 0.0;
    for (int j = 0; j < classes; j++) sum += exp((double)xs[j] - m), xs_sum += xs[j];
    if (xsum) *xsum = xs_sum;
    return m + log(sum);
}

cnn_status cnn_loss_cross_entropy(const float *logits, const int64_t *target, int n, int classes, float *loss,
                                  float *dx) {
    cnn_status st = check_cross_entropy(logits, target, n, classes, loss);
    if (st) return st;
    double total = 0.0;
    for (int s = 0; s < n; s++) {
        const float *xs = logits + (size_t)s * classes;
        const double lse = log_sum_exp(xs, classes, NULL);
        total += lse - xs[target[s]];
        if (dx)
            for (int j = 0; j < classes; j++)
                dx[(size_t)s * classes + j] = (float)((exp((double)xs[j] - lse) - (j == target[s])) / n);
    }
    *loss = (float)(total / n);
    return CNN_OK;
}

cnn_status cnn_loss_cross_entropy_smooth(const float *logits, const int64_t *target, int n, int classes,
                                         double eps, float *loss, float *dx) {
    if (!(eps >= 0 && eps < 1))
        return cnn_fail(CNN_ERR_ARG, "cross_entropy: label smoothing %g must be in [0, 1)", eps);
    if (eps == 0) return cnn_loss_cross_entropy(logits, target, n, classes, loss, dx);
    cnn_status st = check_cross_entropy(logits, target, n, classes, loss);
    if (st) return st;
    double total = 0.0;
    const double off = eps / classes;
    for (int s = 0; s < n; s++) {
        const float *xs = logits + (size_t)s * classes;
        double xsum;
        const double lse = log_sum_exp(xs, classes, &xsum);
        total += (1 - eps) * (lse - xs[target[s]]) + off * (classes * lse - xsum);
        if (dx)
            for (int j = 0; j < classes; j++)
                dx[(size_t)s * classes + j] =
                    (float)((exp((double)xs[j] - lse) - ((1 - eps) * (j == target[s]) + off)) / n);
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
