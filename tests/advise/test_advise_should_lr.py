"""should-finetune's walk of the guide's questions; the learning-rate range test on a tiny model."""

from __future__ import annotations

import math

import pytest

from tunesmith.advise.lr_find import suggest
from tunesmith.advise.should_finetune import Measurement, walk


def prompting(zero, few, metric="accuracy"):
    return Measurement("prompting", metric, {"zero_shot": zero, "few_shot": few}, 50, 0.57)


def test_prompting_good_enough_means_prompt():
    advice = walk(prompting(0.62, 0.93), examples=5000)
    assert advice.verdict == "prompt"
    assert advice.answers[0].answer == "yes" and "few-shot 0.930" in advice.answers[0].detail
    assert walk(prompting(0.62, 0.70), examples=5000, target=0.65).verdict == "prompt"


def test_prompting_short_then_questions():
    assert walk(prompting(0.62, 0.60), examples=80).verdict == "collect_data"
    cheap = walk(prompting(0.62, 0.60), examples=500, cheaper_inference=True)
    assert cheap.verdict == "finetune" and cheap.answers[-1].question.startswith("Q3")
    domain = walk(prompting(0.62, 0.60), examples=500, cheaper_inference=False,
                  specialised_domain=True)
    assert domain.verdict == "finetune" and domain.answers[-1].question.startswith("Q4")
    fmt = walk(prompting(0.62, 0.60), examples=500, cheaper_inference=False,
               specialised_domain=False, fixed_format=True)
    assert fmt.answers[-1].question.startswith("Q5") and fmt.verdict == "finetune"
    open_ = walk(prompting(0.62, 0.60), examples=500)
    assert open_.verdict == "finetune" and "short of 0.9" in open_.reason
    assert [a.answer for a in open_.answers[2:]] == ["unknown"] * 3


def test_encoder_has_no_prompting_answer():
    advice = walk(Measurement("probe", "accuracy", {"probe": 0.73}, 100, 0.57), examples=4000)
    assert advice.answers[0].answer == "n/a" and "probe" in advice.answers[0].detail
    assert advice.verdict == "finetune" and "0.730" in advice.reason


def test_suggest_picks_the_steepest_descent_before_the_minimum():
    lrs = [1e-6 * 10 ** (k / 10) for k in range(60)]  # 1e-6 .. 1e-0.1
    # Flat, then a steep fall centred at 1e-3 (k=30), minimum at 1e-2 (k=40), then a rise.
    losses = [1.0 - 0.8 / (1 + math.exp(-(k - 30) / 2)) + (0.05 * (k - 40) ** 2 / 40 if k > 40 else 0)
              for k in range(60)]
    suggestion, lr_min, reason = suggest(lrs, losses)
    assert lr_min == pytest.approx(1e-2, rel=0.3)
    assert suggestion == pytest.approx(1e-3, rel=0.3)  # steepest, also about lr_min / 10
    assert "steepest" in reason
    flat_start = [0.5 + 0.01 * k for k in range(20)]
    s, _, why = suggest(lrs[:20], flat_start)
    assert s == lrs[0] and "never fell" in why


def test_range_test_on_a_tiny_bert(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

    from tunesmith.advise.lr_find import range_test
    from tunesmith.assets import builtin_model_path
    from tunesmith.config import FinetuneConfig
    from tunesmith.methods import apply_method
    from tunesmith.records import ClassificationRecord
    from tunesmith.train.encoding import encode_classification
    from tunesmith.train.objectives import ClassificationObjective

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(builtin_model_path("minilm"))
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, vocab_size=tokenizer.vocab_size, num_labels=2)
    cfg = FinetuneConfig(method="full", batch_size=8)
    model = apply_method(AutoModelForSequenceClassification.from_config(config), cfg,
                         task="classification")
    words = {"good": "pos", "great": "pos", "bad": "neg", "awful": "neg"}
    records = [ClassificationRecord(text=f"a {w} film number {i}", label=lab)
               for i in range(40) for w, lab in words.items()]
    data = encode_classification(records, tokenizer, ["neg", "pos"], 32)
    result = range_test(model, data, objective=ClassificationObjective(), cfg=cfg,
                        pad_token_id=tokenizer.pad_token_id, start_lr=1e-5, end_lr=10.0,
                        steps=40, out_dir=tmp_path)
    assert 1e-5 <= result.suggestion <= result.lr_at_min
    assert math.isfinite(result.suggestion)
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
    assert len(result.lrs) == len(result.smoothed) <= 40
    assert result.lrs == sorted(result.lrs)
    dip = 1 - min(result.smoothed) / result.smoothed[0]
    assert any("shallow dip" in n for n in result.notes) == (dip < 0.05)
    # The same test on a curve that cannot dip in 8 steps says so, and asks for 3x the steps.
    short = range_test(model, data, objective=ClassificationObjective(), cfg=cfg,
                       pad_token_id=tokenizer.pad_token_id, start_lr=1e-7, end_lr=1e-6, steps=8)
    assert any("shallow dip" in n and "--steps 24" in n for n in short.notes)
