#!/usr/bin/env bash
# bench/continual.sh's B-seq and B-replay again with another training seed (finetune.seed=1:
# another batch order, the same data and the same start), to see how much one seed decides.
# Usage: bench/continual_seed.sh OUT_DIR   (after bench/continual.sh OUT_DIR)
set -euo pipefail
out=${1:?usage: bench/continual_seed.sh OUT_DIR}
t() { local name=$1; shift; local s=$SECONDS; "$@" > "$out/$name.log" 2>&1;
      echo "$name $((SECONDS - s)) s" >> "$out/times.txt"; }
t B-replay-seed1 tunesmith run --config "$out/qa.yaml" --set finetune.seed=1 --continue-from "$out/A" \
  --set prepare.replay_fraction=0.25 --out "$out/B-replay-seed1" --no-progress
t B-seq-seed1 tunesmith run --config "$out/qa.yaml" --set finetune.seed=1 --continue-from "$out/A" \
  --out "$out/B-seq-seed1" --no-progress
