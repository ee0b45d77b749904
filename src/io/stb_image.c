/* stb_image, compiled into cnn from Debian's header (libstb-dev, stb_image 2.27) rather than
 * linked from libstb, so that cnn chooses how it is built:
 *   - only the formats cnn reads (PNG, JPEG, BMP, PNM) and no stdio: less code to trust;
 *   - images over 16384 pixels a side rejected by stb itself as well as by image.c;
 *   - every allocation zeroed. stb 2.27 decodes a JPEG scan with Huffman tables that the file
 *     never defined from whatever the heap held; fuzzing found a file that, depending on earlier
 *     allocations, failed one of stb's assertions (an abort of cnn predict). From zeroed tables
 *     it fails every time, cleanly, with "bad huffman code" (tests/test_image_hostile.c).
 * Every stb function is static; image.c calls the wrappers below (src/io/stb.h). The checks that
 * stb 2.27 lacks on PNG chunk lengths and JPEG Huffman tables are in image.c. */
#include "io/stb.h"

#include <stdlib.h>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_PNM
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS 16384
#define STBI_MALLOC(n) calloc(1, (n))
#define STBI_REALLOC(p, n) realloc((p), (n))
#define STBI_FREE(p) free(p)

/* stb's own code, as Debian ships it: its warnings are not cnn's to fix. (They stay off to the end
 * of the file, as GCC reports unused static functions and some others only there.) */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunknown-warning-option"
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <stb/stb_image.h>

int cnn_stbi_info_from_memory(const uint8_t *buf, int len, int *x, int *y, int *comp) {
    return stbi_info_from_memory(buf, len, x, y, comp);
}

uint8_t *cnn_stbi_load_from_memory(const uint8_t *buf, int len, int *x, int *y, int *comp, int req_comp) {
    return stbi_load_from_memory(buf, len, x, y, comp, req_comp);
}

uint16_t *cnn_stbi_load_16_from_memory(const uint8_t *buf, int len, int *x, int *y, int *comp, int req_comp) {
    return stbi_load_16_from_memory(buf, len, x, y, comp, req_comp);
}

int cnn_stbi_is_16_bit_from_memory(const uint8_t *buf, int len) { return stbi_is_16_bit_from_memory(buf, len); }

const char *cnn_stbi_failure_reason(void) { return stbi_failure_reason(); }

void cnn_stbi_image_free(void *pixels) { stbi_image_free(pixels); }
