"""The run's pictures: loss curves, learning rate, confusion matrix (PNG, matplotlib Agg).

Each function reads plain data (history records, a matrix) and writes one file, so reports
and notebooks can redraw them from a run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _series(history: Sequence[dict[str, Any]], kind: str, key: str) -> tuple[list, list]:
    points = [(r["step"], r[key]) for r in history if r.get("kind") == kind and r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_loss(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Train loss (mean over each logging window) and validation loss against optimizer steps,
    and the loss on mixed-in general text (``prepare.mix_general``) when the run logged one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps, loss = _series(history, "train", "loss")
    ax.plot(steps, loss, label="train loss", color="tab:blue")
    general_steps, general_loss = _series(history, "train", "general_loss")
    if general_steps:
        ax.plot(general_steps, general_loss, "--", label="general-text loss (mixed in)", color="tab:green")
    val_steps, val_loss = _series(history, "eval", "val_loss")
    if val_steps:
        ax.plot(val_steps, val_loss, "o-", label="validation loss", color="tab:orange")
    best = [r["step"] for r in history if r.get("kind") == "eval" and r.get("is_best")]
    if best:
        ax.axvline(best[-1], color="grey", linestyle=":", label=f"best (step {best[-1]})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, plt, path)


def plot_lr(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The learning-rate schedule as it was applied (warmup then decay)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3))
    steps, lr = _series(history, "train", "lr")
    ax.plot(steps, lr, color="tab:green")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning rate")
    ax.grid(alpha=0.3)
    return _save(fig, plt, path)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path,
    title: str = "Confusion matrix (test)",
) -> Path:
    """Counts per (true, predicted) class, with the count written in each cell."""
    plt = _pyplot()
    size = max(3.5, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > peak / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
