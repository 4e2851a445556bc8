"""`tunesmith train`: finetune on prepared split files (the DVC ``finetune`` stage).

``train(cfg, data_dir, out_dir)`` reads ``train.jsonl`` and ``val.jsonl`` from ``data_dir``,
loads the model, applies the finetuning method, runs :func:`tunesmith.train.loop.fit` and
writes into ``out_dir``: config.yaml, run.json, history.jsonl, checkpoints/last/, adapter/,
plots/loss.png, plots/lr.png and metrics.json's ``train`` section (the evaluate stage adds the
rest).

Each task family plugs in through :data:`TASKS`: the labels its head needs and its training
plan (:mod:`tunesmith.train.classification`, :mod:`tunesmith.train.causal`): the encoded
records, the collate, the objective, the validation and the metric that picks the best
checkpoint. A family whose validation is its evaluation's scorer gets it from
:mod:`tunesmith.evaluate` here.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tunesmith import runfiles
from tunesmith.config import Config, classifier_defaults, save_config
from tunesmith.errors import ConfigError, DataError, UsageError
from tunesmith.evaluate.classification import with_validation
from tunesmith.records import Record
from tunesmith.train import causal
from tunesmith.train.classification import classification_labels, classification_plan
from tunesmith.train.plan import TaskPlan
from tunesmith.train.precision import cpu_autocast_note
from tunesmith.train.prompts import CLASSIFICATION_AS_INSTRUCTION, GENERATIVE_TASKS


@dataclass(frozen=True)
class TaskSpec:
    """A task family. ``labels`` sizes a classification head (None for generative tasks);
    ``plan`` encodes the splits for the loaded model; ``validation`` (plan, train records,
    config, pad id) -> plan, when set, adds the evaluation side's validation to the plan."""

    labels: Callable[[Sequence[Record]], list[str] | None]
    plan: Callable[[Any, Sequence[Record], Sequence[Record], Config], TaskPlan]
    validation: Callable[[TaskPlan, Sequence[Record], Config, int], TaskPlan] | None = None


# The dispatch point for task families: generative tasks add "instruction", "qa" and "chat".
TASKS: dict[str, TaskSpec] = {
    "classification": TaskSpec(labels=classification_labels, plan=classification_plan,
                               validation=with_validation),
}
# Causal-LM families, incl. classification records on a causal LM.
TASKS.update(dict.fromkeys(
    (*GENERATIVE_TASKS, CLASSIFICATION_AS_INSTRUCTION),
    TaskSpec(labels=causal.instruction_labels, plan=causal.causal_plan),
))


def task_spec(task: str) -> TaskSpec:
    if task not in TASKS:
        raise UsageError(
            f"training for '{task}' records is not available in this build "
            f"(available: {', '.join(TASKS)}).",
        )
    return TASKS[task]


@dataclass
class TrainResult:
    run_dir: Path
    task: str
    labels: list[str] | None
    fit: Any  # FitResult
    trainable_params: int
    trainable_percent: float
    notes: list[str]
    # Training records, replayed ones (data/replay.jsonl) included.
    train_records: int = 0


def read_split(data_dir: str | Path, split: str, task: str | None = None) -> list[Record]:
    """Records of ``<data_dir>/<split>.jsonl`` (the files ``tunesmith data split`` writes)."""
    from tunesmith.data.validate import read_records

    path = Path(data_dir) / runfiles.split_file(split)
    if not path.is_file():
        raise DataError(
            f"no {split} split in {data_dir}: {path.name} is missing.",
            hint="Prepare the data first: `tunesmith data split DATASET --out DIR` (or use "
            "`tunesmith run`, which prepares, trains and evaluates).",
        )
    return read_records(path, task=task)  # type: ignore[arg-type]


def read_replay(data_dir: str | Path) -> list[Record]:
    """The replayed records of ``data_dir/replay.jsonl`` ([] when there is none)."""
    from tunesmith.data.validate import read_records

    path = Path(data_dir) / runfiles.REPLAY
    return read_records(path) if path.is_file() else []


def data_sha256(data_dir: str | Path) -> str:
    """The prepared data's identity: the manifest's hash when `prepare` wrote one, else one
    hash over the split files present."""
    manifest = Path(data_dir) / runfiles.MANIFEST
    if manifest.is_file():
        recorded = json.loads(manifest.read_text(encoding="utf-8")).get("data_sha256")
        if recorded:
            return str(recorded)
    digest = hashlib.sha256()
    for split in runfiles.SPLITS:
        path = Path(data_dir) / runfiles.split_file(split)
        if path.is_file():
            digest.update(split.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Library versions and the hardware, recorded in run.json."""
    import accelerate
    import peft
    import torch
    import transformers

    hardware: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
    }
    if torch.cuda.is_available():
        hardware["gpu"] = torch.cuda.get_device_name(0)
    return {
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "accelerate": accelerate.__version__,
        },
        "hardware": hardware,
    }


def default_run_name(cfg: Config, task: str | None) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    model = Path(cfg.finetune.model).name.replace("/", "-")
    parts = [task] if task else []
    return "-".join([*parts, model, cfg.finetune.method, stamp])


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# Full finetuning's rate when the user sets none: the top of the guide's range for full (1e-5
# to 5e-5); the shared default 2e-4 is LoRA's.
FULL_DEFAULT_LR = 5e-5


def resolve_defaults(cfg: Config, max_length: int | None,
                     task: str | None = None) -> tuple[Config, list[str]]:
    """Fill in the settings the user left to tunesmith: the plan's max_length, full
    finetuning's learning rate, and a LoRA/QLoRA classifier's rate and target modules
    (:func:`~tunesmith.config.classifier_defaults`). Only keys the user did not set
    change. Returns the config to train and save, and a sentence per choice."""
    notes = []
    prepare, finetune = cfg.prepare, cfg.finetune
    if max_length is not None and max_length != prepare.max_length:
        prepare = prepare.model_copy(update={"max_length": max_length})
    if finetune.method == "full" and "learning_rate" not in finetune.model_fields_set:
        finetune = finetune.model_copy(update={"learning_rate": FULL_DEFAULT_LR})
        notes.append(f"learning_rate {FULL_DEFAULT_LR:g}: the guide's range for full finetuning "
                     "is 1e-5 to 5e-5 (the default 2e-4 is LoRA's); set finetune.learning_rate "
                     "to choose.")
    finetune, why = classifier_defaults(finetune, task)
    if why:
        notes.append(why)
    return cfg.model_copy(update={"prepare": prepare, "finetune": finetune}), notes


def train(
    cfg: Config,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    log: Callable[[str], None] = print,
    memory_budget_bytes: float | None = None,
    init_adapter: str | Path | None = None,
) -> TrainResult:
    """Finetune ``cfg.finetune.model`` on ``data_dir``'s train/val splits into ``out_dir``.

    ``resume=True`` continues from ``out_dir/checkpoints/last`` with the config saved there.
    ``init_adapter`` (an earlier run's adapter/ folder) makes training start from those
    weights instead of a fresh adapter (continual learning, see
    :func:`tunesmith.methods.continue_method`); records in ``data_dir/replay.jsonl`` join the
    training split (replay of the earlier task).
    ``memory_budget_bytes`` is the memory the preflight sizes the micro-batch for (None: what
    is free here). The config saved as config.yaml is the one that trains, after the preflight.
    Raises DataError (missing or bad split files), AssetError (unknown model), ConfigError.
    """
    from tunesmith.methods import apply_method, save_adapter, trainable_summary
    from tunesmith.models import load_model
    from tunesmith.report.plots import plot_loss, plot_lr
    from tunesmith.track.experiment import MlflowTracker
    from tunesmith.train.loop import fit
    from tunesmith.train.threads import cpu_threads

    out = Path(out_dir)
    task_hint = None if cfg.prepare.task == "auto" else cfg.prepare.task
    train_records = read_split(data_dir, "train", task_hint)
    val_records = read_split(data_dir, "val", task_hint) if (Path(data_dir) / runfiles.split_file("val")).is_file() else []
    # Classification records on a causal LM train as instructions.
    task = causal.training_task(train_records[0].task, cfg.finetune.model)
    if cfg.prepare.mix_general and task == "classification":
        raise ConfigError(
            f"prepare.mix_general ({cfg.prepare.mix_general:g}) mixes general text into a causal "
            f"LM's training, but {cfg.finetune.model} trains a classification head here: there "
            "is no language-modelling loss to take on general text.",
            hint="Set prepare.mix_general: 0, or finetune a causal LM (e.g. smollm2-135m-instruct).",
        )
    spec = task_spec(task)
    labels = spec.labels(train_records)
    replay = read_replay(data_dir)
    if replay:
        log(f"replaying {len(replay)} records of the earlier task beside {len(train_records)} "
            f"of this one ({Path(data_dir) / runfiles.REPLAY})")
        train_records = [*train_records, *replay]
    out.mkdir(parents=True, exist_ok=True)
    run_json_path = out / runfiles.RUN_META
    previous = json.loads(run_json_path.read_text()) if resume and run_json_path.is_file() else {}
    run_name = previous.get("run_name") or cfg.tracking.run_name or out.name

    log(f"loading {cfg.finetune.model} for {task}"
        + (f" ({len(labels)} labels: {', '.join(labels)})" if labels else ""))
    # Seed before the model is built, so a fresh classification
    # head and the LoRA matrices start alike in every run with this seed (and every process):
    # without it two runs, or a killed run and its uninterrupted twin, start from different
    # random weights.
    from transformers import set_seed

    set_seed(cfg.finetune.seed)
    loaded = load_model(
        cfg.finetune.model, task=task, labels=labels, load_in_4bit=cfg.finetune.method == "qlora",
        compute_dtype=cfg.finetune.qlora_compute_dtype if cfg.finetune.method == "qlora" else "float32",
    )
    plan = spec.plan(loaded, train_records, val_records, cfg)
    if spec.validation is not None:
        plan = spec.validation(plan, train_records, cfg, loaded.tokenizer.pad_token_id)
    for note in plan.notes:
        log(note)
    if plan.probe is not None:  # a classifier's baseline probe: the evaluation reuses it
        plan.probe.save(out / runfiles.PROBE)
    cfg, chosen = resolve_defaults(cfg, plan.max_length, task)
    for note in chosen:
        log(note)
    # If the memory estimate does not fit, a smaller micro-batch with more
    # accumulation (same effective batch); before apply_method, which reads gradient_checkpointing.
    from tunesmith.advise.preflight import check_memory

    memory_check = check_memory(cfg, loaded.model, seq_len=max(plan.train_data.lengths, default=None),
                                available_bytes=memory_budget_bytes, log=log)
    cfg = memory_check.cfg
    # Saved only now, with the preflight's changes: evaluate, MLflow's params and --resume all
    # read this one file, so they see the batch and accumulation that actually trained.
    save_config(cfg, out / runfiles.CONFIG)
    changed = memory_check.summary()
    if changed:
        log(f"config.yaml holds the preflight's changes: {changed} (why: run.json's preflight).")
    if init_adapter is not None:
        from tunesmith.methods import continue_method

        model = continue_method(loaded.model, init_adapter, cfg.finetune, task=task)
        log(f"training continues the adapter in {init_adapter} (its rank and targets are kept)")
    else:
        model = apply_method(loaded.model, cfg.finetune, task=task)
    summary = trainable_summary(model)
    log(f"{cfg.finetune.method}: {summary}")

    run_meta: dict[str, Any] = {
        "run_name": run_name,
        "task": task,
        "model": cfg.finetune.model,
        "method": cfg.finetune.method,
        **({"labels": labels} if labels else {}),
        **environment(),
        "git_commit": git_commit(),
        "data_sha256": data_sha256(data_dir),
        "data_dir": str(Path(data_dir).resolve()),
        **({"continued_from": str(Path(init_adapter).resolve())} if init_adapter is not None else {}),
    }
    # What the preflight changed and why; a resume that changes nothing keeps the first record.
    preflight = ({"changed": memory_check.changed, "why": memory_check.messages}
                 if memory_check.changed else previous.get("preflight"))
    if preflight:
        run_meta["preflight"] = preflight
    tracker = None
    if cfg.tracking.enabled:
        tracker = MlflowTracker(cfg, run_name)
        tracker.start(previous.get("mlflow_run_id") if resume else None)
        tracker.set_tags({"git_commit": run_meta["git_commit"] or "",
                          "data_sha256": run_meta["data_sha256"], "task": task,
                          **({"preflight": changed} if changed else {})})
        run_meta["mlflow_run_id"] = tracker.run_id
    write_json(run_json_path, run_meta)

    precision_note = cpu_autocast_note(cfg.finetune.precision)
    if precision_note:
        log(precision_note)
    status = "FAILED"
    memory_check.training_starts()  # after the tracker's start, which is not training's memory
    try:
        # On a CPU that other jobs share: torch's threads fitted to the free cores (threads.py).
        with cpu_threads(log) as threads:
            result = fit(
                model,
                plan.train_data,
                objective=plan.objective,
                cfg=cfg.finetune,
                pad_token_id=loaded.tokenizer.pad_token_id,
                evaluate=plan.evaluate,
                best_metric=plan.best_metric,
                out_dir=out,
                callbacks=[*callbacks, *([tracker] if tracker else [])],
                resume=resume,
                progress=progress,
                evaluate_first=plan.evaluate_first,
                collate=plan.collate,
            )
        saved = save_adapter(model, out / runfiles.ADAPTER_DIR, {"base_model": cfg.finetune.model, "task": task,
                                                      **({"labels": labels} if labels else {})})
        log(f"saved the trained weights ({cfg.finetune.method}) to {saved.path}: "
            f"{saved.size_bytes / 1e6:.2f} MB on disk")
        plot_loss(result.history, out / runfiles.PLOTS_DIR / runfiles.LOSS_PLOT)
        plot_lr(result.history, out / runfiles.PLOTS_DIR / runfiles.LR_PLOT)
        train_stats: dict[str, Any] = {
            "samples_per_second": round(result.samples_per_second, 2),
            "tokens_per_second": round(result.tokens_per_second, 1),
            "peak_memory_mb": round(result.peak_memory_mb, 1),
            **memory_check.record(result.peak_memory_mb),  # whole-run peak, estimates
            "trainable_params": summary.trainable,
            "trainable_percent": round(summary.percent, 4),
            "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early,
            "train_seconds": round(result.train_seconds, 1),
            # Time of one full pass over the train split at the measured throughput (also when
            # max_steps ended mid-epoch).
            "seconds_per_epoch": round(len(plan.train_data) / result.samples_per_second, 1)
            if result.samples_per_second else None,
            "steps": result.steps,
            # None: torch's own count (a GPU, or OMP_NUM_THREADS set by the user or launcher).
            "cpu_threads": threads,
            # What finetune.precision ran as here: fp32, or bf16/fp16 autocast.
            "precision": "fp32" if result.autocast == "no" else f"{result.autocast} autocast",
            "adapter_mb": round(saved.size_bytes / 1e6, 3),
        }
        packing = plan.packing
        if packing is not None:  # causal LMs: what packing saved (or would have), per epoch
            train_stats["packing"] = {
                "enabled": packing.enabled, "gain": round(packing.gain, 3), "rows": packing.rows,
                "tokens_unpacked": packing.tokens_unpacked, "tokens_packed": packing.tokens_packed,
            }
        write_json(out / runfiles.METRICS, {"task": task, "train": train_stats})
        if tracker:
            tracker.log_final({"train": train_stats})
        status = "FINISHED"
    finally:
        if tracker:
            tracker.finish(status)
    return TrainResult(out, task, labels, result, summary.trainable, summary.percent, plan.notes,
                       len(train_records))


def train_inputs(
    config: str | Path | None,
    overrides: list[str],
    *,
    data: str | None,
    out: str | None,
    resume: str | None,
    nproc: int = 1,
) -> tuple[Config, str, Path]:
    """Check `tunesmith train`'s arguments and resolve them: (config, data folder, run folder).

    Everything a launch in several processes would otherwise fail on in each of them is
    checked here first, in one process. ``resume`` is a run folder to continue (its
    config.yaml, and the data folder recorded in run.json, unless given). Raises UsageError
    (missing or contradicting arguments), ConfigError, DataError (no train split).
    """
    from tunesmith.config import load_config

    if nproc < 1:
        raise UsageError(f"--nproc must be 1 or more (got {nproc}).")
    if resume:
        run_dir = Path(resume)
        if not (run_dir / runfiles.CONFIG).is_file():
            raise UsageError(f"{run_dir} is not a run folder (config.yaml is missing).")
        cfg = load_config(config or run_dir / runfiles.CONFIG, overrides)
        meta_path = run_dir / runfiles.RUN_META
        recorded = json.loads(meta_path.read_text()).get("data_dir") if meta_path.is_file() else None
        data = data or recorded
        if out and Path(out) != run_dir:
            raise UsageError("--resume continues the run in its own folder: leave --out out.")
        out_dir = run_dir
    else:
        if not data or not out:
            raise UsageError("train needs --data DIR (train.jsonl, val.jsonl) and --out DIR.",
                             hint="Or `tunesmith run`, which prepares the data as well.")
        cfg = load_config(config, overrides)
        out_dir = Path(out)
    if not data:
        raise UsageError("where is the data? pass --data DIR.")
    if not (Path(data) / runfiles.split_file("train")).is_file():
        read_split(data, "train")  # raises the DataError that says what to do
    return cfg, str(data), out_dir
