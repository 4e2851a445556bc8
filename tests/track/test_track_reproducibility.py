"""Same config, data and seed -> the same metrics on CPU; and the run records what it ran on."""

from __future__ import annotations

import json

from tunesmith.config import Config, load_config


def test_two_runs_with_the_same_config_data_and_seed_give_the_same_metrics(tmp_path, tiny_base, monkeypatch):
    # The documented way to bit-identical reruns: a fixed thread count (else training uses the
    # cores the machine's load leaves free, which may differ between the two runs).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from tunesmith.pipelines.evaluate import evaluate
    from tunesmith.pipelines.prepare import prepare_data
    from tunesmith.pipelines.train import train

    cfg = Config.model_validate({
        "prepare": {"dataset": "rotten-tomatoes", "limit": 120, "max_length": 48},
        "finetune": {"model": str(tiny_base), "max_steps": 4, "batch_size": 8, "logging_steps": 1,
                     "learning_rate": 5e-3, "lora_target_modules": ["query", "value"]},
        "evaluation": {"num_samples": 3},
        "tracking": {"enabled": False},
    })
    data = tmp_path / "data"
    prepare_data(cfg.prepare, data)

    results = []
    for name in ("a", "b"):
        run = tmp_path / name
        train(cfg, data, run, progress=False, log=lambda _msg: None)
        metrics = evaluate(run, data_dir=data, log=lambda _msg: None).metrics
        history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in history if r["kind"] == "train"]
        weights = (run / "adapter" / "adapter_model.safetensors").read_bytes()
        results.append((metrics["baseline"], metrics["finetuned"], losses, weights))

    (base_a, fine_a, losses_a, weights_a), (base_b, fine_b, losses_b, weights_b) = results
    assert len(losses_a) == 4 and losses_a[0] != losses_a[-1]  # it did train
    assert losses_a == losses_b
    assert weights_a == weights_b
    assert fine_a == fine_b and base_a == base_b

    # What the run ran with is recorded beside it: the resolved config, versions, hardware.
    run_meta = json.loads((tmp_path / "a" / "run.json").read_text())
    assert {"python", "torch", "transformers", "peft"} <= set(run_meta["versions"])
    assert run_meta["hardware"]["cpu_count"] >= 1
    assert load_config(tmp_path / "a" / "config.yaml") == cfg
