/* Checkpoints: cnn_checkpoint_save (src/net/checkpoint.c) writes the file, the weights, the
 * optimizer's state and __metadata__; here are the string pairs that cnn train puts in that
 * metadata: the model text, progress and settings (cli/train.c). */
#include "checkpoint.h"

#include <stdio.h>

int checkpoint_save(const char *path, const cnn_net *net, const cnn_optim *opt, const char *const *meta, int n_meta,
                    cnn_status *st) {
    *st = cnn_checkpoint_save(path, net, opt, meta, n_meta);
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
