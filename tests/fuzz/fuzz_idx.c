/* Fuzz target: the IDX reader on raw files, through the descriptor entry point that cnn_idx_read
 * itself uses (the input is put in a memfd, so fstat, stdio and every check run as on a file). */
#include "cnn.h"
#include "fuzz.h"
#include "io/readers.h"

#ifndef FUZZ_GZ
#define FUZZ_GZ 0
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const int fd = fuzz_memfd(data, size);
    FUZZ_CHECK(fd >= 0);
    uint8_t *out = (uint8_t *)&out;
    int ndim = -1;
    int64_t dims[4];
    const cnn_status s = cnn_idx_read_fd(fd, FUZZ_GZ ? "fuzz.gz" : "fuzz", FUZZ_GZ, &out, &ndim, dims);
    if (s != CNN_OK) {
        FUZZ_CHECK(out == NULL && ndim == 0);
        FUZZ_CHECK(cnn_last_error()[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(out && ndim >= 1 && ndim <= 4);
    int64_t n = 1;
    int empty = 0;
    for (int i = 0; i < ndim; i++) {
        FUZZ_CHECK(dims[i] >= 0 && dims[i] <= UINT32_MAX);
        empty |= dims[i] == 0;
        if (n <= (INT64_C(1) << 31)) n *= dims[i]; /* < 2^63: no overflow */
    }
    if (empty) n = 0;
    FUZZ_CHECK(n <= (INT64_C(1) << 31)); /* the reader's limit on data bytes */
    /* A raw file holds exactly its data after the header. */
    FUZZ_CHECK(FUZZ_GZ || (size_t)n + 4 + 4 * (size_t)ndim == size);
    unsigned sum = 0;
    for (int64_t i = 0; i < n; i++) sum += out[i];
    free(out);
    return (int)(sum & 0);
}
