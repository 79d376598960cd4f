#!/usr/bin/python3
"""PyTorch CPU timings of the benchmarks of bench_cpu_ops, by name (the names encode the shapes).

Usage: /usr/bin/python3 benchmarks/torch_cpu_ops.py --threads 2 NAME... > torch.json
Each benchmark: one warm-up call, then `--repetitions` runs of at least `--min-time` seconds;
the reported time is the best run's mean per call, in ms (the same policy cpu_ops_table.py
applies to Google Benchmark's repetitions)."""
import argparse
import json
import re
import sys
import time

import torch
import torch.nn.functional as F


def conv_fn(name):
    m = re.fullmatch(r"conv2d_(fwd|bwd_input|bwd_weight)/n(\d+)_cin(\d+)_h(\d+)_w(\d+)_cout(\d+)_k(\d+)_s(\d+)_p(\d+)_g(\d+)", name)
    if not m:
        return None
    p = m.group(1)
    n, cin, h, w, cout, k, s, pad, g = map(int, m.groups()[1:])
    x = torch.rand(n, cin, h, w) * 2 - 1
    wt = torch.rand(cout, cin // g, k, k) * 2 - 1
    y = F.conv2d(x, wt, None, s, pad, 1, g)
    dy = torch.rand_like(y) * 2 - 1
    if p == "fwd":
        return lambda: F.conv2d(x, wt, None, s, pad, 1, g)
    mask = [True, False, False] if p == "bwd_input" else [False, True, False]
    # The call autograd makes for conv2d's backward (oneDNN on CPU builds that have it).
    return lambda: torch.ops.aten.convolution_backward(dy, x, wt, None, [s, s], [pad, pad], [1, 1], False, [0, 0], g, mask)


def linear_fn(name):
    m = re.fullmatch(r"linear_(fwd|bwd_input|bwd_weight)/m(\d+)_k(\d+)_n(\d+)", name)
    if not m:
        return None
    p = m.group(1)
    mm, k, n = map(int, m.groups()[1:])
    x, w, dy = torch.rand(mm, k) * 2 - 1, torch.rand(n, k) * 2 - 1, torch.rand(mm, n) * 2 - 1
    if p == "fwd":
        return lambda: F.linear(x, w)
    if p == "bwd_input":
        return lambda: torch.mm(dy, w)
    return lambda: torch.mm(dy.t(), x)


def time_ms(fn, repetitions, min_time):
    fn()
    best = float("inf")
    for _ in range(repetitions):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time and calls >= 2:
                break
        best = min(best, elapsed / calls * 1e3)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("names", nargs="+")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = {}
    with torch.no_grad():
        for name in a.names:
            fn = conv_fn(name) or linear_fn(name)
            if fn is None:
                sys.exit(f"torch_cpu_ops: cannot parse benchmark name {name!r}")
            out[name] = time_ms(fn, a.repetitions, a.min_time)
            print(f"{name}: {out[name]:.2f} ms", file=sys.stderr)
    json.dump({"torch": torch.__version__, "threads": a.threads, "ms": out}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
