/* cnn explain chain: note 000's computational graph f(x, y, z) = (x + y)·z.
 *
 * The graph has two gates, q = x + y and f = q·z. Forward goes left to right; backward goes right
 * to left, each gate multiplying the gradient that reaches it by its local gradient:
 *   ∂f/∂q = z, ∂f/∂z = q (multiply gate), ∂q/∂x = ∂q/∂y = 1 (add gate),
 *   ∂f/∂x = ∂f/∂q·∂q/∂x = z, ∂f/∂y = ∂f/∂q·∂q/∂y = z.
 * The library computes the same graph as a net: q = x + y is a linear layer with weight [1, 1],
 * f = q·z a linear layer whose weight is z, so ∂f/∂z is that layer's weight gradient and ∂f/∂x,
 * ∂f/∂y are the input gradient (as tests/test_notes.c does).
 *
 * Note 000 states x = −2, y = 5, z = 4 and f = −12; these cannot all hold, since (−2 + 5)·4 = 12.
 * Its f = −12 is the original figure's (CS231n), where z = −4. The defaults are the note's inputs,
 * the results are the true values, and a remark says where −12 comes from.
 */
#include "explain.h"

#include <math.h>
#include <string.h>

static const char chain_usage[] =
    "usage: cnn explain chain [--x X] [--y Y] [--z Z] [--format text|markdown]\n"
    "\n"
    "Note 000's computational graph f(x, y, z) = (x + y)·z: the forward values q = x + y and\n"
    "f = q·z, each gate's local gradient, and the chain-rule products that give df/dx, df/dy and\n"
    "df/dz. Defaults: the note's x = -2, y = 5, z = 4. Checked against the library's linear layers\n"
    "and central differences.\n"
    "\n"
    "example:\n"
    "  cnn explain chain --x -2 --y 5 --z -4\n";

typedef struct chain_vals {
    double v[3];                  /* x, y, z */
} chain_vals;

static double chain_f(void *ctx) {
    const double *v = ((chain_vals *)ctx)->v;
    return (v[0] + v[1]) * v[2];
}

static ex_sym var(const char *name) { return ex_s(name, -1, -1, -1, -1); }

int explain_chain(ex *e, int argc, char **argv) {
    const char *sx = NULL, *sy = NULL, *sz = NULL;
    const ex_opt opts[] = {{"--x", &sx}, {"--y", &sy}, {"--z", &sz}, {NULL, NULL}};
    int rc = ex_args(e, argc, argv, opts, chain_usage);
    if (rc >= 0) return rc;
    double x = -2, y = 5, z = 4;
    if ((sx && !ex_real("--x", sx, &x)) || (sy && !ex_real("--y", sy, &y)) || (sz && !ex_real("--z", sz, &z)))
        return EXIT_BAD_INPUT;

    /* The notes' arithmetic. */
    const double q = x + y, f = q * z;
    const double dq_dx = 1, dq_dy = 1, df_dq = z, df_dz = q;
    const double df_dx = df_dq * dq_dx, df_dy = df_dq * dq_dy;

    ex_title(e, "f(x, y, z) = (x + y)·z through its computational graph (note 000)");
    sb s;
    sb_init(&s, e);
    sb_put(&s, "x = ", "x = ");
    sb_num(&s, x);
    sb_put(&s, ", y = ", ",\\quad y = ");
    sb_num(&s, y);
    sb_put(&s, ", z = ", ",\\quad z = ");
    sb_num(&s, z);
    ex_formula(e, &s);

    ex_heading(e, "1. forward, left to right: f split into two gates, q = x + y and f = q·z");
    sb_init(&s, e);
    sb_printf(&s, "q = x + y = ");
    sb_num(&s, x);
    sb_printf(&s, " + ");
    sb_nump(&s, y);
    sb_printf(&s, " = ");
    sb_num(&s, q);
    ex_formula(e, &s);
    sb_init(&s, e);
    sb_printf(&s, "f = q");
    sb_mul(&s);
    sb_printf(&s, "z = ");
    sb_nump(&s, q);
    sb_mul(&s);
    sb_nump(&s, z);
    sb_printf(&s, " = ");
    sb_num(&s, f);
    ex_formula(e, &s);

    ex_heading(e, "2. local gradients: each gate on its own");
    ex_say(e, "The add gate q = x + y passes a gradient through unchanged:");
    sb_init(&s, e);
    sb_d(&s, "q", var("x"));
    sb_put(&s, " = 1, ", " = 1,\\quad ");
    sb_d(&s, "q", var("y"));
    sb_printf(&s, " = 1");
    ex_formula(e, &s);
    ex_say(e, "The multiply gate f = q·z gives each input the other input:");
    sb_init(&s, e);
    sb_d(&s, "f", var("q"));
    sb_printf(&s, " = z = ");
    sb_num(&s, df_dq);
    ex_formula(e, &s);
    sb_init(&s, e);
    sb_d(&s, "f", var("z"));
    sb_printf(&s, " = q = ");
    sb_num(&s, df_dz);
    ex_formula(e, &s);

    ex_heading(e, "3. backward, right to left: the chain rule multiplies each local gradient by the gradient "
                  "from the right");
    const char *names[2] = {"x", "y"};
    const double locals[2] = {dq_dx, dq_dy}, results[2] = {df_dx, df_dy};
    for (int k = 0; k < 2; k++) {
        sb_init(&s, e);
        sb_d(&s, "f", var(names[k]));
        sb_printf(&s, " = ");
        sb_d(&s, "f", var("q"));
        sb_mul(&s);
        sb_d(&s, "q", var(names[k]));
        sb_printf(&s, " = ");
        sb_nump(&s, df_dq);
        sb_mul(&s);
        sb_nump(&s, locals[k]);
        sb_printf(&s, " = ");
        sb_num(&s, results[k]);
        ex_formula(e, &s);
    }
    sb_init(&s, e);
    sb_d(&s, "f", var("z"));
    sb_printf(&s, " = q = ");
    sb_num(&s, df_dz);
    sb_put(&s, "   (z reaches f directly)", "\\quad\\text{(z reaches f directly)}");
    ex_formula(e, &s);

    ex_blank(e);
    sb_init(&s, e);
    sb_put(&s, "result: f = ", "\\text{result: } f = ");
    sb_num(&s, f);
    const double grads[3] = {df_dx, df_dy, df_dz};
    for (int k = 0; k < 3; k++) {
        sb_put(&s, ", ", ",\\quad ");
        sb_d(&s, "f", var(k == 2 ? "z" : names[k]));
        sb_printf(&s, " = ");
        sb_num(&s, grads[k]);
    }
    ex_formula(e, &s);

    if (x == -2 && y == 5 && z == 4)
        ex_blank(e), ex_say(e, "About note 000: it gives x = -2, y = 5, z = 4 and f = -12, but (-2 + 5)·4 = 12. Its f = -12 is "
                  "the original figure's (CS231n), where z = -4: try --z -4. With z = 4, as here, f = 12, "
                  "∂f/∂x = ∂f/∂y = 4 and ∂f/∂z = 3.");
    else if (x == -2 && y == 5 && z == -4)
        ex_blank(e), ex_say(e, "About note 000: these are the original figure's inputs (CS231n), which give f = -12 as the note "
                  "says, and ∂f/∂x = ∂f/∂y = z = -4, ∂f/∂z = 3. The note writes z = 4, for which f = 12, "
                  "∂f/∂x = ∂f/∂y = 4 and ∂f/∂z = 3.");

    /* The library: input (x, y) → flatten → linear [1, 1] (q) → linear [z] (f). */
    const double ones[2] = {1, 1}, zw[1] = {z}, in[2] = {x, y}, seed[1] = {1};
    const double mine[4] = {f, df_dx, df_dy, df_dz};
    const double scale[4] = {(fabs(x) + fabs(y)) * fabs(z), fabs(z), fabs(z), fabs(x) + fabs(y)};
    ex_check c;
    ex_check_init(&c, "linear", NULL);
    for (int p = 0; p < 2; p++) {
        double out[1], dx[2], dw1[2], dw2[1], got[4];
        ex_run r = {.model = "input 2 1 1\nflatten\nlinear out_features=1 bias=false\nlinear out_features=1 bias=false\n",
                    .batch = 1, .nparams = 2, .pname = {"1.weight", "2.weight"}, .pval = {ones, zw},
                    .x = in, .dy = seed, .y = out, .dx = dx, .pgrad = {dw1, dw2}};
        if ((rc = ex_lib_run(&r, p ? CNN_PATH_FAST : CNN_PATH_REFERENCE))) return rc;
        got[0] = out[0], got[1] = dx[0], got[2] = dx[1], got[3] = dw2[0];
        ex_check_cmp(&c, p ? EX_BY_FAST : EX_BY_REF, "f, ∂f/∂x, ∂f/∂y, ∂f/∂z", mine, got, scale, 4, NULL);
    }
    chain_vals v = {{x, y, z}};
    double fd[3];
    ex_central(v.v, 3, EX_STEP, chain_f, &v, fd, NULL);
    ex_check_cmp(&c, EX_BY_FD, "∂f/∂x, ∂f/∂y, ∂f/∂z", mine + 1, fd, scale + 1, 3, NULL);
    return ex_check_report(e, &c,
                           "The library runs the graph as a net: q = x + y is a linear layer with weight [1 1], "
                           "f = q·z a linear layer with weight [z]; ∂f/∂z is that layer's weight gradient.",
                           "f, ∂f/∂x, ∂f/∂y and ∂f/∂z");
}
