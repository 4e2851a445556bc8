"""Fixtures of the A/B tests: two tiny classifier runs (the serving tests' tiny BERT + LoRA)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "serve"))

LABELS = ["neg", "pos"]


@pytest.fixture(scope="session")
def ab_runs(tmp_path_factory):
    """{"control": run folder, "treatment": run folder} of two LoRA classifiers on one tiny BERT,
    each with the config.yaml the registry needs."""
    from serve_tiny import make_run, save_tiny_bert

    from tunesmith.config import Config

    root = tmp_path_factory.mktemp("ab-runs")
    bert = save_tiny_bert(root / "tiny-bert")
    runs = {}
    for arm, name, seed in (("control", "sentiment-a", 1), ("treatment", "sentiment-b", 2)):
        run = make_run(root / "runs", name, bert, task="classification", labels=LABELS, seed=seed)
        cfg = Config.model_validate({"prepare": {"dataset": "rotten-tomatoes"},
                                     "finetune": {"model": str(bert)}})
        (run / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
        runs[arm] = run
    return runs
