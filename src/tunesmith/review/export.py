"""Votes as preference data for the next round of training, and error marks as corrections.

Preference pairs use the "standard" format TRL's DPO trainer reads: one JSON object per line
with ``prompt``, ``chosen`` and ``rejected`` strings. Each pair contributes one row when its
decisive votes (A or B) lean one way; a tie, "both bad", an even split or two identical
answers say nothing about which answer to prefer and are left out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tunesmith.data.corrections import Correction, write_corrections
from tunesmith.review.store import Mark, Pair, Vote


def preference_rows(pairs: Sequence[Pair], votes: Sequence[Vote]) -> list[dict[str, str]]:
    """One ``{"prompt", "chosen", "rejected"}`` row per pair the decisive votes prefer one way."""
    tally: dict[str, Counter[str]] = {}
    for vote in votes:
        if vote.winner in ("a", "b"):
            tally.setdefault(vote.pair_id, Counter())[vote.winner] += 1
    rows = []
    for pair in pairs:
        counts = tally.get(pair.id)
        # Identical answers teach a preference nothing (and DPO's loss is zero on them).
        if not counts or counts["a"] == counts["b"] or pair.output_a == pair.output_b:
            continue
        a_wins = counts["a"] > counts["b"]
        chosen, rejected = (pair.output_a, pair.output_b) if a_wins else (pair.output_b, pair.output_a)
        rows.append({"prompt": pair.prompt, "chosen": chosen, "rejected": rejected})
    return rows


def write_preferences(pairs: Sequence[Pair], votes: Sequence[Vote], path: str | Path) -> int:
    rows = preference_rows(pairs, votes)
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def corrections_from_marks(marks: Sequence[Mark]) -> list[Correction]:
    """One correction per marked record; when reviewers disagree on the right label, the most
    named one (ties: drop the record, as nobody settled it)."""
    by_record: dict[tuple[str, str], Counter[str | None]] = {}
    for mark in marks:
        by_record.setdefault((mark.text, mark.label), Counter())[mark.corrected] += 1
    out = []
    for (text, label), counts in by_record.items():
        ranked = counts.most_common()
        settled = len(ranked) == 1 or ranked[0][1] > ranked[1][1]
        out.append(Correction(text, label, ranked[0][0] if settled else None))
    return out


def write_corrections_file(marks: Sequence[Mark], path: str | Path) -> int:
    return write_corrections(corrections_from_marks(marks), path)
