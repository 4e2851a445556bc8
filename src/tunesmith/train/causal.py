"""The causal-LM task family's training: response-only examples and the plan for the loop.

Records become chat messages (:mod:`tunesmith.train.prompts`), rendered turn by turn and
tokenized into ``input_ids`` and ``labels`` (:func:`encode_messages`). Only response tokens are
learned: every assistant turn's content and the end-of-turn token that closes it (EOS, so the
model learns to stop). Everything else (system prompt, user turns, template markers) has label
-100. :func:`causal_plan` encodes the train and validation splits, packs the training rows when
that pays (:mod:`tunesmith.train.packing`) and hands the loop the response-only objective
(:class:`~tunesmith.train.objectives.CausalLMObjective`) and a validation by response loss.

:func:`training_task` routes classification records on a causal LM to this family
("classification as instruction"). Costs: tokenizing each split once; no model forward pass.
Raises :class:`~tunesmith.errors.DataError` when no example keeps a response token, or for a
single label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import DataError
from tunesmith.records import ClassificationRecord, Record
from tunesmith.train.encoding import IGNORE_INDEX, EncodedDataset, collate
from tunesmith.train.objectives import CausalLMObjective, response_loss
from tunesmith.train.packing import collate_with_positions, pack, plan_packing
from tunesmith.train.plan import TaskPlan
from tunesmith.train.prompts import (
    CLASSIFICATION_AS_INSTRUCTION,
    record_messages,
    render_segments,
    response_labels,
    token_ids,
)


@dataclass(frozen=True)
class EncodedCausal:
    """Per-example token ids and labels (lists), as ``tunesmith.train.encoding`` keeps them."""

    examples: list[dict[str, list[int]]]
    lengths: list[int]
    n_truncated: int
    # Examples dropped because truncation left no response token to learn from.
    n_dropped: int


def encode_messages(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """``{"input_ids", "labels"}`` of one conversation, labels -100 outside the responses."""
    input_ids: list[int] = []
    labels: list[int] = []
    for text, is_response in render_segments(tokenizer, messages):
        ids = token_ids(tokenizer, text)
        if is_response:
            ids, span_labels = response_labels(ids, tokenizer.eos_token_id)
        else:
            span_labels = [IGNORE_INDEX] * len(ids)
        input_ids += ids
        labels += span_labels
    return {"input_ids": input_ids, "labels": labels}


def encode_records(
    records: Sequence[Record], tokenizer: Any, max_length: int, labels: Sequence[str] = ()
) -> EncodedCausal:
    """Encode records for training or perplexity; cut at ``max_length`` tokens (the end goes).

    An example whose responses all fall beyond ``max_length`` is dropped (it would teach
    nothing) and counted in ``n_dropped``.
    """
    examples, lengths, truncated, dropped = [], [], 0, 0
    for record in records:
        example = encode_messages(tokenizer, record_messages(record, labels))
        if len(example["input_ids"]) > max_length:
            truncated += 1
            example = {k: v[:max_length] for k, v in example.items()}
        if all(label == IGNORE_INDEX for label in example["labels"][1:]):
            dropped += 1
            continue
        examples.append(example)
        lengths.append(len(example["input_ids"]))
    return EncodedCausal(examples, lengths, truncated, dropped)


def model_is_causal(name: str) -> bool:
    """Whether ``name`` (built-in, folder or hub id) is a decoder LM, without loading weights."""
    from transformers import AutoConfig

    from tunesmith.models.loader import resolve_model_path

    path, kind = resolve_model_path(name)
    if kind is not None:
        return kind == "causal"
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return False  # the loader reports an unknown model with its own message
    return any(a.endswith("ForCausalLM") for a in getattr(config, "architectures", None) or [])


def training_task(record_task: str, model_name: str) -> str:
    """The task family to train: the records' task, except classification on a causal LM."""
    if record_task == "classification" and model_is_causal(model_name):
        return CLASSIFICATION_AS_INSTRUCTION
    return record_task


def instruction_labels(records: Sequence[Record]) -> list[str] | None:
    """The label words of classification records (None for generative records)."""
    labels = sorted({r.label for r in records if isinstance(r, ClassificationRecord)})
    if not labels:
        return None
    if len(labels) < 2:
        raise DataError(
            f"the training split has a single label ({labels[0]}): a classifier needs two or more.",
            hint="Check the label column (prepare.column_map) or add examples of other labels.",
        )
    return labels


def causal_plan(loaded: Any, train_records: Sequence[Record], val_records: Sequence[Record], cfg: Any) -> TaskPlan:
    """Encode the splits for a causal LM, pack the training rows when it pays, say so."""
    labels = instruction_labels(train_records) or ()
    tokenizer = loaded.tokenizer
    max_length = cfg.prepare.max_length
    batch_size = cfg.finetune.batch_size
    train = encode_records(train_records, tokenizer, max_length, labels)
    val = encode_records(val_records, tokenizer, max_length, labels)
    if not train.examples:
        raise DataError(
            f"no training example keeps a response within prepare.max_length={max_length} tokens.",
            hint="Raise prepare.max_length.",
        )
    notes = []
    examples = train.examples
    mixed = bool(cfg.prepare.mix_general)
    if mixed:
        from tunesmith.train.general import flag, mix_general

        mix = mix_general(train.examples, tokenizer, share=cfg.prepare.mix_general,
                          source=cfg.prepare.mix_general_source, max_length=max_length,
                          seed=cfg.prepare.seed, encode_records=encode_records)
        examples = flag(train.examples, 0) + mix.examples
        notes.append(mix.note(cfg.prepare.mix_general))
    if train.n_truncated + val.n_truncated:
        notes.append(
            f"{train.n_truncated + val.n_truncated} examples were longer than prepare.max_length="
            f"{max_length} tokens and were cut at the end."
        )
    if train.n_dropped + val.n_dropped:
        notes.append(f"{train.n_dropped + val.n_dropped} examples kept no response token after the cut and were dropped.")
    lengths = [len(e["input_ids"]) for e in examples]
    packing = plan_packing(
        lengths, batch_size, max_length, cfg.finetune.packing, grouped=cfg.finetune.group_by_length
    )
    notes.append(
        f"{packing.reason} ({packing.tokens_unpacked:,} -> {packing.tokens_packed:,} tokens per "
        f"epoch; {len(examples)} examples in {packing.rows} rows of <= {max_length})"
    )
    rows = pack(examples, max_length) if packing.enabled else examples
    data = EncodedDataset(rows, [len(r["input_ids"]) for r in rows], train.n_truncated)
    best = cfg.finetune.best_metric if cfg.finetune.best_metric != "auto" else "loss"
    pad = tokenizer.pad_token_id
    evaluate = (lambda model: response_loss(model, val.examples, pad, batch_size)) if val.examples else None
    # Packed rows restart their positions per example; unpacked rows pad with an attention mask;
    # mixed general text carries per-token flags, which only collate_with_positions keeps.
    padding = collate_with_positions if packing.enabled or mixed else collate
    return TaskPlan(data, CausalLMObjective(mix_general=mixed), padding, evaluate, best, notes,
                    packing=packing)
