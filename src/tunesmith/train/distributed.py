"""`tunesmith train --nproc N`: the same training in N processes (data parallel, DDP).

How it runs: ``launch`` starts ``torchrun --standalone --nproc_per_node N`` with this module as
the program; each of the N processes rewrites its own arguments (:func:`rank_args`) and
replaces itself (``exec``) with ``python -m tunesmith.cli.main train ...``. The training loop
builds its ``Accelerator`` from the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR):
on a GPU machine one process per GPU over NCCL, on CPU ``Accelerator(cpu=True)`` over gloo.
Each process trains ``finetune.batch_size`` examples per micro-batch, so the global batch is
``batch_size x gradient_accumulation_steps x N``; gradients are averaged over every target of
every process, so the result matches one process with that global batch.

What each process writes: process 0 owns the run folder (``--out``): history, checkpoints,
adapter, MLflow run. Process k > 0 writes to ``<out>/ranks/<k>/`` (its console output in
``console.log``, its copy of the adapter and metrics, no MLflow run), and reads the shared
``checkpoints/`` through a link, so ``--resume`` works for every process.

The documented equivalents (same programs, other launchers)::

    torchrun --standalone --nproc_per_node 2 -m tunesmith.train.distributed --config F --data D --out O
    accelerate launch --config_file configs/accelerate/ddp_cpu.yaml \\
        -m tunesmith.train.distributed --config F --data D --out O

Note: ``accelerate launch --cpu --num_processes 2`` silently runs ONE process (accelerate
1.15); configs/accelerate/ddp_cpu.yaml explains the form that starts two.

Cost: on CPU each process gets ``cpu_count // N`` threads, so N processes on a small machine
mostly trade threads for processes; DDP pays off with one process per GPU or per socket.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesmith.errors import UsageError

# Set by torchrun (and accelerate launch) in every process it starts.
RANK_ENV = "RANK"


def in_distributed_process() -> bool:
    """True inside a process started by torchrun/accelerate (so it must not launch again)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def _option_value(args: Sequence[str], name: str) -> tuple[int, str] | None:
    """(index, value) of ``--name VALUE`` or ``--name=VALUE`` in ``args``, or None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return i, args[i + 1]
        if arg.startswith(name + "="):
            return i, arg.split("=", 1)[1]
    return None


def _replace_option(args: list[str], name: str, value: str) -> list[str]:
    found = _option_value(args, name)
    if found is None:
        return args
    i, _ = found
    width = 1 if args[i].startswith(name + "=") else 2
    return [*args[:i], name, value, *args[i + width:]]


def without_nproc(args: Sequence[str]) -> list[str]:
    """``tunesmith train`` arguments with ``--nproc N`` taken out (the processes run one each)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def train_argv(args: Any) -> list[str]:
    """The ``tunesmith train`` arguments of a parsed command line, without ``--nproc``."""
    argv: list[str] = []
    for option, value in (("--config", args.config), ("--data", args.data),
                          ("--out", args.out), ("--resume", args.resume)):
        if value:
            argv += [option, str(value)]
    for override in args.overrides:
        argv += ["--set", override]
    return [*argv, "--no-progress"] if args.no_progress else argv


def rank_folder(run_dir: str | Path, rank: int) -> Path:
    """Where process ``rank`` > 0 writes: ``<run_dir>/ranks/<rank>``."""
    return Path(run_dir) / "ranks" / str(rank)


def rank_args(args: Sequence[str], rank: int) -> list[str]:
    """The ``tunesmith train`` arguments for process ``rank``: process 0 keeps them as given;
    the others write to ``<out>/ranks/<rank>`` and log nothing to MLflow."""
    args = list(args)
    if rank == 0:
        return args
    for option in ("--out", "--resume"):
        found = _option_value(args, option)
        if found is not None:
            args = _replace_option(args, option, str(rank_folder(found[1], rank)))
    return [*args, "--set", "tracking.enabled=false"]


def _prepare_rank_folder(args: Sequence[str], rank: int) -> Path | None:
    """Create process ``rank``'s folder with a link to the shared checkpoints; return it."""
    found = _option_value(args, "--resume") or _option_value(args, "--out")
    if rank == 0 or found is None:
        return None
    folder = rank_folder(found[1], rank)
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "checkpoints"
    if not link.is_symlink():
        # Only process 0 writes checkpoints; the others read them back on --resume.
        link.symlink_to(Path("..", "..", "checkpoints"), target_is_directory=True)
    return folder


def launch_command(train_args: Sequence[str], nproc: int) -> list[str]:
    """The torchrun command line that runs ``tunesmith train TRAIN_ARGS`` in ``nproc`` processes."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", "-m", "tunesmith.train.distributed", *train_args,
    ]


def launch(train_args: Sequence[str], nproc: int) -> int:
    """Run ``tunesmith train TRAIN_ARGS`` in ``nproc`` processes; return the exit code.

    Raises UsageError for a process count this machine cannot run.
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
    return subprocess.call(launch_command(without_nproc(train_args), nproc), env=env)


def main(argv: Sequence[str] | None = None) -> int:
    """Inside one process started by torchrun/accelerate: become ``tunesmith train`` for it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "train":  # accept the command name, as in `tunesmith train ...`
        args = args[1:]
    args = without_nproc(args)
    rank = int(os.environ.get(RANK_ENV, "0"))
    folder = _prepare_rank_folder(args, rank)
    if folder is not None:
        # The other processes' console output goes to their folder, not the user's terminal.
        log = os.open(folder / "console.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
    command = [sys.executable, "-m", "tunesmith.cli.main", "train", *rank_args(args, rank)]
    sys.stdout.flush()
    os.execv(sys.executable, command)
    return 1  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main())
