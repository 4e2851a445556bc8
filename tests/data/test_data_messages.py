"""Errors a user meets with their own files: each names what and where, and says what to do."""

from __future__ import annotations

import csv

import pytest

from tunesmith.config import PrepareConfig, load_config
from tunesmith.errors import DataError
from tunesmith.pipelines.prepare import prepare_data
from tunesmith.pipelines.run import run


def _reviews(path, n=30):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "sentiment"])
        for i in range(n):
            writer.writerow([f"review number {i}", "pos" if i % 2 else "neg"])
    return path


def test_a_column_map_that_misses_names_field_column_and_the_files_columns(tmp_path):
    data = _reviews(tmp_path / "reviews.csv")
    cfg = load_config(None, [f"prepare.dataset={data}", "prepare.task=classification",
                             "prepare.column_map={text: body, label: sentiment}",
                             "tracking.enabled=false"])
    out = tmp_path / "run"
    with pytest.raises(DataError) as err:
        run(cfg, out_dir=out, log=lambda _: None)
    message = err.value.message
    assert "30 missing field (field 'text', from your column 'body', which the file does not have)" in message
    assert "The file's columns: review, sentiment." in message
    rejects = out / "data" / "rejects.jsonl"
    assert str(rejects) in message
    assert "prepare.column_map={text: review, label: sentiment}" in err.value.hint
    # The clean-up keeps the rejects the message points to, and nothing else.
    assert len(rejects.read_text().splitlines()) == 30
    assert [p for p in out.rglob("*") if p.is_file()] == [rejects]


def test_a_column_map_that_misses_with_task_auto_names_the_missing_column(tmp_path):
    data = _reviews(tmp_path / "reviews.csv")
    cfg = PrepareConfig(dataset=str(data), column_map={"text": "body", "label": "sentiment"})
    with pytest.raises(DataError) as err:
        prepare_data(cfg, tmp_path / "out")
    assert "The file's columns: review, sentiment." in err.value.message
    assert "names columns it does not have: 'body' (for text)" in err.value.message
    assert "--set 'prepare.column_map=" in err.value.hint


def test_a_non_utf8_csv_says_to_re_encode(tmp_path):
    data = tmp_path / "latin1.csv"
    rows = "".join(f"caf\xe9 number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20))
    data.write_bytes(("text,label\n" + rows).encode("latin-1"))
    with pytest.raises(DataError, match="20 not valid UTF-8") as err:
        prepare_data(PrepareConfig(dataset=str(data)), tmp_path / "out")
    assert "Re-encode the file as UTF-8" in err.value.hint
    assert f"iconv -f cp1252 -t utf-8 {data} > {tmp_path / 'latin1-utf8.csv'}" in err.value.hint


def test_a_folder_where_a_file_is_expected_is_named_as_a_folder(tmp_path):
    folder = tmp_path / "mydata"
    folder.mkdir()
    _reviews(folder / "train.csv")
    with pytest.raises(DataError, match=r"mydata is a folder, not a data file \(it holds train\.csv\)"):
        prepare_data(PrepareConfig(dataset=str(folder)), tmp_path / "out")


def test_a_split_that_cannot_be_made_suggests_the_config_key_run_accepts(tmp_path):
    data = tmp_path / "rare.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([[f"common {i}", "common"] for i in range(40)] + [["lonely", "odd"]])
    with pytest.raises(DataError, match="too rare to stratify") as err:
        prepare_data(PrepareConfig(dataset=str(data)), tmp_path / "out")
    assert "--set prepare.split=random" in err.value.hint
