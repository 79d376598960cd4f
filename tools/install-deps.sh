#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of FlatFace from Debian packages.
# Idempotent and non-interactive; skips apt entirely when everything is already present.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git
  libopenblas-dev            # BLAS for CPU matmul / convolution GEMMs
  libgtest-dev libgmock-dev  # GoogleTest
  libbenchmark-dev           # Google Benchmark
  nlohmann-json3-dev         # JSON (metrics logs, safetensors headers)
  libcli11-dev               # command-line parsing of the tools
  libtomlplusplus-dev        # TOML configs (with comments)
  libturbojpeg0-dev libpng-dev  # image decoding / encoding
  python3-numpy              # tests read our .npy files back with numpy (/usr/bin/python3)
)
if [ "${FLATFACE_WITH_TORCH:-0}" = 1 ]; then
  PKGS+=(python3-torch)  # only for regenerating reference fixtures / PyTorch benchmarks
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
