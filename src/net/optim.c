/* Optimizers (SGD, Adam, AdamW) and learning-rate schedules, with torch.optim's formulas.
 *
 * Each update follows torch 1.13's single-tensor (foreach=False) implementation operation by
 * operation, in float, rounding after every operation as PyTorch's float32 kernels do: each
 * hyperparameter is first rounded to float, as a Python scalar is when it meets a float32 tensor.
 * Every element is updated on its own, so a step is deterministic. The optimizer's state lives in
 * one arena laid out like the net's parameters (net->pdata), so a step is one flat loop over
 * param_total elements: every formula is elementwise and shares its hyperparameters across
 * parameters. */
#include "net/net.h"
#include "base/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_LEN 176  /* "optim." + a parameter name (a node name of at most 100 bytes, a tensor name) + ".momentum_buffer" */
#define PI 3.14159265358979323846

struct cnn_optim {
    cnn_net *net;
    cnn_optim_config cfg;
    int64_t steps;
    int nbuf;                  /* state buffers per parameter: 0, 1 (SGD momentum) or 2 (Adam) */
    float *state;              /* nbuf arenas of net->param_total floats, each laid out like pdata */
    char *names;               /* nbuf · nparams names of NAME_LEN bytes, parameter-major */
};

cnn_optim_config cnn_optim_defaults(cnn_optim_kind kind, double lr) {
    cnn_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.lr = lr;
    c.weight_decay = kind == CNN_OPTIM_ADAMW ? 0.01 : 0.0;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    return c;
}

static const char *kind_name(cnn_optim_kind k) {
    return k == CNN_OPTIM_SGD ? "sgd" : k == CNN_OPTIM_ADAM ? "adam" : "adamw";
}

/* torch.optim's checks, plus finiteness; `!(x >= 0)` also rejects NaN. */
static cnn_status check_config(const cnn_optim_config *c) {
    if (c->kind != CNN_OPTIM_SGD && c->kind != CNN_OPTIM_ADAM && c->kind != CNN_OPTIM_ADAMW)
        return cnn_fail(CNN_ERR_ARG, "optimizer: unknown kind %d (sgd, adam and adamw are known)", (int)c->kind);
    const char *k = kind_name(c->kind);
    if (!(c->lr >= 0) || isinf(c->lr))
        return cnn_fail(CNN_ERR_ARG, "optimizer %s: learning rate %g must be finite and ≥ 0", k, c->lr);
    if (!(c->weight_decay >= 0) || isinf(c->weight_decay))
        return cnn_fail(CNN_ERR_ARG, "optimizer %s: weight decay %g must be finite and ≥ 0", k, c->weight_decay);
    if (c->kind == CNN_OPTIM_SGD) {
        if (!(c->momentum >= 0) || isinf(c->momentum))
            return cnn_fail(CNN_ERR_ARG, "optimizer sgd: momentum %g must be finite and ≥ 0", c->momentum);
        if (!isfinite(c->dampening))
            return cnn_fail(CNN_ERR_ARG, "optimizer sgd: dampening %g must be finite", c->dampening);
        if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
            return cnn_fail(CNN_ERR_ARG,
                            "optimizer sgd: nesterov needs momentum > 0 and dampening 0 (got momentum %g, "
                            "dampening %g)", c->momentum, c->dampening);
        return CNN_OK;
    }
    if (!(c->beta1 >= 0 && c->beta1 < 1))
        return cnn_fail(CNN_ERR_ARG, "optimizer %s: beta1 %g must be in [0, 1)", k, c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
        return cnn_fail(CNN_ERR_ARG, "optimizer %s: beta2 %g must be in [0, 1)", k, c->beta2);
    if (!(c->eps >= 0) || isinf(c->eps))
        return cnn_fail(CNN_ERR_ARG, "optimizer %s: eps %g must be finite and ≥ 0", k, c->eps);
    return CNN_OK;
}

static const char *buffer_name(const cnn_optim *opt, int b) {
    if (opt->cfg.kind == CNN_OPTIM_SGD) return "momentum_buffer";
    return b == 0 ? "exp_avg" : "exp_avg_sq";
}

cnn_status cnn_optim_create(cnn_net *net, const cnn_optim_config *cfg, cnn_optim **out) {
    if (!out) return cnn_fail(CNN_ERR_ARG, "cnn_optim_create: out is NULL");
    *out = NULL;
    if (!net || !cfg) return cnn_fail(CNN_ERR_ARG, "cnn_optim_create: NULL argument");
    cnn_status st = check_config(cfg);
    if (st) return st;
    cnn_optim *opt = calloc(1, sizeof *opt);
    if (!opt) return cnn_fail(CNN_ERR_NOMEM, "out of memory creating an optimizer");
    opt->net = net;
    opt->cfg = *cfg;
    opt->nbuf = cfg->kind == CNN_OPTIM_SGD ? (cfg->momentum != 0) : 2;
    const size_t total = net->param_total;
    if (opt->nbuf && total > SIZE_MAX / sizeof(float) / (size_t)opt->nbuf) {
        const int nbuf = opt->nbuf;
        free(opt);
        return cnn_fail(CNN_ERR_NOMEM, "optimizer: state of %d × %zu floats overflows", nbuf, total);
    }
    const size_t n = (size_t)opt->nbuf * total;
    opt->state = calloc(n ? n : 1, sizeof(float));
    const size_t nnames = (size_t)opt->nbuf * (size_t)net->nparams;
    opt->names = calloc(nnames ? nnames : 1, NAME_LEN);
    if (!opt->state || !opt->names) {
        cnn_optim_free(opt);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory for the optimizer's state (%zu floats)", n);
    }
    for (int i = 0; i < net->nparams; i++)
        for (int b = 0; b < opt->nbuf; b++)
            snprintf(opt->names + ((size_t)i * (size_t)opt->nbuf + (size_t)b) * NAME_LEN, NAME_LEN, "optim.%s.%s",
                     net->params[i].name, buffer_name(opt, b));
    *out = opt;
    return CNN_OK;
}

void cnn_optim_free(cnn_optim *opt) {
    if (!opt) return;
    free(opt->state);
    free(opt->names);
    free(opt);
}

/* With no_decay_bn_bias, parameter i is decayed only when it is neither a batch-norm layer's nor
 * a bias: torch's param groups [conv and linear weights] and [batch norm, biases]. */
static int decays(const cnn_optim *opt, int i) {
    if (!opt->cfg.no_decay_bn_bias) return 1;
    const cnn_param *p = &opt->net->params[i];
    const cnn_layer_kind k = opt->net->nodes[p->layer].l.kind;
    if (k == CNN_LAYER_BATCHNORM2D || k == CNN_LAYER_BATCHNORM1D) return 0;
    const size_t len = strlen(p->name);
    return !(len >= 5 && !strcmp(p->name + len - 5, ".bias"));
}

/* The elements [lo, hi) of the parameter arena: one run of parameters with the same decay flag.
 * Returns the next parameter after the run. */
static int decay_run(const cnn_optim *opt, int i, size_t *lo, size_t *hi, int *decay) {
    const cnn_net *net = opt->net;
    *decay = decays(opt, i);
    *lo = (size_t)(net->params[i].data - net->pdata);
    int j = i + 1;
    while (j < net->nparams && decays(opt, j) == *decay) j++;
    *hi = j < net->nparams ? (size_t)(net->params[j].data - net->pdata) : net->param_total;
    return j;
}

/* SGD: g ← g + wd·p; with momentum μ: buf ← g on the first step, else buf ← μ·buf + (1 − dampening)·g;
 * nesterov: g ← g + μ·buf, else g ← buf; p ← p − lr·g. */
static void sgd_run(cnn_optim *opt, double lr, size_t lo, size_t n, int decay) {
    const cnn_optim_config *c = &opt->cfg;
    float *p = opt->net->pdata, *buf = opt->state;
    const float *grad = opt->net->gdata;
    const int momentum = c->momentum != 0 && opt->nbuf, first = opt->steps == 0;
    decay = decay && c->weight_decay != 0;
    const float wd = (float)c->weight_decay, mu = (float)c->momentum, keep = (float)(1 - c->dampening);
    const float neg_lr = (float)-lr;
    for (size_t i = lo; i < n; i++) {
        float g = grad[i];
        if (decay) g = g + wd * p[i];
        if (momentum) {
            if (first) buf[i] = g;
            else {
                buf[i] = buf[i] * mu;
                buf[i] = buf[i] + keep * g;
            }
            g = c->nesterov ? g + mu * buf[i] : buf[i];
        }
        p[i] = p[i] + neg_lr * g;
    }
}

/* Adam (and AdamW, whose decay is p ← p·(1 − lr·wd) first, with no wd term in g), at step t ≥ 1:
 * g ← g + wd·p; m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
 * p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps). */
static void adam_run(cnn_optim *opt, double lr, size_t lo, size_t n, int decay_flag) {
    const cnn_optim_config *c = &opt->cfg;
    const size_t total = opt->net->param_total;
    float *p = opt->net->pdata, *m = opt->state, *v = opt->state + total;
    const float *grad = opt->net->gdata;
    const int adamw = c->kind == CNN_OPTIM_ADAMW && decay_flag && c->weight_decay != 0,
              decay = c->kind != CNN_OPTIM_ADAMW && decay_flag && c->weight_decay != 0;
    const double t = (double)(opt->steps + 1);
    const double bias1 = 1 - pow(c->beta1, t), bias2 = 1 - pow(c->beta2, t);
    const float shrink = (float)(1 - lr * c->weight_decay), wd = (float)c->weight_decay;
    const float b1 = (float)c->beta1, one_b1 = (float)(1 - c->beta1);
    const float b2 = (float)c->beta2, one_b2 = (float)(1 - c->beta2);
    const float neg_step = (float)-(lr / bias1), bias2_sqrt = (float)sqrt(bias2), eps = (float)c->eps;
    for (size_t i = lo; i < n; i++) {
        if (adamw) p[i] = p[i] * shrink;
        float g = grad[i];
        if (decay) g = g + wd * p[i];
        m[i] = m[i] * b1;
        m[i] = m[i] + one_b1 * g;
        v[i] = v[i] * b2;
        v[i] = v[i] + one_b2 * g * g;
        const float denom = sqrtf(v[i]) / bias2_sqrt + eps;
        p[i] = p[i] + neg_step * m[i] / denom;
    }
}

void cnn_optim_step(cnn_optim *opt, double lr) {
    if (!opt) return;
    for (int i = 0; i < opt->net->nparams;) {
        size_t lo, hi;
        int decay;
        i = decay_run(opt, i, &lo, &hi, &decay);
        if (opt->cfg.kind == CNN_OPTIM_SGD) sgd_run(opt, lr, lo, hi, decay);
        else adam_run(opt, lr, lo, hi, decay);
    }
    inference_stale(opt->net);
    opt->steps++;
}

cnn_status cnn_optim_set_momentum(cnn_optim *opt, double momentum) {
    if (!opt) return cnn_fail(CNN_ERR_ARG, "cnn_optim_set_momentum: NULL optimizer");
    if (!(momentum >= 0 && momentum < 1))
        return cnn_fail(CNN_ERR_ARG, "optimizer %s: momentum %g must be in [0, 1)", kind_name(opt->cfg.kind), momentum);
    if (opt->cfg.kind != CNN_OPTIM_SGD) {
        opt->cfg.beta1 = momentum;
        return CNN_OK;
    }
    if (momentum != 0 && !opt->nbuf)
        return cnn_fail(CNN_ERR_ARG, "optimizer sgd: created without momentum, it has no buffers for momentum %g",
                        momentum);
    if (momentum == 0 && opt->cfg.nesterov)
        return cnn_fail(CNN_ERR_ARG, "optimizer sgd: nesterov needs momentum > 0");
    opt->cfg.momentum = momentum;
    return CNN_OK;
}

/* torch 1.13's clip_grad_norm_: norms = [‖g_i‖ for each parameter], total = ‖stack(norms)‖, both
 * float32 tensors (each sum of squares is taken here in double, in element order, then rounded);
 * coef = max_norm / (total + 1e-6) as a float32 tensor op, clamped to at most 1; g ← g·coef. */
cnn_status cnn_net_clip_grad_norm(cnn_net *net, double max_norm, double *total) {
    if (total) *total = NAN;
    if (!net) return cnn_fail(CNN_ERR_ARG, "cnn_net_clip_grad_norm: NULL net");
    if (!(max_norm > 0) || isinf(max_norm))
        return cnn_fail(CNN_ERR_ARG, "clip_grad_norm: max_norm %g must be finite and > 0", max_norm);
    double sum = 0;
    for (int i = 0; i < net->nparams; i++) {
        const cnn_param *p = &net->params[i];
        double s = 0;
        for (int64_t k = 0; k < p->numel; k++) s += (double)p->grad[k] * p->grad[k];
        const float norm = (float)sqrt(s);
        sum += (double)norm * norm;
    }
    const float tot = (float)sqrt(sum);
    if (total) *total = tot;
    float coef = (float)max_norm / (tot + 1e-6f);
    if (coef > 1.0f) coef = 1.0f;
    if (coef < 1.0f)
        for (size_t k = 0; k < net->param_total; k++) net->gdata[k] = net->gdata[k] * coef;
    return CNN_OK;
}

int64_t cnn_optim_step_count(const cnn_optim *opt) { return opt ? opt->steps : 0; }

const cnn_net *optim_net(const cnn_optim *opt) { return opt->net; }

/* Tensor k of the state: parameter k / nbuf, buffer k % nbuf. */
static cnn_tensor state_tensor(const cnn_optim *opt, int k) {
    const cnn_param *p = &opt->net->params[k / opt->nbuf];
    const size_t offset = (size_t)(p->data - opt->net->pdata);
    cnn_tensor t;
    memset(&t, 0, sizeof t);
    t.name = opt->names + (size_t)k * NAME_LEN;
    t.dtype = CNN_F32;
    t.ndim = p->ndim;
    memcpy(t.shape, p->shape, sizeof p->shape);
    t.data = opt->state + (size_t)(k % opt->nbuf) * opt->net->param_total + offset;
    return t;
}

int cnn_optim_state(const cnn_optim *opt, cnn_tensor *t, int cap) {
    if (!opt) return 0;
    const int count = opt->nbuf * opt->net->nparams;
    for (int k = 0; k < count && k < cap && t; k++) t[k] = state_tensor(opt, k);
    return count;
}

/* Checks every tensor before changing anything, so a failed load leaves the optimizer as it was.
 * F64 tensors are accepted and rounded, as cnn_net_load_weights does. With steps == 0 nothing is
 * read: torch keeps no buffers before the first step, and SGD's first step sets buf ← g. */
cnn_status cnn_optim_load_state(cnn_optim *opt, const cnn_st *st, int64_t steps) {
    if (!opt || !st) return cnn_fail(CNN_ERR_ARG, "cnn_optim_load_state: NULL argument");
    if (steps < 0) return cnn_fail(CNN_ERR_ARG, "optimizer state: step count %lld is negative", (long long)steps);
    /* 2^53: beyond it the step count is no longer exact as the double of Adam's bias correction,
     * and a count near INT64_MAX would overflow at the next step. */
    if (steps > (INT64_C(1) << 53))
        return cnn_fail(CNN_ERR_ARG, "optimizer state: step count %lld is more than the limit of 2^53",
                        (long long)steps);
    const int count = steps ? opt->nbuf * opt->net->nparams : 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < count; k++) {
            const cnn_tensor want = state_tensor(opt, k);
            const cnn_tensor *t = cnn_st_find(st, want.name);
            const cnn_dtype dtype = t && t->dtype == CNN_F64 ? CNN_F64 : CNN_F32;
            if (pass == 0) {
                cnn_status s = cnn_st_require(st, "optimizer state", want.name, dtype, want.ndim, want.shape, &t);
                if (s) return s;
            }
            const int64_t numel = cnn_tensor_numel(&want);
            float *dst = want.data;
            for (int64_t i = 0; i < numel; i++) {
                const double v = dtype == CNN_F32 ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
                if (pass == 0 && !isfinite(v))
                    return cnn_fail(CNN_ERR_NONFINITE, "optimizer state: tensor '%s' holds %s at element %lld",
                                    want.name, isnan(v) ? "NaN" : "Inf", (long long)i);
                if (pass == 0 && fabs(v) >= 0x1.ffffffp127) /* Inf as a float */
                    return cnn_fail(CNN_ERR_NONFINITE, "optimizer state: tensor '%s' holds %g at element %lld, beyond "
                                    "float32's range (it would be Inf)", want.name, v, (long long)i);
                if (pass == 1) dst[i] = (float)v;
            }
        }
    }
    if (!steps) memset(opt->state, 0, (size_t)opt->nbuf * opt->net->param_total * sizeof(float));
    opt->steps = steps;
    return CNN_OK;
}

/* StepLR multiplies the rate by gamma at each boundary, as torch's chained form does, so that the
 * value is bitwise torch's (past 1000 boundaries, base·gamma^k at once); CosineAnnealingLR is its
 * closed form with eta_min 0. Arguments that make no schedule (a negative epoch, step_size < 1,
 * epochs < 1 for cosine, an unknown kind, multistep and onecycle) give NaN, so that a caller that forgot to check them
 * sees it at once. */
double cnn_schedule_lr(cnn_schedule s, double base, int epoch, int epochs, int step_size, double gamma) {
    if (epoch < 0) return NAN;
    switch (s) {
    case CNN_SCHEDULE_CONSTANT:
        return base;
    case CNN_SCHEDULE_STEP: {
        if (step_size < 1) return NAN;
        const int k = epoch / step_size;
        if (k > 1000) return base * pow(gamma, k);
        double lr = base;
        for (int i = 0; i < k; i++) lr *= gamma;
        return lr;
    }
    case CNN_SCHEDULE_COSINE:
        if (epochs < 1) return NAN;
        return base * (1 + cos(PI * (double)epoch / (double)epochs)) / 2;
    default: /* multistep and onecycle need more than these arguments: cnn_schedule_at */
        return NAN;
    }
}
