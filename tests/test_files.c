/* No run destroys a file: what cnn writes, through the real binary. Every output goes to a new
 * temporary file beside the target and is renamed over it (src/io/safe_write.c): a device node or
 * a FIFO given as --out is refused and left as it was; a symlink where the old <out>.tmp was, or
 * at the lock file's name, is never followed; a 0600 checkpoint stays 0600; a second run writing
 * the same --out is refused at its start, naming the first, which finishes with its own model;
 * an output that is an input or another output (--out = --data, --out = --model, --plot = --out,
 * --log = --resume, through a symlink too) is refused with both option names before anything is
 * written, except --resume X --out X; a 255-byte file name works. */
#define _GNU_SOURCE /* mknod, makedev */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static char dir[64];
static char model_p[512], model2_p[512], data_p[512], big_p[512];

static const char MODEL[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\nrelu\nmaxpool2d kernel_size=2\n"
                            "flatten\nlinear out_features=3\n";
static const char MODEL2[] = "input 1 6 6\nconv2d out_channels=4 kernel_size=3 padding=1\ntanh\nmaxpool2d kernel_size=2\n"
                             "flatten\nlinear out_features=3\n";

static char *path(char *buf, const char *name) {
    if (snprintf(buf, 512, "%s/%s", dir, name) >= 512) fail_msg("%s/%s: too long", dir, name);
    return buf;
}


static int exists(const char *p) {
    struct stat s;
    return lstat(p, &s) == 0;
}

/* The whole file (at most cap - 1 bytes) and its length. */
static size_t slurp(const char *p, char *buf, size_t cap) {
    FILE *f = fopen(p, "rb");
    if (!f) fail_msg("%s: cannot read", p);
    const size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n;
}

/* How many entries a directory holds (. and .. not counted). */
static int entries(const char *d) {
    DIR *dd = opendir(d);
    assert_non_null(dd);
    int n = 0;
    for (struct dirent *e; (e = readdir(dd));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(dd);
    return n;
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cnn_test_files_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    tu_write_text(path(model_p, "model.cnn"), MODEL);
    tu_write_text(path(model2_p, "model2.cnn"), MODEL2);
    tu_make_dataset(path(data_p, "data.safetensors"), (tu_dataset){.n = 60, .n_test = 30});
    tu_make_dataset(path(big_p, "big.safetensors"), (tu_dataset){.n = 3000, .n_test = 30});
    umask(022);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* A fresh directory under dir. */
static const char *workdir(char *buf, const char *name) {
    snprintf(buf, 512, "%s/%s", dir, name);
    assert_int_equal(mkdir(buf, 0700), 0);
    return buf;
}

/* Asserts that `ck` loads as a checkpoint of model text `model` and returns its "step". */
static long long loads_as(const char *ck, const char *model) {
    cnn_st *st = NULL;
    if (cnn_st_load(ck, &st) != CNN_OK) fail_msg("%s does not load: %s", ck, cnn_last_error());
    const char *m = cnn_st_metadata(st, "model"), *step = cnn_st_metadata(st, "step");
    if (!m || strcmp(m, model)) fail_msg("%s holds the model\n%s\nnot\n%s", ck, m ? m : "(none)", model);
    const long long k = step ? atoll(step) : -1;
    cnn_st_free(st);
    return k;
}

/* ---- what is refused ----------------------------------------------------------------------- */

/* A character device as --out (made with mknod, as root only): refused before training, by train,
 * export and grad, and the node is still the same node. */
static void test_out_on_device_node(void **state) {
    (void)state;
    if (geteuid() != 0) {
        printf("# test_out_on_device_node: SKIPPED: not root, and mknod of a device node needs root\n");
        skip();
    }
    char work[512], node[600], ck[600], in[600];
    workdir(work, "device");
    snprintf(node, sizeof node, "%s/n", work);
    assert_int_equal(mknod(node, S_IFCHR | 0666, makedev(1, 3)), 0); /* /dev/null's numbers */
    cli_result r;
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--out", node);
    CLI_EXPECT(&r, 2, node, "a character device");
    assert_null(strstr(r.err, "training "));
    /* export and grad refuse it too. */
    snprintf(ck, sizeof ck, "%s/ck.safetensors", work);
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--out", ck);
    cli_expect(&r, 0, NULL);
    CLI_RUN(&r, work, "export", "--weights", ck, "--out", node);
    CLI_EXPECT(&r, 2, node, "a character device");
    snprintf(in, sizeof in, "%s/in.safetensors", work);
    float x[36] = {0};
    const cnn_tensor t = {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {1, 1, 6, 6}, .data = x};
    assert_int_equal(cnn_st_save(in, &t, 1, NULL, 0), CNN_OK);
    CLI_RUN(&r, work, "grad", "--model", model_p, "--init", "1", "--input", in, "--out", node);
    CLI_EXPECT(&r, 2, node, "a character device");
    struct stat sb;
    assert_int_equal(lstat(node, &sb), 0);
    assert_true(S_ISCHR(sb.st_mode));
    assert_int_equal(major(sb.st_rdev), 1);
    assert_int_equal(minor(sb.st_rdev), 3);
}

/* A FIFO as --out, --log or --plot (no root needed): refused at once, not opened (which would
 * block), and still a FIFO. */
static void test_out_on_fifo(void **state) {
    (void)state;
    char work[512], fifo[600], plot[600];
    cli_cwd = workdir(work, "fifo"); /* where a default checkpoint would go */
    snprintf(fifo, sizeof fifo, "%s/f", work);
    snprintf(plot, sizeof plot, "%s/f.png", work);
    assert_int_equal(mkfifo(fifo, 0666), 0);
    assert_int_equal(mkfifo(plot, 0666), 0);
    cli_result r;
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--out", fifo);
    CLI_EXPECT(&r, 2, "--out", fifo, "a FIFO");
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--log", fifo);
    CLI_EXPECT(&r, 2, "--log", fifo, "a FIFO");
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--plot", plot);
    CLI_EXPECT(&r, 2, "--plot", plot, "a FIFO");
    struct stat sb;
    assert_int_equal(lstat(fifo, &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));
    assert_int_equal(lstat(plot, &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));
    assert_int_equal(entries(work), 4); /* the FIFOs, cli.stdout, cli.stderr: no runs/, nothing trained */
    cli_cwd = NULL;
}

/* A symlink where the old temporary file <out>.tmp was is not followed (its target is untouched,
 * the link stays); the plot's and the log's are not either. A symlink at the lock file's name
 * (.<name>.lock, the one name cnn makes that can be predicted) is not followed: the run is
 * refused, the target untouched. */
static void test_symlinks_not_followed(void **state) {
    (void)state;
    char work[512], victim[600], ck[600], log[600], plot[600], link[700], buf[64];
    workdir(work, "symlink");
    snprintf(victim, sizeof victim, "%s/victim", work);
    tu_write_text(victim, "precious\n");
    snprintf(ck, sizeof ck, "%s/ck.safetensors", work);
    snprintf(log, sizeof log, "%s/log.jsonl", work);
    snprintf(plot, sizeof plot, "%s/curves.png", work);
    const char *outs[3] = {ck, log, plot};
    for (int i = 0; i < 3; i++) {
        snprintf(link, sizeof link, "%s.tmp", outs[i]);
        assert_int_equal(symlink(victim, link), 0);
    }
    cli_result r;
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--out", ck, "--log", log,
            "--plot", plot);
    cli_expect(&r, 0, NULL);
    assert_int_equal(slurp(victim, buf, sizeof buf), 9);
    assert_string_equal(buf, "precious\n");
    loads_as(ck, MODEL);
    for (int i = 0; i < 3; i++) {
        struct stat sb;
        snprintf(link, sizeof link, "%s.tmp", outs[i]);
        assert_int_equal(lstat(link, &sb), 0);
        assert_true(S_ISLNK(sb.st_mode));
        assert_int_equal(lstat(outs[i], &sb), 0);
        assert_true(S_ISREG(sb.st_mode));
    }
    slurp(plot, buf, sizeof buf);
    assert_memory_equal(buf, "\x89PNG", 4);

    /* The lock file's name. */
    snprintf(link, sizeof link, "%s/.ck2.safetensors.lock", work);
    assert_int_equal(symlink(victim, link), 0);
    char ck2[600];
    snprintf(ck2, sizeof ck2, "%s/ck2.safetensors", work);
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--out", ck2);
    CLI_EXPECT(&r, 2, "--out", ck2, ".ck2.safetensors.lock");
    assert_false(exists(ck2));
    assert_int_equal(slurp(victim, buf, sizeof buf), 9);
    assert_string_equal(buf, "precious\n");
    /* And no temporary file is left anywhere. */
    DIR *d = opendir(work);
    for (struct dirent *e; (e = readdir(d));)
        if (!strncmp(e->d_name, ".cnn-", 5)) fail_msg("a temporary file is left: %s/%s", work, e->d_name);
    closedir(d);
}

/* A rewritten file keeps its mode: a 0600 checkpoint stays 0600 through a resume in place and
 * through an export over it; a new one gets 0666 & ~umask (0644 under umask 022). */
static void test_mode_kept(void **state) {
    (void)state;
    char work[512], ck[600], w[600];
    workdir(work, "mode");
    snprintf(ck, sizeof ck, "%s/ck.safetensors", work);
    snprintf(w, sizeof w, "%s/w.safetensors", work);
    cli_result r;
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--out", ck);
    cli_expect(&r, 0, NULL);
    struct stat sb;
    assert_int_equal(stat(ck, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0644);
    assert_int_equal(chmod(ck, 0600), 0);
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--resume", ck, "--out", ck);
    cli_expect(&r, 0, NULL);
    assert_int_equal(stat(ck, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    assert_int_equal(loads_as(ck, MODEL), 2); /* 2 epochs of one batch of 64 */
    tu_write_text(w, "old");
    assert_int_equal(chmod(w, 0640), 0);
    CLI_RUN(&r, work, "export", "--weights", ck, "--out", w);
    cli_expect(&r, 0, NULL);
    assert_int_equal(stat(w, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0640);
}

/* ---- two writers --------------------------------------------------------------------------- */

/* Two runs with one --out, the second started while the first is training (the first is stopped
 * with SIGSTOP once it has begun, so that they overlap every time, and continued after), 20
 * times: the second is refused at its start with exit 2, naming the first's pid; the first
 * finishes with a checkpoint that loads and holds its own model; no lock file is left. */
static void test_two_writers_one_out(void **state) {
    (void)state;
    char work[512], ck[600], err_p[600], out_p[600], lock[700], pid_s[64];
    workdir(work, "writers");
    snprintf(ck, sizeof ck, "%s/ck.safetensors", work);
    snprintf(err_p, sizeof err_p, "%s/first.stderr", work);
    snprintf(out_p, sizeof out_p, "%s/first.stdout", work);
    snprintf(lock, sizeof lock, "%s/.ck.safetensors.lock", work);
    static char err[1 << 16];
    for (int trial = 0; trial < 20; trial++) {
        remove(ck);
        const pid_t pid = CLI_SPAWN(out_p, err_p, "train", "--model", model_p, "--data", big_p, "--epochs", "2",
                                    "--batch", "16", "--threads", "1", "--out", ck);
        /* The lock is taken before anything is loaded; "training " is printed after. */
        cli_wait_for_text(pid, err_p, "training ", 60);
        assert_int_equal(kill(pid, SIGSTOP), 0);
        cli_result r;
        CLI_RUN(&r, work, "train", "--model", model2_p, "--data", data_p, "--out", ck);
        snprintf(pid_s, sizeof pid_s, "pid %ld", (long)pid);
        CLI_EXPECT(&r, 2, "--out", ck, "is being written by another process", pid_s);
        assert_null(strstr(r.err, "training "));
        assert_true(exists(lock));
        assert_int_equal(kill(pid, SIGCONT), 0);
        int ws;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        cli_read_file(err_p, err, sizeof err);
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) fail_msg("trial %d: the first run: status %d:\n%s", trial, ws, err);
        assert_int_equal(loads_as(ck, MODEL), 2 * 188); /* 2 epochs of 188 batches: its own run */
        assert_false(exists(lock));
    }
}

/* The lock of a process that died (SIGKILL: no chance to remove its lock file) is taken over. */
static void test_stale_lock_taken_over(void **state) {
    (void)state;
    char work[512], ck[600], lock[700];
    workdir(work, "stale");
    snprintf(ck, sizeof ck, "%s/ck.safetensors", work);
    snprintf(lock, sizeof lock, "%s/.ck.safetensors.lock", work);
    tu_write_text(lock, "999999999\n"); /* a pid no process has */
    cli_result r;
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--out", ck);
    cli_expect(&r, 0, NULL);
    loads_as(ck, MODEL);
    assert_false(exists(lock));
}

/* ---- same files ---------------------------------------------------------------------------- */

/* Runs a command that must be refused for a same-file clash: exit 2, both option names in the
 * message, and not one byte written in the directory (every file as it was, none added). */
static void expect_clash(const char *work, const char *const *args, const char *opt_a, const char *opt_b) {
    static char before[8][1 << 15], after[1 << 15];
    static char names[8][600];
    size_t len[8];
    int n = 0;
    DIR *d = opendir(work);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || !strncmp(e->d_name, "cli.", 4)) continue;
        assert_true(n < 8);
        snprintf(names[n], sizeof names[n], "%s/%s", work, e->d_name);
        len[n] = slurp(names[n], before[n], sizeof before[n]);
        n++;
    }
    closedir(d);
    const int count = entries(work);
    cli_result r;
    cli_run(&r, work, args);
    CLI_EXPECT(&r, 2, opt_a, opt_b, "are the same file");
    assert_null(strstr(r.err, "training "));
    for (int i = 0; i < n; i++) {
        if (slurp(names[i], after, sizeof after) != len[i] || memcmp(after, before[i], len[i]))
            fail_msg("%s: %s was changed", r.cmd, names[i]);
    }
    assert_int_equal(entries(work), count);
}

static void test_same_file_clashes(void **state) {
    (void)state;
    char work[512], data[600], model[600], ck[600], png[600], log[600], link[600], ddir[600], dfile[700], in[600];
    workdir(work, "same");
    snprintf(data, sizeof data, "%s/data.safetensors", work);
    snprintf(model, sizeof model, "%s/model.cnn", work);
    snprintf(ck, sizeof ck, "%s/ck.safetensors", work);
    snprintf(png, sizeof png, "%s/ck.png", work);
    snprintf(log, sizeof log, "%s/log.jsonl", work);
    snprintf(link, sizeof link, "%s/link.safetensors", work);
    tu_make_dataset(data, (tu_dataset){.n = 60, .n_test = 30});
    tu_write_text(model, MODEL);
    cli_result r;
    CLI_RUN(&r, work, "train", "--model", model, "--data", data, "--out", ck, "--log", log);
    cli_expect(&r, 0, NULL);
    assert_int_equal(symlink("data.safetensors", link), 0);

    expect_clash(work, (const char *const[]){"train", "--model", model, "--data", data, "--out", data, NULL}, "--out",
                 "--data");
    expect_clash(work, (const char *const[]){"train", "--model", model, "--data", data, "--out", link, NULL}, "--out",
                 "--data"); /* the same file by another name */
    expect_clash(work, (const char *const[]){"train", "--model", model, "--data", data, "--out", model, NULL}, "--out",
                 "--model");
    /* --plot on the checkpoint: the checkpoint here is named .png so that the plot may be too. */
    expect_clash(work, (const char *const[]){"train", "--model", model, "--data", data, "--out", png, "--plot", png, NULL},
                 "--out", "--plot");
    expect_clash(work, (const char *const[]){"train", "--model", model, "--data", data, "--epochs", "2", "--resume", ck,
                                             "--out", ck, "--log", ck, NULL},
                 "--log", "--resume");
    expect_clash(work, (const char *const[]){"train", "--model", model, "--data", data, "--weights", ck, "--out", ck,
                                             NULL},
                 "--out", "--weights");
    /* --data a directory: an output that is one of its files. */
    snprintf(ddir, sizeof ddir, "%s/d", work);
    assert_int_equal(mkdir(ddir, 0700), 0);
    snprintf(dfile, sizeof dfile, "%s/train-images-idx3-ubyte", ddir);
    tu_write_text(dfile, "idx");
    cli_run(&r, work, (const char *const[]){"train", "--model", model, "--data", ddir, "--out", dfile, NULL});
    CLI_EXPECT(&r, 2, "--out", "--data", "are the same file", "train-images-idx3-ubyte");
    char buf[16];
    slurp(dfile, buf, sizeof buf);
    assert_string_equal(buf, "idx");
    /* export and grad. */
    expect_clash(work, (const char *const[]){"export", "--weights", ck, "--out", ck, NULL}, "--out", "--weights");
    snprintf(in, sizeof in, "%s/in.safetensors", work);
    float x[36] = {0};
    const cnn_tensor t = {.name = "input", .dtype = CNN_F32, .ndim = 4, .shape = {1, 1, 6, 6}, .data = x};
    assert_int_equal(cnn_st_save(in, &t, 1, NULL, 0), CNN_OK);
    expect_clash(work, (const char *const[]){"grad", "--model", model, "--init", "1", "--input", in, "--out", in, NULL},
                 "--out", "--input");
    expect_clash(work, (const char *const[]){"grad", "--model", model, "--weights", ck, "--input", in, "--out", ck, NULL},
                 "--out", "--weights");
}

/* --resume X --out X, the usual way to go on in place, is the one pair allowed. */
static void test_resume_in_place(void **state) {
    (void)state;
    char work[512], ck[600];
    workdir(work, "in_place");
    snprintf(ck, sizeof ck, "%s/ck.safetensors", work);
    cli_result r;
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--out", ck);
    cli_expect(&r, 0, NULL);
    assert_int_equal(loads_as(ck, MODEL), 1);
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--epochs", "3", "--resume", ck, "--out", ck);
    CLI_EXPECT(&r, 0, "epoch 3/3");
    assert_int_equal(loads_as(ck, MODEL), 3);
}

/* An output name of 255 bytes (NAME_MAX): the temporary file and the lock file have short names
 * of their own, so the name fits. The checkpoint, the log and the plot. */
static void test_name_of_255_bytes(void **state) {
    (void)state;
    char work[512], name[256], ck[800], log[800], plot[800];
    workdir(work, "long");
    memset(name, 'c', 255);
    name[255] = '\0';
    memcpy(name + 255 - 12, ".safetensors", 12);
    snprintf(ck, sizeof ck, "%s/%s", work, name);
    memset(name, 'l', 255 - 6), memcpy(name + 255 - 6, ".jsonl", 7);
    snprintf(log, sizeof log, "%s/%s", work, name);
    memset(name, 'p', 255 - 4), memcpy(name + 255 - 4, ".png", 5);
    snprintf(plot, sizeof plot, "%s/%s", work, name);
    assert_int_equal(strlen(strrchr(ck, '/') + 1), 255);
    assert_int_equal(strlen(strrchr(log, '/') + 1), 255);
    assert_int_equal(strlen(strrchr(plot, '/') + 1), 255);
    cli_result r;
    CLI_RUN(&r, work, "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--batch", "8",
            "--checkpoint-every", "3", "--out", ck, "--log", log, "--plot", plot);
    cli_expect(&r, 0, NULL);
    assert_int_equal(loads_as(ck, MODEL), 16); /* 2 epochs of 8 batches of 8 */
    assert_true(exists(log));
    assert_true(exists(plot));
    assert_int_equal(entries(work), 5); /* the three, cli.stdout, cli.stderr: no lock or temporary file left */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_on_device_node),
        cmocka_unit_test(test_out_on_fifo),
        cmocka_unit_test(test_symlinks_not_followed),
        cmocka_unit_test(test_mode_kept),
        cmocka_unit_test(test_two_writers_one_out),
        cmocka_unit_test(test_stale_lock_taken_over),
        cmocka_unit_test(test_same_file_clashes),
        cmocka_unit_test(test_resume_in_place),
        cmocka_unit_test(test_name_of_255_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
