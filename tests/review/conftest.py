"""Tiny real runs for the review tests: a QA run on a 2-layer random Llama with SmolLM2's
tokenizer, and a classification run on a 2-layer random BERT with MiniLM's tokenizer. Each is
trained once per session (seconds) and copied into every test that changes it."""

from __future__ import annotations

import json

import pytest
from review_runs import copy_run

QUESTIONS = [(f"What is {a} plus {b}?", str(a + b)) for a in range(8) for b in range(8)]
_WORDS = {"pos": ["great", "wonderful", "moving", "charming"], "neg": ["awful", "boring", "dull", "clumsy"]}


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def gen_run_source(tmp_path_factory):
    """runs/qa: trained 2 steps, 3 samples in samples.jsonl, tracked in a sqlite MLflow store."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunesmith.config import validate_config
    from tunesmith.models.loader import resolve_model_path
    from tunesmith.pipelines.run import run

    root = tmp_path_factory.mktemp("gen")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct")[0])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id))
    model.save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    data = _write(root / "qa.jsonl", [{"question": q, "answer": a} for q, a in QUESTIONS])
    cfg = validate_config({
        "prepare": {"dataset": data, "max_length": 96, "dedup": "none"},
        "finetune": {"model": str(root / "llama"), "max_steps": 2, "batch_size": 4, "learning_rate": 1e-3},
        "evaluation": {"generation_limit": 3, "max_new_tokens": 5, "few_shot_k": 0, "num_samples": 3,
                       "forgetting_text": None},
        "tracking": {"enabled": True, "mlflow_uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "review"},
    })
    run(cfg, root / "runs" / "qa", progress=False, log=lambda _: None)
    return root / "runs" / "qa"


@pytest.fixture(scope="session")
def cls_run_source(tmp_path_factory):
    """runs/cls: a classifier trained 2 steps (full finetuning), with errors.jsonl."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tunesmith import assets
    from tunesmith.config import validate_config
    from tunesmith.pipelines.run import run

    root = tmp_path_factory.mktemp("cls")
    tokenizer = AutoTokenizer.from_pretrained(str(assets.builtin_model_path("minilm")))
    BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=2)).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    rows = [{"text": f"the film was {'really ' * (i % 4)}{_WORDS[label][i % 4]} number {i}", "label": label}
            for i in range(60) for label in (("pos", "neg")[i % 2],)]
    data = _write(root / "reviews.jsonl", rows)
    cfg = validate_config({
        "prepare": {"dataset": data, "dedup": "none"},
        "finetune": {"model": str(root / "bert"), "method": "full", "max_steps": 2, "learning_rate": 1e-3},
        "evaluation": {"num_samples": 20},
        "tracking": {"enabled": False},
    })
    run(cfg, root / "runs" / "cls", progress=False, log=lambda _: None)
    return root / "runs" / "cls"


@pytest.fixture
def gen_run(gen_run_source, in_tmp):
    return copy_run(gen_run_source, in_tmp / "runs")


@pytest.fixture
def cls_run(cls_run_source, in_tmp):
    return copy_run(cls_run_source, in_tmp / "runs")
