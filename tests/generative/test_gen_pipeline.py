"""`tunesmith run` on generative tasks, end to end with a tiny random Llama (fast)."""

from __future__ import annotations

import json

import pytest

from tunesmith.config import validate_config
from tunesmith.pipelines.run import run

QUESTIONS = [(f"What is {a} plus {b}?", str(a + b)) for a in range(8) for b in range(6)]
REVIEWS = [(f"A {w} film, truly {w}.", label) for w, label in
           [("great", "fresh"), ("awful", "rotten"), ("lovely", "fresh"), ("boring", "rotten")] * 12]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _config(dataset, model_dir, **evaluation):
    return validate_config({
        "prepare": {"dataset": dataset, "max_length": 128, "dedup": "none"},
        "finetune": {"model": str(model_dir), "max_steps": 3, "batch_size": 4, "learning_rate": 1e-3,
                     "eval_every": 3, "packing": True},
        "evaluation": {"generation_limit": 3, "max_new_tokens": 4, "few_shot_k": 2, "num_samples": 2,
                       **evaluation},
        "tracking": {"enabled": False},
    })


def test_qa_run_writes_baselines_finetuned_delta_forgetting_and_samples(in_tmp, tiny_llama_dir):
    data = _write(in_tmp / "qa.jsonl", [{"question": q, "answer": a} for q, a in QUESTIONS])
    result = run(_config(data, tiny_llama_dir), in_tmp / "run", progress=False, log=lambda _: None)
    metrics = json.loads((in_tmp / "run" / "metrics.json").read_text())
    assert metrics["task"] == "qa" and result.task == "qa"
    assert set(metrics["baselines"]) == {"zero_shot", "few_shot"}
    # Answers of one or two tokens: BLEU and ROUGE-2 are left out by the metric plan, METEOR
    # is kept but marked, token F1 leads (and picks the better prompting baseline).
    plan = metrics["plan"]
    assert plan["headline"] == metrics["primary_metric"] == "token_f1"
    assert set(plan["left_out"]) == {"bleu", "rouge2"} and "meteor" in plan["degenerate"]
    keys = {"rouge1", "rougeL", "meteor", "exact_match", "token_f1", "perplexity", "loss"}
    assert not {"bleu", "rouge2"} & set(metrics["finetuned"])
    for section in ("finetuned", "delta", *(f"baselines.{k}" for k in metrics["baselines"])):
        part = metrics
        for name in section.split("."):
            part = part[name]
        assert keys <= set(part)
    assert metrics["baseline"]["kind"] in metrics["baselines"]
    baseline = metrics["baselines"][metrics["baseline"]["kind"]]
    assert metrics["delta"]["perplexity"] == metrics["finetuned"]["perplexity"] - baseline["perplexity"]
    forgetting = metrics["forgetting"]
    assert forgetting["text"] == "hamlet" and forgetting["perplexity_before"] > 1
    assert metrics["generation"]["examples"] == 3
    samples = [json.loads(line) for line in (in_tmp / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2
    assert set(samples[0]) >= {"prompt", "reference", "baseline", "finetuned", "zero_shot", "few_shot"}
    history = [json.loads(line) for line in (in_tmp / "run" / "history.jsonl").read_text().splitlines()]
    assert any(h["kind"] == "eval" and "val_perplexity" in h for h in history)


def test_a_closed_set_instruction_run_reports_label_scores_beside_the_generation_metrics(
        in_tmp, tiny_llama_dir):
    rows = [{"instruction": f"Is this review positive or negative? Answer with one word.\n{t}",
             "output": "positive" if y == "fresh" else "negative"} for t, y in REVIEWS]
    data = _write(in_tmp / "instructions.jsonl", rows)
    lines = []
    run(_config(data, tiny_llama_dir, forgetting_text=None, few_shot_k=0), in_tmp / "run",
        progress=False, log=lines.append)
    metrics = json.loads((in_tmp / "run" / "metrics.json").read_text())
    assert metrics["task"] == "instruction"
    assert metrics["plan"]["headline"] == "label_f1"
    assert metrics["plan"]["closed_set"] == ["negative", "positive"]
    assert any(line.startswith("metric plan: label macro F1 leads") for line in lines)
    for side in ("baseline", "finetuned"):
        assert {"label_accuracy", "label_f1", "out_of_set_rate", "exact_match", "token_f1",
                "perplexity"} <= set(metrics[side])
        assert "bleu" not in metrics[side]
    # The random tiny model answers no label: every answer is outside the set.
    assert metrics["finetuned"]["out_of_set_rate"] == 1.0
    md = (in_tmp / "run" / "report.md").read_text()
    assert "Metric plan: label macro F1 leads" in md
    assert "| label_f1 |" in md and "| headline |" in md
    assert "| out_of_set_rate | 100.0% | 100.0% | +0.0 pts |" in md
    assert "Left out: bleu (not meaningful: references under 4 tokens" in md


def test_classification_on_a_causal_lm_trains_as_instructions(in_tmp, tiny_llama_dir):
    data = _write(in_tmp / "reviews.jsonl", [{"text": t, "label": y} for t, y in REVIEWS])
    run(_config(data, tiny_llama_dir, forgetting_text=None), in_tmp / "run", progress=False,
        log=lambda _: None)
    run_meta = json.loads((in_tmp / "run" / "run.json").read_text())
    assert run_meta["task"] == "classification-as-instruction"
    assert run_meta["labels"] == ["fresh", "rotten"]
    metrics = json.loads((in_tmp / "run" / "metrics.json").read_text())
    assert {"accuracy", "precision", "recall", "f1", "perplexity"} <= set(metrics["finetuned"])
    assert metrics["plan"]["headline"] == "accuracy"  # REVIEWS are balanced
    # Accuracy is read beside the majority-class rate: the test split is half fresh.
    assert metrics["baseline"]["majority_rate"] == 0.5
    assert "forgetting" not in metrics
    samples = [json.loads(line) for line in (in_tmp / "run" / "samples.jsonl").read_text().splitlines()]
    assert all(s["finetuned"] in ("fresh", "rotten") for s in samples)


def test_generative_run_logs_every_baseline_forgetting_and_packing_to_mlflow_and_report(in_tmp, tiny_llama_dir):
    from mlflow.tracking import MlflowClient

    from tunesmith.report.content import fmt

    data = _write(in_tmp / "qa.jsonl", [{"question": q, "answer": a} for q, a in QUESTIONS])
    cfg = _config(data, tiny_llama_dir)
    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(
        update={"enabled": True, "mlflow_uri": uri, "experiment": "gen-tracked"})})
    run(cfg, in_tmp / "run", progress=False, log=lambda _: None)
    metrics = json.loads((in_tmp / "run" / "metrics.json").read_text())
    packing = metrics["train"]["packing"]
    assert packing["enabled"] is True  # the config forces it
    assert packing["gain"] == round(packing["tokens_unpacked"] / packing["tokens_packed"], 3)
    assert metrics["train"]["adapter_mb"] > 0
    train = metrics["train"]
    assert train["seconds_per_epoch"] == pytest.approx(packing["rows"] / train["samples_per_second"], rel=0.02, abs=0.05)

    meta = json.loads((in_tmp / "run" / "run.json").read_text())
    logged = MlflowClient(uri).get_run(meta["mlflow_run_id"]).data.metrics
    for kind in ("zero_shot", "few_shot"):
        assert logged[f"baselines_{kind}_token_f1"] == metrics["baselines"][kind]["token_f1"]
    forgetting = metrics["forgetting"]
    assert logged["forgetting_perplexity_after"] == forgetting["perplexity_after"]
    assert logged["forgetting_warning"] == float(forgetting["warning"])
    assert logged["train_packing_gain"] == packing["gain"]

    md = (in_tmp / "run" / "report.md").read_text()
    assert "| metric | zero_shot | few_shot | finetuned |" in md
    zero, few = metrics["baselines"]["zero_shot"]["perplexity"], metrics["baselines"]["few_shot"]["perplexity"]
    after = metrics["finetuned"]["perplexity"]
    assert f"| perplexity | {fmt(zero)} | {fmt(few)} | {fmt(after)} |" in md
    assert f"**Forgetting check:** Perplexity on general text (hamlet): {fmt(forgetting['perplexity_before'])}" in md
    assert "Forgetting check:" in (in_tmp / "run" / "report.html").read_text()
