/* The data side of cnn train that is not the training loop (cli/train.c): the validation split
 * held out of the training samples, on-the-fly augmentation of a batch, and the best
 * checkpoint's path. */
#ifndef CNN_CLI_TRAIN_DATA_H
#define CNN_CLI_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "cnn.h"

/* Moves n_val samples of d->train (0 < n_val < d->train.n) to *val: those at the last n_val
 * positions of a Fisher-Yates shuffle of 0..train.n-1 drawn from `seed`, so the same seed and data
 * hold out the same samples in every run, a resumed one included. Both splits keep the data's
 * order. *val is owned by the caller (free its x and y). Returns 0 when out of memory, with d
 * unchanged. */
int train_val_split(cnn_dataset *train, int64_t n_val, uint64_t seed, cnn_dataset *val);

/* Copies the samples idx[0..n-1] of d to x and y; when a is active, through `tmp` (n samples of
 * d's size) and cnn_augment_batch with the draws of (seed, epoch, idx[i]). */
void train_gather(const cnn_dataset *d, const int64_t *idx, int n, float *x, int64_t *y, const cnn_augment *a,
                  float *tmp, uint64_t seed, uint64_t epoch);

/* The best checkpoint's path for checkpoint `out`: NAME-best.safetensors for NAME.safetensors,
 * else out + "-best.safetensors". Returns 0 if it does not fit in cap bytes. */
int train_best_path(const char *out, char *buf, size_t cap);

#endif
