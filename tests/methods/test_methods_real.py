"""The real bundled models: LoRA on MiniLM, QLoRA on SmolLM2-135M-Instruct (4-bit NF4 on CPU)."""

from __future__ import annotations

import pytest
import torch
from methods_tiny import train_steps

from tunesmith.assets import load_builtin_records
from tunesmith.config import FinetuneConfig
from tunesmith.methods import (
    apply_method,
    load_adapter,
    merge_adapter,
    optimizer_param_groups,
    save_adapter,
    trainable_summary,
)
from tunesmith.models import load_model

pytestmark = pytest.mark.integration


def _logits(model, enc):
    with torch.no_grad():
        return model(**enc).logits


def test_lora_on_minilm_counts_trains_saves_and_merges(tmp_path):
    records = load_builtin_records("rotten-tomatoes", limit=8, seed=3)
    labels = sorted({r.label for r in records} | {"fresh", "rotten"})
    loaded = load_model("minilm", task="classification", labels=labels)
    cfg = FinetuneConfig(method="lora", learning_rate=2e-3)
    model = apply_method(loaded.model, cfg, task="classification")
    # 6 blocks x (query + value) x r 8 x (384 + 384), plus the 384 x 2 + 2 head.
    assert trainable_summary(model).trainable == 6 * 2 * 8 * 768 + 770
    enc = loaded.tokenizer([r.text for r in records], padding=True, return_tensors="pt")
    enc = {k: enc[k] for k in ("input_ids", "attention_mask")}
    before = _logits(model, enc)
    optimizer = torch.optim.AdamW(optimizer_param_groups(model, cfg))
    model.train()
    targets = torch.tensor([labels.index(r.label) for r in records])
    for _ in range(3):
        model(**enc, labels=targets).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    trained = _logits(model, enc)
    assert not torch.allclose(before, trained)

    saved = save_adapter(model, tmp_path / "adapter",
                         {"base_model": "minilm", "task": "classification", "labels": labels})
    assert saved.size_bytes < 1_000_000  # 75k float32 parameters, not the 90 MB model
    base = load_model("minilm", task="classification", labels=labels).model
    reloaded = load_adapter(base, tmp_path / "adapter").eval()
    torch.testing.assert_close(_logits(reloaded, enc), trained, rtol=0, atol=1e-5)
    assert (_logits(merge_adapter(reloaded), enc) - trained).abs().max() < 1e-4


def test_qlora_on_smollm2_loads_nf4_and_trains_a_step(tmp_path):
    loaded = load_model("smollm2-135m-instruct", task="instruction", load_in_4bit=True)
    cfg = FinetuneConfig(method="qlora", learning_rate=1e-3)
    model = apply_method(loaded.model, cfg, task="instruction")
    # 30 blocks x r 8 x (q_proj 576 -> 576, v_proj 576 -> 192 with 3 key/value heads).
    summary = trainable_summary(model)
    assert summary.trainable == 30 * 8 * ((576 + 576) + (576 + 192))
    assert 134_000_000 < summary.total < 136_000_000  # 4-bit weights counted as weights
    ids = loaded.tokenizer(["The capital of France is Paris."], return_tensors="pt")["input_ids"]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if not p.requires_grad and p.dtype.is_floating_point}
    train_steps(model, optimizer_param_groups(model, cfg), ids, task="instruction", steps=1)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    moved = [n for n, p in model.named_parameters() if ".lora_B." in n and p.abs().sum() > 0]
    assert len(moved) == 60
