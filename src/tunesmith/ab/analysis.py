"""From an experiment's served requests and outcomes to a report and a decision in words.

The unit of assignment is the user (the sample-ratio check counts users); the unit of analysis
is the request, as in most product dashboards: requests are treated as independent, which
understates the variance when a few users send many requests each (docs/deploy.md says so).

The decision reads the always-valid test (mSPRT), evaluated after every observation in arrival
order (so its p-value and confidence sequence do not depend on when the report is run), and
may be read after every batch of traffic without inflating false positives:

1. sample-ratio mismatch (p < 0.001): keep collecting, and fix the split first: no result of a
   broken split can be trusted;
2. a guardrail breached (treatment's p95 latency more than ``max_latency_increase`` above
   control's, or its error rate significantly more than ``max_error_increase`` above): keep control;
3. the mSPRT rejects "no difference": ship when the treatment is better, else keep control;
4. the confidence sequence rules out an improvement of ``mde`` or more: keep control (the
   treatment is not worth it);
5. otherwise keep collecting, with the sample a fixed-horizon test would still need.

Costs milliseconds for thousands of requests. Raises nothing for thin data: it says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tunesmith.ab import stats
from tunesmith.ab.experiment import ARMS, Arm, Experiment

SHIP, KEEP_CONTROL, KEEP_COLLECTING = "ship", "keep control", "keep collecting"
# Below this many observations per arm the normal approximations behind every test are poor.
MIN_PER_ARM = 20


@dataclass(frozen=True)
class Served:
    """One request routed through the experiment (a row of the traffic log)."""

    request_id: str
    user: str
    arm: Arm
    latency_ms: float | None
    ok: bool


@dataclass(frozen=True)
class ArmSummary:
    arm: Arm
    model: str
    users: int
    requests: int
    observations: int  # requests that count for the metric
    value: float | None  # rate or mean of the metric
    latency_p95_ms: float | None
    error_rate: float | None


@dataclass(frozen=True)
class Guardrail:
    name: str
    control: float | None
    treatment: float | None
    limit: str
    breached: bool


@dataclass(frozen=True)
class ABReport:
    experiment: Experiment
    arms: tuple[ArmSummary, ArmSummary]
    fixed: stats.Difference | None
    sequential: stats.Sequential | None
    srm: stats.SampleRatio
    guardrails: tuple[Guardrail, ...]
    needed_per_arm: tuple[int, int] | None  # fixed-horizon sample size (control, treatment)
    still_needed: int | None  # more observations needed in total, fixed-horizon
    decision: str
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def metrics(self) -> dict[str, float]:
        """The report's numbers for MLflow: per-arm figures, the difference, the tests."""
        out: dict[str, float] = {}
        for summary in self.arms:
            for key in ("users", "requests", "observations", "value", "latency_p95_ms", "error_rate"):
                value = getattr(summary, key)
                if value is not None:
                    out[f"{summary.arm}_{key}"] = float(value)
        if self.fixed:
            out.update(diff=self.fixed.diff, diff_ci_low=self.fixed.ci_low,
                       diff_ci_high=self.fixed.ci_high, p_value=self.fixed.p_value)
        if self.sequential:
            out.update(sequential_p_value=self.sequential.p_value,
                       sequential_cs_low=self.sequential.cs_low,
                       sequential_cs_high=self.sequential.cs_high)
        out.update(srm_p_value=self.srm.p_value)
        if self.still_needed is not None:
            out["still_needed"] = float(self.still_needed)
        return {k: v for k, v in out.items() if np.isfinite(v)}


def _observations(experiment: Experiment, rows: Sequence[Served],
                  outcomes: Mapping[str, float]) -> list[tuple[Arm, float]]:
    """(arm, value) of every request that counts for the metric, in the rows' (arrival) order."""
    spec = experiment.metric_spec
    out: list[tuple[Arm, float]] = []
    for row in rows:
        if row.request_id in outcomes:
            out.append((row.arm, outcomes[row.request_id]))
        elif spec.missing_is_zero and row.ok:
            out.append((row.arm, 0.0))
    return out


def _guardrails(experiment: Experiment, rows: Sequence[Served]) -> tuple[Guardrail, ...]:
    latency = {arm: [r.latency_ms for r in rows if r.arm == arm and r.ok and r.latency_ms is not None]
               for arm in ARMS}
    p95 = {arm: stats.percentile(latency[arm], 95) for arm in ARMS}
    enough = min(len(latency[a]) for a in ARMS) >= MIN_PER_ARM
    slow = bool(enough and p95["control"] and p95["treatment"] is not None
                and p95["treatment"] > p95["control"] * (1 + experiment.max_latency_increase))
    counts = {arm: [r for r in rows if r.arm == arm] for arm in ARMS}
    errors = {arm: sum(not r.ok for r in counts[arm]) for arm in ARMS}
    rates = {arm: errors[arm] / len(counts[arm]) if counts[arm] else None for arm in ARMS}
    worse = False
    treatment_rate, control_rate = rates["treatment"], rates["control"]
    if (min(len(counts[a]) for a in ARMS) >= MIN_PER_ARM and treatment_rate is not None
            and control_rate is not None and treatment_rate > control_rate):
        # Breached only when the excess over the allowance is more than noise.
        diff = stats.compare_rates(errors["control"], len(counts["control"]), errors["treatment"],
                                   len(counts["treatment"]), alpha=2 * experiment.alpha)
        worse = diff.ci_low > experiment.max_error_increase
    return (
        Guardrail("latency p95 (ms)", p95["control"], p95["treatment"],
                  f"treatment at most +{experiment.max_latency_increase:.0%}", slow),
        Guardrail("error rate", rates["control"], rates["treatment"],
                  f"treatment at most +{experiment.max_error_increase:.1%} (significantly)", worse),
    )


def analyse(experiment: Experiment, rows: Sequence[Served], outcomes: Mapping[str, float]) -> ABReport:
    """The report of ``experiment`` given its served requests and ``{request_id: outcome}``."""
    observed = _observations(experiment, rows, outcomes)
    values = {arm: np.asarray([v for a, v in observed if a == arm], dtype=float) for arm in ARMS}
    users = {arm: len({r.user for r in rows if r.arm == arm}) for arm in ARMS}
    srm = stats.sample_ratio_mismatch([users["control"], users["treatment"]],
                                      [1 - experiment.treatment_share, experiment.treatment_share])
    guardrails = _guardrails(experiment, rows)
    latency, errors = guardrails

    def of(arm: Arm, guardrail: Guardrail) -> float | None:
        return guardrail.control if arm == "control" else guardrail.treatment

    def summary(arm: Arm) -> ArmSummary:
        return ArmSummary(arm, experiment.arm(arm).served, users[arm], sum(r.arm == arm for r in rows),
                          len(values[arm]), float(values[arm].mean()) if len(values[arm]) else None,
                          of(arm, latency), of(arm, errors))

    summaries = (summary("control"), summary("treatment"))
    c, t = values["control"], values["treatment"]
    enough = min(len(c), len(t)) >= MIN_PER_ARM
    fixed = sequential = None
    needed = None
    rate = experiment.kind == "rate"
    if enough:
        if rate:
            fixed = stats.compare_rates(int(c.sum()), len(c), int(t.sum()), len(t),
                                        alpha=experiment.alpha)
        else:
            fixed = stats.compare_means(c.tolist(), t.tolist(), alpha=experiment.alpha)
        sequential = stats.sequential_path([a == "treatment" for a, _ in observed],
                                           [v for _, v in observed], kind=experiment.kind,
                                           tau=experiment.mde, alpha=experiment.alpha,
                                           min_per_arm=MIN_PER_ARM)
    if len(c) >= 2:
        share = experiment.treatment_share
        if rate:
            needed = stats.sample_size_rates(float(c.mean()), experiment.mde, alpha=experiment.alpha,
                                             power=experiment.power, treatment_share=share)
        elif c.std(ddof=1) > 0:
            needed = stats.sample_size_means(float(c.std(ddof=1)), experiment.mde,
                                             alpha=experiment.alpha, power=experiment.power,
                                             treatment_share=share)
    still = (max(0, needed[0] - len(c)) + max(0, needed[1] - len(t))) if needed else None
    decision, reasons = _decide(experiment, fixed, sequential, srm, guardrails, still, enough)
    return ABReport(experiment, summaries, fixed, sequential, srm, guardrails, needed, still,
                    decision, reasons)


def _decide(experiment: Experiment, fixed: stats.Difference | None,
            sequential: stats.Sequential | None, srm: stats.SampleRatio,
            guardrails: tuple[Guardrail, ...], still: int | None,
            enough: bool) -> tuple[str, tuple[str, ...]]:
    if srm.mismatch:
        return KEEP_COLLECTING, (
            f"sample-ratio mismatch: users per arm {srm.counts[0]}/{srm.counts[1]} against a planned "
            f"{experiment.split} split (chi-square p = {srm.p_value:.2g} < {stats.SRM_P_THRESHOLD}); "
            "something other than chance routes users, so no result can be trusted until it is "
            "found (clients without a stable user id, a filter that drops one arm's errors ...).",
        )
    breached = [g for g in guardrails if g.breached]
    if breached:
        return KEEP_CONTROL, tuple(
            f"guardrail breached: {g.name} control {g.control:.4g}, treatment {g.treatment:.4g} "
            f"(allowed: {g.limit})." for g in breached)
    if not enough or fixed is None or sequential is None:
        return KEEP_COLLECTING, (
            f"too little data: fewer than {MIN_PER_ARM} observations of '{experiment.metric}' in an arm.",)
    unit = "points" if experiment.kind == "rate" else ""
    scale = 100 if experiment.kind == "rate" else 1
    effect = (f"treatment minus control {fixed.diff * scale:+.3g} {unit}, always-valid interval "
              f"[{sequential.cs_low * scale:+.3g}, {sequential.cs_high * scale:+.3g}]").replace("  ", " ")
    if sequential.significant:
        if sequential.cs_low > 0:  # the rejection excluded 0 from the sequence: its side decides
            return SHIP, (f"the treatment is better ({effect}; mSPRT p = {sequential.p_value:.3g} "
                          f"<= {experiment.alpha}).",)
        if sequential.cs_high < 0:
            return KEEP_CONTROL, (f"the treatment is worse ({effect}; mSPRT p = "
                                  f"{sequential.p_value:.3g}).",)
    if sequential.cs_high < experiment.mde:
        return KEEP_CONTROL, (
            f"no improvement of {experiment.mde * scale:g} {unit} or more is left in the interval "
            f"({effect}): the treatment is not worth shipping.".replace("  ", " "),)
    more = f"; a fixed-horizon read at power {experiment.power:g} needs about {still} more " \
           "observations in all (the always-valid test usually needs more, see docs/deploy.md)" \
        if still else ""
    return KEEP_COLLECTING, (f"no decision yet ({effect}){more}.",)
