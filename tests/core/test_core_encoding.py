"""Tokenize once, deterministic (length-grouped) batch order, dynamic padding, truncation."""

from __future__ import annotations

import pytest
from core_tiny import LABELS, tokenizer, toy_data, toy_records

from tunesmith.errors import DataError
from tunesmith.records import ClassificationRecord
from tunesmith.train.encoding import batch_order, collate, encode_classification


def _padding_share(lengths, batches):
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths) / padded


def test_batch_order_is_deterministic_and_complete():
    lengths = [5 + (i * 7) % 40 for i in range(203)]
    for group in (False, True):
        first = batch_order(lengths, 16, seed=3, epoch=1, group_by_length=group)
        assert first == batch_order(lengths, 16, seed=3, epoch=1, group_by_length=group)
        assert first != batch_order(lengths, 16, seed=3, epoch=2, group_by_length=group)
        flat = sorted(i for b in first for i in b)
        assert flat == list(range(203))  # every example exactly once per epoch
        assert all(1 <= len(b) <= 16 for b in first)


def test_length_grouping_cuts_padding():
    lengths = [5 + (i * 37) % 120 for i in range(800)]
    plain = batch_order(lengths, 16, seed=0, epoch=0, group_by_length=False)
    grouped = batch_order(lengths, 16, seed=0, epoch=0, group_by_length=True)
    assert _padding_share(lengths, grouped) < 0.1 < _padding_share(lengths, plain)


def test_collate_pads_to_longest_with_mask():
    data = toy_data(6)
    batch = collate(data.examples[:3], pad_token_id=0)
    width = max(data.lengths[:3])
    assert batch["input_ids"].shape == (3, width)
    assert batch["attention_mask"].sum(1).tolist() == data.lengths[:3]
    assert batch["labels"].tolist() == [e["label"] for e in data.examples[:3]]
    row = min(range(3), key=lambda i: data.lengths[i])
    assert (batch["input_ids"][row, data.lengths[row]:] == 0).all()


def test_token_labels_pad_with_ignore_index():
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                     {"input_ids": [8], "labels": [8]}], pad_token_id=0)
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_truncation_keeps_sep_and_counts():
    long = ClassificationRecord(text="word " * 100, label="pos")
    data = encode_classification([long, *toy_records(3)], tokenizer(), LABELS, max_length=16)
    assert data.n_truncated == 1
    assert data.lengths[0] == 16
    assert data.examples[0]["input_ids"][-1] == tokenizer().sep_token_id


def test_label_missing_from_training_labels_is_a_data_error():
    with pytest.raises(DataError, match="do not occur in the training split"):
        encode_classification([ClassificationRecord(text="x", label="meh")], tokenizer(),
                              LABELS, max_length=16)
