"""The scaffolded project under real git and dvc: repro, no-op repro, a param change that
reruns only the right stages, `dvc exp run`, metrics diff, push/pull to a local remote.

A tiny random BERT (real MiniLM tokenizer) on 200 real rotten-tomatoes snippets and 3 steps
keeps the five stages to seconds each; most of the time is process start-up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunesmith.track.dvc_project import STAGE_NAMES

BIN = Path(sys.executable).parent


def _sh(cwd: Path, *cmd: str, env: dict) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _ran(output: str) -> set[str]:
    return {s for s in STAGE_NAMES if f"Running stage '{s}'" in output}


def _mlflow_runs(project: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tunesmith")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.mark.integration
def test_scaffolded_pipeline_under_real_dvc(tmp_path, tiny_base):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    project = tmp_path / "proj"
    out = _sh(tmp_path, str(BIN / "tunesmith"), "init", str(project), "--data", "rotten-tomatoes",
              "--model", str(tiny_base), "--task", "classification", env=env)
    assert "ran git init, dvc init" in out
    for name in ("params.yaml", "dvc.yaml", ".gitignore", "README.md", ".dvc"):
        assert (project / name).exists(), name

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["prepare"].update(limit=200, max_length=64)
    params["finetune"].update(max_steps=3, batch_size=16, logging_steps=1, learning_rate=2e-3,
                              lora_target_modules=["query", "value"])
    params["evaluation"]["num_samples"] = 5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh(project, "git", "add", ".", env=env)
    _sh(project, "git", "commit", "-qm", "project", env=env)

    dvc = str(BIN / "dvc")
    first = _sh(project, dvc, "repro", env=env)
    assert _ran(first) == set(STAGE_NAMES)
    metrics = json.loads((project / "metrics.json").read_text())
    assert 0 <= metrics["finetuned"]["accuracy"] <= 1 and "baseline" in metrics
    manifest = json.loads((project / "data/finetuning/manifest.json").read_text())
    assert manifest["counts"]["used"] == 200
    assert {p.name for p in (project / "plots").iterdir()} >= {"loss.png", "lr.png", "confusion_matrix.png"}
    assert "data:image/png;base64," in (project / "reports/report.html").read_text()
    _sh(project, dvc, "plots", "show", "--out", str(tmp_path / "plots-html"), env=env)
    assert (tmp_path / "plots-html/static/workspace_plots_loss.png").is_file()
    assert not (project / "models/run/metrics.json").read_text().count("finetuned")  # untouched out

    # The training run leads back to the data: DVC's hash of every data stage output.
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    split_md5 = next(o["md5"] for o in lock["stages"]["prepare_finetuning"]["outs"])
    train_run = _mlflow_runs(project)[0]
    assert train_run.data.tags["dvc.data/finetuning"] == split_md5
    assert train_run.data.tags["git_commit"]

    second = _sh(project, dvc, "repro", env=env)
    assert _ran(second) == set() and "up to date" in second

    _sh(project, "git", "add", ".", env=env)
    _sh(project, "git", "commit", "-qm", "baseline results", env=env)

    # A finetune param dirties the finetune stage only (evaluate follows once its model input
    # changes: the exp run below shows both rerun), never the data stages.
    edited = yaml.safe_load((project / "params.yaml").read_text())
    edited["finetune"]["lora_r"] = 16
    (project / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    status = json.loads(_sh(project, dvc, "status", "--json", env=env).splitlines()[-1])
    assert set(status) == {"finetune_model"}
    _sh(project, "git", "checkout", "params.yaml", env=env)

    exp = _sh(project, dvc, "exp", "run", "-S", "finetune.lora_r=16", "--name", "lora-r16", env=env)
    assert _ran(exp) == {"finetune_model", "evaluate_model"}
    assert "lora-r16" in _sh(project, dvc, "exp", "show", "--json", env=env)
    # `metrics diff` lists what changed: r 16 has twice the LoRA parameters of r 8.
    diff = json.loads(_sh(project, dvc, "metrics", "diff", "--json", env=env))
    trainable = diff["metrics.json"]["train.trainable_params"]
    assert trainable["new"] > trainable["old"]
    exp_run = _mlflow_runs(project)[-1]
    assert exp_run.data.tags["dvc.exp_name"] == "lora-r16"
    assert exp_run.data.tags["dvc.data/finetuning"] == split_md5
    assert "dvc.models/run" not in exp_run.data.tags  # the previous model's hash would mislead
    assert exp_run.data.params["finetune.lora_r"] == "16"

    # push/pull: the data and the model come back from a local remote.
    _sh(project, dvc, "remote", "add", "-d", "local", str(tmp_path / "remote"), env=env)
    _sh(project, dvc, "push", env=env)
    adapter = project / "models/run/adapter/adapter_model.safetensors"
    before = adapter.read_bytes()
    for folder in ("data/raw", "data/processed", "data/finetuning", "models/run", ".dvc/cache"):
        shutil.rmtree(project / folder)
    _sh(project, dvc, "pull", env=env)
    assert adapter.read_bytes() == before
    assert (project / "data/finetuning/train.jsonl").is_file()
    assert "up to date" in _sh(project, dvc, "status", env=env)
