"""`tunesmith run --continue-from` and `tunesmith multitask` refuse bad command lines in one
paragraph, before loading any model (a real subprocess each)."""

from __future__ import annotations

import os
import subprocess
import sys

TUNESMITH = [sys.executable, "-m", "tunesmith.cli.main"]


def _run(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*TUNESMITH, *args], capture_output=True, text=True, env=env, timeout=300)


def test_continue_from_needs_a_finished_run_and_replay_needs_continue_from(in_tmp):
    out = _run("run", "--continue-from", "runs/nothing", "--set", "tracking.enabled=false")
    assert out.returncode != 0 and "not a tunesmith run folder" in out.stderr
    out = _run("run", "--set", "prepare.replay_fraction=0.2", "--set", "tracking.enabled=false")
    assert out.returncode != 0 and "--continue-from RUN" in out.stderr
    out = _run("run", "--set", "prepare.replay_fraction=1.5")
    assert out.returncode == 2 and "prepare.replay_fraction" in out.stderr and "<= 1" in out.stderr
    out = _run("run", "--resume", "runs/x", "--continue-from", "runs/y")
    assert out.returncode != 0 and "leave out --config, --set, --out and --continue-from" in out.stderr
    assert not any("Traceback" in o for o in (out.stderr,))


def test_multitask_task_arguments_are_checked(in_tmp):
    out = _run("multitask", "--task", "qa", "--out", "mt")
    assert out.returncode != 0 and "--task expects NAME=CONFIG" in out.stderr
    out = _run("multitask", "--task", "qa=missing.yaml", "--out", "mt")
    assert out.returncode == 2 and "config file not found: missing.yaml" in out.stderr
    assert "Traceback" not in out.stderr
