"""The MLflow model registry for tunesmith runs: register, promote by alias, list.

A run folder (``runs/<name>/`` or a DVC project's ``models/run``) is registered as a pyfunc model
(:class:`~tunesmith.track.pyfunc.TunesmithModel`: base + adapter). In MLflow 3 ``log_model``
creates a LoggedModel linked to the run; the registered version points at it. Promotion uses
aliases (``staging``, ``production``): MLflow's stages are deprecated. Works the same against the
embedded sqlite store and a ``mlflow server`` URL.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from tunesmith import runfiles
from tunesmith.errors import UsageError

ALIASES = ("staging", "production")
# The metrics copied onto a model version's tags, so `registry list` can show them.
_VERSION_METRICS = ("accuracy", "f1", "rougeL", "perplexity", "exact_match", "token_f1")


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: int
    aliases: tuple[str, ...]
    run_id: str | None
    source: str
    metrics: dict[str, float]
    run_dir: str | None


def _client(tracking_uri: str):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _read_run_folder(run_dir: Path) -> tuple[dict, dict]:
    missing = [n for n in (runfiles.RUN_META, runfiles.CONFIG, runfiles.ADAPTER_DIR) if not (run_dir / n).exists()]
    if missing:
        raise UsageError(
            f"{run_dir} is not a finished tunesmith run: missing {', '.join(missing)}.",
            hint="Pass a run folder written by `tunesmith run`/`train` (it holds run.json, "
            "config.yaml and adapter/), or an MLflow run id that logged them.",
        )
    run = json.loads((run_dir / runfiles.RUN_META).read_text(encoding="utf-8"))
    config = yaml.safe_load((run_dir / runfiles.CONFIG).read_text(encoding="utf-8")) or {}
    return run, config


def _download_run(client, run_id: str, dst: Path) -> Path:
    """An MLflow run's logged run folder (run.json, config.yaml, adapter/) downloaded to ``dst``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        raise UsageError(
            f"'{run_id}' is neither a run folder nor a run id in {mlflow.get_tracking_uri()}.",
            hint="`tunesmith runs` lists runs; pass a folder such as runs/<name> or models/run.",
        ) from None
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(dst)))


def _final_metrics(run_dir: Path, logged: dict[str, float]) -> dict[str, float]:
    """The finetuned scores from the run folder's metrics.json, else from its MLflow run
    (``finetuned_*``): a DVC project evaluates beside the model folder, not into it."""
    path = run_dir / runfiles.METRICS
    finetuned = json.loads(path.read_text(encoding="utf-8")).get("finetuned", {}) if path.is_file() else {}
    if not finetuned:
        finetuned = {k.removeprefix("finetuned_"): v for k, v in logged.items()
                     if k.startswith("finetuned_")}
    return {k: float(finetuned[k]) for k in _VERSION_METRICS if isinstance(finetuned.get(k), (int, float))}


def register(run: str | Path, name: str, *, tracking_uri: str) -> ModelVersionInfo:
    """Register run folder (or MLflow run id) ``run`` as a new version of model ``name``.

    The model is logged into the run's own MLflow run when run.json names one that exists in
    this store, else into a new run of the experiment ``tunesmith-registry``. Raises UsageError
    when ``run`` is neither a finished run folder nor a known run id.
    """
    import mlflow

    from tunesmith.track.pyfunc import TunesmithModel, serving_meta

    client = _client(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="tunesmith-register-") as tmp:
        run_dir = Path(run)
        source_run_id = None
        if not run_dir.is_dir():
            source_run_id = str(run)
            run_dir = _download_run(client, source_run_id, Path(tmp) / "run")
        run_meta, config = _read_run_folder(run_dir)
        meta_path = Path(tmp) / "tunesmith_model.json"
        meta_path.write_text(json.dumps(serving_meta(config), indent=2), encoding="utf-8")
        run_id = source_run_id or run_meta.get("mlflow_run_id")
        logged: dict[str, float] = {}
        if run_id:
            try:
                logged = dict(client.get_run(run_id).data.metrics)
            except mlflow.exceptions.MlflowException:
                run_id = None  # logged to another store: start a fresh run here
        metrics = _final_metrics(run_dir, logged)
        if run_id is None:
            mlflow.set_experiment("tunesmith-registry")
        with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_meta.get("run_name")) as active:
            if run_id is None:
                mlflow.set_tags({"tunesmith.run_dir": str(run_dir.resolve()),
                                 "tunesmith.run_name": run_meta.get("run_name", "")})
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=TunesmithModel(),
                artifacts={"adapter": str(run_dir / runfiles.ADAPTER_DIR), "meta": str(meta_path)},
                # Explicit requirements: MLflow's inference would import and run the model.
                pip_requirements=["tunesmith"],
            )
            run_id = active.info.run_id
        version = mlflow.register_model(info.model_uri, name)
    tags = {f"metric.{k}": f"{v:.6g}" for k, v in metrics.items()}
    if not source_run_id:
        tags["run_dir"] = str(run_dir.resolve())
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    return _version_info(client.get_model_version(name, version.version), run_id_fallback=run_id)


def _version_info(mv, *, aliases: tuple[str, ...] | None = None,
                  run_id_fallback: str | None = None) -> ModelVersionInfo:
    tags = dict(mv.tags or {})
    return ModelVersionInfo(
        name=mv.name,
        version=int(mv.version),
        aliases=aliases if aliases is not None else tuple(sorted(mv.aliases or [])),
        run_id=mv.run_id or run_id_fallback,
        source=mv.source,
        metrics={k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")},
        run_dir=tags.get("run_dir"),
    )


def promote(name: str, version: int, alias: str, *, tracking_uri: str) -> ModelVersionInfo:
    """Point ``alias`` (staging or production) of model ``name`` at ``version``.

    The alias moves: the version that held it before loses it. Raises UsageError for an unknown
    alias, model or version.
    """
    from mlflow.exceptions import MlflowException

    if alias not in ALIASES:
        raise UsageError(f"--alias must be one of {', '.join(ALIASES)}, got '{alias}'.")
    client = _client(tracking_uri)
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        versions = []
    known = sorted(int(v.version) for v in versions)
    if not known:
        raise UsageError(f"no registered model named '{name}' in {tracking_uri}.",
                         hint="`tunesmith registry list` shows the registered models.")
    if int(version) not in known:
        raise UsageError(f"model '{name}' has no version {version}; it has {', '.join(map(str, known))}.")
    client.set_registered_model_alias(name, alias, str(version))
    return _version_info(client.get_model_version(name, str(version)))


def list_models(*, tracking_uri: str) -> list[ModelVersionInfo]:
    """Every version of every registered model, newest version first within each model."""
    client = _client(tracking_uri)
    out: list[ModelVersionInfo] = []
    for model in sorted(client.search_registered_models(), key=lambda m: m.name):
        # search_model_versions leaves ModelVersion.aliases empty; the model knows them all.
        by_version: dict[int, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            by_version.setdefault(int(version), []).append(alias)
        versions = client.search_model_versions(f"name = '{model.name}'")
        for mv in sorted(versions, key=lambda v: -int(v.version)):
            aliases = tuple(sorted(by_version.get(int(mv.version), [])))
            out.append(_version_info(mv, aliases=aliases))
    return out
