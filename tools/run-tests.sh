#!/usr/bin/env bash
# Installs dependencies, builds everything (CPU, and CUDA targets when nvcc is present) and runs
# the whole test suite. The README's test command and .ci/run both call this.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install-deps.sh
# OpenMP threads sleep instead of spinning while they wait (see tools/common/cli.h).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
BUILD=${FLATFACE_BUILD_DIR:-build}
JOBS=${FLATFACE_JOBS:-$(nproc)}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release ${FLATFACE_CMAKE_ARGS:-}
cmake --build "$BUILD" -j "$JOBS"
# Parser and file-format tests also run under AddressSanitizer + UBSan in their own build.
if [ "${FLATFACE_SKIP_SANITIZE:-0}" != 1 ] && [ -d tests/data ]; then
  cmake -S . -B "$BUILD-asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFLATFACE_SANITIZE=ON -DFLATFACE_CUDA=OFF \
    -DFLATFACE_BENCHMARKS=OFF
  cmake --build "$BUILD-asan" -j "$JOBS" --target test_data
fi
cd "$BUILD"
ctest --output-on-failure -j "$JOBS" --timeout 900
if [ -d "../$BUILD-asan" ] && [ -x "../$BUILD-asan/tests/test_data" ]; then
  echo "== parser tests under ASan/UBSan =="
  (cd "../$BUILD-asan" && ctest --output-on-failure -j "$JOBS" -L data --timeout 900)
fi
