"""Save -> load, several adapters on one base, merge: the adapter lifecycle on tiny models."""

from __future__ import annotations

import pytest
import torch
from methods_tiny import batch, outputs, save_tiny_base, tiny_bert, tiny_llama, train_steps

from tunesmith.config import FinetuneConfig
from tunesmith.errors import DataError, UsageError
from tunesmith.methods import (
    adapter_names,
    apply_method,
    load_adapter,
    merge_adapter,
    optimizer_param_groups,
    read_adapter_meta,
    save_adapter,
    set_adapter,
    trusted_base_model,
)

BUILDERS = {"classification": tiny_bert, "instruction": tiny_llama}


def trained(method: str, task: str, *, data_seed: int = 1, **extra):
    cfg = FinetuneConfig(method=method, learning_rate=1e-2, **extra)
    model = apply_method(BUILDERS[task](), cfg, task=task)
    train_steps(model, optimizer_param_groups(model, cfg), batch(seed=data_seed), task=task)
    return model


@pytest.mark.parametrize("method", ["full", "lora", "dora", "lora_plus", "adapter"])
@pytest.mark.parametrize("task", ["classification", "instruction"])
def test_save_then_load_gives_the_same_predictions(tmp_path, method, task):
    model = trained(method, task, adapter_type="houlsby")
    ids = batch(seed=7)
    expected = outputs(model, ids)
    saved = save_adapter(model, tmp_path / "adapter", {"base_model": "tiny", "task": task})
    meta = read_adapter_meta(tmp_path / "adapter")
    assert meta["method"] == method and meta["task"] == task
    assert 0 < meta["size_bytes"] < saved.size_bytes
    assert saved.size_bytes == sum(f.stat().st_size for f in (tmp_path / "adapter").iterdir())
    if method != "full":  # only the trained parameters are written
        assert meta["trainable_params"] < meta["total_params"] / 5
        assert saved.size_bytes < 4 * meta["total_params"] / 5
    reloaded = load_adapter(BUILDERS[task](), tmp_path / "adapter").eval()
    torch.testing.assert_close(outputs(reloaded, ids), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["lora", "adapter"])
def test_two_adapters_on_one_base_switch_per_call(tmp_path, method):
    ids = batch(seed=7)
    singles = {}
    for name, seed in (("first", 1), ("second", 2)):
        model = trained(method, "classification", data_seed=seed)
        save_adapter(model, tmp_path / name, {"task": "classification"})
        singles[name] = outputs(load_adapter(tiny_bert(), tmp_path / name).eval(), ids)
    shared = load_adapter(tiny_bert(), tmp_path / "first", name="first")
    shared = load_adapter(shared, tmp_path / "second", name="second").eval()
    assert adapter_names(shared) == ["first", "second"]
    assert not torch.allclose(singles["first"], singles["second"])
    for name in ("first", "second", "first"):
        set_adapter(shared, name)
        torch.testing.assert_close(outputs(shared, ids), singles[name], rtol=0, atol=1e-6)
    with pytest.raises(UsageError, match="no adapter named 'third'"):
        set_adapter(shared, "third")


@pytest.mark.parametrize("method", ["lora", "dora"])
@pytest.mark.parametrize("task", ["classification", "instruction"])
def test_merged_model_matches_the_unmerged_one(method, task):
    # all-linear on the encoder covers attention and feed-forward layers; the decoder keeps the
    # default query/value targets to stay fast.
    targets = "all-linear" if task == "classification" else "attention"
    model = trained(method, task, lora_target_modules=targets)
    ids = batch(seed=7)
    expected = outputs(model, ids)
    merged = merge_adapter(model)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert type(merged).__name__ in ("BertForSequenceClassification", "LlamaForCausalLM")
    assert (outputs(merged, ids) - expected).abs().max() < 1e-4


def test_bottleneck_adapters_refuse_to_merge(tmp_path):
    from tunesmith.serve.merge import merge_adapter_dir

    model = trained("adapter", "classification")
    with pytest.raises(UsageError, match="cannot be merged"):
        merge_adapter(model)
    save_adapter(model, tmp_path / "adapter", {"base_model": "tiny", "task": "classification"})
    with pytest.raises(UsageError, match="cannot be merged"):
        merge_adapter_dir(tmp_path / "adapter", tmp_path / "merged")


def test_a_full_finetune_cannot_share_its_base(tmp_path):
    model = trained("full", "classification")
    save_adapter(model, tmp_path / "full", {"task": "classification"})
    base = load_adapter(tiny_bert(), tmp_path / "full", name="a")
    with pytest.raises(UsageError, match="cannot share a base"):
        load_adapter(base, tmp_path / "full", name="b")


def test_predict_and_merge_from_run_folders(tmp_path):
    """The serve layer end to end: bases loaded by path, adapters from run folders."""
    from transformers import AutoModelForSequenceClassification

    from tunesmith.pipelines.methods import merge, predict

    base = save_tiny_base(tmp_path / "base", "bert")
    meta = {"base_model": base, "task": "classification", "labels": ["neg", "pos"]}
    for name, seed in (("run-a", 1), ("run-b", 2)):
        model = apply_method(AutoModelForSequenceClassification.from_pretrained(base),
                             FinetuneConfig(method="lora", learning_rate=5e-2), task="classification")
        ids = batch(seed=seed)
        train_steps(model, optimizer_param_groups(model, FinetuneConfig(method="lora", learning_rate=5e-2)),
                    ids, task="classification", steps=5)
        save_adapter(model, tmp_path / name / "adapter", meta)
    texts = ["a fine film", "a dull film that never ends"]
    runs = [str(tmp_path / "run-a"), str(tmp_path / "run-b")]
    predictions = predict(runs, texts)
    assert [(p.adapter, p.text) for p in predictions] == [
        ("run-a", texts[0]), ("run-a", texts[1]), ("run-b", texts[0]), ("run-b", texts[1])]
    assert all(p.output in ("neg", "pos") and 0.5 <= p.score <= 1 for p in predictions)
    assert [p.score for p in predictions[:2]] != [p.score for p in predictions[2:]]
    only_b = predict(runs, texts, ["run-b"])
    assert [p.score for p in only_b] == pytest.approx([p.score for p in predictions[2:]], abs=1e-6)

    result = merge(tmp_path / "run-a", tmp_path / "merged")
    assert result.max_abs_diff < 1e-4 and result.precision == "float32"
    standalone = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    from transformers import AutoTokenizer

    enc = AutoTokenizer.from_pretrained(tmp_path / "merged")(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(standalone(**enc).logits, dim=-1).max(dim=-1).values
    assert probs.tolist() == pytest.approx([p.score for p in predictions[:2]], abs=1e-4)


def test_predict_on_a_causal_base_generates_or_scores_labels(tmp_path):
    """Instruction adapters generate; classification-as-instruction adapters score each label."""
    from transformers import AutoModelForCausalLM

    from tunesmith.serve.predict import AdapterServer

    base = save_tiny_base(tmp_path / "base", "llama")
    for name, task, labels in (("gen", "instruction", None),
                               ("cls", "classification-as-instruction", ["negative", "positive"])):
        model = apply_method(AutoModelForCausalLM.from_pretrained(base), FinetuneConfig(method="lora"),
                             task=task)
        save_adapter(model, tmp_path / name, {"base_model": base, "task": task,
                                              **({"labels": labels} if labels else {})})
    server = AdapterServer.from_paths([tmp_path / "gen", tmp_path / "cls"])
    assert list(server.adapters) == ["gen", "cls"]
    generated = server.predict(["say hello"], "gen", max_new_tokens=4)
    assert generated[0].score is None and isinstance(generated[0].output, str)
    scored = server.predict(["a fine film", "dull"], "cls")
    assert all(p.output in ("negative", "positive") and 0.5 <= p.score <= 1 for p in scored)


def test_a_corrupt_adapter_meta_names_the_file(tmp_path):
    (tmp_path / "tunesmith_adapter.json").write_text('{"method": "lora", base_model: "minilm"}')
    with pytest.raises(DataError, match=r"tunesmith_adapter\.json: not valid JSON at line 1") as err:
        read_adapter_meta(tmp_path)
    assert str(tmp_path) in err.value.message and "Restore it" in err.value.hint


def test_an_adapters_base_model_must_be_built_in_or_a_local_folder(tmp_path):
    from tunesmith.serve.base import load_base

    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert trusted_base_model({"base_model": "minilm"}) == "minilm"
    assert trusted_base_model({"base_model": str(folder)}) == str(folder)
    for untrusted in ("evil-org/model", "distilbert-base-uncased", str(tmp_path / "missing")):
        meta = {"base_model": untrusted, "task": "classification", "labels": ["a", "b"]}
        with pytest.raises(UsageError, match="neither a built-in model") as err:
            load_base(meta, directory=tmp_path / "adapter")
        assert str(tmp_path / "adapter" / "tunesmith_adapter.json") in err.value.message
        assert "trust_remote_code" in err.value.message and "hf download" in err.value.hint
