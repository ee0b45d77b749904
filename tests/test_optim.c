/* test_optim.c - optimizers and schedules against torch.optim.
 *
 * (a) Every case in tests/train_fixtures (made by tools/make_train_fixtures.py): the library alone
 *     trains model.cnn from init.safetensors for five steps on data.safetensors with the options of
 *     the case's args line, and the parameters and the optimizer's state must match the float64
 *     PyTorch run to a relative L2 error of 1e-5 per tensor (each step's loss too).
 * (b) Each formula on a 3-element parameter, with values worked out by hand.
 * (c) cnn_schedule_lr against hand values.
 * (d) Checkpoints: 2 steps, state saved to a file, a fresh net and optimizer, 3 more steps, bitwise
 *     equal to 5 uninterrupted steps.
 * (e) Configuration and load_state errors.
 *
 * Set OPTIM_VERBOSE=1 to print the worst relative error of each fixture. CNN_TRAIN_FIXTURES
 * overrides the fixture directory (relative to the repository root, where tests/run.sh runs). */
#include "testutil.h"

#include <unistd.h>

#define TOLERANCE 1e-5
#define MAX_STATE 64

static const char *fixture_root(void) {
    const char *v = getenv("CNN_TRAIN_FIXTURES");
    return v && *v ? v : "tests/train_fixtures";
}

/* ---- helpers -------------------------------------------------------------------------------- */

/* ||got − want|| / max(||want||, 1e-12) */
static double rel_l2(const float *got, const double *want, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-12);
}

/* The options of `cnn train` that the fixtures use (tools/make_train_fixtures.py). */
typedef struct train_args {
    cnn_optim_config cfg;
    int batch, epochs, shuffle;
} train_args;

static train_args parse_args(const char *dir) {
    char path[1024], line[512];
    snprintf(path, sizeof path, "%s/args", dir);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    fclose(f);
    train_args a;
    memset(&a, 0, sizeof a);
    a.shuffle = 1;
    const char *kind = NULL;
    double lr = -1, momentum = 0, wd = -1;
    int nesterov = 0;
    char *save = NULL;
    for (char *w = strtok_r(line, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
        if (!strcmp(w, "--nesterov")) nesterov = 1;
        else if (!strcmp(w, "--no-shuffle")) a.shuffle = 0;
        else {
            char *v = strtok_r(NULL, " \t\r\n", &save);
            if (!v) fail_msg("%s: option %s has no value", path, w);
            if (!strcmp(w, "--optimizer")) kind = v;
            else if (!strcmp(w, "--lr")) lr = atof(v);
            else if (!strcmp(w, "--momentum")) momentum = atof(v);
            else if (!strcmp(w, "--weight-decay")) wd = atof(v);
            else if (!strcmp(w, "--batch")) a.batch = atoi(v);
            else if (!strcmp(w, "--epochs")) a.epochs = atoi(v);
            else fail_msg("%s: unknown option %s", path, w);
            if (kind == v) {
                if (!strcmp(v, "sgd")) a.cfg.kind = CNN_OPTIM_SGD;
                else if (!strcmp(v, "adam")) a.cfg.kind = CNN_OPTIM_ADAM;
                else if (!strcmp(v, "adamw")) a.cfg.kind = CNN_OPTIM_ADAMW;
                else fail_msg("%s: unknown optimizer %s", path, v);
            }
        }
    }
    if (!kind || lr < 0 || a.batch < 1 || a.epochs < 1) fail_msg("%s: incomplete args line", path);
    const cnn_optim_kind k = a.cfg.kind;
    a.cfg = cnn_optim_defaults(k, lr);
    a.cfg.momentum = momentum;
    a.cfg.nesterov = nesterov;
    if (wd >= 0) a.cfg.weight_decay = wd;
    return a;
}

static cnn_st *load_st(const char *dir, const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    cnn_st *st = NULL;
    if (cnn_st_load(path, &st) != CNN_OK) fail_msg("%s: %s", path, cnn_last_error());
    return st;
}

/* A fixture's net, with init.safetensors loaded and reserved for `batch` samples. */
static cnn_net *fixture_net(const char *dir, int batch) {
    char path[1024];
    snprintf(path, sizeof path, "%s/model.cnn", dir);
    cnn_net *net = NULL;
    if (cnn_net_load(path, &net) != CNN_OK) fail_msg("%s", cnn_last_error());
    cnn_st *init = load_st(dir, "init.safetensors");
    if (cnn_net_load_weights(net, init, 0) != CNN_OK) fail_msg("%s: %s", dir, cnn_last_error());
    cnn_st_free(init);
    assert_int_equal(cnn_net_reserve(net, batch), CNN_OK);
    return net;
}

typedef struct fixture_data {
    cnn_st *st;
    const float *x;
    const int64_t *y;
    int64_t n, sample;       /* samples, floats per sample */
} fixture_data;

static fixture_data fixture_load_data(const char *dir, const cnn_net *net) {
    fixture_data d;
    d.st = load_st(dir, "data.safetensors");
    int chw[3];
    cnn_net_input_shape(net, chw);
    const int64_t xs[4] = {-1, chw[0], chw[1], chw[2]};
    const cnn_tensor *x, *y;
    if (cnn_st_require(d.st, "data", "input", CNN_F32, 4, xs, &x) != CNN_OK) fail_msg("%s", cnn_last_error());
    const int64_t ys[1] = {x->shape[0]};
    if (cnn_st_require(d.st, "data", "target", CNN_I64, 1, ys, &y) != CNN_OK) fail_msg("%s", cnn_last_error());
    d.x = x->data;
    d.y = y->data;
    d.n = x->shape[0];
    d.sample = (int64_t)chw[0] * chw[1] * chw[2];
    return d;
}

/* One training step on batch b (in file order): zero_grad, forward, cross-entropy, backward, step. */
static float train_step(cnn_net *net, cnn_optim *opt, const fixture_data *d, int batch, int64_t b, double lr) {
    const int64_t first = (b * batch) % d->n;
    int out[3];
    cnn_net_output_shape(net, out);
    float dlogits[64 * 16], loss;
    assert_true(batch * out[0] <= 64 * 16);
    cnn_net_zero_grad(net);
    assert_int_equal(cnn_net_forward(net, d->x + first * d->sample, batch), CNN_OK);
    assert_int_equal(cnn_loss_cross_entropy(cnn_net_output(net), d->y + first, batch, out[0], &loss, dlogits),
                     CNN_OK);
    assert_int_equal(cnn_net_backward(net, dlogits), CNN_OK);
    cnn_optim_step(opt, lr);
    return loss;
}

/* ---- (a) fixtures --------------------------------------------------------------------------- */

static void run_fixture(void **state) {
    const char *name = *(const char *const *)*state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", fixture_root(), name);
    const train_args a = parse_args(dir);
    assert_false(a.shuffle);
    cnn_net *net = fixture_net(dir, a.batch);
    fixture_data d = fixture_load_data(dir, net);
    assert_int_equal(d.n % a.batch, 0);
    cnn_st *exp = load_st(dir, "expected.safetensors");
    cnn_optim *opt = NULL;
    if (cnn_optim_create(net, &a.cfg, &opt) != CNN_OK) fail_msg("%s: %s", name, cnn_last_error());

    const int64_t steps = a.epochs * (d.n / a.batch);
    const cnn_tensor *want_loss = NULL;
    const int64_t loss_shape[1] = {steps};
    if (cnn_st_require(exp, "expected", "loss", CNN_F64, 1, loss_shape, &want_loss) != CNN_OK)
        fail_msg("%s", cnn_last_error());
    double worst_loss = 0;
    for (int64_t s = 0; s < steps; s++) {
        const float loss = train_step(net, opt, &d, a.batch, s, a.cfg.lr);
        const double want = ((const double *)want_loss->data)[s];
        worst_loss = fmax(worst_loss, fabs(loss - want) / fabs(want));
    }
    assert_int_equal(cnn_optim_step_count(opt), steps);
    if (worst_loss > TOLERANCE) fail_msg("%s: loss differs by %.3g (relative)", name, worst_loss);

    double worst_param = 0, worst_state = 0, worst_f32 = 0;
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        const cnn_param p = cnn_net_param(net, i);
        const cnn_tensor *t;
        if (cnn_st_require(exp, "expected", p.name, CNN_F64, p.ndim, p.shape, &t) != CNN_OK)
            fail_msg("%s", cnn_last_error());
        const double err = rel_l2(p.data, t->data, p.numel);
        if (!(err <= TOLERANCE)) fail_msg("%s: parameter %s: relative L2 error %.3g", name, p.name, err);
        worst_param = fmax(worst_param, err);
        /* For the record: torch's own float32 run against float64. */
        char f32name[64];
        snprintf(f32name, sizeof f32name, "f32.%s", p.name);
        if (cnn_st_require(exp, "expected", f32name, CNN_F32, p.ndim, p.shape, &t) != CNN_OK)
            fail_msg("%s", cnn_last_error());
        double *f32 = malloc((size_t)p.numel * sizeof *f32);
        for (int64_t k = 0; k < p.numel; k++) f32[k] = ((const float *)t->data)[k];
        worst_f32 = fmax(worst_f32, rel_l2(p.data, f32, p.numel));
        free(f32);
    }
    cnn_tensor st[MAX_STATE];
    const int n = cnn_optim_state(opt, st, MAX_STATE);
    assert_true(n <= MAX_STATE);
    int expected_state = 0;
    for (int i = 0; i < cnn_st_count(exp); i++) expected_state += !strncmp(cnn_st_tensor(exp, i)->name, "optim.", 6);
    assert_int_equal(n, expected_state);
    for (int i = 0; i < n; i++) {
        const cnn_tensor *t;
        assert_int_equal(st[i].dtype, CNN_F32);
        if (cnn_st_require(exp, "expected", st[i].name, CNN_F64, st[i].ndim, st[i].shape, &t) != CNN_OK)
            fail_msg("%s", cnn_last_error());
        const double err = rel_l2(st[i].data, t->data, cnn_tensor_numel(&st[i]));
        if (!(err <= TOLERANCE)) fail_msg("%s: state %s: relative L2 error %.3g", name, st[i].name, err);
        worst_state = fmax(worst_state, err);
    }
    if (getenv("OPTIM_VERBOSE"))
        print_message("%-16s worst relative L2 error: parameters %.2e, state %.2e, loss %.2e "
                      "(against torch float32: %.2e)\n", name, worst_param, worst_state, worst_loss, worst_f32);
    cnn_optim_free(opt);
    cnn_st_free(exp);
    cnn_st_free(d.st);
    cnn_net_free(net);
}

/* ---- (b) formulas by hand ------------------------------------------------------------------- */

/* A net whose only parameter is a linear weight of 3 elements, set to p; its gradient is set by hand. */
static cnn_net *tiny_net(const float p[3]) {
    cnn_net *net = tu_net("input 3 1 1\nflatten\nlinear out_features=1 bias=false\n", 1, CNN_PATH_FAST);
    tu_set(net, "1.weight", p, 3);
    return net;
}

static void set_grad(cnn_net *net, float g0, float g1, float g2) {
    float *g = cnn_net_param(net, 0).grad;
    g[0] = g0, g[1] = g1, g[2] = g2;
}

static const float *weights(cnn_net *net) { return cnn_net_param(net, 0).data; }

static cnn_optim *make_optim(cnn_net *net, cnn_optim_config cfg) {
    cnn_optim *opt = NULL;
    if (cnn_optim_create(net, &cfg, &opt) != CNN_OK) fail_msg("%s", cnn_last_error());
    return opt;
}

/* Buffer b of the (only) parameter. */
static const float *buffer(const cnn_optim *opt, int b, const char *name) {
    cnn_tensor t[2];
    assert_true(cnn_optim_state(opt, t, 2) > b);
    assert_string_equal(t[b].name, name);
    return t[b].data;
}

static const float P0[3] = {1, -2, 0.5f};

/* Asserts |got − want| ≤ tol·|want| elementwise (for state values far below 1). */
static void rel_close(const char *what, const float *got, const double *want, int count, double tol) {
    for (int i = 0; i < count; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * fabs(want[i])))
            fail_msg("%s[%d] = %.9g, expected %.9g", what, i, (double)got[i], want[i]);
}

/* Dyadic values keep every float operation exact. */
static void test_sgd_plain(void **state) {
    (void)state;
    cnn_net *net = tiny_net(P0);
    cnn_optim *opt = make_optim(net, cnn_optim_defaults(CNN_OPTIM_SGD, 0.25));
    assert_int_equal(cnn_optim_state(opt, NULL, 0), 0);           /* no momentum, no state */
    set_grad(net, 0.5f, 1, -2);
    cnn_optim_step(opt, 0.25);                                     /* p − 0.25·g */
    tu_exact("sgd step 1", weights(net), (const double[]){0.875, -2.25, 1.0}, 3);
    cnn_optim_step(opt, 0.5);                                      /* the lr argument is used */
    tu_exact("sgd step 2", weights(net), (const double[]){0.625, -2.75, 2.0}, 3);
    assert_int_equal(cnn_optim_step_count(opt), 2);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

static void test_sgd_weight_decay(void **state) {
    (void)state;
    cnn_net *net = tiny_net(P0);
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD, 0.25);
    c.weight_decay = 0.5;
    cnn_optim *opt = make_optim(net, c);
    set_grad(net, 0.5f, 1, -2);
    cnn_optim_step(opt, 0.25);      /* g + 0.5·p = [1, 0, −1.75] */
    tu_exact("sgd wd", weights(net), (const double[]){0.75, -2, 0.9375}, 3);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

/* Momentum 0.5 with dampening 0.5: the first step sets buf ← g (not (1 − dampening)·g); later
 * steps buf ← 0.5·buf + 0.5·g. */
static void test_sgd_momentum_first_step(void **state) {
    (void)state;
    cnn_net *net = tiny_net(P0);
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD, 0.25);
    c.momentum = 0.5;
    c.dampening = 0.5;
    cnn_optim *opt = make_optim(net, c);
    assert_int_equal(cnn_optim_state(opt, NULL, 0), 1);
    set_grad(net, 0.5f, 1, -2);
    cnn_optim_step(opt, 0.25);      /* buf = [0.5, 1, −2] */
    tu_exact("buf 1", buffer(opt, 0, "optim.1.weight.momentum_buffer"), (const double[]){0.5, 1, -2}, 3);
    tu_exact("p 1", weights(net), (const double[]){0.875, -2.25, 1.0}, 3);
    set_grad(net, 1, -1, 0);
    cnn_optim_step(opt, 0.25);      /* buf = [0.75, 0, −1] */
    tu_exact("buf 2", buffer(opt, 0, "optim.1.weight.momentum_buffer"), (const double[]){0.75, 0, -1}, 3);
    tu_exact("p 2", weights(net), (const double[]){0.6875, -2.25, 1.25}, 3);
    set_grad(net, 0, 0, 4);
    cnn_optim_step(opt, 0.25);      /* buf = [0.375, 0, 1.5] */
    tu_exact("buf 3", buffer(opt, 0, "optim.1.weight.momentum_buffer"), (const double[]){0.375, 0, 1.5}, 3);
    tu_exact("p 3", weights(net), (const double[]){0.59375, -2.25, 0.875}, 3);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

/* Nesterov, momentum 0.5: step 1 buf = g, g' = g + 0.5·buf = 1.5·g; step 2 buf = 0.5·buf + g,
 * g' = g + 0.5·buf. */
static void test_sgd_nesterov(void **state) {
    (void)state;
    cnn_net *net = tiny_net(P0);
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD, 0.25);
    c.momentum = 0.5;
    c.nesterov = 1;
    cnn_optim *opt = make_optim(net, c);
    set_grad(net, 0.5f, 1, -2);
    cnn_optim_step(opt, 0.25);      /* g' = [0.75, 1.5, −3] */
    tu_exact("p 1", weights(net), (const double[]){0.8125, -2.375, 1.25}, 3);
    set_grad(net, 1, -1, 0);
    cnn_optim_step(opt, 0.25);      /* buf = [1.25, −0.5, −1], g' = [1.625, −1.25, −0.5] */
    tu_exact("buf 2", buffer(opt, 0, "optim.1.weight.momentum_buffer"), (const double[]){1.25, -0.5, -1}, 3);
    tu_exact("p 2", weights(net), (const double[]){0.40625, -2.0625, 1.375}, 3);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

/* Adam, lr 0.01. At t = 1, m̂ = g and v̂ = g², so p moves by lr·g/(|g| + eps): lr·sign(g), or half
 * of it where |g| = eps = 1e-8. At t = 2 a constant gradient moves p by the same again; element 0
 * goes from g = 1 to g = 3: m = 0.9·0.1·1 + 0.1·3 = 0.39, v = 0.999·0.001·1 + 0.001·9 = 0.009999,
 * m̂ = 0.39/0.19, v̂ = 0.009999/0.001999, step 0.01·m̂/(√v̂ + eps) = 0.009177811148766771. */
static void test_adam_bias_correction(void **state) {
    (void)state;
    cnn_net *net = tiny_net(P0);
    cnn_optim *opt = make_optim(net, cnn_optim_defaults(CNN_OPTIM_ADAM, 0.01));
    assert_int_equal(cnn_optim_state(opt, NULL, 0), 2);
    set_grad(net, 1, -0.5f, 1e-8f);
    cnn_optim_step(opt, 0.01);
    tu_close("adam t=1", weights(net), (const double[]){0.99, -1.99, 0.495}, 3, 1e-6);
    rel_close("exp_avg t=1", buffer(opt, 0, "optim.1.weight.exp_avg"), (const double[]){0.1, -0.05, 1e-9}, 3, 1e-6);
    rel_close("exp_avg_sq t=1", buffer(opt, 1, "optim.1.weight.exp_avg_sq"),
              (const double[]){1e-3, 2.5e-4, 1e-19}, 3, 1e-6);
    set_grad(net, 3, -0.5f, 1e-8f);
    cnn_optim_step(opt, 0.01);
    tu_close("adam t=2", weights(net), (const double[]){0.99 - 0.009177811148766771, -1.98, 0.49}, 3, 1e-6);
    rel_close("exp_avg t=2", buffer(opt, 0, "optim.1.weight.exp_avg"), (const double[]){0.39, -0.095, 1.9e-9}, 3,
              1e-6);
    rel_close("exp_avg_sq t=2", buffer(opt, 1, "optim.1.weight.exp_avg_sq"),
              (const double[]){0.009999, 0.00049975, 1.999e-19}, 3, 1e-6);
    assert_int_equal(cnn_optim_step_count(opt), 2);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

/* Adam's weight decay is L2 in the gradient: with g = 0 and wd 0.5, g' = 0.5·p, so each element
 * moves by lr against the sign of p. */
static void test_adam_l2_decay(void **state) {
    (void)state;
    cnn_net *net = tiny_net(P0);
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAM, 0.01);
    c.weight_decay = 0.5;
    cnn_optim *opt = make_optim(net, c);
    set_grad(net, 0, 0, 0);
    cnn_optim_step(opt, 0.01);
    tu_close("adam wd", weights(net), (const double[]){0.99, -1.99, 0.49}, 3, 1e-6);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

/* AdamW, lr 0.1, wd 0.5: p ← 0.95·p first, then the Adam step without decay in g (a zero gradient
 * moves nothing more). */
static void test_adamw_decoupled(void **state) {
    (void)state;
    cnn_net *net = tiny_net(P0);
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAMW, 0.1);
    assert_true(c.weight_decay == 0.01);
    c.weight_decay = 0.5;
    cnn_optim *opt = make_optim(net, c);
    set_grad(net, 1, -1, 0);
    cnn_optim_step(opt, 0.1);       /* [0.95, −1.9, 0.475] − 0.1·sign(g) */
    tu_close("adamw t=1", weights(net), (const double[]){0.85, -1.8, 0.475}, 3, 1e-6);
    tu_close("exp_avg t=1", buffer(opt, 0, "optim.1.weight.exp_avg"), (const double[]){0.1, -0.1, 0}, 3, 1e-8);
    cnn_optim_step(opt, 0.1);       /* [0.8075, −1.71, 0.45125] − 0.1·sign(g) */
    tu_close("adamw t=2", weights(net), (const double[]){0.7075, -1.61, 0.45125}, 3, 1e-6);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

static void test_defaults(void **state) {
    (void)state;
    for (int k = 0; k < 3; k++) {
        const cnn_optim_config c = cnn_optim_defaults((cnn_optim_kind)k, 0.5);
        assert_int_equal(c.kind, k);
        assert_true(c.lr == 0.5 && c.momentum == 0 && c.dampening == 0 && c.nesterov == 0);
        assert_true(c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8);
        assert_true(c.weight_decay == (k == CNN_OPTIM_ADAMW ? 0.01 : 0.0));
    }
}

/* ---- (c) schedules -------------------------------------------------------------------------- */

static void assert_near(double got, double want) {
    if (!(fabs(got - want) <= 1e-15 * fmax(1, fabs(want)))) fail_msg("got %.17g, expected %.17g", got, want);
}

static void test_schedules(void **state) {
    (void)state;
    for (int e = 0; e < 5; e++) assert_true(cnn_schedule_lr(CNN_SCHEDULE_CONSTANT, 0.3, e, 5, 2, 0.1) == 0.3);
    const double step[5] = {1, 1, 0.1, 0.1, 0.01};
    for (int e = 0; e < 5; e++) assert_near(cnn_schedule_lr(CNN_SCHEDULE_STEP, 1, e, 5, 2, 0.1), step[e]);
    /* torch's StepLR multiplies: 0.1·0.1, bitwise */
    assert_true(cnn_schedule_lr(CNN_SCHEDULE_STEP, 1, 4, 5, 2, 0.1) == 0.1 * 0.1);
    assert_near(cnn_schedule_lr(CNN_SCHEDULE_COSINE, 0.1, 0, 10, 0, 0), 0.1);
    assert_near(cnn_schedule_lr(CNN_SCHEDULE_COSINE, 0.1, 5, 10, 0, 0), 0.05);
    assert_near(cnn_schedule_lr(CNN_SCHEDULE_COSINE, 0.1, 10, 10, 0, 0), 0);
    assert_near(cnn_schedule_lr(CNN_SCHEDULE_COSINE, 0.1, 2, 4, 0, 0), 0.05);
    assert_near(cnn_schedule_lr(CNN_SCHEDULE_COSINE, 0.1, 1, 4, 0, 0), 0.1 * (1 + sqrt(0.5)) / 2);
    /* Arguments that make no schedule give NaN. */
    assert_true(isnan(cnn_schedule_lr(CNN_SCHEDULE_STEP, 1, 3, 5, 0, 0.1)));
    assert_true(isnan(cnn_schedule_lr(CNN_SCHEDULE_COSINE, 1, 0, 0, 0, 0)));
    assert_true(isnan(cnn_schedule_lr(CNN_SCHEDULE_CONSTANT, 1, -1, 5, 1, 0.1)));
    assert_true(isnan(cnn_schedule_lr((cnn_schedule)7, 1, 0, 5, 1, 0.1)));
}

/* ---- (d) checkpoints ------------------------------------------------------------------------ */

typedef struct tmpdir {
    char dir[64], weights[128], state[128];
} tmpdir;

static void tmp_make(tmpdir *t) {
    snprintf(t->dir, sizeof t->dir, "/tmp/cnn_test_optim_XXXXXX");
    if (!mkdtemp(t->dir)) fail_msg("mkdtemp failed");
    snprintf(t->weights, sizeof t->weights, "%s/weights.safetensors", t->dir);
    snprintf(t->state, sizeof t->state, "%s/state.safetensors", t->dir);
}

static void tmp_remove(tmpdir *t) {
    unlink(t->weights);
    unlink(t->state);
    rmdir(t->dir);
}

/* Saves the optimizer's state, with the step count as metadata. */
static void save_state(const cnn_optim *opt, const char *path) {
    cnn_tensor t[MAX_STATE];
    const int n = cnn_optim_state(opt, t, MAX_STATE);
    assert_true(n <= MAX_STATE);
    char steps[32];
    snprintf(steps, sizeof steps, "%lld", (long long)cnn_optim_step_count(opt));
    const char *meta[2] = {"steps", steps};
    if (cnn_st_save(path, t, n, meta, 1) != CNN_OK) fail_msg("%s", cnn_last_error());
}

/* 5 steps in one go against 2 steps, a checkpoint (weights and state files), a fresh net and
 * optimizer, and 3 more steps: parameters and state must be bitwise equal. */
static void round_trip(const char *fixture, cnn_optim_config cfg, int split) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", fixture_root(), fixture);
    const int batch = 4;
    tmpdir tmp;
    tmp_make(&tmp);

    cnn_net *a = fixture_net(dir, batch);
    fixture_data d = fixture_load_data(dir, a);
    cnn_optim *oa = make_optim(a, cfg);
    for (int s = 0; s < 5; s++) train_step(a, oa, &d, batch, s, cfg.lr);

    cnn_net *b = fixture_net(dir, batch);
    cnn_optim *ob = make_optim(b, cfg);
    for (int s = 0; s < split; s++) train_step(b, ob, &d, batch, s, cfg.lr);
    assert_int_equal(cnn_net_save_weights(b, tmp.weights, 0), CNN_OK);
    save_state(ob, tmp.state);
    cnn_optim_free(ob);
    cnn_net_free(b);

    cnn_net *c = fixture_net(dir, batch);
    cnn_st *w = NULL, *st = NULL;
    assert_int_equal(cnn_st_load(tmp.weights, &w), CNN_OK);
    assert_int_equal(cnn_net_load_weights(c, w, 0), CNN_OK);
    assert_int_equal(cnn_st_load(tmp.state, &st), CNN_OK);
    const char *steps = cnn_st_metadata(st, "steps");
    assert_non_null(steps);
    cnn_optim *oc = make_optim(c, cfg);
    if (cnn_optim_load_state(oc, st, atoll(steps)) != CNN_OK) fail_msg("%s", cnn_last_error());
    assert_int_equal(cnn_optim_step_count(oc), split);
    for (int s = split; s < 5; s++) train_step(c, oc, &d, batch, s, cfg.lr);

    for (int i = 0; i < cnn_net_param_count(a); i++) {
        const cnn_param pa = cnn_net_param(a, i), pc = cnn_net_param(c, i);
        if (memcmp(pa.data, pc.data, (size_t)pa.numel * sizeof(float)))
            fail_msg("%s, split at %d: parameter %s differs after resuming", fixture, split, pa.name);
    }
    cnn_tensor ta[MAX_STATE], tc[MAX_STATE];
    const int n = cnn_optim_state(oa, ta, MAX_STATE);
    assert_int_equal(cnn_optim_state(oc, tc, MAX_STATE), n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(ta[i].name, tc[i].name);
        if (memcmp(ta[i].data, tc[i].data, (size_t)cnn_tensor_numel(&ta[i]) * sizeof(float)))
            fail_msg("%s, split at %d: state %s differs after resuming", fixture, split, ta[i].name);
    }
    cnn_st_free(w);
    cnn_st_free(st);
    cnn_optim_free(oa);
    cnn_optim_free(oc);
    cnn_net_free(a);
    cnn_net_free(c);
    cnn_st_free(d.st);
    tmp_remove(&tmp);
}

static void test_state_round_trip(void **state) {
    (void)state;
    const char *names[4] = {"sgd_momentum", "sgd_nesterov_wd", "adam_wd", "adamw"};
    for (int i = 0; i < 4; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", fixture_root(), names[i]);
        const train_args a = parse_args(dir);
        round_trip(names[i], a.cfg, 2);
        round_trip(names[i], a.cfg, 0);   /* no step yet: SGD's first step must still set buf ← g */
    }
    /* Momentum with dampening, where the first-step rule matters. */
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD, 0.05);
    c.momentum = 0.9;
    c.dampening = 0.3;
    round_trip("sgd", c, 0);
    round_trip("sgd", c, 1);
    round_trip("sgd", c, 3);
}

/* ---- (e) errors ----------------------------------------------------------------------------- */

static void expect_config_error(cnn_net *net, cnn_optim_config c, const char *needle) {
    cnn_optim *opt = (cnn_optim *)&c;   /* any non-NULL value: it must be reset to NULL */
    assert_int_equal(cnn_optim_create(net, &c, &opt), CNN_ERR_ARG);
    assert_null(opt);
    if (!strstr(cnn_last_error(), needle)) fail_msg("message '%s' lacks '%s'", cnn_last_error(), needle);
}

static void test_config_errors(void **state) {
    (void)state;
    cnn_net *net = tiny_net(P0);
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD, -0.1);
    expect_config_error(net, c, "learning rate");
    c.lr = NAN;
    expect_config_error(net, c, "learning rate");
    c = cnn_optim_defaults(CNN_OPTIM_SGD, 0.1);
    c.weight_decay = -1e-4;
    expect_config_error(net, c, "weight decay");
    c = cnn_optim_defaults(CNN_OPTIM_SGD, 0.1);
    c.momentum = -0.5;
    expect_config_error(net, c, "momentum");
    c = cnn_optim_defaults(CNN_OPTIM_SGD, 0.1);
    c.nesterov = 1;
    expect_config_error(net, c, "nesterov needs momentum > 0 and dampening 0");
    c.momentum = 0.9;
    c.dampening = 0.1;
    expect_config_error(net, c, "nesterov needs momentum > 0 and dampening 0");
    for (int k = CNN_OPTIM_ADAM; k <= CNN_OPTIM_ADAMW; k++) {
        c = cnn_optim_defaults((cnn_optim_kind)k, 0.1);
        c.beta1 = 1;
        expect_config_error(net, c, "beta1");
        c.beta1 = -0.1;
        expect_config_error(net, c, "beta1");
        c = cnn_optim_defaults((cnn_optim_kind)k, 0.1);
        c.beta2 = 1.5;
        expect_config_error(net, c, "beta2");
        c = cnn_optim_defaults((cnn_optim_kind)k, 0.1);
        c.eps = -1e-8;
        expect_config_error(net, c, "eps");
        c = cnn_optim_defaults((cnn_optim_kind)k, 0.1);
        c.weight_decay = -1;
        expect_config_error(net, c, "weight decay");
    }
    c = cnn_optim_defaults(CNN_OPTIM_SGD, 0.1);
    c.kind = (cnn_optim_kind)9;
    expect_config_error(net, c, "unknown kind");
    /* Settings that belong to another optimizer are not checked: torch ignores them too. */
    c = cnn_optim_defaults(CNN_OPTIM_SGD, 0);
    c.beta1 = 2;
    cnn_optim *opt = NULL;
    assert_int_equal(cnn_optim_create(net, &c, &opt), CNN_OK);
    cnn_optim_free(opt);
    /* NULLs */
    c = cnn_optim_defaults(CNN_OPTIM_SGD, 0.1);
    assert_int_equal(cnn_optim_create(NULL, &c, &opt), CNN_ERR_ARG);
    assert_int_equal(cnn_optim_create(net, NULL, &opt), CNN_ERR_ARG);
    assert_int_equal(cnn_optim_create(net, &c, NULL), CNN_ERR_ARG);
    cnn_optim_free(NULL);
    cnn_optim_step(NULL, 0.1);
    assert_int_equal(cnn_optim_step_count(NULL), 0);
    assert_int_equal(cnn_optim_state(NULL, NULL, 0), 0);
    cnn_net_free(net);
}

static void expect_load_error(cnn_optim *opt, const cnn_tensor *t, int n, int64_t steps, cnn_status want,
                              const char *needle) {
    tmpdir tmp;
    tmp_make(&tmp);
    if (cnn_st_save(tmp.state, t, n, NULL, 0) != CNN_OK) fail_msg("%s", cnn_last_error());
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(tmp.state, &st), CNN_OK);
    assert_int_equal(cnn_optim_load_state(opt, st, steps), want);
    if (!strstr(cnn_last_error(), needle)) fail_msg("message '%s' lacks '%s'", cnn_last_error(), needle);
    cnn_st_free(st);
    tmp_remove(&tmp);
}

/* Bad state files are rejected before anything changes. */
static void test_load_state_errors(void **state) {
    (void)state;
    cnn_net *net = tiny_net(P0);
    cnn_optim *opt = make_optim(net, cnn_optim_defaults(CNN_OPTIM_ADAM, 0.01));
    set_grad(net, 1, -0.5f, 2);
    cnn_optim_step(opt, 0.01);
    float before[6];
    memcpy(before, buffer(opt, 0, "optim.1.weight.exp_avg"), 3 * sizeof(float));
    memcpy(before + 3, buffer(opt, 1, "optim.1.weight.exp_avg_sq"), 3 * sizeof(float));

    float ones[3] = {1, 1, 1}, bad[3] = {1, NAN, 1};
    int64_t i64[3] = {1, 1, 1};
    cnn_tensor t[2] = {
        {.name = "optim.1.weight.exp_avg", .dtype = CNN_F32, .ndim = 2, .shape = {1, 3}, .data = ones},
        {.name = "optim.1.weight.exp_avg_sq", .dtype = CNN_F32, .ndim = 2, .shape = {1, 3}, .data = ones},
    };
    expect_load_error(opt, t, 1, 4, CNN_ERR_MISSING, "optim.1.weight.exp_avg_sq");
    t[1].ndim = 1, t[1].shape[0] = 3;
    expect_load_error(opt, t, 2, 4, CNN_ERR_SHAPE, "optim.1.weight.exp_avg_sq");
    t[1].ndim = 2, t[1].shape[0] = 1;
    t[1].dtype = CNN_I64, t[1].data = i64;
    expect_load_error(opt, t, 2, 4, CNN_ERR_DTYPE, "optim.1.weight.exp_avg_sq");
    t[1].dtype = CNN_F32, t[1].data = bad;
    expect_load_error(opt, t, 2, 4, CNN_ERR_NONFINITE, "optim.1.weight.exp_avg_sq");
    t[1].data = ones;
    expect_load_error(opt, t, 2, -1, CNN_ERR_ARG, "negative");
    tu_exact("unchanged", buffer(opt, 0, "optim.1.weight.exp_avg"),
             (const double[]){before[0], before[1], before[2]}, 3);
    tu_exact("unchanged", buffer(opt, 1, "optim.1.weight.exp_avg_sq"),
             (const double[]){before[3], before[4], before[5]}, 3);
    assert_int_equal(cnn_optim_step_count(opt), 1);
    assert_int_equal(cnn_optim_load_state(opt, NULL, 1), CNN_ERR_ARG);

    /* A good file, with an F64 tensor (rounded), loads; with steps 0 nothing is needed. */
    double halves[3] = {0.5, 0.5, 0.5};
    t[0].dtype = CNN_F64, t[0].data = halves;
    tmpdir tmp;
    tmp_make(&tmp);
    assert_int_equal(cnn_st_save(tmp.state, t, 2, NULL, 0), CNN_OK);
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(tmp.state, &st), CNN_OK);
    assert_int_equal(cnn_optim_load_state(opt, st, 7), CNN_OK);
    assert_int_equal(cnn_optim_step_count(opt), 7);
    tu_exact("loaded", buffer(opt, 0, "optim.1.weight.exp_avg"), (const double[]){0.5, 0.5, 0.5}, 3);
    tu_exact("loaded", buffer(opt, 1, "optim.1.weight.exp_avg_sq"), (const double[]){1, 1, 1}, 3);
    cnn_st_free(st);
    tmp_remove(&tmp);
    expect_load_error(opt, t, 0, 0, CNN_OK, "");
    assert_int_equal(cnn_optim_step_count(opt), 0);
    tu_exact("reset", buffer(opt, 0, "optim.1.weight.exp_avg"), (const double[]){0, 0, 0}, 3);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

/* One test per fixture, named after it. */
#define FIXTURE_TEST(i) {test_names[i], run_fixture, NULL, NULL, &fixtures[i]}

int main(void) {
    static const char *fixtures[] = {"sgd", "sgd_momentum", "sgd_nesterov_wd", "adam", "adam_wd", "adamw"};
    static const char *test_names[] = {"fixture sgd", "fixture sgd_momentum", "fixture sgd_nesterov_wd",
                                       "fixture adam", "fixture adam_wd", "fixture adamw"};
    const struct CMUnitTest tests[] = {
        FIXTURE_TEST(0), FIXTURE_TEST(1), FIXTURE_TEST(2), FIXTURE_TEST(3), FIXTURE_TEST(4), FIXTURE_TEST(5),
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_weight_decay),
        cmocka_unit_test(test_sgd_momentum_first_step),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_adam_bias_correction),
        cmocka_unit_test(test_adam_l2_decay),
        cmocka_unit_test(test_adamw_decoupled),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_load_state_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
