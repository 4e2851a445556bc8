"""A tiny finished run folder (random-weight BERT + LoRA) for registry, compare and report tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LABELS = ["fresh", "rotten"]
TEXTS = ["a moving, funny film", "dull and far too long", "the cast shines", "a mess"]


def make_tiny_base(root: Path) -> Path:
    """``root/base``: a 2-layer, 32-wide random BERT with the real MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tunesmith.assets import builtin_model_path

    base = root / "base"
    if not base.exists():
        tokenizer = AutoTokenizer.from_pretrained(str(builtin_model_path("minilm")))
        torch.manual_seed(0)
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64)
        BertForSequenceClassification(config).save_pretrained(base)
        tokenizer.save_pretrained(base)
    return base


def make_tiny_run(root: Path, *, name: str = "tiny", lora_r: int = 4, seed: int = 0) -> Path:
    """Write base/ (tiny BERT + the real MiniLM tokenizer) and a run folder that adapts it.

    The LoRA B matrices and the head are set to non-zero values so the adapter changes outputs.
    """
    import torch

    from tunesmith.config import Config
    from tunesmith.methods import apply_method, save_adapter
    from tunesmith.models import load_model

    base = make_tiny_base(root)
    cfg = Config.model_validate({
        "prepare": {"dataset": "rotten-tomatoes", "max_length": 64},
        "finetune": {"model": str(base), "lora_r": lora_r, "lora_target_modules": ["query", "value"]},
    })
    loaded = load_model(str(base), task="classification", labels=LABELS)
    model = apply_method(loaded.model, cfg.finetune, task="classification")
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(0, 0.5)
    run = root / name
    save_adapter(model, run / "adapter",
                 {"base_model": str(base), "task": "classification", "labels": LABELS})
    (run / "run.json").write_text(json.dumps({
        "run_name": name, "task": "classification", "model": str(base), "method": "lora",
        "labels": LABELS, "versions": {"torch": torch.__version__}, "hardware": {"cpu": "test"},
        "data_sha256": "0" * 64,
    }), encoding="utf-8")
    model.eval()
    with torch.no_grad():
        enc = loaded.tokenizer(TEXTS, padding=True, truncation=True, max_length=64, return_tensors="pt")
        predicted = [LABELS[i] for i in model(**enc).logits.argmax(-1).tolist()]
    (root / f"{name}-expected.json").write_text(json.dumps({"texts": TEXTS, "labels": predicted}),
                                              encoding="utf-8")
    (run / "metrics.json").write_text(json.dumps({
        "task": "classification",
        "baseline": {"accuracy": 0.6, "f1": 0.55, "kind": "probe"},
        "finetuned": {"accuracy": 0.75, "f1": 0.7},
        "delta": {"accuracy": 0.15, "f1": 0.15},
    }), encoding="utf-8")
    (run / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    return run


@pytest.fixture
def tiny_run(tmp_path) -> Path:
    return make_tiny_run(tmp_path)


@pytest.fixture
def tiny_base(tmp_path) -> Path:
    return make_tiny_base(tmp_path)
