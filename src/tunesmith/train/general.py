"""General text mixed into causal-LM training (``prepare.mix_general``), and the windows the
forgetting check scores.

The guide's remedy for catastrophic forgetting: "Mix general data with task-specific data".
:func:`mix_general` draws examples of general text until they hold ``prepare.mix_general`` of
the tokens the loss is taken on (:func:`tunesmith.data.mixing.draw_share`, weighted by
learned tokens: a Hamlet passage teaches ~128 tokens where a sentiment answer teaches 2, so a
share of examples would let the general text swamp the task). Every token of a general example
carries ``general = 1`` (task tokens 0), through packing and batching, so the loop logs the
general text's loss apart from the task's (history ``general_loss``).

Sources:

- ``hamlet``: the play cut into :data:`WINDOW`-token windows on the same grid as the
  forgetting check (:func:`check_starts`); the windows the check scores are left out, so the
  check still measures text the model never trained on (though of the same play: docs/generative.md
  reads the figures with that in mind). Each window is cut to ``max_length``; every token but
  the first is learned (plain language modelling).
- ``chitchat``: the bundled human conversations, encoded as chats (the replies are learned).

Cost: tokenizing Hamlet once (about 50k tokens, a second or two) or a few hundred
conversations; nothing per step beyond the extra rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith import assets
from tunesmith.data.mixing import draw_share, mix_count
from tunesmith.records import Record
from tunesmith.train.encoding import GENERAL, IGNORE_INDEX

# Encodes chat records for a causal LM: tunesmith.train.causal.encode_records, passed in by the
# causal plan (the forgetting check imports this module and must not import the training code).
Encode = Callable[[Sequence[Record], Any, int], Any]

# The forgetting check's windows: WINDOW tokens each, at most CHECK_WINDOWS of them.
WINDOW = 256
CHECK_WINDOWS = 8


def window_starts(n_tokens: int, window: int = WINDOW) -> list[int]:
    """Every window's first token on the grid that cuts a text of ``n_tokens`` into windows."""
    return list(range(0, max(n_tokens - 1, 1), window))


def check_starts(n_tokens: int, window: int = WINDOW, max_windows: int = CHECK_WINDOWS) -> list[int]:
    """The windows the forgetting check scores: up to ``max_windows`` spread evenly over the
    grid of :func:`window_starts`."""
    starts = window_starts(n_tokens, window)
    if len(starts) > max_windows:
        step = len(starts) / max_windows
        starts = [starts[int(i * step)] for i in range(max_windows)]
    return starts


def learned_tokens(example: dict[str, list[int]]) -> int:
    """Tokens of an encoded causal example that the loss is taken on (the first position
    predicts nothing)."""
    return sum(1 for label in example["labels"][1:] if label != IGNORE_INDEX)


def hamlet_examples(tokenizer: Any, max_length: int) -> list[dict[str, list[int]]]:
    """Hamlet's windows outside the forgetting check's, cut to ``max_length``, all tokens learned."""
    ids = tokenizer(assets.hamlet_text(), add_special_tokens=False)["input_ids"]
    checked = set(check_starts(len(ids)))
    examples = []
    for start in window_starts(len(ids)):
        if start in checked:
            continue
        window = list(ids[start : start + WINDOW])
        for piece_start in range(0, len(window), max_length):
            piece = window[piece_start : piece_start + max_length]
            if len(piece) >= 2:
                # The first token has no context to be predicted from: unlabelled, so that in a
                # packed row it is not predicted from the end of the example before it.
                examples.append({"input_ids": piece, "labels": [IGNORE_INDEX, *piece[1:]]})
    return examples


def chitchat_examples(tokenizer: Any, max_length: int, needed: float, seed: int,
                      encode_records: Encode) -> list[dict[str, list[int]]]:
    """Encoded chitchat conversations in an order shuffled with ``seed``, encoded until they
    hold ``needed`` learned tokens (with some to spare for the draw), not all 4,017."""
    records = assets.load_builtin_records("chitchat")
    random.Random(seed).shuffle(records)
    examples: list[dict[str, list[int]]] = []
    have = 0
    for start in range(0, len(records), 64):
        encoded = encode_records(records[start : start + 64], tokenizer, max_length).examples
        examples += encoded
        have += sum(learned_tokens(e) for e in encoded)
        if have >= 2 * needed:
            break
    return examples


@dataclass(frozen=True)
class GeneralMix:
    """The general examples drawn, and the tokens the loss is taken on, general and task."""

    examples: list[dict[str, list[int]]]
    source: str
    general_tokens: int
    task_tokens: int

    def note(self, share: float) -> str:
        total = self.general_tokens + self.task_tokens
        return (f"mix_general {share:g}: {len(self.examples)} {self.source} examples added, "
                f"{self.general_tokens:,} of {total:,} learned tokens "
                f"({self.general_tokens / max(total, 1):.1%}); history.jsonl logs their loss "
                "apart as general_loss, and loss stays the task's.")


def flag(examples: Sequence[dict[str, list[int]]], value: int) -> list[dict[str, list[int]]]:
    """Copies of ``examples`` whose every token carries ``general = value``."""
    return [{**e, GENERAL: [value] * len(e["input_ids"])} for e in examples]


def mix_general(
    task_examples: Sequence[dict[str, list[int]]],
    tokenizer: Any,
    *,
    share: float,
    source: str,
    max_length: int,
    seed: int,
    encode_records: Encode,
) -> GeneralMix:
    """General examples (flagged) that hold ``share`` of the learned tokens of the mix with
    ``task_examples``. Raises ValueError for a share outside [0, 1)."""
    task_tokens = sum(learned_tokens(e) for e in task_examples)
    needed = mix_count(task_tokens, share)
    if source == "hamlet":
        pool = hamlet_examples(tokenizer, max_length)
    else:
        pool = chitchat_examples(tokenizer, max_length, needed, seed, encode_records)
    drawn = draw_share(pool, share, task_tokens, seed=seed, weight=learned_tokens)
    return GeneralMix(flag(drawn, 1), source, sum(learned_tokens(e) for e in drawn), task_tokens)
