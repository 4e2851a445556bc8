"""Label corrections from human review, applied when data is converted.

A corrections file is JSONL, one record per line: ``{"text", "label", "corrected"}`` where
``label`` is the label the data carries now and ``corrected`` the right one, or null to drop
the record (a reviewer marked the label wrong without naming the right one). The review app
writes it (``runs/<run>/review/corrections.jsonl``); ``tunesmith data convert DATA OUT
--corrections FILE`` applies it. A record matches on its exact text and current label, so a
correction never touches a record it was not made for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from tunesmith.errors import DataError
from tunesmith.records import ClassificationRecord, Record


@dataclass(frozen=True)
class Correction:
    text: str
    label: str
    corrected: str | None  # None: drop the record

    def to_dict(self) -> dict[str, str | None]:
        return {"text": self.text, "label": self.label, "corrected": self.corrected}


def write_corrections(corrections: Iterable[Correction], path: str | Path) -> int:
    """Write ``corrections`` as JSONL; returns how many lines were written."""
    lines = [json.dumps(c.to_dict(), ensure_ascii=False) for c in corrections]
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def read_corrections(path: str | Path) -> dict[tuple[str, str], Correction]:
    """The corrections of ``path`` keyed by (text, label). Raises DataError naming the bad line."""
    if not Path(path).is_file():
        raise DataError(f"no corrections file at {path}.",
                        hint="`tunesmith review RUN --results` writes runs/<run>/review/corrections.jsonl.")
    out: dict[tuple[str, str], Correction] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            correction = Correction(str(row["text"]), str(row["label"]),
                                    None if row.get("corrected") is None else str(row["corrected"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}, line {n}: not a correction ({type(exc).__name__}: {exc}).",
                            hint='Each line is {"text": ..., "label": ..., "corrected": LABEL or null}.') from None
        out[correction.text, correction.label] = correction
    return out


def apply_correction(record: Record, corrections: dict[tuple[str, str], Correction]) -> Record | None:
    """``record`` with its label corrected, None when it is to be dropped, unchanged otherwise."""
    if not isinstance(record, ClassificationRecord):
        return record
    correction = corrections.get((record.text, record.label))
    if correction is None:
        return record
    return None if correction.corrected is None else replace(record, label=correction.corrected)
