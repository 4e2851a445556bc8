"""Production monitoring: a run's training data against the traffic it served.

:func:`reference_from_run` reads what the run was trained on (``data/train.jsonl`` of the run
folder, or a split file given explicitly) and what it predicted on its test split
(``metrics.json``'s confusion matrix, for classifiers). :func:`live_from_traffic` turns traffic
log rows (``tunesmith.serve.traffic.TrafficRecord``) into prompts, answers and labels.
:func:`monitor` runs the checks of :mod:`tunesmith.monitor.drift` and the per-model service
figures; :func:`write_html` writes a self-contained HTML page of the result.

Costs: reading the files (a second for 10k records) plus the domain classifier (about a second).
Raises DataError when the run has no training data to compare with.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith import runfiles
from tunesmith.errors import DataError
from tunesmith.monitor import drift
from tunesmith.records import ClassificationRecord


@dataclass(frozen=True)
class Reference:
    task: str
    prompts: list[str]
    outputs: list[str]  # training targets (generators)
    labels: dict[str, float]  # expected predicted-label counts (classifiers)
    source: str


@dataclass(frozen=True)
class Live:
    prompts: list[str]
    outputs: list[str]
    labels: list[str]
    rows: int


@dataclass(frozen=True)
class Service:
    model: str
    requests: int
    errors: int
    error_rate: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None


@dataclass(frozen=True)
class MonitorReport:
    reference: Reference
    live_rows: int
    live_prompts: int
    checks: tuple[drift.Check, ...]
    services: tuple[Service, ...]
    drift: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "drift", any(c.drift for c in self.checks))

    def metrics(self) -> dict[str, float]:
        """Numbers for MLflow: each check's score and flag, each model's service figures."""
        out: dict[str, float] = {"drift": float(self.drift), "live_rows": float(self.live_rows)}
        for check in self.checks:
            key = check.name.split(" (")[0].replace(" ", "_")
            if check.score is not None:
                out[f"{check.group}_{key}_score"] = float(check.score)
            out[f"{check.group}_{key}_drift"] = float(check.drift)
        for s in self.services:
            name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s.model)
            out[f"{name}_error_rate"] = s.error_rate
            if s.latency_p95_ms is not None:
                out[f"{name}_latency_p95_ms"] = s.latency_p95_ms
        return out


def _prompt_of(record: Any) -> str:
    """A training record's prompt in the shape the server logs it: for chats the user turns."""
    messages = getattr(record, "messages", None)
    if messages is not None:
        return "\n".join(m.content for m in messages[:-1] if m.role == "user")
    return record.input_text()


def reference_from_run(run_dir: str | Path | None, *, data: str | Path | None = None) -> Reference:
    """The training prompts, targets and expected labels of a run (or of the split file ``data``)."""
    from tunesmith.data.validate import read_records

    root = Path(run_dir) if run_dir else None
    path = Path(data) if data else (root / runfiles.DATA_DIR / runfiles.split_file("train") if root else None)
    if path is None or not path.is_file():
        raise DataError(
            f"no training data to compare with: {path or 'no --run or --data given'} does not exist.",
            hint="Pass the run folder written by `tunesmith run` (it keeps data/train.jsonl), or "
            "the training split with --data (in a DVC project: data/prepared/train.jsonl).",
        )
    records = read_records(path)
    task = records[0].task if records else "classification"
    labels: dict[str, float] = {}
    if task == "classification":
        metrics = root / runfiles.METRICS if root else None
        matrix = (json.loads(metrics.read_text(encoding="utf-8")).get("confusion_matrix")
                  if metrics and metrics.is_file() else None)
        if matrix:
            # What the model predicted on its test split: the columns of the confusion matrix.
            columns = np.asarray(matrix["matrix"], dtype=float).sum(axis=0)
            labels = {str(k): float(v) for k, v in zip(matrix["labels"], columns, strict=True)}
        else:
            labels = {}
            for r in records:
                if isinstance(r, ClassificationRecord):
                    labels[r.label] = labels.get(r.label, 0.0) + 1
    return Reference(task, [_prompt_of(r) for r in records],
                     [r.target_text() for r in records], labels, str(path))


def _texts(prompt: Any) -> list[str]:
    """The prompt texts of a logged request: classify texts, completion prompts, or a chat's
    user turns joined."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
        return ["\n".join(str(m.get("content", "")) for m in prompt if m.get("role") == "user")]
    if isinstance(prompt, list):
        return [p for p in prompt if isinstance(p, str)]
    return []


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def live_from_traffic(rows: Iterable[Any]) -> Live:
    """Prompts, answers and predicted labels of the successful rows of a traffic log."""
    prompts: list[str] = []
    outputs: list[str] = []
    labels: list[str] = []
    count = 0
    for row in rows:
        count += 1
        if row.status is not None and row.status >= 400:
            continue
        prompts.extend(_texts(_loads(row.prompt)))
        predictions = _loads(row.prediction)
        if isinstance(predictions, list):
            labels.extend(str(p["label"]) for p in predictions if isinstance(p, dict) and "label" in p)
        if row.output:
            answer = _loads(row.output) if row.output.startswith("[") else row.output
            outputs.extend(answer if isinstance(answer, list) else [str(answer)])
    return Live(prompts, outputs, labels, count)


def services(rows: Sequence[Any]) -> tuple[Service, ...]:
    """Requests, error rate and latency percentiles per served model."""
    by_model: dict[str, list[Any]] = {}
    for row in rows:
        by_model.setdefault(row.served_model or row.model or "?", []).append(row)
    out = []
    for model, group in sorted(by_model.items()):
        errors = sum(1 for r in group if r.status is not None and r.status >= 400)
        latency = np.asarray([r.latency_ms for r in group
                              if r.latency_ms is not None and (r.status or 200) < 400], dtype=float)
        out.append(Service(model, len(group), errors, errors / len(group),
                           float(np.percentile(latency, 50)) if len(latency) else None,
                           float(np.percentile(latency, 95)) if len(latency) else None))
    return tuple(out)


def monitor(reference: Reference, rows: Sequence[Any], *, seed: int = 0) -> MonitorReport:
    """Every drift check of ``rows`` (traffic records) against ``reference``."""
    live = live_from_traffic(rows)
    checks = [
        drift.domain_classifier_drift(reference.prompts, live.prompts, seed=seed),
        drift.numeric_drift("prompt length", "input", drift.lengths(reference.prompts),
                            drift.lengths(live.prompts)),
        drift.oov_drift(reference.prompts, live.prompts, seed=seed),
    ]
    if reference.task == "classification":
        checks.append(drift.label_drift(reference.labels, live.labels))
    else:
        checks.append(drift.numeric_drift("response length", "prediction",
                                          drift.lengths(reference.outputs), drift.lengths(live.outputs)))
        checks.append(drift.refusal_drift(reference.outputs, live.outputs))
    return MonitorReport(reference, live.rows, len(live.prompts), tuple(checks), services(rows))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def write_html(report: MonitorReport, path: str | Path, *, title: str = "tunesmith monitor") -> Path:
    """A self-contained HTML page (no scripts, no external files) of ``report``."""
    e = html.escape
    verdict = "DRIFT" if report.drift else "no drift"
    check_rows = "".join(
        f"<tr class='{'bad' if c.drift else ''}'><td>{e(c.group)}</td><td>{e(c.name)}</td>"
        f"<td>{e(c.method)}</td><td>{_fmt(c.score)}</td><td>{e(c.threshold)}</td>"
        f"<td>{'drift' if c.drift else 'ok'}</td><td>{e(c.detail)}</td></tr>" for c in report.checks)
    service_rows = "".join(
        f"<tr><td>{e(s.model)}</td><td>{s.requests}</td><td>{s.errors}</td><td>{s.error_rate:.2%}</td>"
        f"<td>{_fmt(s.latency_p50_ms)}</td><td>{_fmt(s.latency_p95_ms)}</td></tr>" for s in report.services)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
tr.bad td{{background:#fde2e2}}.verdict{{font-size:1.3em;font-weight:bold}}</style></head><body>
<h1>{e(title)}</h1>
<p class="verdict">{verdict}</p>
<p>Reference: {e(report.reference.source)} ({len(report.reference.prompts)} training prompts,
task {e(report.reference.task)}). Live: {report.live_rows} logged requests, {report.live_prompts} prompts.
Thresholds follow Evidently's data-drift defaults (see docs/deploy.md).</p>
<h2>Drift checks</h2>
<table><tr><th>group</th><th>check</th><th>method</th><th>score</th><th>threshold</th><th>result</th><th>detail</th></tr>
{check_rows}</table>
<h2>Service per model</h2>
<table><tr><th>model</th><th>requests</th><th>errors</th><th>error rate</th><th>p50 ms</th><th>p95 ms</th></tr>
{service_rows}</table>
</body></html>
"""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
