/* Gradient check of every node, in double: the reference backward against central differences of
 * the reference forward, and the fast path against the reference.
 *
 * For one node with output y(x₀, x₁, ..., p) and a fixed random dy, take L = Σ y·dy, so that
 * dL/dy = dy, as the notes take ∂L/∂O as given. Then for each checked element v of an input or a
 * parameter:
 *   numeric = (L(v + h) − L(v − h)) / 2h,  error = |analytic − numeric| / max(1, |analytic|, |numeric|).
 * Inputs are a shuffled even grid of values in (−1, 1), over all of a node's inputs together, so no
 * two cells of a pooling window tie and no relu input sits within h of its kink (none is 0, even
 * for an odd number of cells). Each node is
 * checked in the net's mode (batch norm in training mode goes through the batch statistics).
 */
#include "net/net.h"
#include "base/error.h"
#include "base/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEP 1e-6
#define LIMIT ((size_t)1 << 26)

typedef struct check {
    const layer *l;
    const layer_ops *ops;
    int n;
    size_t in[LAYER_MAX_INPUTS], out; /* elements over the batch */
    size_t tn[LAYER_MAX_TENSORS];
    double *x[LAYER_MAX_INPUTS], *dx[LAYER_MAX_INPUTS], *y, *dy;
    double *p[LAYER_MAX_TENSORS], *g[LAYER_MAX_TENSORS];
} check;

static double objective(check *c) {
    c->ops->forward_ref(c->l, c->n, (const double *const *)c->x, c->p, c->y);
    double s = 0.0;
    for (size_t i = 0; i < c->out; i++) s += c->y[i] * c->dy[i];
    return s;
}

/* The worst error over the checked elements of v (analytic gradient a). */
static double check_tensor(check *c, double *v, const double *a, int64_t numel, int64_t max_checks,
                           uint64_t *rng, int64_t *checked) {
    const int all = max_checks <= 0 || numel <= max_checks;
    const int64_t count = all ? numel : max_checks;
    double worst = 0.0;
    for (int64_t k = 0; k < count; k++) {
        const int64_t i = all ? k : (int64_t)(rng_next(rng) % (uint64_t)numel);
        const double saved = v[i];
        v[i] = saved + STEP;
        const double lp = objective(c);
        v[i] = saved - STEP;
        const double lm = objective(c);
        v[i] = saved;
        const double num = (lp - lm) / (2 * STEP);
        double den = fabs(a[i]) > fabs(num) ? fabs(a[i]) : fabs(num);
        den = den > 1.0 ? den : 1.0;
        const double err = fabs(a[i] - num) / den;
        if (err > worst || isnan(err)) worst = err;
    }
    *checked = count;
    return worst;
}

static double rel_l2(const float *f, const double *d, size_t count) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < count; i++) {
        num += ((double)f[i] - d[i]) * ((double)f[i] - d[i]);
        den += d[i] * d[i];
    }
    return sqrt(num) / (sqrt(den) > 1e-12 ? sqrt(den) : 1e-12);
}

static cnn_gradcheck_row *add_row(cnn_gradcheck_row *rows, int cap, int *nrows, int li, const char *tensor) {
    if (*nrows >= cap) return NULL;
    cnn_gradcheck_row *r = &rows[(*nrows)++];
    memset(r, 0, sizeof *r);
    r->layer = li;
    snprintf(r->tensor, sizeof r->tensor, "%s", tensor);
    return r;
}

static cnn_status check_node(cnn_net *net, int li, int n, uint64_t *rng, int64_t max_checks,
                             cnn_gradcheck_row *rows, int cap, int *nrows) {
    layer *l = &net->nodes[li].l;
    check c = {.l = l, .ops = layer_ops_of(l->kind), .n = n};
    size_t ins = 0, tens = 0, fbufs = 0;
    for (int k = 0; k < l->nin; k++) ins += c.in[k] = (size_t)n * layer_in_elems(l, k);
    c.out = (size_t)n * layer_out_elems(l);
    for (int k = 0; k < l->ntensors; k++) {
        c.tn[k] = 1;
        for (int d = 0; d < l->t[k].ndim; d++) c.tn[k] *= (size_t)l->t[k].shape[d];
        tens += c.tn[k];
        if (!l->t[k].trainable) fbufs += c.tn[k];
    }
    const size_t ws = c.ops->workspace ? c.ops->workspace(l, n) : 0;
    if (ins + c.out + tens > LIMIT)
        return cnn_fail(CNN_ERR_SHAPE, "gradcheck: layer %d (%s, line %d) is too large to check (%zu elements; "
                        "the limit is 2^26): check a smaller model or batch", li, c.ops->name, l->line,
                        ins + c.out + tens);
    const size_t keep = c.ops->keep_floats ? c.ops->keep_floats(l, n) : 0;
    const size_t doubles = 2 * ins + 2 * c.out + 2 * tens;
    const size_t floats = 2 * ins + 2 * c.out + ws + keep + 1;
    double *dbuf = calloc(doubles, sizeof *dbuf);
    float *fbuf = calloc(floats, sizeof *fbuf);
    double *saved = calloc(fbufs + 1, sizeof *saved);   /* the node's buffers, which the fast forward updates */
    size_t *perm = malloc((ins ? ins : 1) * sizeof *perm);
    if (!dbuf || !fbuf || !saved || !perm) {
        free(dbuf), free(fbuf), free(saved), free(perm);
        return cnn_fail(CNN_ERR_NOMEM, "gradcheck: out of memory for layer %d", li);
    }
    double *at = dbuf;
    for (int k = 0; k < l->nin; k++) c.x[k] = at, at += c.in[k];
    for (int k = 0; k < l->nin; k++) c.dx[k] = at, at += c.in[k];
    c.y = at, at += c.out;
    c.dy = at, at += c.out;
    for (int k = 0; k < l->ntensors; k++) {
        c.p[k] = at, at += c.tn[k];
        if (l->t[k].trainable) c.g[k] = at;
        at += c.tn[k];
        for (size_t i = 0; i < c.tn[k]; i++) c.p[k][i] = l->count[k] ? (double)l->count[k][i] : l->param[k][i];
    }
    /* x: a shuffled grid over all inputs (distinct values, none near 0); dy: uniform in (−1, 1). */
    for (size_t i = 0; i < ins; i++) perm[i] = i;
    for (size_t i = ins; i > 1; i--) {
        const size_t j = (size_t)(rng_next(rng) % i);
        const size_t t = perm[i - 1];
        perm[i - 1] = perm[j], perm[j] = t;
    }
    /* (2p + 1)/even − 1 is never 0, a relu's kink, when the denominator is even. */
    const size_t even = ins + (ins & 1);
    size_t cell = 0;
    for (int k = 0; k < l->nin; k++)
        for (size_t i = 0; i < c.in[k]; i++, cell++)
            c.x[k][i] = (double)(float)((2.0 * (double)perm[cell] + 1.0) / (double)even - 1.0);  /* exact in float too */
    for (size_t i = 0; i < c.out; i++) c.dy[i] = (double)(float)(2.0 * rng_uniform(rng) - 1.0);

    /* Analytic gradients of the reference path. The forwards below may update the copies of the
     * buffers (batch norm's running statistics); the net's own stay as they are. */
    c.ops->forward_ref(l, n, (const double *const *)c.x, c.p, c.y);
    c.ops->backward_ref(l, n, (const double *const *)c.x, c.p, c.y, c.dy, c.dx, c.g);

    /* The fast path on the same numbers, with the node's buffers put back afterwards. */
    const float *xf[LAYER_MAX_INPUTS];
    float *dxf[LAYER_MAX_INPUTS];
    float *fat = fbuf;
    for (int k = 0; k < l->nin; k++) {
        float *xk = fat;
        for (size_t i = 0; i < c.in[k]; i++) xk[i] = (float)c.x[k][i];
        xf[k] = xk, fat += c.in[k];
    }
    for (int k = 0; k < l->nin; k++) dxf[k] = fat, fat += c.in[k];
    float *yf = fat, *dyf = yf + c.out, *wsf = dyf + c.out, *keepf = wsf + ws;
    for (size_t i = 0; i < c.out; i++) dyf[i] = (float)c.dy[i];
    size_t s = 0;
    for (int k = 0; k < l->ntensors; k++) {
        if (l->t[k].trainable) memset(l->grad[k], 0, c.tn[k] * sizeof(float));
        else
            for (size_t i = 0; i < c.tn[k]; i++, s++) saved[s] = l->count[k] ? (double)l->count[k][i] : l->param[k][i];
    }
    float *net_keep = l->keep;
    const int net_keep_n = l->keep_n;
    l->keep = keep ? keepf : NULL, l->keep_n = keep ? n : 0;
    c.ops->forward(l, n, xf, yf, wsf);
    c.ops->backward(l, n, xf, yf, dyf, dxf, wsf);
    l->keep = net_keep, l->keep_n = net_keep_n;
    s = 0;
    for (int k = 0; k < l->ntensors; k++)
        for (size_t i = 0; !l->t[k].trainable && i < c.tn[k]; i++, s++) {
            if (l->count[k]) l->count[k][i] = (int64_t)saved[s];
            else l->param[k][i] = (float)saved[s];
        }

    cnn_gradcheck_row *r = add_row(rows, cap, nrows, li, "output");   /* forward: fast against reference */
    if (r) r->fast_rel_err = rel_l2(yf, c.y, c.out);
    for (int k = 0; k < l->nin; k++) {
        char name[32];
        if (l->nin == 1) snprintf(name, sizeof name, "input");
        else snprintf(name, sizeof name, "input.%d", k);
        if (!(r = add_row(rows, cap, nrows, li, name))) break;
        r->max_rel_err = check_tensor(&c, c.x[k], c.dx[k], (int64_t)c.in[k], max_checks, rng, &r->checked);
        r->fast_rel_err = rel_l2(dxf[k], c.dx[k], c.in[k]);
    }
    for (int k = 0; k < l->ntensors; k++) {
        if (!l->t[k].trainable) continue;
        if (!(r = add_row(rows, cap, nrows, li, l->t[k].name))) break;
        r->max_rel_err = check_tensor(&c, c.p[k], c.g[k], (int64_t)c.tn[k], max_checks, rng, &r->checked);
        r->fast_rel_err = rel_l2(l->grad[k], c.g[k], c.tn[k]);
    }
    free(dbuf), free(fbuf), free(saved), free(perm);
    return CNN_OK;
}

cnn_status cnn_gradcheck(cnn_net *net, int n, uint64_t seed, int64_t max_checks, cnn_gradcheck_row *rows,
                         int cap, int *n_rows) {
    if (!net || !rows || !n_rows || n < 1 || cap < 0)
        return cnn_fail(CNN_ERR_ARG, "cnn_gradcheck: need a net, rows, n_rows and n >= 1");
    *n_rows = 0;
    net->n = 0;   /* the fast calls below overwrite what a forward kept for its backward */
    uint64_t rng = seed;
    for (int i = 0; i < net->nlayers; i++) {
        const layer_ops *ops = layer_ops_of(net->nodes[i].l.kind);
        if (ops->check_batch) {
            cnn_status st = ops->check_batch(&net->nodes[i].l, n);
            if (st) return st;
        }
        cnn_status st = check_node(net, i, n, &rng, max_checks, rows, cap, n_rows);
        if (st) return st;
    }
    return CNN_OK;
}
