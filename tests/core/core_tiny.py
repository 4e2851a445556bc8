"""Shared pieces of the core tests: the real MiniLM tokenizer, a tiny random BERT, toy data."""

from __future__ import annotations

import functools

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from tunesmith import assets
from tunesmith.config import FinetuneConfig
from tunesmith.records import ClassificationRecord
from tunesmith.train.encoding import EncodedDataset, encode_classification

LABELS = ["neg", "pos"]
_POS = ["great", "wonderful", "moving", "brilliant", "funny", "charming"]
_NEG = ["awful", "boring", "dull", "terrible", "clumsy", "tedious"]
_FILLER = ["the film was", "this movie is", "a story that felt", "its ending was so",
           "the acting is", "what a"]


@functools.cache
def tokenizer():
    return AutoTokenizer.from_pretrained(str(assets.builtin_model_path("minilm")))


def tiny_bert(seed: int = 0, dropout: float = 0.1) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer().vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=2,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        id2label=dict(enumerate(LABELS)), label2id={k: i for i, k in enumerate(LABELS)},
    )
    return BertForSequenceClassification(config)


def toy_records(n: int) -> list[ClassificationRecord]:
    """Sentences whose sentiment word decides the label: learnable in a few dozen steps."""
    out = []
    for i in range(n):
        words = _POS if i % 2 else _NEG
        extra = " really" * (i % 5)  # varied lengths, so padding and grouping matter
        out.append(ClassificationRecord(
            text=f"{_FILLER[i % len(_FILLER)]}{extra} {words[(i // 2) % len(words)]}",
            label=LABELS[i % 2],
        ))
    return out


def toy_data(n: int) -> EncodedDataset:
    return encode_classification(toy_records(n), tokenizer(), LABELS, max_length=64)


def finetune_cfg(**changes) -> FinetuneConfig:
    # fp32: these tests compare the loop's arithmetic exactly (accumulation, recovery from an
    # out-of-memory error, resume); precision auto would be bf16 autocast on a CPU with AMX,
    # whose rounding differs with the micro-batch's shape. tests/core/test_core_loop.py tests
    # the precisions themselves.
    base = {"method": "full", "learning_rate": 1e-3, "batch_size": 8, "warmup_ratio": 0.0,
            "logging_steps": 1, "group_by_length": False, "early_stopping_patience": 0,
            "precision": "fp32"}
    return FinetuneConfig(**{**base, **changes})


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
