"""Fixtures of the serving tests: tiny run folders, an engine on them, a real uvicorn server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serve_tiny import make_run, save_tiny_bert, save_tiny_llama  # noqa: E402

LABELS = ["neg", "pos"]


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """Two LoRA runs on a tiny Llama (alpha, beta), a DoRA run on it, and two LoRA classifier
    runs on a tiny BERT (sentiment, sentiment-b): {name: run folder}."""
    root = tmp_path_factory.mktemp("serve-runs")
    llama = save_tiny_llama(root / "tiny-llama")
    bert = save_tiny_bert(root / "tiny-bert")
    return {
        "alpha": make_run(root / "runs", "alpha", llama, seed=1),
        "beta": make_run(root / "runs", "beta", llama, seed=2),
        "gamma-dora": make_run(root / "runs", "gamma-dora", llama, method="dora", seed=3),
        "sentiment": make_run(root / "runs", "sentiment", bert, task="classification", labels=LABELS),
        "sentiment-b": make_run(root / "runs", "sentiment-b", bert, task="classification", labels=LABELS,
                                seed=5),
    }


@pytest.fixture(scope="session")
def engine(tiny_runs):
    from tunesmith.serve.engine import Engine

    eng = Engine.load([tiny_runs["alpha"], tiny_runs["beta"]], max_tokens_cap=64, default_max_tokens=16)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def classifier(tiny_runs):
    from tunesmith.serve.engine import Engine

    eng = Engine.load([tiny_runs["sentiment"], tiny_runs["sentiment-b"]])
    yield eng
    eng.close()
