"""Bad input gets a 4xx in OpenAI's error shape, never a 500, and the server keeps serving.

In process: Starlette's TestClient drives the ASGI app through httpx, no socket.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tunesmith.serve.app import Resolution, create_app
from tunesmith.serve.traffic import TrafficLog, read_requests

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def http(engine, state):
    log = TrafficLog(state)
    with TestClient(create_app(engine, traffic_log=log), raise_server_exceptions=False) as client:
        yield client
    log.close()


def _chat(**changes):
    return {"model": "alpha", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
            "temperature": 0, **changes}


def _error(response, status):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def _still_serving(http):
    assert http.post(CHAT, json=_chat()).status_code == 200


def test_malformed_json_is_400(http):
    error = _error(http.post(CHAT, content=b'{"model": "alpha", "messages": [', 
                             headers={"content-type": "application/json"}), 400)
    assert "not valid JSON" in error["message"]
    _still_serving(http)


@pytest.mark.parametrize(("field", "value"), [
    ("max_tokens", "many"), ("temperature", "hot"), ("temperature", 5), ("n", 0), ("n", 99),
    ("messages", "hello"), ("stop", 3), ("top_p", 0), ("seed", "x"),
])
def test_a_field_of_the_wrong_type_or_range_is_400_naming_it(http, field, value):
    error = _error(http.post(CHAT, json=_chat(**{field: value})), 400)
    assert error["param"] == field and field in error["message"]
    _still_serving(http)


def test_an_empty_message_list_is_400(http):
    error = _error(http.post(CHAT, json=_chat(messages=[])), 400)
    assert error["param"] == "messages"


def test_an_unknown_model_is_404_listing_the_served_models(http):
    error = _error(http.post(CHAT, json=_chat(model="gpt-4")), 404)
    assert "gpt-4" in error["message"] and "alpha, beta, tiny-llama" in error["message"]
    assert error["code"] == "model_not_found"
    _still_serving(http)


def test_a_prompt_longer_than_the_context_says_by_how_much(http, engine):
    long = "word " * 300  # the tiny Llama's context is 256 tokens
    error = _error(http.post(CHAT, json=_chat(messages=[{"role": "user", "content": long}], max_tokens=10)), 400)
    prompt_tokens = len(engine.chat_prompt([{"role": "user", "content": long}]))
    assert f"{prompt_tokens + 10 - 256} tokens more than the model's context of 256" in error["message"]
    assert error["code"] == "context_length_exceeded"
    _still_serving(http)


def test_max_tokens_above_the_cap_is_400(http):
    error = _error(http.post(CHAT, json=_chat(max_tokens=65)), 400)  # the fixture's cap is 64
    assert "at most 64" in error["message"] and error["param"] == "max_tokens"
    assert http.post(CHAT, json=_chat(max_tokens=64)).status_code == 200


def test_classify_on_a_generative_model_and_chat_on_a_classifier_are_400(http, classifier):
    error = _error(http.post("/v1/classify", json={"model": "alpha", "input": "good"}), 400)
    assert "/v1/chat/completions" in error["message"]
    with TestClient(create_app(classifier), raise_server_exceptions=False) as other:
        error = _error(other.post(CHAT, json=_chat(model="sentiment")), 400)
        assert "/v1/classify" in error["message"]


def test_an_unknown_route_and_a_wrong_method_keep_the_error_shape(http):
    _error(http.get("/v1/nothing"), 404)
    _error(http.get(CHAT), 405)


def test_rejected_requests_are_logged_with_status_and_error(http, state):
    response = http.post(CHAT, json=_chat(model="nope", user="u-9"))
    rid = response.headers["x-request-id"]
    row = next(r for r in read_requests(state) if r.request_id == rid)
    assert (row.status, row.model, row.user) == (404, "nope", "u-9") and "nope" in row.error
    response = http.post(CHAT, json=_chat(temperature="hot"), headers={"X-User-Id": "u-10"})
    row = next(r for r in read_requests(state) if r.request_id == response.headers["x-request-id"])
    assert (row.status, row.model, row.user) == (400, "alpha", "u-10")


def test_api_key_guards_every_route_but_health(engine):
    with TestClient(create_app(engine, api_key="s3cret"), raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200
        for response in (client.get("/v1/models"), client.get("/metrics"),
                         client.post(CHAT, json=_chat(), headers={"Authorization": "Bearer wrong"})):
            assert _error(response, 401)["code"] == "invalid_api_key"
        ok = client.post(CHAT, json=_chat(), headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_extra_resolvers_come_first_and_extra_routers_are_mounted(engine, tmp_path):
    from fastapi import APIRouter

    def ab(model, user):
        if model == "ab:demo":
            return Resolution("beta" if user == "b-user" else "alpha", experiment="demo", arm=user)
        return None

    router = APIRouter()

    @router.get("/v1/extra")
    def extra():
        return {"ok": True}

    log = TrafficLog(tmp_path)
    app = create_app(engine, resolvers=[ab], routers=[router], traffic_log=log)
    with TestClient(app) as client:
        reply = client.post(CHAT, json=_chat(model="ab:demo", user="b-user")).json()
        assert reply["model"] == "beta" and client.get("/v1/extra").json() == {"ok": True}
    row = next(iter(read_requests(tmp_path)))
    assert (row.model, row.served_model, row.experiment, row.arm) == ("ab:demo", "beta", "demo", "b-user")


def test_metrics_count_requests_errors_tokens_and_batches(engine):
    with TestClient(create_app(engine)) as client:
        client.post(CHAT, json=_chat(max_tokens=3))
        client.post(CHAT, json=_chat(model="nope"))
        text = client.get("/metrics").text
    assert 'tunesmith_requests_total{endpoint="/v1/chat/completions",model="alpha",status="200"} 1.0' in text
    assert 'tunesmith_request_errors_total{endpoint="/v1/chat/completions",status="404"} 1.0' in text
    assert 'tunesmith_tokens_total{kind="completion",model="alpha"} 3.0' in text
    assert 'tunesmith_batch_rows_per_model_count{model="alpha"}' in text


def test_too_many_inputs_in_one_request_is_400(http, classifier):
    from tunesmith.serve.schema import MAX_INPUTS

    error = _error(http.post("/v1/completions", json={"model": "alpha", "prompt": ["x"] * (MAX_INPUTS + 1)}), 400)
    assert error["param"] == "prompt" and f"at most {MAX_INPUTS}" in error["message"]
    with TestClient(create_app(classifier)) as other:
        error = _error(other.post("/v1/classify", json={"model": "sentiment", "input": ["x"] * 300}), 400)
        assert error["param"] == "input"
        ok = other.post("/v1/classify", json={"model": "sentiment", "input": "a great film"})
        assert ok.status_code == 200 and ok.json()["data"][0]["label"] in {"neg", "pos"}
