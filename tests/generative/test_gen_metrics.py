"""Every text metric against values computed by hand."""

from __future__ import annotations

import math

import pytest

from tunesmith.evaluate.text_metrics import (
    bleu,
    exact_match,
    generation_scores,
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
    scores = generation_scores(["Paris", "the dog"], ["paris", "cat"])
    assert scores["exact_match"] == 0.5
    assert scores["token_f1"] == 0.5
    assert set(scores) == {"bleu", "rouge1", "rouge2", "rougeL", "exact_match", "token_f1"}
    with pytest.raises(ValueError):
        generation_scores(["a"], ["a", "b"])
