"""A real `tunesmith serve` process killed with SIGKILL mid-traffic loses no acknowledged
record (request or feedback), and after a restart every user is still on the same arm."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tunesmith.ab.store import ExperimentStore
from tunesmith.pipelines.ab import start_experiment
from tunesmith.serve.traffic import read_requests

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(state: Path, runs: dict) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith.cli.main", "serve",
                             "--run", str(runs["control"]), "--run", str(runs["treatment"]),
                             "--port", str(port), "--state-dir", str(state)], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not answer /health in 120 s")


def test_sigkill_mid_traffic_loses_no_acknowledged_record(ab_runs, tmp_path):
    state = tmp_path / "state"
    start_experiment("durable", str(ab_runs["control"]), str(ab_runs["treatment"]), state_dir=state)
    proc, url = _start(state, ab_runs)
    acked: dict[str, tuple[str, str]] = {}  # request id -> (user, served model)
    feedback: dict[str, float] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def user_traffic(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                user = f"user-{worker}-{i % 15}"
                i += 1
                try:
                    reply = client.post("/v1/classify", json={"model": "ab:durable", "input": "fine film",
                                                              "user": user})
                    if reply.status_code != 200:
                        continue
                    body = reply.json()
                    with lock:
                        acked[body["id"]] = (user, body["model"])
                    value = i % 2
                    if client.post("/v1/feedback", json={"request_id": body["id"], "outcome": "click",
                                                         "value": value}).status_code == 200:
                        with lock:
                            feedback[body["id"]] = float(value)
                except httpx.TransportError:
                    return  # the server is gone

    workers = [threading.Thread(target=user_traffic, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    while len(acked) < 80:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-traffic: the workers are still sending
    proc.wait(timeout=30)
    stop.set()
    for w in workers:
        w.join(timeout=30)

    rows = {r.request_id: r for r in read_requests(state)}
    missing = [rid for rid in acked if rid not in rows]
    assert not missing, f"{len(missing)} acknowledged requests lost"
    for rid, (user, served) in acked.items():
        assert (rows[rid].user, rows[rid].served_model, rows[rid].experiment) == (user, served, "durable")
    stored = ExperimentStore(state).outcomes("click")
    assert {rid: stored.get(rid) for rid in feedback} == feedback
    arm_of = {user: served for user, served in acked.values()}
    assert set(arm_of.values()) == {"sentiment-a", "sentiment-b"}

    proc, url = _start(state, ab_runs)  # restart on the same state folder
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for user, served in arm_of.items():
                reply = client.post("/v1/classify", json={"model": "ab:durable", "input": "again", "user": user})
                assert reply.json()["model"] == served, user
            late = client.post("/v1/feedback", json={"request_id": next(iter(acked)), "outcome": "click",
                                                     "value": True})
            assert late.status_code == 200  # requests from before the kill still take feedback
    finally:
        proc.terminate()
        proc.wait(timeout=30)
