"""MLflow logging of a run: params, step metrics, final metrics, artifacts, tags.

By default MLflow writes to an embedded sqlite store (``sqlite:///mlflow.db`` in the working
directory: no server needed, ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows it);
``tracking.mlflow_uri`` points it at a real server instead. mlflow is imported only when a
tracker starts (it costs a few seconds). The tracker is a training-loop callback, so step
metrics arrive as they are produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith import runfiles
from tunesmith.config import Config
from tunesmith.errors import ConfigError
from tunesmith.train.loop import Callback

# Run-folder entries logged as artifacts, at the artifact root so that a downloaded run is a
# run folder again (the registry relies on that). checkpoints/ and data/ stay local: large.
ARTIFACTS = (runfiles.RUN_META, runfiles.CONFIG, runfiles.METRICS, runfiles.HISTORY, runfiles.ERRORS,
             runfiles.SAMPLES, runfiles.ADAPTER_DIR, runfiles.PLOTS_DIR, runfiles.REPORT_HTML,
             runfiles.REPORT_MD)

# metrics.json sections whose numbers are logged as final metrics (confusion_matrix, a table,
# goes as a plot artifact instead).
FINAL_SECTIONS = ("baseline", "finetuned", "delta", "train", "baselines", "forgetting", "continual", "tasks")


class MlflowTracker(Callback):
    """One MLflow run. Use ``start()``, pass it to ``fit(callbacks=...)``, then ``finish()``."""

    def __init__(self, cfg: Config, run_name: str) -> None:
        self.cfg = cfg
        self.run_name = run_name
        self.run_id: str | None = None
        self._mlflow: Any = None

    def start(self, run_id: str | None = None) -> str:
        """Start a new MLflow run, or reopen ``run_id`` (the evaluate stage adds to it)."""
        import mlflow

        self._mlflow = mlflow
        try:
            mlflow.set_tracking_uri(self.cfg.tracking.mlflow_uri)
            mlflow.set_experiment(self.cfg.tracking.experiment)
            run = mlflow.start_run(run_id=run_id, run_name=None if run_id else self.run_name)
        except Exception as exc:  # noqa: BLE001 - any store failure is a config problem here
            raise ConfigError(
                f"cannot log to MLflow at '{self.cfg.tracking.mlflow_uri}': "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                hint="Check tracking.mlflow_uri (a server URL or sqlite:///file.db), or set "
                "tracking.enabled=false to run without tracking.",
            ) from None
        self.run_id = run.info.run_id
        if run_id:
            return self.run_id
        # MLflow params are strings of at most 6,000 characters; lists become their repr.
        mlflow.log_params({k: str(v)[:500] for k, v in self.cfg.flat().items()})
        # DVC data hashes and the `dvc exp` name, inside a DVC project.
        from tunesmith.track.dvc_tags import dvc_tags

        self.set_tags(dvc_tags())
        return self.run_id

    def _log_metrics(self, record: dict[str, Any], skip: tuple[str, ...]) -> None:
        values = {
            k: float(v) for k, v in record.items()
            if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        self._mlflow.log_metrics(values, step=int(record["step"]))

    def on_log(self, record: dict[str, Any]) -> bool | None:
        named = {f"train_{k}": v for k, v in record.items() if k not in ("kind", "step", "epoch")}
        self._log_metrics({"step": record["step"], **named}, skip=("step",))
        return None

    def on_eval(self, record: dict[str, Any]) -> bool | None:
        self._log_metrics(record, skip=("step", "kind", "epoch"))
        return None

    def set_tags(self, tags: dict[str, str]) -> None:
        self._mlflow.set_tags({k: v for k, v in tags.items() if v})

    def log_final(self, metrics: dict[str, Any]) -> None:
        """metrics.json's numbers, flattened with ``_``: ``baseline_accuracy``,
        ``baselines_few_shot_rougeL``, ``forgetting_relative_change``, ``train_packing_gain`` ...
        (yes/no values such as ``forgetting_warning`` become 1/0)."""
        flat: dict[str, float] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    walk(f"{prefix}_{key}", inner)
            elif isinstance(value, (int, float)):  # bool is an int: True -> 1.0
                flat[prefix] = float(value)

        for section in FINAL_SECTIONS:
            if isinstance(metrics.get(section), dict):
                walk(section, metrics[section])
        self._mlflow.log_metrics(flat)

    def log_run_folder(self, run_dir: str | Path) -> None:
        root = Path(run_dir)
        for name in ARTIFACTS:
            path = root / name
            if path.is_dir():
                self._mlflow.log_artifacts(str(path), artifact_path=name)
            elif path.is_file():
                self._mlflow.log_artifact(str(path))

    def finish(self, status: str = "FINISHED") -> None:
        if self._mlflow is not None and self._mlflow.active_run() is not None:
            self._mlflow.end_run(status=status)
