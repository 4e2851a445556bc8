"""`tunesmith init`, `stage ...`, `registry ...`, `report` and `runs compare`.

Handlers call one function of :mod:`tunesmith.pipelines` (init, registry, report) and render
its result; nothing heavy (mlflow, dvc) is imported at module level.
"""

from __future__ import annotations

import argparse


def _tracking_uri_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking and registry URI, e.g. http://127.0.0.1:5000 (default: "
        "$MLFLOW_TRACKING_URI, else tracking.mlflow_uri of ./params.yaml, else sqlite:///mlflow.db)",
    )


def register(commands: argparse._SubParsersAction) -> None:
    """Add this area's commands to the top-level parser."""
    init = commands.add_parser(
        "init", help="scaffold a git + DVC project with the guide's five-stage pipeline",
        description="Write params.yaml, dvc.yaml (data_ingestion -> data_preprocessing -> "
        "prepare_finetuning -> finetune_model -> evaluate_model), .gitignore and README.md; "
        "run `git init` and `dvc init` where needed. Then: commit, `dvc repro`.",
    )
    init.add_argument("directory", help="project folder (created when missing)")
    init.add_argument("--task", help="auto | instruction | classification | qa | chat")
    init.add_argument("--model", help="base model: a built-in name, a folder or a hub id")
    init.add_argument("--data", help="built-in dataset name or a data file (copied, `dvc add`ed)")
    init.add_argument("--force", action="store_true", help="rewrite an existing project's files")
    init.set_defaults(handler=_init)

    stage = commands.add_parser(
        "stage", help="one step of the DVC pipeline that `tunesmith init` writes",
        description="The data and evaluation steps that dvc.yaml runs; each reads params.yaml.",
    )
    stage.set_defaults(handler=lambda _args: _usage(stage))
    steps = stage.add_subparsers(dest="stage", metavar="STEP")
    # Every step reads --config (params.yaml) and takes its input and output folders as options.
    for name, help_text, folders, handler in (
        ("ingest", "raw dataset -> OUT (a built-in as JSONL)", ("--out",), _stage_ingest),
        ("preprocess", "validate + de-duplicate RAW -> OUT", ("--raw", "--out"), _stage_preprocess),
        ("split", "PROCESSED -> OUT/{train,val,test}.jsonl + manifest", ("--processed", "--out"),
         _stage_split),
        ("evaluate", "evaluate RUN on DATA -> METRICS, PLOTS, REPORTS",
         ("--run", "--data", "--metrics", "--plots", "--reports"), _stage_evaluate),
    ):
        step = steps.add_parser(name, help=help_text)
        step.add_argument("--config", required=True, help="the project's params.yaml")
        for folder in folders:
            step.add_argument(folder, required=True)
        step.set_defaults(handler=handler)

    registry = commands.add_parser(
        "registry", help="MLflow model registry: register a run, promote by alias, list",
        description="A registered version is an MLflow pyfunc model (base + adapter): "
        "mlflow.pyfunc.load_model('models:/NAME@production').predict([...]).",
    )
    registry.set_defaults(handler=lambda _args: _usage(registry))
    actions = registry.add_subparsers(dest="action", metavar="ACTION")
    reg = actions.add_parser("register", help="register RUN (run folder or MLflow run id)")
    reg.add_argument("run", metavar="RUN")
    reg.add_argument("--name", required=True, help="registered model name")
    _tracking_uri_arg(reg)
    reg.set_defaults(handler=_registry_register)
    prom = actions.add_parser("promote", help="point an alias of NAME at VERSION")
    prom.add_argument("name", metavar="NAME")
    prom.add_argument("version", metavar="VERSION", type=int)
    prom.add_argument("--alias", required=True, choices=("staging", "production"))
    _tracking_uri_arg(prom)
    prom.set_defaults(handler=_registry_promote)
    lst = actions.add_parser("list", help="registered models, versions, aliases, metrics")
    _tracking_uri_arg(lst)
    lst.set_defaults(handler=_registry_list)

    report = commands.add_parser(
        "report", help="write report.html (self-contained) and report.md for a run folder",
    )
    report.add_argument("run", metavar="RUN", help="run folder, e.g. runs/<name>")
    report.set_defaults(handler=_report)

    # `runs` (list) is the core command in cli/run.py, registered before this module (see
    # COMMAND_MODULES in cli/main.py); `compare` joins it as a sub-command so that `runs` is one
    # group in one place. Without it (another order), `runs compare` stands on its own.
    runs = commands.choices.get("runs")
    if runs is None:
        runs = commands.add_parser("runs", help="compare runs")
    add_runs_compare(runs.add_subparsers(dest="runs_action", metavar="ACTION"))


def _usage(parser: argparse.ArgumentParser) -> int:
    """A command group called without its sub-command: show what it offers (usage error)."""
    parser.print_help()
    return 2


def _init(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.init import init_project

    result = init_project(args.directory, task=args.task, model=args.model, data=args.data,
                          force=args.force)
    done = []
    if result.git_initialised:
        done.append("git init")
    if result.dvc_initialised:
        done.append("dvc init")
    if result.data_file:
        done.append(f"dvc add {result.data_file}")
    print(f"Scaffolded {result.root}: wrote {', '.join(result.written)}"
          + (f"; ran {', '.join(done)}" if done else "") + ".")
    print("Next:")
    print(f"  cd {args.directory}")
    print('  git add . && git commit -m "tunesmith project"')
    print("  dvc repro")
    return 0


def _stage_ingest(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.init import ingest

    path = ingest(args.config, args.out)
    print(f"data_ingestion: wrote {path}")
    return 0


def _stage_preprocess(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.init import preprocess

    summary = preprocess(args.config, args.raw, args.out)
    print(f"data_preprocessing: {summary.kept} records kept, {summary.rejected} rejected, "
          f"{summary.duplicates} duplicates removed -> {args.out}")
    return 0


def _stage_split(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.init import split

    counts = split(args.config, args.processed, args.out)
    print("prepare_finetuning: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f" -> {args.out}")
    return 0


def _stage_evaluate(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.init import evaluate

    written = evaluate(args.config, args.run, args.data, args.metrics, args.plots, args.reports)
    print("evaluate_model: wrote " + ", ".join(str(p) for p in written))
    return 0


def _registry_register(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.registry import register_run, resolve_tracking_uri

    info = register_run(args.run, args.name, tracking_uri=resolve_tracking_uri(args.tracking_uri))
    print(f"Registered {info.name} version {info.version} (MLflow run {info.run_id}).")
    print(f"Promote it: tunesmith registry promote {info.name} {info.version} --alias staging")
    return 0


def _registry_promote(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.registry import promote_version, resolve_tracking_uri

    info = promote_version(args.name, args.version, args.alias, tracking_uri=resolve_tracking_uri(args.tracking_uri))
    print(f"{info.name}@{args.alias} -> version {info.version}. Load it with "
          f"mlflow.pyfunc.load_model('models:/{info.name}@{args.alias}').")
    return 0


def _registry_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tunesmith.pipelines.registry import list_versions, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    versions = list_versions(tracking_uri=uri)
    if not versions:
        print(f"No registered models in {uri}.")
        return 0
    table = Table(title=f"Registered models ({uri})")
    for column in ("model", "version", "aliases", "metrics", "run"):
        table.add_column(column)
    for v in versions:
        metrics = ", ".join(f"{k} {val:.4f}" for k, val in v.metrics.items())
        table.add_row(v.name, str(v.version), ", ".join(v.aliases), metrics, v.run_id or "")
    Console().print(table)
    return 0


def _report(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.report import report

    paths = report(args.run)
    print(f"Wrote {paths.html} and {paths.md}")
    return 0


def add_runs_compare(runs_actions: argparse._SubParsersAction) -> None:
    """Add `compare` under the `runs` command group."""
    compare = runs_actions.add_parser(
        "compare", help="params that differ and metric deltas of two runs",
        description="RUN_A and RUN_B are run folders (runs/<name>, models/run) or MLflow run ids.",
    )
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    _tracking_uri_arg(compare)
    compare.set_defaults(handler=_runs_compare)


def _runs_compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tunesmith.pipelines.registry import compare_runs, resolve_tracking_uri

    result = compare_runs(args.run_a, args.run_b, tracking_uri=resolve_tracking_uri(args.tracking_uri))
    console = Console(width=max(100, Console().width))
    console.print(f"A: {result.a.label}\nB: {result.b.label}")
    if result.params:
        params = Table(title="Params that differ")
        for column in ("param", "A", "B"):
            params.add_column(column)
        for p in result.params:
            params.add_row(p.key, "-" if p.a is None else p.a, "-" if p.b is None else p.b)
        console.print(params)
    else:
        console.print("Same params.")
    metrics = Table(title="Metrics (delta = B - A)")
    for column in ("metric", "A", "B", "delta"):
        metrics.add_column(column, justify="left" if column == "metric" else "right")

    def show(value: float | None, sign: str = "") -> str:
        if value is None:
            return "-"
        # Counts (steps, parameters) read better whole; scores and rates with 4 decimals.
        if float(value).is_integer() and abs(value) >= 10:
            return f"{value:{sign}.0f}"
        return f"{value:{sign}.4f}"

    for m in result.metrics:
        metrics.add_row(m.key, show(m.a), show(m.b), show(m.delta, "+"))
    console.print(metrics)
    return 0
