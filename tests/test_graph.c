/* Whole graphs: forks, residual additions and DenseNet-style concatenations, checked as one
 * function of the input and the parameters (test_grid checks each node alone).
 *
 * For a net with output y and a fixed dy, L = Σ y·dy. Then:
 * - the reference path's gradients (in double: of the input, of every value, of every parameter)
 *   against central differences of the whole net's forward in double, run here node by node over
 *   the layers' reference forwards: error |a − num| / max(1, |a|, |num|) ≤ 1e-6. Perturbing an
 *   intermediate value a (a cell of a, after it is computed) checks dL/da at a fork directly: it is
 *   the sum of what every branch that reads a sends back (note 000);
 * - the fast path against the reference path: output, every value's gradient and every
 *   parameter's gradient, relative L2 ≤ 1e-5.
 * Then the graph errors of the model text: cycles, unknown and duplicate names, unread outputs,
 * names defined later, and the shapes that add and concat refuse, each naming its line. */
#include "testutil.h"
#include "clirun.h"

#include "net/net.h"

#define NUMERIC_TOL 1e-6
#define FAST_TOL 1e-5
#define STEP 1e-6

/* A net on the reference path, and the double buffers of its forward run here. */
typedef struct graph {
    cnn_net *net;
    int n;
    double **val;          /* every value's n samples; val[0] is the input */
    double *state;         /* every tensor, in the net's state layout */
    const float *dy;
    size_t out_elems;
    double worst_x, worst_p, worst_v, worst_fast;
} graph;

static size_t value_size(const cnn_net *net, int v) {
    int chw[3];
    cnn_net_value_shape(net, v, chw, NULL);
    return (size_t)chw[0] * chw[1] * chw[2];
}

/* L = Σ y·dy of a forward in double from g->val[0] and g->state; value bump_v's cell bump_e gets
 * + h once it is computed (bump_v = −1: none; 0: the input, already in val[0]). */
static double objective(graph *g, int bump_v, size_t bump_e, double h) {
    cnn_net *net = g->net;
    const double saved = bump_v == 0 ? g->val[0][bump_e] : 0.0;
    if (bump_v == 0) g->val[0][bump_e] = saved + h;
    for (int i = 0; i < net->nlayers; i++) {
        const node *nd = &net->nodes[i];
        const double *xs[LAYER_MAX_INPUTS];
        double *p[LAYER_MAX_TENSORS] = {0};
        for (int k = 0; k < nd->l.nin; k++) xs[k] = g->val[nd->from[k]];
        for (int k = 0; k < nd->l.ntensors; k++) p[k] = g->state + nd->toff[k];
        layer_ops_of(nd->l.kind)->forward_ref(&nd->l, g->n, xs, p, g->val[i + 1]);
        if (bump_v == i + 1) g->val[i + 1][bump_e] += h;
    }
    if (bump_v == 0) g->val[0][bump_e] = saved;
    const double *y = g->val[net->nlayers];
    double s = 0.0;
    for (size_t i = 0; i < g->out_elems; i++) s += y[i] * g->dy[i];
    return s;
}

static double rel_err(double a, double num) {
    double den = fabs(a) > fabs(num) ? fabs(a) : fabs(num);
    return fabs(a - num) / (den > 1.0 ? den : 1.0);
}

/* dL/dv for every cell of v by central differences, against the analytic `a`; v is an element of
 * the state (bump_v = −1) or a value. Returns the worst error. */
static double check_cells(graph *g, double *v, int bump_v, const double *a, size_t count, const char *what) {
    double worst = 0.0;
    for (size_t e = 0; e < count; e++) {
        double lp, lm;
        if (bump_v < 0) {
            const double saved = v[e];
            v[e] = saved + STEP, lp = objective(g, -1, 0, 0.0);
            v[e] = saved - STEP, lm = objective(g, -1, 0, 0.0);
            v[e] = saved;
        } else {
            lp = objective(g, bump_v, e, STEP);
            lm = objective(g, bump_v, e, -STEP);
        }
        const double err = rel_err(a[e], (lp - lm) / (2 * STEP));
        if (!(err <= NUMERIC_TOL))
            fail_msg("%s[%zu]: analytic %.12g, central differences %.12g (error %.3e)", what, e, a[e],
                     (lp - lm) / (2 * STEP), err);
        if (err > worst) worst = err;
    }
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

static void fast_close(graph *g, const char *what, const float *f, const double *d, size_t count) {
    const double err = rel_l2(f, d, count);
    if (!(err <= FAST_TOL)) fail_msg("%s: the fast path differs from the reference by %.3e (relative L2)", what, err);
    if (err > g->worst_fast) g->worst_fast = err;
}

/* Parses `text` twice, fast and reference, runs one forward and backward of n samples on each
 * with the same parameters, and checks as the header says. Returns the worst errors in *g. */
static void check_graph(const char *what, const char *text, int n, int input_grad, graph *g) {
    cnn_net *ref = tu_net(text, n, CNN_PATH_REFERENCE), *fast = tu_net(text, n, CNN_PATH_FAST);
    assert_int_equal(cnn_net_init(ref, 5), CNN_OK);
    assert_int_equal(cnn_net_init(fast, 5), CNN_OK);
    cnn_net_set_input_grad(ref, input_grad);
    cnn_net_set_input_grad(fast, input_grad);
    const int nv = cnn_net_value_count(ref), last = nv - 1;
    const size_t xn = n * value_size(ref, 0), yn = n * value_size(ref, last);
    float *x = malloc(xn * sizeof *x), *dy = malloc(yn * sizeof *dy);
    for (size_t i = 0; i < xn; i++) x[i] = (float)(((i * 37 + 11) % 101) / 50.0 - 1.0);
    for (size_t i = 0; i < yn; i++) dy[i] = (float)(((i * 13 + 5) % 17) / 8.0 - 1.0);
    tu_run(ref, x, n, dy);
    tu_run(fast, x, n, dy);

    memset(g, 0, sizeof *g);
    g->net = ref, g->n = n, g->dy = dy, g->out_elems = yn;
    g->val = calloc((size_t)nv, sizeof *g->val);
    for (int v = 0; v < nv; v++) g->val[v] = calloc(n * value_size(ref, v), sizeof **g->val);
    for (size_t i = 0; i < xn; i++) g->val[0][i] = x[i];
    g->state = calloc(net_state_total(ref) + 1, sizeof *g->state);
    for (int i = 0; i < ref->nlayers; i++) {
        const layer *l = &ref->nodes[i].l;
        for (int k = 0; k < l->ntensors; k++) {
            size_t numel = 1;
            for (int d = 0; d < l->t[k].ndim; d++) numel *= (size_t)l->t[k].shape[d];
            for (size_t e = 0; e < numel; e++)
                g->state[ref->nodes[i].toff[k] + e] = l->count[k] ? (double)l->count[k][e] : l->param[k][e];
        }
    }
    /* Our forward is the reference path's: the same output, bit for bit once rounded. */
    objective(g, -1, 0, 0.0);
    for (size_t i = 0; i < yn; i++) assert_true((float)g->val[last][i] == cnn_net_output(ref)[i]);

    /* The reference path against central differences: the input, every other value, every parameter. */
    for (int v = 0; v < nv; v++) {
        const value *val = &ref->values[v];
        if (!val->needs_grad) {
            assert_null(cnn_net_value_grad(ref, v));
            assert_null(cnn_net_value_grad(fast, v));
            continue;
        }
        char name[160];
        snprintf(name, sizeof name, "dL/d(value %d, %s)", v, cnn_net_value_name(ref, v));
        const size_t count = n * value_size(ref, v);
        const double w = check_cells(g, NULL, v, val->rgrad, count, name);
        if (v == 0) assert_ptr_equal(cnn_net_value_grad(fast, 0), cnn_net_grad_input(fast));
        if (v == 0) g->worst_x = w;
        else if (w > g->worst_v) g->worst_v = w;
        fast_close(g, name, cnn_net_value_grad(fast, v), val->rgrad, count);
    }
    for (int p = 0; p < cnn_net_param_count(ref); p++) {
        const cnn_param pr = cnn_net_param(ref, p), pf = cnn_net_param(fast, p);
        const size_t off = (size_t)(pr.data - ref->pdata);   /* parameters lead the state layout */
        const double w = check_cells(g, g->state + off, -1, ref->rgrad + off, (size_t)pr.numel, pr.name);
        if (w > g->worst_p) g->worst_p = w;
        fast_close(g, pr.name, pf.grad, ref->rgrad + off, (size_t)pr.numel);
    }
    fast_close(g, "output", cnn_net_output(fast), ref->values[last].ract, yn);
    char xs[32] = "off";
    if (input_grad) snprintf(xs, sizeof xs, "%.2e", g->worst_x);
    print_message("%s: worst error against central differences: input %s, values %.2e, parameters %.2e; "
                  "fast against reference %.2e\n", what, xs, g->worst_v, g->worst_p, g->worst_fast);

    for (int v = 0; v < nv; v++) free(g->val[v]);
    free(g->val), free(g->state), free(x), free(dy);
    g->net = NULL;
    cnn_net_free(ref);
    cnn_net_free(fast);
}

/* Value a feeds two branches that meet in add: dL/da is the sum of both branches' gradients. */
static void test_fork(void **state) {
    (void)state;
    graph g;
    check_graph("fork", "input 2 6 5\n"
                "conv2d out_channels=4 kernel_size=3 padding=1 name=a\n"
                "conv2d out_channels=4 kernel_size=3 padding=1\n"
                "tanh name=left\n"
                "sigmoid from=a\n"
                "conv2d out_channels=4 kernel_size=1 name=right\n"
                "add from=left,right\n"
                "adaptiveavgpool2d output_size=2\n"
                "flatten\n"
                "linear out_features=3 name=out\n", 2, 1, &g);
}

/* A residual block of ResNet's shape, the identity from the value above the block. */
static void test_residual(void **state) {
    (void)state;
    graph g;
    check_graph("residual block", "input 2 5 5\n"
                "conv2d out_channels=3 kernel_size=3 padding=1 name=stem\n"
                "relu\n"
                "conv2d out_channels=3 kernel_size=3 padding=1\n"
                "relu\n"
                "conv2d out_channels=3 kernel_size=3 padding=1\n"
                "add from=stem\n"
                "relu\n"
                "adaptiveavgpool2d output_size=1\n"
                "flatten\n"
                "linear out_features=3 name=out\n", 2, 1, &g);
}

/* DenseNet: each concat takes every value before it. */
static void test_dense(void **state) {
    (void)state;
    graph g;
    check_graph("dense", "input 3 5 5\n"
                "conv2d out_channels=2 kernel_size=3 padding=1 name=a\n"
                "relu\n"
                "conv2d out_channels=3 kernel_size=3 padding=1 name=b\n"
                "concat from=a,b\n"
                "tanh\n"
                "conv2d out_channels=2 kernel_size=1 name=c\n"
                "concat from=a,b,c\n"
                "adaptivemaxpool2d output_size=2,3\n"
                "flatten\n"
                "linear out_features=4 name=out\n", 2, 1, &g);
}

/* One value read twice by one node, and once more later: x gets 2·dy from the first add plus
 * what the second sends back. */
static void test_same_value_twice(void **state) {
    (void)state;
    graph g;
    check_graph("add from=x,x", "input 2 4 4\n"
                "conv2d out_channels=3 kernel_size=3 padding=1 name=x\n"
                "add from=x,x\n"
                "tanh\n"
                "add from=x\n"
                "conv2d out_channels=2 kernel_size=2 name=out\n", 2, 1, &g);
}

/* Adds in a chain: the net shares an add's output gradient with the one input that only it reads
 * (tanh's value, then s1, then relu's), and a's gradient still sums what its four readers send.
 * The second net ends in an add, whose output gradient is the caller's array: no sharing there. */
static void test_add_chain(void **state) {
    (void)state;
    graph g;
    check_graph("chain of adds", "input 2 4 4\n"
                "conv2d out_channels=3 kernel_size=3 padding=1 name=a\n"
                "tanh\n"
                "add from=a name=s1\n"
                "add from=a name=s2\n"
                "relu\n"
                "add from=a\n"
                "conv2d out_channels=2 kernel_size=2 name=out\n", 2, 1, &g);
    check_graph("add last", "input 2 4 4\n"
                "conv2d out_channels=3 kernel_size=3 padding=1 name=a\n"
                "tanh\n"
                "add from=a\n", 2, 1, &g);
}

/* add and concat reading the net's input, with its gradient on and off (off: the layers get a
 * NULL dx for it and the parameters' gradients stay right). */
static void test_input_branches(void **state) {
    (void)state;
    static const char *text = "input 3 4 4\n"
                              "conv2d out_channels=3 kernel_size=3 padding=1\n"
                              "sigmoid\n"
                              "add from=input name=sum\n"
                              "concat from=sum,input\n"
                              "adaptivemaxpool2d output_size=1\n"
                              "flatten\n"
                              "concat from=5,5\n"
                              "linear out_features=2 name=out\n";
    graph g;
    check_graph("input branches", text, 3, 1, &g);
    check_graph("input branches, input gradient off", text, 3, 0, &g);
}

/* The same backward for any thread count, bit for bit, and for a batch split differently. */
static void test_threads(void **state) {
    (void)state;
    static const char *text = "input 3 9 9\n"
                              "conv2d out_channels=8 kernel_size=3 padding=1 name=a\n"
                              "relu\n"
                              "conv2d out_channels=8 kernel_size=3 padding=1\n"
                              "add from=a name=s\n"
                              "adaptivemaxpool2d output_size=4\n"
                              "adaptiveavgpool2d output_size=3,2 name=p\n"
                              "adaptiveavgpool2d output_size=1 from=s\n"
                              "flatten name=f\n"
                              "flatten from=p\n"
                              "concat from=f\n"
                              "linear out_features=5\n";
    enum { N = 5 };
    float *grads[2] = {NULL, NULL};
    int64_t total = 0;
    const int saved = cnn_get_threads();
    for (int t = 0; t < 2; t++) {
        assert_int_equal(cnn_set_threads(t ? 4 : 1), CNN_OK);
        cnn_net *net = tu_net(text, N, CNN_PATH_FAST);
        assert_int_equal(cnn_net_init(net, 9), CNN_OK);
        float x[N * 3 * 9 * 9], dy[N * 5];
        for (int i = 0; i < N * 3 * 9 * 9; i++) x[i] = (float)(((i * 29) % 97) / 48.0 - 1.0);
        for (int i = 0; i < N * 5; i++) dy[i] = (float)(((i * 7) % 11) / 5.0 - 1.0);
        tu_run(net, x, N, dy);
        total = 0;
        for (int p = 0; p < cnn_net_param_count(net); p++) total += cnn_net_param(net, p).numel;
        grads[t] = malloc((size_t)(total + N * 3 * 9 * 9) * sizeof(float));
        int64_t at = 0;
        for (int p = 0; p < cnn_net_param_count(net); p++) {
            const cnn_param pr = cnn_net_param(net, p);
            memcpy(grads[t] + at, pr.grad, (size_t)pr.numel * sizeof(float));
            at += pr.numel;
        }
        memcpy(grads[t] + at, cnn_net_grad_input(net), sizeof x);
        cnn_net_free(net);
    }
    assert_int_equal(cnn_set_threads(saved), CNN_OK);
    assert_memory_equal(grads[0], grads[1], (size_t)(total + N * 3 * 9 * 9) * sizeof(float));
    free(grads[0]), free(grads[1]);
}

/* ---- errors -------------------------------------------------------------------------------- */

static void parse_fails(const char *text, cnn_status want, const char *sub1, const char *sub2) {
    cnn_net *net = (cnn_net *)1;
    assert_status(cnn_net_parse(text, &net), want);
    assert_null(net);
    assert_error_contains(sub1);
    if (sub2) assert_error_contains(sub2);
}

static void test_cycle(void **state) {
    (void)state;
    parse_fails("input 1 4 4\nrelu from=b name=a\nrelu from=a name=b\n", CNN_ERR_PARSE,
                "line 2: relu: from=b makes a cycle", "'b' (line 3) reads this line's output");
    /* through a line without from= (it reads the line above) and three lines round */
    parse_fails("input 1 4 4\nrelu from=b name=a\nrelu name=b\n", CNN_ERR_PARSE, "line 2: relu: from=b makes a cycle",
                NULL);
    parse_fails("input 1 4 4\nrelu from=c name=a\nrelu from=a name=b\nrelu from=b name=c\n", CNN_ERR_PARSE,
                "line 2: relu: from=c makes a cycle", "directly or through others");
    parse_fails("input 1 4 4\n\nrelu name=a from=a\n", CNN_ERR_PARSE, "line 3: relu: from=a makes a cycle",
                "(it is this line)");
    parse_fails("input 1 4 4\nrelu\nadd name=s from=s\n", CNN_ERR_PARSE, "line 3: add: from=s makes a cycle",
                "(it is this line)");
}

static void test_names(void **state) {
    (void)state;
    parse_fails("input 1 4 4\nrelu\nadd from=nope\n", CNN_ERR_PARSE, "line 3: add: from=nope: no line is named 'nope'",
                NULL);
    parse_fails("input 1 4 4\nrelu name=a\nrelu name=a\nadd from=a\n", CNN_ERR_PARSE,
                "line 3: relu: name=a is used twice", NULL);
    parse_fails("input 1 4 4\nrelu name=input\n", CNN_ERR_PARSE, "line 2: relu: name=input is used twice", NULL);
    /* relu 'a' is read by nobody: only the last line may go unread */
    parse_fails("input 1 4 4\nrelu name=a\nrelu from=input\nadd from=input\n", CNN_ERR_PARSE,
                "line 2: relu 'a': nothing reads its output", NULL);
    parse_fails("input 1 4 4\nrelu from=b\nrelu name=b from=input\nadd from=0\n", CNN_ERR_PARSE,
                "line 2: relu: from=b: 'b' is defined later, at line 3", NULL);
    parse_fails("input 1 4 4\nrelu\nadd\n", CNN_ERR_PARSE, "line 3: add: needs from=", NULL);
    parse_fails("input 1 4 4\nrelu\nconcat from=0,\n", CNN_ERR_PARSE, "line 3: concat: from=0,: expected names", NULL);
    parse_fails("input 1 4 4\nrelu name=a\nrelu from=a,input\n", CNN_ERR_PARSE, "line 3: relu: takes 1 input, got 2",
                NULL);
    char text[1024] = "input 1 2 2\nrelu name=a\nadd from=a", want[64];
    for (int i = 0; i < LAYER_MAX_INPUTS; i++) strcat(text, ",a");
    strcat(text, "\n");
    snprintf(want, sizeof want, "line 3: add: from= lists more than %d inputs", LAYER_MAX_INPUTS);
    parse_fails(text, CNN_ERR_PARSE, want, NULL);
}

/* The shapes add and concat refuse, and the adaptive pools' options. */
static void test_shapes(void **state) {
    (void)state;
    parse_fails("input 2 4 4\nconv2d out_channels=3 kernel_size=1\nadd from=input\n", CNN_ERR_SHAPE,
                "line 3: add: input 1 is 2x4x4 but input 0 is 3x4x4", NULL);
    parse_fails("input 2 4 4\nconv2d out_channels=3 kernel_size=1 name=a\nmaxpool2d kernel_size=2 from=input name=b\n"
                "add from=a,input,b,a\n", CNN_ERR_SHAPE,
                "line 4: add: input 1 is 2x4x4, input 2 is 2x2x2 but input 0 is 3x4x4", NULL);
    parse_fails("input 2 2 2\nflatten\nadd from=input\n", CNN_ERR_SHAPE, "line 3: add: input 1 is 2x2x2 but input 0 "
                "is [8] (flat)", NULL);
    parse_fails("input 2 4 4\nmaxpool2d kernel_size=2\nconcat from=input\n", CNN_ERR_SHAPE,
                "line 3: concat: input 1 is 2x4x4 but input 0 is 2x2x2", "equal heights and widths");
    parse_fails("input 2 4 4\nmaxpool2d kernel_size=2,1\nconcat from=input\n", CNN_ERR_SHAPE,
                "line 3: concat: input 1 is 2x4x4 but input 0 is 2x2x4", NULL);
    parse_fails("input 2 2 2\nflatten\nconcat from=input\n", CNN_ERR_SHAPE, "line 3: concat: input 1 is 2x2x2 but "
                "input 0 is [8] (flat)", "flat and C H W");
    parse_fails("input 2 4 4\nrelu\nconcat from=input dim=0\n", CNN_ERR_PARSE, "line 3: concat: option dim=0: only "
                "dim=1", NULL);
    parse_fails("input 2 4 4\nadaptiveavgpool2d output_size=0\n", CNN_ERR_PARSE,
                "line 2: adaptiveavgpool2d: option output_size=0", NULL);
    parse_fails("input 2 4 4\nadaptivemaxpool2d output_size=2,0\n", CNN_ERR_PARSE,
                "line 2: adaptivemaxpool2d: option output_size=2,0", NULL);
    parse_fails("input 2 4 4\nadaptivemaxpool2d\n", CNN_ERR_PARSE, "line 2: adaptivemaxpool2d: output_size= is "
                "required", NULL);
    parse_fails("input 2 4 4\nflatten\nadaptiveavgpool2d output_size=1\n", CNN_ERR_SHAPE,
                "line 3: adaptiveavgpool2d: input [32] is flat", NULL);
    parse_fails("input 2 4 4\nadaptiveavgpool2d output_size=1 kernel_size=2\n", CNN_ERR_PARSE,
                "line 2: adaptiveavgpool2d: unknown option 'kernel_size'", NULL);
}

/* What parses: shapes and inputs of the graph's nodes. */
static void test_parses(void **state) {
    (void)state;
    cnn_net *net = NULL;
    assert_status(cnn_net_parse("input 2 4 4\nconv2d out_channels=3 kernel_size=1 name=a\nAdd from=a\n"
                                "cat from=input,1,input dim=1\nAdaptiveMaxPool2d output_size=3,5\n"
                                "AdaptiveAvgPool2d output_size=1\nflatten name=f\nlinear out_features=4\n"
                                "concat from=f\n",
                                &net),
                  CNN_OK);
    assert_int_equal(cnn_net_layer_count(net), 8);
    assert_int_equal(cnn_net_layer_kind(net, 1), CNN_LAYER_ADD);
    assert_int_equal(cnn_net_layer_input_count(net, 1), 2);   /* add from=a: the line above (a) + a */
    assert_int_equal(cnn_net_layer_input(net, 1, 0), 1);
    assert_int_equal(cnn_net_layer_input(net, 1, 1), 1);
    assert_int_equal(cnn_net_layer_kind(net, 2), CNN_LAYER_CONCAT);
    assert_int_equal(cnn_net_layer_input_count(net, 2), 3);   /* from=A,B,C: exactly those */
    assert_int_equal(cnn_net_layer_input(net, 2, 0), 0);
    assert_int_equal(cnn_net_layer_input(net, 2, 1), 2);
    assert_int_equal(cnn_net_layer_input(net, 2, 2), 0);
    int in[3], out[3], flat;
    cnn_net_layer_shapes(net, 2, in, out);
    assert_int_equal(out[0], 2 + 3 + 2);
    assert_int_equal(out[1], 4);
    assert_int_equal(out[2], 4);
    cnn_net_layer_shapes(net, 3, in, out);
    assert_int_equal(cnn_net_layer_kind(net, 3), CNN_LAYER_ADAPTIVEMAXPOOL2D);
    assert_int_equal(out[0], 7);
    assert_int_equal(out[1], 3);
    assert_int_equal(out[2], 5);
    cnn_net_layer_shapes(net, 4, in, out);
    assert_int_equal(out[0], 7);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 1);
    cnn_net_value_shape(net, 8, out, &flat);   /* concat of [7] (flat) and [4] */
    assert_int_equal(out[0], 11);
    assert_int_equal(flat, 1);
    cnn_net_free(net);
}

/* Known values: the windows of 5 rows into 3 ([0,2), [1,4), [3,5)) and the max's first maximum. */
/* The CLI on each bad graph: exit status 2 and a message naming the line, for the commands that
 * read a model (grad and gradcheck; train and eval read it the same way). */
static void test_cli_bad_graphs(void **state) {
    (void)state;
    static const struct {
        const char *text, *line, *what;
    } bad[] = {
        {"input 1 4 4\nrelu from=b name=a\nrelu from=a name=b\n", "line 2", "makes a cycle"},
        {"input 1 4 4\nrelu\nadd from=nowhere\n", "line 3", "no line is named 'nowhere'"},
        {"input 1 4 4\nrelu name=a\nrelu name=a\n", "line 3", "used twice"},
        {"input 1 4 4\nrelu name=a\nsigmoid\ntanh from=a\n", "line 3", "nothing reads its output"},
        {"input 1 4 4\nmaxpool2d kernel_size=2\nadd from=input\n", "line 3", "add: input 1 is 1x4x4"},
        {"input 1 4 4\nmaxpool2d kernel_size=2 name=p\nconcat from=input,p\n", "line 3", "concat"},
        {"input 1 4 4\nconv2d out_channels=1 kernel_size=3 padding=same stride=2\n", "line 2",
         "padding='same' is not supported for strided convolutions"},
    };
    char dir[] = "/tmp/cnn_test_graph_cli_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char model[256], in[256], out[256];
    snprintf(model, sizeof model, "%s/bad.cnn", dir);
    snprintf(in, sizeof in, "%s/in.safetensors", dir);
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tu_write_bytes(model, bad[i].text, strlen(bad[i].text));
        cli_result r;
        CLI_RUN(&r, dir, "gradcheck", "--model", model);
        CLI_EXPECT(&r, 2, bad[i].line, bad[i].what);
        CLI_RUN(&r, dir, "grad", "--model", model, "--init", "1", "--input", in, "--out", out);
        CLI_EXPECT(&r, 2, bad[i].line, bad[i].what);
    }
    /* batch norm in training mode with one value per channel: a batch of one 1x1 sample */
    static const char bn[] = "input 2 1 1\nbatchnorm2d\n";
    tu_write_bytes(model, bn, strlen(bn));
    const float x[2] = {1.0f, 2.0f}, dy[2] = {1.0f, 1.0f};
    const cnn_tensor t[2] = {{.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {1, 2, 1, 1}, .data = (void *)x},
                             {.name = "grad_output", .dtype = CNN_F32, .ndim = 4, .shape = {1, 2, 1, 1},
                              .data = (void *)dy}};
    assert_int_equal(cnn_st_save(in, t, 2, NULL, 0), CNN_OK);
    cli_result r;
    CLI_RUN(&r, dir, "grad", "--model", model, "--init", "1", "--input", in, "--out", out);
    CLI_EXPECT(&r, 2, "line 2", "batchnorm2d", "more than 1 value per channel");
    CLI_RUN(&r, dir, "grad", "--model", model, "--init", "1", "--input", in, "--out", out, "--eval");
    CLI_EXPECT(&r, 0, NULL);
    assert_int_equal(tu_remove_tree(dir), 0);
}

static void test_adaptive_values(void **state) {
    (void)state;
    for (int path = 0; path < 2; path++) {
        cnn_net *avg = tu_net("input 1 5 1\nadaptiveavgpool2d output_size=3,1\n", 1, (cnn_path)path);
        const float x[5] = {1, 2, 4, 8, 16}, dy[3] = {1, 3, 6};
        tu_run(avg, x, 1, dy);
        const double y[3] = {1.5, 14.0 / 3.0, 12}, dx[5] = {0.5, 0.5 + 1, 1, 1 + 3, 3};
        tu_close("avg y", cnn_net_output(avg), y, 3, 1e-7);
        tu_close("avg dx", cnn_net_grad_input(avg), dx, 5, 1e-7);
        cnn_net_free(avg);
        /* 2 rows into 5: each output row is one input row, rows repeat ([0,1), [0,1), [0,2), [1,2), [1,2)) */
        cnn_net *up = tu_net("input 1 2 1\nadaptivemaxpool2d output_size=5,1\n", 1, (cnn_path)path);
        const float xu[2] = {3, 3}, du[5] = {1, 2, 4, 8, 16};
        tu_run(up, xu, 1, du);
        const double yu[5] = {3, 3, 3, 3, 3}, dxu[2] = {1 + 2 + 4, 8 + 16};   /* a tie goes to the first */
        tu_exact("up y", cnn_net_output(up), yu, 5);
        tu_exact("up dx", cnn_net_grad_input(up), dxu, 2);
        cnn_net_free(up);
        /* global max: ties to the first maximum, NaN wins (the last NaN), an infinity is a number */
        cnn_net *g = tu_net("input 3 3 7\nadaptivemaxpool2d output_size=1\n", 1, (cnn_path)path);
        float xg[63];
        for (int i = 0; i < 63; i++) xg[i] = (float)(i % 5);
        xg[21 + 4] = NAN, xg[21 + 17] = NAN, xg[42 + 10] = INFINITY;   /* planes 1 and 2 */
        const float dg[3] = {1, 2, 3};
        tu_run(g, xg, 1, dg);
        const float *yg = cnn_net_output(g), *dxg = cnn_net_grad_input(g);
        assert_true(yg[0] == 4.0f && isnan(yg[1]) && yg[2] == INFINITY);
        for (int i = 0; i < 63; i++) {
            const float want = i == 4 ? 1.0f : i == 21 + 17 ? 2.0f : i == 42 + 10 ? 3.0f : 0.0f;
            if (dxg[i] != want) fail_msg("path %d: dx[%d] = %g, expected %g", path, i, dxg[i], want);
        }
        cnn_net_free(g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork),        cmocka_unit_test(test_residual),
        cmocka_unit_test(test_dense),       cmocka_unit_test(test_same_value_twice),
        cmocka_unit_test(test_add_chain),
        cmocka_unit_test(test_input_branches), cmocka_unit_test(test_threads),
        cmocka_unit_test(test_cycle),       cmocka_unit_test(test_names),
        cmocka_unit_test(test_shapes),      cmocka_unit_test(test_parses),
        cmocka_unit_test(test_adaptive_values), cmocka_unit_test(test_cli_bad_graphs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
