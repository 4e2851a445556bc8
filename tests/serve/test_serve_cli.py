"""`tunesmith serve` as a user runs it: a real process, killed with SIGKILL, its log intact;
`serve --check`; the servability lines at the end of `tunesmith run`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tunesmith.cli.main import main
from tunesmith.serve.servability import check_servability
from tunesmith.serve.traffic import read_requests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_traffic_log_survives_sigkill_of_the_server(tiny_runs, tmp_path):
    import openai

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli.main", "serve", "--run", str(tiny_runs["alpha"]),
         "--run", str(tiny_runs["beta"]), "--port", str(port), "--state-dir", str(state),
         "--api-key", "k3y"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the server did not come up in 120 s"
            time.sleep(0.5)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k3y", max_retries=0)
        ids = [client.chat.completions.create(model=m, messages=[{"role": "user", "content": "Hi"}],
                                              max_tokens=3, user="u").id for m in ("alpha", "beta", "alpha")]
        live = [r.request_id for r in read_requests(state)]  # readable while the server writes
        assert ids == live
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    rows = list(read_requests(state / "traffic.db"))
    assert [(r.request_id, r.served_model, r.status) for r in rows] == [
        (ids[0], "alpha", 200), (ids[1], "beta", 200), (ids[2], "alpha", 200)]


def test_check_prints_each_route_with_its_command_or_reason(tiny_runs, capsys):
    assert main(["serve", "--check", str(tiny_runs["alpha"])]) == 0
    out = capsys.readouterr().out
    assert f"--lora-modules alpha={tiny_runs['alpha'] / 'adapter'} --max-lora-rank 8" in out
    assert main(["serve", "--check", str(tiny_runs["gamma-dora"])]) == 0
    out = capsys.readouterr().out
    assert "no  vLLM: DoRA" in out and "yes merged weights: tunesmith merge" in out


def test_servability_follows_the_adapter_config(tiny_runs, tmp_path):
    import shutil

    run = shutil.copytree(tiny_runs["alpha"], tmp_path / "odd-rank")
    config_path = run / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["r"] = 12
    config_path.write_text(json.dumps(config))
    routes = {r.server: r for r in check_servability(run).routes}
    assert not routes["vLLM"].works and "rank 12" in routes["vLLM"].reason
    assert routes["llama.cpp"].works and routes["merged weights"].works
    config["r"], config["modules_to_save"] = 8, ["lm_head"]
    config_path.write_text(json.dumps(config))
    routes = {r.server: r for r in check_servability(run).routes}
    assert not routes["vLLM"].works and "lm_head" in routes["vLLM"].reason
    classifier = {r.server: r for r in check_servability(tiny_runs["sentiment"]).routes}
    assert not classifier["vLLM"].works and classifier["tunesmith serve"].works


def test_serve_without_runs_is_a_usage_error(capsys):
    assert main(["serve"]) == 2
    assert "nothing to serve" in capsys.readouterr().err


def test_run_ends_with_the_servability_check(in_tmp, tiny_runs):
    from tunesmith.config import validate_config
    from tunesmith.pipelines.run import run

    rows = [{"question": f"What is {a} plus {b}?", "answer": str(a + b)} for a in range(6) for b in range(5)]
    (in_tmp / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = validate_config({
        "prepare": {"dataset": str(in_tmp / "qa.jsonl"), "max_length": 64, "dedup": "none"},
        "finetune": {"model": str(tiny_runs["alpha"].parents[1] / "tiny-llama"), "max_steps": 1,
                     "batch_size": 4},
        "evaluation": {"generation_limit": 1, "max_new_tokens": 2, "few_shot_k": 0,
                       "forgetting_text": None},
        "tracking": {"enabled": False},
    })
    lines = []
    run(cfg, in_tmp / "run", progress=False, log=lines.append)
    assert lines[-1].startswith(f"serving {in_tmp / 'run'} (lora, qa):")
    assert "yes vLLM: vllm serve" in lines[-1]
