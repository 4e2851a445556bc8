"""apply_method, parameter groups and counts for every method, on tiny random models."""

from __future__ import annotations

import pytest
import torch
from methods_tiny import batch, outputs, tiny_bert, tiny_llama, tiny_llama_classifier, train_steps
from torch import nn

from tunesmith.config import FinetuneConfig
from tunesmith.errors import ConfigError
from tunesmith.methods import apply_method, optimizer_param_groups, trainable_summary
from tunesmith.methods.targets import resolve_targets

CASES = [
    ("classification", tiny_bert),
    ("instruction", tiny_llama),
    ("classification", tiny_llama_classifier),
]


@pytest.mark.parametrize("method", ["full", "lora", "dora", "lora_plus", "adapter"])
@pytest.mark.parametrize(("task", "build"), CASES, ids=["bert-cls", "llama-lm", "llama-cls"])
def test_a_few_steps_change_only_trainable_params(method, task, build):
    cfg = FinetuneConfig(method=method, learning_rate=1e-2, adapter_type="houlsby")
    model = apply_method(build(), cfg, task=task)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    ids = batch()
    start = outputs(model, ids)
    train_steps(model, optimizer_param_groups(model, cfg), ids, task=task)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "nothing trained"
    assert changed <= trainable
    assert not torch.allclose(outputs(model, ids), start)
    summary = trainable_summary(model)
    assert summary.trainable == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    if method != "full":
        assert 0 < summary.percent < 50
        if task == "classification":  # the new head trains with every method
            assert any("classifier" in n or "score" in n for n in trainable)


def test_lora_arithmetic_of_the_guide():
    # Guide: LoRA r=8 on a 4096x4096 weight trains 8 x (4096 + 4096) = 65,536 parameters, 0.39%.
    class OneLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(4096, 4096, bias=False)

        def forward(self, x):
            return self.q_proj(x)

    from peft import LoraConfig, get_peft_model

    model = get_peft_model(OneLinear(), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj"]))
    summary = trainable_summary(model)
    assert summary.trainable == 65_536
    assert round(100 * summary.trainable / 4096**2, 2) == 0.39
    assert str(summary).startswith("trainable params: 65,536 of 16,842,752 (0.39%)")


@pytest.mark.parametrize(("adapter_type", "sites_per_block"), [("pfeiffer", 1), ("houlsby", 2)])
def test_bottleneck_counts_and_identity_start(adapter_type, sites_per_block):
    cfg = FinetuneConfig(method="adapter", adapter_type=adapter_type, adapter_reduction_factor=8)
    ids = batch()
    base_out = outputs(tiny_llama(), ids)
    model = apply_method(tiny_llama(), cfg, task="instruction")
    # hidden 32 / 8 = 4: down 32x4 + 4, up 4x32 + 32 per site; 2 blocks.
    per_site = 32 * 4 + 4 + 4 * 32 + 32
    assert trainable_summary(model).trainable == 2 * sites_per_block * per_site
    # The up-projection starts at zero: a fresh adapter changes nothing.
    assert torch.equal(outputs(model, ids), base_out)


def test_weight_decay_only_on_matrices():
    cfg = FinetuneConfig(method="full", weight_decay=0.05)
    model = apply_method(tiny_bert(), cfg, task="classification")
    shapes = dict(model.named_parameters())
    for group in optimizer_param_groups(model, cfg):
        assert set(group) >= {"params", "weight_decay", "lr"}
        for name in group["param_names"]:
            assert group["weight_decay"] == (0.05 if shapes[name].ndim >= 2 else 0.0), name


def test_freeze_layers_freezes_embeddings_and_lowest_blocks():
    model = apply_method(tiny_bert(), FinetuneConfig(method="full", freeze_layers=1),
                         task="classification")
    for name, param in model.named_parameters():
        frozen = name.startswith(("bert.embeddings.", "bert.encoder.layer.0."))
        assert param.requires_grad != frozen, name
    with pytest.raises(ConfigError, match="only 2 blocks"):
        apply_method(tiny_bert(), FinetuneConfig(method="full", freeze_layers=3),
                     task="classification")
    # Loading refuses freeze_layers with bottleneck adapters (tests/test_config.py); a config
    # changed without validation (model_copy, as compare-methods does) is refused again here.
    unchecked = FinetuneConfig(method="full", freeze_layers=1).model_copy(update={"method": "adapter"})
    with pytest.raises(ConfigError, match="freeze_layers"):
        apply_method(tiny_bert(), unchecked, task="classification")


@pytest.mark.parametrize("method", ["lora", "dora", "lora_plus"])
@pytest.mark.parametrize(("task", "build", "blocks"), [
    ("instruction", tiny_llama, "model.layers."),
    ("classification", tiny_bert, "bert.encoder.layer."),
], ids=["llama-lm", "bert-cls"])
def test_freeze_layers_puts_lora_on_the_upper_blocks_only(method, task, build, blocks):
    # The same meaning as for full finetuning: the lowest N blocks do not train.
    model = apply_method(build(), FinetuneConfig(method=method, freeze_layers=1), task=task)
    adapted = {n for n, p in model.named_parameters() if "lora_" in n}
    assert adapted and all(f"{blocks}1." in n for n in adapted), sorted(adapted)
    ids = batch()
    model.train()
    if task == "classification":
        loss = model(input_ids=ids, labels=torch.arange(len(ids)) % 2).loss
    else:
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert {n for n in with_grad if "lora_" in n} == adapted
    assert not any(f"{blocks}0." in n for n in with_grad)
    with pytest.raises(ConfigError, match="no block left to adapt"):
        apply_method(build(), FinetuneConfig(method=method, freeze_layers=2), task=task)


def test_layerwise_lr_decay_gives_lower_blocks_smaller_rates():
    cfg = FinetuneConfig(method="full", learning_rate=1e-3, layerwise_lr_decay=0.5)
    model = apply_method(tiny_llama(), cfg, task="instruction")
    lr_of = {n: g["lr"] for g in optimizer_param_groups(model, cfg) for n in g["param_names"]}
    assert lr_of["lm_head.weight"] == pytest.approx(1e-3)
    assert lr_of["model.norm.weight"] == pytest.approx(1e-3)
    assert lr_of["model.layers.1.self_attn.q_proj.weight"] == pytest.approx(5e-4)
    assert lr_of["model.layers.0.self_attn.q_proj.weight"] == pytest.approx(2.5e-4)
    assert lr_of["model.embed_tokens.weight"] == pytest.approx(1.25e-4)


def test_lora_plus_b_matrices_learn_ratio_times_faster():
    cfg = FinetuneConfig(method="lora_plus", learning_rate=2e-4, lora_plus_ratio=16)
    model = apply_method(tiny_bert(), cfg, task="classification")
    lr_of = {n: g["lr"] for g in optimizer_param_groups(model, cfg) for n in g["param_names"]}
    b_names = [n for n in lr_of if ".lora_B." in n]
    a_names = [n for n in lr_of if ".lora_A." in n]
    assert len(b_names) == len(a_names) == 4  # query and value in 2 blocks
    assert all(lr_of[n] == pytest.approx(3.2e-3) for n in b_names)
    assert all(lr_of[n] == pytest.approx(2e-4) for n in a_names)
    assert lr_of["base_model.model.classifier.modules_to_save.default.weight"] == pytest.approx(2e-4)


def test_dora_adds_a_magnitude_vector_without_weight_decay():
    cfg = FinetuneConfig(method="dora")
    model = apply_method(tiny_bert(), cfg, task="classification")
    magnitudes = [n for n, p in model.named_parameters() if "magnitude" in n and p.requires_grad]
    assert len(magnitudes) == 4
    decay_of = {n: g["weight_decay"] for g in optimizer_param_groups(model, cfg) for n in g["param_names"]}
    assert all(decay_of[n] == 0.0 for n in magnitudes)


def test_targets_found_per_architecture_and_bad_names_explained():
    assert resolve_targets(tiny_bert(), "attention") == ["query", "value"]
    assert resolve_targets(tiny_llama(), "attention") == ["q_proj", "v_proj"]
    all_linear = resolve_targets(tiny_llama(), "all-linear")
    assert set(all_linear) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with pytest.raises(ConfigError, match="'qkv' not found") as err:
        resolve_targets(tiny_llama(), ["q_proj", "qkv"])
    assert "o_proj" in err.value.hint


def test_qlora_needs_a_4bit_base():
    with pytest.raises(ConfigError, match="4-bit"):
        apply_method(tiny_llama(), FinetuneConfig(method="qlora"), task="instruction")
