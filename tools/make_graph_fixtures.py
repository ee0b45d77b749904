#!/usr/bin/python3
"""Generates the agreement-with-PyTorch fixtures of graph models in tests/graph_fixtures/.

Run it from anywhere with Debian's Python and PyTorch:

    /usr/bin/python3 tools/make_graph_fixtures.py            # (re)writes tests/graph_fixtures/*
    /usr/bin/python3 tools/make_graph_fixtures.py --check    # recomputes every fixture from its files

With a fixed seed it samples small random graphs -- residual adds (`add from=...`, two or three inputs),
concatenations, projection shortcuts, forks -- over the layers of modern CNNs (batch norm 2d and 1d in
training and in eval mode, adaptive average and max pooling, transposed convolutions, gelu in both forms,
silu, softmax, dropout (eval mode, or p=0 in training), conv2d padding=same/valid) and the older ones, with
explicit names (dotted ones such as layer1.0.conv1, as in torchvision), default index names, `from=input`,
PyTorch's class names (BatchNorm2d, GELU, ...) and other spellings of the layer names. Each fixture
directory NNN holds the same files as tests/fixtures/NNN (see tools/make_fixtures.py):

    model.cnn            the model text; its second line, "# about: ...", says what the net holds
    weights.safetensors  every parameter (F32) and buffer under its state_dict name: running_mean and
                         running_var F32 (random, so that eval mode is not the identity), and
                         num_batches_tracked I64 of shape [] (random too: momentum=none averages with it)
    input.safetensors    `input` F32 [N,C,H,W], and `grad_output` (no loss) or `target`
    args                 the CLI's extra words: "--loss cross_entropy|mse" or none, "--eval" for eval mode
                         (else training mode), "--activations" to compare every line's value too
    expected.safetensors computed by PyTorch in float64 from exactly the F32 values above: `output`,
                         `grad_input`, `<param>.grad` for every parameter, `loss` with a loss; in training
                         mode every buffer after the update (running_var with the unbiased variance,
                         num_batches_tracked I64); with --activations `<name>:output` and `<name>:grad` for
                         every line (its name= or its index). F64, but num_batches_tracked.

A sampled net is kept only where float32 can agree: no ReLU/LeakyReLU input within 3e-5 of 0, no max or
adaptive-max pooling window whose two largest values are within 3e-5 (exact ties of zeros aside), no
all-zero tensor, PyTorch's float32 result within 1e-5 (relative L2) of float64 in every tensor, and at most
34 KiB of tensors per fixture, as in tools/make_fixtures.py.

The last fixture, `resnet20`, is models/resnet20.cnn (copied byte for byte) at batch 4 in training mode
with cross-entropy loss and PyTorch's default initialisation (batch norm's parameters and buffers random);
its expected tensors are F32, rounded once from float64, so that every file stays under 2 MB, and it has
no --activations.

The generator computes with torch.nn.functional on a flat dict of parameters, and ResNet-20 with a
torchvision-style module of its own; `--check` instead reads each model.cnn with tools/cnnmodel.py (the
independent parser of the format), loads the weights into its module with load_state_dict(strict=True)
and verifies that PyTorch reproduces expected.safetensors: every name, shape and dtype, float64 values to
1e-12 (F32 ones to 1e-6) relative L2, and integers exactly.
"""
import argparse
import copy
import os
import random
import shutil
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_file import load_file, save_file  # noqa: E402
from cnnmodel import parse_model  # noqa: E402  (only --check reads models with it)

SEED = 20250314
COUNT = 64
LOSSES = ["none", "cross_entropy", "mse"]
MARGIN = 3e-5          # minimum distance from a ReLU kink / between the two largest max-pool values
F32_TOL = 1e-5         # float32 PyTorch vs float64 PyTorch, relative L2, per tensor
MAX_FIXTURE_BYTES = 34 * 1024
MAX_FILE_BYTES = 2 * 1024 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "graph_fixtures")
RESNET20 = os.path.join(ROOT, "models", "resnet20.cnn")

# Every feature here must be covered by at least one fixture (MIN_COUNT: by more); the generator steers
# sampling towards features not yet covered enough and fails if one still is at the end.
REQUIRED = [
    # graph structure
    "add_prev", "add_explicit", "add3", "add_same_twice", "add_flat", "concat_prev", "concat_explicit",
    "concat3", "concat_with_input_of_branches", "projection_shortcut", "fork3", "from_index", "from_input",
    "from_explicit_prev", "names_dotted", "names_simple", "names_index_only",
    # spellings
    "alias_class", "case_upper", "case_other",
    # batch norm
    "bn2d_train", "bn2d_eval", "bn2d_momentum_train", "bn2d_momentum_none_train", "bn2d_eps",
    "bn2d_noaffine", "bn2d_notrack_train", "bn2d_notrack_eval", "bn2d_explicit_defaults", "bn2d_batch1",
    "bn1d_train", "bn1d_eval", "bn1d_momentum_none_train", "bn1d_after_linear", "bn1d_notrack_eval",
    # pooling
    "aap_global", "aap_int", "aap_pair", "aap_nondiv", "aap_upsample", "amp_global", "amp_int", "amp_pair",
    "amp_nondiv", "maxpool", "avgpool",
    # transposed convolution
    "convt_s1", "convt_s2", "convt_stride_pair", "convt_outpad", "convt_groups", "convt_dil", "convt_nobias",
    "convt_rect_kernel", "convt_pad",
    # conv2d
    "conv_same", "conv_same_even", "conv_same_dil", "conv_valid", "conv_stride2", "conv_groups",
    "conv_nobias",
    # activations, dropout
    "gelu_default", "gelu_none", "gelu_tanh", "silu", "softmax_spatial", "softmax_flat", "relu", "leakyrelu",
    "sigmoid", "tanh", "dropout_eval", "dropout_eval_flat", "dropout_default_p", "dropout_train_p0",
    # losses, modes, outputs
    "loss_none", "loss_cross_entropy", "loss_mse", "train", "eval", "activations_train", "activations_eval",
    "output_spatial", "output_flat", "batch1", "rect_input", "linear",
]
MIN_COUNT = {
    "bn2d_train": 20, "bn2d_eval": 20, "add_prev": 8, "concat_prev": 4, "add_explicit": 6, "projection_shortcut": 6,
    "activations_train": 10, "activations_eval": 10, "convt_s2": 3, "gelu_tanh": 2, "aap_nondiv": 2,
    "amp_nondiv": 2, "conv_same_even": 2, "bn1d_train": 3, "bn1d_eval": 3, "names_dotted": 8, "from_index": 4,
    "convt_outpad": 2, "softmax_spatial": 2, "softmax_flat": 2, "bn2d_momentum_train": 2,
    "bn2d_momentum_none_train": 3, "dropout_eval": 3, "bn2d_notrack_train": 2, "bn2d_notrack_eval": 2,
}

TORCH_NAMES = {
    "conv2d": "Conv2d", "maxpool2d": "MaxPool2d", "avgpool2d": "AvgPool2d", "relu": "ReLU", "leakyrelu": "LeakyReLU",
    "sigmoid": "Sigmoid", "tanh": "Tanh", "flatten": "Flatten", "linear": "Linear", "batchnorm2d": "BatchNorm2d",
    "batchnorm1d": "BatchNorm1d", "dropout": "Dropout", "adaptiveavgpool2d": "AdaptiveAvgPool2d",
    "adaptivemaxpool2d": "AdaptiveMaxPool2d", "convtranspose2d": "ConvTranspose2d", "gelu": "GELU",
    "silu": "SiLU", "softmax": "Softmax",
}
ACTIVATIONS = ("relu", "leakyrelu", "sigmoid", "tanh", "gelu", "silu", "softmax")
MAX_C, MAX_HW = 8, 12


# ------------------------------------------------------------------------------------------------
# Sampling: a net is a list of nodes; node i reads values (0 is the input) and writes value i + 1
# ------------------------------------------------------------------------------------------------

def fmt_pair(rng, v):
    if v[0] != v[1]:
        return "%d,%d" % v
    return "%d,%d" % v if rng.random() < 0.15 else "%d" % v[0]


def conv_out(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def convt_out(n, k, s, p, d, op):
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


def pool_out(n, k, s, p, ceil):
    if n + 2 * p < k:
        return 0
    if not ceil:
        return (n + 2 * p - k) // s + 1
    out = -(-(n + 2 * p - k) // s) + 1
    if (out - 1) * s >= n + p:
        out -= 1
    return out


class Node:
    def __init__(self, kind, opts, cfg, inputs, shape, feats):
        self.kind, self.opts, self.cfg, self.inputs, self.shape = kind, opts, cfg, list(inputs), shape
        self.feats = set(feats)
        self.name = None      # name=, or None: its index
        self.role = None      # (block prefix, part), for the names
        self.text = None


class Reject(Exception):
    """The sampled net cannot be built (a shape out of range)."""


class Graph:
    def __init__(self, rng, shape, n, training):
        self.rng, self.n, self.training = rng, n, training
        self.vals = [shape]   # per-sample shape of each value: (c, h, w), or (features,) when flat
        self.nodes = []
        self.cur = 0
        self.feats = set()
        self.blocks = 0

    def add(self, kind, opts, cfg, shape, inputs=None, feats=(), role=None):
        if len(shape) == 3 and not (1 <= shape[0] <= MAX_C and 1 <= shape[1] <= MAX_HW and 1 <= shape[2] <= MAX_HW):
            raise Reject()
        if len(shape) == 1 and not 1 <= shape[0] <= 150:
            raise Reject()
        node = Node(kind, opts, cfg, [self.cur] if inputs is None else inputs, shape, feats)
        node.role = role
        self.nodes.append(node)
        self.vals.append(shape)
        self.cur = len(self.vals) - 1
        return self.cur

    def shape(self, v=None):
        return self.vals[self.cur if v is None else v]


def sample_conv(g, rng, keep=False, out_ch=None, stride=None, role=None, k1=False):
    c, h, w = g.shape()
    feats = set()
    if out_ch is None:
        out_ch = c if keep else rng.randint(1, 6)
    groups = 1
    r = rng.random()
    if r < 0.12 and out_ch % c == 0:
        groups = c
    elif r < 0.25 and c % 2 == 0 and out_ch % 2 == 0:
        groups = 2
    if groups > 1:
        feats.add("conv_groups")
    opts = ["out_channels=%d" % out_ch]
    if k1:
        k, s, d = (1, 1), stride or (1, 1), (1, 1)
        pad = (0, 0)
    elif keep or (stride is None and rng.random() < 0.3):
        # padding=same (stride 1) or the explicit padding that keeps an odd kernel's size
        k = (rng.choice([1, 2, 3, 4, 3]),) * 2 if rng.random() < 0.8 else (rng.choice([1, 3]), rng.choice([2, 3]))
        d = (2, 2) if rng.random() < 0.2 else (1, 1)
        s = (1, 1)
        if k[0] % 2 and k[1] % 2 and rng.random() < 0.4:
            pad = ((k[0] - 1) // 2 * d[0], (k[1] - 1) // 2 * d[1])
        else:
            pad = "same"
            feats.add("conv_same")
            if k[0] % 2 == 0 or k[1] % 2 == 0:
                feats.add("conv_same_even")
            if d != (1, 1):
                feats.add("conv_same_dil")
    else:
        k = (rng.choice([1, 2, 3, 3]),) * 2 if rng.random() < 0.8 else (rng.choice([1, 2, 3]), rng.choice([1, 2, 3]))
        s = stride or ((rng.choice([1, 1, 2]),) * 2)
        d = (2, 2) if rng.random() < 0.15 else (1, 1)
        if rng.random() < 0.2:
            pad = "valid"
            feats.add("conv_valid")
        else:
            pad = (rng.choice([0, 1, 1]),) * 2
    opts.append("kernel_size=" + fmt_pair(rng, k))
    if s != (1, 1):
        opts.append("stride=" + fmt_pair(rng, s))
        feats.add("conv_stride2")
    if isinstance(pad, str):
        opts.append("padding=" + pad)
        p = (0, 0)
        oh, ow = (h, w) if pad == "same" else (conv_out(h, k[0], s[0], 0, d[0]), conv_out(w, k[1], s[1], 0, d[1]))
    else:
        p = pad
        if p != (0, 0):
            opts.append("padding=" + fmt_pair(rng, p))
        oh, ow = conv_out(h, k[0], s[0], p[0], d[0]), conv_out(w, k[1], s[1], p[1], d[1])
    if d != (1, 1):
        opts.append("dilation=" + fmt_pair(rng, d))
    if groups != 1:
        opts.append("groups=%d" % groups)
    bias = rng.random() < 0.7
    if not bias:
        opts.append("bias=false")
        feats.add("conv_nobias")
    if oh < 1 or ow < 1:
        raise Reject()
    if keep and (oh, ow) != (h, w):
        raise Reject()
    cfg = dict(in_ch=c, out_ch=out_ch, k=k, s=s, p=pad if isinstance(pad, str) else p, d=d, groups=groups,
               bias=bias)
    return g.add("conv2d", opts, cfg, (out_ch, oh, ow), feats=feats, role=role)


def sample_convt(g, rng, keep=False, out_ch=None, role=None):
    c, h, w = g.shape()
    feats = set()
    if out_ch is None:
        out_ch = c if keep else rng.randint(1, 6)
    groups = 2 if (rng.random() < 0.2 and c % 2 == 0 and out_ch % 2 == 0) else 1
    if keep:
        k, s, d, op = rng.choice([((3, 3), (1, 1), (1, 1), (0, 0)), ((1, 1), (1, 1), (1, 1), (0, 0)),
                                  ((3, 3), (1, 1), (2, 2), (0, 0)), ((3, 1), (1, 1), (1, 1), (0, 0))])
        p = ((k[0] - 1) // 2 * d[0], (k[1] - 1) // 2 * d[1])
    else:
        k = (rng.choice([1, 2, 3, 4]),) * 2 if rng.random() < 0.75 else (rng.choice([1, 2, 3]), rng.choice([2, 3, 4]))
        s = (rng.choice([1, 2, 2, 3]),) * 2 if rng.random() < 0.8 else (rng.choice([1, 2]), rng.choice([2, 3]))
        d = (2, 2) if rng.random() < 0.2 else (1, 1)
        p = (rng.choice([0, 0, 1, 2]),) * 2 if rng.random() < 0.8 else (rng.choice([0, 1]), rng.choice([0, 1, 2]))
        op = (0, 0)
        if rng.random() < 0.35:
            op = tuple(rng.randint(0, max(s[i], d[i]) - 1) for i in range(2))
    oh, ow = convt_out(h, k[0], s[0], p[0], d[0], op[0]), convt_out(w, k[1], s[1], p[1], d[1], op[1])
    if oh < 1 or ow < 1 or (keep and (oh, ow) != (h, w)):
        raise Reject()
    opts = ["out_channels=%d" % out_ch, "kernel_size=" + fmt_pair(rng, k)]
    for key, v, default in (("stride", s, (1, 1)), ("padding", p, (0, 0)), ("output_padding", op, (0, 0)),
                            ("dilation", d, (1, 1))):
        if v != default:
            opts.append("%s=%s" % (key, fmt_pair(rng, v)))
    if groups != 1:
        opts.append("groups=%d" % groups)
        feats.add("convt_groups")
    bias = rng.random() < 0.7
    if not bias:
        opts.append("bias=false")
        feats.add("convt_nobias")
    feats.add("convt_s1" if s == (1, 1) else "convt_s2")
    if s[0] != s[1]:
        feats.add("convt_stride_pair")
    if op != (0, 0):
        feats.add("convt_outpad")
    if d != (1, 1):
        feats.add("convt_dil")
    if k[0] != k[1]:
        feats.add("convt_rect_kernel")
    if p != (0, 0):
        feats.add("convt_pad")
    cfg = dict(in_ch=c, out_ch=out_ch, k=k, s=s, p=p, op=op, d=d, groups=groups, bias=bias)
    return g.add("convtranspose2d", opts, cfg, (out_ch, oh, ow), feats=feats, role=role)


def sample_bn(g, rng, role=None):
    shape = g.shape()
    flat = len(shape) == 1
    kind = "batchnorm1d" if flat else "batchnorm2d"
    pre = "bn1d" if flat else "bn2d"
    feats = set()
    cfg = dict(c=shape[0], eps=1e-5, momentum=0.1, affine=True, track=True)
    opts = []
    r = rng.random()
    if r < 0.1:
        cfg["eps"] = rng.choice([1e-3, 1e-4, 0.1])
        opts.append("eps=%g" % cfg["eps"])
        feats.add(pre + "_eps")
    r = rng.random()
    if r < 0.14:
        cfg["momentum"] = None
        opts.append("momentum=none")
        if g.training:
            feats.add(pre + "_momentum_none_train")
    elif r < 0.26:
        cfg["momentum"] = rng.choice([0.3, 0.05, 0.9, 1.0])
        opts.append("momentum=%g" % cfg["momentum"])
        if g.training:
            feats.add(pre + "_momentum_train")
    if rng.random() < 0.08:
        cfg["affine"] = False
        opts.append("affine=false")
        feats.add(pre + "_noaffine")
    if rng.random() < 0.08:
        cfg["track"] = False
        opts.append("track_running_stats=false")
        feats.add(pre + ("_notrack_train" if g.training else "_notrack_eval"))
    if rng.random() < 0.08:
        for key, v in (("eps", "1e-05"), ("momentum", "0.1"), ("affine", "true"), ("track_running_stats", "true")):
            if not any(o.startswith(key + "=") for o in opts) and rng.random() < 0.6:
                opts.append("%s=%s" % (key, v))
                feats.add(pre + "_explicit_defaults")
    batch_stats = g.training or not cfg["track"]
    if batch_stats and g.n * (1 if flat else shape[1] * shape[2]) < (3 if flat else 2):
        raise Reject()   # "Expected more than 1 value per channel when training"; and 2 are always +-1
    feats.add(pre + ("_train" if g.training else "_eval"))
    if not flat and g.n == 1:
        feats.add("bn2d_batch1")
    if flat and g.cur > 0 and g.nodes[g.cur - 1].kind == "linear":
        feats.add("bn1d_after_linear")
    return g.add(kind, opts, cfg, shape, feats=feats, role=role)


def sample_act(g, rng, kinds=None, role=None):
    flat = len(g.shape()) == 1
    kind = rng.choices(list(ACTIVATIONS), [5, 2, 1, 1, 3, 2, 1])[0] if kinds is None else rng.choice(kinds)
    cfg, opts, feats = {}, [], {kind}
    if kind == "leakyrelu":
        cfg["slope"] = 0.01
        if rng.random() < 0.6:
            cfg["slope"] = rng.choice([0.1, 0.2, 0.3, 0.01])
            opts.append("negative_slope=%g" % cfg["slope"])
    elif kind == "gelu":
        cfg["approximate"] = rng.choice(["none", "tanh", "default"])
        if cfg["approximate"] != "default":
            opts.append("approximate=" + cfg["approximate"])
        feats = {"gelu_" + cfg["approximate"]}
        cfg["approximate"] = cfg["approximate"].replace("default", "none")
    elif kind == "softmax":
        feats = {"softmax_flat" if flat else "softmax_spatial"}
    return g.add(kind, opts, cfg, g.shape(), feats=feats, role=role)


def sample_dropout(g, rng, role=None):
    flat = len(g.shape()) == 1
    feats = set()
    if g.training:
        p, opts = 0.0, [rng.choice(["p=0", "p=0.0"])]
        feats.add("dropout_train_p0")
    elif rng.random() < 0.25:
        p, opts = 0.5, []
        feats.add("dropout_default_p")
    else:
        p = rng.choice([0.1, 0.25, 0.3, 0.7, 0.9])
        opts = ["p=%g" % p]
    if not g.training:
        feats.add("dropout_eval_flat" if flat else "dropout_eval")
    return g.add("dropout", opts, dict(p=p), g.shape(), feats=feats, role=role)


def sample_pool(g, rng, kind, keep=False, role=None):
    c, h, w = g.shape()
    if keep:
        k, s, p = (3, 3), (1, 1), (1, 1)
        ceil = False
    else:
        k = (rng.choice([2, 2, 3]),) * 2
        s = k if rng.random() < 0.5 else (rng.choice([1, 2]),) * 2
        p = (rng.randint(0, k[0] // 2),) * 2 if rng.random() < 0.4 else (0, 0)
        ceil = rng.random() < 0.3
    cip = rng.random() < 0.7
    oh, ow = pool_out(h, k[0], s[0], p[0], ceil), pool_out(w, k[1], s[1], p[1], ceil)
    if oh < 1 or ow < 1 or (keep and (oh, ow) != (h, w)):
        raise Reject()
    opts = ["kernel_size=%d" % k[0]]
    if s != k:
        opts.append("stride=%d" % s[0])
    if p != (0, 0):
        opts.append("padding=%d" % p[0])
    if ceil:
        opts.append("ceil_mode=true")
    if kind == "avgpool2d" and not cip:
        opts.append("count_include_pad=false")
    cfg = dict(k=k, s=s, p=p, ceil=ceil, cip=cip)
    return g.add(kind, opts, cfg, (c, oh, ow), feats={"maxpool" if kind == "maxpool2d" else "avgpool"}, role=role)


def sample_adaptive(g, rng, kind, size=None, role=None):
    c, h, w = g.shape()
    pre = "aap" if kind == "adaptiveavgpool2d" else "amp"
    feats = set()
    if size is None:
        r = rng.random()
        if r < 0.3:
            size = (1, 1)
        elif r < 0.55:
            m = rng.randint(1, min(h, w))
            size = (m, m)
        elif r < 0.93 or kind == "adaptivemaxpool2d":
            size = (rng.randint(1, h), rng.randint(1, w))
        else:
            size = (rng.randint(h + 1, h + 3), rng.randint(1, w + 2))   # more outputs than inputs
    if size[0] > h or size[1] > w:
        feats.add("aap_upsample")
    if size == (1, 1):
        feats.add(pre + "_global")
        text = "output_size=1"
    elif size[0] == size[1] and rng.random() < 0.7:
        feats.add(pre + "_int")
        text = "output_size=%d" % size[0]
    else:
        feats.add(pre + "_pair")
        text = "output_size=%d,%d" % size
    if h % size[0] or w % size[1]:
        feats.add(pre + "_nondiv")
    return g.add(kind, [text], dict(size=size), (c,) + size, feats=feats, role=role)


def sample_linear(g, rng, out=None, role=None):
    n_in = g.shape()[0]
    out = out or rng.randint(2, 10)
    bias = rng.random() < 0.75
    opts = ["out_features=%d" % out] + ([] if bias else ["bias=false"])
    return g.add("linear", opts, dict(n_in=n_in, out=out, bias=bias), (out,), feats={"linear"}, role=role)


def sample_plain_spatial(g, rng):
    kind = rng.choices(["conv2d", "convtranspose2d", "bn", "act", "dropout", "maxpool2d", "avgpool2d",
                        "adaptiveavgpool2d", "adaptivemaxpool2d"], [4, 3, 4, 4, 1, 1, 1, 1.5, 1.5])[0]
    role = ("plain", kind)
    if kind == "conv2d":
        sample_conv(g, rng, role=role)
    elif kind == "convtranspose2d":
        sample_convt(g, rng, role=role)
    elif kind == "bn":
        sample_bn(g, rng, role=role)
    elif kind == "act":
        sample_act(g, rng, role=role)
    elif kind == "dropout":
        sample_dropout(g, rng, role=role)
    elif kind in ("maxpool2d", "avgpool2d"):
        sample_pool(g, rng, kind, role=role)
    else:
        sample_adaptive(g, rng, kind, role=role)


def shape_keeping_layer(g, rng, role):
    kind = rng.choices(["conv2d", "convtranspose2d", "bn", "act", "dropout", "maxpool2d"], [5, 2, 4, 3, 1, 0.5])[0]
    if kind == "conv2d":
        sample_conv(g, rng, keep=True, role=role + ("conv",))
    elif kind == "convtranspose2d":
        sample_convt(g, rng, keep=True, role=role + ("convt",))
    elif kind == "bn":
        sample_bn(g, rng, role=role + ("bn",))
    elif kind == "act":
        sample_act(g, rng, role=role + ("act",))
    elif kind == "dropout":
        sample_dropout(g, rng, role=role + ("drop",))
    else:
        sample_pool(g, rng, "maxpool2d", keep=True, role=role + ("pool",))


def body(g, rng, start, count, role, first_from=None):
    """count shape-keeping layers from value `start`; the first reads `start` explicitly if it is not the
    line above. Returns the last value."""
    g.cur = start
    for j in range(count):
        n0 = len(g.nodes)
        shape_keeping_layer(g, rng, role + (j,))
        if j == 0 and start != n0:
            g.nodes[-1].inputs = [start]
    return g.cur


def block_residual(g, rng):
    g.blocks += 1
    b = g.blocks
    a = g.cur
    form = rng.choices(["prev", "explicit", "three", "twice"], [6, 3, 1.5, 0.4])[0]
    if form == "twice":
        g.add("add", [], {}, g.shape(a), inputs=[a, a], feats={"add_same_twice"}, role=(b, "add"))
    elif form == "three":
        e1 = body(g, rng, a, rng.randint(1, 2), (b, "x"))
        e2 = body(g, rng, a, rng.randint(1, 2), (b, "y"))
        ins = [e1, e2, a]
        rng.shuffle(ins)
        g.add("add", [], {}, g.shape(a), inputs=ins, feats={"add3"}, role=(b, "add"))
    else:
        e = body(g, rng, a, rng.randint(1, 3), (b, "body"))
        if form == "prev":
            g.add("add", [], {}, g.shape(a), inputs=[e, a], role=(b, "add"))
        else:
            ins = [e, a] if rng.random() < 0.5 else [a, e]
            g.add("add", [], {}, g.shape(a), inputs=ins, role=(b, "add"))
    if rng.random() < 0.6:
        sample_act(g, rng, kinds=["relu", "relu", "gelu", "silu", "leakyrelu"], role=(b, "out"))


def block_projection(g, rng):
    """A ResNet block whose shape changes: conv (stride 2 or other channels) + bn + act + conv + bn, and a
    1x1 convolution (+ bn) on the shortcut."""
    g.blocks += 1
    b = g.blocks
    a = g.cur
    c, h, w = g.shape()
    stride = (2, 2) if (h >= 4 and w >= 4 and rng.random() < 0.7) else (1, 1)
    out_ch = rng.randint(1, 6)
    if stride == (1, 1) and out_ch == c:
        out_ch = c + 1
    # the body: conv1 bn1 act conv2 bn2
    sample_conv(g, rng, out_ch=out_ch, stride=stride, role=(b, "conv1")) if stride != (1, 1) else \
        sample_conv(g, rng, keep=False, out_ch=out_ch, stride=(1, 1), role=(b, "conv1"))
    if g.shape()[1:] != (-(-h // stride[0]), -(-w // stride[1])):
        raise Reject()
    sample_bn(g, rng, role=(b, "bn1"))
    sample_act(g, rng, kinds=["relu", "relu", "gelu", "silu"], role=(b, "act"))
    sample_conv(g, rng, keep=True, role=(b, "conv2"))
    if rng.random() < 0.8:
        sample_bn(g, rng, role=(b, "bn2"))
    e = g.cur
    g.cur = a
    sample_conv(g, rng, out_ch=out_ch, stride=stride, k1=True, role=(b, "downsample.0"))
    g.nodes[-1].inputs = [a]
    if g.shape() != g.shape(e):
        raise Reject()
    if rng.random() < 0.8:
        sample_bn(g, rng, role=(b, "downsample.1"))
    s = g.cur
    if rng.random() < 0.5:
        g.add("add", [], {}, g.shape(), inputs=[s, e], feats={"projection_shortcut"}, role=(b, "add"))
    else:
        g.add("add", [], {}, g.shape(), inputs=[e, s], feats={"projection_shortcut"}, role=(b, "add"))
    sample_act(g, rng, kinds=["relu"], role=(b, "out"))


def block_concat(g, rng):
    g.blocks += 1
    b = g.blocks
    a = g.cur
    c, h, w = g.shape()

    def branch(tag):
        g.cur = a
        n = rng.choices([0, 1, 2], [1, 4, 2])[0]
        for j in range(n):
            n0 = len(g.nodes)
            r = rng.random()
            if r < 0.55:
                sample_conv(g, rng, keep=True, out_ch=rng.randint(1, 4), role=(b, tag, j, "conv"))
            elif r < 0.7:
                sample_convt(g, rng, keep=True, out_ch=rng.randint(1, 4), role=(b, tag, j, "convt"))
            elif r < 0.85:
                sample_bn(g, rng, role=(b, tag, j, "bn"))
            else:
                sample_act(g, rng, role=(b, tag, j, "act"))
            if j == 0:
                g.nodes[n0].inputs = [a]
        return g.cur

    e1 = branch("left")
    e2 = branch("right")
    form = rng.choices(["prev", "explicit", "three"], [4, 3, 2])[0]
    feats = set()
    if form == "three":
        ins = [e1, e2, a]
        rng.shuffle(ins)
        feats.add("concat3")
    elif form == "prev" and e2 == len(g.vals) - 1 and e2 != a:
        ins = [e2, e1]
    else:
        ins = [e1, e2] if rng.random() < 0.5 else [e2, e1]
    if a in ins and (e1 != a or e2 != a):
        feats.add("concat_with_input_of_branches")
    chans = sum(g.vals[v][0] for v in ins)
    g.add("concat", [], {}, (chans, h, w), inputs=ins, feats=feats, role=(b, "cat"))
    if rng.random() < 0.4:
        sample_conv(g, rng, keep=True, out_ch=rng.randint(1, 4), role=(b, "mix"))


def sample_net(rng, loss, training, acts):
    c = rng.randint(1, 4)
    h = rng.randint(3, 8)
    w = h if rng.random() < 0.7 else rng.randint(3, 8)
    n = rng.choice([1, 2, 2, 3]) if not training else rng.choice([1, 2, 3, 3, 4])
    g = Graph(rng, (c, h, w), n, training)
    if acts and c * h * w * n > 300:
        raise Reject()
    if h != w:
        g.feats.add("rect_input")
    g.feats.add("batch%d" % n)
    nblocks = rng.choices([1, 2, 3, 4], [2, 4, 3, 1])[0]
    for _ in range(nblocks):
        kind = rng.choices(["plain", "residual", "projection", "concat"], [3, 4, 2, 2.5])[0]
        if kind == "plain":
            sample_plain_spatial(g, rng)
        elif kind == "residual":
            block_residual(g, rng)
        elif kind == "projection":
            if min(g.shape()[1:]) < 2:
                raise Reject()
            block_projection(g, rng)
        else:
            block_concat(g, rng)
    flat = loss == "cross_entropy" or rng.random() < 0.55
    if flat:
        r = rng.random()
        if r < 0.35:
            sample_adaptive(g, rng, "adaptiveavgpool2d", size=(1, 1), role=("head", "pool"))
        elif r < 0.55:
            sample_adaptive(g, rng, "adaptivemaxpool2d", size=(1, 1), role=("head", "pool"))
        elif r < 0.65:
            c_, h_, w_ = g.shape()
            size = (rng.randint(1, min(h_, 3)), rng.randint(1, min(w_, 3)))
            sample_adaptive(g, rng, rng.choice(["adaptiveavgpool2d", "adaptivemaxpool2d"]), size=size,
                            role=("head", "pool"))
        c_, h_, w_ = g.shape()
        g.add("flatten", [], {}, (c_ * h_ * w_,), role=("head", "flatten"))
        for j in range(rng.choices([0, 1, 2, 3], [1, 4, 3, 2])[0]):
            kind = rng.choices(["linear", "bn", "act", "dropout", "residual"], [5, 2, 2, 1, 1])[0]
            if kind == "linear":
                sample_linear(g, rng, role=("fc", j))
            elif kind == "bn":
                if g.nodes[-1].kind != "linear" and rng.random() < 0.7:
                    sample_linear(g, rng, role=("fc", j))
                sample_bn(g, rng, role=("fc", j, "bn"))
            elif kind == "act":
                sample_act(g, rng, role=("fc", j, "act"))
            elif kind == "dropout":
                sample_dropout(g, rng, role=("fc", j, "drop"))
            else:
                a = g.cur
                g.blocks += 1
                sample_linear(g, rng, out=g.shape()[0], role=(g.blocks, "fc"))
                if rng.random() < 0.5:
                    sample_act(g, rng, kinds=["relu", "tanh", "gelu"], role=(g.blocks, "act"))
                g.add("add", [], {}, g.shape(), inputs=[g.cur, a] if rng.random() < 0.6 else [a, g.cur],
                      feats={"add_flat"},
                      role=(g.blocks, "add"))
        if loss == "cross_entropy" and g.shape()[0] < 2:
            sample_linear(g, rng, role=("fc", "out"))
        g.feats.add("output_flat")
    else:
        if len(g.nodes) == 0 or rng.random() < 0.3:
            sample_plain_spatial(g, rng)
        g.feats.add("output_spatial")
    if len(g.shape()) == 1 and g.shape()[0] > 150:
        raise Reject()
    g.feats.add("loss_" + loss)
    g.feats.add("train" if training else "eval")
    if acts:
        g.feats.add("activations_train" if training else "activations_eval")
    for node in g.nodes:
        g.feats |= node.feats
    consumers = [0] * len(g.vals)
    for node in g.nodes:
        for v in node.inputs:
            consumers[v] += 1
    assert all(consumers[v] > 0 for v in range(len(g.vals) - 1)), consumers
    if max(consumers) >= 3:
        g.feats.add("fork3")
    # A bias that only a batch norm using the batch's statistics reads has a gradient of exactly 0 (the
    # mean is subtracted), which float32 cannot reproduce relative to it: leave it out, as real nets do.
    for i, node in enumerate(g.nodes):
        readers = [m for m in g.nodes if i + 1 in m.inputs]
        if node.cfg.get("bias") and readers and all(
                m.kind in ("batchnorm2d", "batchnorm1d") and (training or not m.cfg["track"]) for m in readers):
            node.cfg["bias"] = False
            node.opts.append("bias=false")
            node.feats.add("conv_nobias" if node.kind == "conv2d" else "convt_nobias" if
                           node.kind == "convtranspose2d" else "linear")
    g.loss, g.acts = loss, acts
    return g


# ------------------------------------------------------------------------------------------------
# The model text: names, from=, spellings
# ------------------------------------------------------------------------------------------------

SIMPLE = ["stem", "skip", "trunk", "branch", "mix", "proj", "head", "feat", "res", "side", "up", "merge"]


def assign_names(g, rng):
    style = rng.choices(["dotted", "simple", "index", "mixed"], [4, 2, 1.5, 2])[0]
    reads = [[] for _ in g.vals]
    for i, node in enumerate(g.nodes):
        for v in node.inputs:
            reads[v].append(i)
    used = set()

    def unique(name):
        k = 2
        base = name
        while name in used:
            name = "%s_%d" % (base, k)
            k += 1
        used.add(name)
        return name

    for i, node in enumerate(g.nodes):
        v = i + 1
        referenced = any(g.nodes[j].inputs != [j] for j in reads[v])   # read through from=
        role = node.role or ("x",)
        if style == "index":
            continue
        if style == "dotted" or (style == "mixed" and rng.random() < 0.5):
            has_params = node.kind in ("conv2d", "convtranspose2d", "linear", "batchnorm2d", "batchnorm1d")
            if has_params or referenced or rng.random() < 0.3:
                head = role[0]
                prefix = ("layer%d.%d" % (1 + (head - 1) // 2, (head - 1) % 2)) if isinstance(head, int) else \
                    str(head)
                rest = [str(r) for r in role[1:]]
                if not has_params and referenced and rng.random() < 0.5 and isinstance(head, int):
                    node.name = unique(prefix)   # the block's output, as layer1.0 in ResNet-20
                else:
                    node.name = unique(".".join([prefix] + rest))
        elif referenced or rng.random() < 0.2:
            node.name = unique(rng.choice(SIMPLE) if rng.random() < 0.8 else rng.choice(SIMPLE).capitalize())
    if any(n.name and "." in n.name for n in g.nodes):
        g.feats.add("names_dotted")
    elif any(n.name for n in g.nodes):
        g.feats.add("names_simple")
    else:
        g.feats.add("names_index_only")
    # a name must not end like a tensor of the line it would be nested under ("x.weight")
    for n in g.nodes:
        if n.name and any(n.name.endswith("." + t) for t in ("weight", "bias", "running_mean", "running_var",
                                                              "num_batches_tracked")):
            raise Reject()


def spell(rng, kind, feats):
    r = rng.random()
    if r < 0.65:
        return kind
    if r < 0.85:
        if kind in TORCH_NAMES:
            feats.add("alias_class")
            return TORCH_NAMES[kind]
        feats.add("case_other")
        return kind.capitalize()
    if r < 0.93:
        feats.add("case_upper")
        return kind.upper()
    feats.add("case_other")
    base = TORCH_NAMES.get(kind, kind)
    s = "".join(ch.upper() if rng.random() < 0.5 else ch.lower() for ch in base)
    return s if s not in (kind, kind.upper(), base) else base.swapcase()


def value_name(g, v):
    if v == 0:
        return "input"
    node = g.nodes[v - 1]
    return node.name if node.name else str(v - 1)


def render(g, rng):
    for i, node in enumerate(g.nodes):
        words = list(node.opts)
        prev = i   # the line above's value
        frm = None
        if node.kind in ("add", "concat"):
            if len(node.inputs) == 2 and node.inputs[0] == prev and rng.random() < 0.75:
                frm = [node.inputs[1]]
                node.feats.add(node.kind + "_prev")
            else:
                frm = node.inputs
                if len(node.inputs) == 2:
                    node.feats.add(node.kind + "_explicit")
        elif node.inputs != [prev]:
            frm = node.inputs
        elif rng.random() < 0.06:
            frm = node.inputs
            node.feats.add("from_explicit_prev")
        if frm is not None:
            words.append("from=" + ",".join(value_name(g, v) for v in frm))
            for v in frm:
                if v == 0:
                    node.feats.add("from_input")
                elif not g.nodes[v - 1].name:
                    node.feats.add("from_index")
        if node.name:
            words.append("name=" + node.name)
        if rng.random() < 0.2:
            rng.shuffle(words)
        node.text = " ".join([spell(rng, node.kind, g.feats)] + words)
    for node in g.nodes:
        g.feats |= node.feats


def about(g):
    kinds = []
    for node in g.nodes:
        k = node.kind
        if k in ("batchnorm2d", "batchnorm1d", "dropout") or k not in kinds:
            tag = k
            if k == "gelu" and node.cfg["approximate"] == "tanh":
                tag = "gelu(tanh)"
            if tag not in kinds:
                kinds.append(tag)
    mode = "train" if g.training else "eval"
    loss = {"none": "grad_output", "cross_entropy": "cross_entropy", "mse": "mse"}[g.loss]
    return "%s, %s%s: %s" % (mode, loss, ", activations" if g.acts else "", " ".join(kinds))


def model_text(g, seed, index):
    lines = ["# generated by tools/make_graph_fixtures.py (seed %d, index %d); do not edit" % (seed, index),
             "# about: " + about(g),
             "input %d %d %d" % g.vals[0]]
    lines += [node.text for node in g.nodes]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# PyTorch, functional: the generator's own evaluation of a sampled net
# ------------------------------------------------------------------------------------------------

def param_names(g):
    """[(state_dict name, kind: 'param' | 'buffer' | 'counter', shape)] of every node, in order."""
    out = []
    for i, node in enumerate(g.nodes):
        p, k, c = value_name(g, i + 1), node.kind, node.cfg
        if k == "conv2d":
            out.append((p + ".weight", "param", (c["out_ch"], c["in_ch"] // c["groups"]) + c["k"]))
            if c["bias"]:
                out.append((p + ".bias", "param", (c["out_ch"],)))
        elif k == "convtranspose2d":
            out.append((p + ".weight", "param", (c["in_ch"], c["out_ch"] // c["groups"]) + c["k"]))
            if c["bias"]:
                out.append((p + ".bias", "param", (c["out_ch"],)))
        elif k == "linear":
            out.append((p + ".weight", "param", (c["out"], c["n_in"])))
            if c["bias"]:
                out.append((p + ".bias", "param", (c["out"],)))
        elif k in ("batchnorm2d", "batchnorm1d"):
            if c["affine"]:
                out += [(p + ".weight", "param", (c["c"],)), (p + ".bias", "param", (c["c"],))]
            if c["track"]:
                out += [(p + ".running_mean", "buffer", (c["c"],)), (p + ".running_var", "buffer", (c["c"],)),
                        (p + ".num_batches_tracked", "counter", ())]
    return out


def init_weights(g):
    """F32 parameters like PyTorch's default initialisation (uniform +-1/sqrt(fan_in)); batch norm's
    parameters and buffers random, so that neither mode is the identity."""
    w = {}
    for name, kind, shape in param_names(g):
        base = name.rsplit(".", 1)
        if kind == "counter":
            w[name] = torch.randint(0, 12, (), dtype=torch.int64)
        elif name.endswith(".running_mean"):
            w[name] = 0.4 * torch.randn(shape)
        elif name.endswith(".running_var"):
            w[name] = 0.5 + torch.rand(shape)
        else:
            node = next(n for i, n in enumerate(g.nodes) if value_name(g, i + 1) == base[0])
            if node.kind in ("batchnorm2d", "batchnorm1d"):
                w[name] = (0.6 + 0.8 * torch.rand(shape)) if base[1] == "weight" else 0.4 * torch.randn(shape)
            else:
                c = node.cfg
                if node.kind == "conv2d":
                    fan_in = c["in_ch"] // c["groups"] * c["k"][0] * c["k"][1]
                elif node.kind == "convtranspose2d":
                    fan_in = c["out_ch"] // c["groups"] * c["k"][0] * c["k"][1]   # weight.size(1) * kh * kw
                else:
                    fan_in = c["n_in"]
                bound = fan_in ** -0.5
                w[name] = (torch.rand(shape) * 2 - 1) * bound
    return w


def apply_node(node, name, ins, P, B, training):
    k, c, x = node.kind, node.cfg, ins[0]
    if k == "conv2d":
        return F.conv2d(x, P[name + ".weight"], P.get(name + ".bias"), c["s"], c["p"], c["d"], c["groups"])
    if k == "convtranspose2d":
        return F.conv_transpose2d(x, P[name + ".weight"], P.get(name + ".bias"), c["s"], c["p"], c["op"],
                                  c["groups"], c["d"])
    if k == "linear":
        return F.linear(x, P[name + ".weight"], P.get(name + ".bias"))
    if k in ("batchnorm2d", "batchnorm1d"):
        wt, bs = P.get(name + ".weight"), P.get(name + ".bias")
        if not c["track"]:
            return F.batch_norm(x, None, None, wt, bs, True, 0.0, c["eps"])
        rm, rv = B[name + ".running_mean"], B[name + ".running_var"]
        if not training:
            return F.batch_norm(x, rm, rv, wt, bs, False, 0.0, c["eps"])
        B[name + ".num_batches_tracked"] += 1
        factor = c["momentum"] if c["momentum"] is not None else 1.0 / float(B[name + ".num_batches_tracked"])
        return F.batch_norm(x, rm, rv, wt, bs, True, factor, c["eps"])   # updates rm, rv (unbiased variance)
    if k == "maxpool2d":
        return F.max_pool2d(x, c["k"], c["s"], c["p"], ceil_mode=c["ceil"])
    if k == "avgpool2d":
        return F.avg_pool2d(x, c["k"], c["s"], c["p"], ceil_mode=c["ceil"], count_include_pad=c["cip"])
    if k == "adaptiveavgpool2d":
        return F.adaptive_avg_pool2d(x, c["size"])
    if k == "adaptivemaxpool2d":
        return F.adaptive_max_pool2d(x, c["size"])
    if k == "relu":
        return F.relu(x)
    if k == "leakyrelu":
        return F.leaky_relu(x, c["slope"])
    if k == "sigmoid":
        return torch.sigmoid(x)
    if k == "tanh":
        return torch.tanh(x)
    if k == "gelu":
        return F.gelu(x, approximate=c["approximate"])
    if k == "silu":
        return F.silu(x)
    if k == "softmax":
        return F.softmax(x, 1)
    if k == "dropout":
        assert not training or c["p"] == 0.0
        return x * 1.0 if c["p"] == 0.0 or not training else F.dropout(x, c["p"], training)
    if k == "flatten":
        return torch.flatten(x, 1)
    if k == "add":
        y = ins[0]
        for t in ins[1:]:
            y = y + t
        return y
    if k == "concat":
        return torch.cat(ins, 1)
    raise ValueError(k)


def run_graph(g, P, B, x, training):
    vals = [x]
    for i, node in enumerate(g.nodes):
        ins = [vals[v] for v in node.inputs]
        y = apply_node(node, value_name(g, i + 1), ins, P, B, training)
        vals.append(y.view_as(y) if any(y is t for t in ins) else y)
    return vals


def loss_of(y, loss, aux, dtype):
    if loss == "none":
        return (y * aux.to(dtype)).sum()
    if loss == "cross_entropy":
        return F.cross_entropy(y, aux, reduction="mean")
    return F.mse_loss(y, aux.to(dtype), reduction="mean")


def compute(g, weights, x, aux, dtype):
    """Forward and backward in `dtype` from the F32 weights; returns the dict of expected tensors."""
    params = {n for n, kind, _ in param_names(g) if kind == "param"}
    P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in weights.items() if k in params}
    B = {k: (v.clone() if v.dtype == torch.int64 else v.to(dtype).clone()) for k, v in weights.items()
         if k not in params}
    xin = x.to(dtype).clone().requires_grad_(True)
    vals = run_graph(g, P, B, xin, g.training)
    if g.acts:
        for v in vals[1:]:
            v.retain_grad()
    total = loss_of(vals[-1], g.loss, aux, dtype)
    total.backward()
    res = {"output": vals[-1].detach().clone(), "grad_input": xin.grad.detach().clone()}
    for name, kind, _ in param_names(g):
        if kind == "param":
            res[name + ".grad"] = P[name].grad.detach().clone()
        elif g.training:
            res[name] = B[name].detach().clone()
    if g.loss != "none":
        res["loss"] = total.detach().clone().reshape([])
    if g.acts:
        for i in range(len(g.nodes)):
            res[value_name(g, i + 1) + ":output"] = vals[i + 1].detach().clone()
            res[value_name(g, i + 1) + ":grad"] = vals[i + 1].grad.detach().clone()
    return res


def rel_l2(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / max(b.norm().item(), 1e-12)).item()


def near_ties(win, scale):
    """win [..., k]: windows whose two largest values are within MARGIN (exact ties of zeros aside)."""
    if win.shape[-1] < 2:
        return False
    top = win.topk(2, dim=-1).values
    t1, t2 = top[..., 0], top[..., 1]
    tie = t1 == t2
    return bool((tie & (t1 != 0)).any() or ((~tie) & ((t1 - t2) < MARGIN * scale)).any())


def conditioning_problems(g, weights, x):
    """Near-kinks (ReLU, LeakyReLU) and near-ties (max and adaptive max pooling) in the float64 forward."""
    P = {k: v.double() for k, v in weights.items() if v.dtype != torch.int64}
    B = {k: (v.clone() if v.dtype == torch.int64 else v.double().clone()) for k, v in weights.items()}
    with torch.no_grad():
        vals = run_graph(g, P, B, x.double(), g.training)
    for i, node in enumerate(g.nodes):
        v = vals[node.inputs[0]]
        scale = max(1.0, v.abs().max().item())
        if node.kind in ("relu", "leakyrelu"):
            if ((v != 0) & (v.abs() < MARGIN * scale)).any():
                return "activation input within margin of 0"
        elif node.kind == "maxpool2d":
            c = node.cfg
            (kh, kw), (sh, sw), (ph, pw) = c["k"], c["s"], c["p"]
            oh, ow = vals[i + 1].shape[2:]
            ih, iw = v.shape[2:]
            eh = max(0, (oh - 1) * sh + kh - (ih + 2 * ph))
            ew = max(0, (ow - 1) * sw + kw - (iw + 2 * pw))
            padded = F.pad(v, (pw, pw + ew, ph, ph + eh), value=float("-inf"))
            win = padded.unfold(2, kh, sh).unfold(3, kw, sw)[:, :, :oh, :ow]
            if near_ties(win.reshape(*win.shape[:4], kh * kw), scale):
                return "max-pool window with a near tie"
        elif node.kind == "adaptivemaxpool2d":
            (oh, ow), (ih, iw) = node.cfg["size"], v.shape[2:]
            for a in range(oh):
                for b in range(ow):
                    h0, h1 = a * ih // oh, -(-(a + 1) * ih // oh)
                    w0, w1 = b * iw // ow, -(-(b + 1) * iw // ow)
                    if near_ties(v[:, :, h0:h1, w0:w1].reshape(v.shape[0], v.shape[1], -1), scale):
                        return "adaptive max-pool window with a near tie"
    return None


def fixture_bytes(*dicts):
    return sum(t.numel() * t.element_size() + 120 for d in dicts for t in d.values())


def sample_candidate(rng, loss, training, acts):
    while True:
        try:
            g = sample_net(rng, loss, training, acts)
            assign_names(g, rng)
            render(g, rng)
            return g
        except Reject:
            pass


def make_fixture(rng, loss, training, acts, uncovered):
    """The first sampled net that passes every check, out of the candidates that cover the most
    features still uncovered (the best of 100 at a time)."""
    while True:
        g = max((sample_candidate(rng, loss, training, acts) for _ in range(100)),
                key=lambda c: len(c.feats & uncovered))
        torch.manual_seed(rng.randrange(2 ** 31))
        weights = init_weights(g)
        x = torch.randn(g.n, *g.vals[0])
        out_shape = (g.n,) + g.vals[-1]
        if loss == "cross_entropy":
            aux = torch.randint(0, g.vals[-1][0], (g.n,), dtype=torch.int64)
        else:
            aux = torch.randn(out_shape)
        if conditioning_problems(g, weights, x):
            continue
        exp = compute(g, weights, x, aux, torch.float64)
        assert tuple(exp["output"].shape) == out_shape, (exp["output"].shape, out_shape)
        if any(t.dtype != torch.int64 and t.norm().item() < 1e-8 for k, t in exp.items() if k != "loss"):
            continue  # a tensor that is all zero tests nothing
        got32 = compute(g, weights, x, aux, torch.float32)
        if any(rel_l2(got32[k], v) > F32_TOL if v.dtype != torch.int64 else not torch.equal(got32[k], v)
               for k, v in exp.items()):
            continue
        inputs = {"input": x, ("grad_output" if loss == "none" else "target"): aux}
        if fixture_bytes(weights, inputs, exp) > MAX_FIXTURE_BYTES:
            continue
        return g, weights, inputs, exp


def args_words(loss, training, acts):
    words = [] if loss == "none" else ["--loss", loss]
    if not training:
        words.append("--eval")
    if acts:
        words.append("--activations")
    return words


def write_fixture(d, text, args, weights, inputs, exp):
    os.makedirs(d)
    with open(os.path.join(d, "model.cnn"), "w") as f:
        f.write(text)
    with open(os.path.join(d, "args"), "w") as f:
        f.write(" ".join(args) + "\n")
    save_file(weights, os.path.join(d, "weights.safetensors"))
    save_file(inputs, os.path.join(d, "input.safetensors"))
    save_file(exp, os.path.join(d, "expected.safetensors"))
    for name in os.listdir(d):
        assert os.path.getsize(os.path.join(d, name)) < MAX_FILE_BYTES, (d, name)
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


# ------------------------------------------------------------------------------------------------
# ResNet-20, as a torchvision-style module of its own
# ------------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.downsample = None
        if stride != 1 or cin != c:   # option B: a projection where the shape changes
            self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet20(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for i, c in enumerate((16, 32, 64)):
            blocks = []
            for b in range(3):
                blocks.append(BasicBlock(cin, c, 2 if i > 0 and b == 0 else 1))
                cin = c
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet20_compute(net, x, target, dtype):
    net = copy.deepcopy(net).to(dtype).train()
    xin = x.to(dtype).clone().requires_grad_(True)
    y = net(xin)
    total = F.cross_entropy(y, target)
    total.backward()
    res = {"output": y.detach().clone(), "grad_input": xin.grad.detach().clone(), "loss": total.detach().reshape([])}
    for name, p in net.named_parameters():
        res[name + ".grad"] = p.grad.detach().clone()
    for name, b in net.named_buffers():
        res[name] = b.detach().clone()
    return res


def make_resnet20(seed):
    torch.manual_seed(seed)
    net = ResNet20()   # float32, PyTorch's default initialisation
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.6 + 0.8 * torch.rand(m.weight.shape))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape))
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape))
                m.num_batches_tracked.fill_(int(torch.randint(0, 100, ())))
    x = torch.randn(4, 3, 32, 32)
    target = torch.randint(0, 10, (4,), dtype=torch.int64)
    exp = resnet20_compute(net, x, target, torch.float64)
    got32 = resnet20_compute(net, x, target, torch.float32)
    worst = max(rel_l2(got32[k], v) for k, v in exp.items() if v.dtype != torch.int64)
    print("resnet20: float32 PyTorch vs float64, worst relative L2 error %.3g" % worst)
    assert worst < F32_TOL, worst
    weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
    exp = {k: (v if v.dtype == torch.int64 else v.float()) for k, v in exp.items()}
    return weights, {"input": x, "target": target}, exp


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------

def plan(index):
    """(loss, training, activations) of random fixture `index`: every combination of loss and mode once
    in each run of 6, and --activations in 2 of every 5."""
    return LOSSES[index % 3], (index // 3) % 2 == 0, index % 5 in (1, 3)


def generate(seed, count):
    rng = random.Random(seed)
    os.makedirs(OUT_DIR, exist_ok=True)
    for name in os.listdir(OUT_DIR):
        if os.path.isdir(os.path.join(OUT_DIR, name)):
            shutil.rmtree(os.path.join(OUT_DIR, name))
    covered = {}
    total = 0
    for index in range(count):
        loss, training, acts = plan(index)
        uncovered = {f for f in REQUIRED if covered.get(f, 0) < MIN_COUNT.get(f, 1)}
        g, weights, inputs, exp = make_fixture(rng, loss, training, acts, uncovered)
        for f in g.feats:
            covered[f] = covered.get(f, 0) + 1
        size = write_fixture(os.path.join(OUT_DIR, "%03d" % index), model_text(g, seed, index),
                             args_words(loss, training, acts), weights, inputs, exp)
        total += size
        print("%03d  %5d bytes  N=%d %-40s %s" % (index, size, g.n, " ".join(args_words(loss, training, acts)),
                                                 about(g)))
    weights, inputs, exp = make_resnet20(seed)
    with open(RESNET20) as f:
        text = f.read()
    size = write_fixture(os.path.join(OUT_DIR, "resnet20"), text, ["--loss", "cross_entropy"], weights, inputs, exp)
    total += size
    print("resnet20  %d bytes" % size)
    missing = [f for f in REQUIRED if covered.get(f, 0) < MIN_COUNT.get(f, 1)]
    print("\n%d fixtures, %d bytes in all" % (count + 1, total))
    print("coverage: " + ", ".join("%s=%d" % (f, covered.get(f, 0)) for f in REQUIRED))
    if missing:
        sys.exit("uncovered features: " + ", ".join(missing))


# ------------------------------------------------------------------------------------------------
# --check: an independent reading of the stored files
# ------------------------------------------------------------------------------------------------

def check_one(d):
    """Recomputes fixture d with tools/cnnmodel.py's module; returns the worst relative L2 error."""
    with open(os.path.join(d, "model.cnn")) as f:
        text = f.read()
    if os.path.basename(d) == "resnet20":
        with open(RESNET20) as f:
            assert f.read() == text, "%s: model.cnn is not models/resnet20.cnn" % d
    shape, net = parse_model(text)
    with open(os.path.join(d, "args")) as f:
        args = f.read().split()
    loss, training, acts = "none", True, False
    rest = list(args)
    while rest:
        w = rest.pop(0)
        if w == "--loss":
            loss = rest.pop(0)
            assert loss in ("cross_entropy", "mse"), (d, args)
        elif w == "--eval":
            training = False
        elif w == "--activations":
            acts = True
        else:
            raise AssertionError("%s: unknown argument %s" % (d, w))
    w = load_file(os.path.join(d, "weights.safetensors"))
    inp = load_file(os.path.join(d, "input.safetensors"))
    exp = load_file(os.path.join(d, "expected.safetensors"))
    sd = net.state_dict()
    assert sorted(w) == sorted(sd), (d, sorted(set(w) ^ set(sd)))
    for k, v in w.items():
        want = torch.int64 if k.endswith(".num_batches_tracked") else torch.float32
        assert v.dtype == want and v.shape == sd[k].shape, (d, k, v.dtype, v.shape)
    net.load_state_dict({k: (v if v.dtype == torch.int64 else v.double()) for k, v in w.items()}, strict=True)
    x = inp["input"]
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == shape, d
    if loss == "none":
        assert sorted(inp) == ["grad_output", "input"], d
        aux = inp["grad_output"]
    else:
        assert sorted(inp) == ["input", "target"], d
        aux = inp["target"]
        assert aux.dtype == (torch.int64 if loss == "cross_entropy" else torch.float32), d

    net.train(training)
    xin = x.double().clone().requires_grad_(True)
    values = net.run(xin)
    if acts:
        for v in values.values():
            v.retain_grad()
    y = next(reversed(values.values()))
    total = loss_of(y, loss, aux, torch.float64)
    total.backward()
    got = {"output": y.detach(), "grad_input": xin.grad}
    for name, p in net.named_parameters():
        got[name + ".grad"] = p.grad
    if training:
        for name, b in net.named_buffers():
            got[name] = b
    if loss != "none":
        got["loss"] = total.detach().reshape([])
    if acts:
        for name, v in values.items():
            got[name + ":output"] = v.detach()
            got[name + ":grad"] = v.grad
    if loss == "none":
        assert aux.shape == y.shape, d
    assert sorted(got) == sorted(exp), (d, sorted(set(got) ^ set(exp)))
    worst = 0.0
    for k, v in exp.items():
        assert v.shape == got[k].shape, (d, k, v.shape, got[k].shape)
        if k.endswith(".num_batches_tracked"):
            assert v.dtype == torch.int64 and torch.equal(v, got[k]), (d, k, v, got[k])
            continue
        assert v.dtype in (torch.float64, torch.float32), (d, k, v.dtype)
        err = rel_l2(got[k], v)
        worst = max(worst, err)
        assert err < (1e-12 if v.dtype == torch.float64 else 1e-6), (d, k, err)
    return worst


def fixture_dirs():
    return sorted(os.path.join(OUT_DIR, n) for n in os.listdir(OUT_DIR)
                  if os.path.isfile(os.path.join(OUT_DIR, n, "model.cnn")))


def check(paths):
    worst = {d: check_one(d) for d in paths}
    f64 = max(v for d, v in worst.items() if os.path.basename(d) != "resnet20")
    print("%d fixtures reproduce expected.safetensors (worst relative L2 error %.3g; resnet20's F32 tensors "
          "%.3g)" % (len(paths), f64, worst.get(os.path.join(OUT_DIR, "resnet20"), 0.0)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--count", type=int, default=COUNT, help="random fixtures (ResNet-20 comes on top)")
    ap.add_argument("--check", action="store_true", help="verify the existing fixtures instead")
    a = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Using padding='same'")   # PyTorch pads a copy: fine here
    if a.check:
        check(fixture_dirs())
    else:
        generate(a.seed, a.count)
        check(fixture_dirs())


if __name__ == "__main__":
    main()
