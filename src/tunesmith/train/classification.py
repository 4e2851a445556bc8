"""The classification task family's training: a sequence classifier on an encoder.

:func:`classification_plan` encodes the train and validation splits once (at the 95th
percentile of the training texts' token lengths unless ``prepare.max_length`` is set, within
what the model was trained for), counts what truncation cut, weighs rare classes when
``finetune.class_weights`` asks, and starts the head at the logistic-regression probe on the
frozen embeddings (LP-FT, :mod:`tunesmith.train.probe`). Batches are padded per batch by
:func:`tunesmith.train.encoding.collate`; the objective is the head's cross-entropy.

The causal-LM families are :mod:`tunesmith.train.causal`; a causal LM given classification
records trains there ("classification as instruction").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, cast

from tunesmith.config import Config
from tunesmith.data.stats import advised_length_for, label_counts
from tunesmith.errors import DataError
from tunesmith.records import ClassificationRecord, Record
from tunesmith.train.encoding import collate, encode_classification, label_list
from tunesmith.train.objectives import ClassificationObjective
from tunesmith.train.plan import TaskPlan
from tunesmith.train.probe import embed, fit_probe, init_head_from_probe, probe_rows


def classification_labels(records: Sequence[Record]) -> list[str]:
    """The head's class names (sorted); DataError when the training split has fewer than two."""
    labels = label_list(records)
    if len(labels) < 2:
        raise DataError(
            f"the training split has a single label ({labels[0] if labels else 'none'}): a "
            "classifier needs at least two.",
            hint="Check the label column (prepare.column_map) or add examples of other labels.",
        )
    return labels


def _max_length_ceiling(loaded: Any, cfg: Config) -> tuple[int, str]:
    """The longest input worth encoding, and why: the model's trained length when its
    sentence-transformers config names one, else its position limit, at most max_length."""
    limit = cfg.prepare.max_length
    why = f"prepare.max_length's default {limit}"
    trained = getattr(loaded.pooling, "max_seq_length", None)
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    if trained and trained < limit:
        limit, why = trained, f"the length {loaded.name} was trained at (sentence_bert_config.json)"
    elif positions and positions < limit:
        limit, why = positions, f"{loaded.name}'s position limit"
    return limit, why


def truncation_note(data: Any, split: str, max_length: int) -> str | None:
    """How many examples of ``split`` were cut at ``max_length``, and by how much."""
    if not data.n_truncated:
        return None
    share = data.n_truncated / max(len(data), 1)
    return (f"{split}: {data.n_truncated} of {len(data)} examples ({share:.0%}) were longer than "
            f"max_length={max_length} tokens and were truncated, losing "
            f"{data.tokens_cut / data.n_truncated:.0f} tokens each on average "
            f"({data.tokens_cut:,} in all).")


def classification_plan(
    loaded: Any, train_records: Sequence[Record], val_records: Sequence[Record], cfg: Config
) -> TaskPlan:
    """Encode the splits for a sequence classifier, start its head at the probe, say so.

    The plan's validation (the scorer of the test split, and the metric that picks the best
    checkpoint) is the evaluation side's:
    :func:`tunesmith.evaluate.classification.with_validation` completes it. Costs: tokenizing
    both splits, one forward pass over them for the probe (no backward) and its fit.
    Raises DataError for labels the training split lacks.
    """
    # The classification family reads with task="classification": every record is one.
    train_records = cast(Sequence[ClassificationRecord], train_records)
    val_records = cast(Sequence[ClassificationRecord], val_records)
    labels = [loaded.model.config.id2label[i] for i in range(loaded.model.config.num_labels)]
    notes = []
    if loaded.pooling is not None:
        notes.append(loaded.pooling.describe())
    max_length = cfg.prepare.max_length
    if "max_length" not in cfg.prepare.model_fields_set:
        # The guide: "use 95th percentile length", within what the model was trained for.
        ceiling, why = _max_length_ceiling(loaded, cfg)
        untruncated = encode_classification(train_records, loaded.tokenizer, labels, 10**9)
        max_length = advised_length_for(untruncated.lengths, ceiling)
        notes.append(f"max_length {max_length}: the 95th percentile of the training texts' token "
                     f"lengths, at most {ceiling} ({why}); set prepare.max_length to choose.")
    train_data = encode_classification(train_records, loaded.tokenizer, labels, max_length)
    val_data = encode_classification(val_records, loaded.tokenizer, labels, max_length)
    pad = loaded.tokenizer.pad_token_id
    notes += [n for n in (truncation_note(train_data, "train", max_length),
                          truncation_note(val_data, "val", max_length)) if n]
    # LP-FT (Kumar et al., ICLR 2022): start the head at the baseline probe, so finetuning
    # starts where the frozen encoder already is instead of from a random head.
    # Fitted on the examples the evaluation's baseline probe uses (probe_rows): the run folder
    # keeps it (probe.json) and the evaluation reuses it instead of embedding them again.
    rows = probe_rows(len(train_data), cfg.prepare.seed)
    probe_data = train_data if len(rows) == len(train_data) else dataclasses.replace(
        train_data, examples=[train_data.examples[i] for i in rows],
        lengths=[train_data.lengths[i] for i in rows])
    batch = cfg.finetune.batch_size  # the evaluation's batches too (with_validation says why)
    probe = fit_probe(loaded.model, probe_data, pad, seed=cfg.finetune.seed, batch_size=batch)
    temperature = probe.temperature(embed(loaded.model, val_data, pad, batch),
                                    [e["label"] for e in val_data.examples], len(labels))
    if init_head_from_probe(loaded.model, probe, temperature):
        notes.append("head: initialised from the logistic-regression probe on the frozen "
                     f"embeddings (LP-FT), logits calibrated on val (temperature "
                     f"{temperature:.2g}), so training starts at the baseline's predictions.")
    else:
        notes.append("head: freshly initialised (the probe's features are not this head's input).")
    counts = label_counts(train_records)
    weights = None
    if cfg.finetune.class_weights:
        total = sum(counts.values())
        weights = [total / (len(labels) * counts.get(label, 1)) for label in labels]
    return TaskPlan(train_data, ClassificationObjective(weights), collate, evaluate=None,
                    best_metric="loss", notes=notes, max_length=max_length, evaluate_first=True,
                    val_data=val_data, probe=probe)
