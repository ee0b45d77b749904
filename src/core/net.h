/* Internal: the layout of a net, for the files of src/core that work on it. */
#ifndef CNN_NET_H
#define CNN_NET_H

#include "cnn.h"
#include "layers/layer.h"

struct cnn_net {
    int in_c, in_h, in_w;           /* per-sample input shape */
    int nlayers;
    layer *layers;

    /* Parameter and gradient arenas, in state_dict order. */
    int nparams;
    cnn_param *params;
    char *names;                    /* nparams names of 24 bytes */
    float *pdata, *gdata;
    size_t param_total;             /* floats in each arena */

    /* Batch-sized arenas (cnn_net_reserve): out[i] and d[i] are layer i's output and dL/d(output);
     * dact starts with dL/dinput; ws is the largest workspace any layer needs. */
    int cap;
    float *act, *dact, *ws, *keep;
    float **out, **d;

    /* The reference path's double arenas, laid out like the float ones. */
    cnn_path path;
    int ref_cap;
    double *ref;
    double *rx, *rdx, *rp, *rg;     /* input, dL/dinput, parameters, their gradients */
    double **rout, **rd;            /* per layer: output and dL/d(output) */

    int no_input_grad;              /* backward skips dL/dinput (cnn_net_set_input_grad) */
    const float *x;                 /* the input of the last forward */
    int n;                          /* its batch size; 0 before any forward */
};

#endif
