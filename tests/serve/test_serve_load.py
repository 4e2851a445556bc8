"""A bounded load test and client disconnects, against a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from serve_tiny import running

from tunesmith.serve.app import create_app
from tunesmith.serve.engine import Engine
from tunesmith.serve.traffic import TrafficLog, read_requests


@pytest.fixture(scope="module")
def served(tiny_runs, tmp_path_factory):
    state = tmp_path_factory.mktemp("load-state")
    engine = Engine.load([tiny_runs["alpha"], tiny_runs["beta"]], max_tokens_cap=240)
    log = TrafficLog(state)
    app = create_app(engine, traffic_log=log)
    with running(app) as url:
        yield url, state, app
    engine.close()
    log.close()


def test_200_requests_at_concurrency_16_over_two_adapters_and_the_base(served):
    import openai

    url, state, app = served
    models = ["alpha", "beta", "tiny-llama"]

    async def main():
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        gate = asyncio.Semaphore(16)

        async def one(i):
            async with gate:
                reply = await client.chat.completions.create(
                    model=models[i % 3], messages=[{"role": "user", "content": f"Request {i}"}],
                    max_tokens=4, temperature=0)
                return reply.id, reply.model

        try:
            return await asyncio.gather(*(one(i) for i in range(200)), return_exceptions=True)
        finally:
            await client.close()

    started = time.monotonic()
    results = asyncio.run(main())
    elapsed = time.monotonic() - started
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert [m for _, m in results] == [models[i % 3] for i in range(200)]
    logged = {r.request_id: r for r in read_requests(state)}
    assert all(logged[rid].status == 200 for rid, _ in results)
    batches = app.state.metrics.batch.collect()[0].samples
    count = next(s.value for s in batches if s.name.endswith("_count"))
    assert count < 200, "no two requests ever shared a batch"
    assert elapsed < 120


def test_a_client_that_leaves_mid_stream_frees_its_rows_and_is_logged_499(served):
    url, state, _ = served
    body = {"model": "alpha", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 200,
            "temperature": 0, "stream": True}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            rid = response.headers["x-request-id"]
            next(response.iter_lines())  # the first event, then hang up
    deadline = time.monotonic() + 30
    while True:
        row = next((r for r in read_requests(state) if r.request_id == rid), None)
        if row is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row is not None and row.status == 499 and "left" in row.error
    assert row.completion_tokens < 200  # generation stopped when the client left
