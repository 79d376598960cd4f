#!/usr/bin/env python3
"""PyTorch timing of the steps FlatFace is compared with: one SGD step and one FlatFace step
(gradient pass, global-norm perturbation of backbone + class centres, update pass without BatchNorm
statistics updates, restore, SGD) of iResNet-50 with an ArcFace head, batch 128, 112x112 inputs,
10,000 classes, float32. Self-contained (torch only). Prints a markdown table of median step times
(CUDA events, after warm-up) for cuDNN TF32 off (plain float32) and on (PyTorch's default for
convolutions). Run by benchmarks/gpu/run.sh; alone: python3 benchmarks/gpu/torch_step.py --help."""
import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """insightface's iResNet (arcface_torch/backbones/iresnet.py), 112x112 input."""

    def __init__(self, layers, embedding=512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        blocks, inplanes = [], 64
        for planes, n in zip((64, 128, 256, 512), layers):
            down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-5))
            stage = [IBasicBlock(inplanes, planes, 2, down)] + [IBasicBlock(planes, planes) for _ in range(n - 1)]
            blocks.append(nn.Sequential(*stage))
            inplanes = planes
        self.layers = nn.Sequential(*blocks)
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=1e-5)

    def forward(self, x):
        x = self.layers(self.prelu(self.bn1(self.conv1(x))))
        return self.features(self.fc(torch.flatten(self.bn2(x), 1)))


def arcface_loss(emb, centres, labels, s=64.0, m=0.5):
    cos = F.linear(F.normalize(emb), F.normalize(centres)).clamp(-1, 1)
    t = cos.gather(1, labels[:, None])
    psi = torch.where(t > math.cos(math.pi - m), torch.cos(torch.acos(t) + m), t - math.sin(math.pi - m) * m)
    return F.cross_entropy(s * cos.scatter(1, labels[:, None], psi), labels)


def copy_all(dst, src):
    if hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(dst, src)
    else:  # older torch
        for d, s in zip(dst, src):
            d.copy_(s)


def median_ms(step, warmup, steps, cuda):
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            step()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:  # --device cpu: only to check this script without a GPU
            t = time.perf_counter()
            step()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times), max(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="r50", choices=["r50", "r100"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rho", type=float, default=0.05)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of this script")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("torch_step: torch sees no CUDA device")
        return 0
    dev = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    where = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"torch {torch.__version__} on {where}, cuDNN {torch.backends.cudnn.version()}")
    layers = {"r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3)}[args.arch]
    torch.manual_seed(0)
    net = IResNet(layers).to(dev)
    centres = nn.Parameter(torch.randn(args.classes, 512, device=dev) * 0.01)
    params = list(net.parameters()) + [centres]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=True)
    x = torch.randn(args.batch, 3, 112, 112, device=dev)
    y = torch.randint(0, args.classes, (args.batch,), device=dev)
    saved = [p.detach().clone() for p in params]
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    print(f"{args.arch}: {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M backbone parameters, "
          f"{len(params)} tensors with the centres; batch {args.batch}, 112x112, {args.classes} classes")

    def sgd_step():
        arcface_loss(net(x), centres, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def flatface_step():
        arcface_loss(net(x), centres, y).backward()
        grads = [p.grad for p in params]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        scale = (args.rho / (norm + 1e-12)).item()
        copy_all(saved, [p.detach() for p in params])
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=scale)
        opt.zero_grad(set_to_none=True)
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.momentum = 0.0  # batch statistics, running statistics left alone
        arcface_loss(net(x), centres, y).backward()
        for m, mo in zip(bns, momenta):
            m.momentum = mo
        with torch.no_grad():
            copy_all(params, saved)
        opt.step()
        opt.zero_grad(set_to_none=True)

    rows = []
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        for name, step in (("sgd", sgd_step), ("flatface", flatface_step)):
            t0 = time.time()
            med, lo, hi = median_ms(step, args.warmup, args.steps, cuda)
            rows.append((name, "on" if tf32 else "off", med, lo, hi, args.batch * 1000.0 / med, time.time() - t0))
            print(f"  {name:9s} conv tf32 {'on ' if tf32 else 'off'}: {med:8.2f} ms/step", flush=True)
    print("\n| step | conv TF32 | median ms | min ms | max ms | images/s |\n|---|---|---:|---:|---:|---:|")
    for name, tf, med, lo, hi, ips, _ in rows:
        print(f"| torch {args.arch} {name} | {tf} | {med:.2f} | {lo:.2f} | {hi:.2f} | {ips:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
