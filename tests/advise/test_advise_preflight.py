"""Preflight: a config whose estimate does not fit gets a smaller micro-batch, more accumulation
and the same effective batch, and says so."""

from __future__ import annotations

from tunesmith.advise.memory import estimate_memory
from tunesmith.advise.preflight import preflight
from tunesmith.config import validate_config


def config(batch=16, accum=1, method="lora", length=256, checkpointing=False):
    return validate_config({
        "prepare": {"max_length": length},
        "finetune": {"method": method, "batch_size": batch, "gradient_accumulation_steps": accum,
                     "precision": "fp32", "gradient_checkpointing": checkpointing},
    })


def need(shape, batch, length=256, checkpointing=False, method="lora"):
    return estimate_memory(shape, method=method, batch_size=batch, max_length=length,
                           gradient_checkpointing=checkpointing, keep_best_copy=True,
                           precision="fp32").total_bytes


def test_fits_unchanged(shape):
    cfg = config()
    new, messages = preflight(cfg, shape, need(shape, 16) * 1.01)
    assert new == cfg
    assert len(messages) == 1 and "fits" in messages[0]


def test_lowers_micro_batch_and_keeps_effective_batch(shape):
    available = (need(shape, 4) + need(shape, 8)) / 2
    new, messages = preflight(config(batch=16, accum=2), shape, available)
    assert (new.finetune.batch_size, new.finetune.gradient_accumulation_steps) == (4, 8)
    assert new.finetune.batch_size * new.finetune.gradient_accumulation_steps == 32
    assert "does not fit" in messages[0]
    assert "micro-batch 16 -> 4, gradient accumulation 2 -> 8: the effective batch stays 32" in messages[1]
    assert not new.finetune.gradient_checkpointing


def test_uses_the_real_sequence_length(shape):
    # 512 tokens would not fit; the longest example has 64, which does.
    cfg = config(batch=16, length=512)
    available = need(shape, 16, length=64) * 1.01
    assert need(shape, 16, length=512) > available
    new, messages = preflight(cfg, shape, available, seq_len=64)
    assert new.finetune.batch_size == 16 and "fits" in messages[0]


def test_turns_on_checkpointing_when_batch_one_does_not_fit(shape):
    available = (need(shape, 1, checkpointing=True) + need(shape, 1)) / 2
    new, messages = preflight(config(batch=8), shape, available)
    assert new.finetune.gradient_checkpointing
    assert new.finetune.batch_size * new.finetune.gradient_accumulation_steps == 8
    assert any("gradient checkpointing turned on" in m for m in messages)


def test_says_when_nothing_fits(shape):
    new, messages = preflight(config(batch=8), shape, 1e6)
    assert new.finetune.batch_size == 1 and new.finetune.gradient_accumulation_steps == 8
    assert "may run out of memory" in messages[-1]
