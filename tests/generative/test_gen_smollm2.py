"""One short real run: SmolLM2-135M-Instruct, LoRA, a few FanOutQA questions."""

from __future__ import annotations

import json

import pytest

from tunesmith.config import validate_config
from tunesmith.pipelines.run import run


@pytest.mark.integration
def test_short_real_smollm2_qa_run(in_tmp):
    general = in_tmp / "general.txt"
    general.write_text("The weather was fine, and the people of the town went to the market.\n" * 4)
    cfg = validate_config({
        "prepare": {"dataset": "fanoutqa", "limit": 40, "max_length": 64},
        "finetune": {"model": "smollm2-135m-instruct", "method": "lora", "max_steps": 2,
                     "batch_size": 4, "learning_rate": 1e-3},
        "evaluation": {"generation_limit": 2, "max_new_tokens": 8, "few_shot_k": 1,
                       "num_samples": 2, "forgetting_text": str(general)},
        "tracking": {"enabled": False},
    })
    run(cfg, in_tmp / "run", progress=False, log=lambda _: None)
    metrics = json.loads((in_tmp / "run" / "metrics.json").read_text())
    assert metrics["task"] == "qa" and metrics["train"]["steps"] == 2
    # The real instruct model knows English: response perplexity far below a random model's
    # (which is near the 49k vocabulary size).
    assert metrics["baselines"]["zero_shot"]["perplexity"] < 1000
    assert metrics["finetuned"]["perplexity"] < 1000
    assert 0 <= metrics["finetuned"]["token_f1"] <= 1
    assert metrics["forgetting"]["perplexity_before"] < 1000
    samples = [json.loads(line) for line in (in_tmp / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(isinstance(s["finetuned"], str) for s in samples)
