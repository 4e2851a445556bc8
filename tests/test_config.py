import pytest

from tunesmith.config import Config, load_config, valid_keys
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
