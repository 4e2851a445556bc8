"""`tunesmith train --nproc 2`: two CPU processes over gloo train like one with the same global batch.

One process with batch 8 and two processes with batch 4 each see the same 8 examples per
optimizer step (the epoch's order is cut into batches of 4 and dealt out to the processes in
turn), so their losses must agree up to float summation order, and the two processes must end
with identical adapters (DDP averages their gradients before every step). Dropout is off in
the tiny model and in LoRA: with it, each process draws its own masks and the runs differ by
design.
"""

from __future__ import annotations

import pytest
import torch
from scale_helpers import adapter_tensors, history, run_cli, write_config

from tunesmith.cli.distributed import launch_command, rank_args, without_nproc


def test_rank_args_send_other_processes_to_their_own_folder():
    args = ["--config", "c.yaml", "--data", "d", "--out", "runs/x", "--nproc", "2"]
    assert without_nproc(args) == ["--config", "c.yaml", "--data", "d", "--out", "runs/x"]
    assert rank_args(without_nproc(args), 0) == without_nproc(args)
    assert rank_args(["--out=runs/x", "--resume", "runs/x"], 1) == [
        "--out", "runs/x/ranks/1", "--resume", "runs/x/ranks/1", "--set", "tracking.enabled=false",
    ]
    command = launch_command(["--out", "o"], 2)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


# End to end through the CLI in subprocesses (about a minute of CPU).
@pytest.mark.integration
def test_two_processes_match_one_with_the_same_global_batch(tiny_setup, in_tmp):
    common = {"max_steps": 6, "lora_dropout": 0.0, "group_by_length": False, "eval_every": 3}
    one = write_config(in_tmp / "one.yaml", tiny_setup["model_no_dropout"], batch_size=8, **common)
    two = write_config(in_tmp / "two.yaml", tiny_setup["model_no_dropout"], batch_size=4, **common)
    data = str(tiny_setup["data"])
    run_cli("train", "--config", str(one), "--data", data, "--out", "one", cwd=in_tmp)
    run_cli("train", "--config", str(two), "--data", data, "--out", "two", "--nproc", "2", cwd=in_tmp)

    # Both processes ran and hold the same adapter, bit for bit.
    rank0 = adapter_tensors(in_tmp / "two" / "adapter")
    rank1 = adapter_tensors(in_tmp / "two" / "ranks" / "1" / "adapter")
    assert rank0.keys() == rank1.keys() and rank0
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # ... and it trained: LoRA's B matrices start at zero.
    assert all(v.abs().sum() > 0 for k, v in rank0.items() if "lora_B" in k)

    # The 2-process run follows the 1-process run step by step.
    losses_one = [r["loss"] for r in history(in_tmp / "one", "train")]
    losses_two = [r["loss"] for r in history(in_tmp / "two", "train")]
    assert len(losses_one) == len(losses_two) == 6
    for a, b in zip(losses_one, losses_two, strict=True):
        assert abs(a - b) <= 1e-3 * max(1.0, abs(a)), (losses_one, losses_two)
    val_one = history(in_tmp / "one", "eval")[-1]["val_loss"]
    val_two = history(in_tmp / "two", "eval")[-1]["val_loss"]
    assert abs(val_one - val_two) <= 1e-3 * max(1.0, val_one)
    # Each micro-batch of the 2-process run held 4 examples; the logged samples are global.
    assert all(r["samples"] == 8 for r in history(in_tmp / "two", "train"))


def test_the_library_asks_for_a_launcher_before_it_prepares_anything(in_tmp):
    from tunesmith.config import Config
    from tunesmith.errors import UsageError
    from tunesmith.pipelines.run import run

    with pytest.raises(UsageError, match="needs a launcher") as err:
        run(Config(), out_dir=in_tmp / "r", nproc=2, log=lambda _: None)
    assert "tunesmith.cli.distributed.launch_train" in (err.value.hint or "")
    assert not (in_tmp / "r").exists()
