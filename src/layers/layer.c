/* What the layers share: the table of layer kinds, option parsing, and the pooling options. */
#include "layers/layer.h"
#include "base/error.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const layer_ops *layer_ops_of(cnn_layer_kind kind) {
    static const layer_ops *const table[CNN_LAYER_KIND_COUNT] = {
        [CNN_LAYER_CONV2D] = &conv2d_ops,       [CNN_LAYER_MAXPOOL2D] = &maxpool2d_ops,
        [CNN_LAYER_AVGPOOL2D] = &avgpool2d_ops, [CNN_LAYER_RELU] = &relu_ops,
        [CNN_LAYER_LEAKYRELU] = &leakyrelu_ops, [CNN_LAYER_SIGMOID] = &sigmoid_ops,
        [CNN_LAYER_TANH] = &tanh_ops,           [CNN_LAYER_FLATTEN] = &flatten_ops,
        [CNN_LAYER_LINEAR] = &linear_ops,
        [CNN_LAYER_BATCHNORM2D] = &batchnorm2d_ops, [CNN_LAYER_BATCHNORM1D] = &batchnorm1d_ops,
        [CNN_LAYER_ADAPTIVEAVGPOOL2D] = &adaptiveavgpool2d_ops,
        [CNN_LAYER_ADAPTIVEMAXPOOL2D] = &adaptivemaxpool2d_ops,
        [CNN_LAYER_ADD] = &add_ops,
        [CNN_LAYER_CONCAT] = &concat_ops,
        [CNN_LAYER_DROPOUT] = &dropout_ops,     [CNN_LAYER_GELU] = &gelu_ops,
        [CNN_LAYER_SILU] = &silu_ops,           [CNN_LAYER_SOFTMAX] = &softmax_ops,
        [CNN_LAYER_CONVTRANSPOSE2D] = &convtranspose2d_ops,
    };
    return (unsigned)kind < CNN_LAYER_KIND_COUNT ? table[kind] : NULL;
}

int layer_kind_by_name(const char *name, cnn_layer_kind *out) {
    for (int k = 0; k < CNN_LAYER_KIND_COUNT; k++) {
        const layer_ops *ops = layer_ops_of((cnn_layer_kind)k);
        if (!ops) continue;
        if (!strcasecmp(ops->name, name) || (ops->torch_name && !strcasecmp(ops->torch_name, name))) {
            *out = (cnn_layer_kind)k;
            return 1;
        }
    }
    return 0;
}

const char *cnn_layer_kind_name(cnn_layer_kind kind) {
    const layer_ops *ops = layer_ops_of(kind);
    return ops ? ops->name : NULL;
}

int layer_add_tensor(layer *l, const char *name, cnn_dtype dtype, int trainable, layer_init init, int ndim,
                     int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    layer_tensor *t = &l->t[l->ntensors];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dtype;
    t->trainable = trainable;
    t->init = init;
    t->ndim = ndim;
    const int64_t d[4] = {d0, d1, d2, d3};
    for (int i = 0; i < ndim; i++) t->shape[i] = d[i];
    return l->ntensors++;
}

const char *value_shape_str(char *buf, size_t cap, const value_shape *s) {
    if (s->flat) snprintf(buf, cap, "[%d] (flat)", s->c);
    else snprintf(buf, cap, "%dx%dx%d", s->c, s->h, s->w);
    return buf;
}

size_t layer_in_elems(const layer *l, int k) { return (size_t)l->in[k].c * l->in[k].h * l->in[k].w; }
size_t layer_out_elems(const layer *l) { return (size_t)l->oc * l->oh * l->ow; }

cnn_status layer_fail(const layer *l, cnn_status code, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cnn_fail(code, "line %d: %s: %s", l->line, layer_ops_of(l->kind)->name, msg);
}

static cnn_status bad_value(const layer *l, const char *key, const char *value, const char *why) {
    return cnn_fail(CNN_ERR_PARSE, "line %d: %s: option %s=%s: %s", l->line,
                    layer_ops_of(l->kind)->name, key, value, why);
}

/* Parses a decimal int in [min, 1<<20], the whole of [s, end). */
static int parse_int(const char *s, const char *end, int min, int *out) {
    if (s == end) return 0;
    char buf[32];
    if ((size_t)(end - s) >= sizeof buf) return 0;
    memcpy(buf, s, (size_t)(end - s));
    buf[end - s] = '\0';
    char *stop;
    errno = 0;
    const long v = strtol(buf, &stop, 10);
    if (*stop || errno || v < min || v > (1L << 20) || !(buf[0] >= '0' && buf[0] <= '9')) return 0;
    *out = (int)v;
    return 1;
}

cnn_status opt_int(const layer *l, const char *key, const char *value, int min, int *out) {
    if (!parse_int(value, value + strlen(value), min, out))
        return bad_value(l, key, value, min > 0 ? "expected a positive integer, at most 1048576"
                                                  : "expected an integer >= 0, at most 1048576");
    return CNN_OK;
}

cnn_status opt_pair(const layer *l, const char *key, const char *value, int min, int *a, int *b) {
    const char *comma = strchr(value, ',');
    const char *end = value + strlen(value);
    if (!comma) {
        if (!parse_int(value, end, min, a))
            return bad_value(l, key, value, min > 0 ? "expected a positive integer or a pair h,w, at most 1048576"
                                                    : "expected an integer >= 0 or a pair h,w, at most 1048576");
        *b = *a;
        return CNN_OK;
    }
    if (!parse_int(value, comma, min, a) || !parse_int(comma + 1, end, min, b))
        return bad_value(l, key, value, min > 0 ? "expected a positive integer or a pair h,w, at most 1048576"
                                                : "expected an integer >= 0 or a pair h,w, at most 1048576");
    return CNN_OK;
}

cnn_status opt_bool(const layer *l, const char *key, const char *value, int *out) {
    if (!strcmp(value, "true") || !strcmp(value, "True") || !strcmp(value, "1")) *out = 1;
    else if (!strcmp(value, "false") || !strcmp(value, "False") || !strcmp(value, "0")) *out = 0;
    else return bad_value(l, key, value, "expected true or false");
    return CNN_OK;
}

cnn_status opt_double(const layer *l, const char *key, const char *value, double *out) {
    char *stop;
    errno = 0;
    const double v = strtod(value, &stop);
    if (!*value || *stop || errno || !isfinite(v)) return bad_value(l, key, value, "expected a finite number");
    *out = v;
    return CNN_OK;
}

cnn_status opt_unknown(const layer *l, const char *key) {
    return cnn_fail(CNN_ERR_PARSE, "line %d: %s: unknown option '%s'", l->line, layer_ops_of(l->kind)->name, key);
}

/* ---- pooling ------------------------------------------------------------------------------- */

void pool_defaults(layer *l) { l->o.pool.count_include_pad = 1; }

cnn_status pool_option(layer *l, const char *key, const char *value) {
    pool_opts *o = &l->o.pool;
    if (!strcmp(key, "kernel_size")) return opt_pair(l, key, value, 1, &o->kh, &o->kw);
    if (!strcmp(key, "stride")) return opt_pair(l, key, value, 1, &o->sh, &o->sw);
    if (!strcmp(key, "padding")) return opt_pair(l, key, value, 0, &o->ph, &o->pw);
    if (!strcmp(key, "ceil_mode")) return opt_bool(l, key, value, &o->ceil_mode);
    if (l->kind == CNN_LAYER_AVGPOOL2D && !strcmp(key, "count_include_pad"))
        return opt_bool(l, key, value, &o->count_include_pad);
    return opt_unknown(l, key);
}

int pool_out_size(int in, int k, int s, int p, int ceil_mode) {
    const long long span = (long long)in + 2LL * p - k;
    long long out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (ceil_mode && (out - 1) * s >= (long long)in + p) out--;
    return (int)out;
}

cnn_status pool_setup(layer *l) {
    pool_opts *o = &l->o.pool;
    const char *name = layer_ops_of(l->kind)->name;
    if (o->kh == 0) return cnn_fail(CNN_ERR_PARSE, "line %d: %s: kernel_size= is required", l->line, name);
    if (l->in_flat)
        return cnn_fail(CNN_ERR_SHAPE, "line %d: %s: input [%d] is flat (after flatten or linear); %s needs C H W",
                        l->line, name, l->c, name);
    if (o->sh == 0) o->sh = o->kh, o->sw = o->kw;   /* stride defaults to kernel_size */
    if (2 * o->ph > o->kh || 2 * o->pw > o->kw)
        return cnn_fail(CNN_ERR_PARSE, "line %d: %s: padding %d,%d must be at most half of kernel_size %d,%d",
                        l->line, name, o->ph, o->pw, o->kh, o->kw);
    if (l->h + 2 * o->ph < o->kh || l->w + 2 * o->pw < o->kw)
        return cnn_fail(CNN_ERR_SHAPE, "line %d: %s: input %dx%dx%d padded to %dx%d is smaller than kernel %dx%d",
                        l->line, name, l->c, l->h, l->w, l->h + 2 * o->ph, l->w + 2 * o->pw, o->kh, o->kw);
    l->oc = l->c;
    l->oh = pool_out_size(l->h, o->kh, o->sh, o->ph, o->ceil_mode);
    l->ow = pool_out_size(l->w, o->kw, o->sw, o->pw, o->ceil_mode);
    return CNN_OK;
}

int pool_is_2x2(const layer *l) {
    const pool_opts *o = &l->o.pool;
    return o->kh == 2 && o->kw == 2 && o->sh == 2 && o->sw == 2 && o->ph == 0 && o->pw == 0 &&
           2 * l->oh <= l->h && 2 * l->ow <= l->w;
}
