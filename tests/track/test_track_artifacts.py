"""What a run logs to MLflow as artifacts: the run folder without checkpoints/ and data/."""

from __future__ import annotations

from tunesmith.config import load_config
from tunesmith.track.experiment import MlflowTracker


def test_mlflow_artifacts_leave_out_checkpoints_and_data(in_tmp):
    run = in_tmp / "runs" / "r"
    files = {
        "run.json": "{}", "config.yaml": "x: 1", "metrics.json": "{}", "history.jsonl": "",
        "report.html": "<html></html>", "report.md": "# r", "adapter/adapter_model.safetensors": "w",
        "adapter/tunesmith_adapter.json": "{}", "plots/loss.png": "png",
        # Large and local: resume state and the prepared data (DVC versions the data).
        "checkpoints/last/optimizer.pt": "o", "checkpoints/last/state.json": "{}",
        "data/train.jsonl": "{}", "data/manifest.json": "{}",
    }
    for name, text in files.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    cfg = load_config(None, [f"tracking.mlflow_uri=sqlite:///{in_tmp / 'mlflow.db'}"])
    tracker = MlflowTracker(cfg, "r")
    run_id = tracker.start()
    try:
        tracker.log_run_folder(run)
    finally:
        tracker.finish()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.mlflow_uri)

    def walk(path=None):
        for item in client.list_artifacts(run_id, path):
            yield from walk(item.path) if item.is_dir else [item.path]

    logged = set(walk())
    expected = {name for name in files if not name.startswith(("checkpoints/", "data/"))}
    assert logged == expected
