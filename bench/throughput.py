"""Side by side: the guide's plain Trainer + PEFT script (a), tunesmith's defaults (b) and, on
the chat case, TRL's SFTTrainer (c).

    python bench/throughput.py                        # both cases, 2 rounds, sides a, b (+ c on chat)
    python bench/throughput.py --cases minilm-rotten-tomatoes --rounds 1
    python bench/throughput.py --cases smollm2-chitchat --sides plain tunesmith trl-best trl-defaults
    python bench/throughput.py --sides tunesmith tunesmith+compile   # one speed idea against (b)

For each case every side trains the same model on the same examples with the same
hyperparameters, seed and number of optimizer steps. Runs alternate a, b, c, a, b, c ... each
in its own subprocess (a fresh process: clean peak-memory figures, nothing cached between
runs), so whatever else the machine is doing hits every side alike. Per run it records:

- real tokens/s: non-padding tokens of the trained batches / seconds of the training loop
  (model loading, tokenizing and validation excluded on every side), and the same per second
  of the process's CPU time, which other jobs on a shared machine disturb much less;
- samples/s: training examples per second;
- peak memory: the process's resident-set high-water mark (``ru_maxrss``) at the end of
  training: model load and training included, the final validation excluded;
- final validation loss, computed for every side by one function
  (``plain_trainer.validation_loss``: mean cross-entropy per example for classification, per
  response token for chat) on the trained weights, so the losses are comparable.

The sides (``--sides``):
- ``plain``: bench/plain_trainer.py, the guide's Trainer + PEFT script (a);
- ``tunesmith``: `tunesmith train` with its defaults, as a library call (b);
- ``trl-best`` / ``trl-fp32`` / ``trl-defaults`` (chat case only): bench/trl_sft.py, TRL's
  SFTTrainer at its best CPU setting (bf16 autocast on a CPU with AMX, no activation
  checkpointing) / the same in fp32 / with SFTConfig's defaults (c). TRL is a bench-only extra:
  ``pip install -c constraints.txt -e ".[bench]"``. ``trl-defaults`` runs bf16 autocast and activation
  checkpointing (issue 17 saw about 7 real tokens/s), so it trains ``--trl-defaults-steps`` steps only;
- ``tunesmith+IDEA``: side (b) with one speed idea applied, to measure it against (b) in the
  same interleaved run (``IDEAS`` below: ``compile``, ``threads1``, ``threads-torch``,
  ``bf16``, ``micro-half``).

For each case it prints the medians over rounds and the ratios of tunesmith over each other
side against the goals: at least 1.5x the plain script's real tokens/s, validation loss within
2% and peak memory at most 0.8x of it; at least 2x TRL's best setting's real tokens/s at no
more than 0.7x its peak memory (issue 17).

Results go to bench/results/throughput.json (with the machine, the load average and library
versions).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# The two cases of the benchmark: same hyperparameters on both sides. Sizes keep one run to a
# few minutes on 2 shared cores; the steps stay within one epoch so both sides train on
# examples they have not seen yet and (b) evaluates once, at the end.
CASES: dict[str, dict] = {
    "minilm-rotten-tomatoes": {
        "task": "classification",
        "model": "minilm",
        "dataset": "rotten-tomatoes",
        "train": 640,
        "val": 160,
        "steps": 30,
        "batch_size": 16,
        # RESOURCES.md: the guide's 2e-4 barely moves a fresh head in this budget; 2e-3 learns.
        "learning_rate": 2e-3,
        "max_length": 512,
    },
    "smollm2-chitchat": {
        "task": "chat",
        "model": "smollm2-135m-instruct",
        "dataset": "chitchat",
        "train": 64,
        "val": 32,
        "steps": 10,
        "batch_size": 4,
        "learning_rate": 2e-4,
        "max_length": 256,
    },
}
# lora_target_modules: the plain script's LoRA is on query/value; since issue #19 a tunesmith
# classifier left to its defaults trains every linear layer, so it is pinned to compare like
# with like.
SHARED = {"seed": 42, "warmup_ratio": 0.1, "weight_decay": 0.01, "lora_r": 8,
          "lora_alpha": 16, "lora_dropout": 0.05, "lora_target_modules": "attention"}
GOALS = {"real_tokens_per_second": 1.5, "val_loss_within": 0.02, "peak_rss_mb": 0.8}
# tunesmith against TRL's SFTTrainer at its best CPU setting (issue 17).
GOALS_TRL = {"real_tokens_per_second": 2.0, "peak_rss_mb": 0.7}
TRL_SIDES = ("trl-best", "trl-fp32", "trl-defaults")
# Speed ideas measured as side (b) with one change: what each does inside the run.
IDEAS = {
    "compile": "torch.compile of the model (inductor, CPU), compile time counted in the loop",
    "threads1": "torch.set_num_threads(1) instead of torch's default (one per core)",
    "threads-torch": "torch's own thread count (one per core; OMP_NUM_THREADS set to it), i.e. "
                     "without tunesmith's fitting of the threads to the free cores",
    "bf16": "finetune.precision=bf16: bf16 autocast on the CPU (oneDNN runs bf16 matmuls on AMX "
            "where the CPU has it) instead of the CPU default fp32",
    "frozen-fp32": "the frozen linear weights kept in fp32 under bf16 autocast (cast to bf16 on "
                   "every forward pass), as before train.precision.FrozenWeightsInBf16: "
                   "(b) against it shows what holding them in bf16 pays",
    "torch-dropout": "torch.nn.Dropout's own bernoulli_ masks instead of tunesmith's CPU dropout "
                     "(train.dropout.CpuDropout, uniform draws): (b) against it shows what the "
                     "swap pays",
    "micro-half": "micro-batches of half the batch with 2 accumulation steps (same effective step): "
                  "(b) against it shows what the larger micro-batch pays",
}


def prepare_case(name: str, work: Path) -> dict:
    """Write the case's train/val files (the guide's JSONL) and find the model folder."""
    from tunesmith.assets import load_builtin_records
    from tunesmith.models.loader import resolve_model_path

    case = CASES[name]
    data = work / name / "data"
    data.mkdir(parents=True, exist_ok=True)
    records = load_builtin_records(case["dataset"], limit=case["train"] + case["val"], seed=SHARED["seed"])
    for split, part in (("train", records[: case["train"]]), ("val", records[case["train"]:])):
        with (data / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for record in part:
                fh.write(json.dumps(record.to_dict(with_meta=False)) + "\n")
    model_dir, _ = resolve_model_path(case["model"])  # converts the SmolLM2 GGUF once
    return {"data": str(data), "model_dir": model_dir}


def peer_arguments(case: dict, paths: dict, out: Path, steps: int) -> list[str]:
    """The options of a peer script (``plain_trainer.add_training_arguments``) for ``case``."""
    return [
        "--model-dir", paths["model_dir"], "--data", paths["data"], "--out", str(out),
        "--max-steps", str(steps), "--batch-size", str(case["batch_size"]),
        "--learning-rate", str(case["learning_rate"]), "--max-length", str(case["max_length"]),
        "--warmup-ratio", str(SHARED["warmup_ratio"]), "--weight-decay", str(SHARED["weight_decay"]),
        "--lora-r", str(SHARED["lora_r"]), "--lora-alpha", str(SHARED["lora_alpha"]),
        "--lora-dropout", str(SHARED["lora_dropout"]), "--seed", str(SHARED["seed"]),
    ]


def run_plain(name: str, paths: dict, out: Path) -> dict:
    case = CASES[name]
    command = [
        sys.executable, str(HERE / "plain_trainer.py"),
        "--task", "classification" if case["task"] == "classification" else "chat",
        *peer_arguments(case, paths, out, case["steps"]),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "result.json").read_text())


def run_trl(name: str, paths: dict, out: Path, setting: str, steps: int) -> dict:
    case = CASES[name]
    command = [
        sys.executable, str(HERE / "trl_sft.py"), "--setting", setting,
        *peer_arguments(case, paths, out, steps),
        # TRL's best CPU setting includes threads fitted to the free cores, as tunesmith's are.
        *(["--fit-threads"] if setting == "best" else []),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "result.json").read_text())


def run_tunesmith(name: str, paths: dict, out: Path, idea: str | None = None) -> dict:
    command = [sys.executable, str(HERE / "throughput.py"), "--side-b", name, "--steps",
               str(CASES[name]["steps"]), "--data", paths["data"], "--out", str(out),
               *(["--idea", idea] if idea else [])]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "result.json").read_text())


def runner_for(side: str, trl_defaults_steps: int):
    """The function that runs one side once: (case name, paths, out folder) -> result."""
    if side == "plain":
        return run_plain
    if side == "tunesmith":
        return run_tunesmith
    if side in TRL_SIDES:
        setting = side.removeprefix("trl-")

        def trl(name: str, paths: dict, out: Path) -> dict:
            steps = CASES[name]["steps"]
            return run_trl(name, paths, out, setting,
                           min(steps, trl_defaults_steps) if setting == "defaults" else steps)

        return trl
    idea = side.removeprefix("tunesmith+")

    def with_idea(name: str, paths: dict, out: Path) -> dict:
        return run_tunesmith(name, paths, out, idea)

    return with_idea


def apply_idea(idea: str | None, overrides: list[str], case: dict) -> None:
    """Set up one speed idea in this process (side b's); ``overrides`` gains config changes."""
    if idea is None:
        return
    import torch

    if idea == "threads1":
        torch.set_num_threads(1)
    elif idea == "threads-torch":
        # The user's own choice: tunesmith.train.threads leaves the count alone.
        os.environ["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    elif idea == "bf16":
        overrides.append("finetune.precision=bf16")
    elif idea == "frozen-fp32":
        import tunesmith.train.precision as precision

        class KeepFp32:  # holds nothing, restores nothing
            def __init__(self, model) -> None:
                pass

            def restore(self) -> None:
                pass

        precision.FrozenWeightsInBf16 = KeepFp32  # type: ignore[misc,assignment]
    elif idea == "torch-dropout":
        import contextlib

        import tunesmith.train.dropout as dropout

        dropout.cpu_dropout = lambda model: contextlib.nullcontext(0)  # type: ignore[assignment]
    elif idea == "micro-half":
        overrides += [f"finetune.batch_size={case['batch_size'] // 2}",
                      "finetune.gradient_accumulation_steps=2"]
    elif idea == "compile":
        import tunesmith.train.loop as loop

        plain_fit = loop.fit

        def compiled_fit(model, *args, **kwargs):
            model.compile()  # in place: the module's forward runs through torch.compile
            return plain_fit(model, *args, **kwargs)

        loop.fit = compiled_fit
    else:
        raise SystemExit(f"unknown idea {idea!r}: one of {', '.join(IDEAS)}")


class CollateTimer:
    """Times the collate function the training loop is given (side b's process only)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def installed(self):
        import tunesmith.train.loop as loop

        inner_fit = loop.fit

        def timed_fit(*args, collate, **kwargs):
            def timed(examples, pad_token_id):
                started = time.perf_counter()
                try:
                    return collate(examples, pad_token_id)
                finally:
                    self.seconds += time.perf_counter() - started

            return inner_fit(*args, collate=timed, **kwargs)

        loop.fit = timed_fit
        try:
            yield self
        finally:
            loop.fit = inner_fit


def tunesmith_side(name: str, data: Path, out: Path, idea: str | None = None) -> dict:
    """Side (b), inside its own process: `tunesmith train` with its defaults as a library call
    (with ``idea``, one speed idea of ``IDEAS`` applied)."""
    import resource

    import torch
    from plain_trainer import (
        current_rss_mb,
        encode_chat,
        encode_classification,
        model_shape,
        read_jsonl,
        validation_loss,
    )
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding

    from tunesmith.config import load_config
    from tunesmith.methods import load_adapter
    from tunesmith.models import load_model
    from tunesmith.pipelines.train import train
    from tunesmith.train.loop import Callback

    class Measure(Callback):
        """Resident memory and CPU time just before the first forward pass; CPU time again
        when the last step is logged (before the final validation)."""

        rss_at_start_mb: float | None = None
        # (step, wall clock, real tokens) at each micro-batch: the rate after the first
        # steps, which a compiled model pays its compilation in.
        marks: list[tuple[int, float, int]] = []

        def on_micro_batch(self, step, batch):
            if self.rss_at_start_mb is None:
                self.rss_at_start_mb = current_rss_mb()
                self.cpu_started = time.process_time()
            self.marks.append((step, time.perf_counter(), int(batch["attention_mask"].sum())))

        def on_log(self, record):
            if record["step"] == case["steps"]:
                self.ended = time.perf_counter()
                self.cpu_seconds = time.process_time() - self.cpu_started
                # Side (a) reads its peak at the same point: training done, nothing else yet.
                self.peak_at_last_step_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    case = CASES[name]
    overrides = [
        f"finetune.model={case['model']}",
        f"finetune.max_steps={case['steps']}",
        f"finetune.batch_size={case['batch_size']}",
        f"finetune.learning_rate={case['learning_rate']}",
        f"prepare.max_length={case['max_length']}",
        *(f"finetune.{k}={v}" for k, v in SHARED.items()),
        # Measured: training. MLflow logging is on by default but is not what is compared here.
        "tracking.enabled=false",
    ]
    apply_idea(idea, overrides, case)
    cfg = load_config(None, overrides)
    measure = Measure()
    collate_timer = CollateTimer()
    with collate_timer.installed():
        result = train(cfg, data, out / "run", progress=False, log=lambda _: None,
                       callbacks=[measure])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fit = result.fit

    # The common validation loss: base model + the adapter tunesmith saved, scored by the same
    # function as side (a).
    loaded = load_model(case["model"], task=result.task, labels=result.labels)
    model = load_adapter(loaded.model, out / "run" / "adapter")
    tokenizer = loaded.tokenizer
    val_rows = read_jsonl(data / "val.jsonl")
    if case["task"] == "classification":
        label2id = {label: i for i, label in enumerate(result.labels)}
        val_set = encode_classification(val_rows, tokenizer, label2id, case["max_length"])
        collator = DataCollatorWithPadding(tokenizer)
    else:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        val_set = [encode_chat(r["messages"], tokenizer, case["max_length"]) for r in val_rows]
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    own_val = [h for h in fit.history if h["kind"] == "eval"]
    train_metrics = json.loads((out / "run" / "metrics.json").read_text())["train"]
    skip = min(3, case["steps"] - 1)  # steady state: from the first micro-batch of step `skip`
    later = [(t, n) for step, t, n in measure.marks if step >= skip]
    steady = sum(n for _, n in later) / (measure.ended - later[0][0]) if later else None
    samples = fit.samples_per_second * fit.train_seconds
    real = fit.tokens_per_second * fit.train_seconds
    return {
        "side": "tunesmith" + (f"+{idea}" if idea else ""),
        "idea": IDEAS.get(idea or ""),
        "real_tokens_per_second_after_step_3": steady,
        # Seconds spent building tensors from the tokenized examples inside the loop: all that
        # moving the collator off the critical path (DataLoader workers) could save.
        "collate_seconds": collate_timer.seconds,
        "train_seconds": fit.train_seconds,
        "steps": fit.steps,
        "samples": round(samples),
        "real_tokens": round(real),
        "real_tokens_per_second": fit.tokens_per_second,
        "samples_per_second": fit.samples_per_second,
        "train_cpu_seconds": measure.cpu_seconds,
        "real_tokens_per_cpu_second": real / measure.cpu_seconds,
        "mean_sequence_tokens": real / max(samples, 1),
        "val_loss": validation_loss(model, val_set, collator),
        "own_val_loss": own_val[-1]["val_loss"] if own_val else None,
        "peak_rss_mb": peak,
        "peak_above_start_mb": peak - measure.rss_at_start_mb,
        "peak_rss_at_last_step_mb": measure.peak_at_last_step_mb,
        "loop_peak_memory_mb": fit.peak_memory_mb,
        "threads": train_metrics.get("cpu_threads") or torch.get_num_threads(),
        # fp32, or "bf16 autocast" (the default on a CPU with AMX-BF16).
        "precision": train_metrics.get("precision", "fp32"),
        # The reloaded model is frozen (inference): the trainable count comes from the run.
        "model_shape": model_shape(model) | {"trainable_params": result.trainable_params},
        "notes": result.notes,
    }


def collected_runs(case_dir: Path, sides: list[str]) -> dict[str, list[dict]]:
    """The results of the rounds in which every side finished, in round order."""
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for round_ in range(100):
        files = [case_dir / f"{side}-{round_}" / "result.json" for side in sides]
        if not all(f.is_file() for f in files):
            break
        for side, f in zip(sides, files, strict=True):
            runs[side].append(json.loads(f.read_text()))
    return runs


def summarise(runs: list[dict]) -> dict:
    keys = ("real_tokens_per_second", "real_tokens_per_cpu_second", "samples_per_second",
            "peak_rss_mb", "peak_above_start_mb", "val_loss", "train_seconds")
    return {k: statistics.median(r[k] for r in runs) for k in keys} | {
        "mean_sequence_tokens": statistics.median(r["mean_sequence_tokens"] for r in runs),
        "steps": runs[0]["steps"],
        "model_shape": runs[0]["model_shape"],
        "runs": runs,
    }


RATIO_KEYS = ("real_tokens_per_second", "real_tokens_per_cpu_second", "samples_per_second",
              "peak_rss_mb", "peak_above_start_mb", "val_loss")


def ratios(top: dict, bottom: dict) -> dict:
    """top / bottom for every figure, over the medians of the rounds."""
    return {k: round(top[k] / bottom[k], 3) for k in RATIO_KEYS}


def compare(plain: dict, tuned: dict) -> dict:
    r = ratios(tuned, plain)
    met = {
        "real_tokens_per_second": r["real_tokens_per_second"] >= GOALS["real_tokens_per_second"],
        # "within 2%": a lower loss than (a) is not a miss.
        "val_loss": r["val_loss"] <= 1 + GOALS["val_loss_within"],
        "peak_rss_mb": r["peak_rss_mb"] <= GOALS["peak_rss_mb"],
    }
    return {"ratios_b_over_a": r, "goal_met": met}


def compare_trl(trl_best: dict, tuned: dict) -> dict:
    r = ratios(tuned, trl_best)
    met = {
        "real_tokens_per_second": r["real_tokens_per_second"] >= GOALS_TRL["real_tokens_per_second"],
        "peak_rss_mb": r["peak_rss_mb"] <= GOALS_TRL["peak_rss_mb"],
    }
    return {"ratios_b_over_trl_best": r, "goal_met_trl": met}


def print_run(name: str, round_: int, side: str, run: dict, seconds: float) -> None:
    print(f"{name} round {round_ + 1} {side:<20}: {run['real_tokens_per_second']:7.1f} "
          f"real tokens/s ({run['real_tokens_per_cpu_second']:.1f} per CPU second), "
          f"{run['samples_per_second']:5.2f} samples/s, peak {run['peak_rss_mb']:6.0f} MB "
          f"(+{run['peak_above_start_mb']:.0f} MB in training), val loss {run['val_loss']:.4f} "
          f"({seconds:.0f} s in all)", flush=True)


def print_summary(name: str, result: dict) -> None:
    for side, other in result.get("tunesmith_over", {}).items():
        print(f"{name}: tunesmith / {side} = {other['real_tokens_per_second']:.2f}x real tokens/s "
              f"({other['real_tokens_per_cpu_second']:.2f}x per CPU second), "
              f"{other['peak_rss_mb']:.2f}x peak memory, val loss {other['val_loss']:.3f}x", flush=True)
    for key, against, goals in (("goal_met", "the plain script", GOALS),
                                ("goal_met_trl", "TRL's best setting", GOALS_TRL)):
        if key in result:
            print(f"{name}: against {against}: {goal_verdicts(goals, result[key])}", flush=True)


def goal_verdicts(goals: dict, met: dict) -> str:
    """'tokens/s goal >= 1.5x met, peak memory <= 0.8x MISSED, ...' for the goals in ``goals``."""
    def verdict(key: str) -> str:
        return "met" if met[key] else "MISSED"

    parts = [f"tokens/s goal >= {goals['real_tokens_per_second']:g}x {verdict('real_tokens_per_second')}",
             f"peak memory <= {goals['peak_rss_mb']:g}x {verdict('peak_rss_mb')}"]
    if "val_loss_within" in goals:
        parts.append(f"val loss within {goals['val_loss_within']:.0%} {verdict('val_loss')}")
    return ", ".join(parts)


def sides_for(name: str, sides: list[str]) -> list[str]:
    """The sides that apply to a case: TRL's SFTTrainer trains the chat case only."""
    return [s for s in sides if s not in TRL_SIDES or CASES[name]["task"] == "chat"]


def machine() -> dict:
    import torch
    import transformers

    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--sides", nargs="+",
                        choices=["plain", "tunesmith", *TRL_SIDES, *(f"tunesmith+{i}" for i in IDEAS)],
                        help="the sides to alternate, in this order (default: plain, tunesmith "
                        "and, when TRL is installed, trl-best)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the sides per case")
    parser.add_argument("--steps", type=int,
                        help="optimizer steps per run instead of each case's own (for a busy machine)")
    parser.add_argument("--trl-defaults-steps", type=int, default=2,
                        help="steps of the trl-defaults side at most (SFTConfig's defaults: slow)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tunesmith-bench",
                        help="scratch folder for data and run folders")
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: summarise the complete rounds already in --work "
                        "(after a benchmark was cut short)")
    # Internal: run side (b) of one case in this process.
    parser.add_argument("--side-b", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--idea", choices=list(IDEAS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    if args.steps:
        for case in CASES.values():
            case["steps"] = args.steps
    if args.side_b:
        result = tunesmith_side(args.side_b, args.data, args.out, args.idea)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        return 0

    from trl_sft import INSTALL_HINT, trl_available

    sides = args.sides
    if sides is None:
        sides = ["plain", "tunesmith"]
        if trl_available():
            sides.append("trl-best")
        else:
            print(f"Side (c) left out. {INSTALL_HINT}", flush=True)
    elif any(s in TRL_SIDES for s in sides) and not trl_available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2

    report = {"machine": machine(), "goals": GOALS, "goals_against_trl_best": GOALS_TRL,
              "shared_hyperparameters": SHARED, "ideas": IDEAS, "cases": {}}
    for name in args.cases:
        case_sides = sides_for(name, sides)
        started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        load_before = os.getloadavg()
        runs: dict[str, list[dict]] = {side: [] for side in case_sides}
        if args.collect:
            runs = collected_runs(args.work / name, case_sides)
            if not runs[case_sides[0]]:
                print(f"{name}: no complete round of {', '.join(case_sides)} in {args.work / name}")
                continue
            first = (args.work / name / f"{case_sides[0]}-0" / "result.json").stat().st_mtime
            started_at, load_before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first)), None
        else:
            paths = prepare_case(name, args.work)
        for round_ in range(0 if args.collect else args.rounds):
            for side in case_sides:
                started = time.perf_counter()
                run = runner_for(side, args.trl_defaults_steps)(
                    name, paths, args.work / name / f"{side}-{round_}")
                run["load_average_after"] = os.getloadavg()
                runs[side].append(run)
                print_run(name, round_, side, run, time.perf_counter() - started)
        summary = {side: summarise(side_runs) for side, side_runs in runs.items()}
        result: dict = {
            "date": started_at, "rounds": len(runs[case_sides[0]]), "sides": case_sides,
            "load_average": {"before": load_before, "after": os.getloadavg()},
            "settings": CASES[name], **summary,
        }
        if "tunesmith" in summary:
            result["tunesmith_over"] = {side: ratios(summary["tunesmith"], other)
                                        for side, other in summary.items() if side != "tunesmith"}
            if "plain" in summary:
                result.update(compare(summary["plain"], summary["tunesmith"]))
            if "trl-best" in summary:
                result.update(compare_trl(summary["trl-best"], summary["tunesmith"]))
        report["cases"][name] = result
        print_summary(name, result)
        # Cases run at other times (or by another run of this script at the same time) keep
        # their results: read the file again just before writing; each case has its own date.
        previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
        report["cases"] = {**previous.get("cases", {}), **report["cases"]}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
