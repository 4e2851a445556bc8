"""`tunesmith train --nproc N`: the same training in N processes (data parallel, DDP).

How it runs: :func:`launch_train` starts ``torchrun --standalone --nproc_per_node N`` with this
module as the program (:func:`tunesmith.train.distributed.launch`); in each of the N processes
:func:`main` rewrites its own arguments (:func:`rank_args`) and runs ``tunesmith train`` with
them. Each process trains ``finetune.batch_size`` examples per micro-batch, so the global batch
is ``batch_size x gradient_accumulation_steps x N``; gradients are averaged over every target of
every process, so the result matches one process with that global batch.

What each process writes: process 0 owns the run folder (``--out``): history, checkpoints,
adapter, MLflow run. Process k > 0 writes to ``<out>/ranks/<k>/`` (its console output in
``console.log``, its copy of the adapter and metrics, no MLflow run), and reads the shared
``checkpoints/`` through a link, so ``--resume`` works for every process.

The documented equivalents (same programs, other launchers)::

    torchrun --standalone --nproc_per_node 2 -m tunesmith.cli.distributed --config F --data D --out O
    accelerate launch --config_file configs/accelerate/ddp_cpu.yaml \\
        -m tunesmith.cli.distributed --config F --data D --out O

Note: ``accelerate launch --cpu --num_processes 2`` silently runs ONE process (accelerate
1.15); configs/accelerate/ddp_cpu.yaml explains the form that starts two.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# The program each process runs: this module.
PROGRAM = ("-m", "tunesmith.cli.distributed")


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


def train_argv(args: argparse.Namespace) -> list[str]:
    """The ``tunesmith train`` arguments of a parsed command line, without ``--nproc``."""
    argv: list[str] = []
    for option, value in (("--config", args.config), ("--data", args.data),
                          ("--out", args.out), ("--resume", args.resume)):
        if value:
            argv += [option, str(value)]
    for override in args.overrides:
        argv += ["--set", override]
    return [*argv, "--no-progress"] if args.no_progress else argv


def rank_args(args: Sequence[str], rank: int) -> list[str]:
    """The ``tunesmith train`` arguments for process ``rank``: process 0 keeps them as given;
    the others write to ``<out>/ranks/<rank>`` and log nothing to MLflow."""
    from tunesmith.train.distributed import rank_folder

    args = list(args)
    if rank == 0:
        return args
    for option in ("--out", "--resume"):
        found = _option_value(args, option)
        if found is not None:
            args = _replace_option(args, option, str(rank_folder(found[1], rank)))
    return [*args, "--set", "tracking.enabled=false"]


def launch_command(train_args: Sequence[str], nproc: int) -> list[str]:
    """The torchrun command line that runs ``tunesmith train TRAIN_ARGS`` in ``nproc`` processes."""
    from tunesmith.train.distributed import torchrun_command

    return torchrun_command([*PROGRAM, *without_nproc(train_args)], nproc)


def launch_train(train_args: Sequence[str], nproc: int) -> int:
    """Run ``tunesmith train TRAIN_ARGS`` in ``nproc`` processes; return the exit code (a
    :data:`tunesmith.train.distributed.Launcher`). Raises UsageError for a process count this
    machine cannot run."""
    from tunesmith.train.distributed import launch

    return launch([*PROGRAM, *without_nproc(train_args)], nproc)


def main(argv: Sequence[str] | None = None) -> int:
    """Inside one process started by torchrun/accelerate: run ``tunesmith train`` for it."""
    from tunesmith import runfiles
    from tunesmith.cli.main import main as tunesmith
    from tunesmith.train.distributed import prepare_rank_folder, process_rank

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "train":  # accept the command name, as in `tunesmith train ...`
        args = args[1:]
    args = without_nproc(args)
    rank = process_rank()
    found = _option_value(args, "--resume") or _option_value(args, "--out")
    folder = prepare_rank_folder(found[1], rank) if found is not None else None
    if folder is not None:
        # The other processes' console output goes to their folder, not the user's terminal.
        log = os.open(folder / runfiles.CONSOLE_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log, 1)
        os.dup2(log, 2)
    return tunesmith(["train", *rank_args(args, rank)])


if __name__ == "__main__":
    sys.exit(main())
