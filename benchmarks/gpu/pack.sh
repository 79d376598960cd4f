#!/usr/bin/env bash
# Builds the GPU-check binaries here (sm_90, Release) and packs them with the shared libraries they
# need that a CUDA image may lack (OpenBLAS, gfortran, libstdc++, ...: everything but glibc and the
# CUDA / cuDNN / NCCL libraries the device machine has) into one archive. A device machine that
# cannot build the project (no GTest, OpenBLAS or Google Benchmark there) runs the check from it:
#   benchmarks/gpu/pack.sh                       -> build-carry/gpu-check.tar.xz
#   then on the device: FLATFACE_GPU_CHECK_PREBUILT=build-carry/gpu-check.tar.xz benchmarks/gpu/run.sh
#   (carry build-carry; it must stay under the 64 MiB the device tool carries)
set -euo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${FLATFACE_GPU_CHECK_BUILD_DIR:-build-gpu}
OUTF=${1:-build-carry/gpu-check.tar.xz}
JOBS=${FLATFACE_JOBS:-2}
WANT="test_cuda test_engine test_models test_optim bench_cuda_kernels bench_step"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATFACE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 > /dev/null
help=$(cmake --build "$BUILD" --target help)
targets=()
for t in $WANT; do echo "$help" | grep -Eq "(^|[ .])$t(:|$)" && targets+=("$t"); done
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/gpu-check/bin" "$STAGE/gpu-check/lib"
for t in "${targets[@]}"; do
  for p in "$BUILD/tests/$t" "$BUILD/bin/$t"; do
    [ -x "$p" ] && cp "$p" "$STAGE/gpu-check/bin/" && strip --strip-unneeded "$STAGE/gpu-check/bin/$t" && break
  done
done
# Shared libraries the binaries load, less those every Linux has and those of the GPU stack.
skip='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libcuda|libcublas|libcublasLt|libcudnn.*|libnccl|libnvrtc.*|libnvJitLink)\.so'
for b in "$STAGE"/gpu-check/bin/*; do
  ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  basename "$lib" | grep -Eq "$skip" || cp -L "$lib" "$STAGE/gpu-check/lib/"
done
git rev-parse HEAD > "$STAGE/gpu-check/COMMIT" 2> /dev/null || true
mkdir -p "$(dirname "$OUTF")"
tar -C "$STAGE" -cJf "$OUTF" gpu-check
(cd "$STAGE/gpu-check/bin" && echo "packed:" *)
(cd "$STAGE/gpu-check/lib" && echo "libs:  " *)
size=$(stat -c %s "$OUTF")
echo "$OUTF: $((size / 1024 / 1024)) MiB"
[ "$size" -lt $((60 * 1024 * 1024)) ] || { echo "too large to carry (limit 64 MiB with the tree)"; exit 1; }
