/* Internal: a small seeded random number generator (splitmix64), the same on every platform. */
#ifndef CNN_RNG_H
#define CNN_RNG_H

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1), with 53 random bits. */
static inline double rng_uniform(uint64_t *state) { return (double)(rng_next(state) >> 11) * 0x1.0p-53; }

/* perm[0..n) = a Fisher-Yates shuffle of 0..n-1 drawn from the stream seeded with `state`. */
static inline void rng_permutation(int64_t *perm, int64_t n, uint64_t state) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)(rng_next(&state) % (uint64_t)(i + 1));
        const int64_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

#endif
