"""`tunesmith registry register|promote|list` and `runs compare`: one function per command.

The work is in :mod:`tunesmith.track.registry`; these are the typed entry points the CLI calls
(and that scripts can call too).
"""

from __future__ import annotations

import os
from pathlib import Path

from tunesmith.track.compare import Comparison, compare_snapshots, snapshot
from tunesmith.track.registry import ModelVersionInfo, list_models, promote, register


def resolve_tracking_uri(explicit: str | None, params: str | Path = "params.yaml") -> str:
    """The MLflow URI to use: ``explicit``, else $MLFLOW_TRACKING_URI, else the
    ``tracking.mlflow_uri`` of ``params`` (a tunesmith project's params.yaml) when it exists,
    else the embedded ``sqlite:///mlflow.db``."""
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if Path(params).is_file():
        from tunesmith.config import load_config

        return load_config(params).tracking.mlflow_uri
    return "sqlite:///mlflow.db"


def register_run(run: str | Path, name: str, *, tracking_uri: str) -> ModelVersionInfo:
    """Register a run folder or MLflow run id as the next version of ``name``."""
    return register(run, name, tracking_uri=tracking_uri)


def promote_version(name: str, version: int, alias: str, *, tracking_uri: str) -> ModelVersionInfo:
    """Move ``alias`` (staging or production) of ``name`` to ``version``."""
    return promote(name, version, alias, tracking_uri=tracking_uri)


def list_versions(*, tracking_uri: str) -> list[ModelVersionInfo]:
    """Every registered model version with its aliases and key metrics."""
    return list_models(tracking_uri=tracking_uri)


def compare_runs(run_a: str | Path, run_b: str | Path, *, tracking_uri: str) -> Comparison:
    """`tunesmith runs compare A B`: params that differ and metric deltas (B minus A).

    Each run is a run folder or an MLflow run id in ``tracking_uri``.
    """
    return compare_snapshots(snapshot(run_a, tracking_uri), snapshot(run_b, tracking_uri))
