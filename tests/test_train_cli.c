/* cnn train as its users meet it: it always leaves a checkpoint (runs/<model>-<data>.safetensors
 * without --out), checks every output path before the first step, keeps one log and one plot of
 * every epoch across resumes, prints a resume command that repeats every option and runs as
 * printed, writes JSON Lines with null where there is no test split, uses every core by default,
 * and on a terminal of 80 or 60 columns draws a progress bar that fits and redraws in place.
 * Paths contain a space, so that the resume command must quote them. */
#define _GNU_SOURCE /* forkpty, sched_getaffinity */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <jansson.h>
#include <poll.h>
#include <pty.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

static char dir[64];      /* the temporary directory */
static char sub[512];     /* dir/with space: the model, the data and most outputs */
static char model_p[512], data_p[512], big_p[512], notest_p[512];

static char *path(char *buf, const char *name) { return tu_join(buf, sub, name); }

static const char MODEL[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\nrelu\nmaxpool2d kernel_size=2\n"
                            "flatten\nlinear out_features=3\n";

static int setup(void **state) {
    (void)state;
    if (tu_make_temp_dir(dir, "test_train_cli")) return -1;
    snprintf(sub, sizeof sub, "%s/with space", dir);
    if (mkdir(sub, 0700)) return -1;
    tu_write_text(path(model_p, "model.cnn"), MODEL);
    /* Learnable synthetic data sets of 1×6×6 samples in 3 classes (testdata.h). */
    tu_make_dataset(path(data_p, "data.safetensors"), (tu_dataset){.n = 60, .n_test = 30});
    tu_make_dataset(path(big_p, "big.safetensors"), (tu_dataset){.n = 600, .n_test = 30});
    tu_make_dataset(path(notest_p, "notest.safetensors"), (tu_dataset){.n = 60});
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* A fresh directory under dir to run in. */
static const char *workdir(char *buf, const char *name) {
    snprintf(buf, 512, "%s/%s", dir, name);
    assert_int_equal(mkdir(buf, 0700), 0);
    return buf;
}

/* ---- no lost work ------------------------------------------------------------------------- */

/* Without --out: a checkpoint under runs/ of the working directory, named at the start and at the
 * end, that cnn eval loads; a second run does not overwrite it; a resume goes on in it. */
static void test_default_checkpoint(void **state) {
    (void)state;
    char work[512], ck[600], ck2[600], buf[64];
    cli_cwd = workdir(work, "default_out");
    snprintf(ck, sizeof ck, "%s/runs/model-data.safetensors", work);
    snprintf(ck2, sizeof ck2, "%s/runs/model-data-2.safetensors", work);
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--batch", "8", "--seed", "1");
    CLI_EXPECT(&r, 0, "checkpoint runs/model-data.safetensors after every epoch (no --out given)", "epoch 1/1");
    assert_non_null(strstr(r.out, "checkpoint runs/model-data.safetensors\n"));
    assert_string_equal(tu_meta(ck, "epoch", buf, sizeof buf), "1");
    CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", "runs/model-data.safetensors", "--data", data_p);
    CLI_EXPECT(&r, 0, NULL);
    assert_non_null(strstr(r.out, "\naccuracy "));

    /* Another run of the same model on the same data keeps the first one's checkpoint. */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--batch", "8", "--seed", "2");
    CLI_EXPECT(&r, 0, "checkpoint runs/model-data-2.safetensors after every epoch (no --out given)");
    assert_non_null(strstr(r.out, "checkpoint runs/model-data-2.safetensors\n"));
    assert_true(tu_exists(ck2));
    assert_string_equal(tu_meta(ck, "seed", buf, sizeof buf), "1");

    /* A resume without --out goes on in the checkpoint it resumes. */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", "runs/model-data.safetensors",
            "--epochs", "2");
    CLI_EXPECT(&r, 0, "checkpoint runs/model-data.safetensors after every epoch (the checkpoint resumed", "epoch 2/2");
    assert_string_equal(tu_meta(ck, "epoch", buf, sizeof buf), "2");
    cli_cwd = NULL;
}

/* Fails with exit status 2 before anything is trained (no "training" banner, no epoch line, no
 * checkpoint, no runs/), naming the path as the user gave it, never a temporary file. */
static void expect_refused(const char *work, const char *const *args, const char *want) {
    cli_result r;
    cli_run(&r, dir, args);
    CLI_EXPECT(&r, 2, want);
    if (strstr(r.err, "training ") || strstr(r.err, "epoch ") || strstr(r.err, ".tmp"))
        fail_msg("%s\n  should fail before training; stderr:\n%s", r.cmd, r.err);
    char runs[600];
    snprintf(runs, sizeof runs, "%s/runs", work);
    assert_false(tu_exists(runs));
}

static void test_bad_output_paths_fail_first(void **state) {
    (void)state;
    char work[512], missing[512], jpg[512], log[512], file[512], in_file[512], ck[512], want[1200];
    cli_cwd = workdir(work, "bad_outputs");
    path(missing, "no such dir/ck.safetensors");
    path(jpg, "curves.jpg");
    path(log, "no such dir/run.jsonl");
    path(ck, "bad_ck.safetensors");
    tu_write_text(path(file, "a file"), "x");
    path(in_file, "a file/ck.safetensors");

    snprintf(want, sizeof want, "--out %s: the directory %s/no such dir does not exist", missing, sub);
    expect_refused(work, (const char *const[]){"train", "--model", model_p, "--data", data_p, "--out", missing, NULL},
                   want);
    snprintf(want, sizeof want, "--plot %s: the plot's name must end in .png or .svg", jpg);
    expect_refused(work, (const char *const[]){"train", "--model", model_p, "--data", data_p, "--plot", jpg, NULL},
                   want);
    expect_refused(work, (const char *const[]){"train", "--model", model_p, "--data", data_p, "--plot", "curves", NULL},
                   "--plot curves: the plot's name must end in .png or .svg");
    snprintf(want, sizeof want, "--log %s: the directory %s/no such dir does not exist", log, sub);
    expect_refused(work, (const char *const[]){"train", "--model", model_p, "--data", data_p, "--log", log, NULL},
                   want);
    snprintf(want, sizeof want, "--out %s: is a directory", sub);
    expect_refused(work, (const char *const[]){"train", "--model", model_p, "--data", data_p, "--out", sub, NULL},
                   want);
    snprintf(want, sizeof want, "--out %s: %s is not a directory", in_file, file);
    expect_refused(work, (const char *const[]){"train", "--model", model_p, "--data", data_p, "--out", in_file, NULL},
                   want);
    expect_refused(work, (const char *const[]){"train", "--model", model_p, "--data", data_p, "--out", ck, "--log", ck,
                                               NULL},
                   "are the same file");
    /* On a resume too, before the checkpoint or the data are read. */
    expect_refused(work, (const char *const[]){"train", "--model", model_p, "--data", data_p, "--resume", ck,
                                               "--plot", jpg, NULL},
                   "must end in .png or .svg");
    assert_false(tu_exists(ck));
    cli_cwd = NULL;
}

/* ---- the log and the plot across resumes -------------------------------------------------- */

typedef struct record {
    long long epoch, step;
    double lr, train_loss, train_acc, test_loss, test_acc, seconds;
    int test_null;
} record;

/* Reads a JSON Lines log: every line one object with every key; returns the number of lines. */
static int read_log(const char *p, record *rec, int cap) {
    static char buf[1 << 16];
    cli_read_file(p, buf, sizeof buf);
    int n = 0;
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        if (!nl) fail_msg("%s: the last line has no newline: %s", p, line);
        *nl = '\0';
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        if (!json_is_object(o)) fail_msg("%s, line %d: not a JSON object: %s", p, n + 1, line);
        assert_true(n < cap);
        record *r = &rec[n++];
        static const char *const keys[] = {"epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                                           "seconds"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (!json_object_get(o, keys[k])) fail_msg("%s, line %d lacks \"%s\": %s", p, n, keys[k], line);
        r->epoch = json_integer_value(json_object_get(o, "epoch"));
        r->step = json_integer_value(json_object_get(o, "step"));
        r->lr = json_number_value(json_object_get(o, "lr"));
        r->train_loss = json_number_value(json_object_get(o, "train_loss"));
        r->train_acc = json_number_value(json_object_get(o, "train_acc"));
        r->test_null = json_is_null(json_object_get(o, "test_loss")) && json_is_null(json_object_get(o, "test_acc"));
        r->test_loss = json_number_value(json_object_get(o, "test_loss"));
        r->test_acc = json_number_value(json_object_get(o, "test_acc"));
        r->seconds = json_number_value(json_object_get(o, "seconds"));
        assert_true(json_is_integer(json_object_get(o, "epoch")) && json_is_integer(json_object_get(o, "step")));
        assert_true(r->seconds >= 0);
        json_decref(o);
        line = nl + 1;
    }
    return n;
}

/* The log of a run resumed from `got` holds epochs 1..n, numbered right, with the figures of the
 * straight run `want` (the same bits: a resumed run continues exactly). */
static void expect_same_log(const char *got, const char *want, int n) {
    record a[64], b[64];
    assert_int_equal(read_log(got, a, 64), n);
    assert_true(read_log(want, b, 64) >= n);
    for (int i = 0; i < n; i++) {
        if (a[i].epoch != i + 1) fail_msg("%s: line %d is of epoch %lld", got, i + 1, a[i].epoch);
        assert_int_equal(a[i].step, 8 * (i + 1)); /* 60 samples in batches of 8: 8 steps per epoch */
        assert_false(a[i].test_null);
        if (a[i].lr != b[i].lr || a[i].train_loss != b[i].train_loss || a[i].train_acc != b[i].train_acc ||
            a[i].test_loss != b[i].test_loss || a[i].test_acc != b[i].test_acc)
            fail_msg("%s: epoch %d differs from the run never stopped", got, i + 1);
    }
}

/* How many points of the train series (its colour's fills) the SVG plot has: one per epoch in
 * each of its two panels. */
static int train_points(const char *svg) {
    static char buf[1 << 20];
    cli_read_file(svg, buf, sizeof buf);
    assert_non_null(strstr(buf, "<svg"));
    int n = 0;
    for (const char *p = buf; (p = strstr(p, "fill:rgb(12%,47%,71%)")); p++) n++;
    return n;
}

/* The text of an SVG without the numbers of cairo's surfaces ("surface11"), which count the
 * surfaces the process made before. */
static char *svg_text(const char *p, char *buf, size_t cap) {
    cli_read_file(p, buf, cap);
    char *w = buf;
    for (const char *r = buf; *r;) {
        if (!strncmp(r, "surface", 7)) {
            memmove(w, r, 7), w += 7, r += 7;
            while (*r >= '0' && *r <= '9') r++;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return buf;
}

/* Two SVG plots draw the same picture. */
static void expect_same_svg(const char *a, const char *b) {
    static char ba[1 << 20], bb[1 << 20];
    if (strcmp(svg_text(a, ba, sizeof ba), svg_text(b, bb, sizeof bb))) fail_msg("%s and %s differ", a, b);
}

#define RUN_ARGS "--batch", "8", "--optimizer", "adam", "--lr", "0.01", "--seed", "3"

static void test_resume_keeps_one_log_and_plot(void **state) {
    (void)state;
    char s_ck[512], s_log[512], s_plot[512], ck[512], log[512], plot[512], q_ck[512], q_log[512], q_plot[512];
    path(s_ck, "straight.safetensors"), path(s_log, "straight.jsonl"), path(s_plot, "straight.svg");
    path(ck, "resumed.safetensors"), path(log, "resumed.jsonl"), path(plot, "resumed.svg");
    path(q_ck, "late.safetensors"), path(q_log, "late.jsonl"), path(q_plot, "late.svg");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, RUN_ARGS, "--epochs", "4", "--out", s_ck, "--log",
            s_log, "--plot", s_plot);
    CLI_EXPECT(&r, 0, "epoch 4/4");
    assert_int_equal(train_points(s_plot), 2 * 4);

    /* 2 epochs, then a crash after the log line of epoch 3 but before its checkpoint: the log
     * has a line that the checkpoint does not, and half a line. */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, RUN_ARGS, "--epochs", "2", "--checkpoint-every",
            "3", "--out", ck, "--log", log, "--plot", plot);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    assert_int_equal(train_points(plot), 2 * 2);
    FILE *f = fopen(log, "ab");
    assert_non_null(f);
    fputs("{\"epoch\": 3, \"step\": 24, \"lr\": 0.01, \"train_loss\": 9, \"train_acc\": 0, \"test_loss\": 9, "
          "\"test_acc\": 0, \"seconds\": 1}\n{\"epoch\": 4, \"st",
          f);
    fclose(f);
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--epochs", "4", "--out", ck,
            "--log", log, "--plot", plot);
    CLI_EXPECT(&r, 0, "epoch 3/4", "epoch 4/4");
    expect_same_log(log, s_log, 4);
    assert_int_equal(train_points(plot), 2 * 4);
    expect_same_svg(plot, s_plot); /* every epoch, numbered 1..4, the same curves */
    assert_true(tu_same_tensors(ck, s_ck, "") >= 8);

    /* The history is in the checkpoint: a run that had neither --log nor --plot, resumed with
     * both, writes a log and a plot of every epoch from the first. */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, RUN_ARGS, "--epochs", "2", "--out", q_ck);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", q_ck, "--epochs", "3", "--log", q_log,
            "--plot", q_plot);
    CLI_EXPECT(&r, 0, "epoch 3/3");
    expect_same_log(q_log, s_log, 3);
    assert_int_equal(train_points(q_plot), 2 * 3);
}

/* Without a test split, test_loss and test_acc are JSON null, and no "nan" is printed. */
static void test_log_without_test_split(void **state) {
    (void)state;
    char log[512], out[512];
    path(log, "notest.jsonl");
    path(out, "notest_ck.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", notest_p, "--epochs", "2", "--batch", "8", "--out", out,
            "--log", log);
    CLI_EXPECT(&r, 0, "epoch 2/2  train loss ");
    assert_null(strstr(r.err, "nan"));
    assert_null(strstr(r.err, "test loss"));
    record rec[4];
    assert_int_equal(read_log(log, rec, 4), 2);
    assert_true(rec[0].test_null && rec[1].test_null);
    assert_int_equal(rec[1].epoch, 2);
}

/* ---- the resume command -------------------------------------------------------------------- */

/* SIGINT while training: the printed command repeats every option (paths quoted: they contain a
 * space) and, run by the shell as printed, finishes the run with one log line per epoch. */
static void test_sigint_resume_command_runs(void **state) {
    (void)state;
    char ck[512], log[512], plot[512], err_p[600], out_p[600], cmd[8192], want[4096];
    path(ck, "sig ck.safetensors");
    path(log, "sig.jsonl");
    path(plot, "sig.png");
    snprintf(err_p, sizeof err_p, "%s/sig.stderr", dir);
    snprintf(out_p, sizeof out_p, "%s/sig.stdout", dir);
    static char err[1 << 16];
    const char *line = NULL;
    for (int attempt = 0; attempt < 20 && !line; attempt++) {
        remove(ck);
        const pid_t pid = CLI_SPAWN(out_p, err_p, "train", "--model", model_p, "--data", big_p, "--epochs", "3",
                                    "--batch", "8", "--optimizer", "adam", "--lr", "0.01", "--seed", "7",
                                    "--checkpoint-every", "4", "--threads", "1", "--no-shuffle", "--log", log,
                                    "--plot", plot, "--out", ck);
        cli_wait_for_text(pid, err_p, "training ", 60);
        kill(pid, SIGINT);
        int ws;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        cli_read_file(err_p, err, sizeof err);
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) continue; /* it finished first */
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 130) fail_msg("status %d, expected exit 130:\n%s", ws, err);
        line = strstr(err, "resume with: cnn train ");
        if (!line) fail_msg("no resume command:\n%s", err);
    }
    if (!line) fail_msg("training always ended before SIGINT");
    char *end = strchr(line, '\n');
    assert_non_null(end);
    *end = '\0';
    snprintf(want, sizeof want, "--model \"%s\" --data \"%s\" --epochs 3 --batch 8 --optimizer adam --lr 0.01 --seed 7 "
             "--checkpoint-every 4 --threads 1 --no-shuffle --log \"%s\" --plot \"%s\" --resume \"%s\" --out \"%s\"",
             model_p, big_p, log, plot, ck, ck);
    if (!strstr(line, want)) fail_msg("the resume command\n  %s\nlacks\n  %s", line, want);
    /* Run it as printed, with this build's cnn. */
    char bin[4096];
    snprintf(bin, sizeof bin, "%s", cli_bin_abs());
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", bin, line + strlen("resume with: cnn "), out_p, err_p);
    const int rc = system(cmd);
    cli_read_file(err_p, err, sizeof err);
    if (rc != 0) fail_msg("%s\n  failed (%d):\n%s", cmd, rc, err);
    assert_non_null(strstr(err, "epoch 3/3"));
    record rec[8];
    assert_int_equal(read_log(log, rec, 8), 3);
    for (int i = 0; i < 3; i++) assert_int_equal(rec[i].epoch, i + 1);
    char buf[64];
    assert_string_equal(tu_meta(ck, "step", buf, sizeof buf), "225"); /* 3 epochs of 75 steps */
    cli_read_file(plot, buf, sizeof buf);
    assert_memory_equal(buf, "\x89PNG", 4);
}

/* ---- threads ------------------------------------------------------------------------------- */

static void test_threads_default_to_every_core(void **state) {
    (void)state;
    cpu_set_t set;
    CPU_ZERO(&set);
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    const int cores = CPU_COUNT(&set);
    char out[512], want[64];
    path(out, "threads.safetensors");
    snprintf(want, sizeof want, ", %d thread%s\n", cores, cores == 1 ? "" : "s");
    const char *env = getenv("CNN_NUM_THREADS");
    char saved[64] = "";
    if (env) snprintf(saved, sizeof saved, "%s", env);
    unsetenv("CNN_NUM_THREADS");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--batch", "8", "--out", out);
    CLI_EXPECT(&r, 0, want);
    CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", out, "--data", data_p);
    CLI_EXPECT(&r, 0, NULL);
    snprintf(want, sizeof want, "samples, %d thread%s)", cores, cores == 1 ? "" : "s");
    assert_non_null(strstr(r.out, want));
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--batch", "8", "--threads", "3", "--out", out);
    CLI_EXPECT(&r, 0, ", 3 threads\n");
    CLI_RUN(&r, dir, "eval", "--model", model_p, "--weights", out, "--data", data_p, "--threads", "2");
    CLI_EXPECT(&r, 0, NULL);
    assert_non_null(strstr(r.out, "samples, 2 threads)"));
    setenv("CNN_NUM_THREADS", "1", 1);
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--batch", "8", "--out", out);
    CLI_EXPECT(&r, 0, ", 1 thread\n");
    if (*saved) setenv("CNN_NUM_THREADS", saved, 1);
    else unsetenv("CNN_NUM_THREADS");
}

/* ---- the terminal -------------------------------------------------------------------------- */

static double terminal_seconds; /* how long the last run_in_terminal took */

/* Runs cnn train in a pseudo-terminal of `cols` columns, sending it signal `sig` (when not 0) as
 * soon as it draws the progress bar; returns its output (stdout and stderr, as the terminal got
 * them) and its wait status. With `columns` set, the terminal reports no size and COLUMNS is set
 * to it instead. */
static const char *run_in_terminal(int cols, const char *columns, const char *const *args, int sig, int *status) {
    static char buf[1 << 18];
    const char *argv[64];
    int argc = 0;
    argv[argc++] = cli_bin_abs();
    for (int i = 0; args[i]; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    struct winsize ws = {.ws_row = 24, .ws_col = columns ? 0 : (unsigned short)cols};
    int master;
    fflush(NULL);
    const double t0 = tu_now();
    const pid_t pid = forkpty(&master, NULL, NULL, &ws);
    assert_true(pid >= 0);
    if (pid == 0) {
        if (columns) setenv("COLUMNS", columns, 1);
        else unsetenv("COLUMNS"); /* the window size, not the environment */
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    size_t len = 0;
    const double until = tu_now() + 120;
    for (;;) {
        struct pollfd p = {.fd = master, .events = POLLIN};
        if (tu_now() > until) {
            kill(pid, SIGKILL);
            fail_msg("cnn train in a terminal did not end within 2 minutes");
        }
        if (poll(&p, 1, 100) <= 0) continue;
        const ssize_t k = read(master, buf + len, sizeof buf - 1 - len);
        if (k <= 0) break; /* EIO: the child closed the terminal */
        len += (size_t)k;
        buf[len] = '\0';
        if (sig && strstr(buf, "\r\033[K")) kill(pid, sig), sig = 0;
    }
    buf[len] = '\0';
    close(master);
    assert_int_equal(waitpid(pid, status, 0), pid);
    terminal_seconds = tu_now() - t0;
    return buf;
}

/* Checks what a terminal of `cols` columns showed: no line (split on \r and \n, ANSI escapes
 * removed) wider than it, and the progress bar redrawn in place: lines of several \r-separated
 * redraws, one per epoch. Returns the number of redraws. */
static int expect_fits(const char *screen, int cols, int epochs) {
    int in_place = 0, lines = 0, widest = 0, draws = 0;
    const char *p = screen;
    while (*p) {
        int redraws = 0, width = 0;
        for (; *p && *p != '\n'; p++) {
            if (*p == '\r' && p[1] == '\n') continue; /* the terminal's newline (ONLCR) */
            if (*p == '\r') {
                redraws += width > 0;
                width = 0;
                continue;
            }
            if (*p == '\033' && p[1] == '[') { /* CSI ... final byte */
                for (p += 2; *p && !(*p >= '@' && *p <= '~'); p++) {}
                if (!*p) break;
                continue;
            }
            width++;
            if (width > widest) widest = width;
            if (width > cols) {
                const char *start = p;
                while (start > screen && start[-1] != '\n' && start[-1] != '\r') start--;
                fail_msg("a line wider than the terminal's %d columns:\n%.*s", cols, (int)(p - start + 1), start);
            }
        }
        redraws += width > 0;
        if (redraws >= 2) in_place++, draws += redraws;
        lines++;
        if (*p) p++;
    }
    if (in_place < epochs) fail_msg("%d of the %d lines redraw in place, expected one per epoch (%d):\n%s", in_place,
                                    lines, epochs, screen);
    print_message("# %d columns: %d lines, the widest %d columns, %d redrawn in place (%d bars)\n", cols, lines,
                  widest, in_place, draws);
    return draws;
}

static void terminal(int cols, const char *columns) {
    char out[512], log[512], name[64];
    snprintf(name, sizeof name, "terminal %d columns with a long name.safetensors", cols);
    path(out, name);
    path(log, "terminal.jsonl");
    int status;
    /* 15 steps per epoch: at least the first and the last draw the bar. */
    const char *screen = run_in_terminal(cols, columns,
                                         (const char *const[]){"train", "--model", model_p, "--data", data_p, "--epochs",
                                                               "3", "--batch", "4", "--optimizer", "adam", "--out",
                                                               out, "--log", log, NULL},
                                         0, &status);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("status %d:\n%s", status, screen);
    assert_non_null(strstr(screen, "loss"));
    assert_non_null(strstr(screen, "acc"));
    assert_non_null(strstr(screen, "/s"));
    assert_non_null(strstr(screen, "ETA"));
    assert_non_null(strstr(screen, "3/3"));
    const int draws = expect_fits(screen, cols, 3);
    /* At most 10 a second, besides the first and the last step of each epoch (there are 45 steps). */
    if (draws > 3 * 2 + 10 * terminal_seconds + 1)
        fail_msg("%d bars in %.2f s: more than 10 a second", draws, terminal_seconds);
}

static void test_terminal_80_columns(void **s) { (void)s, terminal(80, NULL); }
static void test_terminal_60_columns(void **s) { (void)s, terminal(60, NULL); }
/* A terminal that reports no size: $COLUMNS gives the width. */
static void test_terminal_columns_variable(void **s) { (void)s, terminal(60, "60"); }

/* SIGINT in a terminal of 60 columns: the messages fit it, and the resume command, wrapped to fit
 * (its paths are longer than a line), still runs when pasted into a shell. */
static void test_terminal_resume_command_runs(void **state) {
    (void)state;
    char ck[512], cmd[16384], err_p[600];
    path(ck, "a checkpoint with a name longer than the terminal is wide.safetensors");
    snprintf(err_p, sizeof err_p, "%s/pasted.stderr", dir);
    const char *screen = NULL;
    int status = 0;
    for (int attempt = 0; attempt < 20; attempt++) {
        remove(ck);
        screen = run_in_terminal(60, NULL,
                                 (const char *const[]){"train", "--model", model_p, "--data", big_p, "--epochs", "2",
                                                       "--batch", "8", "--seed", "5", "--checkpoint-every", "7",
                                                       "--out", ck, NULL},
                                 SIGINT, &status);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) break; /* else it finished first: again */
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 130) fail_msg("status %d, expected exit 130:\n%s", status, screen);
    expect_fits(screen, 60, 0);
    /* What a user would paste: the command from "cnn", the lines as the terminal shows them. */
    const char *at = strstr(screen, "resume with: cnn train");
    if (!at) fail_msg("no resume command:\n%s", screen);
    at += strlen("resume with: cnn ");
    size_t k = (size_t)snprintf(cmd, sizeof cmd, "'%s' ", cli_bin_abs());
    for (; *at && k + 1 < sizeof cmd; at++)
        if (*at != '\r') cmd[k++] = *at;
    cmd[k] = '\0';
    assert_non_null(strchr(cmd, '\n')); /* it was wrapped */
    snprintf(cmd + k, sizeof cmd - k, " >/dev/null 2>'%s'", err_p);
    for (char *nl = strrchr(cmd, '\n'); nl && nl[-1] != '\\'; nl = strrchr(cmd, '\n')) *nl = ' ';
    static char err[1 << 16];
    const int rc = system(cmd);
    cli_read_file(err_p, err, sizeof err);
    if (rc != 0) fail_msg("the pasted command\n%s\nfailed (%d):\n%s", cmd, rc, err);
    assert_non_null(strstr(err, "epoch 2/2"));
    char buf[64];
    assert_string_equal(tu_meta(ck, "step", buf, sizeof buf), "150");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_checkpoint),
        cmocka_unit_test(test_bad_output_paths_fail_first),
        cmocka_unit_test(test_resume_keeps_one_log_and_plot),
        cmocka_unit_test(test_log_without_test_split),
        cmocka_unit_test(test_sigint_resume_command_runs),
        cmocka_unit_test(test_threads_default_to_every_core),
        cmocka_unit_test(test_terminal_80_columns),
        cmocka_unit_test(test_terminal_60_columns),
        cmocka_unit_test(test_terminal_columns_variable),
        cmocka_unit_test(test_terminal_resume_command_runs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
