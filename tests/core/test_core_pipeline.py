"""run = prepare + train + evaluate, on a tiny random BERT saved as a local model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_tiny import tiny_bert, tokenizer, toy_records

from tunesmith.config import load_config
from tunesmith.errors import UsageError
from tunesmith.pipelines.config import list_runs
from tunesmith.pipelines.evaluate import evaluate
from tunesmith.pipelines.run import DEMO_REASONS, DEMO_SETTINGS, demo_config, run


def _setup(tmp: Path) -> list[str]:
    model_dir = tmp / "tiny-bert"
    tiny_bert().save_pretrained(model_dir)
    tokenizer().save_pretrained(model_dir)
    with (tmp / "reviews.jsonl").open("w") as fh:
        for record in toy_records(60):  # 60 distinct sentences
            fh.write(json.dumps(record.to_dict()) + "\n")
    return [f"finetune.model={model_dir}", "prepare.dataset=reviews.jsonl",
            "finetune.method=full", "finetune.max_steps=4", "finetune.learning_rate=1e-3",
            "tracking.enabled=false"]


def test_run_writes_a_complete_run_folder(in_tmp):
    cfg = load_config(None, _setup(in_tmp))
    result = run(cfg, out_dir="runs/tiny", progress=False, log=lambda _: None)
    folder = Path("runs/tiny")
    assert result.data_counts == {"train": 48, "val": 6, "test": 6}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics == result.metrics
    assert set(metrics) >= {"task", "baseline", "finetuned", "delta", "train"}
    assert metrics["train"]["steps"] == 4 and metrics["train"]["trainable_percent"] == 100.0
    meta = json.loads((folder / "run.json").read_text())
    assert meta["task"] == "classification" and meta["labels"] == ["neg", "pos"]
    assert "mlflow_run_id" not in meta and not Path("mlflow.db").exists()
    errors = [json.loads(x) for x in (folder / "errors.jsonl").read_text().splitlines()]
    assert all(e["label"] != e["predicted"] for e in errors)
    assert [e["confidence"] for e in errors] == sorted((e["confidence"] for e in errors), reverse=True)

    # evaluate again on another test file: the stage works on its own
    Path("other.jsonl").write_text(
        "".join(json.dumps(r.to_dict()) + "\n" for r in toy_records(10)))
    again = evaluate(folder, "other.jsonl", log=lambda _: None)
    assert sum(sum(row) for row in again.metrics["confusion_matrix"]["matrix"]) == 10

    [summary] = list_runs("runs")
    assert (summary.name, summary.status, summary.metric) == ("tiny", "finished", "accuracy")

    with pytest.raises(UsageError, match="already holds a run"):
        run(cfg, out_dir="runs/tiny", progress=False, log=lambda _: None)


def test_demo_preset_matches_its_reasons():
    cfg = demo_config(["finetune.num_epochs=1"])
    assert set(DEMO_REASONS) == set(DEMO_SETTINGS)
    flat = cfg.flat()
    assert flat["finetune.learning_rate"] == 2e-3 and flat["finetune.num_epochs"] == 1
    assert flat["prepare.dataset"] == "rotten-tomatoes" and flat["finetune.model"] == "minilm"
