"""Preflight: a config whose estimate does not fit gets a smaller micro-batch, more accumulation
and the same effective batch, and says so."""

from __future__ import annotations

import pytest

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


def test_turns_on_checkpointing_where_it_halves_the_whole_runs_peak(deep_llama_config):
    """With the libraries' fixed cost (CPU whole-run estimates), long batches whose activations
    dominate get activation checkpointing; short ones, where it would save little, do not."""
    from tunesmith.advise.memory import model_shape

    shape = model_shape(str(deep_llama_config))
    fixed = 600e6
    long_cfg = config(batch=4, length=512)
    new, messages = preflight(long_cfg, shape, 1e12, fixed=fixed)
    assert new.finetune.gradient_checkpointing and new.finetune.batch_size == 4
    assert "gradient checkpointing turned on: activations dominate" in messages[0]
    assert "fits" in messages[-1]
    short = config(batch=1, length=32)
    assert preflight(short, shape, 1e12, fixed=fixed) == (short, preflight(short, shape, 1e12, fixed=fixed)[1])
    assert not preflight(short, shape, 1e12, fixed=fixed)[0].finetune.gradient_checkpointing
    # Without whole-run terms (CUDA, or no fixed cost) the choice is left to the config.
    assert not preflight(long_cfg, shape, 1e12)[0].finetune.gradient_checkpointing


@pytest.mark.integration  # measures the libraries' fixed cost once (10-60 s)
def test_check_memory_records_the_preflights_checkpointing_choice(deep_llama_config):
    """check_memory (what training calls) on a model whose activations dominate: the config it
    returns trains with checkpointing, and metrics.json's keys say so and who chose it."""
    import torch

    from tunesmith.advise.preflight import check_memory
    from tunesmith.advise.run_memory import process_peak_bytes

    # fp32: in bf16 autocast (precision auto on a CPU with AMX) the activations are half the
    # size, and this model's no longer dominate.
    cfg = validate_config({"prepare": {"max_length": 512},
                           "finetune": {"model": str(deep_llama_config.parent), "batch_size": 4,
                                        "precision": "fp32"}})
    model = torch.nn.Linear(4, 4)  # on CPU only the process's memory is read, not the model's
    said: list[str] = []
    check = check_memory(cfg, model, seq_len=512, log=said.append)
    assert check.cfg.finetune.gradient_checkpointing
    assert any("gradient checkpointing turned on: activations dominate" in m for m in said)
    recorded = check.record(train_peak_mb=process_peak_bytes() / 2**20)
    assert recorded["gradient_checkpointing"] is True
    assert recorded["gradient_checkpointing_by"] == "preflight"
    assert "imported libraries" in recorded["estimate_dominant"]
    # Asked for by the config: recorded as the config's choice.
    asked = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(
        update={"gradient_checkpointing": True})})
    again = check_memory(asked, model, seq_len=512, log=lambda _: None).record(0.0)
    assert (again["gradient_checkpointing"], again["gradient_checkpointing_by"]) == (True, "config")


def test_what_starts_between_the_preflight_and_the_loop_is_not_counted_as_trainings():
    """The tracker starts after the preflight (MLflow: 170 MB on some machines); the RSS that
    training's memory is measured from is taken when training starts, not at the preflight."""
    import psutil

    from tunesmith.advise.preflight import MemoryCheck
    from tunesmith.config import Config

    check = MemoryCheck(Config(), None, float(psutil.Process().memory_info().rss))
    held = bytearray(200 * 2**20)  # a 200 MB import, touched page by page
    held[::4096] = b"\x01" * len(held[::4096])
    check.training_starts()
    rss_mb = psutil.Process().memory_info().rss / 2**20
    recorded = check.record(train_peak_mb=rss_mb + 10)  # training itself added 10 MB
    assert recorded["train_added_mb"] == pytest.approx(10, abs=5)
    assert recorded["train_start_mb"] == pytest.approx(rss_mb, abs=5)
    del held
