"""`tunesmith report RUN`: (re)write a run folder's report.html and report.md."""

from __future__ import annotations

from pathlib import Path

from tunesmith import runfiles
from tunesmith.errors import UsageError
from tunesmith.report import ReportPaths, write_reports


def report(run_dir: str | Path) -> ReportPaths:
    """Write the reports of ``run_dir``. Raises UsageError when it is not a run folder."""
    root = Path(run_dir)
    if not (root / runfiles.RUN_META).is_file() and not (root / runfiles.METRICS).is_file():
        raise UsageError(f"{root} is not a run folder (no run.json or metrics.json).",
                         hint="Pass a folder written by `tunesmith run` or `tunesmith train`.")
    return write_reports(root)
