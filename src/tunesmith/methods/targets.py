"""Which layers a method attaches to, found per architecture.

``"attention"`` means the guide's LoRA default: the query and value projections. Their names
differ between architectures (BERT ``query``/``value``, Llama ``q_proj``/``v_proj``, GPT-2's fused
``c_attn`` ...), so they are looked up in the model rather than assumed. ``"all-linear"`` is every
linear layer of the body (not the output head). An explicit list is checked against the model,
and a name that matches nothing fails with the names that would.
"""

from __future__ import annotations

from torch import nn

from tunesmith.errors import ConfigError

# (query, value) leaf names by architecture family, most common first. A model matches the first
# family whose names all occur among its linear layers.
ATTENTION_NAMES: tuple[tuple[str, ...], ...] = (
    ("query", "value"),  # BERT, RoBERTa, ELECTRA, MiniLM
    ("q_proj", "v_proj"),  # Llama, Mistral, Qwen, SmolLM2, OPT, BART
    ("q_lin", "v_lin"),  # DistilBERT
    ("c_attn",),  # GPT-2 (query, key and value in one Conv1D)
    ("query_key_value",),  # GPT-NeoX, Falcon, BLOOM
    ("Wqkv",),  # ModernBERT, MPT
    ("q", "v"),  # T5
)

# Output heads stay out of "all-linear": classification heads train whole, LM heads stay frozen.
HEAD_NAMES = frozenset({"classifier", "score", "lm_head", "cls", "qa_outputs"})


def _is_linear(module: nn.Module) -> bool:
    # bitsandbytes' Linear4bit subclasses nn.Linear; GPT-2 uses transformers' Conv1D.
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def linear_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Full name -> linear module, outside the output heads."""
    found = {}
    for name, module in model.named_modules():
        parts = name.split(".")
        if _is_linear(module) and not HEAD_NAMES.intersection(parts):
            found[name] = module
    return found


def leaf_names(model: nn.Module) -> list[str]:
    """Distinct last name components of the body's linear layers, sorted."""
    return sorted({name.rsplit(".", 1)[-1] for name in linear_layers(model)})


def resolve_targets(model: nn.Module, targets: str | list[str]) -> list[str]:
    """Leaf names of the linear layers to adapt. Raises ConfigError for names not in the model."""
    available = leaf_names(model)
    if targets == "attention":
        for family in ATTENTION_NAMES:
            if all(name in available for name in family):
                return list(family)
        raise ConfigError(
            f"could not find the attention query/value projections in {type(model).__name__}.",
            hint="Set finetune.lora_target_modules to a list of its linear layers, chosen from: "
            + ", ".join(available),
        )
    if targets == "all-linear":
        if not available:
            raise ConfigError(f"{type(model).__name__} has no linear layers to adapt.")
        return available
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(
            f"finetune.lora_target_modules: {', '.join(repr(m) for m in missing)} "
            f"not found among the linear layers of {type(model).__name__}.",
            hint="Available: " + ", ".join(available) + " (or 'attention' / 'all-linear').",
        )
    return list(targets)
