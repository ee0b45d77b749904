/* Internal: setting the thread's error message. */
#ifndef CNN_ERROR_H
#define CNN_ERROR_H

#include "cnn.h"

/* Formats the message of this thread's last error and returns `s`, so that callers write
 *     return cnn_fail(CNN_ERR_SHAPE, "line %d: conv2d: ...", line);                        */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
cnn_status cnn_fail(cnn_status s, const char *fmt, ...);

/* Puts `prefix: ` in front of the current message (for adding a file name to a parser's error). */
void cnn_error_prefix(const char *prefix);

#endif
