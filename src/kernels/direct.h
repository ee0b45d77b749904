/* Internal: direct convolution kernels for several input channels, with output channels in
 * blocks of 16 held in AVX-512 registers. The layer (src/layers/conv2d.c) decides
 * when to use them; these functions see one sample and one group. No allocation: every buffer
 * comes from the caller's workspace, sized by direct16_ws_floats.
 *
 * Layouts are those of conv2d: x [c, h, w], y and dy [kg, oh, ow], w [kg, c, kh, kw]. The padded
 * input xp is x with ph rows and pw columns of zeros around it, of width wp = w + 2·pw. */
#ifndef CNN_DIRECT_H
#define CNN_DIRECT_H

/* The library's symbol table names these cnn_i_<name>, so that they cannot collide with a
 * program's own (README: "Use from C"); the code calls them by the short names. */
#define direct16_available          cnn_i_direct16_available
#define direct16_enable             cnn_i_direct16_enable
#define direct16_wide               cnn_i_direct16_wide
#define direct16_ws_floats          cnn_i_direct16_ws_floats
#define direct16_wt_floats          cnn_i_direct16_wt_floats
#define direct16_pack_weights       cnn_i_direct16_pack_weights
#define direct16_forward            cnn_i_direct16_forward
#define direct16_forward_par        cnn_i_direct16_forward_par
#define direct16_weight_grad        cnn_i_direct16_weight_grad
#define direct16_wti_floats         cnn_i_direct16_wti_floats
#define direct16_pack_input_weights cnn_i_direct16_pack_input_weights
#define direct16_input_direct       cnn_i_direct16_input_direct
#define direct16_input_grad         cnn_i_direct16_input_grad
#define direct1_ws_floats           cnn_i_direct1_ws_floats
#define direct1_forward             cnn_i_direct1_forward
#define direct1_weight_grad         cnn_i_direct1_weight_grad

#include <stddef.h>

typedef struct direct_geom {
    int c, h, w;            /* input channels of the group, input height and width */
    int kg;                 /* output channels of the group */
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int oh, ow;             /* output */
} direct_geom;

/* 1 when this CPU runs the kernels (AVX-512F) and they are enabled, 0 otherwise (then none of
 * them may be called). */
int direct16_available(void);

/* For tests: on = 0 makes direct16_available() answer 0, so conv2d takes its im2col + GEMM path
 * on this CPU too; on = 1 undoes it. Returns the previous setting. Change it only while no net
 * is built: a net's workspace is sized for the path it will take. */
int direct16_enable(int on);

/* For tests: how direct16_forward takes stride-1 layers: 0 always in tiles of one output row
 * (each position's channels in a vector, then transposed), 2 always in "wide" rows (16 cells of a
 * channel in a vector, rows at the padded width), 1 (the default) wide where a row wastes at most
 * an eighth of its cells. Both give the same bits. Returns the previous setting; change it only
 * while no net is built (the workspace is sized for the path). */
int direct16_wide(int mode);

/* Floats of workspace any one call below needs. */
size_t direct16_ws_floats(const direct_geom *g);

/* Floats of the blocked, transposed weights that direct16_forward reads. */
size_t direct16_wt_floats(const direct_geom *g);

/* The weights w [kg, c·kh·kw] and bias b [kg] (or NULL: zeros) as direct16_forward reads them:
 * for each block of 16 output channels, [c·kh·kw + 1][16], the bias last, zero past kg. */
void direct16_pack_weights(const direct_geom *g, const float *w, const float *b, float *wt);

/* y [kg, oh, ow] = b + Σ w · xp, with weights and bias from direct16_pack_weights. */
void direct16_forward(const direct_geom *g, const float *x, const float *wt, float *y, float *ws);

/* As direct16_forward, with its tiles on the threads (cnn_get_threads()): for a batch of one,
 * where a layer's samples cannot be. Call it outside any parallel region. The same bits. */
void direct16_forward_par(const direct_geom *g, const float *x, const float *wt, float *y, float *ws);

/* dwt [c·kh·kw, kg] += Σ_{i,j} xp[c][i + r·dh][j + t·dw] · dy[k][i][j]: the weight gradient,
 * transposed, as the GEMM path keeps it. Each element is summed over (i, j) in order. */
void direct16_weight_grad(const direct_geom *g, const float *x, const float *dy, float *dwt, float *ws);

/* Floats of the weights direct16_input_grad reads, packed by direct16_pack_input_weights. */
size_t direct16_wti_floats(const direct_geom *g);

/* The rotated, transposed weights w'[c][k][r][t] = w[k][c][kh−1−r][kw−1−t], packed as
 * direct16_pack_weights packs a layer's weights (with a zero bias), when the input gradient runs
 * as a forward pass with input channels in registers (16 or more of them); otherwise nothing. */
void direct16_pack_input_weights(const direct_geom *g, const float *w, float *wti);

/* 1 when direct16_input_grad takes this layer: stride 1, or a stride with 16 or more input
 * channels (then it works phase by phase, see direct.c); otherwise the caller uses im2col's. */
int direct16_input_direct(const direct_geom *g);

/* dx [c, h, w] = the full convolution of dy with the kernels rotated 180° (note 002), without the
 * padding rows and columns. dx is overwritten. Only where direct16_input_direct says so. With 16 or more input
 * channels it is the forward pass of the layer whose weights direct16_pack_input_weights packed
 * into wti, over dy padded by (kh−1)·dh − ph rows and (kw−1)·dw − pw columns, 16 input channels
 * to a register; with fewer, dy is padded into dyz and each vector holds 16 cells of one input
 * channel. */
void direct16_input_grad(const direct_geom *g, const float *dy, const float *w, const float *wti, float *dx,
                         float *ws);

/* One input channel per group (g->c == 1), stride 1: the output rows are taken at the padded
 * width wp, so every tap reads one contiguous run of the padded plane ("wide" rows). */

/* Floats of workspace direct1_forward and direct1_weight_grad need. */
size_t direct1_ws_floats(const direct_geom *g);

/* y [kg, oh, ow] = b + Σ w · xp, w [kg, kh·kw]; b may be NULL. */
void direct1_forward(const direct_geom *g, const float *x, const float *w, const float *b, float *y, float *ws);

/* dwt [kh·kw, kg] += Σ_{i,j} xp[i + r·dh][j + t·dw] · dy[k][i][j], each sum in a fixed order. */
void direct1_weight_grad(const direct_geom *g, const float *x, const float *dy, float *dwt, float *ws);

#endif
