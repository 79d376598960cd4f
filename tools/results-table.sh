#!/usr/bin/env bash
# Produces the README's results table: sgd, sam, asam and flatface on the synthetic benchmark,
# SEEDS seeds each, a rho sweep for flatface, and sgd at equal compute (twice the epochs, since
# the perturbation methods pay two passes a step). Prints a markdown table (mean ± std over seeds).
# Usage: tools/results-table.sh [build dir]   (env: SEEDS="0 1 2", RHOS="0.02 0.1 0.2", EPOCHS=4, DATA, RUNS)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build-main}/bin
SEEDS=${SEEDS:-0 1 2}
RHOS=${RHOS:-0.02 0.1 0.2}  # flatface rho sweep (the default rho 0.05 is the flatface row)
EPOCHS=${EPOCHS:-4}
DATA=${DATA:-runs/synth-data}
RUNS=${RUNS:-runs/results}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
[ -f "$DATA/synth.json" ] || "$BIN/flatface-synth" -o "$DATA" --identities 300 --images 16 --size 48 \
  --pairs-per-fold 60 --difficulty 0.5 --seed 7

run() {  # name seed extra-overrides...
  local name=$1 seed=$2; shift 2
  local out=$RUNS/$name/seed$seed
  if [ ! -f "$out/sharpness.json" ]; then
    echo "results-table: $(date +%H:%M:%S) training $name seed $seed" >&2
    rm -rf "$out"  # an unfinished run (no sharpness.json yet) starts again from scratch
    "$BIN/flatface-train" -c configs/synth.toml train.seed="$seed" train.output="$out" train.epochs="$EPOCHS" \
      data.train="$DATA/train.rec" data.val= --save "$out/model.safetensors" --quiet "$@"
    "$BIN/flatface-eval" -m "$out/model.safetensors" -b "$DATA/open_set.bin" -b "$DATA/open_set_hard.bin" \
      -b "$DATA/train_ids.bin" -b "$DATA/train_ids_hard.bin" --json "$out/eval.json" >/dev/null
    "$BIN/flatface-sharpness" -m "$out/model.safetensors" -d "$DATA/train.rec" --rho 0.05 --batches 4 \
      --json "$out/sharpness.json" >/dev/null
  fi
  echo "$out"
}

declare -A dirs
add() { dirs[$1]="${dirs[$1]:+${dirs[$1]},}$2"; }
# Every method over all seeds first, then the rho sweep: a run cut short still has the main rows.
for seed in $SEEDS; do
  for m in sgd sam asam flatface; do add "$m" "$(run "$m" "$seed" method.name=$m)"; done
  add "sgd-2x-epochs" "$(run sgd-2x "$seed" method.name=sgd train.epochs=$((2 * EPOCHS)))"
done
for seed in $SEEDS; do
  for rho in $RHOS; do add "flatface-rho$rho" "$(run "flatface-rho$rho" "$seed" method.name=flatface method.rho=$rho)"; done
done
args=()
for k in sgd sgd-2x-epochs sam asam flatface; do args+=("$k=${dirs[$k]}"); done
for rho in $RHOS; do args+=("flatface-rho$rho=${dirs[flatface-rho$rho]}"); done
"$BIN/flatface-compare" "${args[@]}"
