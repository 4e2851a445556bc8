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

**Causal LMs.** :func:`causal_lm_loss` returns the *sum* of the token losses over response
tokens and their count, so the loop normalises by tokens. It runs the decoder, keeps the hidden
states at labelled positions only and applies the LM head to those, in chunks
(:func:`chunked_cross_entropy`): with a 49k-token vocabulary the full logits tensor (batch x
length x vocab floats) is the largest activation, and most positions are prompt tokens that need
none. :func:`nll_per_row` and :func:`response_loss` are the same loss without gradients, for
validation, evaluation and the forgetting check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from tunesmith.train.encoding import GENERAL, IGNORE_INDEX
from tunesmith.train.packing import collate_with_positions

# Logit elements per chunk (64 MB in fp32): large enough that the head's matmul stays efficient
# (341 rows for a 49k vocabulary), small enough that the chunk's copies do not matter.
CHUNK_ELEMENTS = 2**24


class Objective(Protocol):
    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, ...]:
        """``(loss_sum, n_targets)`` for one micro-batch; ``loss_sum`` carries the graph.

        An objective with ``parts`` (names, e.g. ``("general",)``) may return a third element,
        ``{part: (loss_sum, n_targets)}`` for the targets of each part (included in the
        totals): the loop logs each part's mean loss apart as ``<part>_loss`` and ``loss`` as
        the mean over the rest.
        """
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


# ---------------------------------------------------------------------------------------------
# Causal LMs


def _unwrap(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (its adapter layers stay in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _head_is_plain(model: Any) -> bool:
    # Models that scale or soft-cap their logits need the model's own forward.
    config = model.config
    return getattr(config, "final_logit_softcapping", None) is None and not hasattr(config, "logit_scale")


def _labelled_losses(model: Any, batch: dict[str, Any], reduction: str) -> tuple[Any, Any, Any]:
    """Cross-entropy at the positions that predict a labelled token (summed, or one per
    position with ``reduction="none"``), those targets, and the mask."""
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    # Under DDP the forward must go through the wrapper (it prepares the gradient all-reduce),
    # so the LM-head-at-labelled-positions shortcut is used on a single process only.
    distributed = isinstance(model, DistributedDataParallel)
    inner = _unwrap(model.module if distributed else model)
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    inputs = {"input_ids": batch["input_ids"], "use_cache": False}
    # Packed rows (see collate) carry position ids; plain right-padded batches an attention mask.
    for key in ("position_ids", "attention_mask"):
        if key in batch:
            inputs[key] = batch[key]
            break
    if _head_is_plain(inner) and not distributed:
        hidden = inner.get_decoder()(**inputs).last_hidden_state[:, :-1]
        # The head runs in chunks, so the full (positions x vocabulary) logits never exist.
        losses = chunked_cross_entropy(inner.get_output_embeddings(), hidden[keep], targets[keep],
                                       reduction=reduction)
    else:
        logits = model(**inputs).logits[:, :-1][keep]
        # float(): the loss stays accurate when the forward pass runs under bf16/fp16 autocast.
        losses = F.cross_entropy(logits.float(), targets[keep], reduction=reduction)
    return losses, targets[keep], keep


def causal_lm_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """``(sum of next-token losses over labelled tokens, their count)`` for one batch."""
    loss, targets, _ = _labelled_losses(model, batch, "sum")
    return loss, int(targets.numel())


def row_nll(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Per row of the batch: summed NLL of its labelled tokens, and how many there are."""
    losses, _, keep = _labelled_losses(model, batch, "none")
    rows = keep.nonzero()[:, 0]
    sums = losses.new_zeros(keep.shape[0]).index_add_(0, rows, losses)
    return sums, keep.sum(dim=1)


class CausalLMObjective:
    """The loop's objective for causal LMs: :func:`causal_lm_loss`.

    With ``mix_general`` the batches carry per-token ``general`` flags: the loss is still the
    sum over every labelled token (general text trains like the task), and the general tokens'
    share of it comes back as the part ``"general"``, which the loop logs apart.
    """

    def __init__(self, mix_general: bool = False) -> None:
        self.parts: tuple[str, ...] = (GENERAL,) if mix_general else ()

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, ...]:
        if GENERAL not in batch:
            return causal_lm_loss(model, batch)
        losses, targets, keep = _labelled_losses(model, batch, "none")
        general = losses.detach()[batch[GENERAL][:, 1:][keep]]
        return losses.sum(), int(targets.numel()), {GENERAL: (float(general.sum()), int(general.numel()))}


def nll_per_row(
    model: Any, rows: Sequence[dict[str, list[int]]], pad_token_id: int, batch_size: int = 8
) -> list[tuple[float, int]]:
    """Per row, in order: summed next-token NLL over its labelled tokens and their count.

    Evaluation only (no gradients); rows of similar length are batched together.
    """
    import torch

    model.eval()
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            sums, counts = row_nll(model, collate_with_positions([rows[i] for i in chunk], pad_token_id))
            for i, total, n in zip(chunk, sums.tolist(), counts.tolist(), strict=True):
                out[i] = (total, n)
    return out


def response_loss(
    model: Any, rows: Sequence[dict[str, list[int]]], pad_token_id: int, batch_size: int = 8
) -> dict[str, float]:
    """``{"loss": mean NLL per labelled token, "perplexity": exp(loss)}`` over ``rows``."""
    per_row = nll_per_row(model, rows, pad_token_id, batch_size)
    total, count = sum(t for t, _ in per_row), sum(n for _, n in per_row)
    loss = total / count if count else math.nan
    return {"loss": loss, "perplexity": math.exp(loss) if count else math.inf}
