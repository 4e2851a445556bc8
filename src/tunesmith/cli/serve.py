"""``tunesmith serve``: an OpenAI-compatible server for finetuned runs (one base, many adapters).

Exit codes: 0 stopped cleanly; 2 a bad command line, runs that cannot share a base, or an
unknown registry name.
"""

from __future__ import annotations

import argparse
import sys


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="serve runs over an OpenAI-compatible HTTP API (many adapters on one base)",
        description="Load the base model once and each run's adapter beside it; answer "
        "/v1/chat/completions, /v1/completions, /v1/classify, /v1/models, /health and /metrics. "
        "`model` in a request names a run (its folder name), NAME@ALIAS, or the base model. "
        "Every request is logged to STATE_DIR/traffic.db.",
        epilog="Example: tunesmith serve --run runs/a --run runs/b --port 8000, then "
        "OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='x').",
    )
    serve.add_argument("--run", action="append", default=[], metavar="RUN",
                       help="a run folder to serve (repeatable; all must share one base model)")
    serve.add_argument("--registry", action="append", default=[], metavar="NAME@ALIAS",
                       help="a registered model version to serve, e.g. sentiment@production (repeatable)")
    serve.add_argument("--tracking-uri", help="the MLflow store of --registry (default: "
                       "$MLFLOW_TRACKING_URI, params.yaml, else sqlite:///mlflow.db)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every route but "
                       "/health (default: $TUNESMITH_API_KEY; unset: no key)")
    serve.add_argument("--state-dir", default="serve-state",
                       help="folder of the traffic log traffic.db (default serve-state/)")
    serve.add_argument("--max-batch", type=int, default=32, help="rows per batch at most (default 32)")
    serve.add_argument("--batch-wait-ms", type=float, default=5.0,
                       help="how long a request waits for others to batch with (default 5; 0: no batching)")
    serve.add_argument("--max-tokens-cap", type=int, default=1024,
                       help="the largest max_tokens a request may ask for (default 1024)")
    serve.add_argument("--check", metavar="RUN",
                       help="say which servers can serve RUN (vLLM, llama.cpp, merged weights) and how; "
                       "then exit")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from tunesmith.errors import UsageError

    if args.check:
        from tunesmith.pipelines.serve import servability

        print(servability(args.check).summary())
        return 0
    if not args.run and not args.registry:
        raise UsageError("nothing to serve.", hint="Pass --run RUN_FOLDER (repeatable), --registry "
                         "NAME@ALIAS, or --check RUN.")
    from tunesmith.pipelines.serve import serve

    serve(args.run, args.registry, tracking_uri=args.tracking_uri, host=args.host, port=args.port,
          api_key=args.api_key, state_dir=args.state_dir, max_batch=args.max_batch,
          batch_wait_ms=args.batch_wait_ms, max_tokens_cap=args.max_tokens_cap,
          log=lambda line: print(line, file=sys.stderr, flush=True))
    return 0
