#!/usr/bin/python3
"""Generates the agreement-with-PyTorch fixtures in tests/fixtures/NNN/.

Run it from anywhere with Debian's Python and PyTorch:

    /usr/bin/python3 tools/make_fixtures.py            # (re)writes tests/fixtures/000 ... NNN
    /usr/bin/python3 tools/make_fixtures.py --check    # recomputes every fixture from its files

With a fixed seed it samples small random nets that together use every layer and every option of the
model-file format (see include/cnn.h), builds the equivalent torch.nn.Sequential, and writes per fixture:

    model.cnn            the model text
    weights.safetensors  every parameter, F32, under its state_dict name ("0.weight", "0.bias", ...)
    input.safetensors    `input` F32 [N,C,H,W], and either `grad_output` (F32, the output's shape; then
                         L = sum(output * grad_output)) or `target` (I64 [N] for cross_entropy, F32 with
                         the output's shape for mse)
    args                 one line of extra CLI arguments: "", "--loss cross_entropy" or "--loss mse"
    expected.safetensors F64, computed by PyTorch in float64 from exactly the F32 values above:
                         `output`, `grad_input`, `<param>.grad` for every parameter, and `loss` (shape [])
                         when a loss is used (reduction='mean')

A sampled net is kept only if it is well conditioned for a float32 implementation: no ReLU/LeakyReLU input
within 3e-5 of 0 and no max-pooling window whose two largest values are within 3e-5 of each other (exact
ties of structural zeros, e.g. ReLU outputs, are allowed: their gradient is killed by the ReLU anyway), every
gradient tensor nonzero, and PyTorch's own float32 computation agreeing with float64 to a relative L2 error
of 1e-5 in every tensor (the C test allows 1e-4).

`--check` parses each model.cnn with an independent parser, rebuilds the net from the stored files, and
verifies that PyTorch reproduces expected.safetensors.
"""
import argparse
import copy
import os
import random
import shutil
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_file import load_file, save_file  # noqa: E402
from cnnmodel import parse_model  # noqa: E402  (the independent parser that --check uses)

SEED = 20240611
COUNT = 72
LOSSES = ["none", "cross_entropy", "mse"]
MARGIN = 3e-5          # minimum distance from a ReLU kink / between the two largest max-pool values
F32_TOL = 1e-5         # float32 PyTorch vs float64 PyTorch, relative L2, per tensor
MAX_FIXTURE_BYTES = 34 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures")

# Every feature here must be covered by at least one fixture (MIN_COUNT: by more); the generator steers
# sampling towards features not yet covered enough and fails if one still is at the end.
REQUIRED = [
    # conv2d
    "conv_rect_kernel", "conv_stride_pair", "conv_pad_pair", "conv_dil_pair", "conv_combo_pairs",
    "conv_groups1_multich", "conv_groups2", "conv_depthwise", "conv_depthwise_mult",
    "conv_stride1", "conv_stride2", "conv_stride3", "conv_pad0", "conv_pad1", "conv_pad2",
    "conv_dil1", "conv_dil2", "conv_nobias", "conv_bias_explicit_true", "conv_explicit_default",
    "conv_kernel1",
    # maxpool2d
    "max_ceil_extra", "max_ceil_dropped", "max_ceil_explicit_false", "max_pad", "max_pad_pair",
    "max_stride_ne_kernel", "max_stride_default", "max_stride_explicit_default", "max_rect", "max_overlap",
    # avgpool2d
    "avg_ceil_extra_pad_cip_true", "avg_ceil_extra_pad_cip_false", "avg_ceil_extra_nopad",
    "avg_ceil_dropped", "avg_pad_cip_true", "avg_pad_cip_false", "avg_cip_explicit_true",
    "avg_ceil_explicit_false", "avg_rect", "avg_overlap", "avg_stride_default", "avg_stride_ne_kernel",
    # activations
    "relu", "leakyrelu_default", "leakyrelu_explicit_default", "leakyrelu_slope", "sigmoid", "tanh",
    "relu_after_relu",
    # flatten / linear
    "flatten", "flatten_first", "flatten_end", "linear_bias", "linear_nobias", "linear_bias_explicit_true",
    "linear_linear", "act_end",
    # losses, outputs, batch sizes
    "loss_none_spatial", "loss_none_flat", "loss_mse_spatial", "loss_mse_flat", "loss_ce_linear",
    "loss_ce_flatten", "batch1", "batch2", "batch3", "rect_input",
]
MIN_COUNT = {
    "avg_ceil_extra_pad_cip_true": 4, "avg_ceil_extra_pad_cip_false": 4, "avg_ceil_dropped": 3,
    "max_ceil_dropped": 3, "max_ceil_extra": 4, "conv_combo_pairs": 3, "conv_depthwise_mult": 3,
    "conv_groups2": 4, "loss_ce_flatten": 3, "relu_after_relu": 2, "flatten_first": 2,
}


# ------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------

def fmt_pair(rng, v):
    if v[0] != v[1]:
        return "%d,%d" % v
    return "%d,%d" % v if rng.random() < 0.2 else "%d" % v[0]


def pick_pair(rng, values, weights, p_rect):
    a = rng.choices(values, weights)[0]
    b = rng.choices(values, weights)[0] if rng.random() < p_rect else a
    return (a, b)


def conv_out(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def pool_out(n, k, s, p, ceil):
    """Returns (out, extra, dropped): the output size, whether ceil_mode added a window, whether the
    'last window must start inside the input or the left padding' rule removed one."""
    if n + 2 * p < k:
        return 0, False, False
    floor_out = (n + 2 * p - k) // s + 1
    if not ceil:
        return floor_out, False, False
    out = -(-(n + 2 * p - k) // s) + 1
    dropped = False
    if (out - 1) * s >= n + p:
        out -= 1
        dropped = True
    return out, out > floor_out, dropped


class Layer:
    def __init__(self, kind, text, cfg, feats):
        self.kind, self.text, self.cfg, self.feats = kind, text, cfg, feats


def sample_conv(rng, shape):
    c, h, w = shape
    feats = set()
    r = rng.random()
    if c > 1 and r < 0.2:
        groups = c
    elif c % 2 == 0 and c > 2 and r < 0.45:
        groups = 2
    else:
        groups = 1
    outs = [groups * m for m in range(1, 7) if groups * m <= 6]
    out_ch = rng.choice(outs)
    combo = rng.random() < 0.06
    if combo:
        k, s, p, d = (3, 2), (2, 1), (1, 0), (2, 1)
    else:
        k = pick_pair(rng, [1, 2, 3, 4], [1, 4, 4, 2], 0.35)
        s = pick_pair(rng, [1, 2, 3], [5, 3, 2], 0.3)
        p = pick_pair(rng, [0, 1, 2], [4, 4, 2], 0.3)
        d = pick_pair(rng, [1, 2], [3, 1], 0.25)
    bias = rng.random() >= 0.25
    oh, ow = conv_out(h, k[0], s[0], p[0], d[0]), conv_out(w, k[1], s[1], p[1], d[1])
    if oh < 1 or ow < 1:
        return None, None
    opts = ["out_channels=%d" % out_ch, "kernel_size=" + fmt_pair(rng, k)]
    explicit = rng.random() < 0.25
    for name, v in (("stride", s), ("padding", p), ("dilation", d)):
        default = (1, 1) if name != "padding" else (0, 0)
        if v != default:
            opts.append("%s=%s" % (name, fmt_pair(rng, v)))
        elif explicit and rng.random() < 0.5:
            opts.append("%s=%s" % (name, fmt_pair(rng, v)))
            feats.add("conv_explicit_default")
    if groups != 1 or (explicit and rng.random() < 0.5):
        opts.append("groups=%d" % groups)
        if groups == 1:
            feats.add("conv_explicit_default")
    if not bias:
        opts.append("bias=false")
    elif explicit and rng.random() < 0.5:
        opts.append("bias=true")
        feats.add("conv_bias_explicit_true")
    rng.shuffle(opts) if rng.random() < 0.15 else None
    if k[0] != k[1]:
        feats.add("conv_rect_kernel")
    if s[0] != s[1]:
        feats.add("conv_stride_pair")
    if p[0] != p[1]:
        feats.add("conv_pad_pair")
    if d[0] != d[1]:
        feats.add("conv_dil_pair")
    if combo:
        feats.add("conv_combo_pairs")
    if 1 in k:
        feats.add("conv_kernel1")
    if groups == 1 and c > 1:
        feats.add("conv_groups1_multich")
    if groups == 2 and c > 2:
        feats.add("conv_groups2")
    if groups == c and c > 1:
        feats.add("conv_depthwise")
        if out_ch > c:
            feats.add("conv_depthwise_mult")
    feats.update("conv_stride%d" % v for v in s)
    feats.update("conv_pad%d" % v for v in p)
    feats.update("conv_dil%d" % v for v in d)
    if not bias:
        feats.add("conv_nobias")
    cfg = dict(in_ch=c, out_ch=out_ch, k=k, s=s, p=p, d=d, groups=groups, bias=bias)
    return Layer("conv2d", "conv2d " + " ".join(opts), cfg, feats), (out_ch, oh, ow)


def sample_pool(rng, shape, kind):
    c, h, w = shape
    pre = "max" if kind == "maxpool2d" else "avg"
    feats = set()
    k = pick_pair(rng, [1, 2, 3, 4], [1, 6, 5, 2], 0.3)
    stride_default = rng.random() < 0.4
    s = k if stride_default else pick_pair(rng, [1, 2, 3], [3, 4, 2], 0.3)
    p = (0, 0)
    if rng.random() < 0.5:
        p = (rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2))
        if rng.random() < 0.6:
            p = (p[0], p[0]) if p[0] <= k[1] // 2 else p
    ceil = rng.random() < 0.45
    cip = rng.random() < 0.5
    oh, eh, dh = pool_out(h, k[0], s[0], p[0], ceil)
    ow, ew, dw = pool_out(w, k[1], s[1], p[1], ceil)
    if oh < 1 or ow < 1:
        return None, None
    opts = ["kernel_size=" + fmt_pair(rng, k)]
    explicit = rng.random() < 0.3
    if not stride_default:
        opts.append("stride=" + fmt_pair(rng, s))
        if s == k:
            feats.add(pre + "_stride_explicit_default")
    if p != (0, 0) or (explicit and rng.random() < 0.5):
        opts.append("padding=" + fmt_pair(rng, p))
    if ceil:
        opts.append("ceil_mode=true")
    elif explicit and rng.random() < 0.6:
        opts.append("ceil_mode=false")
        feats.add(pre + "_ceil_explicit_false")
    if kind == "avgpool2d":
        if not cip:
            opts.append("count_include_pad=false")
        elif explicit and rng.random() < 0.6:
            opts.append("count_include_pad=true")
            feats.add("avg_cip_explicit_true")
    if rng.random() < 0.15:
        rng.shuffle(opts)
    if k[0] != k[1]:
        feats.add(pre + "_rect")
    if stride_default:
        feats.add(pre + "_stride_default")
    if s != k:
        feats.add(pre + "_stride_ne_kernel")
    if s[0] < k[0] or s[1] < k[1]:
        feats.add(pre + "_overlap")
    padded = p != (0, 0)
    if padded:
        feats.add(pre + "_pad")
        if p[0] != p[1]:
            feats.add(pre + "_pad_pair")
    extra, dropped = eh or ew, dh or dw
    if dropped:
        feats.add(pre + "_ceil_dropped")
    if kind == "maxpool2d":
        if extra:
            feats.add("max_ceil_extra")
    else:
        tag = "true" if cip else "false"
        if padded:
            feats.add("avg_pad_cip_" + tag)
        if extra:
            feats.add("avg_ceil_extra_pad_cip_" + tag if padded else "avg_ceil_extra_nopad")
    cfg = dict(k=k, s=s, p=p, ceil=ceil, cip=cip)
    return Layer(kind, kind + " " + " ".join(opts), cfg, feats), (c, oh, ow)


def sample_act(rng):
    kind = rng.choices(["relu", "leakyrelu", "sigmoid", "tanh"], [4, 3, 2, 2])[0]
    if kind != "leakyrelu":
        return Layer(kind, kind, {}, {kind})
    r = rng.random()
    if r < 0.35:
        return Layer(kind, "leakyrelu", dict(slope=0.01), {"leakyrelu_default"})
    if r < 0.5:
        return Layer(kind, "leakyrelu negative_slope=0.01", dict(slope=0.01), {"leakyrelu_explicit_default"})
    slope = rng.choice(["0.1", "0.2", "0.05", "0.3", "0.5", "0.001", "1.5"])
    return Layer(kind, "leakyrelu negative_slope=" + slope, dict(slope=float(slope)), {"leakyrelu_slope"})


def sample_linear(rng, n_in, out_features):
    bias = rng.random() >= 0.25
    opts = ["out_features=%d" % out_features]
    feats = {"linear_bias" if bias else "linear_nobias"}
    if not bias:
        opts.append("bias=false")
    elif rng.random() < 0.2:
        opts.append("bias=true")
        feats.add("linear_bias_explicit_true")
    return Layer("linear", "linear " + " ".join(opts), dict(n_in=n_in, out=out_features, bias=bias), feats)


class Net:
    pass


def sample_net(rng, loss):
    net = Net()
    c = rng.randint(1, 5)
    h = rng.randint(3, 12)
    w = h if rng.random() < 0.6 else rng.randint(3, 12)
    net.input = (c, h, w)
    net.n = rng.choice([1, 2, 3])
    feats = {"batch%d" % net.n}
    if h != w:
        feats.add("rect_input")
    layers = []
    shape = net.input
    n_spatial = rng.choices([0, 1, 2, 3, 4], [1, 5, 8, 8, 5])[0]
    for _ in range(n_spatial):
        kind = rng.choices(["conv2d", "maxpool2d", "avgpool2d", "act"], [5, 3, 3, 4])[0]
        if kind == "act":
            layer, new_shape = sample_act(rng), shape
        elif kind == "conv2d":
            layer, new_shape = sample_conv(rng, shape)
        else:
            layer, new_shape = sample_pool(rng, shape, kind)
        if layer is None:
            return None
        layer.out_shape = new_shape
        layers.append(layer)
        shape = new_shape
    flat = loss == "cross_entropy" or rng.random() < 0.55
    if not flat and (not layers or shape[1:] == (1, 1)):
        # A spatial output of 1x1 would be indistinguishable from a flat one in the C API's (C, H, W).
        return None
    if flat:
        layers.append(Layer("flatten", "flatten", {}, {"flatten"}))
        if len(layers) == 1:
            feats.add("flatten_first")
        width = shape[0] * shape[1] * shape[2]
        if width > 150:
            return None
        n_lin = rng.choices([0, 1, 2], [2, 5, 3])[0]
        for j in range(n_lin):
            if j > 0 and rng.random() < 0.7:
                layers.append(sample_act(rng))
            out_f = rng.randint(2, 10) if (j == n_lin - 1 or rng.random() < 0.5) else rng.randint(1, 10)
            layers.append(sample_linear(rng, width, out_f))
            width = out_f
        if n_lin == 2:
            feats.add("linear_linear")
        if rng.random() < 0.2:
            layers.append(sample_act(rng))
        if loss == "cross_entropy" and width < 2:
            return None
        shape = (width,)
    last = layers[-1].kind
    if last == "flatten":
        feats.add("flatten_end")
    if last in ("relu", "leakyrelu", "sigmoid", "tanh"):
        feats.add("act_end")
    for a, b in zip(layers, layers[1:]):
        if a.kind == "relu" and b.kind == "relu":
            feats.add("relu_after_relu")
    if loss == "cross_entropy":
        has_linear = any(l.kind == "linear" for l in layers)
        feats.add("loss_ce_linear" if has_linear else "loss_ce_flatten")
    else:
        feats.add("loss_%s_%s" % (loss, "flat" if flat else "spatial"))
    for l in layers:
        feats |= l.feats
    net.layers, net.feats, net.out_shape, net.loss = layers, feats, shape, loss
    return net


# ------------------------------------------------------------------------------------------------
# PyTorch
# ------------------------------------------------------------------------------------------------

def torch_layer(kind, cfg):
    if kind == "conv2d":
        return nn.Conv2d(cfg["in_ch"], cfg["out_ch"], cfg["k"], stride=cfg["s"], padding=cfg["p"],
                         dilation=cfg["d"], groups=cfg["groups"], bias=cfg["bias"])
    if kind == "maxpool2d":
        return nn.MaxPool2d(cfg["k"], stride=cfg["s"], padding=cfg["p"], ceil_mode=cfg["ceil"])
    if kind == "avgpool2d":
        return nn.AvgPool2d(cfg["k"], stride=cfg["s"], padding=cfg["p"], ceil_mode=cfg["ceil"],
                            count_include_pad=cfg["cip"])
    if kind == "relu":
        return nn.ReLU()
    if kind == "leakyrelu":
        return nn.LeakyReLU(cfg["slope"])
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "tanh":
        return nn.Tanh()
    if kind == "flatten":
        return nn.Flatten()
    if kind == "linear":
        return nn.Linear(cfg["n_in"], cfg["out"], bias=cfg["bias"])
    raise ValueError(kind)


def compute(seq, x, loss, aux, dtype):
    """Forward and backward in `dtype`; returns the dict of expected tensors."""
    seq = copy.deepcopy(seq).to(dtype)
    seq.zero_grad(set_to_none=True)
    xin = x.to(dtype).clone().requires_grad_(True)
    y = seq(xin)
    if loss == "none":
        total = (y * aux.to(dtype)).sum()
    elif loss == "cross_entropy":
        total = F.cross_entropy(y, aux, reduction="mean")
    else:
        total = F.mse_loss(y, aux.to(dtype), reduction="mean")
    total.backward()
    res = {"output": y.detach().clone(), "grad_input": xin.grad.detach().clone()}
    for name, p in seq.named_parameters():
        res[name + ".grad"] = p.grad.detach().clone()
    if loss != "none":
        res["loss"] = total.detach().clone().reshape([])
    return res


def rel_l2(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / max(b.norm().item(), 1e-12)).item()


def conditioning_problems(seq, x):
    """Checks the float64 forward for near-kinks (ReLU, LeakyReLU) and near-ties (max pooling)."""
    seq = copy.deepcopy(seq).double()
    problems = []

    def act_hook(mod, inp, out):
        v = inp[0].detach()
        near = (v != 0) & (v.abs() < MARGIN * max(1.0, v.abs().max().item()))
        if near.any():
            problems.append("activation input within margin of 0")

    def pool_hook(mod, inp, out):
        v = inp[0].detach()
        kh, kw = mod.kernel_size if isinstance(mod.kernel_size, tuple) else (mod.kernel_size,) * 2
        sh, sw = mod.stride if isinstance(mod.stride, tuple) else (mod.stride,) * 2
        ph, pw = mod.padding if isinstance(mod.padding, tuple) else (mod.padding,) * 2
        oh, ow = out.shape[2], out.shape[3]
        ih, iw = v.shape[2], v.shape[3]
        extra_h = max(0, (oh - 1) * sh + kh - (ih + 2 * ph))
        extra_w = max(0, (ow - 1) * sw + kw - (iw + 2 * pw))
        padded = F.pad(v, (pw, pw + extra_w, ph, ph + extra_h), value=float("-inf"))
        win = padded.unfold(2, kh, sh).unfold(3, kw, sw)[:, :, :oh, :ow]
        win = win.reshape(*win.shape[:4], kh * kw)
        if kh * kw < 2:
            return
        top = win.topk(2, dim=-1).values
        t1, t2 = top[..., 0], top[..., 1]
        scale = max(1.0, v.abs().max().item())
        tie = (t1 == t2)
        bad_tie = tie & (t1 != 0)
        near = (~tie) & ((t1 - t2) < MARGIN * scale)
        if bad_tie.any() or near.any():
            problems.append("max-pool window with a near tie")

    for m in seq:
        if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
            m.register_forward_hook(act_hook)
        elif isinstance(m, nn.MaxPool2d):
            m.register_forward_hook(pool_hook)
    with torch.no_grad():
        seq(x.double())
    return problems


def make_fixture(rng, index, seed, loss, uncovered):
    tries = 0
    while True:
        tries += 1
        net = sample_net(rng, loss)
        if net is None:
            continue
        if uncovered and tries < 20000 and not (net.feats & uncovered):
            continue
        torch.manual_seed(rng.randrange(2 ** 31))
        in_shape = net.input
        mods = []
        for l in net.layers:
            mods.append(torch_layer(l.kind, l.cfg))
        seq = nn.Sequential(*mods)  # float32, PyTorch's default initialisation
        x = torch.randn(net.n, *in_shape)
        with torch.no_grad():
            y = x
            for l, m in zip(net.layers, seq):
                y = m(y)
                want = getattr(l, "out_shape", None)
                assert want is None or tuple(y.shape[1:]) == want, (l.text, want, tuple(y.shape))
            assert tuple(y.shape[1:]) == net.out_shape, (tuple(y.shape), net.out_shape)
        if loss == "none":
            aux = torch.randn(y.shape)
        elif loss == "cross_entropy":
            aux = torch.randint(0, y.shape[1], (net.n,), dtype=torch.int64)
        else:
            aux = torch.randn(y.shape)
        if conditioning_problems(seq, x):
            continue
        exp = compute(seq, x, loss, aux, torch.float64)
        if any(t.norm().item() < 1e-8 for k, t in exp.items() if k != "loss"):
            continue  # a gradient that is all zero tests nothing
        got32 = compute(seq, x, loss, aux, torch.float32)
        if any(rel_l2(got32[k], exp[k]) > F32_TOL for k in exp):
            continue
        weights = {k: v.detach().clone().float() for k, v in seq.state_dict().items()}
        inputs = {"input": x}
        inputs["grad_output" if loss == "none" else "target"] = aux
        nbytes = sum(t.numel() * t.element_size() + 120 for d in (weights, inputs, exp) for t in d.values())
        if nbytes > MAX_FIXTURE_BYTES:
            continue
        return net, weights, inputs, exp


def model_text(net, seed, index):
    lines = ["# generated by tools/make_fixtures.py (seed %d, index %d); do not edit" % (seed, index),
             "input %d %d %d" % net.input]
    lines += [l.text for l in net.layers]
    return "\n".join(lines) + "\n"


def generate(seed, count):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    os.makedirs(OUT_DIR, exist_ok=True)
    for name in os.listdir(OUT_DIR):
        if name.isdigit() and os.path.isdir(os.path.join(OUT_DIR, name)):
            shutil.rmtree(os.path.join(OUT_DIR, name))
    covered = {}
    total = 0
    for index in range(count):
        loss = LOSSES[index % 3]
        uncovered = {f for f in REQUIRED if covered.get(f, 0) < MIN_COUNT.get(f, 1)}
        net, weights, inputs, exp = make_fixture(rng, index, seed, loss, uncovered)
        for f in net.feats:
            covered[f] = covered.get(f, 0) + 1
        d = os.path.join(OUT_DIR, "%03d" % index)
        os.makedirs(d)
        with open(os.path.join(d, "model.cnn"), "w") as f:
            f.write(model_text(net, seed, index))
        with open(os.path.join(d, "args"), "w") as f:
            f.write(("" if loss == "none" else "--loss " + loss) + "\n")
        save_file(weights, os.path.join(d, "weights.safetensors"))
        save_file(inputs, os.path.join(d, "input.safetensors"))
        save_file(exp, os.path.join(d, "expected.safetensors"))
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        total += size
        print("%03d  %-13s N=%d  %5d bytes  %s" % (index, loss, net.n, size,
                                                   " | ".join(l.text for l in net.layers)))
    missing = [f for f in REQUIRED if covered.get(f, 0) < MIN_COUNT.get(f, 1)]
    print("\n%d fixtures, %d bytes in all" % (count, total))
    print("coverage: " + ", ".join("%s=%d" % (f, covered.get(f, 0)) for f in REQUIRED))
    if missing:
        sys.exit("uncovered features: " + ", ".join(missing))


# ------------------------------------------------------------------------------------------------
# --check: an independent reading of the stored files
# ------------------------------------------------------------------------------------------------

# parse_model (tools/cnnmodel.py) reads model.cnn without any of the sampling code above; it is shared with
# tools/interop.py.

def check(paths):
    worst = 0.0
    for d in paths:
        with open(os.path.join(d, "model.cnn")) as f:
            shape, seq = parse_model(f.read())
        with open(os.path.join(d, "args")) as f:
            args = f.read().split()
        loss = args[1] if args else "none"
        w = load_file(os.path.join(d, "weights.safetensors"))
        inp = load_file(os.path.join(d, "input.safetensors"))
        exp = load_file(os.path.join(d, "expected.safetensors"))
        sd = seq.state_dict()
        assert sorted(w) == sorted(sd), (d, sorted(w), sorted(sd))
        for k, v in w.items():
            assert v.dtype == torch.float32 and v.shape == sd[k].shape, (d, k)
        seq.load_state_dict({k: v.double() for k, v in w.items()})
        x = inp["input"]
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == shape, d
        if loss == "none":
            assert sorted(inp) == ["grad_output", "input"], d
            aux = inp["grad_output"]
        else:
            assert sorted(inp) == ["input", "target"], d
            aux = inp["target"]
            assert aux.dtype == (torch.int64 if loss == "cross_entropy" else torch.float32), d
        got = compute(seq, x, loss, aux, torch.float64)
        assert sorted(got) == sorted(exp), (d, sorted(got), sorted(exp))
        for k, v in exp.items():
            assert v.dtype == torch.float64 and v.shape == got[k].shape, (d, k, v.shape, got[k].shape)
            if loss == "none" and k == "output":
                assert v.shape == aux.shape, d
            err = rel_l2(got[k], v)
            worst = max(worst, err)
            assert err < 1e-12, (d, k, err)
    print("%d fixtures reproduce expected.safetensors (worst relative L2 error %.3g)" % (len(paths), worst))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--count", type=int, default=COUNT)
    ap.add_argument("--check", action="store_true", help="verify the existing fixtures instead")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.check:
        names = sorted(n for n in os.listdir(OUT_DIR) if n.isdigit())
        check([os.path.join(OUT_DIR, n) for n in names])
    else:
        generate(a.seed, a.count)


if __name__ == "__main__":
    main()
