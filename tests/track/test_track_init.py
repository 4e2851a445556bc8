"""`tunesmith init`: the scaffold's files, its stage params, its errors, and the DVC tags."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tunesmith.errors import UsageError


def test_init_writes_the_five_stages_each_with_only_the_params_it_reads(in_tmp):
    from tunesmith.pipelines.init import init_project

    result = init_project(in_tmp / "p", task="classification", model="minilm", data="rotten-tomatoes")
    assert result.git_initialised and result.dvc_initialised
    stages = yaml.safe_load((in_tmp / "p" / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["data_ingestion", "data_preprocessing", "prepare_finetuning",
                            "finetune_model", "evaluate_model"]
    finetune_keys = [p for s in ("data_ingestion", "data_preprocessing", "prepare_finetuning")
                     for p in stages[s]["params"] if p.startswith("finetune")]
    assert finetune_keys == []  # so a finetune change never reruns the data stages
    assert "finetune" in stages["finetune_model"]["params"]
    assert stages["evaluate_model"]["metrics"] == [{"metrics.json": {"cache": False}}]
    assert stages["evaluate_model"]["plots"] == [{"plots": {"cache": False}}]
    # Each stage reads what the one before wrote.
    assert stages["data_preprocessing"]["deps"] == stages["data_ingestion"]["outs"]
    assert stages["prepare_finetuning"]["deps"] == stages["data_preprocessing"]["outs"]
    params = yaml.safe_load((in_tmp / "p" / "params.yaml").read_text())
    assert params["prepare"]["task"] == "classification" and params["finetune"]["model"] == "minilm"
    assert "/mlflow.db" in (in_tmp / "p" / ".gitignore").read_text()


def test_init_tracks_a_users_file_with_dvc_and_points_the_config_at_it(in_tmp):
    from tunesmith.pipelines.init import init_project

    data = in_tmp / "reviews.jsonl"
    data.write_text('{"text": "good", "label": "pos"}\n')
    result = init_project(in_tmp / "p", data=str(data))
    assert result.data_file == "data/source/reviews.jsonl"
    assert (in_tmp / "p" / "data/source/reviews.jsonl.dvc").is_file()
    stages = yaml.safe_load((in_tmp / "p" / "dvc.yaml").read_text())["stages"]
    assert stages["data_ingestion"]["deps"] == ["data/source/reviews.jsonl"]
    params = yaml.safe_load((in_tmp / "p" / "params.yaml").read_text())
    assert params["prepare"]["dataset"] == "data/source/reviews.jsonl"


def test_init_refuses_to_overwrite_and_rejects_bad_arguments(in_tmp):
    from tunesmith.pipelines.init import init_project

    init_project(in_tmp / "p")
    with pytest.raises(UsageError, match="already holds params.yaml, dvc.yaml"):
        init_project(in_tmp / "p")
    init_project(in_tmp / "p", force=True)
    with pytest.raises(UsageError, match="neither a built-in dataset nor an existing file"):
        init_project(in_tmp / "q", data="no-such.csv")
    with pytest.raises(UsageError, match="--task must be one of"):
        init_project(in_tmp / "q", task="summarise")


def test_init_inside_an_existing_git_repo_uses_a_dvc_subdir(in_tmp):
    from tunesmith.pipelines.init import init_project

    subprocess.run(["git", "init", "-q", str(in_tmp)], check=True)
    result = init_project(in_tmp / "sub")
    assert not result.git_initialised and result.dvc_initialised
    assert (in_tmp / "sub" / ".dvc").is_dir() and not (in_tmp / ".dvc").exists()


def test_init_cli_exit_codes(in_tmp):
    cli = [sys.executable, "-m", "tunesmith.cli.main", "init"]
    ok = subprocess.run([*cli, "p"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "dvc repro" in ok.stdout
    again = subprocess.run([*cli, "p"], capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr


def test_dvc_tags_name_the_data_hashes_and_the_experiment(in_tmp, monkeypatch):
    from tunesmith.track.dvc_tags import dvc_tags

    assert dvc_tags(in_tmp) == {}
    (in_tmp / ".dvc").mkdir()
    (in_tmp / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "prepare_finetuning": {"outs": [{"path": "data/finetuning", "md5": "abc.dir"}]},
        "finetune_model": {"outs": [{"path": "models/run", "md5": "old.dir"}]}}}))
    (in_tmp / "data").mkdir()
    (in_tmp / "data" / "source.csv.dvc").write_text(yaml.safe_dump(
        {"outs": [{"path": "source.csv", "md5": "123"}]}))
    monkeypatch.setenv("DVC_EXP_NAME", "lora-r16")
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert dvc_tags(in_tmp / "data") == {"dvc.data/finetuning": "abc.dir",
                                         "dvc.data/source.csv": "123", "dvc.exp_name": "lora-r16"}
