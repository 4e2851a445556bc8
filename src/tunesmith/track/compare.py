"""`tunesmith runs compare A B`: the params that differ and the metric deltas of two runs.

A run is a run folder (config.yaml + metrics.json) or an MLflow run id (its params and final
metrics). Folders are compared on the resolved config's dotted keys (``finetune.lora_r``) and
metrics.json's numeric leaves (``finetuned.accuracy``, ``train.samples_per_second``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunesmith import runfiles
from tunesmith.errors import UsageError


@dataclass(frozen=True)
class RunSnapshot:
    label: str  # what the user passed
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass(frozen=True)
class ParamDiff:
    key: str
    a: str | None  # None: the key is absent from that run
    b: str | None


@dataclass(frozen=True)
class MetricDelta:
    key: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass(frozen=True)
class Comparison:
    a: RunSnapshot
    b: RunSnapshot
    params: list[ParamDiff]
    metrics: list[MetricDelta]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def folder_snapshot(run_dir: Path) -> RunSnapshot:
    """Params and numeric metrics of a run folder."""
    config_path, metrics_path = run_dir / runfiles.CONFIG, run_dir / runfiles.METRICS
    if not config_path.is_file() and not metrics_path.is_file():
        raise UsageError(f"{run_dir} holds neither config.yaml nor metrics.json: not a run folder.")
    params: dict[str, str] = {}
    if config_path.is_file():
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        params = {k: _as_text(v) for k, v in _flatten(config).items()}
    metrics: dict[str, float] = {}
    if metrics_path.is_file():
        flat = _flatten(json.loads(metrics_path.read_text(encoding="utf-8")))
        metrics = {k: float(v) for k, v in flat.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return RunSnapshot(str(run_dir), params, metrics)


def mlflow_snapshot(run_id: str, tracking_uri: str) -> RunSnapshot:
    """Params and final metric values of an MLflow run."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        run = MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
    except MlflowException:
        raise UsageError(
            f"'{run_id}' is neither a run folder nor a run id in {tracking_uri}.",
            hint="Pass run folders (runs/<name>) or MLflow run ids (`tunesmith runs` lists them).",
        ) from None
    return RunSnapshot(run_id, dict(run.data.params), dict(run.data.metrics))


def snapshot(run: str | Path, tracking_uri: str) -> RunSnapshot:
    path = Path(run)
    return folder_snapshot(path) if path.is_dir() else mlflow_snapshot(str(run), tracking_uri)


def compare_snapshots(a: RunSnapshot, b: RunSnapshot) -> Comparison:
    """Params whose values differ (or exist in one run only) and every metric of either run."""
    params = [
        ParamDiff(key, a.params.get(key), b.params.get(key))
        for key in sorted(a.params.keys() | b.params.keys())
        if a.params.get(key) != b.params.get(key)
    ]
    metrics = [
        MetricDelta(key, a.metrics.get(key), b.metrics.get(key))
        for key in sorted(a.metrics.keys() | b.metrics.keys())
    ]
    return Comparison(a, b, params, metrics)
