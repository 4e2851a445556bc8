"""The review store: pairs, votes and error marks in one sqlite file in the run folder.

``runs/<run>/review/review.sqlite`` in WAL mode with ``synchronous=FULL``: every vote is one
committed transaction before the app answers, so a vote the reviewer saw accepted survives a
SIGKILL of the app (and a power cut). Each call opens its own short connection, so the app's
worker threads never share one. A vote costs one small write (about a millisecond on a laptop
disk, plus an fsync).

A reviewer votes once per pair; voting again replaces the earlier vote (a corrected mistake).
Raises :class:`~tunesmith.errors.UsageError` for an unknown pair, choice or error record.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import UsageError

# What the reviewer pressed: the left answer, the right one, a tie, or both bad (keys 1-4).
CHOICES = ("left", "right", "tie", "both_bad")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL, prompt TEXT NOT NULL, reference TEXT,
    model_a TEXT NOT NULL, output_a TEXT NOT NULL, model_b TEXT NOT NULL, output_b TEXT NOT NULL,
    left_is_a INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS votes (
    pair_id TEXT NOT NULL REFERENCES pairs(id), reviewer TEXT NOT NULL, choice TEXT NOT NULL,
    winner TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    PRIMARY KEY (pair_id, reviewer));
CREATE TABLE IF NOT EXISTS marks (
    error_index INTEGER NOT NULL, reviewer TEXT NOT NULL, text TEXT NOT NULL, label TEXT NOT NULL,
    predicted TEXT NOT NULL, corrected TEXT, note TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    PRIMARY KEY (error_index, reviewer));
"""


class UnknownItem(UsageError):
    """A vote or mark for an item this review does not hold (the app answers 404)."""


@dataclass(frozen=True)
class Pair:
    """One blind comparison: ``model_a``/``model_b`` are in a fixed (sorted) order; the page
    shows A on the left when ``left_is_a``."""

    id: str
    position: int
    prompt: str
    reference: str | None
    model_a: str
    output_a: str
    model_b: str
    output_b: str
    left_is_a: bool

    def side(self, choice: str) -> str:
        """The winner in model terms ("a", "b", "tie", "both_bad") of a pressed ``choice``."""
        if choice == "left":
            return "a" if self.left_is_a else "b"
        if choice == "right":
            return "b" if self.left_is_a else "a"
        return choice

    def shown(self) -> tuple[str, str]:
        """The (left, right) answers as the page shows them."""
        return (self.output_a, self.output_b) if self.left_is_a else (self.output_b, self.output_a)


def _pair(row: Any) -> Pair:
    """A Pair from a row of the pairs table (its columns in the dataclass's order)."""
    return Pair(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8]))


@dataclass(frozen=True)
class Vote:
    pair_id: str
    reviewer: str
    choice: str  # as pressed: left | right | tie | both_bad
    winner: str  # in model terms: a | b | tie | both_bad
    note: str
    created: float


@dataclass(frozen=True)
class Mark:
    """A reviewer's "label is wrong" on one record of errors.jsonl."""

    error_index: int
    reviewer: str
    text: str
    label: str
    predicted: str
    corrected: str | None  # the right label, or None: drop the record
    note: str
    created: float


class ReviewStore:
    """Open (and create) the store at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA synchronous=FULL")
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # -- pairs -------------------------------------------------------------------------------

    def add_pairs(self, pairs: Sequence[Pair]) -> int:
        """Insert pairs not stored yet (a stored pair keeps its layout and votes); returns how
        many were new."""
        with self._connect() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(p.id, p.position, p.prompt, p.reference, p.model_a, p.output_a, p.model_b,
                  p.output_b, int(p.left_is_a)) for p in pairs],
            )
            return db.total_changes - before

    def pairs(self, ids: Sequence[str] | None = None) -> list[Pair]:
        """Stored pairs in queue order (only ``ids`` when given)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM pairs ORDER BY position, id").fetchall()
        out = [_pair(row) for row in rows]
        if ids is not None:
            wanted = set(ids)
            out = [p for p in out if p.id in wanted]
        return out

    def pair(self, pair_id: str) -> Pair:
        with self._connect() as db:
            row = db.execute("SELECT * FROM pairs WHERE id = ?", (pair_id,)).fetchone()
        if row is None:
            raise UnknownItem(f"no item '{pair_id}' in this review ({self.path}).",
                             hint="Vote on an item the review page showed; reload the page.")
        return _pair(row)

    # -- votes -------------------------------------------------------------------------------

    def vote(self, pair_id: str, reviewer: str, choice: str, note: str = "") -> Vote:
        """Record (or replace) ``reviewer``'s vote on ``pair_id``; committed on return."""
        if choice not in CHOICES:
            raise UsageError(f"unknown choice '{choice}'.", hint="Choose one of: " + ", ".join(CHOICES))
        reviewer = reviewer.strip()
        if not reviewer:
            raise UsageError("a vote needs a reviewer name.", hint="Enter your name on the review page first.")
        pair = self.pair(pair_id)
        vote = Vote(pair_id, reviewer, choice, pair.side(choice), note.strip(), time.time())
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO votes VALUES (?, ?, ?, ?, ?, ?)",
                       (vote.pair_id, vote.reviewer, vote.choice, vote.winner, vote.note, vote.created))
        return vote

    def votes(self, reviewer: str | None = None) -> list[Vote]:
        query, args = "SELECT * FROM votes", tuple[str, ...]()
        if reviewer is not None:
            query, args = query + " WHERE reviewer = ?", (reviewer,)
        with self._connect() as db:
            return [Vote(*row) for row in db.execute(query + " ORDER BY created", args)]

    def next_pair(self, reviewer: str, ids: Sequence[str] | None = None) -> Pair | None:
        """The first pair in queue order (among ``ids``) that ``reviewer`` has not voted on."""
        done = {v.pair_id for v in self.votes(reviewer)}
        return next((p for p in self.pairs(ids) if p.id not in done), None)

    # -- error marks -------------------------------------------------------------------------

    def mark(self, error_index: int, record: dict[str, Any], reviewer: str,
             corrected: str | None, note: str = "") -> Mark:
        """Record that ``record`` (errors.jsonl line ``error_index``) carries a wrong label."""
        reviewer = reviewer.strip()
        if not reviewer:
            raise UsageError("a mark needs a reviewer name.", hint="Enter your name first.")
        mark = Mark(error_index, reviewer, record["text"], record["label"], record["predicted"],
                    corrected or None, note.strip(), time.time())
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO marks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       tuple(asdict(mark).values()))
        return mark

    def unmark(self, error_index: int, reviewer: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM marks WHERE error_index = ? AND reviewer = ?", (error_index, reviewer))

    def marks(self) -> list[Mark]:
        with self._connect() as db:
            return [Mark(*row) for row in db.execute("SELECT * FROM marks ORDER BY error_index, created")]
