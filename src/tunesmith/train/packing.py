"""Packing: short causal-LM examples share rows, and the rows' padding.

:func:`pack` puts short examples into rows of up to ``max_length`` tokens with
``position_ids`` restarting at 0 for each example. The model gets no attention mask, so
transformers 5 derives one segment per example from the position ids
(``masking_utils.find_packed_sequence_indices``) and builds a block-diagonal causal mask on the
sdpa and eager kernels (and varlen flash attention on GPU): no token attends to another
example. Padding at the end of a row restarts its positions too, so it is a segment of its own
that no real token attends to. ``tests/generative`` checks that a packed batch gives the same
loss as the examples one by one. This needs ``use_cache=False`` in the forward pass (with a
cache, transformers skips the packed-sequence detection).

:func:`plan_packing` decides whether packing pays for a training split (pure; counts tokens
only); :func:`collate_with_positions` pads rows, packed or not, into that batch format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.train.encoding import GENERAL, IGNORE_INDEX


def pack(examples: Sequence[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Pack examples into rows of at most ``max_length`` tokens (first fit, longest first).

    Each row holds ``input_ids``, ``labels`` and ``position_ids`` that restart at 0 for every
    example, and the per-token ``general`` flags when the examples carry them
    (``prepare.mix_general``). Deterministic; the loop shuffles the rows.
    """
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    keys = ["input_ids", "labels"] + ([GENERAL] if examples and GENERAL in examples[0] else [])
    rows: list[dict[str, list[int]]] = []
    for i in order:
        example = examples[i]
        n = len(example["input_ids"])
        row = next((r for r in rows if len(r["input_ids"]) + n <= max_length), None)
        if row is None:
            row = {key: [] for key in [*keys, "position_ids"]}
            rows.append(row)
        for key in keys:
            row[key] += example[key]
        row["position_ids"] += list(range(n))
    return rows


def padded_tokens(lengths: Sequence[int], batch_size: int, *, grouped: bool = True) -> int:
    """Tokens computed when batches of ``batch_size`` are padded to their longest example.

    ``grouped``: batches of similar lengths (what ``finetune.group_by_length`` does, sorted
    here: its best case); otherwise batches in the given order.
    """
    ordered = sorted(lengths, reverse=True) if grouped else list(lengths)
    return sum(
        max(ordered[i : i + batch_size]) * len(ordered[i : i + batch_size])
        for i in range(0, len(ordered), batch_size)
    )


@dataclass(frozen=True)
class PackingPlan:
    enabled: bool
    # Tokens per epoch (padding included) without packing / with packing, and their ratio.
    tokens_unpacked: int
    tokens_packed: int
    gain: float
    rows: int
    reason: str


def plan_packing(
    lengths: Sequence[int],
    batch_size: int,
    max_length: int,
    setting: bool | str,
    *,
    grouped: bool = True,
) -> PackingPlan:
    """Decide whether to pack (``setting`` True, False or "auto") and report the gain.

    The gain is the tokens computed per epoch (padding included) by dynamically padded
    batches, length-grouped when ``grouped``, over those of packed rows. "auto" packs when the
    gain is at least 1.10x: below that, packing only makes fewer, longer rows (attention cost
    grows with row length) for no saving. Length grouping already removes most padding, so the
    gain is largest without it or when lengths vary a lot.
    """
    unpacked = padded_tokens(lengths, batch_size, grouped=grouped)
    fake = [{"input_ids": [0] * n, "labels": [0] * n} for n in lengths]
    rows = pack(fake, max_length)
    packed = padded_tokens([len(r["input_ids"]) for r in rows], batch_size, grouped=grouped)
    gain = unpacked / packed if packed else 1.0
    if setting == "auto":
        enabled = gain >= 1.1
        reason = (
            f"packing on: {gain:.2f}x fewer tokens per epoch than padded batches"
            if enabled
            else f"packing off: it would save only {gain:.2f}x (auto packs at 1.10x or more)"
        )
    else:
        enabled = bool(setting)
        reason = f"packing {'on' if enabled else 'off'} (finetune.packing: {setting}); gain {gain:.2f}x"
    return PackingPlan(enabled, unpacked, packed, gain, len(rows), reason)


def collate_with_positions(rows: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, Any]:
    """Pad rows (packed or not) to the longest: ``input_ids``, ``labels``, ``position_ids``,
    and ``general`` (True on general-text tokens) when the rows carry those flags.

    ``attention_mask`` (1 on real tokens) is there for counting real tokens; the objective does
    not give it to the model, since causal attention plus position ids that restart per example
    (and for the padding block) is the whole mask (see the module docstring).
    """
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    general = torch.zeros((len(rows), width), dtype=torch.bool) if GENERAL in rows[0] else None
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        input_ids[i, :n] = torch.tensor(row["input_ids"])
        labels[i, :n] = torch.tensor(row["labels"])
        positions = row.get("position_ids") or list(range(n))
        position_ids[i, :n] = torch.tensor(positions)
        position_ids[i, n:] = torch.arange(width - n)
        attention_mask[i, :n] = 1
        if general is not None:
            general[i, :n] = torch.tensor(row[GENERAL], dtype=torch.bool)
    batch = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "attention_mask": attention_mask}
    if general is not None:
        batch[GENERAL] = general
    return batch
