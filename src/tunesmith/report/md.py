"""report.md: the run report as Markdown, images linked relative to the run folder."""

from __future__ import annotations

from tunesmith.report.content import ReportContent, fmt, forgetting_line, human, signed

_CELL_CHARS = 200


def _cell(value: object) -> str:
    text = fmt(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= _CELL_CHARS else text[:_CELL_CHARS - 1] + "…"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(content: ReportContent) -> str:
    out = [f"# {content.title}", ""]
    out += _table(["", ""], [[k, v] for k, v in content.facts.items()])
    if content.missing:
        out += ["**Missing:** " + "; ".join(content.missing), ""]

    out += ["## Baseline vs finetuned", ""]
    if content.metric_rows:
        if content.baseline_kind:
            out += [f"Baseline: {content.baseline_kind}.", ""]
        if content.plan_why:
            out += [f"Metric plan: {content.plan_why}", ""]
        if content.headline_verdict:
            out += [f"**{content.headline_verdict[0].upper()}{content.headline_verdict[1:]}**", ""]
        out += _table(["metric", "baseline", "finetuned", "delta", "note"],
                      [[r.name, human(r.name, r.baseline), human(r.name, r.finetuned),
                        signed(r.delta, r.name), r.note] for r in content.metric_rows])
        if content.left_out:
            out += ["Left out: " + "; ".join(f"{m} ({why})" for m, why in content.left_out.items()), ""]
    else:
        out += ["Not evaluated yet.", ""]
    if content.prompting:
        kinds = list(content.prompting[0][1])
        out += ["Every prompting baseline:", ""]
        out += _table(["metric", *kinds, "finetuned"],
                      [[name, *(human(name, values[k]) for k in kinds), human(name, finetuned)]
                       for name, values, finetuned in content.prompting])
    if content.forgetting:
        out += ["**Forgetting check:** " + forgetting_line(content.forgetting), ""]
        fixes = content.forgetting_remedies
        if fixes:
            out += ["Remedies, each a re-run on its own:", "", *(f"- {f}" for f in fixes), ""]

    out += ["## Diagnosis", ""]
    if content.verdict:
        out += [f"**Verdict:** {content.verdict}", ""]
    out += [f"- **{f.severity}**: {f.message}" for f in content.diagnosis] or ["- nothing flagged"]
    out += [""]
    if content.remedies:
        out += ["What to change:", ""] + [f"- {r}" for r in content.remedies] + [""]

    out += ["## Training", ""]
    out += (_table(["", ""], [[k, human(k, v)] for k, v in content.training.items()])
            if content.training else ["n/a", ""])
    for path, caption in content.figures:
        out += [f"![{caption}](plots/{path.name})", ""]

    out += ["## Data", ""]
    data = content.data_summary
    if data:
        out += [f"Source: `{data.get('source')}`; split {fmt(data.get('split', {}).get('method'))}; "
                f"overlap check passed: {fmt(data.get('overlap_check'))}.", ""]
        out += _table(["count", "value"], [[k, human(k, v)] for k, v in data.get("counts", {}).items()])
        for split, dist in data.get("label_distribution", {}).items():
            out += [f"- {split}: " + ", ".join(f"{k} {v}" for k, v in dist.items())]
        out += [""]
        if data.get("rejects_by_reason"):
            out += _table(["reject reason", "count"], list(map(list, data["rejects_by_reason"].items())))
    else:
        out += ["No data manifest in this run.", ""]

    out += [f"## {content.examples_title}", ""]
    if content.examples:
        keys = list(content.examples[0])
        out += _table(keys, [[row.get(k) for k in keys] for row in content.examples])
    else:
        out += ["none recorded", ""]

    out += ["## Config", "", "```yaml", content.config_yaml.rstrip(), "```", ""]
    out += ["## Environment", ""]
    env_rows = [[f"version {k}", v] for k, v in content.environment.get("versions", {}).items()]
    env_rows += [[k, v] for k, v in content.environment.get("hardware", {}).items()]
    out += _table(["", ""], env_rows) if env_rows else ["n/a", ""]
    return "\n".join(out)
