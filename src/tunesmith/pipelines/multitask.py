"""`tunesmith multitask`: one adapter trained on several tasks at once, scored per task.

``multitask_run(tasks, out_dir)`` takes one config per task (their ``prepare`` sections say
which data; the first one's ``finetune`` section trains the shared adapter), then:

1. prepares each task's data into ``out/tasks/<name>/data/`` (its own split, so its test
   split is the one a single-task run with the same config scores);
2. builds one training set of ``total`` records drawn from the tasks by task-balanced
   sampling (:mod:`tunesmith.train.mixing`: proportional, equal or temperature-scaled), every
   record as the chat messages it trains as, tagged with its task; validation is every
   task's val split together; both in ``out/data/``;
3. trains one adapter on it (:func:`tunesmith.pipelines.train.train`);
4. scores every task's test split with the base model (prompted zero-shot) and with the
   adapter, by that task's own metric plan and evaluation settings.

metrics.json holds ``train``, ``sampling`` (strategy, temperature, records available and
drawn per task) and ``tasks``: per task its ``task``, ``headline``, ``baseline``,
``finetuned`` and ``delta``. Only a causal LM can learn tasks of different formats in one
adapter, so the model must be one. Costs the tasks' preparation, one training and two
scorings per task (see :func:`tunesmith.pipelines.evaluate.score_task`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import runfiles
from tunesmith.config import Config
from tunesmith.errors import ConfigError, UsageError
from tunesmith.pipelines.evaluate import score_task
from tunesmith.pipelines.train import TrainResult, train, write_json
from tunesmith.train.mixing import Sampling

_TASK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")


@dataclass
class MultitaskResult:
    run_dir: Path
    metrics: dict[str, Any]  # metrics.json
    training: TrainResult


def _check(tasks: Mapping[str, Config]) -> str:
    """The shared model; raises UsageError/ConfigError for what cannot train together."""
    from tunesmith.train.causal import model_is_causal

    if len(tasks) < 2:
        raise UsageError(f"multi-task training needs two tasks or more (got {len(tasks)}).",
                         hint="Pass --task NAME=CONFIG once per task.")
    bad = [name for name in tasks if not _TASK_NAME.fullmatch(name)]
    if bad:
        raise UsageError(f"task name(s) {', '.join(map(repr, bad))}: a task name is a folder name of "
                         "letters, digits, '_' and '-' (e.g. sentiment).")
    models = {name: cfg.finetune.model for name, cfg in tasks.items()}
    model = next(iter(models.values()))
    if len(set(models.values())) > 1:
        raise ConfigError("the tasks' configs name different models ("
                          + ", ".join(f"{n}: {m}" for n, m in models.items())
                          + "); one adapter is trained on one base.",
                          hint=f"Set finetune.model: {model} in every task's config (or --set it).")
    if not model_is_causal(model):
        raise ConfigError(f"finetune.model '{model}' is not a causal LM: tasks of different formats "
                          "share one adapter only as chat messages, which needs a generative model.",
                          hint="Use a causal LM (e.g. smollm2-135m-instruct), or train one run per task.")
    return model


def multitask_run(
    tasks: Mapping[str, Config],
    out_dir: str | Path,
    *,
    sampling: Sampling = "temperature",
    temperature: float = 2.0,
    total: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> MultitaskResult:
    """Train one adapter on every task of ``tasks`` (name -> config) and score each task.

    ``total`` is the size of the training mixture (default: all tasks' training records
    together); ``sampling``/``temperature`` share it out (see :mod:`tunesmith.train.mixing`).
    Raises UsageError (fewer than two tasks, bad names, ``out_dir`` already a run),
    ConfigError (different or non-causal models, bad sampling), DataError for bad data.
    """
    from tunesmith.data.io import write_jsonl
    from tunesmith.pipelines.prepare import prepare_data
    from tunesmith.train.causal import training_task
    from tunesmith.train.mixing import as_chat, mixture, task_counts
    from tunesmith.train.prompts import CLASSIFICATION_AS_INSTRUCTION

    model = _check(tasks)
    out = Path(out_dir)
    if (out / runfiles.RUN_META).exists():
        raise UsageError(f"{out} already holds a run.", hint="Choose another --out or remove the folder.")
    prepared, kinds = {}, {}
    for name, cfg in tasks.items():
        log(f"task {name}: preparing {cfg.prepare.dataset} into {out / 'tasks' / name / 'data'}")
        prepared[name] = prepare_data(cfg.prepare, out / "tasks" / name / "data")
        kinds[name] = training_task(prepared[name].task, model)
    sizes = {name: len(p.train) for name, p in prepared.items()}
    counts = task_counts(sizes, total or sum(sizes.values()), sampling, temperature)
    log(f"task-balanced sampling ({sampling}" + (f", T={temperature:g}" if sampling == "temperature" else "")
        + "): " + ", ".join(f"{n} {counts[n]} of {sizes[n]}" for n in tasks))
    labels = {name: p.labels if kinds[name] == CLASSIFICATION_AS_INSTRUCTION else [] for name, p in prepared.items()}
    data = out / runfiles.DATA_DIR
    data.mkdir(parents=True, exist_ok=True)
    first = next(iter(tasks.values()))
    write_jsonl(mixture({n: (p.train, labels[n]) for n, p in prepared.items()}, counts,
                        seed=first.prepare.seed), data / runfiles.split_file("train"))
    write_jsonl([as_chat(r, n, labels[n]) for n, p in prepared.items() for r in p.val], data / runfiles.split_file("val"))
    sampling_info = {"strategy": sampling, **({"temperature": temperature} if sampling == "temperature" else {}),
                     "available": sizes, "drawn": counts}
    write_json(data / runfiles.MANIFEST, {"tasks": {n: p.data_sha256 for n, p in prepared.items()},
                                        "sampling": sampling_info})

    # One adapter for every task: the first config's training settings, prompts as long as
    # the longest task needs.
    shared = first.model_copy(update={"prepare": first.prepare.model_copy(update={
        "task": "chat", "max_length": max(c.prepare.max_length for c in tasks.values())})})
    training = train(shared, data, out, progress=progress, log=log)

    per_task: dict[str, Any] = {}
    for name, cfg in tasks.items():
        log(f"task {name}: scoring its test split with the base model (zero-shot) and the adapter")
        task_labels, method = labels[name] or None, shared.finetune.method
        task_data = out / "tasks" / name / "data"
        base = score_task(model, None, kinds[name], task_data, cfg, labels=task_labels, method=method)
        tuned = score_task(model, out / runfiles.ADAPTER_DIR, kinds[name], task_data, cfg,
                           labels=task_labels, method=method)
        per_task[name] = {"task": kinds[name], "dataset": cfg.prepare.dataset,
                          "headline": next(iter(tuned)), "baseline": {**base, "kind": "zero_shot"},
                          "finetuned": tuned,
                          "delta": {k: v - base[k] for k, v in tuned.items() if isinstance(base.get(k), (int, float))}}
    metrics_path = out / runfiles.METRICS
    metrics = {**json.loads(metrics_path.read_text(encoding="utf-8")), "task": "multitask",
               "sampling": sampling_info, "tasks": per_task}
    write_json(metrics_path, metrics)
    from tunesmith.pipelines.run import add_to_mlflow

    add_to_mlflow(out, shared, {"tasks": {n: {k: t[k] for k in ("baseline", "finetuned")}
                                          for n, t in per_task.items()}})
    return MultitaskResult(out, metrics, training)
