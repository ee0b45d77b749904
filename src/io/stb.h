/* Internal: the six calls of stb_image that image.c makes, to cnn's own build of it
 * (src/io/stb_image.c), whose functions are otherwise all static. Each is the stbi_ function of
 * the same name without the prefix: see <stb/stb_image.h>. */
#ifndef CNN_IO_STB_H
#define CNN_IO_STB_H

#include <stdint.h>

int cnn_stbi_info_from_memory(const uint8_t *buf, int len, int *x, int *y, int *comp);
uint8_t *cnn_stbi_load_from_memory(const uint8_t *buf, int len, int *x, int *y, int *comp, int req_comp);
uint16_t *cnn_stbi_load_16_from_memory(const uint8_t *buf, int len, int *x, int *y, int *comp, int req_comp);
int cnn_stbi_is_16_bit_from_memory(const uint8_t *buf, int len);
const char *cnn_stbi_failure_reason(void);
void cnn_stbi_image_free(void *pixels);

#endif
