"""Leakage: inputs of one set that appear (exactly or nearly) in another.

The guide's first leakage scenario is duplicate data across train and test. ``find_leaks(a, b)``
lists every record of ``b`` whose normalised input is in ``a`` (exact) or, with ``near``, whose
word-shingle Jaccard similarity to a record of ``a`` reaches the threshold. ``overlap_check``
runs it on each pair of splits; it is what the manifest records after the split files are
written and read back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from tunesmith.data.dedup import PAIRS_KEPT, NearIndex, input_key
from tunesmith.records import Record


@dataclass(frozen=True, slots=True)
class Leak:
    kind: str  # "exact" | "near"
    line_a: int | None
    line_b: int | None
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "line_a": self.line_a, "line_b": self.line_b,
                "similarity": round(self.similarity, 4)}


@dataclass
class LeakReport:
    exact: int = 0
    near: int = 0
    checked_b: int = 0
    leaks: list[Leak] | None = None

    @property
    def total(self) -> int:
        return self.exact + self.near

    def to_dict(self) -> dict[str, Any]:
        return {"exact": self.exact, "near": self.near, "total": self.total,
                "checked": self.checked_b, "pairs": [x.to_dict() for x in self.leaks or []]}


def find_leaks(
    a: Iterable[Record], b: Iterable[Record], *, near: bool = False, threshold: float = 0.9
) -> LeakReport:
    """Records of ``b`` whose input is in ``a``; ``a`` is indexed, ``b`` streamed."""
    exact_index: dict[int, int | None] = {}
    near_index = NearIndex(threshold) if near else None
    for record in a:
        exact_index.setdefault(input_key(record), record.line)
        if near_index is not None:
            near_index.add(record)
    report = LeakReport(leaks=[])
    for record in b:
        report.checked_b += 1
        key = input_key(record)
        leak = None
        if key in exact_index:
            leak = Leak("exact", exact_index[key], record.line, 1.0)
            report.exact += 1
        elif near_index is not None:
            found = near_index.query(record)
            if found is not None:
                (line, _, _), sim = found
                leak = Leak("near", line, record.line, sim)
                report.near += 1
        if leak is not None and len(report.leaks) < PAIRS_KEPT:  # type: ignore[arg-type]
            report.leaks.append(leak)  # type: ignore[union-attr]
    return report


def overlap_check(parts: dict[str, list[Record]], *, near: bool = False, threshold: float = 0.9) -> dict[str, Any]:
    """Leaks between every pair of splits: ``{"train-val": 0, ..., "passed": True, "method": ...}``."""
    result: dict[str, Any] = {"method": "exact+near" if near else "exact"}
    if near:
        result["threshold"] = threshold
    total = 0
    for (name_a, a), (name_b, b) in combinations(parts.items(), 2):
        leaks = find_leaks(a, b, near=near, threshold=threshold)
        result[f"{name_a}-{name_b}"] = leaks.total
        total += leaks.total
    result["passed"] = total == 0
    return result
