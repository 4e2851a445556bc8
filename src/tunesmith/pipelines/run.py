"""`tunesmith run` and `tunesmith demo`: prepare, train, evaluate, in one run folder.

``run(cfg)`` = :func:`~tunesmith.pipelines.prepare.prepare_data` into ``runs/<name>/data/``,
then :func:`~tunesmith.pipelines.train.train` and
:func:`~tunesmith.pipelines.evaluate.evaluate` on that folder: the same functions the DVC
stages call one by one.

``demo_config()`` is the demo preset: the built-in defaults (rotten-tomatoes, MiniLM, LoRA)
with the changes that make it finish in minutes on 2 CPU cores; :data:`DEMO_REASONS` says why
each differs from the defaults. Its learning rate and LoRA targets are the defaults a classifier
gets (:data:`~tunesmith.config.CLASSIFIER_LORA_DEFAULTS`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import assets, runfiles
from tunesmith.config import (
    Config,
    apply_overrides,
    classifier_defaults,
    load_config,
    safe_run_name,
    save_config,
    validate_config,
)
from tunesmith.errors import TunesmithError, UsageError
from tunesmith.evaluate.metric_plan import Comparison, compare
from tunesmith.pipelines.evaluate import EvaluateResult, evaluate
from tunesmith.pipelines.train import TrainResult, default_run_name, train
from tunesmith.serve.servability import check_servability
from tunesmith.train.distributed import Launcher

# The demo's departures from the defaults, each with its reason (printed by `tunesmith demo`).
DEMO_SETTINGS: dict[str, Any] = {
    "prepare.limit": 6000,
    "finetune.batch_size": 16,
    "finetune.num_epochs": 2,
}
DEMO_REASONS: dict[str, str] = {
    "prepare.limit": "6,000 of the 12.8k snippets keep the demo within minutes on 2 CPU cores "
    "(4,800 train / 600 val / 600 test after the 80/10/10 split)",
    "finetune.batch_size": "16 snippets of ~27 tokens is still a small batch; it halves the steps",
    "finetune.num_epochs": "2 epochs reach the plateau at this learning rate; the guide's 3 add "
    "time, not accuracy",
}


def demo_config(overrides: list[str] | None = None) -> Config:
    """The demo preset (see :data:`DEMO_REASONS`), with ``--set`` overrides applied and the
    defaults a classifier gets filled in (:func:`~tunesmith.config.classifier_defaults`), so
    ``demo --show-config`` shows the settings that train."""
    data: dict[str, Any] = {}
    for key, value in DEMO_SETTINGS.items():
        section, name = key.split(".")
        data.setdefault(section, {})[name] = value
    cfg = validate_config(apply_overrides(data, overrides), source="demo preset")
    finetune, _ = classifier_defaults(cfg.finetune, "classification")
    return cfg.model_copy(update={"finetune": finetune})


@dataclass
class Outcome:
    """Did finetuning beat the baseline on the run's headline metric (the metric plan's
    :class:`~tunesmith.evaluate.metric_plan.Comparison`), and if not, what next."""

    comparison: Comparison
    diagnosis: Any = None  # tunesmith.advise.diagnose.Diagnosis when finetuning lost

    @property
    def metric(self) -> str:
        return self.comparison.metric

    @property
    def result(self) -> str:
        """won | matched | lost."""
        return self.comparison.result

    def lines(self, baseline_kind: str = "baseline", run_dir: Path | str = "RUN") -> list[str]:
        """What the end of `tunesmith run` says about it, for people (nothing when it won)."""
        c = self.comparison
        if self.result == "won":
            return []
        if self.result == "matched":
            return [f"finetuning matched the {baseline_kind} on {c.metric} ({c.finetuned:.4f}): "
                    "no step improved on the starting point on validation, so the starting "
                    f"weights (the baseline's head) were kept; `tunesmith diagnose {run_dir}` "
                    "says what to change."]
        out = [f"The {baseline_kind} is better than the finetuned model on this data: test "
               f"{c.metric} {c.baseline:.4f} against {c.finetuned:.4f} "
               f"({c.change:+.4f}). Use the {baseline_kind}'s numbers; "
               "metrics.json keeps both."]
        if self.diagnosis is not None:
            out.append(f"diagnosis: {self.diagnosis.summary()}")
            overrides = self.diagnosis.overrides()
            if overrides:
                out.append("try: tunesmith run " + " ".join(f"--set {o}" for o in overrides))
            out += [f"  {r.render()}" for r in self.diagnosis.remedies if r.key is None]
        return out

    def to_dict(self) -> dict[str, Any]:
        c = self.comparison
        out: dict[str, Any] = {"metric": c.metric, "baseline": c.baseline,
                               "finetuned": c.finetuned, "result": self.result}
        if self.diagnosis is not None:
            out["diagnosis"] = self.diagnosis.verdict
            out["overrides"] = self.diagnosis.overrides()
        return out


def outcome_of(metrics: dict[str, Any], best_metric: str, history: Sequence[dict[str, Any]],
               cfg: Config) -> Outcome | None:
    """Compare finetuned with baseline on ``best_metric`` (accuracy when the scores lack it);
    diagnose ``history`` when finetuning lost. None when either score is missing."""
    from tunesmith.advise.diagnose import diagnose_history

    comparison = compare(best_metric, metrics) or compare("accuracy", metrics)
    if comparison is None:
        return None
    outcome = Outcome(comparison)
    if outcome.result == "lost":
        outcome.diagnosis = diagnose_history(history, cfg.finetune)
    return outcome


@dataclass
class RunResult:
    run_dir: Path
    task: str
    metrics: dict[str, Any]  # metrics.json
    # None when training ran in other processes (--nproc) or had finished before a resume.
    training: TrainResult | None
    evaluation: EvaluateResult
    data_counts: dict[str, int]
    outcome: Outcome | None = None
    # Continued runs: task A's scores before and after (metrics.json's "continual").
    continual: dict[str, Any] | None = None


def _task_guess(cfg: Config) -> str | None:
    if cfg.prepare.task != "auto":
        return cfg.prepare.task
    builtin = assets.BUILTIN_DATASETS.get(cfg.prepare.dataset)
    return builtin.task if builtin else None


def _clean_up_failed_prepare(out: Path) -> None:
    """Remove what a failed data step wrote, except a non-empty rejects.jsonl: the error
    message points to it (each rejected row with its line and reason)."""
    rejects = out / runfiles.DATA_DIR / runfiles.REJECTS
    if not (rejects.is_file() and rejects.stat().st_size):
        shutil.rmtree(out, ignore_errors=True)
        return
    for path in out.rglob("*"):
        if path.is_file() and path != rejects:
            path.unlink()


def run(
    cfg: Config,
    out_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    callbacks: Sequence[Any] = (),
    nproc: int = 1,
    continue_from: str | Path | None = None,
    launcher: Launcher | None = None,
) -> RunResult:
    """Prepare ``cfg.prepare.dataset``, finetune, evaluate against the baseline.

    Writes ``runs/<run-name>/`` under the working directory (or ``out_dir``); the run name is
    ``tracking.run_name`` or ``<task>-<model>-<method>-<timestamp>``. Raises UsageError when
    ``out_dir`` already holds a run, DataError/AssetError/ConfigError for bad input.
    ``callbacks`` (:class:`tunesmith.train.loop.Callback`) see every history record as it comes.
    ``nproc`` > 1 trains in that many processes (data parallel, like `tunesmith train --nproc`)
    started by ``launcher`` (``tunesmith.cli.distributed.launch_train``, what `tunesmith run
    --nproc` passes); preparing and evaluating stay in this one. A stopped run continues with
    :func:`resume_run`.

    ``continue_from`` (continual learning, see :mod:`tunesmith.pipelines.continual`) is an
    earlier run whose adapter training starts from, replaying ``prepare.replay_fraction`` of
    its training data; task A's test scores before and after go into metrics.json's
    ``continual`` section, the report and MLflow (two more scorings of A's test split).
    """
    _check_processes(nproc, launcher)
    from tunesmith.pipelines import continual
    from tunesmith.pipelines.prepare import prepare_data

    continual.continual_path_checks(cfg, continue_from, nproc)
    earlier = None
    if continue_from is not None:
        earlier, cfg = continual.earlier_run(continue_from, cfg, log)

    name = cfg.tracking.run_name or default_run_name(cfg, _task_guess(cfg))
    out = Path(out_dir) if out_dir is not None else Path("runs") / name
    if (out / runfiles.RUN_META).exists():
        raise UsageError(
            f"{out} already holds a run.",
            hint="Choose another --out, set tracking.run_name, or remove the folder.",
        )
    if out_dir is not None and cfg.tracking.run_name is None:
        # The MLflow run is named after the folder the user chose.
        named = safe_run_name(out.resolve().name)
        cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"run_name": named})})
    log(f"preparing {cfg.prepare.dataset} into {out / runfiles.DATA_DIR}")
    created = not out.exists()
    try:
        prepared = prepare_data(cfg.prepare, out / runfiles.DATA_DIR)
    except Exception:
        if created:
            _clean_up_failed_prepare(out)
        raise
    counts = {"train": len(prepared.train), "val": len(prepared.val), "test": len(prepared.test)}
    read = prepared.manifest.get("counts", {})
    rejected = read.get("rejected", 0)
    log(f"{prepared.task}: read {read.get('read', '?')} records, {rejected} rejected"
        + (f" (reasons and lines in {out / runfiles.DATA_DIR / runfiles.REJECTS})" if rejected else "")
        + f", {read.get('duplicates_removed', 0)} duplicates removed; "
        f"{counts['train']} train, {counts['val']} val, {counts['test']} test")
    from tunesmith.evaluate.metric_plan import plan_for_records

    # What the run will be judged by, before it trains (evaluate decides it again and stores it).
    for line in plan_for_records(prepared.task, prepared.train, cfg.evaluation.metrics).lines():
        log(line)
    if earlier is not None:
        from tunesmith.train.causal import model_is_causal

        causal_model = model_is_causal(cfg.finetune.model)
        continual.check_labels(earlier, "classification" if prepared.task == "classification"
                               and not causal_model else prepared.task, prepared.labels)
        counts["replay"] = continual.write_replay(earlier, cfg, out / "data", causal_model, log)
    training = _train_step(cfg, out, resume=False, nproc=nproc, progress=progress, log=log,
                           callbacks=callbacks, launcher=launcher,
                           init_adapter=earlier.adapter if earlier else None)
    log(check_servability(out).summary())  # where the trained adapter can be served, and how
    evaluation = evaluate(out, log=log)
    return _finish(out, cfg, training, evaluation, counts, earlier, log)


def _finish(out: Path, cfg: Config, training: TrainResult | None, evaluation: EvaluateResult,
            counts: dict[str, int], earlier: Any = None,
            log: Callable[[str], None] = print) -> RunResult:
    """After evaluation: record the whole run's memory peak (the process's peak now covers
    prepare, training and evaluation) and, for classification, whether finetuning beat the
    baseline on the metric plan's headline, with the diagnosis of the curves when it did not;
    for a continued run (``earlier``: task A), A's scores before and after (logged to the
    run's MLflow run too); then rewrite the reports with all of it."""
    from tunesmith.advise.diagnose import read_history
    from tunesmith.advise.run_memory import record_run_peak
    from tunesmith.report import write_reports

    metrics = record_run_peak(out / runfiles.METRICS)
    outcome = None
    if metrics.get("task") == "classification" and (out / runfiles.HISTORY).is_file():
        headline = (metrics.get("plan") or {}).get("headline") or "accuracy"
        outcome = outcome_of(metrics, headline, read_history(out / runfiles.HISTORY), cfg)
        if outcome is not None:
            metrics = {**metrics, "outcome": outcome.to_dict()}
            (out / runfiles.METRICS).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    continued = None
    if earlier is not None:
        from tunesmith.pipelines.continual import forgetting_of
        from tunesmith.report.sections import continual_lines

        continued = forgetting_of(earlier, out, log)
        metrics = {**metrics, "continual": continued}
        (out / runfiles.METRICS).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        for line in continual_lines(continued):
            log(line)
        add_to_mlflow(out, cfg, {"continual": {k: continued[k] for k in ("before", "after", "delta")}})
    write_reports(out)
    evaluation.metrics = metrics
    return RunResult(out, metrics["task"], metrics, training, evaluation, counts, outcome, continued)


def add_to_mlflow(out: Path, cfg: Config, numbers: dict[str, Any]) -> None:
    """Add ``numbers`` to the run's MLflow run (when tracking is on and the run has one)."""
    meta = json.loads((out / runfiles.RUN_META).read_text(encoding="utf-8"))
    if not (cfg.tracking.enabled and meta.get("mlflow_run_id")):
        return
    from tunesmith.track.experiment import MlflowTracker

    tracker = MlflowTracker(cfg, meta["run_name"])
    tracker.start(meta["mlflow_run_id"])
    try:
        tracker.log_final(numbers)
    finally:
        tracker.finish()


def _check_processes(nproc: int, launcher: Launcher | None) -> None:
    if nproc < 1:
        raise UsageError(f"--nproc must be 1 or more (got {nproc}).")
    if nproc > 1 and launcher is None:
        raise UsageError(
            f"training in {nproc} processes needs a launcher to start them.",
            hint="Pass launcher=tunesmith.cli.distributed.launch_train (what `tunesmith run "
            "--nproc` uses), or nproc=1.",
        )


def _train_step(
    cfg: Config, out: Path, *, resume: bool, nproc: int, progress: bool,
    log: Callable[[str], None], callbacks: Sequence[Any], launcher: Launcher | None,
    init_adapter: Path | None = None,
) -> TrainResult | None:
    """Train on ``out/data`` into ``out``: here, or in ``nproc`` processes started by
    ``launcher``."""
    if nproc == 1:
        return train(cfg, out / runfiles.DATA_DIR, out, resume=resume, progress=progress, log=log,
                     callbacks=callbacks, init_adapter=init_adapter)
    assert launcher is not None  # _check_processes
    if callbacks:
        raise UsageError("callbacks cannot follow training in other processes: use nproc=1.")
    # The processes read the run's config (with its run name) like `tunesmith train` does.
    save_config(cfg, out / runfiles.CONFIG)
    args = ["--resume", str(out)] if resume else [
        "--config", str(out / runfiles.CONFIG), "--data", str(out / runfiles.DATA_DIR), "--out", str(out)]
    log(f"training in {nproc} processes (process 0 reports here; the others log to "
        f"{out / runfiles.RANKS_DIR}/<k>/{runfiles.CONSOLE_LOG})")
    code = launcher([*args, *([] if progress else ["--no-progress"])], nproc)
    if code != 0:
        raise TunesmithError(
            f"training in {nproc} processes failed (exit code {code}); process 0's error is "
            f"above, the others' in {out / runfiles.RANKS_DIR}/<k>/{runfiles.CONSOLE_LOG}.",
            hint=f"Fix the cause, then continue with `tunesmith run --resume {out} --nproc {nproc}`.",
        )
    return None


def resume_run(
    run_dir: str | Path,
    *,
    nproc: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
    callbacks: Sequence[Any] = (),
    launcher: Launcher | None = None,
) -> RunResult:
    """Finish a `tunesmith run` that was stopped: training from its last checkpoint (or from
    the start when it had none yet), then evaluation, report and MLflow, as :func:`run` would.

    A run whose training had finished is only evaluated. Raises UsageError when ``run_dir`` is
    not a run folder whose data step finished (the run must then be started again).
    ``nproc`` and ``launcher`` as for :func:`run`.
    """
    _check_processes(nproc, launcher)
    out = Path(run_dir)
    data = out / runfiles.DATA_DIR
    if not (out / runfiles.CONFIG).is_file() or not (data / runfiles.split_file("train")).is_file():
        raise UsageError(
            f"{out} is not a run folder that `tunesmith run` got to train (config.yaml or "
            "data/train.jsonl is missing).",
            hint="Start the run again with `tunesmith run`; `--resume` takes a folder such as "
            "runs/<run-name> written by it.",
        )
    cfg = load_config(out / runfiles.CONFIG)
    run_meta = json.loads((out / runfiles.RUN_META).read_text(encoding="utf-8")) if (out / runfiles.RUN_META).is_file() else {}
    earlier = None
    if run_meta.get("continued_from"):  # a continued run resumes as one
        from tunesmith.pipelines.continual import earlier_run

        earlier, _ = earlier_run(Path(run_meta["continued_from"]).parent, cfg, log)
    metrics = out / runfiles.METRICS
    trained = metrics.is_file() and "train" in json.loads(metrics.read_text(encoding="utf-8"))
    training = None
    if trained and (out / runfiles.ADAPTER_DIR).is_dir():
        log(f"{out}: training had finished; evaluating")
    else:
        checkpoint = any((out / runfiles.CHECKPOINTS_DIR / d / "state.json").is_file() for d in ("last", "last.old"))
        log(f"{out}: resuming training from its last checkpoint" if checkpoint else
            f"{out}: no checkpoint was written yet; training from the start")
        training = _train_step(cfg, out, resume=checkpoint, nproc=nproc, progress=progress,
                               log=log, callbacks=callbacks, launcher=launcher,
                               init_adapter=earlier.adapter if earlier else None)
    evaluation = evaluate(out, log=log)
    manifest = data / runfiles.MANIFEST
    counts = json.loads(manifest.read_text(encoding="utf-8")).get("counts", {}) if manifest.is_file() else {}
    split_counts = {k: counts[k] for k in ("train", "val", "test") if k in counts}
    return _finish(out, cfg, training, evaluation, split_counts, earlier, log)
