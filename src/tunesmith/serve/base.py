"""Load the base model a saved adapter was trained on, quantised the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.errors import UsageError


def load_base(
    meta: dict[str, Any], *, dequantize: bool = False, directory: str | Path | None = None
) -> Any:
    """The ``LoadedModel`` for an adapter's ``tunesmith_adapter.json`` contents.

    A QLoRA adapter was trained against NF4-rounded weights, so its base loads in 4-bit again;
    ``dequantize=True`` then turns those weights back into plain float tensors (the exact values
    the 4-bit layers compute with), which is what merging needs. The base must be a built-in
    name or a local folder (:func:`tunesmith.methods.trusted_base_model`; ``directory`` is the
    adapter folder the error names); UsageError otherwise.
    """
    from tunesmith.methods import trusted_base_model
    from tunesmith.models import load_model

    if "base_model" not in meta or "task" not in meta:
        raise UsageError(
            "the adapter's tunesmith_adapter.json does not say which base model and task it is for.",
            hint="It was not written by tunesmith; load it with the Python API instead.",
        )
    quantized = meta.get("method") == "qlora"
    loaded = load_model(
        trusted_base_model(meta, directory),
        task=meta["task"],
        labels=meta.get("labels"),
        load_in_4bit=quantized,
        compute_dtype=meta.get("compute_dtype", "float32"),
    )
    if quantized and dequantize:
        loaded.model = loaded.model.dequantize()
        # PEFT would otherwise treat the now plain layers as 4-bit ones.
        loaded.model.is_loaded_in_4bit = False
    return loaded
