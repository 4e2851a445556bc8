"""The Accelerate config files in configs/accelerate/ load the way `accelerate launch` reads them.

Each file goes through accelerate's own parser and validation (`accelerate launch --config_file
F`), then into the environment its launcher would hand to the processes, and from there into
accelerate's FSDP / DeepSpeed plugin objects. A misspelled key would be dropped silently by
accelerate, so every key of the fsdp/deepspeed sections must be one that `accelerate launch`
knows. DeepSpeed itself is not installed here and is not needed for this.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


def _launch_args(name: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def _plugin_from_env(env: dict[str, str], factory):
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return factory()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize("name", ["ddp_cpu.yaml", "fsdp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml"])
def test_every_section_key_is_one_accelerate_launch_knows(name):
    from accelerate.commands.launch import launch_command_parser

    known = {action.dest for action in launch_command_parser()._actions}
    data = yaml.safe_load((CONFIGS / name).read_text())
    section_keys = [*data.get("fsdp_config", {}), *data.get("deepspeed_config", {})]
    unknown = [key for key in section_keys if key not in known]
    assert unknown == [], f"{name}: accelerate would ignore {unknown}"


def test_ddp_cpu_starts_two_processes_through_the_multi_process_launcher():
    args, defaults = _launch_args("ddp_cpu.yaml")
    # The multi-GPU launcher (torch.distributed.run) is the one that starts several processes;
    # `cpu`/MULTI_CPU would select the simple launcher, which starts one.
    assert args.multi_gpu and not args.cpu and not args.use_cpu
    assert args.num_processes == 2
    assert args.mixed_precision == "no"


def test_fsdp_config_builds_accelerate_fsdp2_plugin():
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env
    from torch.distributed.fsdp import StateDictType

    args, _ = _launch_args("fsdp.yaml")
    assert args.use_fsdp and args.mixed_precision == "bf16"
    plugin = _plugin_from_env(prepare_multi_gpu_env(args), FullyShardedDataParallelPlugin)
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert plugin.cpu_ram_efficient_loading is True
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"


@pytest.mark.parametrize(("name", "stage"), [("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)])
def test_deepspeed_configs_build_accelerate_deepspeed_plugin(name, stage):
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args, defaults = _launch_args(name)
    assert args.use_deepspeed
    # What `accelerate launch` records before handing the config to DeepSpeed.
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    plugin = _plugin_from_env(env, DeepSpeedPlugin)
    zero = plugin.deepspeed_config["zero_optimization"]
    assert plugin.zero_stage == stage and zero["stage"] == stage
    # tunesmith's loop accumulates itself: DeepSpeed must step on every backward it sees.
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == 1
    assert zero["offload_optimizer"]["device"] == "none"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)


def test_the_loop_refuses_deepspeed_and_accepts_the_others():
    # DeepSpeed would own gradients and steps that the loop scales and takes itself: refused with
    # the alternatives, rather than training with silently wrong updates.
    from accelerate.utils import DistributedType

    from tunesmith.errors import ConfigError
    from tunesmith.train.loop import check_engine

    with pytest.raises(ConfigError, match="no DeepSpeed path") as info:
        check_engine(DistributedType.DEEPSPEED)
    assert "fsdp.yaml" in (info.value.hint or "")
    for kind in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU,
                 DistributedType.FSDP):
        check_engine(kind)
