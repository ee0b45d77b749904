/* What cnn train and the other commands guard through the real binary: nothing unfinished is
 * published (a step that makes a weight Inf stops the run, names the tensor and the step, and the
 * checkpoint on disk keeps its last good content, with --checkpoint-every 1 too); SIGHUP and a
 * reader of stderr that goes away (`cnn train ... 2>&1 | head -1`) stop training with a
 * checkpoint; a closed or full stdout is an error, not silent loss; a closed stderr does not put
 * messages into the --log file; a write failure during a run exits with 3 (EXIT_IO); every limit's
 * message names the limit. */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <math.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>

static char dir[64];
static char model_p[512], data_p[512], big_p[512], good_p[512];

static char *path(char *buf, const char *name) {
    snprintf(buf, 512, "%s/%s", dir, name);
    return buf;
}

static const char MODEL[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\nrelu\nmaxpool2d kernel_size=2\n"
                            "flatten\nlinear out_features=3\n";

/* The data sets' bright patch: class k's 2×2 square at row 2k, column k. */
static void patch_at(int k, int *row, int *col) { *row = 2 * k, *col = k; }

/* Fails unless p loads as a training checkpoint whose every F32 tensor is finite. */
static void assert_loads_finite(const char *p) {
    cnn_st *st = NULL;
    if (cnn_st_load(p, &st) != CNN_OK) fail_msg("%s does not load: %s", p, cnn_last_error());
    const char *fmt = cnn_st_metadata(st, "format");
    assert_true(fmt && !strcmp(fmt, "cnn-checkpoint-1"));
    for (int i = 0; i < cnn_st_count(st); i++) {
        const cnn_tensor *t = cnn_st_tensor(st, i);
        if (t->dtype != CNN_F32) continue;
        const float *v = t->data;
        for (int64_t k = 0; k < cnn_tensor_numel(t); k++)
            if (!isfinite(v[k])) fail_msg("%s: tensor '%s' holds a non-finite value", p, t->name);
    }
    cnn_st_free(st);
}

/* Copies a file. */
static void copy_file(const char *from, const char *to) {
    size_t n;
    unsigned char *b = tu_slurp(from, &n);
    assert_non_null(b);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    free(b);
}

static int same_bytes(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *x = tu_slurp(a, &na), *y = tu_slurp(b, &nb);
    const int same = x && y && na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}

/* Starts the CLI with `args` without waiting: stdin from /dev/null, stdout to fd `out` and stderr
 * to fd `err` (-1: closed; -2: dir/spawn.stdout or dir/spawn.stderr), file sizes limited to
 * `fsize` bytes when not 0 (SIGXFSZ ignored, so that a write past it fails with EFBIG). */
static pid_t spawn(const char *const *args, int out, int err, long fsize) {
    const char *argv[64];
    int argc = 0;
    argv[argc++] = cli_bin();
    for (int i = 0; args[i]; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    char out_p[600], err_p[600];
    snprintf(out_p, sizeof out_p, "%s/spawn.stdout", dir);
    snprintf(err_p, sizeof err_p, "%s/spawn.stderr", dir);
    remove(out_p), remove(err_p);
    fflush(NULL);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const int in = open("/dev/null", O_RDONLY);
        if (in < 0) _exit(126);
        if (out == -2 && (out = open(out_p, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0) _exit(126);
        if (err == -2 && (err = open(err_p, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0) _exit(126);
        /* Above 2, so that the dup2s below cannot overwrite one another. */
        const int i2 = fcntl(in, F_DUPFD, 10), o2 = out >= 0 ? fcntl(out, F_DUPFD, 10) : -1,
                  e2 = err >= 0 ? fcntl(err, F_DUPFD, 10) : -1;
        dup2(i2, 0);
        if (o2 >= 0) dup2(o2, 1);
        else close(1);
        if (e2 >= 0) dup2(e2, 2);
        else close(2);
        for (int fd = 3; fd < 64; fd++) close(fd);
        if (fsize) {
            signal(SIGXFSZ, SIG_IGN);
            const struct rlimit rl = {(rlim_t)fsize, (rlim_t)fsize};
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(126);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid, double seconds) {
    const double until = tu_now() + seconds;
    const struct timespec tick = {0, 2 * 1000 * 1000};
    int ws;
    for (;;) {
        const pid_t w = waitpid(pid, &ws, WNOHANG);
        if (w == pid) break;
        if (tu_now() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            fail_msg("still running after %.0f s, killed", seconds);
        }
        nanosleep(&tick, NULL);
    }
    if (WIFSIGNALED(ws)) fail_msg("died from signal %d", WTERMSIG(ws));
    assert_true(WIFEXITED(ws));
    return WEXITSTATUS(ws);
}

static char *read_file(const char *name) {
    static char buf[1 << 16];
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return cli_read_file(p, buf, sizeof buf);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cnn_test_guards_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    FILE *f = fopen(path(model_p, "model.cnn"), "wb");
    if (!f) return -1;
    fputs(MODEL, f);
    fclose(f);
    tu_make_dataset(path(data_p, "data.safetensors"), (tu_dataset){.n = 60, .n_test = 30, .at = patch_at});
    tu_make_dataset(path(big_p, "big.safetensors"), (tu_dataset){.n = 3000, .n_test = 30, .at = patch_at});
    /* A good checkpoint after one epoch, for the runs below to resume. */
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--batch", "8", "--out",
            path(good_p, "good.safetensors"));
    return WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* --lr 1e39 makes every weight Inf at the first update: the run stops at that step with exit 1,
 * names the tensor, and the checkpoint resumed and written to (--resume ck --out ck) keeps its
 * old bytes; with --checkpoint-every 1 as well, where a checkpoint would follow every step. */
static void test_inf_update_publishes_nothing(void **state) {
    (void)state;
    char ck[512], want[700];
    path(ck, "ck.safetensors");
    for (int every = 0; every < 2; every++) {
        copy_file(good_p, ck);
        cli_result r;
        if (every)
            CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--out", ck, "--epochs",
                    "3", "--lr", "1e39", "--checkpoint-every", "1");
        else
            CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--out", ck, "--epochs",
                    "3", "--lr", "1e39");
        /* 60 samples in batches of 8: the checkpoint holds 8 steps; the first update is step 9. */
        snprintf(want, sizeof want, "the last good checkpoint is kept: %s", ck);
        CLI_EXPECT(&r, 1, "step 9 (epoch 2): the update of step 9 made the weight '", "Inf", want);
        assert_true(same_bytes(good_p, ck));
        assert_loads_finite(ck);
    }
    /* Without a checkpoint to keep, none is written, and the message says so. */
    char fresh[512];
    path(fresh, "fresh.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--batch", "8", "--optimizer", "adam", "--lr",
            "1e39", "--checkpoint-every", "1", "--out", fresh);
    CLI_EXPECT(&r, 1, "step 1 (epoch 1): the update of step 1 made the weight '", "no checkpoint was written");
    assert_false(tu_exists(fresh));
}

/* Waits until the spawned run's stderr file shows it has started training. */
static void wait_training(pid_t pid) {
    const double until = tu_now() + 60;
    int ws;
    while (!strstr(read_file("spawn.stderr"), "training ")) {
        if (waitpid(pid, &ws, WNOHANG) == pid) fail_msg("ended before training:\n%s", read_file("spawn.stderr"));
        if (tu_now() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            fail_msg("did not start training within a minute");
        }
        const struct timespec tick = {0, 1000 * 1000};
        nanosleep(&tick, NULL);
    }
}

/* SIGHUP (a closed terminal) stops training after the step, writes a checkpoint and exits 129. */
static void test_sighup_writes_checkpoint(void **state) {
    (void)state;
    char ck[512], want[700];
    path(ck, "hup.safetensors");
    const pid_t pid = spawn((const char *const[]){"train", "--model", model_p, "--data", big_p, "--batch", "4",
                                                  "--epochs", "50", "--out", ck, NULL},
                            -2, -2, 0);
    wait_training(pid);
    kill(pid, SIGHUP);
    const int code = wait_exit(pid, 60);
    const char *err = read_file("spawn.stderr");
    if (code != 129) fail_msg("exit %d, expected 129:\n%s", code, err);
    snprintf(want, sizeof want, "checkpoint written to %s", ck);
    assert_non_null(strstr(err, "hung up (SIGHUP)"));
    assert_non_null(strstr(err, want));
    assert_loads_finite(ck);
}

/* `cnn train ... 2>&1 | head -1`: the reader of stdout and stderr closes after the first line. The
 * run does not die of SIGPIPE (141 by the signal) with no checkpoint: it stops with one, exit
 * 128 + SIGPIPE. */
static void test_pipe_reader_goes_away(void **state) {
    (void)state;
    char ck[512];
    path(ck, "pipe.safetensors");
    remove(ck);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    const pid_t pid = spawn((const char *const[]){"train", "--model", model_p, "--data", big_p, "--batch", "4",
                                                  "--epochs", "50", "--out", ck, NULL},
                            fds[1], fds[1], 0);
    close(fds[1]);
    char c;
    while (read(fds[0], &c, 1) == 1 && c != '\n') continue; /* head -1 */
    close(fds[0]);
    const int code = wait_exit(pid, 120);
    assert_int_equal(code, 128 + SIGPIPE);
    assert_loads_finite(ck);
}

/* A full stdout (/dev/full) is an error, with a message on stderr. */
static void test_full_stdout(void **state) {
    (void)state;
    const int full = open("/dev/full", O_WRONLY);
    if (full < 0) {
        print_message("skipped: no /dev/full on this machine\n");
        return;
    }
    const pid_t pid = spawn((const char *const[]){"eval", "--model", model_p, "--weights", good_p, "--data", data_p,
                                                  NULL},
                            full, -2, 0);
    close(full);
    const int code = wait_exit(pid, 60);
    const char *err = read_file("spawn.stderr");
    if (code != 3) fail_msg("exit %d, expected 3:\n%s", code, err);
    assert_non_null(strstr(err, "cnn eval: cannot write the output to stdout: "));
}

/* A closed stdout is an error too; not output written into a descriptor another file took. */
static void test_closed_stdout(void **state) {
    (void)state;
    const pid_t pid = spawn((const char *const[]){"summary", "--model", model_p, NULL}, -1, -2, 0);
    const int code = wait_exit(pid, 60);
    const char *err = read_file("spawn.stderr");
    if (code != 3) fail_msg("exit %d, expected 3:\n%s", code, err);
    assert_non_null(strstr(err, "cnn summary: cannot write the output to stdout: "));
}

/* With stderr closed the --log file does not take descriptor 2: it holds JSON records only, and
 * the run, whose messages cannot be written, stops with a checkpoint and exit 3. */
static void test_closed_stderr_keeps_log_clean(void **state) {
    (void)state;
    char ck[512], log[512];
    path(ck, "closed.safetensors"), path(log, "closed.jsonl");
    remove(ck);
    const pid_t pid = spawn((const char *const[]){"train", "--model", model_p, "--data", data_p, "--batch", "8",
                                                  "--epochs", "2", "--out", ck, "--log", log, NULL},
                            -2, -1, 0);
    const int code = wait_exit(pid, 60);
    assert_int_equal(code, 3);
    const char *text = read_file("closed.jsonl");
    assert_null(strstr(text, "cnn train"));
    assert_null(strstr(text, "training "));
    for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
        assert_int_equal(*p, '{');
        if (!strchr(p, '\n')) break;
    }
    assert_loads_finite(ck);
}

/* A write failure during the run (here a file-size limit, which no file system refuses to honour:
 * the checkpoint is bigger than 2 kB) exits 3, naming what could not be written. */
static void test_write_failure_is_exit_3(void **state) {
    (void)state;
    char ck[512];
    path(ck, "fsize.safetensors");
    remove(ck);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    const pid_t pid = spawn((const char *const[]){"train", "--model", model_p, "--data", data_p, "--batch", "8",
                                                  "--optimizer", "adam", "--out", ck, NULL},
                            -2, fds[1], 2048);
    close(fds[1]);
    static char err[1 << 14];
    size_t n = 0;
    for (ssize_t k; n + 1 < sizeof err && (k = read(fds[0], err + n, sizeof err - 1 - n)) > 0;) n += (size_t)k;
    err[n] = '\0';
    close(fds[0]);
    const int code = wait_exit(pid, 60);
    if (code != 3) fail_msg("exit %d, expected 3:\n%s", code, err);
    assert_non_null(strstr(err, "cannot write"));
    assert_false(tu_exists(ck));
}

/* grad and export too: an output that cannot be written once the work is done (a file-size limit
 * standing for a full disk) exits 3 and leaves no file; a missing output directory, found before
 * any work, is bad usage (2). */
static void test_grad_export_write_failure_is_exit_3(void **state) {
    (void)state;
    char out[512], in[512], missing[512];
    path(out, "fsize_out.safetensors");
    path(missing, "no/such/dir/out.safetensors");
    static const float x[36] = {0}, dy[3] = {1, 0, 0};
    const cnn_tensor t[2] = {{.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {1, 1, 6, 6}, .data = (void *)x},
                             {.name = "grad_output", .dtype = CNN_F32, .ndim = 2, .shape = {1, 3}, .data = (void *)dy}};
    assert_int_equal(cnn_st_save(path(in, "grad_in.safetensors"), t, 2, NULL, 0), CNN_OK);
    const char *const grad[] = {"grad", "--model", model_p, "--init", "1", "--input", in, "--out", out, NULL};
    const char *const export[] = {"export", "--weights", good_p, "--out", out, NULL};
    const char *const *cmds[2] = {grad, export};
    for (int c = 0; c < 2; c++) {
        remove(out);
        const pid_t pid = spawn(cmds[c], -2, -2, 512);
        const int code = wait_exit(pid, 60);
        char err[4096], errp[600];
        snprintf(errp, sizeof errp, "%s/spawn.stderr", dir);
        cli_read_file(errp, err, sizeof err);
        if (code != 3) fail_msg("%s: exit %d, expected 3:\n%s", cmds[c][0], code, err);
        assert_non_null(strstr(err, out));
        assert_false(tu_exists(out));
    }
    cli_result r;
    CLI_RUN(&r, dir, "grad", "--model", model_p, "--init", "1", "--input", in, "--out", missing);
    CLI_EXPECT(&r, 2, missing, "does not exist");
    CLI_RUN(&r, dir, "export", "--weights", good_p, "--out", missing);
    CLI_EXPECT(&r, 2, missing, "does not exist");
}

/* Each limit's message names the limit. */
static void test_limit_messages(void **state) {
    (void)state;
    char big_model[512];
    FILE *f = fopen(path(big_model, "wide.cnn"), "wb");
    assert_non_null(f);
    fputs("input 1 6 6\nconv2d out_channels=1048577 kernel_size=3\nflatten\n", f);
    fclose(f);
    cli_result r;
    CLI_RUN(&r, dir, "summary", "--model", big_model);
    CLI_EXPECT(&r, 2, "out_channels=1048577", "at most 1048576");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--batch", "100000");
    CLI_EXPECT(&r, 2, "--batch 100000", "from 1 to 65536");
    static const char *const bad[] = {"abc", "0", "1025", "4x", "-2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char want[64];
        setenv("CNN_NUM_THREADS", bad[i], 1);
        CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", good_p, "--data", data_p);
        unsetenv("CNN_NUM_THREADS");
        snprintf(want, sizeof want, "CNN_NUM_THREADS=%s: expected a whole number from 1 to 1024", bad[i]);
        CLI_EXPECT(&r, 2, want);
    }
    setenv("CNN_NUM_THREADS", "2", 1);
    CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", good_p, "--data", data_p);
    unsetenv("CNN_NUM_THREADS");
    CLI_EXPECT(&r, 0, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inf_update_publishes_nothing),
        cmocka_unit_test(test_sighup_writes_checkpoint),
        cmocka_unit_test(test_pipe_reader_goes_away),
        cmocka_unit_test(test_full_stdout),
        cmocka_unit_test(test_closed_stdout),
        cmocka_unit_test(test_closed_stderr_keeps_log_clean),
        cmocka_unit_test(test_write_failure_is_exit_3),
        cmocka_unit_test(test_grad_export_write_failure_is_exit_3),
        cmocka_unit_test(test_limit_messages),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
