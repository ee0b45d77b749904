/* Learning-rate schedules over a whole run, at any step, with torch 1.13's formulas.
 *
 * torch's schedulers (StepLR, MultiStepLR, CosineAnnealingLR, LinearLR) compute the rate in their
 * chainable form: each step multiplies the previous rate by a factor. With eta_min 0 every one of
 * those factors is a ratio of closed forms, so the product telescopes to the closed form; here the
 * closed form is computed at once, which equals torch's recursion to within a few roundings of a
 * double (far inside 1e-12 relative; tests/test_schedule.c compares to torch's own sequences).
 * StepLR and MultiStepLR multiply by gamma once per boundary, as torch does. OneCycleLR is not
 * chainable: it computes each rate from its phases, and that computation is copied operation by
 * operation. Warm-up is torch's LinearLR(start_factor 1/N, end_factor 1, total_iters N − 1)
 * chained with the schedule: the two factors multiply. */
#include "cnn.h"
#include "base/error.h"

#include <math.h>

#define PI 3.14159265358979323846

static const char *kind_name(cnn_schedule k) {
    switch (k) {
    case CNN_SCHEDULE_CONSTANT: return "constant";
    case CNN_SCHEDULE_STEP: return "step";
    case CNN_SCHEDULE_COSINE: return "cosine";
    case CNN_SCHEDULE_MULTISTEP: return "multistep";
    case CNN_SCHEDULE_ONECYCLE: return "onecycle";
    }
    return "unknown";
}

cnn_status cnn_schedule_check(const cnn_schedule_config *s) {
    if (!s) return cnn_fail(CNN_ERR_ARG, "cnn_schedule_check: NULL schedule");
    const char *k = kind_name(s->kind);
    if (s->kind < CNN_SCHEDULE_CONSTANT || s->kind > CNN_SCHEDULE_ONECYCLE)
        return cnn_fail(CNN_ERR_ARG, "schedule: unknown kind %d", (int)s->kind);
    if (!(s->base >= 0) || isinf(s->base))
        return cnn_fail(CNN_ERR_ARG, "schedule %s: learning rate %g must be finite and ≥ 0", k, s->base);
    if (s->total_steps < 1 || s->steps_per_epoch < 1 || s->total_steps % s->steps_per_epoch)
        return cnn_fail(CNN_ERR_ARG, "schedule %s: %lld steps in all must be ≥ 1 and a whole number of epochs of "
                        "%lld steps", k, (long long)s->total_steps, (long long)s->steps_per_epoch);
    if (s->kind == CNN_SCHEDULE_STEP && s->step_size < 1)
        return cnn_fail(CNN_ERR_ARG, "schedule step: step_size %lld must be ≥ 1", (long long)s->step_size);
    if ((s->kind == CNN_SCHEDULE_STEP || s->kind == CNN_SCHEDULE_MULTISTEP) && (!(s->gamma > 0) || isinf(s->gamma)))
        return cnn_fail(CNN_ERR_ARG, "schedule %s: gamma %g must be finite and > 0", k, s->gamma);
    if (s->n_milestones < 0 || s->n_milestones > CNN_MAX_MILESTONES)
        return cnn_fail(CNN_ERR_ARG, "schedule %s: %d milestones (0 to %d)", k, s->n_milestones, CNN_MAX_MILESTONES);
    if (s->n_milestones && s->kind != CNN_SCHEDULE_MULTISTEP)
        return cnn_fail(CNN_ERR_ARG, "schedule %s: milestones belong to multistep", k);
    for (int i = 0; i < s->n_milestones; i++)
        if (s->milestones[i] < 1 || (i && s->milestones[i] <= s->milestones[i - 1]))
            return cnn_fail(CNN_ERR_ARG, "schedule multistep: milestone %d (%lld) must be ≥ 1 and greater than the "
                            "one before", i + 1, (long long)s->milestones[i]);
    if (s->warmup < 0) return cnn_fail(CNN_ERR_ARG, "schedule %s: warm-up %lld is negative", k, (long long)s->warmup);
    if (s->warmup && s->kind == CNN_SCHEDULE_ONECYCLE)
        return cnn_fail(CNN_ERR_ARG, "schedule onecycle: it warms up itself; a warm-up cannot be added to it");
    return CNN_OK;
}

/* torch's _annealing_cos(start, end, pct), operation by operation. */
static double anneal_cos(double start, double end, double pct) {
    const double cos_out = cos(PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR.get_lr at step_num k (three_phase False). */
static double onecycle(double max_lr, int64_t total, int64_t k, double *momentum) {
    const double initial = max_lr / 25.0, min_lr = initial / 1e4;
    const double end1 = (double)(0.3 * (double)total) - 1, end2 = (double)(total - 1);
    const double step = (double)k;
    double start_lr, end_lr, start_m, end_m, start_step, end_step;
    if (step <= end1) {
        start_lr = initial, end_lr = max_lr, start_m = 0.95, end_m = 0.85, start_step = 0, end_step = end1;
    } else {
        start_lr = max_lr, end_lr = min_lr, start_m = 0.85, end_m = 0.95, start_step = end1, end_step = end2;
    }
    const double pct = (step - start_step) / (end_step - start_step);
    if (momentum) *momentum = anneal_cos(start_m, end_m, pct);
    return anneal_cos(start_lr, end_lr, pct);
}

double cnn_schedule_at(const cnn_schedule_config *s, int64_t k, double *momentum) {
    if (momentum) *momentum = NAN;
    if (!s || k < 0 || k >= s->total_steps) return NAN;
    if (cnn_schedule_check(s) != CNN_OK) return NAN;
    if (s->kind == CNN_SCHEDULE_ONECYCLE) return onecycle(s->base, s->total_steps, k, momentum);
    const int64_t t = s->per_step ? k : k / s->steps_per_epoch;
    const int64_t T = s->per_step ? s->total_steps : s->total_steps / s->steps_per_epoch;
    double lr = s->base;
    switch (s->kind) {
    case CNN_SCHEDULE_STEP: {
        const int64_t b = t / s->step_size;
        if (b > 1000) lr = s->base * pow(s->gamma, (double)b);
        else
            for (int64_t i = 0; i < b; i++) lr *= s->gamma;
        break;
    }
    case CNN_SCHEDULE_MULTISTEP:
        for (int i = 0; i < s->n_milestones && s->milestones[i] <= t; i++) lr *= s->gamma;
        break;
    case CNN_SCHEDULE_COSINE:
        lr = s->base * (1 + cos(PI * (double)t / (double)T)) / 2;
        break;
    default:
        break;
    }
    if (s->warmup && k < s->warmup) lr = lr * ((double)(k + 1) / (double)s->warmup);
    return lr;
}
