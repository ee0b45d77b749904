/* conv2d: a 2-D convolution (PyTorch's cross-correlation) with stride, zero padding, dilation,
 * groups and an optional bias shared by each output channel.
 *
 * Forward (note 002, eq. 1-4, generalised):
 *   y[n,k,i,j] = b[k] + Σ_{c∈group(k), r, t} w[k,c,r,t] · xp[n,c, i·sh + r·dh, j·sw + t·dw]
 * where xp is x with ph rows and pw columns of zeros on each side, and group(k) is the slice of
 * C/groups input channels that output channel k reads. padding=same (PyTorch's padding='same',
 * stride 1) pads d·(k − 1) in all, ⌊d·(k − 1)/2⌋ before (ph, pw) and the rest after (ph2, pw2), so
 * that the output has the input's size; where d·(k − 1) is odd (an even kernel) that is one more
 * at the bottom and right. The formulas below read only the padding before: the padding after only sets oh and ow.
 *
 * Backward. Note 002 derives the single-kernel, stride-1 case: dX is the full convolution of dY
 * with the kernel rotated 180°, dW is the valid correlation of X with dY, db is the sum of dY.
 * It leaves two headings empty; here they are.
 *
 * Several kernels (有多个卷积核时的梯度计算). With K kernels over C channels, every output channel k
 * reads every input channel c of its group through its own slice w[k,c]. By the chain rule
 * (note 000), a cell x[c,·,·] receives the sum, over every k that reads it, of what it would receive
 * from that kernel alone:
 *   dX[c] = Σ_k  fullconv(dY[k], rot180(w[k,c]))
 *   dW[k,c] = validcorr(Xp[c], dY[k])          (each slice sees only its own dY[k] and X[c])
 *   db[k] = Σ_{n,i,j} dY[n,k,i,j]              (one bias per output channel, shared by all positions;
 *                                              note 003's per-position bias is not what PyTorch does)
 * and over a batch, dW and db add the contributions of every sample. With groups, the sum over k
 * runs only over the kernels of c's group.
 *
 * Stride s ≠ 1 (步长不为1时的梯度计算). With stride s, output cell i reads input rows i·s + r·d. Put
 * s − 1 zeros between neighbouring elements of dY: U[i·s] = dY[i], U elsewhere 0. Then
 *   y[i] = Σ_r w[r] xp[i·s + r·d]  ⇒  dXp[h] = Σ_{i,r: i·s + r·d = h} dY[i] w[r] = Σ_r U[h − r·d] w[r],
 * which is the stride-1 formula applied to U: pad U with d·(kh − 1) zeros on each side and
 * correlate it with rot180(w) (taps d apart), dXp[h] = Σ_r' Upad[h + r'·d] · w[kh − 1 − r'].
 * Rows of xp that no window reaches (when (H + 2p − d(k−1) − 1) is not a multiple of s) get 0.
 * Finally dX is dXp without its padding: dX[h] = dXp[h + p]. Likewise
 *   dW[r] = Σ_i dY[i] xp[i·s + r·d] = Σ_h U[h] xp[h + r·d],
 * the valid correlation of xp with the zero-inserted U: stride in the forward pass becomes
 * dilation of dY in the weight gradient.
 *
 * The reference path below computes exactly these formulas with plain loops in double; the fast
 * path, in float, is the direct kernels of kernels/direct.c where the CPU has AVX-512 (the input
 * gradient there is the same full convolution of dY with rot180(w), over a zero-bordered dY), and
 * im2col + GEMM otherwise. The tests hold every fast path to the reference.
 */
#include "layers/conv2d.h"
#include "base/error.h"
#include "base/threads.h"
#include "kernels/direct.h"
#include "kernels/kernels.h"

#include <string.h>

static void conv2d_defaults(layer *l) {
    conv2d_opts *o = &l->o.conv;
    o->sh = o->sw = o->dh = o->dw = o->groups = o->bias = 1;
}

static cnn_status conv2d_option(layer *l, const char *key, const char *value) {
    conv2d_opts *o = &l->o.conv;
    if (!strcmp(key, "out_channels")) return opt_int(l, key, value, 1, &o->out_channels);
    if (!strcmp(key, "kernel_size")) return opt_pair(l, key, value, 1, &o->kh, &o->kw);
    if (!strcmp(key, "stride")) return opt_pair(l, key, value, 1, &o->sh, &o->sw);
    if (!strcmp(key, "padding")) {
        o->same = !strcmp(value, "same");
        if (o->same || !strcmp(value, "valid")) {   /* valid: no padding */
            o->ph = o->pw = 0;
            return CNN_OK;
        }
        return opt_pair(l, key, value, 0, &o->ph, &o->pw);
    }
    if (!strcmp(key, "dilation")) return opt_pair(l, key, value, 1, &o->dh, &o->dw);
    if (!strcmp(key, "groups")) return opt_int(l, key, value, 1, &o->groups);
    if (!strcmp(key, "bias")) return opt_bool(l, key, value, &o->bias);
    return opt_unknown(l, key);
}

static cnn_status conv2d_setup(layer *l) {
    conv2d_opts *o = &l->o.conv;
    if (o->out_channels == 0) return cnn_fail(CNN_ERR_PARSE, "line %d: conv2d: out_channels= is required", l->line);
    if (o->kh == 0) return cnn_fail(CNN_ERR_PARSE, "line %d: conv2d: kernel_size= is required", l->line);
    if (l->in_flat)
        return cnn_fail(CNN_ERR_SHAPE, "line %d: conv2d: input [%d] is flat (after flatten or linear); conv2d needs C H W",
                        l->line, l->c);
    if (l->c % o->groups || o->out_channels % o->groups)
        return cnn_fail(CNN_ERR_SHAPE,
                        "line %d: conv2d: groups=%d must divide both in_channels (%d) and out_channels (%d)",
                        l->line, o->groups, l->c, o->out_channels);
    const long long kh = (long long)o->dh * (o->kh - 1) + 1, kw = (long long)o->dw * (o->kw - 1) + 1;
    if (o->same) {
        /* PyTorch's padding='same': the total padding d·(k − 1), ⌊total/2⌋ before and the rest after. */
        if (o->sh != 1 || o->sw != 1)
            return cnn_fail(CNN_ERR_PARSE, "line %d: conv2d: padding='same' is not supported for strided convolutions "
                            "(stride=%d,%d)", l->line, o->sh, o->sw);
        o->ph = (int)((kh - 1) / 2), o->ph2 = (int)(kh - 1 - o->ph);
        o->pw = (int)((kw - 1) / 2), o->pw2 = (int)(kw - 1 - o->pw);
    } else {
        o->ph2 = o->ph, o->pw2 = o->pw;
    }
    const long long ph = (long long)o->ph + o->ph2, pw = (long long)o->pw + o->pw2;   /* the total padding */
    const long long eh = (long long)l->h + ph - kh, ew = (long long)l->w + pw - kw;
    if (eh < 0 || ew < 0)
        return cnn_fail(CNN_ERR_SHAPE,
                        "line %d: conv2d: input %dx%dx%d padded to %lldx%lld is smaller than the "
                        "dilated kernel %lldx%lld",
                        l->line, l->c, l->h, l->w, (long long)l->h + ph, (long long)l->w + pw, kh, kw);
    l->oc = o->out_channels;
    l->oh = (int)(eh / o->sh + 1);
    l->ow = (int)(ew / o->sw + 1);
    layer_add_tensor(l, "weight", CNN_F32, 1, LAYER_INIT_FAN_IN, 4, o->out_channels, l->c / o->groups, o->kh, o->kw);
    if (o->bias) layer_add_tensor(l, "bias", CNN_F32, 1, LAYER_INIT_FAN_IN, 1, o->out_channels, 0, 0, 0);
    return CNN_OK;
}

static int64_t conv2d_fan_in(const layer *l) {
    return (int64_t)(l->c / l->o.conv.groups) * l->o.conv.kh * l->o.conv.kw;
}

/* ---- reference path: the notes' loops, in double ------------------------------------------- */

/* xp[n,c,hp,wp]: the input seen through its zero padding. */
static double xpad(const layer *l, const double *x, int n, int c, int hp, int wp) {
    const int h = hp - l->o.conv.ph, w = wp - l->o.conv.pw;
    if (h < 0 || h >= l->h || w < 0 || w >= l->w) return 0.0;
    return x[(((size_t)n * l->c + c) * l->h + h) * l->w + w];
}

/* U[n,k,a,b]: dY with stride − 1 zeros inserted between its elements. */
static double dy_dilated(const layer *l, const double *dy, int n, int k, int a, int b) {
    const conv2d_opts *o = &l->o.conv;
    if (a < 0 || b < 0 || a % o->sh || b % o->sw) return 0.0;
    a /= o->sh;
    b /= o->sw;
    if (a >= l->oh || b >= l->ow) return 0.0;
    return dy[(((size_t)n * l->oc + k) * l->oh + a) * l->ow + b];
}

static void conv2d_forward_ref(const layer *l, int n, const double *const *xs, double *const *p, double *y) {
    const double *x = xs[0];
    const conv2d_opts *o = &l->o.conv;
    const int cg = l->c / o->groups, kg = l->oc / o->groups;
    const double *w = p[0];
    for (int s = 0; s < n; s++)
        for (int k = 0; k < l->oc; k++) {
            const int c0 = (k / kg) * cg;
            for (int i = 0; i < l->oh; i++)
                for (int j = 0; j < l->ow; j++) {
                    double acc = o->bias ? p[1][k] : 0.0;
                    for (int c = 0; c < cg; c++)
                        for (int r = 0; r < o->kh; r++)
                            for (int t = 0; t < o->kw; t++)
                                acc += w[(((size_t)k * cg + c) * o->kh + r) * o->kw + t] *
                                       xpad(l, x, s, c0 + c, i * o->sh + r * o->dh, j * o->sw + t * o->dw);
                    y[(((size_t)s * l->oc + k) * l->oh + i) * l->ow + j] = acc;
                }
        }
}

static void conv2d_backward_ref(const layer *l, int n, const double *const *xs, double *const *p,
                                const double *y, const double *dy, double *const *dxs, double *const *dp) {
    const double *x = xs[0];
    double *dx = dxs[0];
    (void)y;
    const conv2d_opts *o = &l->o.conv;
    const int cg = l->c / o->groups, kg = l->oc / o->groups;
    const double *w = p[0];
    const int uh = (l->oh - 1) * o->sh + 1, uw = (l->ow - 1) * o->sw + 1;   /* size of U */
    const int fh = o->dh * (o->kh - 1), fw = o->dw * (o->kw - 1);         /* full-conv padding */

    /* db[k] = Σ dY[n,k,i,j] */
    if (o->bias)
        for (int s = 0; s < n; s++)
            for (int k = 0; k < l->oc; k++)
                for (int i = 0; i < l->oh * l->ow; i++)
                    dp[1][k] += dy[((size_t)s * l->oc + k) * l->oh * l->ow + i];

    /* dW[k,c,r,t] = Σ_n Σ_{a,b} U[n,k,a,b] · xp[n,c, a + r·dh, b + t·dw]  (valid correlation) */
    for (int k = 0; k < l->oc; k++) {
        const int c0 = (k / kg) * cg;
        for (int c = 0; c < cg; c++)
            for (int r = 0; r < o->kh; r++)
                for (int t = 0; t < o->kw; t++) {
                    double acc = 0.0;
                    for (int s = 0; s < n; s++)
                        for (int a = 0; a < uh; a++)
                            for (int b = 0; b < uw; b++)
                                acc += dy_dilated(l, dy, s, k, a, b) *
                                       xpad(l, x, s, c0 + c, a + r * o->dh, b + t * o->dw);
                    dp[0][(((size_t)k * cg + c) * o->kh + r) * o->kw + t] += acc;
                }
    }

    if (!dx) return;   /* the input needs no gradient */
    /* dX[n,c,h,w] = dXp[h + ph, w + pw], where
     * dXp[hp,wp] = Σ_{k∈group(c)} Σ_{r',t'} Upad[hp + r'·dh, wp + t'·dw] · rot180(w[k,c])[r',t']
     * and Upad is U with fh, fw zeros around it: Upad[a,b] = U[a − fh, b − fw]. */
    for (int s = 0; s < n; s++)
        for (int c = 0; c < l->c; c++) {
            const int g = c / cg, cl = c % cg;
            for (int h = 0; h < l->h; h++)
                for (int wd = 0; wd < l->w; wd++) {
                    const int hp = h + o->ph, wp = wd + o->pw;
                    double acc = 0.0;
                    for (int k = g * kg; k < (g + 1) * kg; k++)
                        for (int rr = 0; rr < o->kh; rr++)
                            for (int tt = 0; tt < o->kw; tt++) {
                                const double wrot =   /* rot180(w)[rr,tt] = w[kh−1−rr, kw−1−tt] */
                                    w[(((size_t)k * cg + cl) * o->kh + (o->kh - 1 - rr)) * o->kw +
                                      (o->kw - 1 - tt)];
                                const int a = hp + rr * o->dh - fh, b = wp + tt * o->dw - fw;
                                if (a >= uh || b >= uw) continue;
                                acc += dy_dilated(l, dy, s, k, a, b) * wrot;
                            }
                    dx[(((size_t)s * l->c + c) * l->h + h) * l->w + wd] = acc;
                }
        }
}

/* ---- fast path: direct kernels, or im2col + GEMM, in float ------------------------------- */

/* The batch is cut into at most CHUNKS runs of consecutive samples, the same cut for any thread
 * count. Threads share out the chunks; each chunk has its own slice of the workspace, and its own
 * partial dW and db, which are added to the gradients afterwards in chunk order. So the result
 * is the same, bit for bit, on 1 thread or many. */
#define CHUNKS 8

static im2col_geom conv2d_geom(const layer *l) {
    const conv2d_opts *o = &l->o.conv;
    im2col_geom g = {l->c / o->groups, l->h, l->w, o->kh, o->kw, o->sh, o->sw,
                     o->ph, o->pw, o->dh, o->dw, l->oh, l->ow};
    return g;
}

/* The padding after (bottom, right) equals the padding before. padding=same with an even dilated
 * kernel pads one more row and column after; convtranspose2d's equivalent conv2d (see
 * convtranspose2d.c) may pad fewer after, even a negative number (rows no window reaches). The
 * direct kernels' padded planes are symmetric, so such a layer takes im2col + GEMM: im2col reads a
 * zero wherever a window leaves the input, whatever the padding, and the output size is l->oh, l->ow. */
static int conv2d_is_symmetric(const layer *l) {
    const conv2d_opts *o = &l->o.conv;
    return o->ph == o->ph2 && o->pw == o->pw2;
}

/* A 1×1 kernel with stride 1 and no padding reads x as it is: no im2col needed. */
static int decide_pointwise(const layer *l) {
    const conv2d_opts *o = &l->o.conv;
    return o->kh == 1 && o->kw == 1 && o->sh == 1 && o->sw == 1 && o->ph == 0 && o->pw == 0 &&
           conv2d_is_symmetric(l);
}

static int chunks_of(int n) { return n < CHUNKS ? n : CHUNKS; }

/* One input channel per group (a first layer on grey images, or depthwise) with unit column
 * stride runs as a direct convolution: whole output rows as vectors, no im2col. */
static int decide_direct(const layer *l) {
    return l->c == l->o.conv.groups && l->o.conv.sw == 1 && conv2d_is_symmetric(l);
}

static direct_geom conv2d_direct_geom(const layer *l) {
    const conv2d_opts *o = &l->o.conv;
    direct_geom g = {l->c / o->groups, l->h, l->w, l->oc / o->groups, o->kh, o->kw, o->sh, o->sw,
                     o->ph, o->pw, o->dh, o->dw, l->oh, l->ow};
    return g;
}

/* Several input channels per group, a kernel larger than 1×1, and output channels that fill at
 * least half of their last block of 16: the direct kernels of kernels/direct.c, where the CPU
 * has them. They beat im2col + GEMM on every benchmark shape, small (no copies, no tile edges)
 * and large (24 accumulators in registers). With a stride and fewer than 16 input channels the
 * input gradient still goes through a GEMM and col2im (direct16_input_direct). */
static int decide_direct16(const layer *l) {
    const conv2d_opts *o = &l->o.conv;
    const int cg = l->c / o->groups, kg = l->oc / o->groups;
    if (!(cg > 1 && !(o->kh == 1 && o->kw == 1) && (kg < 16 || kg % 16 == 0 || kg % 16 >= 8) &&
          conv2d_is_symmetric(l) && direct16_available()))
        return 0;
    /* Their buffers grow with the input and output planes, im2col's with the kernel: a layer whose
     * buffers would pass 2^26 floats (256 MB) per sample keeps im2col, and its limits. */
    const direct_geom g = conv2d_direct_geom(l);
    return direct16_ws_floats(&g) <= ((size_t)1 << 26);
}

/* The one-channel direct path with unit strides runs on the AVX-512 kernels where the CPU has
 * them (forward and weight gradient; the input gradient keeps the loops below). */
static int decide_direct1(const layer *l) {
    return decide_direct(l) && l->o.conv.sh == 1 && direct16_available();
}


/* The path is chosen once, when the net is built (conv2d_plan), not on every call. */
enum { PLAN_POINTWISE = 1, PLAN_DIRECT = 2, PLAN_DIRECT16 = 4, PLAN_DIRECT1 = 8 };

void conv2d_plan(layer *l) {
    l->o.conv.plan = (decide_pointwise(l) ? PLAN_POINTWISE : 0) | (decide_direct(l) ? PLAN_DIRECT : 0) |
                     (decide_direct16(l) ? PLAN_DIRECT16 : 0) | (decide_direct1(l) ? PLAN_DIRECT1 : 0);
}

static int conv2d_is_pointwise(const layer *l) { return (l->o.conv.plan & PLAN_POINTWISE) != 0; }
static int conv2d_is_direct(const layer *l) { return (l->o.conv.plan & PLAN_DIRECT) != 0; }
static int conv2d_is_direct16(const layer *l) { return (l->o.conv.plan & PLAN_DIRECT16) != 0; }
static int conv2d_is_direct1(const layer *l) { return (l->o.conv.plan & PLAN_DIRECT1) != 0; }

static size_t padded_plane(const layer *l) {
    return (size_t)(l->h + 2 * l->o.conv.ph) * (size_t)(l->w + 2 * l->o.conv.pw);
}

/* Per chunk: the im2col matrix of one sample and group (or, direct, a padded input plane and a
 * padded input-gradient plane), then a partial dWᵀ and db. */
/* Direct convolutions read whole padded rows past the last one, up to (kw − 1)·dw cells. */
static size_t padded_slack(const layer *l) { return (size_t)(l->o.conv.kw - 1) * l->o.conv.dw; }

/* The direct path's buffers: the padded input plane (with its slack), the padded input-gradient
 * plane, and one "wide" output plane of oh rows of the padded width. */
static size_t direct_floats(const layer *l) {
    const size_t wide = (size_t)l->oh * (size_t)(l->w + 2 * l->o.conv.pw);
    return 2 * (padded_plane(l) + padded_slack(l)) + wide;
}

static size_t chunk_col_floats(const layer *l) {
    const conv2d_opts *o = &l->o.conv;
    const size_t col = (size_t)(l->c / o->groups) * o->kh * o->kw * l->oh * l->ow;
    if (conv2d_is_direct16(l)) {
        const direct_geom g = conv2d_direct_geom(l);
        const size_t d = direct16_ws_floats(&g);
        return direct16_input_direct(&g) ? d : d > col ? d : col;   /* else col for im2col's dX */
    }
    if (conv2d_is_direct(l)) {
        const direct_geom g = conv2d_direct_geom(l);
        const size_t d1 = conv2d_is_direct1(l) ? direct1_ws_floats(&g) : 0;
        const size_t d = direct_floats(l) > d1 ? direct_floats(l) : d1;
        return d > col ? d : col;
    }
    return col;
}

static size_t chunk_floats(const layer *l) {
    const conv2d_opts *o = &l->o.conv;
    const size_t dw = (size_t)l->oc * (l->c / o->groups) * o->kh * o->kw;
    return chunk_col_floats(l) + dw + (size_t)l->oc;
}

/* The plane x [h, w] with ph rows and pw columns of zeros around it, into xp. */
static void pad_plane(const layer *l, const float *x, float *xp) {
    const int pw = l->w + 2 * l->o.conv.pw;
    memset(xp, 0, (padded_plane(l) + padded_slack(l)) * sizeof *xp);
    for (int h = 0; h < l->h; h++)
        memcpy(xp + (size_t)(h + l->o.conv.ph) * pw + l->o.conv.pw, x + (size_t)h * l->w, (size_t)l->w * sizeof *x);
}

/* Direct forward of one input plane xp (padded) into kg output planes:
 *   y[k][i][j] = b[k] + Σ_{r,t} w[k][r][t] · xp[i·sh + r·dh][j + t·dw]   (column stride 1) */
CNN_CLONES static void direct_forward(const layer *l, const float *restrict xp, const float *restrict w,
                                      const float *b, int kg, float *restrict y, float *restrict wide) {
    const conv2d_opts *o = &l->o.conv;
    const int pw = l->w + 2 * o->pw, ow = l->ow;
    if (o->sh == 1) {
        /* With stride 1 the output rows, taken at the padded width, are one contiguous run:
         * wide[i·pw + j] += w · xp[(i + r·dh)·pw + j + t·dw], a loop over all oh·pw cells at once.
         * Columns j ≥ ow hold nothing useful and are dropped. */
        const size_t q_end = (size_t)l->oh * pw;
        enum { BLOCK = 64 };   /* outputs kept in registers while every tap is added */
        for (int k = 0; k < kg; k++) {
            const float bias = b ? b[k] : 0.0f;
            const float *wk = w + (size_t)k * o->kh * o->kw;
            size_t q0 = 0;
            for (; q0 + BLOCK <= q_end; q0 += BLOCK) {
                float acc[BLOCK];
                for (int u = 0; u < BLOCK; u++) acc[u] = bias;
                for (int r = 0; r < o->kh; r++)
                    for (int t = 0; t < o->kw; t++) {
                        const float wv = wk[r * o->kw + t];
                        const float *src = xp + (size_t)r * o->dh * pw + (size_t)t * o->dw + q0;
                        for (int u = 0; u < BLOCK; u++) acc[u] += wv * src[u];
                    }
                memcpy(wide + q0, acc, sizeof acc);
            }
            for (size_t q = q0; q < q_end; q++) {
                float acc = bias;
                for (int r = 0; r < o->kh; r++)
                    for (int t = 0; t < o->kw; t++)
                        acc += wk[r * o->kw + t] * xp[(size_t)r * o->dh * pw + (size_t)t * o->dw + q];
                wide[q] = acc;
            }
            for (int i = 0; i < l->oh; i++)
                memcpy(y + ((size_t)k * l->oh + i) * ow, wide + (size_t)i * pw, (size_t)ow * sizeof *y);
        }
        return;
    }
    for (int k = 0; k < kg; k++)
        for (int i = 0; i < l->oh; i++) {
            float *yr = y + ((size_t)k * l->oh + i) * ow;
            const float bias = b ? b[k] : 0.0f;
            for (int j = 0; j < ow; j++) yr[j] = bias;
            for (int r = 0; r < o->kh; r++) {
                const float *xr = xp + (size_t)(i * o->sh + r * o->dh) * pw;
                for (int t = 0; t < o->kw; t++) {
                    const float wv = w[((size_t)k * o->kh + r) * o->kw + t];
                    const float *src = xr + t * o->dw;
                    for (int j = 0; j < ow; j++) yr[j] += wv * src[j];
                }
            }
        }
}

/* Direct weight gradient, added to dwt (laid out [kh·kw, kg], as the GEMM path's dWᵀ):
 *   dW[k][r][t] += Σ_{i,j} dy[k][i][j] · xp[i·sh + r·dh][j + t·dw]
 * Each sum runs over j in eight interleaved lanes, added in a fixed order. */
CNN_CLONES static void direct_weight_grad(const layer *l, const float *restrict xp, const float *restrict dy, int kg,
                                          float *restrict dwt, float *restrict wide) {
    const conv2d_opts *o = &l->o.conv;
    const int pw = l->w + 2 * o->pw, ow = l->ow;
    if (o->sh == 1) {
        /* dy laid out at the padded width with zero columns, so each sum is one contiguous dot
         * product of oh·pw terms (in 16 interleaved lanes, added in a fixed order). */
        const size_t q_end = (size_t)l->oh * pw;
        for (int k = 0; k < kg; k++) {
            for (int i = 0; i < l->oh; i++) {
                float *row = wide + (size_t)i * pw;
                memcpy(row, dy + ((size_t)k * l->oh + i) * ow, (size_t)ow * sizeof *row);
                for (int j = ow; j < pw; j++) row[j] = 0.0f;
            }
            for (int r = 0; r < o->kh; r++)
                for (int t = 0; t < o->kw; t++) {
                    const float *src = xp + (size_t)r * o->dh * pw + (size_t)t * o->dw;
                    float lane[16] = {0};
                    size_t q = 0;
                    for (; q + 16 <= q_end; q += 16)
                        for (int u = 0; u < 16; u++) lane[u] += wide[q + u] * src[q + u];
                    float tail = 0.0f;
                    for (; q < q_end; q++) tail += wide[q] * src[q];
                    for (int u = 8; u > 0; u /= 2)
                        for (int v = 0; v < u; v++) lane[v] += lane[v + u];
                    dwt[(size_t)(r * o->kw + t) * kg + k] += lane[0] + tail;
                }
        }
        return;
    }
    for (int k = 0; k < kg; k++)
        for (int r = 0; r < o->kh; r++)
            for (int t = 0; t < o->kw; t++) {
                float lane[8] = {0};
                float tail = 0.0f;
                for (int i = 0; i < l->oh; i++) {
                    const float *d = dy + ((size_t)k * l->oh + i) * ow;
                    const float *src = xp + (size_t)(i * o->sh + r * o->dh) * pw + t * o->dw;
                    int j = 0;
                    for (; j + 8 <= ow; j += 8)
                        for (int u = 0; u < 8; u++) lane[u] += d[j + u] * src[j + u];
                    for (; j < ow; j++) tail += d[j] * src[j];
                }
                const float sum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
                dwt[(size_t)(r * o->kw + t) * kg + k] += sum + tail;
            }
}

/* Direct input gradient of one plane: dxp[i·sh + r·dh][j + t·dw] += w[k][r][t] · dy[k][i][j] over
 * every kernel k of the group, then dx is dxp without its padding. */
CNN_CLONES static void direct_input_grad(const layer *l, const float *restrict dy, const float *restrict w, int kg,
                                         float *restrict dxp, float *restrict dx) {
    const conv2d_opts *o = &l->o.conv;
    const int pw = l->w + 2 * o->pw, ow = l->ow;
    memset(dxp, 0, padded_plane(l) * sizeof *dxp);
    for (int k = 0; k < kg; k++)
        for (int i = 0; i < l->oh; i++) {
            const float *d = dy + ((size_t)k * l->oh + i) * ow;
            for (int r = 0; r < o->kh; r++) {
                float *dst0 = dxp + (size_t)(i * o->sh + r * o->dh) * pw;
                for (int t = 0; t < o->kw; t++) {
                    const float wv = w[((size_t)k * o->kh + r) * o->kw + t];
                    float *dst = dst0 + t * o->dw;
                    for (int j = 0; j < ow; j++) dst[j] += wv * d[j];
                }
            }
        }
    for (int h = 0; h < l->h; h++)
        memcpy(dx + (size_t)h * l->w, dxp + (size_t)(h + o->ph) * pw + o->pw, (size_t)l->w * sizeof *dx);
}

/* The workspace: each chunk's slice, then (direct16) every group's packed weights. */
static size_t conv2d_workspace(const layer *l, int n) {
    size_t wt = 0;
    if (conv2d_is_direct16(l)) {
        const direct_geom g = conv2d_direct_geom(l);
        wt = (size_t)l->o.conv.groups * (direct16_wt_floats(&g) + direct16_wti_floats(&g));
    }
    return (size_t)chunks_of(n) * chunk_floats(l) + wt;
}

/* The im2col path keeps every sample's col from the forward pass for the weight gradient, when the
 * whole batch's fits in 2^24 floats (64 MB); larger layers build it again in the backward pass. */
#define KEEP_LIMIT ((size_t)1 << 24)

static size_t conv2d_keep_floats(const layer *l, int n) {
    if (conv2d_is_direct(l) || conv2d_is_pointwise(l) || conv2d_is_direct16(l)) return 0;
    const conv2d_opts *o = &l->o.conv;
    const size_t all = (size_t)n * (size_t)l->c * o->kh * o->kw * l->oh * l->ow;   /* n·groups·ck·P */
    return all <= KEEP_LIMIT ? all : 0;
}

/* Sample s, group gr's kept col, or NULL when nothing is kept for a batch of n. */
static float *kept_col(const layer *l, int n, int s, int gr) {
    if (!l->keep || n > l->keep_n) return NULL;
    const conv2d_opts *o = &l->o.conv;
    const size_t ckp = (size_t)(l->c / o->groups) * o->kh * o->kw * l->oh * l->ow;
    return l->keep + ((size_t)s * o->groups + gr) * ckp;
}

/* y_g[Kg, P] = W_g[Kg, Cg·kh·kw] · col_g[Cg·kh·kw, P] + b, per sample and group. */
/* The multiply-adds of one sample's layer from which its tiles go to the threads: a ResNet-20
 * 3×3 layer has 2.4 million, its stem 0.44 million; a fork and join of the threads costs about as
 * much as 30,000. */
#define PAR_ONE_MACS 300000.0

size_t conv2d_fold_floats(const layer *l, int bn) {
    const conv2d_opts *o = &l->o.conv;
    const size_t ck = (size_t)(l->c / o->groups) * o->kh * o->kw;
    size_t n = bn ? (size_t)l->oc * ck + (size_t)l->oc : 0;
    if (conv2d_is_direct16(l)) {
        const direct_geom g = conv2d_direct_geom(l);
        n += (size_t)o->groups * direct16_wt_floats(&g);
    }
    return n;
}

void conv2d_fold(layer *l, const double *scale, const double *shift, float *out) {
    const conv2d_opts *o = &l->o.conv;
    const int kg = l->oc / o->groups, ck = (l->c / o->groups) * o->kh * o->kw;
    l->fold_w = l->fold_b = l->fold_wt = NULL;
    if (scale) {
        float *w = out, *b = out + (size_t)l->oc * ck;
        for (int k = 0; k < l->oc; k++) {
            for (int q = 0; q < ck; q++) w[(size_t)k * ck + q] = (float)((double)l->param[0][(size_t)k * ck + q] * scale[k]);
            b[k] = (float)((o->bias ? (double)l->param[1][k] : 0.0) * scale[k] + shift[k]);
        }
        l->fold_w = w, l->fold_b = b;
        out = b + l->oc;
    }
    if (conv2d_is_direct16(l)) {
        const direct_geom g = conv2d_direct_geom(l);
        const float *w = l->fold_w ? l->fold_w : l->param[0];
        const float *b = l->fold_w ? l->fold_b : o->bias ? l->param[1] : NULL;
        for (int gr = 0; gr < o->groups; gr++)
            direct16_pack_weights(&g, w + (size_t)gr * kg * ck, b ? b + gr * kg : NULL,
                                  out + gr * direct16_wt_floats(&g));
        l->fold_wt = out;
    }
}

static void conv2d_forward(const layer *l, int n, const float *const *xs, float *y, float *ws) {
    const float *x = xs[0];
    const conv2d_opts *o = &l->o.conv;
    const im2col_geom g = conv2d_geom(l);
    const int cg = g.c, kg = l->oc / o->groups, ck = cg * o->kh * o->kw, P = l->oh * l->ow;
    const size_t xg = (size_t)cg * l->h * l->w;
    const int chunks = chunks_of(n), pointwise = conv2d_is_pointwise(l), direct = conv2d_is_direct(l);
    const int direct16 = conv2d_is_direct16(l), direct1 = conv2d_is_direct1(l);
    const direct_geom dg = conv2d_direct_geom(l);
    /* The weights and bias: the layer's own, or (inference) with a batch norm folded in. */
    const float *W = l->fold_w ? l->fold_w : l->param[0];
    const float *B = l->fold_w ? l->fold_b : o->bias ? l->param[1] : NULL;
    /* Sizes computed once: the chunks' slices, then each group's packed weights. */
    const size_t cf = chunk_floats(l), wtf = direct16 ? direct16_wt_floats(&dg) : 0;
    float *wt = ws + (size_t)chunks * cf;
    if (direct16 && l->fold_wt) {
        wt = (float *)l->fold_wt;   /* packed once for inference; read only */
    } else if (direct16) {
        for (int gr = 0; gr < o->groups; gr++)
            direct16_pack_weights(&dg, W + (size_t)gr * kg * ck, B ? B + gr * kg : NULL, wt + gr * wtf);
    }
    /* A batch of one cannot go to the threads sample by sample: a large enough layer splits its
     * tiles among them instead (the same bits). */
    if (n == 1 && direct16 && o->groups == 1 && cnn_get_threads() > 1 &&
        (double)kg * ck * P >= PAR_ONE_MACS) {
        direct16_forward_par(&dg, x, wt, y, ws);
        if (l->fold_add) add_into(y, l->fold_add, (size_t)kg * P);
        if (l->fold_relu) relu_into(y, y, (size_t)kg * P);
        return;
    }
    PARALLEL_FOR(ch, chunks) {
        float *col = ws + (size_t)ch * cf;
        for (int s = (int)(n * ch / chunks); s < (int)(n * (ch + 1) / chunks); s++)
            for (int gr = 0; gr < o->groups; gr++) {
                const float *xs = x + ((size_t)s * o->groups + gr) * xg;
                float *ys = y + ((size_t)s * l->oc + (size_t)gr * kg) * P;
                if (direct16) {
                    direct16_forward(&dg, xs, wt + gr * wtf, ys, col);
                } else if (direct1) {
                    direct1_forward(&dg, xs, W + (size_t)gr * kg * ck, B ? B + gr * kg : NULL, ys, col);
                } else if (direct) {
                    pad_plane(l, xs, col);
                    direct_forward(l, col, W + (size_t)gr * kg * ck, B ? B + gr * kg : NULL, kg, ys,
                                   col + 2 * (padded_plane(l) + padded_slack(l)));
                } else {
                    float *c = pointwise ? (float *)xs : kept_col(l, n, s, gr);
                    if (!pointwise) im2col(&g, xs, c = c ? c : col);
                    gemm(0, 0, kg, P, ck, W + (size_t)gr * kg * ck, c, 0.0f, ys);
                    if (B)
                        for (int k = 0; k < kg; k++) {
                            const float b = B[gr * kg + k];
                            for (int i = 0; i < P; i++) ys[(size_t)k * P + i] += b;
                        }
                }
                if (l->fold_add) add_into(ys, l->fold_add + ((size_t)s * l->oc + (size_t)gr * kg) * P, (size_t)kg * P);
                if (l->fold_relu) relu_into(ys, ys, (size_t)kg * P);   /* while the output is in cache */
            }
    }
}

/* Σ d[0..n), in 16 interleaved lanes added in a fixed order: one chain of n dependent additions
 * cost more than the rest of the first layer's bias gradient. */
CNN_CLONES float conv2d_plane_sum(const float *restrict d, int n) {
    float lane[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int u = 0; u < 16; u++) lane[u] += d[i + u];
    float tail = 0.0f;
    for (; i < n; i++) tail += d[i];
    for (int u = 8; u > 0; u /= 2)
        for (int v = 0; v < u; v++) lane[v] += lane[v + u];
    return lane[0] + tail;
}

/* Per chunk: db_c = Σ dy; dW_cᵀ = Σ col_g · dy_gᵀ (the transpose of dy_g · col_gᵀ: packing dy_gᵀ
 * for the GEMM moves kg·P floats where packing col_gᵀ would move ck·P); dcol = W_gᵀ · dy_g, then
 * col2im into dx (the direct kernels compute the same dW_cᵀ and, at stride 1, dx without col).
 * Then dW += dW_0 + dW_1 + ..., db likewise, in chunk order.
 * want_dw = 0 skips dW and db (x is then not read and may be NULL); dx = NULL skips dx. */
static void backward_parts(const layer *l, int n, const float *x, const float *dy, float *dx, int want_dw,
                           float *ws) {
    const conv2d_opts *o = &l->o.conv;
    const im2col_geom g = conv2d_geom(l);
    const int cg = g.c, kg = l->oc / o->groups, ck = cg * o->kh * o->kw, P = l->oh * l->ow;
    const size_t xg = (size_t)cg * l->h * l->w, col_size = chunk_col_floats(l), wsize = (size_t)l->oc * ck;
    const int chunks = chunks_of(n), pointwise = conv2d_is_pointwise(l), direct = conv2d_is_direct(l);
    const int direct16 = conv2d_is_direct16(l), direct1 = conv2d_is_direct1(l);
    const direct_geom dg = conv2d_direct_geom(l);
    /* The input gradient's packed weights, after the forward pass's in the workspace. */
    const size_t cf = chunk_floats(l), wtf = direct16 ? direct16_wt_floats(&dg) : 0;
    const size_t wtif = direct16 ? direct16_wti_floats(&dg) : 0;
    float *wti = ws + (size_t)chunks * cf + (size_t)o->groups * wtf;
    if (direct16 && dx)
        for (int gr = 0; gr < o->groups; gr++)
            direct16_pack_input_weights(&dg, l->param[0] + (size_t)gr * kg * ck, wti + gr * wtif);
    PARALLEL_FOR(ch, chunks) {
        float *col = ws + (size_t)ch * cf, *dw = col + col_size, *db = dw + wsize;
        if (want_dw) memset(dw, 0, (wsize + (size_t)l->oc) * sizeof *dw);
        for (int s = (int)(n * ch / chunks); s < (int)(n * (ch + 1) / chunks); s++) {
            if (want_dw && o->bias)
                for (int k = 0; k < l->oc; k++) db[k] += conv2d_plane_sum(dy + ((size_t)s * l->oc + k) * P, P);
            for (int gr = 0; gr < o->groups; gr++) {
                const float *xs = want_dw ? x + ((size_t)s * o->groups + gr) * xg : NULL;
                const float *dys = dy + ((size_t)s * l->oc + (size_t)gr * kg) * P;
                const float *wg = l->param[0] + (size_t)gr * kg * ck;
                float *dxs = dx ? dx + ((size_t)s * o->groups + gr) * xg : NULL;
                if (direct16) {
                    if (want_dw) direct16_weight_grad(&dg, xs, dys, dw + (size_t)gr * kg * ck, col);
                    if (dx && direct16_input_direct(&dg)) {
                        direct16_input_grad(&dg, dys, wg, wti + gr * wtif, dxs, col);
                        continue;
                    }
                } else if (direct) {
                    if (want_dw && direct1) {
                        direct1_weight_grad(&dg, xs, dys, dw + (size_t)gr * kg * ck, col);
                    } else if (want_dw) {
                        pad_plane(l, xs, col);
                        direct_weight_grad(l, col, dys, kg, dw + (size_t)gr * kg * ck,
                                           col + 2 * (padded_plane(l) + padded_slack(l)));
                    }
                    if (dx) direct_input_grad(l, dys, wg, kg, col + padded_plane(l) + padded_slack(l), dxs);
                    continue;
                } else if (want_dw) {
                    const float *c = pointwise ? xs : kept_col(l, n, s, gr);
                    if (!c) {
                        im2col(&g, xs, col);
                        c = col;
                    }
                    gemm(0, 1, ck, kg, P, c, dys, 1.0f, dw + (size_t)gr * kg * ck);
                }
                if (!dx) continue;
                if (pointwise) {
                    gemm(1, 0, ck, P, kg, wg, dys, 0.0f, dxs);
                    continue;
                }
                gemm(1, 0, ck, P, kg, wg, dys, 0.0f, col);
                memset(dxs, 0, xg * sizeof *dxs);
                col2im(&g, col, dxs);
            }
        }
    }
    if (!want_dw) return;
    /* Each chunk holds each group's dWᵀ [ck, kg]. Blocks of 16 rows of dW go to the threads, each
     * reading 16 consecutive floats of a dWᵀ row at a time; each element still adds the chunks'
     * parts in chunk order. */
    const int kblocks = (kg + 15) / 16;
    PARALLEL_FOR(blk, (long)o->groups * kblocks) {
        const int gr = (int)blk / kblocks, k0 = (int)blk % kblocks * 16, kn = kg - k0 < 16 ? kg - k0 : 16;
        float *g = l->grad[0] + ((size_t)gr * kg + k0) * ck;
        for (int ch = 0; ch < chunks; ch++) {
            const float *t = ws + (size_t)ch * cf + col_size + (size_t)gr * kg * ck + k0;
            for (int c = 0; c < ck; c++)
                for (int k = 0; k < kn; k++) g[(size_t)k * ck + c] += t[(size_t)c * kg + k];
        }
    }
    if (o->bias)
        for (int ch = 0; ch < chunks; ch++) {
            const float *db = ws + (size_t)ch * cf + col_size + wsize;
            for (int k = 0; k < l->oc; k++) l->grad[1][k] += db[k];
        }
}

static void conv2d_backward(const layer *l, int n, const float *const *xs, const float *y, const float *dy,
                            float *const *dxs, float *ws) {
    (void)y;
    backward_parts(l, n, xs[0], dy, dxs[0], 1, ws);
}

void conv2d_fast_input_grad(const layer *l, int n, const float *dy, float *dx, float *ws) {
    backward_parts(l, n, NULL, dy, dx, 0, ws);
}

void conv2d_fast_weight_grad(const layer *l, int n, const float *x, const float *dy, float *ws) {
    backward_parts(l, n, x, dy, NULL, 1, ws);
}

const layer_ops conv2d_ops = {
    .name = "conv2d",
    .torch_name = "Conv2d",
    .defaults = conv2d_defaults,
    .option = conv2d_option,
    .setup = conv2d_setup,
    .plan = conv2d_plan,
    .fan_in = conv2d_fan_in,
    .workspace = conv2d_workspace,
    .keep_floats = conv2d_keep_floats,
    .forward = conv2d_forward,
    .backward = conv2d_backward,
    .forward_ref = conv2d_forward_ref,
    .backward_ref = conv2d_backward_ref,
};
