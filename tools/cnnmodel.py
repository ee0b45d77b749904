"""Reads cnn model files (models/*.cnn) into the equivalent torch.nn.Module.

A model file has one layer per line (see src/io/model_text.c and include/cnn.h):

    input 3 32 32                                   # C H W of one sample; the value named "input"
    conv2d out_channels=16 kernel_size=3 padding=1 bias=false name=conv1
    batchnorm2d name=bn1                            # reads the line above (the default)
    relu name=stem
    conv2d out_channels=16 kernel_size=3 padding=1 bias=false name=layer1.0.conv1
    ...
    add from=stem                                   # the line above + stem
    concat from=a,b                                 # torch.cat([a, b], 1)

Options default to PyTorch's, input channels and features are inferred, and a pair such as
`kernel_size=3,5` means (height, width). Layer names are case-insensitive, and PyTorch's class names
(Conv2d, BatchNorm2d, ReLU, ...) are the same names in another case. `name=NAME` names a line's output;
without it a line is named by its index, counted from 0 without `input`. `from=A,B` lists a line's
inputs by name (default: the line above); for add and concat a single name means the line above and
that one, in that order. The net's output is the last line's.

A line's parameters and buffers are `<name>.weight`, `<name>.bias`, `<name>.running_mean`, ... The
module built here registers each line's module under its name, with a dotted name such as
`layer1.0.conv1` as nested modules (layer1 -> 0 -> conv1), so its state_dict keys are exactly the names
cnn uses in its safetensors files: "0.weight" for a plain sequence of layers, as nn.Sequential has them,
or "layer1.0.conv1.weight" as in torchvision's ResNet.

This parser is written independently of the C one, so that the fixture checks
(tools/make_fixtures.py --check, tools/make_graph_fixtures.py --check), tools/check_state_dict.py and
the PyTorch interop script (tools/interop.py) test cnn's reading of the format rather than repeat it.

    shape, net = parse_model(text, dtype=torch.float32)
    shape, net = load_model("models/lenet5.cnn")
    y = net(x)                      # the output
    values = net.run(x)             # {line name: its output}, in line order, the last one the output
"""
import collections

import torch
import torch.nn as nn

# The layer kinds, by their lower-case name. PyTorch's class names are these in another case
# (Conv2d, MaxPool2d, ReLU, LeakyReLU, BatchNorm2d, ConvTranspose2d, GELU, SiLU, ...).
KINDS = ("conv2d", "maxpool2d", "avgpool2d", "relu", "leakyrelu", "sigmoid", "tanh", "flatten", "linear",
         "batchnorm2d", "batchnorm1d", "dropout", "adaptiveavgpool2d", "adaptivemaxpool2d", "add", "concat",
         "convtranspose2d", "gelu", "silu", "softmax")
MULTI_INPUT = ("add", "concat")


def parse_pair(v):
    """'3' -> (3, 3); '3,5' -> (3, 5), (height, width) like a PyTorch tuple."""
    parts = [int(p) for p in v.split(",")]
    if len(parts) not in (1, 2):
        raise ValueError("bad pair " + v)
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def parse_bool(v):
    if v in ("true", "True", "1"):
        return True
    if v in ("false", "False", "0"):
        return False
    raise ValueError("bad bool " + v)


class Add(nn.Module):
    """add: the sum of two or more inputs of the same shape."""

    def forward(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y


class Concat(nn.Module):
    """concat: torch.cat(inputs, 1), along channels (or features, for flat inputs)."""

    def forward(self, *xs):
        return torch.cat(xs, 1)


def _pop_bn(kind, c, opts):
    momentum = opts.pop("momentum", "0.1")
    mod = nn.BatchNorm2d if kind == "batchnorm2d" else nn.BatchNorm1d
    return mod(c, eps=float(opts.pop("eps", "1e-5")), momentum=None if momentum in ("none", "None") else float(momentum),
               affine=parse_bool(opts.pop("affine", "true")),
               track_running_stats=parse_bool(opts.pop("track_running_stats", "true")))


def make_module(kind, opts, probes, raw):
    """The nn.Module of one line of `kind` with options `opts` (consumed) for inputs like `probes`."""
    x = probes[0]
    spatial = x.dim() == 4
    if kind in MULTI_INPUT:
        if len(probes) < 2:
            raise ValueError("%s needs 2 or more inputs: %r" % (kind, raw))
        if kind == "add":
            assert all(p.shape == x.shape for p in probes), "add: shapes differ in %r" % raw
            return Add()
        assert all(p.dim() == x.dim() and p.shape[0] == x.shape[0] and p.shape[2:] == x.shape[2:] for p in probes), \
            "concat: shapes differ in %r" % raw
        return Concat()
    if len(probes) != 1:
        raise ValueError("%s takes one input: %r" % (kind, raw))
    if kind in ("conv2d", "maxpool2d", "avgpool2d", "batchnorm2d", "adaptiveavgpool2d", "adaptivemaxpool2d",
                "convtranspose2d"):
        assert spatial, "%s needs a C H W input, not a flat one: %r" % (kind, raw)
    if kind == "conv2d":
        pad = opts.pop("padding", "0")
        pad = pad if pad in ("same", "valid") else parse_pair(pad)
        return nn.Conv2d(x.shape[1], int(opts.pop("out_channels")), parse_pair(opts.pop("kernel_size")),
                         stride=parse_pair(opts.pop("stride", "1")), padding=pad,
                         dilation=parse_pair(opts.pop("dilation", "1")), groups=int(opts.pop("groups", "1")),
                         bias=parse_bool(opts.pop("bias", "true")))
    if kind == "convtranspose2d":
        return nn.ConvTranspose2d(x.shape[1], int(opts.pop("out_channels")), parse_pair(opts.pop("kernel_size")),
                                  stride=parse_pair(opts.pop("stride", "1")),
                                  padding=parse_pair(opts.pop("padding", "0")),
                                  output_padding=parse_pair(opts.pop("output_padding", "0")),
                                  groups=int(opts.pop("groups", "1")), bias=parse_bool(opts.pop("bias", "true")),
                                  dilation=parse_pair(opts.pop("dilation", "1")))
    if kind in ("maxpool2d", "avgpool2d"):
        k = parse_pair(opts.pop("kernel_size"))
        s = parse_pair(opts.pop("stride")) if "stride" in opts else k
        p = parse_pair(opts.pop("padding", "0"))
        ceil = parse_bool(opts.pop("ceil_mode", "false"))
        if kind == "maxpool2d":
            return nn.MaxPool2d(k, stride=s, padding=p, ceil_mode=ceil)
        return nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil,
                            count_include_pad=parse_bool(opts.pop("count_include_pad", "true")))
    if kind in ("adaptiveavgpool2d", "adaptivemaxpool2d"):
        size = parse_pair(opts.pop("output_size"))
        return nn.AdaptiveAvgPool2d(size) if kind == "adaptiveavgpool2d" else nn.AdaptiveMaxPool2d(size)
    if kind == "batchnorm2d":
        return _pop_bn(kind, x.shape[1], opts)
    if kind == "batchnorm1d":
        assert x.dim() == 2, "batchnorm1d needs a flat input [N, features]: %r" % raw
        return _pop_bn(kind, x.shape[1], opts)
    if kind == "relu":
        return nn.ReLU()
    if kind == "leakyrelu":
        return nn.LeakyReLU(float(opts.pop("negative_slope", "0.01")))
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "tanh":
        return nn.Tanh()
    if kind == "gelu":
        approximate = opts.pop("approximate", "none")
        assert approximate in ("none", "tanh"), raw
        return nn.GELU(approximate=approximate)
    if kind == "silu":
        return nn.SiLU()
    if kind == "softmax":
        assert int(opts.pop("dim", "1")) == 1, "softmax: dim=1 only: %r" % raw
        return nn.Softmax(dim=1)
    if kind == "dropout":
        return nn.Dropout(float(opts.pop("p", "0.5")))
    if kind == "flatten":
        return nn.Flatten()
    if kind == "linear":
        assert x.dim() == 2, "linear needs a flat input: %r" % raw
        return nn.Linear(x.shape[1], int(opts.pop("out_features")), bias=parse_bool(opts.pop("bias", "true")))
    raise ValueError("unknown layer " + kind)


Line = collections.namedtuple("Line", "name kind inputs module text")
Line.__doc__ = """One line of the model: its output's name, its kind (lower case), the names of its inputs,
its nn.Module (registered under `name`, nested at the dots) and its text."""


class Placeholder(nn.Module):
    """The container at a dotted name's prefix that no line names (layer1 and layer1.0 of layer1.0.conv1)."""


class GraphNet(nn.Module):
    """The net of a model file: each line's module registered under the line's name, run in line order."""

    def __init__(self):
        super().__init__()
        self.lines = []   # Line, in the file's order (a plain list: the modules are registered below)

    def _register(self, name, module):
        parts = name.split(".")
        if any(not p for p in parts):
            raise ValueError("bad name " + name)
        parent = self
        for p in parts[:-1]:
            child = parent._modules.get(p)
            if child is None:
                child = Placeholder()
                parent.add_module(p, child)
            parent = child
        old = parent._modules.get(parts[-1])
        if old is not None and not isinstance(old, Placeholder):
            raise ValueError("two lines are named " + name)
        parent.add_module(parts[-1], module)
        if old is not None:   # a later line's name nested under this one came first
            for k, m in old._modules.items():
                module.add_module(k, m)

    def run(self, x):
        """Every line's output, {name: tensor} in line order (the last one is the net's output). A line
        whose output would be one of its inputs' tensors (flatten of a flat value, dropout in eval mode)
        gets a view of it instead, so that each value has a tensor, and a gradient, of its own."""
        values = {"input": x}
        out = collections.OrderedDict()
        for line in self.lines:
            ins = [values[n] for n in line.inputs]
            y = line.module(*ins)
            if any(y is t for t in ins):
                y = y.view_as(y)
            values[line.name] = y
            out[line.name] = y
        return out

    def forward(self, x):
        return next(reversed(self.run(x).values()))


def parse_model(text, dtype=torch.float64):
    """Parses model text; returns ((C, H, W), GraphNet in `dtype`).

    The parameters get PyTorch's default initialisation (this draws from torch's global RNG, once per
    layer with parameters, in order). Each layer is run on a zero probe (in eval mode, so that batch norm
    leaves its buffers alone) as it is built, so input channels and features are inferred and a bad shape
    fails here, as it would in PyTorch.
    """
    shape = None
    net = GraphNet()
    probes = {}
    names = []   # every line's name, in order
    lines = []   # (kind, opts, name, from, raw)
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if shape is None:
            assert words[0] == "input" and len(words) == 4, raw
            shape = tuple(int(w) for w in words[1:])
            continue
        assert words[0] != "input", "input given twice: %r" % raw
        kind = words[0].lower()
        if kind not in KINDS:
            raise ValueError("unknown layer %s in %r" % (words[0], raw))
        opts = {}
        for w in words[1:]:
            k, eq, v = w.partition("=")
            assert eq and k and k not in opts, "bad option %r in %r" % (w, raw)
            opts[k] = v
        name = opts.pop("name", str(len(lines)))
        assert name not in names and name != "input", "name %s given twice: %r" % (name, raw)
        names.append(name)
        lines.append((kind, opts, name, opts.pop("from", None), raw))
    assert shape is not None and lines, "no input line or no layers"
    probes["input"] = torch.zeros(2, *shape, dtype=dtype)   # 2: batch norm without running statistics
    read = set()
    for i, (kind, opts, name, frm, raw) in enumerate(lines):
        prev = "input" if i == 0 else names[i - 1]
        if frm is None:
            assert kind not in MULTI_INPUT, "%s needs from=: %r" % (kind, raw)
            inputs = [prev]
        else:
            inputs = frm.split(",")
            assert all(inputs), "bad from=%s in %r" % (frm, raw)
            if kind in MULTI_INPUT and len(inputs) == 1:
                inputs = [prev] + inputs
        for n in inputs:
            assert n == "input" or n in names[:i], "from=%s: %s is not a line above: %r" % (frm, n, raw)
        read.update(inputs)
        m = make_module(kind, opts, [probes[n] for n in inputs], raw).to(dtype)
        assert not opts, "unused options %r in %r" % (opts, raw)
        m.eval()
        with torch.no_grad():
            probes[name] = m(*[probes[n] for n in inputs])
        m.train()
        net._register(name, m)
        net.lines.append(Line(name, kind, tuple(inputs), m, raw.split("#", 1)[0].strip()))
    unread = [n for n in names[:-1] if n not in read]
    assert not unread, "lines whose output nothing reads: %s" % ", ".join(unread)
    return shape, net


def load_model(path, dtype=torch.float64):
    """parse_model() of the file at `path`."""
    with open(path) as f:
        return parse_model(f.read(), dtype)
