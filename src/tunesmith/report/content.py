"""What a run report shows, read once from the run folder; html.py and md.py only render it.

Every part is optional: a run that stopped before evaluation still gets a report of what it has
(config, data, curves), and says what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunesmith import runfiles

# Pictures in the order they are shown, with their captions.
FIGURES = (
    (runfiles.LOSS_PLOT, "Training and validation loss"),
    (runfiles.LR_PLOT, "Learning rate"),
    (runfiles.CONFUSION_PLOT, "Confusion matrix (test split)"),
)
# Metrics shown first in the baseline-vs-finetuned table, when present.
PREFERRED_METRICS = ("accuracy", "precision", "recall", "f1", "loss", "perplexity", "bleu",
                     "rouge1", "rouge2", "rougeL", "exact_match", "token_f1")
MAX_ROWS = 10


@dataclass
class MetricRow:
    name: str
    baseline: float | None
    finetuned: float | None
    note: str = ""  # "headline", or why the metric is not meaningful here

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.finetuned is None:
            return None
        return self.finetuned - self.baseline


@dataclass
class Finding:
    severity: str  # "info" | "warning"
    message: str


@dataclass
class ReportContent:
    run_dir: Path
    title: str
    facts: dict[str, str]  # run name, task, model, method, git commit, data hash ...
    config_yaml: str
    data_summary: dict[str, Any]  # counts, labels per split, rejects, duplicates
    training: dict[str, Any]  # metrics.json "train" plus what history says
    metric_rows: list[MetricRow]
    baseline_kind: str | None
    figures: list[tuple[Path, str]]  # (png, caption), only those that exist
    verdict: str | None  # the advisor's one-line verdict on the curves
    diagnosis: list[Finding]
    remedies: list[str]
    examples_title: str  # "Worst errors" or "Generation samples"
    examples: list[dict[str, Any]]
    environment: dict[str, Any]
    missing: list[str] = field(default_factory=list)
    # Generative runs: every prompting baseline (zero-shot, few-shot) with the finetuned model
    # beside it, as rows of (metric, {kind: value}, finetuned), and the forgetting check.
    prompting: list[tuple[str, dict[str, float], float | None]] = field(default_factory=list)
    forgetting: dict[str, Any] | None = None
    # Its remedies as `--set` overrides with their reasons, when it warned.
    forgetting_remedies: list[str] = field(default_factory=list)
    # The metric plan: why the headline leads, the verdict on it, what was left out and why.
    plan_why: str | None = None
    headline_verdict: str | None = None
    left_out: dict[str, str] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def _metric_names(baseline: dict[str, Any], finetuned: dict[str, Any]) -> list[str]:
    """The numeric metrics of either side: PREFERRED_METRICS first, then the rest sorted."""
    numeric = [k for k in {**baseline, **finetuned}
               if isinstance(baseline.get(k, finetuned.get(k)), (int, float))
               and not isinstance(baseline.get(k, finetuned.get(k)), bool)]
    ordered = [k for k in PREFERRED_METRICS if k in numeric]
    return ordered + sorted(k for k in numeric if k not in ordered)


def _metric_rows(metrics: dict[str, Any]) -> list[MetricRow]:
    """Baseline vs finetuned per metric, in the metric plan's order (headline first) with its
    notes; runs evaluated before plans existed keep PREFERRED_METRICS' order."""
    from tunesmith.evaluate.metric_plan import ordered, plan_of

    baseline = metrics.get("baseline") or {}
    finetuned = metrics.get("finetuned") or {}
    names = _metric_names(baseline, finetuned)
    plan = plan_of(metrics)
    if plan is None:
        return [MetricRow(k, baseline.get(k), finetuned.get(k)) for k in names]
    return [MetricRow(k, baseline.get(k), finetuned.get(k), plan.note(k)) for k in ordered(plan, names)]


def _prompting_rows(metrics: dict[str, Any]) -> list[tuple[str, dict[str, float], float | None]]:
    """Each metric of the prompting baselines beside the finetuned model's (when there are
    several baselines: with one, the baseline-vs-finetuned table says it all)."""
    baselines = metrics.get("baselines") or {}
    if len(baselines) < 2:
        return []
    from tunesmith.evaluate.metric_plan import ordered, plan_of

    finetuned = metrics.get("finetuned") or {}
    names = _metric_names(next(iter(baselines.values())), finetuned)
    plan = plan_of(metrics)
    names = ordered(plan, names) if plan else names
    return [(name, {kind: b.get(name) for kind, b in baselines.items()}, finetuned.get(name))
            for name in names]


def forgetting_remedies(forgetting: dict[str, Any]) -> list[str]:
    """The forgetting check's remedies as ``--set`` overrides with their reasons (empty when it
    did not warn), for both renderers."""
    if not forgetting.get("warning"):
        return []
    return [f"`--set {r['override']}`: {r['reason']}" for r in forgetting.get("remedies") or []]


def forgetting_line(forgetting: dict[str, Any]) -> str:
    """One sentence on the forgetting check, for both renderers."""
    verdict = ("above the threshold: possible catastrophic forgetting" if forgetting.get("warning")
               else "within the threshold")
    return (f"Perplexity on general text ({forgetting.get('text')}): "
            f"{fmt(forgetting.get('perplexity_before'))} before, {fmt(forgetting.get('perplexity_after'))} "
            f"after finetuning ({forgetting.get('relative_change', 0):+.1%}; threshold "
            f"{forgetting.get('threshold', 0):.0%}): {verdict}.")


def _data_summary(run_dir: Path, run_meta: dict[str, Any]) -> dict[str, Any]:
    manifest = _read_json(run_dir / runfiles.DATA_DIR / runfiles.MANIFEST)
    if not manifest and run_meta.get("data_dir"):
        manifest = _read_json(Path(run_meta["data_dir"]) / runfiles.MANIFEST)
    if not manifest:
        return {}
    return {
        "source": (manifest.get("source") or {}).get("dataset"),
        "counts": manifest.get("counts", {}),
        "label_distribution": manifest.get("label_distribution", {}),
        "rejects_by_reason": manifest.get("rejects_by_reason", {}),
        "split": manifest.get("split", {}),
        "overlap_check": (manifest.get("overlap_check") or {}).get("passed"),
    }


def _diagnosis(history: list[dict[str, Any]], config: dict[str, Any],
               headline: str | None = None) -> tuple[str | None, list[Finding], list[str]]:
    """The advisor's verdict on the curves, its findings and remedies, plus the loop's events
    (early stop, OOM recovery) that history.jsonl recorded."""
    from tunesmith.advise.diagnose import diagnose_history
    from tunesmith.config import FinetuneConfig

    findings = [Finding("info" if r["event"] == "early_stop" else "warning",
                        str(r.get("message", r["event"])))
                for r in history
                if r.get("kind") == "event" and r.get("event") in ("early_stop", "oom_recovered")]
    if not any(r.get("kind") == "train" for r in history):
        return None, findings, []
    try:
        cfg = FinetuneConfig.model_validate(config.get("finetune") or {})
    except ValueError:
        cfg = None  # an old or hand-edited config: remedies without concrete new values
    diagnosis = diagnose_history(history, cfg, headline)
    # The verdict's own finding is the headline; the others that also hold are listed.
    findings += [Finding("warning", f"{f.pattern.replace('_', ' ')}: {f.evidence}")
                 for f in diagnosis.findings if f.pattern != diagnosis.verdict]
    findings += [Finding("info", note) for note in diagnosis.notes]
    return diagnosis.summary(), findings, [r.render() for r in diagnosis.remedies]


def memory_rows(training: dict[str, Any]) -> dict[str, str]:
    """The report's memory lines for a run's ``train`` metrics: the whole-run peak measured
    beside the estimate made before training (for every trained run: a missing side is named),
    the estimate's largest terms and whether activation checkpointing trained, and who chose."""
    peak, estimate = training.get("peak_run_mb"), training.get("estimate_run_mb")
    if not peak and not estimate:
        return {}
    measured = f"{peak:,.0f} MB" if peak else "not measured (no /proc on this system)"
    estimated = (f"{estimate:,.0f} MB" if estimate else
                 "no estimate (the estimator could not read the model's config)")
    gap = f" ({estimate / peak - 1:+.0%})" if peak and estimate else ""
    rows = {"peak memory: measured / estimated": f"{measured} / {estimated}{gap}"}
    if training.get("estimate_dominant"):
        rows["memory estimate's largest terms"] = str(training["estimate_dominant"])
    if "gradient_checkpointing" in training:
        on = training["gradient_checkpointing"]
        by = training.get("gradient_checkpointing_by", "config")
        rows["gradient checkpointing"] = (("on" if on else "off") + (
            " (chosen by the preflight: it halves the estimated peak)" if on and by == "preflight"
            else f" ({by})"))
    return rows


def gather(run_dir: str | Path) -> ReportContent:
    """Read everything a report shows from a run folder."""
    root = Path(run_dir)
    run_meta = _read_json(root / runfiles.RUN_META)
    metrics = _read_json(root / runfiles.METRICS)
    history = _read_jsonl(root / runfiles.HISTORY)
    config_path = root / runfiles.CONFIG
    config_yaml = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    config = yaml.safe_load(config_yaml) or {} if config_yaml else {}

    task = run_meta.get("task") or metrics.get("task") or "?"
    facts = {
        "run": str(run_meta.get("run_name") or root.name),
        "task": task,
        "model": str(run_meta.get("model") or config.get("finetune", {}).get("model", "?")),
        "method": str(run_meta.get("method") or config.get("finetune", {}).get("method", "?")),
    }
    for key in ("git_commit", "data_sha256", "mlflow_run_id"):
        if run_meta.get(key):
            facts[key] = str(run_meta[key])

    training = dict(metrics.get("train") or {})
    training.update(memory_rows(training))
    train_records = [r for r in history if r.get("kind") == "train"]
    eval_records = [r for r in history if r.get("kind") == "eval"]
    if train_records:
        training.setdefault("steps", train_records[-1].get("step"))
        training["final_train_loss"] = train_records[-1].get("loss")
    general = [r["general_loss"] for r in train_records if r.get("general_loss") is not None]
    if general:  # prepare.mix_general: the mixed-in text's loss, logged apart from the task's
        training["general_text_loss (first -> last log)"] = f"{general[0]:.4f} -> {general[-1]:.4f}"
    if eval_records:
        best = [r for r in eval_records if r.get("is_best")] or eval_records[-1:]
        training["best_val_loss"] = best[-1].get("val_loss")
        training["best_step"] = best[-1].get("step")

    figures = [(root / runfiles.PLOTS_DIR / name, caption) for name, caption in FIGURES
               if (root / runfiles.PLOTS_DIR / name).is_file()]
    errors_path, samples_path = root / runfiles.ERRORS, root / runfiles.SAMPLES
    if task == "classification":
        examples_title, examples = "Worst errors (most confident mistakes)", _read_jsonl(errors_path, MAX_ROWS)
    else:
        examples_title, examples = "Generation samples", _read_jsonl(samples_path, MAX_ROWS)

    from tunesmith.evaluate.metric_plan import headline_metric, plan_of

    plan = plan_of(metrics)
    verdict, findings, remedies = _diagnosis(history, config, headline_metric(plan) if plan else None)
    missing = []
    if not metrics.get("finetuned"):
        missing.append("evaluation (metrics.json has no finetuned scores: run `tunesmith evaluate`)")
    if not history:
        missing.append("training history (history.jsonl)")
    return ReportContent(
        run_dir=root,
        title=f"tunesmith report: {facts['run']}",
        facts=facts,
        config_yaml=config_yaml,
        data_summary=_data_summary(root, run_meta),
        training=training,
        metric_rows=_metric_rows(metrics),
        baseline_kind=(metrics.get("baseline") or {}).get("kind"),
        figures=figures,
        verdict=verdict,
        diagnosis=findings,
        remedies=remedies,
        examples_title=examples_title,
        examples=examples,
        environment={"versions": run_meta.get("versions", {}),
                     "hardware": run_meta.get("hardware", {})},
        missing=missing,
        prompting=_prompting_rows(metrics),
        forgetting=metrics.get("forgetting"),
        forgetting_remedies=forgetting_remedies(metrics.get("forgetting") or {}),
        **_plan_parts(metrics),
    )


def _plan_parts(metrics: dict[str, Any]) -> dict[str, Any]:
    from tunesmith.evaluate.metric_plan import display, plan_of, verdict

    plan = plan_of(metrics)
    if plan is None:
        return {}
    return {"plan_why": f"{display(plan.headline)} leads: {plan.why}.",
            "headline_verdict": verdict(plan, metrics), "left_out": dict(plan.left_out)}


def fmt(value: Any) -> str:
    """Numbers to 4 significant decimals, everything else as text."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def signed(value: float | None, key: str = "") -> str:
    """A change: percentage points for rates, else 4 decimals with its sign."""
    if value is None:
        return "n/a"
    if _is_rate(key):
        return f"{100 * value:+.1f} pts"
    return f"{value:+.4f}"


def _is_rate(key: str) -> bool:
    return key.endswith(("_rate", "_share")) or key == "relative_change"


def human(key: str, value: Any) -> str:
    """A value as people read it, by what its key says it is: MB and seconds with their units,
    throughputs per second, rates (``*_rate``, ``*_share``) and ``*_percent`` as percentages,
    integers with thousands separators and no decimals; the rest as :func:`fmt`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return fmt(value)
    name = key.lower()
    if name.endswith("_mb"):
        return f"{value:,.1f} MB" if abs(value) < 100 else f"{value:,.0f} MB"
    if name.endswith("per_second"):
        return f"{value:,.1f}/s"
    if name.endswith("seconds"):
        return f"{value:,.1f} s" if abs(value) < 100 else f"{value:,.0f} s"
    if name.endswith("_percent"):
        return f"{value:.2f}%"
    if _is_rate(name):
        return f"{value:.1%}"
    if isinstance(value, int):
        return f"{value:,}"
    return fmt(value)
