"""Packing without cross-attention, and the response-only causal-LM objective."""

from __future__ import annotations

import pytest
import torch

from tunesmith.records import QARecord
from tunesmith.train.causal import encode_records
from tunesmith.train.encoding import IGNORE_INDEX
from tunesmith.train.objectives import causal_lm_loss, row_nll
from tunesmith.train.packing import collate_with_positions, pack, padded_tokens, plan_packing

RECORDS = [
    QARecord(question="What is the capital of France?", answer="Paris"),
    QARecord(question="Who wrote Hamlet?", answer="William Shakespeare"),
    QARecord(question="2+2?", answer="4"),
    QARecord(question="Name a colour of the sky on a clear day.", answer="Blue, mostly."),
    QARecord(question="Largest planet?", answer="Jupiter"),
]


def _examples(tokenizer):
    return encode_records(RECORDS, tokenizer, max_length=256).examples


def test_pack_restarts_positions_and_keeps_every_token(smol_tokenizer):
    examples = _examples(smol_tokenizer)
    longest = max(len(e["input_ids"]) for e in examples)
    rows = pack(examples, max_length=2 * longest)
    assert len(rows) < len(examples)
    assert all(len(r["input_ids"]) <= 2 * longest for r in rows)
    assert sorted(t for r in rows for t in r["input_ids"]) == sorted(t for e in examples for t in e["input_ids"])
    for row in rows:
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
        pieces = [row["input_ids"][a:b] for a, b in zip(starts, starts[1:] + [len(row["input_ids"])], strict=True)]
        assert all(piece in [e["input_ids"] for e in examples] for piece in pieces)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_batch_gives_the_same_loss_as_examples_one_by_one(smol_tokenizer, tiny_llama, attention):
    tiny_llama.set_attn_implementation(attention)
    examples = _examples(smol_tokenizer)
    pad = smol_tokenizer.pad_token_id
    with torch.no_grad():
        alone = [causal_lm_loss(tiny_llama, collate_with_positions([e], pad)) for e in examples]
        rows = pack(examples, max_length=3 * max(len(e["input_ids"]) for e in examples))
        packed_sum, packed_n = causal_lm_loss(tiny_llama, collate_with_positions(rows, pad))
    assert len(rows) >= 2  # several rows of different lengths: padding is exercised too
    assert packed_n == sum(n for _, n in alone)
    assert float(packed_sum) == pytest.approx(sum(float(s) for s, _ in alone), rel=1e-5)
    # Without restarting positions (one sequence per row) attention crosses examples: the loss differs.
    flat = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    with torch.no_grad():
        crossed, _ = causal_lm_loss(tiny_llama, collate_with_positions(flat, pad))
    assert abs(float(crossed) - float(packed_sum)) > 1e-3


def test_objective_equals_the_models_own_loss_on_response_tokens(smol_tokenizer, tiny_llama):
    examples = _examples(smol_tokenizer)
    batch = collate_with_positions(examples, smol_tokenizer.pad_token_id)
    with torch.no_grad():
        loss_sum, n = causal_lm_loss(tiny_llama, batch)
        reference = tiny_llama(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        sums, counts = row_nll(tiny_llama, batch)
    assert n == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert float(loss_sum) / n == pytest.approx(float(reference), rel=1e-5)
    assert counts.tolist() == [sum(label != IGNORE_INDEX for label in e["labels"][1:]) for e in examples]
    assert float(sums.sum()) == pytest.approx(float(loss_sum), rel=1e-5)
    # A model that soft-caps its logits takes the full forward instead; Llama ignores the
    # setting, so both paths must agree.
    tiny_llama.config.final_logit_softcapping = 30.0
    try:
        with torch.no_grad():
            full_sum, full_n = causal_lm_loss(tiny_llama, batch)
    finally:
        tiny_llama.config.final_logit_softcapping = None
    assert full_n == n and float(full_sum) == pytest.approx(float(loss_sum), rel=1e-5)


def test_objective_backpropagates_only_through_labelled_positions(smol_tokenizer, tiny_llama):
    """The final hidden state at position t feeds only the prediction of token t + 1 (the
    layers after it act per position): its gradient is non-zero exactly where label t + 1 is
    learned, and zero at prompt, template and padding positions."""
    batch = collate_with_positions(_examples(smol_tokenizer)[:2], smol_tokenizer.pad_token_id)
    captured = {}

    def keep_output(module, inputs, output):
        output.retain_grad()
        captured["hidden"] = output

    hook = tiny_llama.model.norm.register_forward_hook(keep_output)
    tiny_llama.zero_grad()
    try:
        loss_sum, n = causal_lm_loss(tiny_llama, batch)
        (loss_sum / n).backward()
    finally:
        hook.remove()
    grad = captured["hidden"].grad  # (rows, positions, hidden)
    learned = torch.zeros(grad.shape[:2], dtype=torch.bool)
    learned[:, :-1] = batch["labels"][:, 1:] != IGNORE_INDEX
    touched = grad.abs().sum(dim=-1) > 0
    assert learned.any() and (~learned).any()  # both kinds of positions are in the batch
    assert torch.equal(touched, learned)
    assert torch.isfinite(tiny_llama.lm_head.weight.grad).all()
    tiny_llama.zero_grad()


def test_packing_gain_by_hand():
    # Lengths 10, 10, 30, 30 in batches of 2 (length-grouped): 2x30 + 2x10 = 80 tokens.
    assert padded_tokens([10, 30, 10, 30], 2) == 80
    # In the given order: [10, 30] [10, 30] -> 60 + 60 = 120 tokens.
    assert padded_tokens([10, 30, 10, 30], 2, grouped=False) == 120
    assert plan_packing([10, 30, 10, 30], 2, 40, "auto", grouped=False).gain == pytest.approx(1.5)
    # Packed into rows of 40: [30, 10] [30, 10] -> one batch of two 40-token rows = 80 tokens.
    plan = plan_packing([10, 30, 10, 30], batch_size=2, max_length=40, setting="auto")
    assert (plan.tokens_unpacked, plan.tokens_packed, plan.rows) == (80, 80, 2)
    assert plan.gain == 1.0 and not plan.enabled
    # Unpacked, sorted: [40,40] [10,10] [10,10] [10,10] = 80 + 60 = 140 tokens. Packed (first
    # fit, longest first): rows 40, 40, 10x4, 10x2 -> batches [40,40] [40,20->40] = 160 tokens.
    many = plan_packing([10] * 6 + [40] * 2, batch_size=2, max_length=40, setting="auto")
    assert (many.tokens_unpacked, many.tokens_packed) == (140, 160)
    assert many.gain == pytest.approx(140 / 160) and not many.enabled
    short = plan_packing([5] * 16, batch_size=4, max_length=20, setting="auto")
    # Unpacked 16 x 5 = 80 tokens; packed: 4 rows of 20 in one batch = 80 tokens: no gain either.
    assert short.gain == 1.0
    mixed = plan_packing([5, 5, 5, 20], batch_size=4, max_length=20, setting="auto")
    # Unpacked: one batch padded to 20: 4 x 20 = 80. Packed: rows [20] [5,5,5] -> 2 x 20 = 40.
    assert (mixed.tokens_unpacked, mixed.tokens_packed) == (80, 40)
    assert mixed.gain == 2.0 and mixed.enabled
    assert plan_packing([5, 5, 5, 20], 4, 20, setting=False).enabled is False


@pytest.mark.parametrize("packing", [True, False])
def test_the_causal_plan_pads_its_rows_with_the_collate_they_need(smol_tokenizer, packing):
    """Packed rows keep their restarting positions in the batch (no attention mask reaches the
    model); unpacked rows are padded with an attention mask, as the loop always did."""
    from types import SimpleNamespace

    from tunesmith.config import Config
    from tunesmith.train.causal import causal_plan

    cfg = Config.model_validate({"prepare": {"max_length": 256},
                                 "finetune": {"packing": packing, "batch_size": 2}})
    plan = causal_plan(SimpleNamespace(tokenizer=smol_tokenizer), RECORDS, RECORDS[:1], cfg)
    assert plan.packing.enabled is packing
    batch = plan.collate(plan.train_data.examples, smol_tokenizer.pad_token_id)
    if packing:
        assert "position_ids" in batch
        restarts = int((batch["position_ids"][:, 1:] == 0).sum())
        assert restarts >= len(RECORDS) - len(plan.train_data.examples)  # one per packed example
    else:
        assert "position_ids" not in batch
        assert batch["attention_mask"].sum() == sum(plan.train_data.lengths)
