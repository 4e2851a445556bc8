"""The guide's Method Comparison Table, with measured columns instead of rules of thumb.

A report, so it sits with the reports: pure functions over per-method results (``metrics.json``
of each run): the rows, the markdown and the plot. Training the methods is :func:`tunesmith.pipelines.methods.compare_methods`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith.evaluate.metrics import LOWER_IS_BETTER

# The guide's table, for the reader to hold the measurement against.
GUIDE_CLAIMS: dict[str, tuple[str, str]] = {
    "full": ("100% trained, best", "Large dataset, lots of compute"),
    "lora": ("~0.1-1% trained, 90% of full", "Most common, great balance"),
    "qlora": ("~0.1-1% trained, 85% of full", "Limited GPU memory"),
    "adapter": ("~2-5% trained, good", "Modular task switching"),
    "dora": ("like LoRA, closer to full", "When LoRA falls short of full"),
    "lora_plus": ("like LoRA, learns faster", "LoRA in fewer steps"),
}


@dataclass(frozen=True)
class MethodResult:
    method: str
    learning_rate: float
    trainable_params: int
    trainable_percent: float
    peak_memory_mb: float
    seconds_per_epoch: float
    metric: float
    run_dir: str
    saved_mb: float | None = None  # the trained weights on disk (what a task adds to the base)

    @classmethod
    def from_metrics(cls, method: str, learning_rate: float, metrics: dict[str, Any],
                     metric: str, train_examples: int, run_dir: str | Path) -> MethodResult:
        train = metrics["train"]
        # Throughput gives the time of one full pass, also when max_steps ended mid-epoch.
        per_epoch = train_examples / train["samples_per_second"] if train["samples_per_second"] else 0.0
        return cls(method, learning_rate, int(train["trainable_params"]),
                   float(train["trainable_percent"]), float(train["peak_memory_mb"]),
                   per_epoch, float(metrics["finetuned"][metric]), str(run_dir),
                   train.get("adapter_mb"))


def relative_to_full(results: Sequence[MethodResult], metric: str) -> dict[str, float | None]:
    """Each method's metric as a percentage of full finetuning's (None without a full run)."""
    full = next((r.metric for r in results if r.method == "full"), None)
    out: dict[str, float | None] = {}
    for r in results:
        if full is None or full == 0 or r.metric == 0:
            out[r.method] = None
        elif metric in LOWER_IS_BETTER:
            out[r.method] = 100.0 * full / r.metric
        else:
            out[r.method] = 100.0 * r.metric / full
    return out


def comparison_markdown(results: Sequence[MethodResult], metric: str, settings: str) -> str:
    """The table as markdown, with the settings it was measured under."""
    relative = relative_to_full(results, metric)
    lines = [
        f"| Method | LR | Parameters trained | Saved size | Peak memory | Time per epoch "
        f"| Test {metric} | % of full | Guide says | Use case |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        claim, use = GUIDE_CLAIMS.get(r.method, ("", ""))
        pct = f"{relative[r.method]:.1f}%" if relative[r.method] is not None else "n/a"
        size = "n/a" if r.saved_mb is None else (
            f"{r.saved_mb:,.1f} MB" if r.saved_mb >= 1 else f"{r.saved_mb * 1000:,.0f} kB")
        lines.append(
            f"| {r.method} | {r.learning_rate:g} | {r.trainable_params:,} ({r.trainable_percent:.2f}%) "
            f"| {size} | {r.peak_memory_mb:,.0f} MB | {r.seconds_per_epoch:,.0f} s | {r.metric:.4f} | {pct} "
            f"| {claim} | {use} |"
        )
    return "\n".join(lines) + f"\n\n{settings}\n"


def plot_comparison(results: Sequence[MethodResult], metric: str, path: str | Path) -> Path:
    """Three bar charts side by side: parameters trained (%), peak memory, test metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.method for r in results]
    panels = [
        ("parameters trained (%, log)", [r.trainable_percent for r in results], True),
        ("peak memory (MB)", [r.peak_memory_mb for r in results], False),
        (f"test {metric}", [r.metric for r in results], False),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (title, values, log) in zip(axes, panels, strict=True):
        ax.bar(names, values, color="#4c72b0")
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def results_json(results: Sequence[MethodResult], metric: str) -> dict[str, Any]:
    relative = relative_to_full(results, metric)
    return {"metric": metric,
            "methods": [{**asdict(r), "percent_of_full": relative[r.method]} for r in results]}
