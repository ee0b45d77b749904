/* Central-difference checks of every layer over a grid of options, in double precision, and the
 * fast path held to the reference path on the same grid. One cmocka test per grid point. */
#include "testutil.h"

#include "kernels/direct.h"
#include "layers/loss.h"

#define MAX_POINTS 2048
#define NUMERIC_TOL 1e-6     /* reference backward against central differences (double) */
#define FAST_TOL 1e-5        /* fast float path against the double reference, relative L2 */

static char *models[MAX_POINTS];
static char *names[MAX_POINTS];
static int npoints;

/* A point's spec is "n gemm eval\nmodel": gemm = 1 runs it with the direct convolution kernels
 * off, so that on a CPU with AVX-512 the im2col + GEMM path is held to the reference as well, and
 * gemm = 2 with them on and every stride-1 forward in wide rows (direct16_wide);
 * eval = 1 checks it in eval mode (cnn_net_set_training(net, 0)). */
static void add_spec(int n, int gemm, int eval, const char *text) {
    if (npoints == MAX_POINTS) {   /* never drop a point silently */
        fprintf(stderr, "test_grid: more than %d grid points: raise MAX_POINTS\n", MAX_POINTS);
        exit(1);
    }
    char name[600];   /* "N=2 [eval] [2 3 4] tanh name=a / add from=a,a": the batch, the input, every layer line */
    const char *line = text + strlen("input ");
    int at = snprintf(name, sizeof name, "N=%d %s%s[%.*s]", n, gemm == 1 ? "[im2col] " : gemm == 2 ? "[wide] " : "", eval ? "[eval] " : "",
                      (int)strcspn(line, "\n"), line);
    for (const char *sep = " "; (line = strchr(line, '\n')) && *++line && at < (int)sizeof name; sep = " / ")
        at += snprintf(name + at, sizeof name - at, "%s%.*s", sep, (int)strcspn(line, "\n"), line);
    models[npoints] = malloc(strlen(text) + 24);
    snprintf(models[npoints], strlen(text) + 24, "%d %d %d\n%s", n, gemm, eval, text);
    names[npoints] = strdup(name);
    npoints++;
}

/* A grid point, in training mode or (eval = 1) in eval mode; a convolution is checked on both of
 * its fast paths. */
static void add_point_v(int n, int eval, const char *fmt, va_list ap) {
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    add_spec(n, 0, eval, text);
    const int conv = strstr(text, "conv2d") || strstr(text, "convtranspose2d");
    if ((conv || strstr(text, "maxpool2d")) && direct16_available()) {
        add_spec(n, 1, eval, text);   /* also maxpool2d's plain rows, which its AVX-512 rows replace */
        if (conv) add_spec(n, 2, eval, text);   /* the direct kernels with every stride-1 forward in wide rows */
    }
}

static void add_point(int n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    add_point_v(n, 0, fmt, ap);
    va_end(ap);
}

static void add_point_eval(int n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    add_point_v(n, 1, fmt, ap);
    va_end(ap);
}

/* Before a point's check. Batch norm's weight and bias start at 1 and 0, which would hide a γ or
 * β used in the wrong place: give them seeded values in (0.5, 1.5) and (−0.5, 0.5). In eval
 * mode, three training forwards of batch 4 first make its running statistics something other
 * than 0 and 1. */
static void prepare_point(cnn_net *net, int n, int eval) {
    uint64_t seed = 0x5eed;
    for (int i = 0; i < cnn_net_param_count(net); i++) {
        const cnn_param p = cnn_net_param(net, i);
        const cnn_layer_kind k = cnn_net_layer_kind(net, p.layer);
        if (k != CNN_LAYER_BATCHNORM2D && k != CNN_LAYER_BATCHNORM1D) continue;
        const int bias = strstr(p.name, ".bias") != NULL;
        for (int64_t e = 0; e < p.numel; e++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            p.data[e] = (float)((double)(seed >> 40) / (double)(1ull << 24) + (bias ? -0.5 : 0.5));
        }
    }
    if (!eval) return;
    int in[3];
    cnn_net_input_shape(net, in);
    const int warm = 4, count = warm * in[0] * in[1] * in[2];
    float *x = malloc((size_t)count * sizeof *x);
    assert_int_equal(cnn_net_reserve(net, n > warm ? n : warm), CNN_OK);
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < count; i++) x[i] = (float)(0.5 + 1.5 * sin(0.7 * i + pass) + 0.2 * pass);
        assert_int_equal(cnn_net_forward(net, x, warm), CNN_OK);
    }
    free(x);
    cnn_net_set_training(net, 0);
}

/* Runs cnn_gradcheck on the model of one grid point and asserts every row. */
static void test_point(void **state) {
    const char *spec = *state;
    int n, gemm, eval;
    assert_int_equal(sscanf(spec, "%d %d %d", &n, &gemm, &eval), 3);
    const char *text = strchr(spec, '\n') + 1;
    direct16_enable(gemm != 1);
    direct16_wide(gemm == 2 ? 2 : 1);
    cnn_net *net = NULL;
    if (cnn_net_parse(text, &net) != CNN_OK) fail_msg("parse: %s\n%s", cnn_last_error(), text);
    assert_int_equal(cnn_net_init(net, 7), CNN_OK);
    prepare_point(net, n, eval);
    cnn_gradcheck_row rows[64];
    int nrows = 0;
    assert_int_equal(cnn_gradcheck(net, n, 11, 96, rows, 64, &nrows), CNN_OK);
    assert_true(nrows >= 2 * cnn_net_layer_count(net));
    for (int i = 0; i < nrows; i++) {
        const cnn_gradcheck_row *r = &rows[i];
        if (strcmp(r->tensor, "output")) {
            assert_true(r->checked > 0);
            if (!(r->max_rel_err <= NUMERIC_TOL))
                fail_msg("layer %d %s: central differences differ by %.3e\n%s", r->layer, r->tensor,
                         r->max_rel_err, text);
        }
        if (!(r->fast_rel_err <= FAST_TOL))
            fail_msg("layer %d %s: fast path differs from the reference by %.3e\n%s", r->layer, r->tensor,
                     r->fast_rel_err, text);
    }
    cnn_net_free(net);
    direct16_enable(1);
    direct16_wide(1);
}

static void build_grid(void) {
    static const char *kernels[] = {"3", "2,3"};
    static const char *groups_out[][2] = {{"1", "4"}, {"2", "6"}, {"4", "4"}, {"4", "8"}};  /* groups, out */
    int k = 0;
    for (int ki = 0; ki < 2; ki++)
        for (int s = 1; s <= 3; s++)
            for (int p = 0; p <= 2; p++)
                for (int d = 1; d <= 2; d++)
                    for (int g = 0; g < 4; g++, k++) {
                        const int n = k % 2 ? 3 : 1;
                        add_point(n, "input 4 7 8\nconv2d out_channels=%s kernel_size=%s stride=%d padding=%d "
                                     "dilation=%d groups=%s bias=%s\n",
                                  groups_out[g][1], kernels[ki], s, p, d, groups_out[g][0],
                                  (k / 2) % 2 ? "false" : "true");
                    }
    /* rectangular stride, padding and dilation pairs */
    add_point(2, "input 3 9 7\nconv2d out_channels=3 kernel_size=3,2 stride=2,1 padding=2,0 dilation=1,2 groups=3\n");
    add_point(3, "input 2 6 10\nconv2d out_channels=4 kernel_size=1,4 stride=1,3 padding=0,1 dilation=1,2\n");
    add_point(1, "input 2 5 5\nconv2d out_channels=3 kernel_size=1\n");   /* pointwise fast path */
    /* batches larger than the 8 chunks: several samples per chunk, side by side in one GEMM */
    add_point(17, "input 3 6 5\nconv2d out_channels=4 kernel_size=3 padding=1 stride=2\n");
    add_point(19, "input 4 7 7\nconv2d out_channels=6 kernel_size=2,3 dilation=2,1 groups=2 bias=false\n");
    add_point(18, "input 1 9 8\nconv2d out_channels=3 kernel_size=3 padding=1\n");   /* direct */
    add_point(17, "input 3 4 4\nconv2d out_channels=5 kernel_size=1\n");             /* pointwise */
    /* the direct kernels for several channels (AVX-512): 16 output channels (LeNet-5's second
     * layer), two blocks of 16 per group, and 48 = 2 + 1 blocks with 7 = 6 + 1 input channels,
     * 20 taps (12 + 8), rows wider than the 12 positions of a tile */
    add_point(17, "input 6 14 14\nconv2d out_channels=16 kernel_size=5\n");
    add_point(3, "input 4 6 6\nconv2d out_channels=64 kernel_size=3 padding=1 groups=2\n");
    add_point(2, "input 7 5 27\nconv2d out_channels=48 kernel_size=5,4 padding=2,1 dilation=1,2 bias=false\n");
    /* 16 or more input channels per group: the input gradient as a forward pass over dy with the
     * rotated kernels (24 = 16 + 8 per group); padding wider than the kernel keeps the other way */
    add_point(3, "input 16 6 7\nconv2d out_channels=16 kernel_size=3 padding=1\n");
    add_point(2, "input 48 5 6\nconv2d out_channels=48 kernel_size=3,2 padding=2,0 dilation=2,1 groups=2\n");
    add_point(2, "input 16 4 5\nconv2d out_channels=16 kernel_size=2 padding=2\n");
    /* ResNet-20's 3×3 at stride 1, 16, 32 and 64 channels on odd planes, several samples per
     * chunk: the weight gradient's rolling broadcasts (one and two blocks of 16, then 2 + 1 with
     * 48), and kernels of 5 and 4 rows (rows of taps in blocks of 3 + 2 and 3 + 1) */
    add_point(17, "input 16 7 9\nconv2d out_channels=16 kernel_size=3 padding=1 bias=false\n");
    add_point(19, "input 32 7 9\nconv2d out_channels=32 kernel_size=3 padding=1\n");
    add_point(17, "input 64 5 7\nconv2d out_channels=64 kernel_size=3 padding=1 bias=false\n");
    add_point(3, "input 16 7 9\nconv2d out_channels=48 kernel_size=5,3 padding=2,1\n");
    add_point(2, "input 8 9 5\nconv2d out_channels=32 kernel_size=4,3 padding=0,2 dilation=2,1\n");
    /* rows of 3 taps with a row stride or dilation, no padding, and one padding row only */
    add_point(3, "input 16 9 7\nconv2d out_channels=16 kernel_size=3 stride=2,1 padding=1\n");
    add_point(2, "input 16 9 7\nconv2d out_channels=32 kernel_size=3 dilation=2,1 padding=2,1 bias=false\n");
    add_point(3, "input 16 6 5\nconv2d out_channels=16 kernel_size=3\n");
    add_point(2, "input 16 6 5\nconv2d out_channels=24 kernel_size=3 padding=1,0\n");
    /* strided, 16 or more input channels: the input gradient phase by phase, including phases no
     * tap reaches (kernel 2, stride 3), strides that share a factor with the dilation, and 24 */
    add_point(3, "input 16 7 9\nconv2d out_channels=16 kernel_size=3 stride=2 padding=1\n");
    add_point(2, "input 24 9 8\nconv2d out_channels=24 kernel_size=3,2 stride=3,2 padding=1,0 dilation=2,1\n");
    add_point(2, "input 16 8 8\nconv2d out_channels=16 kernel_size=2 stride=3 bias=false\n");
    add_point(2, "input 32 9 10\nconv2d out_channels=32 kernel_size=3 stride=2 padding=2 dilation=2 groups=2\n");
    /* padding=same (stride 1): odd kernels pad alike on both sides and keep their fast paths; an
     * even dilated kernel pads one more at the bottom and right, on im2col + GEMM; valid = 0 */
    static const char *same[] = {
        "input 4 7 8\nconv2d out_channels=4 kernel_size=3 padding=same\n",
        "input 4 7 8\nconv2d out_channels=6 kernel_size=2 padding=same groups=2\n",
        "input 4 7 8\nconv2d out_channels=4 kernel_size=4 padding=same bias=false\n",
        "input 4 7 8\nconv2d out_channels=4 kernel_size=2 dilation=2 padding=same\n",   /* 2 = 1 + 1 */
        "input 4 9 8\nconv2d out_channels=4 kernel_size=3 dilation=2 padding=same\n",
        "input 3 6 9\nconv2d out_channels=4 kernel_size=3,4 dilation=1,2 padding=same\n",   /* 1+1, 3+3 */
        "input 3 6 9\nconv2d out_channels=5 kernel_size=3,2 dilation=1,3 padding=same\n",   /* 1+1, 1+2 */
        "input 3 6 9\nconv2d out_channels=2 kernel_size=4,3 padding=same\n",   /* 1+2, 1+1 */
        "input 3 6 7\nconv2d out_channels=6 kernel_size=3 groups=3 padding=same\n",   /* direct */
        "input 3 6 7\nconv2d out_channels=3 kernel_size=2,5 groups=3 padding=same\n",
        "input 16 5 6\nconv2d out_channels=16 kernel_size=5 padding=same\n",
        "input 16 5 6\nconv2d out_channels=16 kernel_size=4 padding=same\n",
        "input 2 5 5\nconv2d out_channels=3 kernel_size=1 padding=same\n",   /* pointwise */
        "input 2 5 5\nconv2d out_channels=3 kernel_size=3 padding=valid\n",
    };
    for (int i = 0; i < (int)(sizeof same / sizeof same[0]); i++) add_point(1 + i % 3, "%s", same[i]);
    add_point(17, "input 3 6 5\nconv2d out_channels=4 kernel_size=2,4 padding=same\n");
    /* convtranspose2d over the same kind of grid; output_padding cycles through what PyTorch
     * allows (below max(stride, dilation)). Its fast path is conv2d's, so each point runs on both. */
    for (int ki = 0; ki < 2; ki++)
        for (int s = 1; s <= 3; s++)
            for (int p = 0; p <= 1; p++)
                for (int d = 1; d <= 2; d++)
                    for (int g = 0; g < 4; g++, k++) {
                        const int n = 1 + k % 3, op = k % (s > d ? s : d);
                        add_point(n, "input 4 5 6\nconvtranspose2d out_channels=%s kernel_size=%s stride=%d padding=%d "
                                     "output_padding=%d dilation=%d groups=%s bias=%s\n",
                                  groups_out[g][1], kernels[ki], s, p, op, d, groups_out[g][0],
                                  (k / 2) % 2 ? "false" : "true");
                    }
    /* output_padding ≥ stride (dilation larger than the stride): the equivalent conv2d pads fewer
     * rows after than before and takes im2col + GEMM */
    add_point(2, "input 3 4 5\nconvtranspose2d out_channels=2 kernel_size=3 dilation=2 output_padding=1\n");
    add_point(1, "input 4 4 5\nconvtranspose2d out_channels=4 kernel_size=2 stride=2,1 dilation=3 output_padding=2,1 "
                 "padding=1 groups=2\n");
    add_point(3, "input 2 3 4\nconvtranspose2d out_channels=3 kernel_size=1 dilation=2 output_padding=1 padding=0,1\n");
    /* rectangular pairs, padding beyond the kernel (the output shrinks), kernel 1 */
    add_point(2, "input 3 6 5\nconvtranspose2d out_channels=6 kernel_size=3,2 stride=2,3 padding=2,0 "
                 "output_padding=1,2 dilation=1,2 groups=3\n");
    add_point(3, "input 2 6 6\nconvtranspose2d out_channels=3 kernel_size=3 padding=2 bias=false\n");
    add_point(1, "input 3 4 4\nconvtranspose2d out_channels=5 kernel_size=1\n");
    add_point(2, "input 3 4 4\nconvtranspose2d out_channels=2 kernel_size=1 stride=2 output_padding=1\n");
    /* one output channel per group (the equivalent conv2d's one-channel direct path), and 16 or
     * more (its direct kernels for several channels, at stride 1 and by phases), batches over the
     * 8 chunks */
    add_point(3, "input 1 5 6\nconvtranspose2d out_channels=1 kernel_size=3 padding=1\n");
    add_point(2, "input 4 5 6\nconvtranspose2d out_channels=4 kernel_size=3 stride=2 groups=4 output_padding=1\n");
    add_point(2, "input 16 4 5\nconvtranspose2d out_channels=16 kernel_size=3 padding=1\n");
    add_point(2, "input 16 4 4\nconvtranspose2d out_channels=24 kernel_size=3 stride=2 padding=1 output_padding=1\n");
    add_point(2, "input 8 3 4\nconvtranspose2d out_channels=32 kernel_size=4 stride=2 padding=1 groups=2\n");
    add_point(17, "input 3 4 5\nconvtranspose2d out_channels=4 kernel_size=3 stride=2 padding=1 output_padding=1\n");
    add_point(19, "input 16 3 3\nconvtranspose2d out_channels=16 kernel_size=2 stride=2 bias=false\n");
    /* between other layers: its input gradient is needed */
    add_point(2, "input 2 4 4\nconv2d out_channels=3 kernel_size=3 padding=1\nconvtranspose2d out_channels=2 "
                 "kernel_size=3 stride=2 padding=1 output_padding=1\ntanh\n");
    static const char *pk[] = {"2", "3", "3,2"};
    for (int avg = 0; avg < 2; avg++)
        for (int ki = 0; ki < 3; ki++)
            for (int s = 1; s <= 3; s++)
                for (int p = 0; p <= 1; p++)
                    for (int ceil = 0; ceil < 2; ceil++)
                        for (int cip = 0; cip < (avg ? 2 : 1); cip++, k++) {
                            const int n = k % 2 ? 3 : 1;
                            char extra[64] = "";
                            if (avg) snprintf(extra, sizeof extra, " count_include_pad=%s", cip ? "true" : "false");
                            add_point(n, "input 3 7 6\n%s kernel_size=%s stride=%d padding=%d ceil_mode=%s%s\n",
                                      avg ? "avgpool2d" : "maxpool2d", pk[ki], s, p, ceil ? "true" : "false", extra);
                        }
    /* padding 2 needs a kernel of at least 4 (PyTorch allows padding up to half the kernel) */
    for (int avg = 0; avg < 2; avg++)
        for (int ceil = 0; ceil < 2; ceil++)
            for (int n = 1; n <= 3; n += 2)
                add_point(n, "input 2 9 8\n%s kernel_size=4,5 stride=3,2 padding=2 ceil_mode=%s%s\n",
                          avg ? "avgpool2d" : "maxpool2d", ceil ? "true" : "false",
                          avg ? (n == 1 ? " count_include_pad=false" : " count_include_pad=true") : "");
    add_point(2, "input 2 5 7\nmaxpool2d kernel_size=3\n");   /* stride defaults to kernel_size */
    /* 2×2 windows in rows of 14 (LeNet-5's), 9 and 5 windows: one and two vectors of 8, a partial
     * one, and a column and row that no window covers; after relu, ties at 0 */
    add_point(3, "input 3 12 28\nmaxpool2d kernel_size=2\n");
    add_point(2, "input 2 11 19\nmaxpool2d kernel_size=2\n");
    add_point(2, "input 2 10 10\nrelu\nmaxpool2d kernel_size=2\n");
    add_point(2, "input 2 5 7\navgpool2d kernel_size=2,3 padding=1,1 ceil_mode=true\n");
    static const char *acts[] = {"relu", "leakyrelu", "leakyrelu negative_slope=0.3", "sigmoid", "tanh", "flatten"};
    for (int a = 0; a < 6; a++)
        for (int n = 1; n <= 3; n += 2) add_point(n, "input 2 3 4\n%s\n", acts[a]);
    for (int b = 0; b < 2; b++)
        for (int n = 1; n <= 3; n += 2)
            add_point(n, "input 3 2 2\nflatten\nlinear out_features=5 bias=%s\n", b ? "true" : "false");
    /* batch norm, in training mode (batch statistics) and in eval mode (the running statistics,
     * or the batch's without track_running_stats), over affine, track_running_stats and momentum
     * (which changes what eval mode sees): batch 1 with H·W > 1, batches 2 to 4 */
    static const char *moms[] = {"", " momentum=0.3", " momentum=none"};
    static const char *bn_in[] = {"input 3 4 5", "input 2 3 3", "input 4 2 3", "input 3 5 2"};
    for (int eval = 0; eval < 2; eval++)
        for (int affine = 0; affine < 2; affine++)
            for (int track = 0; track < 2; track++)
                for (int m = 0; m < 3; m++, k++) {
                    const int n = 1 + k % 4;
                    (eval ? add_point_eval : add_point)(n, "%s\nbatchnorm2d affine=%s track_running_stats=%s%s\n",
                                                        bn_in[k % 4], affine ? "true" : "false",
                                                        track ? "true" : "false", moms[m]);
                }
    add_point(2, "input 3 3 3\nbatchnorm2d eps=1e-3 num_features=3\n");
    add_point(1, "input 2 1 2\nbatchnorm2d\n");   /* two values per channel: the smallest batch */
    add_point_eval(1, "input 2 1 1\nbatchnorm2d\n");   /* one value per channel is fine in eval mode */
    for (int eval = 0; eval < 2; eval++)
        for (int n = 2; n <= 3; n++)
            (eval ? add_point_eval : add_point)(n, "input 2 6 6\nconv2d out_channels=4 kernel_size=3\n"
                                                   "batchnorm2d\nrelu\n");
    /* batchnorm1d after linear, batches 2 to 8 */
    for (int n = 2; n <= 8; n++) {
        add_point(n, "input 3 2 2\nflatten\nlinear out_features=6\nbatchnorm1d%s\nrelu\n", moms[n % 3]);
        add_point_eval(n, "input 3 2 2\nflatten\nlinear out_features=6\nbatchnorm1d%s\n", moms[n % 3]);
    }
    for (int affine = 0; affine < 2; affine++)
        for (int track = 0; track < 2; track++)
            for (int eval = 0; eval < 2; eval++)
                (eval ? add_point_eval : add_point)(2 + affine + 2 * track, "input 6 1 1\nflatten\nbatchnorm1d "
                                                    "affine=%s track_running_stats=%s\n", affine ? "true" : "false",
                                                    track ? "true" : "false");
    /* Adaptive pooling: windows of unequal sizes (7 rows into 2, 3), overlapping (7 into 3: rows 2
     * and 4 are shared), repeated (output larger than the input), rectangular; the global 1×1 on
     * planes of 42, 45 and 16 cells (16 lanes, with and without a tail) and on a plane of 99. */
    static const char *ains[] = {"3 7 6", "2 5 9", "1 4 4"};
    static const char *aouts[] = {"1", "2", "3", "2,3", "3,2", "8", "9,4"};
    for (int mx = 0; mx < 2; mx++)
        for (int i = 0; i < 3; i++)
            for (int o = 0; o < 7; o++, k++)
                add_point(k % 2 ? 3 : 1, "input %s\n%s output_size=%s\n", ains[i],
                          mx ? "adaptivemaxpool2d" : "adaptiveavgpool2d", aouts[o]);
    add_point(2, "input 2 9 11\nadaptiveavgpool2d output_size=1\n");
    add_point(2, "input 2 9 11\nadaptivemaxpool2d output_size=1,1\n");
    /* add and concat of 2 and 3 inputs; the same value twice; flat values */
    add_point(1, "input 2 3 4\ntanh name=a\nadd from=input\n");
    add_point(3, "input 2 3 4\ntanh name=a\nsigmoid from=input name=b\nadd from=a,b,input\n");
    add_point(2, "input 2 3 4\ntanh name=a\nadd from=a,a\n");
    add_point(2, "input 2 3 4\nflatten name=f\nlinear out_features=24\nadd from=f\n");
    add_point(1, "input 2 3 4\nconv2d out_channels=3 kernel_size=1 name=a\nconcat from=input\n");
    add_point(3, "input 2 3 4\nconv2d out_channels=3 kernel_size=1 name=a\n"
                 "conv2d out_channels=1 kernel_size=3 padding=1 from=input name=b\nconcat from=a,input,b dim=1\n");
    add_point(2, "input 2 3 4\nflatten name=f\nlinear out_features=5\nconcat from=f\n");
    /* a residual block */
    add_point(2, "input 3 5 5\nconv2d out_channels=4 kernel_size=3 padding=1 name=a\nrelu\n"
                 "conv2d out_channels=4 kernel_size=3 padding=1\nadd from=a\n");
    /* gelu (both forms), silu and softmax over channels, flat and at each position; mode does not
     * matter to them */
    static const char *smooth[] = {"gelu", "gelu approximate=tanh", "silu", "softmax", "softmax dim=1"};
    for (int a = 0; a < 5; a++)
        for (int n = 1; n <= 3; n += 2) add_point(n, "input 3 4 5\n%s\n", smooth[a]);
    add_point(2, "input 2 3 4\nflatten\nsoftmax\n");
    add_point(3, "input 7 1 1\nsoftmax\n");
    add_point(2, "input 1 3 3\nsoftmax\n");   /* one channel: y = 1, dx = 0 */
    /* dropout: in training mode the mask is a fixed function of the node's seed, so central
     * differences see the same mask on every forward; eval mode is the identity */
    static const char *drops[] = {"dropout", "dropout p=0.1", "dropout p=0.9", "dropout p=0", "dropout p=1"};
    for (int a = 0; a < 5; a++)
        for (int n = 1; n <= 3; n += 2) {
            add_point(n, "input 3 4 5\n%s\n", drops[a]);
            add_point_eval(n, "input 3 4 5\n%s\n", drops[a]);
        }
    add_point(2, "input 2 3 4\nflatten\ndropout p=0.3 inplace=true\n");
}

/* Losses: central differences of the double versions, and the float API against them. */
static void test_cross_entropy(void **state) {
    (void)state;
    enum { N = 3, K = 5 };
    double x[N * K], dx[N * K];
    float xf[N * K], dxf[N * K], loss;
    const int64_t t[N] = {0, 4, 2};
    for (int i = 0; i < N * K; i++) xf[i] = (float)(0.37 * ((i * 7) % 11) - 1.5), x[i] = xf[i];
    const double l0 = loss_cross_entropy_ref(x, t, N, K, dx);
    for (int i = 0; i < N * K; i++) {
        const double v = x[i];
        x[i] = v + 1e-6;
        const double lp = loss_cross_entropy_ref(x, t, N, K, NULL);
        x[i] = v - 1e-6;
        const double lm = loss_cross_entropy_ref(x, t, N, K, NULL);
        x[i] = v;
        assert_true(fabs((lp - lm) / 2e-6 - dx[i]) < 1e-8);
    }
    assert_int_equal(cnn_loss_cross_entropy(xf, t, N, K, &loss, dxf), CNN_OK);
    const double lw[1] = {l0};
    tu_close("loss", &loss, lw, 1, 1e-6);
    tu_close("dx", dxf, dx, N * K, 1e-6);
    /* log-sum-exp keeps huge logits finite: softmax([1000, −1000]) = [1, 0] */
    const float big[2] = {1000, -1000};
    const int64_t t1[1] = {1};
    assert_int_equal(cnn_loss_cross_entropy(big, t1, 1, 2, &loss, dxf), CNN_OK);
    assert_true(fabs(loss - 2000.0f) < 1e-3f);
    assert_true(dxf[0] == 1.0f && dxf[1] == -1.0f);
    const int64_t bad[1] = {2};
    assert_int_equal(cnn_loss_cross_entropy(big, bad, 1, 2, &loss, dxf), CNN_ERR_ARG);
    assert_non_null(strstr(cnn_last_error(), "target[0] = 2"));
}

static void test_mse(void **state) {
    (void)state;
    enum { M = 7 };
    double y[M], t[M], dy[M];
    float yf[M], tf[M], dyf[M], loss;
    for (int i = 0; i < M; i++) yf[i] = (float)(0.3 * i - 1), tf[i] = (float)(0.5 - 0.2 * i), y[i] = yf[i], t[i] = tf[i];
    const double l0 = loss_mse_ref(y, t, M, dy);
    for (int i = 0; i < M; i++) {
        const double v = y[i];
        y[i] = v + 1e-6;
        const double lp = loss_mse_ref(y, t, M, NULL);
        y[i] = v - 1e-6;
        const double lm = loss_mse_ref(y, t, M, NULL);
        y[i] = v;
        assert_true(fabs((lp - lm) / 2e-6 - dy[i]) < 1e-8);
    }
    assert_int_equal(cnn_loss_mse(yf, tf, M, &loss, dyf), CNN_OK);
    const double lw[1] = {l0};
    tu_close("loss", &loss, lw, 1, 1e-6);
    tu_close("dy", dyf, dy, M, 1e-6);
}

/* Whole nets: the fast path equals the reference path for output, input gradient and every
 * parameter gradient. */
static void whole_net(const char *text, int n) {
    cnn_net *ref = tu_net(text, n, CNN_PATH_REFERENCE), *fast = tu_net(text, n, CNN_PATH_FAST);
    cnn_net_init(ref, 3);
    cnn_net_init(fast, 3);
    int in[3], out[3];
    cnn_net_input_shape(ref, in);
    cnn_net_output_shape(ref, out);
    const int xi = n * in[0] * in[1] * in[2], yo = n * out[0] * out[1] * out[2];
    float *x = malloc(xi * sizeof *x), *dy = malloc(yo * sizeof *dy);
    for (int i = 0; i < xi; i++) x[i] = (float)(((i * 37) % 101) / 50.0 - 1.0);
    for (int i = 0; i < yo; i++) dy[i] = (float)(((i * 13) % 17) / 8.0 - 1.0);
    tu_run(ref, x, n, dy);
    tu_run(fast, x, n, dy);
    double *want = malloc((xi > yo ? xi : yo) * sizeof *want);
    for (int i = 0; i < yo; i++) want[i] = cnn_net_output(ref)[i];
    tu_close("output", cnn_net_output(fast), want, yo, 1e-5);
    for (int i = 0; i < xi; i++) want[i] = cnn_net_grad_input(ref)[i];
    tu_close("grad_input", cnn_net_grad_input(fast), want, xi, 1e-5);
    for (int p = 0; p < cnn_net_param_count(ref); p++) {
        const cnn_param a = cnn_net_param(ref, p), b = cnn_net_param(fast, p);
        double *g = malloc(a.numel * sizeof *g);
        for (int64_t i = 0; i < a.numel; i++) g[i] = a.grad[i];
        tu_close(a.name, b.grad, g, (int)a.numel, 1e-5);
        free(g);
    }
    free(want), free(x), free(dy);
    cnn_net_free(ref);
    cnn_net_free(fast);
}

/* models/lenet5.cnn, fast against reference at batch n. */
static void whole_lenet5(int n) {
    FILE *f = fopen("models/lenet5.cnn", "r");
    assert_non_null(f);
    char text[4096];
    const size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    whole_net(text, n);
}

static void test_whole_lenet5(void **state) {
    (void)state;
    whole_lenet5(3);
}

/* A batch of 21 over 8 chunks (3 samples in some, 2 in others): the chunked sums of dW and db. */
static void test_whole_lenet5_batch21(void **state) {
    (void)state;
    whole_lenet5(21);
}

static void test_whole_mixed(void **state) {
    (void)state;
    whole_net("input 3 11 9\nconv2d out_channels=6 kernel_size=3,2 stride=2 padding=1 dilation=1,2 groups=3\n"
              "leakyrelu\navgpool2d kernel_size=2 stride=1 padding=1 ceil_mode=true count_include_pad=false\n"
              "tanh\nconv2d out_channels=4 kernel_size=2 bias=false\nsigmoid\nmaxpool2d kernel_size=3 stride=2 "
              "padding=1 ceil_mode=true\nflatten\nlinear out_features=7\nrelu\nlinear out_features=3 bias=false\n", 2);
}

/* direct16_forward's two ways of taking a stride-1 layer, in tiles of one output row and in wide
 * rows, add each output's terms in the same order, so they give the same bits (direct16_wide):
 * shapes with 1, 2 and 3 blocks of channels (the last part full), a dilation, a 1-wide kernel, no
 * padding, and a plane of 2 cells. */
static void test_direct_wide_same_bits(void **state) {
    (void)state;
    if (!direct16_available()) skip();
    static const direct_geom shapes[] = {
        {.c = 16, .h = 32, .w = 32, .kg = 16, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .dh = 1, .dw = 1},
        {.c = 3, .h = 9, .w = 11, .kg = 40, .kh = 3, .kw = 2, .sh = 1, .sw = 1, .ph = 2, .pw = 0, .dh = 2, .dw = 1},
        {.c = 7, .h = 6, .w = 5, .kg = 9, .kh = 1, .kw = 3, .sh = 1, .sw = 1, .ph = 0, .pw = 1, .dh = 1, .dw = 2},
        {.c = 5, .h = 1, .w = 2, .kg = 33, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .ph = 0, .pw = 0, .dh = 1, .dw = 1},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        direct_geom g = shapes[i];
        g.oh = g.h + 2 * g.ph - g.dh * (g.kh - 1);
        g.ow = g.w + 2 * g.pw - g.dw * (g.kw - 1);
        const size_t nx = (size_t)g.c * g.h * g.w, nw = (size_t)g.kg * g.c * g.kh * g.kw, ny = (size_t)g.kg * g.oh * g.ow;
        float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc((size_t)g.kg * sizeof *b);
        float *y0 = malloc(ny * sizeof *y0), *y2 = malloc(ny * sizeof *y2);
        float *wt = malloc(direct16_wt_floats(&g) * sizeof *wt);
        const int was = direct16_wide(2);
        float *ws = malloc(direct16_ws_floats(&g) * sizeof *ws);
        assert_true(x && w && b && y0 && y2 && wt && ws);
        for (size_t e = 0; e < nx; e++) x[e] = (float)sin(0.37 * (double)e + (double)i);
        for (size_t e = 0; e < nw; e++) w[e] = (float)cos(0.91 * (double)e) / 3.0f;
        for (int k = 0; k < g.kg; k++) b[k] = 0.1f * (float)k - 1.0f;
        direct16_pack_weights(&g, w, b, wt);
        direct16_forward(&g, x, wt, y2, ws);
        direct16_wide(0);
        direct16_forward(&g, x, wt, y0, ws);
        direct16_wide(was);
        if (memcmp(y0, y2, ny * sizeof *y0)) fail_msg("shape %zu: wide rows and row tiles differ", i);
        free(x), free(w), free(b), free(y0), free(y2), free(wt), free(ws);
    }
}

/* The strided input gradient overwrites all of dx, cells of phases that no tap reaches included:
 * a 2×2 kernel with stride 3 reaches no row or column h with h mod 3 = 2. dx starts as NaN; every
 * cell must come out as the full convolution of dy with the rotated kernels, those cells 0. */
static void test_direct_input_grad_overwrites_dx(void **state) {
    (void)state;
    if (!direct16_available()) skip();
    const direct_geom g = {.c = 16, .h = 8, .w = 8, .kg = 16, .kh = 2, .kw = 2, .sh = 3, .sw = 3,
                           .ph = 0, .pw = 0, .dh = 1, .dw = 1, .oh = 3, .ow = 3};
    assert_true(direct16_input_direct(&g));
    enum { C = 16, H = 8, K = 16, OH = 3 };
    static float w[K * C * 4], dy[K * OH * OH], dx[C * H * H];
    for (int i = 0; i < K * C * 4; i++) w[i] = (float)((i * 7) % 13 - 6) / 8.0f;
    for (int i = 0; i < K * OH * OH; i++) dy[i] = (float)((i * 5) % 11 - 5) / 4.0f;
    for (int i = 0; i < C * H * H; i++) dx[i] = NAN;
    float *wti = malloc(direct16_wti_floats(&g) * sizeof *wti), *ws = malloc(direct16_ws_floats(&g) * sizeof *ws);
    assert_non_null(wti);
    assert_non_null(ws);
    direct16_pack_input_weights(&g, w, wti);
    direct16_input_grad(&g, dy, w, wti, dx, ws);
    for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++)
            for (int x = 0; x < H; x++) {
                double want = 0.0;   /* dx[c][h][x] = Σ dy[k][i][j] · w[k][c][h − 3i][x − 3j] */
                for (int k = 0; k < K; k++)
                    for (int i = 0; i < OH; i++)
                        for (int j = 0; j < OH; j++) {
                            const int r = h - 3 * i, t = x - 3 * j;
                            if (r >= 0 && r < 2 && t >= 0 && t < 2)
                                want += (double)dy[(k * OH + i) * OH + j] * w[((k * C + c) * 2 + r) * 2 + t];
                        }
                const float got = dx[(c * H + h) * H + x];
                if (!(fabs(got - want) <= 1e-5 * (1.0 + fabs(want))))
                    fail_msg("dx[%d][%d][%d] = %g, want %g", c, h, x, got, want);
                if (h % 3 == 2 || x % 3 == 2) assert_true(got == 0.0f);
            }
    free(wti), free(ws);
}

/* Runs `text` (one sample, parameters "0.weight" w and "0.bias" b) on the reference path, the fast
 * path and, where the CPU has the direct kernels, the fast path without them, and asserts the
 * output, dL/dx, dL/dW and dL/db exactly: small integers, as PyTorch 1.13 gives them in float64. */
static void exact_on_every_path(const char *text, const float *w, int nw, const float *b, int nb, const float *x,
                                int nx, const float *dy, const double *y, int ny, const double *dx,
                                const double *dw, const double *db) {
    for (int path = 0; path < 3; path++) {
        if (path == 2 && !direct16_available()) break;
        direct16_enable(path != 2);
        cnn_net *net = tu_net(text, 1, path ? CNN_PATH_FAST : CNN_PATH_REFERENCE);
        tu_set(net, "0.weight", w, nw);
        if (nb) tu_set(net, "0.bias", b, nb);
        tu_run(net, x, 1, dy);
        int out[3];
        cnn_net_output_shape(net, out);
        assert_int_equal(out[0] * out[1] * out[2], ny);
        tu_exact("output", cnn_net_output(net), y, ny);
        tu_exact("grad_input", cnn_net_grad_input(net), dx, nx);
        tu_exact("weight.grad", cnn_net_param_by_name(net, "0.weight").grad, dw, nw);
        if (nb) tu_exact("bias.grad", cnn_net_param_by_name(net, "0.bias").grad, db, nb);
        cnn_net_free(net);
        direct16_enable(1);
    }
}

/* PyTorch's ConvTranspose2d(2, 2, (2, 3), stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
 * dilation=(1, 2)) on a 2×2×3 input: a 2×3×7 output (3 = (2 − 1)·2 − 2 + 1·1 + 1 + 1). */
static void test_convtranspose2d_torch(void **state) {
    (void)state;
    static const float w[24] = {-3, -2, -1, 0, 1, 2, 3, -3, -2, -1, 0, 1, 2, 3, -3, -2, -1, 0, 1, 2, 3, -3, -2, -1};
    static const float b[2] = {0.5f, -1.0f};
    static const float x[12] = {-4, 1, -3, 2, -2, 3, -1, 4, 0, -4, 1, -3};
    static const float dy[42] = {-2, 1, -1, 2, 0, -2, 1, -1, 2, 0, -2, 1, -1, 2, 0, -2, 1, -1, 2, 0, -2,
                                 1, -1, 2, 0, -2, 1, -1, 2, 0, -2, 1, -1, 2, 0, -2, 1, -1, 2, 0, -2, 1};
    static const double y[42] = {2.5, -7.5, -2.5, -2.5, -10.5, 2.5, -5.5, -13.5, 8.5, -30.5, 7.5, -4.5, -0.5, 6.5,
                                 8.5, -1.5, 12.5, -2.5, 10.5, -3.5, 6.5, 6, -14, 4, -9, -4, -4, -4,
                                 1, -6, -9, 7, -32, 6, -16, 9, -2, 13, -3, 11, -4, 5};
    static const double dx[12] = {-4, 0, -1, 23, -12, -7, 0, -2, 1, -3, 9, -9};
    static const double dw[24] = {-6, 7, 10, 19, 16, -7, -2, -9, -6, -20, -8, 19,
                                  6, -5, -11, 1, -2, -10, -2, 12, 6, 7, 4, 1};
    static const double db[2] = {-2, 1};
    exact_on_every_path("input 2 2 3\nconvtranspose2d out_channels=2 kernel_size=2,3 stride=2,1 padding=1,0 "
                        "output_padding=1,0 dilation=1,2\n",
                        w, 24, b, 2, x, 12, dy, y, 42, dx, dw, db);
}

/* padding=same with a 2×2 kernel pads one row below and one column to the right, as PyTorch does:
 * y[0][0] = 1·1 + 2·10 + 4·100 + 5·1000; the last row and column see zeros past the input. */
static void test_conv2d_same_pads_after(void **state) {
    (void)state;
    static const float w[4] = {1, 10, 100, 1000}, x[6] = {1, 2, 3, 4, 5, 6}, dy[6] = {1, 0, 0, 0, 0, 2};
    static const double y[6] = {5421, 6532, 603, 54, 65, 6};
    static const double dx[6] = {1, 10, 0, 100, 1000, 2};   /* Σ dy[i][j] · w[h − i][v − j] */
    static const double dw[4] = {1 + 12, 2, 4, 5};          /* Σ dy[i][j] · xp[i + r][j + t] */
    exact_on_every_path("input 1 2 3\nconv2d out_channels=1 kernel_size=2 padding=same bias=false\n", w, 4, NULL, 0,
                        x, 6, dy, y, 6, dx, dw, NULL);
}

/* PyTorch's default initialisation of ConvTranspose2d: fan_in is the weight's dimension 1 times the
 * kernel, (out_channels/groups)·kh·kw = 2·9 here (in_channels·9 = 72 would halve the bound). */
static void test_convtranspose2d_init_bound(void **state) {
    (void)state;
    cnn_net *net = tu_net("input 8 3 3\nconvtranspose2d out_channels=2 kernel_size=3\n", 1, CNN_PATH_FAST);
    assert_int_equal(cnn_net_init(net, 5), CNN_OK);
    const double bound = 1.0 / sqrt(18.0);
    for (int p = 0; p < cnn_net_param_count(net); p++) {
        const cnn_param t = cnn_net_param(net, p);
        double m = 0.0;
        for (int64_t i = 0; i < t.numel; i++) m = fabs(t.data[i]) > m ? fabs(t.data[i]) : m;
        if (!(m <= bound)) fail_msg("%s: |value| %g above 1/sqrt(18)", t.name, m);
        if (t.numel == 144 && !(m > 0.9 * bound)) fail_msg("%s: max |value| %g, not near 1/sqrt(18)", t.name, m);
    }
    cnn_net_free(net);
}

/* The same bits on 1 thread and on 3: convtranspose2d's fast path (conv2d's chunks, the bias
 * gradient summed per channel over the samples in order), with and without the direct kernels. */
static void test_convtranspose2d_threads_same_bits(void **state) {
    (void)state;
    static const char *text = "input 16 5 4\nconvtranspose2d out_channels=16 kernel_size=3 stride=2 padding=1 "
                              "output_padding=1 name=up\nconvtranspose2d out_channels=3 kernel_size=2 groups=1\n";
    enum { N = 11 };
    float *x = malloc(N * 16 * 5 * 4 * sizeof *x), *dy = malloc(N * 3 * 11 * 9 * sizeof *dy);
    for (int i = 0; i < N * 16 * 5 * 4; i++) x[i] = (float)sin(0.7 * i);
    for (int i = 0; i < N * 3 * 11 * 9; i++) dy[i] = (float)cos(0.3 * i);
    for (int direct = 0; direct < 2; direct++) {
        direct16_enable(direct);
        cnn_net *net[2];
        for (int t = 0; t < 2; t++) {
            assert_int_equal(cnn_set_threads(t ? 3 : 1), CNN_OK);
            net[t] = tu_net(text, N, CNN_PATH_FAST);
            assert_int_equal(cnn_net_init(net[t], 9), CNN_OK);
            tu_run(net[t], x, N, dy);
        }
        int out[3];
        cnn_net_output_shape(net[0], out);
        assert_int_equal(out[0] * out[1] * out[2], 3 * 11 * 9);
        assert_memory_equal(cnn_net_output(net[0]), cnn_net_output(net[1]), sizeof *x * N * 3 * 11 * 9);
        assert_memory_equal(cnn_net_grad_input(net[0]), cnn_net_grad_input(net[1]), sizeof *x * N * 16 * 5 * 4);
        for (int p = 0; p < cnn_net_param_count(net[0]); p++) {
            const cnn_param a = cnn_net_param(net[0], p), b = cnn_net_param(net[1], p);
            assert_memory_equal(a.grad, b.grad, (size_t)a.numel * sizeof *a.grad);
        }
        cnn_net_free(net[0]);
        cnn_net_free(net[1]);
    }
    assert_int_equal(cnn_set_threads(1), CNN_OK);
    direct16_enable(1);
    free(x), free(dy);
}

int main(void) {
    build_grid();
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_cross_entropy), cmocka_unit_test(test_mse),
        cmocka_unit_test(test_whole_lenet5), cmocka_unit_test(test_whole_lenet5_batch21),
        cmocka_unit_test(test_whole_mixed), cmocka_unit_test(test_direct_input_grad_overwrites_dx),
        cmocka_unit_test(test_direct_wide_same_bits),
        cmocka_unit_test(test_convtranspose2d_torch), cmocka_unit_test(test_conv2d_same_pads_after),
        cmocka_unit_test(test_convtranspose2d_init_bound), cmocka_unit_test(test_convtranspose2d_threads_same_bits),
    };
    const int nfixed = (int)(sizeof fixed / sizeof fixed[0]);
    struct CMUnitTest *tests = calloc((size_t)(npoints + nfixed), sizeof *tests);
    for (int i = 0; i < nfixed; i++) tests[i] = fixed[i];
    for (int i = 0; i < npoints; i++) {
        tests[nfixed + i].name = names[i];
        tests[nfixed + i].test_func = test_point;
        tests[nfixed + i].initial_state = models[i];
    }
    const int rc = _cmocka_run_group_tests("grid", tests, (size_t)(npoints + nfixed), NULL, NULL);
    for (int i = 0; i < npoints; i++) free(models[i]), free(names[i]);
    free(tests);
    return rc;
}
