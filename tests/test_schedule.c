/* The training recipe's math: schedules at every step against torch's own scheduler classes
 * (tests/train_fixtures/schedules.txt), label smoothing (fast path against the double reference,
 * the reference against central differences), clip_grad_norm, the weight-decay groups, and the
 * per-step momentum. */
#include "testutil.h"
#include "layers/loss.h"

/* ---- schedules against torch --------------------------------------------------------------- */

static int parse_kind(const char *s, cnn_schedule *k) {
    static const char *names[] = {"constant", "step", "cosine", "multistep", "onecycle"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) return *k = (cnn_schedule)i, 1;
    return 0;
}

/* Every case of schedules.txt: lr within 1e-12 relative of torch's at every step, and onecycle's
 * momentum too (the others report NaN: they leave momentum alone). */
static void test_schedules_equal_torch(void **state) {
    (void)state;
    FILE *f = fopen("tests/train_fixtures/schedules.txt", "r");
    assert_non_null(f);
    char line[512], name[64] = "", kind[32], ms[256];
    cnn_schedule_config s;
    int64_t k = 0;
    int cases = 0, steps = 0, onecycle_steps = 0;
    double worst = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (!strncmp(line, "case ", 5)) {
            if (cases) assert_int_equal(k, s.total_steps);
            memset(&s, 0, sizeof s);
            int per_step, warmup;
            long long epochs, spe, step_size;
            assert_int_equal(sscanf(line, "case %63s %31s %d %lld %lld %lld %lf %255s %d %lf", name, kind, &per_step,
                                    &epochs, &spe, &step_size, &s.gamma, ms, &warmup, &s.base), 10);
            assert_true(parse_kind(kind, &s.kind));
            s.per_step = per_step, s.steps_per_epoch = spe, s.total_steps = epochs * spe, s.step_size = step_size;
            s.warmup = warmup;
            if (strcmp(ms, "-"))
                for (char *t = strtok(ms, ","); t; t = strtok(NULL, ",")) s.milestones[s.n_milestones++] = atoll(t);
            assert_int_equal(cnn_schedule_check(&s), CNN_OK);
            k = 0, cases++;
            continue;
        }
        double lr, m, got_m;
        assert_int_equal(sscanf(line, "%lf %lf", &lr, &m), 2);
        const double got = cnn_schedule_at(&s, k, &got_m);
        const double err = fabs(got - lr) / fabs(lr);
        if (!(err <= 1e-12)) fail_msg("%s step %lld: lr %.17g, torch %.17g", name, (long long)k, got, lr);
        worst = err > worst ? err : worst;
        if (isnan(m)) assert_true(isnan(got_m));
        else {
            if (!(fabs(got_m - m) <= 1e-12 * m)) fail_msg("%s step %lld: momentum %.17g, torch %.17g", name,
                                                          (long long)k, got_m, m);
            onecycle_steps++;
        }
        k++, steps++;
    }
    fclose(f);
    assert_int_equal(k, s.total_steps);
    assert_true(cases >= 12);
    assert_int_equal(onecycle_steps, 5 + 10 + 37);
    print_message("%d schedules, %d steps, worst relative error %.2e\n", cases, steps, worst);
    /* Outside the run, or a schedule that makes none: NaN. */
    assert_true(isnan(cnn_schedule_at(&s, -1, NULL)));
    assert_true(isnan(cnn_schedule_at(&s, s.total_steps, NULL)));
}

static void test_schedule_errors(void **state) {
    (void)state;
    cnn_schedule_config s = {.kind = CNN_SCHEDULE_MULTISTEP, .base = 0.1, .total_steps = 10, .steps_per_epoch = 5,
                             .gamma = 0.1, .n_milestones = 2, .milestones = {3, 3}};
    assert_int_equal(cnn_schedule_check(&s), CNN_ERR_ARG);
    assert_non_null(strstr(cnn_last_error(), "milestone 2"));
    assert_true(isnan(cnn_schedule_at(&s, 0, NULL)));
    s.milestones[1] = 4;
    assert_int_equal(cnn_schedule_check(&s), CNN_OK);
    s.milestones[0] = 0;
    assert_int_equal(cnn_schedule_check(&s), CNN_ERR_ARG);
    s.milestones[0] = 1, s.kind = CNN_SCHEDULE_COSINE;
    assert_int_equal(cnn_schedule_check(&s), CNN_ERR_ARG);   /* milestones without multistep */
    s.n_milestones = 0, s.kind = CNN_SCHEDULE_ONECYCLE, s.warmup = 3;
    assert_int_equal(cnn_schedule_check(&s), CNN_ERR_ARG);   /* onecycle warms up itself */
    s.warmup = -1, s.kind = CNN_SCHEDULE_COSINE;
    assert_int_equal(cnn_schedule_check(&s), CNN_ERR_ARG);
    s.warmup = 0, s.total_steps = 7;
    assert_int_equal(cnn_schedule_check(&s), CNN_ERR_ARG);   /* not a whole number of epochs */
    s.total_steps = 10, s.base = NAN;
    assert_int_equal(cnn_schedule_check(&s), CNN_ERR_ARG);
}

/* ---- label smoothing ------------------------------------------------------------------------ */

static const double LOGITS[12] = {0.3, -1.2, 2.0, 0.1, 1.5, 0.2, -0.4, 0.0, -2.0, 0.7, 0.9, 3.1};
static const int64_t TARGET[3] = {2, 0, 3};

/* REFERENCE.md's formula, written independently: mean_n (1 − ε)(−log p_t) + ε·mean_k(−log p_k). */
static double smooth_by_formula(const double *x, const int64_t *t, int n, int c, double eps) {
    double total = 0;
    for (int s = 0; s < n; s++) {
        double z = 0;
        for (int j = 0; j < c; j++) z += exp(x[s * c + j]);
        double mean_nll = 0;
        for (int j = 0; j < c; j++) mean_nll += -log(exp(x[s * c + j]) / z) / c;
        total += (1 - eps) * -log(exp(x[s * c + t[s]]) / z) + eps * mean_nll;
    }
    return total / n;
}

static void test_label_smoothing(void **state) {
    (void)state;
    const int n = 3, c = 4;
    const double eps = 0.1;
    double dref[12], worst_fd = 0, worst_fast = 0;
    const double ref = loss_cross_entropy_smooth_ref(LOGITS, TARGET, n, c, eps, dref);
    assert_true(fabs(ref - smooth_by_formula(LOGITS, TARGET, n, c, eps)) < 1e-14);
    /* the reference's gradient against central differences of its loss */
    for (int i = 0; i < n * c; i++) {
        double xp[12], xm[12];
        memcpy(xp, LOGITS, sizeof xp), memcpy(xm, LOGITS, sizeof xm);
        xp[i] += 1e-6, xm[i] -= 1e-6;
        const double fd = (loss_cross_entropy_smooth_ref(xp, TARGET, n, c, eps, NULL) -
                           loss_cross_entropy_smooth_ref(xm, TARGET, n, c, eps, NULL)) / 2e-6;
        worst_fd = fmax(worst_fd, fabs(fd - dref[i]));
    }
    assert_true(worst_fd < 1e-8);
    /* the fast path against the reference */
    float x[12], dx[12], loss;
    for (int i = 0; i < 12; i++) x[i] = (float)LOGITS[i];
    double xd[12];
    for (int i = 0; i < 12; i++) xd[i] = x[i];
    const double ref32 = loss_cross_entropy_smooth_ref(xd, TARGET, n, c, eps, dref);
    assert_int_equal(cnn_loss_cross_entropy_smooth(x, TARGET, n, c, eps, &loss, dx), CNN_OK);
    assert_true(fabs(loss - ref32) <= 1e-6 * fabs(ref32));
    for (int i = 0; i < 12; i++) worst_fast = fmax(worst_fast, fabs(dx[i] - dref[i]));
    assert_true(worst_fast < 1e-7);
    print_message("label smoothing: gradient vs central differences %.2e, fast vs reference %.2e\n", worst_fd,
                  worst_fast);
    /* eps 0 is the plain loss, bit for bit; eps outside [0, 1) is an error */
    float l0, l1, d0[12], d1[12];
    assert_int_equal(cnn_loss_cross_entropy(x, TARGET, n, c, &l0, d0), CNN_OK);
    assert_int_equal(cnn_loss_cross_entropy_smooth(x, TARGET, n, c, 0, &l1, d1), CNN_OK);
    assert_true(l0 == l1);
    assert_memory_equal(d0, d1, sizeof d0);
    assert_true(loss > l0);   /* smoothing adds the spread of the wrong classes here */
    assert_int_equal(cnn_loss_cross_entropy_smooth(x, TARGET, n, c, 1.0, &l1, d1), CNN_ERR_ARG);
    assert_int_equal(cnn_loss_cross_entropy_smooth(x, TARGET, n, c, -0.1, &l1, d1), CNN_ERR_ARG);
    assert_int_equal(cnn_loss_cross_entropy_smooth(x, TARGET, n, c, NAN, &l1, d1), CNN_ERR_ARG);
}

/* ---- clip_grad_norm, decay groups, momentum ------------------------------------------------- */

static const char NET[] = "input 1 2 2\nconv2d out_channels=2 kernel_size=1\nbatchnorm2d\nflatten\n"
                          "linear out_features=2\n";

static void set_grads(cnn_net *net, float v) {
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        cnn_param p = cnn_net_param(net, i);
        for (int64_t k = 0; k < p.numel; k++) p.grad[k] = v * (float)(k + 1 + i);
    }
}

static void test_clip_grad_norm(void **state) {
    (void)state;
    cnn_net *net = tu_net(NET, 1, CNN_PATH_FAST);
    set_grads(net, 0.5f);
    double want = 0;
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        cnn_param p = cnn_net_param(net, i);
        for (int64_t k = 0; k < p.numel; k++) want += (double)p.grad[k] * p.grad[k];
    }
    want = sqrt(want);
    double total;
    assert_int_equal(cnn_net_clip_grad_norm(net, 1.0, &total), CNN_OK);
    assert_true(fabs(total - want) <= 1e-6 * want);
    double after = 0;
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        cnn_param p = cnn_net_param(net, i);
        for (int64_t k = 0; k < p.numel; k++) after += (double)p.grad[k] * p.grad[k];
    }
    assert_true(fabs(sqrt(after) - 1.0) < 1e-5);   /* max_norm/(total + 1e-6)·total */
    /* below the limit: nothing changes, bit for bit */
    set_grads(net, 0.001f);
    cnn_param p0 = cnn_net_param(net, 0);
    const float g0 = p0.grad[0];
    assert_int_equal(cnn_net_clip_grad_norm(net, 100.0, &total), CNN_OK);
    assert_true(p0.grad[0] == g0);
    assert_int_equal(cnn_net_clip_grad_norm(net, 0, NULL), CNN_ERR_ARG);
    assert_int_equal(cnn_net_clip_grad_norm(net, INFINITY, NULL), CNN_ERR_ARG);
    assert_int_equal(cnn_net_clip_grad_norm(NULL, 1, NULL), CNN_ERR_ARG);
    cnn_net_free(net);
}

/* With no_decay_bn_bias only the conv and linear weights decay: with a zero gradient and plain
 * SGD, exactly those move. */
static void test_no_decay_bn_bias(void **state) {
    (void)state;
    cnn_net *net = tu_net(NET, 1, CNN_PATH_FAST);
    cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_SGD, 0.1);
    cfg.weight_decay = 0.5, cfg.no_decay_bn_bias = 1;
    cnn_optim *opt = NULL;
    assert_int_equal(cnn_optim_create(net, &cfg, &opt), CNN_OK);
    const int np = cnn_net_param_count(net);
    float before[6];
    for (int i = 0; i < np; i++) {
        cnn_param p = cnn_net_param(net, i);
        p.data[0] = 1.0f;
        before[i] = p.data[0];
    }
    cnn_net_zero_grad(net);
    cnn_optim_step(opt, 0.1);
    int moved = 0;
    for (int i = 0; i < np; i++) {
        cnn_param p = cnn_net_param(net, i);
        const int weight = !strcmp(p.name, "0.weight") || !strcmp(p.name, "3.weight");
        if (weight) assert_true(p.data[0] == 1.0f - 0.1f * (0.5f * 1.0f)), moved++;
        else if (p.data[0] != before[i]) fail_msg("%s decayed", p.name);
    }
    assert_int_equal(moved, 2);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

static void test_set_momentum(void **state) {
    (void)state;
    cnn_net *net = tu_net(NET, 1, CNN_PATH_FAST);
    cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_SGD, 0.1);
    cnn_optim *opt = NULL;
    assert_int_equal(cnn_optim_create(net, &cfg, &opt), CNN_OK);
    assert_int_equal(cnn_optim_set_momentum(opt, 0.9), CNN_ERR_ARG);   /* no buffers */
    assert_int_equal(cnn_optim_set_momentum(opt, 0), CNN_OK);
    cnn_optim_free(opt);
    cfg.momentum = 0.95;
    assert_int_equal(cnn_optim_create(net, &cfg, &opt), CNN_OK);
    assert_int_equal(cnn_optim_set_momentum(opt, 1.0), CNN_ERR_ARG);
    assert_int_equal(cnn_optim_set_momentum(opt, NAN), CNN_ERR_ARG);
    /* two steps at momentum 0.5 from a gradient of 1: buf 1, then 0.5·1 + 1; p − lr·buf each step */
    assert_int_equal(cnn_optim_set_momentum(opt, 0.5), CNN_OK);
    cnn_param p = cnn_net_param(net, 0);
    p.data[0] = 0;
    cnn_net_zero_grad(net);
    p.grad[0] = 1;
    cnn_optim_step(opt, 0.1);
    cnn_optim_step(opt, 0.1);
    assert_true(p.data[0] == -0.1f + -0.1f * 1.5f);
    assert_int_equal(cnn_optim_set_momentum(NULL, 0.5), CNN_ERR_ARG);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules_equal_torch),
        cmocka_unit_test(test_schedule_errors),
        cmocka_unit_test(test_label_smoothing),
        cmocka_unit_test(test_clip_grad_norm),
        cmocka_unit_test(test_no_decay_bn_bias),
        cmocka_unit_test(test_set_momentum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
