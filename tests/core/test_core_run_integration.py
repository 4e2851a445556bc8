"""`tunesmith run` end to end on a small slice of rotten-tomatoes with the real MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.cli.main import main

pytestmark = pytest.mark.integration


def test_run_writes_the_run_folder_and_logs_to_mlflow(in_tmp, capsys):
    code = main([
        "run", "--out", "runs/small", "--no-progress",
        "--set", "prepare.limit=200", "--set", "finetune.max_steps=6",
        "--set", "finetune.batch_size=8", "--set", "finetune.eval_every=3",
        "--set", "finetune.logging_steps=2", "--set", "finetune.learning_rate=2e-3",
    ])
    assert code == 0
    run = Path("runs/small")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "classification"
    keys = {"accuracy", "precision", "recall", "f1"}
    assert keys | {"majority_rate", "kind"} <= set(metrics["baseline"])
    assert keys <= set(metrics["finetuned"]) and set(metrics["delta"]) == keys
    for key in keys:
        assert 0 <= metrics["finetuned"][key] <= 1
        assert metrics["delta"][key] == pytest.approx(
            metrics["finetuned"][key] - metrics["baseline"][key])
    train = metrics["train"]
    assert {"samples_per_second", "tokens_per_second", "peak_memory_mb", "trainable_params",
            "trainable_percent", "epochs_run", "stopped_early"} <= set(train)
    assert train["steps"] == 6 and 0 < train["trainable_percent"] < 2  # LoRA trains < 2%
    # The rate was set; the targets were not, so a classifier gets LoRA on every linear layer
    # of the encoder: r 8 x (in + out) on q, k, v, attention output (384 -> 384) and the
    # feed-forward pair (384 <-> 1536) in 6 blocks, plus the 384 x 2 + 2 head. (Mean pooling:
    # BERT's pooler is not used, so it gets none.)
    assert train["trainable_params"] == 6 * 8 * (4 * 768 + 2 * 1920) + 770
    saved = (run / "config.yaml").read_text()
    assert "lora_target_modules: all-linear" in saved and "learning_rate: 0.002" in saved

    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history if r["kind"] == "train"] == [2, 4, 6]
    # step 0: the probe-initialised starting weights are scored as a best-checkpoint candidate
    assert [r["step"] for r in history if r["kind"] == "eval"] == [0, 3, 6]
    assert all("val_f1" in r and "val_loss" in r for r in history if r["kind"] == "eval")
    for name in ("config.yaml", "run.json", "errors.jsonl", "adapter/tunesmith_adapter.json",
                 "plots/loss.png", "plots/lr.png", "plots/confusion_matrix.png",
                 "data/train.jsonl", "checkpoints/last/state.json"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "run.json").read_text())
    assert meta["labels"] == ["fresh", "rotten"] and len(meta["data_sha256"]) == 64

    captured = capsys.readouterr()
    out = captured.out
    assert "baseline (probe)" in out and "finetuned" in out
    assert "lora_target_modules all-linear: a classifier trained with lora" in captured.out + captured.err

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    logged = client.get_run(meta["mlflow_run_id"])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "small"
    assert logged.data.params["finetune.max_steps"] == "6"
    assert logged.data.params["finetune.lora_target_modules"] == "all-linear"
    assert logged.data.tags["data_sha256"] == meta["data_sha256"]
    # The metric plan rides along as tags: rotten-tomatoes is balanced enough for accuracy.
    assert logged.data.tags["metric_plan.headline"] == metrics["plan"]["headline"] == "accuracy"
    assert logged.data.metrics["finetuned_accuracy"] == pytest.approx(metrics["finetuned"]["accuracy"])
    assert logged.data.metrics["baseline_accuracy"] == pytest.approx(metrics["baseline"]["accuracy"])
    assert len(client.get_metric_history(logged.info.run_id, "train_loss")) == 3
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"metrics.json", "run.json", "adapter", "plots"} <= artifacts

    assert main(["runs"]) == 0
    assert "small" in capsys.readouterr().out
