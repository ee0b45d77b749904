/* Fuzz target: the model-file parser (cnn_net_parse) and its graphs (names, from= lists), and
 * then, for nets small enough to run quickly, one forward and backward pass on both paths, in
 * training and in eval mode: the parser promises that a net it accepts
 * has been checked once and for all, so that forward and backward cannot go wrong. */
#include "cnn.h"
#include "fuzz.h"

#include <string.h>

/* Nets up to this many activations per sample plus parameters are run, not only parsed. */
#define RUN_LIMIT 20000
#define BATCH 2

static int64_t net_size(const cnn_net *net) {
    int64_t total = 0;
    int chw[3];
    cnn_net_input_shape(net, chw);
    total += (int64_t)chw[0] * chw[1] * chw[2];
    for (int i = 0; i < cnn_net_layer_count(net); i++) {
        int in[3], out[3];
        cnn_net_layer_shapes(net, i, in, out);
        FUZZ_CHECK(out[0] >= 1 && out[1] >= 1 && out[2] >= 1);
        FUZZ_CHECK(cnn_layer_kind_name(cnn_net_layer_kind(net, i)) != NULL);
        total += (int64_t)out[0] * out[1] * out[2];
    }
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        const cnn_param p = cnn_net_param(net, i);
        FUZZ_CHECK(p.numel >= 1 && p.data && p.grad);
        FUZZ_CHECK(cnn_net_param_by_name(net, p.name).data == p.data);
        total += p.numel;
    }
    return total;
}

/* One forward and backward pass of BATCH samples on `path`. */
static void run(cnn_net *net, cnn_path path) {
    FUZZ_CHECK(cnn_net_set_path(net, path) == CNN_OK);
    FUZZ_CHECK(cnn_net_reserve(net, BATCH) == CNN_OK);
    int in[3], out[3];
    cnn_net_input_shape(net, in);
    cnn_net_output_shape(net, out);
    const size_t nx = (size_t)BATCH * in[0] * in[1] * in[2], ny = (size_t)BATCH * out[0] * out[1] * out[2];
    float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy);
    FUZZ_CHECK(x && dy);
    for (size_t i = 0; i < nx; i++) x[i] = (float)((int)(i * 7919 % 17) - 8) / 8.0f;
    for (size_t i = 0; i < ny; i++) dy[i] = (float)((int)(i * 104729 % 13) - 6) / 6.0f;
    cnn_net_zero_grad(net);
    FUZZ_CHECK(cnn_net_forward(net, x, BATCH) == CNN_OK);
    FUZZ_CHECK(cnn_net_backward(net, dy) == CNN_OK);
    FUZZ_CHECK(cnn_net_output(net) && cnn_net_grad_input(net));
    free(x);
    free(dy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    cnn_net *net = NULL;
    const cnn_status s = cnn_net_parse(text, &net);
    free(text);
    if (s != CNN_OK) {
        FUZZ_CHECK(net == NULL);
        FUZZ_CHECK(cnn_last_error()[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(net && cnn_net_layer_count(net) >= 1);
    FUZZ_CHECK(cnn_net_value_count(net) == cnn_net_layer_count(net) + 1);
    for (int v = 0; v < cnn_net_value_count(net); v++)   /* every value is found by its name */
        FUZZ_CHECK(cnn_net_value_find(net, cnn_net_value_name(net, v)) == v);
    for (int i = 0; i < cnn_net_layer_count(net); i++)   /* inputs come before the node: no cycle */
        for (int k = 0; k < cnn_net_layer_input_count(net, i); k++) FUZZ_CHECK(cnn_net_layer_input(net, i, k) <= i);
    for (int i = 0; i < cnn_net_buffer_count(net); i++) FUZZ_CHECK(cnn_net_buffer(net, i).data != NULL);
    if (net_size(net) <= RUN_LIMIT) {
        FUZZ_CHECK(cnn_net_init(net, 1) == CNN_OK);
        run(net, CNN_PATH_FAST);
        run(net, CNN_PATH_REFERENCE);
        cnn_net_set_training(net, 0);   /* eval mode: running statistics, no dropout */
        run(net, CNN_PATH_FAST);
        run(net, CNN_PATH_REFERENCE);
    }
    cnn_net_free(net);
    return 0;
}
