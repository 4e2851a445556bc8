"""The generative baseline: the same model before finetuning, prompted zero-shot and few-shot.

Zero-shot uses exactly the prompt the finetuned model is trained and evaluated with, so the
comparison isolates what finetuning changed. Few-shot puts ``k`` worked examples before it, as
earlier user/assistant turns of the conversation. The examples are drawn (with the seed) from
the TRAIN split only, never from the test split being scored.

Classification on a causal model is not scored by parsing free text: an instruct model answers
in sentences ("This review is positive, as it ...") that a parser misses. Instead
:func:`label_nlls` scores each label word's likelihood after the prompt (the tokens of the
label and the end-of-turn token) and picks the most likely, which measures what the model
knows whatever its phrasing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tunesmith.records import Record
from tunesmith.train.encoding import IGNORE_INDEX
from tunesmith.train.objectives import nll_per_row
from tunesmith.train.prompts import prompt_ids, record_messages, response_ids


def few_shot_turns(
    train: Sequence[Record], k: int, *, seed: int, labels: Sequence[str] = ()
) -> list[dict[str, str]]:
    """``k`` worked examples from the train split as alternating user/assistant turns.

    Each example contributes its final exchange (the last user turn and the reply to it).
    """
    if k <= 0 or not train:
        return []
    rng = random.Random(seed)
    turns: list[dict[str, str]] = []
    for record in rng.sample(list(train), min(k, len(train))):
        turns += record_messages(record, labels)[-2:]
    return turns


def prompt_messages(
    record: Record, shots: Sequence[dict[str, str]] = (), labels: Sequence[str] = ()
) -> list[dict[str, str]]:
    """The conversation that asks for ``record``'s final reply, after any few-shot turns.

    A system message of the record stays first, before the shots.
    """
    messages = record_messages(record, labels)[:-1]
    system = [m for m in messages[:1] if m["role"] == "system"]
    return system + list(shots) + messages[len(system) :]


def reference(record: Record, labels: Sequence[str] = ()) -> str:
    return record_messages(record, labels)[-1]["content"]


def reply_rows(
    tokenizer: Any,
    prompts: Sequence[list[dict[str, str]]],
    replies: Sequence[str],
    max_length: int | None = None,
) -> list[dict[str, list[int]]]:
    """Rows that score each reply after its prompt: only the reply's tokens (and EOS) count.

    A row longer than ``max_length`` loses the start of its prompt (the oldest turns).
    """
    rows = []
    for messages, reply in zip(prompts, replies, strict=True):
        prompt = prompt_ids(tokenizer, messages)
        answer = response_ids(tokenizer, messages, reply)
        if max_length is not None:
            prompt = prompt[max(0, len(prompt) + len(answer) - max_length) :]
        rows.append({"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer})
    return rows


def label_nlls(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[dict[str, str]]],
    labels: Sequence[str],
    batch_size: int = 8,
    max_length: int | None = None,
) -> list[list[tuple[float, int]]]:
    """Per prompt, per label: the summed NLL of that label's reply tokens, and their count.

    One forward pass per (prompt, label) pair: ``len(labels)`` passes per example.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    expanded = [messages for messages in prompts for _ in labels]
    rows = reply_rows(tokenizer, expanded, list(labels) * len(prompts), max_length)
    scores = nll_per_row(model, rows, pad_id, batch_size)
    return [scores[i : i + len(labels)] for i in range(0, len(scores), len(labels))]


def most_likely(labels: Sequence[str], scores: Sequence[tuple[float, int]]) -> str:
    """The label with the lowest summed NLL (the highest likelihood of the whole reply)."""
    return labels[min(range(len(labels)), key=lambda i: scores[i][0])]


def label_probabilities(scores: Sequence[tuple[float, int]]) -> list[float]:
    """Each label's probability, normalised over the labels, from its reply's summed NLL
    (``label_nlls``' scores, in the labels' order): a softmax of the negative sums."""
    import math

    best = min(total for total, _ in scores)
    weights = [math.exp(best - total) for total, _ in scores]
    return [w / sum(weights) for w in weights]
