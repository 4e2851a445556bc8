"""Task-balanced sampling and replay draws (tunesmith.train.mixing): pure, hand-checked."""

from __future__ import annotations

from collections import Counter

import pytest

from tunesmith.errors import ConfigError
from tunesmith.records import ChatRecord, ClassificationRecord, QARecord
from tunesmith.train.mixing import as_chat, mixture, replay_sample, task_counts, task_shares

SIZES = {"big": 400, "small": 100}


def test_shares_follow_the_strategy():
    # proportional: 400/500 and 100/500; equal: halves; T=2: sqrt(400)=20, sqrt(100)=10 -> 2/3, 1/3.
    assert task_shares(SIZES, "proportional") == pytest.approx({"big": 0.8, "small": 0.2})
    assert task_shares(SIZES, "equal") == pytest.approx({"big": 0.5, "small": 0.5})
    assert task_shares(SIZES, "temperature", 2.0) == pytest.approx({"big": 2 / 3, "small": 1 / 3})
    # T=1 is proportional.
    assert task_shares(SIZES, "temperature", 1.0) == pytest.approx(task_shares(SIZES, "proportional"))


def test_counts_sum_to_the_total_with_largest_remainders():
    assert task_counts(SIZES, 300, "temperature", 2.0) == {"big": 200, "small": 100}
    # Three equal shares of 10: 3.33 each, the one remainder goes to one task.
    counts = task_counts({"a": 5, "b": 5, "c": 5}, 10, "equal")
    assert sum(counts.values()) == 10 and sorted(counts.values()) == [3, 3, 4]


def test_bad_sampling_settings_are_refused():
    with pytest.raises(ConfigError, match="temperature must be 1 or more"):
        task_shares(SIZES, "temperature", 0.5)
    with pytest.raises(ConfigError, match="no training records"):
        task_shares({"a": 3, "b": 0}, "equal")


def test_mixture_holds_the_counts_per_task_and_repeats_a_small_task():
    reviews = [ClassificationRecord(text=f"review {i}", label="fresh" if i % 2 else "rotten") for i in range(8)]
    questions = [QARecord(question=f"question {i}?", answer=str(i)) for i in range(2)]
    mixed = mixture({"sentiment": (reviews, ["fresh", "rotten"]), "qa": (questions, [])},
                    {"sentiment": 6, "qa": 5}, seed=1)
    assert all(isinstance(r, ChatRecord) for r in mixed)
    assert Counter(r.meta["task"] for r in mixed) == {"sentiment": 6, "qa": 5}
    asked = Counter(r.messages[0].content for r in mixed if r.meta["task"] == "qa")
    # 5 draws from 2 questions: two whole passes and one more, so counts of 3 and 2.
    assert sorted(asked.values()) == [2, 3]
    sentiment = [r for r in mixed if r.meta["task"] == "sentiment"]
    assert len({r.messages[0].content for r in sentiment}) == 6  # no repeat within one pass


def test_as_chat_is_the_prompt_the_record_trains_as():
    record = ClassificationRecord(text="a joy", label="fresh")
    chat = as_chat(record, "sentiment", ["fresh", "rotten"])
    assert chat.messages[0].content.startswith("Classify the text as one of: fresh, rotten.")
    assert chat.messages[0].content.endswith("Text: a joy")
    assert (chat.messages[1].role, chat.messages[1].content) == ("assistant", "fresh")
    assert chat.meta["task"] == "sentiment"


def test_replay_draws_the_fraction_without_repeats():
    records = [QARecord(question=f"q{i}?", answer="a") for i in range(40)]
    drawn = replay_sample(records, 0.25, seed=3)
    assert len(drawn) == 10 and len(set(drawn)) == 10 and set(drawn) <= set(records)
    assert replay_sample(records, 0.25, seed=3) == drawn  # seeded
    assert replay_sample(records, 0.0) == []
