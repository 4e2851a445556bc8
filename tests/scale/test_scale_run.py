"""`tunesmith run` to the end: after a SIGKILL (`run --resume`) and in two processes (`--nproc`).

Both go through the CLI in subprocesses, on the tiny BERT and 96 real reviews of the scale
tests, with MLflow on (an sqlite store in the test's folder).
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from scale_helpers import CLI, cli_env, history, kill_after_first_checkpoint, run_cli

STEPS = 20


def _run_config(in_tmp, tiny_setup, **finetune):
    """A params.yaml that prepares the 96 reviews itself (as `run` does) and logs to MLflow."""
    dataset = in_tmp / "reviews.jsonl"
    dataset.write_text("".join((tiny_setup["data"] / f"{s}.jsonl").read_text() for s in ("train", "val")))
    path = in_tmp / "params.yaml"
    path.write_text(yaml.safe_dump({
        "prepare": {"dataset": str(dataset), "max_length": 64},
        "finetune": {"model": str(tiny_setup["model"]), "learning_rate": 0.01, "logging_steps": 1,
                     "batch_size": 4, "max_steps": STEPS, "early_stopping_patience": 0, **finetune},
        "tracking": {"mlflow_uri": f"sqlite:///{in_tmp / 'mlflow.db'}"},
    }))
    return path


def _finished_in_mlflow(in_tmp, run_dir):
    from mlflow.tracking import MlflowClient

    run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{in_tmp / 'mlflow.db'}")
    logged = client.get_run(run_id)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    return logged.info.status, logged.data.metrics, artifacts


@pytest.mark.integration
def test_run_resume_finishes_training_evaluation_report_and_mlflow(tiny_setup, in_tmp):
    config = _run_config(in_tmp, tiny_setup, eval_every=5)
    run_dir = in_tmp / "killed"
    killed_at = kill_after_first_checkpoint(["run", "--config", str(config), "--out", "killed"],
                                            run_dir, in_tmp)
    assert 0 < killed_at < STEPS
    assert not (run_dir / "adapter").exists() and not (run_dir / "report.html").exists()

    run_cli("run", "--resume", "killed", cwd=in_tmp)
    assert any(r["event"] == "resumed" for r in history(run_dir, "event"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"baseline", "finetuned", "delta", "train"} <= metrics.keys()
    assert metrics["train"]["steps"] == STEPS
    assert "finetuned" in (run_dir / "report.html").read_text()
    status, logged, artifacts = _finished_in_mlflow(in_tmp, run_dir)
    assert status == "FINISHED"
    assert logged["finetuned_accuracy"] == pytest.approx(metrics["finetuned"]["accuracy"])
    assert {"report.html", "metrics.json", "adapter"} <= artifacts


def test_run_resume_refuses_a_folder_that_is_not_a_run(in_tmp):
    (in_tmp / "empty").mkdir()
    done = subprocess.run([*CLI, "run", "--resume", "empty"], cwd=in_tmp, env=cli_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "empty is not a run folder that `tunesmith run` got to train" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_run_in_two_processes_prepares_trains_and_evaluates(tiny_setup, in_tmp):
    config = _run_config(in_tmp, tiny_setup, lora_dropout=0.0)
    run_cli("run", "--config", str(config), "--out", "two", "--nproc", "2", "--no-progress",
            cwd=in_tmp, timeout=400)
    run_dir = in_tmp / "two"
    # Process 1 ran too (its copy of the adapter), and every step saw both processes' batches.
    assert (run_dir / "ranks" / "1" / "adapter").is_dir()
    train = history(run_dir, "train")
    assert [r["step"] for r in train] == list(range(1, STEPS + 1)) and train[0]["samples"] == 8
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"baseline", "finetuned", "delta", "train"} <= metrics.keys()
    status, _, artifacts = _finished_in_mlflow(in_tmp, run_dir)
    assert status == "FINISHED" and "report.html" in artifacts


def test_train_with_nproc_checks_its_arguments_before_starting_processes(in_tmp):
    done = subprocess.run([*CLI, "train", "--nproc", "2", "--out", "x"], cwd=in_tmp,
                          env=cli_env(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: train needs --data DIR (train.jsonl, val.jsonl) and --out DIR.",
        "Or `tunesmith run`, which prepares the data as well.",
    ]
    missing = subprocess.run([*CLI, "train", "--nproc", "2", "--data", "nowhere", "--out", "x"],
                             cwd=in_tmp, env=cli_env(), capture_output=True, text=True,
                             timeout=120, check=False)
    assert missing.returncode == 1 and "no train split in nowhere" in missing.stderr
    assert "torchrun" not in missing.stderr and "Traceback" not in missing.stderr
