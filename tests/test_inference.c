/* Inference mode (cnn_net_set_inference): batch norm folded into the convolution before it, relu
 * fused, weights packed once.
 *
 * ResNet-20 (models/resnet20.cnn, 3×32×32, batch norms with running statistics made unlike 0 and 1
 * by training forwards, and γ, β set away from 1 and 0) and a small net whose convolutions take
 * the im2col path and a conv with a bias: the inference-mode outputs agree with eval mode's within
 * relative L2 1e-6 (float rounding of the folded weights), on 1 and 2 threads with the same bits.
 * The folded values read as NULL and the others do not; backward is refused with a message;
 * parameters written in place are folded in by the next cnn_net_set_inference, and loaded ones
 * (cnn_net_load_weights) by the next forward by themselves; cnn_net_set_training(net, 1) and
 * cnn_net_set_inference(net, 0) leave the mode; a convolution whose output has a second reader is
 * not folded. A batch of one gives the same bits on 1 and 2 threads (its convolutions' tiles
 * go to the threads).
 */
#include "testutil.h"
#include "testdata.h"

#include <stdint.h>

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1.0));
}

static void fill(float *x, size_t n, double phase) {
    for (size_t i = 0; i < n; i++) x[i] = (float)sin(0.37 * (double)i + phase);
}

/* Batch norms' γ and β away from 1 and 0, then three training forwards for running statistics. */
static void prepare(cnn_net *net, const float *x, int n) {
    uint64_t seed = 0x1f2e3d;
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        const cnn_param p = cnn_net_param(net, i);
        if (cnn_net_layer_kind(net, p.layer) != CNN_LAYER_BATCHNORM2D) continue;
        const int bias = strstr(p.name, ".bias") != NULL;
        for (int64_t e = 0; e < p.numel; e++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            p.data[e] = (float)((double)(seed >> 40) / (double)(1ull << 24) + (bias ? -0.5 : 0.5));
        }
    }
    cnn_net_set_training(net, 1);
    for (int pass = 0; pass < 3; pass++) assert_int_equal(cnn_net_forward(net, x, n), CNN_OK);
}

/* Eval mode's output, then inference mode's, compared; returns the relative error. */
static double eval_vs_inference(cnn_net *net, const float *x, int n, float *want, float *got, size_t count) {
    cnn_net_set_training(net, 0);
    assert_int_equal(cnn_net_forward(net, x, n), CNN_OK);
    memcpy(want, cnn_net_output(net), count * sizeof *want);
    assert_int_equal(cnn_net_set_inference(net, 1), CNN_OK);
    assert_true(cnn_net_inference(net));
    assert_false(cnn_net_training(net));
    assert_int_equal(cnn_net_forward(net, x, n), CNN_OK);
    memcpy(got, cnn_net_output(net), count * sizeof *got);
    return rel_l2(got, want, count);
}

static void test_resnet20(void **state) {
    (void)state;
    size_t len;
    char *text = (char *)tu_slurp("models/resnet20.cnn", &len);
    enum { N = 4, IN = 3 * 32 * 32, OUT = 10 };
    cnn_net *net = tu_net(text, N, CNN_PATH_FAST);
    free(text);
    assert_int_equal(cnn_net_init(net, 5), CNN_OK);
    static float x[N * IN], want[N * OUT], got[N * OUT], got2[N * OUT];
    fill(x, N * IN, 0.3);
    prepare(net, x, N);
    const double err = eval_vs_inference(net, x, N, want, got, N * OUT);
    print_message("ResNet-20, batch %d: inference against eval, relative L2 %.3e\n", N, err);
    assert_true(err <= 1e-6);

    /* The same bits on 2 threads, and on a second forward (nothing to fold again). */
    const int threads = cnn_get_threads();
    assert_int_equal(cnn_set_threads(2), CNN_OK);
    assert_int_equal(cnn_net_forward(net, x, N), CNN_OK);
    memcpy(got2, cnn_net_output(net), sizeof got2);
    assert_int_equal(cnn_set_threads(threads), CNN_OK);
    assert_memory_equal(got, got2, sizeof got);

    /* Folded values: conv1's output (bn1 folded in), bn1's (relu fused), not the stem's. */
    const int conv1 = cnn_net_value_find(net, "conv1"), bn1 = cnn_net_value_find(net, "bn1");
    const int stem = cnn_net_value_find(net, "stem"), bn2 = cnn_net_value_find(net, "layer1.0.bn2");
    assert_true(conv1 > 0 && bn1 > 0 && stem > 0 && bn2 > 0);
    assert_null(cnn_net_value_data(net, conv1));
    assert_null(cnn_net_value_data(net, bn1));
    assert_non_null(cnn_net_value_data(net, stem));
    assert_null(cnn_net_value_data(net, bn2));       /* conv2 + bn2 + the add + relu: one node */
    assert_null(cnn_net_value_data(net, bn2 - 1));
    assert_null(cnn_net_value_data(net, bn2 + 1));   /* the add */
    assert_non_null(cnn_net_value_data(net, cnn_net_value_find(net, "layer1.0")));   /* the block */
    assert_null(cnn_net_layer_output(net, conv1 - 1));

    /* No backward in inference mode. */
    static float dy[N * OUT];
    fill(dy, N * OUT, 1.0);
    assert_int_equal(cnn_net_backward(net, dy), CNN_ERR_ARG);
    assert_non_null(strstr(cnn_last_error(), "inference mode"));

    /* A weight and a running statistic written in place, then cnn_net_set_inference again: the
     * next forward folds them in. */
    cnn_param w = cnn_net_param_by_name(net, "layer2.0.conv1.weight");
    assert_non_null(w.data);
    w.data[7] += 0.25f;
    const cnn_tensor rv = cnn_net_buffer(net, 4);   /* layer1.0.bn1's (buffers in state_dict order) */
    assert_string_equal(rv.name, "layer1.0.bn1.running_var");
    ((float *)rv.data)[0] *= 1.5f;
    assert_int_equal(cnn_net_set_inference(net, 1), CNN_OK);
    assert_int_equal(cnn_net_forward(net, x, N), CNN_OK);
    memcpy(got, cnn_net_output(net), sizeof got);
    assert_int_equal(cnn_net_set_inference(net, 0), CNN_OK);
    assert_false(cnn_net_inference(net));
    assert_int_equal(cnn_net_forward(net, x, N), CNN_OK);
    assert_non_null(cnn_net_value_data(net, conv1));
    assert_true(rel_l2(got, cnn_net_output(net), N * OUT) <= 1e-6);
    assert_true(rel_l2(got, want, N * OUT) > 1e-4);   /* the change did change the output */

    /* cnn_net_load_weights folds again by itself: the weights saved now, a running mean
     * changed, then the file loaded back gives the saved weights' outputs. */
    assert_int_equal(cnn_net_set_inference(net, 1), CNN_OK);
    assert_int_equal(cnn_net_forward(net, x, N), CNN_OK);
    memcpy(got, cnn_net_output(net), sizeof got);
    char path[] = "/tmp/cnn_test_inference_XXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(cnn_net_save_weights(net, path, 0), CNN_OK);
    const cnn_tensor rm = cnn_net_buffer(net, 0);
    assert_string_equal(rm.name, "bn1.running_mean");
    ((float *)rm.data)[3] += 2.0f;
    cnn_st *st = NULL;
    assert_int_equal(cnn_st_load(path, &st), CNN_OK);
    assert_int_equal(cnn_net_load_weights(net, st, 0), CNN_OK);
    cnn_st_free(st);
    unlink(path);
    assert_int_equal(cnn_net_forward(net, x, N), CNN_OK);
    assert_memory_equal(got, cnn_net_output(net), sizeof got);

    /* Training mode again: backward works. */
    assert_int_equal(cnn_net_set_inference(net, 1), CNN_OK);
    cnn_net_set_training(net, 1);
    assert_false(cnn_net_inference(net));
    cnn_net_zero_grad(net);
    assert_int_equal(cnn_net_forward(net, x, N), CNN_OK);
    assert_int_equal(cnn_net_backward(net, dy), CNN_OK);
    cnn_net_free(net);
}

/* Convolutions on the im2col path (5 output channels), with a bias, one with two readers (not
 * folded), batch norm without affine, a relu directly after a convolution, a strided one, a
 * grouped one and a depthwise one. */
static void test_small_paths(void **state) {
    (void)state;
    static const char *text =
        "input 3 9 9\n"
        "conv2d out_channels=5 kernel_size=3 padding=1 name=a\n"
        "batchnorm2d affine=false name=abn\n"
        "relu name=ar\n"
        "conv2d out_channels=6 kernel_size=3 stride=2 name=b\n"
        "relu name=br\n"
        "conv2d out_channels=6 kernel_size=1 name=c\n"
        "batchnorm2d name=cbn\n"
        "add from=c,cbn\n"
        "conv2d out_channels=6 kernel_size=3 padding=1 groups=3 name=g\n"
        "batchnorm2d name=gbn\n"
        "conv2d out_channels=6 kernel_size=3 padding=1 groups=6 name=dw\n"
        "batchnorm2d name=dwbn\n"
        "relu name=dwr\n"
        "flatten\nlinear out_features=4\n";
    enum { N = 3, IN = 3 * 9 * 9, OUT = 4 };
    cnn_net *net = tu_net(text, N, CNN_PATH_FAST);
    assert_int_equal(cnn_net_init(net, 9), CNN_OK);
    static float x[N * IN], want[N * OUT], got[N * OUT];
    fill(x, N * IN, 0.7);
    prepare(net, x, N);
    const double err = eval_vs_inference(net, x, N, want, got, N * OUT);
    print_message("small net: inference against eval, relative L2 %.3e\n", err);
    assert_true(err <= 1e-6);
    assert_null(cnn_net_value_data(net, cnn_net_value_find(net, "a")));
    assert_null(cnn_net_value_data(net, cnn_net_value_find(net, "abn")));
    assert_non_null(cnn_net_value_data(net, cnn_net_value_find(net, "ar")));
    assert_null(cnn_net_value_data(net, cnn_net_value_find(net, "b")));
    assert_non_null(cnn_net_value_data(net, cnn_net_value_find(net, "c")));   /* two readers */
    assert_non_null(cnn_net_value_data(net, cnn_net_value_find(net, "cbn")));
    assert_null(cnn_net_value_data(net, cnn_net_value_find(net, "g")));
    assert_non_null(cnn_net_value_data(net, cnn_net_value_find(net, "gbn")));
    assert_null(cnn_net_value_data(net, cnn_net_value_find(net, "dwbn")));
    assert_non_null(cnn_net_value_data(net, cnn_net_value_find(net, "dwr")));
    cnn_net_free(net);
}

/* A batch of one splits each large convolution's tiles among the threads (direct16_forward_par):
 * 1 and 2 threads give the same bits, in training, eval and inference mode. */
static void test_batch_of_one_threads(void **state) {
    (void)state;
    size_t len;
    char *text = (char *)tu_slurp("models/resnet20.cnn", &len);
    enum { IN = 3 * 32 * 32, OUT = 10 };
    cnn_net *net = tu_net(text, 4, CNN_PATH_FAST);
    free(text);
    assert_int_equal(cnn_net_init(net, 3), CNN_OK);
    static float x[4 * IN], one[OUT], two[OUT];
    fill(x, 4 * IN, 1.1);
    prepare(net, x, 4);
    const int threads = cnn_get_threads();
    for (int mode = 0; mode < 3; mode++) {   /* training, eval, inference */
        if (mode == 0) cnn_net_set_training(net, 1);
        if (mode == 1) cnn_net_set_training(net, 0);
        if (mode == 2) assert_int_equal(cnn_net_set_inference(net, 1), CNN_OK);
        assert_int_equal(cnn_set_threads(1), CNN_OK);
        assert_int_equal(cnn_net_forward(net, x + IN, 1), CNN_OK);
        memcpy(one, cnn_net_output(net), sizeof one);
        assert_int_equal(cnn_set_threads(2), CNN_OK);
        assert_int_equal(cnn_net_forward(net, x + IN, 1), CNN_OK);
        memcpy(two, cnn_net_output(net), sizeof two);
        if (memcmp(one, two, sizeof one)) fail_msg("mode %d: 1 and 2 threads differ at batch 1", mode);
    }
    assert_int_equal(cnn_set_threads(threads), CNN_OK);
    cnn_net_free(net);
}

static void test_errors(void **state) {
    (void)state;
    assert_int_equal(cnn_net_set_inference(NULL, 1), CNN_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet20),
        cmocka_unit_test(test_small_paths),
        cmocka_unit_test(test_batch_of_one_threads),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
