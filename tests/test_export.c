/* cnn export, through the real binary: a training checkpoint of a batch-norm residual net becomes
 * its state_dict alone (every parameter and buffer, bit for bit, float32 and num_batches_tracked
 * int64, no optim.* entry and no training position), with the model text and the data set's
 * normalisation kept in the metadata; the result is again a model source (summary, export) but
 * no checkpoint to resume; a plain weights file (float64 too) needs --model; bad input exits 2.
 * That PyTorch's load_state_dict(strict=True) takes the output is test_readme_torch's part. */
#include "testutil.h"
#include "clirun.h"
#include "testdata.h"

#include <sys/stat.h>

#define SAMPLES 24

static char dir[64];

static char *path(char *buf, const char *name) { return tu_join(buf, dir, name); }

static const char MODEL[] = "input 2 6 6\n"
                            "conv2d out_channels=4 kernel_size=3 padding=1 bias=false name=conv1\n"
                            "batchnorm2d name=bn1\n"
                            "relu name=stem\n"
                            "conv2d out_channels=4 kernel_size=3 padding=1 name=layer1.0.conv1\n"
                            "batchnorm2d name=layer1.0.bn1\n"
                            "add from=stem\n"
                            "relu name=layer1.0\n"
                            "adaptiveavgpool2d output_size=1\n"
                            "flatten\n"
                            "linear out_features=3 name=fc\n";

static char model_p[512], data_p[512], ck_p[512];

/* Class k's bright 2x2 patch: in channel k % 2 at (k, (2k) % 5). */
static void patch_at(int k, int *row, int *col) { *row = k, *col = 2 * k % 5; }

/* A checkpoint with optimizer state (SGD with momentum), made once for every test. */
static int setup(void **state) {
    (void)state;
    if (tu_make_temp_dir(dir, "test_export")) return -1;
    tu_write_bytes(path(model_p, "model.cnn"), MODEL, strlen(MODEL));
    /* SAMPLES learnable samples of 2x6x6 in 3 classes, on noise (testdata.h). */
    tu_make_dataset(path(data_p, "data.safetensors"),
                    (tu_dataset){.n = SAMPLES, .channels = 2, .seed = 31, .at = patch_at});
    path(ck_p, "ck.safetensors");
    cli_result r;
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "1", "--batch", "8", "--momentum",
            "0.9", "--init", "5", "--out", ck_p);
    CLI_EXPECT(&r, 0, "epoch 1/1");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(dir);
}

/* Exactly the model's parameters and buffers, each as `from` holds it (bit for bit when from's is
 * F32 or I64; rounded from F64). */
static void expect_state_dict(const char *exported, const char *from) {
    cnn_net *net = NULL;
    assert_status(cnn_net_parse(MODEL, &net), CNN_OK);
    cnn_st *e = NULL, *f = NULL;
    assert_status(cnn_st_load(exported, &e), CNN_OK);
    assert_status(cnn_st_load(from, &f), CNN_OK);
    const int np = cnn_net_param_count(net), nb = cnn_net_buffer_count(net);
    assert_int_equal(cnn_st_count(e), np + nb);
    for (int i = 0; i < np + nb; i++) {
        const char *name = i < np ? cnn_net_param(net, i).name : cnn_net_buffer(net, i - np).name;
        const cnn_tensor *t = cnn_st_find(e, name), *s = cnn_st_find(f, name);
        if (!t) fail_msg("%s lacks '%s'", exported, name);
        assert_non_null(s);
        const int counter = strstr(name, "num_batches_tracked") != NULL;
        assert_int_equal(t->dtype, counter ? CNN_I64 : CNN_F32);
        assert_int_equal(t->ndim, s->ndim);
        assert_memory_equal(t->shape, s->shape, sizeof t->shape[0] * (size_t)t->ndim);
        const int64_t n = cnn_tensor_numel(t);
        if (s->dtype == CNN_F64) {
            for (int64_t k = 0; k < n; k++)
                if (((const float *)t->data)[k] != (float)((const double *)s->data)[k])
                    fail_msg("%s[%lld] is not the float of %s's", name, (long long)k, from);
        } else {
            assert_int_equal(s->dtype, t->dtype);
            if (memcmp(t->data, s->data, (size_t)n * cnn_dtype_size(t->dtype)))
                fail_msg("'%s' differs between %s and %s", name, exported, from);
        }
    }
    for (int i = 0; i < cnn_st_count(e); i++)
        if (!strncmp(cnn_st_tensor(e, i)->name, "optim.", 6)) fail_msg("%s holds %s", exported, cnn_st_tensor(e, i)->name);
    cnn_st_free(e);
    cnn_st_free(f);
    cnn_net_free(net);
}

static void test_checkpoint_to_state_dict(void **state) {
    (void)state;
    char out[512];
    path(out, "w.safetensors");
    cnn_st *ck = NULL;
    assert_status(cnn_st_load(ck_p, &ck), CNN_OK);
    assert_non_null(cnn_st_find(ck, "optim.fc.weight.momentum_buffer"));   /* what export leaves out */
    cnn_st_free(ck);

    cli_result r;
    CLI_RUN(&r, dir, "export", "--weights", ck_p, "--out", out);
    cli_expect(&r, 0, NULL);
    assert_non_null(strstr(r.out, "9 parameter tensors (251 values) and 6 buffers"));
    expect_state_dict(out, ck_p);

    cnn_st *e = NULL;
    assert_status(cnn_st_load(out, &e), CNN_OK);
    assert_string_equal(cnn_st_metadata(e, "format"), "pt");
    assert_string_equal(cnn_st_metadata(e, "model"), MODEL);
    assert_string_equal(cnn_st_metadata(e, "data"), "safetensors");
    assert_string_equal(cnn_st_metadata(e, "source"), data_p);
    assert_non_null(cnn_st_metadata(e, "mean"));
    assert_non_null(cnn_st_metadata(e, "std"));
    assert_null(cnn_st_metadata(e, "epoch"));
    assert_null(cnn_st_metadata(e, "optimizer"));
    cnn_st_free(e);

    /* Still a model source; exporting it again changes nothing; but no checkpoint to resume. */
    CLI_RUN(&r, dir, "summary", "--weights", out);
    cli_expect(&r, 0, NULL);
    assert_non_null(strstr(r.out, "layer1.0.bn1"));
    char again[512];
    CLI_RUN(&r, dir, "export", "--weights", out, "--out", path(again, "again.safetensors"));
    cli_expect(&r, 0, NULL);
    assert_int_equal(tu_same_tensors(out, again, ""), 15);
    CLI_RUN(&r, dir, "train", "--model", model_p, "--data", data_p, "--epochs", "2", "--resume", out, "--out",
            path(again, "resumed.safetensors"));
    CLI_EXPECT(&r, 2, "not a cnn training checkpoint");
}

/* A weights file without metadata (cnn_net_save_weights writes one, PyTorch's save_file another)
 * has no model: export refuses it, unless --model names one; float64 tensors come out float32. */
static void test_plain_weights_need_model(void **state) {
    (void)state;
    cnn_net *net = NULL;
    assert_status(cnn_net_parse(MODEL, &net), CNN_OK);
    assert_status(cnn_net_init(net, 8), CNN_OK);
    char plain[512], plain64[512], out[512];
    assert_status(cnn_net_save_weights(net, path(plain, "plain.safetensors"), 0), CNN_OK);

    /* The same weights in float64, as a PyTorch model in double saves them. */
    cnn_st *st = NULL;
    assert_status(cnn_st_load(plain, &st), CNN_OK);
    const int n = cnn_st_count(st);
    cnn_tensor t[32];
    double *buf[32] = {0};
    assert_true(n <= 32);
    for (int i = 0; i < n; i++) {
        t[i] = *cnn_st_tensor(st, i);
        if (t[i].dtype != CNN_F32) continue;
        const int64_t m = cnn_tensor_numel(&t[i]);
        buf[i] = malloc((size_t)(m ? m : 1) * sizeof **buf);
        assert_non_null(buf[i]);
        for (int64_t k = 0; k < m; k++) buf[i][k] = ((const float *)t[i].data)[k] * (1.0 + 1e-9);
        t[i].dtype = CNN_F64, t[i].data = buf[i];
    }
    assert_status(cnn_st_save(path(plain64, "plain64.safetensors"), t, n, NULL, 0), CNN_OK);
    for (int i = 0; i < n; i++) free(buf[i]);
    cnn_st_free(st);
    cnn_net_free(net);

    cli_result r;
    CLI_RUN(&r, dir, "export", "--weights", plain, "--out", path(out, "never.safetensors"));
    CLI_EXPECT(&r, 2, plain, "has no model text in its metadata", "give --model NET.cnn");
    assert_false(tu_exists(out));

    CLI_RUN(&r, dir, "export", "--weights", plain64, "--out", path(out, "from64.safetensors"), "--model", model_p);
    cli_expect(&r, 0, NULL);
    expect_state_dict(out, plain64);
    assert_status(cnn_st_load(out, &st), CNN_OK);
    assert_string_equal(cnn_st_metadata(st, "model"), MODEL);   /* the model file's text */
    assert_null(cnn_st_metadata(st, "data"));
    cnn_st_free(st);
}

static void test_bad_input(void **state) {
    (void)state;
    char out[512], other[512];
    path(out, "bad.safetensors");
    const char lenet_like[] = "input 2 6 6\nconv2d out_channels=4 kernel_size=3\nflatten\nlinear out_features=3\n";
    tu_write_bytes(path(other, "other.cnn"), lenet_like, strlen(lenet_like));
    cli_result r;
    CLI_RUN(&r, dir, "export", "--weights", ck_p);
    CLI_EXPECT(&r, 2, "--weights and --out are required");
    CLI_RUN(&r, dir, "export", "--out", out);
    CLI_EXPECT(&r, 2, "--weights and --out are required");
    CLI_RUN(&r, dir, "export", "--weights", ck_p, "--out", out, "--optimizer", "sgd");
    CLI_EXPECT(&r, 2, "unknown option '--optimizer'");
    CLI_RUN(&r, dir, "export", "--weights", ck_p, "--out");
    CLI_EXPECT(&r, 2, "--out needs a value");
    CLI_RUN(&r, dir, "export", "--weights", ck_p, "--out", "/nonexistent-dir/w.safetensors");
    CLI_EXPECT(&r, 2, "--out /nonexistent-dir/w.safetensors: the directory '/nonexistent-dir' does not exist");
    CLI_RUN(&r, dir, "export", "--weights", ck_p, "--out", dir);
    CLI_EXPECT(&r, 2, "is a directory");
    CLI_RUN(&r, dir, "export", "--weights", "no/such.safetensors", "--out", out);
    CLI_EXPECT(&r, 2, "no/such.safetensors");
    CLI_RUN(&r, dir, "export", "--weights", ck_p, "--out", out, "--model", other);   /* weights of another model */
    CLI_EXPECT(&r, 2, ck_p);
    CLI_RUN(&r, dir, "export", "--weights", ck_p, "--out", out, "--model", "no/such.cnn");
    CLI_EXPECT(&r, 2, "no/such.cnn: cannot open the model file");
    assert_false(tu_exists(out));
    CLI_RUN(&r, dir, "export", "--help");
    cli_expect(&r, 0, NULL);
    assert_non_null(strstr(r.out, "usage: cnn export"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_to_state_dict),
        cmocka_unit_test(test_plain_weights_need_model),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
