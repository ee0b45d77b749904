/* Crash safety of cnn train: checkpoints written every N steps with --checkpoint-every, SIGKILL
 * at random moments 20 times in a row (after each kill the checkpoint on disk is the old one or a
 * complete new one, it loads, --resume goes on from it, and the weights at the end equal, bit for
 * bit, those of a run never killed), SIGINT and SIGTERM that stop cleanly with a checkpoint and
 * the command that resumes it, and the checks on a mid-epoch checkpoint resumed with other
 * settings or data.
 *
 * The kill moments are random; CNN_KILL_SEED=S replays a sequence, and every failure names the
 * seed. */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <stdint.h>
#include <sys/stat.h>
#include <sys/time.h>

static char dir[64];
static char model_p[512], data_p[512], other_data_p[512], ref_p[512];
static double ref_seconds;   /* the wall time of the uninterrupted reference run, */
static double start_seconds; /* of which until it starts training */
static double train_seconds; /* and training */
static uint64_t kill_seed;

static char *path(char *buf, const char *name) { return tu_join(buf, dir, name); }

static const char MODEL[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\nrelu\nmaxpool2d kernel_size=2\n"
                            "flatten\nlinear out_features=3\n";

/* Where class k's bright 2×2 patch is in the data sets here. */
static void patch_at(int k, int *row, int *col) { *row = 2 * k, *col = k; }

/* A learnable synthetic data set of n training and n_test test samples of 1×6×6 in 3 classes;
 * `salt` changes its noise. */
static void make_dataset(const char *p, int n, int n_test, uint64_t salt) {
    tu_make_dataset(p, (tu_dataset){.n = n, .n_test = n_test, .seed = 12345 + salt, .at = patch_at});
}

/* The settings of every run here: 600 samples in batches of 8 are 75 steps per epoch, 6 epochs,
 * Adam (whose state includes the step count), a checkpoint every 4 steps. */
#define TRAIN_ARGS(out)                                                                                          \
    "train", "--model", model_p, "--data", data_p, "--epochs", "6", "--batch", "8", "--optimizer", "adam", "--lr", \
        "0.01", "--seed", "7", "--checkpoint-every", "4", "--out", (out)

/* Starts the CLI with `args` (NULL-terminated), stdout and stderr to dir/spawn.stdout and
 * dir/spawn.stderr, in cli_cwd if set, without waiting for it. */
static pid_t spawn(const char *const *args) {
    char out[80], err[80];
    snprintf(out, sizeof out, "%s/spawn.stdout", dir);
    snprintf(err, sizeof err, "%s/spawn.stderr", dir);
    return cli_spawn(args, out, err);
}

/* Waits up to `seconds` for pid to exit; returns 1 with its status in *ws, or 0 if it still runs. */
static int wait_for(pid_t pid, double seconds, int *ws) {
    const double until = tu_now() + seconds;
    const struct timespec tick = {0, 200 * 1000};
    for (;;) {
        const pid_t w = waitpid(pid, ws, WNOHANG);
        if (w == pid) return 1;
        assert_true(w == 0 || errno == EINTR);
        if (tu_now() >= until) return 0;
        nanosleep(&tick, NULL);
    }
}

static char *read_stderr(void) {
    static char buf[1 << 16];
    char p[600];
    snprintf(p, sizeof p, "%s/spawn.stderr", dir);
    return cli_read_file(p, buf, sizeof buf);
}

/* Waits until the spawned run has started training (it prints "training ..."); fails the test if
 * it ends before, or takes a minute. */
static void wait_training(pid_t pid) {
    const double until = tu_now() + 60;
    int ws;
    while (!strstr(read_stderr(), "training ")) {
        if (wait_for(pid, 0.001, &ws)) fail_msg("the run ended before training, status %d:\n%s", ws, read_stderr());
        if (tu_now() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            fail_msg("the run did not start training within a minute");
        }
    }
}

/* The step count in a checkpoint's metadata; fails unless it loads as a training checkpoint. */
static long long checkpoint_step(const char *p) {
    cnn_st *st = NULL;
    if (cnn_st_load(p, &st) != CNN_OK)
        fail_msg("the checkpoint %s does not load: %s (kill seed %llu)", p, cnn_last_error(),
                 (unsigned long long)kill_seed);
    const char *fmt = cnn_st_metadata(st, "format"), *step = cnn_st_metadata(st, "step");
    if (!fmt || strcmp(fmt, "cnn-checkpoint-1") || !step)
        fail_msg("%s is not a complete checkpoint (kill seed %llu)", p, (unsigned long long)kill_seed);
    const long long s = atoll(step);
    cnn_st_free(st);
    return s;
}

static uint64_t rng(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int setup(void **state) {
    (void)state;
    if (tu_make_temp_dir(dir, "test_crashsafe")) return -1;
    tu_write_text(path(model_p, "model.cnn"), MODEL);
    make_dataset(path(data_p, "data.safetensors"), 600, 30, 0);
    make_dataset(path(other_data_p, "other.safetensors"), 200, 30, 1);
    const char *e = getenv("CNN_KILL_SEED");
    kill_seed = e && *e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);

    /* The reference: the same run, never interrupted; how long it takes to start training (load
     * the model and data) and then to train. */
    path(ref_p, "reference.safetensors");
    const double t0 = tu_now();
    const pid_t pid = spawn((const char *const[]){TRAIN_ARGS(ref_p), NULL});
    wait_training(pid);
    start_seconds = tu_now() - t0;
    int ws;
    if (!wait_for(pid, 600, &ws)) return -1;
    ref_seconds = tu_now() - t0;
    train_seconds = ref_seconds - start_seconds;
    return WIFEXITED(ws) && WEXITSTATUS(ws) == 0 ? 0 : -1;
}

/* tu_same_tensors, naming the kill seed on failure. */
static int same_tensors_seed(const char *pa, const char *pb) {
    char context[48];
    snprintf(context, sizeof context, " (kill seed %llu)", (unsigned long long)kill_seed);
    return tu_same_tensors(pa, pb, context);
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* The reference holds what a checkpoint must: 4 weights and Adam's 8 buffers, after 450 steps. */
static void test_reference_is_complete(void **state) {
    (void)state;
    assert_int_equal(same_tensors_seed(ref_p, ref_p), 12);
    assert_int_equal(checkpoint_step(ref_p), 450);
}

/* SIGKILL at a random moment, 20 times in a row, each run resuming from what the one before left
 * on disk. One kill in four comes while the run starts (loads the model, the checkpoint and the
 * data), at a random moment in the time the reference took for that; the others come once it
 * trains, at a random moment within a fifteenth of the reference's training time: short enough
 * that 20 runs together do not reach the end (should they, the chain starts again from nothing,
 * with the window halved), long enough for many to fall in the middle of a checkpoint write. */
static void test_sigkill_20_times(void **state) {
    (void)state;
    char ck[512], tmp[600];
    path(ck, "killed.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", ck);
    uint64_t s = kill_seed;
    int kills = 0, mid_write = 0, restarts = 0, runs = 0, in_start = 0;
    double window = train_seconds / 15;
    while (kills < 20) {
        assert_true(++runs < 200);
        size_t old_len;
        unsigned char *old = tu_slurp(ck, &old_len);
        const long long old_step = old ? checkpoint_step(ck) : -1;
        remove(tmp); /* what a kill leaves of a write in progress: this run's alone is counted */
        const pid_t pid = old ? spawn((const char *const[]){TRAIN_ARGS(ck), "--resume", ck, NULL})
                              : spawn((const char *const[]){TRAIN_ARGS(ck), NULL});
        const int early = rng(&s) % 4 == 0;
        if (!early) wait_training(pid);
        in_start += early;
        const double delay = (early ? start_seconds : window) * (double)(rng(&s) % 1000) / 1000.0;
        int ws;
        if (!wait_for(pid, delay, &ws)) {
            kill(pid, SIGKILL);
            assert_int_equal(waitpid(pid, &ws, 0), pid);
        }
        if (!WIFSIGNALED(ws)) {
            /* It ran to the end before the kill: the chain of runs must have ended where the
             * reference did. Start again from nothing, to kill 20 times in a row. */
            if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
                fail_msg("run %d ended with status %d; stderr:\n%s (kill seed %llu)", runs, ws, read_stderr(),
                         (unsigned long long)kill_seed);
            assert_true(same_tensors_seed(ref_p, ck) == 12);
            remove(ck);
            free(old);
            kills = 0, mid_write = 0, in_start = 0, restarts++, window /= 2;
            continue;
        }
        assert_int_equal(WTERMSIG(ws), SIGKILL);
        kills++;
        mid_write += tu_exists(tmp);
        /* The checkpoint is the old one, byte for byte, or a complete newer one. */
        size_t len;
        unsigned char *now_bytes = tu_slurp(ck, &len);
        if (!now_bytes && old)
            fail_msg("kill %d: the checkpoint disappeared (kill seed %llu)", kills, (unsigned long long)kill_seed);
        if (now_bytes && !(old && len == old_len && !memcmp(old, now_bytes, len))) {
            const long long step = checkpoint_step(ck);
            if (step <= old_step)
                fail_msg("kill %d: the checkpoint changed but went from step %lld to %lld (kill seed %llu)", kills,
                         old_step, step, (unsigned long long)kill_seed);
        }
        free(old);
        free(now_bytes);
    }
    /* The kills fell during training, not all before it, and the chain of runs advanced. */
    const long long reached = tu_exists(ck) ? checkpoint_step(ck) : 0;
    if (reached <= 0) fail_msg("20 kills and no checkpoint written (kill seed %llu)", (unsigned long long)kill_seed);
    /* Then it runs to the end, and ends exactly where the run that was never killed did. */
    cli_result r;
    if (tu_exists(ck))
        cli_run(&r, dir, (const char *const[]){TRAIN_ARGS(ck), "--resume", ck, NULL});
    else
        cli_run(&r, dir, (const char *const[]){TRAIN_ARGS(ck), NULL});
    CLI_EXPECT(&r, 0, "epoch 6/6");
    assert_int_equal(same_tensors_seed(ref_p, ck), 12);
    assert_int_equal(checkpoint_step(ck), 450);
    print_message("# 20 SIGKILLs in a row (%d restarts): %d while starting, %d during a checkpoint write; reached "
                  "step %lld of 450; the resumed run's final weights equal the uninterrupted run's (kill seed %llu)\n",
                  restarts, in_start, mid_write, reached, (unsigned long long)kill_seed);
}

/* The recipe's settings (issue 14): SGD with Nesterov momentum and weight decay off for biases,
 * OneCycleLR over the run's 150 steps (its momentum cycling too), label smoothing and clipping. */
#define RECIPE_ARGS(out)                                                                                         \
    "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--batch", "8", "--optimizer", "sgd", "--lr", \
        "0.05", "--momentum", "0.9", "--nesterov", "--weight-decay", "0.001", "--no-decay-bn-bias", "--schedule",  \
        "onecycle", "--label-smoothing", "0.1", "--clip-grad-norm", "0.5", "--seed", "7", "--checkpoint-every", "4", \
        "--out", (out)

/* SIGINT or SIGTERM while training: a checkpoint, the command that resumes it, and that command
 * ends exactly where the uninterrupted run did. */
static void stop_and_resume_run(int sig, const char *name, const char *what, int recipe) {
    char ck[512], recipe_ref[512];
    path(ck, name);
    const char *ref = ref_p, *done = "epoch 6/6";
    double seconds = train_seconds;
    long long steps = 450;
    int tensors = 12;
    if (recipe) {   /* its own reference, never interrupted */
        path(recipe_ref, "recipe_reference.safetensors");
        ref = recipe_ref, done = "epoch 2/2", steps = 150, tensors = 8;
        const pid_t pid = spawn((const char *const[]){RECIPE_ARGS(recipe_ref), NULL});
        wait_training(pid);
        const double t0 = tu_now();
        int ws;
        assert_true(wait_for(pid, 600, &ws));
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
        seconds = tu_now() - t0;
        assert_int_equal(checkpoint_step(ref), steps);
    }
    uint64_t s = kill_seed ^ (uint64_t)sig;
    for (int attempt = 0;; attempt++) {
        assert_true(attempt < 20);
        remove(ck);
        const pid_t pid = recipe ? spawn((const char *const[]){RECIPE_ARGS(ck), NULL})
                                 : spawn((const char *const[]){TRAIN_ARGS(ck), NULL});
        /* Once training has started ("training ..." on stderr), at a random moment in it. */
        int ws;
        wait_training(pid);
        if (wait_for(pid, seconds * (double)(rng(&s) % 500) / 1000.0, &ws)) continue; /* ended first: again */
        kill(pid, sig);
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        const char *err = read_stderr();
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) continue; /* it finished as the signal came */
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 128 + sig)
            fail_msg("%s: status %d, expected exit %d; stderr:\n%s", what, ws, 128 + sig, err);
        char want[1100];
        snprintf(want, sizeof want, "checkpoint written to %s", ck);
        if (!strstr(err, what) || !strstr(err, want) || !strstr(err, "resume with: cnn train --model "))
            fail_msg("%s: stderr does not say what happened and how to resume:\n%s", what, err);
        snprintf(want, sizeof want, "--resume %s --out %s", ck, ck);
        assert_non_null(strstr(err, want));
        assert_true(checkpoint_step(ck) < steps);
        break;
    }
    /* Resume as the message says (the settings come from the checkpoint). */
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--out", ck);
    CLI_EXPECT(&r, 0, done);
    assert_int_equal(same_tensors_seed(ref, ck), tensors);
}

static void stop_and_resume(int sig, const char *name, const char *what) { stop_and_resume_run(sig, name, what, 0); }

/* The same with the recipe: the schedule, its momentum, clipping and smoothing go on exactly. */
static void test_recipe_sigint_resumes_exactly(void **s) {
    (void)s, stop_and_resume_run(SIGINT, "recipe.safetensors", "interrupted (SIGINT)", 1);
}

static void test_sigint_stops_cleanly(void **s) { (void)s, stop_and_resume(SIGINT, "sigint.safetensors", "interrupted (SIGINT)"); }
static void test_sigterm_stops_cleanly(void **s) { (void)s, stop_and_resume(SIGTERM, "sigterm.safetensors", "terminated (SIGTERM)"); }

/* Without --out the checkpoint goes to runs/<model>-<data>.safetensors (in the working
 * directory), and the resume command names it. */
static void test_sigint_without_out(void **state) {
    (void)state;
    char work[512], ck[600];
    path(work, "no_out");
    assert_int_equal(mkdir(work, 0700), 0);
    snprintf(ck, sizeof ck, "%s/runs/model-data.safetensors", work);
    cli_cwd = work;
    for (int attempt = 0; attempt < 20; attempt++) {
        remove(ck);
        const pid_t pid = spawn((const char *const[]){"train", "--model", model_p, "--data", data_p, "--epochs", "200",
                                                      "--batch", "8", NULL});
        int ws;
        wait_training(pid);
        kill(pid, SIGINT);
        waitpid(pid, &ws, 0);
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) continue;
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 130) fail_msg("status %d; stderr:\n%s", ws, read_stderr());
        assert_non_null(strstr(read_stderr(), "checkpoint written to runs/model-data.safetensors"));
        assert_non_null(strstr(read_stderr(), "--resume runs/model-data.safetensors --out runs/model-data.safetensors"));
        assert_true(checkpoint_step(ck) > 0);
        cli_cwd = NULL;
        return;
    }
    cli_cwd = NULL;
    fail_msg("training always ended before SIGINT");
}

/* Writes p: the reference checkpoint with the metadata `key` set to `value` (pairs, NULL-ended). */
static void rewrite_reference(const char *p, const char *const *changes) {
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(ref_p, &st), CNN_OK);
    const int n = cnn_st_count(st);
    cnn_tensor t[16];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++) t[i] = *cnn_st_tensor(st, i);
    static const char *const keys[] = {"format", "model",  "epoch", "epoch_step", "epoch_loss_sum", "epoch_correct",
                                       "samples", "epochs", "step", "batch", "seed", "optimizer", "lr", "shuffle",
                                       "step_size", "gamma"};
    enum { NK = sizeof keys / sizeof keys[0] };
    const char *meta[2 * NK];
    for (int i = 0; i < NK; i++) {
        meta[2 * i] = keys[i];
        meta[2 * i + 1] = cnn_st_metadata(st, keys[i]);
        for (int k = 0; changes[k]; k += 2)
            if (!strcmp(changes[k], keys[i])) meta[2 * i + 1] = changes[k + 1];
    }
    assert_int_equal(cnn_st_save(p, t, n, meta, NK), CNN_OK);
    cnn_st_free(st);
}

/* A mid-epoch checkpoint: the reference with its metadata set to 10 batches into epoch 2. */
static void make_mid_epoch(const char *p) {
    rewrite_reference(p, (const char *const[]){"epoch", "1", "epoch_step", "10", "epoch_loss_sum", "9.5",
                                               "epoch_correct", "40", "step", "85", NULL});
}

/* A checkpoint is input like any file: settings out of the options' ranges are refused, not
 * trained with (a batch of 0 divided by zero; 2^62 epochs overflowed an allocation). */
static void test_hostile_checkpoint_settings(void **state) {
    (void)state;
    static const char *const cases[][3] = {
        {"batch", "0", "__metadata__ \"batch\" is '0', not a whole number from 1 to 65536"},
        {"batch", "4294967297", "\"batch\" is '4294967297'"},
        {"epochs", "4611686018427387904", "\"epochs\" is '4611686018427387904', not a whole number from 1 to 100000"},
        {"step_size", "0", "\"step_size\" is '0'"},
        {"gamma", "-1", "\"gamma\" is '-1', not a finite number > 0"},
        {"epoch_step", "1", "\"epoch_loss_sum\" is ''"},   /* mid-epoch, without the epoch's totals */
        {"step", "-3", "\"step\" is '-3'"},
    };
    char ck[512], out[512];
    path(ck, "hostile.safetensors");
    path(out, "hostile_out.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!strcmp(cases[i][0], "epoch_step"))
            rewrite_reference(ck, (const char *const[]){"epoch_step", "1", "epoch_loss_sum", "", NULL});
        else
            rewrite_reference(ck, (const char *const[]){cases[i][0], cases[i][1], NULL});
        cli_result r;
        CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--out", out);
        CLI_EXPECT(&r, 2, ck, cases[i][2]);
        assert_false(tu_exists(out));
    }
}

/* A mid-epoch checkpoint resumes only with its own batch size and data: anything else would
 * skip other samples than the ones it had done. */
static void test_mid_epoch_needs_same_batch_and_data(void **state) {
    (void)state;
    char ck[512], out[512];
    path(ck, "mid.safetensors");
    path(out, "never.safetensors");
    make_mid_epoch(ck);
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--batch", "16", "--out", out);
    CLI_EXPECT(&r, 2, "in the middle of an epoch of batches of 8", "same --batch");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", other_data_p, "--resume", ck, "--out", out);
    CLI_EXPECT(&r, 2, "in the middle of an epoch of 600 samples", "holds 200", "same data");
    assert_false(tu_exists(out));
    /* With both the same, it resumes mid-epoch. */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--out", out);
    CLI_EXPECT(&r, 0, "resuming epoch 2 after batch 10 of 75", "epoch 6/6");
    assert_null(strstr(r.err, "epoch 1/3"));
    assert_int_equal(checkpoint_step(out), 85 + 65 + 4 * 75);
}

/* --checkpoint-every without --out writes to the default checkpoint; a bad value is refused. */
static void test_checkpoint_every_without_out(void **state) {
    (void)state;
    char work[512], ck[600];
    path(work, "every_no_out");
    assert_int_equal(mkdir(work, 0700), 0);
    snprintf(ck, sizeof ck, "%s/runs/model-data.safetensors", work);
    cli_result r;
    cli_cwd = work;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--batch", "8", "--checkpoint-every", "5");
    cli_cwd = NULL;
    CLI_EXPECT(&r, 0, "checkpoint runs/model-data.safetensors after every epoch and every 5 steps");
    assert_int_equal(checkpoint_step(ck), 75);
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--checkpoint-every", "x", "--out", "o");
    CLI_EXPECT(&r, 2, "--checkpoint-every x: expected a whole number");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_is_complete),
        cmocka_unit_test(test_sigkill_20_times),
        cmocka_unit_test(test_sigint_stops_cleanly),
        cmocka_unit_test(test_sigterm_stops_cleanly),
        cmocka_unit_test(test_recipe_sigint_resumes_exactly),
        cmocka_unit_test(test_sigint_without_out),
        cmocka_unit_test(test_mid_epoch_needs_same_batch_and_data),
        cmocka_unit_test(test_hostile_checkpoint_settings),
        cmocka_unit_test(test_checkpoint_every_without_out),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
