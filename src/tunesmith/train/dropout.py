"""Dropout whose mask costs less to draw on a CPU, swapped in for the duration of training.

``torch.nn.Dropout`` on a CPU draws its mask with ``bernoulli_``, one random number per element
through a scalar path. Profiled on MiniLM LoRA classification (batch 16 x ~30 tokens, 2-core
Xeon, torch 2.13), its 32 dropout calls per step (hidden states, attention probabilities, the
LoRA inputs) took about a fifth of the CPU time of a training step, more than any matrix
product. Drawing uniform numbers with ``torch.rand`` (a vectorised generator) and keeping the
elements below ``1 - p`` gives the same distribution of masks (each element kept with
probability ``1 - p``, independently, survivors scaled by ``1 / (1 - p)``) from the same
generator and seed, at about half the cost; docs/performance.md has the figures.

:class:`CpuDropout` is that dropout. :func:`cpu_dropout` swaps it in for every
``torch.nn.Dropout`` of a model on the CPU and gives the originals back afterwards, so a model
leaves training with the modules it came with. On a GPU nothing changes (CUDA's dropout is a
fused kernel). The masks differ from ``torch.nn.Dropout``'s for the same seed (another draw
from the generator), so a run is reproducible against itself, not element for element against
one without the swap.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class CpuDropout(torch.nn.Module):
    """Inverted dropout with a mask from uniform numbers: an element is kept where a draw from
    ``[0, 1)`` falls below ``1 - p`` and scaled by ``1 / (1 - p)``; the identity in eval mode.
    The backward pass keeps the boolean mask (one byte per element), as ``nn.Dropout`` does."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        # fp32 draws whatever x's dtype: a bf16 draw has too few values in [0, 1) to keep
        # exactly 1 - p of the elements.
        keep = torch.rand(x.shape, dtype=torch.float32, device=x.device) < (1.0 - self.p)
        return x.mul(keep).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


@contextmanager
def cpu_dropout(model: Any) -> Iterator[int]:
    """Within the block, every ``torch.nn.Dropout`` of ``model`` (exactly that class, with
    ``inplace=False``) is a :class:`CpuDropout` of the same ``p`` when the model is on the CPU;
    the original modules are back when the block ends or raises. Yields how many were swapped
    (0 on a GPU)."""
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    first = next(iter(model.parameters()), None)
    if first is not None and first.device.type == "cpu":
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Dropout and not child.inplace:
                    replacement = CpuDropout(child.p)
                    replacement.train(child.training)
                    setattr(parent, name, replacement)
                    swapped.append((parent, name, child))
    try:
        yield len(swapped)
    finally:
        for parent, name, child in reversed(swapped):
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
