"""Training in N processes (data parallel, DDP): what the launcher needs from the library.

The launcher itself (the ``--nproc`` command lines, the program each process runs) lives in
:mod:`tunesmith.cli.distributed`; this module gives it the parts that are not about a command
line: :func:`launch` runs a program under ``torchrun --standalone`` in N processes,
:func:`process_rank` says which process this is, and :func:`prepare_rank_folder` gives process
k > 0 its own folder (``<run>/ranks/<k>/``) that reads the shared ``checkpoints/`` through a
link, so ``--resume`` works for every process. The training loop builds its ``Accelerator``
from the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR): on a GPU machine one process
per GPU over NCCL, on CPU ``Accelerator(cpu=True)`` over gloo.

Cost: on CPU each process gets ``cpu_count // N`` threads, so N processes on a small machine
mostly trade threads for processes; DDP pays off with one process per GPU or per socket.
Raises UsageError for a process count the machine cannot run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tunesmith import runfiles
from tunesmith.errors import UsageError

# Set by torchrun (and accelerate launch) in every process it starts.
RANK_ENV = "RANK"

# A launcher: ``tunesmith train`` arguments and a process count -> the exit code. The CLI's is
# tunesmith.cli.distributed.launch_train; pipelines take one so they never import the CLI.
Launcher = Callable[[Sequence[str], int], int]


def process_rank() -> int:
    """This process's rank among those torchrun started (0 outside a distributed launch)."""
    return int(os.environ.get(RANK_ENV, "0"))


def rank_folder(run_dir: str | Path, rank: int) -> Path:
    """Where process ``rank`` > 0 writes: ``<run_dir>/ranks/<rank>``."""
    return Path(run_dir) / runfiles.RANKS_DIR / str(rank)


def prepare_rank_folder(run_dir: str | Path, rank: int) -> Path | None:
    """Create process ``rank``'s folder with a link to the shared checkpoints and return it;
    None for process 0, which owns ``run_dir`` itself."""
    if rank == 0:
        return None
    folder = rank_folder(run_dir, rank)
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / runfiles.CHECKPOINTS_DIR
    if not link.is_symlink():
        # Only process 0 writes checkpoints; the others read them back on --resume.
        link.symlink_to(Path("..", "..", runfiles.CHECKPOINTS_DIR), target_is_directory=True)
    return folder


def torchrun_command(program: Sequence[str], nproc: int) -> list[str]:
    """The command line that runs ``python PROGRAM`` (e.g. ``-m module args``) in ``nproc``
    processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", *program]


def launch(program: Sequence[str], nproc: int) -> int:
    """Run ``python PROGRAM`` in ``nproc`` processes under torchrun; return the exit code.

    Raises UsageError for fewer than one process or more than the machine has GPUs.
    """
    import torch

    if nproc < 1:
        raise UsageError(f"--nproc must be 1 or more (got {nproc}).")
    gpus = torch.cuda.device_count()
    if gpus and nproc > gpus:
        raise UsageError(
            f"--nproc {nproc} asks for more processes than this machine has GPUs ({gpus}).",
            hint=f"Use --nproc {gpus} (one process per GPU).",
        )
    env = dict(os.environ)
    if not gpus:
        # N processes share the cores: without this each would start cpu_count threads.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(torchrun_command(program, nproc), env=env)
