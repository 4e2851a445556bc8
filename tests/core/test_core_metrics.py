"""Classification metrics against values computed by hand (and scikit-learn as a second check)."""

from __future__ import annotations

import pytest
from sklearn.metrics import precision_recall_fscore_support

from tunesmith.evaluate.metrics import (
    accuracy,
    average_precision,
    classification_metrics,
    confusion_matrix,
    majority_rate,
    per_class_precision_recall_f1,
)

# Five examples, three classes: a is half right, b always right but over-predicted, c missed.
Y_TRUE = ["a", "a", "b", "b", "c"]
Y_PRED = ["a", "b", "b", "b", "a"]
LABELS = ["a", "b", "c"]


def test_accuracy_counts_matches():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(3 / 5)


def test_confusion_matrix_rows_are_true_classes():
    assert confusion_matrix(Y_TRUE, Y_PRED, LABELS) == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_per_class_by_hand():
    per = per_class_precision_recall_f1(Y_TRUE, Y_PRED, LABELS)
    # a: 1 right of 2 predicted, 1 found of 2 true.
    assert per["a"]["precision"] == pytest.approx(0.5)
    assert per["a"]["recall"] == pytest.approx(0.5)
    assert per["a"]["f1"] == pytest.approx(0.5)
    # b: 2 right of 3 predicted, both found: f1 = 2 * (2/3 * 1) / (2/3 + 1) = 0.8.
    assert per["b"]["precision"] == pytest.approx(2 / 3)
    assert per["b"]["recall"] == pytest.approx(1.0)
    assert per["b"]["f1"] == pytest.approx(0.8)
    # c: never predicted: precision 0 by convention, recall 0.
    assert per["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_macro_averages_by_hand_and_against_sklearn():
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert m["precision"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert m["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    p, r, f, _ = precision_recall_fscore_support(
        Y_TRUE, Y_PRED, labels=LABELS, average="macro", zero_division=0
    )
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((p, r, f))


def test_perfect_and_majority():
    assert classification_metrics([0, 1, 1], [0, 1, 1], [0, 1]) == {
        "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    # train's majority is "x"; 2 of 4 test labels are "x".
    assert majority_rate(["x", "x", "y"], ["x", "y", "y", "x"]) == 0.5


def test_mismatched_lengths_fail():
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        accuracy([1, 2, 3], [1, 2])


def test_improved_knows_which_metrics_are_lower_better():
    from tunesmith.evaluate.metrics import improved

    assert improved("accuracy", 0.02) and not improved("accuracy", -0.02)
    assert improved("perplexity", -3.0) and not improved("perplexity", 3.0)
    assert improved("loss", -0.1) and not improved("f1", 0.0)


def test_average_precision_by_hand_and_against_sklearn():
    from sklearn.metrics import average_precision_score

    truth = [True, False, True, False, False]
    scores = [0.9, 0.8, 0.7, 0.3, 0.1]
    # Ranked: +, -, +, -, -. Precision where each positive is found: 1/1 and 2/3; mean 5/6.
    assert average_precision(truth, scores) == pytest.approx(5 / 6)
    assert average_precision(truth, scores) == pytest.approx(average_precision_score(truth, scores))
    # Tied scores are one threshold: + and - tied at the top give precision 1/2 there.
    assert average_precision([True, False, False], [0.5, 0.5, 0.1]) == pytest.approx(0.5)
    assert average_precision([True, False, False], [0.5, 0.5, 0.1]) == pytest.approx(
        average_precision_score([True, False, False], [0.5, 0.5, 0.1]))
    # A constant "always the majority" score earns only the positive share: 1 of 5.
    assert average_precision([True, False, False, False, False], [0.0] * 5) == pytest.approx(0.2)
    assert average_precision([False, False], [0.2, 0.1]) == 0.0
