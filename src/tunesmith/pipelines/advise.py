"""The advisor's commands, one function each: ``estimate-memory``, ``advise``, ``lr-find``,
``should-finetune`` and ``diagnose``.

Each returns a typed result that the CLI renders; nothing here prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.errors import UsageError


def estimate_memory(
    *,
    model: str | None = None,
    params: float | None = None,
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    intermediate: int | None = None,
    vocab: int | None = None,
    method: str = "lora",
    batch_size: int = 8,
    max_length: int = 512,
    precision: str = "fp32",
    optimizer: str = "adamw",
    gradient_checkpointing: bool = False,
    lora_r: int = 8,
    lora_targets: str | list[str] = "attention",
) -> Any:
    """``tunesmith estimate-memory``: a :class:`~tunesmith.advise.memory.MemoryEstimate` for a
    model (name, folder or config.json) or a stand-in size (``params``)."""
    from tunesmith.advise import memory

    if (model is None) == (params is None):
        raise UsageError("give exactly one of --model (a name, folder or config.json) and --params.")
    if params is not None:
        shape = memory.standin_shape(
            params, layers=layers, hidden=hidden, heads=heads, intermediate=intermediate,
            vocab=vocab,
        )
    else:
        shape = memory.model_shape(model)  # type: ignore[arg-type]
    return memory.estimate_memory(
        shape, method=method, batch_size=batch_size, max_length=max_length, precision=precision,
        optimizer=optimizer, gradient_checkpointing=gradient_checkpointing, lora_r=lora_r,
        lora_targets=lora_targets,
    )


def diagnose(run_dir: str | Path) -> Any:
    """``tunesmith diagnose RUN``: the :class:`~tunesmith.advise.diagnose.Diagnosis` of a run
    folder's history.jsonl, with remedies computed from its config.yaml (the defaults when the
    folder has none). Raises DataError when the folder holds no history."""
    from tunesmith.advise.diagnose import diagnose_history, read_history
    from tunesmith.config import load_config

    run = Path(run_dir)
    history = read_history(run / "history.jsonl" if run.is_dir() else run)
    config_path = (run if run.is_dir() else run.parent) / "config.yaml"
    cfg = load_config(config_path) if config_path.is_file() else None
    return diagnose_history(history, cfg.finetune if cfg else None)
