"""Score a classifier, and the baseline it has to beat.

The baseline is the pretrained model with its weights untouched: a logistic-regression *probe*
on the frozen encoder's mean-pooled embeddings, fitted on the train split (a freshly initialised
classification head alone would score at chance, which says nothing about the pretrained
model). The majority-class rate sits beside it as the floor every classifier must clear.

Costs: one forward pass (no backward) over train and test for the probe, most of an
evaluation's time, and one over the split being scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.evaluate.metrics import (
    average_precision,
    classification_metrics,
    confusion_matrix,
    majority_rate,
)
from tunesmith.records import ClassificationRecord
from tunesmith.train.encoding import EncodedDataset, collate

EVAL_BATCH_SIZE = 64


@dataclass
class ClassificationScores:
    metrics: dict[str, float]  # accuracy, precision, recall, f1 (macro) and loss when known
    predictions: list[int]
    probabilities: Any  # numpy array [n, classes]
    confusion: list[list[int]]


def _length_sorted_batches(encoded: EncodedDataset, batch_size: int) -> list[list[int]]:
    # Similar lengths per batch: far less padding; the order does not matter for scoring.
    order = sorted(range(len(encoded)), key=lambda i: encoded.lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


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
        for indices in _length_sorted_batches(encoded, batch_size):
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


def embed(
    model: Any, encoded: EncodedDataset, pad_token_id: int, batch_size: int = EVAL_BATCH_SIZE
) -> Any:
    """Mean-pooled last hidden states of the model's encoder (padding excluded): ``[n, hidden]``."""
    import numpy as np
    import torch

    encoder = model.base_model
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.zeros((len(encoded), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for indices in _length_sorted_batches(encoded, batch_size):
            batch = collate([encoded.examples[i] for i in indices], pad_token_id)
            mask = batch["attention_mask"].to(device)
            hidden = encoder(input_ids=batch["input_ids"].to(device), attention_mask=mask)
            hidden = hidden.last_hidden_state.float()
            weights = mask.unsqueeze(-1).float()
            out[indices] = ((hidden * weights).sum(1) / weights.sum(1)).cpu().numpy()
    model.train(was_training)
    return out


def probe_baseline(
    model: Any,
    train: EncodedDataset,
    test: EncodedDataset,
    pad_token_id: int,
    *,
    seed: int = 42,
    positive: int | None = None,
) -> tuple[dict[str, Any], list[int]]:
    """The frozen model's score: a logistic-regression probe fitted on ``train`` embeddings.

    Call it before any finetuning method changes ``model``. Returns the metrics (with
    ``majority_rate``, ``kind: "probe"`` and, for a ``positive`` class index, its ``pr_auc``)
    and the probe's test predictions.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_train = [e["label"] for e in train.examples]
    y_test = [e["label"] for e in test.examples]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(embed(model, train, pad_token_id), y_train)
    test_features = embed(model, test, pad_token_id)
    predictions = [int(p) for p in probe.predict(test_features)]
    metrics: dict[str, Any] = classification_metrics(
        y_test, predictions, list(range(len(test.labels)))
    )
    metrics["majority_rate"] = majority_rate(y_train, y_test)
    metrics["kind"] = "probe"
    if positive is not None:
        column = list(probe.classes_).index(positive)
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
