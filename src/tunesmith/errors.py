"""Errors meant for people.

Every error tunesmith raises on purpose is a :class:`TunesmithError`: the CLI prints its message
as one paragraph (no traceback unless ``--debug``) and exits with its ``exit_code``. The message
says what was wrong, where (file, line, field) and what to do about it.
"""

from __future__ import annotations


class TunesmithError(Exception):
    """A failure the user can fix. ``exit_code`` is what the CLI returns (1 by default)."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n{hint}")


class ConfigError(TunesmithError):
    """A bad config file, key or value (usage error: exit 2)."""

    exit_code = 2


class UsageError(TunesmithError):
    """A bad command line (exit 2)."""

    exit_code = 2


class DataError(TunesmithError):
    """Data that cannot be used: a missing or empty file, no usable records, too-rare labels."""


class AssetError(TunesmithError):
    """An unknown built-in model or dataset name, or a built-in whose package is not installed."""
