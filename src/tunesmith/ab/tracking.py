"""An experiment in MLflow: its arms resolved to training runs, its run, its promotion.

- :func:`resolve_arm` turns what the user typed (a run folder, a served adapter name, or a
  registry ``NAME@ALIAS``) into the name the server serves and the training run behind it. A
  registry alias is pinned to the version it points at when the experiment starts, so moving the
  alias later (for instance by promotion) does not change what was tested.
- :func:`start_run` creates the experiment's MLflow run (experiment ``tunesmith-ab``): params
  arms/split/metric, tags with both arms' training run ids; each arm's training run gets a tag
  naming the experiment, so the link is visible from both sides.
- :func:`log_report` adds a report's per-arm figures as metrics (step = requests seen).
- :func:`promote_winner` moves the control's registry alias to the treatment's version.

Each call costs an MLflow client round trip or a few (tens of ms on sqlite, more on a server);
mlflow is imported inside the functions. UsageError for unknown aliases, runs and models.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tunesmith import runfiles
from tunesmith.ab.analysis import ABReport
from tunesmith.ab.experiment import ARMS, ArmModel, Experiment
from tunesmith.errors import UsageError

MLFLOW_EXPERIMENT = "tunesmith-ab"
_REGISTRY_REF = re.compile(r"^(?P<name>[^@/\\]+)@(?P<alias>[A-Za-z0-9_-]+)$")


def _client(tracking_uri: str):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def resolve_arm(spec: str, *, tracking_uri: str, runs_dir: str | Path = "runs") -> ArmModel:
    """The arm for ``spec``: ``NAME@ALIAS`` (registry), a run folder, or a served name.

    A run folder is served under its folder's name (as ``tunesmith serve --run`` names it); a
    plain name is taken as served as is, and its training run is read from
    ``runs_dir/NAME/run.json`` when that exists.
    """
    match = _REGISTRY_REF.match(spec)
    if match:
        from mlflow.exceptions import MlflowException

        name, alias = match["name"], match["alias"]
        try:
            version = _client(tracking_uri).get_model_version_by_alias(name, alias)
        except MlflowException:
            raise UsageError(
                f"'{spec}': the registry at {tracking_uri} has no model '{name}' with alias '{alias}'.",
                hint="`tunesmith registry list` shows the models and aliases; pass --tracking-uri "
                "if the registry is elsewhere.",
            ) from None
        return ArmModel(spec, spec, version.run_id, name, int(version.version), alias)
    folder = Path(spec)
    if not (folder / runfiles.RUN_META).is_file() and (Path(runs_dir) / spec / runfiles.RUN_META).is_file():
        folder = Path(runs_dir) / spec
    if (folder / runfiles.RUN_META).is_file():
        run = json.loads((folder / runfiles.RUN_META).read_text(encoding="utf-8"))
        return ArmModel(spec, folder.resolve().name, run.get("mlflow_run_id"))
    if "/" in spec or "\\" in spec:
        raise UsageError(f"'{spec}' looks like a path but holds no run.json.",
                         hint="Pass a run folder written by `tunesmith run`, a served model name "
                         "or a registry NAME@ALIAS.")
    return ArmModel(spec, spec)


def start_run(experiment: Experiment, *, tracking_uri: str) -> str:
    """Create the experiment's MLflow run and link both arms' training runs; its run id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    mlflow.set_experiment(MLFLOW_EXPERIMENT)
    tags = {"tunesmith.ab.name": experiment.name}
    for arm in ("control", "treatment"):
        model = experiment.arm(arm)
        tags[f"tunesmith.ab.{arm}_model"] = model.served
        if model.run_id:
            tags[f"tunesmith.ab.{arm}_run_id"] = model.run_id
        if model.registry_version is not None:
            tags[f"tunesmith.ab.{arm}_registry_version"] = f"{model.registry_name}/{model.registry_version}"
    with mlflow.start_run(run_name=f"ab-{experiment.name}", tags=tags) as run:
        mlflow.log_params({
            "control": experiment.control.spec, "treatment": experiment.treatment.spec,
            "split": experiment.split, "metric": experiment.metric, "kind": experiment.kind,
            "mde": experiment.mde, "alpha": experiment.alpha, "power": experiment.power,
        })
        run_id = run.info.run_id
    for arm in ARMS:
        training = experiment.arm(arm).run_id
        if training:
            try:
                client.set_tag(training, f"tunesmith.ab.{experiment.name}", f"{arm} (run {run_id})")
            except MlflowException:
                pass  # the training run lives in another store: the link stays one-way
    return run_id


def log_report(report: ABReport, *, tracking_uri: str) -> None:
    """Log ``report``'s numbers to its experiment's MLflow run, and the decision as a tag."""
    experiment = report.experiment
    if not experiment.mlflow_run_id:
        return
    client = _client(tracking_uri)
    import time

    from mlflow.entities import Metric, RunTag

    step = sum(a.requests for a in report.arms)
    now = int(time.time() * 1000)
    client.log_batch(
        experiment.mlflow_run_id,
        metrics=[Metric(k, v, now, step) for k, v in report.metrics().items()],
        tags=[RunTag("tunesmith.ab.decision", report.decision)],
    )


def promote_winner(experiment: Experiment, *, tracking_uri: str,
                   alias: str | None = None) -> tuple[str, str, int]:
    """Point the control's registry alias (or ``alias``) at the treatment's version.

    Returns (model name, alias, version). The treatment must be a registry ``NAME@ALIAS`` of the
    same model, or a run folder (registered here as a new version first). UsageError otherwise.
    """
    from tunesmith.track.registry import promote, register

    control, treatment = experiment.control, experiment.treatment
    name = control.registry_name or treatment.registry_name
    alias = alias or control.registry_alias
    if not name or not alias:
        raise UsageError(
            f"experiment '{experiment.name}' cannot promote: its control '{control.spec}' is not a "
            "registry NAME@ALIAS, so there is no alias to move.",
            hint="Start experiments meant for promotion with --control NAME@production, or "
            "register the winner yourself: `tunesmith registry register RUN --name NAME`.",
        )
    if treatment.registry_version is not None and treatment.registry_name == name:
        version = treatment.registry_version
    elif treatment.registry_version is None and (Path(treatment.spec) / runfiles.RUN_META).is_file():
        version = register(treatment.spec, name, tracking_uri=tracking_uri).version
    else:
        raise UsageError(
            f"experiment '{experiment.name}': the treatment '{treatment.spec}' is neither a version "
            f"of '{name}' nor a run folder, so it cannot take the alias '{alias}'.",
            hint=f"Register it as a version of '{name}' and point the alias by hand: "
            f"`tunesmith registry promote {name} VERSION --alias {alias}`.",
        )
    promote(name, version, alias, tracking_uri=tracking_uri)
    return name, alias, version
