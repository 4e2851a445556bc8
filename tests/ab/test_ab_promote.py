"""Promotion without a server: a run-folder treatment is registered, then takes the alias; an
experiment whose control is not a registry alias refuses to promote and says why."""

from __future__ import annotations

import pytest

from tunesmith.ab.tracking import promote_winner, resolve_arm
from tunesmith.errors import UsageError
from tunesmith.pipelines.ab import start_experiment

pytestmark = pytest.mark.integration


def test_a_run_folder_treatment_is_registered_and_promoted(ab_runs, tmp_path):
    from mlflow import MlflowClient

    from tunesmith.track.registry import promote, register

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    control = register(ab_runs["control"], "sentiment", tracking_uri=uri)
    promote("sentiment", control.version, "production", tracking_uri=uri)
    arm = resolve_arm(str(ab_runs["treatment"]), tracking_uri=uri)
    assert arm.served == "sentiment-b" and arm.registry_version is None
    experiment = start_experiment("folder", "sentiment@production", str(ab_runs["treatment"]),
                                  state_dir=tmp_path / "state", tracking_uri=uri)
    assert experiment.control.registry_version == control.version
    assert promote_winner(experiment, tracking_uri=uri) == ("sentiment", "production", 2)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    moved = client.get_model_version_by_alias("sentiment", "production")
    assert int(moved.version) == 2 and moved.tags["run_dir"].endswith("sentiment-b")

    plain = start_experiment("plain", str(ab_runs["control"]), str(ab_runs["treatment"]),
                             state_dir=tmp_path / "state")
    with pytest.raises(UsageError, match="is not a registry NAME@ALIAS"):
        promote_winner(plain, tracking_uri=uri)
