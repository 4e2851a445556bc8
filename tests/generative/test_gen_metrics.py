"""Every text metric against values computed by hand."""

from __future__ import annotations

import math

import pytest

from tunesmith.evaluate.text_metrics import (
    bleu,
    closed_set_scores,
    exact_match,
    generation_scores,
    meteor,
    normalize_answer,
    perplexity,
    rouge,
    token_f1,
)


def test_perplexity_is_exp_of_mean_nll():
    assert perplexity(3 * math.log(4), 3) == pytest.approx(4.0)
    assert perplexity(0.0, 10) == 1.0
    assert perplexity(1.0, 0) == math.inf


def test_squad_normalisation_and_exact_match():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("An apple, a day.") == "apple day"
    assert exact_match("the Eiffel tower.", "Eiffel Tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0


def test_token_f1_by_hand():
    # pred {cat, sat} vs ref {cat, sat, on, mat} (articles dropped): P = 1, R = 1/2, F1 = 2/3.
    assert token_f1("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    # Repeated tokens count per occurrence: pred [x x y] vs ref [x y y] -> common 2, P = R = 2/3.
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("the", "cat") == 0.0


def test_bleu_by_hand():
    # 6 tokens each, brevity penalty 1. n-gram precisions: 5/6, 3/5, 2/4, 1/3.
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(expected, abs=1e-6)
    assert bleu(["same words here today"], ["same words here today"]) == pytest.approx(100.0)


def test_rouge_by_hand():
    scores = rouge(["the cat sat"], ["the cat sat on the mat"])
    # ROUGE-1: 3 of 3 predicted unigrams match, 3 of 6 reference ones: F = 2 * 1 * 0.5 / 1.5.
    assert scores["rouge1"] == pytest.approx(2 / 3)
    # ROUGE-2: 2 of 2 predicted bigrams, 2 of 5 reference bigrams: F = 2 * 0.4 / 1.4.
    assert scores["rouge2"] == pytest.approx(0.8 / 1.4)
    # ROUGE-L: longest common subsequence 3 -> same as ROUGE-1 here.
    assert scores["rougeL"] == pytest.approx(2 / 3)
    # Porter stemming: "cats" and "cat" match.
    assert rouge(["cats"], ["cat"])["rouge1"] == 1.0


def test_generation_scores_average_over_examples():
    scores = generation_scores(["Paris", "the dog"], ["paris", "cat"], with_meteor=False)
    assert scores["exact_match"] == 0.5
    assert scores["token_f1"] == 0.5
    assert set(scores) == {"bleu", "rouge1", "rouge2", "rougeL", "exact_match", "token_f1"}
    with pytest.raises(ValueError):
        generation_scores(["a"], ["a", "b"])


# METEOR = Fmean * (1 - 0.5 * (chunks / matches) ** 3), Fmean = P * R / (0.9 P + 0.1 R).
# These read the packaged WordNet (real data, about 6 s to open once).

@pytest.mark.integration
def test_meteor_exact_and_stem_by_hand():
    # "the", "cat" match exactly; "sits" (stem "sit") and "sat" neither by stem nor as WordNet
    # synonyms. P = R = 2/3, Fmean = 2/3; 1 chunk / 2 matches -> penalty 0.5 * 0.125.
    assert meteor(["the cat sits"], ["the cat sat"]) == pytest.approx(2 / 3 * (1 - 0.0625))
    # Stem match: "cats" ~ "cat" (Porter); the full stop is a token of its own on both sides.
    # 3 matches of 3, one chunk: 1 - 0.5 / 27.
    assert meteor(["cats sleep."], ["cat sleep."]) == pytest.approx(1 - 0.5 / 27)
    assert meteor(["completely different"], ["nothing shared"]) == 0.0
    # A one-word answer matched exactly: 1 chunk / 1 match -> penalty 0.5; a miss 0. Mean 0.25.
    scores = generation_scores(["Paris", "the dog"], ["paris", "cat"])
    assert scores["meteor"] == pytest.approx(0.25)


@pytest.mark.integration
def test_meteor_matches_wordnet_synonyms_from_the_packaged_wordnet():
    # "sofa" and "couch" share a WordNet synset (and no stem): 4 matches of 4, one chunk,
    # penalty 0.5 * (1/4)^3. Exact and stem matching alone would give 3 matches in 2 chunks:
    # Fmean 0.75, penalty 0.5 * (2/3)^3 -> 0.6389.
    assert meteor(["the sofa is red"], ["the couch is red"]) == pytest.approx(1 - 0.5 / 64)


def test_closed_set_scores_treat_answers_as_labels():
    answers = ["positive", "negative"]
    predictions = ["Positive.", "negative", "It is positive, I think", "positive"]
    references = ["positive", "positive", "negative", "negative"]
    scores = closed_set_scores(predictions, references, answers)
    # Normalised predictions: positive, negative, (outside), positive -> 1 of 4 right.
    assert scores["label_accuracy"] == 0.25
    assert scores["out_of_set_rate"] == 0.25
    # positive: predicted twice, right once -> P 1/2; true twice, found once -> R 1/2; F1 1/2.
    # negative: predicted once, wrong -> P 0, R 0 (the outside answer counts as a miss); F1 0.
    assert scores["label_f1"] == pytest.approx(0.25)
    # An answer outside the set is a miss of its reference's class: negative is found once of
    # twice (recall 1/2, precision 1, F1 2/3); positive is perfect. Macro F1 = 5/6, not 1.
    scores = closed_set_scores(["positive", "negative", "It is negative, I think"],
                               ["positive", "negative", "negative"], answers)
    assert scores["label_f1"] == pytest.approx(5 / 6)
    assert scores["label_accuracy"] == pytest.approx(2 / 3)
    assert scores["out_of_set_rate"] == pytest.approx(1 / 3)


def test_label_pr_auc_ranks_by_the_positive_labels_share_of_the_likelihood():
    from tunesmith.evaluate.generation import _label_pr_auc

    labels = ["neg", "pos"]
    # Summed NLL per label: the lower, the likelier. P(pos) = 1 / (1 + exp(nll_pos - nll_neg)).
    rows = [[(3.0, 1), (0.5, 1)],   # P(pos) 0.92, truly pos
            [(0.2, 1), (1.0, 1)],   # P(pos) 0.31, truly pos
            [(1.0, 1), (0.9, 1)],   # P(pos) 0.52, truly neg
            [(0.1, 1), (4.0, 1)]]   # P(pos) 0.02, truly neg
    # Ranked: pos, neg, pos, neg -> precision 1/1 and 2/3 where positives are found: AP 5/6.
    assert _label_pr_auc(rows, labels, ["pos", "pos", "neg", "neg"], "pos") == pytest.approx(5 / 6)
    # For "neg" the ranking reverses: neg (0.98), pos (0.69), neg (0.48), pos -> (1 + 2/3) / 2.
    assert _label_pr_auc(rows, labels, ["pos", "pos", "neg", "neg"], "neg") == pytest.approx(5 / 6)
