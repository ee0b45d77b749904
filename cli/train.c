/* cnn train: note 001's whole training algorithm, run for real. For each batch: forward, the
 * output error from the loss, backward layer by layer, the weight gradients, the update. After
 * each epoch: evaluate on the test split, log, plot, and write a checkpoint atomically.
 *
 * Determinism: the order of the samples in epoch e is a shuffle drawn from (seed, e) alone, and
 * every kernel reduces in a fixed order, so the same seed, data and thread count give the same
 * weights bit for bit, and a run resumed from a checkpoint continues exactly.
 *
 * Crash safety: with --checkpoint-every N a checkpoint is also written every N steps within an
 * epoch; its metadata holds the position (epochs done, and batches done of the next one, with
 * that epoch's running loss and accuracy), so that --resume redraws the epoch's order from
 * (seed, epoch) and skips the batches already done. Checkpoints are written atomically (a
 * temporary file, fsync, rename), so a crash or kill at any moment leaves the last complete one.
 * SIGINT and SIGTERM stop training after the current step, write a checkpoint and say how to
 * resume; a second signal kills at once (which the atomic writes make safe too).
 */
#include "checkpoint.h"
#include "cli.h"
#include "plot.h"
#include "base/error.h"
#include "base/rng.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char train_usage[] =
    "usage: cnn train --model NET.cnn --data SOURCE [--weights INIT.safetensors | --init SEED]\n"
    "                 [--epochs E] [--batch B] [--optimizer sgd|adam|adamw] [--lr LR]\n"
    "                 [--momentum M] [--nesterov] [--weight-decay WD]\n"
    "                 [--schedule constant|step|cosine] [--step-size S] [--gamma G]\n"
    "                 [--seed S] [--no-shuffle] [--threads T] [--out CKPT.safetensors]\n"
    "                 [--resume CKPT.safetensors] [--log run.jsonl] [--plot curves.svg|png]\n"
    "                 [--checkpoint-every N] [--data-dir DIR]\n"
    "\n"
    "SOURCE is mnist or fashion-mnist (under data/; 'make data' fetches them), a directory of\n"
    "IDX files (raw or .gz), a CIFAR-10 binary directory, or a .safetensors file with input\n"
    "[N,C,H,W] float32 and target [N] int64 (and optional test_input, test_target).\n"
    "Defaults: --epochs 1 --batch 64 --optimizer sgd --lr 0.01 (adam, adamw: 0.001)\n"
    "--momentum 0 --weight-decay 0 (adamw: 0.01) --schedule constant --step-size 1 --gamma 0.1\n"
    "--seed 0; the initial weights are PyTorch's default initialisation drawn from --init,\n"
    "or from --seed. --epochs counts the total, so --resume of a checkpoint saved after\n"
    "epoch 1 with --epochs 2 runs one more epoch. A checkpoint is written after every epoch,\n"
    "and with --checkpoint-every N also every N steps within one; --resume continues exactly\n"
    "where any checkpoint was written, mid-epoch included. Ctrl-C (SIGINT) or SIGTERM stops\n"
    "after the current step, writes a checkpoint to --out and prints how to resume.\n";
static const char train_example[] =
    "example:\n"
    "  cnn train --model models/lenet5.cnn --data mnist --epochs 3 --optimizer adam --lr 0.001 \\\n"
    "            --out lenet5.safetensors --plot lenet5.png\n";

/* Every setting of a run; `given` marks those set on the command line, so that --resume takes
 * the rest from the checkpoint. */
typedef struct train_cfg {
    const char *model, *data, *data_dir, *weights, *out, *resume, *log, *plot;
    unsigned long long init_seed, seed, epochs, batch, threads, step_size, checkpoint_every;
    int have_init, shuffle;
    cnn_optim_config opt;
    cnn_schedule schedule;
    double gamma;
    struct { int epochs, batch, optimizer, lr, momentum, nesterov, wd, schedule, step_size, gamma, seed, shuffle,
             checkpoint_every; } given;
} train_cfg;

/* Where training stands: `epoch` epochs done and `batch` batches of the next one, whose summed
 * loss and count of correct predictions so far are loss_sum and correct; `step` steps in all. */
typedef struct train_pos {
    unsigned long long epoch, step;
    int64_t batch, correct, samples;
    double loss_sum;
} train_pos;

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return *s && !*end && !errno && isfinite(*out);
}

static const char *optim_name(cnn_optim_kind k) {
    return k == CNN_OPTIM_ADAM ? "adam" : k == CNN_OPTIM_ADAMW ? "adamw" : "sgd";
}
static const char *schedule_name(cnn_schedule s) {
    return s == CNN_SCHEDULE_STEP ? "step" : s == CNN_SCHEDULE_COSINE ? "cosine" : "constant";
}

static int parse_optim(const char *v, cnn_optim_kind *k) {
    if (!strcmp(v, "sgd")) *k = CNN_OPTIM_SGD;
    else if (!strcmp(v, "adam")) *k = CNN_OPTIM_ADAM;
    else if (!strcmp(v, "adamw")) *k = CNN_OPTIM_ADAMW;
    else return 0;
    return 1;
}

static int parse_schedule(const char *v, cnn_schedule *s) {
    if (!strcmp(v, "constant")) *s = CNN_SCHEDULE_CONSTANT;
    else if (!strcmp(v, "step")) *s = CNN_SCHEDULE_STEP;
    else if (!strcmp(v, "cosine")) *s = CNN_SCHEDULE_COSINE;
    else return 0;
    return 1;
}

/* Returns -1 to go on, or an exit status (0 after --help). */
static int parse_args(int argc, char **argv, train_cfg *c) {
    memset(c, 0, sizeof *c);
    c->epochs = 1, c->batch = 64, c->step_size = 1, c->gamma = 0.1, c->shuffle = 1;
    const char *init = NULL, *seed = NULL, *epochs = NULL, *batch = NULL, *every = NULL, *threads = NULL,
               *step_size = NULL, *gamma = NULL, *optimizer = NULL, *schedule = NULL, *lr_s = NULL,
               *momentum_s = NULL, *wd_s = NULL;
    int nesterov = 0, no_shuffle = 0;
    const cli_opt opts[] = {
        CLI_VALUE("model", "NET.cnn", &c->model, "the model (see README, 'The model format')"),
        CLI_VALUE("data", "SOURCE", &c->data, "mnist, fashion-mnist, an IDX or CIFAR-10 directory, a .safetensors"),
        CLI_VALUE("data-dir", "DIR", &c->data_dir, "where mnist and fashion-mnist are (default data/)"),
        CLI_VALUE("weights", "INIT.safetensors", &c->weights, "initial weights"),
        CLI_VALUE("init", "SEED", &init, "PyTorch's default initialisation from SEED (default: --seed)"),
        CLI_VALUE("epochs", "E", &epochs, "epochs in all, resumed ones included (default 1)"),
        CLI_VALUE("batch", "B", &batch, "samples per step, 1 to 65536 (default 64)"),
        CLI_VALUE("optimizer", "NAME", &optimizer, "sgd (default), adam or adamw"),
        CLI_VALUE("lr", "LR", &lr_s, "learning rate (default 0.01; adam, adamw: 0.001)"),
        CLI_VALUE("momentum", "M", &momentum_s, "SGD's momentum (default 0)"),
        CLI_FLAG("nesterov", &nesterov, "Nesterov momentum"),
        CLI_VALUE("weight-decay", "WD", &wd_s, "weight decay (default 0; adamw: 0.01)"),
        CLI_VALUE("schedule", "NAME", &schedule, "constant (default), step or cosine, per epoch"),
        CLI_VALUE("step-size", "S", &step_size, "step schedule: epochs between decays (default 1)"),
        CLI_VALUE("gamma", "G", &gamma, "step schedule: the decay factor (default 0.1)"),
        CLI_VALUE("seed", "S", &seed, "the seed of the shuffles and dropout (default 0)"),
        CLI_FLAG("no-shuffle", &no_shuffle, "keep the data's order"),
        CLI_VALUE("threads", "T", &threads, "threads, 1 to 1024 (default: $CNN_NUM_THREADS, else 1)"),
        CLI_VALUE("out", "CKPT.safetensors", &c->out, "the checkpoint, written after every epoch"),
        CLI_VALUE("resume", "CKPT.safetensors", &c->resume, "continue from a checkpoint"),
        CLI_VALUE("log", "run.jsonl", &c->log, "one JSON object per epoch"),
        CLI_VALUE("plot", "curves.svg|png", &c->plot, "loss and accuracy per epoch"),
        CLI_VALUE("checkpoint-every", "N", &every, "also write the checkpoint every N steps"),
        CLI_END,
    };
    const cli_cmd cmd = {"train", train_usage, opts, train_example, NULL};
    const int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;

    static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
    static const cnn_optim_kind kinds[] = {CNN_OPTIM_SGD, CNN_OPTIM_ADAM, CNN_OPTIM_ADAMW};
    static const char *const schedules[] = {"constant", "step", "cosine", NULL};
    static const cnn_schedule scheds[] = {CNN_SCHEDULE_CONSTANT, CNN_SCHEDULE_STEP, CNN_SCHEDULE_COSINE};
    int ki = 0, si = 0;
    double lr = NAN, momentum = 0, wd = NAN;
    if ((init && !cli_u64("train", "--init", init, 0, ~0ULL, &c->init_seed)) ||
        (seed && !cli_u64("train", "--seed", seed, 0, ~0ULL, &c->seed)) ||
        (epochs && !cli_u64("train", "--epochs", epochs, 1, 100000, &c->epochs)) ||
        (batch && !cli_u64("train", "--batch", batch, 1, 65536, &c->batch)) ||
        (every && !cli_u64("train", "--checkpoint-every", every, 0, ~0ULL, &c->checkpoint_every)) ||
        (threads && !cli_u64("train", "--threads", threads, 1, 1024, &c->threads)) ||
        (step_size && !cli_u64("train", "--step-size", step_size, 1, INT_MAX, &c->step_size)) ||
        (gamma && !cli_real("train", "--gamma", gamma, 0, 1, &c->gamma)) ||
        (optimizer && !cli_choice("train", "--optimizer", optimizer, optimizers, &ki)) ||
        (schedule && !cli_choice("train", "--schedule", schedule, schedules, &si)) ||
        (lr_s && !cli_real("train", "--lr", lr_s, 0, 0, &lr)) ||
        (momentum_s && !cli_real("train", "--momentum", momentum_s, 0, 0, &momentum)) ||
        (wd_s && !cli_real("train", "--weight-decay", wd_s, 0, 0, &wd)))
        return EXIT_BAD_INPUT;
    const cnn_optim_kind kind = kinds[ki];
    c->schedule = scheds[si];
    c->have_init = init != NULL;
    if (no_shuffle) c->shuffle = 0;
    c->given.epochs = epochs != NULL, c->given.batch = batch != NULL, c->given.optimizer = optimizer != NULL;
    c->given.lr = lr_s != NULL, c->given.momentum = momentum_s != NULL, c->given.nesterov = nesterov;
    c->given.wd = wd_s != NULL, c->given.schedule = schedule != NULL, c->given.step_size = step_size != NULL;
    c->given.gamma = gamma != NULL, c->given.seed = seed != NULL, c->given.shuffle = no_shuffle;
    c->given.checkpoint_every = every != NULL;

    if (!c->model || !c->data) return cli_usage_error("train", "--model and --data are required");
    if (c->weights && c->have_init) return cli_usage_error("train", "give --weights or --init, not both");
    if (c->checkpoint_every && !c->out)
        return cli_usage_error("train", "--checkpoint-every needs --out, the checkpoint to write");
    if (c->resume && (c->weights || c->have_init))
        return cli_usage_error("train", "--resume restores the weights; do not give --weights or --init with it");
    c->opt = cnn_optim_defaults(kind, isnan(lr) ? (kind == CNN_OPTIM_SGD ? 0.01 : 0.001) : lr);
    c->opt.momentum = momentum;
    c->opt.nesterov = nesterov;
    if (!isnan(wd)) c->opt.weight_decay = wd;
    if (!c->have_init) c->init_seed = c->seed;
    return -1;
}

/* ---- the data ------------------------------------------------------------------------------ */

/* Copies the samples idx[0..n-1] of d into x and y. */
static void gather(const cnn_dataset *d, const int64_t *idx, int n, float *x, int64_t *y) {
    const size_t chw = (size_t)d->c * d->h * d->w;
    for (int i = 0; i < n; i++) {
        const int64_t s = idx ? idx[i] : i;
        memcpy(x + (size_t)i * chw, d->x + (size_t)s * chw, chw * sizeof *x);
        y[i] = d->y[s];
    }
}

/* The order of epoch e: the identity, or a Fisher-Yates shuffle drawn from (seed, e). */
static void epoch_order(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch, int shuffle) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (!shuffle) return;
    uint64_t state = seed ^ (0xD1B54A32D192ED03ull * (epoch + 1));
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)(rng_next(&state) % (uint64_t)(i + 1));
        const int64_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int evaluate(cnn_net *net, const cnn_dataset *d, int batch, int classes, int64_t *ybuf, double *loss, double *acc,
             int64_t *confusion) {
    cnn_net_set_training(net, 0);   /* batch norm's running statistics, no dropout */
    double total = 0.0;
    int64_t correct = 0;
    for (int64_t at = 0; at < d->n; at += batch) {
        const int n = (int)(d->n - at < batch ? d->n - at : batch);
        const size_t chw = (size_t)d->c * d->h * d->w;
        const float *x = d->x + (size_t)at * chw;
        for (int i = 0; i < n; i++) ybuf[i] = d->y[at + i];
        if (cnn_net_forward(net, x, n) != CNN_OK) return 0;
        const float *y = cnn_net_output(net);
        float l;
        if (cnn_loss_cross_entropy(y, ybuf, n, classes, &l, NULL) != CNN_OK) return 0;
        total += (double)l * n;
        for (int i = 0; i < n; i++) {
            const int p = argmax(y + (size_t)i * classes, classes);
            correct += p == ybuf[i];
            if (confusion) confusion[ybuf[i] * classes + p]++;
        }
    }
    *loss = d->n ? total / (double)d->n : NAN;
    *acc = d->n ? (double)correct / (double)d->n : NAN;
    return 1;
}

/* ---- the non-finite guard ------------------------------------------------------------------ */

static int64_t first_nonfinite(const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return i;
    return -1;
}

/* Names the first layer whose output, or else the first parameter whose gradient (in backward
 * order, the order they were computed), holds a NaN or Inf. */
static void describe_nonfinite(const cnn_net *net, int n, char *buf, size_t len) {
    for (int i = 0; i < cnn_net_layer_count(net); i++) {
        int out[3];
        cnn_net_layer_shapes(net, i, NULL, out);
        const float *y = cnn_net_layer_output(net, i);
        const int64_t k = first_nonfinite(y, (int64_t)n * out[0] * out[1] * out[2]);
        if (k >= 0) {
            snprintf(buf, len, "layer %d (%s, line %d): its output holds %s at element %lld", i,
                     cnn_layer_kind_name(cnn_net_layer_kind(net, i)), cnn_net_layer_line(net, i),
                     isnan(y[k]) ? "NaN" : "Inf", (long long)k);
            return;
        }
    }
    for (int i = cnn_net_param_count(net) - 1; i >= 0; i--) {
        const cnn_param p = cnn_net_param(net, i);
        const int64_t k = first_nonfinite(p.grad, p.numel);
        if (k >= 0) {
            snprintf(buf, len, "layer %d (%s, line %d): the gradient of '%s' holds %s at element %lld", p.layer,
                     cnn_layer_kind_name(cnn_net_layer_kind(net, p.layer)), cnn_net_layer_line(net, p.layer), p.name,
                     isnan(p.grad[k]) ? "NaN" : "Inf", (long long)k);
            return;
        }
    }
    snprintf(buf, len, "the loss (every layer's output is finite)");
}

static int grads_finite(const cnn_net *net) {
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        const cnn_param p = cnn_net_param(net, i);
        if (first_nonfinite(p.grad, p.numel) >= 0) return 0;
    }
    return 1;
}

/* ---- progress ------------------------------------------------------------------------------ */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void progress_bar(int epoch, int epochs, int64_t done, int64_t total, double secs, double loss, double acc) {
    const int width = 24, filled = total ? (int)(width * done / total) : width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    const double ips = secs > 0 ? (double)done / secs : 0.0;
    const double eta = ips > 0 ? (double)(total - done) / ips : 0.0;
    fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %lld/%lld  %.0f img/s  ETA %d:%02d  loss %.4f  acc %.2f%%", epoch,
            epochs, bar, (long long)done, (long long)total, ips, (int)eta / 60, (int)eta % 60, loss, 100 * acc);
    fflush(stderr);
}

/* ---- resume -------------------------------------------------------------------------------- */

static int meta_u64(const cnn_st *st, const char *key, unsigned long long *out) {
    const char *v = cnn_st_metadata(st, key);
    return v && cli_parse_u64(v, out);
}

static int meta_double(const cnn_st *st, const char *key, double *out) {
    const char *v = cnn_st_metadata(st, key);
    return v && parse_double(v, out);
}

/* Reads the position and the settings not given on the command line from a checkpoint. */
static int restore_settings(const cnn_st *st, const char *path, train_cfg *c, train_pos *pos) {
    const char *fmt = cnn_st_metadata(st, "format");
    if (!fmt || strcmp(fmt, "cnn-checkpoint-1")) {
        cli_error("train", "%s: not a cnn training checkpoint (no __metadata__ format=cnn-checkpoint-1)", path);
        return 0;
    }
    unsigned long long u;
    double d;
    int ok = meta_u64(st, "epoch", &pos->epoch) && meta_u64(st, "step", &pos->step);
    /* Mid-epoch checkpoints (older ones lack these keys: they were all written at an epoch's end). */
    if (meta_u64(st, "epoch_step", &u) && u > 0) {
        unsigned long long correct, samples, batch;
        ok = ok && meta_double(st, "epoch_loss_sum", &pos->loss_sum) && meta_u64(st, "epoch_correct", &correct) &&
             meta_u64(st, "samples", &samples) && meta_u64(st, "batch", &batch) && u <= INT64_MAX / batch;
        if (ok && c->given.batch && c->batch != batch) {
            cli_error("train", "%s was written in the middle of an epoch of batches of %llu; resume it with the same "
                               "--batch (or none)", path, batch);
            return 0;
        }
        pos->batch = (int64_t)u, pos->correct = (int64_t)correct, pos->samples = (int64_t)samples;
    }
    const char *v;
    if (!c->given.optimizer && (v = cnn_st_metadata(st, "optimizer"))) {
        cnn_optim_kind k = CNN_OPTIM_SGD;
        ok = ok && parse_optim(v, &k);
        const cnn_optim_config def = cnn_optim_defaults(k, c->opt.lr);
        c->opt.kind = k, c->opt.beta1 = def.beta1, c->opt.beta2 = def.beta2, c->opt.eps = def.eps;
    }
    if (!c->given.lr && meta_double(st, "lr", &d)) c->opt.lr = d;
    if (!c->given.momentum && meta_double(st, "momentum", &d)) c->opt.momentum = d;
    if (!c->given.nesterov && meta_u64(st, "nesterov", &u)) c->opt.nesterov = (int)u;
    if (!c->given.wd && meta_double(st, "weight_decay", &d)) c->opt.weight_decay = d;
    if (!c->given.batch && meta_u64(st, "batch", &u)) c->batch = u;
    if (!c->given.seed && meta_u64(st, "seed", &u)) c->seed = u;
    if (!c->given.shuffle && meta_u64(st, "shuffle", &u)) c->shuffle = (int)u;
    if (!c->given.schedule && (v = cnn_st_metadata(st, "schedule"))) ok = ok && parse_schedule(v, &c->schedule);
    if (!c->given.step_size && meta_u64(st, "step_size", &u)) c->step_size = u;
    if (!c->given.gamma && meta_double(st, "gamma", &d)) c->gamma = d;
    if (!c->given.epochs && meta_u64(st, "epochs", &u)) c->epochs = u;
    if (!c->given.checkpoint_every && meta_u64(st, "checkpoint_every", &u)) c->checkpoint_every = u;
    if (!ok) {
        cli_error("train", "%s: the checkpoint's __metadata__ is incomplete or malformed", path);
        return 0;
    }
    /* A checkpoint comes from anywhere: what it restores must be what the options accept (a batch
     * of 0 would divide by zero below, 2^62 epochs overflow the curves' allocation). */
    const char *bad = c->batch < 1 || c->batch > 65536 ? "batch"
                      : c->epochs < 1 || c->epochs > 100000 ? "epochs"
                      : c->step_size < 1 || c->step_size > INT_MAX ? "step_size"
                      : !(c->gamma > 0) ? "gamma"
                      : NULL;
    if (bad)
        cli_error("train", "%s: the checkpoint's __metadata__ has an out-of-range %s (see cnn train --help)", path, bad);
    return !bad;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *text = malloc((1 << 20) + 1);
    const size_t n = text ? fread(text, 1, 1 << 20, f) : 0;
    fclose(f);
    if (text) text[n] = '\0';
    return text;
}

/* ---- checkpoints and signals --------------------------------------------------------------- */

/* Writes c->out atomically: the weights, the optimizer's state, and in __metadata__ the model, the
 * settings, the position `pos` and the last test accuracy. Returns 0 with *st set on failure. */
static int write_checkpoint(const train_cfg *c, const char *model_text, const cnn_data *data, const cnn_net *net,
                            const cnn_optim *opt, const train_pos *pos, double test_acc, cnn_status *st) {
    meta_list m;
    meta_init(&m);
    meta_add_ref(&m, "model", model_text);
    meta_add(&m, "data", "%s", data->name);
    meta_add(&m, "source", "%s", c->data);
    meta_add(&m, "epoch", "%llu", pos->epoch);
    meta_add(&m, "epoch_step", "%lld", (long long)pos->batch);
    meta_add(&m, "epoch_loss_sum", "%.17g", pos->loss_sum);
    meta_add(&m, "epoch_correct", "%lld", (long long)pos->correct);
    meta_add(&m, "samples", "%lld", (long long)data->train.n);
    meta_add(&m, "epochs", "%llu", c->epochs);
    meta_add(&m, "checkpoint_every", "%llu", c->checkpoint_every);
    meta_add(&m, "seed", "%llu", c->seed);
    meta_add(&m, "rng", "splitmix64 seed %llu, shuffle of epoch e drawn from (seed, e)", c->seed);
    meta_add(&m, "shuffle", "%d", c->shuffle);
    meta_add(&m, "batch", "%llu", c->batch);
    meta_add(&m, "optimizer", "%s", optim_name(c->opt.kind));
    meta_add(&m, "lr", "%.17g", c->opt.lr);
    meta_add(&m, "momentum", "%.17g", c->opt.momentum);
    meta_add(&m, "nesterov", "%d", c->opt.nesterov);
    meta_add(&m, "weight_decay", "%.17g", c->opt.weight_decay);
    meta_add(&m, "betas", "%.17g,%.17g", c->opt.beta1, c->opt.beta2);
    meta_add(&m, "eps", "%.17g", c->opt.eps);
    meta_add(&m, "schedule", "%s", schedule_name(c->schedule));
    meta_add(&m, "step_size", "%llu", c->step_size);
    meta_add(&m, "gamma", "%.17g", c->gamma);
    meta_add(&m, "test_acc", "%.6f", test_acc);
    meta_add(&m, "mean", "%.9g,%.9g,%.9g", data->mean[0], data->mean[1], data->mean[2]);
    meta_add(&m, "std", "%.9g,%.9g,%.9g", data->std[0], data->std[1], data->std[2]);
    return checkpoint_save(c->out, net, opt, m.kv, m.n, st);
}

/* The signal that asked training to stop (SIGINT or SIGTERM), or 0. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    stop_signal = sig;
    signal(sig, SIG_DFL); /* a second one ends the process at once */
}

static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* After a stop signal: writes the checkpoint of position `pos` (when there is --out) and says how
 * to resume. Returns the exit status, 128 + the signal's number, or 1 if the write failed. */
static int stop_training(const train_cfg *c, const char *model_text, const cnn_data *data, const cnn_net *net,
                         const cnn_optim *opt, const train_pos *pos, int64_t steps_per_epoch, double test_acc) {
    const char *what = stop_signal == SIGTERM ? "terminated (SIGTERM)" : "interrupted (SIGINT)";
    if (isatty(fileno(stderr))) fputc('\n', stderr); /* end the progress bar's line */
    if (!c->out) {
        cli_error("train", "%s at step %llu; no checkpoint written: give --out to be able to resume", what, pos->step);
        return 128 + stop_signal;
    }
    cnn_status st;
    if (!write_checkpoint(c, model_text, data, net, opt, pos, test_acc, &st)) {
        cli_error("train", "%s at step %llu, and the checkpoint could not be written: %s", what, pos->step,
                  cnn_last_error());
        return 1;
    }
    cli_error("train", "%s at step %llu (epoch %llu, batch %lld of %lld); checkpoint written to %s", what, pos->step,
              pos->epoch + 1, (long long)pos->batch, (long long)steps_per_epoch, c->out);
    fprintf(stderr, "resume with: cnn train --model %s --data %s%s%s --resume %s --out %s\n", c->model, c->data,
            c->data_dir ? " --data-dir " : "", c->data_dir ? c->data_dir : "", c->out, c->out);
    return 128 + stop_signal;
}

/* ---- the command --------------------------------------------------------------------------- */

int cmd_train(int argc, char **argv) {
    train_cfg c;
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0) return rc;
    rc = EXIT_BAD_INPUT;

    cnn_net *net = NULL;
    cnn_st *wst = NULL;
    cnn_optim *opt = NULL;
    cnn_data data;
    memset(&data, 0, sizeof data);
    float *xb = NULL, *dy = NULL;
    int64_t *yb = NULL, *perm = NULL;
    double *curves = NULL;
    char *model_text = NULL;
    FILE *log = NULL;
    cnn_status st;
    unsigned long long start_epoch = 0, step = 0;
    train_pos resume_at = {0};   /* where a checkpoint given to --resume stopped */
    double test_acc = NAN;       /* after the last epoch evaluated */

    if ((st = cnn_net_load(c.model, &net))) goto fail;
    model_text = read_text(c.model);
    if (!model_text) {
        cli_error("train", "%s: cannot read", c.model);
        goto done;
    }
    int in[3], out[3];
    cnn_net_input_shape(net, in);
    cnn_net_output_shape(net, out);
    if (!cnn_net_output_is_flat(net)) {
        cli_error("train", "%s: the output is %dx%dx%d; training with cross-entropy needs a flat output of "
                           "class scores (end the model with flatten or linear)", c.model, out[0], out[1], out[2]);
        goto done;
    }
    const int classes = out[0];

    if (c.resume) {
        if ((st = cnn_st_load(c.resume, &wst))) goto fail;
        const char *saved = cnn_st_metadata(wst, "model");
        if (saved && strcmp(saved, model_text)) {
            cli_error("train", "%s: this checkpoint was trained for a different model than %s", c.resume, c.model);
            goto done;
        }
        if (!restore_settings(wst, c.resume, &c, &resume_at)) goto done;
        start_epoch = resume_at.epoch, step = resume_at.step;
        if ((st = cnn_net_load_weights(net, wst, 0))) {
            cnn_error_prefix(c.resume);
            goto fail;
        }
    } else if (c.weights) {
        if ((st = cnn_st_load(c.weights, &wst))) goto fail;
        const char *saved = cnn_st_metadata(wst, "model");
        if (saved && strcmp(saved, model_text)) {
            cli_error("train", "%s: these weights were trained for a different model than %s", c.weights, c.model);
            goto done;
        }
        if ((st = cnn_net_load_weights(net, wst, 0))) {
            cnn_error_prefix(c.weights);
            goto fail;
        }
    } else if ((st = cnn_net_init(net, c.init_seed))) {
        goto fail;
    }

    if ((st = cnn_data_open(c.data, c.data_dir, &data))) goto fail;
    if (data.train.c != in[0] || data.train.h != in[1] || data.train.w != in[2]) {
        cli_error("train", "%s: samples are %dx%dx%d, but %s takes %dx%dx%d", c.data, data.train.c, data.train.h,
                  data.train.w, c.model, in[0], in[1], in[2]);
        goto done;
    }
    if (data.num_classes > classes) {
        cli_error("train", "%s: label %d is out of range for the model's %d outputs", c.data, data.num_classes - 1,
                  classes);
        goto done;
    }
    if (data.train.n < 1) {
        cli_error("train", "%s: the training split is empty", c.data);
        goto done;
    }
    if ((st = cnn_optim_create(net, &c.opt, &opt))) goto fail;
    if (c.resume && (st = cnn_optim_load_state(opt, wst, (int64_t)step))) {
        cnn_error_prefix(c.resume);
        goto fail;
    }
    cnn_st_free(wst);
    wst = NULL;
    if (start_epoch >= c.epochs) {
        cli_error("train", "%s already holds %llu epoch(s); ask for more with --epochs", c.resume, start_epoch);
        goto done;
    }

    const int batch = (int)c.batch;
    const size_t chw = (size_t)in[0] * in[1] * in[2];
    if ((st = cnn_net_reserve(net, batch))) goto fail;
    cnn_net_set_input_grad(net, 0);   /* training needs only the parameter gradients */
    if (c.threads && (st = cnn_set_threads((int)c.threads))) goto fail;
    xb = malloc((size_t)batch * chw * sizeof *xb);
    yb = malloc((size_t)batch * sizeof *yb);
    dy = malloc((size_t)batch * classes * sizeof *dy);
    perm = malloc((size_t)data.train.n * sizeof *perm);
    curves = calloc(4 * c.epochs, sizeof *curves);
    if (!xb || !yb || !dy || !perm || !curves) {
        cli_error("train", "out of memory");
        rc = 1;
        goto done;
    }
    if (c.log && !(log = fopen(c.log, c.resume ? "a" : "w"))) {
        cli_error("train", "%s: cannot open the log: %s", c.log, strerror(errno));
        goto done;
    }
    const int tty = isatty(fileno(stderr));
    const int64_t steps_per_epoch = (data.train.n + batch - 1) / batch;
    if (resume_at.batch > 0 && (resume_at.samples != data.train.n || resume_at.batch > steps_per_epoch)) {
        cli_error("train", "%s was written in the middle of an epoch of %lld samples; %s holds %lld: resume it on the "
                           "same data", c.resume, (long long)resume_at.samples, c.data, (long long)data.train.n);
        goto done;
    }
    /* The handlers go in before the line that says training has begun: a signal sent on seeing
     * it must find them in place, not end the process by the default action. */
    catch_stop_signals();
    fprintf(stderr, "training %s on %s (%lld train, %lld test), %s lr %g, batch %d, epochs %llu..%llu\n", c.model,
            data.name, (long long)data.train.n, (long long)data.test.n, optim_name(c.opt.kind), c.opt.lr, batch,
            start_epoch + 1, c.epochs);
    if (resume_at.batch > 0)
        fprintf(stderr, "resuming epoch %llu after batch %lld of %lld\n", start_epoch + 1, (long long)resume_at.batch,
                (long long)steps_per_epoch);

    for (unsigned long long e = start_epoch; e < c.epochs; e++) {
        const double lr = cnn_schedule_lr(c.schedule, c.opt.lr, (int)e, (int)c.epochs, (int)c.step_size, c.gamma);
        epoch_order(perm, data.train.n, c.seed, e, c.shuffle);
        const double t0 = now();
        /* A resumed epoch skips the batches its checkpoint had done, and goes on from their totals. */
        const train_pos *from = e == start_epoch ? &resume_at : NULL;
        const int64_t b0 = from ? from->batch : 0;
        double last_draw = 0, loss_sum = from ? from->loss_sum : 0;
        int64_t correct = from ? from->correct : 0;
        int64_t seen = b0 * batch < data.train.n ? b0 * batch : data.train.n;
        const int64_t seen0 = seen;
        for (int64_t b = b0; b < steps_per_epoch; b++) {
            const int64_t at = b * batch;
            const int n = (int)(data.train.n - at < batch ? data.train.n - at : batch);
            gather(&data.train, perm + at, n, xb, yb);
            cnn_net_zero_grad(net);
            /* Dropout's masks are drawn from (seed, step), so that a resumed run draws the same. */
            cnn_net_set_training(net, 1);
            cnn_net_set_seed(net, c.seed ^ (0x9E3779B97F4A7C15ull * (step + 1)));
            float loss;
            cnn_net_forward(net, xb, n);
            const float *y = cnn_net_output(net);
            cnn_loss_cross_entropy(y, yb, n, classes, &loss, dy);
            for (int i = 0; i < n; i++) correct += argmax(y + (size_t)i * classes, classes) == yb[i];
            cnn_net_backward(net, dy);
            if (!isfinite(loss) || !grads_finite(net)) {
                char what[256];
                describe_nonfinite(net, n, what, sizeof what);
                if (tty) fputc('\n', stderr);
                cli_error("train", "step %llu (epoch %llu): the loss is %g; first non-finite: %s. Stopped; the "
                                   "last good checkpoint%s%s is kept. Try a lower --lr.",
                          step + 1, e + 1, (double)loss, what, c.out ? " " : "", c.out ? c.out : "");
                rc = 1;
                goto done;
            }
            cnn_optim_step(opt, lr);
            step++;
            loss_sum += (double)loss * n;
            seen += n;
            if (tty && (now() - last_draw > 0.1 || b == steps_per_epoch - 1)) {
                last_draw = now();
                progress_bar((int)e + 1, (int)c.epochs, seen, data.train.n, last_draw - t0, loss_sum / seen,
                             (double)correct / seen);
            }
            const train_pos pos = {.epoch = e, .step = step, .batch = b + 1, .correct = correct, .loss_sum = loss_sum};
            if (stop_signal) {
                rc = stop_training(&c, model_text, &data, net, opt, &pos, steps_per_epoch, test_acc);
                goto done;
            }
            if (c.out && c.checkpoint_every && step % c.checkpoint_every == 0 && b + 1 < steps_per_epoch &&
                !write_checkpoint(&c, model_text, &data, net, opt, &pos, test_acc, &st))
                goto fail;
        }
        const double secs = now() - t0;
        const double train_loss = loss_sum / seen, train_acc = (double)correct / seen;
        double test_loss = NAN;
        test_acc = NAN;
        if (data.test.n && !evaluate(net, &data.test, batch, classes, yb, &test_loss, &test_acc, NULL)) {
            cli_error("train", "evaluation failed: %s", cnn_last_error());
            rc = 1;
            goto done;
        }
        if (tty) fputc('\n', stderr);
        fprintf(stderr, "epoch %llu/%llu  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  %.1fs %.0f img/s\n",
                e + 1, c.epochs, train_loss, 100 * train_acc, test_loss, 100 * test_acc, secs,
                (double)(seen - seen0) / secs);
        double *tl = curves, *vl = curves + c.epochs, *ta = curves + 2 * c.epochs, *va = curves + 3 * c.epochs;
        tl[e] = train_loss, vl[e] = test_loss, ta[e] = train_acc, va[e] = test_acc;
        if (log) {
            fprintf(log, "{\"epoch\": %llu, \"step\": %llu, \"lr\": %.9g, \"train_loss\": %.6f, \"train_acc\": %.6f, "
                         "\"test_loss\": %.6f, \"test_acc\": %.6f, \"seconds\": %.3f, \"images_per_s\": %.1f}\n",
                    e + 1, step, lr, train_loss, train_acc, data.test.n ? test_loss : -1.0,
                    data.test.n ? test_acc : -1.0, secs, (double)(seen - seen0) / secs);
            fflush(log);
        }
        const train_pos done_pos = {.epoch = e + 1, .step = step};
        if (c.out && !write_checkpoint(&c, model_text, &data, net, opt, &done_pos, test_acc, &st)) goto fail;
        if (c.plot) {
            char err[512];
            const int n_ep = (int)(e + 1 - start_epoch);
            const unsigned long long s0 = start_epoch;
            if (!plot_curves(c.plot, n_ep, tl + s0, data.test.n ? vl + s0 : NULL, ta + s0, data.test.n ? va + s0 : NULL,
                             c.model, err, sizeof err)) {
                cli_error("train", "%s", err);
                goto done;
            }
        }
        if (stop_signal && e + 1 < c.epochs) {
            rc = stop_training(&c, model_text, &data, net, opt, &done_pos, steps_per_epoch, test_acc);
            goto done;
        }
    }
    if (data.test.n) {
        const double acc = curves[3 * c.epochs + c.epochs - 1];
        printf("test accuracy %.2f%% after %llu epoch(s)\n", 100 * acc, c.epochs);
    }
    if (c.out) printf("checkpoint %s\n", c.out);
    if (c.plot) printf("plot %s\n", c.plot);
    rc = 0;
    goto done;
fail:
    rc = cli_report("train", st);
done:
    if (log) fclose(log);
    free(xb), free(yb), free(dy), free(perm), free(curves), free(model_text);
    cnn_optim_free(opt);
    cnn_st_free(wst);
    cnn_data_free(&data);
    cnn_net_free(net);
    return rc;
}
