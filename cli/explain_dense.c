/* cnn explain relu | sigmoid | linear: note 004's activation and fully connected backward passes.
 *
 *   relu      o = max(0, x);   ∂L/∂x = ∂L/∂o · relu'(x), relu'(x) = 1 if x > 0, else 0      (004)
 *   sigmoid   o = σ(x) = 1/(1 + e^−x);   ∂L/∂x = ∂L/∂o · σ(x)(1 − σ(x))        (001 eq. 1, dz = da ⊙ g'(z))
 *   linear    Out = x·W + b with x [N, n] (a sample per row), W [n, m] in the note's layout:
 *             ∂L/∂x = ∂L/∂Out · Wᵀ,  ∂L/∂W = xᵀ · ∂L/∂Out,  ∂L/∂b = Σ over samples of ∂L/∂Out   (004)
 * The library's linear layer keeps PyTorch's layout, weight = Wᵀ [m, n]; the topic converts.
 * relu has no derivative at 0; the library, as PyTorch, uses 0 there, and central differences
 * leave such elements out.
 */
#include "explain.h"

#include <math.h>
#include <string.h>

static const char relu_usage[] =
    "usage: cnn explain relu [--input X] [--grad-output DY] [--format text|markdown]\n"
    "\n"
    "relu's backward pass (note 004): o = max(0, x), relu'(x) = 1 for x > 0 and 0 otherwise, and\n"
    "dL/dx = dL/dO ⊙ relu'(x), elementwise (note 001, eq. 1).\n"
    "\n"
    "  --input X          the input matrix (default: -1 0 2; 3 -0.5 1)\n"
    "  --grad-output DY   dL/dO, X's shape (default: 1 -1 2; 0.5 3 -2)\n"
    "\n"
    "example:\n"
    "  cnn explain relu --input \"-1 0 2; 3 -0.5 1\" --grad-output \"1 1 1; 2 2 2\"\n";

static const char sigmoid_usage[] =
    "usage: cnn explain sigmoid [--input X] [--grad-output DY] [--format text|markdown]\n"
    "\n"
    "The sigmoid's backward pass: o = σ(x) = 1/(1 + exp(-x)), σ'(x) = σ(x)(1 - σ(x)), and\n"
    "dL/dx = dL/dO ⊙ σ'(x), elementwise (note 001, eq. 1).\n"
    "\n"
    "  --input X          the input matrix (default: -2 -1 0; 0.5 1 3)\n"
    "  --grad-output DY   dL/dO, X's shape (default: 1 -1 2; 0.5 3 -2)\n"
    "\n"
    "example:\n"
    "  cnn explain sigmoid --input \"0 1; -1 2\" --grad-output \"1 1; 1 1\"\n";

static const char linear_usage[] =
    "usage: cnn explain linear [--input X] [--weight W] [--bias B] [--grad-output DY]\n"
    "                          [--format text|markdown]\n"
    "\n"
    "A fully connected layer, Out = x·W + b, and its backward pass as note 004 writes it:\n"
    "dL/dx = dL/dOut·Wᵀ, dL/dW = xᵀ·dL/dOut, and dL/db, the sum of dL/dOut over the samples.\n"
    "\n"
    "  --input X          the input, one sample per row, N x n (default: 1 2 3; -1 0 2)\n"
    "  --weight W         n x m, in the note's layout (default: 1 0; 2 3; -1 1); the library stores\n"
    "                     its transpose, as PyTorch does\n"
    "  --bias B           m numbers (default 0)\n"
    "  --grad-output DY   dL/dOut, N x m (default: 1 -2; 3 1)\n"
    "\n"
    "example:\n"
    "  cnn explain linear --input \"1 2 3\" --weight \"1 0; 2 3; -1 1\" --grad-output \"1 -2\"\n";

#define PLANE (EX_MAX_DIM * EX_MAX_DIM)

/* ---- relu and sigmoid --------------------------------------------------------------------------- */

typedef struct act {
    int sig, rows, cols;
    double x[PLANE], dy[PLANE], y[PLANE], g[PLANE], dx[PLANE], s[PLANE];
    double ly[PLANE], ldx[PLANE], fd[PLANE], v[PLANE];
    unsigned char kink[PLANE];
} act;

static act A;

static double act_f(int sig, double x) { return sig ? 1.0 / (1.0 + exp(-x)) : (x > 0 ? x : 0.0); }

static double act_loss(void *ctx) {
    act *a = ctx;
    double L = 0.0;
    for (int i = 0; i < a->rows * a->cols; i++) L += act_f(a->sig, a->v[i]) * a->dy[i];
    return L;
}

static ex_sym sym(const char *base, int n, int cols) { return ex_s(base, -1, -1, n / cols, n % cols); }

static int explain_act(ex *e, int argc, char **argv, int sig) {
    const char *in = NULL, *dy = NULL;
    const ex_opt opts[] = {{"--input", &in}, {"--grad-output", &dy}, {NULL, NULL}};
    int rc = ex_args(e, argc, argv, opts, sig ? sigmoid_usage : relu_usage);
    if (rc >= 0) return rc;
    act *a = &A;
    memset(a, 0, sizeof *a);
    a->sig = sig;
    if (!ex_mat("--input", in ? in : sig ? "-2 -1 0; 0.5 1 3" : "-1 0 2; 3 -0.5 1", a->x, &a->rows, &a->cols))
        return EXIT_BAD_INPUT;
    const int n = a->rows * a->cols;
    if (dy) {
        int r, c;
        if (!ex_mat("--grad-output", dy, a->dy, &r, &c)) return EXIT_BAD_INPUT;
        if (r != a->rows || c != a->cols) {
            cli_error("explain", "--grad-output is %dx%d, but the output is %dx%d (the input's shape)", r, c, a->rows,
                      a->cols);
            return EXIT_BAD_INPUT;
        }
    } else {
        static const double d[6] = {1, -1, 2, 0.5, 3, -2};
        for (int i = 0; i < n; i++) a->dy[i] = d[i % 6];
    }
    for (int i = 0; i < n; i++) {
        a->y[i] = act_f(sig, a->x[i]);
        a->g[i] = sig ? a->y[i] * (1.0 - a->y[i]) : (a->x[i] > 0 ? 1.0 : 0.0);
        a->dx[i] = a->dy[i] * a->g[i];
        a->s[i] = fabs(a->dx[i]);
        a->kink[i] = !sig && fabs(a->x[i]) <= 4 * ex_step(EX_STEP, a->x[i]);
    }

    const char *name = sig ? "σ" : "relu", *tex = sig ? "\\sigma" : "\\mathrm{relu}";
    ex_title(e, "%s, elementwise, on a %dx%d input (note %s)", sig ? "the sigmoid σ(x) = 1/(1 + e^-x)" : "relu(x) = max(0, x)",
             a->rows, a->cols, sig ? "001, eq. 1" : "004");
    ex_matrix(e, "X", "X", a->x, a->rows, a->cols);
    ex_say(e, "∂L/∂O, the gradient that reaches the output, is given:");
    ex_matrix(e, "∂L/∂O", "\\frac{\\partial L}{\\partial O}", a->dy, a->rows, a->cols);

    ex_heading(e, "1. forward: o = %s", sig ? "σ(x) = 1/(1 + e^-x)" : "relu(x) = max(0, x)");
    for (int i = 0; i < n; i++) {
        sb s;
        sb_init(&s, e);
        sb_sym(&s, sym("o", i, a->cols));
        if (sig) {
            sb_put(&s, " = 1/(1 + e^-", " = \\frac{1}{1 + e^{-");
            sb_sym(&s, sym("x", i, a->cols));
            sb_put(&s, ") = 1/(1 + e^-", "}} = \\frac{1}{1 + e^{-");
            sb_nump(&s, a->x[i]);
            sb_put(&s, ") = ", "}} = ");
        } else {
            sb_put(&s, " = max(0, ", " = \\max(0, ");
            sb_sym(&s, sym("x", i, a->cols));
            sb_put(&s, ") = max(0, ", ") = \\max(0, ");
            sb_num(&s, a->x[i]);
            sb_printf(&s, ") = ");
        }
        sb_num(&s, a->y[i]);
        ex_formula(e, &s);
    }
    ex_matrix(e, "O", "O", a->y, a->rows, a->cols);

    ex_heading(e, "2. local gradient: %s", sig ? "σ'(x) = σ(x)(1 − σ(x)) = o(1 − o)"
                                               : "relu'(x) = 1 for x > 0, 0 for x ≤ 0 (note 004)");
    if (!sig)
        ex_say(e, "At x = 0 relu has a corner and no derivative; the library, as PyTorch and note 004, takes 0.");
    else ex_say(e, "The sigmoid's derivative needs only its output: σ'(x) = o(1 − o), so backward reuses o.");
    char gl[32], gt[48];
    snprintf(gl, sizeof gl, "%s'(X)", name);
    snprintf(gt, sizeof gt, "%s'(X)", tex);
    ex_matrix(e, gl, gt, a->g, a->rows, a->cols);

    ex_heading(e, "3. the chain rule, elementwise: ∂L/∂X = ∂L/∂O ⊙ %s'(X) (note 001, eq. 1)", name);
    for (int i = 0; i < n; i++) {
        sb s;
        sb_init(&s, e);
        sb_d(&s, "L", sym("x", i, a->cols));
        sb_printf(&s, " = ");
        sb_d(&s, "L", sym("o", i, a->cols));
        sb_mul(&s);
        sb_put(&s, sig ? "σ'(" : "relu'(", sig ? "\\sigma'(" : "\\mathrm{relu}'(");
        sb_sym(&s, sym("x", i, a->cols));
        sb_printf(&s, ") = ");
        sb_nump(&s, a->dy[i]);
        sb_mul(&s);
        if (sig) {
            sb_num(&s, a->y[i]);
            sb_printf(&s, "(1 - ");
            sb_num(&s, a->y[i]);
            sb_printf(&s, ")");
        } else {
            sb_num(&s, a->g[i]);
        }
        sb_printf(&s, " = ");
        sb_num(&s, a->dx[i]);
        ex_formula(e, &s);
    }
    ex_matrix(e, "∂L/∂X", "\\frac{\\partial L}{\\partial X}", a->dx, a->rows, a->cols);

    char model[64];
    snprintf(model, sizeof model, "input 1 %d %d\n%s\n", a->rows, a->cols, sig ? "sigmoid" : "relu");
    ex_check c;
    ex_check_init(&c, sig ? "sigmoid" : "relu", NULL);
    double sy[PLANE];
    for (int i = 0; i < n; i++) sy[i] = fabs(a->y[i]);
    for (int k = 0; k < 2; k++) {
        ex_run r = {.model = model, .batch = 1, .x = a->x, .dy = a->dy, .y = a->ly, .dx = a->ldx};
        if ((rc = ex_lib_run(&r, k ? CNN_PATH_FAST : CNN_PATH_REFERENCE))) return rc;
        ex_check_cmp(&c, k ? EX_BY_FAST : EX_BY_REF, "O", a->y, a->ly, sy, n, NULL);
        ex_check_cmp(&c, k ? EX_BY_FAST : EX_BY_REF, "∂L/∂X", a->dx, a->ldx, a->s, n, NULL);
    }
    memcpy(a->v, a->x, sizeof a->x);
    ex_central(a->v, n, EX_STEP, act_loss, a, a->fd, a->kink);
    ex_check_cmp(&c, EX_BY_FD, "∂L/∂X", a->dx, a->fd, a->s, n, a->kink);
    for (int i = 0; i < n; i++) c.skipped += a->kink[i];
    snprintf(c.skip_why, sizeof c.skip_why, "x is 0 (or within 4 steps of it), relu's corner, where the derivative "
                                            "does not exist");
    char how[200], what[64];
    snprintf(how, sizeof how, "The library's layer is a net built from the model text \"input 1 %d %d / %s\", run "
                              "forward and backward with ∂L/∂O. Central differences take L = Σ O·∂L/∂O.",
             a->rows, a->cols, sig ? "sigmoid" : "relu");
    snprintf(what, sizeof what, "%d output%s and %d ∂L/∂x", n, n == 1 ? "" : "s", n);
    return ex_check_report(e, &c, how, what);
}

int explain_relu(ex *e, int argc, char **argv) { return explain_act(e, argc, argv, 0); }
int explain_sigmoid(ex *e, int argc, char **argv) { return explain_act(e, argc, argv, 1); }

/* ---- linear ------------------------------------------------------------------------------------- */

typedef struct lin {
    int N, n, m;
    double x[PLANE], w[PLANE], b[EX_MAX_DIM], dy[PLANE];
    double y[PLANE], dx[PLANE], dw[PLANE], db[EX_MAX_DIM];
    double sy[PLANE], sdx[PLANE], sdw[PLANE], sdb[EX_MAX_DIM];
    double wt[PLANE], xt[PLANE];
    double ly[PLANE], ldx[PLANE], ldwt[PLANE], ldw[PLANE], ldb[EX_MAX_DIM];
    double vars[2 * PLANE + EX_MAX_DIM], fd[2 * PLANE + EX_MAX_DIM];
} lin;

static lin Lb;

/* Out = x·W + b; ∂L/∂x = ∂L/∂Out·Wᵀ; ∂L/∂W = xᵀ·∂L/∂Out; ∂L/∂b = Σ_s ∂L/∂Out[s]. */
static void lin_forward(const lin *l, const double *x, const double *w, const double *b, double *y) {
    for (int s = 0; s < l->N; s++)
        for (int j = 0; j < l->m; j++) {
            double acc = b[j];
            for (int i = 0; i < l->n; i++) acc += x[s * l->n + i] * w[i * l->m + j];
            y[s * l->m + j] = acc;
        }
}

static void lin_backward(const lin *l, const double *x, const double *w, const double *dy, double *dx, double *dw,
                         double *db) {
    for (int s = 0; s < l->N; s++)
        for (int i = 0; i < l->n; i++) {
            double acc = 0.0;
            for (int j = 0; j < l->m; j++) acc += dy[s * l->m + j] * w[i * l->m + j];   /* (∂L/∂Out·Wᵀ)[s,i] */
            dx[s * l->n + i] = acc;
        }
    for (int i = 0; i < l->n; i++)
        for (int j = 0; j < l->m; j++) {
            double acc = 0.0;
            for (int s = 0; s < l->N; s++) acc += x[s * l->n + i] * dy[s * l->m + j];   /* (xᵀ·∂L/∂Out)[i,j] */
            dw[i * l->m + j] = acc;
        }
    for (int j = 0; j < l->m; j++) {
        db[j] = 0.0;
        for (int s = 0; s < l->N; s++) db[j] += dy[s * l->m + j];
    }
}

static double lin_loss(void *ctx) {
    lin *l = ctx;
    const double *x = l->vars, *w = x + l->N * l->n, *b = w + l->n * l->m;
    double y[PLANE], L = 0.0;
    lin_forward(l, x, w, b, y);
    for (int i = 0; i < l->N * l->m; i++) L += y[i] * l->dy[i];
    return L;
}

int explain_linear(ex *e, int argc, char **argv) {
    const char *in = NULL, *w = NULL, *b = NULL, *dy = NULL;
    const ex_opt opts[] = {{"--input", &in}, {"--weight", &w}, {"--bias", &b}, {"--grad-output", &dy}, {NULL, NULL}};
    int rc = ex_args(e, argc, argv, opts, linear_usage);
    if (rc >= 0) return rc;
    lin *l = &Lb;
    memset(l, 0, sizeof *l);
    int r, c;
    if (!ex_mat("--input", in ? in : "1 2 3; -1 0 2", l->x, &l->N, &l->n)) return EXIT_BAD_INPUT;
    if (!ex_mat("--weight", w ? w : "1 0; 2 3; -1 1", l->w, &r, &l->m)) return EXIT_BAD_INPUT;
    if (r != l->n) {
        cli_error("explain", "--weight has %d row%s, but the input has %d features: W is n x m, one row per feature", r,
                  r == 1 ? "" : "s", l->n);
        return EXIT_BAD_INPUT;
    }
    if (b) {
        if (!ex_mat("--bias", b, l->b, &r, &c)) return EXIT_BAD_INPUT;
        if (r * c != l->m) {
            cli_error("explain", "--bias has %d number%s, but the layer has %d outputs (one bias each)", r * c,
                      r * c == 1 ? "" : "s", l->m);
            return EXIT_BAD_INPUT;
        }
    }
    if (dy) {
        if (!ex_mat("--grad-output", dy, l->dy, &r, &c)) return EXIT_BAD_INPUT;
        if (r != l->N || c != l->m) {
            cli_error("explain", "--grad-output is %dx%d, but the output Out = x·W is %dx%d", r, c, l->N, l->m);
            return EXIT_BAD_INPUT;
        }
    } else {
        static const double d[4] = {1, -2, 3, 1};
        for (int i = 0; i < l->N * l->m; i++) l->dy[i] = d[i % 4];
    }
    const int N = l->N, n = l->n, m = l->m;

    lin_forward(l, l->x, l->w, l->b, l->y);
    lin_backward(l, l->x, l->w, l->dy, l->dx, l->dw, l->db);
    {
        double ax[PLANE] = {0}, aw[PLANE] = {0}, ab[EX_MAX_DIM] = {0}, ady[PLANE] = {0};
        for (int i = 0; i < N * n; i++) ax[i] = fabs(l->x[i]);
        for (int i = 0; i < n * m; i++) aw[i] = fabs(l->w[i]);
        for (int i = 0; i < m; i++) ab[i] = fabs(l->b[i]);
        for (int i = 0; i < N * m; i++) ady[i] = fabs(l->dy[i]);
        lin_forward(l, ax, aw, ab, l->sy);
        lin_backward(l, ax, aw, ady, l->sdx, l->sdw, l->sdb);
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) l->wt[j * n + i] = l->w[i * m + j];
    for (int s = 0; s < N; s++)
        for (int i = 0; i < n; i++) l->xt[i * N + s] = l->x[s * n + i];

    ex_title(e, "a fully connected layer, Out = x·W + b, with %d sample%s of %d features and %d outputs (note 004)", N,
             N == 1 ? "" : "s", n, m);
    ex_say(e, "x holds one sample per row; W is n x m, in the note's layout (x ∈ R^{1×n}, W ∈ R^{n×m}).");
    ex_matrix(e, "x", "x", l->x, N, n);
    ex_matrix(e, "W", "W", l->w, n, m);
    ex_matrix(e, "b", "b", l->b, 1, m);
    ex_say(e, "∂L/∂Out, the gradient that reaches the output, is given:");
    ex_matrix(e, "∂L/∂Out", "\\frac{\\partial L}{\\partial Out}", l->dy, N, m);

    ex_heading(e, "1. forward: each output is a row of x times a column of W, plus its bias");
    for (int s = 0; s < N; s++)
        for (int j = 0; j < m; j++) {
            sb f, num;
            sb_init(&f, e);
            sb_init(&num, e);
            sb_sym(&f, ex_s("o", -1, -1, s, j));
            sb_printf(&f, " = ");
            for (int i = 0; i < n; i++) {
                sb_sym(&f, ex_s("x", -1, -1, s, i));
                sb_mul(&f);
                sb_sym(&f, ex_s("w", -1, -1, i, j));
                sb_printf(&f, " + ");
                sb_nump(&num, l->x[s * n + i]);
                sb_mul(&num);
                sb_nump(&num, l->w[i * m + j]);
                sb_printf(&num, " + ");
            }
            sb_sym(&f, ex_s("b", -1, -1, j, -1));
            sb_nump(&num, l->b[j]);
            sb_printf(&f, " = ");
            sb_append(&f, &num);
            sb_printf(&f, " = ");
            sb_num(&f, l->y[s * m + j]);
            ex_formula(e, &f);
        }
    ex_matrix(e, "Out", "Out", l->y, N, m);

    ex_heading(e, "2. ∂L/∂x = ∂L/∂Out·Wᵀ (note 004)");
    ex_say(e, "Each x feeds every output of its sample, through one weight each; the chain rule adds them up, which "
              "is a row of ∂L/∂Out times a row of W, i.e. a column of Wᵀ:");
    ex_matrix(e, "Wᵀ", "W^T", l->wt, m, n);
    for (int s = 0; s < N; s++)
        for (int i = 0; i < n; i++) {
            sb f, num;
            sb_init(&f, e);
            sb_init(&num, e);
            sb_d(&f, "L", ex_s("x", -1, -1, s, i));
            sb_printf(&f, " = ");
            for (int j = 0; j < m; j++) {
                if (j) sb_printf(&f, " + "), sb_printf(&num, " + ");
                sb_d(&f, "L", ex_s("o", -1, -1, s, j));
                sb_mul(&f);
                sb_sym(&f, ex_s("w", -1, -1, i, j));
                sb_nump(&num, l->dy[s * m + j]);
                sb_mul(&num);
                sb_nump(&num, l->w[i * m + j]);
            }
            sb_printf(&f, " = ");
            sb_append(&f, &num);
            sb_printf(&f, " = ");
            sb_num(&f, l->dx[s * n + i]);
            ex_formula(e, &f);
        }
    ex_matrix(e, "∂L/∂x", "\\frac{\\partial L}{\\partial x}", l->dx, N, n);

    ex_heading(e, "3. ∂L/∂W = xᵀ·∂L/∂Out (note 004)");
    ex_say(e, "Weight w_ij carries input i to output j in every sample, so its gradient sums x_si·∂L/∂o_sj over the "
              "samples:");
    ex_matrix(e, "xᵀ", "x^T", l->xt, n, N);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            sb f, num;
            sb_init(&f, e);
            sb_init(&num, e);
            sb_d(&f, "L", ex_s("w", -1, -1, i, j));
            sb_printf(&f, " = ");
            for (int s = 0; s < N; s++) {
                if (s) sb_printf(&f, " + "), sb_printf(&num, " + ");
                sb_sym(&f, ex_s("x", -1, -1, s, i));
                sb_mul(&f);
                sb_d(&f, "L", ex_s("o", -1, -1, s, j));
                sb_nump(&num, l->x[s * n + i]);
                sb_mul(&num);
                sb_nump(&num, l->dy[s * m + j]);
            }
            sb_printf(&f, " = ");
            sb_append(&f, &num);
            sb_printf(&f, " = ");
            sb_num(&f, l->dw[i * m + j]);
            ex_formula(e, &f);
        }
    ex_matrix(e, "∂L/∂W", "\\frac{\\partial L}{\\partial W}", l->dw, n, m);

    ex_heading(e, "4. ∂L/∂b: ∂L/∂Out summed over the samples (note 001, eq. 3)");
    for (int j = 0; j < m; j++) {
        sb f, num;
        sb_init(&f, e);
        sb_init(&num, e);
        sb_d(&f, "L", ex_s("b", -1, -1, j, -1));
        sb_printf(&f, " = ");
        for (int s = 0; s < N; s++) {
            if (s) sb_printf(&f, " + "), sb_printf(&num, " + ");
            sb_d(&f, "L", ex_s("o", -1, -1, s, j));
            sb_nump(&num, l->dy[s * m + j]);
        }
        sb_printf(&f, " = ");
        sb_append(&f, &num);
        sb_printf(&f, " = ");
        sb_num(&f, l->db[j]);
        ex_formula(e, &f);
    }

    /* The library: flatten, then linear with weight Wᵀ [m, n]. */
    char model[96];
    snprintf(model, sizeof model, "input %d 1 1\nflatten\nlinear out_features=%d\n", n, m);
    ex_check ck;
    ex_check_init(&ck, "linear", NULL);
    for (int k = 0; k < 2; k++) {
        ex_run run = {.model = model, .batch = N, .nparams = 2, .pname = {"1.weight", "1.bias"}, .pval = {l->wt, l->b},
                      .x = l->x, .dy = l->dy, .y = l->ly, .dx = l->ldx, .pgrad = {l->ldwt, l->ldb}};
        if ((rc = ex_lib_run(&run, k ? CNN_PATH_FAST : CNN_PATH_REFERENCE))) return rc;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) l->ldw[i * m + j] = l->ldwt[j * n + i];
        const int by = k ? EX_BY_FAST : EX_BY_REF;
        ex_check_cmp(&ck, by, "Out", l->y, l->ly, l->sy, N * m, NULL);
        ex_check_cmp(&ck, by, "∂L/∂x", l->dx, l->ldx, l->sdx, N * n, NULL);
        ex_check_cmp(&ck, by, "∂L/∂W", l->dw, l->ldw, l->sdw, n * m, NULL);
        ex_check_cmp(&ck, by, "∂L/∂b", l->db, l->ldb, l->sdb, m, NULL);
    }
    memcpy(l->vars, l->x, (size_t)N * n * sizeof *l->x);
    memcpy(l->vars + N * n, l->w, (size_t)n * m * sizeof *l->w);
    memcpy(l->vars + N * n + n * m, l->b, (size_t)m * sizeof *l->b);
    /* L is linear in each variable: one step for all, scaled to the largest value. */
    const double fd_step = ex_central_linear(l->vars, N * n + n * m + m, EX_STEP, lin_loss, l, l->fd);
    snprintf(ck.label[EX_BY_FD], sizeof ck.label[0], "central differences (step %.3g)", fd_step);
    ex_check_cmp(&ck, EX_BY_FD, "∂L/∂x", l->dx, l->fd, l->sdx, N * n, NULL);
    ex_check_cmp(&ck, EX_BY_FD, "∂L/∂W", l->dw, l->fd + N * n, l->sdw, n * m, NULL);
    ex_check_cmp(&ck, EX_BY_FD, "∂L/∂b", l->db, l->fd + N * n + n * m, l->sdb, m, NULL);
    char how[300], what[100];
    snprintf(how, sizeof how,
             "The library's layer is a net built from the model text \"input %d 1 1 / flatten / linear "
             "out_features=%d\", run on the %d sample%s at once, with 1.weight = Wᵀ (PyTorch's layout) and "
             "1.bias = b. Central differences take L = Σ Out·∂L/∂Out.",
             n, m, N, N == 1 ? "" : "s");
    snprintf(what, sizeof what, "%d outputs, %d ∂L/∂x, %d ∂L/∂w and %d ∂L/∂b", N * m, N * n, n * m, m);
    return ex_check_report(e, &ck, how, what);
}
