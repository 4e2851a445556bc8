"""Metrics of generated text against references: pure functions, checkable by hand.

Scales: BLEU is 0-100 (sacrebleu's corpus BLEU, as the guide shows it); ROUGE-1/2/L, METEOR,
exact match and token F1 are 0-1 (mean over examples). Perplexity is ``exp(summed NLL / tokens)``.

METEOR is nltk's ``meteor_score`` (Banerjee and Lavie 2005: unigram precision and recall
weighted 1:9, matched exactly, then by Porter stem, then by WordNet synonym, with a penalty of
``0.5 * (chunks / matches) ** 3`` for fragmented matches). Its WordNet comes from a package
(:mod:`tunesmith.evaluate.wordnet`). Answers scored as labels (a closed set of short answers,
see :func:`closed_set_scores`) get accuracy, macro F1 and the rate of answers outside the set.

Exact match and token F1 use SQuAD's answer normalisation: lower-case, drop punctuation, drop
the articles "a", "an", "the", collapse whitespace. So "The Eiffel Tower." equals "eiffel tower".
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """``exp(nll_sum / n_tokens)``; infinite when there are no tokens to average."""
    if n_tokens <= 0:
        return math.inf
    return math.exp(nll_sum / n_tokens)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (SQuAD's F1).

    Two empty answers agree (1.0); one empty answer against a non-empty one scores 0.
    """
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) with sacrebleu's defaults (13a tokenisation, exponential smoothing)."""
    import sacrebleu

    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures (0-1), with Porter stemming."""
    from rouge_score import rouge_scorer

    _check_lengths(predictions, references)
    keys = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)
        for key in keys:
            totals[key] += scores[key].fmeasure
    n = max(len(predictions), 1)
    return {key: total / n for key, total in totals.items()}


_TOKEN = re.compile(r"\w+|[^\w\s]")


def meteor_tokens(text: str) -> list[str]:
    """Words and punctuation marks apart ("Paris." -> ["Paris", "."]), as METEOR expects."""
    return _TOKEN.findall(text)


def meteor(predictions: Sequence[str], references: Sequence[str], wordnet: Any = None) -> float:
    """Mean sentence METEOR (0-1) by nltk, lower-cased, with WordNet synonyms.

    ``wordnet`` defaults to the packaged WordNet 3.0 (about 6 s to open, once per process);
    raises AssetError when its package is missing. An empty prediction or reference scores 0.
    """
    from nltk.translate.meteor_score import single_meteor_score

    from tunesmith.evaluate.wordnet import wordnet as packaged_wordnet

    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    reader = wordnet if wordnet is not None else packaged_wordnet()
    total = sum(
        single_meteor_score(meteor_tokens(r), meteor_tokens(p), wordnet=reader)
        for p, r in zip(predictions, references, strict=True)
    )
    return total / len(predictions)


def closed_set_scores(
    predictions: Sequence[str], references: Sequence[str], answers: Sequence[str]
) -> dict[str, float]:
    """Generations scored as labels of the closed set ``answers``.

    A prediction counts as an answer when it equals one after SQuAD normalisation ("Positive."
    is "positive"); anything else is *outside* the set and wrong. Returns ``label_accuracy``,
    ``label_f1`` (macro over the set's answers: each weighs the same, however rare) and
    ``out_of_set_rate`` (the share of predictions that are no answer of the set).
    """
    from tunesmith.evaluate.metrics import per_class_precision_recall_f1

    _check_lengths(predictions, references)
    if not predictions:
        raise ValueError("no predictions to score")
    classes = list(dict.fromkeys(normalize_answer(a) for a in answers))
    outside = "\x00outside"  # no normalised text can equal it
    known = set(classes)
    y_pred = [p if p in known else outside for p in map(normalize_answer, predictions)]
    y_true = [r if r in known else outside for r in map(normalize_answer, references)]
    per_class = per_class_precision_recall_f1(y_true, y_pred, [*classes, outside])
    n = len(predictions)
    return {
        "label_accuracy": sum(t == p != outside for t, p in zip(y_true, y_pred, strict=True)) / n,
        "label_f1": sum(per_class[c]["f1"] for c in classes) / len(classes),
        "out_of_set_rate": sum(p == outside for p in y_pred) / n,
    }


def generation_scores(
    predictions: Sequence[str], references: Sequence[str], *, with_meteor: bool = True
) -> dict[str, float]:
    """BLEU, ROUGE-1/2/L, METEOR, exact match and token F1 of a set of generations."""
    _check_lengths(predictions, references)
    n = max(len(predictions), 1)
    pairs = list(zip(predictions, references, strict=True))
    return {
        "bleu": bleu(predictions, references),
        **rouge(predictions, references),
        **({"meteor": meteor(predictions, references)} if with_meteor else {}),
        "exact_match": sum(exact_match(p, r) for p, r in pairs) / n,
        "token_f1": sum(token_f1(p, r) for p, r in pairs) / n,
    }


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
