"""Length distribution, max_length advice, the guide's size table and the label-imbalance flag.

Lengths are counted by a function given by the caller (``count(texts) -> lengths``): the
model's own tokenizer for ``tunesmith data stats --model M``, or words when no model is named.
Only lengths are kept (4 bytes per record and part), so a million records fit easily.

The guide: "Analyze your data, use 95th percentile length" -> the advised max_length is the
95th percentile of the whole example, rounded up to a multiple of 8.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.records import Record

Counter_ = Callable[[list[str]], Sequence[int]]

PERCENTILES = (50, 90, 95, 99)
BATCH = 1000

# The guide's "Dataset Size Guidelines", with the LoRA ranks the project recommends per band.
SIZE_TABLE: tuple[tuple[float, str, str], ...] = (
    (100, "under 100", "too small to finetune: try few-shot prompting first"),
    (500, "100-500", "LoRA with r 4-8; expect modest improvements"),
    (2000, "500-2K", "LoRA with r 8-16; solid results"),
    (10000, "2K-10K", "LoRA with r 16-32; light full finetuning also works"),
    (100000, "10K-100K", "full finetuning or LoRA"),
    (math.inf, "over 100K", "full finetuning"),
)
# A smallest class below half the largest is called imbalanced.
IMBALANCE_RATIO = 0.5


def words(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (an actual length, never an interpolated one)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return int(sorted_values[rank - 1])


def distribution(values: Sequence[int]) -> dict[str, float]:
    ordered = sorted(values)
    out: dict[str, float] = {f"p{q}": percentile(ordered, q) for q in PERCENTILES}
    out["max"] = ordered[-1] if ordered else 0
    out["mean"] = round(sum(ordered) / len(ordered), 1) if ordered else 0.0
    return out


def advised_max_length(p95: float) -> int:
    return max(8, math.ceil(p95 / 8) * 8)


def advised_length_for(lengths: Sequence[int], ceiling: int) -> int:
    """The guide's 95th-percentile advice for these token lengths, at most ``ceiling`` (the
    longest the model takes, or was trained at)."""
    return min(advised_max_length(percentile(sorted(lengths), 95)), ceiling)


def size_advice(n: int) -> dict[str, str]:
    for upper, band, advice in SIZE_TABLE:
        if n < upper:
            return {"band": band, "advice": advice}
    raise AssertionError("the table ends with infinity")


def label_balance(counts: dict[str, int]) -> dict[str, Any]:
    """Majority rate (what always answering the commonest label scores) and the imbalance flag."""
    total = sum(counts.values())
    if not counts or not total:
        return {}
    top_label, top = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    low = min(counts.values())
    ratio = low / top
    imbalanced = ratio < IMBALANCE_RATIO
    out: dict[str, Any] = {
        "labels": len(counts), "majority_label": top_label,
        "majority_rate": round(top / total, 4), "smallest_to_largest": round(ratio, 4),
        "imbalanced": imbalanced,
    }
    if len(counts) == 1:
        out["advice"] = "only one label: a classifier needs examples of at least two"
    elif imbalanced:
        out["advice"] = (
            "labels are imbalanced: judge models by F1 rather than accuracy (always answering "
            f"'{top_label}' already scores {top / total:.1%} accuracy)"
        )
    return out


@dataclass
class LengthStats:
    """Accumulates per-record lengths of the prompt, the response and the whole example."""

    count: Counter_
    special_tokens: int = 0
    generative: bool = True
    prompt: array = field(default_factory=lambda: array("I"))
    response: array = field(default_factory=lambda: array("I"))
    total: array = field(default_factory=lambda: array("I"))
    _pending: list[Record] = field(default_factory=list)

    def add(self, record: Record) -> None:
        self._pending.append(record)
        if len(self._pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        prompts = list(self.count([r.input_text() for r in self._pending]))
        if self.generative:
            responses = list(self.count([r.target_text() for r in self._pending]))
        else:
            responses = [0] * len(prompts)
        self.prompt.extend(prompts)
        self.response.extend(responses)
        self.total.extend(p + r + self.special_tokens for p, r in zip(prompts, responses, strict=True))
        self._pending.clear()

    def summary(self, max_length: int) -> dict[str, Any]:
        self.flush()
        n = len(self.total)
        out: dict[str, Any] = {"records": n}
        if self.generative:
            out["prompt"] = distribution(self.prompt)
            out["response"] = distribution(self.response)
        out["total"] = distribution(self.total)
        truncated = sum(1 for t in self.total if t > max_length)
        out["max_length"] = max_length
        out["truncated"] = truncated
        out["truncated_share"] = round(truncated / n, 4) if n else 0.0
        out["advised_max_length"] = advised_max_length(out["total"]["p95"])
        return out


def label_counts(records: Sequence[Record]) -> dict[str, int]:
    return dict(sorted(Counter(r.target_text() for r in records).items()))
