"""The whole-run memory estimate against a real default run, and its parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.advise import run_memory
from tunesmith.advise.memory import MemoryArgs, estimate_memory
from tunesmith.advise.run_memory import estimate_run
from tunesmith.train import objectives

TOLERANCE = 0.15


def test_logit_chunk_of_the_estimate_is_the_losss():
    from tunesmith.advise import memory

    assert memory.LOGIT_CHUNK_ELEMENTS == objectives.CHUNK_ELEMENTS


def test_run_total_adds_fixed_cost_slack_and_best_copy(shape):
    args = MemoryArgs.defaults(device="cpu").replace(batch_size=4, max_length=128)
    run = estimate_run(shape, args, fixed=500e6)
    train = estimate_memory(shape, args)
    size = {p.key: p.bytes for p in train.parts}
    training = (size["weights"] + size["optimizer"] + train.trainable_params * 4
                + max(size["gradients"], run_memory.ACTIVATION_SLACK * size["activations"]))
    assert run.total_bytes == pytest.approx(
        500e6 + run_memory.RUN_EXTRA_BYTES + max(run_memory.LOAD_COPIES * size["weights"], training))
    # On CUDA the whole-run terms are not modelled: the training estimate, with a note.
    gpu = estimate_run(shape, args.replace(device="cuda"))
    assert gpu.total_bytes == estimate_memory(shape, args.replace(device="cuda")).total_bytes
    assert gpu.notes


@pytest.mark.integration  # measures in a real subprocess (10-60 s)
def test_fixed_cost_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_HOME", str(tmp_path))
    path = run_memory.fixed_cost_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"bytes": 123e6, "versions": run_memory._versions()}))
    assert run_memory.fixed_cost() == (123e6, f"measured once on this machine ({path})")
    # Other library versions: the cached figure no longer applies and is measured again.
    path.write_text(json.dumps({"bytes": 123e6, "versions": {"torch": "0.0"}}))
    value, where = run_memory.fixed_cost()
    assert value > 200e6 and "measured now" in where  # torch alone is about 230 MB resident
    assert json.loads(path.read_text())["bytes"] == value


@pytest.mark.integration
def test_small_default_run_peaks_within_15_percent_of_its_estimate(tmp_path):
    """A real default `tunesmith run` (MiniLM LoRA) in a fresh process: metrics.json's whole-run
    peak (the kernel's VmHWM) against the estimate the preflight recorded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(Path(run_memory.__file__).resolve().parents[2])
    env.pop("TUNESMITH_SET", None)
    subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "run", "--no-progress",
                    "--out", "run", "--set", "prepare.limit=200", "--set", "finetune.max_steps=2"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    train = json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]
    assert train["estimate_run_mb"] > train["estimate_train_mb"] > 0
    assert 0 < train["train_added_mb"] < train["peak_run_mb"]
    assert train["estimate_run_mb"] == pytest.approx(train["peak_run_mb"], rel=TOLERANCE)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "peak memory: measured / estimated" in report
