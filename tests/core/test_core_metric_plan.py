"""The metric plan: one small case per rule (the guide's "Poor Metric Selection")."""

from __future__ import annotations

import pytest

from tunesmith.errors import ConfigError
from tunesmith.evaluate.metric_plan import (
    MetricPlan,
    compare,
    headline_metric,
    mlflow_tags,
    plan_classification,
    plan_for_records,
    plan_generation,
    select,
    verdict,
)
from tunesmith.records import ClassificationRecord, QARecord


def test_balanced_labels_lead_with_accuracy_beside_macro_f1_and_the_majority_rate():
    plan = plan_classification(["fresh"] * 57 + ["rotten"] * 43)  # rotten-tomatoes' 1.37x
    assert plan.headline == "accuracy"
    assert plan.supporting[:2] == ("f1", "majority_rate")
    assert "pr_auc" not in plan.reported and plan.positive_label is None
    assert headline_metric(plan) == "val_accuracy"


def test_imbalanced_labels_lead_with_macro_f1_and_keep_accuracy_beside_the_majority_rate():
    plan = plan_classification(["a"] * 60 + ["b"] * 25 + ["c"] * 15)  # 4x: imbalanced, 3 classes
    assert plan.headline == "f1"
    assert "60%" in plan.why and "4.0x" in plan.why
    assert plan.supporting[:2] == ("accuracy", "majority_rate")
    assert plan.positive_label is None  # PR-AUC is for a binary task's rare class
    assert headline_metric(plan) == "val_f1"
    # On a causal LM (labels as instructions) validation computes only the response loss.
    causal = plan_classification(["a"] * 60 + ["b"] * 25 + ["c"] * 15,
                                 task="classification-as-instruction")
    assert causal.headline == "f1" and headline_metric(causal) == "val_loss"
    # Just under the ratio: still balanced enough.
    assert plan_classification(["a"] * 66 + ["b"] * 34).headline == "accuracy"
    assert plan_classification(["a"] * 67 + ["b"] * 33).headline == "f1"


def test_a_rare_positive_class_gets_pr_auc_right_after_macro_f1():
    plan = plan_classification(["negative"] * 95 + ["positive"] * 5)  # the guide's example
    assert plan.headline == "f1"
    assert plan.positive_label == "positive"
    assert plan.reported[:3] == ("f1", "pr_auc", "accuracy")
    # 25% is imbalanced (3x) but not rare: no PR-AUC.
    assert plan_classification(["n"] * 75 + ["p"] * 25).positive_label is None


def test_a_closed_set_of_short_answers_is_scored_as_labels_beside_the_generation_metrics():
    plan = plan_generation("instruction", ["positive"] * 30 + ["negative"] * 20)
    assert plan.headline == "label_f1"
    assert plan.closed_set == ("negative", "positive")
    assert plan.supporting[:2] == ("label_accuracy", "out_of_set_rate")
    assert {"exact_match", "token_f1", "perplexity"} <= set(plan.supporting)
    assert "bleu" in plan.left_out and "rouge2" in plan.left_out
    # Many distinct answers (each seen twice): not a label set.
    free = plan_generation("instruction", [f"answer {i}" for i in range(25)] * 2)
    assert free.closed_set == () and free.headline == "token_f1"


def test_short_answers_leave_bleu_and_rouge2_out_unless_asked_then_mark_them():
    refs = ["Paris", "in 1990", "Joe Russo", "the Nile river", "42", "blue", "Ada"]
    plan = plan_generation("qa", refs)
    assert plan.headline == "token_f1"
    assert plan.left_out["bleu"].startswith("not meaningful: references under 4 tokens")
    assert "bleu" not in plan.reported and "rouge2" not in plan.reported
    asked = plan_generation("qa", refs, ["auto", "bleu"])
    assert "bleu" in asked.reported and "bleu" not in asked.left_out
    assert asked.note("bleu").startswith("not meaningful: references under 4 tokens")
    assert "rouge2" in asked.left_out
    tags = mlflow_tags(asked)
    assert tags["metric_plan.degenerate.bleu"] == asked.degenerate["bleu"]
    assert tags["metric_plan.headline"] == "token_f1" and "metric_plan.left_out.rouge2" in tags


def test_qa_leads_with_token_f1_beside_exact_match_and_meteor():
    plan = plan_generation("qa", ["the Eiffel Tower in Paris", "Marie Curie won it twice",
                                  "about four hundred metres"])
    assert plan.headline == "token_f1"
    assert plan.supporting[:2] == ("exact_match", "meteor")
    assert plan.left_out == {}  # answers of 4+ tokens: BLEU is not degenerate, just not shown
    # One-word answers: METEOR is kept but marked (a perfect one-word answer scores 0.5).
    one_word = plan_generation("qa", ["Paris", "1990", "Ada", "blue", "Paris 1990"])
    assert "meteor" in one_word.reported and "0.5" in one_word.note("meteor")


def test_long_free_text_leads_with_rouge_l_beside_bleu_meteor_and_perplexity():
    replies = ["I think that film was a lot better than the first one",
               "We went hiking on Saturday and it rained all day long",
               "Sounds good, let me know when you are free next week"]
    plan = plan_generation("chat", replies)
    assert plan.headline == "rougeL"
    assert plan.supporting[:3] == ("bleu", "meteor", "perplexity")
    assert plan.degenerate == {} and plan.left_out == {}
    assert headline_metric(plan) == "val_loss"  # validation does not generate


def test_evaluation_metrics_still_chooses_and_unknown_names_fail_with_the_nearest():
    plan = plan_classification(["a"] * 95 + ["b"] * 5, ["accuracy"])
    assert plan.reported == ("f1", "accuracy")  # the headline is always reported
    assert plan.left_out["pr_auc"] == "not in evaluation.metrics"
    rouge = plan_generation("chat", ["a long enough reply of many words"] * 3, ["rouge"])
    assert rouge.reported == ("rougeL", "rouge1", "rouge2")
    assert plan_classification(["a", "b"], ["bleu"]).left_out["bleu"] == "not computed for classification"
    with pytest.raises(ConfigError, match="Did you mean 'meteor'"):
        plan_generation("qa", ["x"], ["meteorr"])


def test_plan_from_records_round_trips_through_metrics_json_and_selects_scores():
    records = [ClassificationRecord(text=f"t{i}", label="pos" if i < 2 else "neg") for i in range(20)]
    plan = plan_for_records("classification", records)
    assert plan.positive_label == "pos" and plan.headline == "f1"
    assert MetricPlan.from_dict(plan.to_dict()) == plan
    qa = plan_for_records("qa", [QARecord(question="q?", answer="Paris")] * 3)
    assert qa.facts["median_reference_tokens"] == 1
    scores = {"accuracy": 0.9, "f1": 0.5, "pr_auc": 0.4, "precision": 0.5, "recall": 0.5,
              "loss": 0.3, "bleu": 1.0, "majority_rate": 0.9, "kind": "probe"}
    assert list(select(plan, scores)) == ["f1", "pr_auc", "accuracy", "majority_rate",
                                          "precision", "recall", "loss", "kind"]


def test_the_verdict_sentence_uses_the_headline_not_accuracy():
    plan = plan_classification(["a"] * 95 + ["b"] * 5)
    metrics = {"baseline": {"accuracy": 0.95, "f1": 0.49}, "finetuned": {"accuracy": 0.93, "f1": 0.70}}
    sentence = verdict(plan, metrics)
    assert sentence.startswith("finetuning beat the baseline on the headline metric: macro F1 0.4900")
    metrics["finetuned"]["f1"] = 0.40
    assert "did NOT beat" in verdict(plan, metrics)
    metrics["finetuned"]["f1"] = 0.49
    assert verdict(plan, metrics).startswith("finetuning matched the baseline")
    assert compare("loss", {"baseline": {"loss": 0.5}, "finetuned": {"loss": 0.4}}).result == "won"
    assert compare("accuracy", {"baseline": {"accuracy": 0.5}, "finetuned": {"accuracy": 0.4}}).result == "lost"
    assert verdict(plan, {"baseline": {}, "finetuned": {"f1": 0.4}}) is None
