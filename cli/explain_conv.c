/* cnn explain conv: a convolution layer's forward and backward pass, element by element (notes 002,
 * 003, 004), with stride, padding, and several channels and filters (the cases note 002 leaves
 * empty; src/layers/conv2d.c derives them).
 *
 * Shapes: X [C, H, W], W [K, C, kh, kw], b [K], O and ∂L/∂O [K, OH, OW], with Xp the input with ph
 * rows and pw columns of zeros on each side and OH = (H + 2ph − kh)/sh + 1.
 *   forward    o(k)ij = b(k) + Σ_c Σ_rt w(k,c)rt · xp(c)[i·sh + r, j·sw + t]                  (003)
 *   ∂L/∂W      U(k) = ∂L/∂O(k) with sh − 1 zeros between rows (sw − 1 between columns);
 *              ∂L/∂w(k,c)rt = Σ_ab U(k)ab · xp(c)[a + r, b + t]   (valid correlation of Xp with U; 004)
 *   ∂L/∂X      ∂L/∂Xp(c) = Σ_k full convolution of U(k), padded with kh − 1 rows and kw − 1 columns of
 *              zeros, with rot180(W(k,c)); ∂L/∂X drops the border of ∂L/∂Xp            (004, 001 eq. 14)
 *   ∂L/∂b      ∂L/∂b(k) = Σ_ij ∂L/∂o(k)ij                                                   (002 eq. 12)
 * ∂L/∂X is also computed straight from the chain rule, one term per output that reads each x
 * (003's list), and the two ways are compared.
 */
#include "explain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char conv_usage[] =
    "usage: cnn explain conv [--input X] [--kernel W] [--bias B] [--grad-output DY]\n"
    "                        [--stride S] [--padding P] [--channels C] [--filters K]\n"
    "                        [--format text|markdown]\n"
    "\n"
    "A convolution's forward pass, written out the way note 003 writes it, then dL/dW (the valid\n"
    "correlation of X with dL/dO), dL/dX (the full convolution of the zero-padded dL/dO with\n"
    "rot180(W); for stride > 1 with zeros inserted between the elements of dL/dO) and dL/db.\n"
    "\n"
    "  --input X        the input, one matrix per channel separated by '|' (default 3x3: 1 .. 9)\n"
    "  --kernel W       the kernels, filter by filter and within a filter channel by channel,\n"
    "                   separated by '|' (default 2x2: 1 -2; 3 4)\n"
    "  --bias B         one number per filter (default 0)\n"
    "  --grad-output DY dL/dO, one matrix per filter (default: small integers of the output's shape)\n"
    "  --stride S       S or H,W (default 1)\n"
    "  --padding P      zeros around the input, P or H,W (default 0)\n"
    "  --channels C     input channels (default: the matrices in --input, else 1)\n"
    "  --filters K      filters, i.e. output channels (default: as --kernel gives, else 1)\n"
    "\n"
    "Matrices are limited to 16x16, channels and filters to 8. Matrices the options leave out are\n"
    "filled with small integers.\n"
    "\n"
    "examples:\n"
    "  cnn explain conv --input \"1 2 3; 4 5 6; 7 8 9\" --kernel \"1 -2; 3 4\" --grad-output \"1 -1; 2 3\"\n"
    "  cnn explain conv --input \"1 2 0 1; 3 1 2 2; 0 1 4 1; 2 2 1 0\" --kernel \"1 0 -1; 2 1 0; 0 1 1\" \\\n"
    "                   --stride 2 --padding 1 --format markdown\n"
    "  cnn explain conv --channels 2 --filters 3\n";

#define MAXS EX_MAX_STACK
#define PLANE (EX_MAX_DIM * EX_MAX_DIM)

/* The notes' numbers (tests/test_notes.c uses them too). */
static const double default_w[4] = {1, -2, 3, 4};
static const double default_dy[4] = {1, -1, 2, 3};

/* Small integers in −4..4 for the matrices the user leaves out. */
static double pattern(int n) { return (double)((n * 5 + 2) % 9 - 4); }

typedef struct conv {
    int C, H, W, K, kh, kw, sh, sw, ph, pw, OH, OW;
    int Hp, Wp;                   /* the padded input */
    int UH, UW;                   /* ∂L/∂O with stride − 1 zeros between its elements */
    int PH, PW;                   /* U padded for the full convolution: Hp + kh − 1 rows */
} conv;

/* Everything a run holds, in one static block (about 2 MB). */
typedef struct conv_data {
    double x[MAXS * PLANE], w[MAXS * MAXS * PLANE], b[MAXS], dy[MAXS * PLANE];
    double y[MAXS * PLANE], dw[MAXS * MAXS * PLANE], db[MAXS], dx[MAXS * PLANE], dx_chain[MAXS * PLANE];
    double sy[MAXS * PLANE], sdw[MAXS * MAXS * PLANE], sdb[MAXS], sdx[MAXS * PLANE];   /* Σ|terms| */
    double ly[MAXS * PLANE], ldw[MAXS * MAXS * PLANE], ldb[MAXS], ldx[MAXS * PLANE];   /* the library */
    double vars[MAXS * PLANE + MAXS * MAXS * PLANE + MAXS], fd[MAXS * PLANE + MAXS * MAXS * PLANE + MAXS];
    double ax[MAXS * PLANE], aw[MAXS * MAXS * PLANE], ab[MAXS], ady[MAXS * PLANE];     /* |values| */
    double tmp[4 * 64 * 64];
} conv_data;

static conv_data D;

/* ---- the arithmetic ----------------------------------------------------------------------------- */

/* xp(c)[hp, wp]: the input seen through its zero padding. */
static double xp(const conv *v, const double *x, int c, int hp, int wp) {
    const int h = hp - v->ph, w = wp - v->pw;
    if (h < 0 || h >= v->H || w < 0 || w >= v->W) return 0.0;
    return x[((size_t)c * v->H + h) * v->W + w];
}

static double wat(const conv *v, const double *w, int k, int c, int r, int t) {
    return w[(((size_t)k * v->C + c) * v->kh + r) * v->kw + t];
}

/* o(k)ij = b(k) + Σ_c Σ_rt w(k,c)rt · xp(c)[i·sh + r, j·sw + t] */
static void conv_forward(const conv *v, const double *x, const double *w, const double *b, double *y) {
    for (int k = 0; k < v->K; k++)
        for (int i = 0; i < v->OH; i++)
            for (int j = 0; j < v->OW; j++) {
                double acc = b[k];
                for (int c = 0; c < v->C; c++)
                    for (int r = 0; r < v->kh; r++)
                        for (int t = 0; t < v->kw; t++)
                            acc += wat(v, w, k, c, r, t) * xp(v, x, c, i * v->sh + r, j * v->sw + t);
                y[((size_t)k * v->OH + i) * v->OW + j] = acc;
            }
}

/* U(k)[a, b]: ∂L/∂O(k) with stride − 1 zeros between its elements. */
static double u_at(const conv *v, const double *dy, int k, int a, int b) {
    if (a < 0 || b < 0 || a >= v->UH || b >= v->UW || a % v->sh || b % v->sw) return 0.0;
    return dy[((size_t)k * v->OH + a / v->sh) * v->OW + b / v->sw];
}

/* ∂L/∂w(k,c)rt = Σ_ab U(k)ab · xp(c)[a + r, b + t] */
static void conv_dw(const conv *v, const double *x, const double *dy, double *dw) {
    for (int k = 0; k < v->K; k++)
        for (int c = 0; c < v->C; c++)
            for (int r = 0; r < v->kh; r++)
                for (int t = 0; t < v->kw; t++) {
                    double acc = 0.0;
                    for (int a = 0; a < v->UH; a++)
                        for (int bb = 0; bb < v->UW; bb++) acc += u_at(v, dy, k, a, bb) * xp(v, x, c, a + r, bb + t);
                    dw[(((size_t)k * v->C + c) * v->kh + r) * v->kw + t] = acc;
                }
}

static void conv_db(const conv *v, const double *dy, double *db) {
    for (int k = 0; k < v->K; k++) {
        db[k] = 0.0;
        for (int i = 0; i < v->OH * v->OW; i++) db[k] += dy[(size_t)k * v->OH * v->OW + i];
    }
}

/* Upad(k)[a, b] = U(k)[a − (kh − 1), b − (kw − 1)]: zeros all around, and below and right as far as
 * the full convolution needs to cover every row and column of Xp. */
static double upad_at(const conv *v, const double *dy, int k, int a, int b) {
    return u_at(v, dy, k, a - (v->kh - 1), b - (v->kw - 1));
}

/* ∂L/∂Xp(c)[hp, wp] = Σ_k Σ_rt Upad(k)[hp + r, wp + t] · rot180(W(k,c))[r, t], with
 * rot180(W)[r, t] = W[kh − 1 − r, kw − 1 − t]; ∂L/∂X(c)[h, w] = ∂L/∂Xp(c)[h + ph, w + pw]. */
static void conv_dx_full(const conv *v, const double *dy, const double *w, double *dx, double *dxp) {
    for (int c = 0; c < v->C; c++)
        for (int hp = 0; hp < v->Hp; hp++)
            for (int wp = 0; wp < v->Wp; wp++) {
                double acc = 0.0;
                for (int k = 0; k < v->K; k++)
                    for (int r = 0; r < v->kh; r++)
                        for (int t = 0; t < v->kw; t++)
                            acc += upad_at(v, dy, k, hp + r, wp + t) *
                                   wat(v, w, k, c, v->kh - 1 - r, v->kw - 1 - t);
                if (dxp) dxp[((size_t)c * v->Hp + hp) * v->Wp + wp] = acc;
                const int h = hp - v->ph, ww = wp - v->pw;
                if (h >= 0 && h < v->H && ww >= 0 && ww < v->W) dx[((size_t)c * v->H + h) * v->W + ww] = acc;
            }
}

/* The output (k, i, j) reads x(c)[h, w] through w(k,c)rt when i·sh + r = h + ph and j·sw + t = w + pw;
 * returns 0 if it does not. */
static int reads(const conv *v, int i, int j, int h, int w, int *r, int *t) {
    *r = h + v->ph - i * v->sh;
    *t = w + v->pw - j * v->sw;
    return *r >= 0 && *r < v->kh && *t >= 0 && *t < v->kw;
}

/* ∂L/∂x(c)hw = Σ over the outputs o(k)ij that read it of ∂L/∂o(k)ij · w(k,c)rt (the chain rule). */
static void conv_dx_chain(const conv *v, const double *dy, const double *w, double *dx) {
    for (int c = 0; c < v->C; c++)
        for (int h = 0; h < v->H; h++)
            for (int ww = 0; ww < v->W; ww++) {
                double acc = 0.0;
                int r, t;
                for (int k = 0; k < v->K; k++)
                    for (int i = 0; i < v->OH; i++)
                        for (int j = 0; j < v->OW; j++)
                            if (reads(v, i, j, h, ww, &r, &t))
                                acc += dy[((size_t)k * v->OH + i) * v->OW + j] * wat(v, w, k, c, r, t);
                dx[((size_t)c * v->H + h) * v->W + ww] = acc;
            }
}

/* ---- central differences of L = Σ O·∂L/∂O ---------------------------------------------------- */

typedef struct conv_fd {
    const conv *v;
    const double *vars, *dy;
    double *y;
} conv_fd;

static double conv_loss(void *ctx) {
    conv_fd *f = ctx;
    const conv *v = f->v;
    const double *x = f->vars, *w = x + (size_t)v->C * v->H * v->W, *b = w + (size_t)v->K * v->C * v->kh * v->kw;
    conv_forward(v, x, w, b, f->y);
    double L = 0.0;
    for (int i = 0; i < v->K * v->OH * v->OW; i++) L += f->y[i] * f->dy[i];
    return L;
}

/* ---- printing ----------------------------------------------------------------------------------- */

static int multi(const conv *v) { return v->C > 1 || v->K > 1; }
static ex_sym sx(const conv *v, int c, int i, int j) { return ex_s("x", v->C > 1 ? c : -1, -1, i, j); }
static ex_sym sw_(const conv *v, int k, int c, int i, int j) {
    return multi(v) ? ex_s("w", k, c, i, j) : ex_s("w", -1, -1, i, j);
}
static ex_sym so(const conv *v, int k, int i, int j) { return ex_s("o", v->K > 1 ? k : -1, -1, i, j); }
static ex_sym sbias(const conv *v, int k) { return ex_s("b", v->K > 1 ? k : -1, -1, -1, -1); }

/* Labels of a matrix: "∂L/∂X(2)" and "\frac{\partial L}{\partial X^{(2)}}"; d: a gradient. */
typedef struct label {
    char text[96], tex[160];
} label;

static label mlabel(const char *base, int d, int t1, int t2) {
    label l;
    const char *tbase = !strcmp(base, "Xp") ? "X_p" : base;
    char tags[32] = "";
    if (t1 >= 0 && t2 >= 0) snprintf(tags, sizeof tags, "(%d,%d)", t1 + 1, t2 + 1);
    else if (t1 >= 0) snprintf(tags, sizeof tags, "(%d)", t1 + 1);
    if (d) {
        snprintf(l.text, sizeof l.text, "∂L/∂%s%s", base, tags);
        snprintf(l.tex, sizeof l.tex, "\\frac{\\partial L}{\\partial %s%s%s%s}", tbase, *tags ? "^{" : "", tags,
                 *tags ? "}" : "");
    } else {
        snprintf(l.text, sizeof l.text, "%s%s", base, tags);
        snprintf(l.tex, sizeof l.tex, "%s%s%s%s", tbase, *tags ? "^{" : "", tags, *tags ? "}" : "");
    }
    return l;
}

static void show(const ex *e, label l, const double *m, int rows, int cols) {
    ex_matrix(e, l.text, l.tex, m, rows, cols);
}

/* ---- options ------------------------------------------------------------------------------------ */

typedef struct conv_opts {
    const char *input, *kernel, *bias, *grad_output, *stride, *padding, *channels, *filters;
} conv_opts;

/* Reads the options into v and D; prints a message and returns 0 on bad input. */
static int conv_setup(const conv_opts *o, conv *v) {
    memset(v, 0, sizeof *v);
    int nx = 0, xh = 3, xw = 3, nw = 0, wh = 2, ww = 2, nd = 0, dh = 0, dw = 0, C = 0, K = 0;
    v->sh = v->sw = 1;
    if (o->input && !ex_stack("--input", o->input, D.x, MAXS, &nx, &xh, &xw)) return 0;
    if (o->kernel && !ex_stack("--kernel", o->kernel, D.w, MAXS * MAXS, &nw, &wh, &ww)) return 0;
    if (o->grad_output && !ex_stack("--grad-output", o->grad_output, D.dy, MAXS, &nd, &dh, &dw)) return 0;
    if (o->stride && !ex_pair("--stride", o->stride, 1, EX_MAX_DIM, &v->sh, &v->sw)) return 0;
    if (o->padding && !ex_pair("--padding", o->padding, 0, EX_MAX_DIM / 2, &v->ph, &v->pw)) return 0;
    if (o->channels && !ex_int("--channels", o->channels, 1, MAXS, &C)) return 0;
    if (o->filters && !ex_int("--filters", o->filters, 1, MAXS, &K)) return 0;

    if (!C) C = o->input ? nx : 1;
    if (o->input && nx != C) {
        cli_error("explain", "--input has %d matri%s but --channels %d needs %d (separate channels with '|')", nx,
                  nx == 1 ? "x" : "ces", C, C);
        return 0;
    }
    if (!K) {
        if (o->kernel) {
            if (nw % C) {
                cli_error("explain", "--kernel has %d matri%s, but with %d input channels it needs a multiple of %d "
                                     "(one per channel for each filter)",
                          nw, nw == 1 ? "x" : "ces", C, C);
                return 0;
            }
            K = nw / C;
        } else {
            K = o->grad_output ? nd : 1;
        }
    }
    if (K > MAXS) {
        cli_error("explain", "%d filters, but at most %d are allowed", K, MAXS);
        return 0;
    }
    if (o->kernel && nw != K * C) {
        cli_error("explain", "--kernel has %d matri%s, but %d filters × %d channels need %d (filter by filter, each "
                             "channel by channel, separated by '|')",
                  nw, nw == 1 ? "x" : "ces", K, C, K * C);
        return 0;
    }
    v->C = C, v->K = K, v->H = xh, v->W = xw, v->kh = wh, v->kw = ww;
    v->Hp = xh + 2 * v->ph, v->Wp = xw + 2 * v->pw;
    if (wh > v->Hp || ww > v->Wp) {
        cli_error("explain", "the kernel (%dx%d) is larger than the padded input (%dx%d with padding %d,%d: %dx%d)", wh,
                  ww, xh, xw, v->ph, v->pw, v->Hp, v->Wp);
        return 0;
    }
    v->OH = (v->Hp - wh) / v->sh + 1, v->OW = (v->Wp - ww) / v->sw + 1;
    if (v->OH > EX_MAX_DIM || v->OW > EX_MAX_DIM) {
        cli_error("explain", "the output would be %dx%d; explain prints every element, so it is limited to %dx%d",
                  v->OH, v->OW, EX_MAX_DIM, EX_MAX_DIM);
        return 0;
    }
    v->UH = (v->OH - 1) * v->sh + 1, v->UW = (v->OW - 1) * v->sw + 1;
    v->PH = v->Hp + v->kh - 1, v->PW = v->Wp + v->kw - 1;
    if (o->grad_output && (nd != K || dh != v->OH || dw != v->OW)) {
        cli_error("explain", "--grad-output is %d matri%s of %dx%d, but the output is %d of %dx%d (one per filter)", nd,
                  nd == 1 ? "x" : "ces", dh, dw, K, v->OH, v->OW);
        return 0;
    }
    if (o->bias) {
        double b[EX_MAX_DIM * EX_MAX_DIM];
        int br, bc;
        if (!ex_mat("--bias", o->bias, b, &br, &bc)) return 0;
        if (br * bc != K) {
            cli_error("explain", "--bias has %d number%s, but there %s %d filter%s (one bias each)", br * bc,
                      br * bc == 1 ? "" : "s", K == 1 ? "is" : "are", K, K == 1 ? "" : "s");
            return 0;
        }
        memcpy(D.b, b, (size_t)K * sizeof *b);
    } else {
        memset(D.b, 0, sizeof D.b);
    }
    /* Defaults: the notes' numbers where the shapes are the notes', small integers elsewhere. */
    if (!o->input)
        for (int i = 0; i < C * xh * xw; i++) D.x[i] = i + 1;
    if (!o->kernel) {
        const int notes = wh == 2 && ww == 2;
        for (int i = 0; i < K * C * wh * ww; i++) D.w[i] = notes && i < 4 ? default_w[i] : pattern(i);
    }
    if (!o->grad_output) {
        for (int i = 0; i < K * v->OH * v->OW; i++) D.dy[i] = default_dy[i % 4];
    }
    return 1;
}

/* ---- the explanation ---------------------------------------------------------------------------- */

static void print_inputs(const ex *e, const conv *v) {
    const size_t plane = (size_t)v->H * v->W, kp = (size_t)v->kh * v->kw, op = (size_t)v->OH * v->OW;
    for (int c = 0; c < v->C; c++) show(e, mlabel("X", 0, v->C > 1 ? c : -1, -1), D.x + c * plane, v->H, v->W);
    for (int k = 0; k < v->K; k++)
        for (int c = 0; c < v->C; c++)
            show(e, multi(v) ? mlabel("W", 0, k, c) : mlabel("W", 0, -1, -1), D.w + (k * v->C + c) * kp, v->kh, v->kw);
    sb s;
    sb_init(&s, e);
    for (int k = 0; k < v->K; k++) {
        if (k) sb_printf(&s, ", ");
        sb_sym(&s, sbias(v, k));
        sb_printf(&s, " = ");
        sb_num(&s, D.b[k]);
    }
    ex_formula(e, &s);
    ex_say(e, "∂L/∂O, the gradient that reaches the output from the layers after it, is given (as the notes "
              "take it):");
    for (int k = 0; k < v->K; k++) show(e, mlabel("O", 1, v->K > 1 ? k : -1, -1), D.dy + k * op, v->OH, v->OW);
}

static void print_forward(const ex *e, const conv *v) {
    ex_heading(e, "1. forward: each output is a sum of products (note 003; note 002 eq. 1-4)");
    if (v->ph || v->pw) {
        ex_say(e, "The input is padded with %d row%s and %d column%s of zeros on each side; terms that fall on the "
                  "padding are 0 and left out.",
               v->ph, v->ph == 1 ? "" : "s", v->pw, v->pw == 1 ? "" : "s");
        for (int c = 0; c < v->C; c++) {
            for (int h = 0; h < v->Hp; h++)
                for (int w = 0; w < v->Wp; w++) D.tmp[h * v->Wp + w] = xp(v, D.x, c, h, w);
            show(e, mlabel("Xp", 0, v->C > 1 ? c : -1, -1), D.tmp, v->Hp, v->Wp);
        }
    }
    if (v->sh > 1 || v->sw > 1)
        ex_say(e, "With stride %d,%d (rows, columns) the window of o_ij starts at row (i−1)·%d + 1 and column "
                  "(j−1)·%d + 1 of X%s.",
               v->sh, v->sw, v->sh, v->sw, v->ph || v->pw ? "p" : "");
    for (int k = 0; k < v->K; k++)
        for (int i = 0; i < v->OH; i++)
            for (int j = 0; j < v->OW; j++) {
                sb sym, num;
                sb_init(&sym, e);
                sb_init(&num, e);
                sb_sym(&sym, so(v, k, i, j));
                sb_printf(&sym, " = ");
                int n = 0;
                for (int c = 0; c < v->C; c++)
                    for (int r = 0; r < v->kh; r++)
                        for (int t = 0; t < v->kw; t++) {
                            const int h = i * v->sh + r - v->ph, w = j * v->sw + t - v->pw;
                            if (h < 0 || h >= v->H || w < 0 || w >= v->W) continue;
                            if (n++) sb_printf(&sym, " + "), sb_printf(&num, " + ");
                            sb_sym(&sym, sw_(v, k, c, r, t));
                            sb_mul(&sym);
                            sb_sym(&sym, sx(v, c, h, w));
                            sb_nump(&num, wat(v, D.w, k, c, r, t));
                            sb_mul(&num);
                            sb_nump(&num, D.x[((size_t)c * v->H + h) * v->W + w]);
                        }
                if (n) sb_printf(&sym, " + "), sb_printf(&num, " + ");
                sb_sym(&sym, sbias(v, k));
                sb_nump(&num, D.b[k]);
                sb_printf(&sym, " = "), sb_append(&sym, &num), sb_printf(&sym, " = ");
                sb_num(&sym, D.y[((size_t)k * v->OH + i) * v->OW + j]);
                ex_formula(e, &sym);
            }
    for (int k = 0; k < v->K; k++)
        show(e, mlabel("O", 0, v->K > 1 ? k : -1, -1), D.y + (size_t)k * v->OH * v->OW, v->OH, v->OW);
}

static void print_dw(const ex *e, const conv *v) {
    ex_heading(e, "2. ∂L/∂W: the valid correlation of X with ∂L/∂O (note 004; note 002 eq. 9-10)");
    ex_say(e, "Each weight is used at every output position, so its gradient sums ∂L/∂o times the input that the "
              "weight met there.");
    if (v->sh > 1 || v->sw > 1) {
        char rows[64] = "", cols[64] = "";
        if (v->sh > 1) snprintf(rows, sizeof rows, "%d zero row%s between its rows", v->sh - 1, v->sh == 2 ? "" : "s");
        if (v->sw > 1)
            snprintf(cols, sizeof cols, "%d zero column%s between its columns", v->sw - 1, v->sw == 2 ? "" : "s");
        ex_say(e, "With stride %d,%d (rows, columns), ∂L/∂O first gets %s%s%s: U. ∂L/∂W is the valid correlation of "
                  "X%s with U; the forward stride becomes a dilation here.",
               v->sh, v->sw, rows, *rows && *cols ? " and " : "", cols, v->ph || v->pw ? "p" : "");
        for (int k = 0; k < v->K; k++) {
            for (int a = 0; a < v->UH; a++)
                for (int b = 0; b < v->UW; b++) D.tmp[a * v->UW + b] = u_at(v, D.dy, k, a, b);
            show(e, mlabel("U", 0, v->K > 1 ? k : -1, -1), D.tmp, v->UH, v->UW);
        }
    }
    if (v->C > 1)
        ex_say(e, "Filter k's slice for channel c, W(k,c), only ever meets X(c) and only affects O(k).");
    for (int k = 0; k < v->K; k++)
        for (int c = 0; c < v->C; c++)
            for (int r = 0; r < v->kh; r++)
                for (int t = 0; t < v->kw; t++) {
                    sb sym, num;
                    sb_init(&sym, e);
                    sb_init(&num, e);
                    sb_d(&sym, "L", sw_(v, k, c, r, t));
                    sb_printf(&sym, " = ");
                    int n = 0;
                    for (int i = 0; i < v->OH; i++)
                        for (int j = 0; j < v->OW; j++) {
                            const int h = i * v->sh + r - v->ph, w = j * v->sw + t - v->pw;
                            if (h < 0 || h >= v->H || w < 0 || w >= v->W) continue;
                            if (n++) sb_printf(&sym, " + "), sb_printf(&num, " + ");
                            sb_d(&sym, "L", so(v, k, i, j));
                            sb_mul(&sym);
                            sb_sym(&sym, sx(v, c, h, w));
                            sb_nump(&num, D.dy[((size_t)k * v->OH + i) * v->OW + j]);
                            sb_mul(&num);
                            sb_nump(&num, D.x[((size_t)c * v->H + h) * v->W + w]);
                        }
                    if (n) sb_printf(&sym, " = "), sb_append(&sym, &num), sb_printf(&sym, " = ");
                    else sb_put(&sym, "0 (every term falls on the padding) = ", "0 = ");
                    sb_num(&sym, D.dw[(((size_t)k * v->C + c) * v->kh + r) * v->kw + t]);
                    ex_formula(e, &sym);
                }
    const size_t kp = (size_t)v->kh * v->kw;
    for (int k = 0; k < v->K; k++)
        for (int c = 0; c < v->C; c++)
            show(e, multi(v) ? mlabel("W", 1, k, c) : mlabel("W", 1, -1, -1), D.dw + (k * v->C + c) * kp, v->kh,
                 v->kw);
    if (!multi(v) && v->H == 3 && v->W == 3 && v->kh == 2 && v->kw == 2 && v->sh == 1 && v->sw == 1 && !v->ph &&
        !v->pw) {
        const double *x = D.x, *d = D.dy;
        ex_say(e, "Note 003 writes ∂L/∂w11 = ∂L/∂o11·x11 + ∂L/∂o12·x21: two terms, and x21 where x12 belongs. Every "
                  "weight meets all four outputs, so each ∂L/∂w has four terms, as note 004 and note 002 eq. 9 write. "
                  "Here note 003's formula would give %.6g instead of %.6g.",
               d[0] * x[0] + d[1] * x[3], D.dw[0]);
    }
}

static void print_dx(const ex *e, const conv *v) {
    ex_heading(e, "3. ∂L/∂X: the full convolution of the zero-padded ∂L/∂O with rot180(W) (note 004; note 001 "
                  "eq. 14)");
    ex_say(e, "rot180(W) turns the kernel half a turn: its first row is W's last row, reversed.");
    if (!multi(v) && v->kh == v->kw && v->kh > 1) {
        char wt[256];
        int at = 0;
        for (int r = 0; r < v->kh && at < (int)sizeof wt - 40; r++)
            for (int t = 0; t < v->kw && at < (int)sizeof wt - 40; t++)
                at += snprintf(wt + at, sizeof wt - (size_t)at, "%s%.6g", t ? " " : r ? "; " : "",
                               wat(v, D.w, 0, 0, t, r) + 0.0);
        ex_say(e, "(Note 002 eq. 8 calls it the transposed kernel Wᵀ. It is not: Wᵀ mirrors W about its diagonal, "
                  "here [%s], while the chain rule needs the half turn.)",
               wt);
    }
    for (int k = 0; k < v->K; k++)
        for (int c = 0; c < v->C; c++) {
            for (int r = 0; r < v->kh; r++)
                for (int t = 0; t < v->kw; t++)
                    D.tmp[r * v->kw + t] = wat(v, D.w, k, c, v->kh - 1 - r, v->kw - 1 - t);
            const label l = multi(v) ? mlabel("W", 0, k, c) : mlabel("W", 0, -1, -1);
            label rl;
            snprintf(rl.text, sizeof rl.text, "rot180(%.80s)", l.text);
            snprintf(rl.tex, sizeof rl.tex, "\\mathrm{rot180}(%.120s)", l.tex);
            show(e, rl, D.tmp, v->kh, v->kw);
        }
    const int extra_h = v->PH - (v->kh - 1) - v->UH - (v->kh - 1), extra_w = v->PW - (v->kw - 1) - v->UW - (v->kw - 1);
    if (v->sh > 1 || v->sw > 1)
        ex_say(e, "With stride %d,%d the full convolution runs over U, ∂L/∂O with zeros between its elements "
                  "(step 2), not over ∂L/∂O itself.",
               v->sh, v->sw);
    ex_say(e, "%s gets kh − 1 = %d row%s and kw − 1 = %d column%s of zeros on each side%s, so that sliding the "
              "kernel over it reaches every input position:",
           v->sh > 1 || v->sw > 1 ? "U" : "∂L/∂O", v->kh - 1, v->kh == 2 ? "" : "s", v->kw - 1, v->kw == 2 ? "" : "s",
           extra_h || extra_w ? " (and more below and to the right, for the input rows and columns that no window "
                                "reaches: their gradient is 0)"
                              : "");
    for (int k = 0; k < v->K; k++) {
        for (int a = 0; a < v->PH; a++)
            for (int b = 0; b < v->PW; b++) D.tmp[a * v->PW + b] = upad_at(v, D.dy, k, a, b);
        const int strided = v->sh > 1 || v->sw > 1;
        const label l = strided ? mlabel("U", 0, v->K > 1 ? k : -1, -1) : mlabel("O", 1, v->K > 1 ? k : -1, -1);
        label pl;
        snprintf(pl.text, sizeof pl.text, "padded %.80s", l.text);
        snprintf(pl.tex, sizeof pl.tex, "\\text{padded } %.120s", l.tex);
        show(e, pl, D.tmp, v->PH, v->PW);
    }
    if (v->K > 1)
        ex_say(e, "Several filters (the case note 002 leaves empty): every x(c) is read by all %d filters, so by the "
                  "chain rule (note 000) its gradient is the sum, over the filters, of what each alone sends back: "
                  "∂L/∂X(c) = Σ_k fullconv(padded ∂L/∂O(k), rot180(W(k,c))).",
               v->K);
    ex_say(e, "Sliding rot180(W) over the padded matrix gives each ∂L/∂x as a sum of products. Written with the "
              "chain rule, the same sum has one term for each output that read x (notes 003 and 004):");
    int unread = 0;
    for (int c = 0; c < v->C; c++)
        for (int h = 0; h < v->H; h++)
            for (int w = 0; w < v->W; w++) {
                sb sym, num;
                sb_init(&sym, e);
                sb_init(&num, e);
                sb_d(&sym, "L", sx(v, c, h, w));
                sb_printf(&sym, " = ");
                int n = 0, r, t;
                for (int k = 0; k < v->K; k++)
                    for (int i = 0; i < v->OH; i++)
                        for (int j = 0; j < v->OW; j++)
                            if (reads(v, i, j, h, w, &r, &t)) {
                                if (n++) sb_printf(&sym, " + "), sb_printf(&num, " + ");
                                sb_d(&sym, "L", so(v, k, i, j));
                                sb_mul(&sym);
                                sb_sym(&sym, sw_(v, k, c, r, t));
                                sb_nump(&num, D.dy[((size_t)k * v->OH + i) * v->OW + j]);
                                sb_mul(&num);
                                sb_nump(&num, wat(v, D.w, k, c, r, t));
                            }
                if (n) sb_printf(&sym, " = "), sb_append(&sym, &num), sb_printf(&sym, " = ");
                else sb_put(&sym, "0 (no window reads it) = ", "0 = "), unread++;
                sb_num(&sym, D.dx[((size_t)c * v->H + h) * v->W + w]);
                ex_formula(e, &sym);
            }
    if (v->ph || v->pw) {
        ex_say(e, "The full convolution gives the gradient of the padded input, ∂L/∂Xp; ∂L/∂X drops its border of "
                  "%d row%s and %d column%s:",
               v->ph, v->ph == 1 ? "" : "s", v->pw, v->pw == 1 ? "" : "s");
        conv_dx_full(v, D.dy, D.w, D.ldx, D.tmp);   /* ldx is scratch until the library runs */
        for (int c = 0; c < v->C; c++)
            show(e, mlabel("Xp", 1, v->C > 1 ? c : -1, -1), D.tmp + (size_t)c * v->Hp * v->Wp, v->Hp, v->Wp);
    }
    const size_t plane = (size_t)v->H * v->W;
    for (int c = 0; c < v->C; c++) show(e, mlabel("X", 1, v->C > 1 ? c : -1, -1), D.dx + c * plane, v->H, v->W);
}

static void print_db(const ex *e, const conv *v) {
    ex_heading(e, "4. ∂L/∂b: the sum of ∂L/∂O (note 002 eq. 12)");
    ex_say(e, "One bias per filter is added to every output of that filter, so its gradient is the sum of that "
              "filter's ∂L/∂O. (Note 003 gives every output its own bias b_ij; PyTorch and this library share one "
              "bias per filter.)");
    for (int k = 0; k < v->K; k++) {
        sb sym, num;
        sb_init(&sym, e);
        sb_init(&num, e);
        sb_d(&sym, "L", sbias(v, k));
        sb_printf(&sym, " = ");
        for (int i = 0; i < v->OH; i++)
            for (int j = 0; j < v->OW; j++) {
                if (i || j) sb_printf(&sym, " + "), sb_printf(&num, " + ");
                sb_d(&sym, "L", so(v, k, i, j));
                sb_nump(&num, D.dy[((size_t)k * v->OH + i) * v->OW + j]);
            }
        sb_printf(&sym, " = "), sb_append(&sym, &num), sb_printf(&sym, " = ");
        sb_num(&sym, D.db[k]);
        ex_formula(e, &sym);
    }
}

int explain_conv(ex *e, int argc, char **argv) {
    conv_opts o = {0};
    const ex_opt opts[] = {{"--input", &o.input},     {"--kernel", &o.kernel},       {"--bias", &o.bias},
                           {"--grad-output", &o.grad_output}, {"--stride", &o.stride}, {"--padding", &o.padding},
                           {"--channels", &o.channels}, {"--filters", &o.filters},    {NULL, NULL}};
    int rc = ex_args(e, argc, argv, opts, conv_usage);
    if (rc >= 0) return rc;
    conv v;
    if (!conv_setup(&o, &v)) return EXIT_BAD_INPUT;
    const int nx = v.C * v.H * v.W, nw = v.K * v.C * v.kh * v.kw, ny = v.K * v.OH * v.OW;

    /* The notes' arithmetic, and the same on absolute values: the size of each result's terms. */
    conv_forward(&v, D.x, D.w, D.b, D.y);
    conv_dw(&v, D.x, D.dy, D.dw);
    conv_db(&v, D.dy, D.db);
    conv_dx_full(&v, D.dy, D.w, D.dx, NULL);
    conv_dx_chain(&v, D.dy, D.w, D.dx_chain);
    for (int i = 0; i < nx; i++) D.ax[i] = fabs(D.x[i]);
    for (int i = 0; i < nw; i++) D.aw[i] = fabs(D.w[i]);
    for (int i = 0; i < v.K; i++) D.ab[i] = fabs(D.b[i]);
    for (int i = 0; i < ny; i++) D.ady[i] = fabs(D.dy[i]);
    conv_forward(&v, D.ax, D.aw, D.ab, D.sy);
    conv_dw(&v, D.ax, D.ady, D.sdw);
    conv_db(&v, D.ady, D.sdb);
    conv_dx_full(&v, D.ady, D.aw, D.sdx, NULL);

    char shape[160];
    if (multi(&v))
        snprintf(shape, sizeof shape, "%d channel%s of %dx%d under %d filter%s of %dx%d", v.C, v.C == 1 ? "" : "s", v.H,
                 v.W, v.K, v.K == 1 ? "" : "s", v.kh, v.kw);
    else snprintf(shape, sizeof shape, "a %dx%d input under a %dx%d kernel", v.H, v.W, v.kh, v.kw);
    char ks[24], ss[24], ps[24];
    ex_pair_str(ks, v.kh, v.kw), ex_pair_str(ss, v.sh, v.sw), ex_pair_str(ps, v.ph, v.pw);
    ex_title(e, "%s, stride %s, padding %s (notes 002, 003, 004)", shape, ss, ps);
    if (multi(&v))
        ex_say(e, "x(c)ij is row i, column j of input channel c; w(k,c)rt is filter k's kernel for channel c; o(k)ij "
                  "is output channel k. Indices count from 1, as in the notes.");
    print_inputs(e, &v);
    print_forward(e, &v);
    print_dw(e, &v);
    print_dx(e, &v);
    print_db(e, &v);

    /* The library's conv2d on both paths. */
    char model[256];
    snprintf(model, sizeof model, "input %d %d %d\nconv2d out_channels=%d kernel_size=%s stride=%s padding=%s\n", v.C,
             v.H, v.W, v.K, ks, ss, ps);
    ex_check c;
    ex_check_init(&c, "conv2d", "chain-rule sums (003) vs full convolution (004)");
    for (int p = 0; p < 2; p++) {
        ex_run r = {.model = model, .batch = 1, .nparams = 2, .pname = {"0.weight", "0.bias"}, .pval = {D.w, D.b},
                    .x = D.x, .dy = D.dy, .y = D.ly, .dx = D.ldx, .pgrad = {D.ldw, D.ldb}};
        if ((rc = ex_lib_run(&r, p ? CNN_PATH_FAST : CNN_PATH_REFERENCE))) return rc;
        const int by = p ? EX_BY_FAST : EX_BY_REF;
        ex_check_cmp(&c, by, "O", D.y, D.ly, D.sy, ny, NULL);
        ex_check_cmp(&c, by, "∂L/∂W", D.dw, D.ldw, D.sdw, nw, NULL);
        ex_check_cmp(&c, by, "∂L/∂X", D.dx, D.ldx, D.sdx, nx, NULL);
        ex_check_cmp(&c, by, "∂L/∂b", D.db, D.ldb, D.sdb, v.K, NULL);
    }
    /* Central differences of L = Σ O·∂L/∂O in x, then W, then b. */
    memcpy(D.vars, D.x, (size_t)nx * sizeof *D.vars);
    memcpy(D.vars + nx, D.w, (size_t)nw * sizeof *D.vars);
    memcpy(D.vars + nx + nw, D.b, (size_t)v.K * sizeof *D.vars);
    conv_fd f = {&v, D.vars, D.dy, D.ly};
    /* L is linear in each variable: one step for all, scaled to the largest value. */
    const double fd_step = ex_central_linear(D.vars, nx + nw + v.K, EX_STEP, conv_loss, &f, D.fd);
    snprintf(c.label[EX_BY_FD], sizeof c.label[0], "central differences (step %.3g)", fd_step);
    ex_check_cmp(&c, EX_BY_FD, "∂L/∂X", D.dx, D.fd, D.sdx, nx, NULL);
    ex_check_cmp(&c, EX_BY_FD, "∂L/∂W", D.dw, D.fd + nx, D.sdw, nw, NULL);
    ex_check_cmp(&c, EX_BY_FD, "∂L/∂b", D.db, D.fd + nx + nw, D.sdb, v.K, NULL);
    ex_check_cmp(&c, EX_BY_ALT, "∂L/∂X", D.dx, D.dx_chain, D.sdx, nx, NULL);

    char how[600], what[200];
    snprintf(how, sizeof how,
             "The library's layer is a net built from the model text \"input %d %d %d / conv2d out_channels=%d "
             "kernel_size=%s stride=%s padding=%s\", with 0.weight = W and 0.bias = b, run forward and backward "
             "with ∂L/∂O. Central differences take L = Σ O·∂L/∂O through the forward sums of step 1.",
             v.C, v.H, v.W, v.K, ks, ss, ps);
    snprintf(what, sizeof what, "%d output%s, %d ∂L/∂w, %d ∂L/∂x and %d ∂L/∂b", ny, ny == 1 ? "" : "s", nw, nx, v.K);
    return ex_check_report(e, &c, how, what);
}
