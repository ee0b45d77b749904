/* Data augmentation (src/io/augment.c).
 *
 * A 3x3 image 1..9 cropped with padding 1: every output is one of the nine 3x3 windows of the 5x5
 * padded images written out below by hand (zero fill and reflect), and over 400 samples each
 * window is drawn. Flips are the image or its mirror written by hand, about half each. On a
 * 2-channel 5x7 image, crop + flip + translate are checked against an independent implementation
 * (pad the array explicitly, slice it, mirror it, shift it) over every candidate draw: each output
 * matches one, the same for both channels. Cutout zeroes one clipped square. The same (seed, epoch,
 * index) gives the same bits on 1 and 2 threads and whatever the batch; another epoch or seed
 * gives others. Parse and check errors name the key.
 */
#include "testutil.h"

#include <string.h>

static const float IMG3[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
#define F (-1.0f) /* the fill used below */

/* The 3x3 image padded by 1, by hand: zeros (here F), and PyTorch's reflect (edge not repeated). */
static const float PAD_ZERO[25] = {F, F, F, F, F,
                                   F, 1, 2, 3, F,
                                   F, 4, 5, 6, F,
                                   F, 7, 8, 9, F,
                                   F, F, F, F, F};
static const float PAD_REFLECT[25] = {5, 4, 5, 6, 5,
                                      2, 1, 2, 3, 2,
                                      5, 4, 5, 6, 5,
                                      8, 7, 8, 9, 8,
                                      5, 4, 5, 6, 5};
static const float MIRROR3[9] = {3, 2, 1, 6, 5, 4, 9, 8, 7};

enum { SAMPLES = 400 };

static int64_t ids[SAMPLES];

static int setup(void **state) {
    (void)state;
    for (int i = 0; i < SAMPLES; i++) ids[i] = i;
    cnn_set_threads(1);
    return 0;
}

/* Augments SAMPLES copies of the c x h x w image img (samples 0..SAMPLES-1 of epoch 0). */
static float *augment_copies(const cnn_augment *a, const float *img, int c, int h, int w, uint64_t seed) {
    const size_t chw = (size_t)c * h * w;
    float *in = malloc(SAMPLES * chw * sizeof *in), *out = malloc(SAMPLES * chw * sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    for (int i = 0; i < SAMPLES; i++) memcpy(in + i * chw, img, chw * sizeof *in);
    assert_status(cnn_augment_batch(a, in, out, SAMPLES, c, h, w, seed, 0, ids), CNN_OK);
    free(in);
    return out;
}

/* Each output is one of the nine windows of the padded image; returns which ones were seen. */
static void check_windows(const float *out, const float padded[25]) {
    int seen[9] = {0};
    for (int s = 0; s < SAMPLES; s++) {
        int match = -1;
        for (int oy = 0; oy < 3 && match < 0; oy++)
            for (int ox = 0; ox < 3 && match < 0; ox++) {
                int same = 1;
                for (int y = 0; y < 3; y++)
                    for (int x = 0; x < 3; x++) same &= out[s * 9 + y * 3 + x] == padded[(y + oy) * 5 + x + ox];
                if (same) match = oy * 3 + ox;
            }
        if (match < 0) fail_msg("sample %d is no window of the padded image", s);
        seen[match]++;
    }
    for (int k = 0; k < 9; k++)
        if (seen[k] < 10) fail_msg("window (%d, %d) drawn %d times of %d", k / 3, k % 3, seen[k], SAMPLES);
}

static void test_crop_zero_by_hand(void **state) {
    (void)state;
    cnn_augment a;
    assert_status(cnn_augment_parse("crop=1", &a), CNN_OK);
    a.fill[0] = F;
    float *out = augment_copies(&a, IMG3, 1, 3, 3, 7);
    check_windows(out, PAD_ZERO);
    free(out);
}

static void test_crop_reflect_by_hand(void **state) {
    (void)state;
    cnn_augment a;
    assert_status(cnn_augment_parse("crop=1:reflect", &a), CNN_OK);
    assert_int_equal(a.reflect, 1);
    a.fill[0] = 100; /* never used by reflect */
    float *out = augment_copies(&a, IMG3, 1, 3, 3, 7);
    check_windows(out, PAD_REFLECT);
    free(out);
}

static void test_flip_by_hand(void **state) {
    (void)state;
    cnn_augment a;
    assert_status(cnn_augment_parse("flip", &a), CNN_OK);
    float *out = augment_copies(&a, IMG3, 1, 3, 3, 3);
    int flipped = 0;
    for (int s = 0; s < SAMPLES; s++) {
        const int same = !memcmp(out + s * 9, IMG3, sizeof IMG3), mirror = !memcmp(out + s * 9, MIRROR3, sizeof IMG3);
        assert_true(same || mirror);
        flipped += mirror;
    }
    /* Binomial(400, 1/2): mean 200, sd 10. */
    if (flipped < 150 || flipped > 250) fail_msg("%d of %d flipped", flipped, SAMPLES);
    free(out);
}

/* The independent implementation: pad channel by channel into an explicit array, slice at
 * (oy, ox), mirror, shift by (ty, tx). */
enum { C2 = 2, H2 = 5, W2 = 7, P2 = 2, T2 = 1 };

static void reference(const float *img, float *out, int reflect, int oy, int ox, int flip, int ty, int tx,
                      const float fill[2]) {
    float padded[H2 + 2 * P2][W2 + 2 * P2], win[H2][W2];
    for (int ch = 0; ch < C2; ch++) {
        for (int y = 0; y < H2 + 2 * P2; y++)
            for (int x = 0; x < W2 + 2 * P2; x++) {
                int sy = y - P2, sx = x - P2;
                if (reflect) {
                    if (sy < 0) sy = -sy;
                    if (sy >= H2) sy = 2 * H2 - 2 - sy;
                    if (sx < 0) sx = -sx;
                    if (sx >= W2) sx = 2 * W2 - 2 - sx;
                }
                const int inside = sy >= 0 && sy < H2 && sx >= 0 && sx < W2;
                padded[y][x] = inside ? img[ch * H2 * W2 + sy * W2 + sx] : fill[ch];
            }
        for (int y = 0; y < H2; y++)
            for (int x = 0; x < W2; x++) win[y][x] = padded[y + oy][flip ? ox + W2 - 1 - x : ox + x];
        for (int y = 0; y < H2; y++)
            for (int x = 0; x < W2; x++) {
                const int sy = y - ty, sx = x - tx;
                out[ch * H2 * W2 + y * W2 + x] = sy >= 0 && sy < H2 && sx >= 0 && sx < W2 ? win[sy][sx] : fill[ch];
            }
    }
}

static void check_against_reference(const char *spec, int reflect) {
    float img[C2 * H2 * W2];
    for (int i = 0; i < C2 * H2 * W2; i++) img[i] = (float)(i + 1);
    cnn_augment a;
    assert_status(cnn_augment_parse(spec, &a), CNN_OK);
    const float fill[2] = {-0.5f, -2.0f};
    a.fill[0] = fill[0], a.fill[1] = fill[1];
    float *out = augment_copies(&a, img, C2, H2, W2, 11);
    int hits[2] = {0}; /* flipped or not */
    for (int s = 0; s < SAMPLES; s++) {
        int found = 0;
        for (int oy = 0; oy <= 2 * P2 && !found; oy++)
            for (int ox = 0; ox <= 2 * P2 && !found; ox++)
                for (int flip = 0; flip < 2 && !found; flip++)
                    for (int ty = -T2; ty <= T2 && !found; ty++)
                        for (int tx = -T2; tx <= T2 && !found; tx++) {
                            float want[C2 * H2 * W2];
                            reference(img, want, reflect, oy, ox, flip, ty, tx, fill);
                            if (!memcmp(want, out + (size_t)s * C2 * H2 * W2, sizeof want)) found = 1, hits[flip]++;
                        }
        if (!found) fail_msg("%s: sample %d matches no crop, flip and shift", spec, s);
    }
    assert_true(hits[0] > 100 && hits[1] > 100);
    free(out);
}

static void test_crop_flip_translate_against_reference(void **state) {
    (void)state;
    check_against_reference("crop=2,flip,translate=1", 0);
    check_against_reference("crop=2:reflect,flip,translate=1", 1);
}

static void test_cutout(void **state) {
    (void)state;
    enum { H = 8, W = 8, S = 4 };
    float img[H * W];
    for (int i = 0; i < H * W; i++) img[i] = 1.0f;
    cnn_augment a;
    assert_status(cnn_augment_parse("cutout=4", &a), CNN_OK);
    float *out = augment_copies(&a, img, 1, H, W, 5);
    int full = 0, partial = 0;
    for (int s = 0; s < SAMPLES; s++) {
        const float *o = out + s * H * W;
        int y0 = H, y1 = -1, x0 = W, x1 = -1, zeros = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                if (o[y * W + x] == 1.0f) continue;
                assert_true(o[y * W + x] == 0.0f);
                zeros++;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
            }
        assert_true(zeros > 0);
        assert_int_equal(zeros, (y1 - y0 + 1) * (x1 - x0 + 1)); /* one rectangle */
        assert_true(y1 - y0 + 1 <= S && x1 - x0 + 1 <= S);
        if (zeros == S * S) full++;
        else partial++, assert_true(y0 == 0 || x0 == 0 || y1 == H - 1 || x1 == W - 1); /* clipped at an edge */
    }
    assert_true(full > 0 && partial > 0);
    free(out);
}

static void test_same_bits_any_threads_and_batches(void **state) {
    (void)state;
    enum { N = 64, C = 3, H = 32, W = 30 }; /* 184,320 floats: enough for the thread pool */
    const size_t chw = (size_t)C * H * W;
    float *in = malloc(N * chw * sizeof *in), *o1 = malloc(N * chw * sizeof *o1), *o2 = malloc(N * chw * sizeof *o2),
          *o3 = malloc(N * chw * sizeof *o3);
    assert_true(in && o1 && o2 && o3);
    for (size_t i = 0; i < N * chw; i++) in[i] = (float)((i * 7919) % 1000) / 100.0f;
    int64_t idx[N];
    for (int i = 0; i < N; i++) idx[i] = 1000 + 3 * i;
    cnn_augment a;
    assert_status(cnn_augment_parse("crop=3:reflect,flip,translate=2,cutout=5", &a), CNN_OK);
    cnn_set_threads(1);
    assert_status(cnn_augment_batch(&a, in, o1, N, C, H, W, 42, 3, idx), CNN_OK);
    cnn_set_threads(2);
    assert_status(cnn_augment_batch(&a, in, o2, N, C, H, W, 42, 3, idx), CNN_OK);
    assert_memory_equal(o1, o2, N * chw * sizeof *o1);
    /* Two batches of 20 and 44: each sample's draws depend on its index, not on its batch. */
    assert_status(cnn_augment_batch(&a, in, o3, 20, C, H, W, 42, 3, idx), CNN_OK);
    assert_status(cnn_augment_batch(&a, in + 20 * chw, o3 + 20 * chw, N - 20, C, H, W, 42, 3, idx + 20), CNN_OK);
    assert_memory_equal(o1, o3, N * chw * sizeof *o1);
    cnn_set_threads(1);
    /* Another epoch, or another seed, draws otherwise. */
    assert_status(cnn_augment_batch(&a, in, o2, N, C, H, W, 42, 4, idx), CNN_OK);
    assert_true(memcmp(o1, o2, N * chw * sizeof *o1) != 0);
    assert_status(cnn_augment_batch(&a, in, o2, N, C, H, W, 43, 3, idx), CNN_OK);
    assert_true(memcmp(o1, o2, N * chw * sizeof *o1) != 0);
    free(in), free(o1), free(o2), free(o3);
}

static void test_parse_format_and_errors(void **state) {
    (void)state;
    cnn_augment a;
    char buf[128];
    assert_status(cnn_augment_parse("flip,crop=4:reflect,cutout=8,translate=2", &a), CNN_OK);
    assert_int_equal(a.crop, 4);
    assert_int_equal(a.reflect, 1);
    assert_int_equal(a.flip, 1);
    assert_int_equal(a.cutout, 8);
    assert_int_equal(a.translate, 2);
    cnn_augment_format(&a, buf, sizeof buf);
    assert_string_equal(buf, "crop=4:reflect,flip,translate=2,cutout=8");
    assert_status(cnn_augment_parse("crop=4:zero", &a), CNN_OK);
    assert_int_equal(a.reflect, 0);
    assert_true(cnn_augment_active(&a));
    cnn_augment_init(&a);
    assert_false(cnn_augment_active(&a));
    assert_int_equal(cnn_augment_format(&a, buf, sizeof buf), 0);

    assert_status(cnn_augment_parse("crop=4,rotate=10", &a), CNN_ERR_ARG);
    assert_error_contains("unknown key 'rotate'");
    assert_status(cnn_augment_parse("crop", &a), CNN_ERR_ARG);
    assert_error_contains("crop");
    assert_status(cnn_augment_parse("crop=0", &a), CNN_ERR_ARG);
    assert_status(cnn_augment_parse("crop=4:mirror", &a), CNN_ERR_ARG);
    assert_error_contains("zero or reflect");
    assert_status(cnn_augment_parse("flip=1", &a), CNN_ERR_ARG);
    assert_error_contains("flip");
    assert_status(cnn_augment_parse("cutout=x", &a), CNN_ERR_ARG);
    assert_error_contains("cutout");
    assert_status(cnn_augment_parse("flip,", &a), CNN_ERR_ARG);
    assert_status(cnn_augment_parse("", &a), CNN_ERR_ARG);

    assert_status(cnn_augment_parse("crop=28", &a), CNN_OK);
    assert_status(cnn_augment_check(&a, 1, 28, 28), CNN_ERR_ARG);
    assert_error_contains("crop=28");
    a.crop = 27;
    assert_status(cnn_augment_check(&a, 1, 28, 28), CNN_OK);
    assert_status(cnn_augment_parse("translate=9", &a), CNN_OK);
    assert_status(cnn_augment_check(&a, 3, 8, 32), CNN_ERR_ARG);
    assert_error_contains("translate=9");
    assert_status(cnn_augment_parse("cutout=9", &a), CNN_OK);
    assert_status(cnn_augment_check(&a, 3, 8, 32), CNN_ERR_ARG);
    assert_error_contains("cutout=9");

    float x[4] = {0}, y[4];
    int64_t i0 = 0;
    assert_status(cnn_augment_batch(&a, x, x, 1, 1, 2, 2, 0, 0, &i0), CNN_ERR_ARG);
    assert_error_contains("overlap");
    (void)y;
}

static void test_fill_is_black(void **state) {
    (void)state;
    cnn_augment a;
    cnn_augment_init(&a);
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.2470f, 0.2435f, 0.2616f};
    cnn_augment_set_fill(&a, 3, mean, std);
    for (int ch = 0; ch < 3; ch++) assert_float_equal(a.fill[ch], -mean[ch] / std[ch], 1e-6);
    cnn_augment_set_fill(&a, 1, mean, std);
    assert_float_equal(a.fill[0], -0.4914 / 0.2470, 1e-6);
    assert_true(a.fill[1] == 0.0f && a.fill[2] == 0.0f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crop_zero_by_hand),
        cmocka_unit_test(test_crop_reflect_by_hand),
        cmocka_unit_test(test_flip_by_hand),
        cmocka_unit_test(test_crop_flip_translate_against_reference),
        cmocka_unit_test(test_cutout),
        cmocka_unit_test(test_same_bits_any_threads_and_batches),
        cmocka_unit_test(test_parse_format_and_errors),
        cmocka_unit_test(test_fill_is_black),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
