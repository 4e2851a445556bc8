"""LoRA and its two refinements the guide names as the next step, on PEFT.

- ``lora``: a frozen weight ``W`` plus a trained low-rank update ``B @ A * alpha / r``
  (``A``: r x in, ``B``: out x r, ``B`` starts at zero so training starts from the base model).
  Trainable parameters per adapted ``out x in`` weight: ``r * (in + out)``; r=8 on 4096x4096 is
  65,536, 0.39% of that weight.
- ``dora``: the update is split into a direction (LoRA) and a per-output-row magnitude vector
  (``LoraConfig(use_dora=True)``); adds ``out`` parameters per weight and roughly doubles the
  adapter's compute, and merges like LoRA.
- ``lora_plus``: plain LoRA weights, but ``B`` learns ``lora_plus_ratio`` times faster than ``A``
  (see :func:`tunesmith.methods.optimizer_param_groups`).

``freeze_layers: N`` (the guide's "Freeze more layers (only train top layers)", a remedy for
forgetting) puts no LoRA on the lowest N transformer blocks: they keep their pretrained
behaviour exactly, and the adapter shrinks by N / L.

For classification the new head trains whole (PEFT ``modules_to_save`` via task type SEQ_CLS), so
each adapter carries its own head and adapters for different label sets can share one base.
"""

from __future__ import annotations

from torch import nn

from tunesmith.config import FinetuneConfig
from tunesmith.errors import ConfigError
from tunesmith.methods.full import find_layout
from tunesmith.methods.targets import resolve_targets


def upper_layers(model: nn.Module, freeze_layers: int) -> tuple[list[int], str] | None:
    """``(block indices that get LoRA, the block stack's name)`` when the lowest
    ``freeze_layers`` blocks stay frozen, or None when every block is adapted.

    The same meaning as full finetuning's ``freeze_layers``: the lowest N blocks keep their
    pretrained weights (LoRA's base weights and embeddings are frozen anyway). Raises
    ConfigError when N leaves no block to adapt.
    """
    if not freeze_layers:
        return None
    layout = find_layout(model)
    if freeze_layers >= layout.num_blocks:
        raise ConfigError(
            f"finetune.freeze_layers is {freeze_layers} but the model has {layout.num_blocks} "
            "blocks: LoRA would have no block left to adapt.",
            hint=f"Use 0..{layout.num_blocks - 1} (LoRA goes on the blocks above the lowest N).",
        )
    return list(range(freeze_layers, layout.num_blocks)), layout.blocks_prefix.rsplit(".", 1)[-1]


def lora_config(model: nn.Module, cfg: FinetuneConfig, *, task: str):
    """The PEFT LoraConfig for ``cfg`` on ``model`` (targets resolved for its architecture;
    with ``freeze_layers`` only the blocks above the lowest N, through PEFT's
    ``layers_to_transform``)."""
    from peft import LoraConfig, TaskType

    upper = upper_layers(model, cfg.freeze_layers)
    return LoraConfig(
        r=cfg.lora_r,
        # peft annotates lora_alpha as int; a float works the same (scaling = alpha / r).
        lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]
        lora_dropout=cfg.lora_dropout,
        target_modules=resolve_targets(model, cfg.lora_target_modules),
        layers_to_transform=upper[0] if upper else None,
        layers_pattern=upper[1] if upper else None,
        use_dora=cfg.method == "dora",
        task_type=TaskType.SEQ_CLS if task == "classification" else TaskType.CAUSAL_LM,
    )


def apply_lora(model: nn.Module, cfg: FinetuneConfig, *, task: str) -> nn.Module:
    """Freeze ``model`` and wrap its target layers with LoRA (or DoRA); returns a PeftModel."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, cfg, task=task))


def is_lora_b(param_name: str) -> bool:
    """True for LoRA's B matrices (the ones LoRA+ speeds up)."""
    return ".lora_B." in param_name or ".lora_embedding_B." in param_name
