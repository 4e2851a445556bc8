"""When the memory preflight shrinks the micro-batch, config.yaml, MLflow's params and a resumed
run all hold the values that trained (not the ones the user asked for), and run.json says what
changed and why."""

from __future__ import annotations

import json

import pytest
from scale_helpers import history, write_config

PREFLIGHT_KEYS = ("batch_size", "gradient_accumulation_steps", "gradient_checkpointing")


@pytest.mark.integration
def test_config_yaml_mlflow_and_resume_agree_after_the_preflight(tiny_setup, in_tmp):
    import mlflow

    from tunesmith.advise.memory import MemoryArgs, estimate_memory, model_shape
    from tunesmith.config import load_config
    from tunesmith.pipelines.train import resolve_defaults, train, train_inputs

    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    config = write_config(in_tmp / "params.yaml", tiny_setup["model"], batch_size=8,
                          max_steps=4, eval_every=2, early_stopping_patience=0)
    asked, data, out = train_inputs(
        config, ["tracking.enabled=true", f"tracking.mlflow_uri={uri}", "prepare.max_length=32"],
        data=str(tiny_setup["data"]), out=str(in_tmp / "run"), resume=None,
    )
    # A budget that holds a micro-batch of 2 at the longest sequence but not the 8 asked for,
    # for the config the run trains (the classifier's default LoRA targets filled in).
    trained, _ = resolve_defaults(asked, None, task="classification")
    budget = estimate_memory(model_shape(str(tiny_setup["model"])),
                             MemoryArgs.from_config(trained, device="cpu", batch_size=2)).total_bytes
    lines: list[str] = []
    train(asked, data, out, progress=False, log=lines.append, memory_budget_bytes=budget)

    saved = load_config(out / "config.yaml").finetune
    assert 1 <= saved.batch_size < 8, "the preflight should have shrunk the micro-batch"
    assert saved.batch_size * saved.gradient_accumulation_steps == 8  # same effective batch
    meta = json.loads((out / "run.json").read_text())
    assert meta["preflight"]["changed"]["finetune.batch_size"] == [8, saved.batch_size]
    assert meta["preflight"]["changed"]["finetune.gradient_accumulation_steps"] == [
        1, saved.gradient_accumulation_steps]
    assert any("does not fit" in why for why in meta["preflight"]["why"])
    assert any(line.startswith("config.yaml holds the preflight's changes: finetune.batch_size 8 -> ")
               for line in lines)

    params = mlflow.MlflowClient(uri).get_run(meta["mlflow_run_id"]).data.params
    for key in PREFLIGHT_KEYS:
        assert params[f"finetune.{key}"] == str(getattr(saved, key)), key

    # --resume reads config.yaml: the preflight finds the saved micro-batch fits and changes nothing.
    resumed_cfg, data2, out2 = train_inputs(None, [], data=None, out=None, resume=str(out))
    assert data2 == data and out2 == out
    for key in PREFLIGHT_KEYS:
        assert getattr(resumed_cfg.finetune, key) == getattr(saved, key), key
    lines.clear()
    train(resumed_cfg, data2, out2, resume=True, progress=False, log=lines.append,
          memory_budget_bytes=budget)
    assert any(f"micro-batch {saved.batch_size} x" in line and "fits" in line for line in lines), "\n".join(lines)
    assert not any("holds the preflight's changes" in line for line in lines)
    after = load_config(out / "config.yaml").finetune
    assert all(getattr(after, key) == getattr(saved, key) for key in PREFLIGHT_KEYS)
    assert json.loads((out / "run.json").read_text())["preflight"] == meta["preflight"]
    assert any(r["event"] == "resumed" for r in history(out, "event"))
    params = mlflow.MlflowClient(uri).get_run(meta["mlflow_run_id"]).data.params
    assert all(params[f"finetune.{key}"] == str(getattr(saved, key)) for key in PREFLIGHT_KEYS)
