"""`tunesmith ab start|report|list`: one function per command.

The experiment definitions and outcomes live in ``<state_dir>/experiments.db`` beside the
server's traffic log (``<state_dir>/traffic.db``): pass the same ``--state-dir`` as to
``tunesmith serve``. The work is in :mod:`tunesmith.ab`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from tunesmith.ab.analysis import SHIP, ABReport, Served, analyse
from tunesmith.ab.experiment import ARMS, Experiment, check_name, metric_spec, parse_split
from tunesmith.ab.store import ExperimentStore
from tunesmith.ab.tracking import log_report, promote_winner, resolve_arm, start_run
from tunesmith.errors import UsageError

DEFAULT_STATE_DIR = "serve-state"


def start_experiment(name: str, control: str, treatment: str, *, split: str = "50/50",
                     metric: str = "click", kind: str | None = None, mde: float | None = None,
                     alpha: float = 0.05, power: float = 0.8,
                     state_dir: str | Path = DEFAULT_STATE_DIR, tracking_uri: str | None = None,
                     runs_dir: str | Path = "runs") -> Experiment:
    """Define experiment ``name`` and store it where the server reads it; with a
    ``tracking_uri`` also create its MLflow run linked to both arms' training runs.

    Raises UsageError for a taken name, a bad split/metric, identical arms or an unknown
    registry alias. A server already running picks the experiment up on its first request.
    """
    check_name(name)
    share = parse_split(split)
    spec = metric_spec(metric, kind)
    if not 0 < alpha < 0.5 or not 0 < power < 1:
        raise UsageError(f"--alpha must be in (0, 0.5) and --power in (0, 1); got {alpha}, {power}.")
    if mde is not None and mde <= 0:
        raise UsageError(f"--mde must be positive (the smallest improvement worth shipping); got {mde}.")
    uri = tracking_uri or "sqlite:///mlflow.db"
    arms = {arm: resolve_arm(model, tracking_uri=uri, runs_dir=runs_dir)
            for arm, model in (("control", control), ("treatment", treatment))}
    if arms["control"].served == arms["treatment"].served and (
            arms["control"].registry_version == arms["treatment"].registry_version):
        raise UsageError(f"--control and --treatment are the same model ('{control}'): "
                         "an A/B test needs two different ones.")
    store = ExperimentStore(state_dir)
    experiment = Experiment(
        name=name, control=arms["control"], treatment=arms["treatment"], treatment_share=share,
        metric=spec.name, kind=spec.kind, mde=mde if mde is not None else spec.default_mde,
        alpha=alpha, power=power, created=time.time(),
    )
    store.create(experiment)
    if tracking_uri:
        experiment = store.update(replace(experiment, mlflow_run_id=start_run(experiment, tracking_uri=uri)))
    return experiment


def served_rows(state_dir: str | Path, name: str) -> list[Served]:
    """The experiment's rows of the server's traffic log (empty before any traffic)."""
    from tunesmith.serve.traffic import FILENAME, read_requests

    if not (Path(state_dir) / FILENAME).is_file():
        return []
    return [
        Served(r.request_id, r.user or "", r.arm, r.latency_ms, (r.status or 200) < 400)
        for r in read_requests(state_dir)
        if r.experiment == name and r.arm in ARMS
    ]


@dataclass(frozen=True)
class ReportResult:
    report: ABReport
    promoted: tuple[str, str, int] | None  # (model, alias, version) when the alias moved


def report_experiment(name: str, *, state_dir: str | Path = DEFAULT_STATE_DIR,
                      tracking_uri: str | None = None, promote: bool = False) -> ReportResult:
    """Read experiment ``name``'s traffic and outcomes, decide, log to its MLflow run.

    With ``promote`` and a "ship" decision, move the control's registry alias to the
    treatment's version and mark the experiment shipped. Raises UsageError for an unknown name,
    and for ``promote`` when the arms are not registry versions or run folders.
    """
    store = ExperimentStore(state_dir)
    experiment = store.get(name)
    rows = served_rows(state_dir, name)
    outcomes = store.outcomes(experiment.metric, (r.request_id for r in rows))
    result = analyse(experiment, rows, outcomes)
    uri = tracking_uri or "sqlite:///mlflow.db"
    if experiment.mlflow_run_id:
        log_report(result, tracking_uri=uri)
    promoted = None
    if promote and result.decision == SHIP:
        promoted = promote_winner(experiment, tracking_uri=uri)
        store.update(replace(experiment, status="shipped"))
    return ReportResult(result, promoted)


@dataclass(frozen=True)
class ExperimentSummary:
    experiment: Experiment
    requests: dict[str, int]  # per arm
    outcomes: int


def list_experiments(state_dir: str | Path = DEFAULT_STATE_DIR) -> list[ExperimentSummary]:
    """Every experiment of the state folder with its traffic so far."""
    store = ExperimentStore(state_dir)
    out = []
    for experiment in store.list():
        rows = served_rows(state_dir, experiment.name)
        out.append(ExperimentSummary(
            experiment, {arm: sum(r.arm == arm for r in rows) for arm in ARMS},
            len(store.outcomes(experiment.metric, (r.request_id for r in rows)))))
    return out


def serve_extensions(state_dir: str | Path, engine=None) -> tuple[list, list]:
    """What `tunesmith serve` mounts for A/B tests: ``([resolver], [router])`` over the
    experiments of ``state_dir`` (the ``ab:NAME`` models and ``POST /v1/feedback``). With the
    ``engine``, a request routed to an arm it does not serve gets a 404 naming the arm."""
    from tunesmith.ab.routes import ExperimentResolver, feedback_router

    store = ExperimentStore(state_dir)
    served = engine.model_names if engine is not None else None
    return [ExperimentResolver(store, served)], [feedback_router(store)]

