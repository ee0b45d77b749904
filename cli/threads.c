/* The thread count of the commands that compute (train, eval, predict): every core the process may
 * run on, as PyTorch does, unless --threads or CNN_NUM_THREADS says otherwise. The results are the
 * same bits for any count (every reduction runs in a fixed order), so the default costs nothing in
 * reproducibility. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "cli.h"

#include "base/error.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

/* The cores this process may run on: its affinity mask (taskset, cgroups' cpusets), else the
 * cores online. */
static long usable_cores(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

int cli_threads(unsigned long long given) {
    if (given) return cnn_set_threads((int)given) == CNN_OK ? (int)given : 0;
    const char *env = getenv("CNN_NUM_THREADS");
    if (env && *env) {   /* the library reads it, and takes 1 for what it cannot read: refuse that here */
        char *end;
        errno = 0;
        const long v = env[0] >= '0' && env[0] <= '9' ? strtol(env, &end, 10) : 0;
        if (!v || *end || errno || v > 1024) {
            cnn_fail(CNN_ERR_ARG, "CNN_NUM_THREADS=%s: expected a whole number from 1 to 1024", env);
            return 0;
        }
        return cnn_set_threads((int)v) == CNN_OK ? (int)v : 0;
    }
    long n = usable_cores();
    if (n > 1024) n = 1024;
    return cnn_set_threads((int)n) == CNN_OK ? (int)n : 0;
}
