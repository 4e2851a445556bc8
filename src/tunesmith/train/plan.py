"""What one task family hands the training loop: :class:`TaskPlan`.

Each family's module builds one from the loaded model and the train/validation records
(:func:`tunesmith.train.classification.classification_plan`,
:func:`tunesmith.train.causal.causal_plan`); ``tunesmith.pipelines.train`` passes its parts to
:func:`tunesmith.train.loop.fit`. Pure data; costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.train.encoding import EncodedDataset
from tunesmith.train.objectives import Objective
from tunesmith.train.packing import PackingPlan

# (examples, pad_token_id) -> a batch of tensors
Collate = Callable[[Sequence[dict[str, Any]], int], dict[str, Any]]


@dataclass
class TaskPlan:
    """Encoded train data, how to batch it, the objective, and how to validate."""

    train_data: EncodedDataset
    objective: Objective
    collate: Collate  # pads a micro-batch of train_data's examples
    # model -> validation scores; None: no validation (no best checkpoint, no early stopping).
    evaluate: Callable[[Any], dict[str, float]] | None
    best_metric: str  # the validation key that picks the best checkpoint ("loss" is minimised)
    notes: list[str] = field(default_factory=list)  # lines for the console (truncation counts ...)
    # The max_length the plan encoded with, when it chose one (saved into the run's config).
    max_length: int | None = None
    # Score the starting weights (step 0) as a candidate for the best checkpoint.
    evaluate_first: bool = False
    # Causal LMs: what packing saves (or would have), reported in metrics.json.
    packing: PackingPlan | None = None
    # The encoded validation split, for a validation the evaluation side supplies.
    val_data: EncodedDataset | None = None
    # Classifiers: the baseline probe fitted on the frozen base (train.probe.Probe), saved in the
    # run folder for the evaluation to reuse.
    probe: Any = None
