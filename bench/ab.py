#!/usr/bin/python3
"""Two builds of cnn against each other: the same workloads of bench_cnn, A and B alternately.

    /usr/bin/python3 bench/ab.py OLD/bench_cnn NEW/bench_cnn [--runs 7] [--threads 1,2] [WORKLOAD ...]

For a change to the core (the graph of issue 11, say): build the commit before it in a second
checkout (`git worktree add ../old COMMIT && make -C ../old build/bench_cnn`), then run this from
the new one. Each workload runs A, B, A, B, ... one process per run (--runs 1 each), so that both
see the same state of a noisy machine, and the table gives both medians and B/A as a speed ratio
(above 1: B is faster, or smaller for memory), whatever the unit; run it from the repository root
(the ResNet-20 rows read models/resnet20.cnn). Without WORKLOADs: the LeNet-5 and convolution rows of
`make bench`.
"""
import argparse
import json
import statistics
import subprocess
import sys

DEFAULT = ["lenet_train_64", "lenet_train_256", "lenet_infer_1", "lenet_infer_256"] + [
    f"conv_{c}_{k}" for c in ("i", "ii", "iii", "iv", "v") for k in ("f", "fb")]
METRICS = {"images_per_s": True, "latency_us": False, "ms": False, "rss_mib": False}   # higher is better?


def run(binary, workload, threads):
    out = subprocess.run([binary, workload, "--threads", str(threads), "--runs", "1"], check=True,
                         capture_output=True, text=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    key = next(k for k in METRICS if k in row)
    return key, row[key]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="bench_cnn of the build before (A)")
    ap.add_argument("b", help="bench_cnn of the build after (B)")
    ap.add_argument("workloads", nargs="*", default=DEFAULT)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", default="1")
    args = ap.parse_intermixed_args()
    print("| workload | threads | A (median) | B (median) | unit | B/A speed |")
    print("|---|--:|--:|--:|---|--:|")
    for w in args.workloads:
        for t in (int(x) for x in args.threads.split(",")):
            got = {"a": [], "b": []}
            key = None
            for _ in range(args.runs):
                for side in ("a", "b"):
                    key, v = run(getattr(args, side), w, t)
                    got[side].append(v)
            ma, mb = statistics.median(got["a"]), statistics.median(got["b"])
            speed = mb / ma if METRICS[key] else ma / mb
            print(f"| {w} | {t} | {ma:.4g} | {mb:.4g} | {key} | {speed:.3f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
