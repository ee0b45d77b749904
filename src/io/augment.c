/* Data augmentation of NCHW float batches: random crop of a padded image, horizontal flip,
 * translation and cutout, drawn per sample from a counter-based hash.
 *
 * What a sample becomes (the order of torchvision's RandomCrop(size, padding=P), then
 * RandomHorizontalFlip(), then RandomAffine(translate), then DeVries & Taylor's Cutout):
 *   1. crop=P: the image padded by P on every side (with the fill value, or mirrored without the
 *      edge, PyTorch's padding_mode='reflect'), then an h x w window at offset (oy, ox), each
 *      uniform in [0, 2P]: out(y, x) = padded(y + oy, x + ox) = in(y + oy − P, x + ox − P);
 *   2. flip: with probability 1/2, out(y, x) = in(y, w − 1 − x);
 *   3. translate=T: a shift by (ty, tx), each uniform in [−T, T]: out(y, x) = in(y − ty, x − tx),
 *      the fill value where that is outside the image;
 *   4. cutout=S: the square of rows cy − S/2 .. cy − S/2 + S − 1 and the same columns about a centre
 *      (cy, cx) uniform over the image, clipped to the image (so it may be partly outside), set to
 *      0: in the normalised space, as the authors' code applies it after Normalize.
 * Steps 1-3 map each output pixel to one input pixel (or to the fill), so they are done in one pass.
 *
 * The fill value of channel ch is cfg->fill[ch]; cnn_augment_set_fill makes it the normalised
 * value of a 0 byte, (0 − mean) / std: torchvision pads the image before ToTensor and Normalize,
 * so its padding is black, and that is what the padding here is too.
 *
 * Randomness: sample i draws its numbers from the splitmix64 stream (base/rng.h) seeded with a
 * hash of (seed, epoch, index[i]), always the same six draws in the same order (oy, ox, flip, ty,
 * tx, cy, cx: cutout's centre takes two), whatever the configuration. So a sample's transform
 * depends on nothing but the run's seed, the epoch and the sample's index in the data set: not on
 * the batch it falls in, the threads, or what ran before, and a resumed run draws the same.
 */
#include "cnn.h"
#include "base/error.h"
#include "base/rng.h"
#include "base/threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* See cnn_augment_batch. */
#define AUGMENT_PARALLEL_MIN ((size_t)1 << 17)

void cnn_augment_init(cnn_augment *a) {
    if (a) memset(a, 0, sizeof *a);
}

/* A whole number 0..INT_MAX from s[0..len), or -1. */
static long parse_count(const char *s, size_t len) {
    if (!len || len > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

cnn_status cnn_augment_parse(const char *spec, cnn_augment *out) {
    if (!spec || !out) return cnn_fail(CNN_ERR_ARG, "cnn_augment_parse: NULL %s", spec ? "out" : "spec");
    cnn_augment a;
    cnn_augment_init(&a);
    if (!*spec) return cnn_fail(CNN_ERR_ARG, "augment: empty; give keys such as crop=4,flip");
    for (const char *p = spec; *p;) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        const size_t klen = eq ? (size_t)(eq - p) : len;
        const char *val = eq ? eq + 1 : NULL;
        const size_t vlen = eq ? len - klen - 1 : 0;
        if (klen == 4 && !strncmp(p, "flip", 4)) {
            if (val) return cnn_fail(CNN_ERR_ARG, "augment: 'flip' takes no value (got '%.*s')", (int)len, p);
            a.flip = 1;
        } else if (klen == 4 && !strncmp(p, "crop", 4)) {
            /* crop=P or crop=P:reflect (or crop=P:zero, the default) */
            const char *colon = val ? memchr(val, ':', vlen) : NULL;
            const size_t nlen = colon ? (size_t)(colon - val) : vlen;
            const long v = val ? parse_count(val, nlen) : -1;
            if (v < 1) return cnn_fail(CNN_ERR_ARG, "augment: crop needs a padding of 1 or more pixels, as crop=4 or "
                                                    "crop=4:reflect (got '%.*s')", (int)len, p);
            if (colon) {
                const char *mode = colon + 1;
                const size_t mlen = vlen - nlen - 1;
                if (mlen == 7 && !strncmp(mode, "reflect", 7)) a.reflect = 1;
                else if (!(mlen == 4 && !strncmp(mode, "zero", 4)))
                    return cnn_fail(CNN_ERR_ARG, "augment: crop's padding is zero or reflect, as crop=4:reflect "
                                                 "(got '%.*s')", (int)len, p);
            }
            a.crop = (int)v;
        } else if ((klen == 9 && !strncmp(p, "translate", 9)) || (klen == 6 && !strncmp(p, "cutout", 6))) {
            const long v = val ? parse_count(val, vlen) : -1;
            if (v < 1) return cnn_fail(CNN_ERR_ARG, "augment: %.*s needs a whole number of pixels, 1 or more, as "
                                                    "%.*s=4 (got '%.*s')", (int)klen, p, (int)klen, p, (int)len, p);
            if (klen == 9) a.translate = (int)v;
            else a.cutout = (int)v;
        } else {
            return cnn_fail(CNN_ERR_ARG, "augment: unknown key '%.*s' (known: crop=P[:reflect], flip, translate=T, "
                                         "cutout=S)", (int)klen, p);
        }
        if (!end) break;
        p = end + 1;
        if (!*p) return cnn_fail(CNN_ERR_ARG, "augment: '%s' ends with a comma", spec);
    }
    *out = a;
    return CNN_OK;
}

int cnn_augment_format(const cnn_augment *a, char *buf, size_t cap) {
    if (!a || !buf || !cap) return 0;
    size_t at = 0;
    buf[0] = '\0';
#define PUT(...)                                                                            \
    do {                                                                                    \
        const int k_ = snprintf(buf + at, cap - at, "%s", at ? "," : "");                    \
        at += (size_t)k_ < cap - at ? (size_t)k_ : cap - at - 1;                            \
        const int j_ = snprintf(buf + at, cap - at, __VA_ARGS__);                            \
        at += (size_t)j_ < cap - at ? (size_t)j_ : cap - at - 1;                            \
    } while (0)
    if (a->crop) PUT("crop=%d%s", a->crop, a->reflect ? ":reflect" : "");
    if (a->flip) PUT("flip");
    if (a->translate) PUT("translate=%d", a->translate);
    if (a->cutout) PUT("cutout=%d", a->cutout);
#undef PUT
    return (int)at;
}

int cnn_augment_active(const cnn_augment *a) {
    return a && (a->crop || a->flip || a->translate || a->cutout);
}

cnn_status cnn_augment_check(const cnn_augment *a, int c, int h, int w) {
    if (!a) return cnn_fail(CNN_ERR_ARG, "cnn_augment_check: NULL config");
    if (c < 1 || h < 1 || w < 1) return cnn_fail(CNN_ERR_SHAPE, "augment: the images are %dx%dx%d", c, h, w);
    const int side = h < w ? h : w;
    if (a->crop && a->crop >= side)
        return cnn_fail(CNN_ERR_ARG, "augment: crop=%d pads by more than the image (%dx%d) can give back: the padding "
                                     "must be below %d", a->crop, h, w, side);
    if (a->translate && a->translate >= side)
        return cnn_fail(CNN_ERR_ARG, "augment: translate=%d shifts the %dx%d image out of itself: it must be below %d",
                        a->translate, h, w, side);
    if (a->cutout && a->cutout > side)
        return cnn_fail(CNN_ERR_ARG, "augment: cutout=%d is larger than the %dx%d image", a->cutout, h, w);
    return CNN_OK;
}

void cnn_augment_set_fill(cnn_augment *a, int c, const float mean[3], const float std[3]) {
    if (!a) return;
    for (int ch = 0; ch < 3; ch++)
        a->fill[ch] = ch < c && mean && std && std[ch] != 0 ? (float)((0.0 - (double)mean[ch]) / (double)std[ch]) : 0.0f;
}

/* The source coordinate of padded coordinate i (−P <= i < n + P) of a side of n: i itself inside,
 * else mirrored about the edge without repeating it (−1 -> 1, n -> n − 2), or −1 for the fill. */
static inline int pad_src(int i, int n, int reflect) {
    if (i >= 0 && i < n) return i;
    if (!reflect) return -1;
    return i < 0 ? -i : 2 * (n - 1) - i;
}

/* The draws of one sample (see the header). */
typedef struct draws {
    int oy, ox, flip, ty, tx, cy, cx;
} draws;

static draws sample_draws(const cnn_augment *a, int h, int w, uint64_t seed, uint64_t epoch, int64_t index) {
    uint64_t st = seed ^ (0xA0761D6478BD642Full * (epoch + 1));
    st = rng_next(&st) ^ (0xE7037ED1A0B428DBull * ((uint64_t)index + 1));
    st = rng_next(&st);
    const uint64_t r[7] = {rng_next(&st), rng_next(&st), rng_next(&st), rng_next(&st),
                           rng_next(&st), rng_next(&st), rng_next(&st)};
    draws d;
    const uint64_t span = 2 * (uint64_t)a->crop + 1, tspan = 2 * (uint64_t)a->translate + 1;
    d.oy = (int)(r[0] % span), d.ox = (int)(r[1] % span);
    d.flip = a->flip ? (int)(r[2] >> 63) : 0;
    d.ty = (int)(r[3] % tspan) - a->translate, d.tx = (int)(r[4] % tspan) - a->translate;
    d.cy = (int)(r[5] % (uint64_t)h), d.cx = (int)(r[6] % (uint64_t)w);
    return d;
}

/* The input column (or −1 for the fill) of output column x, after steps 1-3. */
static inline int src_col(const cnn_augment *a, const draws *d, int x, int w) {
    int rx = x - d->tx;
    if (rx < 0 || rx >= w) return -1;
    if (d->flip) rx = w - 1 - rx;
    return pad_src(rx + d->ox - a->crop, w, a->reflect);
}

static inline int src_row(const cnn_augment *a, const draws *d, int y, int h) {
    const int ry = y - d->ty;
    if (ry < 0 || ry >= h) return -1;
    return pad_src(ry + d->oy - a->crop, h, a->reflect);
}

static void augment_one(const cnn_augment *a, const float *in, float *out, int c, int h, int w, const draws *d) {
    const size_t hw = (size_t)h * w;
    for (int ch = 0; ch < c; ch++) {
        const float fill = ch < 3 ? a->fill[ch] : 0.0f;
        const float *src = in + ch * hw;
        float *dst = out + ch * hw;
        for (int y = 0; y < h; y++) {
            const int sy = src_row(a, d, y, h);
            float *row = dst + (size_t)y * w;
            if (sy < 0) {
                for (int x = 0; x < w; x++) row[x] = fill;
                continue;
            }
            const float *srow = src + (size_t)sy * w;
            if (!d->flip && !a->translate && !a->reflect && d->ox == a->crop) { /* a row shifted by nothing */
                memcpy(row, srow, (size_t)w * sizeof *row);
                continue;
            }
            for (int x = 0; x < w; x++) {
                const int sx = src_col(a, d, x, w);
                row[x] = sx < 0 ? fill : srow[sx];
            }
        }
        if (a->cutout) {
            const int y0 = d->cy - a->cutout / 2, x0 = d->cx - a->cutout / 2;
            const int y1 = y0 + a->cutout < h ? y0 + a->cutout : h, x1 = x0 + a->cutout < w ? x0 + a->cutout : w;
            for (int y = y0 > 0 ? y0 : 0; y < y1; y++)
                for (int x = x0 > 0 ? x0 : 0; x < x1; x++) dst[(size_t)y * w + x] = 0.0f;
        }
    }
}

cnn_status cnn_augment_batch(const cnn_augment *a, const float *in, float *out, int n, int c, int h, int w,
                             uint64_t seed, uint64_t epoch, const int64_t *index) {
    if (!a || !in || !out || !index) return cnn_fail(CNN_ERR_ARG, "cnn_augment_batch: NULL argument");
    if (n < 0) return cnn_fail(CNN_ERR_ARG, "cnn_augment_batch: n is %d", n);
    const size_t chw = (size_t)c * h * w;
    if (in < out + (size_t)n * chw && out < in + (size_t)n * chw && n > 0)
        return cnn_fail(CNN_ERR_ARG, "cnn_augment_batch: in and out overlap");
    cnn_status s = cnn_augment_check(a, c, h, w);
    if (s != CNN_OK) return s;
    /* A sample costs about a nanosecond a pixel: a batch of 64 Fashion-MNIST images takes some
     * 50 us on one thread, less than waking a second thread costs on a busy machine, so only
     * batches of more than AUGMENT_PARALLEL_MIN floats go to the thread pool. */
    if ((size_t)n * chw > AUGMENT_PARALLEL_MIN) {
        PARALLEL_FOR(i, n) {
            const draws d = sample_draws(a, h, w, seed, epoch, index[i]);
            augment_one(a, in + (size_t)i * chw, out + (size_t)i * chw, c, h, w, &d);
        }
    } else {
        for (long i = 0; i < n; i++) {
            const draws d = sample_draws(a, h, w, seed, epoch, index[i]);
            augment_one(a, in + (size_t)i * chw, out + (size_t)i * chw, c, h, w, &d);
        }
    }
    return CNN_OK;
}
