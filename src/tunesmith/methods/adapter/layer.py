"""The bottleneck layer and the two wrappers that hold one copy per named adapter.

A bottleneck maps ``h -> h + up(act(down(h)))``. ``up`` starts at zero, so a fresh adapter is
exactly the identity and training starts from the pretrained model's behaviour.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}


class Bottleneck(nn.Module):
    def __init__(self, dim: int, reduction_factor: int, activation: str) -> None:
        super().__init__()
        hidden = max(1, dim // reduction_factor)
        self.down = nn.Linear(dim, hidden)
        self.act = _ACTIVATIONS[activation]()
        self.up = nn.Linear(hidden, dim)
        # Near-identity start: small random down-projection, zero up-projection.
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden)))


class AdapterSite(nn.Module):
    """A frozen output projection followed by the active adapter's bottleneck (none: identity)."""

    def __init__(self, base: nn.Module, dim: int) -> None:
        super().__init__()
        self.base = base
        self.dim = dim
        self.adapters = nn.ModuleDict()
        self.active: str | None = None

    def add(self, name: str, reduction_factor: int, activation: str) -> Bottleneck:
        weight = next(self.base.parameters())
        adapter = Bottleneck(self.dim, reduction_factor, activation).to(
            device=weight.device, dtype=weight.dtype)
        self.adapters[name] = adapter
        return adapter

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.base(hidden)
        return self.adapters[self.active](out) if self.active is not None else out


class HeadSwitch(nn.Module):
    """One classification head per adapter: each task keeps its own labels on the shared base."""

    def __init__(self, head: nn.Module, name: str) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({name: head})
        self.active = name

    def add(self, name: str) -> nn.Module:
        # A copy of any existing head has the right shape; its weights are then trained or loaded.
        self.heads[name] = copy.deepcopy(next(iter(self.heads.values())))
        return self.heads[name]

    def forward(self, *args, **kwargs):
        return self.heads[self.active](*args, **kwargs)
