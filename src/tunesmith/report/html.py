"""report.html: one self-contained file (inline CSS, images embedded as base64 PNG).

It opens from an e-mail attachment or an MLflow artifact view with nothing else beside it.
"""

from __future__ import annotations

import base64
from html import escape

from tunesmith.evaluate.metrics import improved
from tunesmith.report.content import ReportContent, fmt, forgetting_line, human, signed

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1000px;
color:#1f2328;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0}td,th{border:1px solid #d0d7de;padding:.25rem .6rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#1a7f37;font-weight:600}.down{color:#cf222e;font-weight:600}
.warning{color:#9a6700}.info{color:#57606a}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #d0d7de}figcaption{color:#57606a;font-size:.9rem}
pre{background:#f6f8fa;padding:.8rem;overflow:auto;font-size:.85rem}.missing{background:#fff8c5;padding:.5rem}
"""
_CELL_CHARS = 300


def _cell(value: object, *, numeric: bool = False, key: str = "") -> str:
    text = human(key, value)
    if len(text) > _CELL_CHARS:
        text = text[:_CELL_CHARS - 1] + "…"
    cls = ' class="num"' if numeric else ""
    return f"<td{cls}>{escape(text)}</td>"


def _pairs(items: dict) -> str:
    rows = "".join(f"<tr><th>{escape(str(k))}</th>{_cell(v, key=str(k))}</tr>" for k, v in items.items())
    return f"<table>{rows}</table>"


def _delta_cell(value: float | None, name: str) -> str:
    cls = ""
    if value:
        cls = "up" if improved(name, value) else "down"
    return f'<td class="num {cls}">{escape(signed(value, name))}</td>'


def render_html(content: ReportContent) -> str:
    parts = [f"<h1>{escape(content.title)}</h1>", _pairs(content.facts)]
    if content.missing:
        parts.append('<p class="missing">Missing: ' + escape("; ".join(content.missing)) + "</p>")

    parts.append("<h2>Baseline vs finetuned</h2>")
    if content.metric_rows:
        if content.baseline_kind:
            parts.append(f"<p>Baseline: {escape(content.baseline_kind)}.</p>")
        if content.plan_why:
            parts.append(f"<p>Metric plan: {escape(content.plan_why)}</p>")
        if content.headline_verdict:
            text = content.headline_verdict[0].upper() + content.headline_verdict[1:]
            parts.append(f"<p><b>{escape(text)}</b></p>")
        rows = "".join(
            f"<tr><th>{f'<b>{escape(r.name)}</b>' if r.note == 'headline' else escape(r.name)}</th>"
            f"{_cell(r.baseline, numeric=True, key=r.name)}"
            f"{_cell(r.finetuned, numeric=True, key=r.name)}{_delta_cell(r.delta, r.name)}"
            f'<td class="{"warning" if r.note and r.note != "headline" else "info"}">'
            f"{escape(r.note)}</td></tr>"
            for r in content.metric_rows
        )
        parts.append("<table><tr><th>metric</th><th>baseline</th><th>finetuned</th><th>delta</th>"
                     f"<th>note</th></tr>{rows}</table>")
        if content.left_out:
            parts.append("<p>Left out: " + escape("; ".join(
                f"{m} ({why})" for m, why in content.left_out.items())) + "</p>")
    else:
        parts.append("<p>Not evaluated yet.</p>")
    if content.prompting:
        kinds = list(content.prompting[0][1])
        head = "".join(f"<th>{escape(k)}</th>" for k in kinds)
        rows = "".join(
            f"<tr><th>{escape(name)}</th>"
            + "".join(_cell(values[k], numeric=True, key=name) for k in kinds)
            + f"{_cell(finetuned, numeric=True, key=name)}</tr>"
            for name, values, finetuned in content.prompting
        )
        parts.append(f"<p>Every prompting baseline:</p><table><tr><th>metric</th>{head}"
                     f"<th>finetuned</th></tr>{rows}</table>")
    if content.forgetting:
        cls = "warning" if content.forgetting.get("warning") else "info"
        parts.append(f'<p class="{cls}"><b>Forgetting check:</b> '
                     f"{escape(forgetting_line(content.forgetting))}</p>")
        fixes = content.forgetting_remedies
        if fixes:
            items = "".join(f"<li>{escape(f)}</li>" for f in fixes)
            parts.append(f"<p>Remedies, each a re-run on its own:</p><ul>{items}</ul>")

    parts.append("<h2>Diagnosis</h2>")
    if content.verdict:
        parts.append(f"<p><b>Verdict:</b> {escape(content.verdict)}</p>")
    parts.append("<ul>")
    parts += [f'<li class="{escape(f.severity)}"><b>{escape(f.severity)}</b>: {escape(f.message)}</li>'
              for f in content.diagnosis] or ["<li>nothing flagged</li>"]
    parts.append("</ul>")
    if content.remedies:
        parts.append("<p>What to change:</p><ul>"
                     + "".join(f"<li>{escape(r)}</li>" for r in content.remedies) + "</ul>")

    parts.append("<h2>Training</h2>")
    parts.append(_pairs(content.training) if content.training else "<p>n/a</p>")
    for path, caption in content.figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{escape(caption)}</figcaption></figure>")

    parts.append("<h2>Data</h2>")
    data_summary = content.data_summary
    if data_summary:
        parts.append(f"<p>Source: <code>{escape(fmt(data_summary.get('source')))}</code>; split "
                     f"{escape(fmt(data_summary.get('split', {}).get('method')))}; overlap check "
                     f"passed: {escape(fmt(data_summary.get('overlap_check')))}.</p>")
        parts.append(_pairs(data_summary.get("counts", {})))
        dist = data_summary.get("label_distribution", {})
        if dist:
            parts.append(_pairs({split: ", ".join(f"{k} {v}" for k, v in d.items())
                                 for split, d in dist.items()}))
        if data_summary.get("rejects_by_reason"):
            parts.append("<p>Rejected records by reason:</p>" + _pairs(data_summary["rejects_by_reason"]))
    else:
        parts.append("<p>No data manifest in this run.</p>")

    parts.append(f"<h2>{escape(content.examples_title)}</h2>")
    if content.examples:
        keys = list(content.examples[0])
        head = "".join(f"<th>{escape(k)}</th>" for k in keys)
        body = "".join("<tr>" + "".join(_cell(row.get(k)) for k in keys) + "</tr>"
                       for row in content.examples)
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    else:
        parts.append("<p>none recorded</p>")

    parts.append(f"<h2>Config</h2><pre>{escape(content.config_yaml)}</pre>")
    parts.append("<h2>Environment</h2>")
    env = {f"version {k}": v for k, v in content.environment.get("versions", {}).items()}
    env.update(content.environment.get("hardware", {}))
    parts.append(_pairs(env) if env else "<p>n/a</p>")

    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(content.title)}</title><style>{_CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")
