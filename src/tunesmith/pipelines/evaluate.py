"""`tunesmith evaluate`: score a trained run on its test split against the baseline.

``evaluate(run_dir, test_file=None)`` (the DVC ``evaluate`` stage) reads the run folder that
``train`` wrote, scores the unchanged pretrained model (the baseline) and the finetuned one on
the test split, and completes metrics.json (``baseline``, ``finetuned``, ``delta``), writes
errors.jsonl and plots/confusion_matrix.png, and logs all of it to the run's MLflow run.

Task families plug in through :data:`EVALUATORS`; classification is here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import Config, load_config
from tunesmith.errors import UsageError
from tunesmith.evaluate import generation
from tunesmith.pipelines.train import read_split, write_json
from tunesmith.train.prompts import CLASSIFICATION_AS_INSTRUCTION, GENERATIVE_TASKS

# The probe is fitted on at most this many train examples (sampled with the seed): embedding
# them is the probe's cost, and on rotten-tomatoes 10k examples gave 0.741 against 0.731 for 2k.
PROBE_MAX_TRAIN = 10_000


@dataclass
class EvaluateResult:
    run_dir: Path
    metrics: dict[str, Any]  # the whole metrics.json
    errors: list[dict[str, Any]]  # worst errors (classification) or samples (generative)


def _evaluate_classification(
    run_dir: Path, run_meta: dict[str, Any], cfg: Config, data_dir: Path, test_file: Path,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Probe baseline and finetuned scores; writes errors.jsonl and the confusion matrix."""
    from tunesmith.data.io import read_records
    from tunesmith.evaluate.classification import probe_baseline, score, worst_errors
    from tunesmith.evaluate.metric_plan import plan_for_records, select
    from tunesmith.evaluate.metrics import average_precision
    from tunesmith.methods import load_adapter
    from tunesmith.models import load_model
    from tunesmith.report.plots import plot_confusion_matrix
    from tunesmith.train.encoding import encode_classification

    labels = run_meta["labels"]
    train_records = read_split(data_dir, "train", "classification")
    plan = plan_for_records("classification", train_records, cfg.evaluation.metrics)
    for line in plan.lines():
        log(line)
    positive = labels.index(plan.positive_label) if plan.positive_label in labels else None
    if len(train_records) > PROBE_MAX_TRAIN:
        train_records = random.Random(cfg.prepare.seed).sample(train_records, PROBE_MAX_TRAIN)
    test_records = read_records(test_file, task="classification")
    # A QLoRA adapter was trained on the NF4 base: score it on that base.
    qlora = run_meta.get("method") == "qlora"
    loaded = load_model(run_meta["model"], task="classification", labels=labels, load_in_4bit=qlora,
                        compute_dtype=cfg.finetune.qlora_compute_dtype if qlora else "float32")
    max_length = cfg.prepare.max_length
    train_enc = encode_classification(train_records, loaded.tokenizer, labels, max_length)
    test_enc = encode_classification(test_records, loaded.tokenizer, labels, max_length)
    pad = loaded.tokenizer.pad_token_id

    log(f"baseline: logistic-regression probe on the frozen {run_meta['model']} embeddings "
        f"({len(train_enc)} train, {len(test_enc)} test examples)")
    baseline, _ = probe_baseline(loaded.model, train_enc, test_enc, pad, seed=cfg.prepare.seed,
                                 positive=positive)
    model = load_adapter(loaded.model, run_dir / "adapter")
    scores = score(model, test_enc, pad)
    if positive is not None:
        truth = [e["label"] == positive for e in test_enc.examples]
        scores.metrics["pr_auc"] = average_precision(truth, scores.probabilities[:, positive].tolist())
    finetuned = select(plan, scores.metrics)
    baseline = select(plan, baseline)
    errors = worst_errors(test_records, scores, labels, cfg.evaluation.num_samples)
    with (run_dir / "errors.jsonl").open("w", encoding="utf-8") as fh:
        for error in errors:
            fh.write(json.dumps(error, ensure_ascii=False) + "\n")
    plot_confusion_matrix(scores.confusion, labels, run_dir / "plots" / "confusion_matrix.png")
    metrics = {
        "plan": plan.to_dict(),
        "baseline": baseline,
        "finetuned": finetuned,
        "delta": {k: v - baseline[k] for k, v in finetuned.items() if k in baseline},
        "confusion_matrix": {"labels": labels, "matrix": scores.confusion},
    }
    return metrics, errors


# The dispatch point for task families: generative tasks add "instruction", "qa" and "chat".
EVALUATORS: dict[str, Callable[..., tuple[dict[str, Any], list[dict[str, Any]]]]] = {
    "classification": _evaluate_classification,
}
# Prompting baselines, generation scores, forgetting check.
EVALUATORS.update(dict.fromkeys(
    (*GENERATIVE_TASKS, CLASSIFICATION_AS_INSTRUCTION), generation.evaluate_run
))


def read_run(run_dir: str | Path) -> tuple[Path, dict[str, Any], Config]:
    """A run folder's run.json and config.yaml; UsageError when it is not a run folder."""
    root = Path(run_dir)
    if not (root / "run.json").is_file() or not (root / "config.yaml").is_file():
        raise UsageError(
            f"{root} is not a tunesmith run folder (run.json or config.yaml is missing).",
            hint="Pass a folder written by `tunesmith train` or `tunesmith run`, e.g. runs/<name>.",
        )
    run_meta = json.loads((root / "run.json").read_text(encoding="utf-8"))
    return root, run_meta, load_config(root / "config.yaml")


def evaluate(
    run_dir: str | Path,
    test_file: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> EvaluateResult:
    """Score run ``run_dir`` on ``test_file`` (default: test.jsonl of the run's data folder).

    Raises UsageError (not a run folder, unsupported task), DataError (missing test split).
    """
    root, run_meta, cfg = read_run(run_dir)
    if not (root / "adapter").is_dir():
        raise UsageError(f"{root} has no adapter/: the run did not finish training.",
                         hint=f"Finish it with `tunesmith train --resume {root}`.")
    data = Path(data_dir or run_meta.get("data_dir") or root / "data")
    test = Path(test_file) if test_file else data / "test.jsonl"
    if not test.is_file():
        read_split(test.parent, test.stem)  # raises the DataError that says what to do
    task = run_meta["task"]
    if task not in EVALUATORS:
        raise UsageError(f"evaluation of '{task}' runs is not available in this build "
                         f"(available: {', '.join(EVALUATORS)}).")
    results, errors = EVALUATORS[task](root, run_meta, cfg, data, test, log)

    metrics_path = root / "metrics.json"
    previous = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    metrics = {"task": task, **results, "train": previous.get("train", {})}
    write_json(metrics_path, metrics)
    # Every evaluated run gets report.html and report.md.
    from tunesmith.report import write_reports

    write_reports(root)

    if cfg.tracking.enabled and run_meta.get("mlflow_run_id"):
        from tunesmith.track.experiment import MlflowTracker

        tracker = MlflowTracker(cfg, run_meta["run_name"])
        tracker.start(run_meta["mlflow_run_id"])
        try:
            tracker.log_final(metrics)
            if "plan" in metrics:  # the plan's verdict on each metric, beside the numbers
                from tunesmith.evaluate.metric_plan import MetricPlan, mlflow_tags

                tracker.set_tags(mlflow_tags(MetricPlan.from_dict(metrics["plan"])))
            tracker.log_run_folder(root)
        finally:
            tracker.finish()
    return EvaluateResult(root, metrics, errors)
