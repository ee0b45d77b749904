"""A small pure-Python reader and writer of safetensors files: the standard library and torch, nothing else.

Debian does not package the `safetensors` Python library, so this one file stands in for it: copy it
beside your script, or put tools/ on sys.path. The API mirrors safetensors.torch:

    from safetensors_file import load_file, save_file
    state = load_file("lenet5-weights.safetensors")   # {name: torch.Tensor}, e.g. from `cnn export`
    net.load_state_dict(state, strict=True)
    save_file(net.state_dict(), "mine.safetensors", metadata={"format": "pt"})   # cnn reads it

load_file(path) returns every tensor (copies, so the file may go) and skips the __metadata__;
save_file(tensors, path, metadata=None) writes the same bytes that `safetensors.torch.save_file`
writes: an 8-byte little-endian header length, a compact JSON header ("__metadata__" first, then
the tensors sorted by dtype, largest alignment first, then by name), padded with spaces to a
multiple of 8, then the raw little-endian data in that order. Dtypes: F64, F32, F16, BF16, I64,
I32, I16, I8, U8, BOOL. The fixture scripts and the README's PyTorch example use it.
"""
import json
import struct

import torch

_DTYPES = {
    torch.float64: ("F64", 8), torch.float32: ("F32", 4), torch.float16: ("F16", 2),
    torch.bfloat16: ("BF16", 2), torch.int64: ("I64", 8), torch.int32: ("I32", 4),
    torch.int16: ("I16", 2), torch.int8: ("I8", 1), torch.uint8: ("U8", 1), torch.bool: ("BOOL", 1),
}
_BY_NAME = {name: (dt, size) for dt, (name, size) in _DTYPES.items()}
# safetensors' Dtype enum order; serialisation sorts by it, descending, then by name.
_ORDER = ["BOOL", "U8", "I8", "I16", "F16", "BF16", "I32", "F32", "F64", "I64"]


def save_file(tensors, path, metadata=None):
    items = []
    for name, t in tensors.items():
        dname, _ = _DTYPES[t.dtype]
        items.append((name, dname, t.detach().contiguous().cpu()))
    items.sort(key=lambda it: (-_ORDER.index(it[1]), it[0]))
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, dname, t in items:
        raw = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": dname, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def load_file(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt, _ = _BY_NAME[info["dtype"]]
        b, e = info["data_offsets"]
        buf = bytearray(data[base + b:base + e])
        t = torch.frombuffer(buf, dtype=dt) if e > b else torch.zeros(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out
