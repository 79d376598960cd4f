#!/usr/bin/python3
"""One whole training step per method on the CPU in PyTorch, next to ours (bench_step), and the
table benchmarks/results/cpu_step.md.

The PyTorch step is the reference implementation of tests/reference/make_reference.py (iResNet as
FORMATS.md describes it, ArcFace with the exact margin gradient, the FLATFACE.md step with
torch.optim.SGD), run in float32: iResNet-50, batch 32, 112x112, 1,000 classes, the same presets
(sam rho 0.05, asam 0.5 adaptive, aace 0.2 unnormalised AACE loss, flatface 0.05 with the centres).

Usage:
  /usr/bin/python3 benchmarks/torch_cpu_step.py --threads 2 --bench build/bin/bench_step
  (--ours FILE reads bench_step's saved output instead of running it; --torch FILE reads this
  script's saved PyTorch results ("RESULT {json}" lines) instead of timing PyTorch again.)
Both sides: `--warmup` untimed steps, then `--iters` timed ones; the table gives the mean and the
best (least disturbed by other load) of the timed steps.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))

METHODS = ["sgd", "sam", "asam", "aace", "flatface"]
PERTURB_LOSS = {"aace": "aace"}  # the others perturb along the margin loss


def parse_results(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            out[r["method"]] = r
    return out


def time_torch(a):
    import torch
    import make_reference as ref

    torch.set_num_threads(a.threads)
    results = {}
    for method in a.methods:
        torch.manual_seed(7)
        model = ref.IResNet(a.arch, 1.0, a.size, 512)
        centres = (torch.randn(a.classes, 512) * 0.01).requires_grad_(True)
        x = torch.rand(a.batch, 3, a.size, a.size) * 2 - 1
        y = torch.tensor([(i * 7919) % a.classes for i in range(a.batch)])
        params = [p for p in model.parameters() if p.requires_grad] + [centres]
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
        wall, cpu = [], []
        for k in range(a.warmup + a.iters):
            t0, c0 = time.perf_counter(), time.process_time()
            first, second, _ = ref.train_step(model, centres, opt, x, y, method, PERTURB_LOSS.get(method, "margin"),
                                              ref.arcface())
            s, c = time.perf_counter() - t0, time.process_time() - c0
            print("  torch %-8s step %d: %.2f s, CPU %.2f s (loss %.3f%s)" % (
                method, k, s, c, second, ", warm-up" if k < a.warmup else ""), file=sys.stderr, flush=True)
            if k >= a.warmup:
                wall.append(s)
                cpu.append(c)
        results[method] = {"method": method, "seconds": wall, "cpu_seconds": cpu, "threads": torch.get_num_threads()}
        print("RESULT " + json.dumps(results[method]), flush=True)
    return results


def run_ours(a):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    cmd = [a.bench, "device=cpu", "methods=" + ",".join(a.methods), f"arch={a.arch}", f"batch={a.batch}",
           f"size={a.size}", f"classes={a.classes}", f"warmup={a.warmup}", f"iters={a.iters}"]
    proc = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    sys.stderr.write(proc.stdout)
    return parse_results(proc.stdout)


def write_table(a, ours, torch_r):
    def mean(r, key="seconds"):
        return sum(r[key]) / len(r[key])

    def cell(r):
        return "%.1f (%.1f), CPU %.1f" % (mean(r), min(r["seconds"]), mean(r, "cpu_seconds")) if r else "-"

    def ratio(x, y):
        if not x or not y:
            return "-"
        return "%.2f, CPU %.2f" % (mean(x) / mean(y), mean(x, "cpu_seconds") / mean(y, "cpu_seconds"))

    lines = [
        "# One training step on the CPU: ours vs PyTorch",
        "",
        f"{a.arch}, batch {a.batch}, {a.size}x{a.size}, {a.classes} classes, ArcFace (s 64, m 0.5), "
        f"f32, SGD momentum 0.9 and weight decay 5e-4, {a.threads} threads on both sides "
        f"(OMP_NUM_THREADS=OPENBLAS_NUM_THREADS={a.threads}; torch.set_num_threads({a.threads})). "
        f"{a.warmup} warm-up step(s), then {a.iters} timed. Cells: wall seconds per step, mean (best), and the "
        "process's CPU seconds per step (mean); ratios of the means, wall and CPU. PyTorch: torch 1.13 (Debian, "
        "oneDNN convolutions) running the reference step of tests/reference/make_reference.py. Ours: "
        "build/bin/bench_step (benchmarks/step.cpp). Written by benchmarks/torch_cpu_step.py.",
        "",
        "| method | ours s/step | PyTorch s/step | ours / PyTorch | ours / own sgd | PyTorch / own sgd |",
        "|---|---|---|---|---|---|",
    ]
    for m in a.methods:
        o, t = ours.get(m), torch_r.get(m)
        lines.append(f"| {m} | {cell(o)} | {cell(t)} | {ratio(o, t)} | {ratio(o, ours.get('sgd'))} | "
                     f"{ratio(t, torch_r.get('sgd'))} |")
    lines += ["", a.note, ""]
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--arch", default="r50")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--bench", help="bench_step binary to run for our side")
    p.add_argument("--ours", help="saved output of bench_step (instead of --bench)")
    p.add_argument("--torch", help="saved RESULT lines of this script (instead of timing PyTorch)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "cpu_step.md"))
    p.add_argument("--note", default="")
    a = p.parse_args()
    a.methods = a.methods.split(",")
    if a.torch:
        with open(a.torch) as f:
            torch_r = parse_results(f.read())
    else:
        torch_r = time_torch(a)
    if a.ours:
        with open(a.ours) as f:
            ours = parse_results(f.read())
    elif a.bench:
        ours = run_ours(a)
    else:
        return  # PyTorch timings only (RESULT lines on stdout)
    write_table(a, ours, torch_r)


if __name__ == "__main__":
    main()
