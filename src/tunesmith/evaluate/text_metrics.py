"""Metrics of generated text against references: pure functions, checkable by hand.

Scales: BLEU is 0-100 (sacrebleu's corpus BLEU, as the guide shows it); ROUGE-1/2/L, exact
match and token F1 are 0-1 (mean over examples). Perplexity is ``exp(summed NLL / tokens)``.

Exact match and token F1 use SQuAD's answer normalisation: lower-case, drop punctuation, drop
the articles "a", "an", "the", collapse whitespace. So "The Eiffel Tower." equals "eiffel tower".
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

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


def generation_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """BLEU, ROUGE-1/2/L, exact match and token F1 of a set of generations."""
    _check_lengths(predictions, references)
    n = max(len(predictions), 1)
    pairs = list(zip(predictions, references, strict=True))
    return {
        "bleu": bleu(predictions, references),
        **rouge(predictions, references),
        "exact_match": sum(exact_match(p, r) for p, r in pairs) / n,
        "token_f1": sum(token_f1(p, r) for p, r in pairs) / n,
    }


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
