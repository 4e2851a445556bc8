"""`tunesmith config show` and `tunesmith runs`: the resolved config, and the runs so far."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import runfiles
from tunesmith.config import load_config
from tunesmith.errors import UsageError


def show_config(path: str | Path | None = None, overrides: list[str] | None = None) -> str:
    """The resolved config as YAML that ``--config`` accepts (defaults when ``path`` is None)."""
    return load_config(path, overrides).to_yaml()


# The metric each task family is ranked by in `tunesmith runs` when metrics.json has no metric
# plan (runs evaluated before plans existed); otherwise the plan's headline.
HEADLINE = {"classification": "accuracy"}


@dataclass
class RunSummary:
    name: str
    path: Path
    task: str
    model: str
    method: str
    status: str  # finished | trained (not evaluated) | incomplete
    metric: str | None
    baseline: float | None
    finetuned: float | None
    steps: int | None
    modified: float


def _headline(task: str, metrics: dict[str, Any]) -> str | None:
    finetuned = metrics.get("finetuned") or {}
    key = (metrics.get("plan") or {}).get("headline") or HEADLINE.get(task)
    if key in finetuned:
        return key
    return next((k for k, v in finetuned.items() if isinstance(v, (int, float))), None)


def list_runs(runs_dir: str | Path = "runs") -> list[RunSummary]:
    """Every run folder under ``runs_dir`` (newest first), read from run.json and metrics.json."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise UsageError(f"no runs folder at {root}.",
                         hint="Runs land in ./runs after `tunesmith run` or `tunesmith demo`; "
                         "pass --dir for another folder.")
    out = []
    for run_json in root.glob("*/run.json"):
        folder = run_json.parent
        try:
            meta = json.loads(run_json.read_text(encoding="utf-8"))
            metrics_path = folder / runfiles.METRICS
            metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
        except (OSError, json.JSONDecodeError):
            continue  # a run being written right now
        task = meta.get("task", "?")
        key = _headline(task, metrics)
        status = ("finished" if "finetuned" in metrics
                  else "trained" if "train" in metrics else "incomplete")
        out.append(RunSummary(
            name=folder.name, path=folder, task=task, model=meta.get("model", "?"),
            method=meta.get("method", "?"), status=status, metric=key,
            baseline=(metrics.get("baseline") or {}).get(key) if key else None,
            finetuned=(metrics.get("finetuned") or {}).get(key) if key else None,
            steps=(metrics.get("train") or {}).get("steps"),
            modified=run_json.stat().st_mtime,
        ))
    return sorted(out, key=lambda r: -r.modified)
