#!/usr/bin/python3
"""Why the 2-thread figures swing: the machine or the OpenMP runtime.

    /usr/bin/python3 bench/sched.py [--build build] [--runs 12] [--workload lenet_train_64] [--load]

Runs one workload many times, one process per run, on 1 and 2 threads, for cnn under each wait
policy of its OpenMP threads (cnn's: nothing set, so bench_cnn spins 10,000 rounds at a barrier,
src/base/omp_spin.h; libgomp's: its own default, 300,000 rounds, which is what cnn did before;
passive: sleep at once; active: spin) and for PyTorch, interleaved so that all see the same
machine; with --load, beside one busy process (another tenant, a build). For every run it
records the speed, and from the kernel:

  steal      the share of the machine's CPU time that the hypervisor gave to other guests while
             the run lasted (/proc/stat, the 8th column): time the run's threads could not run
             though Linux had them on a CPU;
  wait       the time the run's threads spent runnable but waiting for a CPU inside this guest
             (/proc/PID/task/*/schedstat, second field, summed over threads; sampled every
             20 ms): threads waiting for each other's CPU, or for another task of this guest;
  cpu        the CPU time of those threads (first field): spinning shows here;
  cs         involuntary context switches of the run (getrusage of the child).

It prints, per configuration, the median speed, the spread (max/min and the coefficient of
variation) and the medians of steal, wait and cs, and the correlation of speed with steal over all
2-thread runs: if the slow runs are the ones with steal, the machine is the cause; if spinning
policies are slower or wider than passive, it is the runtime.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[7]   # total jiffies (user..steal), steal


def task_stats(pid, seen):
    """Each thread's (cpu ns, run-queue wait ns) from /proc/PID/task/*/schedstat, into seen."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                cpu, wait, _ = (int(x) for x in f.read().split())
            seen[tid] = (cpu, wait)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass   # the process or a thread ended between the listing and the read


def one(cmd, env):
    t0, s0 = cpu_times()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    seen = {}
    while p.poll() is None:   # sampled every 20 ms: the last 20 ms of a run are missed
        task_stats(p.pid, seen)
        time.sleep(0.02)
    out, err = p.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    t1, s1 = cpu_times()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        sys.exit(f"sched.py: {' '.join(cmd)}: {err.strip()[-300:]}")
    row = json.loads(lines[-1])
    speed = row.get("images_per_s") or row.get("latency_us")
    return {"speed": speed, "steal": (s1 - s0) / max(t1 - t0, 1),
            "wait_ms": sum(w for _, w in seen.values()) / 1e6, "cpu_ms": sum(c for c, _ in seen.values()) / 1e6,
            "cs": after.ru_nivcsw - before.ru_nivcsw, "vcs": after.ru_nvcsw - before.ru_nvcsw}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--workload", default="lenet_train_64")
    ap.add_argument("--load", action="store_true", help="run a busy process on one CPU beside the runs")
    args = ap.parse_args()
    bench = os.path.abspath(os.path.join(args.build, "bench_cnn"))
    base = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    base.pop("OMP_WAIT_POLICY", None)
    base.pop("GOMP_SPINCOUNT", None)
    configs = []
    for t in (1, 2):
        for pol in ("cnn's", "libgomp's", "passive", "active"):
            env = dict(base)
            if pol == "libgomp's":
                env["GOMP_SPINCOUNT"] = "300000"   # what libgomp spins when nothing is set
            elif pol in ("passive", "active"):
                env["OMP_WAIT_POLICY"] = pol
            configs.append((f"cnn {pol}", t, [bench, args.workload, "--threads", str(t), "--runs", "1"], env))
        configs.append(("PyTorch", t, ["/usr/bin/python3", os.path.join(ROOT, "bench/bench_torch.py"),
                                       args.workload, "--threads", str(t), "--runs", "1"], dict(base)))
    recs = {i: [] for i in range(len(configs))}
    hog = None
    if args.load:   # one busy process beside the runs: what a shared machine does to them
        hog = subprocess.Popen(["/usr/bin/python3", "-c", "while True: pass"])
    for r in range(args.runs):
        for i, (_, _, cmd, env) in enumerate(configs):
            recs[i].append(one(cmd, env))
        print(f"sched.py: round {r + 1}/{args.runs} done", file=sys.stderr)
    if hog:
        hog.kill()
    unit = "images/s" if "train" in args.workload or "256" in args.workload else "µs"
    print(f"`/usr/bin/python3 bench/sched.py --runs {args.runs} --workload {args.workload}"
          f"{' --load' if args.load else ''}`, "
          f"{time.strftime('%Y-%m-%d')}, {args.runs} runs each, interleaved\n")
    print(f"| who | wait policy | threads | median {unit} | max/min | CV | steal (median, max) "
          f"| run-queue wait ms (median) | CPU ms (median) | involuntary / voluntary switches (median) |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for i, (name, t, _, _) in enumerate(configs):
        v = [x["speed"] for x in recs[i]]
        st = [x["steal"] for x in recs[i]]
        who, pol = (name.split(" ", 1) + [""])[:2]
        print(f"| {who} | {pol or '—'} | {t} | {statistics.median(v):,.0f} | {max(v) / min(v):.2f} | "
              f"{statistics.pstdev(v) / statistics.mean(v):.1%} | {statistics.median(st):.1%}, {max(st):.1%} | "
              f"{statistics.median(x['wait_ms'] for x in recs[i]):.1f} | "
              f"{statistics.median(x['cpu_ms'] for x in recs[i]):.0f} | "
              f"{statistics.median(x['cs'] for x in recs[i]):.0f} / {statistics.median(x['vcs'] for x in recs[i]):.0f} |")
    # Speed against steal over the 2-thread runs of each configuration, normalised by its median.
    xs, ys = [], []
    for i, (_, t, _, _) in enumerate(configs):
        if t != 2:
            continue
        m = statistics.median(x["speed"] for x in recs[i])
        for x in recs[i]:
            xs.append(x["steal"])
            ys.append(x["speed"] / m)
    if len(set(xs)) > 1 and len(set(ys)) > 1:
        print(f"\nCorrelation of speed (relative to its configuration's median) with steal, all 2-thread "
              f"runs: {statistics.correlation(xs, ys):+.2f} over {len(xs)} runs")


if __name__ == "__main__":
    main()
