"""The engine without HTTP: batched decoding, micro-batching, grouping, faults, provenance."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tunesmith.errors import UsageError
from tunesmith.serve.decode import Row, cut_at_stop, decode_batch, held_back
from tunesmith.serve.engine import Engine, RequestError, adapter_sha256


def test_held_back_keeps_a_possible_stop_prefix_and_cut_stops_at_the_first():
    assert held_back("Hello, Wor", ["World"]) == 3
    assert held_back("Hello, Wor", ["xyz"]) == 0
    assert held_back("ab", ["abc", "b!"]) == 2
    assert cut_at_stop("one. two. three", [" three", "."]) == "one"
    assert cut_at_stop("one", ["."]) is None


def _reference(model, prompt, adapter, n=8):
    """HF generate alone (greedy), with one adapter active or none."""
    with torch.inference_mode():
        if adapter == "__base__":
            with model.disable_adapter():
                out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=n, do_sample=False)
        else:
            model.set_adapter(adapter)
            out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=n, do_sample=False)
    return out[0, len(prompt):].tolist()


def test_a_mixed_adapter_batch_decodes_each_row_as_generate_does_alone(engine):
    texts = ["Hi", "What is the capital of France, please?", "x y z", "Hello"]
    adapters = ["alpha", "beta", "__base__", "alpha"]
    prompts = [engine.chat_prompt([{"role": "user", "content": t}]) for t in texts]
    rows = [Row(p, 8, lambda *_: None, adapter=a) for p, a in zip(prompts, adapters, strict=True)]
    model = engine.server.model
    decode_batch(model, engine.server.tokenizer, rows, mixed=True)
    for row, prompt, adapter in zip(rows, prompts, adapters, strict=True):
        assert row.generated == _reference(model, prompt, adapter), adapter


def test_concurrent_requests_share_batches_across_adapters(engine):
    seen = []
    engine.batch_observers.append(seen.append)
    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda m: engine.generate(m, "Hi", max_tokens=4, temperature=0),
                          ["alpha", "beta", "tiny-llama"] * 2))
    finally:
        engine.batch_observers.remove(seen.append)
    assert sum(sum(s.values()) for s in seen) == 6
    assert any(len(s) > 1 for s in seen), seen  # one batch held rows of several models


def test_without_batching_each_request_runs_alone(tiny_runs):
    eng = Engine.load([tiny_runs["alpha"]], max_wait_ms=0)
    seen = []
    eng.batch_observers.append(seen.append)
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: eng.generate("alpha", "Hi", max_tokens=3, temperature=0), range(4)))
    finally:
        eng.close()
    assert [sum(s.values()) for s in seen] == [1, 1, 1, 1]


def test_a_request_that_raises_fails_alone_and_its_batch_mates_get_answers(engine):
    vocab = engine.server.model.config.vocab_size
    good = [Row(engine.chat_prompt([{"role": "user", "content": "Hi"}]), 3, lambda *_: None) for _ in range(2)]
    bad = Row([vocab + 10], 3, lambda *_: None)  # a token id outside the embedding
    alpha = engine.lookup("alpha")
    seen = []
    engine.batch_observers.append(seen.append)
    futures = [engine.submit_generation(alpha, [good[0]]), engine.submit_generation(alpha, [bad]),
               engine.submit_generation(engine.lookup("beta"), [good[1]])]
    assert futures[0].result(timeout=60) is None and futures[2].result(timeout=60) is None
    with pytest.raises(IndexError):
        futures[1].result(timeout=60)
    engine.batch_observers.remove(seen.append)
    assert seen[0] == {"alpha": 2, "beta": 1}  # the three shared one batch
    assert all(len(r.generated) == 3 for r in good)
    assert engine.generate("alpha", "still there?", max_tokens=2, temperature=0)[1] == "length"


def test_dora_rows_are_grouped_apart_and_match_generate(tiny_runs):
    eng = Engine.load([tiny_runs["alpha"], tiny_runs["gamma-dora"]])
    try:
        assert eng.lookup("alpha").mixable and not eng.lookup("gamma-dora").mixable
        prompt = eng.chat_prompt([{"role": "user", "content": "Hi"}])
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda m: eng.generate(m, "Hi", max_tokens=6, temperature=0)[0],
                                    ["gamma-dora", "alpha", "tiny-llama"]))
        expected = [eng.server.tokenizer.decode(_reference(eng.server.model, prompt, a, 6), skip_special_tokens=True).strip()
                    for a in ("gamma-dora", "alpha", "__base__")]
        assert [a.strip() for a in answers] == expected
    finally:
        eng.close()


def test_classification_in_a_mixed_batch_equals_each_adapter_alone(classifier):
    texts = ["a great film", "dull and tedious", "what a charming story"]
    alone = {m: classifier.classify(m, texts).result(timeout=60) for m in ("sentiment", "sentiment-b")}
    with ThreadPoolExecutor(2) as pool:
        mixed = dict(zip(("sentiment", "sentiment-b"),
                         pool.map(lambda m: classifier.classify(m, texts).result(timeout=60),
                                  ("sentiment", "sentiment-b")), strict=True))
    for name in alone:
        for a, b in zip(alone[name], mixed[name], strict=True):
            assert a.label == b.label and a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
    assert [r.probabilities for r in alone["sentiment"]] != [r.probabilities for r in alone["sentiment-b"]]
    assert set(alone["sentiment"][0].probabilities) == {"neg", "pos"}
    assert sum(alone["sentiment"][0].probabilities.values()) == pytest.approx(1.0)


def test_provenance_comes_from_run_json_and_the_adapter_bytes(engine, tiny_runs, tmp_path):
    import shutil

    prov = engine.lookup("alpha").provenance
    assert (prov.run_id, prov.mlflow_run_id, prov.data_sha256) == ("alpha", "mlflow-alpha", "data-alpha")
    assert prov.adapter_sha256 == adapter_sha256(tiny_runs["alpha"] / "adapter")
    copy = shutil.copytree(tiny_runs["alpha"] / "adapter", tmp_path / "adapter")
    weights = copy / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert adapter_sha256(copy) != prov.adapter_sha256
    assert engine.lookup("beta").provenance.adapter_sha256 != prov.adapter_sha256


def test_loading_refuses_runs_on_different_bases_and_non_runs(tiny_runs, tmp_path):
    with pytest.raises(UsageError, match="cannot share a base"):
        Engine.load([tiny_runs["alpha"], tiny_runs["sentiment"]])
    with pytest.raises(UsageError, match="neither a run folder"):
        Engine.load([tmp_path])


def test_lookup_of_an_unknown_name_is_a_404_request_error(engine):
    with pytest.raises(RequestError) as info:
        engine.lookup("missing")
    assert info.value.status == 404 and "alpha" in info.value.message
