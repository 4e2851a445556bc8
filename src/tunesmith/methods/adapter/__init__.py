"""Bottleneck adapters (Houlsby, Pfeiffer), written here: no package offers them for transformers 5.

Shape as for the other methods: :mod:`.config` (what to build), :mod:`.layer` (the bottleneck and
its wrapper), :mod:`.model` (where the sites are, wrap, add, switch, save and load state).
Trainable parameters per site: ``2 * d * (d / reduction_factor) + d + d / reduction_factor``.
They add sequential layers, so unlike LoRA they cannot be merged into the base weights.
"""

from tunesmith.methods.adapter.config import BottleneckConfig
from tunesmith.methods.adapter.model import (
    active_adapter,
    adapter_names,
    adapter_state_dict,
    add_adapter,
    apply_adapter,
    load_adapter_state,
    set_active,
)

__all__ = [
    "BottleneckConfig",
    "active_adapter",
    "adapter_names",
    "adapter_state_dict",
    "add_adapter",
    "apply_adapter",
    "load_adapter_state",
    "set_active",
]
