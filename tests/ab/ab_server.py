"""A real server process for the A/B tests: ``python ab_server.py STATE PORT [--registry URI SPEC ...] RUN ...``.

It wires the app exactly as `tunesmith serve` does with a state folder (engine, traffic log,
the A/B resolver and feedback router) and serves it with uvicorn on 127.0.0.1:PORT, so a test
can SIGKILL it.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    import uvicorn

    from tunesmith.pipelines.ab import serve_extensions
    from tunesmith.serve.app import create_app
    from tunesmith.serve.engine import Engine
    from tunesmith.serve.traffic import TrafficLog

    state, port, *runs = argv
    engine = Engine.load(runs)
    resolvers, routers = serve_extensions(state)
    app = create_app(engine, resolvers=resolvers, routers=routers, traffic_log=TrafficLog(state))
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
