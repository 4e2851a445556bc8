"""Drift checks between a run's training data (the reference) and what it serves (live).

Each check returns a :class:`Check`: a score, the threshold it is held to, and whether it
flags drift. The thresholds follow Evidently's published defaults for its data-drift preset
(docs.evidentlyai.com, "Data drift algorithm"), so the numbers mean what they mean there:

- text: a *domain classifier* (TF-IDF + logistic regression, 5-fold cross-validated) tries to
  tell live prompts from training prompts; drift when its ROC AUC exceeds 0.55 (reference over
  1,000 rows) or the 95th percentile of the AUC a random classifier gets on the same labels
  (smaller references);
- numbers (prompt and response lengths, in words): normed Wasserstein distance over 0.1
  (reference and live window both over 1,000 rows), else a two-sample Kolmogorov-Smirnov test
  at p < 0.05;
- categories (predicted labels): Jensen-Shannon distance over 0.1 (reference over 1,000), else
  a chi-square test at p < 0.05;
- two rates where Evidently has no text rule, so ours: the out-of-vocabulary rate (live words
  missing from the training vocabulary) flags when it is more than 1.25x the rate held-out
  training text shows against the same vocabulary, and the refusal rate of generated answers
  when it rises by more than 5 points with a two-proportion z-test at p < 0.05.

Costs: the domain classifier fits five small logistic regressions on at most 2 x 2,000 texts
(about a second on 2 cores); everything else is counting. Checks with fewer than
``MIN_LIVE`` live rows say "too few" and flag nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_LIVE = 30
LARGE_REFERENCE = 1000  # Evidently switches from statistical tests to distances above this
DOMAIN_AUC_THRESHOLD = 0.55
DISTANCE_THRESHOLD = 0.1
P_THRESHOLD = 0.05
OOV_RATIO_THRESHOLD = 1.25
REFUSAL_RISE = 0.05
DOMAIN_SAMPLE = 2000
_WORD = re.compile(r"[a-z0-9']+")
# Openings of answers that decline; matched case-insensitively at the start of a sentence.
_REFUSAL = re.compile(
    r"(^|[.!?]\s+)(i'?m sorry|i am sorry|sorry, but|i can(no|')t|i cannot|i am unable|i'm unable|"
    r"i won'?t be able|as an ai\b|i'?m not able|i do not have|i don'?t have (access|the ability))",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Check:
    name: str
    group: str  # "input" | "prediction"
    method: str
    score: float | None
    threshold: str
    drift: bool
    detail: str


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lengths(texts: Sequence[str]) -> np.ndarray:
    return np.asarray([len(words(t)) for t in texts], dtype=float)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text.strip()))


def _too_few(name: str, group: str, method: str, live: int) -> Check | None:
    if live < MIN_LIVE:
        return Check(name, group, method, None, f">= {MIN_LIVE} live rows", False,
                     f"too few live rows ({live}) to judge")
    return None


def numeric_drift(name: str, group: str, reference: np.ndarray, live: np.ndarray) -> Check:
    """Evidently's numeric rule: normed Wasserstein when both samples are large, else KS test.

    Evidently looks at the reference's size only; a live window of a few hundred rows gives the
    distance noise of its own (0.09 for 400 held-out reviews against 3,000 training ones,
    measured), so small live windows get the test, which accounts for their size.
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    large = min(len(reference), len(live)) > LARGE_REFERENCE
    method = "normed Wasserstein" if large else "Kolmogorov-Smirnov"
    skipped = _too_few(name, group, method, len(live))
    if skipped or len(reference) == 0:
        return skipped or Check(name, group, method, None, "-", False, "no reference")
    detail = f"median reference {np.median(reference):g}, live {np.median(live):g} words"
    if large:
        score = float(wasserstein_distance(reference, live) / max(np.std(reference), 1e-12))
        return Check(name, group, method, score, f"> {DISTANCE_THRESHOLD}", score > DISTANCE_THRESHOLD, detail)
    p_value = float(ks_2samp(reference, live).pvalue)
    return Check(name, group, method + " p-value", p_value, f"< {P_THRESHOLD}", p_value < P_THRESHOLD, detail)


def oov_drift(reference: Sequence[str], live: Sequence[str], *, seed: int = 0) -> Check:
    """Live out-of-vocabulary rate against the rate held-out reference text shows.

    The vocabulary is built from 80% of the reference; the other 20% gives the rate new
    in-domain text has, so the check does not flag the ordinary long tail of words.
    """
    method = "out-of-vocabulary rate ratio"
    skipped = _too_few("vocabulary (OOV rate)", "input", method, len(live))
    if skipped or len(reference) < 10:
        return skipped or Check("vocabulary (OOV rate)", "input", method, None, "-", False,
                                "reference too small")
    order = np.random.default_rng(seed).permutation(len(reference))
    cut = int(len(order) * 0.8)
    vocabulary = {w for i in order[:cut] for w in words(reference[i])}

    def rate(texts) -> float:
        tokens = [w for t in texts for w in words(t)]
        return sum(w not in vocabulary for w in tokens) / max(len(tokens), 1)

    expected = rate([reference[i] for i in order[cut:]])
    observed = rate(live)
    ratio = observed / max(expected, 1e-6)
    return Check("vocabulary (OOV rate)", "input", method, ratio, f"> {OOV_RATIO_THRESHOLD}",
                 ratio > OOV_RATIO_THRESHOLD,
                 f"live {observed:.1%} of words unseen in training, held-out training text {expected:.1%}")


def random_auc_percentile(n_reference: int, n_live: int, *, q: float = 95, draws: int = 1000,
                          seed: int = 0) -> float:
    """The q-th percentile of the ROC AUC of random scores on these class sizes (Evidently's
    bar for small references). Vectorised: ranks of random scores are random permutations."""
    rng = np.random.default_rng(seed)
    n = n_reference + n_live
    ranks = rng.random((draws, n)).argsort(axis=1).argsort(axis=1) + 1
    live_rank_sum = ranks[:, n_reference:].sum(axis=1)
    auc = (live_rank_sum - n_live * (n_live + 1) / 2) / (n_reference * n_live)
    return float(np.percentile(auc, q))


def domain_classifier_drift(reference: Sequence[str], live: Sequence[str], *, seed: int = 0) -> Check:
    """Can a classifier tell live prompts from training prompts? ROC AUC, cross-validated."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    name, method = "prompts (domain classifier)", "ROC AUC, 5-fold"
    skipped = _too_few(name, "input", method, len(live))
    if skipped or len(reference) < MIN_LIVE:
        return skipped or Check(name, "input", method, None, "-", False, "reference too small")
    rng = np.random.default_rng(seed)
    # Equal classes (an AUC does not need them, but the classifier learns better with them).
    size = min(len(reference), len(live), DOMAIN_SAMPLE)
    ref = [reference[i] for i in rng.choice(len(reference), size, replace=False)]
    cur = [live[i] for i in rng.choice(len(live), size, replace=False)]
    labels = np.r_[np.zeros(size), np.ones(size)]
    model = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, ref + cur, labels, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(labels, scores))
    if len(reference) > LARGE_REFERENCE:
        bar, rule = DOMAIN_AUC_THRESHOLD, f"> {DOMAIN_AUC_THRESHOLD}"
    else:
        bar = random_auc_percentile(size, size, seed=seed)
        rule = f"> {bar:.3f} (95th percentile of a random classifier)"
    return Check(name, "input", method, auc, rule, auc > bar,
                 f"{size} training vs {size} live prompts")


def label_drift(reference: dict[str, float], live: Sequence[str]) -> Check:
    """Predicted-label distribution against the reference distribution (counts or shares)."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chisquare

    large = sum(reference.values()) > LARGE_REFERENCE
    method = "Jensen-Shannon distance" if large else "chi-square p-value"
    skipped = _too_few("predicted labels", "prediction", method, len(live))
    if skipped:
        return skipped
    counts = Counter(live)
    labels = sorted(set(reference) | set(counts))
    ref = np.asarray([reference.get(k, 0.0) for k in labels], dtype=float)
    cur = np.asarray([counts.get(k, 0) for k in labels], dtype=float)
    shares = ref / ref.sum()
    detail = ", ".join(f"{k} {s:.0%}->{c / cur.sum():.0%}" for k, s, c in zip(labels, shares, cur, strict=True))
    if large:
        score = float(jensenshannon(shares, cur / cur.sum()))
        return Check("predicted labels", "prediction", method, score, f"> {DISTANCE_THRESHOLD}",
                     score > DISTANCE_THRESHOLD, detail)
    expected = np.maximum(shares * cur.sum(), 1e-9)
    p_value = float(chisquare(cur, f_exp=expected * cur.sum() / expected.sum()).pvalue)
    return Check("predicted labels", "prediction", method, p_value, f"< {P_THRESHOLD}",
                 p_value < P_THRESHOLD, detail)


def refusal_drift(reference: Sequence[str], live: Sequence[str]) -> Check:
    """The share of generated answers that decline, against the training answers'."""
    from statsmodels.stats.proportion import test_proportions_2indep

    method = "rise in refusal rate"
    skipped = _too_few("refusals", "prediction", method, len(live))
    if skipped or not reference:
        return skipped or Check("refusals", "prediction", method, None, "-", False, "no reference")
    ref, cur = sum(map(is_refusal, reference)), sum(map(is_refusal, live))
    ref_rate, live_rate = ref / len(reference), cur / len(live)
    p_value = test_proportions_2indep(cur, len(live), ref, len(reference), method="wald").pvalue
    rise = live_rate - ref_rate
    flagged = bool(rise > REFUSAL_RISE and np.isfinite(p_value) and p_value < P_THRESHOLD)
    return Check("refusals", "prediction", method, rise,
                 f"> +{REFUSAL_RISE:.0%} (z-test p < {P_THRESHOLD})", flagged,
                 f"reference {ref_rate:.1%}, live {live_rate:.1%}")
