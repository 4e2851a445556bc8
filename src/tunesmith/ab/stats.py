"""The statistics of an A/B test, as small typed functions over counts and arrays.

- Fixed-horizon tests, valid when read once at the planned sample size: the two-proportion
  z-test for rates (statsmodels ``test_proportions_2indep``, Wald) and Welch's t-test for means
  (statsmodels ``CompareMeans`` with unequal variances), each with the confidence interval of the
  difference (treatment minus control).
- A test that stays valid however often it is read: the mixture sequential probability ratio
  test (mSPRT) of Johari, Koomen, Pekelis and Walsh, "Peeking at A/B Tests: Why it matters, and
  what to do about it" (KDD 2017), with a normal mixing distribution N(0, tau^2) over the effect.
  On the (asymptotically normal) difference estimate d with variance V its likelihood ratio is
  ``sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))``; the always-valid p-value is
  the running minimum of its inverse, and inverting the same ratio gives a confidence sequence
  (the normal-mixture boundary of Howard, Ramdas, McAuliffe and Sekhon, Annals of Statistics
  2021). No library ships it, so it is written here; ``tests/ab`` checks its error rate under
  peeking by simulation.
- The sample-ratio-mismatch check (chi-square goodness of fit, scipy), flagged at p < 0.001 as
  GrowthBook and Kohavi et al. ("Trustworthy Online Controlled Experiments", 2020) do.
- The sample size a fixed-horizon test needs (statsmodels power analysis).

Everything here is arithmetic on numbers already read: microseconds to milliseconds. Functions
raise ``ValueError`` for impossible inputs (negative counts, shares outside (0, 1)); the report
layer turns too-little-data cases into "keep collecting", not errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# GrowthBook's and Kohavi et al.'s threshold: a mismatch this unlikely means a broken split.
SRM_P_THRESHOLD = 0.001


@dataclass(frozen=True)
class Difference:
    """Treatment minus control, from a fixed-horizon test."""

    test: str  # "two-proportion z-test" | "Welch's t-test"
    control: float  # the rate or mean of each arm
    treatment: float
    n_control: int
    n_treatment: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True)
class Sequential:
    """The mSPRT's reading at one look: always-valid p-value and confidence sequence."""

    method: str
    likelihood_ratio: float
    p_value: float
    cs_low: float
    cs_high: float
    significant: bool


@dataclass(frozen=True)
class SampleRatio:
    counts: tuple[int, ...]
    expected_shares: tuple[float, ...]
    chi2: float
    p_value: float
    mismatch: bool


def compare_rates(successes_control: int, n_control: int, successes_treatment: int,
                  n_treatment: int, *, alpha: float = 0.05) -> Difference:
    """Two-proportion z-test (Wald) and the (1 - alpha) Wald interval of the rate difference."""
    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    if min(n_control, n_treatment) <= 0:
        raise ValueError("each arm needs at least one observation")
    result = test_proportions_2indep(successes_treatment, n_treatment, successes_control, n_control,
                                     method="wald", compare="diff", return_results=True)
    low, high = confint_proportions_2indep(successes_treatment, n_treatment, successes_control,
                                           n_control, method="wald", compare="diff", alpha=alpha)
    p_c, p_t = successes_control / n_control, successes_treatment / n_treatment
    p_value = float(result.pvalue) if np.isfinite(result.pvalue) else 1.0  # both rates 0 or 1
    return Difference("two-proportion z-test", p_c, p_t, n_control, n_treatment, p_t - p_c,
                      float(low), float(high), p_value)


def compare_means(control: Sequence[float], treatment: Sequence[float], *,
                  alpha: float = 0.05) -> Difference:
    """Welch's t-test (unequal variances) and the (1 - alpha) interval of the mean difference."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    c, t = np.asarray(control, dtype=float), np.asarray(treatment, dtype=float)
    if min(len(c), len(t)) < 2:
        raise ValueError("each arm needs at least two observations for Welch's t-test")
    compared = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    _, p_value, _ = compared.ttest_ind(usevar="unequal")
    low, high = compared.tconfint_diff(alpha=alpha, usevar="unequal")
    p_value = float(p_value) if np.isfinite(p_value) else 1.0  # both arms constant
    return Difference("Welch's t-test", float(c.mean()), float(t.mean()), len(c), len(t),
                      float(t.mean() - c.mean()), float(low), float(high), p_value)


def msprt(diff: np.ndarray | float, variance: np.ndarray | float, *, tau: float,
          alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The mSPRT likelihood ratio for H0 "no difference" and the confidence-sequence half-width.

    ``diff`` is the estimated difference, ``variance`` its variance (V = var_t/n_t + var_c/n_c),
    ``tau`` the standard deviation of the normal mixture over effects (set it near the effect
    you care about: the test is most powerful there). Vectorised: arrays of looks or of
    simulated experiments at once. Where ``variance`` is 0 (no spread yet) the ratio is 1 and
    the half-width infinite: no evidence either way.
    """
    d = np.asarray(diff, dtype=float)
    v = np.asarray(variance, dtype=float)
    tau2 = float(tau) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(v / (v + tau2)) * np.exp(tau2 * d**2 / (2 * v * (v + tau2)))
        # {theta : LR(theta) < 1/alpha} is an interval around d of this half-width.
        half = np.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log((v + tau2) / v)))
    ratio = np.where(v > 0, ratio, 1.0)
    half = np.where(v > 0, half, np.inf)
    return ratio, half


def sequential_path(is_treatment: Sequence[bool], values: Sequence[float], *, kind: str, tau: float,
                    alpha: float = 0.05, min_per_arm: int = 20) -> Sequential | None:
    """The mSPRT read after every observation, in arrival order: the always-valid p-value is the
    minimum of 1/ratio over all looks, the confidence sequence the intersection of the looks'
    intervals (both stay valid under continuous monitoring, and neither depends on when the
    report happens to be run). Looks start once both arms have ``min_per_arm`` observations;
    None before that. ``kind`` "rate" (0/1 values) or "mean". O(n), vectorised.
    """
    arm = np.asarray(is_treatment, dtype=bool)
    x = np.asarray(values, dtype=float)
    stats_by_arm = []
    for mask in (~arm, arm):
        n = np.cumsum(mask)
        total = np.cumsum(np.where(mask, x, 0.0))
        squares = np.cumsum(np.where(mask, x * x, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total / n
            if kind == "rate":
                var = rate_variance(total, n)
            else:
                var = np.where(n > 1, (squares - n * mean**2) / (n - 1), 0.0) / n
        stats_by_arm.append((n, mean, np.maximum(var, 0.0)))
    (n_c, mean_c, var_c), (n_t, mean_t, var_t) = stats_by_arm
    looks = (n_c >= min_per_arm) & (n_t >= min_per_arm)
    if not looks.any():
        return None
    diff = (mean_t - mean_c)[looks]
    ratio, half = msprt(diff, (var_c + var_t)[looks], tau=tau, alpha=alpha)
    p_value = float(min(1.0, np.min(1.0 / ratio)))
    low, high = float(np.max(diff - half)), float(np.min(diff + half))
    if low > high:
        # The looks' intervals no longer overlap, which happens only when the sequence has
        # failed (probability <= alpha): show the last look's interval rather than none.
        low, high = float(diff[-1] - half[-1]), float(diff[-1] + half[-1])
    return Sequential("mSPRT (normal mixture, Johari et al. 2017)", float(ratio[-1]), p_value,
                      low, high, p_value <= alpha)


def rate_variance(successes: np.ndarray | int, n: np.ndarray | int) -> np.ndarray:
    """Variance of a rate estimate, p(1-p)/n (unpooled), for :func:`msprt`."""
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.asarray(successes, dtype=float) / n
        return np.where(n > 0, p * (1 - p) / n, 0.0)


def sample_ratio_mismatch(counts: Sequence[int], expected_shares: Sequence[float], *,
                          threshold: float = SRM_P_THRESHOLD) -> SampleRatio:
    """Chi-square goodness of fit of the arms' unit counts (users) against the planned split."""
    from scipy.stats import chisquare

    observed = np.asarray(counts, dtype=float)
    shares = np.asarray(expected_shares, dtype=float)
    if observed.min() < 0 or not math.isclose(shares.sum(), 1.0):
        raise ValueError("counts must be non-negative and shares must sum to 1")
    total = observed.sum()
    if total == 0:
        return SampleRatio(tuple(int(c) for c in counts), tuple(shares), 0.0, 1.0, False)
    chi2, p_value = chisquare(observed, f_exp=shares * total)
    return SampleRatio(tuple(int(c) for c in counts), tuple(float(s) for s in shares),
                       float(chi2), float(p_value), bool(p_value < threshold))


def sample_size_rates(baseline: float, mde: float, *, alpha: float = 0.05, power: float = 0.8,
                      treatment_share: float = 0.5) -> tuple[int, int]:
    """Observations per arm (control, treatment) for a two-sided z-test to detect a rate moving
    from ``baseline`` by ``mde`` (absolute, e.g. 0.05 = five points) with the given power."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    target = min(max(baseline + mde, 1e-6), 1 - 1e-6)
    effect = abs(proportion_effectsize(target, min(max(baseline, 1e-6), 1 - 1e-6)))
    return _per_arm(NormalIndPower(), effect, alpha, power, treatment_share)


def sample_size_means(sd: float, mde: float, *, alpha: float = 0.05, power: float = 0.8,
                      treatment_share: float = 0.5) -> tuple[int, int]:
    """Observations per arm (control, treatment) for Welch's test to detect a mean difference of
    ``mde`` when the outcome's standard deviation is ``sd``."""
    from statsmodels.stats.power import TTestIndPower

    return _per_arm(TTestIndPower(), abs(mde) / max(sd, 1e-12), alpha, power, treatment_share)


def _per_arm(analysis, effect: float, alpha: float, power: float,
             treatment_share: float) -> tuple[int, int]:
    if not 0 < treatment_share < 1:
        raise ValueError("treatment_share must be in (0, 1)")
    ratio = treatment_share / (1 - treatment_share)
    n_control = float(analysis.solve_power(effect_size=effect, alpha=alpha, power=power,
                                           ratio=ratio, alternative="two-sided"))
    return math.ceil(n_control), math.ceil(n_control * ratio)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (numpy's linear interpolation), None for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None
