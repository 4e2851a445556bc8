"""Assignment, the store, feedback validation and the decision rules, without a server."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from tunesmith.ab.analysis import KEEP_COLLECTING, KEEP_CONTROL, SHIP, Served, analyse
from tunesmith.ab.experiment import ArmModel, Experiment, assign, parse_split
from tunesmith.ab.feedback import FeedbackRefused, record_feedback
from tunesmith.ab.store import ExperimentStore
from tunesmith.errors import UsageError


def _experiment(share: float = 0.5, **kw) -> Experiment:
    return Experiment(name=kw.pop("name", "exp"), control=ArmModel("a", "a"), treatment=ArmModel("b", "b"),
                      treatment_share=share, metric=kw.pop("metric", "click"), kind=kw.pop("kind", "rate"),
                      mde=kw.pop("mde", 0.05), created=time.time(), **kw)


def _traffic(experiment, n_users, rates, *, seed=0, latency=(50.0, 50.0), errors=(0.0, 0.0)):
    """One request per user; clicks with the arm's rate. Returns (rows, outcomes)."""
    rng = np.random.default_rng(seed)
    rows, outcomes = [], {}
    for i in range(n_users):
        user = f"u{i}"
        arm = assign(experiment, user)
        k = 0 if arm == "control" else 1
        ok = rng.random() >= errors[k]
        rows.append(Served(f"r{i}", user, arm, float(rng.normal(latency[k], 5)), ok))
        if ok and rng.random() < rates[k]:
            outcomes[f"r{i}"] = 1.0
    return rows, outcomes


def test_assignment_is_sticky_follows_the_split_and_differs_per_experiment():
    even, skewed = _experiment(0.5), _experiment(0.1, name="other")
    users = [f"user-{i}" for i in range(20000)]
    arms = [assign(even, u) for u in users]
    assert arms == [assign(even, u) for u in users]  # the same every time
    assert abs(Counter(arms)["treatment"] / len(users) - 0.5) < 0.015
    assert abs(Counter(assign(skewed, u) for u in users)["treatment"] / len(users) - 0.1) < 0.01
    # Another experiment splits the same users independently of this one.
    together = Counter((assign(even, u), assign(_experiment(0.5, name="x"), u)) for u in users)
    assert all(abs(c / len(users) - 0.25) < 0.015 for c in together.values())
    assert parse_split("90/10") == pytest.approx(0.1)
    with pytest.raises(UsageError, match="CONTROL/TREATMENT"):
        parse_split("half")


def test_a_clear_win_ships_and_a_clear_loss_keeps_control():
    e = _experiment()
    rows, outcomes = _traffic(e, 6000, (0.30, 0.36))
    report = analyse(e, rows, outcomes)
    assert report.decision == SHIP and report.sequential.significant
    assert report.fixed.ci_low > 0 and "better" in report.reasons[0]
    rows, outcomes = _traffic(e, 6000, (0.36, 0.30), seed=1)
    assert analyse(e, rows, outcomes).decision == KEEP_CONTROL


def test_no_effect_ends_as_keep_control_once_the_interval_excludes_the_mde():
    e = _experiment()
    rows, outcomes = _traffic(e, 30000, (0.30, 0.30), seed=2)
    report = analyse(e, rows, outcomes)
    assert report.decision == KEEP_CONTROL and report.sequential.cs_high < e.mde
    assert "not worth shipping" in report.reasons[0]


def test_thin_data_keeps_collecting_and_says_how_much_more_is_needed():
    e = _experiment()
    rows, outcomes = _traffic(e, 400, (0.30, 0.33), seed=3)
    report = analyse(e, rows, outcomes)
    assert report.decision == KEEP_COLLECTING
    assert report.needed_per_arm[0] > 1000 and report.still_needed > 2000
    assert analyse(e, rows[:10], outcomes).reasons[0].startswith("too little data")


def test_a_broken_split_or_a_breached_guardrail_overrides_a_win():
    e = _experiment()
    rows, outcomes = _traffic(e, 6000, (0.30, 0.36))
    # Drop a third of the treatment's users, as a filter that loses one arm's traffic would.
    broken = [r for i, r in enumerate(rows) if r.arm == "control" or i % 3]
    report = analyse(e, broken, outcomes)
    assert report.srm.mismatch and report.decision == KEEP_COLLECTING
    slow_rows, slow_outcomes = _traffic(e, 6000, (0.30, 0.36), latency=(50.0, 80.0))
    slow = analyse(e, slow_rows, slow_outcomes)
    assert slow.decision == KEEP_CONTROL and slow.guardrails[0].breached
    flaky_rows, flaky_outcomes = _traffic(e, 6000, (0.30, 0.36), errors=(0.0, 0.05))
    flaky = analyse(e, flaky_rows, flaky_outcomes)
    assert flaky.decision == KEEP_CONTROL and flaky.guardrails[1].breached
    fine_rows, fine_outcomes = _traffic(e, 6000, (0.30, 0.36), errors=(0.0, 0.005))
    assert not analyse(e, fine_rows, fine_outcomes).guardrails[1].breached  # within the allowance


def test_ratings_use_welch_and_missing_feedback_is_not_a_zero():
    e = _experiment(metric="rating", kind="mean", mde=0.2)
    rng = np.random.default_rng(4)
    rows = [Served(f"r{i}", f"u{i}", assign(e, f"u{i}"), 40.0, True) for i in range(3000)]
    outcomes = {r.request_id: float(np.clip(round(rng.normal(3.4 if r.arm == "treatment" else 3.0, 1)), 1, 5))
                for r in rows[::2]}  # only every other request got a rating
    report = analyse(e, rows, outcomes)
    assert report.fixed.test == "Welch's t-test"
    assert report.arms[0].observations + report.arms[1].observations == 1500
    assert report.decision == SHIP


def test_store_round_trip_and_feedback_refusals(tmp_path):
    from tunesmith.serve.traffic import TrafficLog, TrafficRecord

    store = ExperimentStore(tmp_path)
    e = store.create(_experiment())
    with pytest.raises(UsageError, match="already exists"):
        store.create(e)
    assert ExperimentStore(tmp_path).get("exp") == e
    with pytest.raises(UsageError, match="known: exp"):
        store.get("nope")
    log = TrafficLog(tmp_path)
    log.write(TrafficRecord("ok-1", time.time(), "/v1/classify", experiment="exp", arm="control", status=200))
    log.write(TrafficRecord("bad-1", time.time(), "/v1/classify", status=404))
    log.close()
    assert record_feedback(store, "ok-1", "click", "yes").value == 1.0
    assert record_feedback(store, "ok-1", "click", False).value == 0.0  # the last report wins
    assert store.outcomes("click") == {"ok-1": 0.0}
    for request_id, value, status in (("missing", 1, 404), ("bad-1", 1, 409), ("ok-1", 2, 400),
                                      ("ok-1", "maybe", 400)):
        with pytest.raises(FeedbackRefused) as refused:
            record_feedback(store, request_id, "click", value)
        assert refused.value.status == status
    assert record_feedback(store, "ok-1", "dwell_seconds", 12.5).value == 12.5
    with pytest.raises(FeedbackRefused, match="finite number"):
        record_feedback(store, "ok-1", "dwell_seconds", float("nan"))
