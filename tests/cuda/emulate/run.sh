#!/usr/bin/env bash
# Runs tests/cuda/fused_test.cpp on the CPU against an emulation of the fused CUDA kernels: each CUDA
# thread a fiber, __syncthreads and warp shuffles barriers, blocks one after another, device memory
# host memory, cuBLAS OpenBLAS. It checks the kernels' logic (indexing, chunking, tables, reductions,
# tails, alignment of 16-byte accesses, guard regions) on a machine without a GPU. It cannot see
# races between blocks, the memory model, host pointers used on the device, GPU rounding (__expf,
# cuBLAS order, TF32) or speed: only a GPU run of test_cuda is the truth.
#   tests/cuda/emulate/run.sh [gtest args]      e.g. --gtest_filter=-CudaFusedMargin.LargeC (slow here)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=${FLATFACE_EMU_DIR:-$REPO/build-emu}
HERE=$REPO/tests/cuda/emulate
mkdir -p "$WORK/obj"
python3 "$HERE/transform.py" "$REPO" "$WORK/src"
FLAGS=(-std=c++20 -O2 -g -U_FORTIFY_SOURCE -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas -DFLATFACE_HAVE_CUDA=1
  -I"$HERE" -I"$WORK/src" -I"$REPO" -I/usr/include/x86_64-linux-gnu/openblas-pthread)
SRC=("$WORK"/src/kernels/cuda/*.cpp "$REPO"/kernels/cpu/{margin_softmax,gemm,perturb,sgd,adamw}.cpp
  "$REPO/tests/cuda/fused_test.cpp" "$HERE/emu.cpp")
objs=()
for f in "${SRC[@]}"; do  # always all of them (a minute): no stale object after a header change
  o=$WORK/obj/$(basename "$(dirname "$f")")_$(basename "$f").o
  objs+=("$o")
  g++ "${FLAGS[@]}" -c "$f" -o "$o" &
  while [ "$(jobs -r | wc -l)" -ge "${FLATFACE_JOBS:-2}" ]; do sleep 0.2; done
done
wait
g++ "${FLAGS[@]}" "${objs[@]}" -o "$WORK/emu_test" -lgtest -lgtest_main -lopenblas -lpthread
exec "$WORK/emu_test" "$@"
