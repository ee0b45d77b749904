/* Fuzz target: image decoding as cnn predict does it: cnn_image_load reads the file and hands
 * the bytes to the same decoder as cnn_image_decode, which converts to the model's channels and
 * resizes to its input size. The input's last byte picks that size from SHAPES (so every seed
 * ends with one such byte; decoders ignore what follows an image). */
#include "cnn.h"
#include "fuzz.h"

#include <math.h>

static const int SHAPES[8][3] = {
    {1, 28, 28}, {3, 32, 32}, {1, 1, 1}, {3, 1, 9}, {1, 17, 2}, {3, 5, 5}, {1, 64, 48}, {3, 3, 40},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int *shape = SHAPES[data[size - 1] % 8];
    const int c = shape[0], h = shape[1], w = shape[2];
    const size_t n = (size_t)c * h * w;
    float *out = malloc(n * sizeof *out);
    FUZZ_CHECK(out);
    const cnn_status s = cnn_image_decode(data, size - 1, c, h, w, out);
    if (s == CNN_OK) {
        for (size_t i = 0; i < n; i++) FUZZ_CHECK(out[i] >= -1e-6f && out[i] <= 1.0f + 1e-6f); /* also not NaN */
    } else {
        FUZZ_CHECK(cnn_last_error()[0] != '\0');
    }
    free(out);
    return 0;
}
