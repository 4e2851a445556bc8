"""`tunesmith monitor`: drift and service figures of a served run; exit 3 on drift.

The handler calls :func:`tunesmith.pipelines.monitor.run_monitor` and renders its result;
nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse

from tunesmith.cli.track import _tracking_uri_arg


def register(commands: argparse._SubParsersAction) -> None:
    """Add this area's command to the top-level parser."""
    mon = commands.add_parser(
        "monitor", help="compare a run's served traffic with its training data (exit 3 on drift)",
        description="Input drift (domain classifier, prompt length, out-of-vocabulary rate), "
        "prediction drift (label distribution, or response length and refusals) and latency/"
        "errors per model, from the traffic log of `tunesmith serve`. Thresholds: Evidently's "
        "defaults. Writes an HTML report and MLflow metrics; exits 3 when drift is found.",
    )
    mon.add_argument("--run", help="the run folder that is served (its data/train.jsonl is the reference)")
    mon.add_argument("--data", help="training split file to compare with instead of RUN/data/train.jsonl")
    mon.add_argument("--model", help="served model name to read (default: the run's rows)")
    mon.add_argument("--since-hours", type=float, help="only traffic of the last N hours")
    mon.add_argument("--state-dir", default="serve-state",
                     help="the server's state folder (default: serve-state)")
    mon.add_argument("--html", help="where to write the report (default: STATE_DIR/monitor/NAME.html)")
    mon.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    _tracking_uri_arg(mon)
    mon.set_defaults(handler=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tunesmith.errors import UsageError
    from tunesmith.pipelines.monitor import DRIFT_EXIT_CODE, run_monitor
    from tunesmith.pipelines.registry import resolve_tracking_uri

    if not args.run and not args.data:
        raise UsageError("tunesmith monitor needs --run RUN (or --data TRAIN_FILE) to compare with.")
    result = run_monitor(
        args.run, state_dir=args.state_dir, data=args.data, model=args.model,
        since_hours=args.since_hours, html=args.html,
        tracking_uri=None if args.no_mlflow else resolve_tracking_uri(args.tracking_uri))
    r = result.report
    console = Console(width=max(110, Console().width))
    table = Table(title=f"Drift: {result.selection} vs {r.reference.source}")
    for column in ("group", "check", "method", "score", "threshold", "result", "detail"):
        table.add_column(column)
    for c in r.checks:
        table.add_row(c.group, c.name, c.method, "-" if c.score is None else f"{c.score:.4g}",
                      c.threshold, "[red]DRIFT[/red]" if c.drift else "ok", c.detail)
    console.print(table)
    service = Table(title="Service per model")
    for column in ("model", "requests", "errors", "error rate", "p50 ms", "p95 ms"):
        service.add_column(column, justify="left" if column == "model" else "right")
    for s in r.services:
        service.add_row(s.model, str(s.requests), str(s.errors), f"{s.error_rate:.2%}",
                        "-" if s.latency_p50_ms is None else f"{s.latency_p50_ms:.1f}",
                        "-" if s.latency_p95_ms is None else f"{s.latency_p95_ms:.1f}")
    console.print(service)
    console.print(f"Report: {result.html}" + (f"; MLflow run {result.mlflow_run_id}" if result.mlflow_run_id else ""))
    if r.drift:
        flagged = ", ".join(c.name for c in r.checks if c.drift)
        console.print(f"Drift found ({flagged}): exit {DRIFT_EXIT_CODE}. Consider retraining on "
                      "recent traffic (docs/deploy.md: the retrain step).")
        return DRIFT_EXIT_CODE
    console.print("No drift.")
    return 0
