"""Train/validation/test splits: random, stratified by label, by time, by group.

Every split is a pure function of (records in order, ratios, seed): the same input and seed give
the same splits. Sizes are rounded so the three parts add up to the total, and every part whose
ratio is above zero gets at least one record when there are enough.

- random: shuffle with the seed, cut by the ratios.
- stratified: the same within each label, so each split keeps the label proportions. A label
  with fewer records than non-empty splits cannot be spread and raises :class:`DataError`.
- time: sorted by the time field; train is strictly older than validation, which is strictly
  older than test. Records sharing a timestamp stay together, so cuts move to the nearest
  change of time; the boundaries are reported.
- group: whole groups are shuffled with the seed and given to the split that is furthest below
  its share, so no group spans two splits.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tunesmith.data.validate import time_value
from tunesmith.errors import DataError
from tunesmith.records import Record

SPLITS = ("train", "val", "test")

# How to ask for a random split: `run` and params.yaml take the config key, `tunesmith data
# split` its own option.
USE_RANDOM_SPLIT = ("split at random: --set prepare.split=random (`tunesmith run`, params.yaml "
                    "prepare.split), or --split random (`tunesmith data split`)")


@dataclass
class Split:
    train: list[Record]
    val: list[Record]
    test: list[Record]
    method: str
    info: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> dict[str, list[Record]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def part_sizes(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """Sizes adding up to ``n``, by largest remainder, each non-zero ratio given >= 1 if n allows."""
    exact = [n * r for r in ratios]
    sizes = [int(x) for x in exact]
    order = sorted(range(3), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in order[: n - sum(sizes)]:
        sizes[i] += 1
    for i in range(3):
        if ratios[i] > 0 and sizes[i] == 0:
            donor = max(range(3), key=lambda j: sizes[j])
            if sizes[donor] > 1:
                sizes[donor] -= 1
                sizes[i] += 1
    return sizes[0], sizes[1], sizes[2]


def _cut(items: list[Any], sizes: tuple[int, int, int]) -> tuple[list[Any], list[Any], list[Any]]:
    a, b = sizes[0], sizes[0] + sizes[1]
    return items[:a], items[a:b], items[b:]


def random_split(records: list[Record], ratios: tuple[float, float, float], seed: int) -> Split:
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    parts = _cut([records[i] for i in order], part_sizes(len(records), ratios))
    return Split(*parts, method="random")


def stratified_split(records: list[Record], ratios: tuple[float, float, float], seed: int) -> Split:
    by_label: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_label[record.target_text()].append(record)
    needed = sum(1 for r in ratios if r > 0)
    rare = {label: len(rs) for label, rs in by_label.items() if len(rs) < needed}
    if rare:
        shown = ", ".join(f"'{label}' ({count} record{'s' if count != 1 else ''})" for label, count in sorted(rare.items()))
        raise DataError(
            f"label(s) too rare to stratify: {shown}; each label needs at least {needed} records "
            "to appear in train, validation and test.",
            hint=f"Add examples of those labels, merge or drop them, or {USE_RANDOM_SPLIT}.",
        )
    rng = random.Random(seed)
    parts: tuple[list[Record], list[Record], list[Record]] = ([], [], [])
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        for part, chunk in zip(parts, _cut(group, part_sizes(len(group), ratios)), strict=True):
            part.extend(chunk)
    # Shuffle within each split so labels are not in blocks (training order matters).
    for part in parts:
        rng.shuffle(part)
    return Split(*parts, method="stratified")


def _show_time(value: float, raw: Any) -> Any:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return raw
    return datetime.fromtimestamp(value, tz=UTC).isoformat()


def time_split(records: list[Record], ratios: tuple[float, float, float], time_field: str) -> Split:
    keyed = sorted(
        ((time_value(r.meta[time_field]), i) for i, r in enumerate(records)),
    )
    n = len(keyed)
    sizes = part_sizes(n, ratios)
    times = [t for t, _ in keyed]

    def snap(cut: int) -> int:
        # Move a cut forward past records with the same time as the one before it.
        while 0 < cut < n and times[cut] == times[cut - 1]:
            cut += 1
        return cut

    first = snap(sizes[0])
    second = max(first, snap(sizes[0] + sizes[1]))
    ordered = [records[i] for _, i in keyed]
    train, val, test = ordered[:first], ordered[first:second], ordered[second:]
    if not train or (ratios[1] > 0 and not val) or not test:
        raise DataError(
            f"cannot split by time on '{time_field}': too few distinct times "
            f"({len(set(times))}) for three ordered parts.",
            hint=f"Use more data with more distinct times, or {USE_RANDOM_SPLIT}.",
        )
    raw = {i: records[i].meta[time_field] for _, i in keyed}

    def span(lo: int, hi: int) -> list[Any]:
        if lo >= hi:
            return []
        return [_show_time(times[lo], raw[keyed[lo][1]]), _show_time(times[hi - 1], raw[keyed[hi - 1][1]])]

    info = {
        "time_field": time_field,
        "train": span(0, first), "val": span(first, second), "test": span(second, n),
    }
    return Split(train, val, test, method="time", info=info)


def group_split(records: list[Record], ratios: tuple[float, float, float], group_field: str, seed: int) -> Split:
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        groups[str(record.meta[group_field])].append(record)
    names = sorted(groups)
    needed = sum(1 for r in ratios if r > 0)
    if len(names) < needed:
        raise DataError(
            f"cannot split by group on '{group_field}': {len(names)} group(s) for {needed} splits.",
            hint=f"Each split needs whole groups: use data with more groups, or {USE_RANDOM_SPLIT}.",
        )
    random.Random(seed).shuffle(names)
    targets = [len(records) * r for r in ratios]
    parts: tuple[list[Record], list[Record], list[Record]] = ([], [], [])
    counts = [0, 0, 0]
    # Start with one group in each non-empty split, then fill whichever is furthest below its share.
    for i, name in enumerate(names):
        if i < 3 and ratios[i] > 0 and counts[i] == 0:
            j = i
        else:
            j = max(range(3), key=lambda k: (targets[k] - counts[k], -k) if ratios[k] > 0 else (float("-inf"), 0))
        parts[j].extend(groups[name])
        counts[j] += len(groups[name])
    info = {
        "group_field": group_field,
        "groups": {s: len({str(r.meta[group_field]) for r in p}) for s, p in zip(SPLITS, parts, strict=True)},
    }
    return Split(*parts, method="group", info=info)


def split_records(
    records: list[Record],
    *,
    method: str,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 42,
    time_field: str | None = None,
    group_field: str | None = None,
) -> Split:
    """Dispatch on ``method``: auto (stratified for classification), random, stratified, time, group."""
    if method == "auto":
        method = "stratified" if records and records[0].task == "classification" else "random"
    if method == "random":
        return random_split(records, ratios, seed)
    if method == "stratified":
        if records and records[0].task != "classification":
            raise DataError("stratified splits need labels: use them for classification data only.")
        return stratified_split(records, ratios, seed)
    if method == "time":
        if not time_field:
            raise DataError("a time split needs a time field (--time-field).")
        return time_split(records, ratios, time_field)
    if method == "group":
        if not group_field:
            raise DataError("a group split needs a group field (--group-field).")
        return group_split(records, ratios, group_field, seed)
    raise DataError(f"unknown split method '{method}' (auto, random, stratified, time, group).")
