"""Reading users' files record by record, and writing JSONL.

``iter_rows(path)`` streams the raw rows of a JSONL, JSON (array), CSV/TSV or Parquet file as
:class:`Row` objects: the 1-based line (JSONL, CSV: the line the row starts on), array index
(JSON) or row number (Parquet); the original text; and either the parsed dict or the reason it
could not be parsed. Nothing is dropped: a row that cannot be read becomes a Row with an error,
which validation turns into a reject. A JSON array's text is read whole (the format has no
lines) and its elements parsed one at a time.

This module knows formats, not records: validation (:mod:`tunesmith.data.validate`) turns rows
into records, and reads clean split files back (``read_records``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError
from tunesmith.records import Record

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
_SUFFIXES = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
    ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
}
# How much of a bad row's text a reject keeps: enough to find and fix it, not a whole file.
RAW_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    raw: str
    data: dict[str, Any] | None = None
    error: str | None = None  # short reason when the row could not be parsed
    detail: str = ""


def file_format(path: str | Path) -> str:
    """``jsonl`` | ``json`` | ``csv`` | ``tsv`` | ``parquet``, from the file name."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(
            f"{path}: cannot tell the file format from the suffix '{suffix}'.",
            hint="Use .jsonl, .json, .csv, .tsv or .parquet (rename the file if needed).",
        )
    return _SUFFIXES[suffix]


def check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}", hint="Check the path, or use a built-in dataset name.")
    if p.is_dir():
        inside = sorted(f.name for f in p.iterdir() if f.suffix.lower() in _SUFFIXES)[:5]
        found = f" (it holds {', '.join(inside)})" if inside else ""
        raise DataError(
            f"{p} is a folder, not a data file{found}.",
            hint="Give the path of one file in it: .jsonl, .json, .csv, .tsv or .parquet.",
        )
    if not p.is_file():
        raise DataError(f"{p} is not a regular file (a device, pipe or socket).",
                        hint="Copy the data into a .jsonl, .json, .csv, .tsv or .parquet file.")
    if p.stat().st_size == 0:
        raise DataError(f"{p} is empty.", hint="Add records, one JSON object per line for JSONL.")
    return p


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _clip(text: str) -> str:
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "..."


def _decode(raw: bytes) -> tuple[str, bool]:
    """Text of a line, and whether it was valid UTF-8 (invalid bytes are shown replaced)."""
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), False


def _json_row(line: int, text: str) -> Row:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        return Row(line, _clip(text), error="invalid JSON", detail=detail)
    if not isinstance(value, dict):
        return Row(line, _clip(text), error="not a JSON object", detail=f"got {type(value).__name__}")
    return Row(line, _clip(text), data=value)


def _iter_jsonl(path: Path) -> Iterator[Row]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark is fine
            text, ok = _decode(raw.rstrip(b"\r\n"))
            if not text.strip():
                continue  # blank lines are not records
            if not ok:
                yield Row(number, _clip(text), error="not valid UTF-8")
                continue
            yield _json_row(number, text)


def _not_json(path: Path, text: str, pos: int, why: str) -> DataError:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return DataError(
        f"{path}: not valid JSON at line {line}, column {column} ({why}); a JSON file must hold "
        "one array of objects.",
        hint="Fix the file, or write one object per line as JSONL (.jsonl): a bad line is then "
        "only one reject.",
    )


_SPACE = re.compile(r"\s*")


def _skip_space(text: str, pos: int) -> int:
    """The position of the first non-space character at or after ``pos``."""
    match = _SPACE.match(text, pos)
    return match.end() if match else pos  # \s* always matches; None only to the type checker


def _iter_json(path: Path) -> Iterator[Row]:
    """Elements of a JSON array one at a time: the text is held, never the whole parsed tree."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16).removeprefix(b"\xef\xbb\xbf")
    if not head.lstrip()[:1] == b"[":
        # Many people name JSON-lines files .json: read them as lines.
        yield from _iter_jsonl(path)
        return
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (byte {exc.start}).", hint="Save the file as UTF-8.") from None
    decoder = json.JSONDecoder()
    pos = _skip_space(text, text.index("[") + 1)
    index = 0
    while True:
        if pos >= len(text):
            raise _not_json(path, text, pos, "the array is not closed with ]")
        if text[pos] == "]":
            if text[pos + 1 :].strip():
                raise _not_json(path, text, pos + 1, "text after the array")
            return
        if index:
            if text[pos] != ",":
                raise _not_json(path, text, pos, "expected , between elements")
            pos = _skip_space(text, pos + 1)
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise _not_json(path, text, exc.pos, exc.msg) from None
        except RecursionError:
            raise _not_json(path, text, pos, "nested too deeply") from None
        index += 1
        shown = _clip(text[pos:end])
        if isinstance(item, dict):
            yield Row(index, shown, data=item)
        else:
            yield Row(index, shown, error="not a JSON object", detail=f"got {type(item).__name__}")
        pos = _skip_space(text, end)


class _Lines:
    """Decoded physical lines with numbers, that can be pushed back (to re-read after bad quoting)."""

    def __init__(self, fh: Iterable[bytes]) -> None:
        self._source = enumerate(fh, start=1)
        self._pushed: deque[tuple[int, str, bool]] = deque()
        self.taken: list[tuple[int, str, bool]] = []  # the lines the current row consumed

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._pushed:
            item = self._pushed.popleft()
        else:
            number, raw = next(self._source)
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            text, ok = _decode(raw)
            item = (number, text, ok)
        self.taken.append(item)
        return item[1]

    def push_back(self, items: list[tuple[int, str, bool]]) -> None:
        self._pushed.extendleft(reversed(items))


def _csv_reason(exc: csv.Error) -> str:
    message = str(exc)
    if "NUL" in message:
        return "NUL byte in CSV"
    if "field larger" in message:
        return "CSV field too large"
    return "bad CSV quoting"


def _iter_delimited(path: Path, delimiter: str) -> Iterator[Row]:
    with open(path, "rb") as fh:
        lines = _Lines(fh)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        header: list[str] | None = None
        while True:
            lines.taken = []
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # A broken quote swallows the lines after it: reject the line it started on and
                # read the rest again with a fresh reader.
                taken = lines.taken
                if not taken:
                    return
                first = taken[0]
                lines.push_back(taken[1:])
                reader = csv.reader(lines, delimiter=delimiter, strict=True)
                # Before the header too: the next readable line becomes the header.
                yield Row(first[0], _clip(first[1].rstrip("\r\n")), error=_csv_reason(exc), detail=str(exc))
                continue
            taken = lines.taken
            start = taken[0][0]
            raw = "".join(t[1] for t in taken).rstrip("\r\n")
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank lines are not records
            if header is None:
                header = [h.strip() for h in fields]
                continue
            if not all(t[2] for t in taken):
                yield Row(start, _clip(raw), error="not valid UTF-8")
            elif len(fields) != len(header):
                yield Row(
                    start, _clip(raw), error="wrong number of CSV fields",
                    detail=f"expected {len(header)} (as in the header), got {len(fields)}",
                )
            else:
                yield Row(start, _clip(raw), data=dict(zip(header, fields, strict=True)))


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({exc}).") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for item in batch.to_pylist():
            number += 1
            yield Row(number, _clip(json.dumps(item, ensure_ascii=False, default=str)), data=item)


def iter_rows(path: str | Path, fmt: str | None = None) -> Iterator[Row]:
    """Every row of a data file, streamed; ``fmt`` overrides the format taken from the suffix."""
    p = check_file(path)
    fmt = fmt or file_format(p)
    if fmt == "jsonl":
        return _iter_jsonl(p)
    if fmt == "json":
        return _iter_json(p)
    if fmt in ("csv", "tsv"):
        return _iter_delimited(p, "," if fmt == "csv" else "\t")
    if fmt == "parquet":
        return _iter_parquet(p)
    raise DataError(f"unknown format '{fmt}'; one of {', '.join(FORMATS)}.")


def record_line(record: Record) -> str:
    """One JSONL line for a record (extra fields kept); values JSON cannot hold become strings."""
    return json.dumps(record.to_dict(), ensure_ascii=False, default=str) + "\n"


def write_jsonl(records: Iterable[Record], path: str | Path) -> int:
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for record in records:
            fh.write(record_line(record))
            count += 1
    return count
