"""Sections that other steps add to a run's report, each from a file in the run folder.

metrics.json's ``continual`` (a run trained with --continue-from) becomes a "Continual
learning" section: the earlier task's scores before and after, and the remedies when it forgot.

``review/results.json`` (written by ``tunesmith review RUN --results``) becomes a "Human
review" section: the win rate of the run against each model with its Wilson and bootstrap
intervals, the Bradley-Terry ranking, and the position-bias, metric-agreement and
reviewer-agreement checks. The report modules call :func:`add_sections_html` and
:func:`add_sections_md` on what they rendered; a run without those files is left as it is.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from tunesmith import runfiles

REVIEW_RESULTS = Path(runfiles.REVIEW_DIR) / runfiles.REVIEW_RESULTS


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _signed(value: Any) -> str:
    return "–" if value is None else f"{value:+.4f}"


def _review_rows(results: dict[str, Any]) -> tuple[str, list[str], list[list[str]], list[str]]:
    """Title, table header, rows and the lines under the table."""
    header = ["against", "wins", "losses", "ties", "both bad", "win rate (ties left out) [Wilson 95%]",
              "win rate (ties half) [bootstrap 95%]"]
    rows = [[h["opponent"], str(h["wins"]), str(h["losses"]), str(h["ties"]), str(h["both_bad"]),
             f"{_num(h['win_rate'])} [{_num(h['wilson_low'])}, {_num(h['wilson_high'])}]",
             f"{_num(h['win_rate_ties_half'])} [{_num(h['bootstrap_low'])}, {_num(h['bootstrap_high'])}]"]
            for h in results["head_to_head"]]
    lines = [f"{results['votes']} votes by {len(results['reviewers'])} reviewer(s) on {results['pairs']} "
             f"blind pairs; the finetuned model is {results['model']}."]
    if results["ranking"]:
        lines.append("Bradley-Terry ranking (log-strength [95% bootstrap]): " + "; ".join(
            f"{r['model']} {_num(r['score'], 2)} [{_num(r['low'], 2)}, {_num(r['high'], 2)}]"
            for r in results["ranking"]))
    position = results.get("position") or {}
    if position.get("decisive"):
        lines.append(f"Position bias: the left answer won {position['left_wins']} of {position['decisive']} "
                     f"decisive votes ({_num(position['left_rate'])}, binomial p = {_num(position['p_value'])}).")
    metric = results.get("metric") or {}
    if metric.get("agree", 0) + metric.get("disagree", 0):
        lines.append(f"{metric['metric']} against the reference agrees with people on {metric['agree']} of "
                     f"{metric['agree'] + metric['disagree']} decisive votes ({_num(metric['rate'])}).")
    if results.get("label_corrections"):
        lines.append(f"{results['label_corrections']} test records marked as wrongly labelled "
                     "(review/corrections.jsonl; `tunesmith data convert --corrections` applies them).")
    for a in results["agreement"]:
        lines.append(f"Cohen's kappa {a['reviewer_a']} / {a['reviewer_b']}: {_num(a['kappa'], 2)} "
                     f"over {a['items']} shared items.")
    return "Human review", header, rows, lines


def continual_lines(continual: dict[str, Any]) -> list[str]:
    """What the end of a continued run says about task A, for people."""
    headline = continual["headline"]
    before, after = continual["before"].get(headline), continual["after"].get(headline)
    change = continual["delta"].get(headline)
    replay = continual.get("replay") or {}
    with_replay = f" with {replay['records']} replayed records" if replay.get("records") else " without replay"
    lines = [f"task A ({continual['from_run']}): {headline} {before:.4f} before, {after:.4f} after "
             f"training on this task{with_replay} ({change:+.4f})"
             + (f"; perplexity {continual['before']['perplexity']:.4f} -> "
                f"{continual['after']['perplexity']:.4f}"
                if headline != "perplexity" and "perplexity" in continual["after"] else "")]
    if continual["forgot"]:
        lines.append("forgetting: task A got worse. Remedies:")
        lines += [f"  {r}" for r in continual["remedies"]]
    return lines


def _continual_rows(continual: dict[str, Any]) -> tuple[str, list[str], list[list[str]], list[str]]:
    """metrics.json's ``continual``: task A's scores before and after this run."""
    header = ["metric (task A's test split)", "before (A's adapter)", "after (this run)", "change"]
    rows = [[key + (" (headline)" if key == continual["headline"] else ""), _num(before, 4),
             _num(continual["after"].get(key), 4), _signed(continual["delta"].get(key))]
            for key, before in continual["before"].items()]
    return f"Continual learning: what task A ({continual['task']}) kept", header, rows, continual_lines(continual)


def _sections(run_dir: Path) -> list[tuple[str, list[str], list[list[str]], list[str]]]:
    """Every section this run has files for: continual learning, human review."""
    found = []
    metrics_path = run_dir / runfiles.METRICS
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    if metrics.get("continual"):
        found.append(_continual_rows(metrics["continual"]))
    path = run_dir / REVIEW_RESULTS
    if path.is_file():
        found.append(_review_rows(json.loads(path.read_text(encoding="utf-8"))))
    return found


def _insert(document: str, marker: str, section: str) -> str:
    at = document.find(marker)
    return document[:at] + section + document[at:] if at >= 0 else document + section


def add_sections_html(html: str, run_dir: str | Path) -> str:
    for title, header, rows, lines in _sections(Path(run_dir)):
        table = "" if not rows else ("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"
                 + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
                 + "</table>")
        anchor = "human-review" if title == "Human review" else "continual"
        section = (f'<h2 id="{anchor}">{escape(title)}</h2>' + table
                   + "".join(f"<p>{escape(line)}</p>" for line in lines) + "\n")
        html = _insert(html, "<h2>Config</h2>", section)
    return html


def add_sections_md(md: str, run_dir: str | Path) -> str:
    for title, header, rows, lines in _sections(Path(run_dir)):
        table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                           *("| " + " | ".join(row) + " |" for row in rows)]) + "\n\n" if rows else ""
        section = f"## {title}\n\n{table}" + "".join(f"{line}\n\n" for line in lines)
        md = _insert(md, "## Config", section)
    return md
