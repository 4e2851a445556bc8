"""`runs compare`: params that differ and metric deltas, for run folders and MLflow run ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.config import Config


def _run_folder(root: Path, name: str, overrides: dict, accuracy: float) -> Path:
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(Config.model_validate(overrides).to_yaml())
    (run / "metrics.json").write_text(json.dumps({
        "task": "classification", "baseline": {"accuracy": 0.70, "kind": "probe"},
        "finetuned": {"accuracy": accuracy, "f1": accuracy - 0.01},
        "train": {"stopped_early": False, "steps": 40}}))
    return run


def test_compare_folders_lists_changed_params_and_metric_deltas(in_tmp):
    from tunesmith.pipelines.registry import compare_runs

    a = _run_folder(in_tmp, "a", {"finetune": {"lora_r": 8}}, 0.75)
    b = _run_folder(in_tmp, "b", {"finetune": {"lora_r": 16, "learning_rate": 1e-3}}, 0.78)
    result = compare_runs(a, b, tracking_uri="sqlite:///unused.db")
    assert [(p.key, p.a, p.b) for p in result.params] == [
        ("finetune.learning_rate", "0.0002", "0.001"), ("finetune.lora_r", "8", "16")]
    deltas = {m.key: m.delta for m in result.metrics}
    assert deltas["finetuned.accuracy"] == pytest.approx(0.03)
    assert deltas["baseline.accuracy"] == 0
    assert "train.stopped_early" not in deltas  # booleans are not metrics
    assert "baseline.kind" not in deltas


def test_compare_mlflow_runs_by_id(in_tmp):
    import mlflow

    from tunesmith.pipelines.registry import compare_runs

    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    # Name the experiment: another test in this worker may have left a different store's
    # experiment active in MLflow's process-global state.
    mlflow.set_experiment("compare")
    ids = []
    for r, acc in ((8, 0.75), (16, 0.70)):
        with mlflow.start_run() as run:
            mlflow.log_params({"finetune.lora_r": r, "finetune.method": "lora"})
            mlflow.log_metric("test_accuracy", acc)
            ids.append(run.info.run_id)
    result = compare_runs(*ids, tracking_uri=uri)
    assert [(p.key, p.a, p.b) for p in result.params] == [("finetune.lora_r", "8", "16")]
    assert result.metrics[0].key == "test_accuracy"
    assert result.metrics[0].delta == pytest.approx(-0.05)


def test_compare_cli_prints_the_table_and_fails_cleanly_on_a_bad_run(in_tmp):
    a = _run_folder(in_tmp, "a", {}, 0.75)
    b = _run_folder(in_tmp, "b", {"finetune": {"lora_r": 16}}, 0.78)
    cli = [sys.executable, "-m", "tunesmith.cli.main", "runs", "compare"]
    ok = subprocess.run([*cli, str(a), str(b)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "finetune.lora_r" in ok.stdout and "+0.0300" in ok.stdout
    bad = subprocess.run([*cli, str(a), "no-such-run", "--tracking-uri",
                          f"sqlite:///{in_tmp / 'm.db'}"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "neither a run folder nor a run id" in bad.stderr and "Traceback" not in bad.stderr


def test_tracking_uri_comes_from_the_flag_the_environment_or_params_yaml(in_tmp, monkeypatch):
    from tunesmith.pipelines.registry import resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == "sqlite:///mlflow.db"
    (in_tmp / "params.yaml").write_text("tracking:\n  mlflow_uri: sqlite:///project.db\n")
    assert resolve_tracking_uri(None) == "sqlite:///project.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
