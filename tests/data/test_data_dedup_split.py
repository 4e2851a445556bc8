"""Duplicates, conflicts, leakage and the four split methods; prepare_data end to end."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from data_files import CLASSIFICATION_JSONL, timed_records, write_jsonl

from tunesmith.config import PrepareConfig
from tunesmith.data.dedup import deduplicate, lsh_bands, normalize
from tunesmith.data.leakage import find_leaks, overlap_check
from tunesmith.data.split import part_sizes, split_records
from tunesmith.data.validate import time_value
from tunesmith.errors import DataError
from tunesmith.pipelines.prepare import prepare_data
from tunesmith.records import ClassificationRecord, QARecord


def rec(text: str, label: str = "a", line: int | None = None, **meta) -> ClassificationRecord:
    return ClassificationRecord(text=text, label=label, line=line, meta=meta)


def test_normalize_ignores_case_whitespace_punctuation():
    assert normalize("  A WONDERFUL,\tmoving film! ") == "a wonderful moving film"
    assert normalize("Dull -- and far too long...") == normalize("dull and FAR too long")


def test_normalize_applies_nfkc_so_compatibility_forms_are_duplicates():
    # The fi ligature, full-width letters, a no-break space and a composed vs decomposed é.
    assert normalize("\ufb01ne \uff26\uff29\uff2c\uff2d\u00a0caf\u00e9") == "fine film café"
    assert normalize("cafe\u0301") == normalize("caf\u00e9")
    kept, report = deduplicate([rec("A fine film, caf\u00e9 style", line=1),
                                rec("A \ufb01ne \uff26ILM caf\u0065\u0301 style", line=2)], "exact")
    assert [r.line for r in kept] == [1] and report.removed == 1


def test_exact_near_and_conflicts_with_both_lines():
    long_a = "the cast is great and the story is told with care from the first scene to the very last frame while the music and the camera work keep every moment alive until the end of the film"
    long_b = long_a.replace("of the film", "of the movie")
    records = [
        rec("A wonderful, moving film.", "pos", 1),
        rec("Dull and far too long.", "neg", 5),
        rec("a WONDERFUL moving film", "pos", 8),
        rec("Dull and far too long!", "pos", 9),
        rec(long_a, "pos", 10),
        rec(long_b, "neg", 11),
        rec("Something else entirely", "neg", 12),
    ]
    kept, report = deduplicate(records, "exact")
    assert [r.line for r in kept] == [1, 5, 10, 11, 12]
    assert (report.exact, report.near, report.conflicts) == (2, 0, 1)
    pairs = [(p.kind, p.line, p.duplicate_of, p.conflict, p.targets) for p in report.pairs]
    assert pairs == [("exact", 8, 1, False, None), ("exact", 9, 5, True, ("neg", "pos"))]

    kept, report = deduplicate(records, "near", 0.9)
    assert [r.line for r in kept] == [1, 5, 10, 12]
    near = [p for p in report.pairs if p.kind == "near"]
    assert [(p.line, p.duplicate_of, p.conflict) for p in near] == [(11, 10, True)]
    assert 0.9 <= near[0].similarity < 1.0
    assert (report.exact, report.near, report.conflicts, report.removed) == (2, 1, 2, 3)
    # Below the threshold nothing is near: 0.99 keeps the two long texts apart.
    _, strict = deduplicate(records, "near", 0.99)
    assert strict.near == 0


def test_lsh_bands_keep_recall_at_the_threshold():
    bands, rows = lsh_bands(0.9, 128)
    assert 1 - (1 - 0.9**rows) ** bands >= 0.995
    assert bands * rows <= 128


def test_find_leaks_exact_and_near():
    train = [rec("the quick brown fox jumps over the lazy dog near the river bank today", line=1),
             rec("completely different words", line=2)]
    test = [rec("The quick brown fox jumps over the lazy dog near the river bank today!", line=1),
            rec("the quick brown fox jumps over the lazy dog near the river bank tonight", line=2),
            rec("unrelated", line=3)]
    report = find_leaks(train, test, near=True, threshold=0.8)
    assert (report.exact, report.near, report.checked_b) == (1, 1, 3)
    assert [(x.kind, x.line_a, x.line_b) for x in report.leaks] == [("exact", 1, 1), ("near", 1, 2)]
    assert find_leaks(train, test).total == 1


def test_part_sizes_add_up_and_fill_each_split():
    assert part_sizes(100, (0.8, 0.1, 0.1)) == (80, 10, 10)
    assert part_sizes(3, (0.8, 0.1, 0.1)) == (1, 1, 1)
    assert part_sizes(7, (0.8, 0.1, 0.1)) == (5, 1, 1)
    assert sum(part_sizes(12749, (0.8, 0.1, 0.1))) == 12749
    assert part_sizes(10, (0.9, 0.0, 0.1)) == (9, 0, 1)


def test_stratified_keeps_proportions_and_rejects_rare_labels():
    records = [rec(f"text {i}", "pos" if i < 60 else "neg", i) for i in range(100)]
    split = split_records(records, method="auto", seed=1)
    assert split.method == "stratified"
    assert [sum(r.label == "pos" for r in p) for p in (split.train, split.val, split.test)] == [48, 6, 6]
    assert len({r.line for p in split.parts().values() for r in p}) == 100
    rare = [*records, rec("lonely", "odd", 100), rec("lonely 2", "odd", 101)]
    with pytest.raises(DataError, match=r"'odd' \(2 records\)") as err:
        split_records(rare, method="stratified", seed=1)
    assert "--split random" in err.value.hint


def test_time_split_is_strictly_ordered_with_ties_kept_together():
    records = [rec(r["text"], r["label"], i + 1, ts=r["ts"]) for i, r in enumerate(timed_records(41))]
    split = split_records(records, method="time", time_field="ts")
    times = [[time_value(r.meta["ts"]) for r in p] for p in (split.train, split.val, split.test)]
    assert max(times[0]) < min(times[1]) and max(times[1]) < min(times[2])
    assert sum(map(len, times)) == 41
    # 41 records over 21 days in pairs: the cut at 32 falls inside a pair and moves past it.
    assert [len(t) for t in times] == [34, 4, 3]
    assert split.info["train"] == ["2024-01-01T10:00:00+00:00", "2024-01-17T10:00:00+00:00"]
    assert split.info["test"][1] == "2024-01-21T10:00:00+00:00"
    assert datetime.fromisoformat(split.info["val"][0]) > datetime.fromisoformat(split.info["train"][1])


def test_group_split_keeps_groups_whole():
    records = [rec(r["text"], r["label"], i + 1, user=r["user"]) for i, r in enumerate(timed_records(60))]
    split = split_records(records, method="group", group_field="user", seed=3)
    groups = [{r.meta["user"] for r in p} for p in (split.train, split.val, split.test)]
    assert all(groups) and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(split.info["groups"].values()) == 6
    with pytest.raises(DataError, match="2 group"):
        split_records(records[:2] + records[6:8], method="group", group_field="user", seed=3)


def test_prepare_faulty_file_counts_rejects_duplicates_and_manifest(in_tmp):
    (in_tmp / "reviews.jsonl").write_text(CLASSIFICATION_JSONL, encoding="utf-8")
    cfg = PrepareConfig(dataset="reviews.jsonl", split="random", dedup="near")
    prepared = prepare_data(cfg, "out", command="tunesmith data split reviews.jsonl --out out")
    m = prepared.manifest
    assert m["counts"] == {"read": 11, "accepted": 6, "rejected": 5, "duplicates_removed": 3,
                           "after_dedup": 3, "used": 3, "train": 1, "val": 1, "test": 1}
    assert (m["duplicates"]["exact"], m["duplicates"]["near"], m["duplicates"]["conflicts"]) == (2, 1, 2)
    assert m["overlap_check"] == {"method": "exact+near", "threshold": 0.9, "train-val": 0,
                                  "train-test": 0, "val-test": 0, "passed": True}
    assert m["command"] == "tunesmith data split reviews.jsonl --out out"
    rejects = [json.loads(x) for x in (in_tmp / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (2, "invalid JSON"), (3, "empty field"), (4, "missing field"), (7, "not a JSON object"),
        (12, "label type differs")]
    assert m["files"]["rejects.jsonl"]["records"] == 5
    assert prepared.labels == ["neg", "pos"]
    with pytest.raises(DataError, match="5 record"):
        prepare_data(cfg, "strict", strict=True)


def test_prepare_is_deterministic_and_leak_free(in_tmp):
    records = [{"text": f"review {i} says {'good' if i % 2 else 'bad'} things about film {i}",
                "label": "pos" if i % 2 else "neg"} for i in range(200)]
    records += records[:20]  # exact duplicates, removed before splitting
    write_jsonl(in_tmp / "d.jsonl", records)
    cfg = PrepareConfig(dataset="d.jsonl", seed=7)
    first = prepare_data(cfg, "a")
    prepare_data(cfg, "b")
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "rejects.jsonl", "manifest.json"):
        assert (in_tmp / "a" / name).read_bytes() == (in_tmp / "b" / name).read_bytes(), name
    other = prepare_data(cfg.model_copy(update={"seed": 8}), "c")
    assert (in_tmp / "c" / "train.jsonl").read_bytes() != (in_tmp / "a" / "train.jsonl").read_bytes()
    assert other.data_sha256 != first.data_sha256
    assert first.manifest["counts"]["duplicates_removed"] == 20
    assert (len(first.train), len(first.val), len(first.test)) == (160, 20, 20)
    assert first.manifest["label_distribution"]["val"] == {"neg": 10, "pos": 10}
    splits = [{normalize(r.text) for r in p} for p in (first.train, first.val, first.test)]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])


def test_prepare_time_and_group_splits_from_a_file(in_tmp):
    write_jsonl(in_tmp / "t.jsonl", timed_records(40))
    prepared = prepare_data(PrepareConfig(dataset="t.jsonl", split="time", time_field="ts"), "time")
    assert prepared.manifest["split"]["method"] == "time"
    assert max(r.meta["ts"] for r in prepared.train) < min(r.meta["ts"] for r in prepared.val)
    assert max(r.meta["ts"] for r in prepared.val) < min(r.meta["ts"] for r in prepared.test)
    grouped = prepare_data(PrepareConfig(dataset="t.jsonl", split="group", group_field="user"), "group")
    users = [{r.meta["user"] for r in p} for p in (grouped.train, grouped.val, grouped.test)]
    assert not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])


def test_prepare_limit_and_errors(in_tmp):
    write_jsonl(in_tmp / "qa.jsonl", [{"question": f"q{i} about thing {i}?", "answer": f"a{i}"} for i in range(50)])
    prepared = prepare_data(PrepareConfig(dataset="qa.jsonl", limit=20), "out")
    assert prepared.task == "qa" and prepared.labels == []
    assert isinstance(prepared.train[0], QARecord)
    assert (len(prepared.train), len(prepared.val), len(prepared.test)) == (16, 2, 2)
    assert prepared.manifest["split"]["method"] == "random"
    with pytest.raises(DataError, match="no such data file"):
        prepare_data(PrepareConfig(dataset="missing.jsonl"), "x")
    (in_tmp / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="empty"):
        prepare_data(PrepareConfig(dataset="empty.jsonl"), "x")
    (in_tmp / "bad.jsonl").write_text('{"foo": 1}\nnot json\n')
    with pytest.raises(DataError, match="match none of the four formats") as err:
        prepare_data(PrepareConfig(dataset="bad.jsonl"), "x")
    assert "--map" in err.value.hint


@pytest.mark.integration
def test_rotten_tomatoes_builtin_prepares_with_known_counts(in_tmp):
    prepared = prepare_data(PrepareConfig(), "rt")
    m = prepared.manifest
    assert m["counts"]["read"] == 12808
    assert m["counts"]["duplicates_removed"] == 59
    assert m["counts"]["train"] + m["counts"]["val"] + m["counts"]["test"] == 12749
    total = {label: sum(d[label] for d in m["label_distribution"].values()) for label in ("fresh", "rotten")}
    assert sum(total.values()) == 12749 and total["fresh"] > total["rotten"]
    assert m["overlap_check"]["passed"]
    assert m["source"]["format"] == "built-in" and len(m["source"]["sha256"]) == 64


@pytest.mark.integration
def test_chat_and_qa_builtins_validate_and_split(in_tmp):
    chat = prepare_data(PrepareConfig(dataset="chitchat", limit=300), "chat")
    assert chat.task == "chat" and chat.manifest["counts"]["rejected"] == 0
    assert (len(chat.train), len(chat.val), len(chat.test)) == (240, 30, 30)
    assert all(r.messages[-1].role == "assistant" for r in chat.test)
    qa = prepare_data(PrepareConfig(dataset="fanoutqa", split="group", group_field="group"), "qa")
    assert qa.task == "qa" and qa.manifest["counts"]["rejected"] == 0
    groups = [{r.meta["group"] for r in p} for p in (qa.train, qa.val, qa.test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert qa.manifest["overlap_check"]["passed"]


def test_overlap_check_catches_planted_overlaps():
    long = ("the cast is great and the story is told with care from the first scene to the very "
            "last frame while the music keeps every moment alive until the end of the")
    parts = {
        "train": [rec("A wonderful, moving film."), rec(f"{long} film"), rec("something else")],
        "val": [rec("a WONDERFUL moving film!", "b")],  # the same input after normalisation
        "test": [rec(f"{long} movie"), rec("unrelated words here")],  # one word differs
    }
    exact = overlap_check(parts)
    assert (exact["train-val"], exact["train-test"], exact["val-test"]) == (1, 0, 0)
    assert exact["passed"] is False
    near = overlap_check(parts, near=True, threshold=0.8)
    assert (near["train-val"], near["train-test"], near["val-test"]) == (1, 1, 0)
    assert near["passed"] is False
    clean = {"train": parts["train"][2:], "val": parts["val"], "test": parts["test"][1:]}
    assert overlap_check(clean, near=True, threshold=0.8)["passed"] is True


def test_prepare_reports_an_overlap_in_the_split_files_it_wrote(in_tmp):
    # Without deduplication every input appears twice, so the split files written to disk share
    # inputs; the check reads those files back and says so in the manifest.
    rows = [{"text": f"review number {i} is {'good' if i % 2 else 'bad'}", "label": "pos" if i % 2 else "neg"}
            for i in range(20)]
    write_jsonl(in_tmp / "twice.jsonl", rows + rows)
    prepared = prepare_data(PrepareConfig(dataset="twice.jsonl", dedup="none", split="random"), "out")
    check = prepared.manifest["overlap_check"]
    assert check["passed"] is False
    assert check["train-val"] + check["train-test"] + check["val-test"] > 0


@pytest.mark.integration
@pytest.mark.parametrize("name", ["fanoutqa", "chitchat"])
def test_a_builtin_is_read_once_hashed_from_those_bytes_and_validated_as_rows(name, monkeypatch):
    """The package file is read a single time: the manifest's hash is of its bytes, and its rows
    pass the same validation as a file's, giving the records the package holds."""
    import hashlib
    from pathlib import Path

    from tunesmith import assets
    from tunesmith.data.source import open_source
    from tunesmith.data.validate import Reject

    expected = hashlib.sha256(assets.dataset_file(name).read_bytes()).hexdigest()
    reads = []
    read_bytes, read_text = Path.read_bytes, Path.read_text
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or read_bytes(self))
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self) or read_text(self, *a, **k))
    stream, sha256 = open_source(name)
    items = list(stream)
    monkeypatch.undo()
    assert reads == [assets.dataset_file(name)]
    assert sha256 == expected
    assert not [i for i in items if isinstance(i, Reject)]
    assert stream.summary.format == "built-in" and stream.summary.source == name
    packaged = assets.load_builtin_records(name)
    assert [(r.line, r.to_dict()) for r in items] == [(r.line, r.to_dict()) for r in packaged]
