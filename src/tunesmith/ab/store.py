"""Experiments and outcomes in ``experiments.db`` (sqlite, WAL) in the server's state folder.

Assignments are not stored here: every request routed through an experiment is a row of the
server's traffic log (``traffic.db`` beside this file: request id, user, experiment, arm, model,
latency, tokens, time), and the arm is a pure function of (experiment, user), so the two cannot
disagree. This store holds what the traffic log does not: the experiment definitions and the
outcomes people report through ``POST /v1/feedback``.

Durability: WAL journal, one transaction per write, committed before the caller acknowledges
anything, so a SIGKILL or crash of the server after an acknowledgement loses nothing (the
traffic log makes the same choice). ``synchronous=NORMAL``: in WAL mode only a power cut or OS
crash can lose the last commits; FULL would close that too at an fsync per outcome (tens of ms
on a busy disk, measured 3x slower feedback here). A store keeps one connection behind a lock, so the server's threads can share it; the CLI
reads the same file at the same time (WAL readers do not block the writer), and writers wait up
to 30 s for a lock instead of failing. A write costs well under a millisecond.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tunesmith.ab.experiment import Experiment, check_name
from tunesmith.errors import UsageError

DB_NAME = "experiments.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (request_id, name)
);
"""


@dataclass(frozen=True)
class Outcome:
    request_id: str
    name: str
    value: float
    ts: float


class ExperimentStore:
    """The experiments and outcomes of one state folder (created on first use)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection for the store's life: closing the last connection to a WAL database
        # checkpoints it (an fsync, about 17 ms here), which per request would dominate.
        with self._lock:
            if self._conn is None:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                self._conn = conn
            yield self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def create(self, experiment: Experiment) -> Experiment:
        """Store a new experiment; UsageError when the name is taken."""
        check_name(experiment.name)
        with self._connect() as conn:
            try:
                conn.execute(
                    "INSERT INTO experiments (name, definition, status, created) VALUES (?, ?, ?, ?)",
                    (experiment.name, json.dumps(experiment.to_dict()), experiment.status,
                     experiment.created),
                )
            except sqlite3.IntegrityError:
                raise UsageError(
                    f"an experiment named '{experiment.name}' already exists in {self.path}.",
                    hint="Choose another name; `tunesmith ab list` shows the existing ones.",
                ) from None
        return experiment

    def update(self, experiment: Experiment) -> Experiment:
        """Rewrite an existing experiment's definition (status, MLflow run id)."""
        with self._connect() as conn:
            conn.execute("UPDATE experiments SET definition = ?, status = ? WHERE name = ?",
                         (json.dumps(experiment.to_dict()), experiment.status, experiment.name))
        return experiment

    def get(self, name: str) -> Experiment:
        """The experiment ``name``; UsageError naming the known ones otherwise."""
        with self._connect() as conn:
            row = conn.execute("SELECT definition FROM experiments WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [e.name for e in self.list()]
            raise UsageError(
                f"no experiment named '{name}' in {self.path}"
                + (f"; known: {', '.join(known)}." if known else " (it holds none)."),
                hint="Start one with `tunesmith ab start NAME --control MODEL --treatment MODEL`, "
                "and pass the same --state-dir as `tunesmith serve`.",
            )
        return Experiment.from_dict(json.loads(row[0]))

    def list(self) -> list[Experiment]:
        """Every experiment, oldest first (an empty list when the store does not exist yet)."""
        if not self.path.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute("SELECT definition FROM experiments ORDER BY created, name").fetchall()
        return [Experiment.from_dict(json.loads(r[0])) for r in rows]

    def record_outcome(self, request_id: str, name: str, value: float) -> Outcome:
        """Store (or replace: the last report wins) outcome ``name`` of ``request_id``; durable
        when this returns."""
        outcome = Outcome(request_id, name, float(value), time.time())
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO outcomes (request_id, name, value, ts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (request_id, name) DO UPDATE SET value = excluded.value, ts = excluded.ts",
                (outcome.request_id, outcome.name, outcome.value, outcome.ts),
            )
        return outcome

    def outcomes(self, name: str, request_ids: Iterable[str] | None = None) -> dict[str, float]:
        """``{request_id: value}`` of outcome ``name`` (restricted to ``request_ids`` if given)."""
        if not self.path.exists():
            return {}
        with self._connect() as conn:
            rows = conn.execute("SELECT request_id, value FROM outcomes WHERE name = ?",
                                (name,)).fetchall()
        values = {r[0]: float(r[1]) for r in rows}
        if request_ids is not None:
            wanted = set(request_ids)
            values = {k: v for k, v in values.items() if k in wanted}
        return values
