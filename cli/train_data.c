/* See train_data.h. */
#include "train_data.h"

#include "base/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int train_val_split(cnn_dataset *train, int64_t n_val, uint64_t seed, cnn_dataset *val) {
    const int64_t n = train->n, n_keep = n - n_val;
    const size_t chw = (size_t)train->c * train->h * train->w;
    memset(val, 0, sizeof *val);
    char *held = calloc((size_t)n, 1);
    float *kx = malloc((size_t)n_keep * chw * sizeof *kx), *vx = malloc((size_t)n_val * chw * sizeof *vx);
    int64_t *perm = malloc((size_t)n * sizeof *perm), *ky = malloc((size_t)n_keep * sizeof *ky),
            *vy = malloc((size_t)n_val * sizeof *vy);
    if (!held || !kx || !vx || !perm || !ky || !vy) {
        free(held), free(kx), free(vx), free(perm), free(ky), free(vy);
        return 0;
    }
    /* A stream of its own (not the epochs' shuffles): the seed mixed with a constant. */
    rng_permutation(perm, n, seed ^ 0x5851F42D4C957F2Dull);
    for (int64_t i = n_keep; i < n; i++) held[perm[i]] = 1;
    int64_t k = 0, v = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *src = train->x + (size_t)i * chw;
        if (held[i]) memcpy(vx + (size_t)v * chw, src, chw * sizeof *vx), vy[v++] = train->y[i];
        else memcpy(kx + (size_t)k * chw, src, chw * sizeof *kx), ky[k++] = train->y[i];
    }
    free(held), free(perm);
    free(train->x), free(train->y);
    *val = *train;
    val->n = n_val, val->x = vx, val->y = vy;
    train->n = n_keep, train->x = kx, train->y = ky;
    return 1;
}

void train_gather(const cnn_dataset *d, const int64_t *idx, int n, float *x, int64_t *y, const cnn_augment *a,
                  float *tmp, uint64_t seed, uint64_t epoch) {
    const size_t chw = (size_t)d->c * d->h * d->w;
    const int aug = cnn_augment_active(a);
    float *to = aug ? tmp : x;
    for (int i = 0; i < n; i++) {
        memcpy(to + (size_t)i * chw, d->x + (size_t)idx[i] * chw, chw * sizeof *x);
        y[i] = d->y[idx[i]];
    }
    /* Checked against the images when the data was opened: it cannot fail here. */
    if (aug) (void)cnn_augment_batch(a, tmp, x, n, d->c, d->h, d->w, seed, epoch, idx);
}

int train_best_path(const char *out, char *buf, size_t cap) {
    const size_t n = strlen(out), ext = strlen(".safetensors");
    int k;
    if (n > ext && !strcmp(out + n - ext, ".safetensors"))
        k = snprintf(buf, cap, "%.*s-best.safetensors", (int)(n - ext), out);
    else
        k = snprintf(buf, cap, "%s-best.safetensors", out);
    return k >= 0 && (size_t)k < cap;
}
