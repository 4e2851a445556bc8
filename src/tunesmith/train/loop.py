"""The training loop: one readable function, :func:`fit`, on Accelerate.

What one optimizer step does, in order:

1. take the next *window* of ``gradient_accumulation_steps`` micro-batches from the epoch's
   deterministic batch order (same seed and epoch -> same batches, so a resumed run sees
   exactly the batches an uninterrupted one would);
2. for each micro-batch: forward, ``loss_sum`` from the objective, backward (gradients of the
   *sums* accumulate; DDP syncs only on the last micro-batch);
3. divide the gradients by the number of targets in the whole window (across processes), so
   accumulation is normalised by targets, not by micro-batch count;
4. clip by global norm, AdamW step, scheduler step (linear warmup then linear decay).

Around it: logging every ``logging_steps`` (train loss, lr, grad norm, tokens, samples; with an
objective that has parts, e.g. mixed general text, ``loss`` is the task's and each part's mean
loss is logged apart as ``<part>_loss``),
validation every epoch or every ``eval_every`` steps, the best trainable weights kept in memory
and restored at the end, early stopping, callbacks that may request a stop, a resumable
checkpoint in ``checkpoints/last/`` after every evaluation, and recovery from out-of-memory
errors (halve the micro-batch, double the accumulation, same optimizer step).

Costs: evaluation runs on every process over the whole validation set (simple and keeps every
process's early-stopping decision identical; validation sets are small). Peak memory is the
process RSS on CPU (sampled every step) and ``torch.cuda.max_memory_allocated`` on GPU.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, cast

from tunesmith import runfiles
from tunesmith.config import FinetuneConfig
from tunesmith.errors import ConfigError, DataError
from tunesmith.train import encoding
from tunesmith.train.encoding import EncodedDataset, batch_order
from tunesmith.train.objectives import Objective
from tunesmith.train.precision import autocast_for

P = ParamSpec("P")

EvalFn = Callable[[Any], dict[str, float]]


class Callback:
    """Hooks into :func:`fit`. Return True from ``on_log``/``on_eval`` to request a stop.

    ``record`` is the dict written to history.jsonl. ``on_micro_batch`` runs before each forward
    pass (it may raise, e.g. to test out-of-memory recovery).
    """

    def on_log(self, record: dict[str, Any]) -> bool | None:
        return None

    def on_eval(self, record: dict[str, Any]) -> bool | None:
        return None

    def on_event(self, record: dict[str, Any]) -> None:
        return None

    def on_micro_batch(self, step: int, batch: dict[str, Any]) -> None:
        return None


@dataclass
class FitResult:
    steps: int
    epochs_run: float
    stopped_early: bool
    best_metric: str
    best_value: float | None
    best_step: int | None
    samples_per_second: float
    tokens_per_second: float
    peak_memory_mb: float
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    # The autocast the steps ran under: "no" (fp32), "bf16" or "fp16" (finetune.precision
    # resolved on this machine, see tunesmith.train.precision).
    autocast: str = "no"


@dataclass
class _State:
    """Everything a resumed run needs besides weights, optimizer and RNG (state.json)."""

    step: int = 0
    epoch: int = 0
    window: int = 0  # windows of this epoch already done
    best_value: float | None = None
    best_step: int | None = None
    # The best checkpoint's validation loss: it breaks ties of a coarse best metric.
    best_loss: float | None = None
    bad_evals: int = 0
    history_len: int = 0
    splits: int = 1  # each micro-batch is cut into this many after out-of-memory errors
    # Loss sum, targets, samples, tokens since the last train log (a resumed run logs the same).
    log_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    # Per part of the objective (e.g. "general"): its loss sum and targets since the last log.
    part_sums: dict[str, list[float]] = field(default_factory=dict)
    samples: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    done: bool = False
    stopped_early: bool = False


# What an allocation failure says: CUDA's caching allocator ("CUDA out of memory"), torch's CPU
# allocator ("DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes"), MPS
# ("MPS backend out of memory").
_OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_better(value: float, loss: float | None, best: float | None, best_loss: float | None, *,
              maximise: bool) -> bool:
    """Does an evaluation with best-metric ``value`` and validation ``loss`` replace the best
    one so far (``best``, ``best_loss``)? A strictly better value does; an equal one does when
    its loss is lower: accuracy on a small validation split moves in steps of one record (1/19
    on 19 records), so equal accuracy is common and the loss tells the two apart. When the best
    metric is the loss itself, ``loss`` and ``best_loss`` add nothing."""
    if best is None:
        return True
    if value == best and loss is not None and best_loss is not None:
        return loss < best_loss
    return value > best if maximise else value < best


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure on any device (CUDA, CPU, MPS), which a smaller
    micro-batch may avoid; False for every other error."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in message for m in _OUT_OF_MEMORY_MESSAGES)


def check_engine(distributed_type: str) -> None:
    """Refuse the distributed engines this loop cannot drive correctly (yet).

    DeepSpeed keeps gradients inside its engine and steps on every backward, while this loop
    scales ``p.grad`` by the targets of the accumulation window and steps itself: under DeepSpeed
    the updates would be silently wrong, so it stops with the alternatives instead. DDP (CPU and
    GPU) and FSDP go through.
    """
    if str(distributed_type).upper().endswith("DEEPSPEED"):
        raise ConfigError(
            "tunesmith's training loop has no DeepSpeed path: DeepSpeed's engine owns the "
            "gradients and the optimizer step, which the loop's target-normalised accumulation "
            "needs to control.",
            hint="Launch with configs/accelerate/fsdp.yaml (shards weights, gradients and "
            "optimizer state) or plain DDP (`tunesmith train --nproc N`); see docs/performance.md.",
        )


def mixed_precision(precision: str) -> str:
    """Accelerate's mixed_precision for ``finetune.precision`` on this machine
    (:func:`tunesmith.train.precision.autocast_for`: auto is bf16 autocast on a GPU that has
    bf16 and on a CPU with AMX-BF16, else fp16 on a GPU and fp32 on a CPU)."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "fp16" and not cuda:
        raise ConfigError(
            "'finetune.precision': fp16 needs a GPU (got fp16 on a CPU-only machine). "
            "Allowed here: auto, fp32, bf16."
        )
    return autocast_for(precision, cuda=cuda)


def _accelerator(precision: str) -> Any:
    """An Accelerator with ``precision`` (accelerate's mixed_precision). Accelerate keeps one
    precision per process and refuses another; a second fit in the same process (a notebook,
    compare-methods, a test run) may ask for another, so the precision part of its state is
    reset first. The process group (PartialState, torchrun's) is kept."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and str(shared.get("_mixed_precision", precision)) != precision:
        AcceleratorState._reset_state()
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision)


def trainable_state(model: Any) -> dict[str, Any]:
    """A detached copy of the parameters that train (LoRA matrices, heads ...)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def default_param_groups(model: Any, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """The method's parameter groups (weight decay on matrices only, LoRA+ ...)."""
    from tunesmith.methods import optimizer_param_groups

    return optimizer_param_groups(model, cfg)


def _frozen_weights_in_bf16(fit: Callable[P, FitResult]) -> Callable[P, FitResult]:
    """Run ``fit`` with the model's frozen linear weights held in bf16 when it trains under bf16
    autocast (:class:`~tunesmith.train.precision.FrozenWeightsInBf16`: no per-step casts of
    them); the exact fp32 weights are back when it returns or raises. Not under FSDP or
    DeepSpeed, which flatten parameters into buffers of one dtype."""

    @functools.wraps(fit)
    def held_fit(*args: P.args, **kwargs: P.kwargs) -> FitResult:
        model = args[0] if args else kwargs["model"]
        cfg = cast(FinetuneConfig, kwargs["cfg"])
        sharded = any(os.environ.get(k, "").lower() == "true"
                      for k in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"))
        held = None
        if mixed_precision(cfg.precision) == "bf16" and not sharded:
            from tunesmith.train.precision import FrozenWeightsInBf16

            held = FrozenWeightsInBf16(model)
        try:
            return fit(*args, **kwargs)
        finally:
            if held is not None:
                held.restore()

    return held_fit


def _cpu_dropout(fit: Callable[P, FitResult]) -> Callable[P, FitResult]:
    """Run ``fit`` with the model's ``nn.Dropout`` modules drawing their masks from uniform
    numbers on the CPU (:mod:`tunesmith.train.dropout`: the same distribution at about half
    the cost of ``bernoulli_``); the original modules are back when it returns or raises."""

    @functools.wraps(fit)
    def fit_with_cpu_dropout(*args: P.args, **kwargs: P.kwargs) -> FitResult:
        from tunesmith.train.dropout import cpu_dropout

        with cpu_dropout(args[0] if args else kwargs["model"]):
            return fit(*args, **kwargs)

    return fit_with_cpu_dropout


@_cpu_dropout
@_frozen_weights_in_bf16
def fit(
    model: Any,
    train_data: EncodedDataset,
    *,
    objective: Objective,
    cfg: FinetuneConfig,
    pad_token_id: int,
    evaluate: EvalFn | None = None,
    best_metric: str = "loss",
    out_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    param_groups: list[dict[str, Any]] | None = None,
    resume: bool = False,
    progress: bool = True,
    evaluate_first: bool = False,
    collate: Callable[[Sequence[dict[str, Any]], int], dict[str, Any]] = encoding.collate,
) -> FitResult:
    """Train ``model`` in place and leave the best weights in it.

    ``evaluate(model) -> {"loss": ..., "accuracy": ...}`` scores the validation set (the model
    is in eval mode under ``no_grad``); without it there is no validation, no best checkpoint
    and no early stopping. ``best_metric`` names the key it maximises (``loss`` is minimised).
    ``out_dir`` receives history.jsonl and checkpoints/last/; ``resume=True`` continues from
    there. ``evaluate_first`` scores the model before the first step (step 0) and counts it as a
    candidate for the best weights: when training only makes things worse, the starting weights
    (for classification, the head initialised from the baseline probe) are what is kept.
    ``collate(examples, pad_token_id)`` pads a micro-batch into tensors: the task plan's
    (packed causal-LM rows need :func:`tunesmith.train.packing.collate_with_positions`); the
    default pads ``input_ids`` with an attention mask.
    Raises ConfigError for settings this machine cannot run.
    """
    import torch
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    accelerator = _accelerator(mixed_precision(cfg.precision))
    check_engine(accelerator.distributed_type)
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    set_seed(cfg.seed)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)

    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    groups = param_groups if param_groups is not None else default_param_groups(model, cfg)
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)

    accum = cfg.gradient_accumulation_steps
    batches_per_epoch = math.ceil(len(train_data) / cfg.batch_size) // world
    if batches_per_epoch == 0:
        raise ConfigError(
            f"{len(train_data)} training examples are too few for batch_size {cfg.batch_size} "
            f"on {world} processes.",
            hint="Lower finetune.batch_size or add training data.",
        )
    windows_per_epoch = math.ceil(batches_per_epoch / accum)
    total_steps = cfg.max_steps or windows_per_epoch * cfg.num_epochs
    num_epochs = math.ceil(total_steps / windows_per_epoch)
    scheduler = get_scheduler(
        "constant_with_warmup" if cfg.lr_scheduler == "constant" else cfg.lr_scheduler,
        optimizer,
        num_warmup_steps=round(cfg.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    maximise = best_metric != "loss"

    state = _State()
    best_weights: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []
    history_path = out / runfiles.HISTORY if out is not None else None
    if resume:
        if out is None:
            raise ConfigError("resuming needs the run folder that holds checkpoints/last/")
        state, best_weights, history = _load_checkpoint(
            out, unwrapped, optimizer, scheduler, history_path
        )
    elif history_path is not None and main:
        history_path.write_text("")

    def record(entry: dict[str, Any]) -> None:
        history.append(entry)
        if history_path is not None and main:
            with history_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    def event(name: str, message: str) -> None:
        entry = {"kind": "event", "step": state.step, "event": name, "message": message}
        record(entry)
        for cb in callbacks:
            cb.on_event(entry)

    if resume:
        event("resumed", f"resumed from checkpoints/last at step {state.step}")

    peak_rss = 0.0
    process = None
    if not torch.cuda.is_available():
        import psutil

        process = psutil.Process()

    def sample_memory() -> None:
        nonlocal peak_rss
        if process is not None:
            peak_rss = max(peak_rss, process.memory_info().rss / 2**20)

    def run_evaluation() -> bool:
        """Validate, keep the best weights, checkpoint; True when training should stop."""
        nonlocal best_weights
        stop = False
        if evaluate is not None:
            unwrapped.eval()
            with torch.no_grad(), accelerator.autocast():
                metrics = evaluate(unwrapped)
            model.train()
            value = metrics[best_metric]
            improved = is_better(value, metrics.get("loss"), state.best_value, state.best_loss,
                                 maximise=maximise)
            entry: dict[str, Any] = {
                "kind": "eval",
                "step": state.step,
                "epoch": round(state.step / windows_per_epoch, 4),
            }
            entry.update({f"val_{k}": v for k, v in metrics.items()})
            entry["is_best"] = improved
            if improved:
                state.best_value, state.best_step, state.bad_evals = value, state.step, 0
                state.best_loss = metrics.get("loss")
                best_weights = trainable_state(unwrapped)
            else:
                state.bad_evals += 1
            record(entry)
            if progress and main:
                shown = f"val {best_metric} {value:.4f}"
                if best_metric != "loss" and "loss" in metrics:
                    shown = f"val loss {metrics['loss']:.4f}, {shown}"
                kept = ("best so far: kept" if improved
                        else f"best {state.best_value:.4f} at step {state.best_step}")
                bar.write(f"step {state.step}: {shown} ({kept})")
            stop = any(bool(cb.on_eval(entry)) for cb in callbacks)
            patience = cfg.early_stopping_patience
            if patience and state.bad_evals >= patience:
                state.stopped_early = True
                event(
                    "early_stop",
                    f"val {best_metric} did not improve for {patience} evaluations; best "
                    f"{state.best_value:.4f} at step {state.best_step}",
                )
                stop = True
        if out is not None and state.step > 0:  # at step 0 a resume would start over anyway
            _save_checkpoint(accelerator, out, unwrapped, optimizer, scheduler, state,
                             best_weights, len(history))
        return stop

    def micro_batches(window: list[list[int]]) -> list[dict[str, Any]]:
        pieces = []
        for indices in window:
            size = math.ceil(len(indices) / state.splits)
            for start in range(0, len(indices), size):
                examples = [train_data.examples[i] for i in indices[start : start + size]]
                pieces.append(collate(examples, pad_token_id))
        return pieces

    parts: tuple[str, ...] = tuple(getattr(objective, "parts", ()))

    def train_window(window: list[list[int]]) -> tuple[float, int, int, int, float, dict[str, list[float]]]:
        """One optimizer step; returns (loss_sum, targets, samples, tokens, grad_norm, part sums)."""
        while True:
            try:
                return _step(window)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
                smallest = min(len(w) for w in window)
                if not is_out_of_memory(exc) or math.ceil(smallest / state.splits) <= 1:
                    raise
                if world > 1:
                    # The other ranks are already inside this step's gradient all-reduce: a
                    # retry on this rank alone would leave them waiting forever. Fail fast (the
                    # launcher stops the others); the last checkpoint is intact for --resume.
                    raise ConfigError(
                        f"out of memory on rank {rank} of {world} at step {state.step + 1}; "
                        "recovery by smaller micro-batches works on one process only.",
                        hint=f"Lower finetune.batch_size (now {cfg.batch_size}) and raise "
                        "finetune.gradient_accumulation_steps to keep the effective batch, and "
                        "start again; with the same settings, `tunesmith train --resume RUN` "
                        "continues from the last checkpoint (on a machine with more memory).",
                    ) from exc
                optimizer.zero_grad(set_to_none=True)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                state.splits *= 2
                event(
                    "oom_recovered",
                    f"out of memory at step {state.step + 1}: micro-batch cut to about "
                    f"{math.ceil(cfg.batch_size / state.splits)} with {accum * state.splits} "
                    "accumulation steps (same effective batch)",
                )

    def _step(window: list[list[int]]) -> tuple[float, int, int, int, float, dict[str, list[float]]]:
        pieces = micro_batches(window)
        loss_total, targets, samples, tokens = 0.0, 0, 0, 0
        part_sums = {name: [0.0, 0.0] for name in parts}
        for i, batch in enumerate(pieces):
            for cb in callbacks:
                cb.on_micro_batch(state.step, batch)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            last = i == len(pieces) - 1
            with nullcontext() if last else accelerator.no_sync(model):
                with accelerator.autocast():
                    loss_sum, n_targets, *extra = objective.loss(model, batch)
                accelerator.backward(loss_sum)
            for name, (part_sum, part_targets) in (extra[0] if extra else {}).items():
                part_sums[name][0] += float(part_sum)
                part_sums[name][1] += part_targets
            loss_total += float(loss_sum.detach())
            targets += int(n_targets)
            samples += int(batch["input_ids"].shape[0])
            tokens += int(batch["attention_mask"].sum())
            sample_memory()
        # Gradients hold sums over this process's targets, averaged over processes by DDP:
        # scale to a mean over every target of the window on every process.
        total = accelerator.reduce(torch.tensor(float(targets), device=accelerator.device), "sum")
        scale = world / max(float(total), 1.0)
        for p in unwrapped.parameters():
            if p.grad is not None:
                p.grad.mul_(scale)
        clip = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), clip))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_total, targets, samples, tokens, grad_norm, part_sums

    sample_memory()
    model.train()
    bar = tqdm(
        total=total_steps, initial=state.step, disable=not (progress and main),
        desc="training", unit="step", dynamic_ncols=True,
    )
    stop = state.done
    if evaluate_first and evaluate is not None and state.step == 0 and not history:
        stop = run_evaluation()
    while not stop and state.step < total_steps and state.epoch < num_epochs:
        order = batch_order(
            train_data.lengths, cfg.batch_size, seed=cfg.seed, epoch=state.epoch,
            group_by_length=cfg.group_by_length,
        )
        mine = order[rank::world][:batches_per_epoch]
        windows = [mine[i : i + accum] for i in range(0, len(mine), accum)]
        while state.window < len(windows):
            started = time.perf_counter()
            loss_sum, targets, samples, tokens, grad_norm, step_parts = train_window(windows[state.window])
            state.train_seconds += time.perf_counter() - started
            state.step += 1
            state.window += 1
            state.samples += samples
            state.tokens += tokens
            new = (loss_sum, targets, samples, tokens)
            state.log_sums = [a + b for a, b in zip(state.log_sums, new, strict=True)]
            for name, (part_sum, part_targets) in step_parts.items():
                logged = state.part_sums.setdefault(name, [0.0, 0.0])
                logged[0] += part_sum
                logged[1] += part_targets
            bar.update(1)
            if state.step % cfg.logging_steps == 0 or state.step == total_steps:
                # Every process reduces the same list: the totals, then each part's sum and count.
                flat = list(state.log_sums)
                for name in parts:
                    flat += state.part_sums.get(name, [0.0, 0.0])
                sums = accelerator.reduce(
                    torch.tensor(flat, dtype=torch.float64, device=accelerator.device), "sum",
                ).tolist()
                part_loss = sum(sums[4::2])
                part_targets = sum(sums[5::2])
                entry = {
                    "kind": "train",
                    "step": state.step,
                    "epoch": round(state.step / windows_per_epoch, 4),
                    # The task's own loss: the parts (general text) are logged apart below.
                    "loss": (sums[0] - part_loss) / max(sums[1] - part_targets, 1.0),
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": grad_norm,
                    "tokens": int(sums[3]),
                    "samples": int(sums[2]),
                }
                for k, name in enumerate(parts):
                    part_sum, count = sums[4 + 2 * k], sums[5 + 2 * k]
                    entry[f"{name}_loss"] = part_sum / count if count else None
                record(entry)
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
                state.log_sums = [0.0, 0.0, 0.0, 0.0]
                state.part_sums = {}
                if any(bool(cb.on_log(entry)) for cb in callbacks):
                    stop = True
            finished = state.step >= total_steps
            epoch_done = state.window == len(windows)
            if epoch_done:
                state.epoch, state.window = state.epoch + 1, 0
            evaluate_now = (
                (cfg.eval_every and state.step % cfg.eval_every == 0)
                or (not cfg.eval_every and epoch_done)
                or finished
            )
            if evaluate_now:
                stop = run_evaluation() or stop
            if stop or finished or epoch_done:
                break
    bar.close()

    if not state.done:
        state.done = True
        if out is not None:
            _save_checkpoint(accelerator, out, unwrapped, optimizer, scheduler, state,
                             best_weights, len(history))
    # The model leaves as it came: accelerate's prepare() wrapped its forward in autocast, which
    # would keep every later forward pass (prediction, evaluation, merging) in bf16.
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    if best_weights is not None:
        unwrapped.load_state_dict(best_weights, strict=False)
        event("best_restored", f"restored the best weights (step {state.best_step}, "
              f"val {best_metric} {state.best_value:.4f})")
    if torch.cuda.is_available():
        peak_rss = torch.cuda.max_memory_allocated() / 2**20
    totals = accelerator.reduce(
        torch.tensor([state.samples, state.tokens], dtype=torch.float64,
                     device=accelerator.device), "sum",
    ).tolist()
    seconds = max(state.train_seconds, 1e-9)
    return FitResult(
        steps=state.step,
        epochs_run=round(state.step / windows_per_epoch, 2),
        stopped_early=state.stopped_early,
        best_metric=best_metric,
        best_value=state.best_value,
        best_step=state.best_step,
        samples_per_second=totals[0] / seconds,
        tokens_per_second=totals[1] / seconds,
        peak_memory_mb=peak_rss,
        train_seconds=state.train_seconds,
        history=history,
        autocast=str(accelerator.mixed_precision),
    )


# ---------------------------------------------------------------------------------------------
# Checkpoints: checkpoints/last/ holds everything a resumed run needs.


def _save_checkpoint(
    accelerator: Any,
    out: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    state: _State,
    best_weights: dict[str, Any] | None,
    history_len: int,
) -> None:
    """Write checkpoints/last/ atomically: a temp folder renamed into place.

    A SIGKILL mid-write leaves the previous last/ (or last.old/ during the swap) intact.
    """
    if not accelerator.is_main_process:
        return
    import numpy as np
    import torch
    from safetensors.torch import save_file

    state.history_len = history_len
    root = out / runfiles.CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".last-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.contiguous() for k, v in trainable_state(model).items()},
              str(tmp / "trainable.safetensors"))
    if best_weights is not None:
        save_file({k: v.contiguous() for k, v in best_weights.items()},
                  str(tmp / "best.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    # Only tensors, numbers, strings, lists and dicts, so that resuming can load it with
    # torch.load(weights_only=True): no pickled Python objects (numpy's state is an array).
    version, internal, gauss = random.getstate()
    numpy_state: Any = np.random.get_state()  # the legacy tuple form (legacy=True)
    name, keys, pos, has_gauss, cached = numpy_state
    rng: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=1))
    last, old = root / "last", root / "last.old"
    if last.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(last, old)
    os.rename(tmp, last)
    shutil.rmtree(old, ignore_errors=True)


def load_tensors_only(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings and containers only.

    A checkpoint may come from someone else (a shared or DVC-pulled run folder) and unpickling
    it could run any code it holds, so nothing else is unpickled. Raises DataError naming the
    file when it holds anything more (or is not a torch file at all).
    """
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: refused to load this checkpoint file: it holds more than tensors and plain "
            f"values (Python objects that unpickling would execute), or it is damaged ({first}).",
            hint="Resume only run folders written by this version of tunesmith that you trust; "
            "otherwise start the run again (the adapter/ and metrics of a finished run need no "
            "checkpoint).",
        ) from None


def _load_checkpoint(
    out: Path, model: Any, optimizer: Any, scheduler: Any, history_path: Path | None
) -> tuple[_State, dict[str, Any] | None, list[dict[str, Any]]]:
    import torch
    from safetensors.torch import load_file

    root = out / runfiles.CHECKPOINTS_DIR
    last = root / "last" if (root / "last" / "state.json").is_file() else root / "last.old"
    if not (last / "state.json").is_file():
        raise ConfigError(
            f"no checkpoint to resume from in {root}: expected last/state.json.",
            hint="Resume a run folder written by `tunesmith train` or `tunesmith run`.",
        )
    state = _State(**json.loads((last / "state.json").read_text()))
    model.load_state_dict(load_file(str(last / "trainable.safetensors")), strict=False)
    best = load_file(str(last / "best.safetensors")) if (last / "best.safetensors").is_file() else None
    optimizer.load_state_dict(load_tensors_only(last / "optimizer.pt"))
    scheduler.load_state_dict(load_tensors_only(last / "scheduler.pt"))
    rng = load_tensors_only(last / "rng.pt")
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    import numpy as np

    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    history: list[dict[str, Any]] = []
    if history_path is not None and history_path.is_file():
        lines = history_path.read_text(encoding="utf-8").splitlines()[: state.history_len]
        history = [json.loads(line) for line in lines]
        # Records after the checkpoint are produced again by the resumed run.
        history_path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return state, best, history
