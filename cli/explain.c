/* cnn explain: the notes' derivations, step by step, with the user's numbers, each result checked
 * against the library's real layers and central differences.
 *
 * This file holds the command, its help, and what the topics share (explain.h): text and markdown
 * output, option parsing, running a layer of the library, central differences and the verdict. The
 * topics are in explain_chain.c, explain_conv.c, explain_pool.c, explain_dense.c (relu, sigmoid,
 * linear), explain_batchnorm.c, explain_residual.c and explain_network.c.
 */
#include "explain.h"
#include "matrix.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char explain_usage[] =
    "usage: cnn explain TOPIC [options] [--format text|markdown]\n"
    "\n"
    "Prints one derivation of the backpropagation notes, step by step, with your numbers. Every\n"
    "result is computed by the notes' own arithmetic, again by the library's real layer (reference\n"
    "and fast paths) and by central differences; a last line says whether they agree. Exits 0 when\n"
    "they agree, 1 when they do not, 2 on bad input.\n"
    "\n"
    "topics:\n"
    "  chain     f = (x + y)·z: forward values, local gradients, chain-rule products (note 000)\n"
    "  conv      a convolution's output, dL/dW, dL/dX by rot180 and full convolution, dL/db\n"
    "            (notes 002, 003, 004; stride, padding, several channels and filters)\n"
    "  maxpool   max pooling: the maxima's mask and the upsampled gradient (notes 001, 003, 004)\n"
    "  avgpool   average pooling: each gradient shared over its window (notes 001, 004)\n"
    "  relu      dL/dx = dL/dO ⊙ relu'(x) (note 004)\n"
    "  sigmoid   dL/dx = dL/dO ⊙ σ(x)(1 − σ(x)) (note 001, eq. 1)\n"
    "  linear    dL/dx = dL/dO·Wᵀ and dL/dW = xᵀ·dL/dO (note 004)\n"
    "  batchnorm batch norm in training mode through its graph x → μ → σ² → x̂ → y: two paths into μ,\n"
    "            three into x, the folded formula and the running statistics\n"
    "  residual  a fork in a graph, out = relu(w·a + b) + a: the gradients of the branch and of the\n"
    "            shortcut meet at a and add up (note 000)\n"
    "  network   one backward pass through a model file, layer by layer (note 001's summary)\n"
    "\n"
    "Matrices are written as \"1 2 3; 4 5 6; 7 8 9\": numbers separated by spaces or commas, rows\n"
    "ended by ';'. Several channels or filters are separated by '|': \"1 2; 3 4 | 5 6; 7 8\".\n"
    "--format markdown prints tables and LaTeX formulas for a web page.\n"
    "\n"
    "Run 'cnn explain TOPIC --help' for a topic's options and an example.\n";

typedef struct topic {
    const char *name;
    int (*run)(ex *e, int argc, char **argv);
} topic;

static const topic topics[] = {
    {"chain", explain_chain},     {"conv", explain_conv},       {"maxpool", explain_maxpool},
    {"avgpool", explain_avgpool}, {"relu", explain_relu},       {"sigmoid", explain_sigmoid},
    {"linear", explain_linear},   {"batchnorm", explain_batchnorm}, {"residual", explain_residual},
    {"network", explain_network},
};

enum { NTOPICS = sizeof topics / sizeof *topics };

int cmd_explain(int argc, char **argv) {
    if (argc < 2) {
        fputs(explain_usage, stderr);
        return EXIT_BAD_INPUT;
    }
    if (argv[1][0] == '-') {   /* --help, or an option before the topic */
        const char *format = NULL, **pos = malloc((size_t)argc * sizeof *pos);
        const cli_opt opts[] = {CLI_VALUE("format", "text|markdown", &format, NULL), CLI_END};
        const cli_cmd cmd = {"explain", explain_usage, opts, NULL, "TOPIC"};
        int npos = 0, rc = pos ? cli_parse(&cmd, argc, argv, pos, &npos) : 1;
        if (rc < 0)
            rc = cli_usage_error("explain", "the TOPIC comes first: cnn explain %s [options]", npos ? pos[0] : "TOPIC");
        free(pos);
        return rc;
    }
    const char *names[NTOPICS];
    for (int i = 0; i < NTOPICS; i++) {
        names[i] = topics[i].name;
        if (!strcmp(argv[1], topics[i].name)) {
            ex e = {EX_TEXT, topics[i].name};
            return topics[i].run(&e, argc - 1, argv + 1);
        }
    }
    const char *near = cli_suggest(argv[1], names, NTOPICS);
    fprintf(stderr, "cnn explain: unknown topic '%s'", argv[1]);
    if (near) fprintf(stderr, "; did you mean '%s'?", near);
    fputs(" (cnn help explain for the topics)\n", stderr);
    return EXIT_BAD_INPUT;
}

/* ---- strings in two formats ------------------------------------------------------------------- */

void sb_init(sb *s, const ex *e) {
    s->fmt = e->fmt;
    s->len = 0;
    s->buf[0] = '\0';
}

static void sb_cat(sb *s, const char *t) {
    const size_t n = strlen(t), room = sizeof s->buf - 4 - s->len;
    if (s->len >= sizeof s->buf - 4) return;
    if (n > room) {
        memcpy(s->buf + s->len, t, room);
        s->len += room;
        memcpy(s->buf + s->len, "...", 4);
        s->len = sizeof s->buf - 1;
        return;
    }
    memcpy(s->buf + s->len, t, n + 1);
    s->len += n;
}

void sb_append(sb *s, const sb *t) { sb_cat(s, t->buf); }

void sb_put(sb *s, const char *text, const char *tex) { sb_cat(s, s->fmt == EX_MARKDOWN ? tex : text); }

void sb_printf(sb *s, const char *fmt, ...) {
    char t[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    sb_cat(s, t);
}

static void fmt_num(char *buf, size_t cap, double v) {
    if (v == 0.0) v = 0.0;                         /* no "-0" */
    snprintf(buf, cap, "%.6g", v);
}

void sb_num(sb *s, double v) {
    char t[64];
    fmt_num(t, sizeof t, v);
    sb_cat(s, t);
}

void sb_nump(sb *s, double v) {
    char t[64];
    fmt_num(t, sizeof t, v);
    if (t[0] == '-') sb_printf(s, "(%s)", t);
    else sb_cat(s, t);
}

void sb_mul(sb *s) { sb_put(s, "·", " \\cdot "); }

ex_sym ex_s(const char *base, int t1, int t2, int i, int j) {
    ex_sym y = {base, {t1, t2}, i, j};
    return y;
}

void sb_sym(sb *s, ex_sym y) {
    char tags[48] = "", idx[48] = "";
    if (y.tag[0] >= 0 && y.tag[1] >= 0) snprintf(tags, sizeof tags, "(%d,%d)", y.tag[0] + 1, y.tag[1] + 1);
    else if (y.tag[0] >= 0) snprintf(tags, sizeof tags, "(%d)", y.tag[0] + 1);
    if (y.i >= 0 && y.j >= 0) {
        if (y.i < 9 && y.j < 9) snprintf(idx, sizeof idx, "%d%d", y.i + 1, y.j + 1);
        else snprintf(idx, sizeof idx, "%d,%d", y.i + 1, y.j + 1);
    } else if (y.i >= 0) {
        snprintf(idx, sizeof idx, "%d", y.i + 1);
    }
    if (s->fmt == EX_MARKDOWN) {
        sb_cat(s, y.base);
        if (*tags) sb_printf(s, "^{%s}", tags);
        if (*idx) sb_printf(s, "_{%s}", idx);
    } else {
        sb_printf(s, "%s%s%s", y.base, tags, idx);
    }
}

void sb_d(sb *s, const char *num, ex_sym y) {
    if (s->fmt == EX_MARKDOWN) {
        sb_printf(s, "\\frac{\\partial %s}{\\partial ", num);
        sb_sym(s, y);
        sb_cat(s, "}");
    } else {
        sb_printf(s, "∂%s/∂", num);
        sb_sym(s, y);
    }
}

/* ---- output ----------------------------------------------------------------------------------- */

void ex_title(const ex *e, const char *fmt, ...) {
    char t[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    if (e->fmt == EX_MARKDOWN) printf("## `cnn explain %s`: %s\n\n", e->topic, t);
    else printf("cnn explain %s: %s\n", e->topic, t);
}

void ex_heading(const ex *e, const char *fmt, ...) {
    char t[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    if (e->fmt == EX_MARKDOWN) printf("### %s\n\n", t);
    else printf("\n%s\n", t);
}

/* Prints t in lines of at most `width` characters (UTF-8 counted as characters), each after `indent`. */
static void wrap(const char *t, const char *indent, int width) {
    const char *p = t;
    while (*p) {
        const char *cut = NULL, *q = p;
        int cols = 0;
        while (*q && cols < width) {
            if (*q == ' ') cut = q;
            if (((unsigned char)*q & 0xc0) != 0x80) cols++;
            q++;
        }
        while (*q && ((unsigned char)*q & 0xc0) == 0x80) q++;   /* end on a character boundary */
        if (!*q || !cut) cut = q;
        printf("%s%.*s\n", indent, (int)(cut - p), p);
        p = cut;
        while (*p == ' ') p++;
    }
}

void ex_say(const ex *e, const char *fmt, ...) {
    char t[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    if (e->fmt == EX_MARKDOWN) printf("%s\n\n", t);
    else wrap(t, "  ", 98);
}

const char *ex_pair_str(char *buf, int a, int b) {
    if (a == b) snprintf(buf, 24, "%d", a);
    else snprintf(buf, 24, "%d,%d", a, b);
    return buf;
}

void ex_blank(const ex *e) {
    if (e->fmt == EX_TEXT) printf("\n");
}

void ex_formula(const ex *e, const sb *s) {
    if (e->fmt == EX_MARKDOWN) printf("$$%s$$\n\n", s->buf);
    else printf("  %s\n", s->buf);
}

void ex_matrix(const ex *e, const char *label, const char *label_tex, const double *m, int rows, int cols) {
    char cell[64];
    if (e->fmt == EX_MARKDOWN) {
        printf("$%s$ (%d×%d):\n\n|   |", label_tex, rows, cols);
        for (int j = 0; j < cols; j++) printf(" %d |", j + 1);
        printf("\n|---|");
        for (int j = 0; j < cols; j++) printf("--:|");
        printf("\n");
        for (int i = 0; i < rows; i++) {
            printf("| **%d** |", i + 1);
            for (int j = 0; j < cols; j++) {
                fmt_num(cell, sizeof cell, m[i * cols + j]);
                printf(" %s |", cell);
            }
            printf("\n");
        }
        printf("\n");
        return;
    }
    int width[EX_MAX_DIM * EX_MAX_DIM] = {0};
    for (int j = 0; j < cols && j < EX_MAX_DIM * EX_MAX_DIM; j++)
        for (int i = 0; i < rows; i++) {
            fmt_num(cell, sizeof cell, m[i * cols + j]);
            const int w = (int)strlen(cell);
            if (w > width[j]) width[j] = w;
        }
    printf("  %s (%d×%d) =\n", label, rows, cols);
    for (int i = 0; i < rows; i++) {
        printf("   ");
        for (int j = 0; j < cols; j++) {
            fmt_num(cell, sizeof cell, m[i * cols + j]);
            printf("  %*s", j < EX_MAX_DIM * EX_MAX_DIM ? width[j] : 0, cell);
        }
        printf("\n");
    }
}

/* ---- options ---------------------------------------------------------------------------------- */

int ex_args(ex *e, int argc, char **argv, const ex_opt *opts, const char *usage) {
    /* The topic's options and --format, through the parser of every command (args.h). Each topic's
     * usage lists its options already, so the table carries no help lines. */
    cli_opt table[CLI_MAX_OPTS + 1];
    const char *format = NULL;
    int n = 0;
    for (const ex_opt *o = opts; o->name && n < CLI_MAX_OPTS - 1; o++, n++)
        table[n] = (cli_opt)CLI_VALUE(o->name + 2, NULL, o->value, NULL);   /* "--input" is --input */
    table[n++] = (cli_opt)CLI_VALUE("format", "text|markdown", &format, NULL);
    table[n] = (cli_opt)CLI_END;
    char name[64];
    snprintf(name, sizeof name, "explain %s", e->topic);
    const cli_cmd cmd = {name, usage, table, NULL, NULL};
    const int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if (!format || !strcmp(format, "text")) {
        e->fmt = EX_TEXT;
    } else if (!strcmp(format, "markdown") || !strcmp(format, "md")) {
        e->fmt = EX_MARKDOWN;
    } else {
        cli_error("explain", "--format %s: expected text or markdown", format);
        return EXIT_BAD_INPUT;
    }
    return -1;
}

int ex_int(const char *opt, const char *text, int lo, int hi, int *v) {
    char *end;
    errno = 0;
    const long n = strtol(text, &end, 10);
    if (!*text || *end || errno || n < lo || n > hi) {
        cli_error("explain", "%s %s: expected a whole number from %d to %d", opt, text, lo, hi);
        return 0;
    }
    *v = (int)n;
    return 1;
}

int ex_pair(const char *opt, const char *text, int lo, int hi, int *a, int *b) {
    char first[32];
    const char *comma = strchr(text, ',');
    if (!comma) {
        if (!ex_int(opt, text, lo, hi, a)) return 0;
        *b = *a;
        return 1;
    }
    if ((size_t)(comma - text) >= sizeof first) {
        cli_error("explain", "%s %s: expected N or H,W with whole numbers from %d to %d", opt, text, lo, hi);
        return 0;
    }
    memcpy(first, text, (size_t)(comma - text));
    first[comma - text] = '\0';
    return ex_int(opt, first, lo, hi, a) && ex_int(opt, comma + 1, lo, hi, b);
}

int ex_real(const char *opt, const char *text, double *v) {
    double tmp[2];
    int r, c;
    char err[256];
    if (matrix_parse(text, tmp, 2, &r, &c, err, sizeof err) || r * c != 1) {
        cli_error("explain", "%s %s: expected one number", opt, text);
        return 0;
    }
    *v = tmp[0];
    return 1;
}

static int check_dims(const char *opt, int rows, int cols) {
    if (rows > EX_MAX_DIM || cols > EX_MAX_DIM) {
        cli_error("explain", "%s: the matrix is %dx%d; explain prints every element's derivation, so matrices are "
                             "limited to %dx%d",
                  opt, rows, cols, EX_MAX_DIM, EX_MAX_DIM);
        return 0;
    }
    return 1;
}

/* A matrix parser's "more than N numbers": the matrix is over the limit, which the message names. */
static int over_capacity(const char *err) { return !strncmp(err, "more than ", 10) || strstr(err, ": more than "); }

int ex_mat(const char *opt, const char *text, double *out, int *rows, int *cols) {
    char err[256];
    if (matrix_parse(text, out, EX_MAX_DIM * EX_MAX_DIM, rows, cols, err, sizeof err)) {
        if (over_capacity(err))
            cli_error("explain", "%s: more than %d numbers; explain prints every element's derivation, so matrices "
                                 "are limited to %dx%d", opt, EX_MAX_DIM * EX_MAX_DIM, EX_MAX_DIM, EX_MAX_DIM);
        else cli_error("explain", "%s: %s", opt, err);
        return 0;
    }
    return check_dims(opt, *rows, *cols);
}

int ex_stack(const char *opt, const char *text, double *out, int max_count, int *count, int *rows, int *cols) {
    char err[256];
    /* The count first: past it, the numbers would run out of room before the count is known. */
    long n = 1;
    for (const char *p = text; *p; p++) n += *p == '|';
    if (n > max_count) {
        cli_error("explain", "%s: %ld matrices, but at most %d are allowed here (the limit on %s)", opt, n, max_count,
                  max_count > EX_MAX_STACK ? "filters × channels" : "channels and filters");
        return 0;
    }
    if (matrix_parse_stack(text, out, max_count * EX_MAX_DIM * EX_MAX_DIM, count, rows, cols, err, sizeof err)) {
        if (over_capacity(err))
            cli_error("explain", "%s: more than %d numbers in one matrix; explain prints every element's "
                                 "derivation, so matrices are limited to %dx%d", opt, EX_MAX_DIM * EX_MAX_DIM,
                      EX_MAX_DIM, EX_MAX_DIM);
        else cli_error("explain", "%s: %s", opt, err);
        return 0;
    }
    if (*count > max_count) {
        cli_error("explain", "%s: %d matrices, but at most %d are allowed here", opt, *count, max_count);
        return 0;
    }
    return check_dims(opt, *rows, *cols);
}

/* ---- the library's layers --------------------------------------------------------------------- */

int ex_lib_run(ex_run *r, cnn_path path) {
    cnn_net *net = NULL;
    float *buf = NULL;
    cnn_status st;
    int rc = 0;
    if ((st = cnn_net_parse(r->model, &net)) || (st = cnn_net_set_path(net, path)) ||
        (st = cnn_net_reserve(net, r->batch))) {
        rc = cli_report("explain", st);
        goto done;
    }
    for (int k = 0; k < r->nparams; k++) {
        const cnn_param p = cnn_net_param_by_name(net, r->pname[k]);
        if (!p.data) {
            cli_error("explain", "internal error: the net has no parameter %s", r->pname[k]);
            rc = 1;
            goto done;
        }
        for (int64_t i = 0; i < p.numel; i++) p.data[i] = (float)r->pval[k][i];
    }
    int in[3], out[3];
    cnn_net_input_shape(net, in);
    cnn_net_output_shape(net, out);
    const size_t nin = (size_t)r->batch * in[0] * in[1] * in[2], nout = (size_t)r->batch * out[0] * out[1] * out[2];
    buf = malloc((nin + nout) * sizeof *buf);
    if (!buf) {
        cli_error("explain", "out of memory");
        rc = 1;
        goto done;
    }
    float *x = buf, *dy = buf + nin;
    for (size_t i = 0; i < nin; i++) x[i] = (float)r->x[i];
    for (size_t i = 0; i < nout; i++) dy[i] = (float)r->dy[i];
    cnn_net_zero_grad(net);
    if ((st = cnn_net_forward(net, x, r->batch)) || (st = cnn_net_backward(net, dy))) {
        rc = cli_report("explain", st);
        goto done;
    }
    const float *y = cnn_net_output(net), *dx = cnn_net_grad_input(net);
    for (size_t i = 0; i < nout; i++) r->y[i] = y[i];
    for (size_t i = 0; i < nin; i++) r->dx[i] = dx[i];
    for (int k = 0; k < r->nparams; k++) {
        const cnn_param p = cnn_net_param_by_name(net, r->pname[k]);
        if (r->pgrad[k])
            for (int64_t i = 0; i < p.numel; i++) r->pgrad[k][i] = p.grad[i];
    }
    for (int k = 0; k < 2; k++) {
        if (!r->bname[k]) continue;
        int found = 0;
        for (int b = 0; b < cnn_net_buffer_count(net) && !found; b++) {
            const cnn_tensor t = cnn_net_buffer(net, b);
            if (strcmp(t.name, r->bname[k]) || t.dtype != CNN_F32) continue;
            found = 1;
            for (int64_t i = 0; i < cnn_tensor_numel(&t); i++) r->bval[k][i] = ((const float *)t.data)[i];
        }
        if (!found) {
            cli_error("explain", "internal error: the net has no buffer %s", r->bname[k]);
            rc = 1;
            goto done;
        }
    }
    for (int k = 0; k < 2; k++) {
        if (!r->vname[k]) continue;
        const int v = cnn_net_value_find(net, r->vname[k]);
        const float *d = v >= 0 ? cnn_net_value_data(net, v) : NULL, *g = v >= 0 ? cnn_net_value_grad(net, v) : NULL;
        if (!d || !g) {
            cli_error("explain", "internal error: the net has no value %s with a gradient", r->vname[k]);
            rc = 1;
            goto done;
        }
        int chw[3];
        cnn_net_value_shape(net, v, chw, NULL);
        const size_t count = (size_t)r->batch * chw[0] * chw[1] * chw[2];
        for (size_t i = 0; i < count; i++) {
            if (r->vval[k]) r->vval[k][i] = d[i];
            if (r->vgrad[k]) r->vgrad[k][i] = g[i];
        }
    }
done:
    free(buf);
    cnn_net_free(net);
    return rc;
}

/* ---- central differences ---------------------------------------------------------------------- */

double ex_step(double h, double v) { return fabs(v) > 1.0 ? h * fabs(v) : h; }

/* Central differences with the step h·max(floor, |v[i]|), or h itself when floor is 0. */
static void central(double *v, int n, double h, double floor, double (*loss)(void *ctx), void *ctx, double *grad,
                    const unsigned char *skip) {
    for (int i = 0; i < n; i++) {
        if (skip && skip[i]) {
            grad[i] = NAN;
            continue;
        }
        const double saved = v[i], hi = floor > 0 ? h * fmax(floor, fabs(saved)) : h;
        v[i] = saved + hi;
        const double lp = loss(ctx);
        v[i] = saved - hi;
        const double lm = loss(ctx);
        v[i] = saved;
        grad[i] = (lp - lm) / (2 * hi);
    }
}

void ex_central(double *v, int n, double h, double (*loss)(void *ctx), void *ctx, double *grad,
                const unsigned char *skip) {
    central(v, n, h, 1.0, loss, ctx, grad, skip);
}

void ex_central_fixed(double *v, int n, double h, double (*loss)(void *ctx), void *ctx, double *grad) {
    central(v, n, h, 0.0, loss, ctx, grad, NULL);
}

double ex_central_linear(double *v, int n, double h, double (*loss)(void *ctx), void *ctx, double *grad) {
    double m = 1.0;
    for (int i = 0; i < n; i++)
        if (fabs(v[i]) > m) m = fabs(v[i]);
    central(v, n, h, m, loss, ctx, grad, NULL);
    return h * m;
}

/* ---- the verdict ------------------------------------------------------------------------------ */

void ex_check_init(ex_check *c, const char *layer, const char *alt) {
    memset(c, 0, sizeof *c);
    snprintf(c->label[EX_BY_REF], sizeof c->label[0], "library %s, reference path (double)", layer);
    snprintf(c->label[EX_BY_FAST], sizeof c->label[0], "library %s, fast path (float)", layer);
    snprintf(c->label[EX_BY_FD], sizeof c->label[0], "central differences (step %g·max(1, |v|))", EX_STEP);
    if (alt) snprintf(c->label[EX_BY_ALT], sizeof c->label[0], "%s", alt);
    snprintf(c->mine, sizeof c->mine, "the notes' arithmetic");
    snprintf(c->rule, sizeof c->rule,
             "Each row is compared with the notes' arithmetic: a number agrees when |Δ| ≤ tolerance × max(1, the sum "
             "of the absolute values of its terms).");
    /* The library takes and returns floats: its reference path rounds the inputs and the result
     * (relative 6e-8 each); the fast path also computes in float. */
    c->tol[EX_BY_REF] = 1e-6;
    c->tol[EX_BY_FAST] = 1e-4;
    c->tol[EX_BY_FD] = 1e-6;
    c->tol[EX_BY_ALT] = 1e-9;
}

void ex_check_cmp(ex_check *c, int by, const char *what, const double *mine, const double *other,
                  const double *scale, int n, const unsigned char *skip) {
    for (int i = 0; i < n; i++) {
        if (skip && skip[i]) continue;
        const double d = fabs(mine[i] - other[i]);
        double s = scale ? scale[i] : fabs(mine[i]);
        if (!(s > 1.0)) s = 1.0;
        c->count[by]++;
        if (d > c->maxdiff[by] || isnan(d)) c->maxdiff[by] = d;
        if (!(d <= c->tol[by] * s) && !c->failed[by]++) {
            char label[sizeof c->label[0]];
            memcpy(label, c->label[by], sizeof label);
            snprintf(c->first_fail[by], sizeof c->first_fail[by],
                     "%.100s, element %d: %.80s gives %.9g, %.96s %.9g", what, i + 1, c->mine, mine[i], label,
                     other[i]);
        }
    }
}

int ex_check_report(const ex *e, const ex_check *c, const char *how, const char *what) {
    int failed = 0;
    double worst = 0.0;
    for (int by = 0; by < EX_BY_COUNT; by++) {
        failed += c->failed[by] > 0;
        if (c->count[by] && (c->maxdiff[by] > worst || isnan(c->maxdiff[by]))) worst = c->maxdiff[by];
    }
    ex_heading(e, "check: every result computed again");
    if (how) ex_say(e, "%s", how);
    if (e->fmt == EX_MARKDOWN) {
        printf("| computed by | numbers | max \\|Δ\\| | tolerance | result |\n|---|--:|--:|--:|---|\n");
        for (int by = 0; by < EX_BY_COUNT; by++)
            if (c->count[by]) {
                printf("| ");
                for (const char *p = c->label[by]; *p; p++) printf(*p == '|' ? "\\|" : "%c", *p);   /* a cell */
                printf(" | %lld | %.3g | %g | %s |\n", (long long)c->count[by], c->maxdiff[by], c->tol[by],
                       c->failed[by] ? "**DISAGREE**" : "agree");
            }
        printf("\n");
    } else {
        printf("  %-52s %7s %11s %10s  %s\n", "computed by", "numbers", "max |Δ|", "tolerance", "result");
        for (int by = 0; by < EX_BY_COUNT; by++)
            if (c->count[by])
                printf("  %-52s %7lld %11.3g %10g  %s\n", c->label[by], (long long)c->count[by], c->maxdiff[by],
                       c->tol[by], c->failed[by] ? "DISAGREE" : "agree");
    }
    ex_say(e, "%s", c->rule);
    if (c->skipped) ex_say(e, "Central differences left out %lld number%s: %s.", (long long)c->skipped,
                           c->skipped == 1 ? "" : "s", c->skip_why);
    if (failed) {
        for (int by = 0; by < EX_BY_COUNT; by++)
            if (c->failed[by])
                printf(e->fmt == EX_MARKDOWN ? "**DISAGREE**: %s (%d number%s off)\n\n" : "DISAGREE: %s (%d number%s off)\n",
                       c->first_fail[by], c->failed[by], c->failed[by] == 1 ? "" : "s");
        return 1;
    }
    const int fd = c->count[EX_BY_FD] > 0;
    printf(e->fmt == EX_MARKDOWN ? "**agree**: %s: %s, the library (reference and fast paths) %s give the same "
                                   "numbers (max |Δ| %.3g).\n"
                                 : "agree: %s: %s, the library (reference and fast paths) %s give the same numbers "
                                   "(max |Δ| %.3g)\n",
           what, c->mine, fd ? "and central differences" : "all", worst);
    return 0;
}
