"""One open review: what the app's routes call, as plain functions tests can call directly.

A session holds the store, the pairs being reviewed now (the queue), the run's errors.jsonl
for the error browser and the playground. Results cover every pair and vote in the store,
so a review that grew over several sessions (--against baseline, later --against RUN2) is
summarised as a whole. Raises :class:`~tunesmith.review.store.UnknownItem` for items it does
not hold and UsageError for other bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import runfiles
from tunesmith.errors import UsageError
from tunesmith.review.generate import Playground
from tunesmith.review.pairs import RunInfo
from tunesmith.review.stats import ReviewResults, summarize
from tunesmith.review.store import Mark, Pair, ReviewStore, UnknownItem, Vote


def store_for(run: RunInfo) -> ReviewStore:
    return ReviewStore(run.path / runfiles.REVIEW_DIR / runfiles.REVIEW_DB)


@dataclass(frozen=True)
class Item:
    """A pair as the page shows it: blind, left and right only."""

    pair_id: str
    prompt: str
    left: str
    right: str


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


class ReviewSession:
    def __init__(self, run: RunInfo, store: ReviewStore, pair_ids: Sequence[str] = (),
                 playground: Playground | None = None, seed: int = 0) -> None:
        self.run = run
        self.store = store
        self.pair_ids = list(pair_ids)
        self.playground = playground
        self.seed = seed
        self._errors = run.errors()

    # -- pairwise ---------------------------------------------------------------------------

    def progress(self, reviewer: str) -> Progress:
        queue = set(self.pair_ids)
        done = sum(v.pair_id in queue for v in self.store.votes(reviewer))
        return Progress(done, len(self.pair_ids))

    def next_item(self, reviewer: str) -> Item | None:
        pair = self.store.next_pair(reviewer, self.pair_ids)
        if pair is None:
            return None
        left, right = pair.shown()
        return Item(pair.id, pair.prompt, left, right)

    def vote(self, pair_id: str, reviewer: str, choice: str, note: str = "") -> Vote:
        if pair_id not in self.pair_ids:
            raise UnknownItem(f"no item '{pair_id}' in this review of {self.run.name}.",
                              hint="Vote on an item the review page showed; reload the page.")
        return self.store.vote(pair_id, reviewer, choice, note)

    def pairs(self) -> list[Pair]:
        return self.store.pairs()

    def results(self, n_boot: int = 2000) -> ReviewResults:
        return summarize(self.store.pairs(), self.store.votes(), self.run.name, n_boot=n_boot,
                         seed=self.seed, metric=self.run.headline)

    # -- error browser ----------------------------------------------------------------------

    @property
    def has_errors(self) -> bool:
        return bool(self._errors)

    def error_labels(self) -> list[str]:
        labels = self.run.labels or sorted({e["label"] for e in self._errors} | {e["predicted"] for e in self._errors})
        return list(labels)

    def errors(self, label: str | None = None, predicted: str | None = None) -> list[dict[str, Any]]:
        """errors.jsonl rows (with their ``index`` and every reviewer's ``marks``), filtered."""
        marks: dict[int, list[Mark]] = {}
        for mark in self.store.marks():
            marks.setdefault(mark.error_index, []).append(mark)
        return [
            {**row, "index": i, "marks": marks.get(i, [])}
            for i, row in enumerate(self._errors)
            if (not label or row["label"] == label) and (not predicted or row["predicted"] == predicted)
        ]

    def _error(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self._errors):
            raise UnknownItem(f"no error record {index} in {self.run.path / runfiles.ERRORS} "
                              f"({len(self._errors)} records).", hint="Reload the error browser.")
        return self._errors[index]

    def mark(self, index: int, reviewer: str, corrected: str | None = None, note: str = "") -> Mark:
        record = self._error(index)
        if corrected and corrected not in self.error_labels():
            raise UsageError(f"unknown label '{corrected}'.", hint="Labels: " + ", ".join(self.error_labels()))
        if corrected == record["label"]:
            raise UsageError(f"record {index} already carries the label '{corrected}'.",
                             hint="Name the right label, or none to drop the record.")
        return self.store.mark(index, record, reviewer, corrected, note)

    def unmark(self, index: int, reviewer: str) -> None:
        self._error(index)
        self.store.unmark(index, reviewer)

    def export_dir(self) -> Path:
        return self.run.path / runfiles.REVIEW_DIR
