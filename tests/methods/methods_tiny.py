"""Tiny random models for the methods tests: BERT-style and Llama-style, built from a config."""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
)

VOCAB = 128


def tiny_bert(num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=num_labels,
    )
    return BertForSequenceClassification(config).eval()


def _llama_config(**extra) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64, pad_token_id=0, **extra,
    )


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(_llama_config()).eval()


def tiny_llama_classifier(num_labels: int = 2, seed: int = 0) -> LlamaForSequenceClassification:
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(_llama_config(num_labels=num_labels)).eval()


def batch(seed: int = 1, size: int = 4, length: int = 9) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (size, length), generator=generator)


def outputs(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def train_steps(model, groups, ids: torch.Tensor, *, task: str, steps: int = 3) -> None:
    """A few AdamW steps on a fixed batch (enough to move every trainable parameter)."""
    optimizer = torch.optim.AdamW(groups)
    model.train()
    for _ in range(steps):
        if task == "classification":
            loss = model(input_ids=ids, labels=torch.arange(len(ids)) % 2).loss
        else:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
