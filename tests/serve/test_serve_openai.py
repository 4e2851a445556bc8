"""The real `openai` client against a real uvicorn server on loopback."""

from __future__ import annotations

import json

import pytest
from serve_tiny import running

from tunesmith.serve.app import create_app
from tunesmith.serve.traffic import TrafficLog, read_requests


@pytest.fixture(scope="module")
def served(engine, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    log = TrafficLog(state)
    with running(create_app(engine, traffic_log=log)) as url:
        yield url, state
    log.close()


@pytest.fixture(scope="module")
def client(served):
    import openai

    return openai.OpenAI(base_url=served[0] + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_lists_each_adapter_with_its_base_as_parent_and_its_run_folder_as_root(client, tiny_runs):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"alpha", "beta", "tiny-llama"}
    assert models["alpha"].parent == "tiny-llama" and models["alpha"].root == str(tiny_runs["alpha"])
    assert models["tiny-llama"].parent is None


def test_chat_completion_answers_with_provenance_and_is_logged(client, served, tiny_runs):
    raw = client.chat.completions.with_raw_response.create(
        model="alpha", messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0,
        user="u-1")
    reply = raw.parse()
    assert raw.headers["x-request-id"] == reply.id and reply.id.startswith("chatcmpl-")
    assert raw.headers["x-tunesmith-mlflow-run-id"] == "mlflow-alpha"
    assert raw.headers["x-tunesmith-data-sha256"] == "data-alpha"
    assert reply.model == "alpha" and reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5
    provenance = reply.model_extra["provenance"]
    assert provenance["run_id"] == "alpha" and len(provenance["adapter_sha256"]) == 64
    rows = {r.request_id: r for r in read_requests(served[1])}
    row = rows[reply.id]
    assert (row.model, row.served_model, row.user, row.status) == ("alpha", "alpha", "u-1", 200)
    assert row.output == reply.choices[0].message.content and row.completion_tokens == 5
    assert json.loads(row.prompt) == [{"role": "user", "content": "Hello"}]
    assert row.adapter_sha256 == provenance["adapter_sha256"]


def test_adapters_and_base_answer_differently(client):
    def answer(model):
        return client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=6,
            temperature=0).choices[0].message.content

    answers = {m: answer(m) for m in ("alpha", "beta", "tiny-llama")}
    assert len(set(answers.values())) == 3, answers


def test_streaming_chunks_join_to_the_non_streamed_answer(client):
    args = {"model": "beta", "messages": [{"role": "user", "content": "Count"}], "max_tokens": 8,
            "temperature": 0}
    whole = client.chat.completions.create(**args).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **args))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and len(chunks) > 2
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    plain = {"model": "beta", "prompt": "Count", "max_tokens": 8, "temperature": 0}
    whole = client.completions.create(**plain).choices[0].text
    assert "".join(c.choices[0].text for c in client.completions.create(stream=True, **plain)) == whole


def test_completions_with_n_and_seed_are_reproducible_and_differ_per_choice(client):
    args = {"model": "alpha", "prompt": "Once upon a time", "max_tokens": 6, "temperature": 1.5,
            "seed": 7, "n": 3}
    first = [c.text for c in client.completions.create(**args).choices]
    second = [c.text for c in client.completions.create(**args).choices]
    assert first == second and len(set(first)) > 1


def test_stop_string_cuts_the_answer_before_it(client):
    args = {"model": "alpha", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 12,
            "temperature": 0}
    whole = client.chat.completions.create(**args).choices[0].message.content
    stop = whole[3:6]
    cut = client.chat.completions.create(stop=[stop], **args).choices[0]
    assert cut.message.content == whole[: whole.index(stop)] and cut.finish_reason == "stop"
    streamed = client.chat.completions.create(stop=stop, stream=True, **args)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == cut.message.content
