"""End to end on loopback: a registry control and treatment behind `ab:NAME`, simulated users
whose clicks depend on their arm, the report, the promotion, the alias moved (real MLflow
sqlite registry, real uvicorn server, real httpx client)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve_tiny import running

from tunesmith.ab.store import ExperimentStore
from tunesmith.pipelines.ab import list_experiments, report_experiment, serve_extensions

# One server for the module: keep its tests on one xdist worker (make test uses --dist loadgroup).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ab-end-to-end")]
CLICK_RATE = {"sentiment-v1": 0.25, "sentiment-v2": 0.50}  # the treatment is better by 25 points


@pytest.fixture(scope="module")
def setup(ab_runs, tmp_path_factory):
    from tunesmith.serve.app import create_app
    from tunesmith.serve.engine import Engine
    from tunesmith.serve.traffic import TrafficLog
    from tunesmith.track.registry import promote, register

    root = tmp_path_factory.mktemp("ab-e2e")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    control = register(ab_runs["control"], "sentiment", tracking_uri=uri)
    treatment = register(ab_runs["treatment"], "sentiment", tracking_uri=uri)
    promote("sentiment", control.version, "production", tracking_uri=uri)
    promote("sentiment", treatment.version, "staging", tracking_uri=uri)
    state = root / "state"
    from tunesmith.cli.main import main

    assert main(["ab", "start", "rollout", "--control", "sentiment@production", "--treatment",
                 "sentiment@staging", "--metric", "click", "--state-dir", str(state),
                 "--tracking-uri", uri]) == 0
    experiment = ExperimentStore(state).get("rollout")
    engine = Engine.load(registry=["sentiment@production", "sentiment@staging"], tracking_uri=uri)
    resolvers, routers = serve_extensions(state, engine)
    log = TrafficLog(state)
    with running(create_app(engine, resolvers=resolvers, routers=routers, traffic_log=log)) as url:
        yield {"url": url, "state": state, "uri": uri, "experiment": experiment,
               "versions": (control, treatment)}
    log.close()
    engine.close()


def _clicks(user: str, turn: int, served: str) -> bool:
    """A simulated user's click: a fixed coin for (user, turn) against the arm's click rate."""
    coin = int(hashlib.sha256(f"{user}/{turn}".encode()).hexdigest()[:8], 16) / 16**8
    return coin < CLICK_RATE[served]


def test_users_click_the_better_arm_more_and_the_report_ships_it(setup, capsys):
    url, uri = setup["url"], setup["uri"]

    def session(user: str) -> list[str]:
        seen = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for turn in range(2):
                reply = client.post("/v1/classify", headers={"X-User-Id": user},
                                    json={"model": "ab:rollout", "input": f"review {turn} by {user}"})
                assert reply.status_code == 200, reply.text
                body = reply.json()
                seen.append(body["model"])
                if _clicks(user, turn, body["model"]):
                    ok = client.post("/v1/feedback", json={"request_id": body["id"], "outcome": "click",
                                                           "value": True})
                    assert ok.status_code == 200, ok.text
        return seen

    with ThreadPoolExecutor(8) as pool:
        arms = list(pool.map(session, [f"user-{i}" for i in range(250)]))
    assert all(len(set(seen)) == 1 for seen in arms)  # sticky: each user saw one arm

    result = report_experiment("rollout", state_dir=setup["state"], tracking_uri=uri, promote=True)
    report = result.report
    control, treatment = report.arms
    assert (control.model, treatment.model) == ("sentiment@production", "sentiment@staging")
    assert control.requests + treatment.requests == 500 and not report.srm.mismatch
    assert 0.17 < control.value < 0.33 and 0.42 < treatment.value < 0.58
    assert report.fixed.ci_low > 0 and report.sequential.significant
    assert report.decision == "ship", report.reasons
    assert result.promoted == ("sentiment", "production", setup["versions"][1].version)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert int(client.get_model_version_by_alias("sentiment", "production").version) == 2
    run = client.get_run(setup["experiment"].mlflow_run_id)
    assert run.data.params["split"] == "50/50" and run.data.params["metric"] == "click"
    assert run.data.tags["tunesmith.ab.control_run_id"] == setup["versions"][0].run_id
    assert run.data.tags["tunesmith.ab.treatment_run_id"] == setup["versions"][1].run_id
    assert run.data.tags["tunesmith.ab.decision"] == "ship"
    assert run.data.metrics["treatment_value"] == pytest.approx(treatment.value)
    training = client.get_run(setup["versions"][1].run_id)
    assert training.data.tags["tunesmith.ab.rollout"].startswith("treatment")
    assert ExperimentStore(setup["state"]).get("rollout").status == "shipped"
    (summary,) = list_experiments(setup["state"])
    assert sum(summary.requests.values()) == 500

    from tunesmith.cli.main import main

    capsys.readouterr()
    assert main(["ab", "report", "rollout", "--state-dir", str(setup["state"]), "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "Decision: SHIP" in out and "mSPRT" in out and "sentiment@staging" in out


@pytest.mark.parametrize(("path", "body", "headers", "status", "needle"), [
    ("/v1/feedback", {"request_id": "clf-nope", "outcome": "click", "value": 1}, {}, 404, "no served request"),
    ("/v1/feedback", {"request_id": "clf-x", "outcome": "click"}, {}, 400, "value"),
    ("/v1/feedback", {"request_id": "clf-x", "outcome": "click", "value": 1, "extra": 2}, {}, 400, "extra"),
    ("/v1/classify", {"model": "ab:rollout", "input": "no user"}, {}, 400, "user id"),
    ("/v1/classify", {"model": "ab:nope", "input": "x", "user": "u"}, {}, 404, "no experiment named 'nope'"),
])
def test_bad_requests_get_clear_openai_errors_and_the_server_keeps_serving(setup, path, body, headers,
                                                                          status, needle):
    reply = httpx.post(setup["url"] + path, json=body, headers=headers, timeout=30)
    assert reply.status_code == status
    assert needle in reply.json()["error"]["message"]
    assert httpx.get(setup["url"] + "/health", timeout=30).status_code == 200


def test_feedback_values_are_checked_against_the_experiment_metric(setup):
    url = setup["url"]
    served = httpx.post(url + "/v1/classify", json={"model": "ab:rollout", "input": "x", "user": "u-9"},
                        timeout=30).json()
    bad = httpx.post(url + "/v1/feedback", json={"request_id": served["id"], "outcome": "click",
                                                 "value": 7}, timeout=30)
    assert bad.status_code == 400 and "true/false, 1/0" in bad.json()["error"]["message"]
    rating = httpx.post(url + "/v1/feedback", json={"request_id": served["id"], "outcome": "rating",
                                                    "value": 9}, timeout=30)
    assert rating.status_code == 400 and "between 1 and 5" in rating.json()["error"]["message"]
    assert httpx.post(url + "/v1/feedback", json={"request_id": served["id"], "outcome": "thumbs",
                                                  "value": "down"}, timeout=30).status_code == 200
    assert ExperimentStore(setup["state"]).outcomes("thumbs") == {served["id"]: 0.0}


def test_an_experiment_started_while_serving_is_picked_up_and_unserved_arms_are_named(setup):
    from tunesmith.pipelines.ab import start_experiment

    start_experiment("ghost", "model-a", "model-b", state_dir=setup["state"])
    reply = httpx.post(setup["url"] + "/v1/classify", json={"model": "ab:ghost", "input": "x", "user": "u"},
                       timeout=30)
    assert reply.status_code == 404
    message = reply.json()["error"]["message"]
    assert "experiment 'ghost'" in message and "does not serve" in message and "sentiment@staging" in message
