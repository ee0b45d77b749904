#!/usr/bin/python3
"""The side-by-side benchmark of cnn and PyTorch (`make bench`).

    /usr/bin/python3 bench/run.py [--build DIR] [--runs N] [--threads 1,2] [--only REGEX]
                                  [--quick] [--write | --no-write] [--out BENCHMARKS.md]

For each workload and thread count it runs DIR/bench_cnn and bench/bench_torch.py alternately,
cnn, PyTorch, cnn, PyTorch, ..., each run a separate process with --runs 1, so that both see the
same state of a noisy machine. It takes the medians and prints a markdown table: both medians,
the cnn/PyTorch speed ratio (above 1: cnn is faster), and for the layers the throughput and the
percentage of the machine's peak that bench/peak measures (FMA peak for convolutions, memory
bandwidth, the better of copy and triad, for pooling and relu, at the same thread count). The
table and the machine's description go to stdout and, between the markers below, to
BENCHMARKS.md; text outside the markers is kept. Every run's raw JSON goes to DIR/bench-results.json.

PyTorch runs with OPENBLAS_NUM_THREADS=1 and torch.set_num_threads(T).

--quick is a smoke test: fewer runs and (without --only) fewer workloads, and it leaves
BENCHMARKS.md alone unless --write is given. The environment variable BENCH_ARGS adds options, so that
`make bench BENCH_ARGS="--quick --only conv"` passes them through make.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys

BEGIN = "<!-- bench/run.py: begin (generated; edit outside these markers) -->"
END = "<!-- bench/run.py: end -->"

# name, metric, higher is better
WORKLOADS = [
    ("lenet_train_64", "images_per_s", True),
    ("lenet_train_256", "images_per_s", True),
    ("lenet_infer_1", "latency_us", False),
    ("lenet_infer_256", "images_per_s", True),
] + [(f"conv_{c}_{k}", "ms", False) for c in ("i", "ii", "iii", "iv", "v") for k in ("f", "fb")] + [
    ("maxpool_fb", "ms", False),
    ("avgpool_fb", "ms", False),
    ("relu_fb", "ms", False),
    ("resnet20_train_128", "images_per_s", True),
    ("resnet20_infer_1", "latency_us", False),
    ("resnet20_infer_256", "images_per_s", True),
    ("resnet20_mem_128", "rss_mib", False),
] + [(f"conv_{c}_{k}", "ms", False) for c in ("r16", "r32", "r64", "r16s2", "r32s2") for k in ("f", "fb")] + [
    ("batchnorm_f", "ms", False),
    ("batchnorm_fb", "ms", False),
    ("addrelu_f", "ms", False),
    ("addrelu_fb", "ms", False),
]
QUICK = ["lenet_train_64", "lenet_infer_1", "lenet_infer_256", "conv_i_fb", "conv_iii_fb", "maxpool_fb",
         "resnet20_train_128", "resnet20_infer_1", "conv_r16_fb", "batchnorm_fb"]

UNITS = {"images_per_s": "images/s", "latency_us": "µs", "ms": "ms", "rss_mib": "MiB"}

SHAPES = {
    "lenet_train_64": "LeNet-5 on 28² inputs, batch 64, training step",
    "lenet_train_256": "LeNet-5 on 28² inputs, batch 256, training step",
    "lenet_infer_1": "LeNet-5 on 28² inputs, batch 1, forward",
    "lenet_infer_256": "LeNet-5 on 28² inputs, batch 256, forward",
    "conv_i": "N64 C1 28² K6 5×5 pad 2",
    "conv_ii": "N64 C6 14² K16 5×5",
    "conv_iii": "N8 C64 56² K64 3×3 pad 1",
    "conv_iv": "N32 C128 28² K128 3×3 pad 1",
    "conv_v": "N32 C128 28² K128 3×3 pad 1 stride 2",
    "maxpool": "N64 C64 56², 2×2",
    "avgpool": "N64 C64 56², 2×2",
    "relu": "N64 C64 56²",
    "resnet20_train_128": "ResNet-20 on 3×32², batch 128, training step (batch norm in training mode, SGD momentum)",
    "resnet20_infer_1": "ResNet-20 on 3×32², batch 1, forward in eval mode",
    "resnet20_infer_256": "ResNet-20 on 3×32², batch 256, forward in eval mode",
    "resnet20_mem_128": "ResNet-20, batch 128: peak resident memory of a training process (lower is better)",
    "conv_r16": "N128 C16 32² K16 3×3 pad 1, no bias",
    "conv_r32": "N128 C32 16² K32 3×3 pad 1, no bias",
    "conv_r64": "N128 C64 8² K64 3×3 pad 1, no bias",
    "conv_r16s2": "N128 C16 32² K32 3×3 pad 1 stride 2, no bias",
    "conv_r32s2": "N128 C32 16² K64 3×3 pad 1 stride 2, no bias",
    "batchnorm": "batchnorm2d N128 C16 32², training mode",
    "addrelu": "relu(a + b), a and b N128 C16 32²",
}

# The least memory traffic of the pooling and relu passes, in bytes: N64 C64 56×56 float32 is
# X bytes in, a quarter of that out of a 2×2 pool. Forward reads x and writes y; backward reads
# dy and writes dx, and relu also reads x (or y) again for its mask.
X = 64 * 64 * 56 * 56 * 4
TRAFFIC = {
    "maxpool_f": X + X / 4, "maxpool_fb": 2 * (X + X / 4),
    "avgpool_f": X + X / 4, "avgpool_fb": 2 * (X + X / 4),
    "relu_f": 2 * X, "relu_fb": 5 * X,
}
# N128 C16 32×32 float32. Batch norm: a channel (512 KiB) fits in cache, so its least traffic is
# x in and y out forward, x and dy in and dx out backward. add+relu: a and b in, y out forward; dy
# and y (for the mask) in, da and db out backward.
R = 128 * 16 * 32 * 32 * 4
TRAFFIC.update({
    "batchnorm_f": 2 * R, "batchnorm_fb": 5 * R,
    "addrelu_f": 3 * R, "addrelu_fb": 7 * R,
})


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(cmd, env, timeout):
    """Runs one benchmark process in the repository's root (bench_cnn reads models/resnet20.cnn);
    returns its last JSON line, or {"error": ...}."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        msg = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        return {"error": msg}
    return json.loads(lines[-1])


def cpu_info():
    model, flags = platform.processor() or "unknown", ""
    fam = mod = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k == "model name" and model in ("unknown", platform.processor()):
                    model = v
                elif k == "cpu family" and fam is None:
                    fam = v
                elif k == "model" and mod is None:
                    mod = v
                elif k == "flags" and not flags:
                    flags = v
    except OSError:
        pass
    isa = [x for x in ("avx512f", "avx2", "fma") if x in flags.split()]
    desc = model
    if fam is not None:
        desc += f" (family {fam}, model {mod})"
    return desc, isa


def openblas_coretype_forced():
    """Where OPENBLAS_CORETYPE is set: this environment, or a system-wide file."""
    found = []
    if "OPENBLAS_CORETYPE" in os.environ:
        found.append(f"set in the environment: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}")
    files = ["/etc/environment", "/etc/profile", "/etc/bash.bashrc"]
    try:
        files += [os.path.join("/etc/profile.d", f) for f in sorted(os.listdir("/etc/profile.d"))]
    except OSError:
        pass
    for path in files:
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    if "OPENBLAS_CORETYPE" in line and not line.lstrip().startswith("#"):
                        found.append(f"{path}: {line.strip()}")
        except OSError:
            pass
    return found


def fmt(v, metric):
    if v is None:
        return "—"
    if metric == "images_per_s":
        return f"{v:,.0f}"
    if metric == "latency_us":
        return f"{v:.1f}"
    if metric == "rss_mib":
        return f"{v:.0f}"
    return f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="where bench_cnn and peak are (default build)")
    ap.add_argument("--runs", type=int, help="runs of each side (default 5; 3 with --quick)")
    ap.add_argument("--threads", help="thread counts, comma-separated (default 1,2)")
    ap.add_argument("--only", help="only the workloads this regular expression finds (among all of them)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 3 runs, and without --only a few workloads")
    ap.add_argument("--write", dest="write", action="store_true", default=None,
                    help="write BENCHMARKS.md (the default, except with --quick)")
    ap.add_argument("--no-write", dest="write", action="store_false")
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--timeout", type=int, default=600, help="seconds one process may take")
    extra = shlex.split(os.environ.get("BENCH_ARGS", ""))
    args = ap.parse_args(sys.argv[1:] + extra)

    runs = args.runs or (3 if args.quick else 5)
    threads = [int(t) for t in (args.threads or "1,2").split(",")]
    write = (not args.quick) if args.write is None else args.write
    if args.only:   # from all the workloads, --quick or not
        workloads = [w for w in WORKLOADS if re.search(args.only, w[0])]
    else:
        workloads = [w for w in WORKLOADS if not args.quick or w[0] in QUICK]
    if not workloads:
        sys.exit("run.py: no workload matches")

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    bench_cnn = os.path.abspath(os.path.join(args.build, "bench_cnn"))
    peak_bin = os.path.abspath(os.path.join(args.build, "peak"))
    bench_torch = [sys.executable, os.path.join(here, "bench_torch.py")]
    for b in (bench_cnn, peak_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"run.py: {b} is missing; `make bench` builds it")

    py = " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)
    bench_args = f"BENCH_ARGS={shlex.quote(' '.join(extra))}" if extra else ""
    if os.environ.get("MAKELEVEL"):   # under make
        command = f"`make bench{' ' + bench_args if extra else ''}` (which runs `{py}`)"
    else:
        command = f"`{bench_args + ' ' if extra else ''}{py}`"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    started = datetime.datetime.now().astimezone()
    load0 = os.getloadavg()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log(f"run.py: machine peak ({peak_bin})")
    tlist = ",".join(map(str, threads))
    peak = run_json([peak_bin, "--threads", tlist], env, args.timeout)
    if "error" in peak:
        sys.exit(f"run.py: peak: {peak['error']}")
    cnn_info = run_json([bench_cnn, "--info"], env, 60)
    torch_info = run_json(bench_torch + ["--info"], env, 120)
    if "error" in torch_info:
        sys.exit(f"run.py: PyTorch: {torch_info['error']} (sh tools/install-deps.sh bench installs it)")
    if not torch_info.get("openblas"):
        # Debian's reference BLAS makes PyTorch's linear layers about 20 times slower: a comparison
        # against it is not honest, so there is none.
        libs = ", ".join(torch_info.get("blas_libs") or []) or "unknown"
        sys.exit(f"run.py: PyTorch's libblas.so.3 is not OpenBLAS ({libs}): the reference BLAS would make "
                 "PyTorch's linear layers about 20 times slower. Install libopenblas0-pthread "
                 "(sh tools/install-deps.sh bench, which `make bench` runs) and run again.")

    results = []   # (workload, threads, side, record)
    rows = []
    total = len(workloads) * len(threads)
    n = 0
    for w, metric, higher in workloads:
        for t in threads:
            n += 1
            log(f"run.py: [{n}/{total}] {w}, {t} thread{'s' if t > 1 else ''}, {runs} runs each")
            env_t = dict(env, OMP_NUM_THREADS=str(t))
            got = {"cnn": [], "torch": []}
            for _ in range(runs):
                for side, cmd in (("cnn", [bench_cnn]), ("torch", bench_torch)):
                    r = run_json(cmd + [w, "--threads", str(t), "--runs", "1"], env_t, args.timeout)
                    results.append({"workload": w, "threads": t, "side": side, **r})
                    got[side].append(r)
            rows.append((w, metric, higher, t, got))

    # The peak again at the end, in a full run: the better of the two measurements counts.
    if not args.quick:
        again = run_json([peak_bin, "--threads", tlist], env, args.timeout)
        for key in ("fma_gflops", "copy_gbs", "triad_gbs"):
            for t, v in again.get(key, {}).items():
                peak[key][t] = max(peak[key].get(t, 0), v)
    load1 = os.getloadavg()
    finished = datetime.datetime.now().astimezone()

    def med(recs, key):
        vals = [r[key] for r in recs if key in r]
        return statistics.median(vals) if vals else None

    table = [
        "| workload | shape | threads | unit | cnn | PyTorch | cnn/PyTorch speed | cnn GFLOP/s or GB/s | cnn % of peak | PyTorch GFLOP/s or GB/s | PyTorch % of peak |",
        "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    errors = []
    for w, metric, higher, t, got in rows:
        c, p = med(got["cnn"], metric), med(got["torch"], metric)
        for side in ("cnn", "torch"):
            for r in got[side]:
                if "error" in r:
                    errors.append(f"{w}, {t} threads, {side}: {r['error']}")
        ratio = "—"
        if c and p:
            ratio = f"{(c / p if higher else p / c):.2f}×"
        base = w.rsplit("_", 1)[0] if w.endswith(("_f", "_fb")) and not w.startswith("lenet") else w
        shape = SHAPES.get(base, "")
        if w.endswith("_f"):
            shape += ", forward"
        elif w.endswith("_fb"):
            shape += ", forward+backward"
        cells = ["", "", "", ""]
        ts = str(t)
        if w.startswith("conv_"):
            pk = peak["fma_gflops"].get(ts)
            for i, recs in enumerate((got["cnn"], got["torch"])):
                g = med(recs, "gflops")
                if g is not None:
                    cells[2 * i] = f"{g:.1f} GFLOP/s"
                    cells[2 * i + 1] = f"{100 * g / pk:.0f}%" if pk else "—"
        elif w in TRAFFIC:
            bw = max(peak["triad_gbs"].get(ts, 0), peak["copy_gbs"].get(ts, 0))
            for i, ms in enumerate((c, p)):
                if ms:
                    gbs = TRAFFIC[w] / (ms * 1e-3) / 1e9
                    cells[2 * i] = f"{gbs:.1f} GB/s"
                    cells[2 * i + 1] = f"{100 * gbs / bw:.0f}%" if bw else "—"
        table.append(f"| {w} | {shape} | {t} | {UNITS[metric]} | {fmt(c, metric)} | {fmt(p, metric)} | {ratio} | "
                     + " | ".join(x or "—" for x in cells) + " |")

    # The run-to-run spread, max/min − 1 of each side's runs, to tell how noisy the machine was.
    spread = {}
    for w, metric, higher, t, got in rows:
        for side in ("cnn", "torch"):
            vals = [r[metric] for r in got[side] if metric in r]
            if len(vals) > 1 and min(vals) > 0:
                s_ = max(vals) / min(vals) - 1
                if s_ > spread.get(side, (0, ""))[0]:
                    spread[side] = (s_, f"{w}, {t} thread{'s' if t > 1 else ''}")

    cpu, isa = cpu_info()
    forced = openblas_coretype_forced()
    ob = torch_info.get("openblas") or {}
    peak_line = ", ".join(f"{peak['fma_gflops'][str(t)]:.0f} GFLOP/s on {t} thread{'s' if t > 1 else ''}"
                          for t in threads if str(t) in peak["fma_gflops"])
    bw_line = ", ".join(f"triad {peak['triad_gbs'][str(t)]:.1f} GB/s and copy {peak['copy_gbs'][str(t)]:.1f} GB/s "
                        f"on {t} thread{'s' if t > 1 else ''}" for t in threads if str(t) in peak["triad_gbs"])
    git = sh(["git", "-C", root, "describe", "--always", "--dirty"])
    info = [
        f"- **Command:** {command}" + ("  — **quick smoke run, not for quoting**" if args.quick else ""),
        f"- **Date:** {started:%Y-%m-%d %H:%M %Z} to {finished:%H:%M}; source {git or 'unknown'}",
        f"- **CPU:** {cpu}, {os.cpu_count()} logical CPUs, {', '.join(isa) or 'no AVX2/FMA'}; "
        f"kernel {platform.release()}",
        f"- **Load average:** {load0[0]:.2f} at the start, {load1[0]:.2f} at the end"
        + (" — the machine was busy; the figures are noisy" if max(load0[0], load1[0]) > 0.5 * (os.cpu_count() or 1) else ""),
        f"- **FP32 FMA peak** ({peak['isa']}, bench/peak.c): {peak_line}",
        f"- **Memory bandwidth** (bench/peak.c, 64 MiB arrays): {bw_line}",
        f"- **cnn:** GEMM micro-kernel `{cnn_info.get('gemm_kernel', '?')}`, gcc {cnn_info.get('compiler', '?')}",
        f"- **PyTorch:** {torch_info.get('torch')} (Debian python3-torch), oneDNN "
        f"{'on' if torch_info.get('mkldnn') else 'off'}, BLAS "
        + (f"{ob.get('config', '?')}, core type {ob.get('corename', '?')}" if ob
           else ", ".join(torch_info.get("blas_libs") or ["?"]))
        + "; `OPENBLAS_NUM_THREADS=1`, `torch.set_num_threads(T)`",
        "- **OPENBLAS_CORETYPE:** " + ("; ".join(forced) if forced else "not set: neither the environment nor "
                                        "/etc forces it, so OpenBLAS picks its kernels from the CPU"),
        f"- **Runs:** {runs} of each side per row, alternating cnn and PyTorch, each a fresh process; "
        "medians shown"
        + ("; the largest run-to-run spread (max/min − 1) was "
           + " and ".join(f"{spread[k][0] * 100:.0f}% for {name} ({spread[k][1]})"
                          for k, name in (("cnn", "cnn"), ("torch", "PyTorch")) if k in spread)
           if spread else ""),
    ]
    notes = [
        "cnn/PyTorch speed: above 1 means cnn is faster (images/s: cnn ÷ PyTorch; µs and ms: PyTorch ÷ cnn). "
        "% of peak: of the FMA peak for the convolutions (forward+backward counts 3× the forward flops: "
        "dX, dW and Y), of the memory bandwidth (the better of copy and triad) for pooling and relu, "
        "whose GB/s counts the least traffic "
        "(x and y forward; dy and dx backward, and relu reads x again), and for batch norm (x and y forward; "
        "x, dy and dx backward: a channel fits in cache) and add+relu (a, b and y forward; dy, y, da and db "
        "backward), at the row's thread count. cnn's add+relu adds its input to itself (a net has one input), "
        "PyTorch's two tensors. Peak memory: ru_maxrss of the whole process, PyTorch's interpreter and "
        "libraries included, after three training steps.",
    ]
    if errors:
        notes.append("Failed runs: " + "; ".join(errors))

    section = "\n".join(["## Results", "", *info, "", *table, "", *notes])
    print(section)
    json_path = os.path.join(args.build, "bench-results.json")
    with open(json_path, "w") as f:
        json.dump({"command": command, "started": started.isoformat(), "peak": peak, "cnn": cnn_info,
                   "torch": torch_info, "runs": results}, f, indent=1)
    log(f"run.py: raw results in {json_path}")

    if write:
        out = args.out if os.path.isabs(args.out) else os.path.join(root, args.out)
        block = f"{BEGIN}\n{section}\n{END}"
        try:
            with open(out) as f:
                old = f.read()
        except FileNotFoundError:
            old = "# Benchmarks\n\n"
        if BEGIN in old and END in old:
            head, rest = old.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            new = head + block + tail
        else:
            new = old.rstrip("\n") + "\n\n" + block + "\n"
        with open(out, "w") as f:
            f.write(new)
        log(f"run.py: wrote {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
