"""`tunesmith run` and `tunesmith demo`: prepare, train, evaluate, in one run folder.

``run(cfg)`` = :func:`~tunesmith.pipelines.prepare.prepare_data` into ``runs/<name>/data/``,
then :func:`~tunesmith.pipelines.train.train` and
:func:`~tunesmith.pipelines.evaluate.evaluate` on that folder: the same functions the DVC
stages call one by one.

``demo_config()`` is the demo preset: the built-in defaults (rotten-tomatoes, MiniLM, LoRA)
with the changes that make it finish in minutes on 2 CPU cores and beat its baseline;
:data:`DEMO_REASONS` says why each differs from the guide's starting points.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import assets
from tunesmith.config import Config, apply_overrides, validate_config
from tunesmith.errors import UsageError
from tunesmith.pipelines.evaluate import EvaluateResult, evaluate
from tunesmith.pipelines.train import TrainResult, default_run_name, train

# The demo's departures from the defaults, each with its reason (printed by `tunesmith demo`).
DEMO_SETTINGS: dict[str, Any] = {
    "prepare.limit": 6000,
    "finetune.learning_rate": 2e-3,
    "finetune.batch_size": 16,
    "finetune.num_epochs": 2,
}
DEMO_REASONS: dict[str, str] = {
    "prepare.limit": "6,000 of the 12.8k snippets keep the demo within minutes on 2 CPU cores "
    "(4,800 train / 600 val / 600 test after the 80/10/10 split)",
    "finetune.learning_rate": "the guide's LoRA default 2e-4 barely moves a freshly initialised "
    "head in this small a budget (test accuracy stays at the majority rate); 2e-3 learns in "
    "2 epochs",
    "finetune.batch_size": "16 snippets of ~27 tokens is still a small batch; it halves the steps",
    "finetune.num_epochs": "2 epochs reach the plateau at this learning rate; the guide's 3 add "
    "time, not accuracy",
}


def demo_config(overrides: list[str] | None = None) -> Config:
    """The demo preset (see :data:`DEMO_REASONS`), with ``--set`` overrides applied."""
    data: dict[str, Any] = {}
    for key, value in DEMO_SETTINGS.items():
        section, name = key.split(".")
        data.setdefault(section, {})[name] = value
    return validate_config(apply_overrides(data, overrides), source="demo preset")


@dataclass
class RunResult:
    run_dir: Path
    task: str
    metrics: dict[str, Any]  # metrics.json
    training: TrainResult
    evaluation: EvaluateResult
    data_counts: dict[str, int]


def _task_guess(cfg: Config) -> str | None:
    if cfg.prepare.task != "auto":
        return cfg.prepare.task
    builtin = assets.BUILTIN_DATASETS.get(cfg.prepare.dataset)
    return builtin.task if builtin else None


def run(
    cfg: Config,
    out_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    callbacks: Sequence[Any] = (),
) -> RunResult:
    """Prepare ``cfg.prepare.dataset``, finetune, evaluate against the baseline.

    Writes ``runs/<run-name>/`` under the working directory (or ``out_dir``); the run name is
    ``tracking.run_name`` or ``<task>-<model>-<method>-<timestamp>``. Raises UsageError when
    ``out_dir`` already holds a run, DataError/AssetError/ConfigError for bad input.
    ``callbacks`` (:class:`tunesmith.train.loop.Callback`) see every history record as it comes.
    """
    from tunesmith.pipelines.prepare import prepare_data

    name = cfg.tracking.run_name or default_run_name(cfg, _task_guess(cfg))
    out = Path(out_dir) if out_dir is not None else Path("runs") / name
    if (out / "run.json").exists():
        raise UsageError(
            f"{out} already holds a run.",
            hint="Choose another --out, set tracking.run_name, or remove the folder.",
        )
    if out_dir is not None and cfg.tracking.run_name is None:
        # The MLflow run is named after the folder the user chose.
        cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"run_name": out.name})})
    log(f"preparing {cfg.prepare.dataset} into {out / 'data'}")
    created = not out.exists()
    try:
        prepared = prepare_data(cfg.prepare, out / "data")
    except Exception:
        if created:  # nothing worth keeping: the error message says what to fix
            shutil.rmtree(out, ignore_errors=True)
        raise
    counts = {"train": len(prepared.train), "val": len(prepared.val), "test": len(prepared.test)}
    read = prepared.manifest.get("counts", {})
    rejected = read.get("rejected", 0)
    log(f"{prepared.task}: read {read.get('read', '?')} records, {rejected} rejected"
        + (f" (reasons and lines in {out / 'data' / 'rejects.jsonl'})" if rejected else "")
        + f", {read.get('duplicates_removed', 0)} duplicates removed; "
        f"{counts['train']} train, {counts['val']} val, {counts['test']} test")
    training = train(cfg, out / "data", out, progress=progress, log=log, callbacks=callbacks)
    evaluation = evaluate(out, log=log)
    from tunesmith.advise.run_memory import record_run_peak

    # The process's peak now covers prepare, training and evaluation: the whole run's.
    evaluation.metrics = record_run_peak(out / "metrics.json")
    from tunesmith.report import write_reports

    write_reports(out)  # with the whole run's peak beside the estimate
    return RunResult(out, training.task, evaluation.metrics, training, evaluation, counts)
