"""Robust to anything: random bytes, JSON values and CSV rows end as records or rejects.

Whatever the input, reading never raises, every row read is either accepted or rejected with a
reason, and the counts add up.
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


def read_all(data: bytes, suffix: str, task):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
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
