/* Gradient check of every layer, in double: the reference backward against central differences of
 * the reference forward, and the fast path against the reference.
 *
 * For one layer with output y(x, p) and a fixed random dy, take L = Σ y·dy, so that dL/dy = dy, as
 * the notes take ∂L/∂O as given. Then for each checked element v of x, weight or bias:
 *   numeric = (L(v + h) − L(v − h)) / 2h,  error = |analytic − numeric| / max(1, |analytic|, |numeric|).
 * Inputs are a shuffled even grid of values in (−1, 1), so no two cells of a pooling window tie and
 * no relu input sits within h of its kink.
 */
#include "core/net.h"
#include "core/error.h"
#include "core/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEP 1e-6

typedef struct check {
    const layer *l;
    const layer_ops *ops;
    int n;
    size_t in, out;                 /* elements of x and y over the batch */
    double *x, *y, *dy, *dx;
    double *p[2], *g[2];
} check;

static double objective(check *c) {
    c->ops->forward_ref(c->l, c->n, c->x, (const double *const *)c->p, c->y);
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

static cnn_status check_layer(cnn_net *net, int li, int n, uint64_t *rng, int64_t max_checks,
                              cnn_gradcheck_row *rows, int cap, int *nrows) {
    const layer *l = &net->layers[li];
    check c = {.l = l, .ops = layer_ops_of(l->kind), .n = n};
    c.in = (size_t)n * l->c * l->h * l->w;
    c.out = (size_t)n * l->oc * l->oh * l->ow;
    size_t pn[2] = {0, 0};
    for (int k = 0; k < l->nparams; k++) {
        pn[k] = 1;
        for (int d = 0; d < l->pndim[k]; d++) pn[k] *= (size_t)l->pshape[k][d];
    }
    const size_t ws = c.ops->workspace ? c.ops->workspace(l, n) : 0;
    if (c.in + c.out + pn[0] + pn[1] > ((size_t)1 << 26))
        return cnn_fail(CNN_ERR_SHAPE, "gradcheck: layer %d (%s, line %d) is too large to check (%zu elements; "
                        "the limit is 2^26): check a smaller model or batch", li, c.ops->name, l->line,
                        c.in + c.out + pn[0] + pn[1]);
    const size_t doubles = 2 * c.in + 2 * c.out + 2 * (pn[0] + pn[1]);
    const size_t floats = 2 * c.in + 2 * c.out + ws + 1;
    double *dbuf = calloc(doubles, sizeof *dbuf);
    float *fbuf = calloc(floats, sizeof *fbuf);
    size_t *perm = malloc(c.in * sizeof *perm);
    if (!dbuf || !fbuf || !perm) {
        free(dbuf), free(fbuf), free(perm);
        return cnn_fail(CNN_ERR_NOMEM, "gradcheck: out of memory for layer %d", li);
    }
    double *at = dbuf;
    c.x = at, at += c.in;
    c.dx = at, at += c.in;
    c.y = at, at += c.out;
    c.dy = at, at += c.out;
    for (int k = 0; k < l->nparams; k++) {
        c.p[k] = at, at += pn[k];
        c.g[k] = at, at += pn[k];
        for (size_t i = 0; i < pn[k]; i++) c.p[k][i] = l->param[k][i];
    }
    /* x: a shuffled grid (distinct values, none near 0); dy: uniform in (−1, 1). */
    for (size_t i = 0; i < c.in; i++) perm[i] = i;
    for (size_t i = c.in; i > 1; i--) {
        const size_t j = (size_t)(rng_next(rng) % i);
        const size_t t = perm[i - 1];
        perm[i - 1] = perm[j], perm[j] = t;
    }
    for (size_t i = 0; i < c.in; i++) c.x[i] = (2.0 * (double)perm[i] + 1.0) / (double)c.in - 1.0;
    for (size_t i = 0; i < c.out; i++) c.dy[i] = 2.0 * rng_uniform(rng) - 1.0;
    for (size_t i = 0; i < c.in; i++) c.x[i] = (double)(float)c.x[i];   /* exact in float too */
    for (size_t i = 0; i < c.out; i++) c.dy[i] = (double)(float)c.dy[i];

    /* Analytic gradients of the reference path. */
    c.ops->forward_ref(l, n, c.x, (const double *const *)c.p, c.y);
    c.ops->backward_ref(l, n, c.x, (const double *const *)c.p, c.y, c.dy, c.dx, c.g);

    /* The fast path on the same numbers. */
    float *xf = fbuf, *dxf = xf + c.in, *yf = dxf + c.in, *dyf = yf + c.out, *wsf = dyf + c.out;
    for (size_t i = 0; i < c.in; i++) xf[i] = (float)c.x[i];
    for (size_t i = 0; i < c.out; i++) dyf[i] = (float)c.dy[i];
    for (int k = 0; k < l->nparams; k++) memset(l->grad[k], 0, pn[k] * sizeof(float));
    c.ops->forward(l, n, xf, yf, wsf);
    c.ops->backward(l, n, xf, yf, dyf, dxf, wsf);

    const char *names[3] = {"input", "weight", "bias"};
    double *vals[3] = {c.x, c.p[0], c.p[1]};
    double *an[3] = {c.dx, c.g[0], c.g[1]};
    const float *fast[3] = {dxf, l->grad[0], l->grad[1]};
    size_t counts[3] = {c.in, pn[0], pn[1]};
    if (*nrows < cap) {                      /* forward: fast against reference */
        cnn_gradcheck_row *r = &rows[(*nrows)++];
        memset(r, 0, sizeof *r);
        r->layer = li;
        snprintf(r->tensor, sizeof r->tensor, "output");
        r->fast_rel_err = rel_l2(yf, c.y, c.out);
    }
    for (int t = 0; t < 1 + l->nparams; t++) {
        if (*nrows >= cap) break;
        cnn_gradcheck_row *r = &rows[(*nrows)++];
        memset(r, 0, sizeof *r);
        r->layer = li;
        snprintf(r->tensor, sizeof r->tensor, "%s", names[t]);
        r->max_rel_err = check_tensor(&c, vals[t], an[t], (int64_t)counts[t], max_checks, rng, &r->checked);
        r->fast_rel_err = rel_l2(fast[t], an[t], counts[t]);
    }
    free(dbuf), free(fbuf), free(perm);
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
        cnn_status st = check_layer(net, i, n, &rng, max_checks, rows, cap, n_rows);
        if (st) return st;
    }
    return CNN_OK;
}
