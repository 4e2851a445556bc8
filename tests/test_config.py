import subprocess
import sys

import pytest

from tunesmith.config import Config, load_config, safe_run_name, valid_keys
from tunesmith.errors import ConfigError


def test_defaults_are_the_guides_starting_points():
    cfg = load_config()
    assert cfg.finetune.learning_rate == 2e-4
    assert (cfg.finetune.lora_r, cfg.finetune.lora_alpha, cfg.finetune.lora_dropout) == (8, 16, 0.05)
    assert (cfg.finetune.batch_size, cfg.finetune.num_epochs) == (8, 3)
    assert (cfg.finetune.warmup_ratio, cfg.finetune.weight_decay) == (0.1, 0.01)
    assert (cfg.prepare.train_ratio, cfg.prepare.val_ratio, cfg.prepare.test_ratio) == (0.8, 0.1, 0.1)


def test_set_overrides_parse_yaml_values(tmp_path):
    cfg = load_config(None, ["finetune.lora_r=16", "finetune.lora_target_modules=[q_proj, v_proj]",
                             "prepare.limit=100", "finetune.max_steps=null"])
    assert cfg.finetune.lora_r == 16
    assert cfg.finetune.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.prepare.limit == 100 and cfg.finetune.max_steps is None


def test_unknown_key_suggests_the_nearest(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["finetune.lora_rank=16"])
    assert "unknown key 'finetune.lora_rank'" in str(err.value)
    assert "finetune.lora_r" in str(err.value)
    p = tmp_path / "params.yaml"
    p.write_text("finetune:\n  learning_rte: 0.001\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "Did you mean 'finetune.learning_rate'" in str(err.value)


def test_bad_value_names_field_and_range():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["finetune.lora_dropout=1.5"])
    msg = str(err.value)
    assert "finetune.lora_dropout" in msg and "< 1" in msg and "1.5" in msg
    with pytest.raises(ConfigError) as err:
        load_config(None, ["finetune.method=magic"])
    assert "finetune.method" in str(err.value) and "'lora'" in str(err.value)


def test_ratios_must_sum_to_one():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["prepare.train_ratio=0.9"])
    assert "must be 1.0" in str(err.value)


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["finetune.lora_r=4", "tracking.experiment=x"])
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    assert load_config(p) == cfg
    assert "finetune.lora_r" in valid_keys() and cfg.flat()["finetune.lora_r"] == 4


def test_invalid_yaml_names_the_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("finetune:\n  lora_r: [1,\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "line" in str(err.value)
    assert Config().finetune.method == "lora"


def test_environment_overrides_apply_after_set_and_are_announced(monkeypatch, capsys):
    from tunesmith.config import load_config

    monkeypatch.setenv("TUNESMITH_SET", "finetune.max_steps=5 'prepare.column_map={text: review}'")
    cfg = load_config(overrides=["finetune.max_steps=50", "finetune.lora_r=4"])
    assert cfg.finetune.max_steps == 5  # the environment wins over --set
    assert cfg.finetune.lora_r == 4
    assert cfg.prepare.column_map == {"text": "review"}  # quoted as a shell would
    assert "TUNESMITH_SET overrides the config: finetune.max_steps=5" in capsys.readouterr().err
    monkeypatch.setenv("TUNESMITH_SET", "")
    assert load_config().finetune.max_steps is None


@pytest.mark.parametrize("name", ["../x", "runs/../../etc", "/tmp/x", "a/b", "..", ".hidden",
                                  "-rf", "with space", "a\\b", "x" * 101])
def test_run_name_is_one_safe_path_segment(name):
    with pytest.raises(ConfigError, match=r"tracking\.run_name.*one folder name") as err:
        load_config(None, [f"tracking.run_name={name}"])
    assert repr(name)[:20] in str(err.value)


def test_safe_run_names_are_accepted():
    for name in ("sentiment-lora-r16", "run_1.2", "A" * 100):
        assert load_config(None, [f"tracking.run_name={name}"]).tracking.run_name == name


def test_safe_run_name_makes_any_folder_name_valid():
    for text in ("my run (2)", "..", "-x", "ü/../ß", ""):
        name = safe_run_name(text)
        assert load_config(None, [f"tracking.run_name={name}"]).tracking.run_name == name
    assert safe_run_name("my run (2)") == "my-run-2-"


def test_method_rules_fail_when_the_config_loads(tmp_path):
    # freeze_layers keeps the lowest blocks from training (full: frozen; LoRA family: no LoRA
    # there); bottleneck adapters go into every block and refuse it.
    with pytest.raises(ConfigError) as err:
        load_config(None, ["finetune.method=adapter", "finetune.freeze_layers=2"])
    msg = str(err.value)
    assert "1 problem(s)" in msg and "finetune.freeze_layers is 2" in msg and "'adapter'" in msg
    assert "finetune.method: lora" in msg and "{" not in msg  # no dump of the section
    assert load_config(None, ["finetune.method=full", "finetune.freeze_layers=2"]).finetune.freeze_layers == 2
    assert load_config(None, ["finetune.freeze_layers=2"]).finetune.freeze_layers == 2  # lora
    p = tmp_path / "params.yaml"
    p.write_text("finetune:\n  method: adapter\n  freeze_layers: 1\n")
    with pytest.raises(ConfigError, match="not 'adapter'"):
        load_config(p)


def test_qlora_without_bitsandbytes_fails_when_the_config_loads(monkeypatch):
    assert load_config(None, ["finetune.method=qlora"]).finetune.method == "qlora"
    # None in sys.modules is how Python marks a package as not importable.
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ConfigError, match="bitsandbytes, which is not installed"):
        load_config(None, ["finetune.method=qlora"])
    assert load_config(None, ["finetune.method=lora"]).finetune.method == "lora"


def test_a_bad_method_combination_stops_train_before_data_or_model(tmp_path):
    # Neither the data folder nor the model exists: had either been read first, the error
    # would be about them.
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", "train", "--data", str(tmp_path / "nodata"),
         "--out", str(out), "--set", f"finetune.model={tmp_path / 'nomodel'}",
         "--set", "finetune.method=adapter", "--set", "finetune.freeze_layers=1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "finetune.freeze_layers is 1" in done.stderr
    assert "nodata" not in done.stderr and "nomodel" not in done.stderr
    assert not out.exists()
