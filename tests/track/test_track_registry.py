"""Registry round trip: register a run, promote by alias, load models:/N@alias and predict."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tunesmith.errors import UsageError


def _round_trip(run: Path, uri: str) -> None:
    import mlflow

    from tunesmith.pipelines.registry import list_versions, promote_version, register_run

    first = register_run(run, "sentiment", tracking_uri=uri)
    second = register_run(run, "sentiment", tracking_uri=uri)
    assert (first.version, second.version) == (1, 2)
    assert first.metrics == {"accuracy": 0.75, "f1": 0.7}

    promote_version("sentiment", 1, "staging", tracking_uri=uri)
    promote_version("sentiment", 2, "production", tracking_uri=uri)
    promote_version("sentiment", 1, "production", tracking_uri=uri)  # the alias moves
    listed = {v.version: v for v in list_versions(tracking_uri=uri)}
    assert set(listed) == {1, 2}
    assert listed[1].aliases == ("production", "staging")
    assert listed[2].aliases == ()

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    expected = json.loads((run.parent / f"{run.name}-expected.json").read_text())
    model = mlflow.pyfunc.load_model("models:/sentiment@production")
    assert model.predict(expected["texts"]) == expected["labels"]

    # An MLflow run id works too: its logged run folder is downloaded and registered. Without
    # finetuned scores in metrics.json (a DVC project evaluates elsewhere), the run's logged
    # finetuned_* metrics go on the version.
    with mlflow.start_run() as logged:
        mlflow.log_artifacts(str(run / "adapter"), artifact_path="adapter")
        mlflow.log_artifact(str(run / "run.json"))
        mlflow.log_artifact(str(run / "config.yaml"))
        mlflow.log_metric("finetuned_accuracy", 0.8)
    third = register_run(logged.info.run_id, "sentiment", tracking_uri=uri)
    assert third.version == 3 and third.run_id == logged.info.run_id
    assert third.metrics == {"accuracy": 0.8}
    promote_version("sentiment", 3, "staging", tracking_uri=uri)
    staged = mlflow.pyfunc.load_model("models:/sentiment@staging")
    assert staged.predict(expected["texts"]) == expected["labels"]

    with pytest.raises(UsageError, match="has no version 7"):
        promote_version("sentiment", 7, "staging", tracking_uri=uri)
    with pytest.raises(UsageError, match="no registered model named 'nope'"):
        promote_version("nope", 1, "staging", tracking_uri=uri)


def test_registry_round_trip_on_sqlite(tiny_run, in_tmp):
    _round_trip(tiny_run, f"sqlite:///{in_tmp / 'mlflow.db'}")


def test_register_rejects_a_folder_that_is_not_a_run(in_tmp):
    from tunesmith.pipelines.registry import register_run

    (in_tmp / "empty").mkdir()
    with pytest.raises(UsageError, match="missing run.json, config.yaml, adapter"):
        register_run(in_tmp / "empty", "m", tracking_uri=f"sqlite:///{in_tmp / 'mlflow.db'}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_registry_round_trip_on_a_real_mlflow_server(tiny_run, tmp_path):
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = (tmp_path / "server.log").open("w")
    # The server stores artifacts under its working directory (mlartifacts/): the tmp dir.
    server = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # No background job runner (a dozen huey workers): the registry does not need it.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "mlflow server did not answer /health in 90 s"
            time.sleep(1)
        _round_trip(tiny_run, uri)
    finally:
        # Stop the server by its process id (its process group: gunicorn/uvicorn workers too).
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


def test_pyfunc_model_generates_for_a_generative_run(tmp_path):
    """The generative path: a tiny random Llama (MiniLM tokenizer, plain prompt template) + LoRA,
    saved as a pyfunc model and loaded back, answers like tunesmith's own server."""
    import mlflow
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunesmith.assets import builtin_model_path
    from tunesmith.config import FinetuneConfig
    from tunesmith.methods import apply_method, save_adapter
    from tunesmith.models import load_model
    from tunesmith.serve.predict import AdapterServer
    from tunesmith.track.pyfunc import TunesmithModel

    tokenizer = AutoTokenizer.from_pretrained(str(builtin_model_path("minilm")))
    torch.manual_seed(0)
    base = tmp_path / "llama"
    LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                 pad_token_id=tokenizer.pad_token_id)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    loaded = load_model(str(base), task="instruction")
    model = apply_method(loaded.model, FinetuneConfig(lora_target_modules=["q_proj", "v_proj"]),
                         task="instruction")
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(0, 0.5)
    adapter = tmp_path / "adapter"
    save_adapter(model, adapter, {"base_model": str(base), "task": "instruction"})
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"max_new_tokens": 5}))

    mlflow.pyfunc.save_model(tmp_path / "pyfunc", python_model=TunesmithModel(),
                             artifacts={"adapter": str(adapter), "meta": str(meta)},
                             pip_requirements=["tunesmith"])
    prompts = ["Name a colour.", "What is two plus two?"]
    answers = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc")).predict(prompts)
    server = AdapterServer()
    server.add("direct", adapter)
    expected = [p.output for p in server.predict(prompts, max_new_tokens=5)]
    assert answers == expected and all(isinstance(a, str) for a in answers)
    assert any(answers)  # random LoRA weights still produce some tokens
