/* Checkpoints: the state of a training run in one safetensors file, so that a program can stop and
 * resume exactly. The file holds
 *   - the weights and buffers (batch norm's running statistics) under their state_dict names, so
 *     that it loads as weights anywhere, PyTorch included (which leaves out the optim.* keys);
 *   - the optimizer's state under optim.<param>.<buffer> (cnn_optim_state);
 *   - in __metadata__, format=cnn-checkpoint-1, the optimizer's step count as "step" (Adam's t,
 *     which its state means nothing without), and whatever the caller adds: the cnn tool writes
 *     the model text, the data set, the position in the run and its settings (cli/train.c).
 * cnn_st_save writes it atomically. */
#include "net/net.h"
#include "base/error.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The metadata keys the library writes itself. */
static int reserved_key(const char *key) { return !strcmp(key, "format") || !strcmp(key, "step"); }

cnn_status cnn_checkpoint_save(const char *path, const cnn_net *net, const cnn_optim *opt, const char *const *meta,
                               int n_meta) {
    if (!path || !net || n_meta < 0 || (n_meta > 0 && !meta))
        return cnn_fail(CNN_ERR_ARG, "cnn_checkpoint_save: NULL %s", !path ? "path" : !net ? "net" : "meta");
    if (opt && optim_net(opt) != net)
        return cnn_fail(CNN_ERR_ARG, "cnn_checkpoint_save: the optimizer was created over another net");
    for (int i = 0; i < n_meta; i++)
        if (meta[2 * i] && reserved_key(meta[2 * i]))
            return cnn_fail(CNN_ERR_ARG, "cnn_checkpoint_save: metadata key '%s' is the library's own", meta[2 * i]);

    const int np = cnn_net_param_count(net), nb = cnn_net_buffer_count(net);
    const int ns = opt ? cnn_optim_state(opt, NULL, 0) : 0;
    const int nm = n_meta + 1 + (opt != NULL);
    cnn_tensor *t = calloc((size_t)(np + nb + ns) + 1, sizeof *t);
    const char **kv = calloc(2 * (size_t)nm, sizeof *kv);
    if (!t || !kv) {
        free(t), free(kv);
        return cnn_fail(CNN_ERR_NOMEM, "cnn_checkpoint_save: out of memory");
    }
    for (int i = 0; i < np; i++) {
        const cnn_param p = cnn_net_param(net, i);
        t[i] = (cnn_tensor){.name = p.name, .dtype = CNN_F32, .ndim = p.ndim, .data = p.data};
        memcpy(t[i].shape, p.shape, sizeof p.shape);
    }
    for (int i = 0; i < nb; i++) t[np + i] = cnn_net_buffer(net, i);
    if (opt) cnn_optim_state(opt, t + np + nb, ns);

    char step[24];
    int k = 0;
    kv[k++] = "format", kv[k++] = CNN_CHECKPOINT_FORMAT;
    if (opt) {
        snprintf(step, sizeof step, "%" PRId64, cnn_optim_step_count(opt));
        kv[k++] = "step", kv[k++] = step;
    }
    if (n_meta) memcpy(kv + k, meta, 2 * (size_t)n_meta * sizeof *kv);
    const cnn_status s = cnn_st_save(path, t, np + nb + ns, kv, nm);
    free(t), free(kv);
    return s;
}

/* The step count in "step": decimal digits only, within int64. */
static int parse_steps(const char *v, int64_t *out) {
    if (!v || *v < '0' || *v > '9') return 0;
    errno = 0;
    char *end;
    const long long n = strtoll(v, &end, 10);
    if (errno || *end) return 0;
    *out = n;
    return 1;
}

cnn_status cnn_checkpoint_load(const char *path, cnn_net *net, cnn_optim *opt, cnn_st **out) {
    if (out) *out = NULL;
    if (!path || !net) return cnn_fail(CNN_ERR_ARG, "cnn_checkpoint_load: NULL %s", path ? "net" : "path");
    if (opt && optim_net(opt) != net)
        return cnn_fail(CNN_ERR_ARG, "cnn_checkpoint_load: the optimizer was created over another net");
    cnn_st *st = NULL;
    cnn_status s = cnn_st_load(path, &st);
    if (s) return s;
    const char *format = cnn_st_metadata(st, "format");
    int64_t steps = 0;
    if (!format || strcmp(format, CNN_CHECKPOINT_FORMAT)) {
        s = cnn_fail(CNN_ERR_FORMAT, "%s: not a cnn checkpoint (no __metadata__ format=%s); weights alone load "
                     "with cnn_net_load_weights", path, CNN_CHECKPOINT_FORMAT);
    } else if (opt && !cnn_st_metadata(st, "step")) {
        s = cnn_fail(CNN_ERR_MISSING, "%s: the checkpoint holds no optimizer state (no \"step\" in __metadata__)",
                     path);
    } else if (opt && !parse_steps(cnn_st_metadata(st, "step"), &steps)) {
        s = cnn_fail(CNN_ERR_FORMAT, "%s: __metadata__ \"step\" is '%.40s', not a step count", path,
                     cnn_st_metadata(st, "step"));
    } else if ((s = cnn_net_load_weights(net, st, 0)) || (opt && (s = cnn_optim_load_state(opt, st, steps)))) {
        cnn_error_prefix(path);
    }
    if (s || !out) cnn_st_free(st);
    else *out = st;
    return s;
}
