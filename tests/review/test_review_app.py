"""The review app's routes in-process, and the real server under SIGKILL."""

from __future__ import annotations

import html
import json
import os
import signal
import socket

import httpx
import pytest
from fastapi.testclient import TestClient
from review_runs import start_server  # noqa: E402

from tunesmith.pipelines.review import open_review
from tunesmith.review.app import create_app
from tunesmith.review.pairs import open_run
from tunesmith.review.session import store_for

# One worker builds the tiny runs of conftest.py once for every review test.
pytestmark = pytest.mark.xdist_group("review-runs")
quiet = {"log": lambda _: None}


@pytest.fixture
def gen_client(gen_run):
    session = open_review(gen_run, ["baseline"], seed=3, **quiet)
    return TestClient(create_app(session)), session


def test_vote_api_saves_progress_and_answers_bad_votes_with_4xx_json(gen_client):
    client, session = gen_client
    pair = session.pairs()[0]
    ok = client.post("/api/votes", json={"pair_id": pair.id, "reviewer": "ann", "choice": "left"})
    assert ok.status_code == 200
    assert ok.json()["progress"] == {"done": 1, "total": 3}
    assert ok.json()["winner"] == ("a" if pair.left_is_a else "b")
    unknown = client.post("/api/votes", json={"pair_id": "nope", "reviewer": "ann", "choice": "left"})
    assert unknown.status_code == 404 and "no item 'nope'" in unknown.json()["error"]["message"]
    bad = client.post("/api/votes", json={"pair_id": pair.id, "reviewer": "ann", "choice": "maybe"})
    assert bad.status_code == 400 and "unknown choice" in bad.json()["error"]["message"]
    nameless = client.post("/api/votes", json={"pair_id": pair.id, "reviewer": " ", "choice": "tie"})
    assert nameless.status_code == 400
    assert client.post("/api/votes", json={"pair_id": pair.id}).status_code == 422
    # the app kept serving, and voting again replaces the vote
    client.post("/api/votes", json={"pair_id": pair.id, "reviewer": "ann", "choice": "tie", "note": "same"})
    [vote] = session.store.votes("ann")
    assert (vote.choice, vote.winner, vote.note) == ("tie", "tie", "same")
    assert client.get("/api/progress", params={"reviewer": "ann"}).json() == {"done": 1, "total": 3}


def test_review_page_asks_a_name_then_walks_the_queue_by_form_posts(gen_client):
    client, session = gen_client
    assert "Who is reviewing?" in client.get("/review").text
    client.post("/reviewer", data={"name": "Ann Lee", "next": "/review"})
    shown = []
    for choice in ("left", "right", "both_bad"):
        page = client.get("/review").text
        pair_id = page.split('id="pair-id" value="')[1].split('"')[0]
        shown.append(pair_id)
        assert client.post("/review/vote", data={"pair_id": pair_id, "choice": choice},
                           follow_redirects=False).status_code == 303
    assert shown == [p.id for p in session.pairs()]  # the stored queue order
    done = client.get("/review").text
    assert 'id="all-done"' in done and "3 of 3 done" in done and "Ann Lee" in done
    assert {v.reviewer for v in session.store.votes()} == {"Ann Lee"}
    client.post("/reviewer", data={"name": "", "next": "/review"})  # switch reviewer
    assert "Who is reviewing?" in client.get("/review").text
    results = client.get("/api/results").json()
    assert results["votes"] == 3 and results["head_to_head"][0]["both_bad"] == 1
    assert "Results" in client.get("/results").text
    rows = [json.loads(x) for x in client.get("/export/preferences.jsonl").text.splitlines()]
    decided = [p for p in session.pairs()[:2] if p.output_a != p.output_b]  # left, right votes
    assert len(rows) == len(decided) and all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)


def test_error_browser_filters_marks_and_exports_corrections(cls_run):
    session = open_review(cls_run, **quiet)
    client = TestClient(create_app(session))
    assert client.get("/", follow_redirects=False).headers["location"] == "/errors"
    errors = [json.loads(x) for x in (cls_run / "errors.jsonl").read_text().splitlines()]
    assert errors, "the tiny classifier should get some test records wrong"
    label = errors[0]["label"]
    page = client.get("/errors", params={"label": label}).text
    assert f'{sum(e["label"] == label for e in errors)} record(s)' in page
    assert client.post("/errors/mark", data={"index": 0, "corrected": errors[0]["predicted"]}).status_code == 400
    client.post("/reviewer", data={"name": "ann", "next": "/errors"})
    assert client.post("/errors/mark", data={"index": 0, "corrected": errors[0]["predicted"], "note": "clearly"},
                       follow_redirects=False).status_code == 303
    assert client.post("/errors/mark", data={"index": 0, "corrected": label}).status_code == 400
    assert client.post("/errors/mark", data={"index": 999}).status_code == 404
    if len(errors) > 1:
        client.post("/errors/mark", data={"index": 1, "corrected": ""})  # drop it
    exported = [json.loads(x) for x in client.get("/export/corrections.jsonl").text.splitlines()]
    assert exported[0] == {"text": errors[0]["text"], "label": label, "corrected": errors[0]["predicted"]}
    assert len(exported) == min(len(errors), 2) and (len(errors) == 1 or exported[1]["corrected"] is None)
    assert 'class="marked"' in client.get("/errors").text
    client.post("/errors/unmark", data={"index": 0})
    assert [m.error_index for m in session.store.marks()] == ([1] if len(errors) > 1 else [])


def test_votes_survive_a_sigkill_of_the_real_server(gen_run):
    proc, url = start_server(gen_run, "--against", "baseline")
    try:
        pairs = store_for(open_run(gen_run)).pairs()
        for pair, choice in zip(pairs, ("left", "right", "tie"), strict=True):
            reply = httpx.post(url + "/api/votes", json={"pair_id": pair.id, "reviewer": "ann", "choice": choice})
            assert reply.status_code == 200
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    votes = store_for(open_run(gen_run)).votes()
    assert [(v.pair_id, v.choice) for v in votes] == [(p.id, c) for p, c in zip(pairs, ("left", "right", "tie"), strict=True)]


def test_cli_errors_for_unknown_runs_and_busy_ports(gen_run, capsys):
    from tunesmith.cli.main import main

    assert main(["review", "runs/nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown run 'runs/nope'" in err and "qa" in err  # the runs it knows
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["review", str(gen_run), "--port", str(busy.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_playground_answers_as_the_evaluation_did(gen_run, cls_run):
    """Base and run answer a test question exactly as samples.jsonl recorded (zero-shot, greedy)."""
    import re

    sample = json.loads((gen_run / "samples.jsonl").read_text().splitlines()[0])
    client = TestClient(create_app(open_review(gen_run, ["baseline"], **quiet)))
    page = client.post("/playground", data={"text": sample["prompt"]}).text
    answers = dict(re.findall(r"<h2>(.*?)</h2>\s*<pre>(.*?)</pre>", page, re.S))
    assert answers == {"base": html.escape(sample["zero_shot"]), "qa": html.escape(sample["finetuned"])}
    assert client.post("/playground", data={"text": "  "}).status_code == 400

    error = json.loads((cls_run / "errors.jsonl").read_text().splitlines()[0])
    client = TestClient(create_app(open_review(cls_run, **quiet)))
    page = client.post("/playground", data={"text": error["text"]}).text
    assert "no trained classification head" in page
    label, table = re.search(r"<h2>cls</h2>\s*<pre>(.*?)</pre><table class=\"probs\">(.*?)</table>",
                             page, re.S).groups()
    probs = {k: float(v) for k, v in re.findall(r"<th>(.*?)</th><td class=\"num\">(.*?)</td>", table)}
    # every label with its probability, most likely first: the evaluation's prediction leads
    assert list(probs)[0] == label == error["predicted"]
    assert abs(probs[label] - error["confidence"]) <= 0.0006 and len(probs) == 2
    assert abs(sum(probs.values()) - 1) <= 0.002
