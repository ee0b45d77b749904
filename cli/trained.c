/* The model and the data set a checkpoint records (see trained.h). */
#include "trained.h"
#include "cli.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

cnn_status trained_model(const char *model_path, const cnn_st *wst, const char *weights, cnn_net **net, char *name,
                         size_t cap) {
    *net = NULL;
    if (model_path) {
        snprintf(name, cap, "%s", model_path);
        return cnn_net_load(model_path, net);
    }
    snprintf(name, cap, "%s's model metadata", weights);
    const char *text = cnn_st_metadata(wst, "model");
    if (!text)
        return cnn_fail(CNN_ERR_ARG, "%s holds no model text in its metadata (only checkpoints of cnn train do); "
                        "give the model with --model NET.cnn", weights);
    const cnn_status st = cnn_net_parse(text, net);
    if (st) cnn_error_prefix(name);
    return st;
}

/* Whether a and b name the same existing file or directory (*found: whether both exist). */
static int same_path(const char *a, const char *b, int *found) {
    struct stat sa, sb;
    *found = !stat(a, &sa) && !stat(b, &sb);
    return *found && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int trained_data_check(const char *cmd, const cnn_st *wst, const char *weights, const char *source,
                       const char *data_name, const char *doing) {
    const char *trained = cnn_st_metadata(wst, "data");
    if (!trained || !data_name) return 0;
    if (strcmp(trained, data_name)) {
        fprintf(stderr, "cnn %s: warning: %s was trained on %s, %s %s\n", cmd, weights, trained, doing, data_name);
        return 1;
    }
    /* The same kind: for the known data sets that is the same data; other sources are compared by
     * where they are, when both resolve (a relative path from another directory may not). */
    const char *trained_source = cnn_st_metadata(wst, "source");
    int found;
    if (cnn_data_known(trained, NULL, NULL, NULL, NULL, NULL) || !trained_source || !source ||
        !strcmp(trained_source, source) || same_path(trained_source, source, &found) || !found)
        return 0;
    fprintf(stderr, "cnn %s: warning: %s was trained on %s data from %s, %s %s\n", cmd, weights, trained,
            trained_source, doing, source);
    return 1;
}

int trained_model_agrees(const char *cmd, const char *model_path, const cnn_st *wst, const char *weights, int force) {
    const char *saved = wst && model_path ? cnn_st_metadata(wst, "model") : NULL;
    if (!saved) return 1;
    FILE *f = fopen(model_path, "rb");
    if (!f) return 1;   /* the model's own loading says why */
    int same = 1;
    const char *p = saved;
    int ch;
    while (same && (ch = getc(f)) != EOF) same = *p && (unsigned char)*p++ == ch;
    if (same && *p) same = 0;   /* the file is a prefix of the text */
    fclose(f);
    if (same) return 1;
    if (force) {
        fprintf(stderr, "cnn %s: warning: --model %s differs from the model %s was trained with (its \"model\" "
                        "metadata); going on as --force-model asks\n", cmd, model_path, weights);
        return 1;
    }
    cli_error(cmd, "--model %s differs from the model %s was trained with (its \"model\" metadata); leave --model out "
                   "to use the checkpoint's own, or give --force-model to use %s anyway", model_path, weights, model_path);
    return 0;
}
