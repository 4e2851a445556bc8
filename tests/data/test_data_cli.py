"""`tunesmith data ...` through a real subprocess: exit codes, files written, what is printed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from data_files import CLASSIFICATION_JSONL, CSV_TEXT, write_jsonl


def tunesmith(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", *args], cwd=cwd, capture_output=True,
        text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
    )


@pytest.fixture
def files(in_tmp):
    (in_tmp / "reviews.jsonl").write_text(CLASSIFICATION_JSONL, encoding="utf-8")
    (in_tmp / "reviews.csv").write_text(CSV_TEXT, encoding="utf-8")
    (in_tmp / "junk.jsonl").write_text("not json\n[1]\n", encoding="utf-8")
    return in_tmp


def test_check_exit_codes(files):
    ok = tunesmith("data", "check", "reviews.jsonl", "--near", "--out", "report", cwd=files)
    assert ok.returncode == 0, ok.stderr
    assert "invalid JSON" in ok.stdout and "conflicting targets" in ok.stdout
    report = json.loads((files / "report" / "check.json").read_text())
    assert (report["read"], report["accepted"], report["rejected"]) == (11, 6, 5)
    assert (report["duplicates"]["exact"], report["duplicates"]["near"]) == (2, 1)
    assert len((files / "report" / "rejects.jsonl").read_text().splitlines()) == 5

    strict = tunesmith("data", "check", "reviews.jsonl", "--strict", cwd=files)
    assert strict.returncode == 1 and "5 record(s) rejected" in strict.stderr
    nothing = tunesmith("data", "check", "junk.jsonl", cwd=files)
    assert nothing.returncode == 1 and "no usable records" in nothing.stderr
    missing = tunesmith("data", "check", "absent.jsonl", cwd=files)
    assert missing.returncode == 1 and "no such data file" in missing.stderr
    usage = tunesmith("data", "check", "reviews.jsonl", "--map", "review", cwd=files)
    assert usage.returncode == 2 and "FIELD=COLUMN" in usage.stderr
    unknown = tunesmith("data", "check", "reviews.jsonl", "--bogus", cwd=files)
    assert unknown.returncode == 2


def test_check_json_output_on_mapped_csv(files):
    out = tunesmith("data", "check", "reviews.csv", "--map", "text=review", "--map", "label=sentiment",
                    "--json", cwd=files)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["task"] == "classification"
    assert report["rejects_by_reason"] == {"bad CSV quoting": 2, "empty field": 2, "wrong number of CSV fields": 1}
    assert report["size"]["band"] == "under 100"
    undetected = tunesmith("data", "check", "reviews.csv", cwd=files)
    assert undetected.returncode == 1 and "--map" in undetected.stderr


def test_split_writes_files_and_manifest(files):
    write_jsonl(files / "t.jsonl", [
        {"text": f"entry {i} with some words {i % 5}", "label": "a" if i % 2 else "b", "ts": 1000 + i}
        for i in range(30)
    ])
    out = tunesmith("data", "split", "t.jsonl", "--out", "splits", "--time-field", "ts", "--ratios", "0.6,0.2,0.2", cwd=files)
    assert out.returncode == 0, out.stderr
    manifest = json.loads((files / "splits" / "manifest.json").read_text())
    assert manifest["split"]["method"] == "time"
    assert manifest["split"]["train"] == [1000, 1017] and manifest["split"]["test"] == [1024, 1029]
    assert manifest["command"].startswith("tunesmith data split t.jsonl")
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "rejects.jsonl"):
        assert (files / "splits" / name).is_file()
    bad_ratios = tunesmith("data", "split", "t.jsonl", "--out", "x", "--ratios", "0.5,0.4,0.4", cwd=files)
    assert bad_ratios.returncode == 2 and "must be 1.0" in bad_ratios.stderr
    strict = tunesmith("data", "split", "reviews.jsonl", "--out", "s", "--strict", cwd=files)
    assert strict.returncode == 1


def test_convert_and_leakage(files):
    out = tunesmith("data", "convert", "reviews.csv", "clean.jsonl", "--map", "text=review",
                    "--map", "label=sentiment", cwd=files)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in (files / "clean.jsonl").read_text().splitlines()]
    assert lines[0] == {"text": "Loved every minute", "label": "pos"} and len(lines) == 3
    assert len((files / "clean.rejects.jsonl").read_text().splitlines()) == 5

    write_jsonl(files / "mine_test.jsonl", [{"text": "LOVED every minute!", "label": "pos"},
                                            {"text": "brand new", "label": "neg"}])
    leak = tunesmith("data", "leakage", "clean.jsonl", "mine_test.jsonl", "--json", cwd=files)
    assert leak.returncode == 1
    report = json.loads(leak.stdout)
    assert (report["exact"], report["near"], report["checked"]) == (1, 0, 2)
    assert report["pairs"][0]["line_a"] == 1 and report["pairs"][0]["line_b"] == 1
    clean = tunesmith("data", "leakage", "clean.jsonl", "reviews.jsonl", "--exact-only", cwd=files)
    assert clean.returncode == 0 and "no leakage" in clean.stdout
