/* Fuzz target: `cnn explain network`'s model path. A model the parser accepts (cnn_net_parse),
 * small enough to run, goes forward one sample; then every layer that reads one value is rebuilt
 * from its line as a net of its own (rebuild_layer, cli/layer_rebuild.c, the code explain network
 * runs) and run forward and backward on that layer's input and on a gradient sized for the layer
 * in the whole net. The parser accepted the line once, so rebuilding it must succeed and give the
 * same layer (a different one would read past the gradient: ASan). */
#include "cnn.h"
#include "fuzz.h"
#include "layer_rebuild.h"

#include <string.h>

#define RUN_LIMIT 20000

static int64_t net_size(const cnn_net *net) {
    int chw[3];
    cnn_net_input_shape(net, chw);
    int64_t total = (int64_t)chw[0] * chw[1] * chw[2];
    for (int i = 0; i < cnn_net_layer_count(net); i++) {
        int in[3], out[3];
        cnn_net_layer_shapes(net, i, in, out);
        total += (int64_t)out[0] * out[1] * out[2];
    }
    for (int i = 0; i < cnn_net_param_count(net); i++) total += cnn_net_param(net, i).numel;
    return total;
}

static size_t elems(const cnn_net *net, int v) {
    int chw[3];
    cnn_net_value_shape(net, v, chw, NULL);
    return (size_t)chw[0] * chw[1] * chw[2];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    cnn_net *net = NULL;
    if (cnn_net_parse(text, &net) != CNN_OK || net_size(net) > RUN_LIMIT) {
        cnn_net_free(net);
        free(text);
        return 0;
    }
    /* Eval mode: batch norm in training mode needs more than one sample, which explain refuses. */
    cnn_net_set_training(net, 0);
    FUZZ_CHECK(cnn_net_init(net, 1) == CNN_OK);
    FUZZ_CHECK(cnn_net_set_path(net, CNN_PATH_REFERENCE) == CNN_OK && cnn_net_reserve(net, 1) == CNN_OK);
    const size_t nin = elems(net, 0);
    float *x = malloc(nin * sizeof *x);
    FUZZ_CHECK(x);
    for (size_t i = 0; i < nin; i++) x[i] = (float)((int)(i * 7919 % 17) - 8) / 8.0f;
    FUZZ_CHECK(cnn_net_forward(net, x, 1) == CNN_OK);
    for (int i = 0; i < cnn_net_layer_count(net); i++) {
        if (cnn_net_layer_input_count(net, i) != 1) continue;
        const int v0 = cnn_net_layer_input(net, i, 0);
        cnn_net *one = NULL;
        int me = -1;
        const cnn_status s = rebuild_layer(text, net, i, 0, &one, &me);
        if (s != CNN_OK) fprintf(stderr, "layer %d: %s\n", i, cnn_last_error());
        FUZZ_CHECK(s == CNN_OK && one && (me == 0 || me == 1));
        /* Exactly the sizes of the whole net's buffers: anything past them is ASan's finding. */
        const size_t no = elems(net, i + 1), ni = elems(net, v0);
        float *dy = malloc(no * sizeof *dy), *in = malloc(ni * sizeof *in);
        FUZZ_CHECK(dy && in);
        memcpy(in, cnn_net_value_data(net, v0), ni * sizeof *in);
        for (size_t j = 0; j < no; j++) dy[j] = (float)((int)(j * 104729 % 13) - 6) / 6.0f;
        cnn_net_zero_grad(one);
        FUZZ_CHECK(cnn_net_forward(one, in, 1) == CNN_OK);
        FUZZ_CHECK(cnn_net_backward(one, dy) == CNN_OK);
        FUZZ_CHECK(cnn_net_grad_input(one) != NULL);
        free(dy);
        free(in);
        cnn_net_free(one);
    }
    free(x);
    cnn_net_free(net);
    free(text);
    return 0;
}
