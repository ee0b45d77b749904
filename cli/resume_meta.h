/* The checks of a training checkpoint's __metadata__ that `cnn train --resume` makes before it
 * believes a field of it (cli/train.c), apart from the CLI so that the fuzz target
 * tests/fuzz/fuzz_checkpoint.c runs the same code. */
#ifndef CNN_RESUME_META_H
#define CNN_RESUME_META_H

#include <stddef.h>

#include "cnn.h"

/* The most steps a checkpoint may record: 2^53, where a step count stops being exact as a double
 * (Adam's bias correction computes with it), far beyond any run (100000 epochs of 2^31 samples in
 * batches of 1 is 2^47.5). */
#define RESUME_MAX_STEPS (1LL << 53)
/* The limits of the options that a checkpoint restores (cnn train --help). */
#define RESUME_MAX_EPOCHS 100000
#define RESUME_MAX_BATCH 65536

/* Checks every field of `st`'s __metadata__ that --resume reads: format is cnn-checkpoint-1; epoch
 * and step are present; every number that is present is well formed and in range (counts are
 * decimal and within their limits; lr, momentum, weight_decay, eps, gamma, betas, the loss sum
 * and the seconds finite and >= 0, betas below 1, gamma above 0; flags 0 or 1), every name known
 * (optimizer, schedule); and the counts agree with each other: every epoch done took a step
 * (step >= epoch + epoch_step), epoch <= epochs, a mid-epoch position (epoch_step > 0) has its
 * samples, batch, loss sum and count correct, with epoch_step <= ceil(samples / batch) and
 * epoch_correct <= the samples seen so far; optimizer state (optim.* tensors) needs "optimizer",
 * and Adam's moments other than zeros a step count above 0. Returns 1, or 0 with a message that names the field in
 * msg ("__metadata__ \"lr\" is 'nan', not a finite number >= 0"). */
int resume_meta_check(const cnn_st *st, char *msg, size_t cap);

#endif
