/* Internal, for the programs (cli/main.c, bench/bench_cnn.c), not the library: how long OpenMP's
 * threads spin before they sleep.
 *
 * libgomp's threads, when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, spin 300,000 rounds
 * at every barrier before they sleep. On a machine whose CPUs are shared (a virtual machine's, or
 * one running a build beside a training), one of two threads often finds its CPU taken; the other
 * then spins through its time slice at each of a step's barriers, and a 2-thread LeNet-5 step ran
 * up to 50 times slower than on one thread (bench/sched.py --load, BENCHMARKS.md). 10,000 rounds
 * keep the speed of spinning on an idle machine and lose only what a CPU taken away must cost.
 *
 * libgomp reads its environment once, when it is loaded, before main: a setenv in main (or in
 * .preinit_array, whose change glibc's start-up discards before libgomp reads it) comes too late.
 * So the program starts itself again, once, with GOMP_SPINCOUNT set, before it has done anything
 * (same pid, arguments and descriptors). A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept;
 * where /proc/self/exe cannot be run the program goes on with libgomp's default. */
#ifndef CNN_OMP_SPIN_H
#define CNN_OMP_SPIN_H

#include <stdlib.h>
#include <unistd.h>

#define CNN_GOMP_SPINCOUNT "10000"

static inline int cnn_omp_env_set(const char *name) {
    const char *v = getenv(name);
    return v && *v;   /* libgomp ignores an empty value */
}

static inline void cnn_omp_spin(char **argv) {
    if (cnn_omp_env_set("OMP_WAIT_POLICY") || cnn_omp_env_set("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", CNN_GOMP_SPINCOUNT, 1)) return;
    execv("/proc/self/exe", argv);   /* returns only on failure: go on as we are */
}

#endif
