"""`tunesmith monitor` on traffic a real server answered: a classifier run (tiny BERT + LoRA)
trained-data reference of real reviews, held-out reviews then chitchat sent to it over HTTP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "serve"))

from serve_tiny import make_run, running, save_tiny_bert  # noqa: E402

pytestmark = pytest.mark.integration
LABELS = ["fresh", "rotten"]


def test_monitor_flags_chitchat_sent_to_the_review_classifier_and_not_reviews(tmp_path, capsys):
    from tunesmith.assets import load_builtin_records
    from tunesmith.cli.main import main
    from tunesmith.data.io import write_jsonl
    from tunesmith.serve.app import create_app
    from tunesmith.serve.engine import Engine
    from tunesmith.serve.traffic import TrafficLog

    run = make_run(tmp_path / "runs", "reviews", save_tiny_bert(tmp_path / "bert"),
                   task="classification", labels=LABELS)
    reviews = load_builtin_records("rotten-tomatoes")
    order = np.random.default_rng(0).permutation(len(reviews))
    (run / "data").mkdir()
    write_jsonl([reviews[i] for i in order[:1500]], run / "data" / "train.jsonl")
    test = [reviews[i] for i in order[1500:1800]]
    held_out = [reviews[i].text for i in order[-300:]]
    chats = [c.messages[0].content for c in load_builtin_records("chitchat")[:300]]

    engine = Engine.load([run])
    try:
        # As evaluation does: the run's predictions on its test split go into metrics.json.
        predicted = [p.label for p in engine.classify("reviews", [r.text for r in test]).result(120)]
        matrix = [[sum(1 for r, p in zip(test, predicted, strict=True) if r.label == t and p == q)
                   for q in LABELS] for t in LABELS]
        (run / "metrics.json").write_text(json.dumps(
            {"task": "classification", "confusion_matrix": {"labels": LABELS, "matrix": matrix}}))
        for name, texts, expected in (("reviews", held_out, 0), ("chitchat", chats, 3)):
            state = tmp_path / name
            log = TrafficLog(state)
            with running(create_app(engine, traffic_log=log)) as url:
                for start in range(0, len(texts), 100):
                    reply = httpx.post(url + "/v1/classify", timeout=60,
                                       json={"model": "reviews", "input": texts[start:start + 100]})
                    assert reply.status_code == 200
            log.close()
            code = main(["monitor", "--run", str(run), "--state-dir", str(state), "--no-mlflow"])
            out = capsys.readouterr().out
            assert code == expected, out
            assert "reviews" in out and (state / "monitor" / "reviews.html").is_file()
    finally:
        engine.close()
