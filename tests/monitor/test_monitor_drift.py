"""Monitoring on real data: chitchat messages sent to a movie-review model are flagged as drift,
held-out reviews are not. The traffic rows have the traffic log's shape; the stand-in
"movie-review model" is a TF-IDF logistic regression trained on the run's own training split."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tunesmith.monitor import drift
from tunesmith.monitor.report import monitor, reference_from_run, write_html

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def movie_run(tmp_path_factory):
    """A run folder whose data/train.jsonl holds 3,000 real reviews, the held-out reviews,
    chitchat openers, and a classifier trained on the training split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tunesmith.assets import load_builtin_records
    from tunesmith.data.io import write_jsonl

    reviews = load_builtin_records("rotten-tomatoes")
    order = np.random.default_rng(0).permutation(len(reviews))
    train = [reviews[i] for i in order[:3000]]
    held_out = [reviews[i].text for i in order[-400:]]
    chats = [r.messages[0].content for r in load_builtin_records("chitchat")[:400]]
    run = tmp_path_factory.mktemp("movie-run")
    (run / "data").mkdir()
    write_jsonl(train, run / "data" / "train.jsonl")
    (run / "run.json").write_text(json.dumps({"run_name": "movies", "task": "classification"}))
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    model.fit([r.text for r in train], [r.label for r in train])
    # As `tunesmith run` does: the confusion matrix on the test split goes into metrics.json,
    # and its columns (what the model predicts on in-domain text) are the label reference.
    from sklearn.metrics import confusion_matrix

    test = [reviews[i] for i in order[3000:4000]]
    labels = ["fresh", "rotten"]
    matrix = confusion_matrix([r.label for r in test], model.predict([r.text for r in test]), labels=labels)
    (run / "metrics.json").write_text(json.dumps(
        {"task": "classification", "confusion_matrix": {"labels": labels, "matrix": matrix.tolist()}}))
    return SimpleNamespace(dir=run, held_out=held_out, chats=chats, model=model)


def _traffic(texts, model, *, latency=20.0):
    """Traffic-log records as `tunesmith serve` writes them for POST /v1/classify."""
    from tunesmith.serve.traffic import TrafficRecord

    labels = model.predict(texts)
    return [TrafficRecord(
        f"clf-{i}", 1.7e9 + i, "/v1/classify", model="movies", served_model="movies", status=200,
        latency_ms=latency + i % 7, prompt=json.dumps([text]), run_id="movies",
        prediction=json.dumps([{"index": 0, "label": str(label), "score": 0.9}]),
    ) for i, (text, label) in enumerate(zip(texts, labels, strict=True))]


def test_chitchat_sent_to_a_movie_review_model_is_drift(movie_run, tmp_path):
    reference = reference_from_run(movie_run.dir)
    assert reference.task == "classification" and len(reference.prompts) == 3000
    report = monitor(reference, _traffic(movie_run.chats, movie_run.model))
    checks = {c.name: c for c in report.checks}
    assert report.drift
    assert checks["prompts (domain classifier)"].drift
    assert checks["prompts (domain classifier)"].score > 0.9  # measured 0.97 on this sample
    assert checks["prompt length"].drift  # chat openers are a few words, reviews about 18
    assert checks["vocabulary (OOV rate)"].score > 1.2  # measured 1.28 (held-out reviews: 0.92)
    page = write_html(report, tmp_path / "report.html").read_text()
    assert "DRIFT" in page and "domain classifier" in page


def test_held_out_reviews_are_not_drift(movie_run):
    report = monitor(reference_from_run(movie_run.dir), _traffic(movie_run.held_out, movie_run.model))
    flagged = [(c.name, c.score) for c in report.checks if c.drift]
    assert not report.drift, flagged
    auc = next(c for c in report.checks if c.name == "prompts (domain classifier)").score
    assert auc < 0.55
    assert next(c for c in report.checks if c.name == "vocabulary (OOV rate)").score < 1.1
    (service,) = report.services
    assert service.model == "movies" and service.requests == 400 and service.error_rate == 0


def test_random_auc_bar_matches_a_brute_force_draw():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    labels = np.r_[np.zeros(60), np.ones(40)]
    brute = [roc_auc_score(labels, rng.random(100)) for _ in range(500)]
    assert drift.random_auc_percentile(60, 40, seed=1) == pytest.approx(np.percentile(brute, 95), abs=0.025)


def test_refusals_and_lengths_of_generated_answers():
    reference = ["Paris is the capital of France."] * 200
    polite = ["I'm sorry, but I can't help with that."] * 40 + ["Paris."] * 60
    check = drift.refusal_drift(reference, polite)
    assert check.drift and check.score == pytest.approx(0.4)
    assert not drift.refusal_drift(reference, ["Berlin is the capital of Germany."] * 100).drift
    assert drift.is_refusal("Well. I cannot do that") and not drift.is_refusal("Sorry to hear it went well!")


def test_cli_exits_3_on_drift_and_0_without_and_logs_to_mlflow(movie_run, tmp_path, capsys):
    from mlflow import MlflowClient

    from tunesmith.cli.main import main
    from tunesmith.serve.traffic import TrafficLog

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name, texts in (("chat", movie_run.chats), ("reviews", movie_run.held_out)):
        state = tmp_path / name
        log = TrafficLog(state)
        for record in _traffic(texts, movie_run.model):
            log.write(record)
        log.close()
        code = main(["monitor", "--run", str(movie_run.dir), "--state-dir", str(state),
                     "--tracking-uri", uri])
        assert code == (3 if name == "chat" else 0)
        out = capsys.readouterr().out
        assert ("Drift found" in out) == (name == "chat") and "Service per model" in out
        assert (state / "monitor" / "movies.html").is_file()
    runs = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("tunesmith-monitor").experiment_id])
    assert sorted(r.data.metrics["drift"] for r in runs) == [0.0, 1.0]
    assert all(r.data.metrics["input_prompts_score"] > 0 for r in runs)


def test_a_chat_model_that_starts_refusing_is_flagged_and_ordinary_answers_are_not(tmp_path):
    from tunesmith.assets import load_builtin_records
    from tunesmith.data.io import write_jsonl
    from tunesmith.serve.traffic import TrafficRecord

    chats = load_builtin_records("chitchat")
    (tmp_path / "data").mkdir()
    write_jsonl(chats[:2000], tmp_path / "data" / "train.jsonl")
    reference = reference_from_run(tmp_path)
    assert reference.task == "chat"

    def rows(answer):
        return [TrafficRecord(
            f"chatcmpl-{i}", 1.7e9 + i, "/v1/chat/completions", served_model="chatty", status=200,
            latency_ms=100.0, prompt=json.dumps([{"role": m.role, "content": m.content} for m in c.messages[:-1]]),
            output=answer(c)) for i, c in enumerate(chats[-300:])]

    ordinary = monitor(reference, rows(lambda c: c.messages[-1].content))
    assert not ordinary.drift, [(c.name, c.score) for c in ordinary.checks if c.drift]
    refusing = monitor(reference, rows(lambda c: "I'm sorry, but I can't help with that."))
    flagged = {c.name for c in refusing.checks if c.drift}
    assert flagged == {"response length", "refusals"}  # the prompts did not change
