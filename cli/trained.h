/* What a checkpoint says about its training: the model text and the data set, for the commands
 * (eval, predict) that take them from the checkpoint when the command line does not give them. */
#ifndef CNN_TRAINED_H
#define CNN_TRAINED_H

#include <stddef.h>

#include "cnn.h"

/* Loads the net from `model_path` when it is not NULL, else parses the text of the checkpoint's
 * "model" metadata (which `cnn train` writes). `name` receives what messages call the model:
 * the path, or "W's model metadata". Errors: the library's (the message names the file), or
 * CNN_ERR_ARG when there is neither (the message says to give --model). */
cnn_status trained_model(const char *model_path, const cnn_st *wst, const char *weights, cnn_net **net, char *name,
                         size_t cap);

/* Warns on stderr ("cnn CMD: warning: W was trained on fashion-mnist, <doing> mnist") when the
 * checkpoint's "data" metadata names another data set than `data_name` (what the data given on the
 * command line turned out to be), or, for two data sets of the same unnamed kind (idx,
 * safetensors), when its "source" and `source` are two different files or directories. Nothing
 * when the checkpoint does not say. Returns 1 if it warned. */
/* Compares the text of the model file `model_path` with the checkpoint's "model" metadata (nothing
 * to compare when either is NULL or the metadata has none). A mismatch is an error ("cnn CMD:
 * --model M differs from the model W was trained with ..."), returning 0, unless `force`
 * (--force-model): then a warning, and 1. */
int trained_model_agrees(const char *cmd, const char *model_path, const cnn_st *wst, const char *weights, int force);

int trained_data_check(const char *cmd, const cnn_st *wst, const char *weights, const char *source,
                       const char *data_name, const char *doing);

#endif
