"""torch's CPU threads fitted to the cores other jobs leave free (tunesmith.train.threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from core_tiny import tiny_bert, tokenizer, toy_records

from tunesmith.config import load_config
from tunesmith.pipelines.train import train
from tunesmith.train.loop import Callback
from tunesmith.train.threads import THREAD_VARIABLES, busy_cores, choose_threads, usable_cores


@pytest.mark.parametrize(
    ("current", "cores", "busy", "expected"),
    [
        (2, 2, 0.05, 2),   # quiet machine: torch's count stays
        (2, 2, 1.0, 1),    # one other job on 2 cores
        (2, 2, 9.0, 1),    # oversubscribed: still one thread, never zero
        (16, 16, 3.2, 13),  # a big machine with 3 busy cores
        (4, 16, 0.0, 4),   # never more threads than the user's or torch's count
    ],
)
def test_choose_threads_takes_the_free_cores(current, cores, busy, expected):
    assert choose_threads(current, cores, busy) == expected


@contextmanager
def busy_machine(nice: int = 0):
    """Every usable core kept busy by a real process spinning in Python (at ``nice``)."""
    n = usable_cores()
    if n > 8:
        pytest.skip(f"{n} cores: too many to keep busy in a test")
    spin = f"import os; os.nice({nice})\nwhile True: pass"
    burners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them start
        yield n
    finally:
        for p in burners:
            p.kill()
        for p in burners:
            p.wait()


def test_busy_cores_sees_other_processes():
    with busy_machine() as n:
        assert busy_cores() >= n - 0.5


def test_background_jobs_at_a_lower_priority_leave_the_cores_to_training():
    if os.nice(0) > 0:
        pytest.skip("this process runs niced itself: other niced jobs compete with it")
    # Measured against the same spinners at normal priority, back to back, so that whatever
    # else runs here (another test worker) counts alike in both.
    with busy_machine() as n:
        normal = busy_cores()
    with busy_machine(nice=19):
        niced = busy_cores()
    assert normal >= n - 0.5 and niced <= normal - 0.5, (normal, niced)


class ThreadsSeen(Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_micro_batch(self, step, batch):
        self.seen.append(torch.get_num_threads())


def test_training_on_a_busy_cpu_uses_fewer_threads_and_restores_them(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    if before < 2:
        pytest.skip("torch already computes with one thread here")
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    model_dir = tmp_path / "tiny-bert"
    tiny_bert().save_pretrained(model_dir)
    tokenizer().save_pretrained(model_dir)
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 32), ("val", 8)):
        (data / f"{split}.jsonl").write_text(
            "".join(json.dumps(r.to_dict()) + "\n" for r in toy_records(n)))
    cfg = load_config(None, [f"finetune.model={model_dir}", "finetune.method=full",
                             "finetune.max_steps=3", "finetune.batch_size=8", "tracking.enabled=false"])
    seen = ThreadsSeen()
    lines: list[str] = []
    with busy_machine():
        train(cfg, data, tmp_path / "run", progress=False, log=lines.append, callbacks=[seen])
    recorded = json.loads((Path(tmp_path / "run" / "metrics.json")).read_text())["train"]["cpu_threads"]
    assert seen.seen and set(seen.seen) == {recorded}
    assert recorded < before
    assert any(line.startswith(f"CPU threads: {recorded} instead of {before}") for line in lines)
    assert torch.get_num_threads() == before  # restored for whatever the process does next
