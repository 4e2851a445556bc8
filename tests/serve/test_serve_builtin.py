"""The bundled models behind the server: a MiniLM classifier run and a SmolLM2 chat run."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serve_tiny import make_run

from tunesmith.serve.app import create_app
from tunesmith.serve.engine import Engine

pytestmark = pytest.mark.integration


def test_a_minilm_classifier_run_answers_classify_with_its_labels(tmp_path):
    run = make_run(tmp_path, "rt-lora", "minilm", task="classification", labels=["fresh", "rotten"])
    engine = Engine.load([run])
    try:
        assert set(engine.models) == {"rt-lora"}  # a classification base has no trained head to serve
        with TestClient(create_app(engine)) as client:
            reply = client.post("/v1/classify", json={"model": "rt-lora", "input": ["A quiet triumph.", "Dull."]})
        assert reply.status_code == 200
        data = reply.json()["data"]
        assert [d["index"] for d in data] == [0, 1]
        assert all(set(d["probabilities"]) == {"fresh", "rotten"} for d in data)
        assert data[0]["probabilities"] != data[1]["probabilities"]
    finally:
        engine.close()


def test_a_smollm2_run_and_the_base_answer_chat_under_their_names(tmp_path):
    run = make_run(tmp_path, "chat-lora", "smollm2-135m-instruct")
    engine = Engine.load([run])
    try:
        with TestClient(create_app(engine)) as client:
            names = [m["id"] for m in client.get("/v1/models").json()["data"]]
            assert names == ["chat-lora", "smollm2-135m-instruct"]
            body = {"model": "smollm2-135m-instruct", "max_tokens": 8, "temperature": 0,
                    "messages": [{"role": "user", "content": "What is the capital of France?"}]}
            reply = client.post("/v1/chat/completions", json=body).json()
        assert "Paris" in reply["choices"][0]["message"]["content"]
    finally:
        engine.close()
