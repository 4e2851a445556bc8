"""Robust to anything: random bytes, JSON values (lines or one array), CSV rows and Parquet
tables end as records or rejects.

Whatever the input, every row read is either accepted or rejected with a reason, and the counts
add up. Reading never raises, except a DataError for a whole file that cannot be parsed (a JSON
array or a Parquet file: those formats have no lines to reject one by one).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.data.validate import Reject, open_records
from tunesmith.errors import DataError
from tunesmith.records import TASKS

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

tasks = st.sampled_from([None, *TASKS])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["text", "label", "messages", "role", "content", "question", "answer",
                         "context", "instruction", "input", "output", "x"]),
        children, max_size=5,
    ),
    max_leaves=12,
)


def read_all(data: bytes | None, suffix: str, task, table=None):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        if table is not None:
            import pyarrow.parquet as pq

            pq.write_table(table, path)
        else:
            path.write_bytes(data)
        stream = open_records(path, task=task)
        items = list(stream)
    summary = stream.summary
    rejects = [i for i in items if isinstance(i, Reject)]
    assert all(r.reason for r in rejects)
    assert summary.read == len(items)
    assert summary.accepted + summary.rejected == summary.read
    assert summary.rejected == len(rejects) == sum(summary.reasons.values())
    return summary


@SETTINGS
@given(data=st.binary(min_size=1, max_size=400), suffix=st.sampled_from([".jsonl", ".csv", ".tsv"]), task=tasks)
def test_random_bytes_never_crash(data, suffix, task):
    read_all(data, suffix, task)


@SETTINGS
@given(values=st.lists(json_values, min_size=1, max_size=12), task=tasks)
def test_random_json_values_one_per_line(values, task):
    text = "".join(json.dumps(v) + "\n" for v in values)
    summary = read_all(text.encode(), ".jsonl", task)
    # json.dumps never writes a blank line: every value is a record read.
    assert summary.read == len(values)


@SETTINGS
@given(
    rows=st.lists(
        st.lists(st.text(max_size=15), min_size=1, max_size=4), min_size=1, max_size=10
    ),
    header=st.sampled_from([["text", "label"], ["question", "answer", "context"], ["a", "b"]]),
    task=tasks,
)
def test_random_csv_rows(rows, header, task):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    summary = read_all(buffer.getvalue().encode("utf-8", "surrogatepass"), ".csv", task)
    # Rows whose cells are all blank read back as blank lines, which are not records.
    assert summary.read <= len(rows)


@SETTINGS
@given(data=st.binary(min_size=1, max_size=400), suffix=st.sampled_from([".json", ".parquet"]), task=tasks)
def test_random_bytes_as_a_whole_file_format_fail_only_with_a_data_error(data, suffix, task):
    try:
        read_all(data, suffix, task)
    except DataError as exc:
        assert "data" in exc.message  # the message names the file


@SETTINGS
@given(values=st.lists(json_values, min_size=1, max_size=12), task=tasks, indent=st.sampled_from([None, 2]))
def test_random_json_values_in_one_array(values, task, indent):
    summary = read_all(json.dumps(values, indent=indent).encode(), ".json", task)
    # Every element is a row: objects are checked, anything else is rejected as not an object.
    assert summary.read == len(values)
    assert summary.reasons["not a JSON object"] == sum(not isinstance(v, dict) for v in values)


optional_text = st.none() | st.text(max_size=15)


@SETTINGS
@given(
    texts=st.lists(optional_text, min_size=1, max_size=10),
    labels=st.sampled_from([optional_text, st.none() | st.integers(-3, 3), st.booleans()]).flatmap(
        lambda values: st.lists(values, min_size=10, max_size=10)),
    task=tasks,
)
def test_random_parquet_tables(texts, labels, task):
    import pyarrow as pa

    table = pa.table({"text": texts, "label": labels[: len(texts)]})
    summary = read_all(None, ".parquet", task, table=table)
    # A Parquet row has no blank form: every row is read.
    assert summary.read == len(texts)
