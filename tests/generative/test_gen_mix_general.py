"""prepare.mix_general: general text mixed into causal-LM training, its loss kept apart."""

from __future__ import annotations

import copy
import json

import pytest

from tunesmith.config import FinetuneConfig, validate_config
from tunesmith.data.mixing import draw_share, mix_count
from tunesmith.errors import ConfigError
from tunesmith.records import QARecord
from tunesmith.train import general as gen
from tunesmith.train.causal import encode_records
from tunesmith.train.encoding import EncodedDataset
from tunesmith.train.objectives import CausalLMObjective, nll_per_row, response_loss
from tunesmith.train.packing import collate_with_positions, pack


def test_mix_count_and_draw_share_by_hand():
    # 0.2 of a mix holding 80 items: 20 more (80 x 0.2 / 0.8).
    assert mix_count(80, 0.2) == pytest.approx(20)
    assert mix_count(80, 0) == 0
    drawn = draw_share(list(range(10)), 0.2, 80, seed=1)
    # A pool of 10 is used twice over (reshuffled), each item at most twice.
    assert len(drawn) == 20 and sorted(drawn) == sorted(list(range(10)) * 2)
    assert draw_share(list(range(10)), 0.2, 80, seed=1) == drawn  # deterministic for a seed
    # Weighted: items of weight 5 until 5 x k >= 80 x 0.5 / 0.5 = 80 -> 16 items.
    assert len(draw_share(["x"] * 3, 0.5, 80, seed=0, weight=lambda _: 5.0)) == 16
    # The item that crosses the target is taken only when that lands nearer: 63 for a target
    # of 20 (80 x 0.2 / 0.8) would miss by 43, none misses by 20; for a target of 40, 23 < 40.
    assert draw_share(["x"] * 3, 0.2, 80, seed=0, weight=lambda _: 63.0) == []
    assert draw_share(["x"] * 3, 1 / 3, 80, seed=0, weight=lambda _: 63.0) == ["x"]
    assert draw_share([], 0.3, 80, seed=0) == [] and draw_share([1], 0.0, 80, seed=0) == []
    with pytest.raises(ValueError, match="share"):
        mix_count(10, 1.0)


def _task_and_general(tokenizer):
    task = encode_records([QARecord(question=f"What is {a} plus 2?", answer=str(a + 2)) for a in range(6)],
                          tokenizer, 64).examples
    text = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
            "the slings and arrows of outrageous fortune. ") * 3
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    general = [{"input_ids": ids[i:i + 20], "labels": [-100, *ids[i + 1:i + 20]]} for i in (0, 20)]
    return task, general


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_the_objective_returns_the_general_tokens_loss_apart(tiny_llama, smol_tokenizer, packed):
    task, general = _task_and_general(smol_tokenizer)
    pad = smol_tokenizer.pad_token_id
    rows = gen.flag(task[:2], 0) + gen.flag(general, 1)
    if packed:
        rows = pack(rows, 512)
        assert len(rows) == 1
    import torch

    with torch.no_grad():
        total, n, parts = CausalLMObjective(mix_general=True).loss(tiny_llama, collate_with_positions(rows, pad))
    # Independently: each example scored alone, with no flags at all.
    task_nll = nll_per_row(tiny_llama, task[:2], pad)
    general_nll = nll_per_row(tiny_llama, general, pad)
    assert parts["general"][1] == sum(c for _, c in general_nll) == 38
    assert parts["general"][0] == pytest.approx(sum(s for s, _ in general_nll), rel=1e-4)
    assert n == parts["general"][1] + sum(c for _, c in task_nll)
    assert float(total) == pytest.approx(sum(s for s, _ in task_nll + general_nll), rel=1e-4)


def test_the_history_logs_the_task_loss_and_the_general_loss_apart(tiny_llama, smol_tokenizer, tmp_path):
    from tunesmith.methods import apply_method
    from tunesmith.train.loop import fit

    task, general = _task_and_general(smol_tokenizer)
    pad = smol_tokenizer.pad_token_id
    model = copy.deepcopy(tiny_llama)
    # What the first logged losses must be: the starting weights' mean NLL over the task's
    # tokens and over the general text's, each computed on its own (LoRA starts as a no-op).
    task_start = response_loss(model, task, pad)["loss"]
    general_start = response_loss(model, general, pad)["loss"]
    cfg = FinetuneConfig(model="tiny", max_steps=2, batch_size=len(task) + len(general),
                         logging_steps=1, lora_dropout=0.0, learning_rate=1e-2, warmup_ratio=0)
    model = apply_method(model, cfg, task="qa")
    examples = gen.flag(task, 0) + gen.flag(general, 1)
    data = EncodedDataset(examples, [len(e["input_ids"]) for e in examples])
    result = fit(model, data, objective=CausalLMObjective(mix_general=True), cfg=cfg,
                 pad_token_id=pad, out_dir=tmp_path, progress=False, collate=collate_with_positions)
    logged = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    train = [r for r in logged if r["kind"] == "train"]
    assert train == [r for r in result.history if r["kind"] == "train"] and len(train) == 2
    # One batch holds every example, and step 1 is logged from the loss before its update.
    assert train[0]["loss"] == pytest.approx(task_start, rel=1e-4)
    assert train[0]["general_loss"] == pytest.approx(general_start, rel=1e-4)
    assert train[1]["general_loss"] < train[0]["general_loss"]  # it trains on it too


@pytest.mark.integration
def test_hamlet_passages_leave_out_the_forgetting_checks_windows(smol_tokenizer):
    from tunesmith import assets
    from tunesmith.evaluate.forgetting import text_windows

    checked = text_windows(smol_tokenizer, assets.hamlet_text())
    passages = gen.hamlet_examples(smol_tokenizer, max_length=256)
    n_tokens = len(smol_tokenizer(assets.hamlet_text(), add_special_tokens=False)["input_ids"])
    assert len(checked) == 8
    assert len(passages) == len(gen.window_starts(n_tokens)) - 8
    seen = {tuple(p["input_ids"]) for p in passages}
    assert not any(tuple(w["input_ids"]) in seen for w in checked)
    # Cut to a shorter max_length, no piece of a checked window appears either.
    short = {tuple(p["input_ids"]) for p in gen.hamlet_examples(smol_tokenizer, max_length=64)}
    assert not any(tuple(w["input_ids"][:64]) in short for w in checked)


@pytest.mark.integration
def test_a_mixed_run_reports_the_general_loss(in_tmp, tiny_llama_dir):
    from tunesmith.pipelines.run import run

    rows = [{"question": f"What is {a} plus {b}?", "answer": f"The sum of {a} and {b} is {a + b}."}
            for a in range(8) for b in range(6)]
    data = in_tmp / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = validate_config({
        "prepare": {"dataset": str(data), "max_length": 64, "dedup": "none", "mix_general": 0.2},
        "finetune": {"model": str(tiny_llama_dir), "max_steps": 2, "batch_size": 64,
                     "logging_steps": 1, "eval_every": 2},
        "evaluation": {"generation_limit": 2, "max_new_tokens": 2, "few_shot_k": 0,
                       "num_samples": 1, "forgetting_text": None},
        "tracking": {"enabled": False},
    })
    lines: list[str] = []
    run(cfg, in_tmp / "run", progress=False, log=lines.append)
    note = next(line for line in lines if line.startswith("mix_general 0.2:"))
    assert "hamlet examples added" in note
    share = float(note.split("(")[1].split("%")[0])
    assert 15 <= share <= 25, note  # about 20% of the learned tokens
    history = [json.loads(x) for x in (in_tmp / "run" / "history.jsonl").read_text().splitlines()]
    train = [r for r in history if r["kind"] == "train"]
    assert train and all(r["general_loss"] > 0 and r["loss"] > 0 for r in train)
    assert "general_text_loss" in (in_tmp / "run" / "report.md").read_text()


def test_mix_general_is_validated():
    with pytest.raises(ConfigError, match=r"prepare.mix_general.*<= 0.5"):
        validate_config({"prepare": {"mix_general": 0.6}})
    with pytest.raises(ConfigError, match="task's own data set"):
        validate_config({"prepare": {"dataset": "chitchat", "mix_general": 0.1,
                                     "mix_general_source": "chitchat"}})
    with pytest.raises(ConfigError, match="mix_general_source"):
        validate_config({"prepare": {"mix_general_source": "wikipedia"}})
    assert validate_config({}).prepare.mix_general == 0  # off by default


def test_an_encoder_classifier_refuses_mix_general(tmp_path):
    from tunesmith.pipelines.train import train

    rows = [{"text": f"review {i}", "label": "fresh" if i % 2 else "rotten"} for i in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = validate_config({"prepare": {"mix_general": 0.2}, "finetune": {"model": "minilm"},
                           "tracking": {"enabled": False}})
    with pytest.raises(ConfigError, match="no language-modelling loss"):
        train(cfg, tmp_path, tmp_path / "run", progress=False, log=lambda _: None)
