"""The example configs in examples/ load, and each runs end to end when cut down to seconds.

The short run keeps what makes each example itself (dataset, task, model, method, split and
evaluation kind) and shrinks only the sizes: a few dozen records, one optimizer step, short
sequences, one generated reply, no forgetting check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.config import load_config

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
SHORT = [
    "prepare.limit=40", "prepare.max_length=96", "finetune.max_steps=1", "finetune.batch_size=2",
    "finetune.eval_every=1", "evaluation.generation_limit=1", "evaluation.max_new_tokens=4",
    "evaluation.few_shot_k=1", "evaluation.forgetting_text=null", "tracking.enabled=false",
]


def test_there_are_examples():
    assert len(EXAMPLES) >= 3, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_config_loads(path):
    cfg = load_config(path)
    assert cfg.finetune.model and cfg.prepare.dataset
    # Each example says how to run it.
    assert f"tunesmith run --config examples/{path.name}" in path.read_text()


@pytest.mark.integration
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_end_to_end_when_cut_short(path, in_tmp):
    from tunesmith.pipelines.run import run

    cfg = load_config(path, SHORT)
    result = run(cfg, out_dir=in_tmp / "run", progress=False, log=lambda _: None)
    metrics = result.metrics
    assert metrics["train"]["steps"] == 1
    assert {"baseline", "finetuned", "delta"} <= metrics.keys()
    assert (in_tmp / "run" / "report.html").is_file()
