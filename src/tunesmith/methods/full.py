"""Full finetuning and the guide's two transfer-learning strategies.

- ``freeze_layers: N``: the embeddings and the lowest N transformer blocks keep their pretrained
  weights; everything above (and the task head) trains.
- ``layerwise_lr_decay: d``: lower blocks learn more slowly. The head and the top-level modules
  outside the blocks get the base learning rate, block ``i`` of ``L`` gets ``lr * d**(L - i)``
  and the embeddings ``lr * d**(L + 1)``. The scaling is worked out from parameter names, so it
  also applies to the trainable parameters of LoRA or adapters inside those blocks.

Cost: full finetuning trains and keeps optimizer state for every weight (AdamW: about 16 bytes
per parameter in fp32), which is why the guide reaches for LoRA first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from tunesmith.config import FinetuneConfig
from tunesmith.errors import ConfigError


@dataclass(frozen=True)
class Layout:
    """Where the stack of transformer blocks and the embeddings sit in a model."""

    blocks_prefix: str  # e.g. "bert.encoder.layer" or "model.layers"
    num_blocks: int
    embeddings_prefix: str  # e.g. "bert.embeddings" or "model.embed_tokens"

    def depth(self, param_name: str) -> int | None:
        """0 for embeddings, 1..L for blocks, None for anything else (head, final norm)."""
        name = _strip_wrappers(param_name)
        if name.startswith(self.embeddings_prefix + "."):
            return 0
        if name.startswith(self.blocks_prefix + "."):
            index = name[len(self.blocks_prefix) + 1 :].split(".", 1)[0]
            if index.isdigit():
                return int(index) + 1
        return None


def _strip_wrappers(name: str) -> str:
    # PEFT nests the model as base_model.model.<original names>.
    return name.removeprefix("base_model.model.")


def find_layout(model: nn.Module) -> Layout:
    """Locate the block stack (the biggest ModuleList of identical blocks) and the embeddings."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(block) for block in module}) != 1:
                continue
            size = sum(p.numel() for p in module.parameters())
            if best is None or size > best[0]:
                best = (size, _strip_wrappers(name), module)
    if best is None:
        raise ConfigError(f"{type(model).__name__} has no stack of transformer blocks to freeze or decay.")
    hf_model: Any = model  # a transformers model: get_input_embeddings is its method
    embedding = hf_model.get_input_embeddings()
    emb_name = next(_strip_wrappers(n) for n, m in model.named_modules() if m is embedding)
    # BERT keeps word, position and type embeddings (and a norm) under one "embeddings" module.
    parent = emb_name.rsplit(".", 1)[0] if "." in emb_name else ""
    if parent.rsplit(".", 1)[-1] == "embeddings":
        emb_name = parent
    return Layout(best[1], len(best[2]), emb_name)


def apply_full(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """Make every weight trainable, then freeze the embeddings and the lowest ``freeze_layers`` blocks."""
    for param in model.parameters():
        param.requires_grad_(True)
    if cfg.freeze_layers:
        layout = find_layout(model)
        if cfg.freeze_layers > layout.num_blocks:
            raise ConfigError(
                f"finetune.freeze_layers is {cfg.freeze_layers} but the model has only "
                f"{layout.num_blocks} blocks.",
                hint=f"Use 0..{layout.num_blocks} (the lowest N blocks and the embeddings freeze).",
            )
        for name, param in model.named_parameters():
            depth = layout.depth(name)
            if depth is not None and depth <= cfg.freeze_layers:
                param.requires_grad_(False)
    return model


def layer_lr_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """Parameter name -> learning-rate multiplier under layer-wise decay (1.0 when decay is 1)."""
    names = [n for n, _ in model.named_parameters()]
    if decay == 1.0:
        return dict.fromkeys(names, 1.0)
    layout = find_layout(model)
    top = layout.num_blocks + 1  # the head and final norm sit one above the last block
    scales = {}
    for name in names:
        depth = layout.depth(name)
        scales[name] = 1.0 if depth is None else decay ** (top - depth)
    return scales
