#!/usr/bin/env bash
# Continual and multi-task learning on SmolLM2-135M-Instruct, small runs (docs/generative.md,
# "Continual and multi-task learning"). Task A = sentiment as instructions (rotten-tomatoes),
# task B = closed-book QA (fanoutqa); 200 records each (160 train / 20 val / 20 test).
#   A          sentiment from the base, 16 steps of 8
#   B-seq      QA continuing A's adapter (no replay), 12 steps of 8
#   B-replay   QA continuing A's adapter, replaying 25% of A's training records (40)
#   B-sep      QA from the base (separate adapters: A keeps its own)
#   MT         one adapter on both tasks (temperature sampling, T=2), 28 steps = 16 + 12
# The per-task adapters of the multi-task comparison are A and B-sep: the same data settings,
# so the same test splits. Sized for a busy 2-core machine (about an hour there).
# Usage: bench/continual.sh OUT_DIR
set -euo pipefail
out=${1:?usage: bench/continual.sh OUT_DIR}
mkdir -p "$out"
common=(--set prepare.limit=200 --set evaluation.few_shot_k=0 --set evaluation.forgetting_text=null
        --set evaluation.generation_limit=10 --set evaluation.max_new_tokens=12
        --set tracking.enabled=false)
tunesmith config show --config examples/sentiment-smollm2-instruct.yaml "${common[@]}" \
  --set finetune.max_steps=16 --set finetune.eval_every=16 > "$out/sentiment.yaml"
tunesmith config show --config examples/qa-smollm2-lora.yaml "${common[@]}" \
  --set finetune.max_steps=12 --set finetune.eval_every=12 > "$out/qa.yaml"
t() { local name=$1; shift; local s=$SECONDS; "$@" > "$out/$name.log" 2>&1;
      echo "$name $((SECONDS - s)) s" >> "$out/times.txt"; }
t A tunesmith run --config "$out/sentiment.yaml" --out "$out/A" --no-progress
t B-seq tunesmith run --config "$out/qa.yaml" --continue-from "$out/A" --out "$out/B-seq" --no-progress
t B-replay tunesmith run --config "$out/qa.yaml" --continue-from "$out/A" \
  --set prepare.replay_fraction=0.25 --out "$out/B-replay" --no-progress
t B-sep tunesmith run --config "$out/qa.yaml" --out "$out/B-sep" --no-progress
# The first task's finetune section trains the shared adapter (sentiment's: lr 2e-3, batch 8).
t MT tunesmith multitask --task sentiment="$out/sentiment.yaml" --task qa="$out/qa.yaml" \
  --set finetune.max_steps=28 --set finetune.eval_every=28 --sampling temperature --temperature 2 \
  --out "$out/MT" --no-progress
