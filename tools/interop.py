#!/usr/bin/python3
"""Moves trained weights between cnn and PyTorch, in both directions, and measures both.

Run it from anywhere with Debian's Python and PyTorch (python3-torch):

    # cnn -> PyTorch: evaluate a cnn checkpoint (or any state_dict file) in PyTorch
    /usr/bin/python3 tools/interop.py torch-eval --model models/lenet5.cnn \\
        --weights runs/lenet5-mnist.safetensors --data mnist

    # PyTorch -> cnn: train the same net in PyTorch and save its state_dict for `cnn eval`
    /usr/bin/python3 tools/interop.py torch-train --model models/lenet5.cnn --data mnist \\
        --epochs 1 --out torch_lenet5.safetensors
    build/cnn eval --model models/lenet5.cnn --weights torch_lenet5.safetensors --data mnist

Both build the torch.nn.Module that the model file describes (tools/cnnmodel.py, float32), read
MNIST or Fashion-MNIST from the IDX files under data/ (raw or .gz), and normalise them exactly as cnn
does: x = (byte/255 - mean) / std, computed in double from the float32 mean and std and rounded to
float32 (src/io/data.c builds the same 256-entry table). Both print the test accuracy with the exact
number of correct images, the mean cross-entropy loss and the confusion matrix (rows: true class,
columns: predicted), laid out as `cnn eval` prints it, so the two can be compared image count by
image count.
"""
import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnnmodel import load_model  # noqa: E402
from safetensors_file import load_file, save_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The data sets cnn knows by name: directory under data/, the mean and std of the pixels after scaling
# to [0, 1] (the same float32 constants as src/io/data.c), and the class names `cnn eval` prints.
DATASETS = {
    "mnist": dict(dir="mnist", mean=0.1307, std=0.3081, classes=[str(i) for i in range(10)]),
    "fashion-mnist": dict(dir="fashion-mnist", mean=0.2860, std=0.3530,
                          classes=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                   "Sneaker", "Bag", "Ankle boot"]),
}
SPLITS = {"train": "train", "test": "t10k"}


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------

def read_idx(path):
    """Reads an IDX file (raw, or gzip-compressed if `path + '.gz'` is what exists) into a numpy array."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        sys.exit("%s: not an IDX file of unsigned bytes" % path)
    dims = struct.unpack(">%dI" % ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        sys.exit("%s: header says %s (%d bytes) but %d bytes follow" % (path, dims, np.prod(dims), body.size))
    return body.reshape(dims)


def normalisation_table(mean, std):
    """table[b] = (b/255 - mean) / std for every byte b, exactly as cnn computes it: the mean and std are
    float32 constants, the arithmetic is done in double, and the result is rounded to float32."""
    m = float(np.float32(mean))
    s = float(np.float32(std))
    return np.array([(b / 255.0 - m) / s for b in range(256)], dtype=np.float64).astype(np.float32)


def load_split(name, split, data_dir):
    """Returns (images float32 [N,1,H,W], normalised; labels int64 [N]) of MNIST or Fashion-MNIST."""
    info = DATASETS[name]
    base = os.path.join(data_dir, info["dir"], SPLITS[split])
    images = read_idx(base + "-images-idx3-ubyte")
    labels = read_idx(base + "-labels-idx1-ubyte")
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        sys.exit("%s: images %s and labels %s do not match" % (base, images.shape, labels.shape))
    x = normalisation_table(info["mean"], info["std"])[images]  # look-up: [N, H, W] float32
    x = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1)  # [N, 1, H, W], NCHW as in cnn
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


# ------------------------------------------------------------------------------------------------
# Model and evaluation
# ------------------------------------------------------------------------------------------------

def build_model(path, data_shape):
    """The float32 nn.Module of a model file; checks that the data fit its input line."""
    shape, seq = load_model(path, dtype=torch.float32)
    if tuple(shape) != tuple(data_shape):
        sys.exit("%s: the model takes input %s but the data are %s" % (path, shape, tuple(data_shape)))
    return seq


def load_weights(seq, path):
    """Loads a safetensors state_dict into `seq` with strict=True. cnn checkpoints also hold the optimizer's
    state under optim.*, which is not part of the model: those keys are dropped. Floating-point tensors
    become float32; integers (batch norm's num_batches_tracked) stay int64."""
    tensors = load_file(path)
    dropped = sorted(k for k in tensors if k.startswith("optim."))
    state = {k: v if not v.is_floating_point() else v.to(torch.float32) for k, v in tensors.items()
             if not k.startswith("optim.")}
    try:
        seq.load_state_dict(state, strict=True)  # fails on any missing, unexpected or mis-shaped key
    except RuntimeError as err:
        sys.exit("%s does not fit the model: %s" % (path, err))
    return state, dropped


@torch.no_grad()
def evaluate(seq, x, y, batch=1000):
    """Returns (correct, mean cross-entropy loss, confusion matrix [classes, classes] int64)."""
    seq.eval()
    loss_sum = 0.0
    preds = []
    for i in range(0, x.shape[0], batch):
        out = seq(x[i:i + batch])
        loss_sum += F.cross_entropy(out, y[i:i + batch], reduction="sum").item()
        preds.append(out.argmax(dim=1))  # on a tie, PyTorch takes the first maximum
    pred = torch.cat(preds)
    classes = out.shape[1]
    confusion = torch.bincount(y * classes + pred, minlength=classes * classes).reshape(classes, classes)
    return int((pred == y).sum()), loss_sum / x.shape[0], confusion


def report(what, split, correct, n, loss, confusion, names):
    """Prints the headline figures, then the confusion matrix in `cnn eval`'s layout."""
    print("%s %s accuracy: %.2f%% (%d correct of %d), loss %.4f"
          % (what, split, 100.0 * correct / n, correct, n, loss))
    print("\nconfusion matrix (rows: true class, columns: predicted)")
    classes = confusion.shape[0]
    print("%14s" % "" + "".join(" %6d" % j for j in range(classes)))
    for i in range(classes):
        name = names[i][:13] if i < len(names) else str(i)
        print("%-14s" % name + "".join(" %6d" % v for v in confusion[i].tolist()))


# ------------------------------------------------------------------------------------------------
# Subcommands
# ------------------------------------------------------------------------------------------------

def cmd_torch_eval(a):
    x, y = load_split(a.data, a.split, a.data_dir)
    seq = build_model(a.model, x.shape[1:])
    state, dropped = load_weights(seq, a.weights)
    print("%s: %d parameter tensors loaded into the PyTorch net (strict), %d optim.* tensors dropped"
          % (a.weights, len(state), len(dropped)))
    print("  " + ", ".join("%s %s" % (k, list(v.shape)) for k, v in seq.state_dict().items()))
    print("%s on %s (%s split, %d samples)" % (a.model, a.data, a.split, x.shape[0]))
    correct, loss, confusion = evaluate(seq, x, y)
    report("pytorch", a.split, correct, x.shape[0], loss, confusion, DATASETS[a.data]["classes"])


def cmd_torch_train(a):
    torch.manual_seed(a.seed)  # seeds the default initialisation (drawn while the model is built)
    x, y = load_split(a.data, "train", a.data_dir)
    xt, yt = load_split(a.data, "test", a.data_dir)
    seq = build_model(a.model, x.shape[1:])
    opt = torch.optim.Adam(seq.parameters(), lr=a.lr)
    shuffle = torch.Generator().manual_seed(a.seed)  # its own generator: the order depends on the seed only
    n = x.shape[0]
    print("training %s on %s in PyTorch %s (%d train, %d test), adam lr %g, batch %d, %d epoch(s), seed %d, "
          "%d threads" % (a.model, a.data, torch.__version__, n, xt.shape[0], a.lr, a.batch, a.epochs, a.seed,
                          torch.get_num_threads()))
    for epoch in range(1, a.epochs + 1):
        seq.train()
        t0 = time.time()
        order = torch.randperm(n, generator=shuffle)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, a.batch):  # the last batch may be smaller
            idx = order[i:i + a.batch]
            out = seq(x[idx])
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * idx.numel()
            correct += int((out.argmax(dim=1) == y[idx]).sum())
        t_correct, t_loss, _ = evaluate(seq, xt, yt)
        print("epoch %d/%d  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  %.1fs"
              % (epoch, a.epochs, loss_sum / n, 100.0 * correct / n, t_loss, 100.0 * t_correct / xt.shape[0],
                 time.time() - t0))
    # float32 (num_batches_tracked int64), under the state_dict names, as safetensors.torch.save_file(
    # model.state_dict(), ...) writes it
    state = {k: v.detach().to(torch.float32) if v.is_floating_point() else v.detach()
             for k, v in seq.state_dict().items()}
    save_file(state, a.out, metadata={"format": "pt"})
    print("wrote %s (%d tensors: %s)" % (a.out, len(state), ", ".join(state)))
    correct, loss, confusion = evaluate(seq, xt, yt)
    report("pytorch", "test", correct, xt.shape[0], loss, confusion, DATASETS[a.data]["classes"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--model", required=True, help="model file, e.g. models/lenet5.cnn")
        p.add_argument("--data", required=True, choices=sorted(DATASETS))
        p.add_argument("--data-dir", default=os.path.join(ROOT, "data"), help="directory of the data sets (data/)")
        p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")

    e = sub.add_parser("torch-eval", help="evaluate a cnn checkpoint (or any state_dict) in PyTorch")
    common(e)
    e.add_argument("--weights", required=True, help="safetensors file: a cnn checkpoint or a state_dict")
    e.add_argument("--split", default="test", choices=sorted(SPLITS))
    e.set_defaults(func=cmd_torch_eval)

    t = sub.add_parser("torch-train", help="train the model in PyTorch and save its state_dict for cnn")
    common(t)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    t.add_argument("--seed", type=int, default=0, help="seeds the initialisation and the shuffling")
    t.add_argument("--out", required=True, help="where to write the state_dict (safetensors)")
    t.set_defaults(func=cmd_torch_train)

    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.func(a)


if __name__ == "__main__":
    main()
