"""One typed argument group for the memory estimate, built from the config."""

from __future__ import annotations

import json

import pytest

from tunesmith.advise.memory import MemoryArgs, estimate_memory, trainable_params
from tunesmith.cli.main import main
from tunesmith.config import Config, save_config, validate_config
from tunesmith.errors import UsageError
from tunesmith.train import precision

WIDE_LLAMA = {  # the shape fixture's model (tests/advise/conftest.py)
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 1024,
    "intermediate_size": 4096, "num_hidden_layers": 4, "num_attention_heads": 8,
    "num_key_value_heads": 4, "vocab_size": 8000, "tie_word_embeddings": True,
}


def test_from_config_reads_every_field_of_the_run(monkeypatch):
    cfg = validate_config({
        "prepare": {"max_length": 96},
        "finetune": {"method": "adapter", "batch_size": 3, "lora_r": 4,
                     "lora_target_modules": ["q_proj"], "adapter_type": "houlsby",
                     "adapter_reduction_factor": 8, "gradient_checkpointing": True,
                     "precision": "auto"},
    })
    args = MemoryArgs.from_config(cfg, device="cpu")
    assert (args.method, args.batch_size, args.max_length, args.lora_r) == ("adapter", 3, 96, 4)
    assert (args.lora_targets, args.adapter_type, args.adapter_reduction_factor) == (["q_proj"], "houlsby", 8)
    assert args.gradient_checkpointing and args.keep_best_copy
    # finetune.precision auto, as the loop does: bf16 autocast (mixed) on a GPU and on a CPU
    # with AMX-BF16, fp32 on other CPUs.
    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: False)
    assert MemoryArgs.from_config(cfg, device="cpu").precision == "fp32"
    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: True)
    assert MemoryArgs.from_config(cfg, device="cpu").precision == "mixed"
    assert MemoryArgs.from_config(cfg, device="cuda").precision == "mixed"
    assert MemoryArgs.from_config(cfg, device="cpu", batch_size=1).batch_size == 1
    frozen = validate_config({"finetune": {"method": "lora", "freeze_layers": 3}})
    assert MemoryArgs.from_config(frozen).freeze_layers == 3


def test_unknown_argument_is_a_usage_error(shape):
    with pytest.raises(UsageError, match="lora_rank"):
        estimate_memory(shape, lora_rank=4)


def test_defaults_are_the_configs():
    args = MemoryArgs.defaults()
    ft = Config().finetune
    assert (args.method, args.batch_size, args.lora_r) == (ft.method, ft.batch_size, ft.lora_r)
    assert args.max_length == Config().prepare.max_length


def test_cli_takes_unset_flags_from_the_config(tmp_path, capsys, shape):
    """A params.yaml with rank 32 changes the CLI's estimate: no flag default overrides it."""
    config_json = tmp_path / "llama.json"
    config_json.write_text(json.dumps(WIDE_LLAMA))
    params = tmp_path / "params.yaml"
    save_config(validate_config({"finetune": {"lora_r": 32, "batch_size": 2}}), params)
    assert main(["estimate-memory", "--model", str(config_json), "--config", str(params),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trainable_params"] == trainable_params(shape, method="lora", lora_r=32)[0]
    assert data["batch_size"] == 2
    # A flag still wins over the file.
    assert main(["estimate-memory", "--model", str(config_json), "--config", str(params),
                 "--lora-r", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trainable_params"] == trainable_params(
        shape, method="lora", lora_r=4)[0]
    # --freeze-layers: no LoRA on the lowest 2 of the 4 blocks, half the adapter.
    assert main(["estimate-memory", "--model", str(config_json), "--config", str(params),
                 "--freeze-layers", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trainable_params"] == trainable_params(
        shape, method="lora", lora_r=32)[0] // 2


def test_the_cli_offers_every_method_the_config_has():
    from tunesmith.cli.advise import METHOD_CHOICES
    from tunesmith.config import METHODS

    assert sorted(METHOD_CHOICES) == sorted(METHODS)
