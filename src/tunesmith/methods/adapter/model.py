"""Model-level bottleneck adapters: find the sites per architecture, wrap them, add/switch/save.

Sites are the output projections of each transformer block, so the adapter sees the sub-layer's
output before the residual connection (and, in BERT, before its LayerNorm), as in Houlsby et al.:
- BERT family: ``attention.output.dense`` (attention) and ``output.dense`` (feed-forward);
- Llama family: ``self_attn.o_proj`` and ``mlp.down_proj``; GPT-2: ``attn.c_proj``, ``mlp.c_proj``;
  DistilBERT: ``attention.out_lin``, ``ffn.lin2``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunesmith.errors import ConfigError, UsageError
from tunesmith.methods.adapter.config import BottleneckConfig
from tunesmith.methods.adapter.layer import AdapterSite, HeadSwitch
from tunesmith.methods.full import find_layout

# (attention output, feed-forward output) inside one block, per architecture family.
SITE_PATHS: tuple[tuple[str, str], ...] = (
    ("attention.output.dense", "output.dense"),
    ("self_attn.o_proj", "mlp.down_proj"),
    ("attn.c_proj", "mlp.c_proj"),
    ("attention.out_lin", "ffn.lin2"),
)
CLASSIFIER_HEADS = ("classifier", "score")


def _out_features(module: nn.Module) -> int:
    # nn.Linear has out_features; GPT-2's Conv1D calls it nf.
    layer: Any = module
    return getattr(layer, "out_features", None) or layer.nf


def _site_names(model: nn.Module, adapter_type: str) -> list[str]:
    layout = find_layout(model)
    modules = dict(model.named_modules())
    first = f"{layout.blocks_prefix}.0"
    for attention, feed_forward in SITE_PATHS:
        if f"{first}.{attention}" in modules and f"{first}.{feed_forward}" in modules:
            paths = (attention, feed_forward) if adapter_type == "houlsby" else (feed_forward,)
            return [
                f"{layout.blocks_prefix}.{i}.{path}"
                for i in range(layout.num_blocks)
                for path in paths
            ]
    raise ConfigError(
        f"bottleneck adapters do not know where to go in {type(model).__name__} "
        "(known: BERT-, Llama-, GPT-2- and DistilBERT-style blocks).",
        hint="Use finetune.method: lora, which finds its targets in any model with linear layers.",
    )


def sites(model: nn.Module) -> dict[str, AdapterSite]:
    return {n: m for n, m in model.named_modules() if isinstance(m, AdapterSite)}


def head_switch(model: nn.Module) -> HeadSwitch | None:
    return next((m for m in model.modules() if isinstance(m, HeadSwitch)), None)


def _wrap(model: nn.Module, config: BottleneckConfig, *, task: str) -> None:
    """Replace the site layers with AdapterSite wrappers (and the head with a HeadSwitch)."""
    for name in _site_names(model, config.adapter_type):
        parent_name, child = name.rsplit(".", 1)
        parent = model.get_submodule(parent_name)
        layer = getattr(parent, child)
        setattr(parent, child, AdapterSite(layer, _out_features(layer)))
    if task == "classification":
        for head_name in CLASSIFIER_HEADS:
            if isinstance(getattr(model, head_name, None), nn.Module):
                setattr(model, head_name, HeadSwitch(getattr(model, head_name), "default"))
                return


def add_adapter(model: nn.Module, name: str, config: BottleneckConfig, *, task: str) -> None:
    """Add a fresh (identity) adapter ``name``, wrapping the model first if needed; activates it."""
    if not sites(model):
        _wrap(model, config, task=task)
    for site in sites(model).values():
        if name in site.adapters:
            raise UsageError(f"an adapter named '{name}' is already loaded on this model.")
        site.add(name, config.reduction_factor, config.activation)
    head = head_switch(model)
    if head is not None and name not in head.heads:
        head.add(name)
    set_active(model, name)


def set_active(model: nn.Module, name: str) -> None:
    for site in sites(model).values():
        site.active = name
    head = head_switch(model)
    if head is not None:
        head.active = name


def adapter_names(model: nn.Module) -> list[str]:
    found = next(iter(sites(model).values()), None)
    return list(found.adapters) if found is not None else []


def active_adapter(model: nn.Module) -> str | None:
    found = next(iter(sites(model).values()), None)
    return found.active if found is not None else None


def apply_adapter(model: nn.Module, config: BottleneckConfig, *, task: str) -> nn.Module:
    """Freeze the base, insert adapter 'default'; only it (and the classification head) trains."""
    for param in model.parameters():
        param.requires_grad_(False)
    add_adapter(model, "default", config, task=task)
    for site in sites(model).values():
        site.adapters["default"].requires_grad_(True)
    head = head_switch(model)
    if head is not None:
        head.heads["default"].requires_grad_(True)
    return model


def adapter_state_dict(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """Adapter ``name``'s weights (and its head), keyed without the adapter name."""
    state = {}
    for path, site in sites(model).items():
        for key, value in site.adapters[name].state_dict().items():
            state[f"{path}.{key}"] = value.detach().contiguous()
    head = head_switch(model)
    if head is not None:
        for key, value in head.heads[name].state_dict().items():
            state[f"head.{key}"] = value.detach().contiguous()
    return state


def load_adapter_state(model: nn.Module, name: str, state: dict[str, torch.Tensor]) -> None:
    """Fill adapter ``name`` (already added) from :func:`adapter_state_dict` output."""
    targets: dict[str, nn.Module] = {p: s.adapters[name] for p, s in sites(model).items()}
    head = head_switch(model)
    if head is not None:
        targets["head"] = head.heads[name]
    for prefix, module in targets.items():
        part = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
        try:
            module.load_state_dict(part)
        except RuntimeError as exc:
            raise UsageError(
                f"the saved adapter does not fit this base model at '{prefix}': {exc}".splitlines()[0],
                hint="Load it on the base model (and number of labels) it was trained with.",
            ) from None
