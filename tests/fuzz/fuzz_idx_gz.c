/* Fuzz target: the IDX reader on gzipped files (zlib's gz* stream over the memfd), as
 * cnn_idx_read reads a name ending in .gz. */
#define FUZZ_GZ 1
#include "fuzz_idx.c"
