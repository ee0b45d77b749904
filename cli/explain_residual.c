/* cnn explain residual: a fork in a computational graph (note 000), as a residual block has one.
 *
 * The graph, elementwise over one H×W matrix a:
 *   z = w·a + b  (a 1×1 convolution with one weight w and a bias b),  u = relu(z),
 *   out = u + a  (add: the branch plus the shortcut),  L = Σ out·∂L/∂out.
 * a feeds two nodes, the branch and add. Backward: add passes ∂L/∂out to both of its inputs
 * unchanged (∂out/∂u = ∂out/∂a = 1); the branch sends ∂L/∂z = ∂L/∂u·relu'(z) and then
 * ∂L/∂a (via the branch) = ∂L/∂z·w; and at the fork the two gradients meet and add up:
 *   ∂L/∂a = ∂L/∂a (via the branch) + ∂L/∂a (via the shortcut) = ∂L/∂z·w + ∂L/∂out.
 * The parameters: ∂L/∂w = Σ ∂L/∂z·a, ∂L/∂b = Σ ∂L/∂z. With --branch linear there is no relu
 * (u = z). The library runs the graph from model text with name= and from= (the sum arrives at its
 * input gradient; ∂L/∂z and ∂L/∂u are its value gradients), and the branch alone as a second net,
 * whose input gradient is the branch's contribution.
 */
#include "explain.h"

#include <math.h>
#include <string.h>

static const char residual_usage[] =
    "usage: cnn explain residual [--input A] [--weight W] [--bias B] [--dy DY]\n"
    "                            [--branch relu|linear] [--format text|markdown]\n"
    "\n"
    "A fork in a computational graph (note 000), the shortcut of a residual block:\n"
    "out = relu(w·a + b) + a. a feeds two nodes, the branch and add; the gradient that reaches add\n"
    "goes to both unchanged, the branch's through relu' and w, and where they meet at a they add\n"
    "up: dL/da = dL/da (via the branch) + dL/da (via the shortcut). Each contribution and their sum\n"
    "are printed, and checked against the library (a graph built with name= and from=, and the\n"
    "branch alone) and central differences.\n"
    "\n"
    "  --input A        the input matrix (default: 1 -2 0.25; 3 -0.5 2); --x too\n"
    "  --weight W       the branch's weight, one number: a 1x1 convolution (default 2); --w too\n"
    "  --bias B         the branch's bias (default -1); --b too\n"
    "  --dy DY          dL/dout, A's shape (default: 1 -1 2; 0.5 3 -2); --grad-output too\n"
    "  --branch KIND    relu (default): u = relu(w·a + b); linear: u = w·a + b\n"
    "\n"
    "examples:\n"
    "  cnn explain residual\n"
    "  cnn explain residual --input \"1 2; -3 4\" --weight 0.5 --bias 0 --dy \"1 1; 1 1\"\n"
    "  cnn explain residual --branch linear --weight -1 --format markdown\n";

#define PLANE (EX_MAX_DIM * EX_MAX_DIM)

typedef struct res {
    int rows, cols, relu;
    double w, b;
    double a[PLANE], dy[PLANE];
    double z[PLANE], u[PLANE], out[PLANE], g[PLANE];          /* g = relu'(z) */
    double dz[PLANE], dbr[PLANE], da[PLANE], dw, db;          /* dbr: ∂L/∂a via the branch */
    double sout[PLANE], sdz[PLANE], sdbr[PLANE], sda[PLANE], sdw, sdb;
    double lout[PLANE], lda[PLANE], lgw[1], lgb[1], lz[PLANE], ldz[PLANE], lu[PLANE], ldu[PLANE];
    double lbu[PLANE], lbr[PLANE];                            /* the branch alone */
    double vars[PLANE + 2], fd[PLANE + 2], fdb[PLANE], fds[PLANE];
    unsigned char kink[PLANE + 2];
} res;

static res R;

static double act(const res *r, double z) { return r->relu ? (z > 0 ? z : 0.0) : z; }

/* L = Σ out·dy of the graph (which = 0), of the branch alone (1) or of the shortcut alone (2),
 * at vars = a, w, b. */
static double loss_of(res *r, int which) {
    const int n = r->rows * r->cols;
    const double *a = r->vars, w = r->vars[n], b = r->vars[n + 1];
    double L = 0.0;
    for (int i = 0; i < n; i++) {
        const double u = act(r, w * a[i] + b);
        L += (which == 0 ? u + a[i] : which == 1 ? u : a[i]) * r->dy[i];
    }
    return L;
}

static double loss_graph(void *ctx) { return loss_of(ctx, 0); }
static double loss_branch(void *ctx) { return loss_of(ctx, 1); }
static double loss_shortcut(void *ctx) { return loss_of(ctx, 2); }

static ex_sym el(const char *base, int n, int cols) { return ex_s(base, -1, -1, n / cols, n % cols); }

/* Preformatted lines: as they are in text, a code block in markdown. */
static void picture(const ex *e, const char *const *lines) {
    if (e->fmt == EX_MARKDOWN) printf("```\n");
    for (int i = 0; lines[i]; i++) printf("%s%s\n", e->fmt == EX_MARKDOWN ? "" : "  ", lines[i]);
    if (e->fmt == EX_MARKDOWN) printf("```\n\n");
}

/* " (branch)" or " (shortcut)" after a symbol. */
static void tag(sb *s, const char *what) {
    if (s->fmt == EX_MARKDOWN) sb_printf(s, "\\ \\text{(%s)}", what);
    else sb_printf(s, " (%s)", what);
}

static int parse(res *r, const char *in, const char *ws, const char *bs, const char *dys, const char *br) {
    if (!ex_mat("--input", in ? in : "1 -2 0.25; 3 -0.5 2", r->a, &r->rows, &r->cols)) return 0;
    r->w = 2, r->b = -1, r->relu = 1;
    if (ws && !ex_real("--weight", ws, &r->w)) return 0;
    if (bs && !ex_real("--bias", bs, &r->b)) return 0;
    if (br) {
        if (!strcmp(br, "relu")) r->relu = 1;
        else if (!strcmp(br, "linear")) r->relu = 0;
        else {
            cli_error("explain", "--branch %s: expected relu or linear", br);
            return 0;
        }
    }
    const int n = r->rows * r->cols;
    if (dys) {
        int rr, cc;
        if (!ex_mat("--dy", dys, r->dy, &rr, &cc)) return 0;
        if (rr != r->rows || cc != r->cols) {
            cli_error("explain", "--dy is %dx%d, but out (the input's shape) is %dx%d", rr, cc, r->rows, r->cols);
            return 0;
        }
    } else {
        static const double d[6] = {1, -1, 2, 0.5, 3, -2};
        for (int i = 0; i < n; i++) r->dy[i] = d[i % 6];
    }
    return 1;
}

static void compute(res *r) {
    const int n = r->rows * r->cols;
    r->dw = r->db = r->sdw = r->sdb = 0.0;
    for (int i = 0; i < n; i++) {
        r->z[i] = r->w * r->a[i] + r->b;
        r->u[i] = act(r, r->z[i]);
        r->out[i] = r->u[i] + r->a[i];
        r->g[i] = r->relu ? (r->z[i] > 0 ? 1.0 : 0.0) : 1.0;
        r->dz[i] = r->dy[i] * r->g[i];               /* ∂L/∂u = ∂L/∂out, then relu' */
        r->dbr[i] = r->dz[i] * r->w;                 /* ∂z/∂a = w */
        r->da[i] = r->dbr[i] + r->dy[i];             /* the fork: branch + shortcut */
        r->dw += r->dz[i] * r->a[i], r->sdw += fabs(r->dz[i] * r->a[i]);
        r->db += r->dz[i], r->sdb += fabs(r->dz[i]);
        r->sout[i] = fabs(r->u[i]) + fabs(r->a[i]);
        r->sdz[i] = fabs(r->dz[i]);
        r->sdbr[i] = fabs(r->dbr[i]);
        r->sda[i] = fabs(r->dbr[i]) + fabs(r->dy[i]);
    }
}

static void print_graph(const ex *e, const res *r) {
    static const char *const relu_art[] = {
        "        ┌───────────── shortcut ─────────────┐",
        "        │                                    ↓",
        "    a ──┴──→ z = w·a + b ──→ u = relu(z) ──→ + ──→ out ──→ L = Σ out·∂L/∂out",
        "             └──────── branch ─────────┘",
        NULL};
    static const char *const linear_art[] = {
        "        ┌───── shortcut ─────┐",
        "        │                    ↓",
        "    a ──┴──→ u = w·a + b ──→ + ──→ out ──→ L = Σ out·∂L/∂out",
        "             └─ branch ┘",
        NULL};
    ex_heading(e, "1. the graph: a forks into the branch and the shortcut, which meet again at add");
    picture(e, r->relu ? relu_art : linear_art);
    ex_say(e, "a feeds two nodes: the branch (a 1×1 convolution%s) and add, through the shortcut. Forward, each "
              "value is computed once; backward, a receives a gradient from each node it feeds, and they add up "
              "(note 000: where paths meet, the gradients sum).",
           r->relu ? " and relu" : "");
}

static void print_forward(const ex *e, const res *r) {
    const int n = r->rows * r->cols, cols = r->cols;
    ex_heading(e, "2. forward, elementwise");
    for (int i = 0; i < n; i++) {
        sb s;
        sb_init(&s, e);
        sb_sym(&s, el("z", i, cols));
        sb_put(&s, " = w·", " = w \\cdot ");
        sb_sym(&s, el("a", i, cols));
        sb_printf(&s, " + b = ");
        sb_nump(&s, r->w);
        sb_mul(&s);
        sb_nump(&s, r->a[i]);
        sb_printf(&s, " + ");
        sb_nump(&s, r->b);
        sb_printf(&s, " = ");
        sb_num(&s, r->z[i]);
        ex_formula(e, &s);
    }
    ex_matrix(e, "Z", "Z", r->z, r->rows, r->cols);
    if (r->relu) {
        for (int i = 0; i < n; i++) {
            sb s;
            sb_init(&s, e);
            sb_sym(&s, el("u", i, cols));
            sb_put(&s, " = relu(", " = \\mathrm{relu}(");
            sb_sym(&s, el("z", i, cols));
            sb_put(&s, ") = max(0, ", ") = \\max(0, ");
            sb_num(&s, r->z[i]);
            sb_printf(&s, ") = ");
            sb_num(&s, r->u[i]);
            ex_formula(e, &s);
        }
        ex_matrix(e, "U", "U", r->u, r->rows, r->cols);
    }
    for (int i = 0; i < n; i++) {
        sb s;
        sb_init(&s, e);
        sb_sym(&s, el("out", i, cols));
        sb_printf(&s, " = ");
        sb_sym(&s, el("u", i, cols));
        sb_printf(&s, " + ");
        sb_sym(&s, el("a", i, cols));
        sb_printf(&s, " = ");
        sb_num(&s, r->u[i]);
        sb_printf(&s, " + ");
        sb_nump(&s, r->a[i]);
        sb_printf(&s, " = ");
        sb_num(&s, r->out[i]);
        ex_formula(e, &s);
    }
    ex_matrix(e, "Out", "Out", r->out, r->rows, r->cols);
}

static void print_backward(const ex *e, const res *r) {
    const int n = r->rows * r->cols, cols = r->cols;
    sb s;
    ex_heading(e, "3. local gradients");
    ex_say(e, "add: ∂out/∂u = 1 and ∂out/∂a = 1 (the shortcut): an add gate passes a gradient on unchanged, to each "
              "input. The branch: ∂z/∂a = w = %g, ∂z/∂w = a, ∂z/∂b = 1%s.",
           r->w, r->relu ? "; relu'(z) = 1 for z > 0, 0 for z ≤ 0" : "; u = z, so ∂u/∂z = 1");
    if (r->relu) ex_matrix(e, "relu'(Z)", "\\mathrm{relu}'(Z)", r->g, r->rows, r->cols);

    ex_heading(e, "4. backward: add sends ∂L/∂out to both of its inputs, unchanged");
    ex_matrix(e, "∂L/∂Out", "\\frac{\\partial L}{\\partial Out}", r->dy, r->rows, r->cols);
    ex_say(e, "So ∂L/∂u = ∂L/∂out·1 goes into the branch, and ∂L/∂a (via the shortcut) = ∂L/∂out·1 goes straight "
              "to a:");
    ex_matrix(e, "∂L/∂A (shortcut)", "\\frac{\\partial L}{\\partial A}\\ \\text{(shortcut)}", r->dy, r->rows, r->cols);
    ex_say(e, "Through the branch, right to left%s:", r->relu ? ", relu' and then w" : ", w");
    if (r->relu)
        for (int i = 0; i < n; i++) {
            sb_init(&s, e);
            sb_d(&s, "L", el("z", i, cols));
            sb_printf(&s, " = ");
            sb_d(&s, "L", el("u", i, cols));
            sb_mul(&s);
            sb_put(&s, "relu'(", "\\mathrm{relu}'(");
            sb_sym(&s, el("z", i, cols));
            sb_printf(&s, ") = ");
            sb_nump(&s, r->dy[i]);
            sb_mul(&s);
            sb_num(&s, r->g[i]);
            sb_printf(&s, " = ");
            sb_num(&s, r->dz[i]);
            ex_formula(e, &s);
        }
    ex_matrix(e, "∂L/∂Z", "\\frac{\\partial L}{\\partial Z}", r->dz, r->rows, r->cols);
    for (int i = 0; i < n; i++) {
        sb_init(&s, e);
        sb_d(&s, "L", el("a", i, cols));
        tag(&s, "branch");
        sb_printf(&s, " = ");
        sb_d(&s, "L", el("z", i, cols));
        sb_put(&s, "·w = ", " \\cdot w = ");
        sb_nump(&s, r->dz[i]);
        sb_mul(&s);
        sb_nump(&s, r->w);
        sb_printf(&s, " = ");
        sb_num(&s, r->dbr[i]);
        ex_formula(e, &s);
    }
    ex_matrix(e, "∂L/∂A (branch)", "\\frac{\\partial L}{\\partial A}\\ \\text{(branch)}", r->dbr, r->rows, r->cols);
    ex_say(e, "The branch's parameters, each read by every element:");
    sb_init(&s, e);
    sb_put(&s, "∂L/∂w = Σ ∂L/∂zij·aij = ",
           "\\frac{\\partial L}{\\partial w} = \\sum_{ij} \\frac{\\partial L}{\\partial z_{ij}} a_{ij} = ");
    for (int i = 0; i < n; i++) {
        if (i) sb_printf(&s, " + ");
        sb_nump(&s, r->dz[i]);
        sb_mul(&s);
        sb_nump(&s, r->a[i]);
    }
    sb_printf(&s, " = ");
    sb_num(&s, r->dw);
    ex_formula(e, &s);
    sb_init(&s, e);
    sb_put(&s, "∂L/∂b = Σ ∂L/∂zij = ", "\\frac{\\partial L}{\\partial b} = \\sum_{ij} \\frac{\\partial L}{\\partial "
                                      "z_{ij}} = ");
    for (int i = 0; i < n; i++) {
        if (i) sb_printf(&s, " + ");
        sb_nump(&s, r->dz[i]);
    }
    sb_printf(&s, " = ");
    sb_num(&s, r->db);
    ex_formula(e, &s);

    ex_heading(e, "5. the fork: the two gradients that meet at a add up (note 000)");
    for (int i = 0; i < n; i++) {
        sb_init(&s, e);
        sb_d(&s, "L", el("a", i, cols));
        sb_printf(&s, " = ");
        sb_d(&s, "L", el("a", i, cols));
        tag(&s, "branch");
        sb_printf(&s, " + ");
        sb_d(&s, "L", el("a", i, cols));
        tag(&s, "shortcut");
        sb_printf(&s, " = ");
        sb_num(&s, r->dbr[i]);
        sb_printf(&s, " + ");
        sb_nump(&s, r->dy[i]);
        sb_printf(&s, " = ");
        sb_num(&s, r->da[i]);
        ex_formula(e, &s);
    }
    ex_matrix(e, "∂L/∂A", "\\frac{\\partial L}{\\partial A}", r->da, r->rows, r->cols);
    int off = 0;
    for (int i = 0; i < n; i++) off += r->relu && r->g[i] == 0.0;
    if (off)
        ex_say(e, "Where relu is off (z ≤ 0: %d of the %d elements) the branch sends back 0, and the shortcut alone "
                  "carries ∂L/∂out to a. The gradient never has to pass through the branch: that is why a deep stack "
                  "of residual blocks still trains.",
               off, n);
    else
        ex_say(e, "The shortcut carries ∂L/∂out to a unchanged, whatever the branch does: that is why a deep stack of "
                  "residual blocks still trains.");
}

int explain_residual(ex *e, int argc, char **argv) {
    const char *in = NULL, *ws = NULL, *bs = NULL, *dys = NULL, *br = NULL;
    const ex_opt opts[] = {{"--input", &in}, {"--x", &in},      {"--weight", &ws}, {"--w", &ws},
                           {"--bias", &bs},  {"--b", &bs},      {"--dy", &dys},    {"--grad-output", &dys},
                           {"--branch", &br}, {NULL, NULL}};
    int rc = ex_args(e, argc, argv, opts, residual_usage);
    if (rc >= 0) return rc;
    res *r = &R;
    memset(r, 0, sizeof *r);
    if (!parse(r, in, ws, bs, dys, br)) return EXIT_BAD_INPUT;
    compute(r);
    const int n = r->rows * r->cols;

    ex_title(e, "a fork in a graph, out = %s + a: a residual block's shortcut (note 000)",
             r->relu ? "relu(w·a + b)" : "(w·a + b)");
    ex_matrix(e, "A", "A", r->a, r->rows, r->cols);
    sb s;
    sb_init(&s, e);
    sb_printf(&s, "w = ");
    sb_num(&s, r->w);
    sb_put(&s, ", b = ", ",\\quad b = ");
    sb_num(&s, r->b);
    ex_formula(e, &s);
    ex_say(e, "∂L/∂out, the gradient that reaches the output, is given (L = Σ out·∂L/∂out).");
    print_graph(e, r);
    print_forward(e, r);
    print_backward(e, r);

    /* The library: the graph, and the branch alone. */
    char graph[200], branch[160];
    snprintf(branch, sizeof branch, "input 1 %d %d\nconv2d out_channels=1 kernel_size=1 name=z\n%s", r->rows, r->cols,
             r->relu ? "relu name=u\n" : "");
    snprintf(graph, sizeof graph, "%sadd from=input name=out\n", branch);
    ex_check c;
    ex_check_init(&c, "conv2d, relu, add", NULL);
    const double wv[1] = {r->w}, bv[1] = {r->b};
    for (int k = 0; k < 2; k++) {
        const cnn_path path = k ? CNN_PATH_FAST : CNN_PATH_REFERENCE;
        const int by = k ? EX_BY_FAST : EX_BY_REF;
        ex_run g = {.model = graph, .batch = 1, .nparams = 2, .pname = {"z.weight", "z.bias"}, .pval = {wv, bv},
                    .x = r->a, .dy = r->dy, .y = r->lout, .dx = r->lda, .pgrad = {r->lgw, r->lgb},
                    .vname = {"z", r->relu ? "u" : NULL}, .vval = {r->lz, r->lu}, .vgrad = {r->ldz, r->ldu}};
        if ((rc = ex_lib_run(&g, path))) return rc;
        double bw[1], bb[1];
        ex_run b = {.model = branch, .batch = 1, .nparams = 2, .pname = {"z.weight", "z.bias"}, .pval = {wv, bv},
                    .x = r->a, .dy = r->dy, .y = r->lbu, .dx = r->lbr, .pgrad = {bw, bb}};
        if ((rc = ex_lib_run(&b, path))) return rc;
        ex_check_cmp(&c, by, "out", r->out, r->lout, r->sout, n, NULL);
        ex_check_cmp(&c, by, "z", r->z, r->lz, r->sout, n, NULL);
        ex_check_cmp(&c, by, "∂L/∂z", r->dz, r->ldz, r->sdz, n, NULL);
        if (r->relu) ex_check_cmp(&c, by, "∂L/∂u", r->dy, r->ldu, NULL, n, NULL);
        ex_check_cmp(&c, by, "∂L/∂a (via the branch)", r->dbr, r->lbr, r->sdbr, n, NULL);
        ex_check_cmp(&c, by, "∂L/∂a", r->da, r->lda, r->sda, n, NULL);
        ex_check_cmp(&c, by, "∂L/∂w", &r->dw, r->lgw, &r->sdw, 1, NULL);
        ex_check_cmp(&c, by, "∂L/∂b", &r->db, r->lgb, &r->sdb, 1, NULL);
    }
    /* Central differences, of the graph, of the branch alone and of the shortcut alone; none across
     * relu's corner: an a whose z lies within 4 steps of 0, nor w or b when any z does. */
    int near_w = 0, near_b = 0;
    for (int i = 0; i < n; i++) {
        const double reach = 4 * EX_STEP;
        r->kink[i] = r->relu && fabs(r->z[i]) <= reach * fabs(r->w);
        near_w |= r->relu && fabs(r->z[i]) <= reach * fabs(r->a[i]);
        near_b |= r->relu && fabs(r->z[i]) <= reach;
    }
    r->kink[n] = (unsigned char)near_w, r->kink[n + 1] = (unsigned char)near_b;
    memcpy(r->vars, r->a, (size_t)n * sizeof *r->a);
    r->vars[n] = r->w, r->vars[n + 1] = r->b;
    ex_central(r->vars, n + 2, EX_STEP, loss_graph, r, r->fd, r->kink);
    ex_central(r->vars, n, EX_STEP, loss_branch, r, r->fdb, r->kink);
    ex_central(r->vars, n, EX_STEP, loss_shortcut, r, r->fds, NULL);
    ex_check_cmp(&c, EX_BY_FD, "∂L/∂a", r->da, r->fd, r->sda, n, r->kink);
    ex_check_cmp(&c, EX_BY_FD, "∂L/∂w", &r->dw, r->fd + n, &r->sdw, 1, r->kink + n);
    ex_check_cmp(&c, EX_BY_FD, "∂L/∂b", &r->db, r->fd + n + 1, &r->sdb, 1, r->kink + n + 1);
    ex_check_cmp(&c, EX_BY_FD, "∂L/∂a (via the branch)", r->dbr, r->fdb, r->sdbr, n, r->kink);
    ex_check_cmp(&c, EX_BY_FD, "∂L/∂a (via the shortcut)", r->dy, r->fds, NULL, n, NULL);
    for (int i = 0; i < n + 2; i++) c.skipped += r->kink[i] * (i < n ? 2 : 1);
    snprintf(c.skip_why, sizeof c.skip_why, "z is within 4 steps of 0, relu's corner, where the derivative does not "
                                            "exist");
    char how[700], what[200];
    snprintf(how, sizeof how,
             "The library runs the graph as a net built from the model text \"input 1 %d %d / conv2d out_channels=1 "
             "kernel_size=1 name=z / %sadd from=input name=out\" (add reads the line above and the input: the "
             "shortcut), with z.weight = w and z.bias = b: its input gradient is the sum at the fork, and ∂L/∂z%s "
             "are its value gradients. The branch alone (the same net without add) gives ∂L/∂a via the branch. "
             "Central differences take L = Σ out·∂L/∂out, and L of the branch alone and of the shortcut alone.",
             r->rows, r->cols, r->relu ? "relu name=u / " : "", r->relu ? " and ∂L/∂u" : "");
    snprintf(what, sizeof what, "%d outputs, %d ∂L/∂a with both contributions, ∂L/∂w and ∂L/∂b", n, n);
    return ex_check_report(e, &c, how, what);
}
