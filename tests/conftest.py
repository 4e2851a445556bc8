"""Shared test set-up. Tests never touch the network: a stray hub call fails at once."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ["GIT_PYTHON_REFRESH"] = "quiet"
# Converted models (SmolLM2 from GGUF) are cached here across test runs and sessions.
os.environ.setdefault("TUNESMITH_HOME", os.path.join(os.path.expanduser("~"), ".cache", "tunesmith"))

import pytest  # noqa: E402


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test inside a fresh directory (runs/ and mlflow.db land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
