#!/usr/bin/python3
"""Writes a CIFAR-10 binary directory of generated images, for smoke runs of models/resnet20.cnn.

No package registry here ships CIFAR-10, so `make data` cannot fetch it. This writes files in its
exact format (src/io/data.c reads them; REFERENCE: records of 1 label byte then 1024 red, 1024
green and 1024 blue bytes, row-major 32x32 planes):

    /usr/bin/python3 tools/make_cifar_like.py DIR [--train N] [--test M] [--seed S]

DIR/data_batch_1.bin .. data_batch_5.bin hold N records split as evenly as the five files allow,
DIR/test_batch.bin M records. Each image is a smooth random field plus a class-dependent pattern
(an oriented grating whose angle and colour depend on the label) and pixel noise, so that a net
learns it a little in one epoch: the run is a smoke test of the whole pipeline and a timing, not a
benchmark of accuracy.
"""
import argparse
import os

import numpy as np


def images(rng, labels):
    n = len(labels)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    angle = labels * (np.pi / 10)
    freq = 0.35 + 0.05 * (labels % 3)
    phase = rng.uniform(0, 2 * np.pi, n)
    wave = np.sin(freq[:, None, None] * (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
                  + phase[:, None, None])
    colour = np.stack([(labels % 2), (labels // 2) % 2, (labels // 4) % 2], axis=1) * 0.6 + 0.2  # [n, 3]
    base = rng.uniform(0.2, 0.8, (n, 3, 1, 1))
    img = base + 0.25 * colour[:, :, None, None] * wave[:, None] + rng.normal(0, 0.12, (n, 3, 32, 32))
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def write(path, rng, count):
    labels = rng.integers(0, 10, count)
    rec = np.empty((count, 3073), np.uint8)
    rec[:, 0] = labels
    rec[:, 1:] = images(rng, labels).reshape(count, 3072)
    with open(path, "wb") as f:
        f.write(rec.tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--train", type=int, default=5000, help="training records in all (default 5000)")
    ap.add_argument("--test", type=int, default=1000, help="test records (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.train < 5 or a.test < 0:
        ap.error("--train must be at least 5 (one record per file) and --test at least 0")
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.dir, exist_ok=True)
    for b in range(5):
        write(os.path.join(a.dir, f"data_batch_{b + 1}.bin"), rng, a.train // 5 + (b < a.train % 5))
    write(os.path.join(a.dir, "test_batch.bin"), rng, a.test)
    print(f"{a.dir}: {a.train} training and {a.test} test records in CIFAR-10 binary format")


if __name__ == "__main__":
    main()
