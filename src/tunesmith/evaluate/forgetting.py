"""Catastrophic-forgetting check: perplexity on general text before and after finetuning.

The guide's sign of forgetting is a model that learned the task and lost general ability. A
cheap, automatic proxy: the perplexity of plain English text (the built-in ``hamlet``, or a
text file the user names in ``evaluation.forgetting_text``) measured on the base model and on
the finetuned one. A relative rise above ``evaluation.forgetting_threshold`` (0.1 = +10%) prints
a warning with the guide's remedies.

Cost: the text is cut into windows of ``window`` tokens and at most ``max_windows`` of them,
spread evenly over the text, are scored (by default 8 x 256 tokens: a few seconds on CPU for a
135M model), so the check stays small next to training.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith import assets
from tunesmith.errors import DataError
from tunesmith.evaluate.text_metrics import perplexity
from tunesmith.train.general import CHECK_WINDOWS, WINDOW, check_starts
from tunesmith.train.objectives import nll_per_row

REMEDIES = (
    "Use LoRA instead of full finetuning",
    "Lower the learning rate (e.g. 1e-5 instead of 1e-4)",
    "Train fewer epochs",
    "Mix general data with the task-specific data",
    "Freeze more layers (train only the top layers)",
)


def general_text(source: str) -> str:
    """The text of the built-in ``hamlet`` or of a UTF-8 text file."""
    if source == "hamlet":
        return assets.hamlet_text()
    path = Path(source)
    if not path.is_file():
        raise DataError(
            f"evaluation.forgetting_text: '{source}' is neither the built-in 'hamlet' nor a file.",
            hint="Name a plain-text file of general English, 'hamlet', or null to skip the check.",
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"evaluation.forgetting_text: the file {path} is empty.")
    return text


def text_windows(tokenizer: Any, text: str, window: int = WINDOW, max_windows: int = CHECK_WINDOWS) -> list[dict[str, list[int]]]:
    """Up to ``max_windows`` windows of ``window`` tokens spread evenly over the text
    (:func:`tunesmith.train.general.check_starts`: ``prepare.mix_general`` never trains on them).

    Every token but each window's first is a target (plain language modelling).
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = []
    for start in check_starts(len(ids), window, max_windows):
        chunk = list(ids[start : start + window])
        if len(chunk) >= 2:
            rows.append({"input_ids": chunk, "labels": list(chunk)})
    return rows


def general_perplexity(model: Any, tokenizer: Any, rows: list[dict[str, list[int]]], batch_size: int = 4) -> float:
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    per_row = nll_per_row(model, rows, pad_id, batch_size)
    return perplexity(sum(t for t, _ in per_row), sum(n for _, n in per_row))


@dataclass(frozen=True)
class ForgettingReport:
    text: str
    perplexity_before: float
    perplexity_after: float
    delta: float  # after - before
    relative_change: float  # delta / before
    threshold: float
    warning: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(text: str, before: float, after: float, threshold: float) -> ForgettingReport:
    delta = after - before
    relative = delta / before if before else 0.0
    return ForgettingReport(text, before, after, delta, relative, threshold, relative > threshold)


def warning_message(report: ForgettingReport) -> str:
    remedies = "\n".join(f"  - {r}" for r in REMEDIES)
    return (
        f"Possible catastrophic forgetting: perplexity on general text ({report.text}) rose from "
        f"{report.perplexity_before:.2f} to {report.perplexity_after:.2f} "
        f"({report.relative_change:+.1%}, threshold {report.threshold:.0%}).\n"
        f"The guide's remedies:\n{remedies}"
    )


def warn_if_forgetting(report: ForgettingReport) -> None:
    if report.warning:
        print(warning_message(report), file=sys.stderr)
