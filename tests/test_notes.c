/* The notes' worked examples as exact test vectors, on both the reference and the fast path. */
#include "testutil.h"

static const cnn_path paths[2] = {CNN_PATH_REFERENCE, CNN_PATH_FAST};

/* 000: f = (x + y)·z. The graph is built from the library's real layers: q = x + y is a linear
 * layer with weight [1, 1]; f = q·z is a linear layer whose weight is z, so ∂f/∂z is that layer's
 * weight gradient and ∂f/∂x, ∂f/∂y are the input gradient.
 * The note states x = −2, y = 5, z = 4 and f = −12 with ∂f/∂x = ∂f/∂y = 4, ∂f/∂z = 3. Those cannot
 * all hold: (−2 + 5)·4 = 12. The figures come from the original example with z = −4, where
 * f = −12, ∂f/∂x = ∂f/∂y = z = −4 and ∂f/∂z = x + y = 3. Both cases are checked. */
static void chain_rule(float z, double f, double dfdx, double dfdz) {
    for (int k = 0; k < 2; k++) {
        cnn_net *net = tu_net("input 2 1 1\nflatten\nlinear out_features=1 bias=false\n"
                              "linear out_features=1 bias=false\n", 1, paths[k]);
        const float ones[2] = {1, 1}, zz[1] = {z}, xy[2] = {-2, 5}, df[1] = {1};
        tu_set(net, "1.weight", ones, 2);
        tu_set(net, "2.weight", zz, 1);
        tu_run(net, xy, 1, df);
        const double out[1] = {f}, dxy[2] = {dfdx, dfdx}, dz[1] = {dfdz};
        tu_exact("f", cnn_net_output(net), out, 1);
        tu_exact("df/dx, df/dy", cnn_net_grad_input(net), dxy, 2);
        tu_exact("df/dz", cnn_net_param_by_name(net, "2.weight").grad, dz, 1);
        cnn_net_free(net);
    }
}

static void test_chain_rule_000(void **state) {
    (void)state;
    chain_rule(4, 12, 4, 3);      /* the note's inputs: f = 12, df/dx = df/dy = 4, df/dz = 3 */
    chain_rule(-4, -12, -4, 3);   /* the note's f = −12 comes from z = −4 */
}

/* 002/003/004: a 3×3 input X under a 2×2 kernel W, and a given ∂L/∂O. Every element is checked
 * against the notes' formulas, written out here term by term. Small integers keep it exact. */
static void test_conv_3x3_by_2x2(void **state) {
    (void)state;
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};          /* x11 x12 x13 / x21 ... */
    const float w[4] = {1, -2, 3, 4};                        /* w11 w12 / w21 w22 */
    const float b[1] = {10};
    const float d[4] = {1, -1, 2, 3};                        /* ∂L/∂o11 o12 / o21 o22 */
    double xd[9], wd[4], dd[4];
    for (int i = 0; i < 9; i++) xd[i] = x[i];
    for (int i = 0; i < 4; i++) wd[i] = w[i], dd[i] = d[i];
    /* 002 eq. 1-4 (and 003's forward): o_ij = Σ w·x + b; 003/004: the nine ∂L/∂x, i.e. rot180(W)
     * fully convolved with the zero-padded ∂L/∂O; 004 (and 002 eq. 9-10): ∂L/∂W = valid
     * correlation of X with ∂L/∂O, four terms each (003 lists only two per element; that is a
     * slip, and this test would catch it). */
    double o[4], dx[9], dw[4];
    tu_notes_conv_3x3_by_2x2(xd, wd, dd, o, dx, dw);
    for (int i = 0; i < 4; i++) o[i] += b[0];
    const double x11 = x[0], x12 = x[1], x21 = x[3], x22 = x[4];
    const double d11 = d[0], d12 = d[1], d21 = d[2], d22 = d[3];
    const double db[1] = {d11 + d12 + d21 + d22};            /* 002 eq. 12 */
    const double dw_003_slip[4] = {d11 * x11 + d12 * x21, d11 * x12 + d12 * x22, d21 * x11 + d22 * x21,
                                   d21 * x12 + d22 * x22};
    for (int k = 0; k < 2; k++) {
        cnn_net *net = tu_net("input 1 3 3\nconv2d out_channels=1 kernel_size=2\n", 1, paths[k]);
        tu_set(net, "0.weight", w, 4);
        tu_set(net, "0.bias", b, 1);
        tu_run(net, x, 1, d);
        tu_exact("output", cnn_net_output(net), o, 4);
        tu_exact("dL/dx", cnn_net_grad_input(net), dx, 9);
        tu_exact("dL/dw", cnn_net_param_by_name(net, "0.weight").grad, dw, 4);
        tu_exact("dL/db", cnn_net_param_by_name(net, "0.bias").grad, db, 1);
        int differs = 0;
        for (int i = 0; i < 4; i++) differs += cnn_net_param_by_name(net, "0.weight").grad[i] != dw_003_slip[i];
        assert_true(differs > 0);
        cnn_net_free(net);
    }
}

/* 001: δ = [[2, 8], [4, 6]] through 2×2 pooling of a 4×4 input, with the maxima at top-left,
 * bottom-right, top-right and bottom-left of the four windows. */
static void test_pooling_001(void **state) {
    (void)state;
    const float x[16] = {
        9, 1, 1, 2,
        1, 1, 3, 9,
        1, 9, 1, 1,
        2, 3, 9, 1,
    };
    const float delta[4] = {2, 8, 4, 6};
    const double max_dx[16] = {2, 0, 0, 0, 0, 0, 0, 8, 0, 4, 0, 0, 0, 0, 6, 0};
    const double avg_dx[16] = {0.5, 0.5, 2, 2, 0.5, 0.5, 2, 2, 1, 1, 1.5, 1.5, 1, 1, 1.5, 1.5};
    for (int k = 0; k < 2; k++) {
        cnn_net *net = tu_net("input 1 4 4\nmaxpool2d kernel_size=2\n", 1, paths[k]);
        tu_run(net, x, 1, delta);
        const double y[4] = {9, 9, 9, 9};
        tu_exact("max output", cnn_net_output(net), y, 4);
        tu_exact("max dx", cnn_net_grad_input(net), max_dx, 16);
        cnn_net_free(net);
        net = tu_net("input 1 4 4\navgpool2d kernel_size=2\n", 1, paths[k]);
        tu_run(net, x, 1, delta);
        tu_exact("avg dx", cnn_net_grad_input(net), avg_dx, 16);
        cnn_net_free(net);
    }
}

/* 003: overlapping max pooling, 2×2 windows with stride 1 over a 3×3 input. The centre is the
 * maximum of all four windows, so it collects all four gradients. */
static void test_overlapping_pool_003(void **state) {
    (void)state;
    const float x[9] = {1, 2, 3, 4, 9, 5, 6, 7, 8};
    const float d[4] = {1, 2, 3, 4};
    const double dx[9] = {0, 0, 0, 0, 10, 0, 0, 0, 0};
    const double y[4] = {9, 9, 9, 9};
    for (int k = 0; k < 2; k++) {
        cnn_net *net = tu_net("input 1 3 3\nmaxpool2d kernel_size=2 stride=1\n", 1, paths[k]);
        tu_run(net, x, 1, d);
        tu_exact("output", cnn_net_output(net), y, 4);
        tu_exact("dx", cnn_net_grad_input(net), dx, 9);
        cnn_net_free(net);
    }
}

/* Ties: the first maximum in row-major window order takes the gradient, as in PyTorch. */
static void test_maxpool_ties(void **state) {
    (void)state;
    const float x[4] = {5, 5, 5, 5};
    const float d[1] = {7};
    const double dx[4] = {7, 0, 0, 0};
    const float x2[4] = {1, 5, 5, 5};
    const double dx2[4] = {0, 7, 0, 0};
    for (int k = 0; k < 2; k++) {
        cnn_net *net = tu_net("input 1 2 2\nmaxpool2d kernel_size=2\n", 1, paths[k]);
        tu_run(net, x, 1, d);
        tu_exact("dx", cnn_net_grad_input(net), dx, 4);
        tu_run(net, x2, 1, d);
        tu_exact("dx", cnn_net_grad_input(net), dx2, 4);
        cnn_net_free(net);
    }
}

/* 004: relu's derivative is 1 for x > 0 and 0 for x ≤ 0 (0 at 0, as PyTorch); leakyrelu's is the
 * slope at 0. */
static void test_relu_at_zero(void **state) {
    (void)state;
    const float x[4] = {-1, 0, 2, -0.0f};
    const float d[4] = {3, 3, 3, 3};
    const double relu_dx[4] = {0, 0, 3, 0}, leaky_dx[4] = {0.75, 0.75, 3, 0.75};
    for (int k = 0; k < 2; k++) {
        cnn_net *net = tu_net("input 1 2 2\nrelu\n", 1, paths[k]);
        tu_run(net, x, 1, d);
        tu_exact("relu dx", cnn_net_grad_input(net), relu_dx, 4);
        cnn_net_free(net);
        net = tu_net("input 1 2 2\nleakyrelu negative_slope=0.25\n", 1, paths[k]);
        tu_run(net, x, 1, d);
        tu_exact("leakyrelu dx", cnn_net_grad_input(net), leaky_dx, 4);
        cnn_net_free(net);
    }
}

/* 004: fc backward, ∂L/∂x = ∂L/∂Out·Wᵀ and ∂L/∂W = xᵀ·∂L/∂Out, in the notes' layout W [in, out];
 * PyTorch's weight is its transpose. */
static void test_linear_004(void **state) {
    (void)state;
    const float x[6] = {1, 2, 3, -1, 0, 2};                  /* 2 samples × 3 features */
    const float wt[6] = {1, 2, -1, 0, 3, 1};                 /* PyTorch W [2 out, 3 in] */
    const float d[4] = {1, -2, 3, 1};                        /* ∂L/∂Out, 2 × 2 */
    double dx[6], dw[6];
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 3; i++) {
            dx[s * 3 + i] = 0;
            for (int o = 0; o < 2; o++) dx[s * 3 + i] += d[s * 2 + o] * wt[o * 3 + i];  /* Out·Wᵀ, note's W = wtᵀ */
        }
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < 3; i++) {
            dw[o * 3 + i] = 0;
            for (int s = 0; s < 2; s++) dw[o * 3 + i] += x[s * 3 + i] * d[s * 2 + o];   /* (xᵀ·Out)ᵀ */
        }
    const double db[2] = {d[0] + d[2], d[1] + d[3]};
    for (int k = 0; k < 2; k++) {
        cnn_net *net = tu_net("input 3 1 1\nflatten\nlinear out_features=2\n", 2, paths[k]);
        const float b[2] = {0.5f, -0.5f};
        tu_set(net, "1.weight", wt, 6);
        tu_set(net, "1.bias", b, 2);
        tu_run(net, x, 2, d);
        const double y[4] = {1 + 4 - 3 + 0.5, 0 + 6 + 3 - 0.5, -1 + 0 - 2 + 0.5, 0 + 0 + 2 - 0.5};
        tu_exact("output", cnn_net_output(net), y, 4);
        tu_exact("dx", cnn_net_grad_input(net), dx, 6);
        tu_exact("dW", cnn_net_param_by_name(net, "1.weight").grad, dw, 6);
        tu_exact("db", cnn_net_param_by_name(net, "1.bias").grad, db, 2);
        cnn_net_free(net);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_rule_000),  cmocka_unit_test(test_conv_3x3_by_2x2),
        cmocka_unit_test(test_pooling_001),     cmocka_unit_test(test_overlapping_pool_003),
        cmocka_unit_test(test_maxpool_ties),    cmocka_unit_test(test_relu_at_zero),
        cmocka_unit_test(test_linear_004),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
