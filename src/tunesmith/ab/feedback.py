"""Outcomes people report about served answers (a click, a thumbs up/down, a rating).

:func:`record_feedback` is the logic under ``POST /v1/feedback``: it finds the request in the
server's traffic log (``traffic.db`` in the same state folder), checks the value against the
outcome's kind (the experiment's metric when the request went through one), and stores it
durably. It refuses, with :class:`FeedbackRefused` and the HTTP status to answer, an unknown
request id (404), a request that failed (409) and a malformed value (400).

Cost: one indexed sqlite read and one committed write (about a millisecond on a local disk).
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.ab.experiment import KNOWN_METRICS, outcome_value
from tunesmith.ab.store import ExperimentStore, Outcome
from tunesmith.errors import UsageError

TRAFFIC_DB = "traffic.db"  # the serve concern's log (tunesmith.serve.traffic.FILENAME)


class FeedbackRefused(UsageError):
    """Feedback the server refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param


@dataclass(frozen=True)
class ServedRequest:
    request_id: str
    experiment: str | None
    arm: str | None
    status: int | None


def find_request(state_dir: str | Path, request_id: str) -> ServedRequest | None:
    """The traffic-log row of ``request_id`` (its experiment, arm, status), or None."""
    path = Path(state_dir) / TRAFFIC_DB
    if not path.is_file():
        return None
    conn = sqlite3.connect(path, timeout=30)
    try:
        row = conn.execute("SELECT request_id, experiment, arm, status FROM requests "
                           "WHERE request_id = ?", (request_id,)).fetchone()
    finally:
        conn.close()
    return ServedRequest(*row) if row else None


def record_feedback(store: ExperimentStore, request_id: str, outcome: str, value: Any) -> Outcome:
    """Validate and store outcome ``outcome`` = ``value`` of served request ``request_id``."""
    if not outcome or not isinstance(outcome, str):
        raise FeedbackRefused("'outcome' must name the outcome, e.g. \"click\", \"thumbs\" or "
                              "\"rating\".", status=400, param="outcome")
    served = find_request(store.state_dir, request_id)
    if served is None:
        raise FeedbackRefused(
            f"no served request has the id '{request_id}': send the `id` of a response (also in "
            "its X-Request-Id header) from this server.", status=404, param="request_id")
    if served.status is not None and served.status >= 400:
        raise FeedbackRefused(
            f"request '{request_id}' failed (status {served.status}): there is no answer to give "
            "feedback on.", status=409, param="request_id")
    spec = None
    if served.experiment:
        try:
            experiment = store.get(served.experiment)
        except UsageError:
            experiment = None
        if experiment is not None and experiment.metric == outcome:
            spec = experiment.metric_spec
    spec = spec or KNOWN_METRICS.get(outcome)
    try:
        number = outcome_value(spec, value) if spec else _plain_number(outcome, value)
    except UsageError as exc:
        raise FeedbackRefused(exc.message, status=400, param="value") from None
    return store.record_outcome(request_id, outcome, number)


def _plain_number(outcome: str, value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    raise UsageError(f"outcome '{outcome}' takes true/false or a finite number; got {value!r}.")
