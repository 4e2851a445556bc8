"""``tunesmith predict|merge|compare-methods``: serve adapters, merge them, compare methods.

Exit codes: 0 done; 1 a failed load or run; 2 a bad command line or config.
"""

from __future__ import annotations

import argparse
import sys

from tunesmith.cli.run import _quiet  # the same quiet console as the run commands


def register(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", help="predict with one or more runs' adapters on one loaded base model",
        description="Loads the base model once and each run's adapter on it, then predicts every "
        "TEXT with each adapter (or only --adapter NAME). Adapters are named after their run "
        "folder, or NAME=RUN_DIR.",
    )
    predict.add_argument("--run", action="append", required=True, metavar="RUN",
                         help="a run folder (or NAME=RUN_DIR); repeat to load several adapters")
    predict.add_argument("--adapter", action="append", metavar="NAME",
                         help="predict with this adapter only (repeatable; default: all)")
    predict.add_argument("--max-new-tokens", type=int, default=64,
                         help="generation length for generative runs (default 64)")
    predict.add_argument("texts", nargs="+", metavar="TEXT", help="the texts to predict")
    predict.set_defaults(handler=_predict)

    merge = commands.add_parser(
        "merge", help="fold a run's LoRA/DoRA/QLoRA adapter into its base: one standalone model",
        description="Merges the adapter into the base weights (QLoRA: dequantised first), "
        "checks the merged model against base + adapter on a probe batch and saves it with its "
        "tokenizer to --out. Bottleneck adapters cannot be merged.",
    )
    merge.add_argument("run", help="a run folder (or its adapter/ folder)")
    merge.add_argument("--out", required=True, help="the folder for the merged model")
    merge.set_defaults(handler=_merge)

    compare = commands.add_parser(
        "compare-methods", help="train each method on the same data: the guide's comparison table",
        description="Prepares the data once, trains and evaluates each method on it (each in a "
        "fresh process), and prints the guide's Method Comparison Table with measured columns. "
        "Writes comparison.md, comparison.json and plots/comparison.png, and logs them to MLflow.",
    )
    compare.add_argument("--config", help="params.yaml (default: the built-in defaults)")
    compare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         dest="overrides", help="override a config key (repeatable)")
    compare.add_argument("--methods", default="full,lora,qlora,adapter,dora",
                         help="comma-separated methods (default full,lora,qlora,adapter,dora)")
    compare.add_argument("--lr", action="append", default=[], metavar="METHOD=LR",
                         help="learning rate for one method, e.g. --lr full=3e-5 (repeatable; "
                         "default finetune.learning_rate, full capped at 5e-5)")
    compare.add_argument("--out", help="the comparison folder (default runs/compare-...)")
    compare.add_argument("--no-progress", action="store_true", help="no progress bars")
    compare.set_defaults(handler=_compare)


def _predict(args: argparse.Namespace) -> int:
    _quiet()
    from rich.console import Console
    from rich.table import Table

    from tunesmith.pipelines.methods import predict

    predictions = predict(args.run, args.texts, args.adapter, max_new_tokens=args.max_new_tokens)
    table = Table(title="predictions")
    for column in ("adapter", "text", "prediction", "probability"):
        table.add_column(column, overflow="fold")
    for p in predictions:
        table.add_row(p.adapter, p.text, p.output, f"{p.score:.3f}" if p.score is not None else "")
    Console().print(table)
    return 0


def _merge(args: argparse.Namespace) -> int:
    _quiet()
    from tunesmith.pipelines.methods import merge

    result = merge(args.run, args.out)
    print(f"merged {result.method} adapter into the base: {result.out_dir}/ "
          f"({result.size_bytes / 1e6:.1f} MB, saved as {result.precision})")
    print(f"max |merged - unmerged| on the probe batch: {result.max_abs_diff:.2e}")
    print(f"load it with transformers' from_pretrained('{result.out_dir}'): no tunesmith or peft needed")
    return 0


def _parse_lrs(items: list[str]) -> dict[str, float]:
    from tunesmith.errors import UsageError

    out = {}
    for item in items:
        method, _, value = item.partition("=")
        try:
            out[method.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--lr expects METHOD=LR, e.g. full=3e-5; got '{item}'.") from None
    return out


def _compare(args: argparse.Namespace) -> int:
    _quiet()
    from rich.console import Console
    from rich.table import Table

    from tunesmith.config import load_config
    from tunesmith.pipelines.methods import compare_methods, parse_methods
    from tunesmith.report.method_comparison import relative_to_full

    cfg = load_config(args.config, args.overrides)
    result = compare_methods(
        cfg, parse_methods(args.methods), args.out, learning_rates=_parse_lrs(args.lr),
        progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr),
    )
    relative = relative_to_full(result.results, result.metric)
    table = Table(title=f"Method comparison (measured): test {result.metric}")
    for column in ("method", "lr", "params trained", "peak memory", "time/epoch",
                   f"test {result.metric}", "% of full"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for r in result.results:
        pct = relative[r.method]
        table.add_row(r.method, f"{r.learning_rate:g}",
                      f"{r.trainable_params:,} ({r.trainable_percent:.2f}%)",
                      f"{r.peak_memory_mb:,.0f} MB", f"{r.seconds_per_epoch:,.0f} s",
                      f"{r.metric:.4f}", f"{pct:.1f}%" if pct is not None else "n/a")
    console = Console()
    console.print(table)
    for method, message in result.failed.items():
        console.print(f"[red]{method} failed[/red]: {message}")
    console.print(f"written: {result.out_dir}/comparison.md, comparison.json, "
                  "plots/comparison.png; one run folder per method")
    return 0
