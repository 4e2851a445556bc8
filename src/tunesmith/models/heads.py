"""The classification head: pooling -> dropout -> linear, with the pooling the encoder learned.

transformers' sequence-classification models for BERT-like encoders feed the head the
``pooler_output``: the [CLS] vector through a dense layer and tanh that BERT learned for next-
sentence prediction. Sentence-embedding encoders (sentence-transformers checkpoints such as
all-MiniLM-L6-v2) were trained with another pooling, written in their ``modules.json`` ->
``1_Pooling/config.json`` (MiniLM: mean over the tokens); their ``pooler.dense`` was never
trained (MiniLM's has bias 0 and weight std 0.009). Starting a head on that untrained layer is
what kept finetuning below the frozen-embedding probe (issue #19).

:func:`read_pooling` decides the pooling from the model's folder; :func:`apply_pooling` makes
the model's head use it. The head keeps its own modules and names (``dropout`` and the
``classifier`` linear layer), so LoRA's ``modules_to_save``, full-finetuning saves, merging and
serving see the same parameters as before; only what feeds the head changes. Pooling has no
parameters: a loaded model gets it again from the same base folder (``load_model`` applies it).

Cost: reading two small JSON files; mean pooling adds one masked sum per forward pass and
saves the pooler's dense layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

PoolingMode = Literal["mean", "cls", "max", "pooler"]
_ST_POOLING = "sentence_transformers.models.Pooling"
# sentence-transformers' config flags -> our modes, in the order they are checked.
_ST_FLAGS: tuple[tuple[str, PoolingMode], ...] = (
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
)


@dataclass(frozen=True)
class Pooling:
    """How token vectors become the head's input, and why (printed in the run output)."""

    mode: PoolingMode
    reason: str
    max_seq_length: int | None = None  # the length the encoder was trained at, when known

    def describe(self) -> str:
        what = {"mean": "mean over the tokens", "cls": "the [CLS] token", "max": "max over the tokens",
                "pooler": "the architecture's own pooler"}[self.mode]
        return f"pooling: {self.mode} ({what}): {self.reason}"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_pooling(model_dir: str | Path | None) -> Pooling:
    """The pooling a model was trained with, from its sentence-transformers files.

    ``modules.json`` names the Pooling module's folder; its ``config.json`` sets one of
    ``pooling_mode_mean_tokens`` / ``_cls_token`` / ``_max_tokens``. Without those files (a
    plain transformers checkpoint, or a hub id not on disk) the architecture's own head is kept:
    its pooler is part of what such a checkpoint was trained with. Never raises.
    """
    folder = Path(model_dir) if model_dir is not None else None
    if folder is None or not folder.is_dir():
        return Pooling("pooler", "no local model folder to read a pooling config from; the "
                       "architecture's own classification head is used")
    modules = _json(folder / "modules.json")
    entry = next((m for m in modules if isinstance(m, dict) and m.get("type") == _ST_POOLING), None) \
        if isinstance(modules, list) else None
    if entry is None:
        return Pooling("pooler", "no sentence-transformers Pooling module in modules.json; the "
                       "architecture's own classification head is used")
    config = _json(folder / str(entry.get("path", "")) / "config.json") or {}
    trained = _json(folder / "sentence_bert_config.json") or {}
    max_len = trained.get("max_seq_length")
    where = f"{Path(str(entry.get('path', ''))) / 'config.json'}"
    for flag, mode in _ST_FLAGS:
        if config.get(flag):
            return Pooling(mode, f"the model was trained as a sentence embedder with this pooling "
                           f"({where}: {flag})", max_len if isinstance(max_len, int) else None)
    return Pooling("mean", f"{where} sets no mean/cls/max flag; mean pooling, the "
                   "sentence-transformers default", max_len if isinstance(max_len, int) else None)


def pool(hidden: Any, mask: Any, mode: PoolingMode) -> Any:
    """``[batch, tokens, hidden]`` -> ``[batch, hidden]``, padding excluded by ``mask``."""
    import torch

    if mode == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def supports_pooling(model: Any) -> bool:
    """True when the head reads the encoder's ``pooler_output`` (BERT-like models)."""
    return hasattr(model, "base_model") and hasattr(model.base_model, "pooler") \
        and hasattr(model, "classifier")


def apply_pooling(model: Any, pooling: Pooling) -> Pooling:
    """Feed ``model``'s head with ``pooling``; returns the pooling actually used.

    The encoder's ``pooler_output`` is replaced (a forward hook on the encoder, so it holds under
    PEFT wrappers and after merging) and its unused pooler layer is dropped. Architectures whose
    head does not read ``pooler_output`` keep their own head (returned as mode "pooler" with the
    reason).
    """
    if pooling.mode == "pooler":
        return pooling
    if not supports_pooling(model):
        return Pooling("pooler", f"{type(model).__name__}'s head does not read a pooled vector "
                       f"that tunesmith can replace, so its own head is kept (the model's config "
                       f"asks for {pooling.mode} pooling)")
    encoder = model.base_model
    mode = pooling.mode

    def replace_pooled(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> Any:
        import torch

        hidden = output.last_hidden_state
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        # A new output in field order: the head reads it by position (outputs[1]).
        return type(output)(**{**output, "pooler_output": pool(hidden, mask, mode)})

    encoder.pooler = None
    encoder.register_forward_hook(replace_pooled, with_kwargs=True)
    model._tunesmith_pooling = pooling
    return pooling


def save_pooling(model: Any, out_dir: str | Path) -> bool:
    """Write the sentence-transformers files that make :func:`read_pooling` give ``model``'s
    pooling again (a merged model saved with ``save_pretrained`` has no pooler weights, so
    without them it would reload with a fresh, random pooler). False when there is nothing to
    write (the architecture's own pooler)."""
    pooling = getattr(model, "_tunesmith_pooling", None)
    if pooling is None or pooling.mode == "pooler":
        return False
    out = Path(out_dir)
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": _ST_POOLING}]
    (out / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    flags = {flag: mode == pooling.mode for flag, mode in _ST_FLAGS}
    (out / "1_Pooling" / "config.json").write_text(json.dumps(flags, indent=2), encoding="utf-8")
    if pooling.max_seq_length:
        (out / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": pooling.max_seq_length}, indent=2), encoding="utf-8")
    return True


def head_linear(model: Any) -> Any:
    """The head's final linear layer (``classifier``), or None when the head is not one layer."""
    import torch

    head = getattr(model, "classifier", None)
    return head if isinstance(head, torch.nn.Linear) else None
