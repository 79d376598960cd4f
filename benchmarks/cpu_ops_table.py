#!/usr/bin/python3
"""Runs bench_cpu_ops and benchmarks/torch_cpu_ops.py on the same shapes and thread count and
writes a side-by-side markdown table (default benchmarks/results/cpu_ops.md).

Usage: /usr/bin/python3 benchmarks/cpu_ops_table.py --bench build/bin/bench_cpu_ops --threads 2 \\
           [--filter REGEX] [--rounds 3] [--min-time 0.5] [--out benchmarks/results/cpu_ops.md]
The machine may be shared, so the two sides are interleaved benchmark by benchmark (ours, then
PyTorch's, for each row) and the whole sweep is repeated `--rounds` times; a row's time is the
best of its rounds (mean per call within a round of at least `--min-time` seconds): the least
disturbed measurement of each side. With --filter, rows already in the output file that the
filter does not select are kept, so that noisy rows can be re-run alone."""
import argparse
import json
import os
import re
import resource
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def list_ours(a):
    out = subprocess.run([a.bench, "--benchmark_list_tests", f"--benchmark_filter={a.filter}"], check=True,
                         capture_output=True, text=True).stdout
    return [n.removesuffix("/real_time") for n in out.split()]


# Wall and CPU seconds of our benchmark processes: their ratio is how many cores they really got.
USAGE = {"wall": 0.0, "cpu": 0.0}


def run_ours(a, name):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    cmd = [a.bench, "--benchmark_format=json", f"--benchmark_min_time={a.min_time}",
           f"--benchmark_filter=^{re.escape(name)}/real_time$"]
    res = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    USAGE["wall"] += time.perf_counter() - start
    USAGE["cpu"] += after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    (b,) = res["benchmarks"]
    assert b["time_unit"] == "ms", b
    return b["real_time"]


class Torch:
    def __init__(self, a):
        # OpenBLAS (PyTorch's BLAS here) takes its thread count from the environment.
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
        cmd = ["/usr/bin/python3", os.path.join(HERE, "torch_cpu_ops.py"), "--threads", str(a.threads),
               "--min-time", str(a.min_time)]
        self.p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = json.loads(self.p.stdout.readline())
        assert hello["threads"] == a.threads, hello
        self.version = hello["torch"]

    def time(self, name):
        self.p.stdin.write(name + "\n")
        self.p.stdin.flush()
        res = json.loads(self.p.stdout.readline())
        assert res["name"] == name, res
        return res["ms"]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def autogroup():
    try:
        return "on" if open("/proc/sys/kernel/sched_autogroup_enabled").read().strip() == "1" else "off"
    except OSError:
        return "unknown"


def describe(name):
    op, shape = name.split("/")
    m = re.fullmatch(r"n(\d+)_cin(\d+)_h(\d+)_w(\d+)_cout(\d+)_k(\d+)_s(\d+)_p(\d+)_g(\d+)", shape)
    if m:
        n, cin, h, w, cout, k, s, p, g = m.groups()
        return op, f"{n}x{cin}x{h}x{w} -> {cout}, {k}x{k} s{s} p{p}" + (f" g{g}" if g != "1" else "")
    m = re.fullmatch(r"n(\d+)_c(\d+)_h(\d+)_w(\d+)", shape)
    if m:
        return op, "x".join(m.groups()) + " (training mode)"
    mm, k, n = re.fullmatch(r"m(\d+)_k(\d+)_n(\d+)", shape).groups()
    return op, f"x {mm}x{k}, W {n}x{k}"


def read_rows(path):
    rows = {}
    if os.path.exists(path):
        for line in open(path):
            m = re.match(r"\| `([^`]+)` \|.*\| ([\d.]+) \| ([\d.]+) \| [\d.]+ \|$", line.strip())
            if m:
                rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build/bin/bench_cpu_ops")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--filter", default=".")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "cpu_ops.md"))
    a = ap.parse_args()

    names = list_ours(a)
    torch = Torch(a)
    loads = [os.getloadavg()[0]]
    best = {n: [float("inf"), float("inf")] for n in names}
    for r in range(a.rounds):
        for n in names:
            best[n][0] = min(best[n][0], run_ours(a, n))
            best[n][1] = min(best[n][1], torch.time(n))
            print(f"round {r + 1}: {n}: ours {best[n][0]:.2f} ms, PyTorch {best[n][1]:.2f} ms (best so far)", flush=True)
        loads.append(os.getloadavg()[0])
    torch.close()

    rows = read_rows(a.out) if a.filter != "." else {}
    # Keep the benchmark's order for the rows measured now; older rows keep their place.
    order = list(rows) + [n for n in names if n not in rows]
    rows.update({n: tuple(best[n]) for n in names})
    lines = [
        "# CPU ops: FlatFace vs PyTorch",
        "",
        f"Generated by `benchmarks/cpu_ops_table.py` on {time.strftime('%Y-%m-%d')}: {a.threads} threads on both sides "
        f"(FlatFace: `OMP_NUM_THREADS`; PyTorch {torch.version} from Debian: `torch.set_num_threads`, oneDNN "
        "convolutions, OpenBLAS matrix products). FlatFace: im2col + OpenBLAS GEMM, f32.",
        f"Time per call in ms: best of {a.rounds} rounds, each the mean over at least {a.min_time} s; the two sides "
        "are interleaved row by row. Ratio = ours / PyTorch (below 1: ours faster).",
        "",
        f"Load caveat: this machine ({os.cpu_count()} cores) is shared with other build and test jobs; the 1-minute "
        f"load average during the run went {' -> '.join(f'{l:.1f}' for l in loads)} (one value per round). "
        f"With Linux sched autogroup (here {autogroup()}) each session gets a fair share of the cores whatever its "
        f"thread count: our {a.threads}-thread benchmark processes got {USAGE['cpu'] / max(USAGE['wall'], 1e-9):.2f} "
        "cores on average (CPU time / wall time). The times therefore measure single-core efficiency plus the cost "
        "of synchronising threads that are not all running, more than parallel speed-up; rows may be off by tens "
        "of percent on either side.",
        "",
        "conv2d: batch 32 at the distinct convolutions of iResNet-50 on 112x112 faces; `bwd_input` / "
        "`bwd_weight` are the gradients of the input / weight (no bias). linear: `fwd` = x W^T, "
        "`bwd_input` = dy W, `bwd_weight` = dy^T x, for the fc layer (25088 -> 512) and a margin head "
        "(512 -> 10000 classes). batchnorm: training mode at the iResNet-50 feature-map shapes; `fwd` = "
        "statistics, running update and normalisation, `bwd` = gradients of input, weight and bias through "
        "autograd on both sides.",
        "",
        "| benchmark | op | shape | ours ms | PyTorch ms | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    for n in order:
        o, t = rows[n]
        op, shape = describe(n)
        lines.append(f"| `{n}` | {op} | {shape} | {o:.2f} | {t:.2f} | {o / t:.2f} |")
    total_o = sum(o for o, _ in rows.values())
    total_t = sum(t for _, t in rows.values())
    ratios = [o / t for o, t in rows.values()]
    lines += ["", f"Sum over all rows: ours {total_o:.0f} ms, PyTorch {total_t:.0f} ms, ratio {total_o / total_t:.2f}; "
              f"row ratios from {min(ratios):.2f} to {max(ratios):.2f}.", ""]
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
