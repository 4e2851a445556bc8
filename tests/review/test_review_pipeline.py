"""`tunesmith review` on real tiny runs: pairs from samples.jsonl, generated answers, errors."""

from __future__ import annotations

import json

import pytest
from review_runs import copy_run

from tunesmith.errors import UsageError
from tunesmith.pipelines.review import open_review, review_results
from tunesmith.review.pairs import open_run, plan
from tunesmith.review.session import store_for

# One worker builds the tiny runs of conftest.py once for every review test.
pytestmark = pytest.mark.xdist_group("review-runs")
quiet = {"log": lambda _: None}


def _samples(run):
    return [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]


def test_pairs_come_from_samples_blind_and_stable(gen_run):
    samples = _samples(gen_run)
    session = open_review(gen_run, ["baseline"], seed=7, **quiet)
    pairs = session.pairs()
    assert len(pairs) == len(samples) == 3
    by_prompt = {s["prompt"]: s for s in samples}
    for pair in pairs:
        assert {pair.model_a, pair.model_b} == {"qa", "baseline"}
        answers = {pair.model_a: pair.output_a, pair.model_b: pair.output_b}
        assert answers == {"qa": by_prompt[pair.prompt]["finetuned"], "baseline": by_prompt[pair.prompt]["baseline"]}
    # reopened (even with another seed asked for), every stored pair keeps its layout
    again = open_review(gen_run, ["baseline"], seed=8, **quiet)
    assert [(p.id, p.left_is_a) for p in again.pairs()] == [(p.id, p.left_is_a) for p in pairs]
    assert store_for(open_run(gen_run)).get_meta("seed") == 7
    # a re-evaluated run with a new answer: a new pair; the old one keeps its votes
    again.vote(pairs[0].id, "ann", "left")
    changed = pairs[0].prompt
    (gen_run / "samples.jsonl").write_text("".join(
        json.dumps({**s, "finetuned": "a new answer"} if s["prompt"] == changed else s) + "\n" for s in samples))
    third = open_review(gen_run, ["baseline"], **quiet)
    assert len(third.pair_ids) == 3 and pairs[0].id not in third.pair_ids
    assert len(third.pairs()) == 4 and third.progress("ann").done == 0
    assert [v.pair_id for v in third.store.votes()] == [pairs[0].id]



def test_missing_answers_are_generated_exactly_as_the_evaluation_did(gen_run, gen_run_source):
    """Drop answers from samples.jsonl: the regenerated ones are the evaluation's own."""
    from tunesmith.review.generate import fill_missing

    original = _samples(gen_run_source)
    samples = _samples(gen_run)
    samples[1].pop("finetuned")
    samples[2].pop("baseline")
    (gen_run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    review = plan(open_run(gen_run), ["baseline"])
    assert review.missing() == {"qa": [1], "baseline": [2]}
    assert fill_missing(review, **quiet) == 2
    assert review.answers["qa"][1] == original[1]["finetuned"]
    assert review.answers["baseline"][2] == original[2]["baseline"]
    # more prompts than samples: the rest of the test split is answered by both models
    longer = plan(open_run(gen_run), ["baseline"], limit=5)
    assert longer.missing() == {"qa": [1, 3, 4], "baseline": [2, 3, 4]}
    fill_missing(longer, **quiet)
    assert not longer.missing() and len(longer.prompts) == 5


def test_bad_input_is_refused_with_what_to_do(gen_run, cls_run, in_tmp):
    with pytest.raises(UsageError, match="unknown run 'ghost'") as unknown:
        open_review("ghost", ["baseline"], **quiet)
    assert "cls" in unknown.value.hint and "qa" in unknown.value.hint
    with pytest.raises(UsageError, match="different tasks.*'qa'.*'classification'"):
        open_review(gen_run, ["baseline", "cls"], **quiet)
    with pytest.raises(UsageError, match="classification run"):
        open_review(cls_run, ["baseline"], **quiet)
    (cls_run / "errors.jsonl").unlink()
    with pytest.raises(UsageError, match="no errors.jsonl"):
        open_review(cls_run, **quiet)
    bare = copy_run(gen_run, in_tmp / "runs", "bare")
    (bare / "samples.jsonl").unlink()
    meta = json.loads((bare / "run.json").read_text())
    (bare / "run.json").write_text(json.dumps({**meta, "data_dir": str(in_tmp / "moved")}))
    with pytest.raises(UsageError, match="no samples.jsonl and no test split"):
        open_review(bare, ["baseline"], **quiet)
    with pytest.raises(UsageError, match="not been reviewed yet"):
        review_results(gen_run, **quiet)


def test_results_go_to_files_report_and_mlflow(gen_run, capsys):
    from mlflow.tracking import MlflowClient

    session = open_review(gen_run, ["baseline"], seed=1, **quiet)
    votes = [("ann", "left"), ("ann", "right"), ("ann", "tie"), ("bob", "left"), ("bob", "left"), ("bob", "both_bad")]
    for pair, (who, choice) in zip(session.pairs() * 2, votes, strict=True):
        session.vote(pair.id, who, choice)
    outcome = review_results(gen_run, **quiet)
    saved = json.loads((gen_run / "review" / "results.json").read_text())
    assert saved == {**outcome.results.to_dict(), "label_corrections": 0} and saved["votes"] == 6
    [h] = saved["head_to_head"]
    html = (gen_run / "report.html").read_text()
    assert 'id="human-review"' in html and html.index("Human review") < html.index("<h2>Config</h2>")
    assert f"<td>{h['wins']}</td><td>{h['losses']}</td>" in html
    assert "## Human review" in (gen_run / "report.md").read_text()
    prefs = [json.loads(x) for x in outcome.files["preferences"].read_text().splitlines()]
    assert len(prefs) == outcome.preference_rows and all(set(p) == {"prompt", "chosen", "rejected"} for p in prefs)
    [agreement] = saved["agreement"]
    assert agreement["items"] == 3

    meta = json.loads((gen_run / "run.json").read_text())
    from tunesmith.config import load_config

    client = MlflowClient(load_config(gen_run / "config.yaml").tracking.mlflow_uri)
    logged = client.get_run(meta["mlflow_run_id"]).data.metrics
    assert logged["review_votes"] == 6
    assert logged["review_baseline_wins"] == h["wins"] and logged["review_baseline_win_rate_ties_half"] == pytest.approx(h["win_rate_ties_half"])
    artifacts = {a.path for a in client.list_artifacts(meta["mlflow_run_id"], "review")}
    assert {"review/results.json", "review/preferences.jsonl"} <= artifacts

    from tunesmith.cli.main import main

    capsys.readouterr()
    assert main(["review", str(gen_run), "--results"]) == 0
    printed = capsys.readouterr().out
    assert "6 votes by 2 reviewer(s) on 3 pairs" in printed
    assert f"│ baseline │ {h['wins']:>4} │ {h['losses']:>6} │ {h['ties']:>4} │ {h['both_bad']:>8} │" in printed
    assert "Cohen's kappa ann/bob" in printed


def test_corrections_from_the_error_browser_apply_in_data_convert(cls_run, in_tmp, capsys):
    from tunesmith.cli.main import main

    session = open_review(cls_run, **quiet)
    errors = session.errors()
    assert errors
    session.mark(errors[0]["index"], "ann", errors[0]["predicted"])
    dropped = len(errors) > 1
    if dropped:
        session.mark(errors[1]["index"], "ann", None)
    review_results(cls_run, **quiet)
    assert f"{1 + dropped} test records marked as wrongly labelled" in (cls_run / "report.md").read_text()
    source = json.loads((cls_run / "run.json").read_text()).get("data_dir") or str(cls_run / "data")
    test_file = f"{source}/test.jsonl"
    assert main(["data", "convert", test_file, "fixed.jsonl", "--corrections",
                 str(cls_run / "review" / "corrections.jsonl")]) == 0
    out = capsys.readouterr().out
    assert f"corrections: 1 relabelled, {int(dropped)} dropped" in out
    before = [json.loads(x) for x in open(test_file).read().splitlines()]
    after = [json.loads(x) for x in (in_tmp / "fixed.jsonl").read_text().splitlines()]
    assert len(after) == len(before) - dropped
    fixed = {r["text"]: r["label"] for r in after}
    assert fixed[errors[0]["text"]] == errors[0]["predicted"] != errors[0]["label"]
    if dropped:
        assert errors[1]["text"] not in fixed
    untouched = [r for r in before if r["text"] not in {e["text"] for e in errors[:2]}]
    assert all(fixed[r["text"]] == r["label"] for r in untouched)

    assert main(["data", "convert", test_file, "again.jsonl", "--corrections", "nope.jsonl"]) == 1
    assert "no corrections file at nope.jsonl" in capsys.readouterr().err
    (in_tmp / "bad.jsonl").write_text('{"text": "x", "label": "pos"}\n{"text": "y"}\n')
    assert main(["data", "convert", test_file, "again.jsonl", "--corrections", "bad.jsonl"]) == 1
    assert "bad.jsonl, line 2: not a correction" in capsys.readouterr().err
