"""run = prepare + train + evaluate, on a tiny random BERT saved as a local model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_tiny import tiny_bert, tokenizer, toy_records

from tunesmith.config import load_config
from tunesmith.errors import UsageError
from tunesmith.pipelines.config import list_runs
from tunesmith.pipelines.evaluate import evaluate
from tunesmith.pipelines.run import DEMO_REASONS, DEMO_SETTINGS, demo_config, run


def _setup(tmp: Path) -> list[str]:
    model_dir = tmp / "tiny-bert"
    tiny_bert().save_pretrained(model_dir)
    tokenizer().save_pretrained(model_dir)
    with (tmp / "reviews.jsonl").open("w") as fh:
        for record in toy_records(60):  # 60 distinct sentences
            fh.write(json.dumps(record.to_dict()) + "\n")
    return [f"finetune.model={model_dir}", "prepare.dataset=reviews.jsonl",
            "finetune.method=full", "finetune.max_steps=4", "finetune.learning_rate=1e-3",
            "tracking.enabled=false"]


def test_run_writes_a_complete_run_folder(in_tmp):
    cfg = load_config(None, _setup(in_tmp))
    result = run(cfg, out_dir="runs/tiny", progress=False, log=lambda _: None)
    folder = Path("runs/tiny")
    assert result.data_counts == {"train": 48, "val": 6, "test": 6}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics == result.metrics
    assert set(metrics) >= {"task", "baseline", "finetuned", "delta", "train"}
    assert metrics["train"]["steps"] == 4 and metrics["train"]["trainable_percent"] == 100.0
    meta = json.loads((folder / "run.json").read_text())
    assert meta["task"] == "classification" and meta["labels"] == ["neg", "pos"]
    assert "mlflow_run_id" not in meta and not Path("mlflow.db").exists()
    errors = [json.loads(x) for x in (folder / "errors.jsonl").read_text().splitlines()]
    assert all(e["label"] != e["predicted"] for e in errors)
    assert [e["confidence"] for e in errors] == sorted((e["confidence"] for e in errors), reverse=True)

    # evaluate again on another test file: the stage works on its own
    Path("other.jsonl").write_text(
        "".join(json.dumps(r.to_dict()) + "\n" for r in toy_records(10)))
    again = evaluate(folder, "other.jsonl", log=lambda _: None)
    assert sum(sum(row) for row in again.metrics["confusion_matrix"]["matrix"]) == 10

    [summary] = list_runs("runs")
    assert (summary.name, summary.status, summary.metric) == ("tiny", "finished", "accuracy")

    with pytest.raises(UsageError, match="already holds a run"):
        run(cfg, out_dir="runs/tiny", progress=False, log=lambda _: None)


def test_demo_preset_matches_its_reasons():
    cfg = demo_config(["finetune.num_epochs=1"])
    assert set(DEMO_REASONS) == set(DEMO_SETTINGS)
    flat = cfg.flat()
    assert flat["finetune.learning_rate"] == 2e-3 and flat["finetune.num_epochs"] == 1
    # The rate and targets are a classifier's defaults, not departures of the demo's own.
    assert flat["finetune.lora_target_modules"] == "all-linear"
    assert not {"finetune.learning_rate", "finetune.lora_target_modules"} & set(DEMO_SETTINGS)
    assert flat["prepare.dataset"] == "rotten-tomatoes" and flat["finetune.model"] == "minilm"


def test_imbalanced_labels_make_macro_f1_the_headline_with_pr_auc_of_the_rare_class(in_tmp, capsys):
    from tunesmith.cli.run import _render_result

    options = _setup(in_tmp)
    records = toy_records(200)
    rare = [r for r in records if r.label == "neg"][:12] + [r for r in records if r.label == "pos"][:88]
    # 12% negative; each text made distinct so deduplication keeps the proportions.
    Path("reviews.jsonl").write_text("".join(
        json.dumps({"text": f"{r.text} (review {i})", "label": r.label}) + "\n"
        for i, r in enumerate(rare)))
    lines: list[str] = []
    result = run(load_config(None, options), out_dir="runs/rare", progress=False, log=lines.append)
    metrics = result.metrics
    plan = metrics["plan"]
    assert (plan["headline"], plan["positive_label"]) == ("f1", "neg")
    assert sum(line.startswith("metric plan: macro F1 leads: labels are imbalanced") for line in lines) == 2
    for side in ("baseline", "finetuned"):
        assert list(metrics[side])[:3] == ["f1", "pr_auc", "accuracy"]
        assert 0 < metrics[side]["pr_auc"] <= 1
    assert metrics["delta"]["pr_auc"] == metrics["finetuned"]["pr_auc"] - metrics["baseline"]["pr_auc"]
    [summary] = list_runs("runs")
    assert summary.metric == "f1"
    _render_result("classification", metrics, result.run_dir)
    out = capsys.readouterr().out
    assert "on the headline metric" in out and "macro F1" in out
    assert "accuracy" not in out.split("headline metric")[1].split("\n")[0]


def test_the_evaluation_reuses_the_probe_training_fitted_and_scores_the_baseline_the_same(in_tmp):
    """Training saves the classifier's baseline probe (probe.json, fitted on the frozen base);
    the evaluation reuses it instead of embedding the train split again: the same baseline as a
    probe fitted afresh, and a fresh fit when the saved one was fitted on other examples."""
    lines: list[str] = []
    result = run(load_config(None, _setup(in_tmp)), out_dir="runs/probe", progress=False,
                 log=lines.append)
    folder = Path("runs/probe")
    assert (folder / "probe.json").is_file()
    assert any("reused from probe.json" in line for line in lines if line.startswith("baseline:"))

    saved = (folder / "probe.json").read_text()
    (folder / "probe.json").unlink()
    again: list[str] = []
    fresh = evaluate(folder, log=again.append)
    assert not any("reused" in line for line in again)
    assert fresh.metrics["baseline"] == result.metrics["baseline"]

    # A probe fitted on other examples is not reused: the evaluation fits its own.
    stale = json.loads(saved)
    stale["fitted_on"] = "0" * 64
    stale["intercept"] = [50.0]  # a probe that would predict one class everywhere
    (folder / "probe.json").write_text(json.dumps(stale))
    again.clear()
    refit = evaluate(folder, log=again.append)
    assert not any("reused" in line for line in again)
    assert refit.metrics["baseline"] == result.metrics["baseline"]


def test_classification_evaluation_batches_are_the_training_micro_batch(in_tmp, monkeypatch):
    """The probe's embeddings and the test scores are computed in batches of the micro-batch
    that trained (config.yaml), not a fixed 64: on CPU, glibc reuses the blocks training's
    batches freed for same-sized ones, where larger batches grew the run's peak."""
    import tunesmith.evaluate.classification as classification
    import tunesmith.train.probe as probe

    cfg = load_config(None, [*_setup(in_tmp), "finetune.batch_size=4"])
    run(cfg, out_dir="runs/batches", progress=False, log=lambda _: None)
    (Path("runs/batches") / "probe.json").unlink()  # the train split is embedded again too
    sizes: list[int] = []
    for module in (classification, probe):
        real = module.collate
        monkeypatch.setattr(module, "collate",
                            lambda examples, pad, real=real: sizes.append(len(examples)) or real(examples, pad))
    evaluate(Path("runs/batches"), log=lambda _: None)
    assert max(sizes) == 4 and sum(sizes) == 48 + 6 + 6  # train (probe), test (probe), test (scores)
