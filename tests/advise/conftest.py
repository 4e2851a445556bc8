"""A Llama-shaped model known only by its config (built on the meta device by the estimator)."""

from __future__ import annotations

import json

import pytest

# Wide and shallow: weights weigh enough against activations for 4-bit to pay off.
WIDE_LLAMA = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 1024,
    "intermediate_size": 4096, "num_hidden_layers": 4, "num_attention_heads": 8,
    "num_key_value_heads": 4, "vocab_size": 8000, "tie_word_embeddings": True,
}


@pytest.fixture(scope="module")
def shape(tmp_path_factory):
    from tunesmith.advise.memory import model_shape

    path = tmp_path_factory.mktemp("llama") / "config.json"
    path.write_text(json.dumps(WIDE_LLAMA))
    return model_shape(str(path))
