#!/usr/bin/python3
"""PyTorch CPU timings of the benchmarks of bench_cpu_ops, by name (the names encode the shapes).

Usage: echo NAME | /usr/bin/python3 benchmarks/torch_cpu_ops.py --threads 2
Reads benchmark names from stdin, one per line, and answers each with one JSON line
{"name": ..., "ms": ...} as soon as it is measured (cpu_ops_table.py interleaves these with its
own runs so that both sides see the same load). A measurement: one warm-up call, then calls
until `--min-time` seconds have passed (at least two); the mean per call, in ms."""
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


def batchnorm_fn(name):
    m = re.fullmatch(r"batchnorm_(fwd|bwd)/n(\d+)_c(\d+)_h(\d+)_w(\d+)", name)
    if not m:
        return None
    n, c, h, w = map(int, m.groups()[1:])
    x = (torch.rand(n, c, h, w) * 2 - 1).requires_grad_(m.group(1) == "bwd")
    wt, b = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)
    rm, rv = torch.zeros(c), torch.ones(c)
    if m.group(1) == "fwd":
        return lambda: F.batch_norm(x, rm, rv, wt, b, True, 0.1, 1e-5)
    with torch.enable_grad():
        y = F.batch_norm(x, rm, rv, wt, b, True, 0.1, 1e-5)
    dy = torch.rand_like(y) * 2 - 1

    def backward():
        with torch.enable_grad():
            torch.autograd.grad(y, [x, wt, b], dy, retain_graph=True)
    return backward


def time_ms(fn, min_time):
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and calls >= 2:
            return elapsed / calls * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--min-time", type=float, default=0.5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    with torch.no_grad():
        for line in sys.stdin:
            name = line.strip()
            if not name:
                continue
            fn = conv_fn(name) or linear_fn(name) or batchnorm_fn(name)
            if fn is None:
                sys.exit(f"torch_cpu_ops: cannot parse benchmark name {name!r}")
            print(json.dumps({"name": name, "ms": time_ms(fn, a.min_time)}), flush=True)


if __name__ == "__main__":
    main()
