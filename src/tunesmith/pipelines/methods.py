"""`tunesmith predict`, `tunesmith merge` and `tunesmith compare-methods`.

- :func:`predict`: load one base and the adapters of one or more runs, predict with each.
- :func:`merge`: fold a run's LoRA/DoRA/QLoRA adapter into its base, save a standalone model.
- :func:`compare_methods`: prepare the data once, train and evaluate each method on it (each in
  a fresh process, so peak memory is that method's own), and write the guide's Method Comparison
  Table with measured columns to ``comparison.md``, ``comparison.json``,
  ``plots/comparison.png`` and MLflow.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tunesmith import runfiles
from tunesmith.config import METHODS, Config, check_method_rules, classifier_defaults
from tunesmith.errors import ConfigError, TunesmithError, UsageError

# Guide: full finetuning wants 1e-5 to 5e-5; a LoRA-sized rate would wreck the pretrained weights.
FULL_LR_CEILING = 5e-5


def predict(runs: Sequence[str | Path], texts: Sequence[str], adapters: Sequence[str] | None = None,
            *, max_new_tokens: int = 64) -> list[Any]:
    """Predictions of every text with each adapter in ``adapters`` (default: all of them).

    ``runs`` are run folders (or adapter folders); each adapter is named after its run folder,
    or ``NAME=PATH`` names it explicitly. Returns :class:`tunesmith.serve.predict.Prediction`s.
    """
    from tunesmith.serve.predict import AdapterServer

    if not texts:
        raise UsageError("no text to predict.", hint="Pass one or more texts after the options.")
    names = [r.split("=", 1)[0] if isinstance(r, str) and "=" in r else None for r in runs]
    paths = [r.split("=", 1)[1] if isinstance(r, str) and "=" in r else r for r in runs]
    given = [n for n in names if n is not None]
    server = AdapterServer.from_paths(paths, given if len(given) == len(names) else None)
    chosen = list(adapters) if adapters else list(server.adapters)
    unknown = [a for a in chosen if a not in server.adapters]
    if unknown:
        raise UsageError(f"no adapter named {', '.join(unknown)}.",
                         hint="Loaded: " + ", ".join(server.adapters))
    out = []
    for name in chosen:
        out.extend(server.predict(texts, name, max_new_tokens=max_new_tokens))
    return out


def merge(run: str | Path, out_dir: str | Path) -> Any:
    """Merge run ``run``'s adapter into its base; returns a :class:`~tunesmith.serve.merge.MergeResult`."""
    from tunesmith.serve.merge import merge_adapter_dir
    from tunesmith.serve.predict import adapter_dir

    return merge_adapter_dir(adapter_dir(run), out_dir)


@dataclass
class CompareResult:
    out_dir: Path
    metric: str
    results: list[Any]  # MethodResult per method that ran, in the order asked
    markdown: str
    failed: dict[str, str]  # method -> error message


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ConfigError(f"--methods: unknown method(s) {', '.join(bad) or '(none given)'}.",
                          hint="Choose from: " + ", ".join(METHODS))
    return list(dict.fromkeys(methods))


def method_learning_rate(cfg: Config, method: str, overrides: dict[str, float]) -> float:
    if method in overrides:
        return overrides[method]
    if method == "full":
        return min(cfg.finetune.learning_rate, FULL_LR_CEILING)
    return cfg.finetune.learning_rate


def _metric_for(metrics: dict[str, Any]) -> str:
    """The metric the table compares: the run's metric-plan headline (macro F1 for imbalanced
    labels, token F1 for QA ...). Runs evaluated before plans existed: accuracy, else perplexity
    (measured on the whole test split)."""
    from tunesmith.evaluate.metric_plan import plan_of

    plan = plan_of(metrics)
    finetuned = metrics["finetuned"]
    if plan is not None and plan.headline in finetuned:
        return plan.headline
    return next(m for m in ("accuracy", "perplexity", "token_f1", "rougeL", "loss") if m in finetuned)


def _prepare_once(cfg: Config, data_dir: Path, log: Callable[[str], None]) -> tuple[str, int, int]:
    """Prepare the data unless ``data_dir`` holds data prepared with the same settings.

    Returns the task and the train and test counts.
    """
    from tunesmith.pipelines.prepare import prepare_data

    manifest = data_dir / runfiles.MANIFEST
    if manifest.is_file():
        info = json.loads(manifest.read_text(encoding="utf-8"))
        if info.get("config") == cfg.prepare.model_dump(mode="json"):
            log(f"reusing the data prepared in {data_dir} (same prepare settings)")
            return info["task"], info["counts"]["train"], info["counts"]["test"]
    log(f"preparing {cfg.prepare.dataset} once into {data_dir}")
    prepared = prepare_data(cfg.prepare, data_dir)
    return prepared.task, len(prepared.train), len(prepared.test)


def _finished_run(run_dir: Path, cfg: Config) -> dict[str, Any] | None:
    """metrics.json of a run in ``run_dir`` evaluated with the same finetune settings, else None.

    This makes an interrupted comparison resumable: rerunning the command skips what is done.
    """
    from tunesmith.config import load_config

    metrics_path, config_path = run_dir / runfiles.METRICS, run_dir / runfiles.CONFIG
    if not (metrics_path.is_file() and config_path.is_file()):
        return None
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    if "finetuned" not in metrics or load_config(config_path).finetune != cfg.finetune:
        return None
    return metrics


def _train_and_evaluate(cfg: Config, data_dir: Path, run_dir: Path, progress: bool) -> dict[str, Any]:
    from tunesmith.pipelines.evaluate import evaluate
    from tunesmith.pipelines.train import train

    train(cfg, data_dir, run_dir, progress=progress)
    return evaluate(run_dir).metrics


def _in_fresh_process(*args: Any) -> dict[str, Any]:
    # A new process per method: RSS never shrinks back within one, so a later method would
    # inherit an earlier one's peak memory.
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_train_and_evaluate, args)


def compare_methods(
    cfg: Config,
    methods: Sequence[str],
    out_dir: str | Path | None = None,
    *,
    learning_rates: dict[str, float] | None = None,
    fresh_process: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> CompareResult:
    """Train and evaluate each of ``methods`` on the same prepared data; tabulate.

    Each method runs as ``cfg`` with ``finetune.method`` set and its learning rate from
    ``learning_rates``, else ``finetune.learning_rate`` (full: at most 5e-5, the guide's range).
    ``fresh_process=False`` runs in this process (tests; peak memory is then cumulative).
    Writes ``<out>/<method>/`` run folders and the table files; raises UsageError when ``out``
    already holds a comparison.
    """
    from tunesmith.pipelines.train import write_json
    from tunesmith.report.method_comparison import (
        MethodResult,
        comparison_markdown,
        plot_comparison,
        results_json,
    )

    overrides = dict(learning_rates or {})
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = cfg.tracking.run_name or f"compare-{Path(cfg.prepare.dataset).stem}-{Path(cfg.finetune.model).name}-{stamp}"
    out = Path(out_dir) if out_dir is not None else Path("runs") / name
    task, n_train, n_test = _prepare_once(cfg, out / runfiles.DATA_DIR, log)
    log(f"{task}: {n_train} train, {n_test} test; methods: {', '.join(methods)}")

    results: list[MethodResult] = []
    failed: dict[str, str] = {}
    metric = headline_why = ""
    for method in methods:
        # What `tunesmith run` would train for this method and task (a LoRA classifier's rate
        # and targets, where the user left them), so the table and the reuse check below
        # compare the settings that train.
        chosen, _ = classifier_defaults(cfg.finetune.model_copy(update={"method": method}), task)
        lr = method_learning_rate(cfg.model_copy(update={"finetune": chosen}), method, overrides)
        tracking = cfg.tracking.model_copy(update={"run_name": f"{name}-{method}"})
        finetune = chosen.model_copy(update={"learning_rate": lr})
        method_cfg = cfg.model_copy(update={"finetune": finetune, "tracking": tracking})
        log(f"--- {method} (learning rate {lr:g}) ---")
        run_dir = out / method
        args = (method_cfg, out / runfiles.DATA_DIR, run_dir, progress)
        try:
            check_method_rules(finetune)  # before any model loads: model_copy skips validation
            metrics = _finished_run(run_dir, method_cfg)
            if metrics is not None:
                log(f"reusing the finished {method} run in {run_dir} (same settings)")
            else:
                if run_dir.exists():  # an interrupted or differently configured attempt
                    shutil.rmtree(run_dir)
                metrics = _in_fresh_process(*args) if fresh_process else _train_and_evaluate(*args)
        except TunesmithError as exc:
            # One method that cannot run here (say, a model QLoRA cannot quantise) should not
            # cost the others' results: it is reported and left out of the table.
            failed[method] = str(exc)
            log(f"{method} failed: {exc}")
            continue
        if not metric:
            metric = _metric_for(metrics)
            plan = metrics.get("plan") or {}
            if plan.get("why"):
                log(f"comparing on {metric}: {plan['why']}")
                headline_why = plan["why"]
        results.append(MethodResult.from_metrics(method, lr, metrics, metric, n_train, run_dir))
    if not results:
        raise UsageError("every method failed:\n" + "\n".join(f"  {m}: {e}" for m, e in failed.items()))

    f = cfg.finetune
    settings = (
        f"Measured by `tunesmith compare-methods` on {cfg.prepare.dataset} "
        f"({n_train} train / {n_test} test examples), model {f.model}, "
        f"batch {f.batch_size} x {f.gradient_accumulation_steps}, "
        + (f"max_steps {f.max_steps}" if f.max_steps else f"{f.num_epochs} epoch(s)")
        + f", LoRA r {f.lora_r}, adapter {f.adapter_type}/{f.adapter_reduction_factor}. "
        "Peak memory is the training process's RSS on CPU (max allocated on CUDA); time per epoch "
        "is train examples / measured throughput."
        + (f" Test {metric} is the metric plan's headline: {headline_why}." if headline_why else "")
    )
    if failed:
        settings += "\n\nFailed: " + "; ".join(f"{m}: {e.splitlines()[0]}" for m, e in failed.items())
    markdown = comparison_markdown(results, metric, settings)
    (out / "comparison.md").write_text(markdown, encoding="utf-8")
    write_json(out / "comparison.json", {**results_json(results, metric), "failed": failed})
    plot_comparison(results, metric, out / runfiles.PLOTS_DIR / "comparison.png")
    if cfg.tracking.enabled:
        _log_comparison(cfg, name, out, results, metric)
    return CompareResult(out, metric, results, markdown, failed)


def _log_comparison(cfg: Config, name: str, out: Path, results: Sequence[Any], metric: str) -> None:
    """One MLflow run for the table: a metric per method and column, and the files."""
    import mlflow

    from tunesmith.track.experiment import MlflowTracker

    tracker = MlflowTracker(cfg, name)
    tracker.start()
    try:
        values = {}
        for r in results:
            values.update({f"{r.method}_trainable_percent": r.trainable_percent,
                           f"{r.method}_peak_memory_mb": r.peak_memory_mb,
                           f"{r.method}_seconds_per_epoch": r.seconds_per_epoch,
                           f"{r.method}_test_{metric}": r.metric})
        mlflow.log_metrics(values)
        for path in (out / "comparison.md", out / "comparison.json", out / runfiles.PLOTS_DIR / "comparison.png"):
            mlflow.log_artifact(str(path))
        tracker.set_tags({"kind": "compare-methods"})
    finally:
        tracker.finish()
