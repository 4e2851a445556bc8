"""``tunesmith run|demo|train|evaluate|config show|runs``: the core commands.

Exit codes: 0 done; 1 bad data, unknown model or a failed run; 2 a bad config or command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config key, e.g. --set finetune.lora_r=16 (repeatable)")


def _add_nproc(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train in N processes (DDP via torchrun: one per GPU, or gloo on CPU)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    _add_set(p)
    p.add_argument("--out", help="the run folder (default runs/<run-name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="prepare data, finetune, evaluate against the baseline (one run folder)",
        description="Load and validate the data, remove duplicates, split 80/10/10, finetune, "
        "evaluate baseline and finetuned model on the test split, log to MLflow. Writes "
        "runs/<run-name>/ (or --out).",
    )
    run.add_argument("--config", help="params.yaml (default: the built-in defaults)")
    _add_run_options(run)
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="finish a stopped run: training from its last checkpoint, then "
                     "evaluation, report and MLflow (uses the run's own config.yaml)")
    run.add_argument("--continue-from", metavar="RUN_DIR",
                     help="continual learning: train this task starting from RUN_DIR's adapter "
                     "(same base model and method family), then score RUN_DIR's task before and "
                     "after (what was forgotten); --set prepare.replay_fraction=F replays that "
                     "fraction of RUN_DIR's training data")
    _add_nproc(run)
    run.set_defaults(handler=_run)

    multitask = commands.add_parser(
        "multitask", help="train one adapter on several tasks at once, scored per task",
        description="Prepare each task's data (its config's prepare section), draw one training "
        "set from all of them by task-balanced sampling, train one adapter (the first config's "
        "finetune section) on a causal LM, and score every task's test split with the base "
        "model and the adapter. Writes --out.",
    )
    multitask.add_argument("--task", action="append", default=[], metavar="NAME=CONFIG", required=True,
                           help="a task and its params.yaml, e.g. sentiment=examples/"
                           "sentiment-smollm2-instruct.yaml (repeat for each task)")
    multitask.add_argument("--sampling", choices=("proportional", "equal", "temperature"),
                           default="temperature",
                           help="each task's share of the training set: by its size, the same "
                           "for all, or size^(1/T) (default temperature)")
    multitask.add_argument("--temperature", type=float, default=2.0,
                           help="T of --sampling temperature, 1 or more (default 2)")
    multitask.add_argument("--records", type=int, metavar="N",
                           help="size of the training mixture (default: all tasks' training records)")
    _add_set(multitask)
    multitask.add_argument("--out", required=True, help="the run folder to write")
    multitask.add_argument("--no-progress", action="store_true", help="no progress bars")
    multitask.set_defaults(handler=_multitask)

    demo = commands.add_parser(
        "demo", help="finetune MiniLM on rotten-tomatoes with LoRA in minutes, against its baseline",
        description="The run command with a built-in preset sized for 2 CPU cores: "
        "rotten-tomatoes + MiniLM + LoRA. It says why its settings differ from the guide's.",
    )
    _add_run_options(demo)
    demo.add_argument("--show-config", action="store_true",
                      help="print the demo preset as YAML (usable with --config) and exit")
    demo.set_defaults(handler=_demo)

    train = commands.add_parser(
        "train", help="finetune on prepared split files (the DVC finetune stage)",
        description="Finetune on DIR/train.jsonl with DIR/val.jsonl for validation; writes the "
        "adapter, history, checkpoints and plots into --out.",
    )
    train.add_argument("--config", help="params.yaml (default: the built-in defaults, or the "
                       "resumed run's config.yaml)")
    _add_set(train)
    train.add_argument("--data", help="folder holding train.jsonl and val.jsonl (from `tunesmith data split`)")
    train.add_argument("--out", help="the run folder to write")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue RUN_DIR from its checkpoints/last (same result as not stopping)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    # Data-parallel training, see tunesmith.cli.distributed.
    _add_nproc(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate", help="score a trained run on its test split against the baseline",
        description="Scores the pretrained model (baseline) and the finetuned one on the test "
        "split; completes metrics.json, errors.jsonl and the confusion matrix.",
    )
    evaluate.add_argument("run_dir", help="a run folder written by `tunesmith train` or `run`")
    evaluate.add_argument("--data", help="folder holding train.jsonl and test.jsonl "
                          "(default: the data the run was trained on)")
    evaluate.add_argument("--test", help="a test file to score instead of DATA/test.jsonl")
    evaluate.set_defaults(handler=_evaluate)

    config = commands.add_parser("config", help="show the resolved config")
    sub = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    show = sub.add_parser("show", help="print the resolved config as YAML that --config accepts")
    show.add_argument("--config", help="params.yaml to resolve (default: the built-in defaults)")
    _add_set(show)
    show.set_defaults(handler=_config_show)

    runs = commands.add_parser("runs", help="list runs with their key metrics")
    runs.add_argument("--dir", default="runs", help="the folder holding run folders (default runs)")
    runs.set_defaults(handler=_runs)


def _quiet() -> None:
    """Our progress bars and tables only: no weight-loading bars, no MLflow/alembic INFO lines."""
    import logging
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic", "peft", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _render_result(
    task: str, metrics: dict[str, Any], out: Path, tracking_uri: str | None = None,
    outcome: Any = None,
) -> None:
    """The baseline vs finetuned table and where the outputs are."""
    from rich.console import Console
    from rich.table import Table

    from tunesmith import runfiles
    from tunesmith.evaluate.metric_plan import ordered, plan_of, verdict
    from tunesmith.evaluate.metrics import improved

    baseline, finetuned = metrics.get("baseline", {}), metrics.get("finetuned", {})
    delta = metrics.get("delta", {})
    kind = baseline.get("kind", "baseline")
    plan = plan_of(metrics)
    table = Table(title=f"{task} on the test split")
    table.add_column("metric")
    table.add_column(f"baseline ({kind})", justify="right")
    table.add_column("finetuned", justify="right")
    table.add_column("delta", justify="right")
    table.add_column("note")
    for key in ordered(plan, list(delta)) if plan else delta:
        change = delta[key]
        style = "green" if isinstance(change, float) and improved(key, change) else "red"
        note = plan.note(key) if plan else ""
        table.add_row(f"[bold]{key}[/bold]" if note == "headline" else key,
                      _fmt(baseline.get(key)), _fmt(finetuned.get(key)),
                      f"[{style}]{change:+.4f}[/{style}]" if isinstance(change, float) else "-",
                      note)
    if "majority_rate" in baseline:
        table.add_row("majority class", _fmt(baseline["majority_rate"]), "", "",
                      "always the commonest label")
    console = Console()
    console.print(table)
    if plan and plan.left_out:
        console.print("left out: " + "; ".join(f"{m} ({why})" for m, why in plan.left_out.items()))
    if outcome is not None and outcome.result != "won":
        # The baseline won or tied on the headline: say so plainly (with the diagnosis).
        for line in outcome.lines(f"baseline ({kind})", out):
            console.print(line, markup=False)
    else:
        sentence = verdict(plan, metrics) if plan else None
        if sentence:
            console.print(sentence)
    train = metrics.get("train", {})
    if train:
        console.print(
            f"trained {train.get('steps')} steps ({train.get('epochs_run')} epochs"
            f"{', stopped early' if train.get('stopped_early') else ''}) in "
            f"{train.get('train_seconds')} s: {train.get('samples_per_second')} samples/s, "
            f"{train.get('tokens_per_second')} tokens/s, peak memory "
            f"{train.get('peak_memory_mb')} MB, {train.get('trainable_params'):,} trainable "
            f"params ({train.get('trainable_percent')}%)"
        )
    written = [name + ("/" if (out / name).is_dir() else "")
               for name in (runfiles.REPORT_HTML, runfiles.METRICS, runfiles.HISTORY,
                            runfiles.ADAPTER_DIR, runfiles.PLOTS_DIR, runfiles.ERRORS, runfiles.SAMPLES)
               if (out / name).exists()]
    console.print(f"outputs: {out}/ ({', '.join(written)})")
    if tracking_uri:
        console.print(f"MLflow: `mlflow ui --backend-store-uri {tracking_uri}`"
                      if tracking_uri.startswith("sqlite") else f"MLflow: {tracking_uri}")


def _run(args: argparse.Namespace) -> int:
    _quiet()
    from tunesmith import runfiles
    from tunesmith.cli.distributed import launch_train
    from tunesmith.config import load_config
    from tunesmith.errors import UsageError
    from tunesmith.pipelines.run import resume_run, run

    if args.resume:
        if args.config or args.overrides or args.out or args.continue_from:
            raise UsageError("--resume continues a run with its own config.yaml in its own "
                             "folder: leave out --config, --set, --out and --continue-from.")
        result = resume_run(args.resume, nproc=args.nproc, progress=not args.no_progress, log=_err,
                            launcher=launch_train)
        cfg = load_config(result.run_dir / runfiles.CONFIG)
    else:
        cfg = load_config(args.config, args.overrides)
        result = run(cfg, out_dir=args.out, progress=not args.no_progress, log=_err,
                     nproc=args.nproc, launcher=launch_train, continue_from=args.continue_from)
    _render_result(result.task, result.metrics, result.run_dir, _tracking_uri(cfg),
                   result.outcome)
    if result.continual:
        _render_continual(result.continual)
    return 0


def _render_continual(continual: dict[str, Any]) -> None:
    """Task A's scores before and after this run trained on task B."""
    from rich.console import Console
    from rich.table import Table

    from tunesmith.report.sections import continual_lines

    table = Table(title=f"task A ({continual['task']}, {continual['from_run']}) on its test split")
    for column in ("metric", "before (A's adapter)", "after (this run)", "change"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, before in continual["before"].items():
        change = continual["delta"].get(key)
        table.add_row(f"[bold]{key}[/bold]" if key == continual["headline"] else key, _fmt(before),
                      _fmt(continual["after"].get(key)), f"{change:+.4f}" if change is not None else "-")
    console = Console()
    console.print(table)
    for line in continual_lines(continual):
        console.print(line, markup=False)


def _multitask(args: argparse.Namespace) -> int:
    _quiet()
    from rich.console import Console
    from rich.table import Table

    from tunesmith.config import load_config
    from tunesmith.errors import UsageError
    from tunesmith.pipelines.multitask import multitask_run

    tasks = {}
    for item in args.task:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--task expects NAME=CONFIG, got '{item}' (e.g. --task qa=examples/qa-smollm2-lora.yaml).")
        if name in tasks:
            raise UsageError(f"--task {name} is given twice: each task needs its own name.")
        tasks[name] = load_config(path, args.overrides)
    result = multitask_run(tasks, args.out, sampling=args.sampling, temperature=args.temperature,
                           total=args.records, progress=not args.no_progress, log=_err)
    drawn = result.metrics["sampling"]["drawn"]
    table = Table(title="multi-task adapter, per task on its test split")
    for column in ("task", "records trained", "metric", "base (zero-shot)", "multi-task", "delta"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for name, scores in result.metrics["tasks"].items():
        for i, (key, tuned) in enumerate(scores["finetuned"].items()):
            change = scores["delta"].get(key)
            table.add_row(name if i == 0 else "", str(drawn[name]) if i == 0 else "",
                          f"[bold]{key}[/bold]" if key == scores["headline"] else key,
                          _fmt(scores["baseline"].get(key)), _fmt(tuned),
                          f"{change:+.4f}" if change is not None else "-")
    Console().print(table)
    print(f"outputs: {result.run_dir}/ (metrics.json, history.jsonl, adapter/, tasks/<name>/data/)")
    return 0


def _tracking_uri(cfg: Any) -> str | None:
    return cfg.tracking.mlflow_uri if cfg.tracking.enabled else None


def _demo(args: argparse.Namespace) -> int:
    _quiet()
    from tunesmith.pipelines.run import DEMO_REASONS, demo_config, run

    cfg = demo_config(args.overrides)
    if args.show_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    _err("tunesmith demo: LoRA-finetune MiniLM on rotten-tomatoes and compare with its baseline.")
    _err("The demo departs from the guide's starting points:")
    flat = cfg.flat()
    for key, reason in DEMO_REASONS.items():
        _err(f"  {key} = {flat[key]}: {reason}")
    _err(f"  finetune.learning_rate = {flat['finetune.learning_rate']:g}, "
         f"finetune.lora_target_modules = {flat['finetune.lora_target_modules']}: not departures, "
         "what `tunesmith run` gives every classifier trained with LoRA (docs/core.md)")
    result = run(cfg, out_dir=args.out, progress=not args.no_progress, log=_err)
    _render_result(result.task, result.metrics, result.run_dir, _tracking_uri(cfg), result.outcome)
    return 0


def _train(args: argparse.Namespace) -> int:
    _quiet()
    from tunesmith.pipelines.train import train, train_inputs

    # Checked once here, before --nproc starts processes that would each fail on them.
    cfg, data, out = train_inputs(args.config, args.overrides, data=args.data, out=args.out,
                                  resume=args.resume, nproc=args.nproc)
    # --nproc N re-runs this command in N processes under torchrun (cli/distributed.py); each
    # of them comes back here without --nproc.
    if args.nproc != 1:
        from tunesmith.cli.distributed import launch_train, train_argv

        return launch_train(train_argv(args), args.nproc)
    result = train(cfg, data, out, resume=bool(args.resume), progress=not args.no_progress, log=_err)
    fit = result.fit
    best = f"best val {fit.best_metric} {fit.best_value:.4f} at step {fit.best_step}" if fit.best_value is not None else "no validation"
    print(f"trained {fit.steps} steps in {fit.train_seconds:.0f} s ({best}); adapter in {out}/adapter")
    if args.resume:
        print(f"next: `tunesmith evaluate {out}` scores it against the baseline "
              f"(`tunesmith run --resume {out}` resumes training and evaluates in one go)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    _quiet()
    from tunesmith.pipelines.evaluate import evaluate, read_run

    _, meta, cfg = read_run(args.run_dir)
    result = evaluate(args.run_dir, args.test, data_dir=args.data, log=_err)
    logged = _tracking_uri(cfg) if meta.get("mlflow_run_id") else None
    _render_result(result.metrics.get("task", ""), result.metrics, result.run_dir, logged)
    return 0


def _config_show(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.config import show_config

    sys.stdout.write(show_config(args.config, args.overrides))
    return 0


def _runs(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tunesmith.pipelines.config import list_runs

    runs = list_runs(args.dir)
    if not runs:
        print(f"no runs in {args.dir}/ yet: try `tunesmith demo`.")
        return 0
    table = Table(title=f"runs in {args.dir}/ (newest first)")
    for column in ("run", "task", "model", "method", "status", "metric", "baseline", "finetuned", "steps"):
        table.add_column(column, justify="right" if column in ("baseline", "finetuned", "steps") else "left")
    for r in runs:
        table.add_row(r.name, r.task, r.model, r.method, r.status, r.metric or "-",
                      _fmt(r.baseline), _fmt(r.finetuned), str(r.steps or "-"))
    Console().print(table)
    return 0
