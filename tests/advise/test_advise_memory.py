"""The memory estimator: the guide's worked numbers, parameter counts against the real
methods, activations against what autograd really saves."""

from __future__ import annotations

import json

import pytest

from tunesmith.advise.memory import (
    ACTIVATION_COEFFICIENTS,
    GB,
    LORA_INPUT_COPIES,
    NF4_BYTES_PER_PARAM,
    estimate_memory,
    largest_batch_that_fits,
    model_shape,
    standin_shape,
)
from tunesmith.cli.main import main
from tunesmith.errors import AssetError, UsageError

TINY_BERT = {
    "model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "vocab_size": 1000, "max_position_embeddings": 128,
}
TINY_LLAMA = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 500, "tie_word_embeddings": True,
}


@pytest.fixture
def tiny_bert_config(tmp_path):
    path = tmp_path / "bert" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(TINY_BERT))
    return path


@pytest.fixture
def tiny_llama_config(tmp_path):
    path = tmp_path / "llama" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(TINY_LLAMA))
    return path


def test_guide_worked_example_7b_full_fp32_adamw():
    est = estimate_memory(standin_shape(7e9), method="full", precision="fp32", optimizer="adamw")
    data = est.to_json()
    assert data["weights_gb"] == 28.0
    assert data["gradients_gb"] == 28.0
    assert data["optimizer_gb"] == 56.0
    assert data["total_gb"] == 112.0
    assert data["activations_gb"] is None
    assert any("activations left out" in n for n in est.notes)


def test_guide_quantisation_numbers():
    # Guide: 7B in fp16 is 14 GB; in 4 bits 3.5 GB (plus the NF4 constants: 3% more).
    bf16 = estimate_memory(standin_shape(7e9), method="full", precision="bf16")
    assert bf16.part("weights").bytes == 14 * GB
    assert bf16.part("optimizer").bytes == 28 * GB
    q = estimate_memory(standin_shape(7e9, layers=32, hidden=4096), method="qlora")
    assert q.part("weights").bytes / GB == pytest.approx(7 * NF4_BYTES_PER_PARAM, rel=0.01)
    assert 3.5 < q.part("weights").bytes / GB < 3.7


def test_qlora_on_cpu_counts_no_weight_copy_and_a_slack_on_its_activations():
    """Until 2026-12-02 QLoRA on CPU counted an fp32 copy of the quantised weights: that was the
    checkpoint's pages and the quantisation's temporaries, which the loader hands back now. What
    remains is bitsandbytes' dequantised weights among the activations' blocks, in the run."""
    import dataclasses

    from tunesmith.advise.memory import MemoryArgs
    from tunesmith.advise.run_memory import QLORA_CPU_ACTIVATION_SLACK, estimate_run

    shape = standin_shape(7e9, layers=32, hidden=4096)
    gpu = estimate_memory(shape, method="qlora", device="cuda", precision="fp32")
    cpu = estimate_memory(shape, method="qlora", device="cpu", precision="fp32")
    assert cpu.part("weights").bytes == gpu.part("weights").bytes
    assert "working copy" not in cpu.part("weights").formula
    with pytest.raises(UsageError, match="--device"):
        estimate_memory(shape, method="qlora", device="tpu")

    small = standin_shape(1e8, layers=12, hidden=768)
    args = dataclasses.replace(MemoryArgs.defaults(device="cpu"), precision="fp32", batch_size=4,
                               max_length=256)
    qlora = estimate_run(small, dataclasses.replace(args, method="qlora"), fixed=5e8)
    lora = estimate_run(small, dataclasses.replace(args, method="lora"), fixed=5e8)
    activations = qlora.train.part("activations").bytes
    assert qlora.parts["qlora_slack"] == pytest.approx(QLORA_CPU_ACTIVATION_SLACK * activations)
    assert "qlora_slack" not in lora.parts
    # It counts at the peak, in the allocator's slack.
    assert dict(qlora.peak_terms())["allocator slack"] == pytest.approx(
        qlora.parts["slack"] + qlora.parts["qlora_slack"])


def test_optimizers_and_precisions():
    shape = standin_shape(1e9)
    adamw = estimate_memory(shape, method="full", optimizer="adamw").part("optimizer").bytes
    eight = estimate_memory(shape, method="full", optimizer="adamw-8bit").part("optimizer").bytes
    sgd = estimate_memory(shape, method="full", optimizer="sgd").part("optimizer").bytes
    assert (adamw, eight, sgd) == (8e9, 2e9, 4e9)
    mixed = estimate_memory(shape, method="full", precision="mixed")
    assert mixed.part("weights").bytes == 6e9  # fp32 master + bf16 autocast copy
    with pytest.raises(UsageError):
        estimate_memory(shape, precision="fp8")


def test_standin_lora_counts_attention_projections():
    est = estimate_memory(standin_shape(7e9, layers=32, hidden=4096), method="lora")
    assert est.trainable_params == 32 * 2 * 8 * (4096 + 4096)  # q_proj, v_proj at r 8
    assert est.part("activations") is not None
    bare = estimate_memory(standin_shape(7e9), method="lora")
    assert bare.trainable_params == 0 and any("LoRA parameters left out" in n for n in bare.notes)


@pytest.mark.parametrize("method, extra", [
    ("full", {}), ("lora", {}), ("dora", {}), ("lora", {"lora_target_modules": "all-linear"}),
    ("adapter", {"adapter_type": "pfeiffer"}), ("adapter", {"adapter_type": "houlsby"}),
    # freeze_layers: full freezes the embeddings and the lowest blocks, the LoRA family puts no
    # LoRA on the lowest blocks (PEFT's layers_to_transform).
    ("full", {"freeze_layers": 1}), ("full", {"freeze_layers": 2}), ("lora", {"freeze_layers": 1}),
    ("dora", {"freeze_layers": 1}), ("lora_plus", {"freeze_layers": 1}),
])
def test_trainable_counts_match_the_real_methods_bert(tiny_bert_config, method, extra):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from tunesmith.config import FinetuneConfig
    from tunesmith.methods import apply_method, trainable_summary

    cfg = FinetuneConfig(method=method, **extra)
    config = AutoConfig.from_pretrained(tiny_bert_config.parent)
    config.num_labels = 2
    torch.manual_seed(0)
    model = apply_method(AutoModelForSequenceClassification.from_config(config), cfg,
                         task="classification")
    real = trainable_summary(model).trainable
    shape = model_shape(str(tiny_bert_config))
    est = estimate_memory(shape, method=method, lora_r=cfg.lora_r,
                          lora_targets=cfg.lora_target_modules, adapter_type=cfg.adapter_type,
                          adapter_reduction_factor=cfg.adapter_reduction_factor,
                          freeze_layers=cfg.freeze_layers)
    assert est.trainable_params == real
    assert shape.total_params == sum(p.numel() for p in
                                     AutoModelForSequenceClassification.from_config(config).parameters())


@pytest.mark.parametrize("method, freeze", [("lora", 0), ("lora", 1), ("full", 1)])
def test_trainable_counts_match_lora_on_llama(tiny_llama_config, method, freeze):
    """Also with freeze_layers on a model whose LM head is tied to the (frozen) embeddings."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunesmith.config import FinetuneConfig
    from tunesmith.methods import apply_method, trainable_summary

    config = AutoConfig.from_pretrained(tiny_llama_config.parent)
    model = apply_method(AutoModelForCausalLM.from_config(config),
                         FinetuneConfig(method=method, freeze_layers=freeze), task="instruction")
    shape = model_shape(str(tiny_llama_config))
    assert shape.kind == "causal" and shape.vocab == 500
    assert (estimate_memory(shape, method=method, freeze_layers=freeze).trainable_params
            == trainable_summary(model).trainable)


def test_freeze_layers_beyond_the_methods_limit_is_refused(tiny_llama_config):
    from tunesmith.errors import ConfigError

    shape = model_shape(str(tiny_llama_config))  # 2 blocks
    # Full finetuning may freeze every block: only the final norm (hidden 32 weights) trains.
    assert estimate_memory(shape, method="full", freeze_layers=2).trainable_params == 32
    with pytest.raises(ConfigError, match="freeze_layers is 2"):  # LoRA needs a block to adapt
        estimate_memory(shape, method="lora", freeze_layers=2)
    with pytest.raises(ConfigError, match="freeze_layers is 1"):
        estimate_memory(shape, method="adapter", freeze_layers=1)


def _saved_activation_bytes(model, batch, labels):
    """Bytes of every tensor autograd keeps for backward, parameters excluded."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in params:
            seen[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**batch, labels=labels)
    return sum(seen.values())


@pytest.mark.parametrize("method, freeze, targets", [
    ("full", 0, "attention"), ("lora", 0, "attention"), ("full", 2, "attention"),
    ("lora", 2, "attention"), ("lora", 0, "all-linear")])
def test_activation_formula_matches_what_autograd_saves(tiny_bert_config, method, freeze, targets):
    """With freeze_layers autograd keeps nothing for the blocks below the first that trains;
    LoRA on every linear layer (the classifier default) keeps each target's input."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from tunesmith.config import FinetuneConfig
    from tunesmith.methods import apply_method

    # Wider than the tiny model so that per-layer terms dominate, still fast.
    data = {**TINY_BERT, "hidden_size": 128, "intermediate_size": 512, "num_attention_heads": 4,
            "num_hidden_layers": 3}
    tiny_bert_config.write_text(json.dumps(data))
    config = AutoConfig.from_pretrained(tiny_bert_config.parent)
    config.num_labels = 2
    model = apply_method(AutoModelForSequenceClassification.from_config(config),
                         FinetuneConfig(method=method, freeze_layers=freeze,
                                        lora_target_modules=targets), task="classification")
    model.train()
    ids = torch.randint(5, 1000, (4, 64))
    measured = _saved_activation_bytes(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                       torch.zeros(4, dtype=torch.long))
    est = estimate_memory(model_shape(str(tiny_bert_config)), method=method, batch_size=4,
                          max_length=64, precision="fp32", freeze_layers=freeze,
                          lora_targets=targets)
    # The estimate adds one layer of backward buffers to what autograd saves.
    a, b, c = ACTIVATION_COEFFICIENTS[("encoder", method == "full")]
    # all-linear: key, attention output, intermediate (in 128) and output (in 512) beyond q/v.
    lora_inputs = LORA_INPUT_COPIES * (3 * 128 + 512) if targets == "all-linear" else 0
    one_layer = 4 * 64 * (a * 128 + b * 512 + c * 4 * 64 + lora_inputs) * 4
    assert est.part("activations").bytes - one_layer == pytest.approx(measured, rel=0.10)


def test_total_is_the_peak_not_the_sum():
    est = estimate_memory(standin_shape(1e9, layers=24, hidden=2048, vocab=32000), method="lora",
                          batch_size=8, max_length=512)
    parts = {p.key: p.bytes for p in est.parts}
    assert est.total_bytes == parts["weights"] + parts["optimizer"] + max(
        parts["gradients"], parts["activations"])
    assert est.sum_bytes == sum(parts.values()) > est.total_bytes


def test_gradient_checkpointing_and_batch_search(tiny_llama_config):
    shape = model_shape(str(tiny_llama_config))
    plain = estimate_memory(shape, method="full", batch_size=8, max_length=256)
    ckpt = estimate_memory(shape, method="full", batch_size=8, max_length=256,
                           gradient_checkpointing=True)
    assert ckpt.part("activations").bytes < plain.part("activations").bytes
    budget = estimate_memory(shape, method="lora", batch_size=16, max_length=256).total_bytes
    assert largest_batch_that_fits(shape, budget * 1.01, method="lora", max_length=256) == 16
    assert largest_batch_that_fits(shape, 1.0, method="lora", max_length=256) == 0


def test_70b_config_on_the_meta_device(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8192,
        "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
        "num_key_value_heads": 8, "vocab_size": 128256,
    }))
    shape = model_shape(str(path))
    assert shape.total_params / 1e9 == pytest.approx(70.55, abs=0.01)
    # The QLoRA paper's setting: bf16 compute and gradient checkpointing.
    est = estimate_memory(shape, method="qlora", batch_size=1, max_length=512, precision="bf16",
                          gradient_checkpointing=True)
    assert 38 < est.total_gb < 48  # the guide: 65-70B QLoRA on one 48 GB card


def test_builtin_minilm_shape():
    shape = model_shape("minilm")
    assert shape.kind == "encoder" and shape.layers == 6 and shape.hidden == 384
    assert shape.total_params == 22_713_986  # 22.7M body + a 2-label head


def test_unknown_model_and_bad_file(tmp_path):
    with pytest.raises(AssetError):
        model_shape("no-such-model-here")
    bad = tmp_path / "config.json"
    bad.write_text('{"hidden_size": 3}')
    with pytest.raises(Exception, match="model_type"):
        model_shape(str(bad))


def test_cli_json_and_table(capsys):
    assert main(["estimate-memory", "--params", "7e9", "--method", "full", "--precision", "fp32",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"weights_gb", "gradients_gb", "optimizer_gb", "activations_gb", "total_gb"} <= set(data)
    assert data["total_gb"] == 112.0
    assert main(["estimate-memory", "--params", "7e9", "--method", "full", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "112.00 GB" in out and "7,000,000,000 parameters x 4 bytes" in out
