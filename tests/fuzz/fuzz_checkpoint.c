/* Fuzz target: a training checkpoint as `cnn train --resume` reads it. The file is parsed
 * (cnn_st_parse); its __metadata__ goes through the resume checks of the CLI (resume_meta_check,
 * cli/resume_meta.c, the code train.c runs); and the file is loaded with cnn_checkpoint_load into
 * a small net with the optimizer the metadata names (SGD when it names none), followed by one
 * step at the metadata's lr. A checkpoint the checks accept must not make the step overflow or
 * the loaded state hold more than its step count allows. */
#include "cnn.h"
#include "fuzz.h"
#include "resume_meta.h"

#include <fcntl.h>
#include <math.h>
#include <string.h>

/* The net of the seed corpus's checkpoints: 0.weight [2,1,3,3], 0.bias [2], 3.weight [3,8],
 * 3.bias [3]. */
static const char MODEL[] = "input 1 4 4\nconv2d out_channels=2 kernel_size=3\nrelu\nflatten\nlinear out_features=3\n";

static cnn_net *net;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!net) FUZZ_CHECK(cnn_net_parse(MODEL, &net) == CNN_OK);
    cnn_st *st = NULL;
    if (cnn_st_parse(data, size, &st) != CNN_OK) {
        FUZZ_CHECK(st == NULL);
        return 0;
    }
    char msg[256];
    msg[0] = '\0';
    const int ok = resume_meta_check(st, msg, sizeof msg);
    FUZZ_CHECK(ok || (msg[0] != '\0' && memchr(msg, '\0', sizeof msg)));
    const char *kind = cnn_st_metadata(st, "optimizer"), *lr_s = cnn_st_metadata(st, "lr");
    double lr = lr_s ? strtod(lr_s, NULL) : 0.01;
    if (!ok || !isfinite(lr) || lr < 0) lr = 0.01;
    const cnn_optim_kind k = kind && !strcmp(kind, "adam")    ? CNN_OPTIM_ADAM
                             : kind && !strcmp(kind, "adamw") ? CNN_OPTIM_ADAMW
                                                              : CNN_OPTIM_SGD;
    cnn_st_free(st);

    /* cnn_checkpoint_load takes a path: the memfd's. */
    const int fd = fuzz_memfd(data, size);
    if (fd < 0) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    cnn_optim_config cfg = cnn_optim_defaults(k, lr);
    cnn_optim *opt = NULL;
    FUZZ_CHECK(cnn_optim_create(net, &cfg, &opt) == CNN_OK);
    cnn_st *loaded = NULL;
    const cnn_status s = cnn_checkpoint_load(path, net, opt, &loaded);
    close(fd);
    if (s == CNN_OK) {
        FUZZ_CHECK(loaded != NULL);
        const int64_t steps = cnn_optim_step_count(opt);
        FUZZ_CHECK(steps >= 0 && steps <= RESUME_MAX_STEPS);
        cnn_net_zero_grad(net);
        cnn_optim_step(opt, lr);
        FUZZ_CHECK(cnn_optim_step_count(opt) == steps + 1);
        cnn_st_free(loaded);
    } else {
        FUZZ_CHECK(loaded == NULL && cnn_last_error()[0] != '\0');
    }
    cnn_optim_free(opt);
    return 0;
}
