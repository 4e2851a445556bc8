"""Catastrophic-forgetting check: perplexity on general text before and after finetuning.

The guide's sign of forgetting is a model that learned the task and lost general ability. A
cheap, automatic proxy: the perplexity of plain English text (the built-in ``hamlet``, or a
text file the user names in ``evaluation.forgetting_text``) measured on the base model and on
the finetuned one. A relative rise above ``evaluation.forgetting_threshold`` (0.1 = +10%) prints
a warning with the guide's remedies as exact ``--set`` overrides derived from the run
(:func:`remedies`: a learning rate scaled by the measured rise, general text mixed in, the lower
blocks frozen, fewer steps; LoRA for a full finetune).

Cost: the text is cut into windows of ``window`` tokens and at most ``max_windows`` of them,
spread evenly over the text, are scored (by default 8 x 256 tokens: a few seconds on CPU for a
135M model), so the check stays small next to training.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith import assets
from tunesmith.config import LORA_FAMILY, override_value
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


# The share of general text suggested when none was mixed in: a starting point, not a tuned
# value (on the sentiment example's 40 steps it did not act yet: docs/generative.md), and the
# most prepare.mix_general allows.
SUGGESTED_MIX = 0.3
MAX_MIX = 0.5


@dataclass(frozen=True)
class Remedy:
    """One of the guide's remedies as an exact ``--set`` override, with how it was derived."""

    key: str  # e.g. "finetune.learning_rate"
    value: Any
    reason: str

    @property
    def override(self) -> str:
        return f"{self.key}={override_value(self.value)}"

    def to_dict(self) -> dict[str, Any]:
        return {"override": self.override, "reason": self.reason}


def lower_learning_rate(learning_rate: float, relative_change: float, threshold: float) -> float:
    """The rate that should bring the measured rise down to half the threshold.

    To first order the loss on general text moves in proportion to the weight change, and
    Adam's weight change per step is about the learning rate whatever the gradients' scale; so
    with the same steps the rise scales with the rate: ``lr x (threshold / 2) / rise``, to two
    significant digits (2e-3 with +19.1% and a 10% threshold -> 5.2e-4). Half the threshold,
    so that the re-run lands clearly under it. Pure; raises ValueError for a rise <= 0.
    """
    if relative_change <= 0:
        raise ValueError(f"no rise to bring down (relative change {relative_change})")
    return float(f"{learning_rate * (threshold / 2) / relative_change:.2g}")


def remedies(report: ForgettingReport, cfg: Any, num_blocks: int | None) -> list[Remedy]:
    """The guide's remedies for this run as ``--set`` overrides, each a re-run on its own.

    ``cfg`` is the run's :class:`~tunesmith.config.Config`; ``num_blocks`` the model's number
    of transformer blocks (None leaves freezing out). Empty when the report did not warn.
    """
    if not report.warning or report.relative_change <= 0:
        return []
    ft, prep = cfg.finetune, cfg.prepare
    out = []
    if ft.method == "full":
        out.append(Remedy("finetune.method", "lora", "the guide's first remedy: LoRA leaves the "
                          "base weights untouched and changes far fewer parameters"))
    lr = lower_learning_rate(ft.learning_rate, report.relative_change, report.threshold)
    out.append(Remedy(
        "finetune.learning_rate", lr,
        f"{override_value(ft.learning_rate)} x {report.threshold / 2:.0%} / "
        f"{report.relative_change:.1%}: the rise grows about in proportion to the rate, so this "
        "aims at half the threshold; the task may then learn less in the same steps"))
    if prep.mix_general < MAX_MIX:
        share = SUGGESTED_MIX if not prep.mix_general else min(MAX_MIX, 2 * prep.mix_general)
        out.append(Remedy("prepare.mix_general", share,
                          f"{share:.0%} of the learned tokens from general text "
                          f"({prep.mix_general_source}); its loss is logged apart as general_loss"))
    if num_blocks and ft.method in LORA_FAMILY | {"full"} and ft.freeze_layers < num_blocks - 1:
        frozen = max(num_blocks // 2, (ft.freeze_layers + num_blocks) // 2)
        frozen = min(frozen, num_blocks - 1)
        out.append(Remedy("finetune.freeze_layers", frozen,
                          f"train only the upper {num_blocks - frozen} of {num_blocks} blocks; the "
                          "lower ones keep their pretrained behaviour"))
    if ft.max_steps and ft.max_steps >= 2:
        out.append(Remedy("finetune.max_steps", ft.max_steps // 2, "half the steps: the guide's "
                          "\"fewer epochs\""))
    elif not ft.max_steps and ft.num_epochs > 1:
        out.append(Remedy("finetune.num_epochs", ft.num_epochs - 1, "one epoch fewer"))
    return out


def warning_message(
    report: ForgettingReport, fixes: Sequence[Remedy] = (), config_path: str | None = None
) -> str:
    """The warning, then the remedies: as ``--set`` overrides for ``tunesmith run --config
    config_path`` when ``fixes`` are given, else the guide's list in words."""
    head = (
        f"Possible catastrophic forgetting: perplexity on general text ({report.text}) rose from "
        f"{report.perplexity_before:.2f} to {report.perplexity_after:.2f} "
        f"({report.relative_change:+.1%}, threshold {report.threshold:.0%}).\n"
    )
    if not fixes:
        return head + "The guide's remedies:\n" + "\n".join(f"  - {r}" for r in REMEDIES)
    command = f"tunesmith run --config {config_path}" if config_path else "tunesmith run"
    lines = [f"  {command} --set {fix.override}\n      ({fix.reason})" for fix in fixes]
    return head + "The guide's remedies, each a re-run to try on its own:\n" + "\n".join(lines)


def warn_if_forgetting(report: ForgettingReport) -> None:
    if report.warning:
        print(warning_message(report), file=sys.stderr)
