"""Validation: every raw row becomes a record or a reject with its line, raw text and reason.

``open_records(path_or_rows, task=..., column_map=...)`` returns a :class:`RecordStream`: iterate
it for :class:`~tunesmith.records.Record` and :class:`Reject` objects in file order, while its
:class:`ReadSummary` counts what was read, accepted and rejected (by reason) and the warnings.
``accepted + rejected == read`` always holds: a bad row never stops the read and is never
dropped silently. ``read_records(path)`` is the strict reader of a file expected to be clean (a
split file written by ``tunesmith data split``): any bad row raises :class:`DataError`.

The checks: the row parsed (JSON/CSV/UTF-8); required fields present and non-empty strings;
labels of one type (all strings, all integers or all booleans); chat turns with roles in
{system, user, assistant}, an optional system turn first, then user and assistant alternating
and ending with the assistant; a time or group field present (and a time parseable) when the
split needs one. A QA answer not found in its context is accepted with a warning.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tunesmith.data.detect import apply_column_map, describe_fields, detect_task
from tunesmith.data.io import Row, check_file, file_format, iter_rows
from tunesmith.errors import DataError
from tunesmith.records import (
    REQUIRED_FIELDS,
    ROLES,
    TASKS,
    Record,
    Task,
    record_from_dict,
)

# Lines of each warning kept for the report (the count is always exact).
WARNING_LINES_KEPT = 20


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    reason: str
    field: str | None
    raw: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"line": self.line, "reason": self.reason, "field": self.field}
        if self.detail:
            d["detail"] = self.detail
        d["raw"] = self.raw
        return d

    def to_line(self) -> str:
        """One line of rejects.jsonl."""
        return json.dumps(self.to_dict(), ensure_ascii=False) + "\n"


@dataclass
class ReadSummary:
    source: str
    format: str
    task: Task | None = None
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    warning_lines: dict[str, list[int]] = field(default_factory=dict)
    # Why the format could not be detected (all rows are then rejected as "unknown format").
    detect_problem: str | None = None
    # The source's own column names (from the first rows, before column_map) and the map used:
    # so that a missing field can be explained in the user's terms.
    columns: list[str] = field(default_factory=list)
    column_map: dict[str, str] = field(default_factory=dict)
    # Rejects by (reason, guide field), for the reasons that concern one field.
    field_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)

    def warn(self, kind: str, line: int) -> None:
        self.warnings[kind] += 1
        kept = self.warning_lines.setdefault(kind, [])
        if len(kept) < WARNING_LINES_KEPT:
            kept.append(line)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "format": self.format, "task": self.task, "read": self.read,
            "accepted": self.accepted, "rejected": self.rejected,
            "rejects_by_reason": dict(sorted(self.reasons.items())),
            "warnings": {k: {"count": v, "lines": self.warning_lines.get(k, [])}
                         for k, v in sorted(self.warnings.items())},
        }


class _Problem(Exception):
    def __init__(self, reason: str, field: str | None = None, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.field, self.detail = reason, field, detail


def _text(data: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise _Problem("missing field", name)
        return ""
    if not isinstance(value, str):
        raise _Problem("not a string", name, f"got {type(value).__name__}")
    if "\x00" in value:
        raise _Problem("control characters", name, "the text holds NUL bytes")
    if required and not value.strip():
        raise _Problem("empty field", name)
    return value


def _label_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return "integer"
    if isinstance(value, str):
        return "string"
    raise _Problem("bad label type", "label", f"a label is a string or an integer, got {type(value).__name__}")


def _label_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value))
    return str(value).strip()


def time_value(value: Any) -> float:
    """A time field as seconds since 1970 (numbers are taken as they are; naive times as UTC)."""
    if isinstance(value, bool) or value is None:
        raise ValueError("not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("not finite")
        return float(value)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        moment = datetime.fromisoformat(text)
    else:
        raise ValueError("not a time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _check_messages(data: dict[str, Any]) -> None:
    messages = data.get("messages")
    if messages is None:
        raise _Problem("missing field", "messages")
    if not isinstance(messages, list) or not messages:
        raise _Problem("bad messages", "messages", "messages must be a non-empty list of {role, content}")
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _Problem("bad messages", where, f"a turn is an object with role and content, got {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise _Problem("bad role", f"{where}.role", f"role must be one of {', '.join(ROLES)}, got {role!r}")
        try:
            _text(m, "content")
        except _Problem as problem:
            raise _Problem(problem.reason, f"{where}.content", problem.detail) from None
    roles = [m["role"] for m in messages]
    turns = roles[1:] if roles[0] == "system" else roles
    if "system" in turns:
        raise _Problem("wrong role order", "messages", "a system turn may only come first")
    if not turns:
        raise _Problem("wrong role order", "messages", "no user or assistant turn")
    for i, role in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise _Problem(
                "wrong role order", "messages",
                f"turns must alternate user, assistant, ...; turn {i + 1} is {role}",
            )
    if turns[-1] != "assistant":
        raise _Problem("wrong role order", "messages", "the last turn must be the assistant's")


class RecordStream:
    """Records and rejects of one source, in order; ``summary`` fills in while iterating.

    The format is detected when the stream is opened, from the first rows (which are kept and
    replayed), unless ``task`` names it.
    """

    DETECT_ROWS = 200

    def __init__(
        self,
        rows: Iterable[Row],
        *,
        source: str,
        fmt: str,
        task: Task | None = None,
        column_map: dict[str, str] | None = None,
        time_field: str | None = None,
        group_field: str | None = None,
    ) -> None:
        self.column_map = dict(column_map or {})
        self.time_field = time_field
        self.group_field = group_field
        self.summary = ReadSummary(source=source, format=fmt)
        self._label_kind: tuple[str, int] | None = None
        rows = iter(rows)
        head = list(itertools.islice(rows, self.DETECT_ROWS))
        self._rows = itertools.chain(head, rows)
        self.summary.columns = sorted({str(k) for r in head if r.data is not None for k in r.data})
        self.summary.column_map = self.column_map
        if task is not None and task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        if task is None:
            mapped = [apply_column_map(r.data, self.column_map) for r in head if r.data is not None]
            task, problem = detect_task(mapped, self.column_map)
            self.summary.detect_problem = problem
        self.task: Task | None = task
        self.summary.task = task

    def __iter__(self) -> Iterator[Record | Reject]:
        summary = self.summary
        for row in self._rows:
            summary.read += 1
            item = self._check(row)
            if isinstance(item, Reject):
                summary.rejected += 1
                summary.reasons[item.reason] += 1
                if item.field:
                    summary.field_reasons[(item.reason, item.field)] += 1
            else:
                summary.accepted += 1
            yield item

    def _check(self, row: Row) -> Record | Reject:
        if row.error is not None or row.data is None:
            return Reject(row.line, row.error or "unreadable", None, row.raw, row.detail)
        if self.task is None:
            return Reject(row.line, "unknown format", None, row.raw, describe_fields(row.data))
        data = apply_column_map(row.data, self.column_map)
        try:
            self._check_fields(data, row.line)
            return record_from_dict(self.task, self._clean(data), line=row.line)
        except _Problem as problem:
            detail = problem.detail
            if problem.field in self.column_map:
                column = f"mapped from column '{self.column_map[problem.field]}'"
                detail = f"{detail}; {column}" if detail else column
            return Reject(row.line, problem.reason, problem.field, row.raw, detail)

    def _check_fields(self, data: dict[str, Any], line: int) -> None:
        task = self.task
        if task == "chat":
            _check_messages(data)
        else:
            for name in REQUIRED_FIELDS[task]:  # type: ignore[index]
                if name == "label":
                    continue
                _text(data, name)
        if task == "instruction":
            _text(data, "input", required=False)
        answer_outside_context = False
        if task == "qa":
            context = _text(data, "context", required=False)
            answer_outside_context = bool(context) and data["answer"].strip().lower() not in context.lower()
        if task == "classification":
            value = data.get("label")
            if value is None:
                raise _Problem("missing field", "label")
            kind = _label_kind(value)
            if kind == "string" and not value.strip():
                raise _Problem("empty field", "label")
            if self._label_kind is None:
                self._label_kind = (kind, line)
            elif kind != self._label_kind[0]:
                first_kind, first_line = self._label_kind
                raise _Problem(
                    "label type differs", "label",
                    f"labels are of type {first_kind} (first at line {first_line}), this one is of type {kind}",
                )
        if self.time_field:
            if data.get(self.time_field) is None:
                raise _Problem("missing time field", self.time_field)
            try:
                time_value(data[self.time_field])
            except (ValueError, TypeError, OverflowError):
                raise _Problem(
                    "bad time value", self.time_field,
                    f"expected a number or an ISO date like 2024-05-01T12:00, got {data[self.time_field]!r}",
                ) from None
        if self.group_field:
            group = data.get(self.group_field)
            if group is None or (isinstance(group, str) and not group.strip()):
                raise _Problem("missing group field", self.group_field)
            if isinstance(group, dict | list):
                raise _Problem("bad group value", self.group_field, "a group is a string or a number")
        if answer_outside_context:  # only now: a rejected record carries no warning
            self.summary.warn("answer not found in context", line)

    def _clean(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.task == "classification":
            return {**data, "label": _label_text(data["label"])}
        if self.task == "chat":
            turns = [{"role": m["role"], "content": m["content"]} for m in data["messages"]]
            return {**data, "messages": turns}
        return data


def open_records(
    source: str | Path | Iterable[Row],
    *,
    task: Task | None = None,
    column_map: dict[str, str] | None = None,
    time_field: str | None = None,
    group_field: str | None = None,
    fmt: str | None = None,
) -> RecordStream:
    """A validating stream over a file, or over raw rows already read (a built-in dataset,
    see :mod:`tunesmith.data.source`; ``fmt`` then names them in the summary)."""
    if isinstance(source, str | Path):
        check_file(source)  # a folder or a missing file is named as such, before its suffix
        fmt = fmt or file_format(source)
        rows: Iterable[Row] = iter_rows(source, fmt)
        name = str(source)
    else:
        fmt = fmt or "rows"
        rows = source
        name = "rows"
    return RecordStream(
        rows, source=name, fmt=fmt, task=task, column_map=column_map,
        time_field=time_field, group_field=group_field,
    )


def read_records(
    path: str | Path, task: Task | None = None, *, column_map: dict[str, str] | None = None
) -> list[Record]:
    """All records of a clean file (e.g. a split file). Any bad row raises :class:`DataError`.

    An empty file gives ``[]`` (a split whose ratio is 0 is written empty).
    """
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        return []
    stream = open_records(path, task=task, column_map=column_map)
    records: list[Record] = []
    bad = []
    for item in stream:
        if isinstance(item, Reject):
            bad.append(item)
        else:
            records.append(item)
    if bad:
        shown = "; ".join(f"line {r.line}: {r.reason}" + (f" ({r.detail})" if r.detail else "") for r in bad[:5])
        raise DataError(
            f"{path}: {len(bad)} bad record(s): {shown}",
            hint=f"See them all with `tunesmith data check {path}`.",
        )
    return records
