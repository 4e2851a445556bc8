"""Where records come from: a user's data file or a built-in dataset, read into raw rows once.

:func:`open_source` gives a validating :class:`~tunesmith.data.validate.RecordStream` over the
source and the sha256 that identifies it in the manifest. A built-in dataset's package file is
read once: its bytes are hashed and parsed into raw rows (:func:`tunesmith.assets.builtin_rows`),
which are validated exactly like a file's rows. A user's file is streamed by
:func:`tunesmith.data.io.iter_rows` and hashed in a second pass (a streamed read cannot hand its
hash back before the rows are consumed).

Costs: reading the source; the stream is lazy. Raises DataError for a path that does not exist
and is no built-in name, AssetError when a built-in's package is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tunesmith.assets import builtin_rows, is_builtin_dataset
from tunesmith.data.io import Row, sha256_file
from tunesmith.data.validate import RecordStream, open_records
from tunesmith.errors import DataError


def builtin_source_rows(name: str) -> tuple[Iterator[Row], str]:
    """A built-in dataset's raw rows (with their line and text, as a file's rows carry them)
    and the sha256 of its package file, from one read."""
    rows, sha256 = builtin_rows(name)
    return (Row(line, json.dumps(data, ensure_ascii=False, default=str), data=data)
            for line, data in rows), sha256


def open_source(
    dataset: str,
    *,
    task: str | None = None,
    column_map: dict[str, str] | None = None,
    time_field: str | None = None,
    group_field: str | None = None,
) -> tuple[RecordStream, str]:
    """A validating stream over a file or a built-in dataset, and the source's sha256.

    A path that exists wins over a built-in of the same name.
    """
    path = Path(dataset)
    if not path.exists() and is_builtin_dataset(dataset):
        rows, sha256 = builtin_source_rows(dataset)
        stream = open_records(
            rows, task=task, column_map=column_map,  # type: ignore[arg-type]
            time_field=time_field, group_field=group_field, fmt="built-in",
        )
        stream.summary.source = dataset
        return stream, sha256
    if not path.exists():
        raise DataError(
            f"no such data file or built-in dataset: '{dataset}'.",
            hint="Give a path to a JSONL, JSON, CSV/TSV or Parquet file, or a built-in name "
            "(rotten-tomatoes, chitchat, fanoutqa).",
        )
    stream = open_records(
        path, task=task, column_map=column_map,  # type: ignore[arg-type]
        time_field=time_field, group_field=group_field,
    )
    return stream, sha256_file(path)
