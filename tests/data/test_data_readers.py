"""Readers and validation: every fault becomes a reject with the exact line, reason and field."""

from __future__ import annotations

import json

import pytest
from data_files import (
    CHAT_RECORDS,
    CHAT_REJECTS,
    CLASSIFICATION_JSONL,
    CLASSIFICATION_REJECTS,
    CSV_REJECTS,
    CSV_TEXT,
    write_jsonl,
)

from tunesmith.data.detect import parse_column_map
from tunesmith.data.validate import Reject, open_records, read_records
from tunesmith.errors import DataError, UsageError
from tunesmith.records import ChatRecord, ClassificationRecord, InstructionRecord, QARecord


def split_items(stream):
    items = list(stream)
    records = [i for i in items if not isinstance(i, Reject)]
    rejects = [(r.line, r.reason, r.field) for r in items if isinstance(r, Reject)]
    return records, rejects


def test_jsonl_faults_become_exact_rejects(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text(CLASSIFICATION_JSONL, encoding="utf-8")
    stream = open_records(path)
    records, rejects = split_items(stream)
    assert stream.task == "classification"
    assert rejects == CLASSIFICATION_REJECTS
    assert [r.line for r in records] == [1, 5, 8, 9, 10, 11]
    s = stream.summary
    # 12 lines, one blank: 11 records read, none lost.
    assert (s.read, s.accepted, s.rejected) == (11, 6, 5)
    assert s.accepted + s.rejected == s.read
    assert s.reasons == {"invalid JSON": 1, "empty field": 1, "missing field": 1,
                         "not a JSON object": 1, "label type differs": 1}


def test_reject_keeps_raw_text_and_detail(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(CLASSIFICATION_JSONL, encoding="utf-8")
    bad = [i for i in open_records(path) if isinstance(i, Reject)]
    assert bad[0].raw == '{"text": "broken json", "label": "neg"'
    assert "column" in bad[0].detail
    assert bad[-1].to_dict() == {
        "line": 12, "reason": "label type differs", "field": "label",
        "detail": "labels are of type string (first at line 1), this one is of type integer",
        "raw": '{"text": "Mixed types", "label": 3}',
    }


def test_csv_faults_with_column_map(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    stream = open_records(path, column_map=parse_column_map(["text=review", "label=sentiment"]))
    records, rejects = split_items(stream)
    assert rejects == CSV_REJECTS
    assert [(r.line, r.text, r.label) for r in records] == [
        (2, "Loved every minute", "pos"), (4, "Boring plot", "neg"), (6, "Two\nlines of praise", "pos"),
    ]
    assert stream.summary.read == 8


def test_csv_without_map_is_not_detected(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    stream = open_records(path)
    records, rejects = split_items(stream)
    assert stream.task is None and not records
    assert "review" in stream.summary.detect_problem and "sentiment" in stream.summary.detect_problem
    assert {reason for _, reason, _ in rejects} >= {"unknown format"}
    assert stream.summary.read == len(rejects) == 8


def test_mapped_column_missing_says_which_column(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"review": "fine", "stars": "5"}, {"stars": "1"}])
    stream = open_records(path, task="classification", column_map={"text": "review", "label": "stars"})
    items = list(stream)
    assert isinstance(items[0], ClassificationRecord) and items[0].label == "5"
    assert items[1].reason == "missing field" and items[1].field == "text"
    assert "mapped from column 'review'" in items[1].detail


def test_tsv_bom_and_invalid_utf8(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes(b"\xef\xbb\xbftext\tlabel\nnice one\tpos\nbad \xff byte\tneg\n")
    records, rejects = split_items(open_records(path))
    assert [(r.text, r.label) for r in records] == [("nice one", "pos")]
    assert rejects == [(3, "not valid UTF-8", None)]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"text": "a", "label": "x"}\n{"text": "\xc3(", "label": "y"}\n')
    records, rejects = split_items(open_records(jsonl))
    assert len(records) == 1 and rejects == [(2, "not valid UTF-8", None)]


def test_json_array_and_json_lines_named_json(tmp_path):
    array = tmp_path / "a.json"
    array.write_text(json.dumps([{"question": "Capital of France?", "answer": "Paris"}, 5]))
    records, rejects = split_items(open_records(array))
    assert isinstance(records[0], QARecord) and rejects == [(2, "not a JSON object", None)]
    lines = tmp_path / "l.json"
    lines.write_text('{"instruction": "Say hi", "output": "hi"}\n{"instruction": "x", "input": 3, "output": "y"}\n')
    records, rejects = split_items(open_records(lines))
    assert isinstance(records[0], InstructionRecord)
    assert rejects == [(2, "not a string", "input")]
    broken = tmp_path / "b.json"
    broken.write_text('[{"text": "a", "label": "b"},')
    with pytest.raises(DataError, match="not valid JSON"):
        list(open_records(broken))


def test_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    table = pa.table({"text": ["good", "", "bad"], "label": [1, 0, 0], "year": [2001, 2002, 2003]})
    pq.write_table(table, path)
    stream = open_records(path)
    records, rejects = split_items(stream)
    assert [(r.line, r.label, r.meta) for r in records] == [(1, "1", {"year": 2001}), (3, "0", {"year": 2003})]
    assert rejects == [(2, "empty field", "text")]


def test_chat_role_faults(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", CHAT_RECORDS)
    stream = open_records(path)
    records, rejects = split_items(stream)
    assert stream.task == "chat"
    assert rejects == CHAT_REJECTS
    assert [len(r.messages) for r in records] == [2, 3]
    assert isinstance(records[1], ChatRecord) and records[1].messages[0].role == "system"


def test_qa_answer_not_in_context_is_a_warning(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [
        {"question": "Capital?", "context": "France's capital is Paris.", "answer": "paris"},
        {"question": "Capital?", "context": "France is in Europe.", "answer": "Paris"},
        {"question": "Who?", "answer": "Me"},
    ])
    stream = open_records(path)
    records, rejects = split_items(stream)
    assert len(records) == 3 and not rejects
    assert stream.summary.warnings == {"answer not found in context": 1}
    assert stream.summary.warning_lines["answer not found in context"] == [2]


def test_time_and_group_fields_are_checked(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [
        {"text": "a", "label": "x", "ts": "2024-01-02", "user": "u1"},
        {"text": "b", "label": "x", "ts": "yesterday", "user": "u1"},
        {"text": "c", "label": "y", "user": ""},
        {"text": "d", "label": "y", "ts": 1700000000},
    ])
    _, rejects = split_items(open_records(path, time_field="ts"))
    assert rejects == [(2, "bad time value", "ts"), (3, "missing time field", "ts")]
    _, rejects = split_items(open_records(path, group_field="user"))
    assert rejects == [(3, "missing group field", "user"), (4, "missing group field", "user")]


def test_read_records_is_strict_and_empty_file_is_empty(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(CLASSIFICATION_JSONL, encoding="utf-8")
    with pytest.raises(DataError, match="5 bad record"):
        read_records(path)
    empty = tmp_path / "val.jsonl"
    empty.write_text("")
    assert read_records(empty) == []
    with pytest.raises(DataError, match="not found"):
        read_records(tmp_path / "missing.jsonl")


def test_parse_column_map_rejects_bad_items():
    assert parse_column_map(["text=review", "label = stars"]) == {"text": "review", "label": "stars"}
    with pytest.raises(UsageError, match="FIELD=COLUMN"):
        parse_column_map(["text"])
    with pytest.raises(UsageError, match="not a field"):
        parse_column_map(["body=review"])


def test_json_array_is_parsed_element_by_element(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('\ufeff[\n  {"text": "a", "label": "x"} ,\n  "oops",\n  {"text": "b", "label": "y"}\n]\n')
    items = list(open_records(path))
    assert [getattr(i, "line", None) for i in items] == [1, 2, 3]
    assert items[1].raw == '"oops"' and items[1].reason == "not a JSON object"
    for text, where in (('[{"text": "a", "label": "x"}', "not closed"),
                        ('[{"text": "a", "label": "x"} {"text": "b"}]', "expected ,"),
                        ('[{"text": "a", "label": "x"}]\nmore', "after the array")):
        path.write_text(text)
        with pytest.raises(DataError, match=where):
            list(open_records(path))
