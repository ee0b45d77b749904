/* explain.h - what the topics of `cnn explain` share: output in text or markdown, formulas built
 * once for both, options, the library's layers run on the user's numbers, central differences, and
 * the table that says whether everything agrees.
 *
 * Each topic computes its results twice or more: by its own arithmetic, written the way the notes
 * write it (in double), by the library's real layer through a net built from model text (on the
 * reference path and on the fast path), and by central differences of the topic's forward formula
 * (in double). ex_check holds the comparisons and prints the verdict.
 */
#ifndef CNN_CLI_EXPLAIN_H
#define CNN_CLI_EXPLAIN_H

#include "cli.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The largest matrix a topic takes (each element's derivation is printed), and the most channels
 * and filters. */
#define EX_MAX_DIM 16
#define EX_MAX_STACK 8

typedef enum ex_format { EX_TEXT = 0, EX_MARKDOWN } ex_format;

typedef struct ex {
    ex_format fmt;
    const char *topic;
} ex;

/* ---- a string that is built once and comes out as plain text or as LaTeX -------------------- */

typedef struct sb {
    ex_format fmt;
    size_t len;
    char buf[8192];               /* a formula longer than this is cut (and ends in "...") */
} sb;

void sb_init(sb *s, const ex *e);
/* Appends what t holds (built in the same format). */
void sb_append(sb *s, const sb *t);
/* Appends `text` in text format, `tex` in markdown. */
void sb_put(sb *s, const char *text, const char *tex);
/* Appends the same formatted string in both formats. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void sb_printf(sb *s, const char *fmt, ...);
/* A number as %.6g (−0 as 0); sb_nump puts a negative number in parentheses, for products. */
void sb_num(sb *s, double v);
void sb_nump(sb *s, double v);
/* "·" or "\cdot". */
void sb_mul(sb *s);

/* A symbol such as x11, x(2)11 or w(3,2)12 (LaTeX x_{11}, x^{(2)}_{11}, w^{(3,2)}_{12}): `base`,
 * up to two tags (−1: none; shown 1-based, as the notes count), and row and column (−1: none;
 * shown 1-based, as "ij" when both are below 10, else "i,j"). */
typedef struct ex_sym {
    const char *base;
    int tag[2];
    int i, j;
} ex_sym;
ex_sym ex_s(const char *base, int t1, int t2, int i, int j);
void sb_sym(sb *s, ex_sym y);
/* ∂L/∂<symbol> (LaTeX \frac{\partial L}{\partial ...}); `num` is "L" or "f". */
void sb_d(sb *s, const char *num, ex_sym y);

/* ---- output ----------------------------------------------------------------------------------- */

/* The first line: "cnn explain TOPIC: <what>" (markdown: a "##" heading). */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void ex_title(const ex *e, const char *fmt, ...);
/* A numbered step (markdown: a "###" heading). */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void ex_heading(const ex *e, const char *fmt, ...);
/* A line of prose (markdown: a paragraph). */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void ex_say(const ex *e, const char *fmt, ...);
/* An empty line in text (nothing in markdown, where paragraphs are apart already). */
void ex_blank(const ex *e);
/* "2" when a == b, else "2,3", in buf (24 bytes at least). */
const char *ex_pair_str(char *buf, int a, int b);
/* A formula: indented text, or a $$ display in markdown. */
void ex_formula(const ex *e, const sb *s);
/* A matrix with a label (label_tex in markdown): aligned columns under "LABEL (R×C) =", or a table. */
void ex_matrix(const ex *e, const char *label, const char *label_tex, const double *m, int rows, int cols);

/* ---- options ---------------------------------------------------------------------------------- */

typedef struct ex_opt {
    const char *name;             /* "--input" */
    const char **value;           /* where its value goes (NULL until given) */
} ex_opt;

/* Reads argv[1..] into the options of `opts` (ended by a NULL name), and --format, with the parser
 * of every command (args.h: "--name value", "--name=value", unique prefixes; two entries with the
 * same `value` are one option under two names). --help prints `usage` to stdout. Returns -1 to go
 * on, or the exit status (0 after --help, 2 after a message on stderr). */
int ex_args(ex *e, int argc, char **argv, const ex_opt *opts, const char *usage);

/* Parsers of option values; each prints "cnn explain: OPT: ..." and returns 0 on bad input. */
int ex_int(const char *opt, const char *text, int lo, int hi, int *v);
/* "2" (both) or "2,3" (height, width). */
int ex_pair(const char *opt, const char *text, int lo, int hi, int *a, int *b);
int ex_real(const char *opt, const char *text, double *v);
/* One matrix of at most EX_MAX_DIM × EX_MAX_DIM. */
int ex_mat(const char *opt, const char *text, double *out, int *rows, int *cols);
/* A stack of at most max_count such matrices, separated by '|'. */
int ex_stack(const char *opt, const char *text, double *out, int max_count, int *count, int *rows, int *cols);

/* ---- the library's layers --------------------------------------------------------------------- */

/* One forward and one backward through a net built from `model` text, with parameters set by
 * name, on one path. Inputs and results are doubles; the library holds floats. */
typedef struct ex_run {
    const char *model;
    int batch;
    int nparams;
    const char *pname[2];         /* "0.weight" */
    const double *pval[2];        /* in the library's layout */
    const double *x, *dy;         /* [batch, C, H, W] and dL/doutput */
    double *y, *dx, *pgrad[2];    /* filled: output, dL/dinput, dL/dparameter */
    /* Optional (NULL names are skipped): F32 buffers after the forward ("0.running_var"), and
     * values of the graph by name: their data after the forward and their gradient after the
     * backward (each [batch] + the value's shape; a NULL destination is not filled). */
    const char *bname[2];
    double *bval[2];
    const char *vname[2];
    double *vval[2], *vgrad[2];
} ex_run;

/* Returns 0, or prints the library's message and returns the exit status. */
int ex_lib_run(ex_run *r, cnn_path path);

/* ---- central differences ---------------------------------------------------------------------- */

/* grad[i] = (L(v + h_i·e_i) − L(v − h_i·e_i)) / 2h_i for i < n, with h_i = ex_step(h, v[i]), where
 * loss(ctx) evaluates L at the current values; v is restored. Elements with skip[i] set (skip may
 * be NULL) get NaN. */
void ex_central(double *v, int n, double h, double (*loss)(void *ctx), void *ctx, double *grad,
                const unsigned char *skip);

/* The step of every central difference, relative to the value stepped: h·max(1, |v|). The topics'
 * layers are linear in each variable, or smooth (sigmoid), so a step this size has no truncation
 * error worth the name; and scaled with the value, its rounding error stays relative to the loss
 * (a step of 1e-4 on a value of 1e8 would be lost in the loss's rounding). */
#define EX_STEP 1e-4
double ex_step(double h, double v);
/* For a loss that is linear in each variable (conv, linear): one step for every variable,
 * h·max(1, max |v|), since a larger step has no truncation error there and rounds less, and values
 * of 1e8 beside values of 1 still agree. Returns the step. */
double ex_central_linear(double *v, int n, double h, double (*loss)(void *ctx), void *ctx, double *grad);
/* With the step h for every variable, whatever its value: for a loss that bends on a scale of its
 * own (batch norm's x̂, on the scale of the batch's spread, not of the values). */
void ex_central_fixed(double *v, int n, double h, double (*loss)(void *ctx), void *ctx, double *grad);

/* ---- the verdict ------------------------------------------------------------------------------ */

enum { EX_BY_REF = 0, EX_BY_FAST, EX_BY_FD, EX_BY_ALT, EX_BY_COUNT };

typedef struct ex_check {
    char label[EX_BY_COUNT][96];
    double tol[EX_BY_COUNT];
    int64_t count[EX_BY_COUNT];
    double maxdiff[EX_BY_COUNT];
    int failed[EX_BY_COUNT];
    char first_fail[EX_BY_COUNT][400];
    int64_t skipped;              /* central differences left out (ties, kinks) */
    char skip_why[200];
    char mine[80];                /* what computed the results checked: "the notes' arithmetic" */
    char rule[400];               /* when a number agrees, in words */
} ex_check;

/* Labels the four comparisons: the library's `layer` on both paths, central differences, and
 * (when alt is not NULL) a second way of the notes, e.g. "chain-rule sums (003) = rot180 full
 * convolution (004)". */
void ex_check_init(ex_check *c, const char *layer, const char *alt);
/* Compares the topic's results `mine` with `other` (n numbers named `what`): agreement when
 * |mine − other| ≤ tol·max(1, scale) with scale = scale[i] (the sum of the absolute values of the
 * terms) or |mine[i]| when scale is NULL. Elements with skip[i] set are not compared. */
void ex_check_cmp(ex_check *c, int by, const char *what, const double *mine, const double *other,
                  const double *scale, int n, const unsigned char *skip);
/* Prints a heading, `how` (how the library was run; may be NULL), the table and the verdict line
 * ("agree: ..." or "DISAGREE: ..."); returns the exit status, 0 or 1. `what` names the results,
 * e.g. "4 outputs, 4 ∂L/∂w, 9 ∂L/∂x and 1 ∂L/∂b". */
int ex_check_report(const ex *e, const ex_check *c, const char *how, const char *what);

/* ---- the topics ------------------------------------------------------------------------------- */

int explain_chain(ex *e, int argc, char **argv);
int explain_conv(ex *e, int argc, char **argv);
int explain_maxpool(ex *e, int argc, char **argv);
int explain_avgpool(ex *e, int argc, char **argv);
int explain_relu(ex *e, int argc, char **argv);
int explain_sigmoid(ex *e, int argc, char **argv);
int explain_linear(ex *e, int argc, char **argv);
int explain_network(ex *e, int argc, char **argv);
int explain_batchnorm(ex *e, int argc, char **argv);
int explain_residual(ex *e, int argc, char **argv);

#endif
