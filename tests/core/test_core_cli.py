"""The core commands through a real subprocess: help, config round trip, errors for people."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

TUNESMITH = [sys.executable, "-m", "tunesmith.cli.main"]


def _run(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*TUNESMITH, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_help_lists_the_core_commands():
    out = _run("--help")
    assert out.returncode == 0
    for command in ("run", "demo", "train", "evaluate", "config", "runs"):
        assert f"    {command} " in out.stdout


def test_config_show_round_trips(in_tmp):
    first = _run("config", "show", "--set", "finetune.lora_r=16", "--set", "prepare.limit=500")
    assert first.returncode == 0, first.stderr
    data = yaml.safe_load(first.stdout)
    assert data["finetune"]["lora_r"] == 16 and data["prepare"]["limit"] == 500
    assert data["finetune"]["learning_rate"] == 2e-4  # the guide's LoRA default
    Path("params.yaml").write_text(first.stdout)
    second = _run("config", "show", "--config", "params.yaml")
    assert second.returncode == 0 and second.stdout == first.stdout


def test_bad_config_exits_2_with_the_nearest_key(in_tmp):
    Path("params.yaml").write_text("finetune:\n  lora_rank: 8\n  learning_rate: -1\n")
    out = _run("config", "show", "--config", "params.yaml")
    assert out.returncode == 2
    assert "unknown key 'finetune.lora_rank'" in out.stderr
    assert "Did you mean 'finetune.lora_r'" in out.stderr
    assert "finetune.learning_rate" in out.stderr and "> 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_demo_preset_says_why(in_tmp):
    out = _run("demo", "--show-config", "--set", "finetune.num_epochs=1")
    assert out.returncode == 0
    data = yaml.safe_load(out.stdout)
    assert data["finetune"]["learning_rate"] == 2e-3 and data["finetune"]["num_epochs"] == 1


def test_unknown_model_is_one_paragraph(in_tmp):
    rows = [{"text": f"review number {i}", "label": "pos" if i % 2 else "neg"} for i in range(30)]
    Path("reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = _run("run", "--set", "finetune.model=no-such-model", "--set", "prepare.dataset=reviews.jsonl",
               "--set", "tracking.enabled=false", "--no-progress")
    assert out.returncode == 1
    assert "unknown model 'no-such-model'" in out.stderr and "minilm" in out.stderr
    assert "Traceback" not in out.stderr


def test_train_without_data_and_runs_without_folder(in_tmp):
    out = _run("train", "--out", "x")
    assert out.returncode == 2 and "--data" in out.stderr
    out = _run("runs")
    assert out.returncode == 2 and "no runs folder" in out.stderr
    out = _run("evaluate", "nowhere")
    assert out.returncode == 2 and "not a tunesmith run folder" in out.stderr


_HELP_IMPORTS = """
import json, sys, time
start = time.perf_counter()
from tunesmith.cli.main import build_parser, main
commands = sorted(build_parser()._subparsers._group_actions[0].choices)
for argv in [["--help"]] + [[c, "--help"] for c in commands]:
    try:
        main(argv)
    except SystemExit:
        pass
heavy = sorted(m for m in ("torch", "transformers", "peft", "mlflow", "accelerate", "dvc",
                           "matplotlib", "sklearn", "fastapi", "pandas") if m in sys.modules)
print(json.dumps({"commands": len(commands), "heavy": heavy,
                  "seconds": time.perf_counter() - start}))
"""


def test_help_of_every_command_imports_nothing_heavy_and_is_fast():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _HELP_IMPORTS], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["commands"] >= 10
    assert result["heavy"] == []  # e.g. torch alone takes seconds to import
    assert result["seconds"] < 5, result  # about 1.5 s for all of them on 2 busy cores
