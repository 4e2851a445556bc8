"""The advisor's commands: ``estimate-memory``, ``advise``, ``lr-find``, ``should-finetune``,
``diagnose``. Each calls one function of :mod:`tunesmith.pipelines.advise` and renders it.

Exit codes: 0 success; 1 a problem with the data or a run (``diagnose`` also exits 1 when the
run is not healthy, so scripts can gate on it); 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

# config.METHODS (the CLI imports only the standard library at module level; a test keeps them equal)
METHOD_CHOICES = ("full", "lora", "qlora", "adapter", "dora", "lora_plus")


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
    # Unset flags take the config's values (--config, else the built-in defaults).
    est.add_argument("--config", help="params.yaml whose method, batch, length, rank ... to use "
                     "(default: the built-in defaults)")
    est.add_argument("--method", choices=METHOD_CHOICES, help="default: finetune.method")
    est.add_argument("--batch-size", type=int, help="micro-batch (default: finetune.batch_size)")
    est.add_argument("--max-length", type=int,
                     help="tokens per example (default: prepare.max_length)")
    est.add_argument("--precision", choices=("fp32", "bf16", "mixed"),
                     help="default: finetune.precision's rule (auto: fp32 on cpu, mixed on cuda)")
    est.add_argument("--optimizer", choices=("adamw", "adamw-8bit", "sgd"),
                     help="default: adamw, the training loop's")
    est.add_argument("--gradient-checkpointing", action="store_true", default=None,
                     help="default: finetune.gradient_checkpointing")
    est.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                     help="where it trains (default cuda); on cpu the whole-run estimate adds "
                     "this machine's fixed cost and allocator slack")
    est.add_argument("--lora-r", type=int, help="LoRA rank (default: finetune.lora_r)")
    est.add_argument("--freeze-layers", type=int,
                     help="the lowest N blocks do not train (full: frozen with the embeddings; "
                     "LoRA family: no LoRA there); default: finetune.freeze_layers")
    est.add_argument("--json", action="store_true", help="print JSON (weights_gb ... total_gb)")
    est.set_defaults(handler=_estimate_memory)

    adv = commands.add_parser(
        "advise", help="a training plan from the guide's decision trees, sized to your memory",
        description="Walk the guide's decision trees (method, LoRA rank, learning rate, epochs, "
        "batch and accumulation, warmup, max_length) for this model, data size and memory; "
        "print each choice with its reason; --write saves a params.yaml for `tunesmith run`.",
    )
    adv.add_argument("--model", required=True, help="a built-in name, a model folder or a config.json")
    adv.add_argument("--examples", type=int, help="how many examples you have (default: counted in --data)")
    adv.add_argument("--memory", type=float, help="GB training may use (default: free GPU memory or available RAM)")
    adv.add_argument("--data", help="your data file or a built-in dataset: counts, task, max_length")
    adv.add_argument("--tasks", type=int, default=1, help="how many tasks you finetune for (default 1)")
    adv.add_argument("--domain-shift", choices=("low", "high"), default="low",
                     help="how far the task is from pretraining (default low)")
    adv.add_argument("--write", metavar="PARAMS_YAML", help="write the plan as a params.yaml")
    adv.add_argument("--probe", action="store_true",
                     help="measure the learning rate with lr-find on --data and use it")
    adv.add_argument("--json", action="store_true", help="print the plan as JSON")
    adv.set_defaults(handler=_advise)

    lrf = commands.add_parser(
        "lr-find", help="measure a learning rate: a short range test, plotted, with a suggestion",
        description="Train a fresh copy of the model for about 100 steps while the learning rate "
        "rises exponentially, stop when the loss diverges, plot loss against learning rate "
        "(OUT/lr_find.png) and suggest a value with its reason.",
    )
    lrf.add_argument("--config", required=True, help="params.yaml (data, model, method, batch)")
    lrf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set prepare.limit=2000")
    lrf.add_argument("--steps", type=int, default=100, help="steps of the test (default 100)")
    lrf.add_argument("--start-lr", type=float, default=1e-6)
    lrf.add_argument("--end-lr", type=float, default=1.0)
    lrf.add_argument("--out", default="lr_find", help="folder for lr_find.png/json (default ./lr_find)")
    lrf.add_argument("--json", action="store_true", help="print the result as JSON")
    lrf.set_defaults(handler=_lr_find)

    should = commands.add_parser(
        "should-finetune", help="measure what prompting already achieves, then the guide's questions",
        description="Measure the model without training on a sample of the validation split "
        "(zero-shot and few-shot prompting for instruct models; a frozen-feature probe for "
        "encoders) and walk the guide's 'Should You Finetune?' questions with that answer in Q1.",
    )
    should.add_argument("--data", required=True, help="your data file or a built-in dataset")
    should.add_argument("--model", required=True, help="a built-in name or a model folder")
    should.add_argument("--sample", type=int, default=50, help="validation examples to score (default 50)")
    should.add_argument("--few-shot", type=int, default=3, help="examples in the few-shot prompt (default 3)")
    should.add_argument("--target", type=float,
                        help="the score prompting must reach (default 0.9 accuracy, 0.5 rougeL/token F1)")
    for flag, question in (("--cheaper-inference", "Q3: do you need faster or cheaper inference?"),
                           ("--specialised-domain", "Q4: is your domain very specialised?"),
                           ("--fixed-format", "Q5: do you need a consistent output format?")):
        should.add_argument(flag, choices=("yes", "no"), help=question)
    should.add_argument("--json", action="store_true", help="print the answer as JSON")
    should.set_defaults(handler=_should_finetune)

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

    run = estimate_memory(
        model=args.model, params=args.params, layers=args.layers, hidden=args.hidden,
        heads=args.heads, intermediate=args.intermediate, vocab=args.vocab, device=args.device,
        config=args.config,
        settings={"method": args.method, "batch_size": args.batch_size,
                  "max_length": args.max_length, "precision": args.precision,
                  "optimizer": args.optimizer, "gradient_checkpointing": args.gradient_checkpointing,
                  "lora_r": args.lora_r, "freeze_layers": args.freeze_layers},
    )
    est = run.train
    if args.json:
        print(json.dumps(run.to_json(), indent=2))
        return 0
    shape = est.shape
    print(f"{shape.name}: {human_params(shape.total_params)} parameters ({shape.kind}), "
          f"{est.method}, {est.trainable_params:,} trainable; batch {est.batch_size} x "
          f"{est.max_length} tokens, {est.precision}, {est.optimizer}"
          + (", gradient checkpointing" if est.gradient_checkpointing else ""))
    _table([(p.key, format_bytes(p.bytes), p.formula) for p in est.parts]
           + [("total", format_bytes(est.total_bytes),
               "peak: weights + optimizer + the larger of gradients and activations (gradients "
               "grow as activations are freed)" if est.part("activations") else
               "sum of the lines above")])
    if est.part("activations"):
        print(f"  (the guide adds every line: {format_bytes(est.sum_bytes)}, an upper bound)")
    if run.measured_parts:
        print(f"whole run (what `tunesmith run` peaks at on this machine): "
              f"{format_bytes(run.total_bytes)}")
        _table([(key, format_bytes(value), run.formulas[key])
                for key, value in run.measured_parts.items()])
        print(f"largest terms at the peak: {run.dominant(3)}")
    for note in [*est.notes, *run.notes]:
        print(f"note: {note}")
    return 0


def _advise(args: argparse.Namespace) -> int:
    from tunesmith.advise.memory import format_bytes
    from tunesmith.pipelines.advise import advise

    plan = advise(
        model=args.model, examples=args.examples, memory_gb=args.memory, data=args.data,
        tasks=args.tasks, domain_shift=args.domain_shift, write=args.write, probe=args.probe,
    )
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    for note in plan.notes:
        print(f"note: {note}")
    _table([(c.key.split(".")[-1], c.value, c.reason) for c in plan.choices])
    est = plan.estimate
    print(f"estimated peak: {format_bytes(est.total_bytes)} of {plan.memory_gb:.1f} GB "
          f"(weights {format_bytes(est.parts[0].bytes)}, activations "
          f"{format_bytes(est.part('activations').bytes) if est.part('activations') else '?'})")
    if args.write:
        print(f"wrote {args.write}: run it with `tunesmith run --config {args.write}`")
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.pipelines.advise import lr_find

    cfg = load_config(args.config, args.set)
    result = lr_find(cfg, out_dir=args.out, steps=args.steps, start_lr=args.start_lr,
                     end_lr=args.end_lr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"suggested learning rate: {result.suggestion:.1e}")
    print(f"  why: {result.reason}")
    print(f"  config has {cfg.finetune.learning_rate:g}; use it with "
          f"--set finetune.learning_rate={result.suggestion:.1e}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"plot: {result.plot}")
    return 0


def _should_finetune(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.advise import should_finetune

    def flag(value: str | None) -> bool | None:
        return None if value is None else value == "yes"

    advice = should_finetune(
        data=args.data, model=args.model, sample=args.sample, few_shot_k=args.few_shot,
        target=args.target, cheaper_inference=flag(args.cheaper_inference),
        specialised_domain=flag(args.specialised_domain), fixed_format=flag(args.fixed_format),
    )
    if args.json:
        print(json.dumps(advice.to_dict(), indent=2))
        return 0
    for answer in advice.answers:
        print(f"{answer.question} {answer.answer}: {answer.detail}")
    print(f"verdict: {advice.verdict.replace('_', ' ')}: {advice.reason}")
    for note in advice.notes:
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
