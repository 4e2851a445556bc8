"""Objectives: what the loop minimises, as a *sum* over targets plus the number of targets.

Returning the sum (not the mean) lets the loop normalise gradient accumulation by the number
of targets in the whole accumulation window (examples for classification, label tokens for
language modelling), so 4 x 2 accumulated micro-batches give the same gradient as one batch of 8
even when they hold different numbers of targets.

:func:`chunked_cross_entropy` is the language-modelling loss without the full logits tensor: the
LM head and cross-entropy run over the labelled positions a chunk at a time, and under autograd
each chunk is recomputed in the backward pass (activation checkpointing of the head) instead of
being kept. With SmolLM2's 49,152-token vocabulary, 4 x 512 labelled positions hold 400 MB of
fp32 logits per copy and the step keeps about three copies (logits, log-probabilities, their
gradient); in chunks of :data:`CHUNK_ELEMENTS` the head holds about three chunks at a time. The
result is the same sum (up to float rounding) and the same gradients; the cost is one more
matmul with the head per chunk in the backward pass.
"""

from __future__ import annotations

from typing import Any, Protocol

# Logit elements per chunk (64 MB in fp32): large enough that the head's matmul stays efficient
# (341 rows for a 49k vocabulary), small enough that the chunk's copies do not matter.
CHUNK_ELEMENTS = 2**24


class Objective(Protocol):
    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
        """``(loss_sum, n_targets)`` for one micro-batch; ``loss_sum`` carries the graph."""
        ...


class ClassificationObjective:
    """Cross-entropy of the sequence-classification head, summed over the examples.

    ``class_weights`` (one per label id) scales each example's loss by its class's weight
    (``finetune.class_weights``: rare classes count as much as common ones)."""

    def __init__(self, class_weights: list[float] | None = None) -> None:
        self.class_weights = class_weights

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
        import torch
        import torch.nn.functional as F

        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"]
        weight = None
        if self.class_weights is not None:
            weight = torch.tensor(self.class_weights, dtype=torch.float32, device=logits.device)
        # float(): the loss stays accurate when the forward pass runs under bf16/fp16 autocast.
        return (F.cross_entropy(logits.float(), labels, weight=weight, reduction="sum"),
                int(labels.numel()))


def _head_cross_entropy(head: Any, hidden: Any, targets: Any, reduction: str) -> Any:
    import torch.nn.functional as F

    # float(): the loss stays accurate when the forward pass runs under bf16/fp16 autocast.
    return F.cross_entropy(head(hidden).float(), targets, reduction=reduction)


def chunked_cross_entropy(
    head: Any, hidden: Any, targets: Any, *, reduction: str = "sum", chunk_rows: int | None = None
) -> Any:
    """Cross-entropy of ``head(hidden)`` against ``targets`` without all the logits at once.

    ``hidden`` is (positions, hidden size), ``targets`` (positions,); ``head`` maps hidden
    states to vocabulary logits (an LM head). ``reduction`` is "sum" (a scalar) or "none" (one
    loss per position). With gradients enabled each chunk runs under non-reentrant activation
    checkpointing, so only its input is kept and its logits are recomputed in the backward pass.
    Cost: the same matmuls as one call, plus one more head matmul per chunk when training.
    ``chunk_rows`` defaults to :data:`CHUNK_ELEMENTS` / vocabulary size.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    if reduction not in ("sum", "none"):
        raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")
    positions = hidden.shape[0]
    vocab = getattr(head, "out_features", None) or head.weight.shape[0]
    rows = chunk_rows or max(1, CHUNK_ELEMENTS // vocab)
    if positions <= rows:
        return _head_cross_entropy(head, hidden, targets, reduction)
    parts = []
    for start in range(0, positions, rows):
        piece = (head, hidden[start:start + rows], targets[start:start + rows], reduction)
        if torch.is_grad_enabled():
            parts.append(checkpoint(_head_cross_entropy, *piece, use_reentrant=False))
        else:
            parts.append(_head_cross_entropy(*piece))
    return torch.stack(parts).sum() if reduction == "sum" else torch.cat(parts)
