"""Token-by-token decoding of a batch of rows, each with its own adapter, limits and sampling.

One forward pass per new token for the whole batch, with a KV cache: rows are left-padded so
their next tokens line up in the last column. Each row carries its own ``max_tokens``,
temperature, ``top_p``, seed (a private generator, so a row's sample does not depend on its
batch mates) and stop strings; a row that finishes, or whose client left, is dropped from the
batch and the cache, so the others go on with less work. Text is emitted as deltas: tokens are
decoded incrementally and any tail that could still become a stop string, or that is an
incomplete UTF-8 sequence, is held back until it is certain.

Cost: a prefill pass over the padded prompts, then one pass per generated token over the rows
still running. The caller picks the adapter routing: PEFT's per-row ``adapter_names`` (LoRA
methods) or one adapter for the whole batch (DoRA, bottleneck adapters).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One sequence to continue. ``emit(text_delta, finish_reason)`` is called as text arrives;
    the last call has a finish reason ("stop" or "length"). ``cancelled()`` says the client left."""

    prompt: list[int]
    max_tokens: int
    emit: Callable[[str, str | None], None]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: Sequence[str] = ()
    adapter: str = "__base__"  # PEFT's name for "no adapter" in a mixed batch
    cancelled: Callable[[], bool] = lambda: False
    generated: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the decoded text already emitted
    finish_reason: str | None = None  # "stop", "length", or "cancelled" (dropped: its client left)


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of ``text`` could be the start of a stop string.

    >>> held_back("Hello, Wor", ["World"])
    3
    """
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


def cut_at_stop(text: str, stops: Sequence[str]) -> str | None:
    """``text`` up to the first stop string in it, or None when none occurs."""
    hits = [text.index(s) for s in stops if s and s in text]
    return text[: min(hits)] if hits else None


def _pick(logits: Any, row: Row, generator: Any) -> int:
    import torch

    if row.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / row.temperature, dim=-1)
    if row.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest set whose mass reaches top_p (always at least the best token).
        outside = sorted_probs.cumsum(-1) - sorted_probs >= row.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def advance(row: Row, token: int, tokenizer: Any, eos_ids: set[int]) -> bool:
    """Add ``token`` to ``row``, emit what became certain; True when the row is finished."""
    if token in eos_ids:
        _flush(row, tokenizer, "stop")
        row.finish_reason = "stop"
        return True
    row.generated.append(token)
    text = tokenizer.decode(row.generated, skip_special_tokens=True)
    cut = cut_at_stop(text, row.stop)
    if cut is not None:
        row.emit(cut[row.sent :] if len(cut) > row.sent else "", "stop")
        row.finish_reason = "stop"
        return True
    if len(row.generated) >= row.max_tokens:
        row.emit(text[row.sent :], "length")
        row.finish_reason = "length"
        return True
    safe = len(text) - held_back(text, row.stop)
    while safe > row.sent and text[safe - 1] == "\ufffd":  # an unfinished multi-byte character
        safe -= 1
    if safe > row.sent:
        row.emit(text[row.sent : safe], None)
        row.sent = safe
    return False


def _flush(row: Row, tokenizer: Any, reason: str) -> None:
    text = tokenizer.decode(row.generated, skip_special_tokens=True)
    row.emit(text[row.sent :], reason)


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends a reply: the tokenizer's EOS and the model's generation config's."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return ids


def mixable_modules(model: Any) -> list[Any]:
    """The PEFT modules that take a per-row ``adapter_names`` (LoRA layers, saved heads)."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import AuxiliaryTrainingWrapper

    return [m for m in model.modules() if isinstance(m, (LoraLayer, AuxiliaryTrainingWrapper))]


@contextlib.contextmanager
def per_row_adapters(modules: Sequence[Any], names: Sequence[str]) -> Iterator[None]:
    """Within the block, each row of a forward pass uses its own adapter (``"__base__"``: none).

    PEFT's own ``adapter_names=`` argument does the same through hooks that it leaves in place
    when the forward pass raises (peft 0.21; huggingface/peft issue #3475), so every later call
    fails with a length mismatch; these hooks go away whatever happens.
    """
    names = list(names)

    def inject(module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        kwargs["adapter_names"] = names
        return args, kwargs

    handles = [m.register_forward_pre_hook(inject, with_kwargs=True) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def decode_batch(model: Any, tokenizer: Any, rows: Sequence[Row], *, mixed: bool) -> None:
    """Generate for every row until each finishes (EOS, a stop string, ``max_tokens``, or cancel).

    ``mixed``: each row uses its own ``adapter`` (:func:`per_row_adapters`); otherwise the
    model's active adapter serves all rows. Raises whatever the model raises.
    """
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = eos_token_ids(model, tokenizer)
    live = list(rows)
    width = max(len(r.prompt) for r in live)
    ids = torch.full((len(live), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(live), width), dtype=torch.long)
    for i, row in enumerate(live):
        ids[i, width - len(row.prompt) :] = torch.tensor(row.prompt)
        mask[i, width - len(row.prompt) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    generators = []
    for row in live:
        generator = torch.Generator()
        generator.manual_seed(row.seed if row.seed is not None else int(torch.randint(0, 2**31, ()).item()))
        generators.append(generator)
    cache = None
    modules = mixable_modules(model) if mixed else []
    with torch.inference_mode():
        while live:
            routing = per_row_adapters(modules, [r.adapter for r in live]) if mixed else contextlib.nullcontext()
            with routing:
                # logits_to_keep=1: only the last column's logits (a 49k-wide row per token otherwise).
                out = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                            cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
            logits = out.logits[:, -1, :]
            keep, tokens = [], []
            for i, row in enumerate(live):
                if row.cancelled():
                    row.finish_reason = "cancelled"
                    continue
                token = _pick(logits[i], row, generators[i])
                if not advance(row, token, tokenizer, eos_ids):
                    keep.append(i)
                    tokens.append(token)
            if not keep:
                break
            if len(keep) < len(live):
                index = torch.tensor(keep)
                cache.batch_select_indices(index)
                mask = mask[index]
                live = [live[i] for i in keep]
                generators = [generators[i] for i in keep]
            ids = torch.tensor(tokens, dtype=torch.long).unsqueeze(1)
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=torch.long)], dim=1)
            positions = mask.sum(-1, keepdim=True) - 1
