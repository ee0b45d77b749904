/* cnn explain batchnorm: batch norm's backward pass in training mode, through its computational
 * graph (note 000's method applied to the layer that src/layers/batchnorm.c derives).
 *
 * Each channel is normalised over its m = N·H·W values x_1 .. x_m of the batch:
 *   μ = (1/m) Σ x_j,  σ² = (1/m) Σ (x_j − μ)²  (biased),  s = 1/√(σ² + ε),
 *   x̂_i = (x_i − μ)·s,  y_i = γ·x̂_i + β.
 * The graph x → μ → σ² → x̂ → y, with x also feeding σ² and x̂ directly and μ also feeding x̂. The
 * local gradients: ∂y/∂x̂ = γ, ∂y/∂γ = x̂, ∂y/∂β = 1; ∂x̂_i/∂x_i = s, ∂x̂_i/∂μ = −s,
 * ∂x̂_i/∂σ² = −½(x_i − μ)s³; ∂σ²/∂x_i = 2(x_i − μ)/m, ∂σ²/∂μ = −(2/m) Σ (x_j − μ); ∂μ/∂x_i = 1/m.
 * The chain rule, node by node from y back to x:
 *   ∂L/∂β = Σ ∂L/∂y_i,  ∂L/∂γ = Σ ∂L/∂y_i·x̂_i,  ∂L/∂x̂_i = ∂L/∂y_i·γ,
 *   ∂L/∂σ² = Σ ∂L/∂x̂_i·∂x̂_i/∂σ²,
 *   ∂L/∂μ = Σ ∂L/∂x̂_i·(−s) + ∂L/∂σ²·∂σ²/∂μ               (μ's two paths: every x̂, and σ²)
 *   ∂L/∂x_i = ∂L/∂x̂_i·s + ∂L/∂σ²·2(x_i − μ)/m + ∂L/∂μ/m  (x's three paths, added at the fork)
 * and folded: ∂L/∂x_i = (γ·s)(∂L/∂y_i − mean(∂L/∂y) − x̂_i·mean(∂L/∂y·x̂)). A training forward also
 * updates the running statistics, running_var with the unbiased variance σ²·m/(m − 1).
 * The library holds floats, so where the user's numbers are not floats it is compared with the same
 * arithmetic on the numbers rounded to float: batch norm of values with a large mean and a small
 * spread is sensitive to that rounding (the deviations from μ lose their digits).
 *
 * The input is a stack of matrices, sample by sample and within a sample channel by channel (the
 * library's NCHW order), so with --channels C the stack holds N·C matrices. Internally every
 * per-value array is kept channel by channel: v[c·m + j], where j runs over sample 1's matrix row
 * by row, then sample 2's, and so on; sample n's matrix of channel c is then v[c·m + n·H·W ..].
 */
#include "explain.h"

#include <math.h>
#include <string.h>

static const char batchnorm_usage[] =
    "usage: cnn explain batchnorm [--input X] [--channels C] [--gamma G] [--beta B] [--eps E]\n"
    "                             [--momentum F] [--dy DY] [--format text|markdown]\n"
    "\n"
    "Batch norm in training mode, through its computational graph: the forward (the batch's mean\n"
    "and biased variance, x̂ and y), the graph x → μ → σ² → x̂ → y, the local gradients, and the\n"
    "chain rule backward to dL/dbeta, dL/dgamma, dL/dx̂, dL/dσ², dL/dμ (two paths) and dL/dx\n"
    "(three paths that add up where they meet at x), then the folded formula and the update of\n"
    "the running statistics. Checked against the library's batchnorm2d and central differences.\n"
    "\n"
    "  --input X       the batch: one matrix per sample and channel, separated by '|', sample by\n"
    "                  sample and within a sample channel by channel (N·C matrices of H x W; each\n"
    "                  channel is normalised over its N·H·W numbers; default: 2 samples of one\n"
    "                  channel, \"-1 4; 2 1 | 5 1; 4 0\")\n"
    "  --channels C    channels per sample (default 1)\n"
    "  --gamma G       the weight γ, one number per channel (default 1.5 each)\n"
    "  --beta B        the bias β, one number per channel (default 0.5 each)\n"
    "  --eps E         ε, added to the variance (default 1e-5)\n"
    "  --momentum F    the running statistics' factor (default 0.1, PyTorch's)\n"
    "  --dy DY         dL/dy, the input's shape (default: small integers); --grad-output too\n"
    "\n"
    "Matrices are limited to 16x16 and the stack to 8 of them.\n"
    "\n"
    "examples:\n"
    "  cnn explain batchnorm\n"
    "  cnn explain batchnorm --input \"1 2 3 4\" --gamma 2 --beta 0 --dy \"1 0 0 0\"\n"
    "  cnn explain batchnorm --channels 2 --input \"1 2; 3 4 | 0 1; 0 -1 | 5 6; 7 9 | 2 2; 1 0\" \\\n"
    "                        --gamma \"1 2\" --beta \"0 -1\"\n";

#define MAXV (EX_MAX_STACK * EX_MAX_DIM * EX_MAX_DIM)
#define MAXC EX_MAX_STACK

typedef struct bn {
    int N, C, H, W, hw, m;
    double eps, momentum, step;
    double g[MAXC], b[MAXC];
    /* per value, channel by channel (c·m + j) */
    double x[MAXV], dy[MAXV], xh[MAXV], y[MAXV], dxh[MAXV], dxh_dvar[MAXV], dx[MAXV], fold[MAXV];
    double path[3][MAXV];         /* ∂L/∂x's three terms */
    double dev[MAXV];             /* x − μ */
    /* per channel */
    double mu[MAXC], var[MAXC], s[MAXC], dvar_dmu[MAXC], dvar[MAXC], sdxh[MAXC], dmu_xh[MAXC], dmu_var[MAXC];
    double dmu[MAXC];
    double dg[MAXC], db[MAXC], mdy[MAXC], mdyx[MAXC], rm[MAXC], rv[MAXC], unb[MAXC];
    /* sums of absolute values of the terms, for the tolerances */
    double sy[MAXV], sdx[MAXV], sdg[MAXC], sdb[MAXC], srm[MAXC], srv[MAXC];
    /* the library, NCHW */
    double nx[MAXV], ndy[MAXV], ly[MAXV], ldx[MAXV], ldg[MAXC], ldb[MAXC], lrm[MAXC], lrv[MAXC];
    double ty[MAXV], tdx[MAXV];   /* the library's, channel by channel */
    /* central differences: x, then γ, then β */
    double vars[MAXV + 2 * MAXC], fd[MAXV + 2 * MAXC];
} bn;

static bn B, Bf;   /* the user's numbers; the same rounded to float, as the library holds them */

/* Small integers in −4..4, as explain conv fills what the user leaves out. */
static double pattern(int n) { return (double)((n * 5 + 2) % 9 - 4); }

/* Index of value j of channel c in NCHW. */
static int nchw(const bn *v, int c, int j) { return ((j / v->hw) * v->C + c) * v->hw + j % v->hw; }

/* The forward formula, in double: y from x, γ and β (all channel by channel). */
static void bn_forward(const bn *v, const double *x, const double *g, const double *b, double *y) {
    for (int c = 0; c < v->C; c++) {
        const double *xc = x + (size_t)c * v->m;
        double sum = 0.0, sq = 0.0;
        for (int j = 0; j < v->m; j++) sum += xc[j];
        const double mu = sum / v->m;
        for (int j = 0; j < v->m; j++) sq += (xc[j] - mu) * (xc[j] - mu);
        const double s = 1.0 / sqrt(sq / v->m + v->eps);
        for (int j = 0; j < v->m; j++) y[(size_t)c * v->m + j] = g[c] * (xc[j] - mu) * s + b[c];
    }
}

static double bn_loss(void *ctx) {
    bn *v = ctx;
    static double y[MAXV];
    const int n = v->C * v->m;
    bn_forward(v, v->vars, v->vars + n, v->vars + n + v->C, y);
    double L = 0.0;
    for (int i = 0; i < n; i++) L += y[i] * v->dy[i];
    return L;
}

/* ---- symbols ------------------------------------------------------------------------------------ */

/* A symbol with channel tag c (−1: none) and value index j (−1: none), in the sb's format. */
static void sym(sb *s, const char *text, const char *tex, int c, int j) {
    sb_sym(s, ex_s(s->fmt == EX_MARKDOWN ? tex : text, c, -1, j, -1));
}

static void dsym(sb *s, const char *text, const char *tex, int c, int j) {
    sb_d(s, "L", ex_s(s->fmt == EX_MARKDOWN ? tex : text, c, -1, j, -1));
}

/* "a1 + a2 + ... + am", or with b "a1·b1 + ...": the first three terms, "...", and the last when
 * there are more than 12. */
static void terms(sb *s, const double *a, const double *b, int m) {
    const int lng = m > 12;
    for (int j = 0; j < m; j++) {
        if (lng && j == 3) {
            sb_put(s, " + ...", " + \\dots");
            continue;
        }
        if (lng && j > 3 && j < m - 1) continue;
        if (j) sb_printf(s, " + ");
        sb_nump(s, a[j]);
        if (b) {
            sb_mul(s);
            sb_nump(s, b[j]);
        }
    }
}

/* "(a1)² + (a2)² + ...", shortened in the same way. */
static void squares(sb *s, const double *a, int m) {
    const int lng = m > 12;
    for (int j = 0; j < m; j++) {
        if (lng && j == 3) {
            sb_put(s, " + ...", " + \\dots");
            continue;
        }
        if (lng && j > 3 && j < m - 1) continue;
        if (j) sb_printf(s, " + ");
        if (a[j] < 0) sb_printf(s, "(");
        sb_num(s, a[j]);
        if (a[j] < 0) sb_printf(s, ")");
        sb_put(s, "²", "^2");
    }
}

/* Symbolic "x1 + x2 + ... + xm" in the same way. */
static void sym_terms(sb *s, const char *text, const char *tex, int c, int m) {
    const int lng = m > 12;
    for (int j = 0; j < m; j++) {
        if (lng && j == 3) {
            sb_put(s, " + ...", " + \\dots");
            continue;
        }
        if (lng && j > 3 && j < m - 1) continue;
        if (j) sb_printf(s, " + ");
        sym(s, text, tex, c, j);
    }
}

/* A matrix label such as "X̂(2)" (sample 2) or "X̂(2,1)" (sample 2, channel 1); in TeX the tag
 * goes where base_tex has '@' ("\\hat{X}@" gives \\hat{X}^{(2)}). */
static void label(char *text, char *tex, size_t cap, const char *base, const char *base_tex, int n, int c, int C) {
    char t[32];
    if (C > 1) snprintf(t, sizeof t, "(%d,%d)", n + 1, c + 1);
    else snprintf(t, sizeof t, "(%d)", n + 1);
    snprintf(text, cap, "%s%s", base, t);
    const char *at = strchr(base_tex, '@');
    if (!at) at = base_tex + strlen(base_tex);
    snprintf(tex, cap, "%.*s^{%s}%s", (int)(at - base_tex), base_tex, t, *at ? at + 1 : "");
}

/* Every sample's matrix of channel c of v (channel by channel). */
static void matrices(const ex *e, const bn *v, const char *base, const char *base_tex, const double *a, int c) {
    for (int n = 0; n < v->N; n++) {
        char t[96], x[128];
        label(t, x, sizeof t, base, base_tex, n, c, v->C);
        ex_matrix(e, t, x, a + (size_t)c * v->m + (size_t)n * v->hw, v->H, v->W);
    }
}

/* Preformatted lines (the graph): as they are in text, a code block in markdown. */
static void picture(const ex *e, const char *const *lines) {
    if (e->fmt == EX_MARKDOWN) printf("```\n");
    for (int i = 0; lines[i]; i++) printf("%s%s\n", e->fmt == EX_MARKDOWN ? "" : "  ", lines[i]);
    if (e->fmt == EX_MARKDOWN) printf("```\n\n");
}

/* ---- options ------------------------------------------------------------------------------------ */

/* C numbers for --gamma or --beta (one is repeated for every channel). */
static int per_channel(const char *opt, const char *text, int C, double *out) {
    double v[EX_MAX_DIM * EX_MAX_DIM];
    int r, c;
    if (!ex_mat(opt, text, v, &r, &c)) return 0;
    if (r * c != C && r * c != 1) {
        cli_error("explain", "%s has %d numbers, but the input has %d channel%s (one number each)", opt, r * c, C,
                  C == 1 ? "" : "s");
        return 0;
    }
    for (int k = 0; k < C; k++) out[k] = v[r * c == 1 ? 0 : k];
    return 1;
}

static int parse(bn *v, const char *in, const char *chs, const char *gs, const char *bs, const char *es,
                 const char *ms, const char *dys) {
    static double tmp[MAXV];
    int count, r, c;
    v->C = 1;
    if (chs && !ex_int("--channels", chs, 1, MAXC, &v->C)) return 0;
    if (!ex_stack("--input", in ? in : "-1 4; 2 1 | 5 1; 4 0", tmp, EX_MAX_STACK, &count, &r, &c)) return 0;
    if (count % v->C) {
        cli_error("explain", "--input has %d matri%s, but with %d channels it needs a multiple of %d (one matrix per "
                             "sample and channel)", count, count == 1 ? "x" : "ces", v->C, v->C);
        return 0;
    }
    v->N = count / v->C, v->H = r, v->W = c, v->hw = r * c, v->m = v->N * v->hw;
    if (v->m < 2) {
        cli_error("explain", "--input: one value per channel (N·H·W = 1); batch norm in training mode needs more than "
                             "1 value per channel, as PyTorch says: give more samples or larger matrices");
        return 0;
    }
    for (int ch = 0; ch < v->C; ch++)
        for (int j = 0; j < v->m; j++) v->x[ch * v->m + j] = tmp[nchw(v, ch, j)];
    for (int k = 0; k < v->C; k++) v->g[k] = 1.5, v->b[k] = 0.5;
    if (gs && !per_channel("--gamma", gs, v->C, v->g)) return 0;
    if (bs && !per_channel("--beta", bs, v->C, v->b)) return 0;
    v->eps = 1e-5, v->momentum = 0.1;
    if (es && !ex_real("--eps", es, &v->eps)) return 0;
    if (!(v->eps >= 0)) {
        cli_error("explain", "--eps %s: expected a number >= 0", es);
        return 0;
    }
    if (ms && !ex_real("--momentum", ms, &v->momentum)) return 0;
    if (dys) {
        if (!ex_stack("--dy", dys, tmp, EX_MAX_STACK, &count, &r, &c)) return 0;
        if (count != v->N * v->C || r != v->H || c != v->W) {
            cli_error("explain", "--dy is %d matri%s of %dx%d, but the input (and y) is %d of %dx%d", count,
                      count == 1 ? "x" : "ces", r, c, v->N * v->C, v->H, v->W);
            return 0;
        }
        for (int ch = 0; ch < v->C; ch++)
            for (int j = 0; j < v->m; j++) v->dy[ch * v->m + j] = tmp[nchw(v, ch, j)];
    } else {
        for (int ch = 0; ch < v->C; ch++)
            for (int j = 0; j < v->m; j++) v->dy[ch * v->m + j] = pattern(nchw(v, ch, j));
    }
    return 1;
}

/* ---- the notes' arithmetic ---------------------------------------------------------------------- */

static void compute(bn *v) {
    const int m = v->m;
    for (int c = 0; c < v->C; c++) {
        const double *x = v->x + (size_t)c * m, *dy = v->dy + (size_t)c * m;
        double *xh = v->xh + (size_t)c * m, *dev = v->dev + (size_t)c * m;
        double sum = 0.0, sq = 0.0, sdev = 0.0;
        for (int j = 0; j < m; j++) sum += x[j];
        v->mu[c] = sum / m;
        for (int j = 0; j < m; j++) dev[j] = x[j] - v->mu[c], sq += dev[j] * dev[j], sdev += dev[j];
        v->var[c] = sq / m;
        const double s = v->s[c] = 1.0 / sqrt(v->var[c] + v->eps), g = v->g[c];
        v->dvar_dmu[c] = -2.0 / m * sdev;
        double dg = 0, db = 0, sdg = 0, sdb = 0, dvar = 0, sum_dxh = 0, mdy = 0, mdyx = 0;
        for (int j = 0; j < m; j++) {
            const int i = c * m + j;
            xh[j] = dev[j] * s;
            v->y[i] = g * xh[j] + v->b[c];
            v->sy[i] = fabs(g * xh[j]) + fabs(v->b[c]);
            db += dy[j], sdb += fabs(dy[j]);
            dg += dy[j] * xh[j], sdg += fabs(dy[j] * xh[j]);
            v->dxh[i] = dy[j] * g;
            v->dxh_dvar[i] = -0.5 * dev[j] * s * s * s;
            dvar += v->dxh[i] * v->dxh_dvar[i];
            sum_dxh += v->dxh[i];
            mdy += dy[j], mdyx += dy[j] * xh[j];
        }
        v->dg[c] = dg, v->db[c] = db, v->sdg[c] = sdg, v->sdb[c] = sdb;
        v->dvar[c] = dvar;
        v->sdxh[c] = sum_dxh;
        v->dmu_xh[c] = sum_dxh * -s;                  /* through every x̂ */
        v->dmu_var[c] = dvar * v->dvar_dmu[c];        /* through σ² */
        v->dmu[c] = v->dmu_xh[c] + v->dmu_var[c];
        v->mdy[c] = mdy / m, v->mdyx[c] = mdyx / m;
        for (int j = 0; j < m; j++) {
            const int i = c * m + j;
            v->path[0][i] = v->dxh[i] * s;
            v->path[1][i] = dvar * 2.0 * dev[j] / m;
            v->path[2][i] = v->dmu[c] / m;
            v->dx[i] = v->path[0][i] + v->path[1][i] + v->path[2][i];
            v->sdx[i] = fabs(v->path[0][i]) + fabs(v->path[1][i]) + fabs(v->path[2][i]);
            v->fold[i] = g * s * (dy[j] - v->mdy[c] - xh[j] * v->mdyx[c]);
        }
        /* The running statistics after this one training forward, from running_mean 0, running_var 1. */
        v->unb[c] = v->var[c] * m / (m - 1.0);
        v->rm[c] = (1.0 - v->momentum) * 0.0 + v->momentum * v->mu[c];
        v->rv[c] = (1.0 - v->momentum) * 1.0 + v->momentum * v->unb[c];
        v->srm[c] = fabs(v->momentum * v->mu[c]);
        v->srv[c] = fabs(1.0 - v->momentum) + fabs(v->momentum * v->unb[c]);
    }
}

/* ---- the derivation ----------------------------------------------------------------------------- */

static void print_inputs(const ex *e, const bn *v) {
    for (int n = 0; n < v->N; n++)
        for (int c = 0; c < v->C; c++) {
            char t[96], x[128];
            label(t, x, sizeof t, "X", "X@", n, c, v->C);
            ex_matrix(e, t, x, v->x + (size_t)c * v->m + (size_t)n * v->hw, v->H, v->W);
        }
    sb s;
    for (int c = 0; c < v->C; c++) {
        const int t = v->C > 1 ? c : -1;
        sb_init(&s, e);
        sym(&s, "γ", "\\gamma", t, -1);
        sb_printf(&s, " = ");
        sb_num(&s, v->g[c]);
        sb_put(&s, ", ", ",\\quad ");
        sym(&s, "β", "\\beta", t, -1);
        sb_printf(&s, " = ");
        sb_num(&s, v->b[c]);
        if (c == 0) {
            sb_put(&s, ", ε = ", ",\\quad \\varepsilon = ");
            sb_num(&s, v->eps);
        }
        ex_formula(e, &s);
    }
    ex_say(e, "∂L/∂y, the gradient that reaches the output, is given (L = Σ y·∂L/∂y):");
    for (int n = 0; n < v->N; n++)
        for (int c = 0; c < v->C; c++) {
            char t[96], x[160];
            label(t, x, sizeof t, "∂L/∂Y", "\\frac{\\partial L}{\\partial Y@}", n, c, v->C);
            ex_matrix(e, t, x, v->dy + (size_t)c * v->m + (size_t)n * v->hw, v->H, v->W);
        }
}

static void print_forward(const ex *e, const bn *v) {
    const int m = v->m;
    ex_heading(e, "2. forward, channel by channel: the batch's mean and variance, x̂ and y");
    for (int c = 0; c < v->C; c++) {
        const int t = v->C > 1 ? c : -1;
        const double *x = v->x + (size_t)c * m;
        if (v->C > 1) ex_say(e, "Channel %d:", c + 1);
        sb s;
        sb_init(&s, e);
        sym(&s, "μ", "\\mu", t, -1);
        sb_put(&s, " = (", " = \\frac{1}{m}(");
        sym_terms(&s, "x", "x", t, m);
        sb_printf(&s, ")");
        sb_put(&s, "/m = (", " = \\frac{1}{");
        if (e->fmt == EX_MARKDOWN) {
            sb_printf(&s, "%d}(", m);
            terms(&s, x, NULL, m);
            sb_printf(&s, ") = ");
        } else {
            terms(&s, x, NULL, m);
            sb_printf(&s, ")/%d = ", m);
        }
        sb_num(&s, v->mu[c]);
        ex_formula(e, &s);

        sb_init(&s, e);
        sym(&s, "σ²", "{\\sigma^2}", t, -1);
        sb_put(&s, " = Σ (xj − μ)²/m = (", " = \\frac{1}{m}\\sum_j (x_j - \\mu)^2 = \\frac{1}{");
        if (e->fmt == EX_MARKDOWN) sb_printf(&s, "%d}(", m);
        squares(&s, v->dev + (size_t)c * m, m);
        if (e->fmt == EX_MARKDOWN) sb_printf(&s, ") = ");
        else sb_printf(&s, ")/%d = ", m);
        sb_num(&s, v->var[c]);
        ex_formula(e, &s);
        if (c == 0)
            ex_say(e, "σ² is the biased variance: it divides by m = %d, not m − 1, as PyTorch's training forward does.",
                   m);

        sb_init(&s, e);
        sym(&s, "s", "s", t, -1);
        sb_put(&s, " = 1/√(σ² + ε) = 1/√(", " = \\frac{1}{\\sqrt{\\sigma^2 + \\varepsilon}} = \\frac{1}{\\sqrt{");
        sb_num(&s, v->var[c]);
        sb_printf(&s, " + ");
        sb_num(&s, v->eps);
        sb_put(&s, ") = ", "}} = ");
        sb_num(&s, v->s[c]);
        ex_formula(e, &s);

        for (int j = 0; j < m; j++) {
            sb_init(&s, e);
            sym(&s, "x̂", "\\hat{x}", t, j);
            sb_printf(&s, " = (");
            sym(&s, "x", "x", t, j);
            sb_put(&s, " − μ)·s = (", " - \\mu) \\cdot s = (");
            sb_num(&s, x[j]);
            sb_put(&s, " − ", " - ");
            sb_nump(&s, v->mu[c]);
            sb_printf(&s, ")");
            sb_mul(&s);
            sb_num(&s, v->s[c]);
            sb_printf(&s, " = ");
            sb_num(&s, v->xh[c * m + j]);
            ex_formula(e, &s);
        }
        for (int j = 0; j < m; j++) {
            sb_init(&s, e);
            sym(&s, "y", "y", t, j);
            sb_put(&s, " = γ·", " = \\gamma \\cdot ");
            sym(&s, "x̂", "\\hat{x}", t, j);
            sb_put(&s, " + β = ", " + \\beta = ");
            sb_nump(&s, v->g[c]);
            sb_mul(&s);
            sb_nump(&s, v->xh[c * m + j]);
            sb_printf(&s, " + ");
            sb_nump(&s, v->b[c]);
            sb_printf(&s, " = ");
            sb_num(&s, v->y[c * m + j]);
            ex_formula(e, &s);
        }
        matrices(e, v, "X̂", "\\hat{X}@", v->xh, c);
        matrices(e, v, "Y", "Y@", v->y, c);
    }
}

static void print_graph(const ex *e, const bn *v) {
    ex_heading(e, "1. the computational graph of one channel (note 000)");
    static const char *const art[] = {
        "    ┌──────────────────────┐",
        "    ├─────────────┐        │",
        "    │             ↓        ↓",
        "    x ──→ μ ────→ σ² ────→ x̂ ──→ y ──→ L = Σ y·∂L/∂y",
        "          │                ↑     ↑",
        "          └────────────────┘     γ, β",
        NULL};
    picture(e, art);
    ex_say(e, "Batch norm normalises each channel over its m = N·H·W = %d·%d·%d = %d values of the batch. Channel "
              "%s values x1 .. x%d are sample 1's matrix row by row, then sample 2's, and so on.",
           v->N, v->H, v->W, v->m, v->C > 1 ? "c's" : "1's", v->m);
    if (v->C > 1) ex_say(e, "x(c)j is value j of channel c; μ(c), σ²(c), γ(c) and β(c) are channel c's.");
    ex_say(e, "Each x reaches x̂ three ways: directly (x̂ = (x − μ)·s), through μ, and through σ², which reads x "
              "and μ. μ forks too: into every x̂ and into σ². Where paths meet, their gradients add up (note 000's "
              "rule at a fork).");
}

static void print_locals(const ex *e, const bn *v) {
    ex_heading(e, "3. local gradients: each node on its own, the others held fixed");
    for (int c = 0; c < v->C; c++) {
        if (v->C > 1) ex_say(e, "Channel %d:", c + 1);
        sb s;
        sb_init(&s, e);
        sb_put(&s, "∂yi/∂x̂i = γ = ", "\\frac{\\partial y_i}{\\partial \\hat{x}_i} = \\gamma = ");
        sb_num(&s, v->g[c]);
        sb_put(&s, ",  ∂yi/∂γ = x̂i,  ∂yi/∂β = 1",
               ",\\quad \\frac{\\partial y_i}{\\partial \\gamma} = \\hat{x}_i,\\quad \\frac{\\partial y_i}{\\partial "
               "\\beta} = 1");
        ex_formula(e, &s);
        sb_init(&s, e);
        sb_put(&s, "∂x̂i/∂xi = s = ", "\\frac{\\partial \\hat{x}_i}{\\partial x_i} = s = ");
        sb_num(&s, v->s[c]);
        sb_put(&s, ",  ∂x̂i/∂μ = −s = ", ",\\quad \\frac{\\partial \\hat{x}_i}{\\partial \\mu} = -s = ");
        sb_num(&s, -v->s[c]);
        sb_put(&s, ",  ∂x̂i/∂σ² = −½(xi − μ)s³",
               ",\\quad \\frac{\\partial \\hat{x}_i}{\\partial \\sigma^2} = -\\tfrac{1}{2}(x_i - \\mu)s^3");
        ex_formula(e, &s);
        sb_init(&s, e);
        sb_put(&s, "∂σ²/∂xi = 2(xi − μ)/m (μ held),  ∂σ²/∂μ = −(2/m)·Σ (xj − μ) = ",
               "\\frac{\\partial \\sigma^2}{\\partial x_i} = \\frac{2(x_i - \\mu)}{m},\\quad \\frac{\\partial "
               "\\sigma^2}{\\partial \\mu} = -\\frac{2}{m}\\sum_j (x_j - \\mu) = ");
        sb_num(&s, v->dvar_dmu[c]);
        sb_put(&s, ",  ∂μ/∂xi = 1/m = ", ",\\quad \\frac{\\partial \\mu}{\\partial x_i} = \\frac{1}{m} = ");
        sb_num(&s, 1.0 / v->m);
        ex_formula(e, &s);
        if (c == 0)
            ex_say(e, "The deviations from the mean sum to 0, so ∂σ²/∂μ is 0 (up to rounding): the path μ → σ² carries "
                      "nothing, though the chain rule still writes it.");
        ex_say(e, "∂x̂i/∂σ² = −½(xi − μ)s³ for each value%s:", v->C > 1 ? " of this channel" : "");
        char lt[96], lx[128];
        for (int n = 0; n < v->N; n++) {
            label(lt, lx, sizeof lt, "∂X̂/∂σ²", "\\frac{\\partial \\hat{X}@}{\\partial \\sigma^2}", n, c, v->C);
            ex_matrix(e, lt, lx, v->dxh_dvar + (size_t)c * v->m + (size_t)n * v->hw, v->H, v->W);
        }
    }
}

static void print_backward(const ex *e, const bn *v) {
    const int m = v->m;
    ex_heading(e, "4. backward, from y to x: each node's gradient is the sum over the paths out of it");
    for (int c = 0; c < v->C; c++) {
        const int t = v->C > 1 ? c : -1;
        const double *dy = v->dy + (size_t)c * m, *xh = v->xh + (size_t)c * m, *dxh = v->dxh + (size_t)c * m;
        if (v->C > 1) ex_say(e, "Channel %d:", c + 1);
        sb s;
        sb_init(&s, e);
        dsym(&s, "β", "\\beta", t, -1);
        sb_put(&s, " = Σ ∂L/∂yi = ", " = \\sum_i \\frac{\\partial L}{\\partial y_i} = ");
        terms(&s, dy, NULL, m);
        sb_printf(&s, " = ");
        sb_num(&s, v->db[c]);
        ex_formula(e, &s);
        sb_init(&s, e);
        dsym(&s, "γ", "\\gamma", t, -1);
        sb_put(&s, " = Σ ∂L/∂yi·x̂i = ", " = \\sum_i \\frac{\\partial L}{\\partial y_i} \\hat{x}_i = ");
        terms(&s, dy, xh, m);
        sb_printf(&s, " = ");
        sb_num(&s, v->dg[c]);
        ex_formula(e, &s);

        for (int j = 0; j < m; j++) {
            sb_init(&s, e);
            dsym(&s, "x̂", "\\hat{x}", t, j);
            sb_printf(&s, " = ");
            dsym(&s, "y", "y", t, j);
            sb_put(&s, "·γ = ", " \\cdot \\gamma = ");
            sb_nump(&s, dy[j]);
            sb_mul(&s);
            sb_nump(&s, v->g[c]);
            sb_printf(&s, " = ");
            sb_num(&s, dxh[j]);
            ex_formula(e, &s);
        }

        ex_say(e, "σ² feeds every x̂, so its gradient sums over them:");
        sb_init(&s, e);
        dsym(&s, "σ²", "{\\sigma^2}", t, -1);
        sb_put(&s, " = Σ ∂L/∂x̂i·∂x̂i/∂σ² = ",
               " = \\sum_i \\frac{\\partial L}{\\partial \\hat{x}_i} \\frac{\\partial \\hat{x}_i}{\\partial "
               "\\sigma^2} = ");
        terms(&s, dxh, v->dxh_dvar + (size_t)c * m, m);
        sb_printf(&s, " = ");
        sb_num(&s, v->dvar[c]);
        ex_formula(e, &s);

        ex_say(e, "μ feeds every x̂ and σ²: two paths, added up.");
        sb_init(&s, e);
        dsym(&s, "μ", "\\mu", t, -1);
        sb_put(&s, " = Σ ∂L/∂x̂i·(−s) + ∂L/∂σ²·∂σ²/∂μ = ",
               " = \\sum_i \\frac{\\partial L}{\\partial \\hat{x}_i}(-s) + \\frac{\\partial L}{\\partial \\sigma^2} "
               "\\frac{\\partial \\sigma^2}{\\partial \\mu} = ");
        sb_nump(&s, v->sdxh[c]);
        sb_mul(&s);
        sb_nump(&s, -v->s[c]);
        sb_printf(&s, " + ");
        sb_nump(&s, v->dvar[c]);
        sb_mul(&s);
        sb_nump(&s, v->dvar_dmu[c]);
        sb_printf(&s, " = ");
        sb_num(&s, v->dmu[c]);
        ex_formula(e, &s);

        ex_say(e, "Each x feeds x̂ (directly), σ² and μ: three paths, added up where they meet at x (note 000):");
        for (int j = 0; j < m; j++) {
            const int i = c * m + j;
            sb_init(&s, e);
            dsym(&s, "x", "x", t, j);
            sb_printf(&s, " = ");
            dsym(&s, "x̂", "\\hat{x}", t, j);
            sb_put(&s, "·s + ∂L/∂σ²·2(", " \\cdot s + \\frac{\\partial L}{\\partial \\sigma^2} \\cdot \\frac{2(");
            sym(&s, "x", "x", t, j);
            sb_put(&s, " − μ)/m + ∂L/∂μ·1/m = ",
                   " - \\mu)}{m} + \\frac{\\partial L}{\\partial \\mu} \\cdot \\frac{1}{m} = ");
            sb_num(&s, v->path[0][i]);
            sb_printf(&s, " + ");
            sb_nump(&s, v->path[1][i]);
            sb_printf(&s, " + ");
            sb_nump(&s, v->path[2][i]);
            sb_printf(&s, " = ");
            sb_num(&s, v->dx[i]);
            ex_formula(e, &s);
        }
        matrices(e, v, "∂L/∂X", "\\frac{\\partial L}{\\partial X@}", v->dx, c);
    }
}

static void print_folded(const ex *e, const bn *v) {
    const int m = v->m;
    ex_heading(e, "5. the folded formula: ∂L/∂x = (γ·s)(∂L/∂y − mean(∂L/∂y) − x̂·mean(∂L/∂y·x̂))");
    ex_say(e, "Σ (xj − μ) = 0, so ∂L/∂μ = −s·Σ ∂L/∂x̂j; and xj − μ = x̂j/s, so ∂L/∂σ² = −½s²·Σ ∂L/∂x̂j·x̂j. Put into "
              "the three paths, with ∂L/∂x̂ = ∂L/∂y·γ, they fold into one line, which is what the library's fast path "
              "computes:");
    for (int c = 0; c < v->C; c++) {
        const int t = v->C > 1 ? c : -1;
        if (v->C > 1) ex_say(e, "Channel %d:", c + 1);
        sb s;
        sb_init(&s, e);
        sb_put(&s, "mean(∂L/∂y) = ", "\\mathrm{mean}\\big(\\frac{\\partial L}{\\partial y}\\big) = ");
        sb_num(&s, v->mdy[c]);
        sb_put(&s, ",  mean(∂L/∂y·x̂) = ",
               ",\\quad \\mathrm{mean}\\big(\\frac{\\partial L}{\\partial y} \\hat{x}\\big) = ");
        sb_num(&s, v->mdyx[c]);
        sb_put(&s, ",  γ·s = ", ",\\quad \\gamma s = ");
        sb_num(&s, v->g[c] * v->s[c]);
        ex_formula(e, &s);
        for (int j = 0; j < m; j++) {
            const int i = c * m + j;
            sb_init(&s, e);
            dsym(&s, "x", "x", t, j);
            sb_put(&s, " (folded) = ", "\\ \\text{(folded)} = ");
            sb_nump(&s, v->g[c] * v->s[c]);
            sb_put(&s, "·(", " \\cdot (");
            sb_num(&s, v->dy[i]);
            sb_put(&s, " − ", " - ");
            sb_nump(&s, v->mdy[c]);
            sb_put(&s, " − ", " - ");
            sb_nump(&s, v->xh[i]);
            sb_mul(&s);
            sb_nump(&s, v->mdyx[c]);
            sb_printf(&s, ") = ");
            sb_num(&s, v->fold[i]);
            ex_formula(e, &s);
        }
    }
    ex_say(e, "The same numbers as the three paths of step 4 (the check below compares them).");
}

/* "NAME = (1 - m)·OLD + m·BATCH = NEW": one running statistic's update. */
static void running_update(const ex *e, const char *name, const char *tex, int t, double m, double old, double batch,
                           double now) {
    sb s;
    sb_init(&s, e);
    sym(&s, name, tex, t, -1);
    sb_printf(&s, " = (1 - ");
    sb_num(&s, m);
    sb_printf(&s, ")");
    sb_mul(&s);
    sb_num(&s, old);
    sb_printf(&s, " + ");
    sb_num(&s, m);
    sb_mul(&s);
    sb_nump(&s, batch);
    sb_printf(&s, " = ");
    sb_num(&s, now);
    ex_formula(e, &s);
}

static void print_running(const ex *e, const bn *v) {
    ex_heading(e, "6. the running statistics, updated by the training forward (momentum %g)", v->momentum);
    ex_say(e, "A new net starts with running_mean = 0 and running_var = 1. The training forward moves them toward "
              "the batch's statistics; running_var takes the unbiased variance σ²·m/(m − 1), as PyTorch does:");
    for (int c = 0; c < v->C; c++) {
        const int t = v->C > 1 ? c : -1;
        running_update(e, "running_mean", "\\mathrm{running\\_mean}", t, v->momentum, 0.0, v->mu[c], v->rm[c]);
        sb s;
        sb_init(&s, e);
        sb_put(&s, "unbiased variance = σ²·m/(m − 1) = ", "\\text{unbiased variance} = \\sigma^2 \\frac{m}{m-1} = ");
        sb_num(&s, v->var[c]);
        sb_mul(&s);
        sb_printf(&s, "%d/%d = ", v->m, v->m - 1);
        sb_num(&s, v->unb[c]);
        ex_formula(e, &s);
        running_update(e, "running_var", "\\mathrm{running\\_var}", t, v->momentum, 1.0, v->unb[c], v->rv[c]);
    }
    ex_heading(e, "7. eval mode: a fixed linear map");
    char factors[400];
    size_t at = 0;
    factors[0] = '\0';
    for (int c = 0; c < v->C && at < sizeof factors; c++)
        at += (size_t)snprintf(factors + at, sizeof factors - at, "%s%.6g", c ? ", " : "",
                               v->g[c] / sqrt(v->rv[c] + v->eps));
    ex_say(e, "In eval mode (PyTorch's model.eval(), cnn_net_set_training(net, 0)) μ and σ² are the running "
              "statistics: constants, not functions of the batch. Then y = γ·(x − running_mean)/√(running_var + ε) + β "
              "is a linear map of x, the paths through μ and σ² are gone, and ∂L/∂x = ∂L/∂y·γ/√(running_var + ε): "
              "with the running statistics above, ∂L/∂x = ∂L/∂y times %s%s. ∂L/∂γ and ∂L/∂β keep their formulas.",
           factors, v->C > 1 ? " (channel by channel)" : "");
}

int explain_batchnorm(ex *e, int argc, char **argv) {
    const char *in = NULL, *chs = NULL, *gs = NULL, *bs = NULL, *es = NULL, *ms = NULL, *dys = NULL;
    const ex_opt opts[] = {{"--input", &in}, {"--channels", &chs}, {"--gamma", &gs},     {"--beta", &bs},
                           {"--eps", &es},   {"--momentum", &ms},  {"--dy", &dys},       {"--grad-output", &dys},
                           {NULL, NULL}};
    int rc = ex_args(e, argc, argv, opts, batchnorm_usage);
    if (rc >= 0) return rc;
    bn *v = &B;
    memset(v, 0, sizeof *v);
    if (!parse(v, in, chs, gs, bs, es, ms, dys)) return EXIT_BAD_INPUT;
    compute(v);
    const int C = v->C, m = v->m, n = C * m;
    for (int c = 0; c < C; c++)
        if (!(v->var[c] + v->eps > 0)) {
            cli_error("explain", "batchnorm: channel %d's values are all equal and --eps is 0, so σ² + ε = 0 and x̂ "
                                 "would divide by 0: give ε > 0 (PyTorch's default is 1e-5)", c + 1);
            return EXIT_BAD_INPUT;
        }

    ex_title(e, "batch norm in training mode, %d sample%s of %d channel%s of %dx%d: forward, graph, chain rule", v->N,
             v->N == 1 ? "" : "s", C, C == 1 ? "" : "s", v->H, v->W);
    print_inputs(e, v);
    print_graph(e, v);
    print_forward(e, v);
    print_locals(e, v);
    print_backward(e, v);
    print_folded(e, v);
    print_running(e, v);

    /* The library: batchnorm2d on [N, C, H, W] in training mode (a new net's mode). */
    char model[160];
    snprintf(model, sizeof model, "input %d %d %d\nbatchnorm2d eps=%.17g momentum=%.17g\n", C, v->H, v->W, v->eps,
             v->momentum);
    for (int c = 0; c < C; c++)
        for (int j = 0; j < m; j++) v->nx[nchw(v, c, j)] = v->x[c * m + j], v->ndy[nchw(v, c, j)] = v->dy[c * m + j];
    /* The library holds floats. Where the inputs are not floats already, it gets them rounded, and
     * batch norm can be sensitive to that (x = 1000.1 and 1000.2: the deviations from μ lose digits),
     * so it is compared with this arithmetic on the rounded inputs. */
    bn *f = v;
    int rounded = 0;
    for (int i = 0; i < n; i++) rounded |= (double)(float)v->x[i] != v->x[i] || (double)(float)v->dy[i] != v->dy[i];
    for (int c = 0; c < C; c++) rounded |= (double)(float)v->g[c] != v->g[c] || (double)(float)v->b[c] != v->b[c];
    double shift = 0.0;
    if (rounded) {
        f = &Bf;
        memcpy(f, v, sizeof *f);
        for (int i = 0; i < n; i++) f->x[i] = (float)v->x[i], f->dy[i] = (float)v->dy[i];
        for (int c = 0; c < C; c++) f->g[c] = (float)v->g[c], f->b[c] = (float)v->b[c];
        compute(f);
        for (int i = 0; i < n; i++) {
            const double d = fabs(f->dx[i] - v->dx[i]) / fmax(1.0, v->sdx[i]);
            const double d2 = fabs(f->y[i] - v->y[i]) / fmax(1.0, v->sy[i]);
            shift = fmax(shift, fmax(d, d2));
        }
    }
    ex_check ck;
    ex_check_init(&ck, "batchnorm2d", "three paths (step 4) = folded formula (step 5)");
    for (int k = 0; k < 2; k++) {
        ex_run r = {.model = model, .batch = v->N, .nparams = 2, .pname = {"0.weight", "0.bias"},
                    .pval = {v->g, v->b}, .x = v->nx, .dy = v->ndy, .y = v->ly, .dx = v->ldx,
                    .pgrad = {v->ldg, v->ldb}, .bname = {"0.running_mean", "0.running_var"},
                    .bval = {v->lrm, v->lrv}};
        if ((rc = ex_lib_run(&r, k ? CNN_PATH_FAST : CNN_PATH_REFERENCE))) return rc;
        for (int c = 0; c < C; c++)
            for (int j = 0; j < m; j++) {
                v->ty[c * m + j] = v->ly[nchw(v, c, j)];
                v->tdx[c * m + j] = v->ldx[nchw(v, c, j)];
            }
        const int by = k ? EX_BY_FAST : EX_BY_REF;
        ex_check_cmp(&ck, by, "y", f->y, v->ty, f->sy, n, NULL);
        ex_check_cmp(&ck, by, "∂L/∂x", f->dx, v->tdx, f->sdx, n, NULL);
        ex_check_cmp(&ck, by, "∂L/∂γ", f->dg, v->ldg, f->sdg, C, NULL);
        ex_check_cmp(&ck, by, "∂L/∂β", f->db, v->ldb, f->sdb, C, NULL);
        ex_check_cmp(&ck, by, "running_mean", f->rm, v->lrm, f->srm, C, NULL);
        ex_check_cmp(&ck, by, "running_var", f->rv, v->lrv, f->srv, C, NULL);
    }
    ex_check_cmp(&ck, EX_BY_ALT, "∂L/∂x", v->dx, v->fold, v->sdx, n, NULL);
    /* Central differences of the forward formula: x̂ bends on the scale of √(σ² + ε), so the step
     * shrinks with it. */
    double sd = 1.0;
    for (int c = 0; c < C; c++)
        if (1.0 / v->s[c] < sd) sd = 1.0 / v->s[c];
    v->step = EX_STEP * sd;
    snprintf(ck.label[EX_BY_FD], sizeof ck.label[0], "central differences (step %.3g)", v->step);
    memcpy(v->vars, v->x, (size_t)n * sizeof *v->x);
    memcpy(v->vars + n, v->g, (size_t)C * sizeof *v->g);
    memcpy(v->vars + n + C, v->b, (size_t)C * sizeof *v->b);
    ex_central_fixed(v->vars, n + 2 * C, v->step, bn_loss, v, v->fd);
    ex_check_cmp(&ck, EX_BY_FD, "∂L/∂x", v->dx, v->fd, v->sdx, n, NULL);
    ex_check_cmp(&ck, EX_BY_FD, "∂L/∂γ", v->dg, v->fd + n, v->sdg, C, NULL);
    ex_check_cmp(&ck, EX_BY_FD, "∂L/∂β", v->db, v->fd + n + C, v->sdb, C, NULL);
    char how[800], what[160], floats[300] = "";
    if (rounded)
        snprintf(floats, sizeof floats, " The library holds floats: it is compared with the arithmetic above on the "
                                        "numbers rounded to float, which moves the results by up to %.3g (relative) "
                                        "here.", shift);
    snprintf(how, sizeof how,
             "The library's layer is a net built from the model text \"input %d %d %d / batchnorm2d eps=%g "
             "momentum=%g\", in training mode (a new net's), run on the batch (%d sample%s) with 0.weight = γ and "
             "0.bias = β; its running statistics are read after the forward.%s Central differences take "
             "L = Σ y·∂L/∂y of the forward formula, in double.",
             C, v->H, v->W, v->eps, v->momentum, v->N, v->N == 1 ? "" : "s", floats);
    snprintf(what, sizeof what, "%d outputs, %d ∂L/∂x, %d ∂L/∂γ, %d ∂L/∂β and the running statistics", n, n, C, C);
    return ex_check_report(e, &ck, how, what);
}
