"""Mixing a share of other examples into a training set (general text, replayed tasks).

The guide's remedy for catastrophic forgetting, "Mix general data with task-specific data",
and replay in continual learning are the same operation: draw items from a pool until they
make up a given share of the mixed set. :func:`mix_count` and :func:`draw_share` do it for any
items, counted one each or weighted (e.g. by the tokens the loss is taken on), deterministically
for a seed. Pure Python; cost linear in the items drawn.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def mix_count(primary_total: float, share: float) -> float:
    """How much to add to ``primary_total`` so the addition is ``share`` of the mixed total.

    ``share`` 0.2 of a mix holding 80 primary items needs 20 more: ``80 x 0.2 / (1 - 0.2)``.
    Raises ValueError for a share outside [0, 1).
    """
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    return primary_total * share / (1 - share)


def draw_share(
    pool: Sequence[T],
    share: float,
    primary_total: float,
    *,
    seed: int,
    weight: Callable[[T], float] = lambda _: 1.0,
) -> list[T]:
    """Items of ``pool`` that make up ``share`` of a mix with ``primary_total``.

    Items are taken in an order shuffled with ``seed`` while their summed ``weight`` is below
    :func:`mix_count`; the item that would cross it is taken only when that lands nearer the
    target than stopping short (so heavy items may leave the share a little under or over,
    never by more than half an item). When the pool runs out first, it is shuffled again and
    reused, so a small pool repeats rather than falling short. An empty pool or share 0 gives
    []. Raises ValueError for a share outside [0, 1) or an item of weight <= 0.
    """
    target = mix_count(primary_total, share)
    if not pool or target <= 0:
        return []
    rng = random.Random(seed)
    drawn: list[T] = []
    total = 0.0
    while True:
        order = list(range(len(pool)))
        rng.shuffle(order)
        for index in order:
            item = pool[index]
            w = weight(item)
            if w <= 0:
                raise ValueError(f"item {index} of the pool has weight {w}; weights must be > 0")
            if total + w >= target:
                if total + w - target < target - total:
                    drawn.append(item)
                return drawn
            drawn.append(item)
            total += w
