/* Hostile images: the fuzz findings in image decoding (tests/fuzz/regressions/image/, each a file
 * that fuzz_image found, with the selector byte it appends), each now rejected with a clear
 * message, plus the crafted cases behind each fix:
 *   - a JPEG Huffman table of more than 256 codes, which stb_image 2.27 writes past its tables;
 *   - a JPEG scan that uses a Huffman table the file never defined, which stb 2.27 reads from
 *     uninitialised memory (an assertion failure, an abort, depending on what the heap held);
 *   - PNG chunks that claim more bytes than the file has, for which stb allocates first;
 *   - headers that declare more pixels than the file's bytes can encode (decoded from nothing,
 *     slowly, into buffers sized by the claim). */
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#include <zlib.h>

#define REGRESSIONS "tests/fuzz/regressions/image/"

/* Decodes the regression file `name` (without its last byte, the fuzz target's selector) as
 * cnn_image_load would; it must fail with a message holding `sub`. */
static void expect_regression(const char *name, const char *sub) {
    char p[256];
    snprintf(p, sizeof p, REGRESSIONS "%s", name);
    FILE *f = fopen(p, "rb");
    if (!f) fail_msg("cannot open %s (run the tests from the repository root)", p);
    static uint8_t buf[1 << 16];
    const size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(len > 1);
    static float out[3 * 32 * 32];
    for (int c = 1; c <= 3; c += 2) {
        const cnn_status s = cnn_image_decode(buf, len - 1, c, 32, 32, out);
        if (s != CNN_ERR_FORMAT)
            fail_msg("%s: status %s (\"%s\"), expected a format error", name, cnn_status_name(s), cnn_last_error());
        if (!strstr(cnn_last_error(), sub)) fail_msg("%s: message \"%s\" lacks \"%s\"", name, cnn_last_error(), sub);
    }
}

static void test_jpeg_huffman_table_of_264_codes(void **state) {
    (void)state;
    expect_regression("jpeg-huffman-table-of-264-codes", "the Huffman table at byte 166 holds 264 codes, more than 256");
}

static void test_png_chunks_past_the_end(void **state) {
    (void)state;
    expect_regression("png-idat-claims-1.2GB", "chunk 'IDAT' at byte 80 claims 1207959587 bytes, past the end");
    expect_regression("png-idat-claims-2GB", "chunk 'IDAT' at byte 80 claims 2097676323 bytes, past the end");
}

static void test_bmp_more_pixels_than_bytes(void **state) {
    (void)state;
    expect_regression("bmp-10499x8960-in-133-bytes", "BMP image is 10499x8960, more pixels than its 133 bytes can encode");
}

/* The scan of this JPEG uses a Huffman table that no DHT defined. stb_image 2.27 decodes with the
 * table as its allocation found it; cnn builds stb with zeroed allocations, so the decode fails the
 * same way whatever the heap held before. The heap is filled with garbage of the sizes around
 * stb's decoder state first, as a long-running process would have it. */
static void test_jpeg_undefined_huffman_table(void **state) {
    (void)state;
    for (int round = 0; round < 4; round++) {
        void *junk[64];
        for (int i = 0; i < 64; i++) {
            const size_t n = 4096 + (size_t)i * 1024;
            junk[i] = malloc(n);
            assert_non_null(junk[i]);
            memset(junk[i], round % 2 ? 0xFF : 0x5A, n);
        }
        for (int i = 0; i < 64; i++) free(junk[i]);
        expect_regression("jpeg-undefined-huffman-table", "JPEG image does not decode: bad huffman code");
    }
}

/* ---- crafted files -------------------------------------------------------------------------- */

/* A minimal baseline JPEG header of w×h, one grey component, one DHT whose 16 counts are `counts`
 * (codes all 1, so the table holds the sum), then SOS and a few bytes of data. Returns its length. */
static size_t jpeg(uint8_t *b, int w, int h, const uint8_t counts[16]) {
    size_t n = 0;
    const uint8_t soi[] = {0xFF, 0xD8};
    memcpy(b + n, soi, 2), n += 2;
    /* DQT: table 0, all ones. */
    b[n++] = 0xFF, b[n++] = 0xDB, b[n++] = 0, b[n++] = 67, b[n++] = 0;
    memset(b + n, 1, 64), n += 64;
    /* SOF0: 8 bits, h, w, 1 component (id 1, 1x1, table 0). */
    const uint8_t sof[] = {0xFF, 0xC0, 0, 11, 8, (uint8_t)(h >> 8), (uint8_t)h, (uint8_t)(w >> 8), (uint8_t)w, 1, 1, 0x11, 0};
    memcpy(b + n, sof, sizeof sof), n += sizeof sof;
    /* DHT: class 0 (DC), id 0. */
    int total = 0;
    for (int i = 0; i < 16; i++) total += counts[i];
    const int len = 2 + 17 + total;
    b[n++] = 0xFF, b[n++] = 0xC4, b[n++] = (uint8_t)(len >> 8), b[n++] = (uint8_t)len, b[n++] = 0x00;
    memcpy(b + n, counts, 16), n += 16;
    memset(b + n, 0, (size_t)total), n += (size_t)total;
    /* SOS: component 1 with tables 0/0, spectral 0..63, then data and EOI. */
    const uint8_t sos[] = {0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 63, 0};
    memcpy(b + n, sos, sizeof sos), n += sizeof sos;
    memset(b + n, 0x55, 16), n += 16;
    b[n++] = 0xFF, b[n++] = 0xD9;
    return n;
}

static void test_crafted_jpeg_huffman_counts(void **state) {
    (void)state;
    static uint8_t b[8192];
    float out[64];
    /* 256 codes are the most a table holds: that header passes the check (the data then fails). */
    uint8_t counts[16] = {0};
    counts[15] = 255, counts[14] = 1;
    size_t n = jpeg(b, 8, 8, counts);
    (void)cnn_image_decode(b, n, 1, 8, 8, out);
    assert_null(strstr(cnn_last_error(), "more than 256"));
    /* 257 and 4080 are corrupt. */
    counts[13] = 1;
    n = jpeg(b, 8, 8, counts);
    assert_int_equal(cnn_image_decode(b, n, 1, 8, 8, out), CNN_ERR_FORMAT);
    if (!strstr(cnn_last_error(), "holds 257 codes, more than 256")) fail_msg("%s", cnn_last_error());
    memset(counts, 255, sizeof counts);
    n = jpeg(b, 8, 8, counts);
    assert_int_equal(cnn_image_decode(b, n, 1, 8, 8, out), CNN_ERR_FORMAT);
    if (!strstr(cnn_last_error(), "holds 4080 codes")) fail_msg("%s", cnn_last_error());
}

/* A JPEG that declares 16384×16384 in a few hundred bytes: at least one bit per 8×8 block would
 * take 512 KB. */
static void test_crafted_jpeg_too_many_pixels(void **state) {
    (void)state;
    static uint8_t b[8192];
    uint8_t counts[16] = {0};
    counts[0] = 1;
    const size_t n = jpeg(b, 16384, 16384, counts);
    float out[4];
    assert_int_equal(cnn_image_decode(b, n, 1, 2, 2, out), CNN_ERR_FORMAT);
    if (!strstr(cnn_last_error(), "JPEG image is 16384x16384, more pixels than its"))
        fail_msg("%s", cnn_last_error());
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A PNG of w×h 8-bit grey whose one IDAT holds `idat` bytes of a zlib stream of zeros. */
static size_t png(uint8_t *b, uint32_t w, uint32_t h, size_t raw_len) {
    static uint8_t raw[1 << 20], z[1 << 16];
    memset(raw, 0, raw_len);
    uLongf zlen = sizeof z;
    assert_int_equal(compress2(z, &zlen, raw, raw_len, 9), Z_OK);
    size_t n = 0;
    memcpy(b, "\x89PNG\r\n\x1a\n", 8), n = 8;
    put32(b + n, 13), memcpy(b + n + 4, "IHDR", 4);
    put32(b + n + 8, w), put32(b + n + 12, h);
    b[n + 16] = 8, b[n + 17] = 0, b[n + 18] = b[n + 19] = b[n + 20] = 0;
    put32(b + n + 21, (uint32_t)crc32(0, b + n + 4, 17)), n += 25;
    put32(b + n, (uint32_t)zlen), memcpy(b + n + 4, "IDAT", 4), memcpy(b + n + 8, z, zlen);
    put32(b + n + 8 + zlen, (uint32_t)crc32(0, b + n + 4, 4 + (uInt)zlen)), n += 12 + zlen;
    put32(b + n, 0), memcpy(b + n + 4, "IEND", 4), put32(b + n + 8, (uint32_t)crc32(0, b + n + 4, 4)), n += 12;
    return n;
}

/* A whole PNG of 1000×1000 zeros compresses to about 1 KB, within deflate's 1032:1: it decodes.
 * One that declares 16000×16000 with the same data cannot hold them (256 MB from 1 KB) and is
 * rejected from its header; a chunk whose length runs past the file, before stb allocates it. */
static void test_crafted_png(void **state) {
    (void)state;
    static uint8_t b[1 << 16];
    static float out[16];
    size_t n = png(b, 1000, 1000, 1000 * 1001);
    assert_int_equal(cnn_image_decode(b, n, 1, 4, 4, out), CNN_OK);
    n = png(b, 16000, 16000, 1000 * 1001);
    assert_int_equal(cnn_image_decode(b, n, 1, 4, 4, out), CNN_ERR_FORMAT);
    if (!strstr(cnn_last_error(), "PNG image is 16000x16000, more pixels than its")) fail_msg("%s", cnn_last_error());
    n = png(b, 4, 4, 4 * 5);
    put32(b + 33, 0x7FFFFFF0); /* the IDAT's length */
    assert_int_equal(cnn_image_decode(b, n, 1, 4, 4, out), CNN_ERR_FORMAT);
    if (!strstr(cnn_last_error(), "chunk 'IDAT' at byte 33 claims 2147483632 bytes, past the end of the file"))
        fail_msg("%s", cnn_last_error());
}

/* ---- depth, orientation, truncation ------------------------------------------------------- */

/* A PNG of w×h pixels, bit depth `depth` (8 or 16), colour type `color` (0 grey, 2 RGB), from the
 * big-endian samples `px` (w·h·channels of them, each of depth/8 bytes). Returns its length. */
static size_t png_of(uint8_t *b, int w, int h, int depth, int color, const uint8_t *px) {
    static uint8_t raw[1 << 16], z[1 << 16];
    const size_t row = (size_t)w * (color == 2 ? 3 : 1) * (size_t)(depth / 8);
    size_t r = 0;
    for (int y = 0; y < h; y++) raw[r++] = 0, memcpy(raw + r, px + (size_t)y * row, row), r += row;
    uLongf zlen = sizeof z;
    assert_int_equal(compress2(z, &zlen, raw, r, 9), Z_OK);
    size_t n = 8;
    memcpy(b, "\x89PNG\r\n\x1a\n", 8);
    put32(b + n, 13), memcpy(b + n + 4, "IHDR", 4), put32(b + n + 8, (uint32_t)w), put32(b + n + 12, (uint32_t)h);
    b[n + 16] = (uint8_t)depth, b[n + 17] = (uint8_t)color, b[n + 18] = b[n + 19] = b[n + 20] = 0;
    put32(b + n + 21, (uint32_t)crc32(0, b + n + 4, 17)), n += 25;
    put32(b + n, (uint32_t)zlen), memcpy(b + n + 4, "IDAT", 4), memcpy(b + n + 8, z, zlen);
    put32(b + n + 8 + zlen, (uint32_t)crc32(0, b + n + 4, 4 + (uInt)zlen)), n += 12 + zlen;
    put32(b + n, 0), memcpy(b + n + 4, "IEND", 4), put32(b + n + 8, (uint32_t)crc32(0, b + n + 4, 4)), n += 12;
    return n;
}

/* 5×3 RGB test samples, 8-bit, and the same at 16 bits (v·257, so v/255 = v16/65535 exactly). */
enum { TW = 5, TH = 3 };
static uint8_t px8[TW * TH * 3], px16[TW * TH * 3 * 2];
static void make_samples(void) {
    for (int i = 0; i < TW * TH * 3; i++) {
        px8[i] = (uint8_t)((i * 53 + 7) % 256);
        px16[2 * i] = px8[i], px16[2 * i + 1] = px8[i]; /* 257·v, big-endian */
    }
}

static void expect_same(const char *what, const float *got, const float *want, int n, double tol) {
    for (int i = 0; i < n; i++)
        if (fabs((double)got[i] - (double)want[i]) > tol)
            fail_msg("%s: value %d is %.9g, expected %.9g (tolerance %g)", what, i, got[i], want[i], tol);
}

/* 16-bit PNG and PGM/PPM read at their depth: the same picture at 8 and 16 bits gives the same
 * values (within float rounding), and a 16-bit sample that is not a multiple of 257 keeps its
 * low byte (stb alone would reduce it to 8 bits). */
static void test_16_bit_png_and_pnm(void **state) {
    (void)state;
    make_samples();
    static uint8_t b[1 << 16];
    static float want[3 * TW * TH], got[3 * TW * TH];
    for (int c = 1; c <= 3; c += 2) {
        size_t n = png_of(b, TW, TH, 8, 2, px8);
        assert_int_equal(cnn_image_decode(b, n, c, TH, TW, want), CNN_OK);
        n = png_of(b, TW, TH, 16, 2, px16);
        if (cnn_image_decode(b, n, c, TH, TW, got) != CNN_OK) fail_msg("16-bit PNG: %s", cnn_last_error());
        expect_same("16-bit PNG", got, want, c * TW * TH, 1e-6);
        /* PPM: P6 at maxval 255 and at 65535. */
        n = (size_t)sprintf((char *)b, "P6\n%d %d\n255\n", TW, TH);
        memcpy(b + n, px8, sizeof px8), n += sizeof px8;
        assert_int_equal(cnn_image_decode(b, n, c, TH, TW, got), CNN_OK);
        expect_same("8-bit PPM", got, want, c * TW * TH, 1e-6);
        n = (size_t)sprintf((char *)b, "P6 %d %d 65535 ", TW, TH);
        memcpy(b + n, px16, sizeof px16), n += sizeof px16;
        if (cnn_image_decode(b, n, c, TH, TW, got) != CNN_OK) fail_msg("16-bit PPM: %s", cnn_last_error());
        expect_same("16-bit PPM", got, want, c * TW * TH, 1e-6);
    }
    /* Grey, 1×2: samples 1 and 65534 of 65535, which 8 bits cannot tell from 0 and 65535. */
    const uint8_t two[4] = {0, 1, 0xFF, 0xFE};
    float v[2];
    size_t n = png_of(b, 2, 1, 16, 0, two);
    assert_int_equal(cnn_image_decode(b, n, 1, 1, 2, v), CNN_OK);
    assert_float_equal(v[0], 1.0 / 65535, 1e-9);
    assert_float_equal(v[1], 65534.0 / 65535, 1e-7);
    n = (size_t)sprintf((char *)b, "P5 2 1 65535\n");
    memcpy(b + n, two, 4), n += 4;
    assert_int_equal(cnn_image_decode(b, n, 1, 1, 2, v), CNN_OK);
    assert_float_equal(v[0], 1.0 / 65535, 1e-9);
    assert_float_equal(v[1], 65534.0 / 65535, 1e-7);
    /* maxval 1000, two bytes a sample, and maxval 15, one byte: samples scale by 1/maxval. */
    const uint8_t k[4] = {0x01, 0xF4, 0x03, 0xE8}; /* 500, 1000 */
    n = (size_t)sprintf((char *)b, "P5 2 1 1000\n");
    memcpy(b + n, k, 4), n += 4;
    assert_int_equal(cnn_image_decode(b, n, 1, 1, 2, v), CNN_OK);
    assert_float_equal(v[0], 0.5, 1e-7);
    assert_float_equal(v[1], 1.0, 1e-7);
    n = (size_t)sprintf((char *)b, "P5 2 1 15\n\x05\x0f");
    assert_int_equal(cnn_image_decode(b, n, 1, 1, 2, v), CNN_OK);
    assert_float_equal(v[0], 5.0 / 15, 1e-7);
    assert_float_equal(v[1], 1.0, 1e-7);
    /* A sample above maxval is refused. */
    n = (size_t)sprintf((char *)b, "P5 2 1 15\n\x05\x10");
    assert_int_equal(cnn_image_decode(b, n, 1, 1, 2, v), CNN_ERR_FORMAT);
    if (!strstr(cnn_last_error(), "sample 1 is 16, above maxval 15")) fail_msg("%s", cnn_last_error());
}

/* A 24-bit BMP of w×h from RGB samples (rows top first), stored bottom-up (height h) or top-down
 * (height -h), rows padded to 4 bytes. Returns its length. */
static size_t bmp_of(uint8_t *b, int w, int h, const uint8_t *px, int top_down) {
    const size_t row = ((size_t)w * 3 + 3) & ~(size_t)3, size = 54 + row * (size_t)h;
    memset(b, 0, size);
    b[0] = 'B', b[1] = 'M';
    const uint32_t f[] = {(uint32_t)size, 0, 54, 40, (uint32_t)w, (uint32_t)(top_down ? -h : h)};
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 4; k++) b[2 + 4 * i + k] = (uint8_t)(f[i] >> (8 * k));
    b[26] = 1, b[28] = 24; /* planes, bits per pixel; no compression */
    for (int y = 0; y < h; y++) {
        uint8_t *d = b + 54 + row * (size_t)(top_down ? y : h - 1 - y);
        for (int x = 0; x < w; x++) {
            const uint8_t *s = px + ((size_t)y * (size_t)w + (size_t)x) * 3;
            d[3 * x] = s[2], d[3 * x + 1] = s[1], d[3 * x + 2] = s[0]; /* BGR */
        }
    }
    return size;
}

/* A top-down BMP (negative height) reads as the same picture as the bottom-up one, which equals
 * the PNG of the same samples. */
static void test_top_down_bmp(void **state) {
    (void)state;
    make_samples();
    static uint8_t b[1 << 16];
    static float want[3 * TW * TH], up[3 * TW * TH], down[3 * TW * TH];
    size_t n = png_of(b, TW, TH, 8, 2, px8);
    assert_int_equal(cnn_image_decode(b, n, 3, TH, TW, want), CNN_OK);
    n = bmp_of(b, TW, TH, px8, 0);
    if (cnn_image_decode(b, n, 3, TH, TW, up) != CNN_OK) fail_msg("bottom-up BMP: %s", cnn_last_error());
    expect_same("bottom-up BMP", up, want, 3 * TW * TH, 0);
    n = bmp_of(b, TW, TH, px8, 1);
    if (cnn_image_decode(b, n, 3, TH, TW, down) != CNN_OK) fail_msg("top-down BMP: %s", cnn_last_error());
    expect_same("top-down BMP", down, want, 3 * TW * TH, 0);
    /* Resized, too. */
    static float up2[3 * 7 * 9], down2[3 * 7 * 9];
    n = bmp_of(b, TW, TH, px8, 0);
    assert_int_equal(cnn_image_decode(b, n, 3, 7, 9, up2), CNN_OK);
    n = bmp_of(b, TW, TH, px8, 1);
    assert_int_equal(cnn_image_decode(b, n, 3, 7, 9, down2), CNN_OK);
    expect_same("resized top-down BMP", down2, up2, 3 * 7 * 9, 0);
}

/* The message of a refused file, which must give a reason: it does not end in ": ". */
static void expect_reason(const char *what, cnn_status s) {
    if (s != CNN_ERR_FORMAT) fail_msg("%s: status %s (\"%s\"), expected a format error", what, cnn_status_name(s), cnn_last_error());
    const char *m = cnn_last_error();
    const size_t len = strlen(m);
    if (len < 2 || !strcmp(m + len - 2, ": ") || m[len - 1] == ':') fail_msg("%s: message without a reason: \"%s\"", what, m);
}

/* Truncated files are refused with a reason: a PGM with maxval 65535 and half its samples (stb
 * reads the rest as zeros), a PPM one byte short, and a PNG cut anywhere from its IDAT on (stb
 * 2.27 names the zeros it reads past the end as a chunk: an empty reason, or "I", "ID"), or with
 * a zlib stream cut inside a whole IDAT chunk. */
static void test_truncated(void **state) {
    (void)state;
    make_samples();
    static uint8_t b[1 << 16];
    static float out[3 * TW * TH];
    size_t h = (size_t)sprintf((char *)b, "P5 %d %d 65535\n", TW, TH);
    memcpy(b + h, px16, sizeof px16 / 3);
    assert_int_equal(cnn_image_decode(b, h + sizeof px16 / 6, 1, TH, TW, out), CNN_ERR_FORMAT);
    if (!strstr(cnn_last_error(), "PGM image is truncated: 5x3 with maxval 65535 needs 30 bytes of samples, the file has 15"))
        fail_msg("%s", cnn_last_error());
    h = (size_t)sprintf((char *)b, "P6 %d %d 255\n", TW, TH);
    memcpy(b + h, px8, sizeof px8);
    assert_int_equal(cnn_image_decode(b, h + sizeof px8 - 1, 3, TH, TW, out), CNN_ERR_FORMAT);
    if (!strstr(cnn_last_error(), "truncated")) fail_msg("%s", cnn_last_error());
    assert_int_equal(cnn_image_decode(b, h - 1, 3, TH, TW, out), CNN_ERR_FORMAT); /* no byte after maxval */
    if (!strstr(cnn_last_error(), "PPM header: truncated")) fail_msg("%s", cnn_last_error());

    const size_t n = png_of(b, TW, TH, 16, 2, px16);
    const size_t idat = 33; /* after the signature and IHDR */
    for (size_t cut = idat; cut < n - 4; cut++) { /* (without IEND's CRC alone, every pixel is there: it decodes) */
        char what[64];
        snprintf(what, sizeof what, "a PNG cut at byte %zu of %zu", cut, n);
        expect_reason(what, cnn_image_decode(b, cut, 3, TH, TW, out));
        if (!strstr(cnn_last_error(), "truncated")) fail_msg("%s: %s", what, cnn_last_error());
    }
    /* The IDAT chunk whole, but holding only the first half of the zlib stream. */
    static uint8_t c[1 << 16];
    const uint32_t zlen = (uint32_t)b[idat] << 24 | (uint32_t)b[idat + 1] << 16 | (uint32_t)b[idat + 2] << 8 | b[idat + 3];
    const uint32_t half = zlen / 2;
    memcpy(c, b, idat);
    put32(c + idat, half), memcpy(c + idat + 4, "IDAT", 4), memcpy(c + idat + 8, b + idat + 8, half);
    put32(c + idat + 8 + half, (uint32_t)crc32(0, c + idat + 4, 4 + half));
    size_t m = idat + 12 + half;
    put32(c + m, 0), memcpy(c + m + 4, "IEND", 4), put32(c + m + 8, (uint32_t)crc32(0, c + m + 4, 4)), m += 12;
    expect_reason("a PNG whose zlib stream is cut", cnn_image_decode(c, m, 3, TH, TW, out));
}

/* Headers whose sizes have 11 digits or more (which overflow the int that stb 2.27 parses them
 * into) are refused from the header, naming the limit; so is a size of 16385. */
static void test_huge_pnm_headers(void **state) {
    (void)state;
    static const char *const heads[] = {"P5\n12345678901 12345678901\n255\n", "P6 99999999999 1 255\n",
                                        "P5 1 4294967297 255\n", "P5 16385 1 255\n", "P6 1 99999999999999999999 255\n"};
    float out[4];
    for (size_t i = 0; i < sizeof heads / sizeof *heads; i++) {
        uint8_t b[256];
        const size_t n = (size_t)sprintf((char *)b, "%s", heads[i]);
        memset(b + n, 7, 64);
        assert_int_equal(cnn_image_decode(b, n + 64, 1, 2, 2, out), CNN_ERR_FORMAT);
        if (!strstr(cnn_last_error(), "too large (the limit is 16384x16384)"))
            fail_msg("%s: %s", heads[i], cnn_last_error());
        if (i == 0 && !strstr(cnn_last_error(), "PGM image is (10+ digits)x(10+ digits)")) /* not a wrapped number */
            fail_msg("%s: %s", heads[i], cnn_last_error());
    }
    /* And a maxval of 11 digits. */
    const char big_max[] = "P5 1 1 12345678901\n\x01\x02";
    assert_int_equal(cnn_image_decode(big_max, sizeof big_max - 1, 1, 1, 1, out), CNN_ERR_FORMAT);
    if (!strstr(cnn_last_error(), "maxval 1..65535")) fail_msg("%s", cnn_last_error());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpeg_huffman_table_of_264_codes),
        cmocka_unit_test(test_png_chunks_past_the_end),
        cmocka_unit_test(test_bmp_more_pixels_than_bytes),
        cmocka_unit_test(test_jpeg_undefined_huffman_table),
        cmocka_unit_test(test_crafted_jpeg_huffman_counts),
        cmocka_unit_test(test_crafted_jpeg_too_many_pixels),
        cmocka_unit_test(test_crafted_png),
        cmocka_unit_test(test_16_bit_png_and_pnm),
        cmocka_unit_test(test_top_down_bmp),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_huge_pnm_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
