/* The last error of each thread, as a message that names the layer, the tensor and the shapes. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *cnn_last_error(void) { return last_error; }

cnn_status cnn_fail(cnn_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

void cnn_error_prefix(const char *prefix) {
    char tmp[sizeof last_error];
    memcpy(tmp, last_error, sizeof tmp);
    const int at = snprintf(last_error, sizeof last_error, "%s: ", prefix);
    if (at > 0 && (size_t)at < sizeof last_error)
        snprintf(last_error + at, sizeof last_error - (size_t)at, "%.*s", (int)(sizeof last_error - (size_t)at - 1), tmp);
}

const char *cnn_status_name(cnn_status s) {
    switch (s) {
    case CNN_OK: return "ok";
    case CNN_ERR_ARG: return "invalid argument";
    case CNN_ERR_PARSE: return "parse error";
    case CNN_ERR_SHAPE: return "shape mismatch";
    case CNN_ERR_IO: return "i/o error";
    case CNN_ERR_FORMAT: return "malformed file";
    case CNN_ERR_DTYPE: return "wrong dtype";
    case CNN_ERR_MISSING: return "missing tensor";
    case CNN_ERR_NOMEM: return "out of memory";
    case CNN_ERR_NONFINITE: return "non-finite value";
    }
    return "unknown status";
}
