"""A Llama-shaped model known only by its config (built on the meta device by the estimator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Wide and shallow: weights weigh enough against activations for 4-bit to pay off.
WIDE_LLAMA = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 1024,
    "intermediate_size": 4096, "num_hidden_layers": 4, "num_attention_heads": 8,
    "num_key_value_heads": 4, "vocab_size": 8000, "tie_word_embeddings": True,
}


# Narrow and deep, SmolLM2-135M's shape: activations dominate long batches, and checkpointing
# (each layer's input kept, one layer recomputed at a time) removes most of them.
DEEP_LLAMA = {**WIDE_LLAMA, "hidden_size": 576, "intermediate_size": 1536,
              "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
              "vocab_size": 49152}


def _config_file(factory, config: dict) -> Path:
    path = factory.mktemp("llama") / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def wide_llama_config(tmp_path_factory):
    """The config.json of :data:`WIDE_LLAMA` (a model folder without weights)."""
    return _config_file(tmp_path_factory, WIDE_LLAMA)


@pytest.fixture(scope="module")
def deep_llama_config(tmp_path_factory):
    """The config.json of :data:`DEEP_LLAMA`."""
    return _config_file(tmp_path_factory, DEEP_LLAMA)


@pytest.fixture(scope="module")
def shape(wide_llama_config):
    from tunesmith.advise.memory import model_shape

    return model_shape(str(wide_llama_config))
