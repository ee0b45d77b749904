/* A net: the model text parsed into layers, the arenas that hold its parameters, gradients and
 * activations, and the forward and backward passes through it (note 001's summary algorithm). */
#include "core/net.h"
#include "core/error.h"
#include "core/rng.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 4096
#define MAX_ELEMS ((int64_t)1 << 28)   /* per-sample activation and per-parameter element limit */
#define MAX_TOTAL ((int64_t)1 << 30)   /* all parameters, and all activations of one sample */

/* ---- parsing ------------------------------------------------------------------------------- */

static int kind_by_name(const char *name, cnn_layer_kind *out) {
    for (int k = 0; k < CNN_LAYER_KIND_COUNT; k++)
        if (!strcmp(layer_ops_of((cnn_layer_kind)k)->name, name)) {
            *out = (cnn_layer_kind)k;
            return 1;
        }
    return 0;
}

/* Splits a line in place into whitespace-separated tokens, stopping at '#'. */
static int tokenize(char *line, char **tok, int cap) {
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    int n = 0;
    for (char *p = line; *p;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        if (n == cap) return -1;
        tok[n++] = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        if (*p) *p++ = '\0';
    }
    return n;
}

static cnn_status parse_input_line(int line, char **tok, int n, int chw[3]) {
    if (n != 4) return cnn_fail(CNN_ERR_PARSE, "line %d: input: expected 'input C H W', got %d value(s)", line, n - 1);
    for (int i = 0; i < 3; i++) {
        char *end;
        const long v = strtol(tok[i + 1], &end, 10);
        if (*end || v < 1 || v > (1L << 20) || !isdigit((unsigned char)tok[i + 1][0]))
            return cnn_fail(CNN_ERR_PARSE, "line %d: input: '%s' is not a positive integer", line, tok[i + 1]);
        chw[i] = (int)v;
    }
    if ((int64_t)chw[0] * chw[1] * chw[2] > MAX_ELEMS)
        return cnn_fail(CNN_ERR_SHAPE, "line %d: input: %dx%dx%d is too large", line, chw[0], chw[1], chw[2]);
    return CNN_OK;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

/* Parses one layer line whose input shape is (c, h, w) into *l. */
static cnn_status parse_layer_line(int line, char **tok, int n, int c, int h, int w, int flat, layer *l) {
    memset(l, 0, sizeof *l);
    if (!kind_by_name(tok[0], &l->kind))
        return cnn_fail(CNN_ERR_PARSE,
                        "line %d: unknown layer '%s' (known: input, conv2d, maxpool2d, avgpool2d, relu, "
                        "leakyrelu, sigmoid, tanh, flatten, linear)", line, tok[0]);
    const layer_ops *ops = layer_ops_of(l->kind);
    l->line = line;
    l->c = c, l->h = h, l->w = w;
    l->in_flat = l->flat = flat;          /* elementwise layers keep their input's rank */
    if (ops->defaults) ops->defaults(l);
    for (int i = 1; i < n; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq || eq == tok[i])
            return cnn_fail(CNN_ERR_PARSE, "line %d: %s: expected key=value, got '%s'", line, ops->name, tok[i]);
        *eq = '\0';
        for (int j = 1; j < i; j++)
            if (!strcmp(tok[j], tok[i]))
                return cnn_fail(CNN_ERR_PARSE, "line %d: %s: option '%s' is given twice", line, ops->name, tok[i]);
        if (!ops->option) return opt_unknown(l, tok[i]);
        cnn_status st = ops->option(l, tok[i], eq + 1);
        if (st) return st;
    }
    l->oc = c, l->oh = h, l->ow = w;      /* shape-preserving unless setup says otherwise */
    if (ops->setup) {
        cnn_status st = ops->setup(l);
        if (st) return st;
    }
    if (l->oh < 1 || l->ow < 1)
        return cnn_fail(CNN_ERR_SHAPE, "line %d: %s: output of input %dx%dx%d would be empty (%dx%dx%d)", line,
                        ops->name, c, h, w, l->oc, l->oh, l->ow);
    if ((int64_t)l->oc * l->oh * l->ow > MAX_ELEMS)
        return cnn_fail(CNN_ERR_SHAPE, "line %d: %s: output %dx%dx%d is too large", line, ops->name, l->oc, l->oh,
                        l->ow);
    for (int p = 0; p < l->nparams; p++) {
        int64_t numel = 1;
        for (int d = 0; d < l->pndim[p] && numel <= MAX_ELEMS; d++) numel *= l->pshape[p][d];
        if (numel > MAX_ELEMS) { /* each factor is ≤ 2^20, so the product stopped before overflowing */
            char shape[96];
            shape_str(shape, sizeof shape, l->pndim[p], l->pshape[p]);
            return cnn_fail(CNN_ERR_SHAPE, "line %d: %s: %s of shape %s is too large (over 2^28 elements)", line,
                            ops->name, p ? "bias" : "weight", shape);
        }
    }
    /* Parameters and outputs are bounded now, so the workspace size cannot overflow. */
    if (ops->workspace && ops->workspace(l, 1) > (size_t)MAX_ELEMS)
        return cnn_fail(CNN_ERR_SHAPE, "line %d: %s: the im2col workspace of %zu floats per sample is too large",
                        line, ops->name, ops->workspace(l, 1));
    return CNN_OK;
}

/* Lays the parameters out in one arena, state_dict order, and names them. */
static cnn_status build_params(cnn_net *net) {
    int count = 0;
    size_t total = 0;
    for (int i = 0; i < net->nlayers; i++) {
        count += net->layers[i].nparams;
        for (int p = 0; p < net->layers[i].nparams; p++) {
            int64_t numel = 1;
            for (int d = 0; d < net->layers[i].pndim[p]; d++) numel *= net->layers[i].pshape[p][d];
            total += (size_t)numel;
        }
    }
    net->nparams = count;
    net->param_total = total;
    net->params = calloc(count ? (size_t)count : 1, sizeof *net->params);
    net->names = calloc(count ? (size_t)count : 1, 24);
    net->pdata = calloc(total ? total : 1, sizeof(float));
    net->gdata = calloc(total ? total : 1, sizeof(float));
    if (!net->params || !net->names || !net->pdata || !net->gdata)
        return cnn_fail(CNN_ERR_NOMEM, "out of memory for %zu parameters", total);
    size_t off = 0;
    int k = 0;
    for (int i = 0; i < net->nlayers; i++) {
        layer *l = &net->layers[i];
        for (int p = 0; p < l->nparams; p++, k++) {
            cnn_param *pr = &net->params[k];
            char *name = net->names + (size_t)k * 24;
            snprintf(name, 24, "%d.%s", i, p == 0 ? "weight" : "bias");
            pr->name = name;
            pr->layer = i;
            pr->ndim = l->pndim[p];
            pr->numel = 1;
            for (int d = 0; d < pr->ndim; d++) {
                pr->shape[d] = l->pshape[p][d];
                pr->numel *= pr->shape[d];
            }
            pr->data = l->param[p] = net->pdata + off;
            pr->grad = l->grad[p] = net->gdata + off;
            off += (size_t)pr->numel;
        }
    }
    return CNN_OK;
}

cnn_status cnn_net_parse(const char *text, cnn_net **out) {
    if (!out) return cnn_fail(CNN_ERR_ARG, "cnn_net_parse: out is NULL");
    *out = NULL;
    if (!text) return cnn_fail(CNN_ERR_ARG, "cnn_net_parse: text is NULL");
    cnn_net *net = calloc(1, sizeof *net);
    char *copy = strdup(text);
    int cap = 16;
    if (net) net->layers = malloc((size_t)cap * sizeof *net->layers);
    if (!net || !copy || !net->layers) {
        free(copy);
        cnn_net_free(net);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory parsing a model");
    }
    cnn_status st = CNN_OK;
    int have_input = 0, c = 0, h = 0, w = 0, flat = 0, lineno = 0;
    int64_t params = 0, acts = 0;
    for (char *line = copy, *next; line && !st; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char *tok[64];
        const int n = tokenize(line, tok, 64);
        if (n < 0) {
            st = cnn_fail(CNN_ERR_PARSE, "line %d: %s: too many options (at most 63)", lineno, line);
            break;
        }
        if (n == 0) continue;
        if (!strcmp(tok[0], "input")) {
            if (have_input) {
                st = cnn_fail(CNN_ERR_PARSE, "line %d: input: given twice", lineno);
                break;
            }
            int chw[3] = {0, 0, 0};
            st = parse_input_line(lineno, tok, n, chw);
            net->in_c = c = chw[0], net->in_h = h = chw[1], net->in_w = w = chw[2];
            have_input = 1;
            continue;
        }
        if (!have_input) {
            st = cnn_fail(CNN_ERR_PARSE, "line %d: the first line must be 'input C H W', got '%s'", lineno, tok[0]);
            break;
        }
        if (net->nlayers == MAX_LAYERS) {
            st = cnn_fail(CNN_ERR_PARSE, "line %d: more than %d layers", lineno, MAX_LAYERS);
            break;
        }
        if (net->nlayers == cap) {
            layer *grown = realloc(net->layers, (size_t)cap * 2 * sizeof *grown);
            if (!grown) {
                st = cnn_fail(CNN_ERR_NOMEM, "out of memory parsing a model");
                break;
            }
            net->layers = grown;
            cap *= 2;
        }
        layer *l = &net->layers[net->nlayers];
        st = parse_layer_line(lineno, tok, n, c, h, w, flat, l);
        if (st) break;
        net->nlayers++;
        c = l->oc, h = l->oh, w = l->ow, flat = l->flat;
        /* Each tensor is bounded by parse_layer_line; bound the sums too, before any allocation. */
        acts += (int64_t)c * h * w;
        for (int p = 0; p < l->nparams; p++) {
            int64_t numel = 1;
            for (int d = 0; d < l->pndim[p]; d++) numel *= l->pshape[p][d];
            params += numel;
        }
        if (params > MAX_TOTAL || acts > MAX_TOTAL)
            st = cnn_fail(CNN_ERR_SHAPE, "line %d: %s: the model is too large: its %s would total %lld elements, over 2^30", lineno,
                          tok[0], params > MAX_TOTAL ? "parameters" : "activations per sample",
                          (long long)(params > MAX_TOTAL ? params : acts));
    }
    free(copy);
    if (!st && !have_input) st = cnn_fail(CNN_ERR_PARSE, "the model has no 'input C H W' line");
    if (!st && net->nlayers == 0) st = cnn_fail(CNN_ERR_PARSE, "the model has no layers");
    if (!st) st = build_params(net);
    if (st) {
        cnn_net_free(net);
        return st;
    }
    *out = net;
    return CNN_OK;
}

cnn_status cnn_net_load(const char *path, cnn_net **out) {
    if (!out || !path) return cnn_fail(CNN_ERR_ARG, "cnn_net_load: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_fail(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    enum { LIMIT = 1 << 20 };
    char *text = malloc(LIMIT + 1);
    if (!text) {
        fclose(f);
        return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", path);
    }
    const size_t len = fread(text, 1, LIMIT + 1, f);
    const int err = ferror(f);
    fclose(f);
    cnn_status st;
    if (err) st = cnn_fail(CNN_ERR_IO, "cannot read");
    else if (len > LIMIT) st = cnn_fail(CNN_ERR_PARSE, "a model file must be under 1 MB");
    else if (memchr(text, '\0', len)) st = cnn_fail(CNN_ERR_PARSE, "a model file is text, but this one holds a NUL byte");
    else {
        text[len] = '\0';
        st = cnn_net_parse(text, out);
    }
    free(text);
    if (st) cnn_error_prefix(path);
    return st;
}

static void free_batch(cnn_net *net) {
    free(net->act);
    free(net->dact);
    free(net->ws);
    free(net->keep);
    free(net->out);
    free(net->d);
    free(net->ref);
    free(net->rout);
    free(net->rd);
    net->act = net->dact = net->ws = net->keep = NULL;
    net->out = net->d = NULL;
    net->ref = NULL;
    net->rout = net->rd = NULL;
    net->cap = 0;
    net->ref_cap = 0;
}

void cnn_net_free(cnn_net *net) {
    if (!net) return;
    free_batch(net);
    free(net->layers);
    free(net->params);
    free(net->names);
    free(net->pdata);
    free(net->gdata);
    free(net);
}

/* ---- facts --------------------------------------------------------------------------------- */

void cnn_net_input_shape(const cnn_net *net, int chw[3]) {
    chw[0] = net->in_c, chw[1] = net->in_h, chw[2] = net->in_w;
}

void cnn_net_output_shape(const cnn_net *net, int chw[3]) {
    const layer *l = &net->layers[net->nlayers - 1];
    chw[0] = l->oc, chw[1] = l->oh, chw[2] = l->ow;
}

int cnn_net_output_is_flat(const cnn_net *net) { return net->layers[net->nlayers - 1].flat; }

int cnn_net_layer_count(const cnn_net *net) { return net->nlayers; }
cnn_layer_kind cnn_net_layer_kind(const cnn_net *net, int i) { return net->layers[i].kind; }
int cnn_net_layer_line(const cnn_net *net, int i) { return net->layers[i].line; }

void cnn_net_layer_shapes(const cnn_net *net, int i, int in_chw[3], int out_chw[3]) {
    const layer *l = &net->layers[i];
    if (in_chw) in_chw[0] = l->c, in_chw[1] = l->h, in_chw[2] = l->w;
    if (out_chw) out_chw[0] = l->oc, out_chw[1] = l->oh, out_chw[2] = l->ow;
}

int cnn_net_param_count(const cnn_net *net) { return net->nparams; }
cnn_param cnn_net_param(const cnn_net *net, int i) { return net->params[i]; }

cnn_param cnn_net_param_by_name(const cnn_net *net, const char *name) {
    for (int i = 0; i < net->nparams; i++)
        if (!strcmp(net->params[i].name, name)) return net->params[i];
    cnn_param none;
    memset(&none, 0, sizeof none);
    return none;
}

/* ---- parameters ---------------------------------------------------------------------------- */

cnn_status cnn_net_init(cnn_net *net, uint64_t seed) {
    if (!net) return cnn_fail(CNN_ERR_ARG, "cnn_net_init: net is NULL");
    uint64_t state = seed;
    for (int i = 0; i < net->nparams; i++) {
        const cnn_param *p = &net->params[i];
        const layer *l = &net->layers[p->layer];
        const double bound = 1.0 / sqrt((double)layer_ops_of(l->kind)->fan_in(l));
        for (int64_t k = 0; k < p->numel; k++) p->data[k] = (float)((2.0 * rng_uniform(&state) - 1.0) * bound);
    }
    return CNN_OK;
}


/* Is `name` of the form "<digits>.<word>", the form of a parameter's name? */
static int looks_like_param(const char *name) {
    const char *p = name;
    while (isdigit((unsigned char)*p)) p++;
    return p != name && *p == '.' && (!strcmp(p + 1, "weight") || !strcmp(p + 1, "bias"));
}

cnn_status cnn_net_load_weights(cnn_net *net, const cnn_st *st, int allow_missing) {
    if (!net || !st) return cnn_fail(CNN_ERR_ARG, "cnn_net_load_weights: NULL argument");
    for (int i = 0; i < cnn_st_count(st); i++) {
        const cnn_tensor *t = cnn_st_tensor(st, i);
        if (looks_like_param(t->name) && !cnn_net_param_by_name(net, t->name).data)
            return cnn_fail(CNN_ERR_SHAPE, "weights: tensor '%s' is not a parameter of this model", t->name);
    }
    for (int i = 0; i < net->nparams; i++) {
        const cnn_param *p = &net->params[i];
        const cnn_tensor *t = cnn_st_find(st, p->name);
        char want[96], got[96];
        shape_str(want, sizeof want, p->ndim, p->shape);
        if (!t) {
            if (allow_missing) continue;
            return cnn_fail(CNN_ERR_MISSING, "weights: tensor '%s' %s (layer %d, %s) is missing", p->name, want,
                            p->layer, layer_ops_of(net->layers[p->layer].kind)->name);
        }
        if (t->dtype != CNN_F32 && t->dtype != CNN_F64)
            return cnn_fail(CNN_ERR_DTYPE, "weights: tensor '%s' is %s, but F32 or F64 is needed", p->name,
                            cnn_dtype_name(t->dtype));
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            shape_str(got, sizeof got, t->ndim, t->shape);
            return cnn_fail(CNN_ERR_SHAPE, "weights: tensor '%s' has shape %s, but layer %d (%s, line %d) needs %s",
                            p->name, got, p->layer, layer_ops_of(net->layers[p->layer].kind)->name,
                            net->layers[p->layer].line, want);
        }
        for (int64_t k = 0; k < p->numel; k++) {
            const double v = t->dtype == CNN_F32 ? ((const float *)t->data)[k] : ((const double *)t->data)[k];
            if (!isfinite(v))
                return cnn_fail(CNN_ERR_NONFINITE, "weights: tensor '%s' holds %s at element %lld", p->name,
                                isnan(v) ? "NaN" : "Inf", (long long)k);
            if (fabs(v) >= 0x1.ffffffp127) /* rounds to Inf as a float: F64 [FLT_MAX + half an ulp, ...) */
                return cnn_fail(CNN_ERR_NONFINITE, "weights: tensor '%s' holds %g at element %lld, beyond float32's "
                                "range (it would be Inf)", p->name, v, (long long)k);
            p->data[k] = (float)v;
        }
    }
    return CNN_OK;
}

cnn_status cnn_net_save_weights(const cnn_net *net, const char *path, int with_grads) {
    if (!net || !path) return cnn_fail(CNN_ERR_ARG, "cnn_net_save_weights: NULL argument");
    const int n = net->nparams * (with_grads ? 2 : 1);
    cnn_tensor *t = calloc(n ? (size_t)n : 1, sizeof *t);
    char *names = calloc(n ? (size_t)n : 1, 32);
    if (!t || !names) {
        free(t);
        free(names);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory saving %s", path);
    }
    for (int i = 0; i < n; i++) {
        const cnn_param *p = &net->params[i % net->nparams];
        const int grad = i >= net->nparams;
        snprintf(names + (size_t)i * 32, 32, grad ? "%s.grad" : "%s", p->name);
        t[i].name = names + (size_t)i * 32;
        t[i].dtype = CNN_F32;
        t[i].ndim = p->ndim;
        memcpy(t[i].shape, p->shape, sizeof p->shape);
        t[i].data = grad ? p->grad : p->data;
    }
    const cnn_status st = cnn_st_save(path, t, n, NULL, 0);
    free(t);
    free(names);
    return st;
}

void cnn_net_set_input_grad(cnn_net *net, int on) { net->no_input_grad = !on; }

void cnn_net_zero_grad(cnn_net *net) { memset(net->gdata, 0, net->param_total * sizeof(float)); }

/* ---- batch arenas -------------------------------------------------------------------------- */

static size_t layer_out_elems(const layer *l) { return (size_t)l->oc * l->oh * l->ow; }
static size_t net_in_elems(const cnn_net *net) { return (size_t)net->in_c * net->in_h * net->in_w; }

/* Double-precision buffers of the reference path: input, each layer's output and its gradient,
 * the input gradient, and a copy of the parameters and their gradients. */
static cnn_status reserve_ref(cnn_net *net, int max_batch) {
    if (net->ref_cap >= max_batch) return CNN_OK;
    const size_t in = net_in_elems(net) * (size_t)max_batch;
    size_t total = 2 * in + 2 * net->param_total;
    for (int i = 0; i < net->nlayers; i++) total += 2 * layer_out_elems(&net->layers[i]) * (size_t)max_batch;
    double *ref = malloc(total * sizeof *ref);
    double **rout = malloc((size_t)net->nlayers * sizeof *rout);
    double **rd = malloc((size_t)net->nlayers * sizeof *rd);
    if (!ref || !rout || !rd) {
        free(ref), free(rout), free(rd);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory for the reference path (%zu doubles)", total);
    }
    free(net->ref), free(net->rout), free(net->rd);
    net->ref = ref, net->rout = rout, net->rd = rd;
    double *at = ref;
    net->rx = at, at += in;
    net->rdx = at, at += in;
    net->rp = at, at += net->param_total;
    net->rg = at, at += net->param_total;
    for (int i = 0; i < net->nlayers; i++) {
        const size_t e = layer_out_elems(&net->layers[i]) * (size_t)max_batch;
        rout[i] = at, at += e;
        rd[i] = at, at += e;
    }
    net->ref_cap = max_batch;
    return CNN_OK;
}

cnn_status cnn_net_reserve(cnn_net *net, int max_batch) {
    if (!net || max_batch < 1) return cnn_fail(CNN_ERR_ARG, "cnn_net_reserve: need a net and max_batch >= 1");
    if (net->path == CNN_PATH_REFERENCE) {
        cnn_status st = reserve_ref(net, max_batch);
        if (st) return st;
    }
    if (net->cap >= max_batch) return CNN_OK;
    size_t acts = 0, ws = 1, keep = 0;
    for (int i = 0; i < net->nlayers; i++) {
        const layer *l = &net->layers[i];
        acts += layer_out_elems(l) * (size_t)max_batch;
        const layer_ops *ops = layer_ops_of(l->kind);
        if (ops->workspace) {
            const size_t need = ops->workspace(l, max_batch);
            if (need > ws) ws = need;
        }
        if (ops->keep_floats) keep += ops->keep_floats(l, max_batch);
    }
    const size_t grad_in = net_in_elems(net) * (size_t)max_batch;
    float *act = malloc(acts * sizeof *act);
    float *dact = malloc((acts + grad_in) * sizeof *dact);
    float *wsp = malloc(ws * sizeof *wsp);
    float *kp = keep ? malloc(keep * sizeof *kp) : NULL;
    float **out = malloc((size_t)net->nlayers * sizeof *out);
    float **d = malloc((size_t)net->nlayers * sizeof *d);
    if (!act || !dact || !wsp || (keep && !kp) || !out || !d) {
        free(act), free(dact), free(wsp), free(kp), free(out), free(d);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory for a batch of %d (%zu floats)", max_batch,
                        acts * 2 + ws + keep);
    }
    free(net->act), free(net->dact), free(net->ws), free(net->keep), free(net->out), free(net->d);
    net->act = act, net->dact = dact, net->ws = wsp, net->keep = kp, net->out = out, net->d = d;
    size_t koff = 0;
    for (int i = 0; i < net->nlayers; i++) {
        layer *l = &net->layers[i];
        const layer_ops *ops = layer_ops_of(l->kind);
        const size_t k = ops->keep_floats ? ops->keep_floats(l, max_batch) : 0;
        l->keep = k ? kp + koff : NULL;
        l->keep_n = k ? max_batch : 0;
        koff += k;
    }
    size_t off = 0;
    for (int i = 0; i < net->nlayers; i++) {
        out[i] = act + off;
        d[i] = dact + grad_in + off;       /* d[i] = dL/d(output of layer i) */
        off += layer_out_elems(&net->layers[i]) * (size_t)max_batch;
    }
    net->cap = max_batch;
    net->n = 0;
    return CNN_OK;
}

cnn_status cnn_net_set_path(cnn_net *net, cnn_path path) {
    if (!net || (path != CNN_PATH_FAST && path != CNN_PATH_REFERENCE))
        return cnn_fail(CNN_ERR_ARG, "cnn_net_set_path: need a net and a known path");
    net->path = path;
    net->n = 0;
    if (path == CNN_PATH_REFERENCE && net->cap) return reserve_ref(net, net->cap);
    return CNN_OK;
}

/* ---- forward and backward ------------------------------------------------------------------ */

/* The layer's parameters (or gradients) inside a double arena laid out like the float one. */
static void ref_params(const cnn_net *net, const layer *l, double *base, double **p) {
    for (int k = 0; k < l->nparams; k++) p[k] = base + (l->param[k] - net->pdata);
}

static void forward_ref(cnn_net *net, const float *x, int n) {
    for (size_t i = 0; i < net_in_elems(net) * (size_t)n; i++) net->rx[i] = x[i];
    for (size_t i = 0; i < net->param_total; i++) net->rp[i] = net->pdata[i];
    const double *in = net->rx;
    for (int i = 0; i < net->nlayers; i++) {
        const layer *l = &net->layers[i];
        double *p[2] = {0};
        ref_params(net, l, net->rp, p);
        layer_ops_of(l->kind)->forward_ref(l, n, in, (const double *const *)p, net->rout[i]);
        const size_t e = layer_out_elems(l) * (size_t)n;
        for (size_t k = 0; k < e; k++) net->out[i][k] = (float)net->rout[i][k];
        in = net->rout[i];
    }
}

static void backward_ref(cnn_net *net, const float *dy, int n) {
    const int last = net->nlayers - 1;
    for (size_t k = 0; k < layer_out_elems(&net->layers[last]) * (size_t)n; k++) net->rd[last][k] = dy[k];
    memset(net->rg, 0, net->param_total * sizeof *net->rg);
    for (int i = last; i >= 0; i--) {
        const layer *l = &net->layers[i];
        double *p[2] = {0}, *g[2] = {0};
        ref_params(net, l, net->rp, p);
        ref_params(net, l, net->rg, g);
        layer_ops_of(l->kind)->backward_ref(l, n, i ? net->rout[i - 1] : net->rx, (const double *const *)p,
                                            net->rout[i], net->rd[i], i ? net->rd[i - 1] : net->rdx, g);
    }
    for (size_t k = 0; k < net->param_total; k++) net->gdata[k] += (float)net->rg[k];
    for (size_t k = 0; k < net_in_elems(net) * (size_t)n; k++) net->dact[k] = (float)net->rdx[k];
}

cnn_status cnn_net_forward(cnn_net *net, const float *x, int n) {
    if (!net || !x) return cnn_fail(CNN_ERR_ARG, "cnn_net_forward: NULL argument");
    if (n < 1 || n > net->cap)
        return cnn_fail(CNN_ERR_ARG, "cnn_net_forward: batch of %d, but cnn_net_reserve made room for %d", n,
                        net->cap);
    if (net->path == CNN_PATH_REFERENCE) {
        forward_ref(net, x, n);
    } else {
        const float *in = x;
        for (int i = 0; i < net->nlayers; i++) {
            const layer *l = &net->layers[i];
            layer_ops_of(l->kind)->forward(l, n, in, net->out[i], net->ws);
            in = net->out[i];
        }
    }
    net->x = x;
    net->n = n;
    return CNN_OK;
}

cnn_status cnn_net_backward(cnn_net *net, const float *dy) {
    if (!net || !dy) return cnn_fail(CNN_ERR_ARG, "cnn_net_backward: NULL argument");
    if (net->n < 1) return cnn_fail(CNN_ERR_ARG, "cnn_net_backward: no forward pass to go back through");
    const int n = net->n;
    if (net->path == CNN_PATH_REFERENCE) {
        backward_ref(net, dy, n);
        return CNN_OK;
    }
    const float *d = dy;
    for (int i = net->nlayers - 1; i >= 0; i--) {
        const layer *l = &net->layers[i];
        float *dx = i ? net->d[i - 1] : net->no_input_grad ? NULL : net->dact;
        if (!dx && l->nparams == 0) break;   /* nothing left to compute */
        layer_ops_of(l->kind)->backward(l, n, i ? net->out[i - 1] : net->x, net->out[i], d, dx, net->ws);
        d = dx;
    }
    return CNN_OK;
}

const float *cnn_net_output(const cnn_net *net) { return net->out[net->nlayers - 1]; }
const float *cnn_net_grad_input(const cnn_net *net) { return net->dact; }
const float *cnn_net_layer_output(const cnn_net *net, int i) { return net->out[i]; }
