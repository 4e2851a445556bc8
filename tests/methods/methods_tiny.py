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


def save_tiny_base(folder, kind: str):
    """A tiny random model plus the real MiniLM tokenizer in ``folder``: loadable by name (path)."""
    from transformers import AutoTokenizer

    from tunesmith.assets import builtin_model_path

    tokenizer = AutoTokenizer.from_pretrained(builtin_model_path("minilm"))
    torch.manual_seed(0)
    if kind == "bert":
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, num_labels=2)
        model = BertForSequenceClassification(config)
    else:
        model = LlamaForCausalLM(_llama_config_vocab(tokenizer.vocab_size, tokenizer.pad_token_id))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _llama_config_vocab(vocab: int, pad: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=2, intermediate_size=64, pad_token_id=pad)
