/* Fuzz target: the matrix syntax of cnn explain (cli/matrix.c), one matrix and a stack, on bytes
 * that need not end in NUL (matrix_parse_n) and on the NUL-terminated text the command line gives
 * (matrix_parse, matrix_parse_stack). */
#include "fuzz.h"
#include "matrix.h"

#include <math.h>
#include <string.h>

#define CAP 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    double out[CAP];
    char err[96];
    int rows = -1, cols = -1, count = -1;
    /* Exactly `size` bytes on the heap, so that ASan sees any read past them. */
    char *bytes = malloc(size ? size : 1);
    FUZZ_CHECK(bytes);
    if (size) memcpy(bytes, data, size);
    if (matrix_parse_n(bytes, size, out, CAP, &rows, &cols, err, sizeof err) == 0) {
        FUZZ_CHECK(rows >= 1 && cols >= 1 && rows * cols <= CAP);
        for (int i = 0; i < rows * cols; i++) FUZZ_CHECK(isfinite(out[i]));
    } else {
        FUZZ_CHECK(rows == 0 && cols == 0 && memchr(err, '\0', sizeof err));
    }
    free(bytes);

    char *text = malloc(size + 1);
    FUZZ_CHECK(text);
    memcpy(text, data, size);
    text[size] = '\0';
    if (matrix_parse(text, out, CAP, &rows, &cols, err, sizeof err) == 0)
        FUZZ_CHECK(rows >= 1 && cols >= 1 && rows * cols <= CAP);
    if (matrix_parse_stack(text, out, CAP, &count, &rows, &cols, err, sizeof err) == 0)
        FUZZ_CHECK(count >= 1 && rows >= 1 && cols >= 1 && count * rows * cols <= CAP);
    /* A small buffer for the message and for the numbers: both must be cut short, not overrun. */
    char tiny[5];
    memset(tiny, 'x', sizeof tiny);
    if (matrix_parse_stack(text, out, 4, &count, &rows, &cols, tiny, sizeof tiny) != 0)
        FUZZ_CHECK(memchr(tiny, '\0', sizeof tiny));
    free(text);
    return 0;
}
