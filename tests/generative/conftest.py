"""Fixtures of the generative tests: the real SmolLM2 tokenizer and a tiny random Llama."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smol_tokenizer():
    """SmolLM2's real tokenizer (chat template, <|im_end|> as EOS), from the converted cache.

    The first use converts the bundled GGUF once (about 30 s); later sessions load in ~1 s.
    """
    from transformers import AutoTokenizer

    from tunesmith.models.loader import resolve_model_path

    path, _ = resolve_model_path("smollm2-135m-instruct")
    return AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="session")
def tiny_llama(smol_tokenizer):
    """A 2-layer Llama with random weights and SmolLM2's vocabulary (fast on CPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smol_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=smol_tokenizer.pad_token_id,
        eos_token_id=smol_tokenizer.eos_token_id,
        bos_token_id=smol_tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_llama, smol_tokenizer):
    """The tiny Llama saved as a model folder (``finetune.model: <folder>``)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama.save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path
