"""Multi-task training with the bundled SmolLM2 on two built-in tasks (tiny budget): the
training set holds the sampled count of each task, and every task is scored on its own test
split by its own metrics, keyed by its name."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tunesmith.errors import ConfigError, UsageError

pytestmark = pytest.mark.integration


def _task(dataset: str, task: str):
    from tunesmith.config import validate_config

    return validate_config({
        "prepare": {"dataset": dataset, "task": task, "limit": 30, "max_length": 128},
        "finetune": {"model": "smollm2-135m-instruct", "method": "lora", "learning_rate": 2e-3,
                     "batch_size": 4, "max_steps": 1, "eval_every": 1, "warmup_ratio": 0.0},
        "evaluation": {"few_shot_k": 0, "forgetting_text": None, "generation_limit": 2,
                       "max_new_tokens": 4},
        "tracking": {"enabled": False},
    })


def test_each_task_is_sampled_and_scored_under_its_name(tmp_path):
    from tunesmith.pipelines.multitask import multitask_run

    tasks = {"sentiment": _task("rotten-tomatoes", "classification"), "qa": _task("fanoutqa", "qa")}
    result = multitask_run(tasks, tmp_path / "mt", sampling="proportional", total=30,
                           progress=False, log=lambda _: None)
    metrics = result.metrics
    available = metrics["sampling"]["available"]
    # 24 training records each (80% of 30): proportional halves the 30-record mixture.
    assert available == {"sentiment": 24, "qa": 24} and metrics["sampling"]["drawn"] == {"sentiment": 15, "qa": 15}
    rows = [json.loads(line) for line in (tmp_path / "mt" / "data" / "train.jsonl").read_text().splitlines()]
    assert Counter(r["task"] for r in rows) == {"sentiment": 15, "qa": 15}
    assert set(metrics["tasks"]) == {"sentiment", "qa"}
    sentiment, qa = metrics["tasks"]["sentiment"], metrics["tasks"]["qa"]
    assert sentiment["task"] == "classification-as-instruction" and qa["task"] == "qa"
    assert sentiment["headline"] == "accuracy" and "accuracy" not in qa["finetuned"]
    assert "token_f1" in qa["finetuned"] and "token_f1" not in sentiment["finetuned"]
    # Each is scored on its own test split: sentiment's accuracy counts its own test snippets.
    n_test = len((tmp_path / "mt" / "tasks" / "sentiment" / "data" / "test.jsonl").read_text().splitlines())
    correct = sentiment["finetuned"]["accuracy"] * n_test
    assert n_test > 0 and correct == pytest.approx(round(correct))
    for scores in (sentiment, qa):  # base and adapter really differ (the adapter was loaded)
        assert scores["baseline"]["perplexity"] != pytest.approx(scores["finetuned"]["perplexity"], rel=1e-4)


def test_what_cannot_train_together_is_refused(tmp_path):
    from tunesmith.config import validate_config
    from tunesmith.pipelines.multitask import multitask_run

    one = {"qa": _task("fanoutqa", "qa")}
    with pytest.raises(UsageError, match="two tasks or more"):
        multitask_run(one, tmp_path / "a", log=lambda _: None)
    encoder = {name: validate_config({"prepare": {"dataset": "rotten-tomatoes"}}) for name in ("a", "b")}
    with pytest.raises(ConfigError, match="not a causal LM"):
        multitask_run(encoder, tmp_path / "b", log=lambda _: None)
    with pytest.raises(UsageError, match="task name"):
        multitask_run({"a/b": _task("fanoutqa", "qa"), "c": _task("fanoutqa", "qa")}, tmp_path / "c",
                      log=lambda _: None)
