"""Reads cnn model files (models/*.cnn) into the equivalent torch.nn.Sequential.

A model file has one layer per line, mirroring torch.nn.Sequential (see README.md and include/cnn.h):

    input 1 28 28                        # C H W of one sample
    conv2d out_channels=6 kernel_size=5 padding=2
    relu
    ...

Options default to PyTorch's, input channels and features are inferred, and a pair such as
`kernel_size=3,5` means (height, width). Layers are numbered from 0, not counting `input`, so the
Sequential's state_dict keys ("0.weight", "0.bias", ...) are exactly the names cnn uses in its
safetensors files.

This parser is written independently of the C one, so that the fixture checks
(tools/make_fixtures.py --check) and the PyTorch interop script (tools/interop.py) test cnn's reading
of the format rather than repeat it.

    shape, seq = parse_model(text, dtype=torch.float32)
    shape, seq = load_model("models/lenet5.cnn")
"""
import torch
import torch.nn as nn


def parse_pair(v):
    """'3' -> (3, 3); '3,5' -> (3, 5), (height, width) like a PyTorch tuple."""
    parts = [int(p) for p in v.split(",")]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def parse_bool(v):
    if v not in ("true", "false"):
        raise ValueError("bad bool " + v)
    return v == "true"


def parse_model(text, dtype=torch.float64):
    """Parses model text; returns ((C, H, W), nn.Sequential in `dtype`).

    The parameters get PyTorch's default initialisation (this draws from torch's global RNG, once per
    layer with parameters, in order). Each layer is run on a zero probe as it is built, so input
    channels and features are inferred and a bad shape fails here, as it would in PyTorch.
    """
    shape = None
    mods = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if shape is None:
            assert words[0] == "input" and len(words) == 4, raw
            shape = tuple(int(w) for w in words[1:])
            probe = torch.zeros(1, *shape, dtype=dtype)
            continue
        kind, opts = words[0], dict(w.split("=", 1) for w in words[1:])
        if kind == "conv2d":
            m = nn.Conv2d(probe.shape[1], int(opts.pop("out_channels")), parse_pair(opts.pop("kernel_size")),
                          stride=parse_pair(opts.pop("stride", "1")), padding=parse_pair(opts.pop("padding", "0")),
                          dilation=parse_pair(opts.pop("dilation", "1")), groups=int(opts.pop("groups", "1")),
                          bias=parse_bool(opts.pop("bias", "true")))
        elif kind in ("maxpool2d", "avgpool2d"):
            k = parse_pair(opts.pop("kernel_size"))
            s = parse_pair(opts.pop("stride")) if "stride" in opts else k
            p = parse_pair(opts.pop("padding", "0"))
            ceil = parse_bool(opts.pop("ceil_mode", "false"))
            if kind == "maxpool2d":
                m = nn.MaxPool2d(k, stride=s, padding=p, ceil_mode=ceil)
            else:
                m = nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil,
                                 count_include_pad=parse_bool(opts.pop("count_include_pad", "true")))
        elif kind == "relu":
            m = nn.ReLU()
        elif kind == "leakyrelu":
            m = nn.LeakyReLU(float(opts.pop("negative_slope", "0.01")))
        elif kind == "sigmoid":
            m = nn.Sigmoid()
        elif kind == "tanh":
            m = nn.Tanh()
        elif kind == "flatten":
            m = nn.Flatten()
        elif kind == "linear":
            assert probe.dim() == 2, "linear needs a flat input"
            m = nn.Linear(probe.shape[1], int(opts.pop("out_features")), bias=parse_bool(opts.pop("bias", "true")))
        else:
            raise ValueError("unknown layer " + kind)
        assert not opts, "unused options %r in %r" % (opts, raw)
        m = m.to(dtype)
        with torch.no_grad():
            probe = m(probe)
        mods.append(m)
    return shape, nn.Sequential(*mods)


def load_model(path, dtype=torch.float64):
    """parse_model() of the file at `path`."""
    with open(path) as f:
        return parse_model(f.read(), dtype)
