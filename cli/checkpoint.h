/* Checkpoints and their metadata. */
#ifndef CNN_CHECKPOINT_H
#define CNN_CHECKPOINT_H

#include <stdarg.h>

#include "cnn.h"

#define META_CAP 64

/* String pairs for a safetensors __metadata__, with room for the values. The model text is the
 * one long value, so it is added by pointer with meta_add_ref. */
typedef struct meta_list {
    const char *kv[2 * META_CAP];
    char values[META_CAP][128];
    int n;
} meta_list;

void meta_init(meta_list *m);
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void meta_add(meta_list *m, const char *key, const char *fmt, ...);
/* Adds a value that the caller keeps alive until the list is used. */
void meta_add_ref(meta_list *m, const char *key, const char *value);

/* cnn_checkpoint_save: the weights, the optimizer's state (opt may be NULL) and the metadata (whose
 * "format" and "step" the library writes) to `path`, atomically. Returns 1, or 0 with *st set (the
 * message in cnn_last_error()). */
int checkpoint_save(const char *path, const cnn_net *net, const cnn_optim *opt, const char *const *meta, int n_meta,
                    cnn_status *st);

#endif
