"""Fold a LoRA/DoRA adapter into its base and save one standalone transformers model.

The merged model must behave like base + adapter: both run on a probe batch and the largest
absolute difference of their outputs is measured and reported (under 1e-4 in fp32 in tests).
QLoRA's base is 4-bit: its NF4 weights are dequantised first (to the compute dtype), the adapter
merged into those, and the model saved in that precision; the comparison is against the 4-bit
model with its adapter, i.e. what was trained. Bottleneck adapters refuse (they cannot merge),
and a fully finetuned run is saved as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import UsageError

MERGE_META = "tunesmith_merged.json"
# Short and long texts, so the probe batch has padding in it as served batches do.
PROBE_TEXTS = (
    "A quiet, beautifully acted film that stays with you.",
    "Dull.",
    "The plot wanders, the jokes land rarely, and the ending arrives long after you stopped caring.",
    "What is the capital of France?",
)


@dataclass(frozen=True)
class MergeResult:
    out_dir: Path
    method: str
    precision: str  # the dtype the weights were saved in, and where they came from
    max_abs_diff: float  # merged vs unmerged outputs on the probe batch
    size_bytes: int


def _probe_outputs(model: Any, tokenizer: Any) -> Any:
    import torch

    enc = tokenizer(list(PROBE_TEXTS), padding=True, return_tensors="pt")
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"].to(device),
                       attention_mask=enc["attention_mask"].to(device)).logits
    # Padded positions of a causal LM carry no meaning: compare real tokens only.
    if logits.dim() == 3:
        return logits[enc["attention_mask"].bool()].float().cpu()
    return logits.float().cpu()


def merge_adapter_dir(adapter: str | Path, out_dir: str | Path) -> MergeResult:
    """Merge the adapter in ``adapter`` (a saved adapter folder) into its base; save to ``out_dir``.

    Raises UsageError for bottleneck adapters and for an ``out_dir`` that already holds a model.
    """
    from tunesmith.methods import load_adapter, merge_adapter, read_adapter_meta
    from tunesmith.serve.base import load_base

    adapter = Path(adapter)
    meta = read_adapter_meta(adapter)
    method = meta["method"]
    if meta.get("format") == "bottleneck":
        # Say so before loading anything: merge_adapter's message, without the wait.
        raise UsageError(
            f"{adapter}: method '{method}' (bottleneck adapters) cannot be merged into the base "
            "weights: the adapters are extra layers in series (down-projection, non-linearity, "
            "up-projection), which no weight matrix of the base can absorb.",
            hint="Serve the base with its adapter (`tunesmith predict --run RUN`), or train with "
            "method lora or dora when you need one standalone model.",
        )
    out = Path(out_dir)
    if (out / "config.json").exists():
        raise UsageError(f"{out} already holds a model.", hint="Choose another --out or remove it.")

    reference = load_base(meta, directory=adapter)
    unmerged = load_adapter(reference.model, adapter).eval()
    expected = _probe_outputs(unmerged, reference.tokenizer)
    del unmerged, reference

    loaded = load_base(meta, dequantize=True, directory=adapter)
    merged: Any = merge_adapter(load_adapter(loaded.model, adapter)).eval()
    diff = float((_probe_outputs(merged, loaded.tokenizer) - expected).abs().max())

    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    # The head reads the pooling the base was trained with: keep saying so next to the weights.
    from tunesmith.models.heads import save_pooling

    save_pooling(merged, out)
    dtype = str(next(merged.parameters()).dtype).removeprefix("torch.")
    precision = f"{dtype} (dequantised from NF4 4-bit)" if method == "qlora" else dtype
    info = {
        "base_model": meta.get("base_model"),
        "task": meta.get("task"),
        "labels": meta.get("labels"),
        "method": method,
        "precision": precision,
        "max_abs_diff_vs_unmerged": diff,
        "probe_texts": list(PROBE_TEXTS),
    }
    (out / MERGE_META).write_text(json.dumps(info, indent=2), encoding="utf-8")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return MergeResult(out, method, precision, diff, size)
