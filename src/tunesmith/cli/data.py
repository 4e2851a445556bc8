"""``tunesmith data check|split|stats|convert|leakage``: look at data before training on it.

Exit codes: 0 the data is usable; 1 no usable records, rejects under ``--strict``, or (leakage)
shared inputs found; 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

TASK_CHOICES = ("auto", "instruction", "classification", "qa", "chat")


def _add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=TASK_CHOICES, default="auto",
                   help="the data's format (default: detected from the fields)")
    p.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                   help="read the guide's FIELD from your COLUMN, e.g. --map text=review (repeatable)")


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(
        "data", help="check, split, measure, convert data and find leakage between files",
        description="Look at data before training on it: every bad record is reported with its "
        "line and reason, duplicates and leakage are found, lengths are measured.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    check = sub.add_parser("check", help="validate a file; report rejects, duplicates, lengths, size advice")
    check.add_argument("dataset", help="a JSONL/JSON/CSV/TSV/Parquet file or a built-in dataset name")
    _add_source_options(check)
    check.add_argument("--strict", action="store_true", help="exit 1 if any record is rejected")
    check.add_argument("--near", action="store_true",
                       help="also find near-duplicates (MinHash/LSH; slower on huge files)")
    check.add_argument("--threshold", type=float, default=0.9, help="near-duplicate Jaccard threshold")
    check.add_argument("--model", help="count lengths in this model's tokens (default: words)")
    check.add_argument("--max-length", type=int, default=512, help="report the share longer than this")
    check.add_argument("--out", help="write rejects.jsonl and check.json into this folder")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=_check)

    split = sub.add_parser("split", help="validate, deduplicate and write train/val/test splits")
    split.add_argument("dataset", help="a JSONL/JSON/CSV/TSV/Parquet file or a built-in dataset name")
    split.add_argument("--out", required=True, help="folder for train/val/test.jsonl, rejects.jsonl, manifest.json")
    split.add_argument("--config", help="take the prepare section of this params.yaml (options below override it)")
    _add_source_options(split)
    split.add_argument("--strict", action="store_true", help="fail if any record is rejected")
    split.add_argument("--seed", type=int, help="random seed (default 42)")
    split.add_argument("--ratios", help="train,val,test fractions (default 0.8,0.1,0.1)")
    split.add_argument("--split", choices=("auto", "random", "stratified", "time", "group"),
                       help="auto: stratified by label for classification, random otherwise")
    split.add_argument("--time-field", help="split by this time field: train older than val older than test")
    split.add_argument("--group-field", help="keep each value of this field in one split")
    split.add_argument("--dedup", choices=("none", "exact", "near"), help="duplicates to remove first (default exact)")
    split.add_argument("--threshold", type=float, help="near-duplicate Jaccard threshold (default 0.9)")
    split.add_argument("--limit", type=int, help="use at most this many records (sampled with the seed)")
    split.set_defaults(handler=_split)

    stats = sub.add_parser("stats", help="token lengths, advised max_length, size advice, label balance")
    stats.add_argument("dataset", help="a data file or a built-in dataset name")
    _add_source_options(stats)
    stats.add_argument("--model", default="minilm", help="whose tokenizer counts the tokens (default minilm)")
    stats.add_argument("--max-length", type=int, default=512, help="report the share longer than this")
    stats.add_argument("--json", action="store_true", help="print the report as JSON")
    stats.set_defaults(handler=_stats)

    convert = sub.add_parser("convert", help="write any supported format as JSONL in the guide's fields")
    convert.add_argument("dataset", help="a data file or a built-in dataset name")
    convert.add_argument("output", help="the JSONL file to write (rejects go to OUTPUT.rejects.jsonl)")
    _add_source_options(convert)
    convert.add_argument("--strict", action="store_true", help="exit 1 if any record is rejected")
    convert.add_argument("--corrections", metavar="FILE",
                         help="apply label corrections from `tunesmith review` (relabel or drop records)")
    convert.set_defaults(handler=_convert)

    leakage = sub.add_parser("leakage", help="inputs of file B that are in file A (e.g. your train and test)")
    leakage.add_argument("a", help="the first file, e.g. train.jsonl")
    leakage.add_argument("b", help="the second file, e.g. test.jsonl")
    _add_source_options(leakage)
    leakage.add_argument("--exact-only", action="store_true", help="skip near-duplicates (faster)")
    leakage.add_argument("--threshold", type=float, default=0.9, help="near-duplicate Jaccard threshold")
    leakage.add_argument("--json", action="store_true", help="print the report as JSON")
    leakage.set_defaults(handler=_leakage)


# ---------------------------------------------------------------------------------------------


def _task(args: argparse.Namespace) -> str | None:
    return None if args.task == "auto" else args.task


def _column_map(args: argparse.Namespace) -> dict[str, str]:
    from tunesmith.data.detect import parse_column_map

    return parse_column_map(args.map)


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _table(title: str, *columns: str, text: int = 1) -> Any:
    """A table whose first ``text`` columns are left-aligned and the rest (numbers) right-aligned."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < text else "right")
    return table


def _render_summary(console: Any, summary: Any) -> None:
    table = _table(f"{summary.source} ({summary.format}, {summary.task or 'format unknown'})", "records", "count")
    table.add_row("read", str(summary.read))
    table.add_row("accepted", str(summary.accepted))
    table.add_row("rejected", str(summary.rejected))
    for reason, count in summary.reasons.most_common():
        table.add_row(f"  {reason}", str(count))
    for kind, count in summary.warnings.most_common():
        lines = summary.warning_lines.get(kind, [])
        shown = ", ".join(map(str, lines[:8])) + (" ..." if count > len(lines[:8]) else "")
        table.add_row(f"warning: {kind} (lines {shown})", str(count))
    console.print(table)


def _render_rejects(console: Any, rejects: list[Any], total: int) -> None:
    if not rejects:
        return
    table = _table(f"rejects (first {len(rejects)} of {total})", "reason", "field", "detail", "raw", "line", text=4)
    for r in rejects:
        raw = r.raw if len(r.raw) <= 60 else r.raw[:57] + "..."
        table.add_row(r.reason, r.field or "", r.detail, raw, str(r.line))
    console.print(table)


def _render_dedup(console: Any, dedup: Any) -> None:
    if dedup is None:
        return
    title = "duplicates" + (f" (near: Jaccard >= {dedup.threshold})" if dedup.threshold else " (exact, normalised)")
    table = _table(title, "kind", "count")
    table.add_row("exact", str(dedup.exact))
    if dedup.threshold:
        table.add_row("near", str(dedup.near))
    table.add_row("conflicting targets", str(dedup.conflicts))
    console.print(table)
    pairs = dedup.pairs or []
    if pairs:
        shown = _table("duplicate pairs (first 10)", "kind", "conflict", "line", "copy of line", "similarity", text=2)
        for p in pairs[:10]:
            conflict = " vs ".join(p.targets) if p.conflict and p.targets else ""
            shown.add_row(p.kind, conflict, str(p.line), str(p.duplicate_of), f"{p.similarity:.2f}")
        console.print(shown)


def _render_lengths(console: Any, report: Any) -> None:
    lengths = report.lengths
    if lengths:
        parts = [k for k in ("prompt", "response", "total") if k in lengths]
        table = _table(f"lengths in {report.length_unit}", "part", "p50", "p90", "p95", "p99", "max")
        for part in parts:
            d = lengths[part]
            table.add_row(part, *(str(int(d[k])) for k in ("p50", "p90", "p95", "p99", "max")))
        console.print(table)
        console.print(
            f"longer than max_length {lengths['max_length']}: {lengths['truncated']} "
            f"({lengths['truncated_share']:.1%}); advised max_length (p95, multiple of 8): "
            f"{lengths['advised_max_length']}"
            + ("" if report.length_unit != "words" else "  [words: use --model for tokens]")
        )
    size = report.size
    unique = report.summary.accepted - (report.dedup.removed if report.dedup else 0)
    console.print(f"size: {unique} usable examples ({size['band']}): {size['advice']}")
    if report.label_counts:
        table = _table("labels", "label", "count", "share")
        total = sum(report.label_counts.values())
        for label, count in sorted(report.label_counts.items(), key=lambda kv: -kv[1]):
            table.add_row(label, str(count), f"{count / total:.1%}")
        console.print(table)
        balance = report.balance
        console.print(
            f"majority rate {balance['majority_rate']:.1%} ('{balance['majority_label']}'); "
            + balance.get("advice", "labels are reasonably balanced")
        )


def _check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tunesmith import runfiles
    from tunesmith.pipelines.prepare import inspect_data

    rejects_path = None
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        rejects_path = Path(args.out) / runfiles.REJECTS
    report = inspect_data(
        args.dataset, task=_task(args), column_map=_column_map(args),
        dedup="near" if args.near else "exact", threshold=args.threshold, model=args.model,
        max_length=args.max_length, rejects_path=rejects_path,
    )
    if args.out:
        (Path(args.out) / "check.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        console = _console()
        _render_summary(console, report.summary)
        _render_rejects(console, report.rejects, report.summary.rejected)
        if report.summary.accepted:
            _render_dedup(console, report.dedup)
            _render_lengths(console, report)
    return _verdict(report.summary, args.strict)


def _verdict(summary: Any, strict: bool) -> int:
    from tunesmith.pipelines.prepare import no_records_error, reencode_hint, strict_error

    if not summary.accepted:
        err = no_records_error(summary)
    elif strict and summary.rejected:
        err = strict_error(summary, None)
    else:
        if summary.reasons.get("not valid UTF-8"):
            print(f"note: some rows are not valid UTF-8. {reencode_hint(summary.source)}",
                  file=sys.stderr)
        return 0
    print(f"error: {err.message}", file=sys.stderr)
    if err.hint:
        print(err.hint, file=sys.stderr)
    return 1


def _ratios(text: str) -> tuple[float, float, float]:
    from tunesmith.errors import UsageError

    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise UsageError(f"--ratios expects three numbers like 0.8,0.1,0.1, got '{text}'.")
    return parts


def _split(args: argparse.Namespace) -> int:
    from tunesmith.config import PrepareConfig, load_config, validate_config
    from tunesmith.errors import UsageError
    from tunesmith.pipelines.prepare import prepare_data

    base = load_config(args.config).prepare if args.config else PrepareConfig()
    values = base.model_dump()
    values["dataset"] = args.dataset
    if args.task != "auto":
        values["task"] = args.task
    if args.map:
        values["column_map"] = {**values["column_map"], **_column_map(args)}
    if args.ratios:
        values["train_ratio"], values["val_ratio"], values["test_ratio"] = _ratios(args.ratios)
    if args.time_field:
        values.update(time_field=args.time_field, split=args.split or "time")
    if args.group_field:
        values.update(group_field=args.group_field, split=args.split or "group")
    for option, key in (("split", "split"), ("seed", "seed"), ("dedup", "dedup"),
                        ("threshold", "near_duplicate_threshold"), ("limit", "limit")):
        if getattr(args, option) is not None:
            values[key] = getattr(args, option)
    for method, field in (("time", "time_field"), ("group", "group_field")):
        if values["split"] == method and not values[field]:
            raise UsageError(f"--split {method} needs --{field.replace('_', '-')} (the field holding the {method}).")
    cfg = validate_config({"prepare": values}, source="data split options").prepare
    command = "tunesmith " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    prepared = prepare_data(cfg, args.out, strict=args.strict, command=command)
    _render_prepared(prepared)
    return 0


def _render_prepared(prepared: Any) -> None:
    m = prepared.manifest
    console = _console()
    counts = m["counts"]
    table = _table(f"{m['source']['dataset']} -> {prepared.out_dir} ({m['task']}, {m['split']['method']} split, seed {m['split']['seed']})", "step", "records")
    for key in ("read", "accepted", "rejected", "duplicates_removed", "used", "train", "val", "test"):
        table.add_row(key.replace("_", " "), str(counts[key]))
    console.print(table)
    for reason, count in m["rejects_by_reason"].items():
        console.print(f"  rejected, {reason}: {count}")
    if m["duplicates"]["conflicts"]:
        console.print(f"  {m['duplicates']['conflicts']} duplicates had conflicting targets (see manifest.json)")
    if m["label_distribution"]:
        labels = m["labels"]
        dist = _table("label distribution", "split", *labels)
        for name, counts_ in m["label_distribution"].items():
            dist.add_row(name, *(str(counts_.get(label, 0)) for label in labels))
        console.print(dist)
    for key in ("train", "val", "test"):
        if key in m["split"] and isinstance(m["split"][key], list) and m["split"][key]:
            console.print(f"  {key}: {m['split']['time_field']} from {m['split'][key][0]} to {m['split'][key][1]}")
    overlap = m["overlap_check"]
    console.print(
        f"overlap between splits after writing ({overlap['method']}): "
        + ", ".join(f"{k} {v}" for k, v in overlap.items() if "-" in k)
        + (": none, as required" if overlap["passed"] else ": LEAKAGE between splits")
    )
    console.print(f"wrote train.jsonl val.jsonl test.jsonl rejects.jsonl manifest.json to {prepared.out_dir}")


def _stats(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.prepare import inspect_data

    report = inspect_data(
        args.dataset, task=_task(args), column_map=_column_map(args), dedup="none",
        model=args.model, max_length=args.max_length,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        console = _console()
        console.print(f"{report.summary.source}: {report.summary.accepted} records ({report.task}); "
                      f"{report.summary.rejected} rejected (see `tunesmith data check`)")
        if report.summary.accepted:
            _render_lengths(console, report)
    return _verdict(report.summary, False)


def _convert(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.prepare import CORRECTION_DROPPED, CORRECTION_RELABELLED, convert_data

    summary, rejects = convert_data(args.dataset, args.output, task=_task(args), column_map=_column_map(args),
                                    corrections=args.corrections)
    console = _console()
    dropped = summary.warnings[CORRECTION_DROPPED]
    console.print(f"wrote {summary.accepted - dropped} {summary.task or ''} records to {args.output}")
    if args.corrections:
        console.print(f"corrections: {summary.warnings[CORRECTION_RELABELLED]} relabelled, {dropped} dropped")
    if rejects:
        reasons = ", ".join(f"{n} {r}" for r, n in summary.reasons.most_common())
        console.print(f"rejected {summary.rejected} ({reasons}): see {rejects}")
    return _verdict(summary, args.strict)


def _leakage(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.prepare import leakage_between

    result = leakage_between(
        args.a, args.b, task=_task(args), column_map=_column_map(args),
        near=not args.exact_only, threshold=args.threshold,
    )
    report = result.report
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, **report.to_dict()}, indent=2))
    else:
        console = _console()
        kinds = "exact" if args.exact_only else f"exact or near (Jaccard >= {args.threshold})"
        console.print(f"{report.checked_b} records of {args.b} checked against "
                      f"{result.summary_a.accepted} of {args.a} ({kinds})")
        for name, summary in ((args.a, result.summary_a), (args.b, result.summary_b)):
            if summary.rejected:
                console.print(f"  {summary.rejected} bad records of {name} skipped (see `tunesmith data check {name}`)")
        if report.total:
            table = _table(
                f"{report.total} leaked ({report.exact} exact, {report.near} near); first 20",
                "kind", f"line in {args.a}", f"line in {args.b}", "similarity",
            )
            for leak in (report.leaks or [])[:20]:
                table.add_row(leak.kind, str(leak.line_a), str(leak.line_b), f"{leak.similarity:.2f}")
            console.print(table)
        else:
            console.print("no shared inputs: no leakage found")
    return 1 if report.total else 0
