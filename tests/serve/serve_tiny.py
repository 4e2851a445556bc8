"""Tiny run folders for the serving tests: a 2-layer Llama (SmolLM2's tokenizer and chat
template) with LoRA/DoRA adapters, and a tiny BERT classifier with LoRA; real safetensors,
real tunesmith_adapter.json and run.json, built in about a second each."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import torch

from tunesmith.config import FinetuneConfig, validate_config
from tunesmith.methods import apply_method, save_adapter


def smol_tokenizer():
    from transformers import AutoTokenizer

    from tunesmith.models.loader import resolve_model_path

    path, _ = resolve_model_path("smollm2-135m-instruct")
    return AutoTokenizer.from_pretrained(path)


def save_tiny_llama(folder: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = smol_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_bert(folder: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tunesmith.assets import builtin_model_path

    tokenizer = AutoTokenizer.from_pretrained(builtin_model_path("minilm"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_run(runs: Path, name: str, base: Path | str, *, task: str = "chat", method: str = "lora",
             seed: int = 1, labels: list[str] | None = None) -> Path:
    """A run folder whose adapter has random (non-zero) weights, so it answers unlike the base."""
    from tunesmith.models import load_model

    loaded = load_model(str(base), task=task, labels=labels)
    cfg = FinetuneConfig(method=method, lora_r=8)
    model = apply_method(loaded.model, cfg, task=task)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    out = runs / name
    meta = {"base_model": str(base), "task": task}
    if labels:
        meta["labels"] = labels
    save_adapter(model, out / "adapter", meta)
    run_meta = {"run_name": name, "task": task, "model": str(base), "method": method,
                "mlflow_run_id": f"mlflow-{name}", "data_sha256": f"data-{name}"}
    (out / "run.json").write_text(json.dumps(run_meta), encoding="utf-8")
    config = validate_config({"finetune": {"model": str(base), "method": method, "lora_r": 8}})
    (out / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    return out


@contextlib.contextmanager
def running(app):
    """``app`` served by a real uvicorn on a free loopback port, in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn must not reconfigure the test process's logging (its dictConfig
    # closes every handler made before, and with them streams pytest still captures into).
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start in 20 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
