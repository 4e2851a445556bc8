"""The learning-rate range test the guide asks for ("use a learning rate finder").

:func:`range_test` trains the model it is given (callers hand it a fresh copy: the pipeline loads
the model anew, so no run's weights change) for up to ``steps`` optimizer steps while the
learning rate rises exponentially from ``start_lr`` to ``end_lr``, one micro-batch per step. The
loss is smoothed with an exponential moving average (beta 0.98, bias-corrected) and the test
stops once the smoothed loss exceeds ``DIVERGE`` (4) times its best: the learning rate is too
large from there on.

The suggestion is the learning rate where the smoothed loss falls fastest (the steepest
negative slope against log(lr)), looked for between the first 10% of the points (still noisy)
and the minimum, and never above a tenth of the learning rate at the minimum (past that the
loss is about to turn). The reason printed with it gives both figures.

Costs: ``steps`` forward/backward passes of one micro-batch (about 1 minute for MiniLM + LoRA
at batch 16 on 2 CPU cores).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import FinetuneConfig
from tunesmith.errors import DataError

DIVERGE = 4.0
SMOOTHING = 0.98
# A smoothed loss that fell less than this fraction from its start to its minimum is a shallow
# dip: the suggestion then rests on noise. Measured on the demo (MiniLM + LoRA, 4,800
# rotten-tomatoes snippets): 100 steps dipped 2.7% and suggested 9.3e-3, which collapsed the
# classifier onto the majority class (0.574); 300 steps dipped 7.6% and suggested 7.5e-4, which
# reached 0.801 (the guide's 2e-4: 0.755, the demo's 2e-3: 0.791).
SHALLOW_DIP = 0.05


@dataclass
class LrFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    reason: str
    lr_at_min: float
    diverged_at: int | None  # the step whose smoothed loss passed DIVERGE x best, if any
    plot: Path | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suggestion": self.suggestion, "reason": self.reason, "lr_at_min": self.lr_at_min,
            "diverged_at": self.diverged_at, "steps": len(self.lrs),
            "lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed,
            "plot": str(self.plot) if self.plot else None, "notes": self.notes,
        }


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float, float, str]:
    """(suggestion, lr at the minimum, reason) from a finished range test."""
    if len(lrs) < 5:
        raise DataError(f"the range test ran only {len(lrs)} steps; it needs at least 5 to "
                        "suggest a learning rate.", hint="Give it more training data or steps.")
    low = min(range(len(smoothed)), key=smoothed.__getitem__)
    lr_min = lrs[low]
    start = max(1, len(lrs) // 10)
    if low - start < 2:
        # The loss was lowest right at the start: everything tried was already too large.
        return lrs[0], lr_min, (f"the loss never fell: already the smallest rate tried "
                                f"({lrs[0]:.1e}) is at the minimum; try a lower start")
    slopes = [
        (smoothed[k + 1] - smoothed[k - 1]) / (math.log10(lrs[k + 1]) - math.log10(lrs[k - 1]))
        for k in range(start, low)
    ]
    steepest = start + min(range(len(slopes)), key=slopes.__getitem__)
    suggestion = min(lrs[steepest], lr_min / 10)
    why = (f"steepest descent of the smoothed loss at {lrs[steepest]:.1e}; lowest loss at "
           f"{lr_min:.1e}, a tenth of that is {lr_min / 10:.1e}; the smaller of the two")
    return suggestion, lr_min, why


def range_test(
    model: Any,
    train_data: Any,
    *,
    objective: Any,
    cfg: FinetuneConfig,
    pad_token_id: int,
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    steps: int = 100,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    collate: Callable[[Sequence[dict[str, Any]], int], dict[str, Any]] | None = None,
) -> LrFindResult:
    """Run the range test on ``model`` (trained in place) over ``train_data`` (an
    :class:`~tunesmith.train.encoding.EncodedDataset`). Writes ``lr_find.png`` into
    ``out_dir`` when given. ``collate`` pads a batch (the task plan's; default
    :func:`tunesmith.train.encoding.collate`). Raises DataError when too few steps ran to
    suggest anything."""
    import torch

    from tunesmith.methods import optimizer_param_groups
    from tunesmith.train import encoding

    collate = collate or encoding.collate

    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr:g}, {end_lr:g}")
    torch.manual_seed(cfg.seed)
    groups = optimizer_param_groups(model, cfg)
    # LoRA+ and layer-wise decay set per-group rates relative to the base rate: keep the ratios.
    scales = [g.get("lr", cfg.learning_rate) / cfg.learning_rate for g in groups]
    optimizer = torch.optim.AdamW(groups, lr=start_lr)
    growth = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    model.train()
    batches: list[list[int]] = []
    epoch = 0
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best, diverged = 0.0, math.inf, None
    for step in range(steps):
        if not batches:
            batches = encoding.batch_order(train_data.lengths, cfg.batch_size, seed=cfg.seed, epoch=epoch,
                                  group_by_length=cfg.group_by_length)
            epoch += 1
        lr = start_lr * growth**step
        for group, scale in zip(optimizer.param_groups, scales, strict=True):
            group["lr"] = lr * scale
        batch = collate([train_data.examples[i] for i in batches.pop()], pad_token_id)
        loss_sum, n_targets = objective.loss(model, batch)
        loss = loss_sum / max(1, int(n_targets))
        loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        lrs.append(lr)
        losses.append(value)
        if not math.isfinite(value):
            diverged = step
            break
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        smooth = avg / (1 - SMOOTHING ** (step + 1))
        smoothed.append(smooth)
        best = min(best, smooth)
        if log is not None and step % 20 == 0:
            log(f"lr-find step {step}: lr {lr:.1e}, loss {value:.4f}")
        if smooth > DIVERGE * best:
            diverged = step
            break
    points = len(smoothed)
    suggestion, lr_min, reason = suggest(lrs[:points], smoothed)
    result = LrFindResult(lrs[:points], losses[:points], smoothed, suggestion, reason, lr_min,
                          diverged)
    if diverged is None:
        result.notes.append(f"the loss did not diverge up to {lrs[-1]:.1e}: the suggestion is "
                            "from the curve so far")
    dip = 1 - min(smoothed) / smoothed[0] if smoothed and smoothed[0] > 0 else 0.0
    if dip < SHALLOW_DIP:
        result.notes.append(
            f"shallow dip: the smoothed loss fell only {dip:.1%} before its minimum, so the "
            f"suggestion is weak; rerun with about 3x the steps (--steps {3 * steps}), which "
            "gives each learning rate time to move the loss"
        )
    if out_dir is not None:
        result.plot = plot_range_test(result, Path(out_dir) / "lr_find.png")
    return result


def plot_range_test(result: LrFindResult, path: Path) -> Path:
    """Loss against learning rate (log scale), the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, alpha=0.3, label="loss")
    ax.plot(result.lrs, result.smoothed, label="smoothed loss")
    ax.axvline(result.suggestion, color="tab:red", linestyle="--",
               label=f"suggestion {result.suggestion:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
