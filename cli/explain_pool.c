/* cnn explain maxpool | avgpool: the backward pass of pooling (notes 001, 003, 004).
 *
 * Windows of kh×kw, stride sh,sw, no padding: o_ij = max (or mean) of x over rows i·sh .. i·sh + kh − 1
 * and columns j·sw .. j·sw + kw − 1. Pooling learns nothing; backward only routes δ = ∂L/∂O back:
 *   max:     ∂L/∂x_hw = Σ over the windows whose maximum is x_hw of δ_ij        (the mask; 001, 003)
 *   average: ∂L/∂x_hw = Σ over the windows that hold x_hw of δ_ij / (kh·kw)    (001, 004)
 * When the windows tile the input (stride = kernel, 001's example) this is 001's "upsample": copy
 * each δ_ij over its window, then keep it only at the maximum (times the mask), or divide it by the
 * window's size. When they overlap (stride < kernel, 003's 2×2 windows with stride 1) a cell can
 * collect from several windows, and 003's loop adds them up.
 * Ties in a max window go to the first maximum in row-major order, as in PyTorch and the library.
 */
#include "explain.h"

#include <math.h>
#include <string.h>

static const char maxpool_usage[] =
    "usage: cnn explain maxpool [--input X] [--grad-output DY] [--kernel-size K] [--stride S]\n"
    "                           [--format text|markdown]\n"
    "\n"
    "Max pooling's backward pass: each window's maximum is remembered (the mask), and the gradient of\n"
    "each output goes back to that one cell (note 001's upsample; note 003's loop when windows\n"
    "overlap). Defaults: note 001's example, a 4x4 input whose window maxima lie top-left,\n"
    "bottom-right, top-right and bottom-left, delta = [[2, 8], [4, 6]], 2x2 windows with stride 2.\n"
    "\n"
    "  --input X          the input matrix (default: note 001's 4x4)\n"
    "  --grad-output DY   delta = dL/dO, the output's shape (also --delta; default [[2, 8], [4, 6]])\n"
    "  --kernel-size K    the window, K or H,W (default 2)\n"
    "  --stride S         S or H,W (default: the kernel size; 1 gives note 003's overlapping windows)\n"
    "\n"
    "examples:\n"
    "  cnn explain maxpool\n"
    "  cnn explain maxpool --input \"1 2 3; 4 9 5; 6 7 8\" --grad-output \"1 2; 3 4\" --stride 1\n";

static const char avgpool_usage[] =
    "usage: cnn explain avgpool [--input X] [--grad-output DY] [--kernel-size K] [--stride S]\n"
    "                           [--format text|markdown]\n"
    "\n"
    "Average pooling's backward pass: the gradient of each output is shared equally by the cells of\n"
    "its window (note 001's upsample, note 004). Defaults: note 001's example, delta = [[2, 8], [4, 6]]\n"
    "through 2x2 windows with stride 2, which gives [[0.5, 0.5, 2, 2], ..., [1, 1, 1.5, 1.5]].\n"
    "\n"
    "  --input X          the input matrix (default: note 001's 4x4)\n"
    "  --grad-output DY   delta = dL/dO, the output's shape (also --delta; default [[2, 8], [4, 6]])\n"
    "  --kernel-size K    the window, K or H,W (default 2)\n"
    "  --stride S         S or H,W (default: the kernel size)\n"
    "\n"
    "examples:\n"
    "  cnn explain avgpool\n"
    "  cnn explain avgpool --input \"1 2 3; 4 5 6; 7 8 9\" --grad-output \"4 8; 12 16\" --stride 1\n";

/* Note 001's example: the maxima of the four 2×2 windows are at top-left, bottom-right, top-right
 * and bottom-left (as in tests/test_notes.c). */
static const double note_x[16] = {9, 1, 1, 2, 1, 1, 3, 9, 1, 9, 1, 1, 2, 3, 9, 1};
static const double note_delta[4] = {2, 8, 4, 6};

#define PLANE (EX_MAX_DIM * EX_MAX_DIM)

typedef struct pool {
    int avg;
    int H, W, kh, kw, sh, sw, OH, OW;
    double x[PLANE], dy[PLANE];
    double y[PLANE], dx[PLANE], sy[PLANE], sdx[PLANE];
    int arg[PLANE];               /* max: the row-major index in x of each window's first maximum */
    double ly[PLANE], ldx[PLANE], fd[PLANE], up[PLANE], mask[PLANE];
    unsigned char tie[PLANE];     /* max: x sits at a tie (or within 4 steps of one): no derivative */
} pool;

static pool P;

/* The forward pass; for max also each window's argmax. */
static void pool_forward(pool *p, const double *x, double *y, int *arg) {
    for (int i = 0; i < p->OH; i++)
        for (int j = 0; j < p->OW; j++) {
            double acc = 0.0, m = -INFINITY;
            int best = 0;
            for (int r = 0; r < p->kh; r++)
                for (int t = 0; t < p->kw; t++) {
                    const int at = (i * p->sh + r) * p->W + j * p->sw + t;
                    acc += x[at];
                    if (x[at] > m) m = x[at], best = at;
                }
            y[i * p->OW + j] = p->avg ? acc / (p->kh * p->kw) : m;
            if (arg) arg[i * p->OW + j] = best;
        }
}

static double pool_loss(void *ctx) {
    pool *p = ctx;
    double y[PLANE], L = 0.0;
    pool_forward(p, p->fd, y, NULL);      /* p->fd holds the perturbed input during the differences */
    for (int i = 0; i < p->OH * p->OW; i++) L += y[i] * p->dy[i];
    return L;
}

static int in_window(const pool *p, int i, int j, int h, int w) {
    return h >= i * p->sh && h < i * p->sh + p->kh && w >= j * p->sw && w < j * p->sw + p->kw;
}

/* "top-left" for 2×2 windows, else "row r, column t of its window". */
static void where(const pool *p, int at, int i, int j, char *buf, size_t cap) {
    const int r = at / p->W - i * p->sh, t = at % p->W - j * p->sw;
    if (p->kh == 2 && p->kw == 2)
        snprintf(buf, cap, "%s-%s", r ? "bottom" : "top", t ? "right" : "left");
    else snprintf(buf, cap, "row %d, column %d of its window", r + 1, t + 1);
}

static ex_sym sx(int h, int w) { return ex_s("x", -1, -1, h, w); }
static ex_sym so(int i, int j) { return ex_s("o", -1, -1, i, j); }

static int explain_pool(ex *e, int argc, char **argv, int avg) {
    const char *in = NULL, *dy = NULL, *delta = NULL, *ks = NULL, *st = NULL;
    const ex_opt opts[] = {{"--input", &in},       {"--grad-output", &dy}, {"--delta", &delta},
                           {"--kernel-size", &ks}, {"--stride", &st},      {NULL, NULL}};
    int rc = ex_args(e, argc, argv, opts, avg ? avgpool_usage : maxpool_usage);
    if (rc >= 0) return rc;
    if (!dy) dy = delta;
    pool *p = &P;
    memset(p, 0, sizeof *p);
    p->avg = avg;
    p->H = p->W = 4, p->kh = p->kw = 2;
    if (in && !ex_mat("--input", in, p->x, &p->H, &p->W)) return EXIT_BAD_INPUT;
    if (!in) memcpy(p->x, note_x, sizeof note_x);
    if (ks && !ex_pair("--kernel-size", ks, 1, EX_MAX_DIM, &p->kh, &p->kw)) return EXIT_BAD_INPUT;
    p->sh = p->kh, p->sw = p->kw;
    if (st && !ex_pair("--stride", st, 1, EX_MAX_DIM, &p->sh, &p->sw)) return EXIT_BAD_INPUT;
    if (p->kh > p->H || p->kw > p->W) {
        cli_error("explain", "the kernel (%dx%d) is larger than the input (%dx%d); pooling here has no padding", p->kh,
                  p->kw, p->H, p->W);
        return EXIT_BAD_INPUT;
    }
    p->OH = (p->H - p->kh) / p->sh + 1, p->OW = (p->W - p->kw) / p->sw + 1;
    const int nx = p->H * p->W, ny = p->OH * p->OW;
    if (dy) {
        int r, c;
        if (!ex_mat(dy == delta ? "--delta" : "--grad-output", dy, p->dy, &r, &c)) return EXIT_BAD_INPUT;
        if (r != p->OH || c != p->OW) {
            cli_error("explain", "%s is %dx%d, but the output is %dx%d", dy == delta ? "--delta" : "--grad-output", r,
                      c, p->OH, p->OW);
            return EXIT_BAD_INPUT;
        }
    } else {
        for (int i = 0; i < ny; i++) p->dy[i] = ny == 4 ? note_delta[i] : (double)(i % 4 + 1);
    }

    /* The notes' arithmetic. */
    pool_forward(p, p->x, p->y, p->arg);
    const double share = 1.0 / (p->kh * p->kw);
    for (int i = 0; i < ny; i++) {
        const int i0 = i / p->OW, j0 = i % p->OW;
        if (avg) {
            for (int r = 0; r < p->kh; r++)
                for (int t = 0; t < p->kw; t++) {
                    const int at = (i0 * p->sh + r) * p->W + j0 * p->sw + t;
                    p->dx[at] += p->dy[i] * share;
                    p->sdx[at] += fabs(p->dy[i]) * share;
                    p->sy[i] += fabs(p->x[at]) * share;
                }
        } else {
            p->dx[p->arg[i]] += p->dy[i];
            p->sdx[p->arg[i]] += fabs(p->dy[i]);
            p->sy[i] = fabs(p->y[i]);
            /* Ties and near-ties: the derivative does not exist there (or the step crosses it). */
            for (int r = 0; r < p->kh; r++)
                for (int t = 0; t < p->kw; t++) {
                    const int at = (i0 * p->sh + r) * p->W + j0 * p->sw + t;
                    if (at != p->arg[i] && p->y[i] - p->x[at] <= 4 * ex_step(EX_STEP, fmax(fabs(p->x[at]), fabs(p->y[i])))) p->tie[at] = p->tie[p->arg[i]] = 1;
                }
        }
    }

    const char *kind = avg ? "average" : "max";
    char kstr[24], ss[24];
    ex_pair_str(kstr, p->kh, p->kw), ex_pair_str(ss, p->sh, p->sw);
    ex_title(e, "%dx%d %s pooling, stride %s, of a %dx%d input (notes 001, 003, 004)", p->kh, p->kw, kind, ss, p->H,
             p->W);
    ex_matrix(e, "X", "X", p->x, p->H, p->W);
    ex_say(e, "δ = ∂L/∂O, the gradient that reaches the pooling layer's output, is given:");
    ex_matrix(e, "δ", "\\delta", p->dy, p->OH, p->OW);

    ex_heading(e, "1. forward: each output is the %s of its window%s", avg ? "mean" : "maximum",
               avg ? "" : ", and where the maximum was is remembered");
    for (int i = 0; i < p->OH; i++)
        for (int j = 0; j < p->OW; j++) {
            sb s, num;
            sb_init(&s, e);
            sb_init(&num, e);
            sb_sym(&s, so(i, j));
            sb_put(&s, avg ? " = (" : " = max(", avg ? " = (" : " = \\max(");
            sb_put(&num, avg ? "(" : "max(", avg ? "(" : "\\max(");
            for (int r = 0; r < p->kh; r++)
                for (int t = 0; t < p->kw; t++) {
                    const int h = i * p->sh + r, w = j * p->sw + t;
                    if (r || t) sb_printf(&s, avg ? " + " : ", "), sb_printf(&num, avg ? " + " : ", ");
                    sb_sym(&s, sx(h, w));
                    sb_num(&num, p->x[h * p->W + w]);
                }
            if (avg) sb_printf(&s, ")/%d", p->kh * p->kw), sb_printf(&num, ")/%d", p->kh * p->kw);
            else sb_printf(&s, ")"), sb_printf(&num, ")");
            sb_printf(&s, " = ");
            sb_append(&s, &num);
            sb_printf(&s, " = ");
            sb_num(&s, p->y[i * p->OW + j]);
            if (!avg) {
                char pos[64];
                const int at = p->arg[i * p->OW + j];
                where(p, at, i, j, pos, sizeof pos);
                sb_put(&s, ", at ", ",\\ \\text{at } ");
                sb_sym(&s, sx(at / p->W, at % p->W));
                sb_put(&s, " (", "\\ \\text{(");
                sb_printf(&s, "%s", pos);
                int tied = 0;
                for (int r = 0; r < p->kh; r++)
                    for (int t = 0; t < p->kw; t++) {
                        const int a2 = (i * p->sh + r) * p->W + j * p->sw + t;
                        tied += a2 != at && p->x[a2] == p->y[i * p->OW + j];
                    }
                if (tied) sb_printf(&s, "; a tie: the first maximum in row-major order wins, as in PyTorch");
                sb_put(&s, ")", ")}");
            }
            ex_formula(e, &s);
        }
    ex_matrix(e, "O", "O", p->y, p->OH, p->OW);

    const int tiles = p->sh >= p->kh && p->sw >= p->kw;
    if (tiles) {
        ex_heading(e, "2. upsample: each δ_ij goes back over its %dx%d window (note 001)", p->kh, p->kw);
        ex_say(e, "Pooling learns nothing, so backward only routes δ back to the input's size. First every cell of "
                  "a window gets its window's δ%s:",
               p->sh > p->kh || p->sw > p->kw ? " (cells between the windows, which no window reads, get 0)" : "");
        for (int i = 0; i < ny; i++)
            for (int r = 0; r < p->kh; r++)
                for (int t = 0; t < p->kw; t++)
                    p->up[((i / p->OW) * p->sh + r) * p->W + (i % p->OW) * p->sw + t] = p->dy[i];
        ex_matrix(e, "upsample(δ)", "\\mathrm{upsample}(\\delta)", p->up, p->H, p->W);
        if (avg) {
            ex_heading(e, "3. the result: ∂L/∂X = upsample(δ)/%d (note 001, note 004)", p->kh * p->kw);
            ex_say(e, "Each input counted 1/%d in its window's mean, so it gets 1/%d of the window's gradient:",
                   p->kh * p->kw, p->kh * p->kw);
        } else {
            for (int i = 0; i < ny; i++) p->mask[p->arg[i]] = 1;
            ex_heading(e, "3. mask: only each window's maximum passes its gradient on (note 001, note 003)");
            ex_say(e, "The maximum's position in each window, remembered in the forward pass, is 1 in the mask; "
                      "every other cell is 0, because changing it a little does not change the output:");
            ex_matrix(e, "M", "M", p->mask, p->H, p->W);
            ex_heading(e, "4. the result: ∂L/∂X = upsample(δ) ⊙ M, elementwise");
        }
    } else {
        ex_heading(e, "2. backward: the windows overlap, so each window adds its share (note 003)");
        ex_say(e, "With stride %s smaller than the %dx%d window, a cell can belong to several windows; note 003's "
                  "loop goes over the windows and adds each one's %s into ∂L/∂X:",
               ss, p->kh, p->kw, avg ? "δ/size" : "δ, times its mask,");
        for (int i = 0; i < p->OH; i++)
            for (int j = 0; j < p->OW; j++) {
                sb s;
                sb_init(&s, e);
                const double d = p->dy[i * p->OW + j];
                sb_put(&s, "window of ", "\\text{window of } ");
                sb_sym(&s, so(i, j));
                if (avg) {
                    sb_put(&s, ": each of its cells gets ", ":\\ \\text{each of its cells gets } ");
                    sb_d(&s, "L", so(i, j));
                    sb_printf(&s, "/%d = ", p->kh * p->kw);
                    sb_num(&s, d * share);
                } else {
                    const int at = p->arg[i * p->OW + j];
                    sb_put(&s, ": the maximum is ", ":\\ \\text{the maximum is } ");
                    sb_sym(&s, sx(at / p->W, at % p->W));
                    sb_put(&s, ", which gets ", ",\\ \\text{which gets } ");
                    sb_d(&s, "L", so(i, j));
                    sb_printf(&s, " = ");
                    sb_num(&s, d);
                }
                ex_formula(e, &s);
            }
        if (!avg) {
            for (int i = 0; i < ny; i++) p->mask[p->arg[i]] += 1;
            ex_say(e, "How many windows each cell is the maximum of (the masks added up):");
            ex_matrix(e, "ΣM", "\\sum M", p->mask, p->H, p->W);
        }
    }

    if (!tiles) ex_heading(e, "3. the result: ∂L/∂X");
    int listed = 0;
    for (int h = 0; h < p->H; h++)
        for (int w = 0; w < p->W; w++) {
            sb s, num;
            sb_init(&s, e);
            sb_init(&num, e);
            int n = 0;
            for (int i = 0; i < p->OH; i++)
                for (int j = 0; j < p->OW; j++) {
                    if (!in_window(p, i, j, h, w) || (!avg && p->arg[i * p->OW + j] != h * p->W + w)) continue;
                    if (n++) sb_printf(&s, " + "), sb_printf(&num, " + ");
                    sb_d(&s, "L", so(i, j));
                    sb_nump(&num, p->dy[i * p->OW + j]);
                    if (avg) sb_printf(&s, "/%d", p->kh * p->kw), sb_printf(&num, "/%d", p->kh * p->kw);
                }
            if (!n && !avg) continue;
            listed++;
            sb line;
            sb_init(&line, e);
            sb_d(&line, "L", sx(h, w));
            sb_printf(&line, " = ");
            if (n) {
                sb_append(&line, &s);
                sb_printf(&line, " = ");
                if (n > 1 || avg) sb_append(&line, &num), sb_printf(&line, " = ");
            } else {
                sb_put(&line, "0 (in no window) = ", "0 = ");
            }
            sb_num(&line, p->dx[h * p->W + w]);
            ex_formula(e, &line);
        }
    if (!avg && listed < nx) ex_say(e, "Every other ∂L/∂x is 0: those cells were not the maximum of any window.");
    ex_matrix(e, "∂L/∂X", "\\frac{\\partial L}{\\partial X}", p->dx, p->H, p->W);
    double sum_dx = 0, sum_dy = 0;
    for (int i = 0; i < nx; i++) sum_dx += p->dx[i];
    for (int i = 0; i < ny; i++) sum_dy += p->dy[i];
    ex_say(e, "The sum of ∂L/∂X is %.6g, the sum of δ is %.6g: pooling passes the gradient on without changing its "
              "total (note 004).",
           sum_dx, sum_dy);

    /* The library's layer on both paths, and central differences of L = Σ O·δ. */
    char model[160];
    snprintf(model, sizeof model, "input 1 %d %d\n%s kernel_size=%s stride=%s\n", p->H, p->W,
             avg ? "avgpool2d" : "maxpool2d", kstr, ss);
    ex_check c;
    ex_check_init(&c, avg ? "avgpool2d" : "maxpool2d", NULL);
    for (int k = 0; k < 2; k++) {
        ex_run r = {.model = model, .batch = 1, .x = p->x, .dy = p->dy, .y = p->ly, .dx = p->ldx};
        if ((rc = ex_lib_run(&r, k ? CNN_PATH_FAST : CNN_PATH_REFERENCE))) return rc;
        ex_check_cmp(&c, k ? EX_BY_FAST : EX_BY_REF, "O", p->y, p->ly, p->sy, ny, NULL);
        ex_check_cmp(&c, k ? EX_BY_FAST : EX_BY_REF, "∂L/∂X", p->dx, p->ldx, p->sdx, nx, NULL);
    }
    double grad[PLANE];
    memcpy(p->fd, p->x, sizeof p->x);
    ex_central(p->fd, nx, EX_STEP, pool_loss, p, grad, avg ? NULL : p->tie);
    ex_check_cmp(&c, EX_BY_FD, "∂L/∂X", p->dx, grad, p->sdx, nx, avg ? NULL : p->tie);
    for (int i = 0; i < nx && !avg; i++) c.skipped += p->tie[i];
    snprintf(c.skip_why, sizeof c.skip_why,
             "they sit at a tie for a window's maximum, where the derivative does not exist (the library, as "
             "PyTorch, gives it to the first maximum)");
    char how[300], what[100];
    snprintf(how, sizeof how,
             "The library's layer is a net built from the model text \"input 1 %d %d / %s kernel_size=%s "
             "stride=%s\", run forward and backward with δ. Central differences take L = Σ O·δ.",
             p->H, p->W, avg ? "avgpool2d" : "maxpool2d", kstr, ss);
    snprintf(what, sizeof what, "%d output%s and %d ∂L/∂x", ny, ny == 1 ? "" : "s", nx);
    return ex_check_report(e, &c, how, what);
}

int explain_maxpool(ex *e, int argc, char **argv) { return explain_pool(e, argc, argv, 0); }
int explain_avgpool(ex *e, int argc, char **argv) { return explain_pool(e, argc, argv, 1); }
