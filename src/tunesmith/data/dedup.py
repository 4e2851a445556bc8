"""Exact and near duplicates, and conflicts (the same input with different labels or answers).

Two records are *exact* duplicates when their inputs are equal after normalisation (case,
whitespace and punctuation ignored), and *near* duplicates when the Jaccard similarity of their
word shingles reaches a threshold (0.9 by default). Near duplicates are found with MinHash and
LSH from ``datasketch``; candidates are then checked on the shingles themselves (or, when
streaming a huge file, on the MinHash signatures), so a reported pair is a real one.

The first record of a group is kept and later ones are removed; a removed record whose target
differs from the kept one is a *conflict*, reported with both labels.

Memory: the exact index keeps one 8-byte hash and a line number per distinct input (about 200
bytes each in Python), never the text.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from tunesmith.records import Record

# Words per shingle. Short texts (fewer words) are one shingle. 2-word shingles keep Jaccard
# meaningful on the guide's typical short inputs (a review of 18 words has 17 shingles).
SHINGLE_WORDS = 2
NUM_PERM = 64
# Pairs listed in reports; counts are always exact.
PAIRS_KEPT = 1000

@functools.cache
def _punctuation_to_space() -> dict[int, int]:
    # Built once (about 0.3 s): str.translate then runs in C, unlike a per-character loop.
    return {
        cp: 32 for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")
    }


def normalize(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: what "the same text" means here."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_punctuation_to_space())
    return " ".join(text.split())


def text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def input_key(record: Record) -> int:
    """Hash of the normalised input: equal keys are exact duplicates."""
    return text_hash(normalize(record.input_text()))


def target_label(record: Record) -> str:
    return record.target_text() if record.task == "classification" else normalize(record.target_text())


def shingles(text: str) -> set[str]:
    words = normalize(text).split()
    if len(words) <= SHINGLE_WORDS:
        return {" ".join(words)}
    return {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True, slots=True)
class Duplicate:
    kind: Literal["exact", "near"]
    line: int | None  # the removed record
    duplicate_of: int | None  # the kept record
    similarity: float
    conflict: bool
    # The two targets when they differ (labels for classification, shortened answers otherwise).
    targets: tuple[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind, "line": self.line, "duplicate_of": self.duplicate_of,
            "similarity": round(self.similarity, 4), "conflict": self.conflict,
        }
        if self.targets:
            d["targets"] = list(self.targets)
        return d


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _targets(kept: Record | str, removed: Record) -> tuple[str, str]:
    first = kept if isinstance(kept, str) else kept.target_text()
    return _short(first), _short(removed.target_text())


class ExactIndex:
    """Streaming exact-duplicate finder: ``check(record)`` -> a Duplicate, or None (first seen)."""

    def __init__(self) -> None:
        # input hash -> (line, target hash, label when classification)
        self._seen: dict[int, tuple[int | None, int, str | None]] = {}
        self._labels: dict[str, str] = {}  # interned, so a million rows share a few strings

    def check(self, record: Record) -> Duplicate | None:
        key = input_key(record)
        target = target_label(record)
        target_key = text_hash(target)
        first = self._seen.get(key)
        if first is None:
            label = self._labels.setdefault(target, target) if record.task == "classification" else None
            self._seen[key] = (record.line, target_key, label)
            return None
        line, first_target, label = first
        conflict = first_target != target_key
        targets = None
        if conflict:
            targets = (label, record.target_text()) if label is not None else ("(another answer)", _short(record.target_text()))
        return Duplicate("exact", record.line, line, 1.0, conflict, targets)

    def __len__(self) -> int:
        return len(self._seen)


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) so that a pair at the threshold becomes a candidate with >= 99.5% chance.

    datasketch's own choice balances false positives and negatives, which at 0.9 finds only
    about a third of the pairs; candidates are verified afterwards, so recall is what matters.
    """
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= 0.995:
            return bands, rows
    return num_perm, 1


class NearIndex:
    """MinHash/LSH over word shingles of the inputs; ``check`` finds a kept near-copy.

    ``keep_shingles`` verifies candidates on the shingles (exact Jaccard); without it
    (streaming huge files) the MinHash estimate is used and only signatures are held.
    """

    def __init__(self, threshold: float = 0.9, *, num_perm: int = NUM_PERM, keep_shingles: bool = True) -> None:
        from datasketch import MinHash, MinHashLSH

        self.threshold = threshold
        self.num_perm = num_perm
        self._lsh = MinHashLSH(num_perm=num_perm, params=lsh_bands(threshold, num_perm))
        # crc32 is deterministic and runs in C; datasketch's default (SHA-1 in Python) was most
        # of the time per record.
        self._template = MinHash(num_perm=num_perm, seed=1, hashfunc=zlib.crc32)
        self._keep_shingles = keep_shingles
        self._kept: list[tuple[int | None, Any, str]] = []  # (line, shingles or signature, target)
        self._count = 0

    def signature(self, grams: set[str]) -> Any:
        mh = self._template.copy()  # shares the permutations: building them is the slow part
        mh.update_batch([g.encode("utf-8", "surrogatepass") for g in grams])
        return mh

    def query(self, record: Record) -> tuple[tuple[int | None, Any, str], float] | None:
        """The most similar indexed record at or above the threshold, and the similarity."""
        grams = shingles(record.input_text())
        mh = self.signature(grams)
        return self._best(grams, mh)

    def _best(self, grams: set[str], mh: Any) -> tuple[tuple[int | None, Any, str], float] | None:
        best: tuple[tuple[int | None, Any, str], float] | None = None
        for key in self._lsh.query(mh):
            kept = self._kept[key]
            if self._keep_shingles:
                sim = jaccard(grams, kept[1])
            else:
                sim = float((kept[1] == mh.hashvalues).mean())
            if sim >= self.threshold and (best is None or sim > best[1] or (sim == best[1] and (kept[0] or 0) < (best[0][0] or 0))):
                best = (kept, sim)
        return best

    def add(self, record: Record, grams: set[str] | None = None, mh: Any = None) -> None:
        if grams is None:
            grams = shingles(record.input_text())
        if mh is None:
            mh = self.signature(grams)
        stored = grams if self._keep_shingles else mh.hashvalues
        self._kept.append((record.line, stored, target_label(record)))
        self._lsh.insert(len(self._kept) - 1, mh, check_duplication=False)

    def check(self, record: Record) -> Duplicate | None:
        """A Duplicate when a near-copy was indexed before; otherwise index this record."""
        grams = shingles(record.input_text())
        mh = self.signature(grams)
        found = self._best(grams, mh)
        if found is None:
            self.add(record, grams, mh)
            return None
        (line, _, target), sim = found
        conflict = target != target_label(record)
        targets = _targets(target, record) if conflict else None
        return Duplicate("near", record.line, line, sim, conflict, targets)


@dataclass
class DedupReport:
    mode: str
    threshold: float | None
    exact: int = 0
    near: int = 0
    conflicts: int = 0
    pairs: list[Duplicate] | None = None

    @property
    def removed(self) -> int:
        return self.exact + self.near

    def note(self, dup: Duplicate) -> None:
        if dup.kind == "exact":
            self.exact += 1
        else:
            self.near += 1
        self.conflicts += dup.conflict
        if self.pairs is None:
            self.pairs = []
        if len(self.pairs) < PAIRS_KEPT:
            self.pairs.append(dup)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "threshold": self.threshold, "exact": self.exact, "near": self.near,
            "removed": self.removed, "conflicts": self.conflicts,
            "pairs": [p.to_dict() for p in self.pairs or []],
            "pairs_listed": len(self.pairs or []),
        }


def deduplicate(
    records: Iterable[Record], mode: str = "exact", threshold: float = 0.9
) -> tuple[list[Record], DedupReport]:
    """Records without duplicates (first kept, in order) and what was removed and why.

    ``mode``: ``none`` keeps everything, ``exact`` removes normalised duplicates, ``near`` also
    removes near-duplicates. Conflicting duplicates are removed too (the first label is kept)
    so that no input can sit in two splits; the report lists them for fixing at the source.
    """
    report = DedupReport(mode, threshold if mode == "near" else None)
    if mode == "none":
        return list(records), report
    exact = ExactIndex()
    near = NearIndex(threshold) if mode == "near" else None
    kept: list[Record] = []
    for record in records:
        dup = exact.check(record)
        if dup is None and near is not None:
            dup = near.check(record)
        if dup is None:
            kept.append(record)
        else:
            report.note(dup)
    return kept, report
