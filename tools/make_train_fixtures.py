#!/usr/bin/python3
"""Generates the training fixtures in tests/train_fixtures/<name>/: five steps of torch.optim.

Run it from anywhere with Debian's Python and PyTorch:

    /usr/bin/python3 tools/make_train_fixtures.py            # (re)writes every case
    /usr/bin/python3 tools/make_train_fixtures.py --check    # recomputes every case from its files

Each case trains a small net for one epoch of five batches of four samples, in file order (no shuffling),
with nn.CrossEntropyLoss (reduction='mean') and a torch.optim optimizer built with foreach=False (the
single-tensor implementation), and writes:

    model.cnn              the model text (include/cnn.h describes the format)
    data.safetensors       `input` F32 [20, 1, 8, 8] and `target` I64 [20], classes 0..4
    init.safetensors       the initial parameters, F32, under their state_dict names
    args                   one line: the options of `cnn train` for this case, for example
                           "--optimizer sgd --lr 0.05 --momentum 0.9 --batch 4 --epochs 1 --no-shuffle"
    expected.safetensors   after the five steps, computed from exactly the F32 values above:
                             <param>                 F64, the parameters of the float64 run
                             f32.<param>             F32, the parameters of the float32 run
                             optim.<param>.<buffer>  F64, the optimizer's state of the float64 run
                                                     (momentum_buffer; exp_avg and exp_avg_sq)
                             loss                    F64 [5], each step's loss in the float64 run
                           with __metadata__ steps = "5".

The args line is parsed back here to build the optimizer, so that it is the one description of each case.
A seed is kept only if the float64 run is well conditioned for a float32 implementation at every step: no
ReLU input within MARGIN of 0 and no max-pooling window whose two largest values are within MARGIN of each
other (relative to the largest magnitude; exact ties of ReLU zeros are allowed, their gradient is zero), and
torch's float32 run agrees with the float64 run to a relative L2 error of F32_TOL in every tensor.

It also writes schedules.txt: the learning rate (and OneCycleLR's momentum) at every step of several
schedules, as torch's own scheduler classes produce them (SCHEDULES below; tests/test_schedule.c reads it).

`--check` rebuilds each net from model.cnn with its own small parser, reads init, data and args, and verifies
that PyTorch reproduces expected.safetensors.
"""
import argparse
import os
import shutil
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_file import load_file, save_file  # noqa: E402
import cnnmodel  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "train_fixtures")
SEED = 20240612
BATCH = 4
STEPS = 5
CLASSES = 5
MARGIN = 1e-5
F32_TOL = 2e-6
F32_TOL_BN = 5e-6
MAX_TOTAL_BYTES = 400 * 1024

MODEL = """input 1 8 8
conv2d out_channels=4 kernel_size=3 padding=1
relu
maxpool2d kernel_size=2
flatten
linear out_features=5
"""

# A batch-norm ResNet block: conv-bn-relu, then conv-bn-relu-conv-bn + the shortcut, relu, pooling, linear.
# Batch norm trains in train mode (batch statistics, running statistics updated).
# (no conv biases before batch norm: their gradient is zero but for rounding, so float32 and float64
# disagree in all their digits, as in every ResNet code)
RESBLOCK = """input 3 6 6
conv2d out_channels=4 kernel_size=3 padding=1 bias=false
batchnorm2d
relu name=stem
conv2d out_channels=4 kernel_size=3 padding=1 bias=false
batchnorm2d
relu
conv2d out_channels=4 kernel_size=3 padding=1 bias=false
batchnorm2d
add from=stem
relu
avgpool2d kernel_size=2
flatten
linear out_features=5
"""
RESNET20 = os.path.join(ROOT, "models", "resnet20.cnn")

COMMON = "--batch %d --epochs 1 --no-shuffle" % BATCH
SGD_RECIPE = "--optimizer sgd --lr 0.1 --momentum 0.9 --nesterov --weight-decay 0.01"
# name, the options, the model (None: MODEL)
CASES = [
    ("sgd", "--optimizer sgd --lr 0.1", None),
    ("sgd_momentum", "--optimizer sgd --lr 0.05 --momentum 0.9", None),
    ("sgd_nesterov_wd", "--optimizer sgd --lr 0.05 --momentum 0.9 --nesterov --weight-decay 0.01", None),
    ("adam", "--optimizer adam --lr 0.01", None),
    ("adam_wd", "--optimizer adam --lr 0.01 --weight-decay 0.01", None),
    ("adamw", "--optimizer adamw --lr 0.01 --weight-decay 0.05", None),
    ("res_onecycle", SGD_RECIPE + " --schedule onecycle", RESBLOCK),
    ("res_onecycle_nomomentum", "--optimizer sgd --lr 0.1 --schedule onecycle", RESBLOCK),
    ("res_onecycle_adam", "--optimizer adam --lr 0.01 --schedule onecycle", RESBLOCK),
    ("res_warmup_cosine", SGD_RECIPE + " --schedule cosine --schedule-per step --warmup 3", RESBLOCK),
    ("res_label_smoothing", SGD_RECIPE + " --label-smoothing 0.1", RESBLOCK),
    ("res_clip", SGD_RECIPE + " --clip-grad-norm 0.05", RESBLOCK),
    ("res_no_decay", SGD_RECIPE.replace("0.01", "0.1") + " --no-decay-bn-bias --schedule multistep "
     "--schedule-per step --milestones 2,4 --gamma 0.5", RESBLOCK),
]
# Made at test time (tests/test_train.c runs `--live NAME DIR`): ResNet-20's files would be megabytes.
LIVE_BATCH = 2
LIVE = {
    "resnet20_onecycle": SGD_RECIPE + " --schedule onecycle --label-smoothing 0.1 --clip-grad-norm 1 "
                         "--no-decay-bn-bias",
    # (at a higher rate and without clipping its trajectories get chaotic: two float32 builds of cnn
    # part by 10% after five steps on some seeds)
    "resnet20_warmup_cosine": SGD_RECIPE.replace("--lr 0.1", "--lr 0.005") + " --schedule cosine --schedule-per step "
                              "--warmup 2 --no-decay-bn-bias",
}
BUFFERS = {"sgd": ["momentum_buffer"], "adam": ["exp_avg", "exp_avg_sq"], "adamw": ["exp_avg", "exp_avg_sq"]}


# ------------------------------------------------------------------------------------------------
# The args line and the model text
# ------------------------------------------------------------------------------------------------

def parse_args_line(line):
    """The options of `cnn train` that the fixtures use, with torch.optim's defaults."""
    words = line.split()
    a = dict(optimizer=None, lr=None, momentum=0.0, nesterov=False, weight_decay=None, batch=None,
             epochs=None, shuffle=True, schedule="constant", schedule_per="epoch", warmup=0, milestones=[],
             gamma=0.1, label_smoothing=0.0, clip_grad_norm=None, no_decay_bn_bias=False)
    i = 0
    while i < len(words):
        w = words[i]
        if w == "--nesterov":
            a["nesterov"] = True
        elif w == "--no-shuffle":
            a["shuffle"] = False
        elif w == "--no-decay-bn-bias":
            a["no_decay_bn_bias"] = True
        elif w in ("--optimizer", "--lr", "--momentum", "--weight-decay", "--batch", "--epochs", "--schedule",
                   "--schedule-per", "--warmup", "--milestones", "--gamma", "--label-smoothing",
                   "--clip-grad-norm"):
            v = words[i + 1]
            i += 1
            key = w[2:].replace("-", "_")
            a[key] = (v if key in ("optimizer", "schedule", "schedule_per") else
                      [int(m) for m in v.split(",")] if key == "milestones" else
                      int(v) if key in ("batch", "epochs", "warmup") else float(v))
        else:
            raise ValueError("unknown option %r in %r" % (w, line))
        i += 1
    assert a["optimizer"] in BUFFERS and a["lr"] is not None and a["batch"] and a["epochs"], line
    if a["weight_decay"] is None:
        a["weight_decay"] = 0.01 if a["optimizer"] == "adamw" else 0.0
    return a


def make_optimizer(params, a):
    if a["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=a["lr"], momentum=a["momentum"], nesterov=a["nesterov"],
                               weight_decay=a["weight_decay"], foreach=False)
    cls = torch.optim.Adam if a["optimizer"] == "adam" else torch.optim.AdamW
    return cls(params, lr=a["lr"], weight_decay=a["weight_decay"], foreach=False)


def param_groups(net, a):
    """--no-decay-bn-bias: [conv and linear weights: weight_decay] and [batch norm, biases: 0]."""
    if not a["no_decay_bn_bias"]:
        return net.parameters()
    decay, no_decay = [], []
    for mod in net.modules():
        for name, p in mod.named_parameters(recurse=False):
            bn = isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d))
            (no_decay if bn or name == "bias" else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_schedulers(opt, a, steps_per_epoch):
    """The scheduler of --schedule, and the warm-up LinearLR of --warmup, chained (see SCHEDULES)."""
    total = a["epochs"] * steps_per_epoch
    T = total if a["schedule_per"] == "step" else a["epochs"]
    warm = None
    if a["warmup"]:
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / a["warmup"], end_factor=1.0,
                                                 total_iters=a["warmup"] - 1)
    k = a["schedule"]
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a["lr"], total_steps=total) if k == "onecycle" else
             torch.optim.lr_scheduler.MultiStepLR(opt, milestones=a["milestones"], gamma=a["gamma"])
             if k == "multistep" else
             torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T) if k == "cosine" else None)
    assert k in ("onecycle", "multistep", "cosine", "constant"), k
    return warm, sched


def parse_model(text):
    """The subset of the model format that the fixtures use."""
    shape, mods, probe = None, [], None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if shape is None:
            assert words[0] == "input" and len(words) == 4, raw
            shape = tuple(int(w) for w in words[1:])
            probe = torch.zeros(1, *shape)
            continue
        kind, opts = words[0], dict(w.split("=", 1) for w in words[1:])
        if kind == "conv2d":
            m = nn.Conv2d(probe.shape[1], int(opts.pop("out_channels")), int(opts.pop("kernel_size")),
                          padding=int(opts.pop("padding", "0")))
        elif kind == "maxpool2d":
            m = nn.MaxPool2d(int(opts.pop("kernel_size")))
        elif kind == "relu":
            m = nn.ReLU()
        elif kind == "flatten":
            m = nn.Flatten()
        elif kind == "linear":
            m = nn.Linear(probe.shape[1], int(opts.pop("out_features")))
        else:
            raise ValueError("unknown layer " + kind)
        assert not opts, "unused options %r in %r" % (opts, raw)
        with torch.no_grad():
            probe = m(probe)
        mods.append(m)
    return shape, nn.Sequential(*mods)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

class Conditioning:
    """Forward hooks that record near-kinks (ReLU) and near-ties (2x2 max pooling, stride 2)."""

    def __init__(self, seq):
        self.problems = []
        for m in seq:
            if isinstance(m, nn.ReLU):
                m.register_forward_hook(self.relu)
            elif isinstance(m, nn.MaxPool2d):
                m.register_forward_hook(self.pool)

    def relu(self, mod, inp, out):
        v = inp[0].detach()
        near = (v != 0) & (v.abs() < MARGIN * v.abs().max().item())
        if near.any():
            self.problems.append("ReLU input within margin of 0")

    def pool(self, mod, inp, out):
        v = inp[0].detach()
        k = mod.kernel_size
        win = v.unfold(2, k, k).unfold(3, k, k).reshape(*out.shape, k * k)
        top = win.topk(2, dim=-1).values
        t1, t2 = top[..., 0], top[..., 1]
        tie = t1 == t2
        near = ((~tie) & ((t1 - t2) < MARGIN * v.abs().max().item())) | (tie & (t1 != 0))
        if near.any():
            self.problems.append("max-pool window with a near tie")


def build(model, dtype):
    """The module of a case's model: MODEL with the small parser here, the graphs with cnnmodel's."""
    if model == MODEL:
        shape, net = parse_model(MODEL)
    else:
        shape, net = cnnmodel.parse_model(model, dtype=torch.float64)
    return shape, net.to(dtype)


def train(init, x, y, a, dtype, model=MODEL, watch=False):
    """The case's steps in `dtype` from the F32 `init`, the net in train mode; returns (params and
    buffers, optimizer state, losses, problems)."""
    _, net = build(model, dtype)
    net.train()
    with torch.no_grad():
        for k, t in net.state_dict().items():
            t.copy_(init[k].to(t.dtype))
    cond = Conditioning(list(net.modules())) if watch else None
    opt = make_optimizer(param_groups(net, a), a)
    n = x.shape[0]
    steps_per_epoch = n // a["batch"]
    warm, sched = make_schedulers(opt, a, steps_per_epoch)
    losses = []
    for step in range(steps_per_epoch * a["epochs"]):
        b = (step * a["batch"]) % n
        xb, yb = x[b:b + a["batch"]].to(dtype), y[b:b + a["batch"]]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(xb), yb, reduction="mean", label_smoothing=a["label_smoothing"])
        loss.backward()
        if a["clip_grad_norm"] is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), a["clip_grad_norm"])
        opt.step()
        if warm:
            warm.step()
        if sched and (a["schedule_per"] == "step" or a["schedule"] == "onecycle" or (step + 1) % steps_per_epoch == 0):
            sched.step()
        losses.append(loss.item())
    params = {k: t.detach().clone() for k, t in net.state_dict().items()}
    state = {}
    names = dict((id(p), k) for k, p in net.named_parameters())
    # onecycle gives SGD a momentum (0.95 first) even when --momentum is 0: the buffers exist then too
    momentum = a["momentum"] or a["schedule"] == "onecycle"
    for group in opt.param_groups:
        for p in group["params"]:
            for buf in BUFFERS[a["optimizer"]] if (a["optimizer"] != "sgd" or momentum) else []:
                state["optim.%s.%s" % (names[id(p)], buf)] = opt.state[p][buf].detach().clone()
    return params, state, torch.tensor(losses, dtype=torch.float64), cond.problems if cond else []


def rel_l2(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / max(b.norm().item(), 1e-12)).item()


def perturbed(init, seed):
    """init with every float multiplied by 1 + 6e-8·N(0, 1): changes of float32 rounding size."""
    g = torch.Generator().manual_seed(seed)
    return {k: v * (1 + 6e-8 * torch.randn(v.shape, generator=g, dtype=torch.float64)).float()
            if v.dtype == torch.float32 else v for k, v in init.items()}


def make_case(name, args_line, seed, model=MODEL, watch=True, tol=F32_TOL, attempts=1000, perturb=0):
    """perturb > 0: the seed is kept only if that many float64 runs from perturbed() weights end
    within tol of the float64 run too (for nets too large for the near-kink filter: a trajectory
    that rounding-sized changes move more than that would not be the same in two float32
    implementations)."""
    a = parse_args_line(args_line)
    for attempt in range(attempts):
        torch.manual_seed(seed + attempt)
        shape, seq = build(model, torch.float32)
        n = a["batch"] * STEPS
        x = torch.randn(n, *shape)
        y = torch.randint(0, CLASSES, (n,), dtype=torch.int64)
        init = {k: v.detach().clone() if v.dtype == torch.int64 else v.detach().clone().float()
                for k, v in seq.state_dict().items()}
        p64, s64, loss64, problems = train(init, x, y, a, torch.float64, model, watch=watch)
        if problems:
            continue
        p32, s32, _, _ = train(init, x, y, a, torch.float32, model)
        errs = [rel_l2(p32[k], p64[k]) for k in p64] + [rel_l2(s32[k], s64[k]) for k in s64]
        if max(errs) > tol:
            continue
        for r in range(perturb):
            q, qs, _, _ = train(perturbed(init, r), x, y, a, torch.float64, model)
            q.update(qs)
            errs += [rel_l2(q[k], v) for k, v in list(p64.items()) + list(s64.items())]
        if max(errs) > tol:
            continue
        exp = dict(p64)
        exp.update({"f32." + k: v for k, v in p32.items()})
        exp.update(s64)
        exp["loss"] = loss64
        return dict(seed=seed + attempt, x=x, y=y, init=init, exp=exp, f32_err=max(errs))
    raise RuntimeError("no well-conditioned seed for " + name)


def write_case(d, c, args_line, model=MODEL):
    os.makedirs(d)
    with open(os.path.join(d, "model.cnn"), "w") as f:
        f.write("# generated by tools/make_train_fixtures.py (seed %d); do not edit\n" % c["seed"] + model)
    with open(os.path.join(d, "args"), "w") as f:
        f.write(args_line + "\n")
    save_file({"input": c["x"], "target": c["y"]}, os.path.join(d, "data.safetensors"))
    save_file(c["init"], os.path.join(d, "init.safetensors"))
    save_file(c["exp"], os.path.join(d, "expected.safetensors"), metadata={"steps": str(STEPS)})


def generate():
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    for name in os.listdir(OUT_DIR):
        if os.path.isdir(os.path.join(OUT_DIR, name)):
            shutil.rmtree(os.path.join(OUT_DIR, name))
    total = 0
    results = {}
    for i, (name, opts, model) in enumerate(CASES):
        args_line = opts + " " + COMMON
        # batch norm divides by the batch's spread: float32 follows float64 less closely there
        c = make_case(name, args_line, SEED + 1000 * i, model or MODEL, tol=F32_TOL if model is None else F32_TOL_BN)
        results[name] = c
        d = os.path.join(OUT_DIR, name)
        write_case(d, c, args_line, model or MODEL)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        total += size
        print("%-16s seed %d  %6d bytes  float32 vs float64 %.2e  loss %s" % (
            name, c["seed"], size, c["f32_err"], " ".join("%.4f" % v for v in c["exp"]["loss"].tolist())))
    print("%d cases, %d bytes in all" % (len(CASES), total))
    if total > MAX_TOTAL_BYTES:
        sys.exit("the fixtures are over %d bytes" % MAX_TOTAL_BYTES)
    check_weight_decay_matters()
    write_schedules()


def check_weight_decay_matters():
    """adam_wd must differ from the same run without weight decay by far more than the tolerance."""
    d = os.path.join(OUT_DIR, "adam_wd")
    with open(os.path.join(d, "args")) as f:
        a = parse_args_line(f.read())
    a["weight_decay"] = 0.0
    init, data = load_file(os.path.join(d, "init.safetensors")), load_file(os.path.join(d, "data.safetensors"))
    exp = load_file(os.path.join(d, "expected.safetensors"))
    p, _, _, _ = train(init, data["input"], data["target"], a, torch.float64)
    diff = min(rel_l2(p[k], exp[k]) for k in p)
    print("adam_wd against no weight decay: smallest relative difference %.2e" % diff)
    assert diff > 1e-3, diff


def check():
    torch.set_num_threads(1)
    names = sorted(n for n in os.listdir(OUT_DIR) if os.path.isdir(os.path.join(OUT_DIR, n)))
    assert sorted(names) == sorted(n for n, _, _ in CASES), names
    worst = 0.0
    for name in names:
        d = os.path.join(OUT_DIR, name)
        with open(os.path.join(d, "model.cnn")) as f:
            model = f.read().split("\n", 1)[1]   # after the generated-by line
        model = MODEL if model == MODEL else model
        shape, seq = build(model, torch.float32)
        with open(os.path.join(d, "args")) as f:
            a = parse_args_line(f.read())
        init = load_file(os.path.join(d, "init.safetensors"))
        data = load_file(os.path.join(d, "data.safetensors"))
        exp = load_file(os.path.join(d, "expected.safetensors"))
        assert sorted(init) == sorted(seq.state_dict()), (name, sorted(init))
        assert all(v.dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
                   for k, v in init.items()), name
        x, y = data["input"], data["target"]
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == shape and y.dtype == torch.int64, name
        assert x.shape[0] == y.shape[0] == a["batch"] * STEPS, name
        p64, s64, loss64, _ = train(init, x, y, a, torch.float64, model)
        p32, _, _, _ = train(init, x, y, a, torch.float32, model)
        got = dict(p64)
        got.update({"f32." + k: v for k, v in p32.items()})
        got.update(s64)
        got["loss"] = loss64
        assert sorted(got) == sorted(exp), (name, sorted(got), sorted(exp))
        for k, v in exp.items():
            assert v.dtype == got[k].dtype and v.shape == got[k].shape, (name, k)
            err = rel_l2(got[k], v)
            worst = max(worst, err)
            assert err < (1e-6 if k.startswith("f32.") else 1e-12), (name, k, err)
    print("%d cases reproduce expected.safetensors (worst relative L2 error %.3g)" % (len(names), worst))
    check_schedules()


# ------------------------------------------------------------------------------------------------
# Schedules: torch's lr (and momentum) at every step
# ------------------------------------------------------------------------------------------------

# name, kind, per_step, epochs, steps per epoch, step_size, gamma, milestones, warmup, base lr
SCHEDULES = [
    ("onecycle_5", "onecycle", 1, 1, 5, 1, 0.1, [], 0, 0.1),
    ("onecycle_10", "onecycle", 1, 2, 5, 1, 0.1, [], 0, 0.1),
    ("onecycle_37", "onecycle", 1, 1, 37, 1, 0.1, [], 0, 0.4),
    ("multistep_epoch", "multistep", 0, 6, 3, 1, 0.1, [2, 4], 0, 0.1),
    ("multistep_step", "multistep", 1, 2, 5, 1, 0.5, [3, 7], 0, 0.05),
    ("cosine_step", "cosine", 1, 1, 23, 1, 0.1, [], 0, 0.1),
    ("cosine_epoch", "cosine", 0, 5, 4, 1, 0.1, [], 0, 0.1),
    ("warmup_cosine_step", "cosine", 1, 4, 5, 1, 0.1, [], 4, 0.1),
    ("warmup_cosine_epoch", "cosine", 0, 5, 4, 1, 0.1, [], 5, 0.2),
    ("warmup_step_epoch", "step", 0, 6, 3, 2, 0.5, [], 4, 0.1),
    ("warmup_multistep_step", "multistep", 1, 3, 4, 1, 0.1, [5, 9], 3, 0.3),
    ("warmup_constant", "constant", 0, 2, 4, 1, 0.1, [], 3, 0.1),
    ("warmup_1_cosine_step", "cosine", 1, 1, 6, 1, 0.1, [], 1, 0.1),
]


def schedule_sequence(kind, per_step, epochs, spe, step_size, gamma, milestones, warmup, base):
    """What cnn train's schedule does, written as the PyTorch code it equals: the scheduler stepped
    per batch (per_step, onecycle) or per epoch, and the warm-up LinearLR stepped per batch, both
    chained on one optimizer (their factors multiply)."""
    total = epochs * spe
    T = total if per_step else epochs
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base, momentum=0.9)
    warm = None
    if warmup:
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / warmup, end_factor=1.0,
                                                 total_iters=warmup - 1)
    if kind == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=base, total_steps=total)
    elif kind == "multistep":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=gamma)
    elif kind == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T)
    elif kind == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    else:
        sched = None
    out = []
    for k in range(total):
        g = opt.param_groups[0]
        out.append((g["lr"], g["momentum"] if kind == "onecycle" else float("nan")))
        p.grad = torch.zeros(1)
        opt.step()
        if warm:
            warm.step()
        if sched and (per_step or kind == "onecycle" or (k + 1) % spe == 0):
            sched.step()
    return out


def schedules_text():
    import warnings
    warnings.simplefilter("ignore")
    lines = ["# generated by tools/make_train_fixtures.py; do not edit",
             "# case NAME KIND PER_STEP EPOCHS STEPS_PER_EPOCH STEP_SIZE GAMMA MILESTONES WARMUP BASE,",
             "# then one line per step: torch's lr and momentum (nan: the schedule leaves momentum alone)"]
    for name, kind, per_step, epochs, spe, step_size, gamma, ms, warmup, base in SCHEDULES:
        lines.append("case %s %s %d %d %d %d %r %s %d %r" % (
            name, kind, per_step, epochs, spe, step_size, gamma, ",".join(map(str, ms)) or "-", warmup, base))
        for lr, m in schedule_sequence(kind, per_step, epochs, spe, step_size, gamma, ms, warmup, base):
            lines.append("%.17g %.17g" % (lr, m))
    return "\n".join(lines) + "\n"


def write_schedules():
    with open(os.path.join(OUT_DIR, "schedules.txt"), "w") as f:
        f.write(schedules_text())
    print("schedules.txt: %d schedules" % len(SCHEDULES))


def check_schedules():
    with open(os.path.join(OUT_DIR, "schedules.txt")) as f:
        assert f.read() == schedules_text(), "schedules.txt differs from torch's schedulers"
    print("schedules.txt reproduces torch's schedulers")


def live(name, out_dir):
    """Writes the case `name` of LIVE (ResNet-20) into out_dir/name, as generate() writes the others.
    ResNet-20 has too many ReLUs for the near-kink filter to pass any seed; the seed is kept when
    torch's float32 run, and two float64 runs from weights changed by rounding-sized amounts, agree
    with its float64 run to F32_TOL_BN (relative L2) in every tensor."""
    torch.set_num_threads(1)
    with open(RESNET20) as f:
        model = f.read()
    args_line = LIVE[name] + " --batch %d --epochs 1 --no-shuffle" % LIVE_BATCH
    c = make_case(name, args_line, SEED + 77, model, watch=False, tol=F32_TOL_BN, attempts=40, perturb=2)
    d = os.path.join(out_dir, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    write_case(d, c, args_line, model)
    print("%s: seed %d, float32 vs float64 %.2e" % (name, c["seed"], c["f32_err"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="verify the existing fixtures instead")
    ap.add_argument("--live", nargs=2, metavar=("NAME", "DIR"),
                    help="write the case NAME of ResNet-20 (%s) into DIR/NAME" % ", ".join(sorted(LIVE)))
    args = ap.parse_args()
    if args.live:
        live(*args.live)
    elif args.check:
        check()
    else:
        generate()


if __name__ == "__main__":
    main()
