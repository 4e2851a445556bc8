"""What an A/B experiment is: two arms, a split, one outcome metric; and who sees which arm.

Assignment is a pure function of (experiment name, user id): the first 8 bytes of
SHA-256("name\\0user") read as a number in [0, 1) and compared with the treatment's share. So a
user always lands on the same arm, across requests, server restarts and machines, without
storing anything; and two experiments split the same users independently (the name is in the
hash). Changing the split of a running experiment would move users, so the split is fixed at
``ab start``.

Outcome metrics have a kind: a *rate* (a click, a thumbs up: 0/1 per request, compared with the
two-proportion z-test) or a *mean* (a rating: a number per request, Welch's t-test). For
``click`` a served request that never got a click counts as 0 (clicks are only reported when
they happen); for the others only requests that got feedback count.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from tunesmith.errors import UsageError

Arm = Literal["control", "treatment"]
ARMS: tuple[Arm, ...] = ("control", "treatment")
MetricKind = Literal["rate", "mean"]
# The prefix that addresses an experiment instead of a model: model="ab:NAME".
PREFIX = "ab:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind
    missing_is_zero: bool  # a served request without feedback counts as 0 (clicks)
    low: float | None = None  # allowed range of values (ratings)
    high: float | None = None
    default_mde: float = 0.05  # the smallest effect worth detecting, in the metric's units


KNOWN_METRICS: dict[str, MetricSpec] = {
    "click": MetricSpec("click", "rate", missing_is_zero=True),
    "thumbs": MetricSpec("thumbs", "rate", missing_is_zero=False),
    "rating": MetricSpec("rating", "mean", missing_is_zero=False, low=1, high=5, default_mde=0.2),
}
_TRUE = {"1", "true", "yes", "up", "thumbs_up", "click", "clicked"}
_FALSE = {"0", "false", "no", "down", "thumbs_down"}


def metric_spec(name: str, kind: str | None = None) -> MetricSpec:
    """The spec of a known metric (click, thumbs, rating), or of a custom one with ``kind``."""
    if name in KNOWN_METRICS and kind in (None, KNOWN_METRICS[name].kind):
        return KNOWN_METRICS[name]
    if kind not in ("rate", "mean"):
        raise UsageError(
            f"--metric '{name}' is not one of the known metrics ({', '.join(KNOWN_METRICS)}) and "
            f"--kind is {kind!r}.",
            hint="Give a custom metric's kind: --kind rate (0/1 outcomes such as a conversion) or "
            "--kind mean (numbers such as a score).",
        )
    return MetricSpec(name, cast(MetricKind, kind), missing_is_zero=False, default_mde=0.05 if kind == "rate" else 0.2)


def outcome_value(spec: MetricSpec, value: Any) -> float:
    """``value`` as the number the statistics use; UsageError saying what is allowed otherwise.

    Rates take true/false, 1/0, "up"/"down"; means take a finite number (ratings 1 to 5).
    """
    if spec.kind == "rate":
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, (int, float)) and value in (0, 1):
            return float(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return float(value.strip().lower() in _TRUE)
        raise UsageError(
            f"outcome '{spec.name}' is a rate, so its value must be true/false, 1/0 or "
            f"\"up\"/\"down\"; got {value!r}."
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"outcome '{spec.name}' takes a finite number; got {value!r}.")
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise UsageError(
            f"outcome '{spec.name}' must be between {spec.low:g} and {spec.high:g}; got {value!r}."
        )
    return float(value)


@dataclass(frozen=True)
class ArmModel:
    """One arm: the model as the user named it, the name the server serves it under, and the
    training run and registry version behind it (when known)."""

    spec: str  # as given: a run folder, an adapter name or NAME@ALIAS
    served: str  # the `model` the server routes to
    run_id: str | None = None  # the MLflow run that trained it
    registry_name: str | None = None
    registry_version: int | None = None
    registry_alias: str | None = None


@dataclass(frozen=True)
class Experiment:
    name: str
    control: ArmModel
    treatment: ArmModel
    treatment_share: float  # 0.5 for a 50/50 split
    metric: str
    kind: MetricKind
    mde: float  # smallest effect worth detecting, in the metric's units
    alpha: float = 0.05
    power: float = 0.8
    # Guardrails: the treatment may be this much slower at p95, and this much more error-prone.
    max_latency_increase: float = 0.2
    max_error_increase: float = 0.01
    created: float = 0.0
    status: str = "running"  # running | shipped (after `ab report --promote`)
    mlflow_run_id: str | None = None

    def arm(self, arm: Arm) -> ArmModel:
        return self.control if arm == "control" else self.treatment

    @property
    def metric_spec(self) -> MetricSpec:
        return metric_spec(self.metric, self.kind)

    @property
    def split(self) -> str:
        control = round((1 - self.treatment_share) * 100)
        return f"{control}/{100 - control}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        data = dict(data)
        data["control"] = ArmModel(**data["control"])
        data["treatment"] = ArmModel(**data["treatment"])
        return cls(**data)


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UsageError(
            f"experiment name {name!r} is not usable: use letters, digits, '-', '_' or '.', "
            "starting with a letter or digit, at most 64 characters."
        )
    return name


def parse_split(split: str) -> float:
    """``"50/50"`` -> 0.5, ``"90/10"`` -> 0.1: the treatment's share (control first)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*", split or "")
    if not match:
        raise UsageError(f"--split must look like CONTROL/TREATMENT, e.g. 50/50 or 90/10; got {split!r}.")
    control, treatment = float(match.group(1)), float(match.group(2))
    if control <= 0 or treatment <= 0:
        raise UsageError(f"--split {split}: both arms need a positive share.")
    return treatment / (control + treatment)


def bucket(experiment: str, user: str) -> float:
    """A number in [0, 1) fixed by (experiment, user): the user's place in the split."""
    digest = hashlib.sha256(f"{experiment}\0{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiment: Experiment, user: str) -> Arm:
    """The arm ``user`` sees in ``experiment``: the same every time."""
    return "treatment" if bucket(experiment.name, user) < experiment.treatment_share else "control"


def experiment_name(model: str) -> str | None:
    """``"ab:NAME"`` -> ``"NAME"``; None for a plain model name."""
    return model[len(PREFIX):] if model.startswith(PREFIX) else None
