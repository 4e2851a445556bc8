"""Objectives: what the loop minimises, as a *sum* over targets plus the number of targets.

Returning the sum (not the mean) lets the loop normalise gradient accumulation by the number
of targets in the whole accumulation window (examples for classification, label tokens for
language modelling), so 4 x 2 accumulated micro-batches give the same gradient as one batch of 8
even when they hold different numbers of targets.
"""

from __future__ import annotations

from typing import Any, Protocol


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
