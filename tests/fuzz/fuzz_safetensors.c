/* Fuzz target: the safetensors reader, header and data: from memory (cnn_st_parse) and from a file
 * (cnn_st_load, on a memfd, which reads the length, the header and the data in turn), which must
 * agree on whether the file is valid. A file that parses is then read the ways cnn reads one: every tensor's bytes touched, looked up by name and checked with
 * cnn_st_require, loaded as the weights of a small net (F32 or F64, NaN and Inf rejected), and as
 * the Adam state of that net, as --resume does. */
#include "cnn.h"
#include "fuzz.h"

#include <string.h>

/* The net whose parameters the weights files of the seed corpus hold: 0.weight [2,1,3,3],
 * 0.bias [2], 3.weight [3,8], 3.bias [3]. */
static const char MODEL[] = "input 1 4 4\nconv2d out_channels=2 kernel_size=3\nrelu\nflatten\nlinear out_features=3\n";

static cnn_net *net;
static cnn_optim *opt;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!net) {
        cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_ADAM, 0.001);
        FUZZ_CHECK(cnn_net_parse(MODEL, &net) == CNN_OK);
        FUZZ_CHECK(cnn_optim_create(net, &cfg, &opt) == CNN_OK);
    }
    /* The file reader, through /proc/self/fd: it accepts exactly the files that parse. */
    const int fd = fuzz_memfd(data, size);
    FUZZ_CHECK(fd >= 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    cnn_st *loaded = (cnn_st *)&net;
    const cnn_status ls = cnn_st_load(path, &loaded);
    close(fd);
    FUZZ_CHECK(ls == CNN_OK ? loaded != NULL : loaded == NULL && cnn_last_error()[0] != '\0');

    cnn_st *st = (cnn_st *)&net; /* must be set to NULL on failure */
    const cnn_status s = cnn_st_parse(data, size, &st);
    FUZZ_CHECK((s == CNN_OK) == (ls == CNN_OK));
    if (loaded && st) FUZZ_CHECK(cnn_st_count(loaded) == cnn_st_count(st));
    cnn_st_free(loaded);
    if (s != CNN_OK) {
        FUZZ_CHECK(st == NULL);
        FUZZ_CHECK(cnn_last_error()[0] != '\0');
        return 0;
    }
    const int n = cnn_st_count(st);
    FUZZ_CHECK(n >= 0);
    unsigned sum = 0;
    for (int i = 0; i < n; i++) {
        const cnn_tensor *t = cnn_st_tensor(st, i);
        FUZZ_CHECK(t && t->name && t->ndim >= 0 && t->ndim <= CNN_MAX_DIMS);
        FUZZ_CHECK(cnn_st_find(st, t->name) == t);
        const int64_t numel = cnn_tensor_numel(t);
        const size_t es = cnn_dtype_size(t->dtype);
        FUZZ_CHECK(numel >= 0 && es > 0 && cnn_dtype_name(t->dtype));
        FUZZ_CHECK((uintptr_t)t->data % es == 0);
        const uint8_t *b = t->data;
        for (int64_t k = 0; k < numel * (int64_t)es; k++) sum += b[k];
        const cnn_tensor *r = NULL;
        FUZZ_CHECK(cnn_st_require(st, "fuzz", t->name, t->dtype, t->ndim, t->shape, &r) == CNN_OK && r == t);
        FUZZ_CHECK(cnn_st_require(st, "fuzz", t->name, t->dtype, -1, NULL, NULL) == CNN_OK);
    }
    (void)cnn_st_metadata(st, "format");
    (void)cnn_st_metadata(st, "model");
    (void)cnn_st_find(st, "input");
    (void)cnn_net_load_weights(net, st, 1);
    (void)cnn_optim_load_state(opt, st, 1);
    cnn_st_free(st);
    return (int)(sum & 0); /* sum keeps the reads from being optimised away */
}
