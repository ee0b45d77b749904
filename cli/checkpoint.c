/* Checkpoints: one safetensors file that holds the weights and buffers (batch norm's running
 * statistics) under their state_dict names (so it loads as weights anywhere, PyTorch included), the optimizer state under optim.<param>.<buffer>,
 * and the model text, progress and settings in __metadata__. cnn_st_save writes it atomically. */
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int checkpoint_save(const char *path, const cnn_net *net, const cnn_optim *opt, const char *const *meta, int n_meta,
                    cnn_status *st) {
    const int np = cnn_net_param_count(net), nb = cnn_net_buffer_count(net);
    const int ns = opt ? cnn_optim_state(opt, NULL, 0) : 0;
    cnn_tensor *t = calloc((size_t)(np + nb + ns) + 1, sizeof *t);
    if (!t) {
        *st = CNN_ERR_NOMEM;
        return 0;
    }
    for (int i = 0; i < np; i++) {
        const cnn_param p = cnn_net_param(net, i);
        t[i] = (cnn_tensor){.name = p.name, .dtype = CNN_F32, .ndim = p.ndim, .data = p.data};
        memcpy(t[i].shape, p.shape, sizeof p.shape);
    }
    for (int i = 0; i < nb; i++) t[np + i] = cnn_net_buffer(net, i);
    if (opt) cnn_optim_state(opt, t + np + nb, ns);
    *st = cnn_st_save(path, t, np + nb + ns, meta, n_meta);
    free(t);
    return *st == CNN_OK;
}

void meta_init(meta_list *m) { m->n = 0; }

void meta_add(meta_list *m, const char *key, const char *fmt, ...) {
    if (m->n >= META_CAP) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->values[m->n], sizeof m->values[m->n], fmt, ap);
    va_end(ap);
    m->kv[2 * m->n] = key;
    m->kv[2 * m->n + 1] = m->values[m->n];
    m->n++;
}

void meta_add_ref(meta_list *m, const char *key, const char *value) {
    if (m->n >= META_CAP) return;
    m->kv[2 * m->n] = key;
    m->kv[2 * m->n + 1] = value;
    m->n++;
}
