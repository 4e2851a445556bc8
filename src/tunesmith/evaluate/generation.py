"""Evaluate a causal LM: response perplexity, batched generation, scores and samples.

Generation is greedy by default (``evaluation.temperature: 0``); a temperature above 0 samples
with nucleus ``top_p``. Prompts are left-padded into batches of similar length so every row's
new tokens start at the same column. On 2 CPU cores SmolLM2-135M takes about 0.8 s per
example (RESOURCES.md), which is why ``evaluation.generation_limit`` caps how many test
examples are generated for; perplexity always covers the whole split (one forward pass each).

``samples.jsonl`` holds, per example: the prompt, the reference, the baseline's output and the
finetuned model's output, for the qualitative analysis the guide asks for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.evaluate.text_metrics import perplexity
from tunesmith.train.causal import collate, row_nll


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 is greedy decoding
    top_p: float = 1.0
    batch_size: int = 8
    seed: int = 42

    @classmethod
    def from_config(cls, evaluation: Any, batch_size: int = 8, seed: int = 42) -> GenerationSettings:
        return cls(evaluation.max_new_tokens, evaluation.temperature, evaluation.top_p, batch_size, seed)


def row_nlls(
    model: Any, rows: Sequence[dict[str, list[int]]], pad_token_id: int, batch_size: int = 8
) -> list[tuple[float, int]]:
    """Per row, in order: summed next-token NLL over its labelled tokens and their count."""
    import torch

    model.eval()
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    # Similar lengths together: less padding per batch.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            sums, counts = row_nll(model, collate([rows[i] for i in chunk], pad_token_id))
            for i, total, n in zip(chunk, sums.tolist(), counts.tolist(), strict=True):
                out[i] = (total, n)
    return out


def response_perplexity(model: Any, rows: Sequence[dict[str, list[int]]], pad_token_id: int, batch_size: int = 8) -> dict[str, float]:
    """``{"loss": mean NLL per response token, "perplexity": exp(loss)}``."""
    per_row = row_nlls(model, rows, pad_token_id, batch_size)
    total, count = sum(t for t, _ in per_row), sum(n for _, n in per_row)
    return {"loss": total / count if count else float("nan"), "perplexity": perplexity(total, count)}


def generate(
    model: Any, tokenizer: Any, prompts: Sequence[list[int]], settings: GenerationSettings
) -> list[str]:
    """Decode each prompt's continuation (special tokens dropped), in the prompts' order."""
    import torch

    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = settings.temperature > 0
    options: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": sampling,
        "pad_token_id": pad_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if sampling:
        options.update(temperature=settings.temperature, top_p=settings.top_p)
        torch.manual_seed(settings.seed)
    else:
        # Say so explicitly: a model's generation_config may ask for sampling by default.
        options.update(temperature=None, top_p=None, top_k=None)
    outputs: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with torch.no_grad():
        for start in range(0, len(order), settings.batch_size):
            chunk = order[start : start + settings.batch_size]
            width = max(len(prompts[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                n = len(prompts[i])
                ids[row, width - n :] = torch.tensor(prompts[i])
                mask[row, width - n :] = 1
            new = model.generate(input_ids=ids, attention_mask=mask, **options)[:, width:]
            for row, i in enumerate(chunk):
                outputs[i] = tokenizer.decode(new[row], skip_special_tokens=True).strip()
    return outputs


def write_samples(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line: prompt, reference, baseline, finetuned (and any extra keys)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
