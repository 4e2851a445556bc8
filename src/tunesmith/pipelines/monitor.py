"""`tunesmith monitor`: compare a run's served traffic with its training data.

Reads the server's traffic log (``<state_dir>/traffic.db``), keeps the rows the run answered
(the log's ``run_id`` is the run's name; ``model`` picks a served name instead), runs the checks
of :mod:`tunesmith.monitor`, writes an HTML report and logs the figures to MLflow (experiment
``tunesmith-monitor``, tagged with the training run's MLflow id). The CLI exits 3 when drift is
found, so a DVC stage or a cron job can act on it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from tunesmith import runfiles
from tunesmith.errors import DataError
from tunesmith.monitor.report import MonitorReport, monitor, reference_from_run, write_html

DRIFT_EXIT_CODE = 3
MLFLOW_EXPERIMENT = "tunesmith-monitor"


@dataclass(frozen=True)
class MonitorResult:
    report: MonitorReport
    html: Path
    mlflow_run_id: str | None
    selection: str  # which traffic was read, in words


def _run_meta(run: str | Path | None) -> dict:
    path = Path(run) / runfiles.RUN_META if run else None
    return json.loads(path.read_text(encoding="utf-8")) if path and path.is_file() else {}


def run_monitor(run: str | Path | None, *, state_dir: str | Path = "serve-state",
                data: str | Path | None = None, model: str | None = None,
                since_hours: float | None = None, html: str | Path | None = None,
                tracking_uri: str | None = None) -> MonitorResult:
    """Monitor ``run``'s traffic. Raises DataError when there is no traffic log, no rows for the
    run, or no training data to compare with."""
    from tunesmith.serve.traffic import FILENAME, read_requests

    meta = _run_meta(run)
    name = model or meta.get("run_name") or (Path(run).name if run else None)
    if not (Path(state_dir) / FILENAME).is_file():
        raise DataError(f"no traffic log at {Path(state_dir) / FILENAME}.",
                        hint="Pass the --state-dir `tunesmith serve` was started with.")
    since = time.time() - since_hours * 3600 if since_hours else None
    rows = [r for r in read_requests(state_dir, since=since)
            if name is None or (r.served_model == name if model else r.run_id == name)]
    selection = (f"requests served by '{name}'" if name else "all requests") + (
        f" in the last {since_hours:g} h" if since_hours else "")
    if not rows:
        raise DataError(f"the traffic log {Path(state_dir) / FILENAME} holds no {selection}.",
                        hint="Check the run name (the log's run_id column) or pass --model with "
                        "a served model name.")
    reference = reference_from_run(run, data=data)
    report = monitor(reference, rows)
    out = Path(html) if html else Path(state_dir) / "monitor" / f"{name or 'all'}.html"
    write_html(report, out, title=f"tunesmith monitor: {selection}")
    run_id = _log(report, out, name, meta, tracking_uri) if tracking_uri else None
    return MonitorResult(report, out, run_id, selection)


def _log(report: MonitorReport, html: Path, name: str | None, meta: dict, tracking_uri: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(MLFLOW_EXPERIMENT)
    tags = {"tunesmith.monitor.model": name or "all", "tunesmith.monitor.drift": str(report.drift)}
    if meta.get("mlflow_run_id"):
        tags["tunesmith.monitor.training_run_id"] = meta["mlflow_run_id"]
    with mlflow.start_run(run_name=f"monitor-{name or 'all'}", tags=tags) as active:
        mlflow.log_metrics(report.metrics())
        mlflow.log_artifact(str(html))
        return active.info.run_id
