/* Internal: parallel loops that give the same bits for any thread count.
 *
 * PARALLEL_FOR(i, n) runs the iterations of a loop over [0, n) on cnn_get_threads() threads (a loop
 * of one iteration, such as a batch of one, stays on the calling thread: no fork and join).
 * Each iteration must write only its own outputs; anything summed across iterations is summed
 * afterwards, in iteration order, by the caller. */
#ifndef CNN_THREADS_H
#define CNN_THREADS_H

#include "cnn.h"

#ifdef _OPENMP
#define CNN_PRAGMA(x) _Pragma(#x)
#define PARALLEL_FOR(i, n)                                                                            \
    CNN_PRAGMA(omp parallel for schedule(static) num_threads(cnn_get_threads()) if (cnn_get_threads() > 1 && (n) > 1)) \
    for (long i = 0; i < (long)(n); i++)
#else
#define CNN_PRAGMA(x)
#define PARALLEL_FOR(i, n) for (long i = 0; i < (long)(n); i++)
#endif

#endif
