"""Helpers of the review tests (a module of its own: every test folder has a conftest.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import httpx


def copy_run(source, runs_dir, name=None):
    dest = runs_dir / (name or source.name)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("checkpoints", "review"))
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir, *args, cwd=None):
    """`tunesmith review RUN` as a real process; returns (process, base URL) once it answers."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli.main", "review", str(run_dir), "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the review app exited: {proc.stdout.read()}")
        try:
            if httpx.get(url + "/api/results", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("the review app did not answer within 90 s")
