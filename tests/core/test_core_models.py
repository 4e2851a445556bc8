"""Loading models by name: the bundled MiniLM, a local folder, and names that do not exist."""

from __future__ import annotations

import pytest
from core_tiny import tiny_bert, tokenizer

from tunesmith.errors import AssetError
from tunesmith.models import load_model


def test_builtin_minilm_gets_a_labelled_head():
    loaded = load_model("minilm", task="classification", labels=["fresh", "rotten"])
    assert loaded.kind == "encoder" and loaded.name == "minilm"
    assert loaded.model.config.id2label == {0: "fresh", 1: "rotten"}
    assert loaded.model.config.label2id == {"fresh": 0, "rotten": 1}
    assert loaded.tokenizer.is_fast and loaded.tokenizer.pad_token_id is not None


def test_local_folder_loads_like_a_hub_id(tmp_path):
    tiny_bert().save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), task="classification", labels=["a", "b", "c"])
    assert loaded.kind == "encoder" and loaded.model.config.num_labels == 3


def test_unknown_name_lists_the_builtins(tmp_path):
    with pytest.raises(AssetError) as info:
        load_model(str(tmp_path / "missing"), task="classification", labels=["a", "b"])
    assert "minilm" in info.value.message and "smollm2-135m-instruct" in info.value.message


def test_classification_needs_labels():
    with pytest.raises(AssetError, match="labels"):
        load_model("minilm", task="classification")
