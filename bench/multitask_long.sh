#!/usr/bin/env bash
# The multi-task run of bench/continual.sh with twice the steps (56 of 8): does the sentiment
# task learn to discriminate with more of the shared budget?
# Usage: bench/multitask_long.sh OUT_DIR   (after bench/continual.sh OUT_DIR)
set -euo pipefail
out=${1:?usage: bench/multitask_long.sh OUT_DIR}
s=$SECONDS
tunesmith multitask --task sentiment="$out/sentiment.yaml" --task qa="$out/qa.yaml" \
  --set finetune.max_steps=56 --set finetune.eval_every=56 --sampling temperature --temperature 2 \
  --out "$out/MT-56" --no-progress > "$out/MT-56.log" 2>&1
echo "MT-56 $((SECONDS - s)) s" >> "$out/times.txt"
