#!/usr/bin/env bash
# Continual learning on SmolLM2-135M-Instruct, small runs (docs/generative.md, "Continual and
# multi-task learning"): task A = sentiment as instructions, task B = FanOutQA.
#   A          sentiment from the base
#   B-seq      QA continuing A's adapter (no replay)
#   B-replay   QA continuing A's adapter, replaying 25% of A's training records
#   B-sep      QA from the base (separate adapters: A keeps its own)
# Usage: bench/continual.sh OUT_DIR   (about 20-40 min on 2 CPU cores; run it niced)
set -euo pipefail
out=${1:?usage: bench/continual.sh OUT_DIR}
mkdir -p "$out"
small=(--set prepare.limit=300 --set finetune.max_steps=30 --set finetune.eval_every=30
       --set evaluation.few_shot_k=0 --set evaluation.forgetting_text=null
       --set tracking.enabled=false --no-progress)
qa=(--config examples/qa-smollm2-lora.yaml --set evaluation.generation_limit=20
    --set evaluation.max_new_tokens=16)
t() { local name=$1; shift; local s=$SECONDS; tunesmith run "$@" --out "$out/$name" > "$out/$name.log" 2>&1;
      echo "$name $((SECONDS - s)) s" >> "$out/times.txt"; }
t A --config examples/sentiment-smollm2-instruct.yaml "${small[@]}"
t B-seq "${qa[@]}" "${small[@]}" --continue-from "$out/A"
t B-replay "${qa[@]}" "${small[@]}" --continue-from "$out/A" --set prepare.replay_fraction=0.25
t B-sep "${qa[@]}" "${small[@]}"
