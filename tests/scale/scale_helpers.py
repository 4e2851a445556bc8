"""Helpers of the scale tests: write a config, run the CLI, read a run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

# The training CLI, run as a program (as a user runs it): python -m tunesmith.cli.main.
CLI = [sys.executable, "-m", "tunesmith.cli.main"]


def write_config(path: Path, model: Path, **finetune) -> Path:
    """A params.yaml for the tiny model: no MLflow, a high learning rate so weights move."""
    settings = {"model": str(model), "learning_rate": 0.01, "logging_steps": 1, **finetune}
    path.write_text(yaml.safe_dump({
        "prepare": {"max_length": 64},
        "finetune": settings,
        "tracking": {"enabled": False},
    }))
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    done = subprocess.run([*CLI, *args], cwd=cwd, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"tunesmith {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def history(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def adapter_tensors(adapter_dir: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(adapter_dir.glob("*.safetensors"))
    assert files, f"no adapter weights in {adapter_dir}"
    return {k: v for f in files for k, v in load_file(str(f)).items()}


def kill_after_first_checkpoint(args: list[str], run_dir, cwd) -> int:
    """Start `tunesmith ARGS` (train or run), SIGKILL it once a checkpoint exists; return its step."""
    state = run_dir / "checkpoints" / "last" / "state.json"
    process = subprocess.Popen([*CLI, *args], cwd=cwd, env=cli_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not state.is_file():
            assert process.poll() is None, f"training ended before a checkpoint: {process.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists(), "the run finished before the kill"
    # last/ may be mid-swap when the kill lands: last.old/ then still holds the previous one.
    saved = run_dir / "checkpoints" / ("last" if state.is_file() else "last.old") / "state.json"
    return json.loads(saved.read_text())["step"]
