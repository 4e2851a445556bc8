"""Causal-LM finetuning data: prompts, response-only labels, packing, and the objective.

**Prompts.** Every record becomes a list of chat messages (:func:`record_messages`):

- instruction: user = ``instruction`` (plus a blank line and ``input`` when there is one),
  assistant = ``output``;
- qa: user = ``Context: ...`` and ``Question: ...`` (or just the question without context),
  assistant = ``answer``;
- chat: the messages as they are (every assistant turn is a response);
- classification on a causal model ("classification as instruction"): user = "Classify the
  text as one of: <labels>. Answer with the label only." plus the text, assistant = the label.

The messages are rendered with the tokenizer's chat template when it has one. Without one,
the plain template :data:`PLAIN_TEMPLATE` is used: each turn is ``### User:`` / ``### Assistant:``
/ ``### System:`` on its own line, then the content, then a blank line; the assistant's content is
followed by the EOS token; the BOS token (if the tokenizer has one) starts the sequence.

**Labels.** Only response tokens are learned: every assistant turn's content and the end-of-turn
token that closes it (EOS, so the model learns to stop). Everything else (system prompt, user
turns, template markers) has label -100. The conversation is rendered one turn at a time
(``apply_chat_template(messages[:i], add_generation_prompt=True)`` then ``messages[:i+1]``) so
the response spans are exact, and the prompt part of each span is tokenized exactly as the
generation prompt is at evaluation time.

**Packing.** :func:`pack` puts short examples into rows of up to ``max_length`` tokens with
``position_ids`` restarting at 0 for each example. The model gets no attention mask, so
transformers 5 derives one segment per example from the position ids
(``masking_utils.find_packed_sequence_indices``) and builds a block-diagonal causal mask on the
sdpa and eager kernels (and varlen flash attention on GPU): no token attends to another
example. Padding at the end of a row restarts its positions too, so it is a segment of its own
that no real token attends to. ``tests/generative`` checks that a packed batch gives the same
loss as the examples one by one. This needs ``use_cache=False`` in the forward pass (with a
cache, transformers skips the packed-sequence detection).

**Objective.** :func:`causal_lm_loss` returns the *sum* of the token losses over response tokens
and their count, so the loop normalises by tokens. It runs the decoder, keeps the hidden states
at labelled positions only and applies the LM head to those, in chunks
(:func:`tunesmith.train.objectives.chunked_cross_entropy`): with a 49k-token vocabulary the
full logits tensor (batch x length x vocab floats) is the largest activation, and most positions
are prompt tokens that need none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import DataError
from tunesmith.records import (
    ChatRecord,
    ClassificationRecord,
    InstructionRecord,
    QARecord,
    Record,
)

IGNORE_INDEX = -100  # the label cross-entropy skips
PLAIN_TEMPLATE = "### {role}:\n{content}\n\n"  # the assistant's content is followed by EOS


def classification_prompt(text: str, labels: Sequence[str]) -> str:
    """The user turn of classification-as-instruction: the labels are named in the prompt."""
    return (
        f"Classify the text as one of: {', '.join(labels)}. Answer with the label only.\n\n"
        f"Text: {text}"
    )


def record_messages(record: Record, labels: Sequence[str] = ()) -> list[dict[str, str]]:
    """The chat messages for one record (see the module docstring for each format)."""
    if isinstance(record, ChatRecord):
        return [m.to_dict() for m in record.messages]
    if isinstance(record, InstructionRecord):
        user = f"{record.instruction}\n\n{record.input}" if record.input else record.instruction
        return [{"role": "user", "content": user}, {"role": "assistant", "content": record.output}]
    if isinstance(record, QARecord):
        user = (
            f"Context: {record.context}\n\nQuestion: {record.question}"
            if record.context
            else record.question
        )
        return [{"role": "user", "content": user}, {"role": "assistant", "content": record.answer}]
    if isinstance(record, ClassificationRecord):
        return [
            {"role": "user", "content": classification_prompt(record.text, labels)},
            {"role": "assistant", "content": record.label},
        ]
    raise TypeError(f"not a record: {type(record).__name__}")


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    text = tokenizer.bos_token or ""
    for m in messages:
        text += PLAIN_TEMPLATE.format(role=m["role"].capitalize(), content=m["content"])
        if m["role"] == "assistant":
            # Put EOS right after the content (before the blank line) so it is part of the span.
            text = text[: -len("\n\n")] + (tokenizer.eos_token or "") + "\n\n"
    if generation_prompt:
        text += "### Assistant:\n"
    return text


def render_segments(tokenizer: Any, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
    """The conversation as ``(text, is_response)`` pieces whose concatenation is the whole.

    Raises :class:`DataError` when a chat template does not render turn by turn (a template
    that rewrites earlier turns), since the response spans could not be located.
    """
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if i == 0:
            raise DataError("a conversation starts with an assistant turn; it needs a user turn first.")
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        full = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise DataError(
                "the tokenizer's chat template does not render a conversation turn by turn, so "
                "the assistant replies cannot be located for the response-only loss.",
                hint="Use a model whose template appends turns, or remove its chat_template to "
                "use tunesmith's plain template.",
            )
        segments.append((prompt[len(done) :], False))
        segments.append((full[len(prompt) :], True))
        done = full
    return segments


def _ids(tokenizer: Any, text: str) -> list[int]:
    # The template already holds every special token (BOS, turn markers, EOS).
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _response_labels(ids: list[int], eos_id: int | None) -> tuple[list[int], list[int]]:
    """Labels of one response span: learned up to and including its EOS; EOS added if absent.

    What a template prints after the end-of-turn token (a newline) is not learned: generation
    stops at EOS and never produces it.
    """
    if eos_id is None:
        return ids, list(ids)
    if eos_id not in ids:
        ids = ids + [eos_id]
        return ids, list(ids)
    end = ids.index(eos_id) + 1
    return ids, ids[:end] + [IGNORE_INDEX] * (len(ids) - end)


@dataclass(frozen=True)
class EncodedCausal:
    """Per-example token ids and labels (lists), as ``tunesmith.train.encoding`` keeps them."""

    examples: list[dict[str, list[int]]]
    lengths: list[int]
    n_truncated: int
    # Examples dropped because truncation left no response token to learn from.
    n_dropped: int


def encode_messages(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """``{"input_ids", "labels"}`` of one conversation, labels -100 outside the responses."""
    input_ids: list[int] = []
    labels: list[int] = []
    for text, is_response in render_segments(tokenizer, messages):
        ids = _ids(tokenizer, text)
        if is_response:
            ids, span_labels = _response_labels(ids, tokenizer.eos_token_id)
        else:
            span_labels = [IGNORE_INDEX] * len(ids)
        input_ids += ids
        labels += span_labels
    return {"input_ids": input_ids, "labels": labels}


def encode_records(
    records: Sequence[Record], tokenizer: Any, max_length: int, labels: Sequence[str] = ()
) -> EncodedCausal:
    """Encode records for training or perplexity; cut at ``max_length`` tokens (the end goes).

    An example whose responses all fall beyond ``max_length`` is dropped (it would teach
    nothing) and counted in ``n_dropped``.
    """
    examples, lengths, truncated, dropped = [], [], 0, 0
    for record in records:
        example = encode_messages(tokenizer, record_messages(record, labels))
        if len(example["input_ids"]) > max_length:
            truncated += 1
            example = {k: v[:max_length] for k, v in example.items()}
        if all(label == IGNORE_INDEX for label in example["labels"][1:]):
            dropped += 1
            continue
        examples.append(example)
        lengths.append(len(example["input_ids"]))
    return EncodedCausal(examples, lengths, truncated, dropped)


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a generation prompt: the conversation so far plus the assistant header."""
    return _ids(tokenizer, _render(tokenizer, messages, generation_prompt=True))


def response_ids(tokenizer: Any, messages: list[dict[str, str]], response: str) -> list[int]:
    """The tokens that follow :func:`prompt_ids` when the assistant says ``response``.

    Ends with EOS (and nothing after it): what label-likelihood scoring sums over.
    """
    full = messages + [{"role": "assistant", "content": response}]
    segments = render_segments(tokenizer, full)
    ids, labels = _response_labels(_ids(tokenizer, segments[-1][0]), tokenizer.eos_token_id)
    return [i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]


# ---------------------------------------------------------------------------------------------
# Packing


def pack(examples: Sequence[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Pack examples into rows of at most ``max_length`` tokens (first fit, longest first).

    Each row holds ``input_ids``, ``labels`` and ``position_ids`` that restart at 0 for every
    example. Deterministic; the loop shuffles the rows.
    """
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    rows: list[dict[str, list[int]]] = []
    for i in order:
        example = examples[i]
        n = len(example["input_ids"])
        row = next((r for r in rows if len(r["input_ids"]) + n <= max_length), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "position_ids": []}
            rows.append(row)
        row["input_ids"] += example["input_ids"]
        row["labels"] += example["labels"]
        row["position_ids"] += list(range(n))
    return rows


def padded_tokens(lengths: Sequence[int], batch_size: int, *, grouped: bool = True) -> int:
    """Tokens computed when batches of ``batch_size`` are padded to their longest example.

    ``grouped``: batches of similar lengths (what ``finetune.group_by_length`` does, sorted
    here: its best case); otherwise batches in the given order.
    """
    ordered = sorted(lengths, reverse=True) if grouped else list(lengths)
    return sum(
        max(ordered[i : i + batch_size]) * len(ordered[i : i + batch_size])
        for i in range(0, len(ordered), batch_size)
    )


@dataclass(frozen=True)
class PackingPlan:
    enabled: bool
    # Tokens per epoch (padding included) without packing / with packing, and their ratio.
    tokens_unpacked: int
    tokens_packed: int
    gain: float
    rows: int
    reason: str


def plan_packing(
    lengths: Sequence[int],
    batch_size: int,
    max_length: int,
    setting: bool | str,
    *,
    grouped: bool = True,
) -> PackingPlan:
    """Decide whether to pack (``setting`` True, False or "auto") and report the gain.

    The gain is the tokens computed per epoch (padding included) by dynamically padded
    batches, length-grouped when ``grouped``, over those of packed rows. "auto" packs when the
    gain is at least 1.10x: below that, packing only makes fewer, longer rows (attention cost
    grows with row length) for no saving. Length grouping already removes most padding, so the
    gain is largest without it or when lengths vary a lot.
    """
    unpacked = padded_tokens(lengths, batch_size, grouped=grouped)
    fake = [{"input_ids": [0] * n, "labels": [0] * n} for n in lengths]
    rows = pack(fake, max_length)
    packed = padded_tokens([len(r["input_ids"]) for r in rows], batch_size, grouped=grouped)
    gain = unpacked / packed if packed else 1.0
    if setting == "auto":
        enabled = gain >= 1.1
        reason = (
            f"packing on: {gain:.2f}x fewer tokens per epoch than padded batches"
            if enabled
            else f"packing off: it would save only {gain:.2f}x (auto packs at 1.10x or more)"
        )
    else:
        enabled = bool(setting)
        reason = f"packing {'on' if enabled else 'off'} (finetune.packing: {setting}); gain {gain:.2f}x"
    return PackingPlan(enabled, unpacked, packed, gain, len(rows), reason)


def collate(rows: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, Any]:
    """Pad rows (packed or not) to the longest: ``input_ids``, ``labels``, ``position_ids``.

    ``attention_mask`` (1 on real tokens) is there for counting real tokens; the objective does
    not give it to the model, since causal attention plus position ids that restart per example
    (and for the padding block) is the whole mask (see the module docstring).
    """
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        input_ids[i, :n] = torch.tensor(row["input_ids"])
        labels[i, :n] = torch.tensor(row["labels"])
        positions = row.get("position_ids") or list(range(n))
        position_ids[i, :n] = torch.tensor(positions)
        position_ids[i, n:] = torch.arange(width - n)
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "attention_mask": attention_mask}


# ---------------------------------------------------------------------------------------------
# Objective


def _unwrap(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (its adapter layers stay in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _head_is_plain(model: Any) -> bool:
    # Models that scale or soft-cap their logits need the model's own forward.
    config = model.config
    return getattr(config, "final_logit_softcapping", None) is None and not hasattr(config, "logit_scale")


def _labelled_losses(model: Any, batch: dict[str, Any], reduction: str) -> tuple[Any, Any, Any]:
    """Cross-entropy at the positions that predict a labelled token (summed, or one per
    position with ``reduction="none"``), those targets, and the mask."""
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from tunesmith.train.objectives import chunked_cross_entropy

    # Under DDP the forward must go through the wrapper (it prepares the gradient all-reduce),
    # so the LM-head-at-labelled-positions shortcut is used on a single process only.
    distributed = isinstance(model, DistributedDataParallel)
    inner = _unwrap(model.module if distributed else model)
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    inputs = {"input_ids": batch["input_ids"], "use_cache": False}
    # Packed rows (see collate) carry position ids; plain right-padded batches an attention mask.
    for key in ("position_ids", "attention_mask"):
        if key in batch:
            inputs[key] = batch[key]
            break
    if _head_is_plain(inner) and not distributed:
        hidden = inner.get_decoder()(**inputs).last_hidden_state[:, :-1]
        # The head runs in chunks, so the full (positions x vocabulary) logits never exist.
        losses = chunked_cross_entropy(inner.get_output_embeddings(), hidden[keep], targets[keep],
                                       reduction=reduction)
    else:
        logits = model(**inputs).logits[:, :-1][keep]
        # float(): the loss stays accurate when the forward pass runs under bf16/fp16 autocast.
        losses = F.cross_entropy(logits.float(), targets[keep], reduction=reduction)
    return losses, targets[keep], keep


def causal_lm_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """``(sum of next-token losses over labelled tokens, their count)`` for one batch."""
    loss, targets, _ = _labelled_losses(model, batch, "sum")
    return loss, int(targets.numel())


def row_nll(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Per row of the batch: summed NLL of its labelled tokens, and how many there are."""
    losses, _, keep = _labelled_losses(model, batch, "none")
    rows = keep.nonzero()[:, 0]
    sums = losses.new_zeros(keep.shape[0]).index_add_(0, rows, losses)
    return sums, keep.sum(dim=1)


class CausalLMObjective:
    """The loop's objective for causal LMs (see ``tunesmith.train.objectives``)."""

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
        return causal_lm_loss(model, batch)


def nll_per_row(
    model: Any, rows: Sequence[dict[str, list[int]]], pad_token_id: int, batch_size: int = 8
) -> list[tuple[float, int]]:
    """Per row, in order: summed next-token NLL over its labelled tokens and their count.

    Evaluation only (no gradients); rows of similar length are batched together.
    """
    import torch

    model.eval()
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            sums, counts = row_nll(model, collate([rows[i] for i in chunk], pad_token_id))
            for i, total, n in zip(chunk, sums.tolist(), counts.tolist(), strict=True):
                out[i] = (total, n)
    return out


def response_loss(
    model: Any, rows: Sequence[dict[str, list[int]]], pad_token_id: int, batch_size: int = 8
) -> dict[str, float]:
    """``{"loss": mean NLL per labelled token, "perplexity": exp(loss)}`` over ``rows``."""
    per_row = nll_per_row(model, rows, pad_token_id, batch_size)
    total, count = sum(t for t, _ in per_row), sum(n for _, n in per_row)
    loss = total / count if count else math.nan
    return {"loss": loss, "perplexity": math.exp(loss) if count else math.inf}


# ---------------------------------------------------------------------------------------------
# The task family's plan for the training pipeline (tunesmith.pipelines.train.TASKS)

GENERATIVE_TASKS = ("instruction", "qa", "chat")
# Classification records finetuning a causal LM: trained as instructions (see record_messages)
# and scored by label likelihood (tunesmith.evaluate.prompting.label_nlls).
CLASSIFICATION_AS_INSTRUCTION = "classification-as-instruction"


def model_is_causal(name: str) -> bool:
    """Whether ``name`` (built-in, folder or hub id) is a decoder LM, without loading weights."""
    from transformers import AutoConfig

    from tunesmith.models.loader import resolve_model_path

    path, kind = resolve_model_path(name)
    if kind is not None:
        return kind == "causal"
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return False  # the loader reports an unknown model with its own message
    return any(a.endswith("ForCausalLM") for a in getattr(config, "architectures", None) or [])


def training_task(record_task: str, model_name: str) -> str:
    """The task family to train: the records' task, except classification on a causal LM."""
    if record_task == "classification" and model_is_causal(model_name):
        return CLASSIFICATION_AS_INSTRUCTION
    return record_task


def instruction_labels(records: Sequence[Record]) -> list[str] | None:
    """The label words of classification records (None for generative records)."""
    labels = sorted({r.label for r in records if isinstance(r, ClassificationRecord)})
    if not labels:
        return None
    if len(labels) < 2:
        raise DataError(
            f"the training split has a single label ({labels[0]}): a classifier needs two or more.",
            hint="Check the label column (prepare.column_map) or add examples of other labels.",
        )
    return labels


@dataclass
class CausalPlan:
    """What the training loop needs (the fields of ``pipelines.train.TaskPlan``)."""

    train_data: Any  # tunesmith.train.encoding.EncodedDataset of (packed) rows
    objective: CausalLMObjective
    evaluate: Any  # model -> {"loss", "perplexity"} on the validation responses, or None
    best_metric: str
    notes: list[str]
    packing: PackingPlan


def causal_plan(loaded: Any, train_records: Sequence[Record], val_records: Sequence[Record], cfg: Any) -> CausalPlan:
    """Encode the splits for a causal LM, pack the training rows when it pays, say so."""
    from tunesmith.train.encoding import EncodedDataset

    labels = instruction_labels(train_records) or ()
    tokenizer = loaded.tokenizer
    max_length = cfg.prepare.max_length
    batch_size = cfg.finetune.batch_size
    train = encode_records(train_records, tokenizer, max_length, labels)
    val = encode_records(val_records, tokenizer, max_length, labels)
    if not train.examples:
        raise DataError(
            f"no training example keeps a response within prepare.max_length={max_length} tokens.",
            hint="Raise prepare.max_length.",
        )
    notes = []
    if train.n_truncated + val.n_truncated:
        notes.append(
            f"{train.n_truncated + val.n_truncated} examples were longer than prepare.max_length="
            f"{max_length} tokens and were cut at the end."
        )
    if train.n_dropped + val.n_dropped:
        notes.append(f"{train.n_dropped + val.n_dropped} examples kept no response token after the cut and were dropped.")
    packing = plan_packing(
        train.lengths, batch_size, max_length, cfg.finetune.packing, grouped=cfg.finetune.group_by_length
    )
    notes.append(
        f"{packing.reason} ({packing.tokens_unpacked:,} -> {packing.tokens_packed:,} tokens per "
        f"epoch; {len(train.examples)} examples in {packing.rows} rows of <= {max_length})"
    )
    rows = pack(train.examples, max_length) if packing.enabled else train.examples
    data = EncodedDataset(rows, [len(r["input_ids"]) for r in rows], train.n_truncated)
    best = cfg.finetune.best_metric if cfg.finetune.best_metric != "auto" else "loss"
    pad = tokenizer.pad_token_id
    evaluate = (lambda model: response_loss(model, val.examples, pad, batch_size)) if val.examples else None
    return CausalPlan(data, CausalLMObjective(), evaluate, best, notes, packing)
