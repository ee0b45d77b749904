"""Regenerates tests/data/torch_written.safetensors, the file that tests/test_safetensors.c reads to
check that cnn reads what the Python `safetensors` library writes (and writes the same bytes back).

    /usr/bin/python3 tools/make_test_data.py

The values are exact in every dtype, so the C test compares them with ==.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_file import load_file, save_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "torch_written.safetensors")


def main():
    tensors = {
        "weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1.0,  # -1 .. 1.5
        "labels": torch.tensor([3, -1, 0, 2**53 + 1], dtype=torch.int64),  # not exact in a double
        "double": torch.tensor([0.1, -2.5e300], dtype=torch.float64),
        "bytes": torch.tensor([0, 7, 255], dtype=torch.uint8),
        "half": torch.tensor([1.0, -2.0], dtype=torch.float16),  # bytes 00 3c 00 c0
        "step": torch.tensor(7, dtype=torch.int32),  # a scalar: shape []
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"format": "pt"})
    back = load_file(OUT)
    assert back.keys() == tensors.keys()
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
