"""The advisor's commands: ``estimate-memory``, ``advise``, ``lr-find``, ``should-finetune``,
``diagnose``. Each calls one function of :mod:`tunesmith.pipelines.advise` and renders it.

Exit codes: 0 success; 1 a problem with the data or a run (``diagnose`` also exits 1 when the
run is not healthy, so scripts can gate on it); 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

METHOD_CHOICES = ("full", "lora", "qlora", "adapter", "dora")


def register(commands: argparse._SubParsersAction) -> None:
    est = commands.add_parser(
        "estimate-memory", help="memory to finetune a model: weights, gradients, optimizer, activations",
        description="Estimate peak training memory, with the formula behind each line. The model "
        "is built on the meta device (nothing downloaded or allocated), so any size works. "
        "GB = 1e9 bytes, as in the guide.",
    )
    source = est.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a built-in name, a model folder or a config.json")
    source.add_argument("--params", type=float, help="a stand-in size, e.g. 7e9")
    est.add_argument("--layers", type=int, help="with --params: layers (needed for activations)")
    est.add_argument("--hidden", type=int, help="with --params: hidden size (needed for activations)")
    est.add_argument("--heads", type=int, help="with --params: attention heads (default hidden/64)")
    est.add_argument("--intermediate", type=int, help="with --params: feed-forward width (default 4 x hidden)")
    est.add_argument("--vocab", type=int, help="with --params: vocabulary (an LM's logits)")
    est.add_argument("--method", choices=METHOD_CHOICES, default="lora")
    est.add_argument("--batch-size", type=int, default=8, help="micro-batch (default 8)")
    est.add_argument("--max-length", type=int, default=512, help="tokens per example (default 512)")
    est.add_argument("--precision", choices=("fp32", "bf16", "mixed"), default="fp32")
    est.add_argument("--optimizer", choices=("adamw", "adamw-8bit", "sgd"), default="adamw")
    est.add_argument("--gradient-checkpointing", action="store_true")
    est.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default 8)")
    est.add_argument("--json", action="store_true", help="print JSON (weights_gb ... total_gb)")
    est.set_defaults(handler=_estimate_memory)

    diag = commands.add_parser(
        "diagnose", help="classify a run's curves (healthy, overfitting ...) and say what to change",
        description="Read RUN/history.jsonl, classify it as healthy, overfitting, overfitting from "
        "the start, underfitting, plateau or unstable with explicit numeric rules "
        "(docs/advise.md), and print the guide's remedies as new values from RUN/config.yaml. "
        "Exits 1 when the run is not healthy.",
    )
    diag.add_argument("run", help="a run folder (or its history.jsonl)")
    diag.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    diag.set_defaults(handler=_diagnose)


def _estimate_memory(args: argparse.Namespace) -> int:
    from tunesmith.advise.memory import format_bytes, human_params
    from tunesmith.pipelines.advise import estimate_memory

    est = estimate_memory(
        model=args.model, params=args.params, layers=args.layers, hidden=args.hidden,
        heads=args.heads, intermediate=args.intermediate, vocab=args.vocab, method=args.method,
        batch_size=args.batch_size, max_length=args.max_length, precision=args.precision,
        optimizer=args.optimizer, gradient_checkpointing=args.gradient_checkpointing,
        lora_r=args.lora_r,
    )
    if args.json:
        print(json.dumps(est.to_json(), indent=2))
        return 0
    shape = est.shape
    print(f"{shape.name}: {human_params(shape.total_params)} parameters ({shape.kind}), "
          f"{args.method}, {est.trainable_params:,} trainable; batch {est.batch_size} x "
          f"{est.max_length} tokens, {est.precision}, {est.optimizer}"
          + (", gradient checkpointing" if est.gradient_checkpointing else ""))
    _table([(p.key, format_bytes(p.bytes), p.formula) for p in est.parts]
           + [("total", format_bytes(est.total_bytes), "sum of the lines above")])
    for note in est.notes:
        print(f"note: {note}")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.advise import diagnose

    result = diagnose(args.run)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0 if result.healthy else 1
    if result.rows:
        _table([("step", "epoch", "train loss", "val loss")] + [
            (r.step, "" if r.epoch is None else f"{r.epoch:g}",
             "" if r.train_loss is None else f"{r.train_loss:.4f}", f"{r.val_loss:.4f}")
            for r in result.rows
        ])
    print(f"verdict: {result.summary()}")
    for finding in result.findings:
        if finding.evidence not in result.summary():
            print(f"  also {finding.pattern.replace('_', ' ')}: {finding.evidence}")
    for note in result.notes:
        print(f"note: {note}")
    if result.remedies:
        print("what to change (the guide's remedies):")
        for remedy in result.remedies:
            print(f"  - {remedy.render()}")
        if result.overrides():
            print("  as overrides: " + " ".join(f"--set {o}" for o in result.overrides()))
    return 0 if result.healthy else 1


def _table(rows: list[tuple[Any, ...]]) -> None:
    width = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], width, strict=False)]
        print("  " + "  ".join([*cells, str(row[-1])]))
