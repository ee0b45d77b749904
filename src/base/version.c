/* The library's version, from the macros of include/cnn.h. */
#include "cnn.h"

#define CNN_STR_(x) #x
#define CNN_STR(x) CNN_STR_(x)

const char *cnn_version(void) {
    return CNN_STR(CNN_VERSION_MAJOR) "." CNN_STR(CNN_VERSION_MINOR) "." CNN_STR(CNN_VERSION_PATCH);
}
