/* Rebuilding one layer of a net as a net of its own (see layer_rebuild.h). */
#include "layer_rebuild.h"
#include "base/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *model_line(const char *text, int line) {
    const char *p = text;
    for (int i = 1; i < line && p; i++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    size_t n = 0;
    if (p)
        while (p[n] && p[n] != '\n') n++;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* A layer's line without its name= and from= (and its comment), tokens split as the parser splits
 * them (isspace), into out, which has room for strlen(line) + 1. */
static void strip_graph_opts(const char *line, char *out) {
    size_t at = 0;
    out[0] = '\0';
    for (const char *p = line; *p && *p != '#';) {
        while (*p && isspace((unsigned char)*p)) p++;
        const char *q = p;
        while (*q && !isspace((unsigned char)*q) && *q != '#') q++;
        if (q > p && strncmp(p, "name=", 5) && strncmp(p, "from=", 5)) {
            if (at) out[at++] = ' ';
            memcpy(out + at, p, (size_t)(q - p));
            at += (size_t)(q - p);
            out[at] = '\0';
        }
        p = q;
    }
}

/* Copies every parameter and buffer of `dst` (a net of one layer, index `me`) from layer `lname`
 * of `src`, by name; and checks that `dst`'s layer has as many as the original. Returns 0 when one
 * is missing, of another size, or left over. */
static int copy_layer_state(cnn_net *dst, int me, const cnn_net *src, int i, const char *lname) {
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%d.", me);
    const size_t pl = strlen(prefix), ll = strlen(lname);
    char *name = malloc(ll + 256);
    if (!name) return 0;
    int ok = 1, nparams = 0, nbufs = 0;
    for (int p = 0; p < cnn_net_param_count(dst) && ok; p++) {
        const cnn_param b = cnn_net_param(dst, p);
        if (strncmp(b.name, prefix, pl)) continue;
        nparams++;
        snprintf(name, ll + 256, "%s.%s", lname, b.name + pl);
        const cnn_param a = cnn_net_param_by_name(src, name);
        if (!a.data || a.layer != i || a.numel != b.numel) ok = 0;
        else memcpy(b.data, a.data, (size_t)a.numel * sizeof *a.data);
    }
    for (int k = 0; k < cnn_net_buffer_count(dst) && ok; k++) {
        const cnn_tensor b = cnn_net_buffer(dst, k);
        if (strncmp(b.name, prefix, pl)) continue;
        nbufs++;
        snprintf(name, ll + 256, "%s.%s", lname, b.name + pl);
        int found = 0;
        for (int j = 0; j < cnn_net_buffer_count(src) && !found; j++) {
            const cnn_tensor a = cnn_net_buffer(src, j);
            if (strcmp(a.name, name)) continue;
            if (a.dtype != b.dtype || cnn_tensor_numel(&a) != cnn_tensor_numel(&b)) break;
            memcpy(b.data, a.data, (size_t)cnn_tensor_numel(&a) * cnn_dtype_size(a.dtype));
            found = 1;
        }
        ok = found;
    }
    free(name);
    /* As many as the original layer has. */
    int src_params = 0, src_bufs = 0;
    for (int p = 0; p < cnn_net_param_count(src); p++) src_params += cnn_net_param(src, p).layer == i;
    for (int k = 0; k < cnn_net_buffer_count(src); k++) {
        const char *bn = cnn_net_buffer(src, k).name;
        src_bufs += !strncmp(bn, lname, ll) && bn[ll] == '.';
    }
    return ok && nparams == src_params && nbufs == src_bufs;
}

static int same_shape(const cnn_net *a, int va, const cnn_net *b, int vb) {
    int ca[3], cb[3], fa, fb;
    cnn_net_value_shape(a, va, ca, &fa);
    cnn_net_value_shape(b, vb, cb, &fb);
    return ca[0] == cb[0] && ca[1] == cb[1] && ca[2] == cb[2] && fa == fb;
}

cnn_status rebuild_layer(const char *text, const cnn_net *net, int i, int training, cnn_net **one, int *me) {
    *one = NULL;
    const int line_no = cnn_net_layer_line(net, i);
    if (cnn_net_layer_input_count(net, i) != 1)
        return cnn_fail(CNN_ERR_ARG, "layer %d (line %d) reads %d values; only a layer of one input is rebuilt", i,
                        line_no, cnn_net_layer_input_count(net, i));
    const int v0 = cnn_net_layer_input(net, i, 0);
    char *line = model_line(text, line_no);
    char *mtext = line ? malloc(strlen(line) + 80) : NULL;
    if (!mtext) {
        free(line);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory");
    }
    int vin[3], vflat;
    cnn_net_value_shape(net, v0, vin, &vflat);
    const int at = snprintf(mtext, 80, "input %d %d %d\n%s", vin[0], vin[1], vin[2], vflat ? "flatten\n" : "");
    strip_graph_opts(line, mtext + at);
    strcat(mtext, "\n");
    free(line);
    *me = vflat ? 1 : 0;
    cnn_net *n = NULL;
    cnn_status st = cnn_net_parse(mtext, &n);
    free(mtext);
    if (st) {
        char what[64];
        snprintf(what, sizeof what, "line %d rebuilt as a net of its own", line_no);
        cnn_error_prefix(what);
        return st;
    }
    const char *lname = cnn_net_layer_name(net, i);
    const char *why = cnn_net_layer_count(n) != *me + 1                         ? "a net of another number of layers"
                      : cnn_net_layer_kind(n, *me) != cnn_net_layer_kind(net, i) ? "another kind of layer"
                      : !same_shape(n, *me, net, v0)                             ? "another input shape"
                      : !same_shape(n, *me + 1, net, i + 1)                      ? "another output shape"
                      : NULL;
    if (!why && ((st = cnn_net_set_path(n, CNN_PATH_REFERENCE)) || (st = cnn_net_reserve(n, 1)))) {
        cnn_net_free(n);
        return st;
    }
    if (!why && !copy_layer_state(n, *me, net, i, lname)) why = "other parameters or buffers";
    if (why) {
        cnn_net_free(n);
        return cnn_fail(CNN_ERR_ARG, "internal error: layer %d (line %d), rebuilt from its line as a net of its own, "
                        "gives %s than in the whole net", i, line_no, why);
    }
    cnn_net_set_training(n, training);
    *one = n;
    return CNN_OK;
}
