#!/usr/bin/python3
"""Writes the PyTorch reference fixtures that tests/models/reference_test.cpp compares the engine with.

Everything here is an independent PyTorch implementation written from the project's design docs
(/work/shared/design/FORMATS.md for the iResNet layout and names, FLATFACE.md for the margin losses
and the step), not from the engine's code. The engine is compared against it without PyTorch
at test time, so CI needs only the committed .safetensors files.

Fixtures (all in this folder):
  forward_backward.safetensors   iResNet-18 (width 1/8, 32x32, 32-d, 10 classes, batch 4): weights,
                                 a batch, embeddings, ArcFace loss, the gradient of every parameter
                                 and of the class centres, running statistics after the pass
                                 (training-mode BatchNorm).
  steps_init.safetensors         iResNet-18 (width 1/16, 32x32, 16-d, 10 classes): initial weights
                                 and class centres, three batches of 8.
  steps_<run>.safetensors        after three steps of <run> from steps_init: the weight change
                                 w3 - w0 ("delta.<name>"), the SGD momentum buffers
                                 ("momentum.<name>"), BatchNorm buffers, and per step the losses of
                                 both passes and the perturbation norm.
  r50_weights.safetensors        iResNet-50 (depths 3,4,14,3, width 1/16, 48x48, 32-d) state_dict
                                 as PyTorch holds it (f32, num_batches_tracked i64).
  r50_eval.safetensors           a batch and its eval-mode embeddings (computed in f64 from the f32
                                 weights, and PyTorch's own f32 result).

Precision: every weight and input is a float32 value (so both sides start from identical numbers in
f32 or f64), the reference computes in float64. Large outputs (gradients, weight changes, momentum
buffers) are stored rounded to float32 (relative rounding 6e-8, far below the tolerances); small
ones (embeddings, losses, BatchNorm statistics) in float64.

Run: /usr/bin/python3 tests/reference/make_reference.py [folder]   (default: this folder). On one
machine a rerun rewrites the files bit for bit (one thread, deterministic algorithms); another CPU
may round the float64 sums differently in the last bits. tests/reference/check_regenerated.sh
regenerates them elsewhere, compares, and runs the reference test on the regenerated files.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = HERE  # main() takes another folder as its argument (tests/reference/check_regenerated.sh)

# ---------------------------------------------------------------------------------------------
# safetensors writer (from the format: u64 header length, JSON header, raw little-endian data)

_ST_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}


def save_safetensors(path, tensors, metadata):
    """tensors: list of (name, tensor) in file order; metadata: dict of str -> str."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    chunks, offset = [], 0
    for name, t in tensors:
        t = t.detach().contiguous()
        arr = t.numpy()
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        assert name not in header, name
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    return os.path.getsize(path)


def f32(t):
    """The float32 storage of a float64 result (gradients, deltas: rounding 6e-8 relative)."""
    return t.detach().to(torch.float32)


# ---------------------------------------------------------------------------------------------
# iResNet as FORMATS.md describes it

class IBasicBlock(nn.Module):
    """BN -> conv3x3 s1 -> BN -> PReLU -> conv3x3 stride s -> BN, plus the shortcut; no activation after."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5, momentum=0.1)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1))

    def forward(self, x):
        y = self.conv1(self.bn1(x))
        y = self.prelu(self.bn2(y))
        y = self.bn3(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return y + shortcut


DEPTHS = {"r18": [2, 2, 2, 2], "r34": [3, 4, 6, 3], "r50": [3, 4, 14, 3]}


class IResNet(nn.Module):
    def __init__(self, arch, width, input_size, embedding_size):
        super().__init__()
        widths = [max(1, int(round(w * width))) for w in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=1e-5, momentum=0.1)
        self.prelu = nn.PReLU(widths[0])
        cin = widths[0]
        for k, depth in enumerate(DEPTHS[arch]):
            blocks = []
            for b in range(depth):
                blocks.append(IBasicBlock(cin, widths[k], 2 if b == 0 else 1))
                cin = widths[k]
            setattr(self, "layer%d" % (k + 1), nn.Sequential(*blocks))
        self.bn2 = nn.BatchNorm2d(widths[3], eps=1e-5, momentum=0.1)
        self.dropout = nn.Dropout(p=0.0)
        spatial = input_size // 16
        self.fc = nn.Linear(widths[3] * spatial * spatial, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5, momentum=0.1)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def batchnorms(model):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def randomize(model, gen):
    """Weights that make every tensor matter (no BN at identity, no PReLU at its default), rounded
    to float32 values."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0, math.sqrt(2.0 / fan_in), generator=gen)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0, 1.0 / math.sqrt(m.in_features), generator=gen)
                m.bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                if name != "features":  # features.weight stays fixed at 1
                    m.weight.uniform_(0.6, 1.4, generator=gen)
                m.bias.uniform_(-0.2, 0.2, generator=gen)
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.num_batches_tracked.fill_(5)
            elif isinstance(m, nn.PReLU):
                m.weight.uniform_(0.05, 0.4, generator=gen)
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.float().to(t.dtype))


def uniform_f32(shape, gen, lo=-1.0, hi=1.0):
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).float()


def class_batches(gen, n_batches, batch, size, classes):
    """Images of a class share a prototype (0.6 prototype + 0.4 noise), so embeddings cluster by class
    as real faces do and the softmax is not saturated for every row."""
    protos = uniform_f32((classes, 3, size, size), gen).double()
    out = []
    for _ in range(n_batches):
        y = torch.randint(0, classes, (batch,), generator=gen)
        x = (0.6 * protos[y] + 0.4 * uniform_f32((batch, 3, size, size), gen).double()).float()
        out.append((x, y))
    return out


def warm_centres(model, batches, gen, classes, emb_size):
    """Class centres pointing partly at their class's mean embedding (0.4 * unit mean + N(0, 0.1)):
    a model early in training, where some rows are confidently right and others not. Without this,
    s = 64 at random weights gives p_y < 1e-15 for every row, and the AACE gradient (about p_y times
    the margin gradient) would vanish below rounding."""
    import copy
    m = copy.deepcopy(model).double().train()
    with torch.no_grad():
        emb = torch.cat([F.normalize(m(x.double()), dim=1) for x, _ in batches])
        labels = torch.cat([y for _, y in batches])
        mean = torch.zeros(classes, emb_size, dtype=torch.float64).index_add_(0, labels, emb)
        noise = torch.randn(classes, emb_size, generator=gen, dtype=torch.float64) * 0.1
        return (0.4 * F.normalize(mean, dim=1) + noise).float()


def model_state(model):
    """state_dict in its order, as (name, tensor) pairs."""
    return list(model.state_dict().items())


# ---------------------------------------------------------------------------------------------
# Margin losses (FLATFACE.md)

def arcface(s=64.0, m2=0.5):
    return {"type": "arcface", "s": s, "m2": m2, "m3": 0.0}


def cosface(s=64.0, m3=0.4):
    return {"type": "cosface", "s": s, "m2": 0.0, "m3": m3}


def psi(c, margin):
    """Target-cosine margin, differentiated exactly by autograd."""
    if margin["type"] == "cosface":
        return c - margin["m3"]
    m = margin["m2"]
    # cos(acos(c) + m), and past acos(c) = pi - m the linear fallback c - sin(pi - m)*m
    return torch.where(c > math.cos(math.pi - m), torch.cos(torch.acos(c) + m),
                       c - math.sin(math.pi - m) * m)


def margin_logits(emb, centres, labels, margin):
    cos = F.normalize(emb, dim=1, eps=1e-12) @ F.normalize(centres, dim=1, eps=1e-12).t()
    rows = torch.arange(len(labels))
    target = psi(cos[rows, labels], margin)
    z = cos.index_put((rows, labels), target)
    return margin["s"] * z


def margin_loss(emb, centres, labels, margin, kind="margin"):
    z = margin_logits(emb, centres, labels, margin)
    if kind == "margin":
        return F.cross_entropy(z, labels)
    # AACE: p = softmax(z) taken as a constant, t_y = 0, t_j = p_j / sum_{k != y} p_k, and
    # L = KL(t || softmax z) = -log(1 - p_y) = softplus(z_y - logsumexp_{j != y} z_j).
    # dL/dz = softmax(z) - t, i.e. p_y for the target and -p_y * t_j elsewhere (t_j = softmax of the
    # non-target logits). Autograd of the KL form would subtract two nearly equal numbers when p_y is
    # small, so the gradient is fed in through a surrogate sum(c * z) with c = dL/dz computed directly.
    rows = torch.arange(len(labels))
    target = torch.zeros_like(z, dtype=torch.bool)
    target[rows, labels] = True
    z_y = z[rows, labels]
    lse_other = torch.logsumexp(z.masked_fill(target, -math.inf), dim=1)
    value = F.softplus(z_y - lse_other)
    with torch.no_grad():
        p_y = torch.exp(z_y - torch.logsumexp(z, dim=1))
        t = torch.exp(z - lse_other[:, None]).masked_fill(target, 0.0)
        c = torch.where(target, p_y[:, None].expand_as(z), -p_y[:, None] * t)
    surrogate = (c * z).sum(dim=1)
    return (value.detach() + surrogate - surrogate.detach()).mean()


# ---------------------------------------------------------------------------------------------
# The SAM-family step (FLATFACE.md, "One FlatFace step")

METHODS = {  # as PerturbConfig::preset documents the defaults; "perturbs" False = plain SGD
    "sgd": dict(perturbs=False, loss="margin"),
    "sam": dict(perturbs=True, rho=0.05, adaptive=False, normalize=True, loss="margin", head=False),
    "asam": dict(perturbs=True, rho=0.5, adaptive=True, normalize=True, loss="margin", head=False),
    "aace": dict(perturbs=True, rho=0.2, adaptive=False, normalize=False, loss="aace", head=False),
    "flatface": dict(perturbs=True, rho=0.05, adaptive=False, normalize=True, loss="margin", head=True),
}

# run name -> (method, perturbation loss, margin)
RUNS = {
    "sgd": ("sgd", "margin", "arcface"),
    "sam": ("sam", "margin", "arcface"),
    "asam": ("asam", "margin", "arcface"),
    "aace": ("aace", "aace", "arcface"),
    "flatface": ("flatface", "margin", "arcface"),
    "flatface_cosface": ("flatface", "margin", "cosface"),
    "flatface_aace": ("flatface", "aace", "arcface"),
}
# lr 0.01: at 0.1 the first step already ruins these tiny models (loss 21 -> 52) and the AACE
# perturbation then vanishes below rounding.
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


def bn_buffers(model):
    return [b for m in batchnorms(model) for b in (m.running_mean, m.running_var, m.num_batches_tracked)]


def train_step(model, centres, opt, x, y, method, perturb_loss, margin):
    """One step; returns (gradient-pass loss, update-pass loss, perturbation norm)."""
    cfg = dict(METHODS[method], loss=perturb_loss)
    backbone = [p for p in model.parameters() if p.requires_grad]
    params = backbone + [centres]
    model.train()
    opt.zero_grad(set_to_none=True)
    # 1. gradient pass: BatchNorm running statistics updated as usual
    first = margin_loss(model(x), centres, y, margin, cfg["loss"] if cfg["perturbs"] else "margin")
    first.backward()
    if not cfg["perturbs"]:
        opt.step()
        return first.item(), first.item(), 0.0
    # 2. perturbation: one global norm over exactly the perturbed tensors
    perturbed = backbone + ([centres] if cfg["head"] else [])
    with torch.no_grad():
        scaled = [(p.abs() * p.grad if cfg["adaptive"] else p.grad) for p in perturbed]
        norm = torch.sqrt(sum((s * s).sum() for s in scaled)).item()
        sign = -1.0 if cfg["loss"] == "aace" else 1.0
        scale = sign * cfg["rho"] / (norm + 1e-12 if cfg["normalize"] else 1.0)
        saved = [p.detach().clone() for p in perturbed]
        for p in perturbed:
            p.add_(scale * (p * p * p.grad if cfg["adaptive"] else p.grad))
    # 3. update pass at the perturbed point: batch statistics, running statistics left as they were
    opt.zero_grad(set_to_none=True)
    kept = [b.clone() for b in bn_buffers(model)]
    second = margin_loss(model(x), centres, y, margin, "margin")
    second.backward()
    with torch.no_grad():
        for b, k in zip(bn_buffers(model), kept):
            b.copy_(k)
        # 4. restore the exact saved weights
        for p, s in zip(perturbed, saved):
            p.copy_(s)
    # 5. base optimizer with the update-pass gradient
    opt.step()
    return first.item(), second.item(), norm


# ---------------------------------------------------------------------------------------------
# Fixtures

MARGINS = {"arcface": arcface(), "cosface": cosface()}


def config_metadata(arch, width, input_size, embedding_size, classes=None, batch=None):
    md = {"arch": arch, "width": repr(width), "input_size": str(input_size),
          "embedding_size": str(embedding_size), "written_by": "tests/reference/make_reference.py",
          "torch": torch.__version__}
    if classes is not None:
        md["num_classes"] = str(classes)
    if batch is not None:
        md["batch"] = str(batch)
    return md


def rel_err(a, b, floor=0.0):
    """|a - b| / max(|b|, floor) (Frobenius norms)."""
    return ((a.double() - b.double()).norm() / max(b.double().norm().item(), floor)).item()


def fixture_forward_backward():
    arch, width, size, emb_size, classes, batch = "r18", 0.125, 32, 32, 10, 4
    gen = torch.Generator().manual_seed(1001)
    model = IResNet(arch, width, size, emb_size)
    randomize(model, gen)
    [(x, y)] = class_batches(gen, 1, batch, size, classes)
    centres = warm_centres(model, [(x, y)], gen, classes, emb_size)
    before = [(n, t.clone()) for n, t in model_state(model)]

    def run(dtype):
        m = IResNet(arch, width, size, emb_size)
        m.load_state_dict(dict(before))
        m.to(dtype).train()
        w = centres.to(dtype).clone().requires_grad_(True)
        emb = m(x.to(dtype))
        loss = margin_loss(emb, w, y, MARGINS["arcface"])
        loss.backward()
        return m, w, emb, loss

    m64, w64, emb, loss = run(torch.float64)
    m32, w32, emb32, loss32 = run(torch.float32)
    # How far PyTorch's own f32 computation is from f64 (for the test's f32 tolerance).
    # Errors relative to max(|ref|, 1e-3 * the largest |ref| of the group), as the test measures them:
    # the biases feeding a training-mode BatchNorm have a gradient of exactly zero.
    g64 = [p.grad for p in m64.parameters() if p.requires_grad] + [w64.grad]
    g32 = [p.grad for p in m32.parameters() if p.requires_grad] + [w32.grad]
    floor = 1e-3 * max(g.norm().item() for g in g64)
    worst_torch_f32 = max(rel_err(a, b, floor) for a, b in zip(g32, g64))
    md = config_metadata(arch, width, size, emb_size, classes, batch)
    md.update(margin="arcface", s="64", m2="0.5",
              torch_f32_worst_grad_rel_err="%.3g" % worst_torch_f32,
              torch_f32_embedding_rel_err="%.3g" % rel_err(emb32, emb))
    tensors = list(before) + [("head.weight", centres), ("input.images", x), ("input.labels", y),
                              ("out.embeddings", emb.detach()), ("out.loss", loss.detach())]
    tensors += [("grad." + n, f32(p.grad)) for n, p in m64.named_parameters() if p.requires_grad]
    tensors.append(("grad.head.weight", f32(w64.grad)))
    for bn_name, bn in ((n, m) for n, m in m64.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        tensors.append(("after.%s.running_mean" % bn_name, bn.running_mean.detach().clone()))
        tensors.append(("after.%s.running_var" % bn_name, bn.running_var.detach().clone()))
        tensors.append(("after.%s.num_batches_tracked" % bn_name, bn.num_batches_tracked.clone()))
    size_b = save_safetensors(os.path.join(OUT, "forward_backward.safetensors"), tensors, md)
    print("forward_backward.safetensors: %d bytes, loss %.6f, PyTorch f32 vs f64: grads %.2e, embeddings %.2e"
          % (size_b, loss.item(), worst_torch_f32, rel_err(emb32, emb)))


def fixture_steps():
    arch, width, size, emb_size, classes, batch, steps = "r18", 0.0625, 32, 16, 10, 8, 3
    gen = torch.Generator().manual_seed(2002)
    model = IResNet(arch, width, size, emb_size)
    randomize(model, gen)
    batches = class_batches(gen, steps, batch, size, classes)
    centres = warm_centres(model, batches, gen, classes, emb_size)
    init = [(n, t.clone()) for n, t in model_state(model)]
    md = config_metadata(arch, width, size, emb_size, classes, batch)
    md.update(steps=str(steps), lr=repr(LR), momentum=repr(MOMENTUM), weight_decay=repr(WEIGHT_DECAY))
    tensors = list(init) + [("head.weight", centres)]
    for k, (x, y) in enumerate(batches):
        tensors += [("batch%d.images" % k, x), ("batch%d.labels" % k, y)]
    total = save_safetensors(os.path.join(OUT, "steps_init.safetensors"), tensors, md)
    print("steps_init.safetensors: %d bytes" % total)

    w0 = dict(init, **{"head.weight": centres})

    def run(dtype, method, perturb_loss, margin_name):
        m = IResNet(arch, width, size, emb_size)
        m.load_state_dict(dict(init))
        m.to(dtype)
        w = centres.to(dtype).clone().requires_grad_(True)
        names = [n for n, p in m.named_parameters() if p.requires_grad] + ["head.weight"]
        params = [p for p in m.parameters() if p.requires_grad] + [w]
        opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        record = [train_step(m, w, opt, x.to(dtype), y, method, perturb_loss, MARGINS[margin_name])
                  for x, y in batches]
        deltas = [(n, p.detach().double() - w0[n].double()) for n, p in zip(names, params)]
        momenta = [(n, opt.state[p]["momentum_buffer"].double()) for n, p in zip(names, params)]
        return m, deltas, momenta, record

    def worst(ours, ref):
        """The test's error measure (see fixture_forward_backward) over one group of tensors."""
        floor = 1e-3 * max(t.norm().item() for _, t in ref)
        return max(rel_err(a, b, floor) for (_, a), (_, b) in zip(ours, ref))

    for run_name, (method, perturb_loss, margin_name) in RUNS.items():
        m, deltas, momenta, record = run(torch.float64, method, perturb_loss, margin_name)
        # PyTorch's own f32 run of the same three steps, to size the test's f32 tolerance: rounding
        # is amplified by the steps (a sharp loss at s = 64), differently in each run.
        _, deltas32, momenta32, _ = run(torch.float32, method, perturb_loss, margin_name)
        out = []
        for (n, d), (_, mom) in zip(deltas, momenta):
            out += [("delta." + n, f32(d)), ("momentum." + n, f32(mom))]
        for n, t in model_state(m):
            if "running" in n or "num_batches" in n:
                out.append((n, t.clone()))
        out.append(("losses", torch.tensor([[a, b] for a, b, _ in record], dtype=torch.float64)))
        out.append(("grad_norm", torch.tensor([c for _, _, c in record], dtype=torch.float64)))
        md_run = dict(md, run=run_name, method=method, perturb_loss=perturb_loss, margin=margin_name,
                      s=repr(MARGINS[margin_name]["s"]), m2=repr(MARGINS[margin_name]["m2"]),
                      m3=repr(MARGINS[margin_name]["m3"]),
                      torch_f32_delta_err="%.3g" % worst(deltas32, deltas),
                      torch_f32_momentum_err="%.3g" % worst(momenta32, momenta))
        md_run.update({k: repr(v) for k, v in METHODS[method].items() if k not in ("loss",)})
        size_b = save_safetensors(os.path.join(OUT, "steps_%s.safetensors" % run_name), out, md_run)
        total += size_b
        print("steps_%s.safetensors: %d bytes, losses %s, PyTorch f32 vs f64: deltas %s, momenta %s" % (
            run_name, size_b, " ".join("%.4g/%.4g" % (a, b) for a, b, _ in record),
            md_run["torch_f32_delta_err"], md_run["torch_f32_momentum_err"]))
    print("steps fixtures: %d bytes in all" % total)


def fixture_r50():
    arch, width, size, emb_size, batch = "r50", 0.0625, 48, 32, 4
    gen = torch.Generator().manual_seed(3003)
    model = IResNet(arch, width, size, emb_size)
    randomize(model, gen)
    # Running statistics of a trained model: fold in the statistics of a few batches (no grad).
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(uniform_f32((16, 3, size, size), gen))
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.copy_(t.float())
    model.eval()
    state = model_state(model)
    size_w = save_safetensors(os.path.join(OUT, "r50_weights.safetensors"), state,
                              {"format": "pt", "written_by": "tests/reference/make_reference.py"})
    x = uniform_f32((batch, 3, size, size), gen)
    with torch.no_grad():
        emb32 = model(x)
        emb64 = model.double()(x.double())
    md = config_metadata(arch, width, size, emb_size, batch=batch)
    md.update(torch_f32_embedding_rel_err="%.3g" % rel_err(emb32, emb64))
    size_e = save_safetensors(os.path.join(OUT, "r50_eval.safetensors"),
                              [("input.images", x), ("out.embeddings", emb64), ("out.embeddings_torch_f32", emb32)],
                              md)
    print("r50_weights.safetensors: %d bytes (%d tensors), r50_eval.safetensors: %d bytes; "
          "PyTorch f32 vs f64 embeddings %.2e" % (size_w, len(state), size_e, rel_err(emb32, emb64)))


def main():
    global OUT
    if len(sys.argv) > 1:
        OUT = sys.argv[1]
        os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    fixture_forward_backward()
    fixture_steps()
    fixture_r50()


if __name__ == "__main__":
    main()
