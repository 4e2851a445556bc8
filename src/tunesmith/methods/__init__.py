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
  DoRA into the base weights (bottleneck adapters refuse: they add layers in series).

Each method lives in its own module with the same shape: config -> layer wrapper -> model-level
apply. peft is imported inside functions: importing it costs about 11 s here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tunesmith.assets import BUILTIN_MODELS
from tunesmith.config import FinetuneConfig
from tunesmith.errors import ConfigError, DataError, UsageError
from tunesmith.methods import adapter as bottleneck
from tunesmith.methods.full import apply_full, layer_lr_scales
from tunesmith.methods.lora import apply_lora, is_lora_b
from tunesmith.methods.qlora import apply_qlora

log = logging.getLogger(__name__)

ADAPTER_META = "tunesmith_adapter.json"
FULL_WEIGHTS = "model.safetensors"
BOTTLENECK_WEIGHTS = "adapter.safetensors"
PEFT_METHODS = frozenset({"lora", "dora", "lora_plus", "qlora"})
# Set on the model by apply_method/load_adapter so that save and merge know what they hold.
_METHOD_ATTR = "_tunesmith_method"
_FULL_NAME_ATTR = "_tunesmith_full_adapter"
_BOTTLENECK_ATTR = "_tunesmith_bottleneck"
_COMPUTE_DTYPE_ATTR = "_tunesmith_compute_dtype"


@dataclass(frozen=True)
class TrainableSummary:
    trainable: int
    total: int
    percent: float

    def __str__(self) -> str:
        return f"trainable params: {self.trainable:,} of {self.total:,} ({self.percent:.2f}%)"


@dataclass(frozen=True)
class SavedAdapter:
    path: Path
    size_bytes: int
    method: str


def _param_count(param: nn.Parameter) -> int:
    # bitsandbytes packs two 4-bit values per byte of its storage dtype: count real weights.
    if type(param).__name__ == "Params4bit":
        storage = getattr(param, "quant_storage", None)
        return param.numel() * 2 * (storage.itemsize if storage is not None else 1)
    return param.numel()


def trainable_summary(model: nn.Module) -> TrainableSummary:
    """Parameters that train, all parameters (adapters included) and the percentage."""
    trainable = total = 0
    for param in model.parameters():
        count = _param_count(param)
        total += count
        if param.requires_grad:
            trainable += count
    return TrainableSummary(trainable, total, 100.0 * trainable / total if total else 0.0)


def apply_method(model: nn.Module, cfg: FinetuneConfig, *, task: str) -> nn.Module:
    """Prepare ``model`` for ``cfg.method``; returns the model to train (maybe a wrapper).

    ``task`` is "classification" (the head trains whole) or a generative task (instruction, qa,
    chat: a causal LM). Raises ConfigError for settings the method or model cannot take.
    """
    method = cfg.method
    if cfg.freeze_layers and method != "full":
        raise ConfigError(
            f"finetune.freeze_layers applies to method 'full', not '{method}' "
            "(its base weights are frozen already).",
            hint="Set finetune.freeze_layers: 0, or finetune.method: full.",
        )
    if method == "full":
        model = apply_full(model, cfg)
    elif method in ("lora", "dora", "lora_plus"):
        model = apply_lora(model, cfg, task=task)
    elif method == "qlora":
        model = apply_qlora(model, cfg, task=task)
        # Saved with the adapter: the base must be quantised the same way to reproduce it.
        setattr(model, _COMPUTE_DTYPE_ATTR, cfg.qlora_compute_dtype)
    else:
        config = bottleneck.BottleneckConfig.from_finetune(cfg)
        model = bottleneck.apply_adapter(model, config, task=task)
        setattr(model, _BOTTLENECK_ATTR, config)
    if cfg.gradient_checkpointing and method != "full":
        # With a frozen embedding no input needs a gradient and checkpointed blocks would not
        # backpropagate into the adapters; this makes the embedding output require one.
        model.enable_input_require_grads()
    setattr(model, _METHOD_ATTR, method)
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


def _is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "active_adapter")


def model_method(model: nn.Module) -> str:
    """The method a model was prepared or loaded with ("full" for a plain model)."""
    if getattr(model, _METHOD_ATTR, None):
        return getattr(model, _METHOD_ATTR)
    if _is_peft(model):
        return "lora"
    return "adapter" if bottleneck.adapter_names(model) else "full"


def _dir_size(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def save_adapter(model: nn.Module, directory: str | Path, meta: dict[str, Any]) -> SavedAdapter:
    """Write the trained parameters of ``model`` (active adapter only) and ``tunesmith_adapter.json``.

    ``meta`` should carry what is needed to rebuild the base: ``base_model``, ``task`` and, for
    classification, ``labels``. The method, parameter counts and size on disk (``size_bytes``:
    the weights, without this JSON) are added; the returned size counts the whole folder.
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    method = meta.get("method") or model_method(model)
    if _is_peft(model):
        from peft import get_peft_model_state_dict

        name = model.active_adapter
        save_file(get_peft_model_state_dict(model, adapter_name=name), out / "adapter_model.safetensors")
        model.peft_config[name].save_pretrained(str(out))
        fmt = "peft"
        if getattr(model, _COMPUTE_DTYPE_ATTR, None):
            meta = {**meta, "compute_dtype": getattr(model, _COMPUTE_DTYPE_ATTR)}
    elif bottleneck.adapter_names(model):
        name = bottleneck.active_adapter(model)
        save_file(bottleneck.adapter_state_dict(model, name), out / BOTTLENECK_WEIGHTS)
        fmt = "bottleneck"
        meta = {**meta, "adapter": _bottleneck_config(model).to_dict()}
    else:
        state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, out / FULL_WEIGHTS)
        fmt = "full"
    summary = trainable_summary(model)
    info = {
        **meta,
        "method": method,
        "format": fmt,
        "trainable_params": summary.trainable,
        "total_params": summary.total,
        "trainable_percent": round(summary.percent, 4),
        # What serving this adapter adds to the base on disk (the guide's "small adapter files").
        "size_bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and f.name != ADAPTER_META),
    }
    (out / ADAPTER_META).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    size = _dir_size(out)
    log.info("saved %s adapter to %s (%.2f MB)", method, out, size / 1e6)
    return SavedAdapter(out, size, method)


def _bottleneck_config(model: nn.Module) -> bottleneck.BottleneckConfig:
    return getattr(model, _BOTTLENECK_ATTR)


def read_adapter_meta(directory: str | Path) -> dict[str, Any]:
    """The ``tunesmith_adapter.json`` of a saved adapter.

    Raises UsageError when there is none and DataError naming the file when it is not a JSON
    object. Its ``base_model`` is not checked here: :func:`trusted_base_model` does that before
    anything loads it.
    """
    path = Path(directory) / ADAPTER_META
    if not path.is_file():
        raise UsageError(
            f"no saved adapter in {directory} ({ADAPTER_META} is missing).",
            hint="Point at a run folder's adapter/ directory written by `tunesmith run`.",
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = (f" at line {exc.lineno}, column {exc.colno} ({exc.msg})"
                 if isinstance(exc, json.JSONDecodeError) else " (not UTF-8 text)")
        raise DataError(
            f"{path}: not valid JSON{where}; this file says which base model, task and labels "
            "the adapter belongs to.",
            hint="Restore it from the run's MLflow artifacts (adapter/) or a copy of the run "
            "folder, or train the run again.",
        ) from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(info).__name__}.")
    return info


def trusted_base_model(meta: dict[str, Any], directory: str | Path | None = None) -> str:
    """The ``base_model`` of an adapter's metadata, when it is safe to load: a built-in model
    name or a local folder holding config.json.

    An adapter folder may come from anyone, and a hub id written in it would make tunesmith
    download and load whatever that repository holds; so anything else raises UsageError
    (naming ``directory``'s tunesmith_adapter.json when given). tunesmith never passes
    ``trust_remote_code``, so no model repository's own code runs in any case.
    """
    where = Path(directory) / ADAPTER_META if directory is not None else ADAPTER_META
    base = meta.get("base_model")
    if not isinstance(base, str) or not base:
        raise UsageError(
            f"{where} does not say which base model the adapter is for (base_model).",
            hint="It was not written by tunesmith; load it with the Python API instead.",
        )
    if base in BUILTIN_MODELS or (Path(base) / "config.json").is_file():
        return base
    raise UsageError(
        f"{where}: base_model '{base}' is neither a built-in model ({', '.join(BUILTIN_MODELS)}) "
        "nor a local folder holding config.json. An adapter folder may come from anyone, so "
        "tunesmith loads its base only from those two places, never a hub id written in it "
        "(and never with trust_remote_code).",
        hint="If you trust that model, download it into a folder (`hf download ID --local-dir "
        "DIR`) and set base_model in that file to the folder.",
    )


def load_adapter(base_model: nn.Module, directory: str | Path, name: str = "default") -> nn.Module:
    """Load a saved adapter onto ``base_model`` under ``name`` and make it the active one.

    Calling it again on the returned model with another ``name`` adds a second adapter to the
    same base (switch with :func:`set_adapter`). A full-finetuning save replaces the base's
    weights, so only one fits per base. Returns the model to use (a PeftModel for LoRA methods).
    """
    directory = Path(directory)
    info = read_adapter_meta(directory)
    if info["format"] == "peft":
        from peft import PeftModel

        if _is_peft(base_model):
            base_model.load_adapter(str(directory), adapter_name=name)
            base_model.set_adapter(name)
            model = base_model
        else:
            model = PeftModel.from_pretrained(base_model, str(directory), adapter_name=name)
    elif info["format"] == "full":
        loaded = getattr(base_model, _FULL_NAME_ATTR, None)
        if loaded is not None:
            raise UsageError(
                f"this base already holds the fully finetuned weights '{loaded}'; a full "
                "finetune replaces every weight, so it cannot share a base with another.",
                hint="Load a fresh base model for each fully finetuned run.",
            )
        from safetensors.torch import load_file

        result = base_model.load_state_dict(load_file(directory / FULL_WEIGHTS), strict=False)
        if result.unexpected_keys:
            raise UsageError(
                f"the weights in {directory} do not fit this base model "
                f"(unknown: {', '.join(result.unexpected_keys[:5])}).",
                hint=f"Load the base model it was trained from: {info.get('base_model', '?')}.",
            )
        setattr(base_model, _FULL_NAME_ATTR, name)
        model = base_model
    elif info["format"] == "bottleneck":
        from safetensors.torch import load_file

        config = bottleneck.BottleneckConfig(**info["adapter"])
        existing = getattr(base_model, _BOTTLENECK_ATTR, None)
        if existing is not None and existing != config:
            raise UsageError(
                f"the adapter in {directory} is {config}, but this base holds {existing} adapters; "
                "bottleneck adapters sharing a base must have the same type and reduction factor.",
                hint="Load a fresh base model for it.",
            )
        bottleneck.add_adapter(base_model, name, config, task=info.get("task", "classification"))
        bottleneck.load_adapter_state(base_model, name, load_file(directory / BOTTLENECK_WEIGHTS))
        setattr(base_model, _BOTTLENECK_ATTR, config)
        model = base_model
    else:
        raise UsageError(f"{directory}: unknown adapter format '{info['format']}'.")
    setattr(model, _METHOD_ATTR, info["method"])
    return model


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
            setattr(model, _COMPUTE_DTYPE_ATTR, cfg.qlora_compute_dtype)
        model = PeftModel.from_pretrained(model, str(directory), is_trainable=True)
    elif info["format"] == "full":
        model = apply_full(load_adapter(model, directory), cfg)
    else:
        config = bottleneck.BottleneckConfig(**info["adapter"])
        model = bottleneck.apply_adapter(model, config, task=task)
        from safetensors.torch import load_file

        bottleneck.load_adapter_state(model, "default", load_file(directory / BOTTLENECK_WEIGHTS))
        setattr(model, _BOTTLENECK_ATTR, config)
    if cfg.gradient_checkpointing and cfg.method != "full":
        model.enable_input_require_grads()  # as in apply_method
    setattr(model, _METHOD_ATTR, cfg.method)
    log.info("%s continued from %s: %s", cfg.method, directory, trainable_summary(model))
    return model


def adapter_names(model: nn.Module) -> list[str]:
    """Names of the adapters loaded on ``model``."""
    if _is_peft(model):
        return list(model.peft_config)
    if bottleneck.adapter_names(model):
        return bottleneck.adapter_names(model)
    loaded = getattr(model, _FULL_NAME_ATTR, None)
    return [loaded] if loaded else []


def set_adapter(model: nn.Module, name: str) -> None:
    """Make adapter ``name`` the one used by the next forward pass."""
    names = adapter_names(model)
    if name not in names:
        raise UsageError(
            f"no adapter named '{name}' on this model.",
            hint="Loaded: " + (", ".join(names) or "none"),
        )
    if _is_peft(model):
        model.set_adapter(name)
    else:
        bottleneck.set_active(model, name)


def merge_adapter(model: nn.Module) -> nn.Module:
    """Fold the active LoRA/DoRA adapter into the base weights; returns the plain base model.

    A fully finetuned model is returned as it is. Raises UsageError for methods that cannot merge.
    """
    method = model_method(model)
    if method == "full":
        return model
    if _is_peft(model):
        return model.merge_and_unload()
    raise UsageError(
        "bottleneck adapters cannot be merged into the base weights: they add small layers in "
        "series (down-projection, non-linearity, up-projection), which no weight matrix of the "
        "base can absorb.",
        hint="Serve the base with its adapter (`tunesmith predict --run RUN`), or train with "
        "method lora or dora when you need one standalone model.",
    )
