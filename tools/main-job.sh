#!/usr/bin/env bash
# The main job: on a fresh machine with no data, set up, build, generate the synthetic face
# benchmark, train a small iResNet with FlatFace and with plain SGD on the same data and seed,
# evaluate both on open-set and training-identity pairs, measure sharpness, print a comparison.
# Sized for about 15 minutes on 2 CPU cores; FLATFACE_MAIN_SCALE=2 doubles the training.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
./tools/install-deps.sh

BUILD=${FLATFACE_BUILD_DIR:-build-main}
cuda=OFF
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then cuda=AUTO; fi
echo "== build ($BUILD, CUDA $cuda)"
mkdir -p runs
if ! cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATFACE_CUDA=$cuda -DFLATFACE_BENCHMARKS=OFF \
  >runs/configure.log 2>&1; then
  # A GPU machine whose toolkit lacks cuDNN still runs the main job, on the CPU.
  [ "$cuda" = OFF ] && { cat runs/configure.log; exit 1; }
  echo "note: the CUDA configure failed (runs/configure.log); building for the CPU instead"
  rm -rf "$BUILD"
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATFACE_CUDA=OFF -DFLATFACE_BENCHMARKS=OFF >/dev/null
fi
cmake --build "$BUILD" -j "$(nproc)" --target flatface-synth flatface-train flatface-eval flatface-sharpness \
  flatface-compare
BIN=$BUILD/bin

DATA=${FLATFACE_MAIN_DATA:-runs/synth-data}
SCALE=${FLATFACE_MAIN_SCALE:-1}
EPOCHS=$((4 * SCALE))
echo "== synthetic benchmark ($DATA)"
if [ ! -f "$DATA/synth.json" ]; then
  "$BIN/flatface-synth" -o "$DATA" --identities 300 --images 16 --size 48 --pairs-per-fold 60 --difficulty 0.5 \
    --seed 7
else
  echo "reusing $DATA (delete it to regenerate)"
fi

RUNS=${FLATFACE_MAIN_RUNS:-runs/main}
rm -rf "$RUNS"
for method in flatface sgd; do
  out=$RUNS/$method
  echo "== train: $method"
  "$BIN/flatface-train" -c configs/synth.toml method.name=$method train.output="$out" train.epochs=$EPOCHS \
    data.train="$DATA/train.rec" data.val= --save "$out/model.safetensors"
  echo "== evaluate: $method"
  "$BIN/flatface-eval" -m "$out/model.safetensors" -b "$DATA/open_set.bin" -b "$DATA/open_set_hard.bin" \
    -b "$DATA/train_ids.bin" -b "$DATA/train_ids_hard.bin" --json "$out/eval.json"
  echo "== sharpness: $method"
  "$BIN/flatface-sharpness" -m "$out/model.safetensors" -d "$DATA/train.rec" --rho 0.05 --batches 4 \
    --json "$out/sharpness.json"
done

echo
echo "== FlatFace vs SGD on the synthetic benchmark (same data, seed and steps; FlatFace costs two passes a step)"
"$BIN/flatface-compare" flatface="$RUNS/flatface" sgd="$RUNS/sgd"
echo
echo "main job finished in $(( $(date +%s) - start )) s; runs, metrics.jsonl and plots (*.svg) are in $RUNS/"
