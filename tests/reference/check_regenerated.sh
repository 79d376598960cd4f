#!/usr/bin/env bash
# Regenerates the PyTorch reference fixtures into a temporary folder, compares them with the
# committed ones (same tensors; worst difference relative to each tensor's largest value, and the
# float64 results to within last-bit rounding), and runs the reference test on the regenerated
# files. Needs Debian's python3-torch (FLATFACE_WITH_TORCH=1 tools/install-deps.sh) and a build.
#   tests/reference/check_regenerated.sh [build dir]     (default: build)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
/usr/bin/python3 tests/reference/make_reference.py "$OUT" > "$OUT/make.log"
/usr/bin/python3 - "$OUT" << 'PY'
import json, os, struct, sys
import numpy as np

def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    kinds = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
    return {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                             dtype=kinds[v["dtype"]]).reshape(v["shape"]) for k, v in header.items()}

here, out = "tests/reference", sys.argv[1]
bad = 0
for f in sorted(x for x in os.listdir(here) if x.endswith(".safetensors")):
    a, b = load(os.path.join(here, f)), load(os.path.join(out, f))
    if set(a) != set(b):
        print(f"{f}: tensor names differ: {sorted(set(a) ^ set(b))}")
        bad += 1
        continue
    # Relative to the largest value of the file's tensors of that kind, so tensors that are zero by
    # construction (a bias before training-mode BatchNorm) compare on the scale of their group.
    scale = max(float(np.abs(t.astype(np.float64)).max()) if t.size else 0.0 for t in a.values())
    # Reference values: stored f32 ones round at 6e-8, f64 ones agree far closer. PyTorch's own f32
    # results ("*torch_f32*", kept to show f32 rounding) move with the CPU's f32 kernels: 1e-4.
    worst, where, ok = 0.0, "", True
    for k in a:
        d = float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()) if a[k].size else 0.0
        rel = d / max(scale, 1e-300)
        ok &= rel <= (1e-4 if "torch_f32" in k else 1e-6)
        if rel > worst:
            worst, where = rel, k
    bad += not ok
    print(f"{f:38s} {len(a):4d} tensors  worst difference {worst:.2e} of the file's scale ({where or '-'})"
          f"{'' if ok else '  <- too large'}")
sys.exit(1 if bad else 0)
PY
FLATFACE_REFERENCE_DIR=$OUT "$BUILD/tests/test_models" --gtest_filter='Reference*' --gtest_brief=1
echo "check_regenerated: the regenerated fixtures match the committed ones and pass the reference test"
