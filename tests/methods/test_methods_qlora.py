"""QLoRA on CPU: an NF4 base (bitsandbytes), LoRA on top; merge dequantises first."""

from __future__ import annotations

import sys

import pytest
import torch
from methods_tiny import outputs, save_tiny_base, train_steps

from tunesmith.config import FinetuneConfig
from tunesmith.methods import (
    apply_method,
    load_adapter,
    optimizer_param_groups,
    save_adapter,
    trainable_summary,
)
from tunesmith.models import load_model


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_base(tmp_path_factory.mktemp("qlora") / "base", "llama")


def test_qlora_trains_on_a_4bit_base_and_merges_dequantised(base_dir, tmp_path):
    from tunesmith.serve.merge import merge_adapter_dir

    plain_total = trainable_summary(load_model(base_dir, task="instruction").model).total
    loaded = load_model(base_dir, task="instruction", load_in_4bit=True)
    q_proj = loaded.model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == "Linear4bit" and q_proj.weight.quant_state.quant_type == "nf4"

    cfg = FinetuneConfig(method="qlora", learning_rate=1e-2)
    model = apply_method(loaded.model, cfg, task="instruction")
    summary = trainable_summary(model)
    # q_proj and v_proj in 2 blocks, r 8, 32x32: 4 x 8 x (32 + 32); 4-bit weights counted as weights.
    assert summary.trainable == 2048
    assert summary.total == plain_total + 2048

    ids = torch.randint(1, 1000, (4, 9), generator=torch.Generator().manual_seed(1))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = outputs(model, ids)
    train_steps(model, optimizer_param_groups(model, cfg), ids, task="instruction")
    after = outputs(model, ids)
    assert not torch.allclose(before, after)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)

    meta = {"base_model": base_dir, "task": "instruction"}
    save_adapter(model, tmp_path / "adapter", meta)
    reloaded = load_adapter(load_model(base_dir, task="instruction", load_in_4bit=True).model,
                            tmp_path / "adapter").eval()
    torch.testing.assert_close(outputs(reloaded, ids), after, rtol=0, atol=1e-6)

    result = merge_adapter_dir(tmp_path / "adapter", tmp_path / "merged")
    assert result.method == "qlora"
    assert result.precision == "float32 (dequantised from NF4 4-bit)"
    assert result.max_abs_diff < 1e-4
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    config = (tmp_path / "merged" / "config.json").read_text()
    assert "quantization_config" not in config and '"dtype": "float32"' in config


def test_qlora_classification_keeps_the_new_head_trainable(tmp_path):
    from tunesmith.serve.merge import merge_adapter_dir

    base = save_tiny_base(tmp_path / "base", "bert")
    loaded = load_model(base, task="classification", labels=["neg", "pos"], load_in_4bit=True)
    cfg = FinetuneConfig(method="qlora", learning_rate=1e-2)
    model = apply_method(loaded.model, cfg, task="classification")
    head = [n for n, p in model.named_parameters() if p.requires_grad and "classifier" in n]
    assert head, "the classification head must train"
    ids = torch.randint(1, 1000, (4, 9), generator=torch.Generator().manual_seed(1))
    before = outputs(model, ids)
    train_steps(model, optimizer_param_groups(model, cfg), ids, task="classification")
    assert not torch.allclose(before, outputs(model, ids))
    save_adapter(model, tmp_path / "adapter",
                 {"base_model": base, "task": "classification", "labels": ["neg", "pos"]})
    assert merge_adapter_dir(tmp_path / "adapter", tmp_path / "merged").max_abs_diff < 1e-4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and madvise: Linux")
def test_a_4bit_load_hands_back_the_checkpoints_pages_and_the_model_reads_them_again():
    """Quantising reads every fp32 weight from the checkpoint's memory map; those pages leave
    the process after the load, and the weights that stayed unquantised read theirs again."""
    from pathlib import Path

    from tunesmith.models.loader import resolve_model_path
    from tunesmith.models.pages import file_mappings, release_checkpoint_pages

    folder = Path(resolve_model_path("minilm")[0]).resolve()
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))

    def resident() -> int:
        return sum(m.resident_bytes for m in file_mappings()
                   if m.path.startswith(str(folder)) and m.path.endswith(".safetensors"))

    loaded = load_model("minilm", task="classification", labels=["neg", "pos"], load_in_4bit=True)
    assert resident() < 0.1 * size  # without the release: all of the file (90 MB)
    ids = torch.randint(1000, 20000, (4, 12), generator=torch.Generator().manual_seed(0))
    model = loaded.model.eval()
    with torch.no_grad():
        before = model(input_ids=ids).logits
    assert resident() > 0  # the embeddings and norms read their pages again
    assert release_checkpoint_pages(folder) > 0
    assert resident() == 0
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and madvise: Linux")
def test_a_checkpoint_map_with_a_written_page_is_not_handed_back():
    """A weight changed in place lives in a page the process wrote: the file no longer has its
    numbers, so that mapping keeps its pages (releasing them would bring the file's back)."""
    from pathlib import Path

    from tunesmith.models.loader import resolve_model_path
    from tunesmith.models.pages import file_mappings, release_checkpoint_pages

    folder = Path(resolve_model_path("minilm")[0]).resolve()
    model = load_model("minilm", task="classification", labels=["neg", "pos"]).model
    weight = model.bert.encoder.layer[0].attention.self.query.weight
    with torch.no_grad():
        weight[0, :8] = 7.0  # in the checkpoint's memory map: a private, copied page now

    def its_mapping():  # the mapping this weight lives in (other loads may map the file too)
        return next(m for m in file_mappings() if m.start <= weight.data_ptr() < m.end)

    held = its_mapping()
    assert held.written_bytes > 0 and held.resident_bytes > 0
    release_checkpoint_pages(folder)
    assert its_mapping().resident_bytes == held.resident_bytes
    assert torch.all(weight[0, :8] == 7.0)
