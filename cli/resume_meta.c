/* What --resume believes of a checkpoint's __metadata__ (see resume_meta.h): every field it reads,
 * parsed strictly, and the counts checked against each other, since a checkpoint can come from
 * anywhere and be edited by hand. */
#include "resume_meta.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *msg, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return 0;
}

/* A decimal count in [lo, hi]: digits only (no sign, no spaces). */
static int count_ok(const char *v, unsigned long long lo, unsigned long long hi, unsigned long long *out) {
    if (!v || *v < '0' || *v > '9') return 0;
    char *end;
    errno = 0;
    const unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || n < lo || n > hi) return 0;
    *out = n;
    return 1;
}

/* A finite number, no trailing text, within [lo, hi] (hi_open: below hi). */
static int number_ok(const char *v, double lo, double hi, int hi_open, const char **end_out, double *out) {
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    const double d = strtod(v, &end);
    if (end == v || errno == ERANGE || !isfinite(d) || d < lo || d > hi || (hi_open && d >= hi)) return 0;
    if (end_out) *end_out = end;
    else if (*end) return 0;
    *out = d;
    return 1;
}

/* Checks one count field if present (required: it must be). */
static int check_count(const cnn_st *st, const char *key, int required, unsigned long long lo, unsigned long long hi,
                       unsigned long long *out, int *present, char *msg, size_t cap) {
    const char *v = cnn_st_metadata(st, key);
    if (present) *present = v != NULL;
    if (!v) return required ? fail(msg, cap, "__metadata__ has no \"%s\"", key) : 1;
    if (!count_ok(v, lo, hi, out))
        return fail(msg, cap, "__metadata__ \"%s\" is '%.40s', not a whole number from %llu to %llu", key, v, lo, hi);
    return 1;
}

static int check_number(const cnn_st *st, const char *key, int required, double lo, double hi, int hi_open,
                        const char *range, double *out, int *present, char *msg, size_t cap) {
    const char *v = cnn_st_metadata(st, key);
    if (present) *present = v != NULL;
    if (!v) return required ? fail(msg, cap, "__metadata__ has no \"%s\"", key) : 1;
    if (!number_ok(v, lo, hi, hi_open, NULL, out))
        return fail(msg, cap, "__metadata__ \"%s\" is '%.40s', not a finite number %s", key, v, range);
    return 1;
}

static int check_name(const cnn_st *st, const char *key, const char *const *names, const char **out, char *msg,
                      size_t cap) {
    const char *v = cnn_st_metadata(st, key);
    *out = v;
    if (!v) return 1;
    for (int i = 0; names[i]; i++)
        if (!strcmp(v, names[i])) return 1;
    char list[256] = "";
    for (int i = 0, at = 0; names[i] && at < (int)sizeof list; i++)
        at += snprintf(list + at, sizeof list - (size_t)at, "%s%s", i ? ", " : "", names[i]);
    return fail(msg, cap, "__metadata__ \"%s\" is '%.40s', not one of %s", key, v, list);
}

/* Whether a tensor of optimizer state holds anything but zeros (the dtypes a state is saved in). */
static int any_nonzero(const cnn_tensor *t) {
    const int64_t n = cnn_tensor_numel(t);
    for (int64_t j = 0; j < n; j++) {
        double v;
        if (t->dtype == CNN_F32) {
            float f;
            memcpy(&f, (const char *)t->data + 4 * j, 4);
            v = f;
        } else if (t->dtype == CNN_F64) {
            memcpy(&v, (const char *)t->data + 8 * j, 8);
        } else {
            return 0;
        }
        if (v != 0) return 1;
    }
    return 0;
}

int resume_meta_check(const cnn_st *st, char *msg, size_t cap) {
    const char *fmt = cnn_st_metadata(st, "format");
    if (!fmt || strcmp(fmt, "cnn-checkpoint-1"))
        return fail(msg, cap, "not a cnn training checkpoint (no __metadata__ \"format\" cnn-checkpoint-1)");
    unsigned long long epoch, step, estep = 0, correct = 0, samples = 0, batch = 1, epochs = 0, u;
    double d, gamma, loss_sum;
    int has_batch, has_epochs, has_correct, has_samples, has;
    if (!check_count(st, "epoch", 1, 0, RESUME_MAX_EPOCHS, &epoch, NULL, msg, cap) ||
        !check_count(st, "step", 1, 0, (unsigned long long)RESUME_MAX_STEPS, &step, NULL, msg, cap) ||
        !check_count(st, "batch", 0, 1, RESUME_MAX_BATCH, &batch, &has_batch, msg, cap) ||
        !check_count(st, "epochs", 0, 1, RESUME_MAX_EPOCHS, &epochs, &has_epochs, msg, cap) ||
        !check_count(st, "epoch_step", 0, 0, (unsigned long long)RESUME_MAX_STEPS, &estep, NULL, msg, cap) ||
        !check_count(st, "samples", 0, 1, INT64_MAX, &samples, &has_samples, msg, cap) ||
        !check_count(st, "epoch_correct", 0, 0, INT64_MAX, &correct, &has_correct, msg, cap) ||
        !check_count(st, "seed", 0, 0, UINT64_MAX, &u, NULL, msg, cap) ||
        !check_count(st, "shuffle", 0, 0, 1, &u, NULL, msg, cap) ||
        !check_count(st, "nesterov", 0, 0, 1, &u, NULL, msg, cap) ||
        !check_count(st, "step_size", 0, 1, INT32_MAX, &u, NULL, msg, cap) ||
        !check_count(st, "checkpoint_every", 0, 0, UINT64_MAX, &u, NULL, msg, cap) ||
        !check_count(st, "warmup", 0, 0, 1000000000, &u, NULL, msg, cap) ||
        !check_count(st, "no_decay_bn_bias", 0, 0, 1, &u, NULL, msg, cap))
        return 0;
    /* torch's own checks: lr, momentum, weight_decay, eps >= 0 (and finite here); gamma > 0 as
     * cnn train --gamma requires. */
    if (!check_number(st, "lr", 0, 0, HUGE_VAL, 0, ">= 0", &d, NULL, msg, cap) ||
        !check_number(st, "momentum", 0, 0, HUGE_VAL, 0, ">= 0", &d, NULL, msg, cap) ||
        !check_number(st, "weight_decay", 0, 0, HUGE_VAL, 0, ">= 0", &d, NULL, msg, cap) ||
        !check_number(st, "eps", 0, 0, HUGE_VAL, 0, ">= 0", &d, NULL, msg, cap) ||
        !check_number(st, "gamma", 0, 0, HUGE_VAL, 0, "> 0", &gamma, &has, msg, cap) ||
        !check_number(st, "epoch_seconds", 0, 0, HUGE_VAL, 0, ">= 0", &d, NULL, msg, cap) ||
        !check_number(st, "epoch_loss_sum", 0, 0, HUGE_VAL, 0, ">= 0", &loss_sum, NULL, msg, cap) ||
        !check_number(st, "label_smoothing", 0, 0, 1, 1, "in [0, 1)", &d, NULL, msg, cap) ||
        !check_number(st, "clip_grad_norm", 0, 0, HUGE_VAL, 0, ">= 0", &d, NULL, msg, cap))
        return 0;
    if (has && !(gamma > 0)) return fail(msg, cap, "__metadata__ \"gamma\" is '%.40s', not a finite number > 0",
                                     cnn_st_metadata(st, "gamma"));
    const char *betas = cnn_st_metadata(st, "betas");
    if (betas) {
        const char *end;
        double b1, b2;
        if (!number_ok(betas, 0, 1, 1, &end, &b1) || *end != ',' || !number_ok(end + 1, 0, 1, 1, NULL, &b2))
            return fail(msg, cap, "__metadata__ \"betas\" is '%.40s', not two finite numbers in [0, 1) as B1,B2",
                        betas);
    }
    static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
    static const char *const schedules[] = {"constant", "step", "cosine", "multistep", "onecycle", NULL};
    static const char *const pers[] = {"epoch", "step", NULL};
    const char *optimizer, *schedule, *per;
    if (!check_name(st, "optimizer", optimizers, &optimizer, msg, cap) ||
        !check_name(st, "schedule", schedules, &schedule, msg, cap) ||
        !check_name(st, "schedule_per", pers, &per, msg, cap))
        return 0;

    /* The counts against each other. */
    if (has_epochs && epoch > epochs)
        return fail(msg, cap, "__metadata__ \"epoch\" is %llu, more than its \"epochs\" %llu", epoch, epochs);
    if (estep > 0) {
        if (!has_batch) return fail(msg, cap, "__metadata__ has no \"batch\" (\"epoch_step\" is %llu)", estep);
        const char *need = !has_samples ? "samples" : !has_correct ? "epoch_correct"
                           : !cnn_st_metadata(st, "epoch_loss_sum") ? "epoch_loss_sum" : NULL;
        if (need) return fail(msg, cap, "__metadata__ has no \"%s\" (\"epoch_step\" is %llu)", need, estep);
        const unsigned long long per_epoch = samples / batch + (samples % batch != 0);
        if (estep > per_epoch)
            return fail(msg, cap, "__metadata__ \"epoch_step\" is %llu, more than the %llu steps of an epoch of %llu "
                        "samples in batches of %llu", estep, per_epoch, samples, batch);
        const unsigned long long seen = estep == per_epoch ? samples : estep * batch;
        if (correct > seen)
            return fail(msg, cap, "__metadata__ \"epoch_correct\" is %llu, more than the %llu samples seen in the "
                        "epoch's %llu steps", correct, seen, estep);
    }
    if (has_correct && has_samples && correct > samples)
        return fail(msg, cap, "__metadata__ \"epoch_correct\" is %llu, more than its %llu \"samples\"", correct,
                    samples);
    if (step < epoch + estep)
        return fail(msg, cap, "__metadata__ \"step\" is %llu, fewer than the %llu epoch(s) and %llu batch(es) it "
                    "records done (every one takes a step)", step, epoch, estep);
    int state = 0, moments = 0, nonzero = 0;
    for (int i = 0; i < cnn_st_count(st); i++) {
        const char *name = cnn_st_tensor(st, i)->name;
        if (!strncmp(name, "optim.", 6)) {
            state = 1;
            const size_t n = strlen(name);
            if ((n > 8 && !strcmp(name + n - 8, ".exp_avg")) || (n > 11 && !strcmp(name + n - 11, ".exp_avg_sq"))) {
                moments = 1;
                if (!nonzero) nonzero = any_nonzero(cnn_st_tensor(st, i));
            }
        }
    }
    if (state && !optimizer)
        return fail(msg, cap, "__metadata__ has no \"optimizer\", but the file holds %s state (optim.* tensors)",
                    moments ? "Adam's" : "an optimizer's");
    if (moments && optimizer && !strcmp(optimizer, "sgd"))
        return fail(msg, cap, "__metadata__ \"optimizer\" is sgd, but the file holds Adam's moments (exp_avg)");
    /* Before the first step the moments are zeros (cnn_checkpoint_save writes them all the same);
     * --resume would start them from zero again and lose any others. */
    if (nonzero && step == 0)
        return fail(msg, cap, "__metadata__ \"step\" is 0, but the file holds Adam's moments of a step taken (not "
                    "zero)");
    return 1;
}
