"""Score a classifier, and the baseline it has to beat (the classification task family).

The baseline is the pretrained model with its weights untouched: a logistic-regression *probe*
(:mod:`tunesmith.train.probe`) on the frozen encoder's mean-pooled embeddings, fitted on the
train split (a freshly initialised classification head alone would score at chance, which says
nothing about the pretrained model). The majority-class rate sits beside it as the floor every
classifier must clear.

:func:`evaluate_run` is the family's evaluate stage, the same entry as
:func:`tunesmith.evaluate.generation.evaluate_run`; :func:`with_validation` gives its training
plan the same scorer on the validation split, and the metric plan's headline to pick the best
checkpoint by.

Costs: one forward pass (no backward) over train and test for the probe, most of an
evaluation's time, and one over the split being scored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tunesmith import runfiles
from tunesmith.evaluate.metrics import (
    average_precision,
    classification_metrics,
    confusion_matrix,
    majority_rate,
)
from tunesmith.records import ClassificationRecord, Record
from tunesmith.train.encoding import EncodedDataset, collate
from tunesmith.train.plan import TaskPlan
from tunesmith.train.probe import (
    EVAL_BATCH_SIZE,
    Probe,
    embed,
    fingerprint,
    fit_probe,
    length_sorted_batches,
    probe_rows,
)


@dataclass
class ClassificationScores:
    metrics: dict[str, float]  # accuracy, precision, recall, f1 (macro) and loss when known
    predictions: list[int]
    probabilities: Any  # numpy array [n, classes]
    confusion: list[list[int]]


def predict(
    model: Any, encoded: EncodedDataset, pad_token_id: int, batch_size: int = EVAL_BATCH_SIZE
) -> tuple[Any, float]:
    """Class probabilities ``[n, classes]`` (in the dataset's order) and the mean loss."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs = np.zeros((len(encoded), model.config.num_labels), dtype=np.float32)
    loss_sum = 0.0
    with torch.no_grad():
        for indices in length_sorted_batches(encoded, batch_size):
            batch = collate([encoded.examples[i] for i in indices], pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits.float()
            loss_sum += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            probs[indices] = torch.softmax(logits, dim=-1).cpu().numpy()
    model.train(was_training)
    return probs, loss_sum / max(len(encoded), 1)


def score(
    model: Any, encoded: EncodedDataset, pad_token_id: int, batch_size: int = EVAL_BATCH_SIZE
) -> ClassificationScores:
    """Accuracy, macro precision/recall/F1, loss and the confusion matrix of ``model``."""
    probs, loss = predict(model, encoded, pad_token_id, batch_size)
    predictions = probs.argmax(axis=1).tolist()
    truth = [e["label"] for e in encoded.examples]
    classes = list(range(len(encoded.labels)))
    metrics = classification_metrics(truth, predictions, classes)
    metrics["loss"] = loss
    return ClassificationScores(metrics, predictions, probs, confusion_matrix(truth, predictions, classes))


def probe_baseline(
    model: Any,
    train: EncodedDataset,
    test: EncodedDataset,
    pad_token_id: int,
    *,
    seed: int = 42,
    positive: int | None = None,
    probe: Probe | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
) -> tuple[dict[str, Any], list[int]]:
    """The frozen model's score: a logistic-regression probe fitted on ``train`` embeddings.

    Call it before any finetuning method changes ``model``. ``probe``: one already fitted on
    exactly ``train`` (:func:`~tunesmith.train.probe.fingerprint`), e.g. the one training saved;
    then ``train`` is not embedded again. Returns the metrics (with ``majority_rate``, ``kind:
    "probe"`` and, for a ``positive`` class index, its ``pr_auc``) and the probe's test
    predictions.
    """
    y_train = [e["label"] for e in train.examples]
    y_test = [e["label"] for e in test.examples]
    if probe is None or probe.fitted_on != fingerprint(train):
        probe = fit_probe(model, train, pad_token_id, seed=seed, batch_size=batch_size)
    test_features = embed(model, test, pad_token_id, batch_size)
    predictions = probe.predict(test_features)
    metrics: dict[str, Any] = classification_metrics(
        y_test, predictions, list(range(len(test.labels)))
    )
    metrics["majority_rate"] = majority_rate(y_train, y_test)
    metrics["kind"] = "probe"
    if positive is not None:
        column = probe.classes.index(positive)
        metrics["pr_auc"] = average_precision(
            [y == positive for y in y_test], probe.predict_proba(test_features)[:, column].tolist())
    return metrics, predictions


def worst_errors(
    records: Sequence[ClassificationRecord],
    scores: ClassificationScores,
    labels: Sequence[str],
    limit: int,
) -> list[dict[str, Any]]:
    """The most confident wrong predictions first: what to read to understand the model."""
    wrong = [
        (float(scores.probabilities[i][p]), i, p)
        for i, p in enumerate(scores.predictions)
        if labels[p] != records[i].label
    ]
    wrong.sort(key=lambda item: -item[0])
    return [
        {"text": records[i].text, "label": records[i].label, "predicted": labels[p],
         "confidence": round(conf, 4)}
        for conf, i, p in wrong[:limit]
    ]


def checkpoint_metric(setting: str, train_labels: Sequence[str]) -> str:
    """The validation key that picks a classifier's best checkpoint and drives early stopping.

    ``setting`` is ``finetune.best_metric``; "auto" follows the metric plan's headline for these
    training labels (macro ``f1`` when they are imbalanced, else ``accuracy``), so the checkpoint
    kept is the one the run's verdict reads. Pure; costs nothing.
    """
    from tunesmith.evaluate.metric_plan import headline_metric, plan_classification

    if setting != "auto":
        return setting
    return headline_metric(plan_classification(list(train_labels))).removeprefix("val_")


def with_validation(plan: TaskPlan, train_records: Sequence[Record], cfg: Any,
                    pad_token_id: int) -> TaskPlan:
    """``plan`` validated the way the test split is scored: :func:`score` on its ``val_data``
    (none when the split is empty), the best checkpoint picked by :func:`checkpoint_metric`.

    Costs nothing until the loop validates: then one forward pass over the validation split.
    """
    # Read with task="classification": every record is a ClassificationRecord.
    best = checkpoint_metric(cfg.finetune.best_metric,
                             [cast(ClassificationRecord, r).label for r in train_records])
    notes = list(plan.notes)
    if cfg.finetune.best_metric == "auto":
        notes.append(f"best checkpoint and early stopping by val {best}, the metric plan's "
                     "headline" + (" (macro F1: the labels are imbalanced)" if best == "f1" else
                                   " (the labels are balanced)"))
    val_data = plan.val_data
    # Batches of the training micro-batch: on CPU, glibc reuses the blocks training's batches
    # freed for same-sized ones, where batches of 64 grew the run's peak (docs/performance.md).
    batch = cfg.finetune.batch_size
    evaluate = (lambda model: score(model, val_data, pad_token_id, batch).metrics) if val_data else None
    return dataclasses.replace(plan, evaluate=evaluate, best_metric=best, notes=notes)


def evaluate_run(
    run_dir: Path,
    run_meta: dict[str, Any],
    cfg: Any,
    data_dir: Path,
    test_file: Path,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The probe baseline and the finetuned classifier on the test split; writes errors.jsonl.

    Returns the metrics.json sections (``plan``: the metric plan; ``baseline``, ``finetuned``,
    ``delta``, ``confusion_matrix``) and the most confident errors. Cost: one forward pass over
    (at most :data:`~tunesmith.train.probe.PROBE_MAX_TRAIN` of) the train split, unless the
    probe training saved (probe.json) was fitted on those very examples, and two over the test
    split.
    """
    from tunesmith.data.validate import read_records
    from tunesmith.evaluate.metric_plan import plan_for_records, select
    from tunesmith.methods import load_adapter
    from tunesmith.models import load_model
    from tunesmith.train.encoding import encode_classification

    labels = run_meta["labels"]
    # Read with task="classification": every record is a ClassificationRecord.
    train_records = cast(list[ClassificationRecord],
                         read_records(data_dir / runfiles.split_file("train"), task="classification"))
    plan = plan_for_records("classification", train_records, cfg.evaluation.metrics)
    for line in plan.lines():
        log(line)
    positive = labels.index(plan.positive_label) if plan.positive_label in labels else None
    train_records = [train_records[i] for i in probe_rows(len(train_records), cfg.prepare.seed)]
    test_records = cast(list[ClassificationRecord], read_records(test_file, task="classification"))
    # A QLoRA adapter was trained on the NF4 base: score it on that base.
    qlora = run_meta.get("method") == "qlora"
    loaded = load_model(run_meta["model"], task="classification", labels=labels, load_in_4bit=qlora,
                        compute_dtype=cfg.finetune.qlora_compute_dtype if qlora else "float32")
    max_length = cfg.prepare.max_length
    train_enc = encode_classification(train_records, loaded.tokenizer, labels, max_length)
    test_enc = encode_classification(test_records, loaded.tokenizer, labels, max_length)
    pad = loaded.tokenizer.pad_token_id

    # Training fitted the same probe on the frozen base before it trained (probe.json): reused
    # when it was fitted on exactly these examples, so the train split is not embedded again.
    saved = Probe.load(run_dir / runfiles.PROBE)
    reused = saved is not None and saved.fitted_on == fingerprint(train_enc)
    log(f"baseline: logistic-regression probe on the frozen {run_meta['model']} embeddings "
        f"({len(train_enc)} train, {len(test_enc)} test examples"
        + ("; fitted before training, reused from " + runfiles.PROBE if reused else "") + ")")
    # Batches of the micro-batch that trained (config.yaml, after the preflight): what the
    # machine was sized for, and on CPU what glibc holds freed blocks for (with_validation).
    batch = cfg.finetune.batch_size
    baseline, _ = probe_baseline(loaded.model, train_enc, test_enc, pad, seed=cfg.prepare.seed,
                                 positive=positive, probe=saved if reused else None,
                                 batch_size=batch)
    model = load_adapter(loaded.model, run_dir / runfiles.ADAPTER_DIR)
    scores = score(model, test_enc, pad, batch)
    if positive is not None:
        truth = [e["label"] == positive for e in test_enc.examples]
        scores.metrics["pr_auc"] = average_precision(truth, scores.probabilities[:, positive].tolist())
    finetuned = select(plan, scores.metrics)
    baseline = select(plan, baseline)
    errors = worst_errors(test_records, scores, labels, cfg.evaluation.num_samples)
    with (run_dir / runfiles.ERRORS).open("w", encoding="utf-8") as fh:
        for error in errors:
            fh.write(json.dumps(error, ensure_ascii=False) + "\n")
    metrics = {
        "plan": plan.to_dict(),
        "baseline": baseline,
        "finetuned": finetuned,
        "delta": {k: v - baseline[k] for k, v in finetuned.items() if k in baseline},
        "confusion_matrix": {"labels": labels, "matrix": scores.confusion},
    }
    return metrics, errors
