"""Diagnosis rules on the guide's own example tables, on synthetic spikes and NaN, the live
callback, and the `diagnose` command."""

from __future__ import annotations

import json

import pytest

from tunesmith.advise.diagnose import DiagnosisCallback, diagnose_history, read_history
from tunesmith.cli.main import main
from tunesmith.config import FinetuneConfig
from tunesmith.errors import DataError

# The guide's tables (Step 4, "Key Metrics to Monitor"): (train loss, val loss) per epoch.
HEALTHY = [(2.45, 2.50), (1.82, 1.89), (1.23, 1.35), (0.95, 1.32), (0.71, 1.38)]
UNDERFITTING = [(2.45, 2.48), (2.40, 2.44), (2.38, 2.42)]
OVERFITTING_FROM_START = [(1.20, 2.80), (0.50, 3.20)]
UNSTABLE = [(2.40, 2.45), (3.80, 3.90), (1.20, 1.80)]


def epochs(rows, steps_per_epoch=10):
    history = []
    for epoch, (train, val) in enumerate(rows, start=1):
        step = epoch * steps_per_epoch
        history.append({"kind": "train", "step": step, "epoch": float(epoch), "loss": train,
                        "lr": 2e-4, "grad_norm": 1.0})
        history.append({"kind": "eval", "step": step, "epoch": float(epoch), "val_loss": val})
    return history


def remedies(diagnosis):
    return {r.key: (r.old, r.new) for r in diagnosis.remedies if r.key}


def test_guide_healthy_table_row_by_row():
    assert diagnose_history(epochs(HEALTHY[:3])).verdict == "healthy"
    assert diagnose_history(epochs(HEALTHY[:4])).verdict == "plateau"  # "Val plateauing"
    five = diagnose_history(epochs(HEALTHY), FinetuneConfig(num_epochs=5))
    assert five.verdict == "overfitting"  # "OVERFITTING! Stop here"
    fixes = remedies(five)
    assert fixes["finetune.learning_rate"] == (2e-4, 1e-4)
    assert fixes["finetune.lora_r"] == (8, 4)
    assert fixes["finetune.lora_dropout"] == (0.05, 0.1)
    assert fixes["finetune.num_epochs"] == (5, 4)  # the epoch with the best val loss


def test_guide_underfitting():
    d = diagnose_history(epochs(UNDERFITTING))
    assert d.verdict == "underfitting"
    assert remedies(d)["finetune.learning_rate"] == (2e-4, 3e-4)  # the guide's 2e-4 -> 3e-4
    assert remedies(d)["finetune.lora_r"] == (8, 16)
    assert remedies(d)["finetune.num_epochs"] == (3, 5)


def test_guide_overfitting_from_start():
    d = diagnose_history(epochs(OVERFITTING_FROM_START))
    assert d.verdict == "overfitting_from_start"
    assert remedies(d)["finetune.weight_decay"] == (0.01, 0.1)


def test_guide_unstable():
    d = diagnose_history(epochs(UNSTABLE))
    assert d.verdict == "unstable"
    fixes = remedies(d)
    assert fixes["finetune.learning_rate"] == (2e-4, 1e-4)
    assert fixes["finetune.warmup_ratio"] == (0.1, 0.2)
    assert fixes["finetune.max_grad_norm"] == (1.0, 0.5)
    no_clip = diagnose_history(epochs(UNSTABLE), FinetuneConfig(max_grad_norm=0))
    assert remedies(no_clip)["finetune.max_grad_norm"] == (0, 1.0)


def _steps(losses, grads=None):
    grads = grads or [1.0] * len(losses)
    return [{"kind": "train", "step": i + 1, "loss": loss, "grad_norm": g}
            for i, (loss, g) in enumerate(zip(losses, grads, strict=True))]


def test_nan_and_spikes_are_unstable():
    nan = diagnose_history(_steps([0.7, 0.6, float("nan")]))
    assert nan.verdict == "unstable" and nan.findings[0].fatal
    falling = [0.7 - 0.02 * i for i in range(12)]
    assert diagnose_history(_steps(falling)).verdict == "healthy"
    spiked = falling[:8] + [1.5] + falling[9:]
    d = diagnose_history(_steps(spiked))
    assert d.verdict == "unstable" and "spiked to 1.5 at step 9" in d.summary()
    grads = [1.0] * 12
    grads[10] = 25.0
    g = diagnose_history(_steps(falling, grads))
    assert g.verdict == "unstable" and "gradient-norm spike" in g.summary()
    grads[10] = 8.0  # under 10x the running median: not a spike
    assert diagnose_history(_steps(falling, grads)).verdict == "healthy"


def test_without_evaluations_says_so():
    d = diagnose_history(_steps([0.7 - 0.05 * i for i in range(8)]))
    assert d.verdict == "healthy"
    assert any("overfitting cannot be judged" in n for n in d.notes)
    flat = diagnose_history(_steps([0.70, 0.69, 0.70, 0.69, 0.69, 0.69, 0.69]))
    assert flat.verdict == "underfitting"


def test_live_callback_reports_changes_and_stops_on_nan():
    messages = []
    cb = DiagnosisCallback(FinetuneConfig(), log=messages.append)
    for record in epochs(HEALTHY[:3]):
        stop = cb.on_eval(record) if record["kind"] == "eval" else cb.on_log(record)
        assert not stop
    assert cb.verdict == "healthy" and not messages
    for record in epochs(HEALTHY)[6:]:
        stop = cb.on_eval(record) if record["kind"] == "eval" else cb.on_log(record)
    assert cb.verdict == "overfitting" and not stop
    assert any("overfitting" in m and "learning_rate: 2e-4 -> 1e-4" in m for m in messages)
    assert cb.on_log({"kind": "train", "step": 99, "loss": float("nan")}) is True


def test_diagnose_command(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.jsonl").write_text("\n".join(json.dumps(r) for r in epochs(HEALTHY)) + "\n")
    (run / "config.yaml").write_text("finetune:\n  learning_rate: 0.002\n  lora_r: 16\n")
    assert main(["diagnose", str(run)]) == 1
    out = capsys.readouterr().out
    assert "verdict: overfitting" in out
    assert "learning_rate: 2e-3 -> 1e-3" in out and "lora_r: 16 -> 8" in out
    assert "--set finetune.learning_rate=1e-3" in out
    assert main(["diagnose", str(run), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["verdict"] == "overfitting"
    (run / "history.jsonl").write_text("\n".join(json.dumps(r) for r in epochs(HEALTHY[:3])))
    assert main(["diagnose", str(run)]) == 0


def test_broken_history_names_the_line(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"kind": "train", "step": 1, "loss": 0.5}\n{not json\n')
    with pytest.raises(DataError, match="line 2"):
        read_history(path)
    assert main(["diagnose", str(tmp_path / "missing")]) == 1


def test_a_classifier_knocked_onto_the_class_prior_by_a_high_rate_is_unstable_not_underfitting():
    # The shape of a real run (MiniLM + LoRA, lr-find's 9.3e-3, rotten-tomatoes): the loss dips,
    # then sits at ln 2 while every validation prediction is the majority class (57.4%).
    history = epochs([(0.694, 0.684), (0.683, 0.682)], steps_per_epoch=300)
    for record in history:
        if record["kind"] == "eval":
            record.update(val_accuracy=0.574, val_precision=0.287, val_recall=0.5, val_f1=0.3647)
    high = diagnose_history(history, FinetuneConfig(method="lora", learning_rate=9.3e-3))
    assert high.verdict == "unstable" and "single class" in high.summary() + str(high.findings)
    assert remedies(high)["finetune.learning_rate"] == (9.3e-3, 4.6e-3)  # lower, not higher
    # The same picture at the guide's rate is a model that has not left the prior yet.
    low = diagnose_history(history, FinetuneConfig(method="lora", learning_rate=2e-4))
    assert low.verdict == "underfitting"
    assert remedies(low)["finetune.learning_rate"] == (2e-4, 3e-4)
    # A binary classifier with recalls 0.3 / 0.7 also has macro recall 0.5: not one class.
    for record in history:
        if record["kind"] == "eval":
            record.update(val_accuracy=0.52, val_precision=0.5, val_recall=0.5)
    assert diagnose_history(history, FinetuneConfig(learning_rate=9.3e-3)).verdict == "underfitting"


def test_diagnose_reads_the_curves_against_the_metric_plans_headline(tmp_path, capsys):
    from tunesmith.evaluate.metric_plan import plan_classification

    history = epochs(HEALTHY)
    # Macro F1 peaks at epoch 3 while validation loss is lowest at epoch 4.
    for record, f1 in zip([r for r in history if r["kind"] == "eval"], [0.40, 0.55, 0.61, 0.58, 0.57],
                          strict=True):
        record["val_f1"] = f1
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.jsonl").write_text("\n".join(json.dumps(r) for r in history) + "\n")
    plan = plan_classification(["neg"] * 90 + ["pos"] * 10)  # imbalanced: macro F1 leads
    (run / "metrics.json").write_text(json.dumps({
        "plan": plan.to_dict(), "baseline": {"f1": 0.47, "accuracy": 0.90},
        "finetuned": {"f1": 0.61, "accuracy": 0.88}}))
    main(["diagnose", str(run)])
    out = capsys.readouterr().out
    assert ("note: headline metric val_f1: best 0.6100 at step 30, last 0.5700; validation loss "
            "was lowest at step 40: a checkpoint chosen by loss is not the best by val_f1") in out
    # The test split's verdict is read on macro F1 (up), not accuracy (down).
    assert "test split: finetuning beat the baseline on the headline metric: macro F1 0.4700" in out
    # Without a plan (a run evaluated before plans existed) nothing is added.
    assert not any("headline" in n for n in diagnose_history(history).notes)


def test_a_validation_loss_of_zero_is_not_a_division_by_zero():
    """A trivially separable task can reach val loss 0.0 exactly (seen on a toy run)."""
    from tunesmith.advise.diagnose import diagnose_history
    from tunesmith.config import FinetuneConfig

    history = [{"kind": "train", "step": s, "loss": 0.5 / s} for s in range(1, 40)]
    history += [{"kind": "eval", "step": 20, "epoch": 1.0, "val_loss": 0.0, "val_accuracy": 1.0},
                {"kind": "eval", "step": 39, "epoch": 2.0, "val_loss": 0.0, "val_accuracy": 1.0}]
    diagnosis = diagnose_history(history, FinetuneConfig())
    assert diagnosis.verdict != "plateau"
