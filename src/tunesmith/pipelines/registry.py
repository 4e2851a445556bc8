"""`tunesmith registry register|promote|list`: one function per command.

The work is in :mod:`tunesmith.track.registry`; these are the typed entry points the CLI calls
(and that scripts can call too).
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.track.registry import ModelVersionInfo, list_models, promote, register


def register_run(run: str | Path, name: str, *, tracking_uri: str) -> ModelVersionInfo:
    """Register a run folder or MLflow run id as the next version of ``name``."""
    return register(run, name, tracking_uri=tracking_uri)


def promote_version(name: str, version: int, alias: str, *, tracking_uri: str) -> ModelVersionInfo:
    """Move ``alias`` (staging or production) of ``name`` to ``version``."""
    return promote(name, version, alias, tracking_uri=tracking_uri)


def list_versions(*, tracking_uri: str) -> list[ModelVersionInfo]:
    """Every registered model version with its aliases and key metrics."""
    return list_models(tracking_uri=tracking_uri)
