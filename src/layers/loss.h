/* Internal: the losses in double, for the gradient checks. Same formulas as cnn_loss_*. */
#ifndef CNN_LOSS_H
#define CNN_LOSS_H

/* The library's symbol table names these cnn_i_<name>, so that they cannot collide with a
 * program's own (README: "Use from C"); the code calls them by the short names. */
#define loss_cross_entropy_ref cnn_i_loss_cross_entropy_ref
#define loss_mse_ref           cnn_i_loss_mse_ref
#define loss_cross_entropy_smooth_ref cnn_i_loss_cross_entropy_smooth_ref

#include <stdint.h>

/* mean_n (logsumexp(x[n]) − x[n, target[n]]); dx (if not NULL) = (softmax(x) − onehot)/n.
 * Targets must already be checked to lie in 0..classes-1. */
double loss_cross_entropy_ref(const double *x, const int64_t *target, int n, int classes, double *dx);

/* CrossEntropyLoss(label_smoothing = eps): mean_n [(1 − eps)(lse − x[t]) + eps·mean_j (lse − x[j])];
 * dx (if not NULL) = (softmax(x) − (1 − eps)·onehot − eps/classes)/n. */
double loss_cross_entropy_smooth_ref(const double *x, const int64_t *target, int n, int classes, double eps,
                                     double *dx);

/* mean (y − t)²; dy (if not NULL) = 2(y − t)/count. */
double loss_mse_ref(const double *y, const double *t, int64_t count, double *dy);

#endif
