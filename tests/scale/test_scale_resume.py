"""Kill `tunesmith train` with SIGKILL mid-epoch; `--resume` finishes it as if nothing happened.

The run is killed as soon as its first checkpoint (checkpoints/last/, written after each
evaluation) is on disk, well inside the first epoch. `tunesmith train --resume RUN` then
continues from it: trainable weights, optimizer, scheduler, RNG (the model has dropout, so the
masks after the checkpoint depend on it) and the position in the epoch's batch order. Its
losses after the checkpoint, its final validation loss and its adapter must equal those of an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import json

import pytest
import torch
from scale_helpers import (
    adapter_tensors,
    history,
    kill_after_first_checkpoint,
    run_cli,
    write_config,
)

STEPS = 60
STEPS_PER_EPOCH = 16  # 64 training examples / batch 4
EVAL_EVERY = 5


# End to end through the CLI in subprocesses (about a minute of CPU).
@pytest.mark.integration
def test_sigkill_then_resume_equals_an_uninterrupted_run(tiny_setup, in_tmp, monkeypatch):
    # Every run on one thread: a run otherwise fits its threads to the cores other jobs leave
    # free, and sums over another number of threads round differently (the losses must match
    # to 1e-5).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = write_config(in_tmp / "params.yaml", tiny_setup["model"], batch_size=4,
                          max_steps=STEPS, eval_every=EVAL_EVERY, lora_dropout=0.1,
                          early_stopping_patience=0)
    data = str(tiny_setup["data"])
    run_cli("train", "--config", str(config), "--data", data, "--out", "full", cwd=in_tmp)

    killed_at = kill_after_first_checkpoint(
        ["train", "--config", str(config), "--data", data, "--out", "killed"], in_tmp / "killed", in_tmp
    )
    assert 0 < killed_at < STEPS and killed_at % EVAL_EVERY == 0
    assert killed_at % STEPS_PER_EPOCH != 0, "the checkpoint should fall mid-epoch"
    run_cli("train", "--resume", "killed", cwd=in_tmp)

    full, resumed = in_tmp / "full", in_tmp / "killed"
    assert any(r["event"] == "resumed" for r in history(resumed, "event"))
    # Train losses: the same step numbers, the same values (dropout masks, data order and
    # optimizer state all carried over).
    full_losses = {r["step"]: r["loss"] for r in history(full, "train")}
    resumed_losses = {r["step"]: r["loss"] for r in history(resumed, "train")}
    assert sorted(resumed_losses) == sorted(full_losses) == list(range(1, STEPS + 1))
    for step, loss in full_losses.items():
        assert abs(resumed_losses[step] - loss) <= 1e-5, (step, loss, resumed_losses[step])
    full_eval, resumed_eval = history(full, "eval"), history(resumed, "eval")
    assert [r["step"] for r in resumed_eval] == [r["step"] for r in full_eval]
    assert abs(resumed_eval[-1]["val_loss"] - full_eval[-1]["val_loss"]) <= 1e-5
    # The final metrics and the adapter itself.
    full_train = json.loads((full / "metrics.json").read_text())["train"]
    resumed_train = json.loads((resumed / "metrics.json").read_text())["train"]
    assert resumed_train["steps"] == full_train["steps"] == STEPS
    a, b = adapter_tensors(full / "adapter"), adapter_tensors(resumed / "adapter")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
