#!/usr/bin/env bash
# GPU check: the plain Trainer + PEFT recipe (a) against tunesmith's loop and defaults (b) on CUDA,
# bf16 LoRA and QLoRA (bitsandbytes NF4), with real-token throughput and peak GPU memory.
#
# Nothing can be downloaded on the borrowed GPU machines, so the model is SmolLM2-135M's
# architecture built from its LlamaConfig with random weights, and the data are random token
# sequences of chat-like, varied lengths (half prompt, half response; only the response is
# learned). Speed and memory do not depend on what the weights or tokens mean; losses do, so
# this script reports no quality figure.
#
# Two steps:
#   1. here, with PyPI reachable:   bash bench/gpu_smoke.sh --prepare
#      builds .gpu-smoke/ (git-ignored through .git/info/exclude): cp312 wheels of pydantic
#      (tunesmith's config needs it; the GPU image lacks it) and a slim copy of bitsandbytes
#      (its Python files and the CUDA 13.0 library, about 5 MB instead of 125 MB).
#   2. on the GPU machine, from the repo root:   RESULTS_DIR=$OUT bash bench/gpu_smoke.sh
#      (with the device tool: carry [".gpu-smoke"]); copy $OUT/gpu_smoke.json and
#      $OUT/gpu_memory.json (the CUDA half of the memory table, bench/gpu_memory.py) to bench/results/.
# Before spending GPU minutes, `DRY_RUN=1 PYTHON=.venv/bin/python bash bench/gpu_smoke.sh` runs
# the same code here on CPU with a 2-layer model, 3 steps and no QLoRA (bitsandbytes' 4-bit
# training path needs CUDA for bf16), writing nothing.
# It takes about 3-5 minutes on one H100 (model builds, 2 x 4 training runs of 30 steps), and
# the memory table about 2-4 more (SMOKE_MEMORY=0 leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu-smoke

if [[ "${1:-}" == "--prepare" ]]; then
    PY=${PYTHON:-.venv/bin/python}
    mkdir -p "$KIT/wheels"
    grep -qx "/$KIT/" .git/info/exclude 2>/dev/null || echo "/$KIT/" >> .git/info/exclude
    pins=$("$PY" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in ("pydantic", "pydantic-core", "annotated-types", "typing-inspection")))')
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$KIT/wheels" $pins
    bnb=$("$PY" -c 'import importlib.util as u; print(u.find_spec("bitsandbytes").submodule_search_locations[0])')
    rm -rf "$KIT/bitsandbytes"
    (cd "$bnb" && find . -name '*.py' -o -name 'libbitsandbytes_cuda130.so') | while read -r f; do
        mkdir -p "$KIT/bitsandbytes/$(dirname "$f")"
        cp "$bnb/$f" "$KIT/bitsandbytes/$f"
    done
    du -sh "$KIT"
    exit 0
fi

SITE=/tmp/gpu-smoke-site
PY=${PYTHON:-python3}  # the GPU image's python3 holds torch; here: PYTHON=.venv/bin/python
if [[ -d $KIT && "${DRY_RUN:-0}" != 1 ]]; then  # the kit is for the GPU image's Python 3.12
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$KIT"/wheels/*.whl
    cp -r "$KIT/bitsandbytes" "$SITE/"
fi
export PYTHONPATH="$PWD/src:$SITE:${PYTHONPATH:-}"
export RESULTS_DIR="${RESULTS_DIR:-bench/results}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$RESULTS_DIR"

"$PY" - <<'PY'
import gc, json, os, platform, statistics, time

import torch
import transformers
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

from tunesmith.config import FinetuneConfig
from tunesmith.methods import apply_method
from tunesmith.train.objectives import CausalLMObjective
from tunesmith.train.encoding import EncodedDataset, collate
from tunesmith.train.packing import collate_with_positions, pack, plan_packing
from tunesmith.train.loop import fit

DRY = os.environ.get("DRY_RUN") == "1"
assert DRY or torch.cuda.is_available(), "this check needs a CUDA GPU (DRY_RUN=1 tries it on CPU)"
STEPS, BATCH, MAX_LEN, LR, ROUNDS, PAD = (3, 4, 128, 2e-4, 1, 2) if DRY else (30, 16, 1024, 2e-4, 2, 2)
DEVICE = "cpu" if DRY else "cuda"
# SmolLM2-135M-Instruct's architecture (its config.json), random weights.
SMOLLM2 = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                      num_hidden_layers=2 if DRY else 30,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                      rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                      bos_token_id=1, eos_token_id=2, pad_token_id=PAD)
RANDOM_DIR = "/tmp/smollm2-random"  # 4-bit loading goes through from_pretrained


def chat_like_examples(n=200 if DRY else 4000, seed=0):
    """Lengths log-normal around 150 tokens (24..1024), like chat turns; the second half is learned."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.empty(n).log_normal_(5.0, 0.7, generator=g).clamp(24, MAX_LEN).long().tolist()
    out = []
    for length in lengths:
        ids = torch.randint(3, SMOLLM2.vocab_size, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * (length // 2) + ids[length // 2:]})
    return out


def base_model(quantized):
    torch.manual_seed(0)
    if not quantized:  # fp32 weights; both sides train under bf16 autocast
        return LlamaForCausalLM(SMOLLM2).to(DEVICE)
    from tunesmith.methods.qlora import bnb_config

    if not os.path.isdir(RANDOM_DIR):
        LlamaForCausalLM(SMOLLM2).save_pretrained(RANDOM_DIR)
    return LlamaForCausalLM.from_pretrained(RANDOM_DIR, quantization_config=bnb_config("bfloat16"),
                                            device_map={"": 0})


def synchronize():
    if not DRY:
        torch.cuda.synchronize()


class Timer(TrainerCallback):
    def on_train_begin(self, args, state, control, **kw):
        synchronize()
        self.t = time.perf_counter()

    def on_train_end(self, args, state, control, **kw):
        synchronize()
        self.seconds = time.perf_counter() - self.t


def plain(quantized, data):
    """The guide's recipe: Trainer + PEFT LoRA, random sampler, batches padded to their longest."""
    model = base_model(quantized)
    if quantized:
        model = prepare_model_for_kbit_training(model)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.05,
                                             target_modules=["q_proj", "v_proj"]))
    real = []

    def collate(features):  # what DataCollatorForSeq2Seq does (there is no tokenizer here)
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), PAD)
        labels = torch.full((len(features), width), -100)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
        real.append(int(mask.sum()))
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    timer = Timer()
    args = TrainingArguments(output_dir="/tmp/plain", per_device_train_batch_size=BATCH, learning_rate=LR,
                             max_steps=STEPS, warmup_steps=0.1, weight_decay=0.01, bf16=not DRY,
                             logging_steps=10, save_strategy="no", report_to="none", seed=42,
                             disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=data, data_collator=collate, callbacks=[timer]).train()
    return sum(real[:STEPS]) / timer.seconds, timer.seconds


def tunesmith(quantized, data):
    """tunesmith's defaults: length-grouped batches, packing when it pays, loss on labelled rows."""
    model = base_model(quantized)
    cfg = FinetuneConfig(method="qlora" if quantized else "lora", learning_rate=LR, batch_size=BATCH,
                         max_steps=STEPS, qlora_compute_dtype="bfloat16", precision="fp32" if DRY else "auto")
    model = apply_method(model, cfg, task="chat")
    lengths = [len(e["input_ids"]) for e in data]
    plan = plan_packing(lengths, BATCH, MAX_LEN, cfg.packing, grouped=cfg.group_by_length)
    rows = pack(data, MAX_LEN) if plan.enabled else data
    result = fit(model, EncodedDataset(rows, [len(r["input_ids"]) for r in rows]),
                 objective=CausalLMObjective(), cfg=cfg, pad_token_id=PAD, progress=False,
                 collate=collate_with_positions if plan.enabled else collate)
    return result.tokens_per_second, result.train_seconds


data = chat_like_examples()
results = {"device": "cpu (dry run)" if DRY else torch.cuda.get_device_name(0), "torch": torch.__version__,
           "transformers": transformers.__version__, "platform": platform.platform(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "settings": {"steps": STEPS, "batch_size": BATCH, "max_length": MAX_LEN, "rounds": ROUNDS,
                        "model": "SmolLM2-135M architecture, random weights", "precision": "bf16 autocast"},
           "cases": {}}
for quantized, case in ((False, "bf16-lora"), (True, "bf16-qlora-nf4"))[: 1 if DRY else 2]:
    runs = {"plain": [], "tunesmith": []}
    for _ in range(ROUNDS):  # a, b, a, b: drift on the machine hits both sides
        for side, runner in (("plain", plain), ("tunesmith", tunesmith)):
            gc.collect()
            if not DRY:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            tokens_per_second, seconds = runner(quantized, data)
            peak = 0.0 if DRY else torch.cuda.max_memory_allocated() / 2**20
            runs[side].append({"real_tokens_per_second": tokens_per_second, "train_seconds": seconds,
                               "peak_memory_mb": peak})
            print(f"{case} {side:<9}: {tokens_per_second:9.0f} real tokens/s, peak {peak:7.0f} MB", flush=True)
    summary = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} | {"runs": rs}
               for side, rs in runs.items()}
    a, b = summary["plain"], summary["tunesmith"]
    summary["ratios_b_over_a"] = {
        "real_tokens_per_second": round(b["real_tokens_per_second"] / a["real_tokens_per_second"], 3),
        "peak_memory_mb": round(b["peak_memory_mb"] / a["peak_memory_mb"], 3) if not DRY else None,
    }
    print(f"{case}: tunesmith / plain = {summary['ratios_b_over_a']}", flush=True)
    results["cases"][case] = summary
if DRY:
    print("dry run: the script works on CPU; nothing written")
else:
    path = os.path.join(os.environ["RESULTS_DIR"], "gpu_smoke.json")
    with open(path, "w") as fh:
        json.dump(results, fh, indent=2)
    print(f"wrote {path} ({results['device']})")
PY

# The CUDA half of the memory table (docs/performance.md): the training estimate against the
# peak allocated and reserved GPU memory, and the CUDA context, for bench/memory_run.py's grid.
if [[ "${SMOKE_MEMORY:-1}" != 0 ]]; then
    "$PY" bench/gpu_memory.py
fi
