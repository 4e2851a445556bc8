"""`tunesmith review` on real tiny runs: pairs from samples.jsonl, generated answers, errors."""

from __future__ import annotations

import json

from tunesmith.pipelines.review import open_review
from tunesmith.review.pairs import open_run
from tunesmith.review.session import store_for

quiet = {"log": lambda _: None}


def _samples(run):
    return [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]


def test_pairs_come_from_samples_blind_and_stable(gen_run):
    samples = _samples(gen_run)
    session = open_review(gen_run, ["baseline"], seed=7, **quiet)
    pairs = session.pairs()
    assert len(pairs) == len(samples) == 3
    by_prompt = {s["prompt"]: s for s in samples}
    for pair in pairs:
        assert {pair.model_a, pair.model_b} == {"qa", "baseline"}
        answers = {pair.model_a: pair.output_a, pair.model_b: pair.output_b}
        assert answers == {"qa": by_prompt[pair.prompt]["finetuned"], "baseline": by_prompt[pair.prompt]["baseline"]}
    # reopened (even with another seed asked for), every stored pair keeps its layout
    again = open_review(gen_run, ["baseline"], seed=8, **quiet)
    assert [(p.id, p.left_is_a) for p in again.pairs()] == [(p.id, p.left_is_a) for p in pairs]
    assert store_for(open_run(gen_run)).get_meta("seed") == 7
