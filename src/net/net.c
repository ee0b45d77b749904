/* A net: a graph of layers in topological order, the arenas that hold its parameters, buffers,
 * gradients and activations, and the forward and backward passes through it (note 001's summary
 * algorithm, on note 000's computational graph). */
#include "net/net.h"
#include "base/error.h"
#include "base/rng.h"
#include "base/threads.h"
#include "kernels/kernels.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 4096
#define MAX_ELEMS ((int64_t)1 << 28)   /* per-sample activation and per-tensor element limit */
#define MAX_TOTAL ((int64_t)1 << 30)   /* all parameters, and all activations of one sample */

static const layer_ops *ops_of(const node *nd) { return layer_ops_of(nd->l.kind); }

/* ---- building ------------------------------------------------------------------------------ */

/* Copies s into the name pool; returns its offset, or (size_t)-1 when out of memory. Offsets,
 * not pointers, while the pool may still grow: net_finish turns them into pointers. */
static size_t pool_add(cnn_net *net, const char *s) {
    const size_t len = strlen(s) + 1;
    if (net->pool_len + len > net->pool_cap) {
        size_t cap = net->pool_cap ? net->pool_cap * 2 : 4096;
        while (cap < net->pool_len + len) cap *= 2;
        char *grown = realloc(net->pool, cap);
        if (!grown) return (size_t)-1;
        net->pool = grown;
        net->pool_cap = cap;
    }
    memcpy(net->pool + net->pool_len, s, len);
    net->pool_len += len;
    return net->pool_len - len;
}

cnn_status net_begin(int c, int h, int w, cnn_net **out) {
    *out = NULL;
    if (c < 1 || h < 1 || w < 1 || (int64_t)c * h * w > MAX_ELEMS)
        return cnn_fail(CNN_ERR_SHAPE, "input: %dx%dx%d is not a valid input shape", c, h, w);
    cnn_net *net = calloc(1, sizeof *net);
    if (!net) return cnn_fail(CNN_ERR_NOMEM, "out of memory for a net");
    net->in_c = c, net->in_h = h, net->in_w = w;
    net->training = 1;
    net->values = calloc(1, sizeof *net->values);
    if (!net->values) {
        free(net);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory for a net");
    }
    net->values[0].s = (value_shape){c, h, w, 0};
    *out = net;
    return CNN_OK;
}

static const char *node_name(const cnn_net *net, int i) { return net->pool + net->nodes[i].name_off; }

int net_find(const cnn_net *net, const char *name) {
    if (!strcmp(name, "input")) return 0;
    for (int i = 0; i < net->nlayers; i++)
        if (!strcmp(node_name(net, i), name)) return i + 1;
    return -1;
}

static int64_t tensor_numel(const layer_tensor *t) {
    int64_t numel = 1;
    for (int d = 0; d < t->ndim && numel <= MAX_ELEMS; d++) numel *= t->shape[d];
    return numel;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

/* The parser's checks of one node, once its options are set: setup, then the size limits. */
static cnn_status setup_node(layer *l) {
    const layer_ops *ops = layer_ops_of(l->kind);
    l->oc = l->c, l->oh = l->h, l->ow = l->w;   /* shape-preserving unless setup says otherwise */
    l->flat = l->in_flat;
    if (ops->setup) {
        cnn_status st = ops->setup(l);
        if (st) return st;
    }
    if (l->oc < 1 || l->oh < 1 || l->ow < 1)
        return layer_fail(l, CNN_ERR_SHAPE, "output of input %dx%dx%d would be empty (%dx%dx%d)", l->c, l->h,
                          l->w, l->oc, l->oh, l->ow);
    if ((int64_t)l->oc * l->oh * l->ow > MAX_ELEMS)
        return layer_fail(l, CNN_ERR_SHAPE, "output %dx%dx%d is too large", l->oc, l->oh, l->ow);
    for (int k = 0; k < l->ntensors; k++)
        if (tensor_numel(&l->t[k]) > MAX_ELEMS) { /* each factor is ≤ 2^20, so the product stopped before overflowing */
            char shape[96];
            shape_str(shape, sizeof shape, l->t[k].ndim, l->t[k].shape);
            return layer_fail(l, CNN_ERR_SHAPE, "%s of shape %s is too large (over 2^28 elements)", l->t[k].name,
                              shape);
        }
    /* Parameters and outputs are bounded now: the node's choices, then its workspace, whose size
     * cannot overflow. */
    if (ops->plan) ops->plan(l);
    if (ops->workspace && ops->workspace(l, 1) > (size_t)MAX_ELEMS)
        return layer_fail(l, CNN_ERR_SHAPE, "the workspace of %zu floats per sample is too large",
                          ops->workspace(l, 1));
    return CNN_OK;
}

/* Is `s` a valid node name: 1..NET_MAX_NAME characters of letters, digits, '_', '.', '-'? */
static int valid_name(const char *s) {
    const size_t len = strlen(s);
    if (len == 0 || len > NET_MAX_NAME) return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-') return 0;
    return 1;
}

cnn_status net_add(cnn_net *net, int line, cnn_layer_kind kind, const char *name, const int *from, int nin,
                   char *const *keys, char *const *vals, int nopts) {
    const layer_ops *ops = layer_ops_of(kind);
    if (!ops) return cnn_fail(CNN_ERR_PARSE, "line %d: unknown layer kind %d", line, (int)kind);
    if (net->finished) return cnn_fail(CNN_ERR_ARG, "line %d: the net is already built", line);
    if (net->nlayers == MAX_LAYERS) return cnn_fail(CNN_ERR_PARSE, "line %d: more than %d layers", line, MAX_LAYERS);
    const int min_in = ops->min_inputs ? ops->min_inputs : 1, max_in = ops->max_inputs ? ops->max_inputs : 1;
    if (nin < min_in || nin > max_in) {
        if (min_in == max_in)
            return cnn_fail(CNN_ERR_PARSE, "line %d: %s: takes %d input%s, got %d", line, ops->name, min_in,
                            min_in == 1 ? "" : "s", nin);
        return cnn_fail(CNN_ERR_PARSE, "line %d: %s: takes %d to %d inputs, got %d", line, ops->name, min_in, max_in,
                        nin);
    }
    char index[16];
    snprintf(index, sizeof index, "%d", net->nlayers);
    if (!name) name = index;
    if (!valid_name(name))
        return cnn_fail(CNN_ERR_PARSE, "line %d: %s: name=%s: a name is 1 to %d letters, digits, '_', '.' or '-'",
                        line, ops->name, name, NET_MAX_NAME);
    if (net_find(net, name) >= 0)
        return cnn_fail(CNN_ERR_PARSE, "line %d: %s: name=%s is used twice%s", line, ops->name, name,
                        strcmp(name, "input") ? "" : " ('input' is the net's input)");
    int digits = 1;
    for (const char *p = name; *p; p++) digits &= isdigit((unsigned char)*p) != 0;
    if (digits && strcmp(name, index))
        return cnn_fail(CNN_ERR_PARSE, "line %d: %s: name=%s: a name of digits must be the line's own index (%s)",
                        line, ops->name, name, index);
    if (net->nlayers == net->layer_cap) {
        const int cap = net->layer_cap ? net->layer_cap * 2 : 16;
        node *grown = realloc(net->nodes, (size_t)cap * sizeof *grown);
        value *vgrown = grown ? realloc(net->values, (size_t)(cap + 1) * sizeof *vgrown) : NULL;
        if (grown) net->nodes = grown;
        if (!grown || !vgrown) return cnn_fail(CNN_ERR_NOMEM, "line %d: out of memory building the net", line);
        net->values = vgrown;
        net->layer_cap = cap;
    }
    node *nd = &net->nodes[net->nlayers];
    memset(nd, 0, sizeof *nd);
    layer *l = &nd->l;
    l->kind = kind;
    l->line = line;
    l->nin = nin;
    l->training = net->training;
    for (int k = 0; k < nin; k++) {
        if (from[k] < 0 || from[k] > net->nlayers)
            return cnn_fail(CNN_ERR_ARG, "line %d: %s: input %d is value %d, which is not defined yet", line, ops->name,
                            k, from[k]);
        nd->from[k] = from[k];
        l->in[k] = net->values[from[k]].s;
    }
    l->c = l->in[0].c, l->h = l->in[0].h, l->w = l->in[0].w, l->in_flat = l->in[0].flat;
    if (ops->defaults) ops->defaults(l);
    for (int i = 0; i < nopts; i++) {
        for (int j = 0; j < i; j++)
            if (!strcmp(keys[j], keys[i]))
                return cnn_fail(CNN_ERR_PARSE, "line %d: %s: option '%s' is given twice", line, ops->name, keys[i]);
        if (!ops->option) return opt_unknown(l, keys[i]);
        cnn_status st = ops->option(l, keys[i], vals[i]);
        if (st) return st;
    }
    cnn_status st = setup_node(l);
    if (st) return st;
    /* Bound the sums too, before any allocation. */
    int64_t params = 0, acts = 0;
    for (int i = 0; i <= net->nlayers; i++) {
        const layer *li = &net->nodes[i].l;
        acts += (int64_t)li->oc * li->oh * li->ow;
        for (int k = 0; k < li->ntensors; k++) params += tensor_numel(&li->t[k]);
    }
    if (params > MAX_TOTAL || acts > MAX_TOTAL)
        return cnn_fail(CNN_ERR_SHAPE, "line %d: %s: the model is too large: its %s would total %lld elements, over 2^30",
                        line, ops->name, params > MAX_TOTAL ? "parameters" : "activations per sample",
                        (long long)(params > MAX_TOTAL ? params : acts));
    const size_t off = pool_add(net, name);
    if (off == (size_t)-1) return cnn_fail(CNN_ERR_NOMEM, "line %d: out of memory building the net", line);
    nd->name_off = off;
    value *v = &net->values[net->nlayers + 1];
    memset(v, 0, sizeof *v);
    v->s = (value_shape){l->oc, l->oh, l->ow, l->flat};
    for (int k = 0; k < nin; k++) net->values[from[k]].consumers++;
    net->nlayers++;
    return CNN_OK;
}

/* The state layout (see net.h): trainable F32 tensors, then F32 buffers, then I64 buffers. */
static int tensor_part(const layer_tensor *t) { return t->dtype == CNN_I64 ? 2 : t->trainable ? 0 : 1; }

cnn_status net_finish(cnn_net *net) {
    if (net->finished) return CNN_OK;
    if (net->nlayers == 0) return cnn_fail(CNN_ERR_PARSE, "the model has no layers");
    for (int i = 0; i < net->nlayers - 1; i++)
        if (net->values[i + 1].consumers == 0) {
            const node *nd = &net->nodes[i];
            return cnn_fail(CNN_ERR_PARSE,
                            "line %d: %s '%s': nothing reads its output (only the last line is the net's output; "
                            "name it in a later line's from=)", nd->l.line, ops_of(nd)->name, node_name(net, i));
        }
    /* Count and name every tensor: "<node>.<tensor>". */
    size_t total[3] = {0, 0, 0};
    int count[3] = {0, 0, 0};
    for (int i = 0; i < net->nlayers; i++) {
        const layer *l = &net->nodes[i].l;
        for (int k = 0; k < l->ntensors; k++) {
            count[tensor_part(&l->t[k])]++;
            total[tensor_part(&l->t[k])] += (size_t)tensor_numel(&l->t[k]);
        }
    }
    size_t *name_off = malloc(((size_t)count[0] + count[1] + count[2] + 1) * sizeof *name_off);
    if (!name_off) return cnn_fail(CNN_ERR_NOMEM, "out of memory for the net's tensors");
    int at = 0;
    for (int i = 0; i < net->nlayers; i++) {
        const layer *l = &net->nodes[i].l;
        for (int k = 0; k < l->ntensors; k++) {
            char full[NET_MAX_NAME + 40];
            snprintf(full, sizeof full, "%s.%s", node_name(net, i), l->t[k].name);
            if ((name_off[at++] = pool_add(net, full)) == (size_t)-1) {
                free(name_off);
                return cnn_fail(CNN_ERR_NOMEM, "out of memory for the net's tensors");
            }
        }
    }
    net->nparams = count[0];
    net->nbuffers = count[1] + count[2];
    net->param_total = total[0];
    net->fbuf_total = total[1];
    net->ibuf_total = total[2];
    net->params = calloc(count[0] ? (size_t)count[0] : 1, sizeof *net->params);
    net->buffers = calloc(net->nbuffers ? (size_t)net->nbuffers : 1, sizeof *net->buffers);
    net->pdata = calloc(total[0] ? total[0] : 1, sizeof(float));
    net->gdata = calloc(total[0] ? total[0] : 1, sizeof(float));
    net->fbuf = calloc(total[1] ? total[1] : 1, sizeof(float));
    net->ibuf = calloc(total[2] ? total[2] : 1, sizeof(int64_t));
    if (!net->params || !net->buffers || !net->pdata || !net->gdata || !net->fbuf || !net->ibuf) {
        free(name_off);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory for %zu parameters", total[0]);
    }
    /* Names are pointers from here on: the pool is complete. */
    for (int i = 0; i < net->nlayers; i++) net->nodes[i].name = node_name(net, i);
    net->finished = 1;
    size_t off[3] = {0, 0, 0};
    int idx[3] = {0, 0, 0};
    at = 0;
    for (int i = 0; i < net->nlayers; i++) {
        node *nd = &net->nodes[i];
        layer *l = &nd->l;
        for (int k = 0; k < l->ntensors; k++) {
            const layer_tensor *t = &l->t[k];
            const int part = tensor_part(t);
            const int64_t numel = tensor_numel(t);
            const char *name = net->pool + name_off[at++];
            nd->toff[k] = off[part] + (part >= 1 ? total[0] : 0) + (part == 2 ? total[1] : 0);
            if (part == 0) {
                cnn_param *pr = &net->params[idx[0]++];
                pr->name = name;
                pr->layer = i;
                pr->ndim = t->ndim;
                pr->numel = numel;
                memcpy(pr->shape, t->shape, sizeof pr->shape);
                pr->data = l->param[k] = net->pdata + off[0];
                pr->grad = l->grad[k] = net->gdata + off[0];
            } else {
                cnn_tensor *b = &net->buffers[idx[1] + idx[2]];
                idx[part]++;
                b->name = name;
                b->dtype = t->dtype;
                b->ndim = t->ndim;
                memcpy(b->shape, t->shape, sizeof t->shape);
                if (part == 1) b->data = l->param[k] = net->fbuf + off[1];
                else b->data = l->count[k] = net->ibuf + off[2];
            }
            off[part] += (size_t)numel;
        }
    }
    free(name_off);
    /* Which backward writes each value's gradient in place: the first of its readers in backward
     * order (the last node, lowest slot first); the others get a scratch slot. */
    unsigned char *seen = calloc((size_t)net->nlayers + 1, 1);
    if (!seen) return cnn_fail(CNN_ERR_NOMEM, "out of memory for the net");
    for (int i = net->nlayers - 1; i >= 0; i--) {
        node *nd = &net->nodes[i];
        size_t slot = 0;
        for (int k = 0; k < nd->l.nin; k++) {
            const int v = nd->from[k];
            nd->direct[k] = !seen[v];
            seen[v] = 1;
            if (!nd->direct[k]) {
                nd->scratch[k] = slot;
                slot += layer_in_elems(&nd->l, k);
            }
        }
        if (slot > net->scratch_per_sample) net->scratch_per_sample = slot;
    }
    free(seen);
    cnn_net_set_input_grad(net, 1);
    /* Constant initial values: batch norm's weight and running_var are 1, the rest 0 until
     * cnn_net_init or cnn_net_load_weights. */
    for (int i = 0; i < net->nlayers; i++) {
        layer *l = &net->nodes[i].l;
        for (int k = 0; k < l->ntensors; k++)
            if (l->t[k].init == LAYER_INIT_ONE && l->param[k])
                for (int64_t e = 0; e < tensor_numel(&l->t[k]); e++) l->param[k][e] = 1.0f;
    }
    return CNN_OK;
}

static void free_batch(cnn_net *net) {
    free(net->act);
    free(net->grad);
    free(net->ws);
    free(net->keep);
    free(net->scratch);
    free(net->ref);
    net->act = net->grad = net->ws = net->keep = net->scratch = NULL;
    net->ref = NULL;
    net->cap = 0;
    net->ref_cap = 0;
}

void cnn_net_free(cnn_net *net) {
    if (!net) return;
    free_batch(net);
    free(net->nodes);
    free(net->values);
    free(net->params);
    free(net->buffers);
    free(net->pdata);
    free(net->gdata);
    free(net->fbuf);
    free(net->ibuf);
    free(net->pool);
    free(net->fold);
    free(net);
}

/* ---- facts --------------------------------------------------------------------------------- */

void cnn_net_input_shape(const cnn_net *net, int chw[3]) {
    chw[0] = net->in_c, chw[1] = net->in_h, chw[2] = net->in_w;
}

void cnn_net_output_shape(const cnn_net *net, int chw[3]) {
    const layer *l = &net->nodes[net->nlayers - 1].l;
    chw[0] = l->oc, chw[1] = l->oh, chw[2] = l->ow;
}

int cnn_net_output_is_flat(const cnn_net *net) { return net->nodes[net->nlayers - 1].l.flat; }

int cnn_net_layer_count(const cnn_net *net) { return net->nlayers; }
cnn_layer_kind cnn_net_layer_kind(const cnn_net *net, int i) { return net->nodes[i].l.kind; }
int cnn_net_layer_line(const cnn_net *net, int i) { return net->nodes[i].l.line; }
const char *cnn_net_layer_name(const cnn_net *net, int i) { return net->nodes[i].name; }
int cnn_net_layer_input_count(const cnn_net *net, int i) { return net->nodes[i].l.nin; }
int cnn_net_layer_input(const cnn_net *net, int i, int k) { return net->nodes[i].from[k]; }

void cnn_net_layer_shapes(const cnn_net *net, int i, int in_chw[3], int out_chw[3]) {
    const layer *l = &net->nodes[i].l;
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

int cnn_net_buffer_count(const cnn_net *net) { return net->nbuffers; }
cnn_tensor cnn_net_buffer(const cnn_net *net, int i) { return net->buffers[i]; }

int cnn_net_value_count(const cnn_net *net) { return net->nlayers + 1; }
int cnn_net_value_find(const cnn_net *net, const char *name) { return name ? net_find(net, name) : -1; }
const char *cnn_net_value_name(const cnn_net *net, int v) { return v == 0 ? "input" : net->nodes[v - 1].name; }

void cnn_net_value_shape(const cnn_net *net, int v, int chw[3], int *flat) {
    const value_shape *s = &net->values[v].s;
    chw[0] = s->c, chw[1] = s->h, chw[2] = s->w;
    if (flat) *flat = s->flat;
}

/* Whether value v was left uncomputed by the last forward (inference mode's fused nodes). */
static int not_computed(const cnn_net *net, int v) {
    return net->inference && net->path == CNN_PATH_FAST && net->values[v].folded;
}

const float *cnn_net_value_data(const cnn_net *net, int v) {
    return net->n && !not_computed(net, v) ? net->values[v].act : NULL;
}
const float *cnn_net_value_grad(const cnn_net *net, int v) {
    if (!net->cap || !net->values[v].needs_grad) return NULL;
    return v == net->nlayers ? net->dy : net->values[v].grad;
}

size_t net_state_total(const cnn_net *net) { return net->param_total + net->fbuf_total + net->ibuf_total; }

/* ---- parameters and buffers ---------------------------------------------------------------- */

cnn_status cnn_net_init(cnn_net *net, uint64_t seed) {
    if (!net) return cnn_fail(CNN_ERR_ARG, "cnn_net_init: net is NULL");
    inference_stale(net);
    uint64_t state = seed;
    for (int i = 0; i < net->nlayers; i++) {
        layer *l = &net->nodes[i].l;
        const layer_ops *ops = layer_ops_of(l->kind);
        for (int k = 0; k < l->ntensors; k++) {
            const int64_t numel = tensor_numel(&l->t[k]);
            if (l->count[k]) {
                memset(l->count[k], 0, (size_t)numel * sizeof *l->count[k]);
                continue;
            }
            float *d = l->param[k];
            if (l->t[k].init == LAYER_INIT_FAN_IN) {
                const double bound = 1.0 / sqrt((double)ops->fan_in(l));
                for (int64_t e = 0; e < numel; e++) d[e] = (float)((2.0 * rng_uniform(&state) - 1.0) * bound);
            } else {
                for (int64_t e = 0; e < numel; e++) d[e] = l->t[k].init == LAYER_INIT_ONE ? 1.0f : 0.0f;
            }
        }
    }
    return CNN_OK;
}

/* The node and tensor of a state_dict key "<node>.<tensor>", or −1. */
static int find_tensor(const cnn_net *net, const char *key, int *tensor) {
    for (int i = 0; i < net->nlayers; i++) {
        const size_t len = strlen(net->nodes[i].name);
        if (strncmp(key, net->nodes[i].name, len) || key[len] != '.') continue;
        const layer *l = &net->nodes[i].l;
        for (int k = 0; k < l->ntensors; k++)
            if (!strcmp(key + len + 1, l->t[k].name)) {
                *tensor = k;
                return i;
            }
    }
    return -1;
}

/* Does `key` look like a tensor of this model that it does not have: "<digits>.weight|bias", as
 * a Sequential's parameter, or "<one of its nodes>.<anything>"? */
static int looks_like_tensor(const cnn_net *net, const char *key) {
    const char *p = key;
    while (isdigit((unsigned char)*p)) p++;
    if (p != key && *p == '.' && (!strcmp(p + 1, "weight") || !strcmp(p + 1, "bias"))) return 1;
    for (int i = 0; i < net->nlayers; i++) {
        const size_t len = strlen(net->nodes[i].name);
        if (!strncmp(key, net->nodes[i].name, len) && key[len] == '.' && !strchr(key + len + 1, '.')) return 1;
    }
    return 0;
}

/* Checks tensor t for node i's tensor k (dtype, shape, values) and copies it in when `copy`. */
static cnn_status load_tensor(cnn_net *net, int i, int k, const cnn_tensor *t, const char *name, int copy) {
    layer *l = &net->nodes[i].l;
    const layer_tensor *lt = &l->t[k];
    const char *kind = layer_ops_of(l->kind)->name;
    char want[96], got[96];
    shape_str(want, sizeof want, lt->ndim, lt->shape);
    int same = t->ndim == lt->ndim;
    for (int d = 0; same && d < lt->ndim; d++) same = t->shape[d] == lt->shape[d];
    if (!same) {
        shape_str(got, sizeof got, t->ndim, t->shape);
        return cnn_fail(CNN_ERR_SHAPE, "weights: tensor '%s' has shape %s, but layer %d (%s, line %d) needs %s", name,
                        got, i, kind, l->line, want);
    }
    const int64_t numel = tensor_numel(lt);
    if (lt->dtype == CNN_I64) {
        if (t->dtype != CNN_I64)
            return cnn_fail(CNN_ERR_DTYPE, "weights: tensor '%s' is %s, but I64 is needed", name,
                            cnn_dtype_name(t->dtype));
        for (int64_t e = 0; e < numel; e++) {
            int64_t v;
            memcpy(&v, (const char *)t->data + e * 8, 8);
            if (v < 0)
                return cnn_fail(CNN_ERR_FORMAT, "weights: tensor '%s' holds %lld at element %lld; a count is >= 0",
                                name, (long long)v, (long long)e);
            if (copy) l->count[k][e] = v;
        }
        return CNN_OK;
    }
    if (t->dtype != CNN_F32 && t->dtype != CNN_F64)
        return cnn_fail(CNN_ERR_DTYPE, "weights: tensor '%s' is %s, but F32 or F64 is needed", name,
                        cnn_dtype_name(t->dtype));
    for (int64_t e = 0; e < numel; e++) {
        const double v = t->dtype == CNN_F32 ? ((const float *)t->data)[e] : ((const double *)t->data)[e];
        if (!isfinite(v))
            return cnn_fail(CNN_ERR_NONFINITE, "weights: tensor '%s' holds %s at element %lld", name,
                            isnan(v) ? "NaN" : "Inf", (long long)e);
        if (fabs(v) >= 0x1.ffffffp127) /* rounds to Inf as a float: F64 [FLT_MAX + half an ulp, ...) */
            return cnn_fail(CNN_ERR_NONFINITE, "weights: tensor '%s' holds %g at element %lld, beyond float32's "
                            "range (it would be Inf)", name, v, (long long)e);
        if (copy) l->param[k][e] = (float)v;
    }
    return CNN_OK;
}

cnn_status cnn_net_load_weights(cnn_net *net, const cnn_st *st, int allow_missing) {
    if (!net || !st) return cnn_fail(CNN_ERR_ARG, "cnn_net_load_weights: NULL argument");
    inference_stale(net);
    for (int i = 0; i < cnn_st_count(st); i++) {
        const cnn_tensor *t = cnn_st_tensor(st, i);
        int k;
        if (find_tensor(net, t->name, &k) < 0 && looks_like_tensor(net, t->name))
            return cnn_fail(CNN_ERR_SHAPE, "weights: tensor '%s' is not a parameter or buffer of this model", t->name);
    }
    /* Every tensor is checked before any is copied, so a failed load changes nothing. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < net->nlayers; i++) {
            const layer *l = &net->nodes[i].l;
            for (int k = 0; k < l->ntensors; k++) {
                char name[NET_MAX_NAME + 40];
                snprintf(name, sizeof name, "%s.%s", net->nodes[i].name, l->t[k].name);
                const cnn_tensor *t = cnn_st_find(st, name);
                if (!t) {
                    if (allow_missing) continue;
                    char want[96];
                    shape_str(want, sizeof want, l->t[k].ndim, l->t[k].shape);
                    return cnn_fail(CNN_ERR_MISSING, "weights: tensor '%s' %s (layer %d, %s) is missing", name, want,
                                    i, layer_ops_of(l->kind)->name);
                }
                cnn_status s = load_tensor(net, i, k, t, name, pass == 1);
                if (s) return s;
            }
        }
    return CNN_OK;
}

cnn_status cnn_net_save_weights(const cnn_net *net, const char *path, int with_grads) {
    if (!net || !path) return cnn_fail(CNN_ERR_ARG, "cnn_net_save_weights: NULL argument");
    const int np = net->nparams, n = np * (with_grads ? 2 : 1) + net->nbuffers;
    cnn_tensor *t = calloc(n ? (size_t)n : 1, sizeof *t);
    const size_t stride = NET_MAX_NAME + 48;
    char *names = with_grads ? calloc((size_t)np + 1, stride) : NULL;
    if (!t || (with_grads && !names)) {
        free(t);
        free(names);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory saving %s", path);
    }
    int at = 0;
    for (int i = 0; i < np; i++) {
        const cnn_param *p = &net->params[i];
        t[at++] = (cnn_tensor){.name = p->name, .dtype = CNN_F32, .ndim = p->ndim, .data = p->data};
        memcpy(t[at - 1].shape, p->shape, sizeof p->shape);
    }
    for (int i = 0; i < net->nbuffers; i++) t[at++] = net->buffers[i];
    for (int i = 0; with_grads && i < np; i++) {
        const cnn_param *p = &net->params[i];
        snprintf(names + (size_t)i * stride, stride, "%s.grad", p->name);
        t[at++] = (cnn_tensor){.name = names + (size_t)i * stride, .dtype = CNN_F32, .ndim = p->ndim, .data = p->grad};
        memcpy(t[at - 1].shape, p->shape, sizeof p->shape);
    }
    const cnn_status st = cnn_st_save(path, t, n, NULL, 0);
    free(t);
    free(names);
    return st;
}

/* What needs a gradient: the input, if asked for; and every value downstream of it or of a
 * node with parameters. */
void cnn_net_set_input_grad(cnn_net *net, int on) {
    net->no_input_grad = !on;
    net->values[0].needs_grad = on != 0;
    for (int i = 0; i < net->nlayers; i++) {
        const node *nd = &net->nodes[i];
        int need = 0;
        for (int k = 0; k < nd->l.ntensors; k++) need |= nd->l.t[k].trainable;
        for (int k = 0; k < nd->l.nin; k++) need |= net->values[nd->from[k]].needs_grad;
        net->values[i + 1].needs_grad = need;
    }
}

void cnn_net_zero_grad(cnn_net *net) { memset(net->gdata, 0, net->param_total * sizeof(float)); }

void cnn_net_set_training(cnn_net *net, int on) {
    if (on) inference_leave(net);
    net->training = on != 0;
    for (int i = 0; i < net->nlayers; i++) net->nodes[i].l.training = net->training;
}

int cnn_net_training(const cnn_net *net) { return net->training; }

cnn_status cnn_net_set_inference(cnn_net *net, int on) {
    if (!net) return cnn_fail(CNN_ERR_ARG, "cnn_net_set_inference: NULL net");
    if (!on) {
        inference_leave(net);
        return CNN_OK;
    }
    cnn_status st = inference_plan(net);   /* src/net/inference.c */
    if (st) return st;
    cnn_net_set_training(net, 0);
    net->inference = 1;
    inference_stale(net);   /* folded on the next forward */
    return CNN_OK;
}

int cnn_net_inference(const cnn_net *net) { return net->inference; }

void cnn_net_set_seed(cnn_net *net, uint64_t seed) {
    net->seed = seed;
    net->passes = 0;
}

/* ---- batch arenas -------------------------------------------------------------------------- */

static size_t value_elems(const value *v) { return (size_t)v->s.c * v->s.h * v->s.w; }

/* Double-precision buffers of the reference path: every value and its gradient, the state and the
 * parameters' gradients, and the scratch slots. */
static cnn_status reserve_ref(cnn_net *net, int max_batch) {
    if (net->ref_cap >= max_batch) return CNN_OK;
    size_t total = net_state_total(net) + net->param_total + net->scratch_per_sample * (size_t)max_batch;
    for (int v = 0; v <= net->nlayers; v++) total += 2 * value_elems(&net->values[v]) * (size_t)max_batch;
    double *ref = malloc(total * sizeof *ref);
    if (!ref) return cnn_fail(CNN_ERR_NOMEM, "out of memory for the reference path (%zu doubles)", total);
    free(net->ref);
    net->ref = ref;
    double *at = ref;
    net->rstate = at, at += net_state_total(net);
    net->rgrad = at, at += net->param_total;
    net->rscratch = at, at += net->scratch_per_sample * (size_t)max_batch;
    for (int v = 0; v <= net->nlayers; v++) {
        const size_t e = value_elems(&net->values[v]) * (size_t)max_batch;
        net->values[v].ract = at, at += e;
        net->values[v].rgrad = at, at += e;
    }
    net->ref_cap = max_batch;
    return CNN_OK;
}

/* An add sends its output's gradient unchanged to each input (dx_k = dy). Where an input value is
 * read by that add alone (so the add writes its gradient in place: direct), the value's gradient
 * is the add's output gradient itself: the gradient arena's view is shared, and add's backward skips the
 * copy. One input per add, so that no other gradient is summed into the shared view; nodes from
 * the last one back, so that chains of adds share one view. The last node's output gradient is the
 * caller's array, not a view of the arena: an add there keeps its copies. */
static void alias_add_grads(cnn_net *net) {
    int *readers = calloc((size_t)net->nlayers + 1, sizeof *readers);
    if (!readers) return;   /* no sharing: every add copies, the same values */
    for (int i = 0; i < net->nlayers; i++)
        for (int k = 0; k < net->nodes[i].l.nin; k++) readers[net->nodes[i].from[k]]++;
    for (int i = net->nlayers - 2; i >= 0; i--) {
        const node *nd = &net->nodes[i];
        if (nd->l.kind != CNN_LAYER_ADD) continue;
        for (int k = 0; k < nd->l.nin; k++) {
            const int v = nd->from[k];
            if (v == 0 || readers[v] != 1) continue;
            net->values[v].grad = net->values[i + 1].grad;
            break;
        }
    }
    free(readers);
}

cnn_status cnn_net_reserve(cnn_net *net, int max_batch) {
    if (!net || max_batch < 1) return cnn_fail(CNN_ERR_ARG, "cnn_net_reserve: need a net and max_batch >= 1");
    if (net->path == CNN_PATH_REFERENCE) {
        cnn_status st = reserve_ref(net, max_batch);
        if (st) return st;
    }
    if (net->cap >= max_batch) return CNN_OK;
    size_t acts = 0, grads = 0, ws = 1, keep = 0;
    for (int v = 0; v <= net->nlayers; v++) {
        if (v) acts += value_elems(&net->values[v]) * (size_t)max_batch;
        grads += value_elems(&net->values[v]) * (size_t)max_batch;
    }
    for (int i = 0; i < net->nlayers; i++) {
        const layer *l = &net->nodes[i].l;
        const layer_ops *ops = layer_ops_of(l->kind);
        if (ops->workspace) {
            const size_t need = ops->workspace(l, max_batch);
            if (need > ws) ws = need;
        }
        if (ops->keep_floats) keep += ops->keep_floats(l, max_batch);
    }
    const size_t scratch = net->scratch_per_sample * (size_t)max_batch;
    float *act = malloc(acts * sizeof *act);
    float *grad = malloc(grads * sizeof *grad);
    float *wsp = malloc(ws * sizeof *wsp);
    float *kp = keep ? malloc(keep * sizeof *kp) : NULL;
    float *sc = scratch ? malloc(scratch * sizeof *sc) : NULL;
    if (!act || !grad || !wsp || (keep && !kp) || (scratch && !sc)) {
        free(act), free(grad), free(wsp), free(kp), free(sc);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory for a batch of %d (%zu floats)", max_batch,
                        acts + grads + ws + keep + scratch);
    }
    free(net->act), free(net->grad), free(net->ws), free(net->keep), free(net->scratch);
    net->act = act, net->grad = grad, net->ws = wsp, net->keep = kp, net->scratch = sc;
    size_t koff = 0;
    for (int i = 0; i < net->nlayers; i++) {
        layer *l = &net->nodes[i].l;
        const layer_ops *ops = layer_ops_of(l->kind);
        const size_t k = ops->keep_floats ? ops->keep_floats(l, max_batch) : 0;
        l->keep = k ? kp + koff : NULL;
        l->keep_n = k ? max_batch : 0;
        koff += k;
    }
    size_t aoff = 0, goff = 0;
    for (int v = 0; v <= net->nlayers; v++) {
        const size_t e = value_elems(&net->values[v]) * (size_t)max_batch;
        net->values[v].act = v ? act + aoff : NULL;
        net->values[v].grad = grad + goff;
        if (v) aoff += e;
        goff += e;
    }
    alias_add_grads(net);
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

/* Node i's tensors inside the double state copy, and the parameters' gradients. */
static void ref_tensors(const cnn_net *net, const node *nd, double **p, double **g) {
    for (int k = 0; k < nd->l.ntensors; k++) {
        p[k] = net->rstate + nd->toff[k];
        g[k] = nd->l.t[k].trainable ? net->rgrad + nd->toff[k] : NULL;
    }
}

/* The float state and the double copy: every parameter and buffer, in the state layout. */
static void state_to_ref(cnn_net *net) {
    double *r = net->rstate;
    for (size_t i = 0; i < net->param_total; i++) *r++ = net->pdata[i];
    for (size_t i = 0; i < net->fbuf_total; i++) *r++ = net->fbuf[i];
    for (size_t i = 0; i < net->ibuf_total; i++) *r++ = (double)net->ibuf[i];
}

static void buffers_from_ref(cnn_net *net) {
    const double *r = net->rstate + net->param_total;
    for (size_t i = 0; i < net->fbuf_total; i++) net->fbuf[i] = (float)*r++;
    for (size_t i = 0; i < net->ibuf_total; i++) net->ibuf[i] = (int64_t)*r++;
}

static void forward_ref(cnn_net *net, const float *x, int n) {
    value *in = &net->values[0];
    for (size_t i = 0; i < value_elems(in) * (size_t)n; i++) in->ract[i] = x[i];
    state_to_ref(net);
    for (int i = 0; i < net->nlayers; i++) {
        const node *nd = &net->nodes[i];
        const double *xs[LAYER_MAX_INPUTS];
        double *p[LAYER_MAX_TENSORS] = {0}, *g[LAYER_MAX_TENSORS] = {0};
        for (int k = 0; k < nd->l.nin; k++) xs[k] = net->values[nd->from[k]].ract;
        ref_tensors(net, nd, p, g);
        value *out = &net->values[i + 1];
        ops_of(nd)->forward_ref(&nd->l, n, xs, p, out->ract);
        for (size_t k = 0; k < value_elems(out) * (size_t)n; k++) out->act[k] = (float)out->ract[k];
    }
    buffers_from_ref(net);
}

static void backward_ref(cnn_net *net, const float *dy, int n) {
    value *last = &net->values[net->nlayers];
    for (size_t k = 0; k < value_elems(last) * (size_t)n; k++) last->rgrad[k] = dy[k];
    memset(net->rgrad, 0, net->param_total * sizeof *net->rgrad);
    for (int i = net->nlayers - 1; i >= 0; i--) {
        const node *nd = &net->nodes[i];
        const value *out = &net->values[i + 1];
        if (!out->needs_grad) continue;
        const double *xs[LAYER_MAX_INPUTS];
        double *dxs[LAYER_MAX_INPUTS];
        double *p[LAYER_MAX_TENSORS] = {0}, *g[LAYER_MAX_TENSORS] = {0};
        for (int k = 0; k < nd->l.nin; k++) {
            const value *v = &net->values[nd->from[k]];
            xs[k] = v->ract;
            dxs[k] = !v->needs_grad ? NULL : nd->direct[k] ? v->rgrad : net->rscratch + nd->scratch[k] * (size_t)n;
        }
        ref_tensors(net, nd, p, g);
        ops_of(nd)->backward_ref(&nd->l, n, xs, p, out->ract, out->rgrad, dxs, g);
        for (int k = 0; k < nd->l.nin; k++) {   /* the gradients that meet at a fork add up */
            const value *v = &net->values[nd->from[k]];
            if (!dxs[k] || nd->direct[k]) continue;
            for (size_t e = 0; e < layer_in_elems(&nd->l, k) * (size_t)n; e++) v->rgrad[e] += dxs[k][e];
        }
    }
    for (size_t k = 0; k < net->param_total; k++) net->gdata[k] += (float)net->rgrad[k];
    for (int v = 0; v <= net->nlayers; v++) {
        const value *val = &net->values[v];
        if (!val->needs_grad) continue;
        for (size_t k = 0; k < value_elems(val) * (size_t)n; k++) val->grad[k] = (float)val->rgrad[k];
    }
}

cnn_status cnn_net_forward(cnn_net *net, const float *x, int n) {
    if (!net || !x) return cnn_fail(CNN_ERR_ARG, "cnn_net_forward: NULL argument");
    if (n < 1 || n > net->cap)
        return cnn_fail(CNN_ERR_ARG, "cnn_net_forward: batch of %d, but cnn_net_reserve made room for %d", n,
                        net->cap);
    for (int i = 0; i < net->nlayers; i++) {
        const layer_ops *ops = ops_of(&net->nodes[i]);
        if (ops->check_batch) {
            cnn_status st = ops->check_batch(&net->nodes[i].l, n);
            if (st) return st;
        }
    }
    if (net->training) {   /* each node's random stream for this pass: the same for any thread count */
        net->passes++;
        for (int i = 0; i < net->nlayers; i++) {
            uint64_t s = net->seed ^ (net->passes * 0xD1B54A32D192ED03ull) ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull);
            net->nodes[i].l.seed = rng_next(&s);
        }
    }
    net->values[0].act = (float *)x;   /* read only: no layer writes its input */
    if (net->path == CNN_PATH_REFERENCE) {
        forward_ref(net, x, n);
    } else {
        if (net->inference) inference_refresh(net);
        for (int i = 0; i < net->nlayers; i++) {
            const node *nd = &net->nodes[i];
            if (net->inference && nd->fused) continue;   /* it ran inside the conv2d before it */
            if (net->inference && nd->fold_add_from >= 0)
                net->nodes[i].l.fold_add = net->values[nd->fold_add_from].act;
            const float *xs[LAYER_MAX_INPUTS];
            for (int k = 0; k < nd->l.nin; k++) xs[k] = net->values[nd->from[k]].act;
            ops_of(nd)->forward(&nd->l, n, xs, net->values[(net->inference ? nd->out : i) + 1].act, net->ws);
        }
    }
    net->n = n;
    return CNN_OK;
}

/* g += s over e floats, in chunks on the threads (each element alone: the same bits for any split). */
static void accumulate(float *g, const float *s, size_t e) {
    PARALLEL_FOR(c, layer_chunks(e)) {
        const size_t at = (size_t)c * LAYER_CHUNK;
        add_into(g + at, s + at, layer_chunk_len(c, e));
    }
}

cnn_status cnn_net_backward(cnn_net *net, const float *dy) {
    if (!net || !dy) return cnn_fail(CNN_ERR_ARG, "cnn_net_backward: NULL argument");
    if (net->n < 1) return cnn_fail(CNN_ERR_ARG, "cnn_net_backward: no forward pass to go back through");
    if (net->inference)
        return cnn_fail(CNN_ERR_ARG, "cnn_net_backward: the net is in inference mode (cnn_net_set_inference), which "
                                     "keeps no backward; cnn_net_set_inference(net, 0) or cnn_net_set_training(net, 1) first");
    const int n = net->n;
    if (net->path == CNN_PATH_REFERENCE) {
        backward_ref(net, dy, n);
        net->dy = net->values[net->nlayers].grad;
        return CNN_OK;
    }
    net->dy = dy;   /* the output's gradient is the caller's: no copy */
    for (int i = net->nlayers - 1; i >= 0; i--) {
        const node *nd = &net->nodes[i];
        const value *out = &net->values[i + 1];
        if (!out->needs_grad) continue;
        const float *dout = i == net->nlayers - 1 ? dy : out->grad;
        const float *xs[LAYER_MAX_INPUTS];
        float *dxs[LAYER_MAX_INPUTS];
        for (int k = 0; k < nd->l.nin; k++) {
            const value *v = &net->values[nd->from[k]];
            xs[k] = v->act;
            dxs[k] = !v->needs_grad ? NULL : nd->direct[k] ? v->grad : net->scratch + nd->scratch[k] * (size_t)n;
        }
        ops_of(nd)->backward(&nd->l, n, xs, out->act, dout, dxs, net->ws);
        for (int k = 0; k < nd->l.nin; k++) {   /* the gradients that meet at a fork add up */
            const value *v = &net->values[nd->from[k]];
            if (!dxs[k] || nd->direct[k]) continue;
            accumulate(v->grad, dxs[k], layer_in_elems(&nd->l, k) * (size_t)n);
        }
    }
    return CNN_OK;
}

const float *cnn_net_output(const cnn_net *net) { return net->values[net->nlayers].act; }
const float *cnn_net_grad_input(const cnn_net *net) { return net->values[0].grad; }
const float *cnn_net_layer_output(const cnn_net *net, int i) {
    return not_computed(net, i + 1) ? NULL : net->values[i + 1].act;
}
