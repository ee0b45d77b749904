/* Images: decode (stb_image, plus a small reader for netpbm PGM/PPM), convert channels, resize
 * bilinearly and scale to [0,1], CHW.
 *
 * The pipeline for one image:
 *   1. check the magic bytes (PNG, JPEG, BMP, binary P5/P6 or ASCII P2/P3 netpbm) and the declared
 *      size from the header alone (stbi_info_from_memory), rejecting more than 16384×16384, or
 *      more pixels than the file's bytes can encode, before any pixel memory is allocated; and
 *      check the two numbers that stb_image 2.27 (Debian 12's libstb) trusts without checking
 *      (found by fuzzing, tests/fuzz): PNG chunk lengths, which it allocates for before reading,
 *      and the code counts of JPEG Huffman tables, whose sum past 256 overflows its tables;
 *   2. decode: PNG, JPEG and BMP with stb_image, to 8-bit samples, or 16-bit ones for a 16-bit PNG;
 *      netpbm (P2/P3 ASCII, P5/P6 binary) here, to the file's own integer samples with their maxval
 *      (stb 2.27 overflows an int on an 11-digit size, ignores a maxval below 255 and reads a
 *      truncated file's missing samples as zeros); a BMP stored top-down (negative height), which
 *      stb's header reader reports as a negative height but its decoder reads, as its size;
 *   3. resize with bilinear interpolation, sampling the source converted to c channels on the fly.
 *
 * Channel conversion, after compositing a pixel with alpha (grey + alpha, RGBA; a PNG palette or
 * tRNS transparency, which stb expands to an alpha channel) over a white background:
 *   v' = α v + (1 − α) · 1,  α = a / maxval,  so transparent pixels are white whatever colour they
 *                            store, and black ink on a transparent background is black on white;
 *   grey = (299 R' + 587 G' + 114 B') / 1000           computed on integers (scaled by maxval²), so
 *                                                      grey pixels stored as RGB give exactly
 *                                                      v / maxval, and an opaque pixel exactly what
 *                                                      it gives without alpha;
 *   RGB from grey replicates the grey value.
 *
 * Resizing follows PyTorch's F.interpolate(mode="bilinear", align_corners=False, antialias=False)
 * (and OpenCV's INTER_LINEAR): output pixel i samples the source at
 *   s = max(0, (i + 0.5) · in/out − 0.5),  i0 = floor(s),  i1 = min(i0 + 1, in − 1),  λ = s − i0,
 *   v = v[i0] + λ · (v[i1] − v[i0])   (separably, along x then y).
 * There is no antialiasing filter when shrinking (PIL's resize has one), so strong downscaling
 * skips pixels; at the image's own size every pixel is copied exactly. */
#include "base/error.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/readers.h"
#include "io/stb.h"

#define IMAGE_MAX_SIDE 16384
#define IMAGE_MAX_FILE (64 << 20)

/* Decoded samples: h rows of w pixels of n interleaved channels, u8 or u16, 0..maxval. */
typedef struct pixels {
    int w, h, n;
    int maxval;
    const uint8_t *u8;
    const uint16_t *u16;
} pixels;

static int sample_at(const pixels *p, size_t i) { return p->u8 ? p->u8[i] : p->u16[i]; }

/* Channel ch (0..c-1) of pixel (x, y) converted to c channels, in [0,1], composited over white:
 * with a = the alpha sample (maxval when there is none) and m = maxval, every sample s becomes
 * (s·a + (m − a)·m) / m², an exact integer over m² (at most 1000·65535², exact in a double). */
static float channel_value(const pixels *p, int x, int y, int c, int ch) {
    const size_t at = ((size_t)y * (size_t)p->w + (size_t)x) * (size_t)p->n;
    const int64_t m = p->maxval;
    const int64_t a = p->n == 2 || p->n == 4 ? sample_at(p, at + (size_t)p->n - 1) : m;
    const int64_t white = (m - a) * m;                      /* the background's share, times m² */
    const double m2 = (double)(m * m);
    if (p->n < 3) return (float)((double)(sample_at(p, at) * a + white) / m2);      /* grey (+ alpha) */
    if (c == 3) return (float)((double)(sample_at(p, at + (size_t)ch) * a + white) / m2);
    const int64_t lum = (299 * (int64_t)sample_at(p, at) + 587 * (int64_t)sample_at(p, at + 1) +
                         114 * (int64_t)sample_at(p, at + 2)) * a + 1000 * white;
    return (float)((double)lum / (1000.0 * m2));
}

/* One axis of the resize: for each output index, the two source indices and the weight of the second. */
typedef struct axis_tap {
    int i0, i1;
    float lambda;
} axis_tap;

static void axis_taps(axis_tap *t, int in, int out) {
    const double scale = (double)in / out;
    for (int i = 0; i < out; i++) {
        double s = ((double)i + 0.5) * scale - 0.5;
        if (s < 0.0) s = 0.0;
        int i0 = (int)s;
        if (i0 > in - 1) i0 = in - 1;
        t[i].i0 = i0;
        t[i].i1 = i0 < in - 1 ? i0 + 1 : i0;
        t[i].lambda = (float)(s - i0);
    }
}

/* out[c, h, w] = bilinear resize of p converted to c channels. */
static cnn_status resize_bilinear(const pixels *p, int c, int h, int w, float *out) {
    axis_tap *tx = malloc((size_t)w * sizeof *tx), *ty = malloc((size_t)h * sizeof *ty);
    if (!tx || !ty) {
        free(tx);
        free(ty);
        return cnn_fail(CNN_ERR_NOMEM, "image: out of memory for a %dx%d resize", w, h);
    }
    axis_taps(tx, p->w, w);
    axis_taps(ty, p->h, h);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++) {
            float *row = out + ((size_t)ch * (size_t)h + (size_t)y) * (size_t)w;
            const axis_tap *ry = &ty[y];
            for (int x = 0; x < w; x++) {
                const axis_tap *rx = &tx[x];
                const float a = channel_value(p, rx->i0, ry->i0, c, ch), b = channel_value(p, rx->i1, ry->i0, c, ch);
                const float d = channel_value(p, rx->i0, ry->i1, c, ch), e = channel_value(p, rx->i1, ry->i1, c, ch);
                const float top = a + rx->lambda * (b - a), bottom = d + rx->lambda * (e - d);
                row[x] = top + ry->lambda * (bottom - top);
            }
        }
    free(tx);
    free(ty);
    return CNN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * ASCII netpbm, P2 (grey) and P3 (RGB), which stb_image does not read
 * ------------------------------------------------------------------------------------------- */

/* What pnm_number gives for a number of 10 digits or more: out of range anyway. */
#define PNM_HUGE 1000000000L

/* A header number as text for a message: its value, or "10+ digits" for PNM_HUGE. */
static const char *pnm_text(char buf[24], long v) {
    if (v >= PNM_HUGE) return "(10+ digits)";
    snprintf(buf, 24, "%ld", v);
    return buf;
}

/* Reads the next unsigned decimal number, skipping whitespace and '#' comments. Returns 1, or 0
 * at the end of the buffer or on a character that is not a digit (*bad = 1). */
static int pnm_number(const uint8_t *s, size_t len, size_t *at, long *v, int *bad) {
    size_t i = *at;
    for (;;) {
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\v' || s[i] == '\f'))
            i++;
        if (i < len && s[i] == '#') {
            while (i < len && s[i] != '\n') i++;
            continue;
        }
        break;
    }
    if (i >= len) return 0;
    if (s[i] < '0' || s[i] > '9') {
        *bad = 1;
        return 0;
    }
    long x = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        x = x < PNM_HUGE / 10 ? x * 10 + (s[i] - '0') : PNM_HUGE; /* exact to 9 digits, then PNM_HUGE */
        i++;
    }
    *at = i;
    *v = x;
    return 1;
}

/* A netpbm header's width, height and maxval into dims, from s[*at] on: each a number, the size
 * within IMAGE_MAX_SIDE (checked first, so a huge number is named as too large), width and height
 * at least 1, maxval 1..65535. `kind` names the format in messages. */
static cnn_status pnm_header(const char *name, const char *kind, const uint8_t *s, size_t len, size_t *at,
                             long dims[3]) {
    int bad = 0;
    for (int k = 0; k < 3; k++)
        if (!pnm_number(s, len, at, &dims[k], &bad))
            return cnn_fail(CNN_ERR_FORMAT, "%s: %s header: %s", name, kind,
                            bad ? "a character that is not a number" : "truncated");
    char t0[24], t1[24], t2[24];
    if (dims[0] > IMAGE_MAX_SIDE || dims[1] > IMAGE_MAX_SIDE)
        return cnn_fail(CNN_ERR_FORMAT, "%s: %s image is %sx%s, too large (the limit is %dx%d)", name, kind,
                        pnm_text(t0, dims[0]), pnm_text(t1, dims[1]), IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    if (dims[0] < 1 || dims[1] < 1 || dims[2] < 1 || dims[2] > 65535)
        return cnn_fail(CNN_ERR_FORMAT, "%s: %s header: width %s, height %s, maxval %s (need width, height >= 1 "
                        "and maxval 1..65535)", name, kind, pnm_text(t0, dims[0]), pnm_text(t1, dims[1]),
                        pnm_text(t2, dims[2]));
    return CNN_OK;
}

static cnn_status decode_ascii_pnm(const char *name, const uint8_t *s, size_t len, int c, int h, int w, float *out) {
    const int n = s[1] == '2' ? 1 : 3;
    const char *kind = n == 1 ? "P2 (ASCII PGM)" : "P3 (ASCII PPM)";
    size_t at = 2;
    long dims[3];
    cnn_status hs = pnm_header(name, kind, s, len, &at, dims);
    if (hs) return hs;
    const size_t count = (size_t)dims[0] * (size_t)dims[1] * (size_t)n;
    if (count > (len - at) / 2) /* each value takes a separator and a digit */
        return cnn_fail(CNN_ERR_FORMAT, "%s: %s: truncated: %ldx%ld needs %zu values, more than %zu bytes hold", name,
                        kind, dims[0], dims[1], count, len - at);
    uint16_t *v = malloc(count * sizeof *v);
    if (!v) return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory for a %ldx%ld image", name, dims[0], dims[1]);
    int bad = 0;
    for (size_t i = 0; i < count; i++) {
        long x;
        if (!pnm_number(s, len, &at, &x, &bad)) {
            free(v);
            if (bad) return cnn_fail(CNN_ERR_FORMAT, "%s: %s: value %zu is not a number", name, kind, i);
            return cnn_fail(CNN_ERR_FORMAT, "%s: %s: truncated after %zu of %zu values", name, kind, i, count);
        }
        if (x > dims[2]) {
            free(v);
            return cnn_fail(CNN_ERR_FORMAT, "%s: %s: value %zu is %ld, above maxval %ld", name, kind, i, x, dims[2]);
        }
        v[i] = (uint16_t)x;
    }
    const pixels p = {.w = (int)dims[0], .h = (int)dims[1], .n = n, .maxval = (int)dims[2], .u16 = v};
    cnn_status st = resize_bilinear(&p, c, h, w, out);
    free(v);
    return st;
}

/* Binary netpbm, P5 (grey) and P6 (RGB), read here rather than by stb_image 2.27, which parses
 * the header's numbers into an int without a bound (11 digits overflow it: undefined behaviour),
 * takes samples of 8 bits when maxval < 256 as if maxval were 255, and reads past the end of a
 * truncated file as zeros. Here: the header is width, height and maxval (1..65535), then a single
 * whitespace byte; the size is checked against the limit; then exactly width × height × channels
 * samples follow, of one byte (maxval < 256) or two, big-endian; each is at most maxval. */
static cnn_status decode_binary_pnm(const char *name, const uint8_t *s, size_t len, int c, int h, int w, float *out) {
    const int n = s[1] == '5' ? 1 : 3;
    const char *kind = n == 1 ? "PGM" : "PPM";
    size_t at = 2;
    long dims[3];
    cnn_status hs = pnm_header(name, kind, s, len, &at, dims);
    if (hs) return hs;
    if (at >= len || !(s[at] == ' ' || s[at] == '\t' || s[at] == '\n' || s[at] == '\r' || s[at] == '\v' || s[at] == '\f'))
        return cnn_fail(CNN_ERR_FORMAT, "%s: %s header: %s after maxval", name, kind,
                        at >= len ? "truncated: no whitespace byte" : "a character that is not whitespace");
    at++;
    const size_t bytes = dims[2] > 255 ? 2 : 1;
    const size_t count = (size_t)dims[0] * (size_t)dims[1] * (size_t)n;
    if (count * bytes > len - at)
        return cnn_fail(CNN_ERR_FORMAT, "%s: %s image is truncated: %ldx%ld with maxval %ld needs %zu bytes of "
                        "samples, the file has %zu", name, kind, dims[0], dims[1], dims[2], count * bytes, len - at);
    uint16_t *v = malloc(count * sizeof *v);
    if (!v) return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory for a %ldx%ld image", name, dims[0], dims[1]);
    for (size_t i = 0; i < count; i++) {
        const long x = bytes == 2 ? (long)s[at + 2 * i] << 8 | s[at + 2 * i + 1] : s[at + i];
        if (x > dims[2]) {
            free(v);
            return cnn_fail(CNN_ERR_FORMAT, "%s: %s: sample %zu is %ld, above maxval %ld", name, kind, i, x, dims[2]);
        }
        v[i] = (uint16_t)x;
    }
    const pixels p = {.w = (int)dims[0], .h = (int)dims[1], .n = n, .maxval = (int)dims[2], .u16 = v};
    cnn_status st = resize_bilinear(&p, c, h, w, out);
    free(v);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------------------------- */

/* The format by its magic bytes, or NULL. */
static const char *image_format(const uint8_t *s, size_t len) {
    if (len >= 8 && !memcmp(s, "\x89PNG\r\n\x1a\n", 8)) return "PNG";
    if (len >= 3 && s[0] == 0xFF && s[1] == 0xD8 && s[2] == 0xFF) return "JPEG";
    if (len >= 2 && s[0] == 'B' && s[1] == 'M') return "BMP";
    if (len >= 2 && s[0] == 'P' && (s[1] == '5' || s[1] == '6')) return s[1] == '5' ? "PGM" : "PPM";
    if (len >= 2 && s[0] == 'P' && (s[1] == '2' || s[1] == '3')) return "ASCII PNM";
    return NULL;
}

static uint32_t be32(const uint8_t *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }
static uint32_t le32(const uint8_t *b) { return (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0]; }

/* The size a PNG or BMP header declares, read directly: stbi_info rejects sizes above its own
 * limit with "unknown image type" (it tries every format in turn), which would hide the reason. */
static int declared_size(const uint8_t *s, size_t len, const char *format, uint64_t *x, uint64_t *y) {
    if (!strcmp(format, "PNG") && len >= 24 && !memcmp(s + 12, "IHDR", 4)) {
        *x = be32(s + 16), *y = be32(s + 20);
        return 1;
    }
    if (!strcmp(format, "BMP") && len >= 26 && le32(s + 14) >= 40) {
        const int32_t w = (int32_t)le32(s + 18), h = (int32_t)le32(s + 22); /* h < 0: top-down rows */
        *x = w < 0 ? 0 : (uint64_t)w, *y = h < 0 ? (uint64_t)-(int64_t)h : (uint64_t)h;
        return 1;
    }
    return 0;
}

/* s[i], or 0 past the end (as stb reads a buffer). */
static int byte_at(const uint8_t *s, size_t len, size_t i) { return i < len ? s[i] : 0; }

/* Checks what stb_image 2.27 trusts. Returns NULL, or why the file is rejected:
 *   PNG: a chunk's length must fit in the file: stb reallocates its IDAT buffer to the claimed
 *        length before it reads the chunk (a 100-byte file could make it allocate 4 GB); and the
 *        chunks must run to IEND, without which stb fails with a reason made of the zeros it
 *        reads past the end (an empty one, or part of a chunk name);
 *   JPEG: a Huffman table (DHT) may hold at most 256 codes: stb writes a larger count past the
 *        end of its tables. stb may take a DHT marker (FF C4) anywhere it looks for a marker, so
 *        every FF C4 in the file is checked, reading the tables after it as stb would (past the
 *        end, stb reads zeros). */
static const char *stb_trap(const char *format, const uint8_t *s, size_t len, char *why, size_t cap) {
    if (!strcmp(format, "PNG")) {
        for (size_t at = 8;; ) {
            if (len - at < 8) { /* stb reads zeros past the end and names a chunk of them, or of part of a name */
                snprintf(why, cap, len == at ? "the file ends at byte %zu with no IEND chunk (is it truncated?)"
                                             : "the file ends inside the chunk header at byte %zu (is it truncated?)",
                         at);
                return why;
            }
            const uint32_t n = be32(s + at);
            if (n > len - at - 8) {
                const uint8_t *t = s + at + 4;
                char type[8] = "?";
                if (isalpha(t[0]) && isalpha(t[1]) && isalpha(t[2]) && isalpha(t[3])) memcpy(type, t, 4), type[4] = '\0';
                snprintf(why, cap, "chunk '%s' at byte %zu claims %lu bytes, past the end of the file (is it "
                         "truncated?)", type, at, (unsigned long)n);
                return why;
            }
            if (!memcmp(s + at + 4, "IEND", 4) || len - at - 8 - n < 4) break;
            at += 12 + (size_t)n;
        }
    } else if (!strcmp(format, "JPEG")) {
        for (size_t at = 0; at + 1 < len; at++) {
            if (s[at] != 0xFF || s[at + 1] != 0xC4) continue;
            size_t p = at + 2;
            long left = (long)(byte_at(s, len, p) << 8 | byte_at(s, len, p + 1)) - 2;
            p += 2;
            while (left > 0 && p < len) {
                int count = 0; /* the table's class and id byte, then its 16 code counts */
                for (size_t i = 1; i <= 16; i++) count += byte_at(s, len, p + i);
                if (count > 256) {
                    snprintf(why, cap, "the Huffman table at byte %zu holds %d codes, more than 256 (the file is "
                             "corrupt)", p, count);
                    return why;
                }
                p += 17 + (size_t)count;
                left -= 17 + count;
            }
        }
    }
    return NULL;
}

/* Whether a file of `len` bytes declares more pixels than it can encode, from the least each
 * format spends on them: a PNG's zlib stream inflates at most 1032-fold, a JPEG (Huffman coded, as
 * stb reads) spends at least one bit on each 8×8 block, a BMP (uncompressed, as stb reads) at least
 * one bit on a pixel, binary netpbm one byte. Decoding such a file could only make the decoder
 * allocate for pixels that are not there and, for JPEG, decode them one by one out of nothing.
 * (Binary netpbm is checked exactly by decode_binary_pnm.) */
static int declares_too_much(const char *format, const uint8_t *s, size_t len, int x, int y) {
    const uint64_t pixels = (uint64_t)x * (uint64_t)y, bytes = len;
    if (!strcmp(format, "PNG")) {
        /* Bits per pixel from IHDR's depth and colour type; the raw stream has a filter byte per row. */
        static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
        const int depth = s[24], color = s[25] <= 6 ? s[25] : 0, bits = depth * (channels[color] ? channels[color] : 1);
        const uint64_t raw = (uint64_t)y * (1 + ((uint64_t)x * (uint64_t)(bits > 0 ? bits : 1) + 7) / 8);
        return raw > 1032 * bytes;
    }
    if (!strcmp(format, "JPEG")) return pixels > 512 * bytes;
    if (!strcmp(format, "BMP")) return pixels > 8 * bytes;
    return pixels > bytes;
}

/* Why stb failed, never empty: stb 2.27 returns some failures without a reason. */
static const char *stb_reason(void) {
    const char *r = cnn_stbi_failure_reason();
    return r && *r ? r : "corrupt or truncated data";
}

static cnn_status decode_named(const char *name, const void *buf, size_t len, int c, int h, int w, float *out) {
    if (c != 1 && c != 3) return cnn_fail(CNN_ERR_ARG, "%s: %d channels requested; they must be 1 or 3", name, c);
    if (h < 1 || w < 1) return cnn_fail(CNN_ERR_ARG, "%s: size %dx%d requested; both must be at least 1", name, w, h);
    if (!out || (!buf && len)) return cnn_fail(CNN_ERR_ARG, "%s: NULL %s", name, out ? "buffer" : "output");
    if (len == 0) return cnn_fail(CNN_ERR_FORMAT, "%s: empty file, not an image", name);
    if (len > INT_MAX) return cnn_fail(CNN_ERR_FORMAT, "%s: %zu bytes, too large for the decoder", name, len);
    const uint8_t *s = buf;
    const char *format = image_format(s, len);
    if (!format) return cnn_fail(CNN_ERR_FORMAT, "%s: not a PNG, JPEG, BMP or PGM/PPM image", name);
    if (!strcmp(format, "ASCII PNM")) return decode_ascii_pnm(name, s, len, c, h, w, out);
    if (!strcmp(format, "PGM") || !strcmp(format, "PPM")) return decode_binary_pnm(name, s, len, c, h, w, out);

    uint64_t dx, dy;
    if (declared_size(s, len, format, &dx, &dy) && (dx > IMAGE_MAX_SIDE || dy > IMAGE_MAX_SIDE))
        return cnn_fail(CNN_ERR_FORMAT, "%s: %s image is %llux%llu, too large (the limit is %dx%d)", name, format,
                        (unsigned long long)dx, (unsigned long long)dy, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    char why[160];
    if (stb_trap(format, s, len, why, sizeof why))
        return cnn_fail(CNN_ERR_FORMAT, "%s: %s image does not decode: %s", name, format, why);
    int x, y, n;
    if (!cnn_stbi_info_from_memory(s, (int)len, &x, &y, &n))
        return cnn_fail(CNN_ERR_FORMAT, "%s: %s header does not decode: %s", name, format, stb_reason());
    if (!strcmp(format, "BMP") && y < 0 && y > INT_MIN) y = -y; /* top-down rows: stb's load reads them */
    if (x < 1 || y < 1 || x > IMAGE_MAX_SIDE || y > IMAGE_MAX_SIDE)
        return cnn_fail(CNN_ERR_FORMAT, "%s: %s image is %dx%d, too large (the limit is %dx%d)", name, format, x, y,
                        IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    if (declares_too_much(format, s, len, x, y))
        return cnn_fail(CNN_ERR_FORMAT, "%s: %s image is %dx%d, more pixels than its %zu bytes can encode (is it "
                        "truncated?)", name, format, x, y, len);
    /* 16-bit PNGs at their full depth (stb would reduce them to 8 bits). */
    const int deep = !strcmp(format, "PNG") && cnn_stbi_is_16_bit_from_memory(s, (int)len);
    void *data = deep ? (void *)cnn_stbi_load_16_from_memory(s, (int)len, &x, &y, &n, 0)
                      : (void *)cnn_stbi_load_from_memory(s, (int)len, &x, &y, &n, 0);
    if (!data) return cnn_fail(CNN_ERR_FORMAT, "%s: %s image does not decode: %s", name, format, stb_reason());
    const pixels p = {.w = x, .h = y, .n = n, .maxval = deep ? 65535 : 255, .u8 = deep ? NULL : data,
                      .u16 = deep ? data : NULL};
    cnn_status st = n >= 1 && n <= 4 ? resize_bilinear(&p, c, h, w, out)
                                     : cnn_fail(CNN_ERR_FORMAT, "%s: %s image has %d channels", name, format, n);
    cnn_stbi_image_free(data);
    return st;
}

cnn_status cnn_image_decode(const void *buf, size_t len, int c, int h, int w, float *out) {
    return decode_named("image", buf, len, c, h, w, out);
}

cnn_status cnn_image_load(const char *path, int c, int h, int w, float *out) {
    if (!path) return cnn_fail(CNN_ERR_ARG, "cnn_image_load: NULL path");
    if (c != 1 && c != 3) return cnn_fail(CNN_ERR_ARG, "%s: %d channels requested; they must be 1 or 3", path, c);
    if (h < 1 || w < 1) return cnn_fail(CNN_ERR_ARG, "%s: size %dx%d requested; both must be at least 1", path, w, h);
    if (!out) return cnn_fail(CNN_ERR_ARG, "%s: NULL output", path);
    const char *why;
    struct stat sb;
    const int fd = cnn_i_open_regular(path, &why, &sb);
    if (fd < 0) return cnn_fail(CNN_ERR_IO, "%s: cannot open: %s", path, why);
    if (sb.st_size > IMAGE_MAX_FILE) { /* refused from its size, unread */
        close(fd);
        return cnn_fail(CNN_ERR_FORMAT, "%s: larger than %d MB, too large for an image", path, IMAGE_MAX_FILE >> 20);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", path);
    }

    /* Read at most IMAGE_MAX_FILE + 1 bytes (the file may have grown since its size was taken),
     * growing the buffer as the file turns out longer. */
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    cnn_status st = CNN_OK;
    if (!buf) st = cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", path);
    while (st == CNN_OK) {
        if (len == cap) {
            if (cap > IMAGE_MAX_FILE) {
                st = cnn_fail(CNN_ERR_FORMAT, "%s: larger than %d MB, too large for an image", path,
                              IMAGE_MAX_FILE >> 20);
                break;
            }
            const size_t grown = cap * 2 > (size_t)IMAGE_MAX_FILE + 1 ? (size_t)IMAGE_MAX_FILE + 1 : cap * 2;
            uint8_t *b = realloc(buf, grown);
            if (!b) {
                st = cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = b, cap = grown;
        }
        const size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) {
            if (ferror(f)) st = cnn_fail(CNN_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (st == CNN_OK) st = decode_named(path, buf, len, c, h, w, out);
    free(buf);
    return st;
}
