/* test_checkpoint.c - cnn_checkpoint_save and cnn_checkpoint_load, the library's checkpoint: a C
 * program that trains, saves, and resumes in a fresh net and optimizer ends with the same bits as
 * one that never stopped (parameters, batch norm's buffers, Adam's moments and step count); the
 * file is the cnn train format (format=cnn-checkpoint-1, "step", optim.* names) and loads as plain
 * weights; and every misuse and bad file is an error that names what is wrong. */
#include "testutil.h"

#define BATCH 4
#define CLASSES 3

static const char *model =
    "input 2 6 6\n"
    "conv2d out_channels=3 kernel_size=3 padding=1\n"
    "batchnorm2d\n"
    "relu\n"
    "maxpool2d kernel_size=2\n"
    "flatten\n"
    "linear out_features=3\n";

static char dir[] = "/tmp/cnn_test_checkpoint_XXXXXX";

static int setup(void **state) {
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    tu_remove_tree(dir);
    return 0;
}

/* dir/name, in a buffer that the next call reuses. */
static const char *path_in(const char *name) {
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static cnn_net *new_net(void) {
    cnn_net *net = tu_net(model, BATCH, CNN_PATH_FAST);
    assert_int_equal(cnn_net_init(net, 7), CNN_OK);
    return net;
}

static cnn_optim *new_adam(cnn_net *net) {
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAM, 0.01);
    c.weight_decay = 1e-3;
    cnn_optim *opt = NULL;
    assert_int_equal(cnn_optim_create(net, &c, &opt), CNN_OK);
    return opt;
}

/* Training steps from..to-1, each on its own batch drawn from the step's number. */
static void train(cnn_net *net, cnn_optim *opt, int from, int to) {
    float x[BATCH * 2 * 6 * 6], dy[BATCH * CLASSES], loss;
    int64_t y[BATCH];
    for (int s = from; s < to; s++) {
        for (int i = 0; i < (int)(sizeof x / sizeof *x); i++) x[i] = (float)(((i * 7 + s * 13) % 17) - 8) / 8.0f;
        for (int i = 0; i < BATCH; i++) y[i] = (i + s) % CLASSES;
        cnn_net_zero_grad(net);
        assert_int_equal(cnn_net_forward(net, x, BATCH), CNN_OK);
        assert_int_equal(cnn_loss_cross_entropy(cnn_net_output(net), y, BATCH, CLASSES, &loss, dy), CNN_OK);
        assert_int_equal(cnn_net_backward(net, dy), CNN_OK);
        cnn_optim_step(opt, 0.01);
    }
}

/* Parameters, buffers and optimizer state of a and b hold the same bits. */
static void assert_same_state(cnn_net *a, cnn_optim *oa, cnn_net *b, cnn_optim *ob) {
    assert_int_equal(cnn_net_param_count(a), cnn_net_param_count(b));
    for (int i = 0; i < cnn_net_param_count(a); i++) {
        const cnn_param pa = cnn_net_param(a, i), pb = cnn_net_param(b, i);
        if (memcmp(pa.data, pb.data, (size_t)pa.numel * sizeof(float)))
            fail_msg("parameter %s differs after the resume", pa.name);
    }
    for (int i = 0; i < cnn_net_buffer_count(a); i++) {
        const cnn_tensor ta = cnn_net_buffer(a, i), tb = cnn_net_buffer(b, i);
        if (memcmp(ta.data, tb.data, (size_t)cnn_tensor_numel(&ta) * cnn_dtype_size(ta.dtype)))
            fail_msg("buffer %s differs after the resume", ta.name);
    }
    cnn_tensor sa[16], sb[16];
    const int n = cnn_optim_state(oa, sa, 16);
    assert_int_equal(n, cnn_optim_state(ob, sb, 16));
    assert_true(n > 0 && n <= 16);
    for (int i = 0; i < n; i++)
        if (memcmp(sa[i].data, sb[i].data, (size_t)cnn_tensor_numel(&sa[i]) * sizeof(float)))
            fail_msg("optimizer state %s differs after the resume", sa[i].name);
    assert_int_equal(cnn_optim_step_count(oa), cnn_optim_step_count(ob));
}

static void test_resume_is_exact(void **state) {
    (void)state;
    /* The run that never stops: 7 steps. */
    cnn_net *a = new_net();
    cnn_optim *oa = new_adam(a);
    train(a, oa, 0, 7);

    /* 4 steps, a checkpoint, and everything freed. */
    cnn_net *b = new_net();
    cnn_optim *ob = new_adam(b);
    train(b, ob, 0, 4);
    const char *meta[] = {"epoch", "1", "note", "written by test_checkpoint"};
    assert_status(cnn_checkpoint_save(path_in("run.safetensors"), b, ob, meta, 2), CNN_OK);
    cnn_optim_free(ob);
    cnn_net_free(b);

    /* A fresh net (other initial weights) and optimizer, resumed for the last 3 steps. */
    cnn_net *c = tu_net(model, BATCH, CNN_PATH_FAST);
    assert_int_equal(cnn_net_init(c, 99), CNN_OK);
    cnn_optim *oc = new_adam(c);
    cnn_st *ck = NULL;
    assert_status(cnn_checkpoint_load(path_in("run.safetensors"), c, oc, &ck), CNN_OK);
    assert_non_null(ck);
    assert_string_equal(cnn_st_metadata(ck, "epoch"), "1");
    assert_string_equal(cnn_st_metadata(ck, "note"), "written by test_checkpoint");
    assert_int_equal(cnn_optim_step_count(oc), 4);
    cnn_st_free(ck);
    train(c, oc, 4, 7);
    assert_same_state(a, oa, c, oc);

    cnn_optim_free(oa), cnn_optim_free(oc);
    cnn_net_free(a), cnn_net_free(c);
}

/* The file is cnn train's: format and step in the metadata, optim.* beside the weights; it loads
 * as weights; without an optimizer there is no step and no optim.*. */
static void test_file_format(void **state) {
    (void)state;
    cnn_net *net = new_net();
    cnn_optim *opt = new_adam(net);
    train(net, opt, 0, 2);
    assert_status(cnn_checkpoint_save(path_in("ck.safetensors"), net, opt, NULL, 0), CNN_OK);
    cnn_st *st = NULL;
    assert_status(cnn_st_load(path_in("ck.safetensors"), &st), CNN_OK);
    assert_string_equal(cnn_st_metadata(st, "format"), "cnn-checkpoint-1");
    assert_string_equal(cnn_st_metadata(st, "format"), CNN_CHECKPOINT_FORMAT);
    assert_string_equal(cnn_st_metadata(st, "step"), "2");
    assert_non_null(cnn_st_find(st, "0.weight"));
    assert_non_null(cnn_st_find(st, "1.running_mean"));
    assert_non_null(cnn_st_find(st, "1.num_batches_tracked"));
    assert_non_null(cnn_st_find(st, "optim.0.weight.exp_avg"));
    assert_non_null(cnn_st_find(st, "optim.5.bias.exp_avg_sq"));
    /* 4 + 2 parameters... : conv (w, b), bn (w, b), linear (w, b); 3 buffers; 2 moments each. */
    assert_int_equal(cnn_st_count(st), 6 + 3 + 12);
    cnn_net *w = tu_net(model, BATCH, CNN_PATH_FAST);
    assert_status(cnn_net_load_weights(w, st, 0), CNN_OK);
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        const cnn_param p = cnn_net_param(net, i), q = cnn_net_param(w, i);
        assert_memory_equal(p.data, q.data, (size_t)p.numel * sizeof(float));
    }
    cnn_st_free(st);

    /* No optimizer: weights, buffers and format only; it loads into a net (out may be NULL). */
    assert_status(cnn_checkpoint_save(path_in("w.safetensors"), net, NULL, (const char *[]){"k", "v"}, 1), CNN_OK);
    assert_status(cnn_st_load(path_in("w.safetensors"), &st), CNN_OK);
    assert_int_equal(cnn_st_count(st), 6 + 3);
    assert_null(cnn_st_metadata(st, "step"));
    assert_string_equal(cnn_st_metadata(st, "k"), "v");
    cnn_st_free(st);
    assert_status(cnn_checkpoint_load(path_in("w.safetensors"), w, NULL, NULL), CNN_OK);

    cnn_net_free(w);
    cnn_optim_free(opt);
    cnn_net_free(net);
}

static void test_errors(void **state) {
    (void)state;
    cnn_net *net = new_net(), *other = new_net();
    cnn_optim *opt = new_adam(net), *sgd = NULL;
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD, 0.1);
    c.momentum = 0.9;
    assert_int_equal(cnn_optim_create(net, &c, &sgd), CNN_OK);
    train(net, opt, 0, 1);
    char ck[256];
    snprintf(ck, sizeof ck, "%s", path_in("e.safetensors"));
    cnn_st *out = (cnn_st *)&c;   /* any non-NULL value: it must be reset to NULL */

    /* Saving. */
    assert_status(cnn_checkpoint_save(NULL, net, opt, NULL, 0), CNN_ERR_ARG);
    assert_status(cnn_checkpoint_save(ck, NULL, opt, NULL, 0), CNN_ERR_ARG);
    assert_status(cnn_checkpoint_save(ck, net, NULL, NULL, 1), CNN_ERR_ARG);
    assert_status(cnn_checkpoint_save(ck, other, opt, NULL, 0), CNN_ERR_ARG);
    assert_error_contains("another net");
    assert_status(cnn_checkpoint_save(ck, net, opt, (const char *[]){"step", "9"}, 1), CNN_ERR_ARG);
    assert_error_contains("'step'");
    assert_status(cnn_checkpoint_save(ck, net, NULL, (const char *[]){"format", "x"}, 1), CNN_ERR_ARG);
    assert_error_contains("'format'");
    assert_status(cnn_checkpoint_save(ck, net, opt, (const char *[]){"a", "1", "a", "2"}, 2), CNN_ERR_ARG);
    assert_status(cnn_checkpoint_save(ck, net, opt, (const char *[]){"a", NULL}, 1), CNN_ERR_ARG);
    assert_status(cnn_checkpoint_save(path_in("no/such/dir.safetensors"), net, opt, NULL, 0), CNN_ERR_IO);
    assert_int_equal(access(ck, F_OK), -1);   /* nothing was written by any of these */

    /* Loading. */
    assert_status(cnn_checkpoint_save(ck, net, opt, NULL, 0), CNN_OK);
    assert_status(cnn_checkpoint_load(NULL, net, opt, &out), CNN_ERR_ARG);
    assert_null(out);
    assert_status(cnn_checkpoint_load(ck, NULL, NULL, NULL), CNN_ERR_ARG);
    assert_status(cnn_checkpoint_load(ck, other, opt, NULL), CNN_ERR_ARG);
    assert_status(cnn_checkpoint_load(path_in("missing.safetensors"), net, opt, &out), CNN_ERR_IO);
    assert_null(out);
    /* SGD with momentum reads momentum_buffer, which Adam's checkpoint lacks. */
    assert_status(cnn_checkpoint_load(ck, net, sgd, &out), CNN_ERR_MISSING);
    assert_error_contains(ck);
    assert_error_contains("optim.0.weight.momentum_buffer");
    assert_null(out);
    assert_int_equal(cnn_optim_step_count(sgd), 0);   /* the optimizer is as it was */
    /* Another model: the shapes differ, and the message says which tensor. */
    cnn_net *wide = tu_net("input 2 6 6\nconv2d out_channels=4 kernel_size=3 padding=1\nbatchnorm2d\nrelu\n"
                           "maxpool2d kernel_size=2\nflatten\nlinear out_features=3\n", BATCH, CNN_PATH_FAST);
    assert_status(cnn_checkpoint_load(ck, wide, NULL, NULL), CNN_ERR_SHAPE);
    assert_error_contains("0.weight");
    cnn_net_free(wide);
    /* Weights alone (no format), and a checkpoint without an optimizer given one. */
    assert_status(cnn_net_save_weights(net, path_in("plain.safetensors"), 0), CNN_OK);
    assert_status(cnn_checkpoint_load(path_in("plain.safetensors"), net, NULL, &out), CNN_ERR_FORMAT);
    assert_error_contains("format=cnn-checkpoint-1");
    assert_null(out);
    assert_status(cnn_checkpoint_save(path_in("noopt.safetensors"), net, NULL, NULL, 0), CNN_OK);
    assert_status(cnn_checkpoint_load(path_in("noopt.safetensors"), net, opt, NULL), CNN_ERR_MISSING);
    assert_error_contains("no optimizer state");
    /* A step count that is not one. */
    const char *bad[] = {"-1", "", "12x", "99999999999999999999", " 3"};
    for (int i = 0; i < 5; i++) {
        cnn_st *st = NULL;
        assert_status(cnn_st_load(ck, &st), CNN_OK);
        cnn_tensor t[32];
        const int n = cnn_st_count(st);
        assert_true(n <= 32);
        for (int k = 0; k < n; k++) t[k] = *cnn_st_tensor(st, k);
        const char *meta[] = {"format", "cnn-checkpoint-1", "step", bad[i]};
        assert_status(cnn_st_save(path_in("bad.safetensors"), t, n, meta, 2), CNN_OK);
        cnn_st_free(st);
        assert_status(cnn_checkpoint_load(path_in("bad.safetensors"), net, opt, NULL), CNN_ERR_FORMAT);
        assert_error_contains("not a step count");
    }

    cnn_optim_free(opt), cnn_optim_free(sgd);
    cnn_net_free(net), cnn_net_free(other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_file_format),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
