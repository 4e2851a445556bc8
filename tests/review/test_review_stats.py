"""The review statistics against hand computations and independent fits (no shared code)."""

from __future__ import annotations

import math
import random

import pytest

from tunesmith.review.export import corrections_from_marks, preference_rows
from tunesmith.review.pairs import build_pairs
from tunesmith.review.stats import (
    bradley_terry,
    head_to_head,
    metric_agreement,
    position_bias,
    reviewer_agreement,
    summarize,
    wilson_interval,
)
from tunesmith.review.store import Mark, Pair, Vote

Z = 1.959963984540054  # the standard normal's 97.5% quantile


def _pair(pid, prompt, a="run", b="base", left_is_a=True, out_a="x", out_b="y", ref=None):
    return Pair(pid, 0, prompt, ref, a, out_a, b, out_b, left_is_a)


def _vote(pair, choice, reviewer="ann"):
    return Vote(pair.id, reviewer, choice, pair.side(choice), "", 0.0)


def _wilson_by_hand(k, n):
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


def test_wilson_interval_matches_the_formula():
    rate, low, high = wilson_interval(7, 3)
    assert rate == 0.7
    assert (low, high) == pytest.approx(_wilson_by_hand(7, 10), abs=1e-9)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_head_to_head_maps_sides_to_models_and_leaves_ties_out_of_wilson():
    # p1: run on the left, p2: run on the right; clicks are on sides, scores are on models
    p1, p2, p3 = _pair("1", "q1"), _pair("2", "q2", left_is_a=False), _pair("3", "q3")
    votes = [_vote(p1, "left"),        # run wins
             _vote(p2, "left"),        # base (shown left) wins
             _vote(p2, "right", "bob"),  # run wins
             _vote(p3, "tie"), _vote(p3, "both_bad", "bob")]
    h = head_to_head([p1, p2, p3], votes, "run", "base", n_boot=500, seed=1)
    assert (h.wins, h.losses, h.ties, h.both_bad, h.items) == (2, 1, 1, 1, 3)
    assert h.win_rate == pytest.approx(2 / 3)
    assert (h.wilson_low, h.wilson_high) == pytest.approx(_wilson_by_hand(2, 3), abs=1e-9)
    # per prompt: q1 = 1, q2 = (0 + 1) / 2, q3 = (0.5 + 0.5) / 2 -> mean 2/3
    assert h.win_rate_ties_half == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert 0 <= h.bootstrap_low <= h.win_rate_ties_half <= h.bootstrap_high <= 1
    assert head_to_head([p1], [_vote(p1, "left")], "base", "run", n_boot=10).wins == 0


def test_bradley_terry_matches_a_logistic_regression_fit():
    """Without the prior, the MM fit is the maximum-likelihood fit that a logit of "i beat j" on
    (+1 for i, -1 for j) indicators gives (one model fixed at 0 for identifiability)."""
    import numpy as np
    import statsmodels.api as sm

    rng = random.Random(0)
    truth = {"a": 1.0, "b": 0.0, "c": -0.7}
    models = sorted(truth)
    outcomes, rows, ys = [], [], []
    for _ in range(600):
        i, j = rng.sample(models, 2)
        won = rng.random() < 1 / (1 + math.exp(truth[j] - truth[i]))
        outcomes.append((i, j, 1.0 if won else 0.0))
        rows.append([(m == i) - (m == j) for m in models[1:]])  # "a" is the reference at 0
        ys.append(int(won))
    fit = bradley_terry(outcomes, models, prior_ties=0.0)
    logit = sm.Logit(np.array(ys), np.array(rows, dtype=float)).fit(disp=0)
    for k, m in enumerate(models[1:]):
        assert fit[m] - fit["a"] == pytest.approx(logit.params[k], abs=1e-5)
    assert sum(fit.values()) == pytest.approx(0, abs=1e-9)


def test_bradley_terry_stays_finite_when_one_model_always_wins():
    fit = bradley_terry([("a", "b", 1.0)] * 5 + [("b", "c", 1.0)] * 5, ["a", "b", "c"])
    assert all(math.isfinite(v) for v in fit.values())
    assert fit["a"] > fit["b"] > fit["c"]


def test_summary_ranks_three_models_with_intervals():
    rng = random.Random(3)
    pairs, votes = [], []
    for q in range(12):
        for a, b in (("base", "run"), ("base", "run2"), ("run", "run2")):
            p = _pair(f"{q}{a}{b}", f"q{q}", a, b, left_is_a=rng.random() < 0.5)
            pairs.append(p)
            better_a = {"run": 2, "run2": 1, "base": 0}[a] > {"run": 2, "run2": 1, "base": 0}[b]
            wins_a = rng.random() < (0.8 if better_a else 0.2)
            votes.append(Vote(p.id, "ann", "?", "a" if wins_a else "b", "", 0.0))
    results = summarize(pairs, votes, "run", n_boot=200, seed=0)
    assert [r.model for r in results.ranking] == ["run", "run2", "base"]
    for r in results.ranking:
        assert r.low <= r.score <= r.high
    assert [h.opponent for h in results.head_to_head] == ["base", "run2"]
    assert results.to_dict()["ranking"][0]["model"] == "run"


def test_cohen_kappa_by_hand():
    pairs = [_pair(str(i), f"q{i}") for i in range(6)]
    ann = ["left", "left", "right", "right", "tie", "left"]
    bob = ["left", "right", "right", "right", "tie", "left"]
    votes = [_vote(p, c, "ann") for p, c in zip(pairs, ann, strict=True)] + [_vote(p, c, "bob") for p, c in zip(pairs, bob, strict=True)]
    votes.append(_vote(_pair("solo", "qs"), "left", "cy"))  # shares nothing with the others
    [agreement] = reviewer_agreement(votes)
    observed = 5 / 6
    # ann: a 3, b 2, tie 1; bob: a 2, b 3, tie 1
    expected = (3 * 2 + 2 * 3 + 1 * 1) / 36
    assert (agreement.reviewer_a, agreement.reviewer_b, agreement.items) == ("ann", "bob", 6)
    assert agreement.kappa == pytest.approx((observed - expected) / (1 - expected))
    assert agreement.raw_agreement == pytest.approx(observed)
    same = [_vote(pairs[0], "tie", "x"), _vote(pairs[0], "tie", "y")]
    assert reviewer_agreement(same)[0].kappa is None  # one category only: undefined


def test_position_bias_binomial_by_hand():
    pairs = [_pair(str(i), f"q{i}", left_is_a=i % 2 == 0) for i in range(12)]
    votes = [_vote(p, "left" if i < 9 else "right") for i, p in enumerate(pairs[:11])] + [_vote(pairs[11], "tie")]
    bias = position_bias(votes)
    assert (bias.left_wins, bias.decisive) == (9, 11)
    tail = sum(math.comb(11, k) for k in range(9, 12)) / 2 ** 11
    assert bias.p_value == pytest.approx(2 * tail)


def test_metric_agreement_counts_votes_where_token_f1_picks_the_same_answer():
    good = _pair("1", "q1", out_a="paris", out_b="london", ref="Paris")
    other = _pair("2", "q2", out_a="four", out_b="the number four", ref="four")
    even = _pair("3", "q3", out_a="red", out_b="blue", ref="green")
    votes = [_vote(good, "left"), _vote(good, "left", "bob"), _vote(good, "tie", "cy"),
             _vote(other, "right"), _vote(even, "left")]
    m = metric_agreement([good, other, even], votes)
    # other: F1 of "four" is 1, of "the number four" 2/3 -> the metric prefers A, people chose B
    assert (m.agree, m.disagree, m.metric_ties) == (2, 1, 1)
    assert m.rate == pytest.approx(2 / 3)


def test_blind_layout_is_seeded_and_about_half_left():
    prompts = [f"q{i}" for i in range(300)]
    answers = {"run": dict(enumerate(prompts)), "base": {i: "b" for i in range(300)}}
    first = build_pairs(prompts, [None] * 300, answers, seed=1)
    assert [p.left_is_a for p in first] == [p.left_is_a for p in build_pairs(prompts, [None] * 300, answers, 1)]
    assert [p.left_is_a for p in first] != [p.left_is_a for p in build_pairs(prompts, [None] * 300, answers, 2)]
    assert 120 <= sum(p.left_is_a for p in first) <= 180
    assert [p.prompt for p in first] != prompts  # the queue is shuffled too


def test_preferences_follow_the_majority_of_decisive_votes():
    p1 = _pair("1", "q1", out_a="A1", out_b="B1")
    p2 = _pair("2", "q2", left_is_a=False, out_a="A2", out_b="B2")
    p3 = _pair("3", "q3", out_a="A3", out_b="B3")
    same = _pair("4", "q4", out_a="C", out_b="C")
    votes = [_vote(same, "left"), _vote(p1, "right"), _vote(p1, "right", "bob"), _vote(p1, "left", "cy"),
             _vote(p2, "left"),  # B2 is on the left
             _vote(p3, "left"), _vote(p3, "right", "bob"), _vote(p3, "tie", "cy")]
    assert preference_rows([p1, p2, p3, same], votes) == [
        {"prompt": "q1", "chosen": "B1", "rejected": "A1"},
        {"prompt": "q2", "chosen": "B2", "rejected": "A2"},
    ]


def test_corrections_take_the_most_named_label_or_drop_when_split():
    def mark(reviewer, corrected, text="t"):
        return Mark(0, reviewer, text, "pos", "neg", corrected, "", 0.0)

    out = corrections_from_marks([mark("a", "neg"), mark("b", "neg"), mark("c", "mixed"),
                                  mark("a", "neg", "u"), mark("b", "mixed", "u")])
    assert [(c.text, c.corrected) for c in out] == [("t", "neg"), ("u", None)]


def test_metric_agreement_judges_by_the_runs_headline():
    """Exact match and token F1 disagree on a partly right answer: the judge follows the plan."""
    from tunesmith.review.stats import metric_agreement

    pair = Pair(id="p", position=0, prompt="Q?", reference="paris", model_a="ft",
                output_a="paris france", model_b="base", output_b="london", left_is_a=True)
    votes = [Vote("p", "r1", "left", "a", "", 0.0)]
    by_f1 = metric_agreement([pair], votes, "token_f1")
    assert (by_f1.metric, by_f1.agree, by_f1.metric_ties) == ("token_f1", 1, 0)
    by_em = metric_agreement([pair], votes, "label_accuracy")  # neither answer is exactly "paris"
    assert (by_em.metric, by_em.agree, by_em.metric_ties) == ("label_accuracy", 0, 1)
    assert metric_agreement([pair], votes, "bleu").metric == "token_f1"  # corpus-level: fallback
