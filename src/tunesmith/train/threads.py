"""How many threads torch computes with on CPU: the cores that other jobs leave free.

torch starts one intra-op thread per core. Each matmul and element-wise op splits its work
over all of them and waits at a barrier for the slowest, so when other processes hold some of
the cores, every op waits for a thread that is not scheduled, and the waiting threads spin.
Measured on a 2-core machine with a load average of 9-12 (docs/performance.md, issue 17): the
MiniLM LoRA benchmark ran several times faster with one thread than with torch's two, and did
several times more work per second of CPU. On a quiet machine all cores are free and nothing
changes.

:func:`cpu_threads` is a context manager the training loop runs in: it samples how busy the
machine's CPUs are (half a second), lowers torch's thread count to the free cores for the run and
restores it afterwards. It never raises the count, and it leaves it alone when the user chose
it (``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set, as torchrun does for several processes) or
when the model is on a GPU. Raises nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# The user's (or the launcher's) own choice of thread count: respected as it is.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
SAMPLE_SECONDS = 0.5


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float:
    """How many cores other processes keep busy: the machine's CPU use over ``seconds``, during
    which this process sleeps (so what is measured is everyone else); see :func:`busy_in`.
    Costs ``seconds``."""
    import psutil

    times = psutil.cpu_times_percent(interval=seconds)
    return busy_in(times, os.cpu_count() or 1, own_nice=os.nice(0))


def busy_in(times: Any, cpus: int, *, own_nice: int) -> float:
    """The busy cores in one sample of the CPU times in percent (psutil's
    ``cpu_times_percent``: ``idle``, ``iowait`` and ``nice`` fields) on ``cpus`` cores.
    Time spent in processes at a lower priority (a positive nice value: a background job) is
    counted as free while this process runs at normal priority (``own_nice <= 0``): the
    scheduler gives this process the cores first."""
    free = times.idle + getattr(times, "iowait", 0.0)
    if own_nice <= 0:
        free += getattr(times, "nice", 0.0)
    return max(0.0, 100.0 - free) / 100 * cpus


def choose_threads(current: int, cores: int, busy: float) -> int:
    """Threads for a CPU run: the free cores (``cores`` less the ``busy`` ones, to the nearest
    whole core), at least 1 and never more than ``current``."""
    return max(1, min(current, round(cores - busy)))


@contextmanager
def cpu_threads(
    log: Callable[[str], None] = lambda _: None,
    *,
    busy: Callable[[], float] = busy_cores,
) -> Iterator[int | None]:
    """Run the block with torch's threads fitted to the free cores; yields the count it set
    (None when it left the count alone). ``busy`` measures the busy cores (half a second)."""
    import torch

    if torch.cuda.is_available() or any(os.environ.get(v) for v in THREAD_VARIABLES):
        yield None
        return
    before = torch.get_num_threads()
    cores = usable_cores()
    taken = busy()
    chosen = choose_threads(before, cores, taken)
    if chosen < before:
        log(f"CPU threads: {chosen} instead of {before}: other jobs keep about {taken:.1f} of "
            f"{cores} cores busy, and threads that wait for a busy core slow every step "
            "(set OMP_NUM_THREADS to choose yourself)")
    torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        torch.set_num_threads(before)
