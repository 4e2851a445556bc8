"""Every finetuning method of the guide behind one interface, and the adapter lifecycle.

``finetune.method`` picks one of ``full``, ``lora``, ``dora``, ``lora_plus``, ``qlora`` and
``adapter``; the rest of tunesmith only calls the functions here:

- :func:`apply_method` sets ``requires_grad`` and wraps layers; returns the model to train.
- :func:`optimizer_param_groups` gives AdamW its groups: weight decay on matrices only (not on
  biases, norms or DoRA magnitudes), LoRA+'s faster ``B`` matrices, layer-wise learning-rate decay.
- :func:`trainable_summary` counts what trains (count and percent, the guide's arithmetic).
- :func:`save_adapter` writes the trained parameters only, with ``tunesmith_adapter.json``;
  :func:`load_adapter` puts them back on a base model, under a name, so several adapters can
  share one base; :func:`set_adapter` switches between them; :func:`merge_adapter` folds LoRA or
  DoRA into the base weights (bottleneck adapters refuse: they add layers in series). These live
  in :mod:`tunesmith.methods.lifecycle`, one handler per saved format (peft, bottleneck, full).

Each method lives in its own module with the same shape: config -> layer wrapper -> model-level
apply. peft is imported inside functions: importing it costs about 11 s here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from tunesmith.config import LORA_FAMILY, FinetuneConfig, check_method_rules
from tunesmith.errors import ConfigError
from tunesmith.methods import adapter as bottleneck
from tunesmith.methods.full import apply_full, layer_lr_scales
from tunesmith.methods.lifecycle import (
    ADAPTER_META,
    BOTTLENECK_WEIGHTS,
    FULL_WEIGHTS,
    SavedAdapter,
    adapter_names,
    load_adapter,
    merge_adapter,
    model_method,
    read_adapter_meta,
    remember,
    save_adapter,
    set_adapter,
    trusted_base_model,
)
from tunesmith.methods.lora import apply_lora, is_lora_b
from tunesmith.methods.qlora import apply_qlora
from tunesmith.methods.summary import TrainableSummary, trainable_summary

log = logging.getLogger(__name__)

__all__ = [
    "ADAPTER_META", "BOTTLENECK_WEIGHTS", "FULL_WEIGHTS", "SavedAdapter", "TrainableSummary",
    "adapter_names", "apply_method", "continue_method", "is_classification_head", "load_adapter", "merge_adapter",
    "method_family", "model_method", "optimizer_param_groups", "read_adapter_meta", "save_adapter", "set_adapter",
    "trainable_summary", "trusted_base_model",
]


def apply_method(model: nn.Module, cfg: FinetuneConfig, *, task: str) -> nn.Module:
    """Prepare ``model`` for ``cfg.method``; returns the model to train (maybe a wrapper).

    ``task`` is "classification" (the head trains whole) or a generative task (instruction, qa,
    chat: a causal LM). Raises ConfigError for settings the method or model cannot take.
    """
    method = cfg.method
    check_method_rules(cfg)  # loading validated it; a model_copy'd config was not
    if method == "full":
        model = apply_full(model, cfg)
    elif method == "qlora":
        model = apply_qlora(model, cfg, task=task)
        remember(model, compute_dtype=cfg.qlora_compute_dtype)
    elif method in LORA_FAMILY:
        model = apply_lora(model, cfg, task=task)
    else:
        config = bottleneck.BottleneckConfig.from_finetune(cfg)
        model = bottleneck.apply_adapter(model, config, task=task)
        remember(model, bottleneck=config)
    if cfg.gradient_checkpointing and method != "full":
        # With a frozen embedding no input needs a gradient and checkpointed blocks would not
        # backpropagate into the adapters; this makes the embedding output require one.
        hf_model: Any = model  # a transformers or PEFT model: this is its method
        hf_model.enable_input_require_grads()
    remember(model, method=method)
    log.info("%s: %s", method, trainable_summary(model))
    return model


def optimizer_param_groups(model: nn.Module, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups for the trainable parameters of ``model``.

    Weight decay only on matrices (ndim >= 2); LoRA+ multiplies the ``B`` matrices' learning rate
    by ``lora_plus_ratio``; ``layerwise_lr_decay`` < 1 scales each block's rate (see
    :mod:`tunesmith.methods.full`); the classification head (``classifier``/``score``) is a group
    of its own at ``head_learning_rate`` (``learning_rate`` when unset). Each group has
    ``params``, ``param_names``, ``lr``, ``weight_decay`` and ``head`` (True for the head's).
    """
    scales = layer_lr_scales(model, cfg.layerwise_lr_decay)
    head_lr = cfg.head_learning_rate if cfg.head_learning_rate is not None else cfg.learning_rate
    groups: dict[tuple[float, float, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        head = is_classification_head(name)
        lr = head_lr if head else cfg.learning_rate * scales[name]
        if cfg.method == "lora_plus" and is_lora_b(name):
            lr *= cfg.lora_plus_ratio
        decay = cfg.weight_decay if param.ndim >= 2 else 0.0
        group = groups.setdefault(
            (lr, decay, head),
            {"params": [], "param_names": [], "lr": lr, "weight_decay": decay, "head": head},
        )
        group["params"].append(param)
        group["param_names"].append(name)
    return list(groups.values())


def is_classification_head(param_name: str) -> bool:
    """True for the parameters of a sequence-classification head (``classifier``, ``score``),
    also inside PEFT's ``modules_to_save`` copies."""
    return not {"classifier", "score"}.isdisjoint(param_name.split("."))


# Methods whose saved weights have the same shape, so one can continue the other: LoRA+ only
# changes the learning rate of LoRA's B matrices.
_SAME_WEIGHTS = {"lora_plus": "lora"}


def method_family(method: str) -> str:
    """The method whose weights ``method`` saves ("lora" for lora_plus; itself otherwise)."""
    return _SAME_WEIGHTS.get(method, method)


def continue_method(model: nn.Module, directory: str | Path, cfg: FinetuneConfig, *, task: str) -> nn.Module:
    """Prepare ``model`` (the base) to train on from the adapter saved in ``directory``.

    The result is what :func:`apply_method` returns for a fresh start, but its trainable
    weights are the saved ones: training continues that adapter (continual learning) instead
    of starting a new one. The adapter's own structure (LoRA rank, targets, bottleneck size)
    is kept; ``cfg`` gives the rest (learning rates, gradient checkpointing). Costs one read of
    the adapter's weights. Raises ConfigError when ``cfg.method`` is not of the saved adapter's
    method family (lora and lora_plus continue each other; the others only themselves).
    """
    directory = Path(directory)
    info = read_adapter_meta(directory)
    saved = str(info.get("method", "?"))
    if method_family(saved) != method_family(cfg.method):
        raise ConfigError(
            f"finetune.method is '{cfg.method}' but the adapter in {directory} was trained with "
            f"'{saved}': training can only continue an adapter of the same method family "
            "(lora and lora_plus share weights; dora, qlora, adapter and full only themselves).",
            hint=f"Set finetune.method: {saved}, or train without --continue-from.",
        )
    if info["format"] == "peft":
        from peft import PeftModel

        if cfg.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
            remember(model, compute_dtype=cfg.qlora_compute_dtype)
        model = PeftModel.from_pretrained(model, str(directory), is_trainable=True)
    elif info["format"] == "full":
        model = apply_full(load_adapter(model, directory), cfg)
    else:
        from safetensors.torch import load_file

        config = bottleneck.BottleneckConfig(**info["adapter"])
        model = bottleneck.apply_adapter(model, config, task=task)
        bottleneck.load_adapter_state(model, "default", load_file(directory / BOTTLENECK_WEIGHTS))
        remember(model, bottleneck=config)
    if cfg.gradient_checkpointing and cfg.method != "full":
        hf_model: Any = model  # as in apply_method
        hf_model.enable_input_require_grads()
    remember(model, method=cfg.method)
    log.info("%s continued from %s: %s", cfg.method, directory, trainable_summary(model))
    return model
