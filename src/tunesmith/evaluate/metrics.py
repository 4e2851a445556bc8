"""Classification metrics as small pure functions, checkable by hand.

Labels are any hashables; ``labels`` fixes the class order (and includes classes that never
occur, which count in the macro average with precision/recall 0 when predicted/absent).
Precision and recall of a class with no predicted (or no true) examples are 0, as scikit-learn
does with ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

# Metrics where smaller is better; everything else (accuracy, f1, rouge, bleu ...) is larger-better.
LOWER_IS_BETTER = frozenset({"loss", "perplexity"})


def improved(metric: str, change: float) -> bool:
    """Whether a finetuned-minus-baseline ``change`` of ``metric`` is an improvement."""
    return change < 0 if metric in LOWER_IS_BETTER else change > 0


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    _check(y_true, y_pred)
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def confusion_matrix(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable]
) -> list[list[int]]:
    """``matrix[i][j]`` = how many examples of true class ``labels[i]`` were predicted ``labels[j]``."""
    _check(y_true, y_pred)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[index[t]][index[p]] += 1
    return matrix


def per_class_precision_recall_f1(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable]
) -> dict[Hashable, dict[str, float]]:
    matrix = confusion_matrix(y_true, y_pred, labels)
    out: dict[Hashable, dict[str, float]] = {}
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        actual = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    return out


def classification_metrics(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable]
) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1 (each class weighs the same)."""
    per_class = per_class_precision_recall_f1(y_true, y_pred, labels)
    n = len(labels)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "precision": sum(c["precision"] for c in per_class.values()) / n,
        "recall": sum(c["recall"] for c in per_class.values()) / n,
        "f1": sum(c["f1"] for c in per_class.values()) / n,
    }


def average_precision(is_positive: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the precision-recall curve of one class, as average precision (PR-AUC).

    Rank the examples by ``scores`` (highest first) and average the precision at each rank
    where a positive example is found: ``sum((R_n - R_{n-1}) * P_n)``, scikit-learn's
    ``average_precision_score`` (tied scores form one threshold). 0 when there is no positive.
    The guide's metric for a rare positive class: unlike accuracy, it does not reward always
    answering the majority class.
    """
    if len(is_positive) != len(scores):
        raise ValueError(f"{len(is_positive)} labels but {len(scores)} scores")
    positives = sum(bool(y) for y in is_positive)
    if positives == 0:
        return 0.0
    ranked = sorted(zip(scores, is_positive, strict=True), key=lambda pair: -pair[0])
    total, hits, seen, i = 0.0, 0, 0, 0
    while i < len(ranked):
        threshold, before = ranked[i][0], hits
        while i < len(ranked) and ranked[i][0] == threshold:  # one threshold per distinct score
            hits += bool(ranked[i][1])
            seen += 1
            i += 1
        total += (hits - before) * hits / seen  # recall step (in positives) x precision there
    return total / positives


def majority_rate(y_train: Sequence[Hashable], y_test: Sequence[Hashable]) -> float:
    """Accuracy on ``y_test`` of always answering the most common class of ``y_train``."""
    if not y_train or not y_test:
        raise ValueError("majority_rate needs non-empty train and test labels")
    counts: dict[Hashable, int] = {}
    for y in y_train:
        counts[y] = counts.get(y, 0) + 1
    top = max(counts, key=lambda k: counts[k])
    return sum(y == top for y in y_test) / len(y_test)


def _check(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    if not y_true:
        raise ValueError("no examples to score")
