"""compare-methods on a tiny random base: same data for each method, the table, plot and MLflow."""

from __future__ import annotations

import json

import pytest
from methods_tiny import save_tiny_base

from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.pipelines.methods import compare_methods, method_learning_rate, parse_methods
from tunesmith.report.method_comparison import MethodResult, comparison_markdown, relative_to_full


# End to end through prepare, train, evaluate and MLflow: slower than a unit test (about 30 s CPU).
@pytest.mark.integration
def test_compare_methods_trains_each_method_on_the_same_data(in_tmp):
    base = save_tiny_base(in_tmp / "base", "bert")
    cfg = load_config(None, [
        "prepare.limit=60", f"finetune.model={base}", "finetune.max_steps=2",
        "finetune.batch_size=8", "finetune.learning_rate=1e-3", "tracking.run_name=cmp",
    ])
    result = compare_methods(cfg, ["full", "lora"], fresh_process=False, progress=False,
                             log=lambda _: None)
    out = in_tmp / "runs" / "cmp"
    assert result.out_dir.resolve() == out.resolve() and result.metric == "accuracy"
    full, lora = result.results
    assert full.learning_rate == 5e-5 and lora.learning_rate == 1e-3  # full capped to the guide's range
    assert full.trainable_percent == 100.0 and 0 < lora.trainable_percent < 20
    for r in result.results:
        metrics = json.loads((out / r.method / "metrics.json").read_text())
        assert r.metric == metrics["finetuned"]["accuracy"]
        assert json.loads((out / r.method / "run.json").read_text())["method"] == r.method
        assert r.peak_memory_mb > 0 and r.seconds_per_epoch > 0
        assert r.saved_mb == metrics["train"]["adapter_mb"] > 0
    table = json.loads((out / "comparison.json").read_text())
    assert [m["method"] for m in table["methods"]] == ["full", "lora"]
    assert table["methods"][0]["percent_of_full"] == 100.0
    assert "| lora | 0.001 |" in (out / "comparison.md").read_text()
    assert (out / "plots" / "comparison.png").stat().st_size > 1000

    logs: list[str] = []
    again = compare_methods(cfg, ["full", "lora"], fresh_process=False, progress=False, log=logs.append)
    assert "reusing the finished lora run in runs/cmp/lora (same settings)" in logs
    assert again.results == result.results

    import mlflow

    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    runs = mlflow.search_runs(experiment_names=["tunesmith"], filter_string="tags.kind = 'compare-methods'")
    assert len(runs) == 2 and runs.iloc[0]["metrics.lora_trainable_percent"] == lora.trainable_percent


def test_percent_of_full_and_learning_rates():
    def result(method, metric, saved_mb=0.3):
        return MethodResult(method, 1e-3, 10, 1.0, 100.0, 5.0, metric, "x", saved_mb)

    rows = [result("full", 0.80), result("lora", 0.72)]
    assert relative_to_full(rows, "accuracy") == {"full": 100.0, "lora": pytest.approx(90.0)}
    assert relative_to_full([result("full", 10.0), result("lora", 20.0)], "perplexity")["lora"] == 50.0
    assert relative_to_full([result("lora", 0.7)], "accuracy") == {"lora": None}
    assert "| lora | 0.001 | 10 (1.00%) | 300 kB | 100 MB | 5 s | 0.7200 | 90.0% |" in comparison_markdown(rows, "accuracy", "")
    assert "| full | 0.001 | 10 (1.00%) | 87.5 MB |" in comparison_markdown([result("full", 0.8, 87.5)], "accuracy", "")
    cfg = load_config(None, ["finetune.learning_rate=2e-3"])
    assert method_learning_rate(cfg, "full", {}) == 5e-5
    assert method_learning_rate(cfg, "full", {"full": 1e-5}) == 1e-5
    assert method_learning_rate(cfg, "dora", {}) == 2e-3
    assert parse_methods("lora, dora,lora") == ["lora", "dora"]
    with pytest.raises(ConfigError, match="'bitfit'|bitfit"):
        parse_methods("lora,bitfit")


def test_a_failing_method_is_reported_not_hidden(in_tmp):
    base = save_tiny_base(in_tmp / "base", "bert")
    # Freezing more blocks than the base has: LoRA refuses it with a ConfigError.
    cfg = load_config(None, ["prepare.limit=40", f"finetune.model={base}", "finetune.method=full",
                             "finetune.freeze_layers=5", "tracking.enabled=false"])
    from tunesmith.errors import UsageError

    with pytest.raises(UsageError, match="every method failed:\n  lora: finetune.freeze_layers"):
        compare_methods(cfg, ["lora"], fresh_process=False, progress=False, log=lambda _: None)


def test_the_table_compares_the_metric_plans_headline():
    from tunesmith.evaluate.metric_plan import plan_classification
    from tunesmith.pipelines.methods import _metric_for

    plan = plan_classification(["neg"] * 90 + ["pos"] * 10)
    metrics = {"plan": plan.to_dict(), "finetuned": {"accuracy": 0.9, "f1": 0.47, "pr_auc": 0.2}}
    assert _metric_for(metrics) == "f1"
    # A run evaluated before metric plans existed: accuracy as before.
    assert _metric_for({"finetuned": {"accuracy": 0.9, "f1": 0.47}}) == "accuracy"
