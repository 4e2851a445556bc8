"""Run reports: report.html (self-contained) and report.md, written into the run folder.

``write_reports(run_dir)`` is what `tunesmith report RUN`, the DVC evaluate stage and (at the end
of a run) the run pipeline call. Plots are drawn by :mod:`tunesmith.report.plots`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith import runfiles


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    md: Path


def write_reports(run_dir: str | Path) -> ReportPaths:
    """Write ``report.html`` and ``report.md`` for the run folder ``run_dir``."""
    from tunesmith.report.content import gather
    from tunesmith.report.html import render_html
    from tunesmith.report.md import render_markdown
    from tunesmith.report.sections import add_sections_html, add_sections_md

    root = Path(run_dir)
    content = gather(root)
    paths = ReportPaths(root / runfiles.REPORT_HTML, root / runfiles.REPORT_MD)
    paths.html.write_text(add_sections_html(render_html(content), root), encoding="utf-8")
    paths.md.write_text(add_sections_md(render_markdown(content), root), encoding="utf-8")
    return paths
