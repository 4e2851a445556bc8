"""Training sets drawn from several tasks: multi-task mixtures and continual-learning replay.

A causal LM learns every task format as chat messages (:func:`tunesmith.train.causal.record_messages`),
so records of different tasks train together once each is turned into a :class:`ChatRecord`
(:func:`as_chat`); the ``task`` it came from is kept in its ``meta``. This is lossless: the
chat record renders and is labelled exactly like the original record.

**Task-balanced sampling** (:func:`task_counts`): how many training records each task
contributes. With ``n_i`` records available, task ``i`` gets a share proportional to
``n_i ** (1 / T)`` (temperature-scaled mixing, as in T5: Raffel et al. 2020, section 3.5.2):

- ``proportional`` (T = 1): each task in proportion to its size; a big task dominates;
- ``equal`` (T -> infinity): the same number from every task; small tasks are repeated;
- ``temperature`` (T > 1, default 2): in between, the usual compromise.

A task asked for more records than it has repeats them (each whole pass in a new shuffled
order), so ``equal`` really is equal. Everything here is pure and seeded; it costs a shuffle.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Literal, cast

from tunesmith.errors import ConfigError
from tunesmith.records import ChatRecord, Message, Record
from tunesmith.train.prompts import record_messages

Role = Literal["system", "user", "assistant"]  # Message.role

Sampling = Literal["proportional", "equal", "temperature"]
SAMPLINGS: tuple[str, ...] = ("proportional", "equal", "temperature")


def task_shares(sizes: Mapping[str, int], sampling: Sampling = "temperature",
                temperature: float = 2.0) -> dict[str, float]:
    """Each task's share of the mixture (they sum to 1); see the module docstring.

    Raises ConfigError for an unknown ``sampling``, a temperature below 1, or a task with no
    records.
    """
    if sampling not in SAMPLINGS:
        raise ConfigError(f"task sampling '{sampling}' is not one of {', '.join(SAMPLINGS)}.")
    if sampling == "temperature" and temperature < 1:
        raise ConfigError(f"the sampling temperature must be 1 or more (got {temperature:g}): 1 is "
                          "proportional, larger values move towards equal shares.")
    empty = [name for name, n in sizes.items() if n <= 0]
    if empty:
        raise ConfigError(f"task(s) {', '.join(empty)} have no training records to sample from.")
    exponent = {"proportional": 1.0, "equal": 0.0, "temperature": 1.0 / temperature}[sampling]
    weights = {name: n ** exponent for name, n in sizes.items()}
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def task_counts(sizes: Mapping[str, int], total: int, sampling: Sampling = "temperature",
                temperature: float = 2.0) -> dict[str, int]:
    """How many of ``total`` training records each task contributes (largest remainders, so the
    counts sum to ``total`` exactly)."""
    shares = task_shares(sizes, sampling, temperature)
    exact = {name: share * total for name, share in shares.items()}
    counts = {name: math.floor(x) for name, x in exact.items()}
    left = total - sum(counts.values())
    for name in sorted(exact, key=lambda k: counts[k] - exact[k])[:left]:
        counts[name] += 1
    return counts


def draw(records: Sequence[Record], count: int, rng: random.Random) -> list[Record]:
    """``count`` records: whole shuffled passes over ``records``, then a shuffled part of one."""
    out: list[Record] = []
    while len(out) < count:
        batch = list(records)
        rng.shuffle(batch)
        out += batch[: count - len(out)]
    return out


def as_chat(record: Record, task: str, labels: Sequence[str] = ()) -> ChatRecord:
    """``record`` as the chat messages it trains as, with ``task`` in its meta.

    ``labels`` are its task's label words (classification records name them in the prompt).
    """
    if isinstance(record, ChatRecord):
        return ChatRecord(messages=record.messages, meta={**record.meta, "task": task})
    # record_messages writes only the roles a Message takes (system, user, assistant).
    messages = tuple(Message(cast(Role, m["role"]), m["content"]) for m in record_messages(record, labels))
    return ChatRecord(messages=messages, meta={**record.meta, "task": task})


def mixture(tasks: Mapping[str, tuple[Sequence[Record], Sequence[str]]], counts: Mapping[str, int],
            seed: int = 42) -> list[ChatRecord]:
    """The multi-task training set: ``counts[name]`` records of each task (records, labels) as
    chat records tagged with their task, shuffled together."""
    rng = random.Random(seed)
    out = [as_chat(r, name, labels) for name, (records, labels) in tasks.items()
           for r in draw(records, counts[name], rng)]
    rng.shuffle(out)
    return out


def replay_sample(records: Sequence[Record], fraction: float, seed: int = 42) -> list[Record]:
    """``round(fraction x len(records))`` of ``records`` drawn without repetition (seeded)."""
    count = round(fraction * len(records))
    return random.Random(seed).sample(list(records), count)
