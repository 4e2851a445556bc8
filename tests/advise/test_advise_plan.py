"""The guide's decision trees, branch by branch, sized by the estimator; --write output loads."""

from __future__ import annotations

import json

import pytest

from tunesmith.advise.memory import GB, estimate_memory, model_shape
from tunesmith.advise.plan import MEMORY_MARGIN, make_plan
from tunesmith.cli.main import main
from tunesmith.config import load_config
from tunesmith.errors import UsageError


def need_gb(shape, method, batch=1, **kw):
    """Memory (GB, before the plan's margin) that ``method`` needs at ``batch`` x 512."""
    est = estimate_memory(shape, method=method, batch_size=batch, max_length=512,
                          **{"precision": "fp32", **kw})
    return est.total_bytes / GB / (1 - MEMORY_MARGIN) * 1.001


def test_few_examples_advise_prompting(shape):
    plan = make_plan(shape, examples=50, memory_gb=100)
    assert not plan.finetune_advised
    assert "few-shot prompting" in plan.notes[0]
    assert plan.choice("finetune.method").value == "lora"


def test_under_2000_examples_is_lora(shape):
    plan = make_plan(shape, examples=800, memory_gb=100)
    assert plan.choice("finetune.method").value == "lora"
    assert "under 2,000" in plan.choice("finetune.method").reason
    assert plan.choice("finetune.lora_r").value == 8  # 500-2K band
    assert plan.choice("finetune.lora_alpha").value == 16
    assert plan.choice("finetune.num_epochs").value == 5
    assert plan.choice("finetune.learning_rate").value == 2e-4  # causal LM: the guide's default


def test_several_tasks_is_lora(shape):
    plan = make_plan(shape, examples=50000, memory_gb=100, tasks=3)
    assert plan.choice("finetune.method").value == "lora"
    assert "3 tasks" in plan.choice("finetune.method").reason


def test_large_data_with_memory_is_full(shape):
    plan = make_plan(shape, examples=20000, memory_gb=100)
    assert plan.choice("finetune.method").value == "full"
    assert plan.choice("finetune.learning_rate").value == 2e-5
    assert plan.choice("finetune.num_epochs").value == 2
    high_shift = make_plan(shape, examples=5000, memory_gb=100, domain_shift="high")
    assert high_shift.choice("finetune.method").value == "full"
    low_shift = make_plan(shape, examples=5000, memory_gb=100)
    assert low_shift.choice("finetune.method").value == "lora"
    assert low_shift.choice("finetune.lora_r").value == 16


def test_memory_decides_between_full_lora_qlora(shape):
    # Enough for LoRA but not for full: large data still gets LoRA.
    lora_only = (need_gb(shape, "lora", lora_r=32) + need_gb(shape, "full")) / 2
    assert need_gb(shape, "lora", lora_r=32) < lora_only < need_gb(shape, "full")
    assert make_plan(shape, examples=20000, memory_gb=lora_only).choice("finetune.method").value == "lora"
    # Between QLoRA and LoRA: QLoRA.
    q = need_gb(shape, "qlora", lora_r=8)
    lo = need_gb(shape, "lora", lora_r=8)
    assert q < lo
    plan = make_plan(shape, examples=800, memory_gb=(q + lo) / 2)
    assert plan.choice("finetune.method").value == "qlora"
    assert "QLoRA" in plan.choice("finetune.method").reason
    # Below QLoRA without checkpointing: QLoRA with gradient checkpointing.
    qc = need_gb(shape, "qlora", lora_r=8, gradient_checkpointing=True)
    plan = make_plan(shape, examples=800, memory_gb=(qc + q) / 2)
    assert plan.choice("finetune.gradient_checkpointing").value is True
    with pytest.raises(UsageError, match="does not fit"):
        make_plan(shape, examples=800, memory_gb=qc * 0.5)


def test_micro_batch_and_accumulation_keep_the_effective_batch(shape):
    # Room for a micro-batch of 4 but not 8: 16 = 4 x 4 for 5,000 examples.
    memory = (need_gb(shape, "lora", batch=4, lora_r=16) + need_gb(shape, "lora", batch=8, lora_r=16)) / 2
    plan = make_plan(shape, examples=5000, memory_gb=memory)
    micro = plan.choice("finetune.batch_size").value
    accum = plan.choice("finetune.gradient_accumulation_steps").value
    assert (micro, accum) == (4, 4)
    assert plan.estimate.total_bytes <= memory * GB


def test_a_lora_classifier_gets_the_rate_tunesmith_run_gives_it(tmp_path):
    bert = tmp_path / "config.json"
    bert.write_text(json.dumps({"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2,
                                "num_attention_heads": 2, "intermediate_size": 128,
                                "vocab_size": 1000}))
    plan = make_plan(model_shape(str(bert)), examples=3000, memory_gb=10)
    assert plan.choice("finetune.learning_rate").value == 2e-3
    assert "within 3 points of full finetuning" in plan.choice("finetune.learning_rate").reason


def test_advise_writes_a_config_run_accepts(in_tmp, capsys):
    code = main(["advise", "--model", "minilm", "--examples", "1500", "--memory", "8",
                 "--write", "params.yaml"])
    assert code == 0
    out = capsys.readouterr().out
    assert "method" in out and "under 2,000 examples -> LoRA" in out
    cfg = load_config(in_tmp / "params.yaml")
    assert cfg.finetune.model == "minilm" and cfg.finetune.method == "lora"
    assert cfg.finetune.lora_r == 8 and cfg.finetune.learning_rate == 2e-3
    assert cfg.finetune.batch_size * cfg.finetune.gradient_accumulation_steps == 16
    assert main(["advise", "--model", "minilm", "--memory", "8"]) == 2  # no size given


@pytest.mark.integration  # measures the libraries' fixed cost once (10-60 s)
def test_advise_on_cpu_sizes_the_micro_batch_for_the_whole_run(in_tmp, capsys):
    """On CPU the plan's micro-batch fits the whole run (libraries, run extra, allocator slack)
    in the memory, where the training estimate alone would have allowed twice as many."""
    import torch

    from tunesmith.advise.memory import MemoryArgs
    from tunesmith.advise.run_memory import estimate_run

    if torch.cuda.is_available():
        pytest.skip("the whole-run sizing is CPU's")
    # 4 GB: a memory where this holds for both CPU precisions of precision auto (fp32, and the
    # bf16 autocast of a CPU with AMX-BF16; checked for each by hand).
    assert main(["advise", "--model", "minilm", "--examples", "1500", "--memory", "4",
                 "--write", "params.yaml"]) == 0
    out = capsys.readouterr().out
    assert "whole run on this machine: estimated peak" in out and "imported libraries" in out
    cfg = load_config(in_tmp / "params.yaml")
    shape, budget = model_shape("minilm"), 4 * GB * (1 - MEMORY_MARGIN)
    chosen = MemoryArgs.from_config(cfg, device="cpu")
    doubled = chosen.replace(batch_size=2 * chosen.batch_size)
    assert estimate_run(shape, chosen).total_bytes <= budget < estimate_run(shape, doubled).total_bytes
    assert estimate_memory(shape, doubled).total_bytes <= budget
