/* Fuzz target: the CIFAR-10 binary reader, one batch file as a split, through the descriptor
 * entry point that cnn_data_open's reader shares its checks and record decoding with. */
#include "cnn.h"
#include "fuzz.h"
#include "io/readers.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const int fd = fuzz_memfd(data, size);
    FUZZ_CHECK(fd >= 0);
    cnn_dataset ds = {0};
    const cnn_status s = cnn_cifar_read_fd(fd, "data_batch_1.bin", &ds);
    if (s == CNN_OK) {
        FUZZ_CHECK(ds.n * 3073 == (int64_t)size && ds.c == 3 && ds.h == 32 && ds.w == 32);
        for (int64_t i = 0; i < ds.n; i++) FUZZ_CHECK(ds.y[i] >= 0 && ds.y[i] <= 9);
        for (int64_t i = 0; i < ds.n * 3072; i++) FUZZ_CHECK(isfinite(ds.x[i]));
    } else {
        FUZZ_CHECK(cnn_last_error()[0] != '\0');
    }
    free(ds.x);
    free(ds.y);
    return 0;
}
