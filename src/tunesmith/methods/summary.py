"""What trains: parameter counts of a prepared model (the guide's arithmetic). Costs one pass
over the parameters' shapes; raises nothing."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class TrainableSummary:
    trainable: int
    total: int
    percent: float

    def __str__(self) -> str:
        return f"trainable params: {self.trainable:,} of {self.total:,} ({self.percent:.2f}%)"


def _param_count(param: nn.Parameter) -> int:
    # bitsandbytes packs two 4-bit values per byte of its storage dtype: count real weights.
    if type(param).__name__ == "Params4bit":
        storage = getattr(param, "quant_storage", None)
        return param.numel() * 2 * (storage.itemsize if storage is not None else 1)
    return param.numel()


def trainable_summary(model: nn.Module) -> TrainableSummary:
    """Parameters that train, all parameters (adapters included) and the percentage."""
    trainable = total = 0
    for param in model.parameters():
        count = _param_count(param)
        total += count
        if param.requires_grad:
            trainable += count
    return TrainableSummary(trainable, total, 100.0 * trainable / total if total else 0.0)
