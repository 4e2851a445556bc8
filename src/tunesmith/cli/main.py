"""The ``tunesmith`` command: parse, call one library function, render.

Every command lives in a small module of this package that registers its sub-parser. Those
modules import nothing heavy at module level (no torch, transformers, peft, mlflow), so
``tunesmith --help`` answers in about a second; handlers import what they use.

Errors: a :class:`~tunesmith.errors.TunesmithError` is printed as one paragraph and the process
exits with its code (1 for bad data, 2 for usage); other exceptions too, with a pointer to
``--debug``, which shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tunesmith import __version__
from tunesmith.cli import ab, advise, data, methods, monitor, review, run, serve, track

# Order in --help: the everyday commands first.
COMMAND_MODULES = (run, data, methods, advise, track, serve, ab, monitor, review)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunesmith",
        description=(
            "From a task and some examples to a finetuned model measured against its baseline, "
            "tracked, versioned and ready to serve."
        ),
        epilog="Start with `tunesmith demo`, or `tunesmith config show > params.yaml` then "
        "`tunesmith run --config params.yaml`. `tunesmith COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"tunesmith {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def _quiet_libraries() -> None:
    # Users read our progress bars and tables; library chatter goes to --debug.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    _quiet_libraries()
    if not args.debug:
        import warnings

        warnings.filterwarnings("ignore")
    from tunesmith.errors import TunesmithError

    try:
        code = args.handler(args)
    except TunesmithError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(exc.hint, file=sys.stderr)
        if args.debug:
            raise
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence for people
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("This is unexpected: run again with --debug for the traceback.", file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
