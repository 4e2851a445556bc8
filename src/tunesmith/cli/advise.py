"""CLI commands of this area. Register sub-parsers here; import heavy modules inside handlers."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add this area's commands to the top-level parser."""
