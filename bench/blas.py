#!/usr/bin/python3
"""cnn's own GEMM micro-kernels against OpenBLAS (`make bench-blas`).

    /usr/bin/python3 bench/blas.py [--own DIR] [--openblas DIR] [--runs N] [--threads 1,2]
                                   [--only REGEX]

`make bench-blas` builds both variants and runs this; the environment variable BLAS_ARGS adds
options, so that `make bench-blas BLAS_ARGS="--runs 9"` passes them through make.

DIR/bench_cnn of the default build (--own, default build) and of `make BLAS=openblas` (--openblas,
default build/openblas) time the same workloads: every GEMM shape that conv2d and linear make
(bench_cnn.c's gemm_* workloads: one gemm() call, GFLOP/s) and a few whole workloads that run
through gemm() (LeNet-5 training and batch-1 inference, whose linear layers are GEMMs, and the
strided convolution (v), whose input gradient is one). The two builds run alternately, one
process per run, the order swapped every run, so that both see the same state of a noisy machine.
The medians go to stdout as a markdown table with the OpenBLAS/own speed ratio (above 1: OpenBLAS
is faster), and every run's JSON to DIR(own)/blas-results.json. Nothing else is written.
"""
import argparse
import datetime
import json
import math
import os
import re
import shlex
import statistics
import sys

from run import cpu_info, run_json   # bench/run.py, beside this file

# name, what (the gemm() call or the workload), metric, higher is better
GEMMS = [
    ("gemm_ii_f", "conv (ii) forward W·col: 16×100×150"),
    ("gemm_ii_dw", "conv (ii) dWᵀ = col·dyᵀ: 150×16×100, beta 1"),
    ("gemm_ii_dx", "conv (ii) dcol = Wᵀ·dy: 150×100×16"),
    ("gemm_iii_f", "conv (iii) forward: 64×3136×576"),
    ("gemm_iii_dw", "conv (iii) dWᵀ: 576×64×3136, beta 1"),
    ("gemm_iii_dx", "conv (iii) dcol: 576×3136×64"),
    ("gemm_iv_f", "conv (iv) forward: 128×784×1152"),
    ("gemm_iv_dw", "conv (iv) dWᵀ: 1152×128×784, beta 1"),
    ("gemm_iv_dx", "conv (iv) dcol: 1152×784×128"),
    ("gemm_v_f", "conv (v) forward: 128×196×1152"),
    ("gemm_v_dw", "conv (v) dWᵀ: 1152×128×196, beta 1"),
    ("gemm_v_dx", "conv (v) dcol: 1152×196×128"),
    ("gemm_fc1_f", "linear 400→120, batch 64, y = x·Wᵀ: 64×120×400"),
    ("gemm_fc1_dx", "linear 400→120, batch 64, dx = dy·W: 64×400×120"),
    ("gemm_fc1_dw", "linear 400→120, batch 64, dW += dyᵀ·x: 120×400×64"),
]
WORKLOADS = [(w, what, "gflops", True) for w, what in GEMMS] + [
    ("lenet_train_64", "LeNet-5 training step, batch 64", "images_per_s", True),
    ("lenet_infer_1", "LeNet-5 forward, batch 1", "latency_us", False),
    ("conv_v_fb", "conv (v) N32 C128 28² K128 3×3 pad 1 stride 2, forward+backward", "ms", False),
]
UNITS = {"gflops": "GFLOP/s", "images_per_s": "images/s", "latency_us": "µs", "ms": "ms"}


def fmt(v, metric):
    if v is None:
        return "—"
    if metric == "images_per_s":
        return f"{v:,.0f}"
    if metric in ("gflops", "latency_us"):
        return f"{v:.1f}"
    return f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--own", default="build", help="the default build's directory (default build)")
    ap.add_argument("--openblas", default="build/openblas",
                    help="the BLAS=openblas build's directory (default build/openblas)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each build per row (default 5)")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    ap.add_argument("--only", help="only the workloads this regular expression finds")
    ap.add_argument("--timeout", type=int, default=600, help="seconds one process may take")
    extra = shlex.split(os.environ.get("BLAS_ARGS", ""))
    args = ap.parse_args(sys.argv[1:] + extra)
    if args.runs < 1:
        sys.exit("blas.py: --runs must be at least 1")
    threads = [int(t) for t in args.threads.split(",")]
    workloads = [w for w in WORKLOADS if not args.only or re.search(args.only, w[0])]
    if not workloads:
        sys.exit("blas.py: no workload matches")

    sides = (("own", os.path.join(args.own, "bench_cnn")), ("openblas", os.path.join(args.openblas, "bench_cnn")))
    for _, b in sides:
        if not os.access(b, os.X_OK):
            sys.exit(f"blas.py: {b} is missing; `make bench-blas` builds both")
    env = dict(os.environ)
    info = {side: run_json([b, "--info"], env, 60) for side, b in sides}
    if info["own"].get("gemm_kernel") == "openblas" or info["openblas"].get("gemm_kernel") != "openblas":
        sys.exit(f"blas.py: {sides[0][1]} must be the default build and {sides[1][1]} the BLAS=openblas one")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    started = datetime.datetime.now().astimezone()
    load0 = os.getloadavg()
    results, rows = [], []
    total, n = len(workloads) * len(threads), 0
    for w, what, metric, higher in workloads:
        for t in threads:
            n += 1
            log(f"blas.py: [{n}/{total}] {w}, {t} thread{'s' if t > 1 else ''}, {args.runs} runs each")
            env_t = dict(env, OMP_NUM_THREADS=str(t))
            got = {"own": [], "openblas": []}
            for r in range(args.runs):
                for side, b in (sides if r % 2 == 0 else sides[::-1]):
                    rec = run_json([b, w, "--threads", str(t), "--runs", "1"], env_t, args.timeout)
                    results.append({"workload": w, "threads": t, "side": side, **rec})
                    got[side].append(rec)
            rows.append((w, what, metric, higher, t, got))
    load1 = os.getloadavg()
    finished = datetime.datetime.now().astimezone()

    def vals(recs, key):
        return [r[key] for r in recs if key in r]

    table = [
        "| workload | gemm() call (M×N×K) or workload | threads | unit | own | OpenBLAS | OpenBLAS/own speed |"
        " spread own / OpenBLAS |",
        "|---|---|--:|---|--:|--:|--:|--:|",
    ]
    errors, gemm_ratios = [], {t: [] for t in threads}
    for w, what, metric, higher, t, got in rows:
        med = {}
        spread = []
        for side in ("own", "openblas"):
            v = vals(got[side], metric)
            med[side] = statistics.median(v) if v else None
            spread.append(f"{100 * (max(v) / min(v) - 1):.0f}%" if len(v) > 1 and min(v) > 0 else "—")
            errors += [f"{w}, {t} threads, {side}: {r['error']}" for r in got[side] if "error" in r]
        o, b = med["own"], med["openblas"]
        ratio = None
        if o and b:
            ratio = b / o if higher else o / b
            if w.startswith("gemm_"):
                gemm_ratios[t].append(ratio)
        table.append(f"| {w} | {what} | {t} | {UNITS[metric]} | {fmt(o, metric)} | {fmt(b, metric)} | "
                     f"{'—' if ratio is None else f'{ratio:.2f}×'} | {spread[0]} / {spread[1]} |")

    ob = info["openblas"].get("openblas") or {}
    cmd = " ".join(shlex.quote(a) for a in ["/usr/bin/python3"] + sys.argv + extra)
    if os.environ.get("MAKELEVEL"):   # under make
        cmd = "make bench-blas" + (f" BLAS_ARGS={shlex.quote(' '.join(extra))}" if extra else "")
    lines = [
        f"- **Command:** `{cmd}`",
        f"- **Date:** {started:%Y-%m-%d %H:%M %Z} to {finished:%H:%M}",
        f"- **CPU:** {cpu_info()[0]}, {os.cpu_count()} logical CPUs; load average {load0[0]:.2f} at the start, "
        f"{load1[0]:.2f} at the end",
        f"- **own:** GEMM micro-kernel `{info['own'].get('gemm_kernel', '?')}` ({sides[0][1]}); "
        f"**OpenBLAS:** {ob.get('config', '?')}, core type {ob.get('corename', '?')}, on one thread "
        f"({sides[1][1]})",
        f"- **Runs:** {args.runs} of each build per row, alternating, each a fresh process; medians shown; "
        "spread = max/min − 1 of each build's runs",
    ]
    summary = []
    for t in threads:
        r = gemm_ratios[t]
        if r:
            faster = sum(1 for x in r if x > 1)
            gm = math.exp(sum(math.log(x) for x in r) / len(r))
            summary.append(f"- **{t} thread{'s' if t > 1 else ''}:** OpenBLAS is faster on {faster} of {len(r)} "
                           f"GEMM shapes; geometric mean of OpenBLAS/own speed {gm:.2f}× "
                           f"(from {min(r):.2f}× to {max(r):.2f}×)")
    if errors:
        summary.append("- **Failed runs:** " + "; ".join(errors))
    print("\n".join(lines + [""] + table + [""] + summary))
    out = os.path.join(args.own, "blas-results.json")
    with open(out, "w") as f:
        json.dump({"command": cmd, "started": started.isoformat(), "info": info, "runs": results}, f, indent=1)
    log(f"blas.py: raw results in {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
