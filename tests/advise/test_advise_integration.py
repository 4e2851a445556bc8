"""The advisor against real runs with the bundled MiniLM: a run made to overfit is caught (live
and after the fact), and `advise --write` output runs as is."""

from __future__ import annotations

import json

import pytest

from tunesmith.cli.main import main

pytestmark = pytest.mark.integration


def test_a_run_made_to_overfit_is_diagnosed(in_tmp):
    from tunesmith.advise.diagnose import DiagnosisCallback
    from tunesmith.config import validate_config
    from tunesmith.pipelines.advise import diagnose
    from tunesmith.pipelines.prepare import prepare_data
    from tunesmith.pipelines.train import train

    # 64 training snippets, a large rate and rank, many epochs, no early stopping: it memorises
    # (on query/value: LoRA on every linear layer, a classifier's default, jumps about at 5e-3).
    cfg = validate_config({
        "prepare": {"dataset": "rotten-tomatoes", "limit": 80, "max_length": 64},
        "finetune": {"model": "minilm", "method": "lora", "lora_r": 16, "lora_alpha": 32,
                     "lora_target_modules": "attention",
                     "learning_rate": 5e-3, "batch_size": 8, "num_epochs": 12,
                     "early_stopping_patience": 0, "logging_steps": 4, "warmup_ratio": 0.0},
        "tracking": {"enabled": False},
    })
    messages: list[str] = []
    live = DiagnosisCallback(cfg.finetune, log=messages.append)
    prepare_data(cfg.prepare, in_tmp / "run" / "data")
    train(cfg, in_tmp / "run" / "data", in_tmp / "run", callbacks=[live], progress=False,
          log=messages.append)
    after = diagnose(in_tmp / "run")
    assert after.verdict in ("overfitting", "overfitting_from_start"), after.summary()
    assert live.verdict == after.verdict
    assert any(m.startswith("diagnosis at step") and "overfitting" in m for m in messages)
    assert any(m.startswith("preflight:") for m in messages)  # the hook ran
    lr = {r.key: r.new for r in after.remedies if r.key}
    assert lr["finetune.learning_rate"] == 2.5e-3 and lr["finetune.lora_r"] == 8


def test_advise_write_runs_as_is(in_tmp, capsys):
    from tunesmith.config import load_config
    from tunesmith.pipelines.run import run

    words = [("a warm, funny and moving film", "fresh"), ("dull, slow and badly acted", "rotten")]
    rows = [{"text": f"{text} ({i})", "label": label} for i in range(60) for text, label in words]
    (in_tmp / "toy.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["advise", "--model", "minilm", "--data", "toy.jsonl", "--memory", "4",
                 "--write", "params.yaml"]) == 0
    out = capsys.readouterr().out
    assert "95th percentile" in out and "under 2,000 examples -> LoRA" in out
    cfg = load_config(in_tmp / "params.yaml")
    assert cfg.prepare.dataset == "toy.jsonl" and cfg.prepare.task == "classification"
    assert cfg.prepare.max_length < 64  # p95 of short snippets, not the default 512
    result = run(cfg, progress=False, log=lambda _: None)
    assert result.metrics["finetuned"]["accuracy"] >= 0.9  # a trivially separable toy task


def test_advise_probe_measures_the_learning_rate_and_writes_it(in_tmp, capsys):
    from tunesmith.config import load_config

    words = [("a warm, funny and moving film", "fresh"), ("dull, slow and badly acted", "rotten")]
    rows = [{"text": f"{text} ({i})", "label": label} for i in range(60) for text, label in words]
    (in_tmp / "toy.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (in_tmp / "plan").mkdir()
    assert main(["advise", "--model", "minilm", "--data", "toy.jsonl", "--memory", "4", "--probe",
                 "--write", "plan/params.yaml"]) == 0
    out = capsys.readouterr().out
    found = json.loads((in_tmp / "plan" / "lr_find.json").read_text())
    assert (in_tmp / "plan" / "lr_find.png").stat().st_size > 1000
    cfg = load_config(in_tmp / "plan" / "params.yaml")
    # The plan's rate is the finder's suggestion, not the guide's table value, and says so.
    assert cfg.finetune.learning_rate == found["suggestion"]
    assert "measured by lr-find" in out
    assert min(found["lrs"]) <= found["suggestion"] <= max(found["lrs"])
