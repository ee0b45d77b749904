/* test_image.c - cnn_image_load / cnn_image_decode, and the `cnn predict` command.
 *
 * Images are written into a mkdtemp directory with stb_image_write (PNG, BMP, JPEG) or by hand
 * (binary P5 and ASCII P2/P3 netpbm, crafted headers). Lossless formats at their own size must give
 * exactly v/255; the conversions and the bilinear resize (PyTorch's align_corners=False convention)
 * are checked against values worked out by hand; JPEG within 3/255. Bad files must fail with the
 * right status and a message that names the file; huge declared sizes must be rejected from the
 * header, before any decoding.
 *
 * The CLI tests run "$CNN_BIN predict ..." with fork/exec (CNN_BIN defaults to build/cnn, relative to
 * the repository root where tests/run.sh runs the tests) on a tiny model, input 1 4 4 / flatten /
 * linear out_features=3, whose weights make the class depend on the image's brightness:
 *   logits = [s/4, −s/4, 1] with s the sum of the 16 pixels,
 * so a white image is class 0 (softmax [4, −4, 1]) and a black one class 2 (softmax [0, 0, 1]). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <cmocka.h>
#include <stb/stb_image_write.h>
#include <zlib.h>

#include "cnn.h"
#include "clirun.h"
#include "testutil.h"

#define PATH_LEN 1024
#define CLI_TIMEOUT_S 120

static char tmpdir[64];


static char *tmp_path(char *buf, const char *name) {
    int n = snprintf(buf, PATH_LEN, "%s/%s", tmpdir, name);
    assert_true(n > 0 && n < PATH_LEN);
    return buf;
}

static void write_text(const char *path, const char *text) { tu_write_bytes(path, text, strlen(text)); }

/* Reads a whole (small) file into buf; returns its length. */
static size_t read_file(const char *path, void *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    size_t len = fread(buf, 1, cap, f);
    fclose(f);
    assert_true(len < cap);
    return len;
}

static void assert_contains_all(const char *what, const char *haystack, const char *const *subs) {
    for (int i = 0; subs[i]; i++)
        if (!strstr(haystack, subs[i]))
            fail_msg("%s \"%.500s\" does not contain \"%.100s\"", what, haystack, subs[i]);
}

/* Writes an image with stb_image_write; `kind` is "png", "bmp" or "jpg". */
static char *write_image(char *path, const char *name, const char *kind, int w, int h, int comp,
                         const unsigned char *px) {
    tmp_path(path, name);
    int ok = !strcmp(kind, "png")   ? stbi_write_png(path, w, h, comp, px, w * comp)
             : !strcmp(kind, "bmp") ? stbi_write_bmp(path, w, h, comp, px)
                                    : stbi_write_jpg(path, w, h, comp, px, 100);
    if (!ok) fail_msg("stbi_write_%s(%s) failed", kind, path);
    return path;
}

/* Loads `path` and asserts out == want exactly (count values). */
static void expect_exact(const char *path, int c, int h, int w, const float *want) {
    static float got[4096];
    assert_true(c * h * w <= 4096);
    cnn_status s = cnn_image_load(path, c, h, w, got);
    if (s != CNN_OK) fail_msg("cnn_image_load(%s): %s", path, cnn_last_error());
    for (int i = 0; i < c * h * w; i++)
        if (got[i] != want[i]) fail_msg("%s [%d]: %.9g, expected %.9g", path, i, (double)got[i], (double)want[i]);
}

static void expect_close(const char *path, int c, int h, int w, const float *want, double tol) {
    static float got[4096];
    assert_true(c * h * w <= 4096);
    cnn_status s = cnn_image_load(path, c, h, w, got);
    if (s != CNN_OK) fail_msg("cnn_image_load(%s): %s", path, cnn_last_error());
    for (int i = 0; i < c * h * w; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol))
            fail_msg("%s [%d]: %.9g, expected %.9g ± %g", path, i, (double)got[i], (double)want[i], tol);
}

/* cnn_image_load(path, c, h, w) must fail with `status` and a message holding every `subs`. */
static void expect_error(const char *path, int c, int h, int w, cnn_status status, const char *const *subs) {
    static float out[4096];
    cnn_status s = cnn_image_load(path, c, h, w, out);
    if (s != status)
        fail_msg("cnn_image_load(%s): status %s (\"%.500s\"), expected %s", path, cnn_status_name(s), cnn_last_error(),
                 cnn_status_name(status));
    assert_contains_all("error message", cnn_last_error(), subs);
}

#define EXPECT_ERROR(path, c, h, w, status, ...) \
    expect_error((path), (c), (h), (w), (status), (const char *const[]){__VA_ARGS__, NULL})

/* ---------------------------------------------------------------------------------------------
 * Lossless formats at their own size: exactly v / 255
 * ------------------------------------------------------------------------------------------- */

static const unsigned char GREY4[4] = {0, 64, 128, 255};

static void test_png_grey_exact(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_image(p, "grey.png", "png", 2, 2, 1, GREY4);
    const float want[4] = {0.0f, 64 / 255.0f, 128 / 255.0f, 1.0f};
    expect_exact(p, 1, 2, 2, want);
}

/* Every byte value, 16×16: the scaling is exactly v / 255 for all 256. */
static void test_png_all_values_exact(void **state) {
    (void)state;
    unsigned char px[256];
    float want[256];
    for (int v = 0; v < 256; v++) px[v] = (unsigned char)v, want[v] = (float)v / 255.0f;
    char p[PATH_LEN];
    write_image(p, "all.png", "png", 16, 16, 1, px);
    expect_exact(p, 1, 16, 16, want);
}

static void test_bmp_grey_exact(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_image(p, "grey.bmp", "bmp", 2, 2, 1, GREY4);
    const float want[4] = {0.0f, 64 / 255.0f, 128 / 255.0f, 1.0f};
    expect_exact(p, 1, 2, 2, want);
}

static void test_pgm_binary_exact(void **state) {
    (void)state;
    const unsigned char pgm[] = "P5\n# a comment\n2 2\n255\n\x00\x40\x80\xff";
    char p[PATH_LEN];
    tu_write_bytes(tmp_path(p, "grey.pgm"), pgm, sizeof pgm - 1);
    const float want[4] = {0.0f, 64 / 255.0f, 128 / 255.0f, 1.0f};
    expect_exact(p, 1, 2, 2, want);
}

/* ASCII PGM with maxval 15: values scale by 1/15. */
static void test_pgm_ascii_exact(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_text(tmp_path(p, "ascii.pgm"), "P2\n# made by hand\n3 2\n15\n0 1 2\n  7 14\n15\n");
    const float want[6] = {0.0f, 1 / 15.0f, 2 / 15.0f, 7 / 15.0f, 14 / 15.0f, 1.0f};
    expect_exact(p, 1, 2, 3, want);
}

/* ASCII PPM to 3 channels: CHW order. */
static void test_ppm_ascii_rgb(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_text(tmp_path(p, "ascii.ppm"), "P3 2 1 255\n255 0 10   20 30 40\n");
    const float want[6] = {1.0f, 20 / 255.0f, 0.0f, 30 / 255.0f, 10 / 255.0f, 40 / 255.0f};
    expect_exact(p, 3, 1, 2, want);
}

/* ---------------------------------------------------------------------------------------------
 * Channels
 * ------------------------------------------------------------------------------------------- */

static const unsigned char RGB2[6] = {255, 0, 0, 10, 200, 30};

static void test_rgb_to_grey_luminance(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_image(p, "rgb.png", "png", 2, 1, 3, RGB2);
    const float want[2] = {(float)(0.299 * 255 / 255), (float)((0.299 * 10 + 0.587 * 200 + 0.114 * 30) / 255)};
    expect_close(p, 1, 1, 2, want, 1e-6);
}

/* A grey image stored as RGB (R = G = B) gives exactly v / 255. */
static void test_grey_stored_as_rgb_exact(void **state) {
    (void)state;
    unsigned char px[12];
    for (int i = 0; i < 4; i++) px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = GREY4[i];
    char p[PATH_LEN];
    write_image(p, "grey_rgb.png", "png", 2, 2, 3, px);
    const float want[4] = {0.0f, 64 / 255.0f, 128 / 255.0f, 1.0f};
    expect_exact(p, 1, 2, 2, want);
}

static void test_grey_to_rgb_replicated(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_image(p, "grey3.png", "png", 2, 2, 1, GREY4);
    float want[12];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 4; i++) want[c * 4 + i] = (float)GREY4[i] / 255.0f;
    expect_exact(p, 3, 2, 2, want);
}

static void test_rgb_to_rgb_chw(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_image(p, "rgb3.bmp", "bmp", 2, 1, 3, RGB2);
    const float want[6] = {1.0f, 10 / 255.0f, 0.0f, 200 / 255.0f, 0.0f, 30 / 255.0f};
    expect_exact(p, 3, 1, 2, want);
}

/* Alpha is composited over white: v' = (v a + (255 - a) 255) / 255². A transparent pixel is white
 * whatever colour it stores; an opaque one keeps its value exactly. */
static void test_rgba_composited_on_white(void **state) {
    (void)state;
    const unsigned char px[12] = {255, 0, 0, 0, 10, 200, 30, 128, 7, 99, 250, 255};
    char p[PATH_LEN];
    write_image(p, "rgba.png", "png", 3, 1, 4, px);
    /* Pixel 1, a = 128: the background adds (255 - 128) · 255 = 32385 to v · 128. */
    const float want[9] = {1.0f, (float)(33665 / 65025.0), 7 / 255.0f,
                           1.0f, (float)(57985 / 65025.0), 99 / 255.0f,
                           1.0f, (float)(36225 / 65025.0), 250 / 255.0f};
    expect_exact(p, 3, 1, 3, want);
    /* To grey: the luminance of the composited RGB, 299·33665 + 587·57985 + 114·36225 = 48232680. */
    const float grey[3] = {1.0f, (float)(48232680 / 65025000.0), (float)((299 * 7 + 587 * 99 + 114 * 250) / 255000.0)};
    expect_exact(p, 1, 1, 3, grey);
}

/* Grey + alpha: the same; black ink on a transparent background becomes black on white. */
static void test_grey_alpha_composited_on_white(void **state) {
    (void)state;
    const unsigned char px[8] = {64, 0, 200, 255, 0, 255, 0, 64};
    char p[PATH_LEN];
    write_image(p, "ga.png", "png", 4, 1, 2, px);
    const float want[4] = {1.0f, 200 / 255.0f, 0.0f, (float)((255 - 64) * 255 / 65025.0)};
    expect_exact(p, 1, 1, 4, want);
    const float rgb[12] = {want[0], want[1], want[2], want[3], want[0], want[1], want[2], want[3],
                           want[0], want[1], want[2], want[3]};
    expect_exact(p, 3, 1, 4, rgb);
}

static void put_be32(unsigned char *b, uint32_t v) {
    b[0] = (unsigned char)(v >> 24), b[1] = (unsigned char)(v >> 16), b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

/* Appends a PNG chunk (length, type, data, CRC) at b + *at. */
static void png_chunk(unsigned char *b, size_t *at, const char *type, const unsigned char *data, uint32_t n) {
    put_be32(b + *at, n);
    memcpy(b + *at + 4, type, 4);
    if (n) memcpy(b + *at + 8, data, n);
    put_be32(b + *at + 8 + n, (uint32_t)crc32(0, b + *at + 4, 4 + n));
    *at += 12 + n;
}

/* A palette PNG with tRNS transparency (stb expands it to RGBA): entry 0 black and transparent,
 * entry 1 black and opaque, entry 2 red at alpha 51: 0 on white is white, 1 black. */
static void test_palette_transparency_composited(void **state) {
    (void)state;
    unsigned char b[256] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t at = 8;
    unsigned char ihdr[13] = {0};
    put_be32(ihdr, 3), put_be32(ihdr + 4, 1);
    ihdr[8] = 8, ihdr[9] = 3; /* 8 bits, palette */
    png_chunk(b, &at, "IHDR", ihdr, 13);
    const unsigned char plte[9] = {0, 0, 0, 0, 0, 0, 255, 0, 0}, trns[3] = {0, 255, 51};
    png_chunk(b, &at, "PLTE", plte, 9);
    png_chunk(b, &at, "tRNS", trns, 3);
    const unsigned char raw[4] = {0, 0, 1, 2}; /* filter byte 0, then the three indices */
    unsigned char z[64];
    uLongf zn = sizeof z;
    assert_int_equal(compress(z, &zn, raw, sizeof raw), Z_OK);
    png_chunk(b, &at, "IDAT", z, (uint32_t)zn);
    png_chunk(b, &at, "IEND", NULL, 0);
    char p[PATH_LEN];
    tu_write_bytes(tmp_path(p, "palette_trns.png"), b, at);
    /* Red at a = 51: R' = (255·51 + 204·255)/65025 = 1, G' = B' = 204·255/65025 = 0.8. */
    const float want[9] = {1.0f, 0.0f, 1.0f, 1.0f, 0.0f, (float)(52020 / 65025.0), 1.0f, 0.0f, (float)(52020 / 65025.0)};
    expect_exact(p, 3, 1, 3, want);
}

/* ---------------------------------------------------------------------------------------------
 * Resizing: bilinear, align_corners=False, no antialias
 * ------------------------------------------------------------------------------------------- */

static void test_resize_constant_stays_constant(void **state) {
    (void)state;
    unsigned char px[15];
    memset(px, 77, sizeof px);
    char p[PATH_LEN];
    write_image(p, "const.png", "png", 5, 3, 1, px);
    static float want[3 * 11 * 7];
    for (int i = 0; i < 3 * 11 * 7; i++) want[i] = 77 / 255.0f;
    expect_exact(p, 1, 11, 7, want); /* up */
    expect_exact(p, 1, 2, 2, want);  /* down */
    expect_exact(p, 3, 1, 1, want);  /* to one pixel, 3 channels */
    expect_exact(p, 1, 7, 3, want);  /* up in one direction, down in the other */
}

/* 2×1 → 4×1: source x = (i + 0.5)/2 − 0.5 = −0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the
 * last pixel): 0, 1/4, 3/4, 1 of the way. (align_corners=True would give 0, 1/3, 2/3, 1.) */
static void test_resize_bilinear_2_to_4(void **state) {
    (void)state;
    const unsigned char px[2] = {0, 255};
    char p[PATH_LEN];
    write_image(p, "ramp_x.png", "png", 2, 1, 1, px);
    const float want[4] = {0.0f, 0.25f, 0.75f, 1.0f};
    expect_exact(p, 1, 1, 4, want);
    write_image(p, "ramp_y.png", "png", 1, 2, 1, px);
    expect_exact(p, 1, 4, 1, want);
}

/* 2×2 → 4×4 is separable: out[y][x] = r[y]·(b − a) ... with corners 0, 255 / 255, 255. */
static void test_resize_bilinear_2x2_to_4x4(void **state) {
    (void)state;
    const unsigned char px[4] = {0, 255, 255, 255};
    char p[PATH_LEN];
    write_image(p, "corner.png", "png", 2, 2, 1, px);
    const float r[4] = {0.0f, 0.25f, 0.75f, 1.0f};
    float want[16];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) want[y * 4 + x] = r[x] + r[y] * (1.0f - r[x]);
    expect_close(p, 1, 4, 4, want, 1e-6);
}

/* 4×1 → 2×1: source x = 0.5 and 2.5, the means of pixel pairs. */
static void test_resize_bilinear_downscale(void **state) {
    (void)state;
    const unsigned char px[4] = {0, 100, 200, 255};
    char p[PATH_LEN];
    write_image(p, "down.png", "png", 4, 1, 1, px);
    const float want[2] = {50 / 255.0f, 227.5f / 255.0f};
    expect_close(p, 1, 1, 2, want, 1e-6);
}

/* JPEG is lossy: within 3/255 of a constant grey and of a smooth RGB image. */
static void test_jpeg_roughly(void **state) {
    (void)state;
    unsigned char px[16 * 16 * 3];
    memset(px, 100, 16 * 16);
    char p[PATH_LEN];
    write_image(p, "grey.jpg", "jpg", 16, 16, 1, px);
    static float want[16 * 16 * 3];
    for (int i = 0; i < 256; i++) want[i] = 100 / 255.0f;
    expect_close(p, 1, 16, 16, want, 3.0 / 255);
    for (int i = 0; i < 256; i++) px[3 * i] = 180, px[3 * i + 1] = 90, px[3 * i + 2] = 40;
    write_image(p, "rgb.jpg", "jpg", 16, 16, 3, px);
    for (int i = 0; i < 256; i++) want[i] = 180 / 255.0f, want[256 + i] = 90 / 255.0f, want[512 + i] = 40 / 255.0f;
    expect_close(p, 3, 16, 16, want, 3.0 / 255);
}

/* cnn_image_decode on the file's bytes gives what cnn_image_load gives. */
static void test_decode_from_memory(void **state) {
    (void)state;
    const unsigned char px[6] = {3, 50, 90, 140, 200, 250};
    char p[PATH_LEN];
    write_image(p, "mem.png", "png", 3, 2, 1, px);
    static unsigned char bytes[1 << 16];
    size_t len = read_file(p, bytes, sizeof bytes);
    float a[3 * 5 * 7], b[3 * 5 * 7];
    assert_int_equal(cnn_image_load(p, 3, 5, 7, a), CNN_OK);
    assert_int_equal(cnn_image_decode(bytes, len, 3, 5, 7, b), CNN_OK);
    assert_memory_equal(a, b, sizeof a);
}

/* The largest allowed side, 16384, decodes. */
static void test_largest_side_allowed(void **state) {
    (void)state;
    static unsigned char px[16384];
    for (int i = 0; i < 16384; i++) px[i] = (unsigned char)(i & 255);
    char p[PATH_LEN];
    write_image(p, "wide.png", "png", 16384, 1, 1, px);
    float out[4];
    assert_int_equal(cnn_image_load(p, 1, 1, 4, out), CNN_OK);
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

static void test_error_text_file(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_text(tmp_path(p, "notes.txt"), "this is not an image\n");
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "not a PNG");
}

static void test_error_truncated_png(void **state) {
    (void)state;
    unsigned char px[32 * 32];
    for (int i = 0; i < 32 * 32; i++) px[i] = (unsigned char)(i * 37 + (i >> 3) * 11);
    char p[PATH_LEN];
    write_image(p, "full.png", "png", 32, 32, 1, px);
    static unsigned char bytes[1 << 16];
    size_t len = read_file(p, bytes, sizeof bytes);
    assert_true(len > 100);
    tu_write_bytes(tmp_path(p, "truncated.png"), bytes, len / 2);
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "PNG", "does not decode");
    tu_write_bytes(tmp_path(p, "truncated_header.png"), bytes, 12);
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "PNG", "does not decode");
}

static void test_error_empty_file(void **state) {
    (void)state;
    char p[PATH_LEN];
    tu_write_bytes(tmp_path(p, "empty.png"), "", 0);
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "empty");
}

static void test_error_missing_file(void **state) {
    (void)state;
    char p[PATH_LEN];
    tmp_path(p, "no_such_image.png");
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_IO, p, "cannot open");
}

static void test_error_directory(void **state) {
    (void)state;
    char p[PATH_LEN];
    tmp_path(p, "a_directory.png");
    assert_int_equal(mkdir(p, 0700), 0);
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_IO, p);
}

static void put32be(unsigned char *b, uint32_t v) {
    b[0] = (unsigned char)(v >> 24), b[1] = (unsigned char)(v >> 16), b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

static void put32le(unsigned char *b, uint32_t v) {
    b[0] = (unsigned char)v, b[1] = (unsigned char)(v >> 8), b[2] = (unsigned char)(v >> 16);
    b[3] = (unsigned char)(v >> 24);
}

/* A PNG of signature, IHDR (grey, 8 bits) and IEND only: w×h declared, no pixel data. */
static char *huge_png(char *p, const char *name, uint32_t w, uint32_t h) {
    unsigned char b[8 + 25 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char *c = b + 8;
    put32be(c, 13);
    memcpy(c + 4, "IHDR", 4);
    put32be(c + 8, w);
    put32be(c + 12, h);
    c[16] = 8, c[17] = 0, c[18] = 0, c[19] = 0, c[20] = 0;
    put32be(c + 21, (uint32_t)crc32(0, c + 4, 17));
    c = b + 33;
    put32be(c, 0);
    memcpy(c + 4, "IEND", 4);
    put32be(c + 8, (uint32_t)crc32(0, c + 4, 4));
    tu_write_bytes(tmp_path(p, name), b, sizeof b);
    return p;
}

/* A 24-bit BMP header (BITMAPINFOHEADER) declaring w×h, followed by a few bytes of pixels. */
static char *huge_bmp(char *p, const char *name, uint32_t w, uint32_t h) {
    unsigned char b[54 + 16] = {'B', 'M'};
    put32le(b + 2, sizeof b);
    put32le(b + 10, 54);
    put32le(b + 14, 40);
    put32le(b + 18, w);
    put32le(b + 22, h);
    b[26] = 1, b[28] = 24;
    tu_write_bytes(tmp_path(p, name), b, sizeof b);
    return p;
}

static void test_error_huge_png(void **state) {
    (void)state;
    char p[PATH_LEN];
    EXPECT_ERROR(huge_png(p, "huge.png", 100000, 100000), 1, 4, 4, CNN_ERR_FORMAT, p, "100000x100000", "too large");
    /* 20000×20000 grey is small enough for stb_image's own limit: our check rejects it. */
    EXPECT_ERROR(huge_png(p, "big.png", 20000, 20000), 1, 4, 4, CNN_ERR_FORMAT, p, "20000x20000", "16384x16384");
    EXPECT_ERROR(huge_png(p, "tall.png", 1, 16385), 1, 4, 4, CNN_ERR_FORMAT, p, "1x16385", "too large");
}

static void test_error_huge_bmp(void **state) {
    (void)state;
    char p[PATH_LEN];
    EXPECT_ERROR(huge_bmp(p, "huge.bmp", 100000, 100000), 3, 4, 4, CNN_ERR_FORMAT, p, "100000x100000", "too large");
    EXPECT_ERROR(huge_bmp(p, "wide.bmp", 16385, 1), 1, 4, 4, CNN_ERR_FORMAT, p, "16385x1", "too large");
}

static void test_error_huge_pgm(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_text(tmp_path(p, "huge.pgm"), "P5\n100000 100000\n255\n\x01\x02");
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "100000x100000", "too large");
    write_text(tmp_path(p, "huge_ascii.pgm"), "P2\n100000 100000\n255\n1 2 3\n");
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "100000x100000", "too large");
}

static void test_error_ascii_pgm_bad(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_text(tmp_path(p, "short.pgm"), "P2 3 2 255\n1 2 3 4 5\n");
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "truncated");
    write_text(tmp_path(p, "above.pgm"), "P2 2 1 15\n3 16\n");
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "above maxval 15");
    write_text(tmp_path(p, "letters.pgm"), "P2 2 1 15\n3 x\n");
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "not a number");
    write_text(tmp_path(p, "header.pgm"), "P2 2\n");
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "header");
    write_text(tmp_path(p, "maxval.pgm"), "P2 1 1 0\n0\n");
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "maxval 0");
}

/* A file over 64 MB is refused without being decoded (a sparse file: it costs no disk). */
static void test_error_file_too_large(void **state) {
    (void)state;
    char p[PATH_LEN];
    tmp_path(p, "big_file.png");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\x89PNG\r\n\x1a\n", 8), 8);
    assert_int_equal(ftruncate(fd, (off_t)65 << 20), 0);
    close(fd);
    EXPECT_ERROR(p, 1, 4, 4, CNN_ERR_FORMAT, p, "64 MB");
    unlink(p);
}

static void test_error_bad_arguments(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_image(p, "args.png", "png", 2, 2, 1, GREY4);
    EXPECT_ERROR(p, 2, 4, 4, CNN_ERR_ARG, "2 channels");
    EXPECT_ERROR(p, 0, 4, 4, CNN_ERR_ARG, "0 channels");
    EXPECT_ERROR(p, 4, 4, 4, CNN_ERR_ARG, "4 channels");
    EXPECT_ERROR(p, 1, 0, 4, CNN_ERR_ARG, "4x0");
    EXPECT_ERROR(p, 1, 4, -1, CNN_ERR_ARG, "-1x4");
    assert_int_equal(cnn_image_load(p, 1, 4, 4, NULL), CNN_ERR_ARG);
    float out[16];
    assert_int_equal(cnn_image_load(NULL, 1, 4, 4, out), CNN_ERR_ARG);
    assert_int_equal(cnn_image_decode(NULL, 10, 1, 4, 4, out), CNN_ERR_ARG);
    assert_int_equal(cnn_image_decode(GREY4, 4, 2, 4, 4, out), CNN_ERR_ARG);
    assert_int_equal(cnn_image_decode(GREY4, 0, 1, 4, 4, out), CNN_ERR_FORMAT);
    assert_int_equal(cnn_image_decode(GREY4, 4, 1, 4, 4, out), CNN_ERR_FORMAT);
}

/* ---------------------------------------------------------------------------------------------
 * cnn predict
 * ------------------------------------------------------------------------------------------- */

/* The CLI runs through tests/clirun.h, its output files in tmpdir. */
#define CLI(r, ...) cli_run((r), tmpdir, (const char *const[]){__VA_ARGS__, NULL})

/* The command ran to its end (no signal) with exit status `code`, and stderr says every `subs`. */
static void expect_exit(const cli_result *r, int code, const char *const *subs) { cli_expect(r, code, subs); }

/* Exit status 2, stderr holding every one of the arguments, and nothing on stdout. */
#define EXPECT_BAD_INPUT(r, ...)                                                         \
    do {                                                                                 \
        expect_exit((r), 2, (const char *const[]){__VA_ARGS__, NULL});                   \
        if (*(r)->out) fail_msg("%.300s\n  printed on stdout:\n%.500s", (r)->cmd, (r)->out); \
    } while (0)

static char model_path[PATH_LEN], weights_path[PATH_LEN], white_path[PATH_LEN], black_path[PATH_LEN];
static char model10_path[PATH_LEN], weights10_path[PATH_LEN];

/* The tiny model: logits = [s/4, −s/4, 1], s = the sum of the 16 pixels. */
static int write_predict_files(void) {
    snprintf(model_path, PATH_LEN, "%s/tiny.cnn", tmpdir);
    snprintf(weights_path, PATH_LEN, "%s/tiny.safetensors", tmpdir);
    FILE *f = fopen(model_path, "wb");
    if (!f) return -1;
    fputs("input 1 4 4\nflatten\nlinear out_features=3\n", f);
    fclose(f);
    static float w[3 * 16], b[3] = {0.0f, 0.0f, 1.0f};
    for (int i = 0; i < 16; i++) w[i] = 0.25f, w[16 + i] = -0.25f, w[32 + i] = 0.0f;
    cnn_tensor t[2] = {{.name = "1.weight", .dtype = CNN_F32, .ndim = 2, .shape = {3, 16}, .data = w},
                       {.name = "1.bias", .dtype = CNN_F32, .ndim = 1, .shape = {3}, .data = b}};
    if (cnn_st_save(weights_path, t, 2, NULL, 0)) return -1;

    /* A 10-class model whose bias favours class 7, with metadata naming Fashion-MNIST. */
    snprintf(model10_path, PATH_LEN, "%s/ten.cnn", tmpdir);
    snprintf(weights10_path, PATH_LEN, "%s/ten.safetensors", tmpdir);
    f = fopen(model10_path, "wb");
    if (!f) return -1;
    fputs("input 1 4 4\nflatten\nlinear out_features=10\n", f);
    fclose(f);
    static float w10[10 * 16], b10[10];
    b10[7] = 5.0f;
    b10[3] = 1.0f;
    cnn_tensor t10[2] = {{.name = "1.weight", .dtype = CNN_F32, .ndim = 2, .shape = {10, 16}, .data = w10},
                         {.name = "1.bias", .dtype = CNN_F32, .ndim = 1, .shape = {10}, .data = b10}};
    const char *meta[2] = {"data", "fashion-mnist"};
    if (cnn_st_save(weights10_path, t10, 2, meta, 1)) return -1;

    /* White: 8×8 RGB (converted to grey and resized to 4×4); black: 4×4 grey. */
    static unsigned char white[8 * 8 * 3], black[16];
    memset(white, 255, sizeof white);
    snprintf(white_path, PATH_LEN, "%s/white.png", tmpdir);
    snprintf(black_path, PATH_LEN, "%s/black.png", tmpdir);
    if (!stbi_write_png(white_path, 8, 8, 3, white, 8 * 3)) return -1;
    if (!stbi_write_png(black_path, 4, 4, 1, black, 4)) return -1;
    return 0;
}

/* softmax(z)[k] in percent, formatted as predict prints a row: "  R. NAME  PP.PP%". */
static char *row(char *buf, size_t cap, int rank, const char *name, int width, const double *z, int n, int k) {
    double max = z[0], sum = 0.0;
    for (int i = 1; i < n; i++)
        if (z[i] > max) max = z[i];
    for (int i = 0; i < n; i++) sum += exp(z[i] - max);
    snprintf(buf, cap, "  %d. %-*s %7.2f%%\n", rank, width, name, 100.0 * exp(z[k] - max) / sum);
    return buf;
}

static void test_predict_two_images(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path, white_path, black_path);
    expect_exit(&r, 0, NULL);
    const double zw[3] = {4, -4, 1}, zb[3] = {0, 0, 1};
    char want[8192], a[128], b[128], c[128], d[128], e[128], f[128];
    snprintf(want, sizeof want, "%s\n%s%s%s\n%s\n%s%s%s", white_path, row(a, 128, 1, "0", 1, zw, 3, 0),
             row(b, 128, 2, "2", 1, zw, 3, 2), row(c, 128, 3, "1", 1, zw, 3, 1), black_path,
             row(d, 128, 1, "2", 1, zb, 3, 2), row(e, 128, 2, "0", 1, zb, 3, 0), row(f, 128, 3, "1", 1, zb, 3, 1));
    if (strcmp(r.out, want)) fail_msg("stdout:\n%s\nexpected:\n%s", r.out, want);
    /* The numbers themselves: softmax([4, -4, 1])[0] = 95.23%, softmax([0, 0, 1])[2] = 57.61%. */
    assert_non_null(strstr(r.out, "1. 0   95.23%"));
    assert_non_null(strstr(r.out, "1. 2   57.61%"));
    assert_string_equal(r.err, "");
}

/* --invert turns white into black: both images swap classes. --top 1 prints one row each. */
static void test_predict_invert_top1(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "predict", "--invert", "--top", "1", "--model", model_path, "--weights", weights_path, white_path,
        black_path);
    expect_exit(&r, 0, NULL);
    char want[4096];
    snprintf(want, sizeof want, "%s\n  1. 2   57.61%%\n\n%s\n  1. 0   95.23%%\n", white_path, black_path);
    if (strcmp(r.out, want)) fail_msg("stdout:\n%s\nexpected:\n%s", r.out, want);
}

/* The data set named by the weights' metadata gives the class names; --data overrides it. */
static void test_predict_class_names_from_metadata(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "predict", "--model", model10_path, "--weights", weights10_path, "--top", "2", black_path);
    expect_exit(&r, 0, NULL);
    assert_contains_all("stdout", r.out, (const char *const[]){"1. Sneaker", "2. Dress", NULL});
    CLI(&r, "predict", "--model", model10_path, "--weights", weights10_path, "--data", "mnist", black_path);
    expect_exit(&r, 0, NULL);
    assert_contains_all("stdout", r.out, (const char *const[]){"1. 7", "2. 3", NULL});
    assert_null(strstr(r.out, "Sneaker"));
}

/* A bad image fails the whole command before anything is printed, even after a good one. */
static void test_predict_bad_image(void **state) {
    (void)state;
    char p[PATH_LEN];
    write_text(tmp_path(p, "not_an_image.png"), "hello\n");
    cli_result r;
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path, white_path, p);
    EXPECT_BAD_INPUT(&r, "cnn predict: ", p, "not a PNG");
    tmp_path(p, "missing_image.png");
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path, p, white_path);
    EXPECT_BAD_INPUT(&r, "cnn predict: ", p);
}

static void test_predict_missing_weights(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "predict", "--model", model_path, white_path);
    EXPECT_BAD_INPUT(&r, "cnn predict: ", "--weights");
    char p[PATH_LEN];
    tmp_path(p, "no_such_weights.safetensors");
    CLI(&r, "predict", "--model", model_path, "--weights", p, white_path);
    EXPECT_BAD_INPUT(&r, "cnn predict: ", p);
}

static void test_predict_bad_options(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path);
    EXPECT_BAD_INPUT(&r, "IMAGE");
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path, "--top", "4", white_path);
    EXPECT_BAD_INPUT(&r, "--top 4", "3 classes");
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path, "--top", "0", white_path);
    EXPECT_BAD_INPUT(&r, "--top 0");
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path, "--top", "x", white_path);
    EXPECT_BAD_INPUT(&r, "--top x");
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path, "--bogus", white_path);
    EXPECT_BAD_INPUT(&r, "unknown option '--bogus'");
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path, white_path, "--data");
    EXPECT_BAD_INPUT(&r, "--data needs a value");
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path, "--data", "nosuch", white_path);
    EXPECT_BAD_INPUT(&r, "nosuch", "unknown data set");
    /* MNIST has 10 classes; the tiny model has 3. */
    CLI(&r, "predict", "--model", model_path, "--weights", weights_path, "--data", "mnist", white_path);
    EXPECT_BAD_INPUT(&r, "mnist", "10 classes", "3 classes");
}

/* Models that cannot classify images: 2 input channels; an output that is not one score per class. */
static void test_predict_bad_models(void **state) {
    (void)state;
    char m[PATH_LEN], w[PATH_LEN];
    write_text(tmp_path(m, "two_channels.cnn"), "input 2 4 4\nrelu\n");
    tmp_path(w, "none.safetensors");
    float x = 0.0f;
    cnn_tensor t = {.name = "unused", .dtype = CNN_F32, .ndim = 1, .shape = {1}, .data = &x};
    assert_int_equal(cnn_st_save(w, &t, 1, NULL, 0), CNN_OK);
    cli_result r;
    CLI(&r, "predict", "--model", m, "--weights", w, white_path);
    EXPECT_BAD_INPUT(&r, m, "2x4x4", "1 (grey) or 3 (RGB)");
    write_text(tmp_path(m, "not_flat.cnn"), "input 1 4 4\nrelu\n");
    CLI(&r, "predict", "--model", m, "--weights", w, white_path);
    EXPECT_BAD_INPUT(&r, m, "1x4x4", "one score per class");
}

static void test_predict_help(void **state) {
    (void)state;
    cli_result r;
    CLI(&r, "predict", "--help");
    expect_exit(&r, 0, NULL);
    assert_contains_all("stdout", r.out, (const char *const[]){"usage: cnn predict", "--invert", "example", NULL});
}

static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_image_XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    return write_predict_files();
}

static int group_teardown(void **state) {
    (void)state;
    tu_remove_tree(tmpdir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_grey_exact),
        cmocka_unit_test(test_png_all_values_exact),
        cmocka_unit_test(test_bmp_grey_exact),
        cmocka_unit_test(test_pgm_binary_exact),
        cmocka_unit_test(test_pgm_ascii_exact),
        cmocka_unit_test(test_ppm_ascii_rgb),
        cmocka_unit_test(test_rgb_to_grey_luminance),
        cmocka_unit_test(test_grey_stored_as_rgb_exact),
        cmocka_unit_test(test_grey_to_rgb_replicated),
        cmocka_unit_test(test_rgb_to_rgb_chw),
        cmocka_unit_test(test_rgba_composited_on_white),
        cmocka_unit_test(test_grey_alpha_composited_on_white),
        cmocka_unit_test(test_palette_transparency_composited),
        cmocka_unit_test(test_resize_constant_stays_constant),
        cmocka_unit_test(test_resize_bilinear_2_to_4),
        cmocka_unit_test(test_resize_bilinear_2x2_to_4x4),
        cmocka_unit_test(test_resize_bilinear_downscale),
        cmocka_unit_test(test_jpeg_roughly),
        cmocka_unit_test(test_decode_from_memory),
        cmocka_unit_test(test_largest_side_allowed),
        cmocka_unit_test(test_error_text_file),
        cmocka_unit_test(test_error_truncated_png),
        cmocka_unit_test(test_error_empty_file),
        cmocka_unit_test(test_error_missing_file),
        cmocka_unit_test(test_error_directory),
        cmocka_unit_test(test_error_huge_png),
        cmocka_unit_test(test_error_huge_bmp),
        cmocka_unit_test(test_error_huge_pgm),
        cmocka_unit_test(test_error_ascii_pgm_bad),
        cmocka_unit_test(test_error_file_too_large),
        cmocka_unit_test(test_error_bad_arguments),
        cmocka_unit_test(test_predict_two_images),
        cmocka_unit_test(test_predict_invert_top1),
        cmocka_unit_test(test_predict_class_names_from_metadata),
        cmocka_unit_test(test_predict_bad_image),
        cmocka_unit_test(test_predict_missing_weights),
        cmocka_unit_test(test_predict_bad_options),
        cmocka_unit_test(test_predict_bad_models),
        cmocka_unit_test(test_predict_help),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
