"""QLoRA: LoRA on a base whose weights are stored in 4-bit NF4 (double quantisation).

The base must already be loaded in 4-bit (``tunesmith.models.load_model(..., load_in_4bit=True,
compute_dtype=cfg.qlora_compute_dtype)``, bitsandbytes; it works on CPU too). Here it is prepared
for k-bit training (norms and head in fp32, input gradients for checkpointing) and LoRA goes on
top; everything else is LoRA's (see :mod:`tunesmith.methods.lora`).

Cost: about 0.5 byte per frozen weight instead of 4; every forward dequantises, so steps are
slower. On a 135M model activations and the 49k-vocabulary logits dominate memory, so 4-bit saves
little there; the saving grows with model size (the guide's 7B-on-one-GPU case).
"""

from __future__ import annotations

from torch import nn

from tunesmith.config import FinetuneConfig
from tunesmith.errors import ConfigError
from tunesmith.methods.lora import apply_lora


def is_4bit(model: nn.Module) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False)) or any(
        type(p).__name__ == "Params4bit" for p in model.parameters()
    )


def bnb_config(compute_dtype: str = "float32"):
    """The BitsAndBytesConfig QLoRA loads its base with: NF4, double quantisation."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
    )


def apply_qlora(model: nn.Module, cfg: FinetuneConfig, *, task: str) -> nn.Module:
    """Prepare a 4-bit base for training and add LoRA adapters; raises ConfigError otherwise."""
    if not is_4bit(model):
        raise ConfigError(
            "finetune.method 'qlora' needs the base model loaded in 4-bit, but it is not.",
            hint="Load it with tunesmith.models.load_model(name, task=..., load_in_4bit=True) "
            "(`tunesmith run` does this for method qlora), or use method 'lora'.",
        )
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=cfg.gradient_checkpointing
    )
    return apply_lora(model, cfg, task=task)
