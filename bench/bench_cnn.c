/* The cnn side of the benchmark: each workload timed in-process, several runs, one JSON object
 * per workload and run on stdout. bench/run.py runs this and bench/bench_torch.py alternately.
 *
 *   bench_cnn WORKLOAD [--threads T] [--runs R]
 *   bench_cnn --info     {"gemm_kernel": ..., "compiler": ...}: the GEMM micro-kernel this CPU runs
 *                        ("openblas" in the BLAS=openblas build, with OpenBLAS's configuration)
 *
 * Workloads (the same ones bench_torch.py times):
 *   lenet_train_B        LeNet-5 training steps (forward, loss, backward, SGD) at batch B: images/s
 *   lenet_infer_1        LeNet-5 forward of one image: latency in µs
 *   lenet_infer_256      LeNet-5 forward of 256 images: images/s
 *   conv_i .. conv_v     conv2d forward, and forward+backward (dX and dW): ms and GFLOP/s
 *   maxpool, avgpool, relu   forward+backward on N64 C64 56×56: ms
 *   resnet20_train_128   ResNet-20 (models/resnet20.cnn, read from the working directory) training
 *                        steps at batch 128, batch norm in training mode, SGD momentum: images/s
 *   resnet20_infer_1     ResNet-20 forward of one image in eval mode: latency in µs
 *   resnet20_infer_256   ResNet-20 forward of 256 images in eval mode: images/s
 *   resnet20_mem_128     peak resident memory (getrusage) of a process that ran 3 training steps
 *                        of ResNet-20 at batch 128: MiB
 *   conv_r16, conv_r32, conv_r64, conv_r16s2, conv_r32s2   ResNet-20's 3×3 convolutions at batch
 *                        128 (no bias): forward (_f) and forward+backward (_fb), ms and GFLOP/s
 *   batchnorm_f, batchnorm_fb   batchnorm2d in training mode on N128 C16 32×32: ms
 *   addrelu_f, addrelu_fb       add of two N128 C16 32×32 tensors, then relu: ms
 *
 * Workloads of cnn alone (bench/blas.py times them in the own-kernel and OpenBLAS builds; run.py
 * does not ask for them):
 *   gemm_L_f, gemm_L_dw, gemm_L_dx   one gemm() call of conv2d layer L (ii .. v) per sample, as
 *                        conv2d.c makes it: forward W·col, the weight gradient col·dyᵀ (beta 1)
 *                        and the column gradient Wᵀ·dy: ms and GFLOP/s
 *   gemm_fc1_f, gemm_fc1_dx, gemm_fc1_dw   LeNet-5's first linear layer (400 → 120) at batch 64:
 *                        x·Wᵀ, dy·W and dyᵀ·x (beta 1), as linear.c makes them
 */
#include "cnn.h"
#include "base/omp_spin.h"
#include "kernels/kernels.h"

#ifdef CNN_BLAS_OPENBLAS
char *openblas_get_config(void);
char *openblas_get_corename(void);
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fill(float *v, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

static const char LENET[] =
    "input 1 28 28\nconv2d out_channels=6 kernel_size=5 padding=2\nrelu\nmaxpool2d kernel_size=2\n"
    "conv2d out_channels=16 kernel_size=5\nrelu\nmaxpool2d kernel_size=2\nflatten\nlinear out_features=120\nrelu\n"
    "linear out_features=84\nrelu\nlinear out_features=10\n";

static cnn_net *make_net(const char *text, int batch) {
    cnn_net *net = NULL;
    if (cnn_net_parse(text, &net) || cnn_net_init(net, 1) || cnn_net_reserve(net, batch)) {
        fprintf(stderr, "bench_cnn: %s\n", cnn_last_error());
        exit(2);
    }
    return net;
}

/* Seconds for `iters` training steps of net at batch b (after two warm-up steps): SGD with
 * momentum 0.9 and weight decay wd, cross-entropy over 10 classes, on inputs of `in` floats per
 * sample filled from `seed`. Frees the net. */
static double train_steps(cnn_net *net, size_t in, int b, int iters, double wd, unsigned seed) {
    cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_SGD, 0.01);
    cfg.momentum = 0.9;
    cfg.weight_decay = wd;
    cnn_optim *opt = NULL;
    if (cnn_optim_create(net, &cfg, &opt)) {
        fprintf(stderr, "bench_cnn: %s\n", cnn_last_error());
        exit(2);
    }
    cnn_net_set_input_grad(net, 0);
    float *x = malloc((size_t)b * in * sizeof *x), *dy = malloc((size_t)b * 10 * sizeof *dy);
    int64_t *y = malloc((size_t)b * sizeof *y);
    fill(x, (size_t)b * in, seed);
    for (int i = 0; i < b; i++) y[i] = i % 10;
    float loss;
    double t0 = 0;
    for (int it = -2; it < iters; it++) {   /* two warm-up steps */
        if (it == 0) t0 = now();
        cnn_net_zero_grad(net);
        cnn_net_forward(net, x, b);
        cnn_loss_cross_entropy(cnn_net_output(net), y, b, 10, &loss, dy);
        cnn_net_backward(net, dy);
        cnn_optim_step(opt, 0.01);
    }
    const double t = now() - t0;
    cnn_optim_free(opt);
    cnn_net_free(net);
    free(x), free(dy), free(y);
    return t;
}

/* Seconds for `iters` calls of one LeNet-5 training step at batch b. */
static double lenet_train(int b, int iters) { return train_steps(make_net(LENET, b), 784, b, iters, 0.0, 1); }

/* Seconds for `iters` forwards of b samples of `in` floats, filled from `seed`, after three warm-up
 * passes, in the net's mode. Frees the net. */
static double forward_passes(cnn_net *net, size_t in, int b, int iters, unsigned seed) {
    float *x = malloc((size_t)b * in * sizeof *x);
    fill(x, (size_t)b * in, seed);
    double t0 = 0;
    for (int it = -3; it < iters; it++) {
        if (it == 0) t0 = now();
        cnn_net_forward(net, x, b);
    }
    const double t = now() - t0;
    cnn_net_free(net);
    free(x);
    return t;
}

/* The inference rows run in inference mode (cnn_net_set_inference: batch norm folded into the
 * convolutions, relu fused, weights packed once), as cnn predict and cnn eval do. */
static cnn_net *inference(cnn_net *net) {
    if (cnn_net_set_inference(net, 1) != CNN_OK) {
        fprintf(stderr, "bench_cnn: %s\n", cnn_last_error());
        exit(1);
    }
    return net;
}

static double lenet_infer(int b, int iters) { return forward_passes(inference(make_net(LENET, b)), 784, b, iters, 2); }

static cnn_net *load_resnet20(int batch) {
    cnn_net *net = NULL;
    if (cnn_net_load("models/resnet20.cnn", &net) || cnn_net_init(net, 1) || cnn_net_reserve(net, batch)) {
        fprintf(stderr, "bench_cnn: models/resnet20.cnn (run from the repository's root): %s\n", cnn_last_error());
        exit(2);
    }
    return net;
}

/* Seconds for `iters` ResNet-20 training steps at batch b (weight decay 5e-4). */
static double resnet_train(int b, int iters) { return train_steps(load_resnet20(b), 3072, b, iters, 5e-4, 8); }

/* Seconds for `iters` eval-mode ResNet-20 forwards of b images, after three warm-up passes. */
static double resnet_infer(int b, int iters) {
    return forward_passes(inference(load_resnet20(b)), 3072, b, iters, 9);
}

/* The process's peak resident set in MiB (Linux reports ru_maxrss in KiB). */
static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* One layer: forward only, or forward + backward (dX and the parameter gradients). */
static double layer(const char *text, int n, int backward, int iters, double *flops) {
    cnn_net *net = make_net(text, n);
    int in[3], out[3];
    cnn_net_input_shape(net, in);
    cnn_net_output_shape(net, out);
    const size_t xi = (size_t)n * in[0] * in[1] * in[2], yo = (size_t)n * out[0] * out[1] * out[2];
    float *x = malloc(xi * sizeof *x), *dy = malloc(yo * sizeof *dy);
    fill(x, xi, 3);
    fill(dy, yo, 4);
    *flops = 0;
    if (cnn_net_layer_kind(net, 0) == CNN_LAYER_CONV2D) {
        const cnn_param w = cnn_net_param(net, 0);
        const double macs = (double)n * out[0] * out[1] * out[2] * (double)(w.shape[1] * w.shape[2] * w.shape[3]);
        *flops = 2 * macs * (backward ? 3 : 1);
    }
    double t0 = 0;
    for (int it = -2; it < iters; it++) {
        if (it == 0) t0 = now();
        cnn_net_forward(net, x, n);
        if (backward) cnn_net_backward(net, dy);
    }
    const double t = now() - t0;
    cnn_net_free(net);
    free(x), free(dy);
    return t;
}

/* The GEMMs of the layers, each the call that conv2d.c or linear.c makes. */
static const struct {
    const char *name;
    int ta, tb, M, N, K;
    float beta;
} gemms[] = {
    /* conv (ii), N64 C6 14² K16 5×5: kg = 16, ck = 150, P = 100 (LeNet-5's second layer) */
    {"gemm_ii_f", 0, 0, 16, 100, 150, 0.0f},
    {"gemm_ii_dw", 0, 1, 150, 16, 100, 1.0f},
    {"gemm_ii_dx", 1, 0, 150, 100, 16, 0.0f},
    /* conv (iii), C64 56² K64 3×3 pad 1: kg = 64, ck = 576, P = 3136 */
    {"gemm_iii_f", 0, 0, 64, 3136, 576, 0.0f},
    {"gemm_iii_dw", 0, 1, 576, 64, 3136, 1.0f},
    {"gemm_iii_dx", 1, 0, 576, 3136, 64, 0.0f},
    /* conv (iv), C128 28² K128 3×3 pad 1: kg = 128, ck = 1152, P = 784 */
    {"gemm_iv_f", 0, 0, 128, 784, 1152, 0.0f},
    {"gemm_iv_dw", 0, 1, 1152, 128, 784, 1.0f},
    {"gemm_iv_dx", 1, 0, 1152, 784, 128, 0.0f},
    /* conv (v), as (iv) with stride 2: P = 196 */
    {"gemm_v_f", 0, 0, 128, 196, 1152, 0.0f},
    {"gemm_v_dw", 0, 1, 1152, 128, 196, 1.0f},
    {"gemm_v_dx", 1, 0, 1152, 196, 128, 0.0f},
    /* LeNet-5's linear 400 → 120 at batch 64: y = x·Wᵀ, dx = dy·W, dW += dyᵀ·x */
    {"gemm_fc1_f", 0, 1, 64, 120, 400, 0.0f},
    {"gemm_fc1_dx", 0, 0, 64, 400, 120, 0.0f},
    {"gemm_fc1_dw", 1, 0, 120, 400, 64, 1.0f},
};

/* Seconds per gemm() call of gemms[k], over enough calls for about 10¹⁰ flops (at least 5),
 * after 3 calls of warm-up; the flops of one call in *flops. */
static double gemm_time(size_t k, double *flops) {
    const int M = gemms[k].M, N = gemms[k].N, K = gemms[k].K;
    float *A = malloc((size_t)M * K * sizeof *A), *B = malloc((size_t)K * N * sizeof *B);
    float *C = malloc((size_t)M * N * sizeof *C);
    fill(A, (size_t)M * K, 5);
    fill(B, (size_t)K * N, 6);
    fill(C, (size_t)M * N, 7);
    *flops = 2.0 * M * N * K;
    int iters = (int)(1e10 / *flops);
    if (iters < 5) iters = 5;
    /* With beta = 1 C grows by a bounded amount per call (|A|, |B| ≤ 1): no overflow in any count
     * of calls here, and no denormals. */
    double t0 = 0;
    for (int it = -3; it < iters; it++) {
        if (it == 0) t0 = now();
        gemm(gemms[k].ta, gemms[k].tb, M, N, K, A, B, gemms[k].beta, C);
    }
    const double t = (now() - t0) / iters;
    free(A), free(B), free(C);
    return t;
}

static const struct {
    const char *name, *model;
    int n;
} layers[] = {
    {"conv_i", "input 1 28 28\nconv2d out_channels=6 kernel_size=5 padding=2\n", 64},
    {"conv_ii", "input 6 14 14\nconv2d out_channels=16 kernel_size=5\n", 64},
    {"conv_iii", "input 64 56 56\nconv2d out_channels=64 kernel_size=3 padding=1\n", 8},
    {"conv_iv", "input 128 28 28\nconv2d out_channels=128 kernel_size=3 padding=1\n", 32},
    {"conv_v", "input 128 28 28\nconv2d out_channels=128 kernel_size=3 padding=1 stride=2\n", 32},
    {"maxpool", "input 64 56 56\nmaxpool2d kernel_size=2\n", 64},
    {"avgpool", "input 64 56 56\navgpool2d kernel_size=2\n", 64},
    {"relu", "input 64 56 56\nrelu\n", 64},
    /* ResNet-20's 3×3 convolutions at batch 128: its three stages and its two strided transitions */
    {"conv_r16s2", "input 16 32 32\nconv2d out_channels=32 kernel_size=3 padding=1 stride=2 bias=false\n", 128},
    {"conv_r32s2", "input 32 16 16\nconv2d out_channels=64 kernel_size=3 padding=1 stride=2 bias=false\n", 128},
    {"conv_r16", "input 16 32 32\nconv2d out_channels=16 kernel_size=3 padding=1 bias=false\n", 128},
    {"conv_r32", "input 32 16 16\nconv2d out_channels=32 kernel_size=3 padding=1 bias=false\n", 128},
    {"conv_r64", "input 64 8 8\nconv2d out_channels=64 kernel_size=3 padding=1 bias=false\n", 128},
    {"batchnorm", "input 16 32 32\nbatchnorm2d\n", 128},
    /* x + x, then relu: the add reads two values, as a residual add does */
    {"addrelu", "input 16 32 32\nadd from=input,input\nrelu\n", 128},
};

int main(int argc, char **argv) {
    cnn_omp_spin(argv);   /* as the cnn command: OpenMP's threads spin briefly, then sleep */
    if (argc < 2) {
        fprintf(stderr, "usage: bench_cnn WORKLOAD [--threads T] [--runs R] | --info\n");
        return 2;
    }
    if (!strcmp(argv[1], "--info")) {
#ifdef __VERSION__
        const char *cc = __VERSION__;
#else
        const char *cc = "unknown";
#endif
#ifdef CNN_BLAS_OPENBLAS
        printf("{\"gemm_kernel\": \"%s\", \"compiler\": \"%s\", \"openblas\": {\"config\": \"%s\", "
               "\"corename\": \"%s\"}}\n",
               gemm_kernel_name(), cc, openblas_get_config(), openblas_get_corename());
#else
        printf("{\"gemm_kernel\": \"%s\", \"compiler\": \"%s\"}\n", gemm_kernel_name(), cc);
#endif
        return 0;
    }
    const char *w = argv[1];
    int threads = 1, runs = 5;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    }
    if (cnn_set_threads(threads) != CNN_OK) {
        fprintf(stderr, "bench_cnn: %s\n", cnn_last_error());
        return 2;
    }
    for (int r = 0; r < runs; r++) {
        if (!strncmp(w, "lenet_train_", 12)) {
            const int b = atoi(w + 12), iters = 60000 / b / 8 > 4 ? 60000 / b / 8 : 4;
            const double t = lenet_train(b, iters);
            printf("{\"workload\": \"%s\", \"threads\": %d, \"images_per_s\": %.1f}\n", w, threads, iters * b / t);
        } else if (!strcmp(w, "lenet_infer_1")) {
            const double t = lenet_infer(1, 2000);
            printf("{\"workload\": \"%s\", \"threads\": %d, \"latency_us\": %.2f}\n", w, threads, t / 2000 * 1e6);
        } else if (!strcmp(w, "lenet_infer_256")) {
            const double t = lenet_infer(256, 40);
            printf("{\"workload\": \"%s\", \"threads\": %d, \"images_per_s\": %.1f}\n", w, threads, 40 * 256 / t);
        } else if (!strcmp(w, "resnet20_train_128")) {
            const int iters = 6;
            const double t = resnet_train(128, iters);
            printf("{\"workload\": \"%s\", \"threads\": %d, \"images_per_s\": %.1f}\n", w, threads, iters * 128 / t);
        } else if (!strcmp(w, "resnet20_mem_128")) {
            resnet_train(128, 1);   /* two warm-up steps and one more */
            printf("{\"workload\": \"%s\", \"threads\": %d, \"rss_mib\": %.1f}\n", w, threads, peak_rss_mib());
        } else if (!strcmp(w, "resnet20_infer_1")) {
            const double t = resnet_infer(1, 200);
            printf("{\"workload\": \"%s\", \"threads\": %d, \"latency_us\": %.2f}\n", w, threads, t / 200 * 1e6);
        } else if (!strcmp(w, "resnet20_infer_256")) {
            const double t = resnet_infer(256, 5);
            printf("{\"workload\": \"%s\", \"threads\": %d, \"images_per_s\": %.1f}\n", w, threads, 5 * 256 / t);
        } else if (!strncmp(w, "gemm_", 5)) {
            size_t k = 0;
            while (k < sizeof gemms / sizeof gemms[0] && strcmp(w, gemms[k].name)) k++;
            if (k == sizeof gemms / sizeof gemms[0]) {
                fprintf(stderr, "bench_cnn: unknown workload '%s'\n", w);
                return 2;
            }
            double flops;
            const double t = gemm_time(k, &flops);
            printf("{\"workload\": \"%s\", \"threads\": %d, \"ms\": %.4f, \"gflops\": %.2f}\n", w, threads,
                   t * 1e3, flops / t / 1e9);
        } else {
            int found = 0;
            for (size_t k = 0; k < sizeof layers / sizeof layers[0]; k++) {
                const size_t len = strlen(layers[k].name);
                if (strncmp(w, layers[k].name, len)) continue;
                const int bwd = !strcmp(w + len, "_fb") ? 1 : !strcmp(w + len, "_f") ? 0 : -1;
                if (bwd < 0) continue;
                found = 1;
                double flops;
                const int iters = 10;
                const double t = layer(layers[k].model, layers[k].n, bwd, iters, &flops) / iters;
                printf("{\"workload\": \"%s\", \"threads\": %d, \"ms\": %.4f, \"gflops\": %.2f}\n", w, threads,
                       t * 1e3, flops / t / 1e9);
            }
            if (!found) {
                fprintf(stderr, "bench_cnn: unknown workload '%s'\n", w);
                return 2;
            }
        }
        fflush(stdout);
    }
    return 0;
}
