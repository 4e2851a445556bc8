"""Batched generation with left padding, label-likelihood scoring, forgetting check."""

from __future__ import annotations

import math

import pytest
import torch

from tunesmith.errors import DataError
from tunesmith.evaluate.forgetting import (
    REMEDIES,
    compare,
    general_perplexity,
    general_text,
    text_windows,
    warning_message,
)
from tunesmith.evaluate.generation import GenerationSettings, generate, write_samples
from tunesmith.evaluate.prompting import label_nlls, most_likely
from tunesmith.train.causal import encode_messages
from tunesmith.train.objectives import response_loss
from tunesmith.train.prompts import prompt_ids

PROMPTS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Tell me something long about the history of the city of Paris."}],
    [{"role": "user", "content": "2+2?"}],
]


def test_batched_left_padded_generation_equals_one_by_one(smol_tokenizer, tiny_llama):
    ids = [prompt_ids(smol_tokenizer, m) for m in PROMPTS]
    settings = GenerationSettings(max_new_tokens=6, batch_size=3)
    batched = generate(tiny_llama, smol_tokenizer, ids, settings)
    alone = [generate(tiny_llama, smol_tokenizer, [p], settings)[0] for p in ids]
    assert batched == alone
    assert all(isinstance(text, str) for text in batched)


def test_sampling_is_seeded(smol_tokenizer, tiny_llama):
    ids = [prompt_ids(smol_tokenizer, p) for p in PROMPTS]

    def sample(seed):
        settings = GenerationSettings(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=seed)
        return generate(tiny_llama, smol_tokenizer, ids, settings)

    # The same seed gives the same samples ...
    assert sample(3) == sample(3)
    # ... and it really samples: other seeds give other text (a random model spreads its
    # probability over the whole vocabulary, so 8 tokens from 3 prompts never all agree), and
    # so does greedy decoding.
    assert sample(4) != sample(3) and sample(5) != sample(3)
    greedy = generate(tiny_llama, smol_tokenizer, ids, GenerationSettings(max_new_tokens=8))
    assert greedy != sample(3)


def test_label_likelihood_picks_the_most_likely_label(smol_tokenizer, tiny_llama):
    labels = ["fresh", "rotten"]
    scores = label_nlls(tiny_llama, smol_tokenizer, PROMPTS, labels, batch_size=3)
    for messages, per_label in zip(PROMPTS, scores, strict=True):
        nll = {}
        for candidate in labels:
            example = encode_messages(smol_tokenizer, messages + [{"role": "assistant", "content": candidate}])
            ids = torch.tensor([example["input_ids"]])
            targets = torch.tensor([example["labels"]])
            with torch.no_grad():
                loss = tiny_llama(input_ids=ids, labels=targets).loss
            n = int((targets[:, 1:] != -100).sum())
            nll[candidate] = float(loss) * n
            assert per_label[labels.index(candidate)][1] == n
        assert [t for t, _ in per_label] == pytest.approx([nll[c] for c in labels], rel=1e-4)
        assert most_likely(labels, per_label) == min(nll, key=nll.get)


def test_response_perplexity_matches_the_models_loss(smol_tokenizer, tiny_llama):
    example = encode_messages(smol_tokenizer, PROMPTS[0] + [{"role": "assistant", "content": "Hello there"}])
    result = response_loss(tiny_llama, [example], smol_tokenizer.pad_token_id)
    with torch.no_grad():
        loss = tiny_llama(input_ids=torch.tensor([example["input_ids"]]), labels=torch.tensor([example["labels"]])).loss
    assert result["loss"] == pytest.approx(float(loss), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(float(loss)), rel=1e-5)


def test_forgetting_windows_perplexity_and_warning(smol_tokenizer, tiny_llama, tmp_path):
    text = general_text("hamlet")
    assert "Denmark" in text
    rows = text_windows(smol_tokenizer, text, window=32, max_windows=3)
    assert len(rows) == 3 and all(len(r["input_ids"]) == 32 for r in rows)
    ppl = general_perplexity(tiny_llama, smol_tokenizer, rows)
    # A random model over a 49k vocabulary is close to uniform: perplexity near the vocab size.
    assert 0.2 * len(smol_tokenizer) < ppl < 5 * len(smol_tokenizer)
    report = compare("hamlet", before=20.0, after=23.0, threshold=0.1)
    assert report.delta == 3.0 and report.relative_change == pytest.approx(0.15) and report.warning
    assert not compare("hamlet", 20.0, 21.0, 0.1).warning
    message = warning_message(report)
    assert "20.00 to 23.00" in message and all(r in message for r in REMEDIES)
    own = tmp_path / "general.txt"
    own.write_text("Some general English text.", encoding="utf-8")
    assert general_text(str(own)) == "Some general English text."
    with pytest.raises(DataError, match="forgetting_text"):
        general_text(str(tmp_path / "missing.txt"))


def test_samples_jsonl(tmp_path):
    path = tmp_path / "samples.jsonl"
    write_samples(path, [{"prompt": "p", "reference": "r", "baseline": "b", "finetuned": "f"}])
    assert path.read_text(encoding="utf-8") == '{"prompt": "p", "reference": "r", "baseline": "b", "finetuned": "f"}\n'
