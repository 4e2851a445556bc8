"""The forgetting check's remedies: exact --set overrides derived from the measurement."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config, save_config, validate_config
from tunesmith.evaluate.forgetting import compare, lower_learning_rate, remedies, warning_message

# The sentiment-instruct example's measurement (docs/generative.md): +19.1% at 2e-3.
REPORT = compare("hamlet", before=58.81, after=70.07, threshold=0.1)


def test_the_lower_learning_rate_by_hand():
    # 2e-3 x (10% / 2) / 19.1% = 5.24e-4, to two significant digits.
    assert lower_learning_rate(2e-3, 0.191, 0.1) == 5.2e-4
    assert lower_learning_rate(1e-4, 0.5, 0.2) == 2e-5
    with pytest.raises(ValueError):
        lower_learning_rate(1e-3, 0.0, 0.1)


def test_the_remedies_are_valid_overrides_of_the_runs_config(tmp_path):
    cfg = validate_config({
        "prepare": {"dataset": "rotten-tomatoes", "task": "classification"},
        "finetune": {"model": "smollm2-135m-instruct", "learning_rate": 2e-3, "max_steps": 40},
    })
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    fixes = remedies(REPORT, cfg, num_blocks=30)
    assert [f.override for f in fixes] == [
        "finetune.learning_rate=5.2e-4", "prepare.mix_general=0.3",
        "finetune.freeze_layers=15", "finetune.max_steps=20",
    ]
    for fix in fixes:  # each parses as a valid config and sets exactly that value
        section, key = fix.key.split(".")
        changed = load_config(path, [fix.override])
        assert getattr(getattr(changed, section), key) == fix.value
        assert changed.model_copy(update={section: getattr(cfg, section)}) == cfg
    message = warning_message(REPORT, fixes, str(path))
    assert f"tunesmith run --config {path} --set finetune.learning_rate=5.2e-4" in message
    assert "2e-3 x 5% / 19.1%" in message


def test_remedies_follow_the_run_and_stay_quiet_without_a_warning(tmp_path):
    full = validate_config({"finetune": {"method": "full", "learning_rate": 5e-5, "num_epochs": 3,
                                         "freeze_layers": 20},
                            "prepare": {"mix_general": 0.3}})
    fixes = {f.key: f.value for f in remedies(REPORT, full, num_blocks=30)}
    assert fixes == {"finetune.method": "lora", "finetune.learning_rate": 1.3e-5,
                     "prepare.mix_general": 0.5, "finetune.freeze_layers": 25,
                     "finetune.num_epochs": 2}
    path = tmp_path / "config.yaml"
    save_config(full, path)
    load_config(path, [f.override for f in remedies(REPORT, full, num_blocks=30)])  # all at once
    assert remedies(compare("hamlet", 58.81, 60.0, 0.1), full, num_blocks=30) == []


def test_the_report_lists_the_remedies_when_the_check_warned(tmp_path):
    import json

    from tunesmith.report import write_reports

    cfg = validate_config({"finetune": {"learning_rate": 2e-3, "max_steps": 40}})
    fixes = remedies(REPORT, cfg, num_blocks=30)
    forgetting = {**REPORT.to_dict(), "remedies": [f.to_dict() for f in fixes]}
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "instruction", "forgetting": forgetting}))
    write_reports(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "- `--set finetune.learning_rate=5.2e-4`: 2e-3 x 5% / 19.1%" in markdown
    assert "--set finetune.freeze_layers=15" in (tmp_path / "report.html").read_text()
