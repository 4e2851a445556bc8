"""Serving throughput and latency of `tunesmith serve` on loopback, and a bounded load test.

Makes two short LoRA runs of SmolLM2-135M-Instruct (chitchat and fanoutqa, a few steps each:
their weights barely move, which changes nothing about serving cost) unless --runs gives two,
starts `tunesmith serve` in a child process for each setting and sends chat requests from here
with httpx (asyncio), counting completion tokens from each answer's usage:

- batching on (5 ms gathering window): concurrency 1, 8 and 32, with one adapter and with the
  requests spread over the two adapters and the base;
- batching off (--batch-wait-ms 0, one request at a time): concurrency 1 and 8, one adapter;
- then the load test: --load-requests (default 2,000) at concurrency 32 on a batching server,
  with the server's resident memory before (after a warm-up) and after.

    .venv/bin/python bench/serve.py                       # the full table and the load test
    .venv/bin/python bench/serve.py --requests 16 --load-requests 200   # a quick look

Writes bench/results/serve.json. The figures depend on the machine and on what else runs on
it: the load average during the run is recorded beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "serve.json"
QUESTIONS = [
    "What is a good name for a cat?", "How do I boil an egg?", "Tell me a fun fact about owls.",
    "What should I pack for a weekend trip?", "Why is the sky blue?", "Suggest a short poem title.",
    "How can I sleep better?", "What is the capital of Italy?",
]


def make_runs(folder: Path) -> list[Path]:
    """Two real (short) LoRA runs of SmolLM2 in ``folder``; reused when already there."""
    sys.path.insert(0, str(ROOT / "src"))
    from tunesmith.config import validate_config
    from tunesmith.pipelines.run import run

    runs = []
    for name, dataset in (("chat-lora", "chitchat"), ("qa-lora", "fanoutqa")):
        out = folder / name
        runs.append(out)
        if (out / "adapter").is_dir():
            continue
        print(f"making run {name} ({dataset}, 2 steps) ...", file=sys.stderr, flush=True)
        cfg = validate_config({
            "prepare": {"dataset": dataset, "limit": 60, "max_length": 128},
            "finetune": {"model": "smollm2-135m-instruct", "method": "lora", "max_steps": 2, "batch_size": 2},
            "evaluation": {"generation_limit": 1, "max_new_tokens": 4, "few_shot_k": 0,
                           "forgetting_text": None, "num_samples": 1},
            "tracking": {"enabled": False},
        })
        run(cfg, out, progress=False, log=lambda line: print(line, file=sys.stderr, flush=True))
    return runs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`tunesmith serve` in a child process, on a free port."""

    def __init__(self, runs: list[Path], state: Path, batch_wait_ms: float, threads: int) -> None:
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        args = [sys.executable, "-m", "tunesmith.cli.main", "serve", "--port", str(self.port),
                "--state-dir", str(state), "--batch-wait-ms", str(batch_wait_ms), "--threads", str(threads)]
        for run in runs:
            args += ["--run", str(run)]
        self.proc = subprocess.Popen(args, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    self.models = httpx.get(self.url + "/v1/models").json()["data"]
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tunesmith serve did not start")
            time.sleep(0.5)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


async def send(url: str, models: list[str], n: int, concurrency: int, max_tokens: int) -> dict:
    """``n`` chat requests, ``concurrency`` at a time, models taken in turn from ``models``."""
    import httpx

    latencies: list[float] = []
    tokens = errors = 0
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one(i: int) -> None:
            nonlocal tokens, errors
            body = {"model": models[i % len(models)], "max_tokens": max_tokens, "temperature": 0,
                    "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]}
            async with gate:
                start = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body)
                latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors += 1
            else:
                tokens += response.json()["usage"]["completion_tokens"]

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests": n, "concurrency": concurrency, "errors": errors, "seconds": round(elapsed, 2),
            "requests_per_s": round(n / elapsed, 2), "tokens_per_s": round(tokens / elapsed, 1),
            "completion_tokens": tokens, "p50_s": round(q[49], 3), "p95_s": round(q[94], 3),
            "p99_s": round(q[98], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs=2, metavar="RUN", help="two run folders on one causal base")
    parser.add_argument("--runs-dir", default=str(Path(tempfile.gettempdir()) / "tunesmith-bench-serve"),
                        help="where the bench's own runs are made (and reused)")
    parser.add_argument("--requests", type=int, default=32,
                        help="requests per batched cell (at least the concurrency; default 32)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1,
                        help="the server's torch threads (default 1: on a shared machine two threads "
                        "waiting on each other made decoding 13x slower here)")
    parser.add_argument("--load-requests", type=int, default=2000)
    parser.add_argument("--load-max-tokens", type=int, default=8)
    args = parser.parse_args()
    runs = [Path(r) for r in args.runs] if args.runs else make_runs(Path(args.runs_dir))
    state = Path(tempfile.mkdtemp(prefix="tunesmith-bench-state-"))
    loads = [os.getloadavg()[0]]
    cells = []
    # Batching off serves one request at a time, so its cells take longest: c=1 and c=8 with one
    # adapter are enough for the comparison (c=32 would only queue longer).
    plan = {True: [(s, c) for s in ("one adapter", "2 adapters + base") for c in (1, 8, 32)],
            False: [("one adapter", 1), ("one adapter", 8)]}
    for batching, cells_planned in plan.items():
        server = Server(runs, state, 5.0 if batching else 0.0, args.threads)
        try:
            names = [m["id"] for m in server.models]
            base = next(n for n in names if n not in {r.name for r in runs})
            spreads = {"one adapter": [runs[0].name], "2 adapters + base": [runs[0].name, runs[1].name, base]}
            asyncio.run(send(server.url, spreads["one adapter"], 2, 2, 4))  # warm-up
            for spread, concurrency in cells_planned:
                if concurrency == 1:
                    n = 4
                else:
                    n = max(args.requests, concurrency) if batching else max(16, args.requests // 2)
                cell = asyncio.run(send(server.url, spreads[spread], n, concurrency, args.max_tokens))
                cell.update(batching="on" if batching else "off", spread=spread)
                loads.append(os.getloadavg()[0])
                print(json.dumps(cell), flush=True)
                cells.append(cell)
        finally:
            server.stop()
    server = Server(runs, state, 5.0, args.threads)
    try:
        names = [m["id"] for m in server.models]
        asyncio.run(send(server.url, names, 64, 32, args.load_max_tokens))  # warm-up
        before = server.rss_mb()
        load = asyncio.run(send(server.url, names, args.load_requests, 32, args.load_max_tokens))
        after = server.rss_mb()
        load.update(rss_before_mb=round(before, 1), rss_after_mb=round(after, 1),
                    rss_growth=round(after / before - 1, 4), models=names)
        loads.append(os.getloadavg()[0])
        print(json.dumps(load), flush=True)
    finally:
        server.stop()

    def tokens_per_s(batching: str, spread: str, concurrency: int) -> float:
        return next(c["tokens_per_s"] for c in cells
                    if (c["batching"], c["spread"], c["concurrency"]) == (batching, spread, concurrency))

    goals = {
        "batched_c8_vs_one_at_a_time": round(tokens_per_s("on", "one adapter", 8)
                                             / tokens_per_s("off", "one adapter", 1), 2),
        "mixed_vs_single_c8_batched": round(tokens_per_s("on", "2 adapters + base", 8)
                                            / tokens_per_s("on", "one adapter", 8), 2),
        "mixed_vs_single_c32_batched": round(tokens_per_s("on", "2 adapters + base", 32)
                                             / tokens_per_s("on", "one adapter", 32), 2),
    }
    result = {"model": "smollm2-135m-instruct", "runs": [r.name for r in runs], "max_tokens": args.max_tokens,
              "threads": args.threads,
              "cells": cells, "load_test": load, "goals": goals,
              "load_average_1min": {"min": min(loads), "max": max(loads)},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(goals))
    return 0 if load["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
