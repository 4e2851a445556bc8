"""A continued run's report shows task A's scores before and after, and the remedies when A
got worse (from metrics.json's ``continual`` section)."""

from __future__ import annotations

import json

from tunesmith.report.sections import add_sections_html, add_sections_md

CONTINUAL = {
    "from_run": "runs/sentiment", "task": "classification-as-instruction", "headline": "accuracy",
    "before": {"accuracy": 0.85, "perplexity": 1.2}, "after": {"accuracy": 0.7, "perplexity": 1.9},
    "delta": {"accuracy": -0.15, "perplexity": 0.7}, "forgot": True,
    "replay": {"fraction": 0.0, "records": 0},
    "remedies": ["replay part of the earlier task's data: add --set prepare.replay_fraction=0.2"],
}


def test_report_sections_show_task_a_before_and_after(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "qa", "continual": CONTINUAL}))
    md = add_sections_md("# report\n\n## Config\n", tmp_path)
    assert "| accuracy (headline) | 0.8500 | 0.7000 | -0.1500 |" in md
    assert "| perplexity | 1.2000 | 1.9000 | +0.7000 |" in md
    assert "accuracy 0.8500 before, 0.7000 after training on this task without replay (-0.1500)" in md
    assert "prepare.replay_fraction=0.2" in md
    assert md.index("## Continual learning") < md.index("## Config")
    html = add_sections_html("<h1>report</h1><h2>Config</h2>", tmp_path)
    assert '<h2 id="continual">' in html and "<td>0.7000</td>" in html


def test_a_run_that_continued_nothing_has_no_such_section(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "qa"}))
    assert add_sections_md("# report\n\n## Config\n", tmp_path) == "# report\n\n## Config\n"
