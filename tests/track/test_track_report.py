"""report.html / report.md from a run folder, and report.html in a real headless Chromium."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from tunesmith.config import Config


def _synthetic_run(root: Path) -> Path:
    from tunesmith.report.plots import plot_confusion_matrix, plot_loss, plot_lr

    run = root / "runs" / "sentiment-demo"
    (run / "data").mkdir(parents=True)
    history = [{"kind": "train", "step": s, "epoch": s / 20, "loss": 0.7 - 0.01 * s,
                "lr": 2e-3 * min(1.0, s / 4) * (1 - s / 40), "grad_norm": 0.8} for s in range(1, 40)]
    history += [{"kind": "eval", "step": 20, "epoch": 1.0, "val_loss": 0.55, "val_accuracy": 0.74,
                 "val_f1": 0.73, "is_best": True},
                {"kind": "eval", "step": 39, "epoch": 2.0, "val_loss": 0.58, "val_accuracy": 0.73,
                 "val_f1": 0.72, "is_best": False},
                {"kind": "event", "step": 39, "event": "early_stop",
                 "message": "no val f1 improvement in 1 evaluation <patience>"}]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    plot_loss(history, run / "plots" / "loss.png")
    plot_lr(history, run / "plots" / "lr.png")
    plot_confusion_matrix([[50, 10], [14, 26]], ["fresh", "rotten"], run / "plots" / "confusion_matrix.png")
    (run / "config.yaml").write_text(Config().to_yaml())
    (run / "run.json").write_text(json.dumps({
        "run_name": "sentiment-demo", "task": "classification", "model": "minilm", "method": "lora",
        "labels": ["fresh", "rotten"], "git_commit": "abc123", "data_sha256": "f" * 64,
        "versions": {"torch": "2.13.0"}, "hardware": {"cpu_count": 2}}))
    (run / "metrics.json").write_text(json.dumps({
        "task": "classification",
        "baseline": {"accuracy": 0.70, "precision": 0.69, "recall": 0.68, "f1": 0.685,
                     "majority_rate": 0.57, "kind": "probe"},
        "finetuned": {"accuracy": 0.76, "precision": 0.75, "recall": 0.74, "f1": 0.745},
        "delta": {"accuracy": 0.06}, "train": {"samples_per_second": 31.5, "steps": 39}}))
    (run / "data" / "manifest.json").write_text(json.dumps({
        "source": {"dataset": "rotten-tomatoes"}, "counts": {"read": 100, "train": 80, "val": 10, "test": 10},
        "label_distribution": {"train": {"fresh": 46, "rotten": 34}}, "rejects_by_reason": {"empty text": 2},
        "split": {"method": "stratified"}, "overlap_check": {"passed": True}}))
    (run / "errors.jsonl").write_text(json.dumps(
        {"text": "not <b>bad</b> at all & fun", "label": "fresh", "predicted": "rotten",
         "confidence": 0.93}) + "\n")
    return run


def test_report_html_is_self_contained_and_md_has_every_section(in_tmp):
    from tunesmith.pipelines.report import report

    run = _synthetic_run(in_tmp)
    paths = report(run)
    html = paths.html.read_text()
    # Images are embedded (no file references), and user text is escaped.
    assert html.count('src="data:image/png;base64,') == 3
    assert "plots/" not in html and "<script" not in html and "http" not in html
    assert "not &lt;b&gt;bad&lt;/b&gt; at all &amp; fun" in html
    first_png = html.split('src="data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(first_png)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "+0.0600" in html  # accuracy delta 0.76 - 0.70
    md = paths.md.read_text()
    for section in ("## Baseline vs finetuned", "## Diagnosis", "## Training", "## Data",
                    "## Worst errors", "## Config", "## Environment"):
        assert section in md
    assert "| accuracy | 0.7000 | 0.7600 | +0.0600 |" in md
    assert "![Training and validation loss](plots/loss.png)" in md
    # The advisor reads the curves: val loss up 5% while train loss fell is overfitting.
    assert "**Verdict:** overfitting" in md and "What to change:" in md
    assert "no val f1 improvement in 1 evaluation <patience>" in md
    assert "&lt;patience&gt;" in html


def test_report_follows_the_metric_plan_and_formats_numbers_for_people(in_tmp):
    from tunesmith.evaluate.metric_plan import plan_generation
    from tunesmith.pipelines.report import report

    run = _synthetic_run(in_tmp)
    plan = plan_generation("qa", ["Paris", "1990", "Ada", "Joe Russo", "blue"], ["auto", "bleu"])
    (run / "metrics.json").write_text(json.dumps({
        "task": "qa", "plan": plan.to_dict(),
        "baseline": {"exact_match": 0.1, "token_f1": 0.2, "bleu": 0.5, "meteor": 0.1,
                     "perplexity": 40.0, "kind": "few_shot"},
        "finetuned": {"exact_match": 0.3, "token_f1": 0.45, "bleu": 0.0, "meteor": 0.2,
                      "perplexity": 9.5},
        "train": {"samples_per_second": 31.46, "train_seconds": 1234.5, "peak_memory_mb": 4321.7,
                  "steps": 1039, "trainable_percent": 0.2654, "adapter_mb": 1.23,
                  "trainable_params": 245760}}))
    paths = report(run)
    md = paths.md.read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and " | n/a |" not in line]
    table = rows[rows.index("| metric | baseline | finetuned | delta | note |") + 1:]
    # The headline first, the degenerate BLEU last and marked; the verdict on the headline.
    assert table[0] == "| token_f1 | 0.2000 | 0.4500 | +0.2500 | headline |"
    assert table[4].startswith("| bleu | 0.5000 | 0.0000 | -0.5000 | not meaningful: references under 4 tokens")
    assert "**Finetuning beat the baseline on the headline metric: token F1 0.2000 -> 0.4500" in md
    assert "Metric plan: token F1 leads: question answering" in md
    assert "Left out: rouge2 (not meaningful: references under 4 tokens" in md
    for cell in ("| samples_per_second | 31.5/s |", "| train_seconds | 1,234 s |",
                 "| peak_memory_mb | 4,322 MB |", "| steps | 1,039 |", "| trainable_percent | 0.27% |",
                 "| adapter_mb | 1.2 MB |", "| trainable_params | 245,760 |", "| read | 100 |"):
        assert cell in md
    html = paths.html.read_text()
    assert "<td>31.5/s</td>" in html and "<td>1,234 s</td>" in html
    assert "Metric plan: token F1 leads" in html and "<th><b>token_f1</b></th>" in html


def test_report_of_an_unevaluated_run_says_what_is_missing(in_tmp):
    from tunesmith.pipelines.report import report

    run = in_tmp / "half"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"run_name": "half", "task": "classification"}))
    md = report(run).md.read_text()
    assert "**Missing:** evaluation" in md and "Not evaluated yet." in md


def test_report_rejects_a_folder_that_is_not_a_run(in_tmp):
    from tunesmith.errors import UsageError
    from tunesmith.pipelines.report import report

    with pytest.raises(UsageError, match="not a run folder"):
        report(in_tmp)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="needs chromium and chromedriver on PATH (Debian: "
                    "apt-get install -y chromium chromium-driver)")
def test_report_html_renders_in_headless_chromium(in_tmp):
    """The report as a browser shows it: the sections, the numbers, the user's text as text
    (escaped, not markup) and the three embedded plots decoded as images."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from tunesmith.pipelines.report import report

    paths = report(_synthetic_run(in_tmp))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--window-size=1100,2400",
                 f"--user-data-dir={in_tmp / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(paths.html.resolve().as_uri())
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        for section in ("Baseline vs finetuned", "Diagnosis", "Training", "Data",
                        "Worst errors", "Config", "Environment"):
            assert any(h.startswith(section) for h in headings), (section, headings)
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "sentiment-demo" in body
        rows = [[c.text for c in r.find_elements(By.CSS_SELECTOR, "th, td")]
                for r in driver.find_elements(By.TAG_NAME, "tr")]
        # metric, baseline, finetuned, delta (then the metric plan's note column)
        assert ["accuracy", "0.7000", "0.7600", "+0.0600"] in [r[:4] for r in rows], rows
        # The user's text is shown as the characters they wrote, not turned into markup.
        assert "not <b>bad</b> at all & fun" in body
        assert not driver.find_elements(By.CSS_SELECTOR, "td b")
        assert "overfitting" in body
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) == 3
        for image in images:
            width = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
            assert width and width > 100, image.get_attribute("alt")
            assert image.size["width"] > 100 and image.size["height"] > 50
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()


def test_report_puts_the_memory_estimate_beside_the_measured_peak(in_tmp):
    """Every trained run's report shows its whole-run peak beside the estimate (or says which
    side is missing), the estimate's largest terms and the checkpointing choice."""
    from tunesmith.pipelines.report import report

    run = _synthetic_run(in_tmp)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["train"].update({"peak_run_mb": 1000.0, "estimate_run_mb": 1100.0,
                             "estimate_dominant": "activations (x1.5 allocator slack) 600 MB (55%)",
                             "gradient_checkpointing": True,
                             "gradient_checkpointing_by": "preflight"})
    (run / "metrics.json").write_text(json.dumps(metrics))
    md = report(run).md.read_text()
    assert "| peak memory: measured / estimated | 1,000 MB / 1,100 MB (+10%) |" in md
    assert "| memory estimate's largest terms | activations (x1.5 allocator slack) 600 MB (55%) |" in md
    assert "| gradient checkpointing | on (chosen by the preflight: it halves the estimated peak) |" in md
    # A model the estimator could not read: the measured peak, and why there is no estimate.
    del metrics["train"]["estimate_run_mb"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    md = report(run).md.read_text()
    assert ("| peak memory: measured / estimated | 1,000 MB / no estimate (the estimator could "
            "not read the model's config) |") in md
