"""`tunesmith serve`: load runs on one base and serve them over HTTP; `serve --check RUN`.

:func:`serve` blocks until the server is stopped (Ctrl-C or SIGTERM). The work is in
:mod:`tunesmith.serve` (engine, app, traffic log); this wires them to uvicorn.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from tunesmith.serve.servability import Servability, check_servability

API_KEY_ENV = "TUNESMITH_API_KEY"


def servability(run: str | Path) -> Servability:
    """Which servers can serve ``run`` and the command for each (milliseconds: no model loads)."""
    return check_servability(run)


def serve(
    runs: Sequence[str | Path] = (),
    registry: Sequence[str] = (),
    *,
    tracking_uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    state_dir: str | Path = "serve-state",
    max_batch: int = 32,
    batch_wait_ms: float = 5.0,
    max_tokens_cap: int = 1024,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Serve ``runs`` (folders) and ``registry`` models (``NAME@ALIAS``) until stopped.

    The API key is ``api_key`` or $TUNESMITH_API_KEY (none: no auth). ``threads`` sets torch's
    CPU threads (None: torch's default, one per core). Raises UsageError for
    runs that cannot share a base or unknown registry names, before anything listens.
    """
    import uvicorn

    from tunesmith.pipelines.registry import resolve_tracking_uri
    from tunesmith.serve.app import create_app
    from tunesmith.serve.engine import Engine
    from tunesmith.serve.traffic import TrafficLog

    if threads:
        import torch

        torch.set_num_threads(threads)
    uri = resolve_tracking_uri(tracking_uri) if registry else None
    engine = Engine.load(runs, registry, tracking_uri=uri, log=log, max_batch=max_batch,
                         max_wait_ms=batch_wait_ms, max_tokens_cap=max_tokens_cap)
    traffic = TrafficLog(state_dir)
    key = api_key or os.environ.get(API_KEY_ENV) or None
    from tunesmith.pipelines.ab import serve_extensions  # ab:NAME experiments, POST /v1/feedback

    resolvers, routers = serve_extensions(state_dir, engine)
    app = create_app(engine, resolvers=resolvers, routers=routers, traffic_log=traffic, api_key=key)
    log(f"serving {', '.join(engine.model_names())} on http://{host}:{port}/v1 "
        f"(traffic log {traffic.path}; {'bearer API key required' if key else 'no API key'})")
    try:
        # log_config=None: serving leaves the process's logging as it found it (library first).
        uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None)
    finally:
        engine.close()
        traffic.close()
