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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpeg_huffman_table_of_264_codes),
        cmocka_unit_test(test_png_chunks_past_the_end),
        cmocka_unit_test(test_bmp_more_pixels_than_bytes),
        cmocka_unit_test(test_jpeg_undefined_huffman_table),
        cmocka_unit_test(test_crafted_jpeg_huffman_counts),
        cmocka_unit_test(test_crafted_jpeg_too_many_pixels),
        cmocka_unit_test(test_crafted_png),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
