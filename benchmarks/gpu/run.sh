#!/usr/bin/env bash
# The one GPU check of FlatFace on a fresh NVIDIA machine (written for an H200 with CUDA 13 and 16
# cores): records the machine, builds the CUDA targets for sm_90, runs the CUDA tests and the CPU
# suites, the fused-kernel microbenchmarks, the end-to-end step benchmark when one exists, and the
# same steps in PyTorch when torch is importable; writes ONE markdown report with every stage's
# output, pass/fail counts and timings. Every stage runs under `timeout` inside one total budget
# (FLATFACE_GPU_CHECK_BUDGET seconds, default 470: under 8 minutes), so a hang costs only its stage.
#
#   benchmarks/gpu/run.sh                 report: $OUT/gpu_report.md when OUT is set, else
#                                         benchmarks/results/gpu_report-<UTC time>.md
# Environment:
#   FLATFACE_GPU_CHECK_BUILD=0    skip configure + build (use what is in the build folder)
#   FLATFACE_GPU_CHECK_BUILD_DIR  build folder (default build-gpu)
#   FLATFACE_GPU_CHECK_JOBS       build parallelism (default: nproc)
#   FLATFACE_GPU_CHECK_BUDGET     total seconds (default 470)
#   CUDNN_ROOT / NCCL_ROOT        folders holding include/ and lib/ of cuDNN / NCCL; when unset and the
#                                 toolkit lacks them, found in python site-packages (nvidia/...)
#   FLATFACE_GPU_CHECK_PREBUILT   an archive from benchmarks/gpu/pack.sh (binaries built elsewhere with
#                                 their libraries), for a machine that cannot build: used when its
#                                 test_cuda starts here, else the script builds as usual
# Without a GPU it says so at the top of the report, still builds what it can (nothing when nvcc is
# absent) and runs the CUDA tests to show that they skip.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
START=$(date +%s)
BUDGET=${FLATFACE_GPU_CHECK_BUDGET:-470}
RESERVE=8  # seconds kept for writing the report
JOBS=${FLATFACE_GPU_CHECK_JOBS:-$(nproc)}
BUILD=${FLATFACE_GPU_CHECK_BUILD_DIR:-build-gpu}
DO_BUILD=${FLATFACE_GPU_CHECK_BUILD:-1}
STAMP=$(date -u +%Y%m%d-%H%M%S)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# ---- where things go ----
HAVE_GPU=0
if command -v nvidia-smi > /dev/null 2>&1 && timeout 20 nvidia-smi -L 2> /dev/null | grep -q '^GPU '; then HAVE_GPU=1; fi
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  REPORT=$OUT/gpu_report.md
  LOGDIR=$OUT/gpu_logs
else
  mkdir -p benchmarks/results
  suffix=$([ $HAVE_GPU = 1 ] && echo "" || echo "-NO-GPU")
  REPORT=benchmarks/results/gpu_report-$STAMP$suffix.md
  LOGDIR=benchmarks/results/gpu_logs-$STAMP$suffix
fi
mkdir -p "$LOGDIR"
SUMMARY=$WORK/summary.md
SECTIONS=$WORK/sections.md
: > "$SUMMARY"
: > "$SECTIONS"

elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((BUDGET - $(elapsed) - RESERVE)); }

# gtest counts of a log: "passed P, failed F, skipped S" (empty when the log has none).
gtest_counts() {
  local p f s
  p=$(grep -Eo '^\[  PASSED  \] [0-9]+' "$1" | grep -Eo '[0-9]+$' | tail -1)
  f=$(grep -Eo '^\[  FAILED  \] [0-9]+ test' "$1" | grep -Eo '[0-9]+' | tail -1)
  s=$(grep -Eo '^\[  SKIPPED \] [0-9]+ test' "$1" | grep -Eo '[0-9]+' | tail -1)
  [ -n "$p$f$s" ] && echo "passed ${p:-0}, failed ${f:-0}, skipped ${s:-0}"
}

# The output of a log for the report: all of it when short, else its head, every failure line, and
# its tail (the full log stays in $LOGDIR).
excerpt() {
  local log=$1 n
  n=$(wc -l < "$log")
  if [ "$n" -le 400 ]; then
    cat "$log"
  else
    head -n 40 "$log"
    echo "... ($n lines in all; full log: $(basename "$LOGDIR")/$(basename "$log"); failure lines, then the last 300:)"
    grep -n -E 'Failure|FAILED|[Ee]rror|error:|Aborted|Segmentation' "$log" | head -n 80
    echo "..."
    tail -n 300 "$log"
  fi
}

# record NAME STATUS SECONDS DETAIL: one summary row.
record() { echo "| $1 | $2 | $3 | $4 |" >> "$SUMMARY"; }

# section NAME TEXT...: a report section without a command.
section() {
  local name=$1
  shift
  { echo "## $name"; echo; printf '%s\n' "$@"; echo; } >> "$SECTIONS"
}

# stage NAME CAP CMD...: runs CMD under a timeout of min(CAP, time left), logs its output, and adds a
# summary row and a report section. Returns CMD's status (124: timed out; 125: not run, no time).
stage() {
  local name=$1 cap=$2
  shift 2
  local slug log t s rc dt status counts
  slug=$(echo "$name" | tr -c 'A-Za-z0-9_\n' '_')
  log=$LOGDIR/$slug.log
  t=$(left)
  if [ "$t" -lt 5 ]; then
    record "$name" "NOT RUN (time budget spent)" 0 ""
    section "$name" "Not run: the ${BUDGET}s budget was spent."
    return 125
  fi
  [ "$cap" -lt "$t" ] && t=$cap
  echo "== $name (limit ${t}s)"
  s=$(date +%s)
  if declare -F "$1" > /dev/null; then
    ("$@") > "$log" 2>&1  # a function of this script: its commands carry their own timeouts
  else
    timeout --kill-after=5 "$t" "$@" > "$log" 2>&1
  fi
  rc=$?
  dt=$(($(date +%s) - s))
  case $rc in
    0) status="ok" ;;
    124 | 137) status="TIMEOUT after ${t}s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  counts=$(gtest_counts "$log")
  record "$name" "$status" "$dt" "$counts"
  {
    echo "## $name"
    echo
    echo "\`$*\` — $status in ${dt}s${counts:+ — $counts}"
    echo
    echo '```'
    excerpt "$log"
    echo '```'
    echo
  } >> "$SECTIONS"
  echo "   $status in ${dt}s ${counts}"
  return $rc
}

# ---- 1. the machine ----
env_info() {
  echo "date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S')   host: $(hostname)   cores: $(nproc)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null) $(git -C "$ROOT" status --porcelain 2> /dev/null | wc -l) changed files"
  free -g 2> /dev/null | head -2
  if command -v nvidia-smi > /dev/null 2>&1; then
    timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu \
      --format=csv 2>&1
    timeout 20 nvidia-smi 2>&1 | head -n 25
  else
    echo "nvidia-smi: not found"
  fi
  if [ -n "$NVCC" ]; then "$NVCC" --version 2>&1 | tail -n 2; else echo "nvcc: not found"; fi
  cmake --version 2>&1 | head -1
  command -v ninja > /dev/null && echo "ninja $(ninja --version)"
  g++ --version 2>&1 | head -1
  timeout 60 python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1
  echo "CUDNN_ROOT=${CUDNN_ROOT:-} NCCL_ROOT=${NCCL_ROOT:-}"
}

# In python's site-packages (pip wheels under nvidia/): with `include`, the folder holding
# include/<name>.h and lib*/lib<name>.so*; with `lib`, the folder holding lib<name>.so*.
find_py_lib() {
  python3 - "$1" "${2:-include}" 2> /dev/null << 'EOF'
import glob, os, site, sys
name, kind = sys.argv[1], sys.argv[2]
dirs = []
try:
    dirs += site.getsitepackages() + [site.getusersitepackages()]
except Exception:
    pass
dirs += [p for p in sys.path if p.endswith("-packages")]
for sp in dict.fromkeys(dirs):
    if kind == "lib":
        for so in sorted(glob.glob(os.path.join(sp, "nvidia", "**", "lib" + name + ".so*"), recursive=True)):
            print(os.path.dirname(so))
            sys.exit(0)
        continue
    for h in sorted(glob.glob(os.path.join(sp, "nvidia", "**", "include", name + ".h"), recursive=True)):
        root = os.path.dirname(os.path.dirname(h))
        if glob.glob(os.path.join(root, "lib*", "lib" + name + ".so*")):
            print(root)
            sys.exit(0)
EOF
}

# In the toolkit or the system already?
have_header() { [ -f "$CUDA_HOME/include/$1.h" ] || [ -f "/usr/include/$1.h" ] || [ -f "/usr/include/x86_64-linux-gnu/$1.h" ]; }

NVCC=$(command -v nvcc 2> /dev/null || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
CUDA_HOME=${CUDA_HOME:-$([ -n "$NVCC" ] && dirname "$(dirname "$NVCC")" || echo /usr/local/cuda)}
for lib in cudnn nccl; do
  var=$(echo "$lib" | tr '[:lower:]' '[:upper:]')_ROOT
  if [ -z "${!var:-}" ] && ! have_header "$lib"; then
    found=$(find_py_lib "$lib")
    [ -n "$found" ] && export "$var=$found"
  fi
  if [ -n "${!var:-}" ]; then
    for d in "${!var}/lib" "${!var}/lib64"; do [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; done
  fi
done

stage "machine" 60 env_info

if [ $HAVE_GPU = 0 ]; then
  section "NO GPU" "nvidia-smi lists no GPU on this machine: the CUDA tests skip and nothing is timed." \
    "This report is a rehearsal of the script, not a GPU result."
fi

# test_tools runs the tool binaries end to end (flatface-train on the GPU: train.device is auto).
TOOLS="flatface-train flatface-synth flatface-eval flatface-embed flatface-pack flatface-sharpness"
WANT="test_cuda test_engine test_models test_optim bench_cuda_kernels bench_step test_tools $TOOLS"
BUILT=""

# ---- 2a. prebuilt binaries (benchmarks/gpu/pack.sh), when given and they start here ----
USE_PREBUILT=0
PREBUILT=${FLATFACE_GPU_CHECK_PREBUILT:-}
if [ -n "$PREBUILT" ]; then
  pdir=$WORK/prebuilt
  mkdir -p "$pdir" "$WORK/wrap"
  if [ -f "$PREBUILT" ]; then tar -xJf "$PREBUILT" -C "$pdir"; else cp -r "$PREBUILT"/. "$pdir"/; fi
  libpath=$pdir/gpu-check/lib
  for d in "$CUDA_HOME/lib64" "$CUDA_HOME/lib"; do [ -d "$d" ] && libpath=$libpath:$d; done
  [ -f "$CUDA_HOME/lib64/libcublas.so.13" ] || [ -f "$CUDA_HOME/lib/libcublas.so.13" ] ||
    libpath=$libpath:$(find_py_lib cublas lib)
  # Each binary behind a wrapper that sets its library path (not exported: python must not see it).
  for b in "$pdir"/gpu-check/bin/*; do
    [ -x "$b" ] || continue
    # shellcheck disable=SC2016  # expanded by the wrapper when it runs
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec %s "$@"\n' "$libpath" "$b" \
      > "$WORK/wrap/$(basename "$b")"
    chmod +x "$WORK/wrap/$(basename "$b")"
  done
  if [ -x "$WORK/wrap/test_cuda" ] && timeout 60 "$WORK/wrap/test_cuda" --gtest_list_tests > "$LOGDIR/prebuilt.log" 2>&1; then
    USE_PREBUILT=1
    section "prebuilt binaries" "Using $PREBUILT (commit $(cat "$pdir/gpu-check/COMMIT" 2> /dev/null)); no build here."
  else
    section "prebuilt binaries" "$PREBUILT: its test_cuda does not start here, so building instead:" '```' \
      "$(tail -n 20 "$LOGDIR/prebuilt.log" 2> /dev/null)" '```'
  fi
fi

# ---- 2b. configure and build ----
if [ $USE_PREBUILT = 1 ]; then
  :
elif [ "$DO_BUILD" = 0 ]; then
  section "build" "Skipped (FLATFACE_GPU_CHECK_BUILD=0): using whatever is in $BUILD."
elif [ -z "$NVCC" ]; then
  section "build" "Skipped: nvcc not found (no CUDA toolkit), so there is no CUDA build to check."
  record "build" "SKIPPED (no nvcc)" 0 ""
else
  GEN=$(command -v ninja > /dev/null && echo "-G Ninja" || echo "")
  # shellcheck disable=SC2086
  if stage "configure" 120 cmake -S . -B "$BUILD" $GEN -DCMAKE_BUILD_TYPE=Release -DFLATFACE_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$NVCC" \
    ${CUDNN_ROOT:+-DCUDNN_ROOT=$CUDNN_ROOT} ${NCCL_ROOT:+-DNCCL_ROOT=$NCCL_ROOT}; then
    targets=""
    help=$(cmake --build "$BUILD" --target help 2> /dev/null)
    for t in $WANT; do
      echo "$help" | grep -Eq "(^|[ .])$t(:|$)" && targets="$targets $t"
    done
    section "targets" "Wanted: $WANT" "Present in this tree:$targets"
    # shellcheck disable=SC2086
    stage "build" 400 cmake --build "$BUILD" -j "$JOBS" --target $targets
  fi
fi
for t in $WANT; do
  prebuilt=$([ $USE_PREBUILT = 1 ] && echo "$WORK/wrap/$t")
  for p in $prebuilt "$BUILD/tests/$t" "$BUILD/bin/$t" "$BUILD/$t"; do
    [ -x "$p" ] && BUILT="$BUILT $t" && eval "BIN_${t//-/_}=$p" && break
  done
done
bin() { eval "echo \${BIN_${1//-/_}:-}"; }

# ---- 3. tests: the CUDA suite first (what this script exists for), the CPU suites last ----
if [ -n "$(bin test_cuda)" ]; then
  FLATFACE_CUDA_SYNC=1 stage "test_cuda" 150 "$(bin test_cuda)" --gtest_color=no
else
  record "test_cuda" "NOT BUILT" 0 ""
fi

# ---- 4. microbenchmarks and steps (GPU only) ----
if [ $HAVE_GPU = 1 ]; then
  if [ -n "$(bin bench_cuda_kernels)" ]; then
    stage "bench_cuda_kernels" 150 "$(bin bench_cuda_kernels)"
  else
    record "bench_cuda_kernels" "NOT BUILT" 0 ""
  fi
  if [ -n "$(bin bench_step)" ]; then
    stage "bench_step (ours: iResNet-50, batch 128, 112x112, 10k classes)" 120 "$(bin bench_step)" device=cuda \
      methods=sgd,flatface
  else
    record "bench_step" "NOT BUILT" 0 ""
  fi
  if python3 -c 'import torch' > /dev/null 2>&1; then
    stage "torch_step (PyTorch iResNet-50, batch 128, 112x112, 10k classes)" 150 \
      python3 benchmarks/gpu/torch_step.py --arch r50 --batch 128 --classes 10000
  else
    record "torch_step" "SKIPPED" 0 "python3 cannot import torch"
  fi
fi

# The tools' end-to-end suite finds its binaries by the build folder's path: not from a prebuilt bundle.
if [ $HAVE_GPU = 1 ] && [ $USE_PREBUILT = 0 ] && [ -n "$(bin test_tools)" ]; then
  stage "test_tools (end to end, training on the GPU)" 150 "$(bin test_tools)" --gtest_color=no
fi

for t in test_engine test_models test_optim; do
  if [ -n "$(bin $t)" ]; then
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} stage "$t (CPU)" 90 "$(bin $t)" --gtest_color=no --gtest_brief=1
  else
    record "$t (CPU)" "NOT BUILT" 0 ""
  fi
done

# ---- 5. the report: summary first, then every section ----
{
  echo "# FlatFace GPU check — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  if [ $HAVE_GPU = 1 ]; then
    echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2> /dev/null | head -1)"
  else
    echo "**NO GPU on this machine** (nvidia-smi lists none): a rehearsal of the script, not a GPU result."
  fi
  echo
  echo "Total $(elapsed)s of a ${BUDGET}s budget; binaries from $([ $USE_PREBUILT = 1 ] && echo "$PREBUILT" || echo "$BUILD"):${BUILT:- none}; logs in $(basename "$LOGDIR")/."
  echo
  echo "| stage | status | seconds | tests |"
  echo "|---|---|---:|---|"
  cat "$SUMMARY"
  echo
  cat "$SECTIONS"
} > "$REPORT"
echo
cat "$SUMMARY"
echo "report: $REPORT ($(elapsed)s)"
