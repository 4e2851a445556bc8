"""The adapter lifecycle: save, load, name, switch and merge, one small handler per saved format.

A trained model is saved in one of three formats, and each has a handler here with the same five
operations (PEFT's shape: one lifecycle for every method):

- ``peft``: LoRA, DoRA, LoRA+ and QLoRA, PEFT's own files (``adapter_model.safetensors``,
  ``adapter_config.json``); several adapters share a base and LoRA/DoRA merge into it.
- ``bottleneck``: tunesmith's bottleneck adapters (``adapter.safetensors``); several share a
  base if they have the same type and reduction factor; they cannot merge (layers in series).
- ``full``: the trainable weights of a full finetune (``model.safetensors``); it replaces the
  base's weights, so one per base, and "merging" returns the model as it is.

Beside the weights every format writes ``tunesmith_adapter.json`` (method, format, base model,
task, labels, parameter counts, size on disk). What the handlers need to remember between calls
(the method, QLoRA's compute dtype, the bottleneck config, the name of a loaded full finetune)
is one frozen :class:`LifecycleState` on the model, replaced, never mutated, so a PEFT wrapper
never changes the state of the base it wraps.

Costs: saving and loading read or write the trainable weights once (safetensors, no pickle);
peft is imported inside functions (about 11 s here). Errors: UsageError for a missing or
unknown adapter, a name that is not loaded, or a combination one base cannot hold; DataError for
a tunesmith_adapter.json that is not a JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from torch import nn

from tunesmith.assets import BUILTIN_MODELS
from tunesmith.errors import DataError, UsageError
from tunesmith.methods import adapter as bottleneck
from tunesmith.methods.summary import trainable_summary
from tunesmith.runfiles import ADAPTER_META

log = logging.getLogger(__name__)

PEFT_WEIGHTS = "adapter_model.safetensors"
FULL_WEIGHTS = "model.safetensors"
BOTTLENECK_WEIGHTS = "adapter.safetensors"
_STATE_ATTR = "_tunesmith_lifecycle"


@dataclass(frozen=True)
class LifecycleState:
    """What a model remembers for the lifecycle: the method it was prepared or loaded with,
    QLoRA's compute dtype (saved with the adapter: the base must be quantised the same way to
    reproduce it), the bottleneck config its adapters share, the name of a loaded full finetune."""

    method: str | None = None
    compute_dtype: str | None = None
    bottleneck: bottleneck.BottleneckConfig | None = None
    full_name: str | None = None


def state_of(model: nn.Module) -> LifecycleState:
    """The model's lifecycle state (an empty one for a plain model)."""
    state = getattr(model, _STATE_ATTR, None)
    return state if isinstance(state, LifecycleState) else LifecycleState()


def remember(model: nn.Module, **changes: Any) -> None:
    """Record ``changes`` in ``model``'s lifecycle state (a new frozen state replaces the old)."""
    setattr(model, _STATE_ATTR, dataclasses.replace(state_of(model), **changes))


@dataclass(frozen=True)
class SavedAdapter:
    path: Path
    size_bytes: int
    method: str


class FormatHandler(Protocol):
    """The lifecycle of one saved format."""

    name: ClassVar[str]

    def holds(self, model: nn.Module) -> bool:
        """True when ``model`` carries adapters of this format."""
        ...

    def save(self, model: nn.Module, out: Path) -> dict[str, Any]:
        """Write the active adapter's weights into ``out``; returns metadata to add."""
        ...

    def load(self, base: nn.Module, directory: Path, name: str, info: dict[str, Any]) -> nn.Module:
        """Put the adapter saved in ``directory`` on ``base`` as ``name``; returns the model."""
        ...

    def names(self, model: nn.Module) -> list[str]:
        ...

    def activate(self, model: nn.Module, name: str) -> None:
        ...

    def merge(self, model: nn.Module) -> nn.Module:
        ...


class PeftFormat:
    """LoRA, DoRA, LoRA+ and QLoRA, in PEFT's files."""

    name: ClassVar[str] = "peft"

    def holds(self, model: nn.Module) -> bool:
        return hasattr(model, "peft_config") and hasattr(model, "active_adapter")

    def save(self, model: nn.Module, out: Path) -> dict[str, Any]:
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        peft_model: Any = model
        name = peft_model.active_adapter
        save_file(get_peft_model_state_dict(peft_model, adapter_name=name), out / PEFT_WEIGHTS)
        peft_model.peft_config[name].save_pretrained(str(out))
        dtype = state_of(model).compute_dtype
        return {"compute_dtype": dtype} if dtype else {}

    def load(self, base: nn.Module, directory: Path, name: str, info: dict[str, Any]) -> nn.Module:
        from peft import PeftModel

        if self.holds(base):
            peft_model: Any = base
            peft_model.load_adapter(str(directory), adapter_name=name)
            peft_model.set_adapter(name)
            return base
        return PeftModel.from_pretrained(base, str(directory), adapter_name=name)

    def names(self, model: nn.Module) -> list[str]:
        peft_model: Any = model
        return list(peft_model.peft_config)

    def activate(self, model: nn.Module, name: str) -> None:
        peft_model: Any = model
        peft_model.set_adapter(name)

    def merge(self, model: nn.Module) -> nn.Module:
        peft_model: Any = model
        return peft_model.merge_and_unload()


class BottleneckFormat:
    """tunesmith's bottleneck adapters (Houlsby, Pfeiffer)."""

    name: ClassVar[str] = "bottleneck"

    def holds(self, model: nn.Module) -> bool:
        return bool(bottleneck.adapter_names(model))

    def save(self, model: nn.Module, out: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        active = bottleneck.active_adapter(model)
        assert active is not None  # holds() found adapters, so one is active
        save_file(bottleneck.adapter_state_dict(model, active), out / BOTTLENECK_WEIGHTS)
        config = state_of(model).bottleneck
        assert config is not None  # apply_method and load remember it
        return {"adapter": config.to_dict()}

    def load(self, base: nn.Module, directory: Path, name: str, info: dict[str, Any]) -> nn.Module:
        from safetensors.torch import load_file

        config = bottleneck.BottleneckConfig(**info["adapter"])
        existing = state_of(base).bottleneck
        if existing is not None and existing != config:
            raise UsageError(
                f"the adapter in {directory} is {config}, but this base holds {existing} adapters; "
                "bottleneck adapters sharing a base must have the same type and reduction factor.",
                hint="Load a fresh base model for it.",
            )
        bottleneck.add_adapter(base, name, config, task=info.get("task", "classification"))
        bottleneck.load_adapter_state(base, name, load_file(directory / BOTTLENECK_WEIGHTS))
        remember(base, bottleneck=config)
        return base

    def names(self, model: nn.Module) -> list[str]:
        return bottleneck.adapter_names(model)

    def activate(self, model: nn.Module, name: str) -> None:
        bottleneck.set_active(model, name)

    def merge(self, model: nn.Module) -> nn.Module:
        raise UsageError(
            "bottleneck adapters cannot be merged into the base weights: they add small layers in "
            "series (down-projection, non-linearity, up-projection), which no weight matrix of the "
            "base can absorb.",
            hint="Serve the base with its adapter (`tunesmith predict --run RUN`), or train with "
            "method lora or dora when you need one standalone model.",
        )


class FullFormat:
    """A full finetune's trainable weights: they replace the base's, one finetune per base."""

    name: ClassVar[str] = "full"

    def holds(self, model: nn.Module) -> bool:
        return True  # any other model: what trains is its own weights

    def save(self, model: nn.Module, out: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, out / FULL_WEIGHTS)
        return {}

    def load(self, base: nn.Module, directory: Path, name: str, info: dict[str, Any]) -> nn.Module:
        from safetensors.torch import load_file

        loaded = state_of(base).full_name
        if loaded is not None:
            raise UsageError(
                f"this base already holds the fully finetuned weights '{loaded}'; a full "
                "finetune replaces every weight, so it cannot share a base with another.",
                hint="Load a fresh base model for each fully finetuned run.",
            )
        result = base.load_state_dict(load_file(directory / FULL_WEIGHTS), strict=False)
        if result.unexpected_keys:
            raise UsageError(
                f"the weights in {directory} do not fit this base model "
                f"(unknown: {', '.join(result.unexpected_keys[:5])}).",
                hint=f"Load the base model it was trained from: {info.get('base_model', '?')}.",
            )
        remember(base, full_name=name)
        return base

    def names(self, model: nn.Module) -> list[str]:
        loaded = state_of(model).full_name
        return [loaded] if loaded else []

    def activate(self, model: nn.Module, name: str) -> None:
        pass  # one set of weights: the name is the only one there is

    def merge(self, model: nn.Module) -> nn.Module:
        return model  # nothing to fold in: the weights are the model's own


# Asked in this order: a PEFT model may also hold tunesmith bottleneck sites underneath, and
# every model is a candidate for "full".
FORMATS: tuple[FormatHandler, ...] = (PeftFormat(), BottleneckFormat(), FullFormat())
_BY_NAME: dict[str, FormatHandler] = {f.name: f for f in FORMATS}


def format_of(model: nn.Module) -> FormatHandler:
    """The handler of the format ``model``'s adapters would be saved in."""
    return next(f for f in FORMATS if f.holds(model))


def model_method(model: nn.Module) -> str:
    """The method a model was prepared or loaded with ("full" for a plain model)."""
    method = state_of(model).method
    if method:
        return method
    return {"peft": "lora", "bottleneck": "adapter"}.get(format_of(model).name, "full")


def _dir_size(directory: Path, *, skip: str | None = None) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file() and f.name != skip)


def save_adapter(model: nn.Module, directory: str | Path, meta: dict[str, Any]) -> SavedAdapter:
    """Write the trained parameters of ``model`` (active adapter only) and ``tunesmith_adapter.json``.

    ``meta`` should carry what is needed to rebuild the base: ``base_model``, ``task`` and, for
    classification, ``labels``. The method, parameter counts and size on disk (``size_bytes``:
    the weights, without this JSON) are added; the returned size counts the whole folder.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    method = meta.get("method") or model_method(model)
    handler = format_of(model)
    extra = handler.save(model, out)
    summary = trainable_summary(model)
    info = {
        **meta,
        **extra,
        "method": method,
        "format": handler.name,
        "trainable_params": summary.trainable,
        "total_params": summary.total,
        "trainable_percent": round(summary.percent, 4),
        # What serving this adapter adds to the base on disk (the guide's "small adapter files").
        "size_bytes": _dir_size(out, skip=ADAPTER_META),
    }
    (out / ADAPTER_META).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    size = _dir_size(out)
    log.info("saved %s adapter to %s (%.2f MB)", method, out, size / 1e6)
    return SavedAdapter(out, size, method)


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
    handler = _BY_NAME.get(info.get("format", ""))
    if handler is None:
        raise UsageError(f"{directory}: unknown adapter format '{info.get('format')}'.")
    model = handler.load(base_model, directory, name, info)
    remember(model, method=info["method"])
    return model


def adapter_names(model: nn.Module) -> list[str]:
    """Names of the adapters loaded on ``model``."""
    return format_of(model).names(model)


def set_adapter(model: nn.Module, name: str) -> None:
    """Make adapter ``name`` the one used by the next forward pass."""
    names = adapter_names(model)
    if name not in names:
        raise UsageError(
            f"no adapter named '{name}' on this model.",
            hint="Loaded: " + (", ".join(names) or "none"),
        )
    format_of(model).activate(model, name)


def merge_adapter(model: nn.Module) -> nn.Module:
    """Fold the active LoRA/DoRA adapter into the base weights; returns the plain base model.

    A fully finetuned model is returned as it is. Raises UsageError for methods that cannot merge.
    """
    return format_of(model).merge(model)
