"""Length statistics, max_length advice, the guide's size table and the imbalance flag."""

from __future__ import annotations

from data_files import write_jsonl

from tunesmith.data.stats import (
    advised_max_length,
    distribution,
    label_balance,
    percentile,
    size_advice,
)
from tunesmith.pipelines.prepare import inspect_data, load_tokenizer, token_counter


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (50, 90, 95, 99)] == [50, 90, 95, 99]
    assert distribution([5, 1, 3]) == {"p50": 3, "p90": 5, "p95": 5, "p99": 5, "max": 5, "mean": 3.0}
    assert percentile([], 95) == 0


def test_advised_max_length_is_p95_rounded_up_to_8():
    assert [advised_max_length(x) for x in (1, 8, 47, 48, 49, 300)] == [8, 8, 48, 48, 56, 304]


def test_size_table_bands():
    bands = {n: size_advice(n) for n in (50, 100, 499, 500, 2000, 10000, 100000)}
    assert "few-shot" in bands[50]["advice"]
    assert bands[100]["band"] == bands[499]["band"] == "100-500" and "r 4-8" in bands[100]["advice"]
    assert "r 8-16" in bands[500]["advice"]
    assert "r 16-32" in bands[2000]["advice"]
    assert bands[10000]["band"] == "10K-100K"
    assert bands[100000]["advice"] == "full finetuning"


def test_label_balance_flags_imbalance_with_f1_advice():
    skewed = label_balance({"spam": 90, "ham": 10})
    assert skewed["imbalanced"] and skewed["majority_rate"] == 0.9
    assert "F1" in skewed["advice"] and "90.0%" in skewed["advice"]
    fair = label_balance({"fresh": 7366, "rotten": 5382})
    assert not fair["imbalanced"] and "advice" not in fair
    assert "one label" in label_balance({"a": 3})["advice"]


def test_inspect_instruction_words_prompt_and_response(tmp_path):
    records = [{"instruction": "Say " + "word " * i, "output": "ok " * (i % 3 + 1)} for i in range(1, 21)]
    write_jsonl(tmp_path / "ins.jsonl", records)
    report = inspect_data(str(tmp_path / "ins.jsonl"), max_length=16)
    lengths = report.lengths
    assert report.task == "instruction" and report.length_unit == "words"
    assert lengths["prompt"]["max"] == 21 and lengths["prompt"]["p50"] == 11
    assert lengths["response"]["max"] == 3
    # Totals 3..24 words; over 16: the records with prompt+response > 16.
    totals = [1 + i + (i % 3 + 1) for i in range(1, 21)]
    assert lengths["truncated"] == sum(t > 16 for t in totals)
    assert lengths["advised_max_length"] == advised_max_length(sorted(totals)[18])
    assert report.size["band"] == "under 100"


def test_inspect_with_the_minilm_tokenizer_counts_special_tokens(tmp_path):
    tokenizer = load_tokenizer("minilm")
    assert token_counter(tokenizer)(["hello world"]) == [2]
    write_jsonl(tmp_path / "c.jsonl", [{"text": "hello world", "label": "a"},
                                       {"text": "hello world again and again", "label": "b"}])
    report = inspect_data(str(tmp_path / "c.jsonl"), model="minilm", max_length=8)
    assert report.length_unit == "minilm tokens"
    assert "prompt" not in report.lengths  # a classifier reads only the text
    assert report.lengths["total"]["p50"] == 4  # [CLS] hello world [SEP]
    assert report.lengths["truncated"] == 0
    assert report.label_counts == {"a": 1, "b": 1}
