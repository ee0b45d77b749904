/* cnn train's data side: --augment, --val-split, --keep-best, --patience and --data cifar10.
 *
 * A run with --augment stopped in the middle of an epoch (SIGINT, with --checkpoint-every) and
 * resumed ends with the same bits as the run never stopped (the augmented stream goes on, its
 * settings restored from the checkpoint), and with the same bits on 2 threads as on 1; without
 * --augment the weights differ. --val-split holds out samples, logs val_loss/val_acc, and a
 * resumed run holds out the same (same bits as a straight run). --keep-best writes
 * NAME-best.safetensors with the epoch and accuracy of the best validation record; a resumed run
 * knows the best so far. --patience stops early with exit 0. Bad values exit 2 naming the option.
 * --data cifar10 reads small CIFAR-format files made here, and says where to get them when absent.
 */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <jansson.h>
#include <sys/stat.h>

static char dir[64];
static char model_p[512], data_p[512], small_p[512], notest_p[512];

static const char MODEL[] = "input 1 6 6\nconv2d out_channels=3 kernel_size=3 padding=1\nrelu\nmaxpool2d kernel_size=2\n"
                            "flatten\nlinear out_features=3\n";

static int setup(void **state) {
    (void)state;
    if (tu_make_temp_dir(dir, "test_train_data")) return -1;
    tu_write_text(tu_join(model_p, dir, "model.cnn"), MODEL);
    tu_make_dataset(tu_join(data_p, dir, "data.safetensors"), (tu_dataset){.n = 600, .n_test = 30});
    tu_make_dataset(tu_join(small_p, dir, "small.safetensors"), (tu_dataset){.n = 60, .n_test = 30});
    tu_make_dataset(tu_join(notest_p, dir, "notest.safetensors"), (tu_dataset){.n = 60});
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

#define AUG_ARGS "--batch", "8", "--optimizer", "adam", "--lr", "0.01", "--seed", "5", "--augment", \
                 "crop=2:reflect,flip,translate=1,cutout=2"

/* Runs the augmented training of 2 epochs with --checkpoint-every 4 to ck and stops it with SIGINT
 * in the middle of an epoch; returns 1 when the checkpoint left is a mid-epoch one. */
static int interrupted_run(const char *ck) {
    char err_p[600], out_p[600];
    static char err[1 << 16];
    snprintf(err_p, sizeof err_p, "%s/int.stderr", dir);
    snprintf(out_p, sizeof out_p, "%s/int.stdout", dir);
    remove(ck);
    const pid_t pid = CLI_SPAWN(out_p, err_p, "train", "--model", model_p, "--data", data_p, "--epochs", "2", AUG_ARGS,
                                "--checkpoint-every", "4", "--threads", "1", "--out", ck);
    cli_wait_for_text(pid, err_p, "augment: ", 60);
    kill(pid, SIGINT);
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) return 0; /* it finished first */
    cli_read_file(err_p, err, sizeof err);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 130) fail_msg("status %d, expected exit 130:\n%s", ws, err);
    char v[64];
    return strcmp(tu_meta(ck, "epoch_step", v, sizeof v), "0") != 0;
}

static void test_augment_resumes_mid_epoch_bit_for_bit(void **state) {
    (void)state;
    char straight[512], two[512], plain[512], ck[512], v[128];
    tu_join(straight, dir, "aug_straight.safetensors");
    tu_join(two, dir, "aug_two.safetensors");
    tu_join(plain, dir, "plain.safetensors");
    tu_join(ck, dir, "aug_ck.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "2", AUG_ARGS, "--threads", "1", "--out",
            straight);
    CLI_EXPECT(&r, 0, "augment: crop=2:reflect,flip,translate=1,cutout=2", "epoch 2/2");
    assert_string_equal(tu_meta(straight, "augment", v, sizeof v), "crop=2:reflect,flip,translate=1,cutout=2");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "2", AUG_ARGS, "--threads", "2", "--out",
            two);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    assert_true(tu_same_tensors(two, straight, "2 threads") >= 4);
    /* Without --augment the run differs: the augmentation did something. */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--batch", "8", "--optimizer",
            "adam", "--lr", "0.01", "--seed", "5", "--threads", "1", "--out", plain);
    CLI_EXPECT(&r, 0, "epoch 2/2");
    cnn_st *a = NULL, *b = NULL;
    assert_status(cnn_st_load(plain, &a), CNN_OK);
    assert_status(cnn_st_load(straight, &b), CNN_OK);
    const cnn_tensor *ta = cnn_st_tensor(a, 0), *tb = cnn_st_find(b, ta->name);
    assert_true(ta && tb);
    assert_true(memcmp(ta->data, tb->data, (size_t)cnn_tensor_numel(ta) * 4) != 0);
    cnn_st_free(a), cnn_st_free(b);

    int mid = 0;
    for (int attempt = 0; attempt < 20 && !mid; attempt++) mid = interrupted_run(ck);
    if (!mid) fail_msg("the run never stopped in the middle of an epoch");
    /* The resume gives no --augment: it comes from the checkpoint. */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--out", ck);
    CLI_EXPECT(&r, 0, "resuming epoch", "augment: crop=2:reflect,flip,translate=1,cutout=2", "epoch 2/2");
    assert_true(tu_same_tensors(ck, straight, "resumed mid-epoch") >= 4);
}

/* The log's records: val_acc of epoch e in acc[e - 1]; returns how many have one. */
static int val_records(const char *log, double *acc, int cap) {
    static char buf[1 << 16];
    cli_read_file(log, buf, sizeof buf);
    int n = 0;
    for (char *line = buf; *line && n < cap;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        const json_t *va = json_object_get(o, "val_acc"), *vl = json_object_get(o, "val_loss");
        if (json_is_number(va) && json_is_number(vl)) acc[n++] = json_number_value(va);
        json_decref(o);
        if (!nl) break;
        line = nl + 1;
    }
    return n;
}

static void test_val_split_and_keep_best(void **state) {
    (void)state;
    char straight[512], ck[512], log[512], slog[512], best[512], v[128];
    tu_join(straight, dir, "val_straight.safetensors");
    tu_join(slog, dir, "val_straight.jsonl");
    tu_join(ck, dir, "val.safetensors");
    tu_join(best, dir, "val-best.safetensors");
    tu_join(log, dir, "val.jsonl");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "3", "--batch", "16", "--seed", "2",
            "--lr", "0.01", "--val-split", "100", "--threads", "1", "--out", straight, "--log", slog);
    CLI_EXPECT(&r, 0, "validation: 100 training samples held out", "(500 train, 30 test)", "validation loss");
    double acc[8];
    assert_int_equal(val_records(slog, acc, 8), 3);
    assert_string_equal(tu_meta(straight, "val_split", v, sizeof v), "100");

    /* 2 epochs with --keep-best, then a resume to 3 that restores --val-split and --keep-best. */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--batch", "16", "--seed", "2",
            "--lr", "0.01", "--val-split", "100", "--keep-best", "--threads", "1", "--out", ck, "--log", log);
    cli_expect(&r, 0, NULL);
    assert_non_null(strstr(r.out, "best checkpoint "));
    assert_true(tu_exists(best));
    const int b2 = acc[1] > acc[0] ? 2 : 1;
    snprintf(v, sizeof v, "%d", b2);
    char got[128];
    assert_string_equal(tu_meta(best, "best_epoch", got, sizeof got), v);
    assert_string_equal(tu_meta(best, "epoch", got, sizeof got), v);
    assert_true(fabs(atof(tu_meta(best, "best_acc", got, sizeof got)) - acc[b2 - 1]) < 1e-6);
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--epochs", "3", "--log", log);
    CLI_EXPECT(&r, 0, "validation: 100 training samples held out", "epoch 3/3");
    assert_true(tu_same_tensors(ck, straight, "resumed with --val-split") >= 4);
    double acc2[8];
    assert_int_equal(val_records(log, acc2, 8), 3);
    for (int i = 0; i < 3; i++) assert_true(acc2[i] == acc[i]);
    const int b3 = acc[2] > acc[b2 - 1] ? 3 : b2;
    snprintf(v, sizeof v, "%d", b3);
    assert_string_equal(tu_meta(best, "best_epoch", got, sizeof got), v);
    assert_string_equal(tu_meta(ck, "best_epoch", got, sizeof got), v);

    /* A resume at lr 0: the accuracy stays that of epoch 3, never better than the best so far,
     * so the best checkpoint is not replaced (it would be, were the best not restored). */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--resume", ck, "--epochs", "4", "--lr", "0");
    CLI_EXPECT(&r, 0, "epoch 4/4");
    assert_string_equal(tu_meta(best, "best_epoch", got, sizeof got), v);
}

static void test_patience_stops_early(void **state) {
    (void)state;
    char ck[512], v[64];
    tu_join(ck, dir, "patience.safetensors");
    cli_result r;
    /* lr 0: the test accuracy never improves on epoch 1's. */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", small_p, "--epochs", "10", "--batch", "8", "--lr", "0",
            "--patience", "2", "--out", ck);
    CLI_EXPECT(&r, 0, "early stop: the test accuracy has not improved for 2 epochs (--patience 2)", "after epoch 1",
               "epoch 3/10");
    assert_non_null(strstr(r.out, "after 3 epoch(s)"));
    assert_null(strstr(r.err, "epoch 4/10"));
    assert_string_equal(tu_meta(ck, "epoch", v, sizeof v), "3");
    assert_string_equal(tu_meta(ck, "patience", v, sizeof v), "2");
}

static void test_bad_input(void **state) {
    (void)state;
    char ck[512];
    tu_join(ck, dir, "bad.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", small_p, "--augment", "crop=1,rotate=5", "--out", ck);
    CLI_EXPECT(&r, 2, "--augment crop=1,rotate=5", "unknown key 'rotate'");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", small_p, "--augment", "crop=6,flip", "--out", ck);
    CLI_EXPECT(&r, 2, "--augment crop=6,flip", "below 6");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", small_p, "--augment", "cutout=7", "--out", ck);
    CLI_EXPECT(&r, 2, "--augment cutout=7", "larger than the 6x6 image");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", small_p, "--augment", "translate=6", "--out", ck);
    CLI_EXPECT(&r, 2, "--augment translate=6");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", small_p, "--val-split", "60", "--out", ck);
    CLI_EXPECT(&r, 2, "--val-split 60", "holds 60 training samples");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", small_p, "--val-split=-1", "--out", ck);
    CLI_EXPECT(&r, 2, "--val-split -1");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", small_p, "--patience", "0", "--out", ck);
    CLI_EXPECT(&r, 2, "--patience 0");
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", notest_p, "--keep-best", "--out", ck);
    CLI_EXPECT(&r, 2, "--keep-best", "no test split", "--val-split");
    assert_false(tu_exists(ck));
    char clash[512];
    tu_join(clash, dir, "bad-best.safetensors"); /* the best checkpoint's path of --out bad.safetensors */
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", small_p, "--keep-best", "--out", ck, "--log", clash);
    CLI_EXPECT(&r, 2, "--keep-best", "same file");
    assert_false(tu_exists(ck));
    CLI_RUN(&r, dir, "train", "--help");
    cli_expect(&r, 0, NULL);
    const char *const opts[] = {"--augment", "--val-split", "--keep-best", "--patience", "cifar10", NULL};
    for (int i = 0; opts[i]; i++)
        if (!strstr(r.out, opts[i])) fail_msg("cnn train --help lacks %s", opts[i]);
}

/* --data cifar10: DATA_DIR/cifar-10-batches-bin, here small files in the CIFAR-10 format. */
static void test_cifar10_by_name(void **state) {
    (void)state;
    char root[512], bin[512], p[512], ck[512];
    tu_join(root, dir, "cifar_root");
    assert_int_equal(mkdir(root, 0700), 0);
    tu_join(ck, dir, "cifar.safetensors");
    char model[512];
    tu_write_text(tu_join(model, dir, "cifar.cnn"), "input 3 32 32\nconv2d out_channels=2 kernel_size=4 stride=4\n"
                                                    "relu\nflatten\nlinear out_features=10\n");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model, "--data", "cifar10", "--data-dir", root, "--out", ck);
    CLI_EXPECT(&r, 2, "cifar-10-batches-bin/data_batch_1.bin", "test_batch.bin",
               "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "'make data' cannot fetch it");
    tu_join(bin, root, "cifar-10-batches-bin");
    assert_int_equal(mkdir(bin, 0700), 0);
    enum { REC = 3073 };
    static uint8_t buf[40 * REC];
    uint64_t s = 99;
    for (int i = 0; i < 40; i++) {
        buf[i * REC] = (uint8_t)(i % 10);
        for (int j = 1; j < REC; j++) buf[i * REC + j] = (uint8_t)(tu_next_float(&s) * 1000);
    }
    tu_write_bytes(tu_join(p, bin, "data_batch_1.bin"), buf, 30 * REC);
    tu_write_bytes(tu_join(p, bin, "test_batch.bin"), buf + 30 * REC, 10 * REC);
    CLI_RUN(&r, dir, "train", "--model", model, "--data", "cifar10", "--data-dir", root, "--batch", "8", "--augment",
            "crop=4,flip", "--out", ck);
    CLI_EXPECT(&r, 0, "on cifar10 (30 train, 10 test)", "augment: crop=4,flip", "epoch 1/1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_augment_resumes_mid_epoch_bit_for_bit),
        cmocka_unit_test(test_val_split_and_keep_best),
        cmocka_unit_test(test_patience_stops_early),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_cifar10_by_name),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
