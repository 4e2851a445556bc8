#!/usr/bin/env bash
# The continual pair of bench/continual.sh with 3x the task-B budget (36 steps of 8 instead of
# 12), so that forgetting has room to show: QA continuing task A's adapter, without and with
# replay of 25% of A's training records.
# Usage: bench/continual_long.sh OUT_DIR   (after bench/continual.sh OUT_DIR)
set -euo pipefail
out=${1:?usage: bench/continual_long.sh OUT_DIR}
t() { local name=$1; shift; local s=$SECONDS; "$@" > "$out/$name.log" 2>&1;
      echo "$name $((SECONDS - s)) s" >> "$out/times.txt"; }
long=(--set finetune.max_steps=36 --set finetune.eval_every=36)
t B-seq-36 tunesmith run --config "$out/qa.yaml" "${long[@]}" --continue-from "$out/A" \
  --out "$out/B-seq-36" --no-progress
t B-replay-36 tunesmith run --config "$out/qa.yaml" "${long[@]}" --continue-from "$out/A" \
  --set prepare.replay_fraction=0.25 --out "$out/B-replay-36" --no-progress
