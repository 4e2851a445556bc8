"""Settings of a bottleneck adapter (what is saved in tunesmith_adapter.json to rebuild it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from tunesmith.config import FinetuneConfig


@dataclass(frozen=True)
class BottleneckConfig:
    # houlsby: after the attention output and after the feed-forward output (Houlsby et al. 2019);
    # pfeiffer: after the feed-forward output only (Pfeiffer et al. 2021): half the parameters,
    # about the same accuracy in their study.
    adapter_type: Literal["houlsby", "pfeiffer"] = "pfeiffer"
    # hidden size / reduction_factor is the bottleneck width (16: 384 -> 24 for MiniLM).
    reduction_factor: int = 16

    @classmethod
    def from_finetune(cls, cfg: FinetuneConfig) -> BottleneckConfig:
        return cls(cfg.adapter_type, cfg.adapter_reduction_factor)

    @property
    def activation(self) -> str:
        # The original papers' choices, as AdapterHub configures them.
        return "silu" if self.adapter_type == "houlsby" else "relu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
