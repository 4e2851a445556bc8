"""`tunesmith evaluate`: score a trained run on its test split against the baseline.

``evaluate(run_dir, test_file=None)`` (the DVC ``evaluate`` stage) reads the run folder that
``train`` wrote, scores the unchanged pretrained model (the baseline) and the finetuned one on
the test split, and completes metrics.json (``baseline``, ``finetuned``, ``delta``), writes
errors.jsonl (classification) or samples.jsonl (generative) and plots/confusion_matrix.png,
and logs all of it to the run's MLflow run.

Task families plug in through :data:`EVALUATORS`: each family's ``evaluate_run``
(:mod:`tunesmith.evaluate.classification`, :mod:`tunesmith.evaluate.generation`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tunesmith import runfiles
from tunesmith.config import Config, load_config
from tunesmith.errors import UsageError
from tunesmith.evaluate import classification, generation
from tunesmith.pipelines.train import read_split, write_json
from tunesmith.records import ClassificationRecord
from tunesmith.train.prompts import CLASSIFICATION_AS_INSTRUCTION, GENERATIVE_TASKS


@dataclass
class EvaluateResult:
    run_dir: Path
    metrics: dict[str, Any]  # the whole metrics.json
    errors: list[dict[str, Any]]  # worst errors (classification) or samples (generative)


# The dispatch point for task families: generative tasks add "instruction", "qa" and "chat".
EVALUATORS: dict[str, Callable[..., tuple[dict[str, Any], list[dict[str, Any]]]]] = {
    "classification": classification.evaluate_run,
}
# Prompting baselines, generation scores, forgetting check.
EVALUATORS.update(dict.fromkeys(
    (*GENERATIVE_TASKS, CLASSIFICATION_AS_INSTRUCTION), generation.evaluate_run
))


def read_run(run_dir: str | Path) -> tuple[Path, dict[str, Any], Config]:
    """A run folder's run.json and config.yaml; UsageError when it is not a run folder."""
    root = Path(run_dir)
    if not (root / runfiles.RUN_META).is_file() or not (root / runfiles.CONFIG).is_file():
        raise UsageError(
            f"{root} is not a tunesmith run folder (run.json or config.yaml is missing).",
            hint="Pass a folder written by `tunesmith train` or `tunesmith run`, e.g. runs/<name>.",
        )
    run_meta = json.loads((root / runfiles.RUN_META).read_text(encoding="utf-8"))
    return root, run_meta, load_config(root / runfiles.CONFIG)


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
    if not (root / runfiles.ADAPTER_DIR).is_dir():
        raise UsageError(f"{root} has no adapter/: the run did not finish training.",
                         hint=f"Finish it with `tunesmith train --resume {root}`.")
    data = Path(data_dir or run_meta.get("data_dir") or root / runfiles.DATA_DIR)
    test = Path(test_file) if test_file else data / runfiles.split_file("test")
    if not test.is_file():
        read_split(test.parent, test.stem)  # raises the DataError that says what to do
    task = run_meta["task"]
    if task not in EVALUATORS:
        raise UsageError(f"evaluation of '{task}' runs is not available in this build "
                         f"(available: {', '.join(EVALUATORS)}).")
    if not (data / runfiles.split_file("train")).is_file():
        read_split(data, "train")  # the baselines learn from it; raises the DataError that says what to do
    # After training in the same process (`tunesmith run`): what training freed goes back to the
    # system before the evaluation allocates its own (models/pages.py: trim_heap).
    from tunesmith.models.pages import trim_heap

    trim_heap()
    results, errors = EVALUATORS[task](root, run_meta, cfg, data, test, log)
    if "confusion_matrix" in results:
        from tunesmith.report.plots import plot_confusion_matrix

        confusion = results["confusion_matrix"]
        plot_confusion_matrix(confusion["matrix"], confusion["labels"],
                              root / runfiles.PLOTS_DIR / runfiles.CONFUSION_PLOT)

    metrics_path = root / runfiles.METRICS
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


def score_task(
    model_name: str,
    adapter_dir: str | Path | None,
    task: str,
    data_dir: str | Path,
    cfg: Config,
    *,
    labels: list[str] | None = None,
    method: str = "lora",
) -> dict[str, Any]:
    """One model's scores on one task's test split, the metrics its plan reports (no baselines).

    ``task`` is a run's task ("classification" for an encoder, a generative task or
    classification-as-instruction for a causal LM), ``data_dir`` holds its train.jsonl (the plan
    is read from it) and test.jsonl, ``cfg`` its evaluation settings and ``labels`` its label
    words. ``adapter_dir`` None scores the bare base (a causal LM prompted zero-shot; an encoder
    classifier needs an adapter for its head). Used to measure what continual learning forgot
    and per-task scores of a multi-task run. Costs one model load and a pass over the test
    split (generation for ``evaluation.generation_limit`` examples of generative tasks).
    Raises UsageError for an encoder without adapter, DataError for missing splits.
    """
    from tunesmith.evaluate.metric_plan import plan_for_records, select
    from tunesmith.methods import load_adapter
    from tunesmith.models import load_model

    data = Path(data_dir)
    record_task = "classification" if task in ("classification", CLASSIFICATION_AS_INSTRUCTION) else task
    train_records = read_split(data, "train", record_task)
    test_records = read_split(data, "test", record_task)
    plan = plan_for_records(task, train_records, cfg.evaluation.metrics)
    qlora = method == "qlora"
    loaded = load_model(model_name, task=task, labels=labels if task == "classification" else None,
                        load_in_4bit=qlora,
                        compute_dtype=cfg.finetune.qlora_compute_dtype if qlora else "float32")
    if adapter_dir is None and task == "classification":
        raise UsageError("an encoder classifier has no head before finetuning: score it with an adapter.")
    model = loaded.model if adapter_dir is None else load_adapter(loaded.model, adapter_dir)
    if task == "classification":
        from tunesmith.evaluate.classification import score
        from tunesmith.train.encoding import encode_classification

        # Read as "classification": every record is a ClassificationRecord.
        encoded = encode_classification(cast(list[ClassificationRecord], test_records),
                                        loaded.tokenizer, labels or [], cfg.prepare.max_length)
        return select(plan, score(model, encoded, loaded.tokenizer.pad_token_id).metrics)
    settings = generation.GenerationSettings.from_config(cfg.evaluation, batch_size=cfg.finetune.batch_size,
                                                         seed=cfg.prepare.seed)
    scores = generation.score_model(
        model, loaded.tokenizer, test_records, labels=labels or [], settings=settings,
        max_length=cfg.prepare.max_length, generation_limit=cfg.evaluation.generation_limit, plan=plan)
    return select(plan, scores.metrics)
