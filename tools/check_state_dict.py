#!/usr/bin/python3
"""Checks that a cnn checkpoint is a PyTorch state_dict: it loads strictly and computes what cnn computes.

    /usr/bin/python3 tools/check_state_dict.py --model M.cnn --checkpoint CK.safetensors \\
        --input IN.safetensors --cnn-output OUT.safetensors

where OUT comes from `cnn grad --model M.cnn --weights CK.safetensors --input IN.safetensors --out OUT
--eval`. The script builds the torch.nn.Module that M describes (tools/cnnmodel.py, float64), drops the
checkpoint's optim.* tensors (the optimizer's state, not the model's) and loads every other tensor with
load_state_dict(strict=True): every parameter and buffer, batch norm's running_mean, running_var and
num_batches_tracked (which must be int64, shape [], as in PyTorch) included, and nothing else. It then
runs the module in eval mode on IN's `input` and compares its output with OUT's `output`.

Exit status 0 when the checkpoint loads strictly and the relative L2 error of the output is at most
--tolerance (1e-4); 1, with a message that says what differs, otherwise.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnnmodel import load_model  # noqa: E402
from safetensors_file import load_file  # noqa: E402


def fail(msg):
    print("check_state_dict: FAILED: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the model file, M.cnn")
    ap.add_argument("--checkpoint", required=True, help="the cnn checkpoint (safetensors)")
    ap.add_argument("--input", required=True, help="safetensors file with `input` [N,C,H,W] F32")
    ap.add_argument("--cnn-output", required=True, help="what `cnn grad --eval` wrote (its `output`)")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="relative L2 error allowed (1e-4)")
    a = ap.parse_args()
    torch.set_num_threads(1)

    try:
        shape, net = load_model(a.model, dtype=torch.float64)
    except (AssertionError, ValueError, KeyError, RuntimeError) as err:
        fail("%s: cannot build the PyTorch module: %s" % (a.model, err))
    tensors = load_file(a.checkpoint)
    dropped = sorted(k for k in tensors if k.startswith("optim."))
    state = {k: v for k, v in tensors.items() if not k.startswith("optim.")}

    # load_state_dict copies values into the module's tensors, converting dtypes silently: check them first.
    want = net.state_dict()
    for k, v in sorted(state.items()):
        if k not in want:
            continue   # strict loading below names it
        w = want[k]
        if w.is_floating_point() != v.is_floating_point() or (not w.is_floating_point() and v.dtype != w.dtype):
            fail("%s: tensor '%s' is %s, but PyTorch's is %s" % (a.checkpoint, k, v.dtype, w.dtype))
        if tuple(v.shape) != tuple(w.shape):
            fail("%s: tensor '%s' has shape %s, but PyTorch's has %s" % (a.checkpoint, k, list(v.shape),
                                                                       list(w.shape)))
    try:
        net.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    except RuntimeError as err:
        fail("%s does not load into the PyTorch module with strict=True: %s" % (a.checkpoint, err))
    buffers = [k for k, _ in net.named_buffers()]
    counters = {k: int(v) for k, v in state.items() if k.endswith(".num_batches_tracked")}

    x = load_file(a.input).get("input")
    if x is None or x.dtype != torch.float32 or x.dim() != 4 or tuple(x.shape[1:]) != tuple(shape):
        fail("%s: expected `input` F32 [N, %d, %d, %d]" % ((a.input,) + tuple(shape)))
    out = load_file(a.cnn_output).get("output")
    if out is None:
        fail("%s: no tensor `output`" % a.cnn_output)
    net.eval()
    with torch.no_grad():
        y = net(x.double())
    if tuple(out.shape) != tuple(y.shape):
        fail("cnn's output has shape %s, PyTorch's %s" % (list(out.shape), list(y.shape)))
    err = ((out.double() - y).norm() / max(y.norm().item(), 1e-12)).item()
    print("%s: %d tensors loaded with strict=True (%d parameters, %d buffers; %d optim.* tensors dropped)"
          % (a.checkpoint, len(state), len(state) - len(buffers), len(buffers), len(dropped)))
    if counters:
        print("  num_batches_tracked: " + ", ".join("%s=%d" % kv for kv in sorted(counters.items())))
    print("eval-mode output [%s]: relative L2 error of cnn's against PyTorch's (float64) %.3g (tolerance %g)"
          % (", ".join(map(str, y.shape)), err, a.tolerance))
    if not err <= a.tolerance:
        fail("cnn's eval-mode output differs from PyTorch's by %.3g (relative L2) > %g" % (err, a.tolerance))
    print("ok")


if __name__ == "__main__":
    main()
