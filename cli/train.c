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
 * SIGINT, SIGTERM, SIGHUP (a closed terminal or ssh session) and SIGPIPE (a reader of stdout or
 * stderr that went away, as in `cnn train ... 2>&1 | head -1`) stop training after the current
 * step, write a checkpoint, say how to resume and exit with 128 + the signal's number; a second
 * signal kills at once (which the atomic writes make safe too), but a second SIGPIPE is ignored.
 * A write error on stderr or on the log (a full disk, a closed descriptor) stops training the same
 * way, with a checkpoint, and exits with EXIT_IO; so does a checkpoint that cannot be written.
 *
 * Nothing unfinished is published: after every update the weights and the optimizer's state are
 * checked finite (one pass over each, before any checkpoint is written: see first_nonfinite for
 * its cost, about 1% of a LeNet-5 step); a step that
 * made one of them NaN or Inf stops the run with exit 1, naming the tensor and the step, and the
 * checkpoint on disk stays the last one written, which was checked finite.
 *
 * No lost work: there is always a checkpoint, --out or runs/<model>-<data>.safetensors, and every
 * output path (--out, --log, --plot) is checked before the first step.
 *
 * History: every epoch ends with one JSON Lines record (epoch, step, lr, losses, accuracies,
 * seconds). The records of all the epochs done are kept in the checkpoint's metadata ("history"),
 * not only in --log: so a resumed run draws the whole history in its plot and rewrites its log with
 * exactly one record per epoch, whether or not the earlier runs had --log or --plot, and a crash
 * between a log line and the checkpoint of its epoch cannot leave that epoch twice in the log. The
 * plot is drawn from the records' text in every run, so a resumed run draws the same picture as a
 * run never stopped.
 *
 * On a terminal, the progress bar fits the width of the terminal and redraws in place at most
 * 10 times a second, and every other line is shortened or wrapped to fit; elsewhere there is one
 * line per epoch.
 */
#include "checkpoint.h"
#include "resume_meta.h"
#include "train_data.h"
#include "cli.h"
#include "files.h"
#include "plot.h"
#include "base/error.h"
#include "io/safe_write.h"
#include "base/rng.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char train_usage[] =
    "usage: cnn train --model NET.cnn --data SOURCE [--weights INIT.safetensors | --init SEED]\n"
    "                 [--epochs E] [--batch B] [--optimizer sgd|adam|adamw] [--lr LR]\n"
    "                 [--momentum M] [--nesterov] [--weight-decay WD]\n"
    "                 [--schedule constant|step|cosine|multistep|onecycle]\n"
    "                 [--schedule-per step|epoch] [--step-size S] [--gamma G]\n"
    "                 [--milestones M1,M2,...] [--warmup N] [--label-smoothing E]\n"
    "                 [--clip-grad-norm C] [--no-decay-bn-bias]\n"
    "                 [--seed S] [--no-shuffle] [--threads T] [--out CKPT.safetensors]\n"
    "                 [--resume CKPT.safetensors] [--log run.jsonl] [--plot curves.svg|png]\n"
    "                 [--checkpoint-every N] [--data-dir DIR]\n"
    "                 [--augment crop=P[:reflect],flip,translate=T,cutout=S] [--val-split N]\n"
    "                 [--keep-best] [--patience K]\n"
    "\n"
    "SOURCE is mnist or fashion-mnist (under data/; 'make data' fetches them), cifar10 (the binary\n"
    "version under data/cifar-10-batches-bin/, which you download), a directory of\n"
    "IDX files (raw or .gz), a CIFAR-10 binary directory, or a .safetensors file with input\n"
    "[N,C,H,W] float32 and target [N] int64 (and optional test_input, test_target).\n"
    "Defaults: --epochs 1 --batch 64 --optimizer sgd --lr 0.01 (adam, adamw: 0.001)\n"
    "--momentum 0 --weight-decay 0 (adamw: 0.01) --schedule constant --step-size 1 --gamma 0.1\n"
    "--seed 0; the initial weights are PyTorch's default initialisation drawn from --init,\n"
    "or from --seed. --epochs counts the total, so --resume of a checkpoint saved after\n"
    "epoch 1 with --epochs 2 runs one more epoch. A checkpoint is written after every epoch,\n"
    "and with --checkpoint-every N also every N steps within one, to --out, else to the\n"
    "checkpoint resumed, else to runs/MODEL-DATA.safetensors (MODEL-DATA-2... if that exists);\n"
    "--resume continues exactly where any checkpoint was written, mid-epoch included.\n"
    "Ctrl-C (SIGINT) or SIGTERM stops after the current step, writes a checkpoint and prints\n"
    "the command that resumes it. --log writes one JSON object per epoch (JSON Lines); a resumed\n"
    "run's log and plot hold every epoch from the first. --threads defaults to CNN_NUM_THREADS,\n"
    "else every core.\n"
    "--augment transforms each training sample on the fly (never the validation or test ones):\n"
    "crop=P pads P pixels (black: the normalised value of a 0 byte; :reflect mirrors) and crops\n"
    "back at random, flip mirrors half the samples, translate=T shifts up to T pixels each way,\n"
    "cutout=S zeroes a random SxS square; drawn from (seed, epoch, sample). --val-split N holds\n"
    "out N training samples (drawn from --seed) and reports them as validation after each epoch.\n"
    "--keep-best also keeps the checkpoint of the best validation (else test) accuracy in\n"
    "NAME-best.safetensors beside --out; --patience K stops when it has not improved for K epochs.\n"
    "\n"
    "Schedules, as torch.optim.lr_scheduler computes them (T: the run's epochs, or its steps\n"
    "with --schedule-per step): step is StepLR(step_size, gamma), cosine CosineAnnealingLR(T_max\n"
    "= T), multistep MultiStepLR(milestones, gamma), milestones in epochs (steps with\n"
    "--schedule-per step). onecycle is OneCycleLR(max_lr = --lr, total_steps = epochs x steps\n"
    "per epoch) with its defaults (pct_start 0.3, cos, div_factor 25, final_div_factor 1e4),\n"
    "stepped after every batch; it cycles SGD's momentum (Adam's beta1) from 0.95 to 0.85 and\n"
    "back whatever --momentum says, as torch does (with SGD and --momentum 0 too: the momentum\n"
    "buffers then exist). --warmup N multiplies the rate of step k by min(1, (k+1)/N):\n"
    "LinearLR(start_factor=1/N, end_factor=1, total_iters=N-1) stepped per batch, chained with\n"
    "the schedule (not with onecycle). --label-smoothing is CrossEntropyLoss(label_smoothing=E)\n"
    "(the test loss stays plain cross-entropy); --clip-grad-norm is clip_grad_norm_(params, C)\n"
    "after each backward; --no-decay-bn-bias gives weight decay only to conv and linear weights\n"
    "(batch norm's parameters and every bias get none). --resume restores all of these.\n";
static const char train_example[] =
    "example:\n"
    "  cnn train --model models/lenet5.cnn --data mnist --epochs 3 --optimizer adam --lr 0.001 \\\n"
    "            --out lenet5.safetensors --plot lenet5.png\n";

enum { MAX_GIVEN = 128 };

/* Every setting of a run; `given` marks those set on the command line, so that --resume takes
 * the rest from the checkpoint. */

typedef struct train_cfg {
    const char *model, *data, *data_dir, *weights, *out, *resume, *log, *plot;
    /* The options as given (value NULL for a flag), in order: the resume command repeats them. */
    const char *given_opt[MAX_GIVEN], *given_val[MAX_GIVEN];   /* options by name ("lr"), values or NULL */
    int n_given;
    char out_buf[4096];           /* the default path */
    unsigned long long init_seed, seed, epochs, batch, threads, step_size, checkpoint_every;
    int have_init, shuffle;
    cnn_augment augment;            /* --augment (nothing when not given) */
    unsigned long long val_split, patience; /* 0: none */
    int keep_best;
    char best_buf[4096];            /* the best checkpoint's path (train_best_path) */
    /* The run's best validation (else test) accuracy so far and its epoch (0: none yet), kept in
     * the checkpoints for --keep-best and --patience. */
    double best_acc;
    unsigned long long best_epoch;
    cnn_optim_config opt;
    cnn_schedule schedule;
    double gamma;
    /* the recipe: schedule clock, milestones, warm-up steps, label smoothing, clipping (0: none) */
    int per_step, n_milestones;
    int64_t milestones[CNN_MAX_MILESTONES];
    unsigned long long warmup;
    double label_smoothing, clip;
    struct { int epochs, batch, optimizer, lr, momentum, nesterov, wd, schedule, step_size, gamma, seed, shuffle,
             checkpoint_every, augment, val_split, patience, keep_best,
             per_step, milestones, warmup, label_smoothing, clip, no_decay; } given;
} train_cfg;

/* Where training stands: `epoch` epochs done and `batch` batches of the next one, whose summed
 * loss and count of correct predictions so far are loss_sum and correct, after `seconds` of
 * training; `step` steps in all. */
typedef struct train_pos {
    unsigned long long epoch, step;
    int64_t batch, correct, samples;
    double loss_sum, seconds;
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
static const char *const schedule_names[] = {"constant", "step", "cosine", "multistep", "onecycle", NULL};

static const char *schedule_name(cnn_schedule s) {
    return s >= CNN_SCHEDULE_CONSTANT && s <= CNN_SCHEDULE_ONECYCLE ? schedule_names[s] : "constant";
}

/* "M1,M2,...": positive whole numbers, strictly increasing, at most CNN_MAX_MILESTONES; "" is none. */
static int parse_milestones(const char *v, int64_t *m, int *n) {
    *n = 0;
    while (*v) {
        if (*v < '0' || *v > '9' || *n == CNN_MAX_MILESTONES) return 0;
        char *end;
        errno = 0;
        const unsigned long long u = strtoull(v, &end, 10);
        if (errno || u < 1 || u > INT32_MAX || (*n && (int64_t)u <= m[*n - 1])) return 0;
        m[(*n)++] = (int64_t)u;
        if (*end == ',' && end[1]) end++;
        else if (*end) return 0;
        v = end;
    }
    return 1;
}

static int parse_optim(const char *v, cnn_optim_kind *k) {
    if (!strcmp(v, "sgd")) *k = CNN_OPTIM_SGD;
    else if (!strcmp(v, "adam")) *k = CNN_OPTIM_ADAM;
    else if (!strcmp(v, "adamw")) *k = CNN_OPTIM_ADAMW;
    else return 0;
    return 1;
}

static int parse_schedule(const char *v, cnn_schedule *s) {
    for (int i = 0; schedule_names[i]; i++)
        if (!strcmp(v, schedule_names[i])) return *s = (cnn_schedule)i, 1;
    return 0;
}

/* The recipe's options against each other, after --resume has filled in the rest; 0 and a
 * message naming the option when they disagree. */
static int recipe_ok(const train_cfg *c) {
    if (c->n_milestones && c->schedule != CNN_SCHEDULE_MULTISTEP)
        return !cli_usage_error("train", "--milestones belongs to --schedule multistep (the schedule is %s)",
                                schedule_name(c->schedule));
    if (!c->n_milestones && c->schedule == CNN_SCHEDULE_MULTISTEP)
        return !cli_usage_error("train", "--schedule multistep needs --milestones M1,M2,...");
    if (c->warmup && c->schedule == CNN_SCHEDULE_ONECYCLE)
        return !cli_usage_error("train", "--warmup: onecycle warms up itself; give one or the other");
    if (c->given.per_step && !c->per_step && c->schedule == CNN_SCHEDULE_ONECYCLE)
        return !cli_usage_error("train", "--schedule-per epoch: onecycle is always stepped per batch");
    return 1;
}

/* Returns -1 to go on, or an exit status (0 after --help). */
static int parse_args(int argc, char **argv, train_cfg *c) {
    memset(c, 0, sizeof *c);
    c->epochs = 1, c->batch = 64, c->step_size = 1, c->gamma = 0.1, c->shuffle = 1;
    const char *init = NULL, *seed = NULL, *epochs = NULL, *batch = NULL, *every = NULL, *threads = NULL,
               *step_size = NULL, *gamma = NULL, *optimizer = NULL, *schedule = NULL, *lr_s = NULL,
               *momentum_s = NULL, *wd_s = NULL, *per = NULL, *milestones = NULL, *warmup = NULL, *smooth = NULL,
               *clip = NULL;
    int nesterov = 0, no_shuffle = 0, no_decay = 0;
    const char *augment = NULL, *val_split = NULL, *patience = NULL;
    const cli_opt opts[] = {
        CLI_VALUE("model", "NET.cnn", &c->model, "the model (see README, 'The model format')"),
        CLI_VALUE("data", "SOURCE", &c->data, "mnist, fashion-mnist, an IDX or CIFAR-10 directory, a .safetensors"),
        CLI_VALUE("data-dir", "DIR", &c->data_dir, "where mnist, fashion-mnist and cifar10 are (default data/)"),
        CLI_VALUE("weights", "INIT.safetensors", &c->weights, "initial weights"),
        CLI_VALUE("init", "SEED", &init, "PyTorch's default initialisation from SEED (default: --seed)"),
        CLI_VALUE("epochs", "E", &epochs, "epochs in all, resumed ones included (default 1)"),
        CLI_VALUE("batch", "B", &batch, "samples per step, 1 to 65536 (default 64)"),
        CLI_VALUE("optimizer", "NAME", &optimizer, "sgd (default), adam or adamw"),
        CLI_VALUE("lr", "LR", &lr_s, "learning rate (default 0.01; adam, adamw: 0.001)"),
        CLI_VALUE("momentum", "M", &momentum_s, "SGD's momentum (default 0)"),
        CLI_FLAG("nesterov", &nesterov, "Nesterov momentum"),
        CLI_VALUE("weight-decay", "WD", &wd_s, "weight decay (default 0; adamw: 0.01)"),
        CLI_VALUE("schedule", "NAME", &schedule, "constant (default), step, cosine, multistep or onecycle"),
        CLI_VALUE("schedule-per", "step|epoch", &per, "the schedule's clock (default epoch; onecycle: step)"),
        CLI_VALUE("step-size", "S", &step_size, "step schedule: epochs (steps) between decays (default 1)"),
        CLI_VALUE("gamma", "G", &gamma, "step and multistep: the decay factor (default 0.1)"),
        CLI_VALUE("milestones", "M1,M2,...", &milestones, "multistep: epochs (steps) of the decays, increasing"),
        CLI_VALUE("warmup", "N", &warmup, "linear warm-up over the first N steps (default 0)"),
        CLI_VALUE("label-smoothing", "E", &smooth, "CrossEntropyLoss(label_smoothing=E), E in [0, 1)"),
        CLI_VALUE("clip-grad-norm", "C", &clip, "clip_grad_norm_ of the gradients to C (> 0)"),
        CLI_FLAG("no-decay-bn-bias", &no_decay, "no weight decay for batch norm's parameters and biases"),
        CLI_VALUE("seed", "S", &seed, "the seed of the shuffles and dropout (default 0)"),
        CLI_FLAG("no-shuffle", &no_shuffle, "keep the data's order"),
        CLI_VALUE("threads", "T", &threads, "threads, 1 to 1024 (default: $CNN_NUM_THREADS, else every core)"),
        CLI_VALUE("out", "CKPT.safetensors", &c->out, "the checkpoint, written after every epoch"),
        CLI_VALUE("resume", "CKPT.safetensors", &c->resume, "continue from a checkpoint"),
        CLI_VALUE("log", "run.jsonl", &c->log, "one JSON object per epoch"),
        CLI_VALUE("plot", "curves.svg|png", &c->plot, "loss and accuracy per epoch"),
        CLI_VALUE("checkpoint-every", "N", &every, "also write the checkpoint every N steps"),
        CLI_VALUE("augment", "KEYS", &augment, "crop=P[:reflect],flip,translate=T,cutout=S of training samples"),
        CLI_VALUE("val-split", "N", &val_split, "hold out N training samples as validation"),
        CLI_FLAG("keep-best", &c->keep_best, "also keep the best checkpoint, NAME-best.safetensors"),
        CLI_VALUE("patience", "K", &patience, "stop when the accuracy has not improved for K epochs"),
        CLI_END,
    };
    const cli_cmd cmd = {"train", train_usage, opts, train_example, NULL};
    const int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;

    static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
    static const cnn_optim_kind kinds[] = {CNN_OPTIM_SGD, CNN_OPTIM_ADAM, CNN_OPTIM_ADAMW};
    static const char *const pers[] = {"epoch", "step", NULL};
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
        (schedule && !cli_choice("train", "--schedule", schedule, schedule_names, &si)) ||
        (per && !cli_choice("train", "--schedule-per", per, pers, &c->per_step)) ||
        (warmup && !cli_u64("train", "--warmup", warmup, 0, 1000000000, &c->warmup)) ||
        (smooth && !cli_real("train", "--label-smoothing", smooth, 0, 0, &c->label_smoothing)) ||
        (clip && !cli_real("train", "--clip-grad-norm", clip, 0, 1, &c->clip)) ||
        (lr_s && !cli_real("train", "--lr", lr_s, 0, 0, &lr)) ||
        (momentum_s && !cli_real("train", "--momentum", momentum_s, 0, 0, &momentum)) ||
        (wd_s && !cli_real("train", "--weight-decay", wd_s, 0, 0, &wd)) ||
        (val_split && !cli_u64("train", "--val-split", val_split, 1, INT64_MAX, &c->val_split)) ||
        (patience && !cli_u64("train", "--patience", patience, 1, 100000, &c->patience)))
        return EXIT_BAD_INPUT;
    if (augment && cnn_augment_parse(augment, &c->augment) != CNN_OK)
        return cli_usage_error("train", "--augment %s: %s", augment, cnn_last_error());
    c->given.augment = augment != NULL, c->given.val_split = val_split != NULL;
    c->given.patience = patience != NULL, c->given.keep_best = c->keep_best;
    if (smooth && !(c->label_smoothing < 1))
        return cli_usage_error("train", "--label-smoothing %s: expected a number in [0, 1)", smooth);
    if (milestones && (!*milestones || !parse_milestones(milestones, c->milestones, &c->n_milestones)))
        return cli_usage_error("train", "--milestones %s: expected whole numbers >= 1, strictly increasing, "
                               "separated by commas (at most %d)", milestones, CNN_MAX_MILESTONES);
    const cnn_optim_kind kind = kinds[ki];
    c->schedule = (cnn_schedule)si;
    c->have_init = init != NULL;
    if (no_shuffle) c->shuffle = 0;
    c->given.epochs = epochs != NULL, c->given.batch = batch != NULL, c->given.optimizer = optimizer != NULL;
    c->given.lr = lr_s != NULL, c->given.momentum = momentum_s != NULL, c->given.nesterov = nesterov;
    c->given.wd = wd_s != NULL, c->given.schedule = schedule != NULL, c->given.step_size = step_size != NULL;
    c->given.gamma = gamma != NULL, c->given.seed = seed != NULL, c->given.shuffle = no_shuffle;
    c->given.checkpoint_every = every != NULL;
    c->given.per_step = per != NULL, c->given.milestones = milestones != NULL, c->given.warmup = warmup != NULL;
    c->given.label_smoothing = smooth != NULL, c->given.clip = clip != NULL, c->given.no_decay = no_decay;
    /* Every option given, in the user's order and by its full name (cli_parse took the line, so
     * each "--x" is one option's name or unique prefix), for the resume command. */
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (strncmp(argv[i], "--", 2)) continue;
        const char *key = argv[i] + 2, *eq = strchr(key, '=');
        const size_t len = eq ? (size_t)(eq - key) : strlen(key);
        const cli_opt *o = opts;
        while (o->name && !(strlen(o->name) == len && !strncmp(o->name, key, len))) o++;
        if (!o->name)
            for (o = opts; o->name && strncmp(o->name, key, len); o++) continue;
        if (!o->name) continue;
        if (c->n_given == MAX_GIVEN) return cli_usage_error("train", "more than %d options", MAX_GIVEN);
        c->given_opt[c->n_given] = o->name;
        c->given_val[c->n_given++] = !o->value ? NULL : eq ? eq + 1 : argv[++i];
    }

    if (!c->model || !c->data) return cli_usage_error("train", "--model and --data are required");
    if (c->weights && c->have_init) return cli_usage_error("train", "give --weights or --init, not both");
    if (c->resume && (c->weights || c->have_init))
        return cli_usage_error("train", "--resume restores the weights; do not give --weights or --init with it");
    c->opt = cnn_optim_defaults(kind, isnan(lr) ? (kind == CNN_OPTIM_SGD ? 0.01 : 0.001) : lr);
    c->opt.momentum = momentum;
    c->opt.nesterov = nesterov;
    c->opt.no_decay_bn_bias = no_decay;
    if (!isnan(wd)) c->opt.weight_decay = wd;
    if (!c->resume && !recipe_ok(c)) return EXIT_BAD_INPUT;
    if (!c->have_init) c->init_seed = c->seed;
    return -1;
}

/* ---- the data ------------------------------------------------------------------------------ */

/* The order of epoch e: the identity, or a Fisher-Yates shuffle drawn from (seed, e). */
static void epoch_order(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch, int shuffle) {
    if (shuffle) {
        rng_permutation(perm, n, seed ^ (0xD1B54A32D192ED03ull * (epoch + 1)));
        return;
    }
    for (int64_t i = 0; i < n; i++) perm[i] = i;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int evaluate(cnn_net *net, const cnn_dataset *d, int batch, int classes, int64_t *ybuf, double *loss, double *acc,
             int64_t *confusion) {
    /* Eval mode (batch norm's running statistics, no dropout), with batch norm and relu folded
     * into the convolutions; the next cnn_net_set_training(net, 1) leaves it. */
    if (cnn_net_set_inference(net, 1) != CNN_OK) return 0;
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

/* The index of the first NaN or Inf of v, or -1. Run on every weight, gradient and optimizer
 * buffer after every step, so the common case is one branch-free pass that vectorises (a float is
 * NaN or Inf when its exponent bits are all ones; about 0.1-0.2 ns a float, 5 times faster than a
 * loop of isfinite with an early exit): on LeNet-5 with Adam, 4 passes over its 61,706 parameters
 * cost about 30 us, next to some 2.3 ms of a step of batch 64. Only when it finds one is the
 * element looked for. */
static int64_t first_nonfinite(const float *v, int64_t n) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, v + i, sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    if (!bad) return -1;
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

/* After an update: 1 if every weight and every tensor of the optimizer's state (t, n of them) is
 * finite; else 0, and names in buf the first tensor that is not. */
static int state_finite(const cnn_net *net, const cnn_tensor *t, int n, unsigned long long step, char *buf,
                        size_t len) {
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        const cnn_param p = cnn_net_param(net, i);
        const int64_t k = first_nonfinite(p.data, p.numel);
        if (k >= 0) {
            snprintf(buf, len, "the update of step %llu made the weight '%s' (layer %d, %s, line %d) %s at element %lld",
                     step, p.name, p.layer, cnn_layer_kind_name(cnn_net_layer_kind(net, p.layer)),
                     cnn_net_layer_line(net, p.layer), isnan(p.data[k]) ? "NaN" : "Inf", (long long)k);
            return 0;
        }
    }
    for (int i = 0; i < n; i++) {
        const int64_t k = first_nonfinite(t[i].data, cnn_tensor_numel(&t[i]));
        if (k >= 0) {
            snprintf(buf, len, "the update of step %llu made the optimizer's state '%s' %s at element %lld", step,
                     t[i].name, isnan(((const float *)t[i].data)[k]) ? "NaN" : "Inf", (long long)k);
            return 0;
        }
    }
    return 1;
}

static int grads_finite(const cnn_net *net) {
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        const cnn_param p = cnn_net_param(net, i);
        if (first_nonfinite(p.grad, p.numel) >= 0) return 0;
    }
    return 1;
}

/* ---- the terminal ------------------------------------------------------------------------- */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The width of the terminal on fd, or 0 if fd is not a terminal: its window size, else $COLUMNS,
 * else 80. Asked again for every line, so that a resized window is followed. */
static int term_cols(int fd) {
    if (!isatty(fd)) return 0;
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *e = getenv("COLUMNS");
    const long v = e ? strtol(e, NULL, 10) : 0;
    return v > 0 && v < 10000 ? (int)v : 80;
}

static int bar_on_screen; /* the progress bar's line is on stderr, not yet ended */

/* Ends the progress bar's line, so that the next line starts on a line of its own. */
static void end_bar(void) {
    if (bar_on_screen) fputc('\n', stderr);
    bar_on_screen = 0;
}

/* How put_line breaks a line that is wider than the terminal: at spaces, with the next line
 * indented (TEXT); or as a shell command that still runs when pasted (CMD): " \" ends the broken
 * line, and a word longer than a line is cut with a backslash-newline, which the shell removes
 * (outside single quotes: append_quoted uses double quotes). */
enum { WRAP_TEXT, WRAP_CMD };

/* Prints `text` and a newline to f. When f is a terminal of `cols` columns, each of its lines is
 * wrapped to cols - 1 columns (the last column would make some terminals wrap on their own). */
static void put_line(FILE *f, const char *text, int how) {
    const int cols = term_cols(fileno(f));
    if (f == stderr) end_bar();
    if (cols <= 0) {
        fputs(text, f);
        fputc('\n', f);
        return;
    }
    const char *brk = how == WRAP_CMD ? " \\" : "", *indent = how == WRAP_CMD ? "    " : "  ";
    const int width = cols - 1 > 8 ? cols - 1 : 8, room = width - (int)strlen(brk);
    const int ind = (int)strlen(indent);
    int col = 0, start = 0; /* the column, and where the words of this line began */
    for (const char *p = text; *p;) {
        if (*p == '\n') { /* a line of its own */
            fputc('\n', f);
            col = start = 0, p++;
            continue;
        }
        const char *sp = p;
        while (*p == ' ') p++;
        const char *w = p;
        for (int quoted = 0; *p && *p != '\n' && (quoted || *p != ' '); p++) { /* a shell word keeps its spaces */
            if (how != WRAP_CMD) continue;
            if (*p == '"') quoted = !quoted;
            else if (*p == '\\' && quoted && p[1]) p++;
        }
        int nsp = (int)(w - sp), wl = (int)(p - w);
        if (!wl) continue; /* spaces at the end of a line */
        if (col > start && col + nsp + wl > room) {
            fprintf(f, "%s\n%s", brk, indent);
            col = start = ind, nsp = 0;
        }
        if (col > start || col == 0) fwrite(sp, 1, (size_t)nsp, f), col += nsp; /* not after a break */
        while (col + wl > room) { /* a word longer than a line: cut it (not after a backslash) */
            int take = room - col > 1 ? room - col : 1;
            if (take > 1 && w[take - 1] == '\\') take--;
            fwrite(w, 1, (size_t)take, f);
            if (how == WRAP_CMD) fputs("\\\n", f), col = start = 0;
            else fprintf(f, "\n%s", indent), col = start = ind;
            w += take, wl -= take;
        }
        fwrite(w, 1, (size_t)wl, f), col += wl;
    }
    fputc('\n', f);
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void say(FILE *f, int how, const char *fmt, ...) {
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    put_line(f, buf, how);
}

/* "cnn train: <message>" on stderr, fitted to the terminal: the runtime errors of training. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void train_error(const char *fmt, ...) {
    char buf[8192];
    const int k = snprintf(buf, sizeof buf, "cnn train: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + k, sizeof buf - (size_t)k, fmt, ap);
    va_end(ap);
    put_line(stderr, buf, WRAP_TEXT);
}

/* cli_report for train: the library's last error, fitted to the terminal. An I/O error once
 * training has begun is the machine's (every input was read before, every output path checked):
 * EXIT_IO; before, it is the input's. */
static int train_report(cnn_status st, int training) {
    train_error("%s", cnn_last_error());
    return st == CNN_ERR_NOMEM ? 1 : training && st == CNN_ERR_IO ? EXIT_IO : EXIT_BAD_INPUT;
}

/* "m:ss", or "h:mm:ss" from an hour. */
static void duration(char *buf, size_t len, double secs) {
    const int t = secs > 0 && secs < 1e8 ? (int)(secs + 0.5) : 0;
    if (t >= 3600) snprintf(buf, len, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%d:%02d", t / 60, t % 60);
}

/* The progress bar, redrawn in place (\r, then clear to the end of the line) within the width of
 * the terminal: the epoch, a bar of the samples done, the step within the epoch, the running loss
 * and accuracy, images per second and the time left in the epoch. The widest form that leaves the
 * bar 10 columns is drawn; narrower terminals get a terser form and a shorter bar, or no bar. */
static void progress_bar(unsigned long long epoch, unsigned long long epochs, int64_t step, int64_t steps,
                         double frac, double ips, double eta, double loss, double acc) {
    const int cols = term_cols(fileno(stderr));
    const int width = (cols > 0 ? cols : 80) - 1;
    /* The fields have fixed widths (the step as wide as the step count), so that the bar keeps its
     * length while they change. */
    const int sw = snprintf(NULL, 0, "%lld", (long long)steps);
    char left[3][64], right[3][200], t[48], line[512];
    duration(t, sizeof t, eta);
    snprintf(left[0], sizeof left[0], "epoch %llu/%llu ", epoch, epochs);
    snprintf(right[0], sizeof right[0], " step %*lld/%lld  loss %.4f  acc %6.2f%%  %6.0f img/s  ETA %5s", sw,
             (long long)step, (long long)steps, loss, 100 * acc, ips, t);
    snprintf(left[1], sizeof left[1], "epoch %llu/%llu ", epoch, epochs);
    snprintf(right[1], sizeof right[1], " %*lld/%lld loss %.4f acc %6.2f%% %6.0f img/s ETA %5s", sw, (long long)step,
             (long long)steps, loss, 100 * acc, ips, t);
    snprintf(left[2], sizeof left[2], "ep %llu/%llu ", epoch, epochs);
    snprintf(right[2], sizeof right[2], " %*lld/%lld loss %.3f acc %5.1f%% %5.0f/s ETA %s", sw, (long long)step,
             (long long)steps, loss, 100 * acc, ips, t);
    int v = 0, bar = 0;
    for (; v < 3; v++) {
        bar = width - (int)strlen(left[v]) - (int)strlen(right[v]) - 2;
        if (bar >= (v < 2 ? 10 : 4)) break;
    }
    if (v == 3) v = 2, bar = 0; /* no room for a bar */
    if (bar > 40) bar = 40;
    int k = snprintf(line, sizeof line, "%s", left[v]);
    if (bar > 0) {
        const int filled = frac >= 1 ? bar : frac > 0 ? (int)(bar * frac) : 0;
        line[k++] = '[';
        for (int i = 0; i < bar; i++) line[k++] = i < filled ? '#' : '.';
        line[k++] = ']';
        snprintf(line + k, sizeof line - (size_t)k, "%s", right[v]);
    } else {
        snprintf(line + k, sizeof line - (size_t)k, "%s", right[v] + 1);
    }
    if ((int)strlen(line) > width) line[width > 0 ? width : 0] = '\0'; /* a very narrow terminal */
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    bar_on_screen = 1;
}

/* ---- output paths -------------------------------------------------------------------------- */

/* Checks, before anything is trained, that `path` (the value of option `opt`, or the default
 * checkpoint when opt is NULL) can be written: its directory exists and may be written to, it is
 * not a directory, and (is_plot) its name ends in .png or .svg. Names the path as given. */
static int check_output(const char *opt, const char *path, int is_plot) {
    char what[4200];
    if (opt) snprintf(what, sizeof what, "%s %s", opt, path);
    else snprintf(what, sizeof what, "%s", path);
    const size_t len = strlen(path);
    if (!len || path[len - 1] == '/') {
        train_error("%s: names a directory; give a file name", what);
        return 0;
    }
    if (is_plot && !plot_path_ok(path)) {
        train_error("%s: the plot's name must end in .png or .svg", what);
        return 0;
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (len >= sizeof dir) {
        train_error("%s: the path is too long", what);
        return 0;
    }
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        train_error("%s: the directory %s %s", what, dir, errno == ENOENT ? "does not exist" : strerror(errno));
        return 0;
    }
    if (!S_ISDIR(sb.st_mode)) {
        train_error("%s: %s is not a directory", what, dir);
        return 0;
    }
    /* Checkpoints and plots are written to a temporary file in the directory and renamed: the
     * directory must be writable. The log is written in place. */
    if (access(dir, W_OK | X_OK) != 0) {
        train_error("%s: cannot write in the directory %s: %s", what, dir, strerror(errno));
        return 0;
    }
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) {
            train_error("%s: is a directory", what);
            return 0;
        }
        if (cnn_safe_check_target(path) != CNN_OK) { /* a device node, a FIFO, a socket: never replaced */
            train_error("%s: %s", opt ? opt : "the checkpoint", cnn_last_error());
            return 0;
        }
        if (access(path, W_OK) != 0) {
            train_error("%s: cannot write: %s", what, strerror(errno));
            return 0;
        }
    }
    return 1;
}

/* The default checkpoint, runs/<model>-<data>.safetensors: the model file's name without its
 * directory and .cnn, and the data set's name (for a file or directory of data, its name without
 * .safetensors). An existing one is another run's: the first of -2, -3, ... that does not exist
 * is taken instead. Creates runs/. */
static int default_out(train_cfg *c, const cnn_data *data) {
    char model[256], set[256];
    const char *b = strrchr(c->model, '/');
    snprintf(model, sizeof model, "%s", b ? b + 1 : c->model);
    size_t n = strlen(model);
    if (n > 4 && !strcmp(model + n - 4, ".cnn")) model[n - 4] = '\0';
    if (!strcmp(data->name, "mnist") || !strcmp(data->name, "fashion-mnist") || !strcmp(data->name, "cifar10")) {
        snprintf(set, sizeof set, "%s", data->name);
    } else {
        char src[256];
        snprintf(src, sizeof src, "%s", c->data);
        for (n = strlen(src); n > 1 && src[n - 1] == '/';) src[--n] = '\0';
        b = strrchr(src, '/');
        snprintf(set, sizeof set, "%s", b ? b + 1 : src);
        n = strlen(set);
        if (n > 12 && !strcmp(set + n - 12, ".safetensors")) set[n - 12] = '\0';
    }
    for (char *p = set; *p; p++)
        if (*p == ' ' || *p == '/') *p = '_';
    if (mkdir("runs", 0777) != 0 && errno != EEXIST) {
        train_error("cannot create the directory runs/ for the checkpoint: %s; give --out", strerror(errno));
        return 0;
    }
    struct stat sb;
    for (int k = 1;; k++) {
        if (k == 1) snprintf(c->out_buf, sizeof c->out_buf, "runs/%s-%s.safetensors", model, set);
        else snprintf(c->out_buf, sizeof c->out_buf, "runs/%s-%s-%d.safetensors", model, set, k);
        if (stat(c->out_buf, &sb) != 0 || k == 100000) break;
    }
    c->out = c->out_buf;
    return check_output(NULL, c->out, 0);
}

/* ---- history: one JSON Lines record per epoch ---------------------------------------------- */

/* The records of epochs first..first+n-1 (text, one line each), and every epoch's values for
 * the plot, indexed by epoch - 1 (as read back from the records' text). */
typedef struct history {
    char *text;
    size_t len, cap;
    unsigned long long first, n, epochs;
    double *train_loss, *test_loss, *train_acc, *test_acc;
} history;

static int history_init(history *h, unsigned long long epochs) {
    memset(h, 0, sizeof *h);
    h->epochs = epochs, h->first = 1;
    h->train_loss = malloc(4 * epochs * sizeof(double));
    if (!h->train_loss) return 0;
    h->test_loss = h->train_loss + epochs, h->train_acc = h->test_loss + epochs, h->test_acc = h->train_acc + epochs;
    for (unsigned long long i = 0; i < 4 * epochs; i++) h->train_loss[i] = NAN;
    return 1;
}

static void history_free(history *h) {
    free(h->text);
    free(h->train_loss);
}

static double json_num(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The epoch of a record (a JSON object on one line, `len` bytes) with its values, or 0 if it is
 * not one. */
static unsigned long long parse_record(const char *line, size_t len, double v[4]) {
    json_t *o = json_loadb(line, len, 0, NULL);
    const json_t *e = json_object_get(o, "epoch");
    unsigned long long epoch = 0;
    if (json_is_integer(e) && json_integer_value(e) >= 1 && json_is_number(json_object_get(o, "train_loss")) &&
        json_is_number(json_object_get(o, "train_acc"))) {
        epoch = (unsigned long long)json_integer_value(e);
        v[0] = json_num(o, "train_loss"), v[1] = json_num(o, "test_loss");
        v[2] = json_num(o, "train_acc"), v[3] = json_num(o, "test_acc");
    }
    json_decref(o);
    return epoch;
}

/* Appends the record `line` (one line, no newline) of epoch first + n. */
static int history_add(history *h, const char *line) {
    const size_t k = strlen(line);
    if (h->len + k + 2 > h->cap) {
        const size_t cap = (h->len + k + 2) * 2;
        char *t = realloc(h->text, cap);
        if (!t) return 0;
        h->text = t, h->cap = cap;
    }
    memcpy(h->text + h->len, line, k);
    h->len += k;
    h->text[h->len++] = '\n';
    h->text[h->len] = '\0';
    double v[4];
    const unsigned long long e = parse_record(line, k, v);
    if (e >= 1 && e <= h->epochs)
        h->train_loss[e - 1] = v[0], h->test_loss[e - 1] = v[1], h->train_acc[e - 1] = v[2], h->test_acc[e - 1] = v[3];
    h->n++;
    return 1;
}

/* Notes in slot[e - 1] (and len[e - 1]) the record of each epoch e in 1..upto among the lines of
 * text; a later record of an epoch replaces an earlier one. */
static void find_records(const char *text, unsigned long long upto, const char **slot, size_t *len) {
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        const size_t k = nl ? (size_t)(nl - p) : strlen(p);
        double v[4];
        const unsigned long long e = k ? parse_record(p, k, v) : 0;
        if (e >= 1 && e <= upto) slot[e - 1] = p, len[e - 1] = k;
        p = nl ? nl + 1 : NULL;
    }
}

/* The history of a resumed run, which has done `done` epochs: the records of the checkpoint
 * (`saved`, its "history" metadata), with those of the old log (`log`, for checkpoints written
 * before the history was kept in them) where the checkpoint has none; from the latest epoch back
 * to the first one missing. Returns 0 when out of memory. */
static int history_resume(history *h, const char *saved, const char *log, unsigned long long done) {
    if (!done) return 1;
    const char **slot = calloc(done, sizeof *slot);
    size_t *len = calloc(done, sizeof *len);
    if (!slot || !len) {
        free(slot), free(len);
        return 0;
    }
    find_records(log, done, slot, len);
    find_records(saved, done, slot, len);
    unsigned long long first = done;
    while (first > 0 && slot[first - 1]) first--;
    h->first = first + 1;
    int ok = 1;
    char line[4096];
    for (unsigned long long e = first; ok && e < done; e++) {
        snprintf(line, sizeof line, "%.*s", (int)(len[e] < sizeof line ? len[e] : sizeof line - 1), slot[e]);
        ok = history_add(h, line);
    }
    free(slot), free(len);
    return ok;
}

/* The whole of a file, or NULL (absent, or out of memory). */
static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t n = 0, cap = 1 << 16;
    char *b = malloc(cap + 1);
    for (size_t k; b && (k = fread(b + n, 1, cap - n, f)) > 0;) {
        n += k;
        if (n == cap) {
            char *t = realloc(b, 2 * cap + 1);
            if (!t) free(b);
            b = t, cap *= 2;
        }
    }
    fclose(f);
    if (b) b[n] = '\0';
    return b;
}

/* ---- the resume command -------------------------------------------------------------------- */

/* Appends s to buf (of `cap` bytes, `*at` used), quoted for a POSIX shell if it needs to be: in
 * double quotes, with \ " $ ` escaped (a backslash-newline inside them is still a line
 * continuation, so put_line may cut a long path). */
static void append_quoted(char *buf, size_t cap, size_t *at, const char *s) {
    int plain = *s != '\0';
    for (const char *p = s; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./,:=+@%", *p)) plain = 0;
    if (*at + 1 >= cap) return;
    if (plain) {
        *at += (size_t)snprintf(buf + *at, cap - *at, "%s", s);
    } else {
        buf[(*at)++] = '"';
        for (const char *p = s; *p && *at + 3 < cap; p++) {
            if (strchr("\\\"$`", *p)) buf[(*at)++] = '\\';
            buf[(*at)++] = *p;
        }
        if (*at + 1 < cap) buf[(*at)++] = '"';
        buf[*at] = '\0';
    }
    if (*at >= cap) *at = cap - 1;
}

/* Prints the command that resumes from checkpoint `from`: cnn train with every option given
 * (but the initial weights, which the checkpoint replaces), then --resume FROM --out OUT. */
static void print_resume_command(const train_cfg *c, const char *from) {
    char buf[16384];
    size_t at = (size_t)snprintf(buf, sizeof buf, "resume with: cnn train");
    for (int i = 0; i < c->n_given; i++) {
        const char *k = c->given_opt[i];
        if (!strcmp(k, "resume") || !strcmp(k, "out") || !strcmp(k, "weights") || !strcmp(k, "init")) continue;
        at += (size_t)snprintf(buf + at, sizeof buf - at, " --%s", k);
        if (at >= sizeof buf) return;
        if (c->given_val[i]) {
            buf[at++] = ' ', buf[at] = '\0';
            append_quoted(buf, sizeof buf, &at, c->given_val[i]);
        }
    }
    at += (size_t)snprintf(buf + at, sizeof buf - at, " --resume ");
    if (at >= sizeof buf) return;
    append_quoted(buf, sizeof buf, &at, from);
    at += (size_t)snprintf(buf + at, sizeof buf - at, " --out ");
    if (at >= sizeof buf) return;
    append_quoted(buf, sizeof buf, &at, c->out);
    put_line(stderr, buf, WRAP_CMD);
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

/* The settings of the data side (--augment, --val-split, --patience, --keep-best) not given on
 * the command line, and the best accuracy so far, from a checkpoint; older checkpoints have none
 * of them. Each is checked as its option would be. */
static int restore_data_settings(const cnn_st *st, const char *path, train_cfg *c) {
    const char *v, *bad = NULL;
    unsigned long long u;
    if (!c->given.augment && (v = cnn_st_metadata(st, "augment")) && *v && cnn_augment_parse(v, &c->augment) != CNN_OK)
        bad = "augment";
    if (!c->given.val_split && (v = cnn_st_metadata(st, "val_split"))) {
        if (!cli_parse_u64(v, &u) || u > INT64_MAX) bad = "val_split";
        else c->val_split = u;
    }
    if (!c->given.patience && (v = cnn_st_metadata(st, "patience"))) {
        if (!cli_parse_u64(v, &u) || u > 100000) bad = "patience";
        else c->patience = u;
    }
    if (!c->given.keep_best && (v = cnn_st_metadata(st, "keep_best"))) {
        if (!cli_parse_u64(v, &u) || u > 1) bad = "keep_best";
        else c->keep_best = (int)u;
    }
    double d;
    if ((v = cnn_st_metadata(st, "best_epoch"))) {
        if (!cli_parse_u64(v, &u) || u > RESUME_MAX_EPOCHS) bad = "best_epoch";
        else if (u > 0 && !(meta_double(st, "best_acc", &d) && d >= 0 && d <= 1)) bad = "best_acc";
        else c->best_epoch = u, c->best_acc = u > 0 ? d : 0;
    }
    if (bad) train_error("%s: the checkpoint's __metadata__ has a malformed \"%s\"", path, bad);
    return !bad;
}

/* Reads the position and the settings not given on the command line from a checkpoint. */
static int restore_settings(const cnn_st *st, const char *path, train_cfg *c, train_pos *pos) {
    char why[256];
    if (!resume_meta_check(st, why, sizeof why)) {
        train_error("%s: %s", path, why);
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
            train_error("%s was written in the middle of an epoch of batches of %llu; resume it with the same "
                               "--batch (or none)", path, batch);
            return 0;
        }
        pos->batch = (int64_t)u, pos->correct = (int64_t)correct, pos->samples = (int64_t)samples;
        if (!meta_double(st, "epoch_seconds", &pos->seconds)) pos->seconds = 0; /* older checkpoints */
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
    /* the recipe (checkpoints older than it lack these keys: their runs had none of it) */
    if (!c->given.per_step && (v = cnn_st_metadata(st, "schedule_per")))
        ok = ok && (!strcmp(v, "step") || !strcmp(v, "epoch")), c->per_step = !strcmp(v, "step");
    if (!c->given.milestones && c->schedule == CNN_SCHEDULE_MULTISTEP && (v = cnn_st_metadata(st, "milestones")))
        ok = ok && parse_milestones(v, c->milestones, &c->n_milestones);
    if (!c->given.warmup && meta_u64(st, "warmup", &u)) c->warmup = u;
    if (!c->given.label_smoothing && meta_double(st, "label_smoothing", &d)) c->label_smoothing = d;
    if (!c->given.clip && meta_double(st, "clip_grad_norm", &d)) c->clip = d;
    if (!c->given.no_decay && meta_u64(st, "no_decay_bn_bias", &u)) c->opt.no_decay_bn_bias = u != 0;
    if (!restore_data_settings(st, path, c)) return 0;
    if (!ok) {
        train_error("%s: the checkpoint's __metadata__ is incomplete or malformed", path);
        return 0;
    }
    /* A checkpoint comes from anywhere: what it restores must be what the options accept (a batch
     * of 0 would divide by zero below, 2^62 epochs overflow the curves' allocation). */
    const char *bad = c->batch < 1 || c->batch > 65536 ? "batch"
                      : c->epochs < 1 || c->epochs > 100000 ? "epochs"
                      : c->step_size < 1 || c->step_size > INT_MAX ? "step_size"
                      : !(c->gamma > 0) ? "gamma"
                      : c->warmup > 1000000000 ? "warmup"
                      : !(c->label_smoothing >= 0 && c->label_smoothing < 1) ? "label_smoothing"
                      : !(c->clip >= 0) || isinf(c->clip) ? "clip_grad_norm"
                      : NULL;
    if (bad)
        train_error("%s: the checkpoint's __metadata__ has an out-of-range %s (see cnn train --help)", path, bad);
    return !bad && recipe_ok(c);
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
 * settings, the position `pos`, the last test accuracy and the history (the records of the epochs
 * done). Returns 0 with *st set on failure. */
static int write_checkpoint(const train_cfg *c, const char *model_text, const cnn_data *data, const cnn_net *net,
                            const cnn_optim *opt, const train_pos *pos, const history *h, double test_acc,
                            cnn_status *st) {
    meta_list m;
    meta_init(&m);
    meta_add_ref(&m, "model", model_text);
    meta_add(&m, "data", "%s", data->name);
    meta_add(&m, "source", "%s", c->data);
    meta_add(&m, "epoch", "%llu", pos->epoch);
    meta_add(&m, "epoch_step", "%lld", (long long)pos->batch);
    meta_add(&m, "epoch_loss_sum", "%.17g", pos->loss_sum);
    meta_add(&m, "epoch_correct", "%lld", (long long)pos->correct);
    meta_add(&m, "epoch_seconds", "%.3f", pos->seconds);
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
    meta_add(&m, "schedule_per", "%s", c->per_step ? "step" : "epoch");
    char ms[CNN_MAX_MILESTONES * 12] = "";
    for (int i = 0, at = 0; i < c->n_milestones; i++)
        at += snprintf(ms + at, sizeof ms - (size_t)at, "%s%lld", i ? "," : "", (long long)c->milestones[i]);
    meta_add(&m, "milestones", "%s", ms);
    meta_add(&m, "warmup", "%llu", c->warmup);
    meta_add(&m, "label_smoothing", "%.17g", c->label_smoothing);
    meta_add(&m, "clip_grad_norm", "%.17g", c->clip);
    meta_add(&m, "no_decay_bn_bias", "%d", c->opt.no_decay_bn_bias);
    meta_add(&m, "test_acc", "%.6f", test_acc);
    char aug[128];
    cnn_augment_format(&c->augment, aug, sizeof aug);
    meta_add(&m, "augment", "%s", aug);
    meta_add(&m, "val_split", "%llu", c->val_split);
    meta_add(&m, "patience", "%llu", c->patience);
    meta_add(&m, "keep_best", "%d", c->keep_best);
    meta_add(&m, "best_epoch", "%llu", c->best_epoch);
    meta_add(&m, "best_acc", "%.17g", c->best_acc);
    meta_add(&m, "best_of", "%s", c->val_split ? "validation" : "test");
    meta_add(&m, "mean", "%.9g,%.9g,%.9g", data->mean[0], data->mean[1], data->mean[2]);
    meta_add(&m, "std", "%.9g,%.9g,%.9g", data->std[0], data->std[1], data->std[2]);
    meta_add_ref(&m, "history", h->text ? h->text : "");
    return checkpoint_save(c->out, net, opt, m.kv, m.n, st);
}

/* Writes the best checkpoint (c->best_buf) atomically: the checkpoint of the end of epoch `epoch`,
 * whose history holds the epoch's record `rec` too, and in its metadata best_epoch and best_acc. */
static int write_best(const train_cfg *c, const char *model_text, const cnn_data *data, const cnn_net *net,
                      const cnn_optim *opt, unsigned long long epoch, unsigned long long step, const history *h,
                      const char *rec, double test_acc, cnn_status *st) {
    static train_cfg b; /* large: not on the stack */
    b = *c;
    b.out = c->best_buf;
    history hb = *h; /* the records so far, with this epoch's */
    const size_t k = strlen(rec);
    char *text = malloc(h->len + k + 2);
    if (!text) {
        *st = cnn_fail(CNN_ERR_NOMEM, "out of memory");
        return 0;
    }
    memcpy(text, h->text ? h->text : "", h->len);
    memcpy(text + h->len, rec, k);
    text[h->len + k] = '\n', text[h->len + k + 1] = '\0';
    hb.text = text, hb.len = h->len + k + 1;
    const train_pos pos = {.epoch = epoch, .step = step};
    const int ok = write_checkpoint(&b, model_text, data, net, opt, &pos, &hb, test_acc, st);
    free(text);
    return ok;
}

/* The signal that asked training to stop (SIGINT, SIGTERM, SIGHUP or SIGPIPE), or 0. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    if (!stop_signal) stop_signal = sig;
    /* A second one ends the process at once; but SIGPIPE comes again with every write to the
     * closed pipe, and must not end the process before its checkpoint is written. */
    signal(sig, sig == SIGPIPE ? SIG_IGN : SIG_DFL);
}

static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
}

/* Whether a message could not be written: stderr (or stdout) is closed, full, or a pipe whose
 * reader went away. */
static int streams_failed(void) {
    return ferror(stderr) || ferror(stdout);
}

/* After a stop signal, or a write error on stderr: writes the checkpoint of position `pos` and says
 * how to resume. Returns the exit status: 128 + the signal's number, EXIT_IO after a write error,
 * or EXIT_IO if the checkpoint could not be written. */
static int stop_training(const train_cfg *c, const char *model_text, const cnn_data *data, const cnn_net *net,
                         const cnn_optim *opt, const train_pos *pos, const history *h, int64_t steps_per_epoch,
                         double test_acc, const char *last_checkpoint) {
    const char *what = stop_signal == SIGTERM   ? "terminated (SIGTERM)"
                       : stop_signal == SIGHUP  ? "hung up (SIGHUP)"
                       : stop_signal == SIGPIPE ? "stopped: stdout or stderr is a pipe whose reader went away (SIGPIPE)"
                       : stop_signal == SIGINT  ? "interrupted (SIGINT)"
                                                : "stopped: a message could not be written to stderr";
    cnn_status st;
    if (!write_checkpoint(c, model_text, data, net, opt, pos, h, test_acc, &st)) {
        train_error("%s at step %llu, and the checkpoint could not be written: %s", what, pos->step, cnn_last_error());
        if (last_checkpoint) print_resume_command(c, last_checkpoint);
        return EXIT_IO;
    }
    train_error("%s at step %llu (epoch %llu, batch %lld of %lld); checkpoint written to %s", what, pos->step,
                pos->epoch + 1, (long long)pos->batch, (long long)steps_per_epoch, c->out);
    print_resume_command(c, c->out);
    return stop_signal ? 128 + stop_signal : EXIT_IO;
}

/* The line of an epoch's end. On a terminal too narrow for it, the test split's figures go on a
 * line of their own. */
static void print_epoch(unsigned long long e, unsigned long long epochs, double train_loss, double train_acc,
                        int has_test, double test_loss, double test_acc, double secs, double ips) {
    char head[128], test[96] = "", tail[64];
    snprintf(head, sizeof head, "epoch %llu/%llu  train loss %.4f acc %.2f%%", e, epochs, train_loss, 100 * train_acc);
    if (has_test) snprintf(test, sizeof test, "  test loss %.4f acc %.2f%%", test_loss, 100 * test_acc);
    snprintf(tail, sizeof tail, "  %.1fs %.0f img/s", secs, ips);
    const int cols = term_cols(fileno(stderr));
    if (cols <= 0 || strlen(head) + strlen(test) + strlen(tail) < (size_t)cols) {
        say(stderr, WRAP_TEXT, "%s%s%s", head, test, tail);
    } else {
        say(stderr, WRAP_TEXT, "%s%s", head, tail);
        if (has_test) say(stderr, WRAP_TEXT, "%s", test);
    }
}

/* ---- the data side ------------------------------------------------------------------------- */

/* Once the data is known: checks --augment against its images and sets the padding to black in
 * its normalisation (torchvision pads before Normalize), holds out --val-split samples into *val,
 * and checks that --keep-best and --patience have an accuracy to follow. Returns 0 after an error
 * message (*rc set). */
static int prepare_data(train_cfg *c, cnn_data *data, cnn_dataset *val, int *rc) {
    *rc = EXIT_BAD_INPUT;
    if (cnn_augment_check(&c->augment, data->train.c, data->train.h, data->train.w) != CNN_OK) {
        char aug[128];
        cnn_augment_format(&c->augment, aug, sizeof aug);
        train_error("--augment %s: %s (%s)", aug, cnn_last_error(), c->data);
        return 0;
    }
    cnn_augment_set_fill(&c->augment, data->train.c, data->mean, data->std);
    if (c->val_split) {
        if (c->val_split >= (unsigned long long)data->train.n) {
            train_error("--val-split %llu: %s holds %lld training samples; hold out fewer, so that some are left to "
                        "train on", c->val_split, c->data, (long long)data->train.n);
            return 0;
        }
        if (!train_val_split(&data->train, (int64_t)c->val_split, c->seed, val)) {
            train_error("out of memory");
            *rc = 1;
            return 0;
        }
    }
    if ((c->keep_best || c->patience) && !val->n && !data->test.n) {
        train_error("%s: %s has no test split: give --val-split N to have an accuracy to follow",
                    c->keep_best ? "--keep-best" : "--patience", c->data);
        return 0;
    }
    return 1;
}

/* ---- the command --------------------------------------------------------------------------- */

int cmd_train(int argc, char **argv) {
    train_cfg c;
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0) return rc;
    rc = EXIT_BAD_INPUT;
    /* Every output path given is checked before anything is loaded, let alone trained. */
    if ((c.out && !check_output("--out", c.out, 0)) || (c.log && !check_output("--log", c.log, 0)) ||
        (c.plot && !check_output("--plot", c.plot, 1)))
        return EXIT_BAD_INPUT;
    /* No output may be an input or another output; --resume X --out X goes on in place. */
    const cli_file outs[3] = {{"--out", c.out}, {"--log", c.log}, {"--plot", c.plot}};
    const cli_file ins[4] = {{"--model", c.model}, {"--data", c.data}, {"--weights", c.weights}, {"--resume", c.resume}};
    if (!cli_check_same_files("train", outs, 3, ins, 4, "--resume", "--out")) return EXIT_BAD_INPUT;
    /* Each output is locked for the whole run, from before anything is loaded: a second run
     * writing one of them is refused now, not found racing this one at its first checkpoint. */
    cnn_safe_lock *locks[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++)
        if (outs[i].path && cnn_safe_lock_take(outs[i].path, &locks[i]) != CNN_OK) {
            train_error("%s %s: %s", outs[i].opt, outs[i].path, cnn_last_error());
            for (int j = 0; j < i; j++) cnn_safe_lock_release(locks[j]);
            return EXIT_BAD_INPUT;
        }

    cnn_net *net = NULL;
    cnn_st *wst = NULL;
    cnn_optim *opt = NULL;
    cnn_data data;
    memset(&data, 0, sizeof data);
    float *xb = NULL, *dy = NULL, *xa = NULL; /* xa: the samples before augmentation */
    cnn_dataset val = {0};                     /* --val-split's samples */
    cnn_safe_lock *best_lock = NULL;
    int64_t *yb = NULL, *perm = NULL;
    cnn_tensor *ostate = NULL; /* the optimizer's state, checked finite after every update */
    int n_ostate = 0;
    history hist;
    memset(&hist, 0, sizeof hist);
    char *model_text = NULL, *old_log = NULL;
    cnn_status st;
    unsigned long long start_epoch = 0, step = 0;
    train_pos resume_at = {0};   /* where a checkpoint given to --resume stopped */
    double test_acc = NAN;       /* after the last epoch evaluated */
    const char *last_checkpoint = NULL; /* the latest complete checkpoint on disk, to resume from */
    int training = 0;                   /* the first step has begun */

    const int threads = cli_threads(c.threads);
    if (!threads) goto fail_arg;
    if ((st = cnn_net_load(c.model, &net))) goto fail;
    model_text = read_text(c.model);
    if (!model_text) {
        train_error("%s: cannot read", c.model);
        goto done;
    }
    int in[3], out[3];
    cnn_net_input_shape(net, in);
    cnn_net_output_shape(net, out);
    if (!cnn_net_output_is_flat(net)) {
        train_error("%s: the output is %dx%dx%d; training with cross-entropy needs a flat output of class scores "
                    "(end the model with flatten or linear)", c.model, out[0], out[1], out[2]);
        goto done;
    }
    const int classes = out[0];

    if (c.resume) {
        if ((st = cnn_st_load(c.resume, &wst))) goto fail;
        const char *saved = cnn_st_metadata(wst, "model");
        if (saved && strcmp(saved, model_text)) {
            train_error("%s: this checkpoint was trained for a different model than %s", c.resume, c.model);
            goto done;
        }
        if (!restore_settings(wst, c.resume, &c, &resume_at)) goto done;
        start_epoch = resume_at.epoch, step = resume_at.step;
        if ((st = cnn_net_load_weights(net, wst, 0))) {
            cnn_error_prefix(c.resume);
            goto fail;
        }
        last_checkpoint = c.resume;
    } else if (c.weights) {
        if ((st = cnn_st_load(c.weights, &wst))) goto fail;
        const char *saved = cnn_st_metadata(wst, "model");
        if (saved && strcmp(saved, model_text)) {
            train_error("%s: these weights were trained for a different model than %s", c.weights, c.model);
            goto done;
        }
        if ((st = cnn_net_load_weights(net, wst, 0))) {
            cnn_error_prefix(c.weights);
            goto fail;
        }
    } else if ((st = cnn_net_init(net, c.init_seed))) {
        goto fail;
    }
    /* The records of the epochs done: from the checkpoint, else (older checkpoints) the old log. */
    if (!history_init(&hist, c.epochs)) goto nomem;
    if (c.resume && start_epoch > 0) {
        if (c.log) old_log = read_all(c.log);
        if (!history_resume(&hist, cnn_st_metadata(wst, "history"), old_log, start_epoch)) goto nomem;
        free(old_log);
        old_log = NULL;
    }

    if ((st = cnn_data_open(c.data, c.data_dir, &data))) goto fail;
    if (data.train.c != in[0] || data.train.h != in[1] || data.train.w != in[2]) {
        train_error("%s: samples are %dx%dx%d, but %s takes %dx%dx%d", c.data, data.train.c, data.train.h,
                    data.train.w, c.model, in[0], in[1], in[2]);
        goto done;
    }
    if (data.num_classes > classes) {
        train_error("%s: label %d is out of range for the model's %d outputs", c.data, data.num_classes - 1, classes);
        goto done;
    }
    if (data.train.n < 1) {
        train_error("%s: the training split is empty", c.data);
        goto done;
    }
    if (!prepare_data(&c, &data, &val, &rc)) goto done;
    /* onecycle sets SGD's momentum at every step, 0.95 first, even when --momentum is 0 (torch's
     * param group then gets momentum too, and its buffers): the optimizer is made with buffers. */
    cnn_optim_config ocfg = c.opt;
    if (c.schedule == CNN_SCHEDULE_ONECYCLE && ocfg.kind == CNN_OPTIM_SGD && ocfg.momentum == 0 && !ocfg.nesterov)
        ocfg.momentum = 0.95;
    if ((st = cnn_optim_create(net, &ocfg, &opt))) goto fail;
    if (c.resume && (st = cnn_optim_load_state(opt, wst, (int64_t)step))) {
        cnn_error_prefix(c.resume);
        goto fail;
    }
    cnn_st_free(wst);
    wst = NULL;
    if (start_epoch >= c.epochs) {
        train_error("%s already holds %llu epoch(s); ask for more with --epochs", c.resume, start_epoch);
        goto done;
    }

    const int batch = (int)c.batch;
    const size_t chw = (size_t)in[0] * in[1] * in[2];
    if ((st = cnn_net_reserve(net, batch))) goto fail;
    cnn_net_set_input_grad(net, 0);   /* training needs only the parameter gradients */
    xb = malloc((size_t)batch * chw * sizeof *xb);
    yb = malloc((size_t)batch * sizeof *yb);
    dy = malloc((size_t)batch * classes * sizeof *dy);
    perm = malloc((size_t)data.train.n * sizeof *perm);
    n_ostate = cnn_optim_state(opt, NULL, 0);
    ostate = malloc((size_t)(n_ostate > 0 ? n_ostate : 1) * sizeof *ostate);
    if (cnn_augment_active(&c.augment) && !(xa = malloc((size_t)batch * chw * sizeof *xa))) goto nomem;
    if (!xb || !yb || !dy || !perm || !ostate) goto nomem;
    cnn_optim_state(opt, ostate, n_ostate);
    const int64_t steps_per_epoch = (data.train.n + batch - 1) / batch;
    cnn_schedule_config sched = {.kind = c.schedule, .base = c.opt.lr, .per_step = c.per_step,
                                 .total_steps = (int64_t)c.epochs * steps_per_epoch, .steps_per_epoch = steps_per_epoch,
                                 .step_size = (int64_t)c.step_size, .gamma = c.gamma, .n_milestones = c.n_milestones,
                                 .warmup = (int64_t)c.warmup};
    memcpy(sched.milestones, c.milestones, sizeof c.milestones);
    if (cnn_schedule_check(&sched) != CNN_OK) {
        train_error("%s", cnn_last_error());
        goto done;
    }
    if (resume_at.batch > 0 && (resume_at.samples != data.train.n || resume_at.batch > steps_per_epoch)) {
        train_error("%s was written in the middle of an epoch of %lld samples; %s holds %lld: resume it on the same "
                    "data", c.resume, (long long)resume_at.samples, c.data, (long long)data.train.n);
        goto done;
    }
    /* The checkpoint: --out, else the one resumed (it goes on), else a new one under runs/. */
    const char *out_why = "";
    if (!c.out && c.resume) {
        c.out = c.resume;
        out_why = " (the checkpoint resumed; no --out given)";
        if (!check_output(NULL, c.out, 0)) goto done;
    } else if (!c.out) {
        if (!default_out(&c, &data)) goto done;
        out_why = " (no --out given)";
    }
    if (!locks[0] && cnn_safe_lock_take(c.out, &locks[0]) != CNN_OK) {
        train_error("%s", cnn_last_error());
        goto done;
    }
    if (c.keep_best) {
        if (!train_best_path(c.out, c.best_buf, sizeof c.best_buf)) {
            train_error("--keep-best: the path of %s is too long", c.out);
            goto done;
        }
        if (!check_output("--keep-best", c.best_buf, 0)) goto done;
        const cli_file best_outs[4] = {{"--keep-best", c.best_buf}, {"--out", c.out}, {"--log", c.log},
                                       {"--plot", c.plot}};
        if (!cli_check_same_files("train", best_outs, 4, ins, 4, "--resume", "--out")) goto done;
        if (cnn_safe_lock_take(c.best_buf, &best_lock) != CNN_OK) {
            train_error("--keep-best %s: %s", c.best_buf, cnn_last_error());
            goto done;
        }
    }
    /* The log holds the records of the epochs done (a resumed run's history), then one per epoch;
     * it is rewritten whole, as every output is (src/io/safe_write.h), after every epoch. */
    if (c.log && cnn_safe_write_bytes(c.log, hist.text ? hist.text : "", hist.len) != CNN_OK) {
        train_error("--log %s", cnn_last_error());
        goto done;
    }
    /* The handlers go in before the line that says training has begun: a signal sent on seeing
     * it must find them in place, not end the process by the default action. */
    catch_stop_signals();
    say(stderr, WRAP_TEXT, "training %s on %s (%lld train, %lld test), %s lr %g, batch %d, epochs %llu..%llu, %d thread%s",
        c.model, data.name, (long long)data.train.n, (long long)data.test.n, optim_name(c.opt.kind), c.opt.lr, batch,
        start_epoch + 1, c.epochs, threads, threads == 1 ? "" : "s");
    char every[64] = "";
    if (c.checkpoint_every) snprintf(every, sizeof every, " and every %llu steps", c.checkpoint_every);
    say(stderr, WRAP_TEXT, "checkpoint %s after every epoch%s%s", c.out, every, out_why);
    if (resume_at.batch > 0)
        say(stderr, WRAP_TEXT, "resuming epoch %llu after batch %lld of %lld", start_epoch + 1,
            (long long)resume_at.batch, (long long)steps_per_epoch);
    if (val.n) say(stderr, WRAP_TEXT, "validation: %lld training samples held out (--val-split, drawn from seed %llu)",
                   (long long)val.n, c.seed);
    if (cnn_augment_active(&c.augment)) {
        char aug[128];
        cnn_augment_format(&c.augment, aug, sizeof aug);
        say(stderr, WRAP_TEXT, "augment: %s", aug);
    }
    if (c.resume && hist.first > 1)
        say(stderr, WRAP_TEXT, "note: %s holds no record of epoch%s 1..%llu; the log and the plot start at epoch %llu",
            c.resume, hist.first > 2 ? "s" : "", hist.first - 1, hist.first);

    const int tty = isatty(fileno(stderr));
    unsigned long long epochs_done = c.epochs; /* less after an early stop */
    training = 1;
    for (unsigned long long e = start_epoch; e < c.epochs; e++) {
        /* The rate of the epoch's first step; each step sets its own, and the log records the last. */
        double lr = cnn_schedule_at(&sched, (int64_t)e * steps_per_epoch, NULL);
        epoch_order(perm, data.train.n, c.seed, e, c.shuffle);
        /* A resumed epoch skips the batches its checkpoint had done, and goes on from their totals. */
        const train_pos *from = e == start_epoch ? &resume_at : NULL;
        const int64_t b0 = from ? from->batch : 0;
        const double secs0 = from ? from->seconds : 0; /* the epoch's training time before this run */
        double last_draw = 0, loss_sum = from ? from->loss_sum : 0;
        int64_t correct = from ? from->correct : 0;
        int64_t seen = b0 * batch < data.train.n ? b0 * batch : data.train.n;
        const int64_t seen0 = seen;
        const double t0 = now();
        for (int64_t b = b0; b < steps_per_epoch; b++) {
            const int64_t at = b * batch;
            const int n = (int)(data.train.n - at < batch ? data.train.n - at : batch);
            train_gather(&data.train, perm + at, n, xb, yb, &c.augment, xa, c.seed, e);
            cnn_net_zero_grad(net);
            /* Dropout's masks are drawn from (seed, step), so that a resumed run draws the same. */
            cnn_net_set_training(net, 1);
            cnn_net_set_seed(net, c.seed ^ (0x9E3779B97F4A7C15ull * (step + 1)));
            float loss;
            cnn_net_forward(net, xb, n);
            const float *y = cnn_net_output(net);
            cnn_loss_cross_entropy_smooth(y, yb, n, classes, c.label_smoothing, &loss, dy);
            for (int i = 0; i < n; i++) correct += argmax(y + (size_t)i * classes, classes) == yb[i];
            cnn_net_backward(net, dy);
            if (!isfinite(loss) || !grads_finite(net)) {
                char what[256];
                describe_nonfinite(net, n, what, sizeof what);
                train_error("step %llu (epoch %llu): the loss is %g; first non-finite: %s. Stopped; %s%s. Try a lower "
                            "--lr.", step + 1, e + 1, (double)loss, what,
                            last_checkpoint ? "the last good checkpoint is kept: " : "no checkpoint was written",
                            last_checkpoint ? last_checkpoint : "");
                if (last_checkpoint) print_resume_command(&c, last_checkpoint);
                rc = 1;
                goto done;
            }
            if (c.clip > 0) cnn_net_clip_grad_norm(net, c.clip, NULL);
            double momentum;
            lr = cnn_schedule_at(&sched, (int64_t)e * steps_per_epoch + b, &momentum);
            if (!isnan(momentum)) cnn_optim_set_momentum(opt, momentum);
            cnn_optim_step(opt, lr);
            step++;
            char bad[512];
            if (!state_finite(net, ostate, n_ostate, step, bad, sizeof bad)) {
                train_error("step %llu (epoch %llu): %s (the loss was %g). Stopped; %s%s. Try a lower --lr.", step,
                            e + 1, bad, (double)loss,
                            last_checkpoint ? "the last good checkpoint is kept: " : "no checkpoint was written",
                            last_checkpoint ? last_checkpoint : "");
                if (last_checkpoint) print_resume_command(&c, last_checkpoint);
                rc = 1;
                goto done;
            }
            loss_sum += (double)loss * n;
            seen += n;
            if (tty && (now() - last_draw >= 0.1 || b == steps_per_epoch - 1)) {
                last_draw = now();
                const double ips = last_draw > t0 ? (double)(seen - seen0) / (last_draw - t0) : 0;
                progress_bar(e + 1, c.epochs, b + 1, steps_per_epoch, (double)seen / (double)data.train.n, ips,
                             ips > 0 ? (double)(data.train.n - seen) / ips : 0, loss_sum / seen,
                             (double)correct / seen);
            }
            const train_pos pos = {.epoch = e, .step = step, .batch = b + 1, .correct = correct, .loss_sum = loss_sum,
                                   .seconds = secs0 + now() - t0};
            if (stop_signal || streams_failed()) {
                rc = stop_training(&c, model_text, &data, net, opt, &pos, &hist, steps_per_epoch, test_acc,
                                   last_checkpoint);
                goto done;
            }
            if (c.checkpoint_every && step % c.checkpoint_every == 0 && b + 1 < steps_per_epoch) {
                if (!write_checkpoint(&c, model_text, &data, net, opt, &pos, &hist, test_acc, &st)) goto fail;
                last_checkpoint = c.out;
            }
        }
        const double run_secs = now() - t0, secs = secs0 + run_secs; /* training only: before the evaluation */
        const double ips = run_secs > 0 ? (double)(seen - seen0) / run_secs : 0;
        const double train_loss = loss_sum / seen, train_acc = (double)correct / seen;
        double test_loss = NAN;
        test_acc = NAN;
        if (data.test.n && !evaluate(net, &data.test, batch, classes, yb, &test_loss, &test_acc, NULL)) {
            train_error("evaluation failed: %s", cnn_last_error());
            rc = 1;
            goto done;
        }
        double val_loss = NAN, val_acc = NAN;
        if (val.n && !evaluate(net, &val, batch, classes, yb, &val_loss, &val_acc, NULL)) {
            train_error("evaluation failed: %s", cnn_last_error());
            rc = 1;
            goto done;
        }
        print_epoch(e + 1, c.epochs, train_loss, train_acc, data.test.n > 0, test_loss, test_acc, secs, ips);
        if (val.n) say(stderr, WRAP_TEXT, "  validation loss %.4f acc %.2f%%", val_loss, 100 * val_acc);
        char rec[512], tl[32] = "null", ta[32] = "null";
        if (data.test.n) snprintf(tl, sizeof tl, "%.6f", test_loss), snprintf(ta, sizeof ta, "%.6f", test_acc);
        snprintf(rec, sizeof rec, "{\"epoch\": %llu, \"step\": %llu, \"lr\": %.9g, \"train_loss\": %.6f, "
                                  "\"train_acc\": %.6f, \"test_loss\": %s, \"test_acc\": %s, \"seconds\": %.3f, "
                                  "\"images_per_s\": %.1f}",
                 e + 1, step, lr, train_loss, train_acc, tl, ta, secs, ips);
        if (val.n) { /* the validation figures go in before the closing brace */
            const size_t k = strlen(rec) - 1;
            snprintf(rec + k, sizeof rec - k, ", \"val_loss\": %.6f, \"val_acc\": %.6f}", val_loss, val_acc);
        }
        /* The best accuracy so far (validation, else test), with the best checkpoint written before
         * the epoch's: a crash between them redoes the epoch, which writes the same best again. */
        const double acc = val.n ? val_acc : test_acc;
        if (!isnan(acc) && (!c.best_epoch || acc > c.best_acc)) {
            c.best_acc = acc, c.best_epoch = e + 1;
            if (c.keep_best && !write_best(&c, model_text, &data, net, opt, e + 1, step, &hist, rec, test_acc, &st))
                goto fail;
        }
        if (!history_add(&hist, rec)) goto nomem;
        /* The log is rewritten whole, atomically. One that cannot be written (a full disk) ends the
         * run, after the checkpoint of the epoch (whose record it holds in its history). */
        char log_error[512] = "";
        if (c.log && cnn_safe_write_bytes(c.log, hist.text, hist.len) != CNN_OK)
            snprintf(log_error, sizeof log_error, "%s", cnn_last_error());
        const train_pos done_pos = {.epoch = e + 1, .step = step};
        if (!write_checkpoint(&c, model_text, &data, net, opt, &done_pos, &hist, test_acc, &st)) goto fail;
        last_checkpoint = c.out;
        if (log_error[0]) {
            train_error("--log %s. Stopped after epoch %llu; checkpoint written to %s", log_error, e + 1, c.out);
            if (e + 1 < c.epochs) print_resume_command(&c, last_checkpoint);
            rc = EXIT_IO;
            goto done;
        }
        if (c.plot) {
            char err[512];
            const unsigned long long f = hist.first - 1, n_ep = e + 1 - f;
            if (!plot_curves(c.plot, (int)hist.first, (int)n_ep, hist.train_loss + f,
                             data.test.n ? hist.test_loss + f : NULL, hist.train_acc + f,
                             data.test.n ? hist.test_acc + f : NULL, c.model, err, sizeof err)) {
                train_error("%s", err);
                print_resume_command(&c, last_checkpoint);
                rc = EXIT_IO; /* its path was checked before the first step: the machine failed */
                goto done;
            }
        }
        if (c.patience && c.best_epoch && e + 1 - c.best_epoch >= c.patience && e + 1 < c.epochs) {
            say(stderr, WRAP_TEXT, "early stop: the %s accuracy has not improved for %llu epoch%s (--patience %llu); "
                "the best was %.2f%% after epoch %llu", val.n ? "validation" : "test", e + 1 - c.best_epoch,
                e + 1 - c.best_epoch == 1 ? "" : "s", c.patience, 100 * c.best_acc, c.best_epoch);
            epochs_done = e + 1;
            break;
        }
        if ((stop_signal || streams_failed()) && e + 1 < c.epochs) {
            rc = stop_training(&c, model_text, &data, net, opt, &done_pos, &hist, steps_per_epoch, test_acc,
                               last_checkpoint);
            goto done;
        }
    }
    end_bar();
    if (data.test.n) say(stdout, WRAP_TEXT, "test accuracy %.2f%% after %llu epoch(s)", 100 * test_acc, epochs_done);
    say(stdout, WRAP_TEXT, "checkpoint %s", c.out);
    if (c.keep_best && c.best_epoch)
        say(stdout, WRAP_TEXT, "best checkpoint %s (%s accuracy %.2f%% after epoch %llu)", c.best_buf,
            val.n ? "validation" : "test", 100 * c.best_acc, c.best_epoch);
    if (c.plot) say(stdout, WRAP_TEXT, "plot %s", c.plot);
    /* Every epoch is done and in the checkpoint; but a message that was lost is still an error. */
    rc = stop_signal == SIGPIPE ? 128 + SIGPIPE : streams_failed() ? EXIT_IO : 0;
    goto done;
nomem:
    train_error("out of memory");
    rc = 1;
    goto done;
fail_arg:
    st = CNN_ERR_ARG;
fail:
    rc = train_report(st, training);
    if (training && last_checkpoint) print_resume_command(&c, last_checkpoint);
done:
    end_bar();
    for (int i = 0; i < 3; i++) cnn_safe_lock_release(locks[i]);
    cnn_safe_lock_release(best_lock);
    free(xa), free(val.x), free(val.y);
    free(xb), free(yb), free(dy), free(perm), free(model_text), free(old_log), free(ostate);
    history_free(&hist);
    cnn_optim_free(opt);
    cnn_st_free(wst);
    cnn_data_free(&data);
    cnn_net_free(net);
    return rc;
}
