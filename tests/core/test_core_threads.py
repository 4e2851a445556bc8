"""torch's CPU threads fitted to the cores other jobs leave free (tunesmith.train.threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from core_tiny import tiny_bert, tokenizer, toy_records

from tunesmith.config import load_config
from tunesmith.pipelines.train import train
from tunesmith.train.loop import Callback
from tunesmith.train.threads import (
    THREAD_VARIABLES,
    busy_cores,
    busy_in,
    choose_threads,
    usable_cores,
)


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
    # One sample of a 2-core machine: 10% idle, 70% in niced background jobs, 20% in
    # normal-priority work. A normal-priority run counts only the 20% as busy; a niced run
    # competes with the background jobs and counts all 90%.
    times = SimpleNamespace(user=20.0, nice=70.0, system=0.0, idle=10.0, iowait=0.0)
    assert busy_in(times, 2, own_nice=0) == pytest.approx(0.4)
    assert busy_in(times, 2, own_nice=19) == pytest.approx(1.8)
    assert choose_threads(2, 2, busy_in(times, 2, own_nice=0)) == 2
    assert choose_threads(2, 2, busy_in(times, 2, own_nice=19)) == 1


def test_a_real_niced_process_shows_as_nice_time_that_busy_cores_leaves_out():
    # What the rule above relies on, on this machine's kernel: a niced spinner's CPU time is
    # reported in the sample's "nice" field, and busy_in leaves it out. Another test worker may
    # hold the cores at normal priority, so this reads one sample rather than comparing two.
    import psutil

    if os.nice(0) > 0:
        pytest.skip("this process runs niced itself: other niced jobs compete with it")
    with busy_machine(nice=19) as n:
        times = psutil.cpu_times_percent(interval=0.5)
    niced = times.nice / 100 * n
    if niced < 0.2:
        pytest.skip(f"other work at normal priority left the niced spinners {niced:.2f} cores")
    counted = busy_in(times, n, own_nice=0)
    everything = busy_in(times, n, own_nice=19)
    assert everything - counted == pytest.approx(niced, abs=0.01)
    assert counted <= everything - 0.2


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
