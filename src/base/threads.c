/* The thread count of the fast kernels. */
#include "base/error.h"
#include "base/threads.h"

#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static int threads;   /* 0: not yet read from CNN_NUM_THREADS */

int cnn_get_threads(void) {
    if (!threads) {
        const char *env = getenv("CNN_NUM_THREADS");
        const long v = env ? strtol(env, NULL, 10) : 1;
        threads = v >= 1 && v <= 1024 ? (int)v : 1;
    }
    return threads;
}

cnn_status cnn_set_threads(int n) {
    if (n < 1 || n > 1024) return cnn_fail(CNN_ERR_ARG, "threads: %d is not in 1..1024", n);
    threads = n;
    return CNN_OK;
}
