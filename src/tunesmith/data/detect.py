"""Which of the guide's four formats a file holds, and users' column names mapped onto them.

``--map text=review --map label=sentiment`` (or ``prepare.column_map`` in params.yaml) says that
the guide's field ``text`` is the user's column ``review``. Detection looks at the fields of the
first rows after mapping and picks the format whose required fields most rows carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tunesmith.errors import UsageError
from tunesmith.records import OPTIONAL_FIELDS, REQUIRED_FIELDS, TASKS, Task

GUIDE_FIELDS: tuple[str, ...] = tuple(
    sorted({f for t in TASKS for f in REQUIRED_FIELDS[t] + OPTIONAL_FIELDS[t]})
)


def parse_column_map(items: Iterable[str]) -> dict[str, str]:
    """``["text=review", "label=sentiment"]`` -> ``{"text": "review", "label": "sentiment"}``."""
    mapping: dict[str, str] = {}
    for item in items:
        guide, sep, column = item.partition("=")
        guide, column = guide.strip(), column.strip()
        if not sep or not guide or not column:
            raise UsageError(f"--map expects FIELD=COLUMN, got '{item}' (e.g. --map text=review).")
        if guide not in GUIDE_FIELDS:
            raise UsageError(
                f"--map {item}: '{guide}' is not a field of the guide's formats.",
                hint=f"Map onto one of: {', '.join(GUIDE_FIELDS)}.",
            )
        mapping[guide] = column
    return mapping


def apply_column_map(data: dict[str, Any], column_map: dict[str, str]) -> dict[str, Any]:
    """The row with the user's columns renamed to the guide's fields (other fields unchanged)."""
    if not column_map:
        return data
    out = {k: v for k, v in data.items() if k not in column_map.values() and k not in column_map}
    for guide, column in column_map.items():
        if column in data:
            out[guide] = data[column]
    return out


def describe_fields(data: dict[str, Any]) -> str:
    names = ", ".join(sorted(map(str, data))[:12]) or "none"
    return f"fields: {names}"


def detect_task(
    rows: list[dict[str, Any]], column_map: dict[str, str] | None = None
) -> tuple[Task | None, str | None]:
    """The format most of ``rows`` fit, or (None, a message saying what was found and what to do).

    No rows (none of the first ones could be parsed) is (None, None): their own reasons say why.
    """
    if not rows:
        return None, None
    full = dict.fromkeys(TASKS, 0)
    for data in rows:
        for task in TASKS:
            if all(name in data for name in REQUIRED_FIELDS[task]):
                full[task] += 1
    best = max(TASKS, key=lambda t: full[t])
    if full[best]:
        return best, None
    # No row has every required field: go by the fields that only one format has, so a file
    # whose labels are missing is still read as classification and each row rejected with why.
    telling = {"instruction": "instruction", "qa": "question", "chat": "messages", "classification": "text"}
    partial = {t: sum(1 for d in rows if telling[t] in d) for t in TASKS}
    best = max(TASKS, key=lambda t: partial[t])
    if partial[best]:
        return best, None
    seen = sorted({str(k) for d in rows for k in d})[:12]
    mapped = f" (after the column map {column_map})" if column_map else ""
    problem = (
        f"the fields{mapped} match none of the four formats: found {', '.join(seen) or 'no fields'}."
    )
    return None, problem


DETECT_HINT = (
    "The formats: instruction (instruction, input?, output), classification (text, label), "
    "qa (question, context?, answer), chat (messages of {role, content}). Name yours with "
    "prepare.task and map your columns with prepare.column_map, e.g. --set "
    "'prepare.column_map={text: review, label: sentiment}' (with `tunesmith data`: --task, and "
    "--map text=review --map label=sentiment)."
)
