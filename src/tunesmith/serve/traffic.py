"""The durable traffic log: one sqlite row per served request, committed before the answer.

``traffic.db`` lives in the server's state folder (``tunesmith serve --state-dir``). sqlite in
WAL mode with ``synchronous=NORMAL``: a committed row survives the server being killed
(SIGKILL, a crash); only a power cut can lose the last few commits. Writers share one
connection behind a lock (sqlite serialises writers anyway); readers open their own
connection and see every committed row while the server keeps writing.

Cost: one small INSERT and commit per request (well under a millisecond on a local disk).
The A/B-test and monitoring code reads the rows with :func:`read_requests` and may add its own
tables to the same file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

FILENAME = "traffic.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    ts REAL,                    -- unix time the request arrived
    endpoint TEXT,              -- /v1/chat/completions, /v1/completions, /v1/classify
    model TEXT,                 -- as the client asked
    served_model TEXT,          -- what answered, after resolution
    user TEXT,
    experiment TEXT,
    arm TEXT,
    prompt TEXT,                -- JSON: the messages, the prompt or the input texts
    output TEXT,                -- the generated text (choices joined as a JSON list when n > 1)
    prediction TEXT,            -- JSON: labels and probabilities (classification)
    latency_ms REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    status INTEGER,             -- the HTTP status answered
    error TEXT,
    run_id TEXT,
    adapter_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts);
"""


@dataclass
class TrafficRecord:
    request_id: str
    ts: float
    endpoint: str
    model: str | None = None
    served_model: str | None = None
    user: str | None = None
    experiment: str | None = None
    arm: str | None = None
    prompt: str | None = None
    output: str | None = None
    prediction: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    status: int | None = None
    error: str | None = None
    run_id: str | None = None
    adapter_sha256: str | None = None


_COLUMNS = [f.name for f in fields(TrafficRecord)]


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with the ``requests`` table (created when absent)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


class TrafficLog:
    """Appends :class:`TrafficRecord` rows to ``<state_dir>/traffic.db``; thread-safe."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / FILENAME
        self._conn = connect(self.path)
        self._lock = threading.Lock()

    def write(self, record: TrafficRecord) -> None:
        """Insert and commit ``record`` (a repeated request id replaces the earlier row)."""
        values = asdict(record)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._lock:
            self._conn.execute(
                f"INSERT OR REPLACE INTO requests ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                [values[c] for c in _COLUMNS],
            )
            self._conn.commit()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def read_requests(path: str | Path, *, since: float | None = None) -> Iterator[TrafficRecord]:
    """Every row of a traffic log (a ``traffic.db`` or its state folder), oldest first.

    ``since`` keeps rows with ``ts >= since``. Reads in its own connection, so it works while a
    server is writing. Raises FileNotFoundError when there is no log there.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"no traffic log at {path}")
    conn = sqlite3.connect(path, timeout=30)
    try:
        query = f"SELECT {', '.join(_COLUMNS)} FROM requests"
        params: tuple = ()
        if since is not None:
            query, params = query + " WHERE ts >= ?", (since,)
        for row in conn.execute(query + " ORDER BY ts, request_id", params):
            yield TrafficRecord(*row)
    finally:
        conn.close()
