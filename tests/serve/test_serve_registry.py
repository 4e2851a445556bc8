"""`--registry NAME@ALIAS`: resolved through a real MLflow registry (sqlite store) at start."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tunesmith.errors import UsageError
from tunesmith.serve.app import create_app
from tunesmith.serve.engine import Engine
from tunesmith.track.registry import promote, register


def test_name_at_alias_serves_the_version_the_alias_points_at(tiny_runs, in_tmp):
    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    register(tiny_runs["alpha"], "chat", tracking_uri=uri)
    register(tiny_runs["beta"], "chat", tracking_uri=uri)
    promote("chat", 2, "production", tracking_uri=uri)
    promote("chat", 1, "staging", tracking_uri=uri)
    engine = Engine.load([tiny_runs["alpha"]], ["chat@production", "chat@staging"], tracking_uri=uri)
    try:
        # staging is alpha's own adapter: served by the loaded run, not loaded twice.
        assert engine.aliases == {"chat@production": "chat-v2", "chat@staging": "alpha"}
        assert set(engine.models) == {"alpha", "chat-v2", "tiny-llama"}
        prod = engine.lookup("chat@production").provenance
        assert prod.root == "models:/chat/2" and prod.data_sha256 == "data-beta"
        with TestClient(create_app(engine)) as client:
            cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
            assert cards["chat@production"]["root"] == "models:/chat/2"
            body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}
            by_alias = client.post("/v1/chat/completions", json={"model": "chat@production", **body}).json()
            direct = client.post("/v1/chat/completions", json={"model": "chat-v2", **body}).json()
        assert by_alias["model"] == "chat-v2"
        assert by_alias["choices"][0]["message"] == direct["choices"][0]["message"]
    finally:
        engine.close()
    with pytest.raises(UsageError, match="no model version 'chat@nope'"):
        Engine.load([tiny_runs["alpha"]], ["chat@nope"], tracking_uri=uri)
