#!/usr/bin/python3
"""The PyTorch side of the benchmark: the workloads of bench_cnn.c, timed the same way, one JSON
object per workload and run on stdout, in the same format. bench/run.py runs this and bench_cnn
alternately.

    /usr/bin/python3 bench/bench_torch.py WORKLOAD [--threads T] [--runs R]
    /usr/bin/python3 bench/bench_torch.py --info

PyTorch is run at its best: torch.set_num_threads(T), float32, no autograd for inference
(torch.inference_mode), gradients returned fresh by torch.autograd.grad instead of accumulated
into .grad for the single layers, zero_grad(set_to_none=True) for training. Set
OPENBLAS_NUM_THREADS=1 in the environment (run.py does): OpenBLAS's own thread pool otherwise
fights PyTorch's.

Iteration counts and warm-up match bench_cnn.c:
    lenet_train_B     2 warm-up steps, then max(60000 // B // 8, 4) timed steps: images/s
    lenet_infer_1     3 warm-up passes, then 2000: latency in µs
    lenet_infer_256   3 warm-up passes, then 40: images/s
    layers (_f, _fb)  2 warm-up passes, then 10: ms and GFLOP/s (GFLOP/s 0 for pools and relu)
    resnet20_train_128   2 warm-up steps, then 6: images/s
    resnet20_infer_1     3 warm-up passes, then 200: latency in µs
    resnet20_infer_256   3 warm-up passes, then 5: images/s
    resnet20_mem_128     peak resident memory after 3 training steps at batch 128: MiB

ResNet-20 is the torchvision-style module of tools/make_graph_fixtures.py (BasicBlock modules,
option-B shortcuts), the same net as models/resnet20.cnn (272,474 parameters, checked), rather than
one built by tools/cnnmodel.py, whose line-by-line interpreter would add Python overhead that no
PyTorch user has.
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import make_graph_fixtures  # noqa: E402  (its ResNet-20 module)

LAYERS = {
    # name: (make layer, input shape N C H W)
    "conv_i": (lambda: nn.Conv2d(1, 6, 5, padding=2), (64, 1, 28, 28)),
    "conv_ii": (lambda: nn.Conv2d(6, 16, 5), (64, 6, 14, 14)),
    "conv_iii": (lambda: nn.Conv2d(64, 64, 3, padding=1), (8, 64, 56, 56)),
    "conv_iv": (lambda: nn.Conv2d(128, 128, 3, padding=1), (32, 128, 28, 28)),
    "conv_v": (lambda: nn.Conv2d(128, 128, 3, padding=1, stride=2), (32, 128, 28, 28)),
    "maxpool": (lambda: nn.MaxPool2d(2), (64, 64, 56, 56)),
    "avgpool": (lambda: nn.AvgPool2d(2), (64, 64, 56, 56)),
    "relu": (lambda: nn.ReLU(), (64, 64, 56, 56)),
    # ResNet-20's 3x3 convolutions at batch 128 (no bias, as in the net)
    "conv_r16": (lambda: nn.Conv2d(16, 16, 3, padding=1, bias=False), (128, 16, 32, 32)),
    "conv_r32": (lambda: nn.Conv2d(32, 32, 3, padding=1, bias=False), (128, 32, 16, 16)),
    "conv_r64": (lambda: nn.Conv2d(64, 64, 3, padding=1, bias=False), (128, 64, 8, 8)),
    "conv_r16s2": (lambda: nn.Conv2d(16, 32, 3, padding=1, stride=2, bias=False), (128, 16, 32, 32)),
    "conv_r32s2": (lambda: nn.Conv2d(32, 64, 3, padding=1, stride=2, bias=False), (128, 32, 16, 16)),
    "batchnorm": (lambda: nn.BatchNorm2d(16), (128, 16, 32, 32)),
    "addrelu": (lambda: AddReLU(), (128, 16, 32, 32)),
}


class AddReLU(nn.Module):
    """relu(a + b) of two inputs, as a residual block ends; the benchmark feeds it x and x."""

    def forward(self, a, b):
        return torch.relu(a + b)


def resnet20():
    net = make_graph_fixtures.ResNet20()
    n = sum(p.numel() for p in net.parameters())
    assert n == 272474, f"ResNet-20 has {n} parameters, models/resnet20.cnn 272,474"
    return net


def resnet_train(b, iters):
    return train_steps(resnet20(), torch.rand(b, 3, 32, 32) * 2 - 1, iters, 5e-4)


def resnet_infer(b, iters):
    return forward_passes(resnet20(), torch.rand(b, 3, 32, 32) * 2 - 1, iters)


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def train_steps(net, x, iters, weight_decay):
    """Seconds for `iters` training steps of net on the batch x (after two warm-up steps): SGD with
    momentum 0.9, cross-entropy over 10 classes."""
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    y = torch.arange(x.shape[0]) % 10
    t0 = 0.0
    for it in range(-2, iters):   # two warm-up steps
        if it == 0:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def lenet_train(b, iters):
    """Seconds for `iters` LeNet-5 training steps at batch b."""
    return train_steps(lenet(), torch.randn(b, 1, 28, 28), iters, 0.0)


def forward_passes(net, x, iters):
    """Seconds for `iters` eval-mode forwards of x, after three warm-up passes, without autograd."""
    net.eval()
    t0 = 0.0
    with torch.inference_mode():
        for it in range(-3, iters):
            if it == 0:
                t0 = time.perf_counter()
            net(x)
    return time.perf_counter() - t0


def lenet_infer(b, iters):
    return forward_passes(lenet(), torch.randn(b, 1, 28, 28), iters)


def layer(name, backward, iters):
    """Seconds for `iters` passes of one layer, forward or forward + backward (dX and dW), and
    the flops of one pass (0 for layers other than conv2d)."""
    make, shape = LAYERS[name]
    m = make()
    x = torch.randn(*shape)
    flops = 0.0
    if isinstance(m, nn.Conv2d):
        with torch.no_grad():
            out = m(x)
        k, c, kh, kw = m.weight.shape
        macs = out.numel() * c * kh * kw
        flops = 2.0 * macs * (3 if backward else 1)
    t0 = 0.0
    if backward:
        x.requires_grad_(True)
        xs = [x, x.detach().clone().requires_grad_(True)] if isinstance(m, AddReLU) else [x]
        params = xs + list(m.parameters())
        with torch.no_grad():
            dy = torch.randn_like(m(*xs))
        for it in range(-2, iters):
            if it == 0:
                t0 = time.perf_counter()
            y = m(*xs)
            torch.autograd.grad(y, params, dy)
    else:
        xs = [x, x.clone()] if isinstance(m, AddReLU) else [x]
        with torch.inference_mode():
            for it in range(-2, iters):
                if it == 0:
                    t0 = time.perf_counter()
                m(*xs)
    return time.perf_counter() - t0, flops


def record(workload, threads, **fields):
    print(json.dumps({"workload": workload, "threads": threads, **fields}), flush=True)


def run_one(w, threads):
    if w.startswith("lenet_train_"):
        b = int(w[len("lenet_train_"):])
        iters = max(60000 // b // 8, 4)
        t = lenet_train(b, iters)
        record(w, threads, images_per_s=round(iters * b / t, 1))
    elif w == "lenet_infer_1":
        t = lenet_infer(1, 2000)
        record(w, threads, latency_us=round(t / 2000 * 1e6, 2))
    elif w == "resnet20_train_128":
        t = resnet_train(128, 6)
        record(w, threads, images_per_s=round(6 * 128 / t, 1))
    elif w == "resnet20_mem_128":
        resnet_train(128, 1)
        record(w, threads, rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    elif w == "resnet20_infer_1":
        t = resnet_infer(1, 200)
        record(w, threads, latency_us=round(t / 200 * 1e6, 2))
    elif w == "resnet20_infer_256":
        t = resnet_infer(256, 5)
        record(w, threads, images_per_s=round(5 * 256 / t, 1))
    elif w == "lenet_infer_256":
        t = lenet_infer(256, 40)
        record(w, threads, images_per_s=round(40 * 256 / t, 1))
    else:
        name, _, kind = w.rpartition("_")
        if name not in LAYERS or kind not in ("f", "fb"):
            print(f"bench_torch: unknown workload '{w}'", file=sys.stderr)
            sys.exit(2)
        iters = 10
        t, flops = layer(name, kind == "fb", iters)
        t /= iters
        record(w, threads, ms=round(t * 1e3, 4), gflops=round(flops / t / 1e9, 2))


def info():
    """PyTorch's version, and the BLAS it really loaded: the library behind libblas.so.3 and,
    where that is OpenBLAS, its configuration and the core type it picked for this CPU."""
    import ctypes
    import os
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))   # load the BLAS
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "blas" in os.path.basename(path):
                libs.add(os.path.realpath(path))
    openblas = {}
    try:
        lib = ctypes.CDLL("libblas.so.3")
        for fn in ("openblas_get_config", "openblas_get_corename"):
            if hasattr(lib, fn):
                getattr(lib, fn).restype = ctypes.c_char_p
                openblas[fn[len("openblas_get_"):]] = getattr(lib, fn)().decode()
    except OSError:
        pass
    print(json.dumps({
        "torch": torch.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "blas_libs": sorted(libs),
        "openblas": openblas,
    }))


def main(argv):
    if len(argv) < 2:
        print("usage: bench_torch.py WORKLOAD [--threads T] [--runs R] | --info", file=sys.stderr)
        return 2
    if argv[1] == "--info":
        info()
        return 0
    w, threads, runs = argv[1], 1, 5
    i = 2
    while i + 1 < len(argv):
        if argv[i] == "--threads":
            threads = int(argv[i + 1])
        elif argv[i] == "--runs":
            runs = int(argv[i + 1])
        i += 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    for _ in range(runs):
        run_one(w, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
