"""A training plan from the guide's decision trees, sized by the memory estimator.

:func:`make_plan` walks, in order, and records every choice with its reason:

- **finetune at all?** under 100 examples the guide says try few-shot prompting (the plan is
  still made, marked as not advised);
- **method** ("Choosing Finetuning Method"): under 2,000 examples LoRA; several tasks LoRA (one
  adapter each); full finetuning when it fits the memory *and* the data is large (10K+) or the
  task is far from pretraining (high domain shift); else LoRA when it fits, else QLoRA, else
  QLoRA with gradient checkpointing;
- **LoRA rank** from the guide's size table, the lower end of each band (100-500: 4, 500-2K: 8,
  2K-10K: 16, 10K+: 32), alpha = 2 x r;
- **learning rate**: the guide's per-method default (full 2e-5, LoRA 2e-4, QLoRA 2e-4, adapters
  1e-4), except LoRA/QLoRA for a classifier, where `tunesmith run`'s measured default 2e-3 is
  used (config.CLASSIFIER_LORA_DEFAULTS, docs/core.md); ``lr-find`` measures it for the data at
  hand (``advise --probe``);
- **epochs** ("Number of Epochs"): under 1,000 examples 5, up to 10,000 3, above 2;
- **effective batch** 8 / 16 / 32 for the same bands; the **micro-batch** is the largest power of
  two that fits in the memory (estimator, 10% margin kept free) and gradient accumulation makes
  up the rest;
- **warmup** 10% of the steps (guide: 5-10%), early stopping after 2 evaluations without
  improvement;
- **max_length** the 95th percentile of the data's token lengths (guide), when data is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tunesmith.advise.memory import (
    GB,
    MemoryArgs,
    MemoryEstimate,
    ModelShape,
    estimate_memory,
    largest_batch_that_fits,
)
from tunesmith.config import CLASSIFIER_LORA_DEFAULTS, Config, validate_config
from tunesmith.errors import UsageError

MEMORY_MARGIN = 0.10  # keep 10% of the memory free: the estimate is within about 15%
FEW_EXAMPLES = 100
LORA_BELOW = 2000
FULL_FROM = 10000
# Guide's "Learning Rate: typical values", the middle of each range.
DEFAULT_LR = {"full": 2e-5, "lora": 2e-4, "dora": 2e-4, "lora_plus": 2e-4, "qlora": 2e-4,
              "adapter": 1e-4}
# What `tunesmith run` gives a LoRA/QLoRA classifier (config.CLASSIFIER_LORA_DEFAULTS, measured).
FRESH_HEAD_LORA_LR: float = CLASSIFIER_LORA_DEFAULTS["learning_rate"]


@dataclass(frozen=True)
class Choice:
    key: str  # config key, e.g. "finetune.method"
    value: Any
    reason: str


@dataclass
class Plan:
    config: Config
    choices: list[Choice]
    estimate: MemoryEstimate
    finetune_advised: bool
    memory_gb: float
    notes: list[str] = field(default_factory=list)

    def choice(self, key: str) -> Choice:
        return next(c for c in self.choices if c.key == key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "finetune_advised": self.finetune_advised,
            "memory_gb": self.memory_gb,
            "choices": [{"key": c.key, "value": c.value, "reason": c.reason} for c in self.choices],
            "estimate": self.estimate.to_json(),
            "notes": self.notes,
        }


def rank_for(examples: int) -> tuple[int, str]:
    for limit, rank, band in ((500, 4, "100-500"), (2000, 8, "500-2K"), (10000, 16, "2K-10K")):
        if examples < limit:
            return rank, f"guide's size table: {band} examples -> the low end of its r range"
    return 32, "guide's size table: 10K+ examples -> r 32 for a complex task"


def epochs_for(examples: int) -> tuple[int, str]:
    if examples < 1000:
        return 5, "guide: under 1,000 examples train 5-10 epochs (early stopping watches)"
    if examples <= 10000:
        return 3, "guide: 1,000-10,000 examples train 3-5 epochs"
    return 2, "guide: over 10,000 examples train 1-3 epochs"


def effective_batch_for(examples: int) -> int:
    return 8 if examples < 1000 else 16 if examples <= 10000 else 32


def make_plan(
    shape: ModelShape,
    *,
    examples: int,
    memory_gb: float,
    task: str | None = None,
    tasks: int = 1,
    domain_shift: str = "low",
    max_length: int | None = None,
    max_length_reason: str | None = None,
    dataset: str | None = None,
    precision: str = "fp32",
    model: str | None = None,
    device: str = "cuda",
    fixed: float | None = None,
) -> Plan:
    """Walk the guide's decision trees for this model, data size and memory.

    ``memory_gb`` is the memory training may use (GPU memory, or free RAM on CPU); ``model``
    is the name written into the config (default ``shape.name``). ``fixed`` (CPU: bytes of the
    libraries a run imports, :func:`tunesmith.advise.run_memory.fixed_cost`) sizes everything
    with the whole run's estimate against ``memory_gb``. Raises UsageError when not even QLoRA
    with gradient checkpointing and a batch of 1 fits.
    """
    if examples < 1:
        raise UsageError(f"--examples must be at least 1, got {examples}.")
    if memory_gb <= 0:
        raise UsageError(f"--memory must be positive (GB), got {memory_gb:g}.")
    if domain_shift not in ("low", "high"):
        raise UsageError(f"--domain-shift is low or high, got '{domain_shift}'.")
    task = task or ("classification" if shape.kind == "encoder" else "instruction")
    budget = memory_gb * GB * (1 - MEMORY_MARGIN)
    length = max_length or Config().prepare.max_length
    choices: list[Choice] = []
    notes: list[str] = []

    advised = examples >= FEW_EXAMPLES
    if not advised:
        notes.append(f"{examples} examples: the guide says under {FEW_EXAMPLES} finetuning is "
                     "unlikely to work well; try few-shot prompting (tunesmith should-finetune) "
                     "or collect more. The plan below is what to try if you go ahead.")
    rank, rank_reason = rank_for(max(examples, FEW_EXAMPLES))
    # Every estimate below: the config's defaults with the plan's length, precision and rank.
    base = MemoryArgs.defaults(device=device).replace(max_length=length, precision=precision,
                                                      lora_r=rank)

    def total(args: MemoryArgs) -> float:
        if fixed is None or device != "cpu":
            return estimate_memory(shape, args).total_bytes
        from tunesmith.advise.run_memory import estimate_run

        return estimate_run(shape, args, fixed=fixed).total_bytes

    def fits(method: str, checkpointing: bool = False) -> bool:
        return largest_batch_that_fits(
            shape, budget, base, method=method, gradient_checkpointing=checkpointing, limit=1,
            total=total,
        ) >= 1

    checkpointing = False
    if examples < LORA_BELOW:
        method, why = "lora", f"guide: under {LORA_BELOW:,} examples -> LoRA"
    elif tasks > 1:
        method, why = "lora", f"{tasks} tasks -> LoRA, one small adapter per task on one base"
    elif (examples >= FULL_FROM or domain_shift == "high") and fits("full"):
        method = "full"
        why = ("full finetuning fits in the memory and "
               + (f"{examples:,} examples support it (guide: 10K+)" if examples >= FULL_FROM
                  else "the task is far from pretraining (guide Q5)"))
    else:
        method = "lora"
        why = "guide: start with LoRA, it works 90% of the time"
    if method != "full" and not fits(method):
        if fits("qlora"):
            method, why = "qlora", why + "; LoRA does not fit in the memory -> QLoRA (4-bit base)"
        elif fits("qlora", checkpointing=True):
            method, checkpointing = "qlora", True
            why += "; only QLoRA with gradient checkpointing fits in the memory"
        else:
            smallest = total(base.replace(method="qlora", batch_size=1,
                                          gradient_checkpointing=True))
            raise UsageError(
                f"{shape.name} does not fit in {memory_gb:g} GB even with QLoRA, gradient "
                f"checkpointing and a batch of 1 (estimated {smallest / GB:.2f} GB at "
                f"max_length {length}" + (", the whole run" if fixed is not None else "") + ").",
                hint="Use a smaller model, a shorter max_length or more memory "
                "(guide: use model parallelism / FSDP / DeepSpeed for very large models).",
            )
    choices.append(Choice("finetune.method", method, why))
    if checkpointing:
        choices.append(Choice("finetune.gradient_checkpointing", True,
                              "trades compute for memory: only each layer's input is kept"))
    if method in ("lora", "qlora"):
        choices.append(Choice("finetune.lora_r", rank, rank_reason))
        choices.append(Choice("finetune.lora_alpha", 2 * rank, "guide: alpha = 2 x r"))

    lr = DEFAULT_LR[method]
    lr_reason = f"guide's {method} default"
    if task == "classification" and method in ("lora", "qlora") and examples < FULL_FROM:
        lr = FRESH_HEAD_LORA_LR
        lr_reason = ("a classifier on a small budget: at the guide's 2e-4 LoRA kept the probe it "
                     "starts from on two of four user files, 2e-3 on every linear layer came "
                     "within 3 points of full finetuning (docs/core.md); `tunesmith lr-find` "
                     "checks it on your data")
    choices.append(Choice("finetune.learning_rate", lr, lr_reason))
    epochs, epoch_reason = epochs_for(examples)
    choices.append(Choice("finetune.num_epochs", epochs, epoch_reason))

    effective = effective_batch_for(examples)
    micro = largest_batch_that_fits(
        shape, budget, base, method=method, gradient_checkpointing=checkpointing, limit=effective,
        total=total,
    )
    accumulation = math.ceil(effective / micro)
    choices.append(Choice("finetune.batch_size", micro,
                          f"the largest micro-batch that fits in {memory_gb:g} GB "
                          f"(estimator, {MEMORY_MARGIN:.0%} kept free) up to the effective batch"))
    choices.append(Choice("finetune.gradient_accumulation_steps", accumulation,
                          f"effective batch {micro} x {accumulation} = {micro * accumulation} "
                          f"(guide: small batches are noisy; {effective} for {examples:,} examples)"))
    steps = math.ceil(examples / (micro * accumulation)) * epochs
    choices.append(Choice("finetune.warmup_ratio", 0.1,
                          f"guide: warmup 5-10% of the steps (about {max(1, round(0.1 * steps))} "
                          f"of {steps})"))
    choices.append(Choice("finetune.early_stopping_patience", 2,
                          "stop after 2 evaluations without improvement (guide: stop when "
                          "validation loss rises)"))
    choices.append(Choice("prepare.max_length", length, max_length_reason or
                          "guide's default (512); give --data to use the 95th percentile of "
                          "your lengths"))
    if dataset:
        choices.append(Choice("prepare.dataset", dataset, "the data the plan was made for"))
        choices.append(Choice("prepare.task", task, "detected from the data's fields"))

    data: dict[str, dict[str, Any]] = {"finetune": {"model": model or shape.name}}
    for c in choices:
        section, key = c.key.split(".")
        data.setdefault(section, {})[key] = c.value
    config = validate_config(data, source="advise plan")
    estimate = estimate_memory(shape, base, method=method, batch_size=micro,
                               gradient_checkpointing=checkpointing)
    return Plan(config, choices, estimate, advised, memory_gb, notes)
