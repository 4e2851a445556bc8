"""Before training: does the estimate fit in the memory there is? If not, shrink the micro-batch.

:func:`preflight` is pure: given the config, the model's shape and the bytes available, it
returns the config to train with and what it decided, in words. When the estimate does not fit
it halves the micro-batch until it does and multiplies gradient accumulation by the same factor,
so the effective batch (micro-batch x accumulation) stays what the config asked for (the guide's
first two OOM fixes). If even a micro-batch of 1 does not fit it also turns on gradient
checkpointing (the guide's fourth); if that is still not enough it says so and leaves the rest to
the training loop's own out-of-memory recovery. On CPU, given the libraries' fixed cost, its
estimates are the whole run's and it also turns on activation checkpointing by itself where that
pays (:func:`checkpointing_pays`: activations dominate the peak); metrics.json records the
choice and who made it.

:func:`check_memory` measures the memory available (free GPU memory on CUDA, plus what the
loaded model holds there, since the estimate counts its weights too; on CPU the RAM still
available plus this process's resident memory, since the whole-run estimate counts all of it)
and calls :func:`preflight`; the training pipeline calls it once the data is encoded, with the
longest encoded example as the sequence length (batches are padded to their longest example,
never beyond), and saves the config it returns as the run's config.yaml, with
:meth:`MemoryCheck.changes` and the messages in run.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunesmith.advise.memory import (
    MemoryArgs,
    MemoryEstimate,
    ModelShape,
    estimate_memory,
    format_bytes,
)
from tunesmith.config import Config
from tunesmith.errors import TunesmithError

# Activation checkpointing is chosen on its own when it cuts the whole run's estimated peak by
# at least this share: it costs about one more forward pass per step (roughly a third more
# compute), worth paying only when it halves the peak (SmolLM2 LoRA on 4 x 512 chat rows: -58%;
# not at 4 x 256, -43%, where the speed matters more).
CHECKPOINTING_PAYS = 0.5


def _estimate(cfg: Config, shape: ModelShape, batch: int, seq_len: int, cuda: bool,
              checkpointing: bool, fixed: float | None = None) -> MemoryEstimate | Any:
    """The training estimate, or the whole run's (a RunEstimate) when ``fixed`` is given."""
    args = MemoryArgs.from_config(cfg, device="cuda" if cuda else "cpu", batch_size=batch,
                                  max_length=seq_len, gradient_checkpointing=checkpointing)
    if fixed is not None and not cuda:
        from tunesmith.advise.run_memory import estimate_run

        return estimate_run(shape, args, fixed=fixed)
    return estimate_memory(shape, args)


def checkpointing_pays(shape: ModelShape, args: MemoryArgs, fixed: float) -> str | None:
    """Why activation checkpointing pays for a CPU run with ``args`` (its words for the log),
    or None: it does when it cuts the whole run's estimated peak (``fixed`` = the libraries'
    bytes) by at least :data:`CHECKPOINTING_PAYS`, which happens when activations dominate."""
    from tunesmith.advise.run_memory import estimate_run

    off = estimate_run(shape, args.replace(gradient_checkpointing=False), fixed=fixed)
    on = estimate_run(shape, args.replace(gradient_checkpointing=True), fixed=fixed)
    if on.total_bytes > (1 - CHECKPOINTING_PAYS) * off.total_bytes:
        return None
    return (f"gradient checkpointing turned on: activations dominate ({off.dominant(1)}), and "
            f"recomputing them in the backward pass cuts the estimated peak from "
            f"{format_bytes(off.total_bytes)} to {format_bytes(on.total_bytes)} for about a "
            "third more compute per step.")


def preflight(
    cfg: Config,
    model_info: ModelShape,
    available_bytes: float,
    *,
    seq_len: int | None = None,
    cuda: bool = False,
    fixed: float | None = None,
    whole_run_budget: bool = True,
) -> tuple[Config, list[str]]:
    """The config to train with and the messages that explain it.

    ``seq_len`` is the longest sequence a batch will hold (default ``prepare.max_length``).
    ``fixed`` (CPU only; bytes of the imported libraries, see
    :func:`tunesmith.advise.run_memory.fixed_cost`) makes every estimate the whole run's, to be
    compared with the whole process's budget, and lets the preflight turn on activation
    checkpointing where it pays (:func:`checkpointing_pays`). ``whole_run_budget=False`` keeps
    the fit against ``available_bytes`` on the training estimate (a budget given as what training
    may use). Costs a few estimates (ms each).
    """
    fit_fixed = fixed if whole_run_budget else None
    ft = cfg.finetune
    length = min(seq_len or cfg.prepare.max_length, cfg.prepare.max_length)
    batch, accum, checkpointing = ft.batch_size, ft.gradient_accumulation_steps, ft.gradient_checkpointing
    chosen: list[str] = []
    if not checkpointing and fixed is not None and not cuda:
        args = MemoryArgs.from_config(cfg, device="cpu", batch_size=batch, max_length=length)
        why = checkpointing_pays(model_info, args, fixed)
        if why:
            checkpointing = True
            chosen.append(f"preflight: {why}")
    first = _estimate(cfg, model_info, batch, length, cuda, checkpointing, fit_fixed)
    where = f"{format_bytes(available_bytes)} available"
    if first.total_bytes <= available_bytes:
        said = [*chosen, f"preflight: estimated peak {format_bytes(first.total_bytes)} for "
                f"micro-batch {batch} x {length} tokens fits in {where}."]
        if not chosen:
            return cfg, said
        checkpointed = ft.model_copy(update={"gradient_checkpointing": True})
        return cfg.model_copy(update={"finetune": checkpointed}), said
    messages = [*chosen, f"preflight: estimated peak {format_bytes(first.total_bytes)} for "
                f"micro-batch {batch} x {length} tokens does not fit in {where}."]
    new_batch = batch
    while new_batch > 1:
        new_batch = max(1, new_batch // 2)
        if _estimate(cfg, model_info, new_batch, length, cuda, checkpointing, fit_fixed).total_bytes <= available_bytes:
            break
    fits = _estimate(cfg, model_info, new_batch, length, cuda, checkpointing, fit_fixed).total_bytes <= available_bytes
    if not fits and not checkpointing:
        checkpointing = True
        messages.append("preflight: a micro-batch of 1 does not fit either: gradient "
                        "checkpointing turned on (recomputes activations; slower, less memory).")
        new_batch = batch
        while new_batch > 1 and _estimate(cfg, model_info, new_batch, length, cuda,
                                          True, fit_fixed).total_bytes > available_bytes:
            new_batch = max(1, new_batch // 2)
        fits = _estimate(cfg, model_info, new_batch, length, cuda, True, fit_fixed).total_bytes <= available_bytes
    new_accum = accum * math.ceil(batch / new_batch)
    if new_batch != batch:
        messages.append(
            f"preflight: micro-batch {batch} -> {new_batch}, gradient accumulation {accum} -> "
            f"{new_accum}: the effective batch stays {batch * accum}"
            + ("" if new_batch * new_accum == batch * accum
               else f" (now {new_batch * new_accum}: the batch was not a power of two)") + "."
        )
    last = _estimate(cfg, model_info, new_batch, length, cuda, checkpointing, fit_fixed)
    if not fits:
        messages.append(
            f"preflight: still estimated {format_bytes(last.total_bytes)}: this may run out of "
            "memory (the loop then halves the micro-batch again). The guide's bigger changes: "
            "LoRA instead of full finetuning, QLoRA, a shorter max_length, a smaller model."
        )
    update: dict[str, Any] = {"batch_size": new_batch, "gradient_accumulation_steps": new_accum,
                              "gradient_checkpointing": checkpointing}
    return cfg.model_copy(update={"finetune": ft.model_copy(update=update)}), messages


def resident_bytes(model: Any) -> int:
    """Bytes the model's parameters and buffers hold now."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _rss_bytes() -> float:
    """This process's resident memory now."""
    import psutil

    return float(psutil.Process().memory_info().rss)


# The settings the preflight may change (finetune section), in the order it reports them.
PREFLIGHT_KEYS = ("batch_size", "gradient_accumulation_steps", "gradient_checkpointing")


@dataclass
class MemoryCheck:
    """What the preflight decided and estimated, and the process's memory when it ran."""

    cfg: Config
    estimate: Any  # RunEstimate (None when the model's shape could not be read)
    rss_before_bytes: float  # the process's RSS when the preflight ran (model loaded)
    # {"finetune.batch_size": [asked, chosen], ...} for each setting the preflight changed.
    changed: dict[str, list[Any]] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)  # why, in words

    # Whether gradient checkpointing trains, and who chose it: "config" or "preflight".
    checkpointing_by: str = "config"
    # The process's RSS when training began (:meth:`training_starts`); 0 until then.
    rss_training_bytes: float = 0.0

    def training_starts(self) -> None:
        """Note the process's RSS now, right before the training loop: what was started between
        the preflight and the loop (the MLflow tracker: its import and store, 170 MB on the
        2026-12-02 EPYC machine, ``bench/import_costs.py``) is then not counted as training's."""
        self.rss_training_bytes = _rss_bytes()

    def summary(self) -> str | None:
        """One line naming what changed ("finetune.batch_size 8 -> 2, ..."), None if nothing."""
        if not self.changed:
            return None
        return ", ".join(f"{key} {old} -> {new}" for key, (old, new) in self.changed.items())

    def record(self, train_peak_mb: float) -> dict[str, Any]:
        """metrics.json's memory keys: the process's whole peak so far (``peak_run_mb``, the
        kernel's high-water mark), the RSS when training began (``train_start_mb``: at
        :meth:`training_starts`, else at the preflight), what training added over it
        (``train_added_mb``, from the loop's sampled peak) and the estimates beside them.
        MB = 2**20 bytes, as ``peak_memory_mb``."""
        from tunesmith.advise.run_memory import process_peak_bytes

        out: dict[str, Any] = {}
        peak = process_peak_bytes()
        if peak:
            out["peak_run_mb"] = round(peak / 2**20, 1)
        start = self.rss_training_bytes or self.rss_before_bytes
        if start and train_peak_mb:
            out["train_start_mb"] = round(start / 2**20, 1)
            out["train_added_mb"] = round(max(0.0, train_peak_mb - start / 2**20), 1)
        if self.estimate is not None:
            out["estimate_run_mb"] = round(self.estimate.total_bytes / 2**20, 1)
            out["estimate_train_mb"] = round(self.estimate.train.total_bytes / 2**20, 1)
            out["estimate_dominant"] = self.estimate.dominant()
        out["gradient_checkpointing"] = self.cfg.finetune.gradient_checkpointing
        out["gradient_checkpointing_by"] = self.checkpointing_by
        return out


def check_memory(
    cfg: Config, model: Any, *, seq_len: int | None = None, available_bytes: float | None = None,
    log: Callable[[str], None] = print,
) -> MemoryCheck:
    """Measure the memory available, run :func:`preflight` and log its messages; return the
    config to train with, what it changed and why, and the whole-run estimate for it.

    ``available_bytes`` is the memory training may use; None measures it (below). Giving it
    caps a run below what the machine has free (a machine shared with other jobs).

    On CPU the estimates are the whole run's, against the process's RSS now plus the RAM still
    available. Their fixed cost is the private part from
    :func:`tunesmith.advise.run_memory.fixed_cost` (measured in a subprocess the first time on a
    machine, 10-60 s, then cached: this process's own RSS would miss what the run imports later,
    MLflow at the tracker's start, matplotlib for the plots) plus the library pages this process
    maps now (:func:`~tunesmith.advise.run_memory.library_pages_bytes`). Never stops a run: when the
    model's shape cannot be read (an architecture the estimator does not know), it says so and
    returns ``cfg`` unchanged with no estimate.
    """
    import psutil
    import torch

    from tunesmith.advise.memory import model_shape
    from tunesmith.advise.run_memory import estimate_run

    rss = _rss_bytes()
    try:
        shape = model_shape(cfg.finetune.model)
    except (TunesmithError, OSError, ValueError, KeyError) as exc:
        log(f"preflight skipped: the memory estimate needs the model's config ({exc}).")
        return MemoryCheck(cfg, None, rss)
    cuda = torch.cuda.is_available()
    if available_bytes is not None:
        available = available_bytes
    elif cuda:
        free, _ = torch.cuda.mem_get_info()
        available = free + (resident_bytes(model) if next(model.parameters()).is_cuda else 0)
    else:
        # The whole-run estimate counts everything this process holds, so its budget is the
        # process's resident memory now plus what is still available.
        available = psutil.virtual_memory().available + rss
    pages = fixed = None
    if not cuda:
        from tunesmith.advise.run_memory import fixed_cost, library_pages_bytes

        measured, pages = fixed_cost(), library_pages_bytes()
        # None where /proc is missing: then the estimates stay the training ones.
        fixed = (measured.private + pages if measured.private else measured.bytes) or None
    # A budget given by the caller is what training may use; a measured one is the process's.
    new_cfg, messages = preflight(cfg, shape, available, seq_len=seq_len, cuda=cuda, fixed=fixed,
                                  whole_run_budget=available_bytes is None)
    for message in messages:
        log(message)
    changed = {
        f"finetune.{key}": [getattr(cfg.finetune, key), getattr(new_cfg.finetune, key)]
        for key in PREFLIGHT_KEYS
        if getattr(cfg.finetune, key) != getattr(new_cfg.finetune, key)
    }
    by = ("preflight" if new_cfg.finetune.gradient_checkpointing
          and not cfg.finetune.gradient_checkpointing else "config")
    ft = new_cfg.finetune
    length = min(seq_len or new_cfg.prepare.max_length, new_cfg.prepare.max_length)
    args = MemoryArgs.from_config(new_cfg, device="cuda" if cuda else "cpu", max_length=length,
                                  batch_size=ft.batch_size)
    # On CPU: the private part of the libraries measured once per machine, their pages as
    # this process maps them (they follow the page cache, which a cached figure may not match).
    estimate = estimate_run(shape, args, library_pages=pages)
    if not cuda:
        log(f"memory: the whole run is estimated to peak at {format_bytes(estimate.total_bytes)} "
            f"resident (training itself {format_bytes(estimate.train.total_bytes)}); largest "
            f"terms: {estimate.dominant()}.")
    return MemoryCheck(new_cfg, estimate, rss, changed, messages if changed else [],
                       checkpointing_by=by)
