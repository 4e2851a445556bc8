"""Issue #19's levers on small cases: pooling read from the model's files, the head initialised
from the probe (LP-FT), the head's own learning rate, the selection metric, step-0 evaluation,
truncation counts, the full-finetuning default rate and the end-of-run verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from core_tiny import LABELS, finetune_cfg, tiny_bert, tokenizer, toy_data, toy_records

from tunesmith import assets
from tunesmith.config import Config, FinetuneConfig, load_config
from tunesmith.evaluate.classification import checkpoint_metric, predict
from tunesmith.methods import (
    apply_method,
    load_adapter,
    merge_adapter,
    optimizer_param_groups,
    save_adapter,
)
from tunesmith.models import load_model
from tunesmith.models.heads import apply_pooling, read_pooling
from tunesmith.pipelines.run import outcome_of
from tunesmith.pipelines.train import resolve_defaults
from tunesmith.serve.merge import merge_adapter_dir
from tunesmith.train.classification import truncation_note
from tunesmith.train.encoding import encode_classification
from tunesmith.train.loop import fit
from tunesmith.train.objectives import ClassificationObjective
from tunesmith.train.probe import embed, fit_probe, init_head_from_probe, probe_from_features


def _sentence_transformers_folder(folder: Path, **flags: bool) -> Path:
    """A tiny BERT saved with sentence-transformers' modules.json and 1_Pooling config."""
    tiny_bert().save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False, **flags}))
    return folder


def test_the_bundled_minilm_says_mean_pooling_at_256_tokens():
    pooling = read_pooling(assets.builtin_model_path("minilm"))
    assert pooling.mode == "mean" and pooling.max_seq_length == 256
    assert "pooling_mode_mean_tokens" in pooling.describe()


def test_pooling_follows_the_config_and_falls_back_to_the_architecture(tmp_path):
    assert read_pooling(_sentence_transformers_folder(tmp_path / "cls", pooling_mode_cls_token=True)).mode == "cls"
    plain = tmp_path / "plain"
    tiny_bert().save_pretrained(plain)
    assert read_pooling(plain).mode == "pooler"
    assert read_pooling("some-org/hub-id").mode == "pooler"


def test_mean_pooling_feeds_the_head_with_padding_excluded():
    model = tiny_bert().eval()
    classifier = model.classifier
    apply_pooling(model, read_pooling(assets.builtin_model_path("minilm")))
    ids = torch.tensor([[101, 2307, 3185, 102, 0, 0], [101, 2307, 3185, 2003, 2204, 102]])
    mask = (ids != 0).long()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
        hidden = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        # by hand: the mean of the first 4 vectors of row 0 and of all 6 of row 1
        expected = torch.stack([hidden[0, :4].mean(0), hidden[1].mean(0)])
    assert torch.allclose(logits, classifier(expected), atol=1e-5)
    assert model.bert.pooler is None  # the untrained dense layer is gone, not just bypassed


def test_the_probe_initialised_head_reproduces_the_probe_before_training():
    model = tiny_bert(dropout=0.1)
    apply_pooling(model, read_pooling(assets.builtin_model_path("minilm")))
    train, test = toy_data(48), encode_classification(toy_records(80)[48:], tokenizer(), LABELS, 64)
    probe = fit_probe(model, train, tokenizer().pad_token_id)
    features = embed(model, test, tokenizer().pad_token_id)
    wanted = probe.predict(features)
    for temperature in (1.0, 7.0):
        assert init_head_from_probe(model, probe, temperature)
        probs, _ = predict(model, test, tokenizer().pad_token_id)
        assert probs.argmax(1).tolist() == wanted
        if temperature == 1.0:  # the very probabilities of the probe, not just its argmax
            assert probs == pytest.approx(probe.predict_proba(features), abs=1e-4)
    assert len(set(wanted)) == 2  # both classes predicted: the check is not trivially true


def test_a_near_constant_embedding_dimension_gets_no_giant_head_weight():
    import numpy as np

    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 8)).astype(np.float32)
    features[:, 3] = 0.25 + rng.normal(size=60) * 1e-5  # noise around a constant
    labels = (features[:, 0] > 0).astype(int).tolist()
    probe = probe_from_features(features, labels)
    weight, bias = probe.linear_head(2)
    assert np.abs(weight).max() < 100 and weight[:, 3].tolist() == [0.0, 0.0]
    logits = features @ weight.T + bias
    assert logits.argmax(1).tolist() == probe.predict(features)


@pytest.mark.parametrize("classes", [2, 3])
def test_the_probe_fits_what_scikit_learns_logistic_regression_fits(classes):
    """The probe's own L-BFGS fit (no scikit-learn import in a run) against scikit-learn's
    StandardScaler + LogisticRegression, the probe it replaces: same coefficients on the
    standardised features, same probabilities, same predictions."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(classes)
    labels = rng.integers(0, classes, size=300)
    centers = rng.normal(size=(classes, 16))
    spreads = np.array([1.0] * 8 + [3.0] * 8)  # unequal spreads and offsets: the scaler matters
    features = (centers[labels] * 0.6 + rng.normal(size=(300, 16)) * spreads
                + np.linspace(-2, 5, 16))  # float64: scikit-learn fits float32 input in float32
    probe = probe_from_features(features, labels.tolist())
    scaler = StandardScaler().fit(features)
    reference = LogisticRegression(max_iter=5000, tol=1e-10).fit(scaler.transform(features), labels)
    assert probe.classes == list(range(classes))
    assert probe.coef.shape == reference.coef_.shape  # one score row for two classes
    assert probe.coef == pytest.approx(reference.coef_, abs=1e-4)
    assert probe.predict_proba(features) == pytest.approx(
        reference.predict_proba(scaler.transform(features)), abs=1e-4)
    assert probe.predict(features) == reference.predict(scaler.transform(features)).tolist()
    assert 0.6 < np.mean(np.array(probe.predict(features)) == labels) < 1.0  # not trivial


def test_a_probe_trained_on_one_label_predicts_that_label():
    import numpy as np

    features = np.random.default_rng(0).normal(size=(20, 6))
    probe = probe_from_features(features, [1] * 20)
    assert probe.predict(features) == [1] * 20
    weight, bias = probe.linear_head(3)
    assert (features @ weight.T + bias).argmax(1).tolist() == [1] * 20


def test_the_head_has_its_own_learning_rate_group():
    for method in ("full", "lora"):
        cfg = FinetuneConfig(method=method, learning_rate=2e-4, head_learning_rate=3e-3)
        model = apply_method(tiny_bert(), cfg, task="classification")
        lr_of = {n: g["lr"] for g in optimizer_param_groups(model, cfg) for n in g["param_names"]}
        head = {n for n in lr_of if "classifier" in n.split(".")}
        assert head and all(lr_of[n] == 3e-3 for n in head), method
        assert all(lr == 2e-4 for n, lr in lr_of.items() if n not in head), method
        # unset: the head follows learning_rate
        same = optimizer_param_groups(model, cfg.model_copy(update={"head_learning_rate": None}))
        assert {g["lr"] for g in same} == {2e-4}


def test_checkpoint_metric_is_the_plans_headline_macro_f1_only_for_imbalanced_labels():
    assert checkpoint_metric("auto", ["a"] * 50 + ["b"] * 45) == "accuracy"
    assert checkpoint_metric("auto", ["a"] * 50 + ["b"] * 20 + ["c"] * 30) == "f1"
    assert checkpoint_metric("loss", ["a"] * 50 + ["b"]) == "loss"


def test_the_starting_weights_are_a_candidate_for_the_best_checkpoint():
    model = tiny_bert()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    scores = iter([0.9, 0.2, 0.1, 0.1])  # training only makes it worse

    result = fit(model, toy_data(16), objective=ClassificationObjective(), cfg=finetune_cfg(max_steps=2, eval_every=1),
                 pad_token_id=tokenizer().pad_token_id, evaluate=lambda _: {"accuracy": next(scores)},
                 best_metric="accuracy", progress=False, evaluate_first=True)
    assert result.best_step == 0 and result.best_value == 0.9
    assert all(torch.equal(p, start[n]) for n, p in model.named_parameters())


def test_class_weights_scale_each_examples_loss():
    model = tiny_bert().eval()
    batch = {"input_ids": torch.tensor([[101, 2307, 102], [101, 3185, 102]]),
             "attention_mask": torch.ones(2, 3, dtype=torch.long), "labels": torch.tensor([0, 1])}
    with torch.no_grad():
        plain, n = ClassificationObjective().loss(model, batch)
        weighted, _ = ClassificationObjective([1.0, 3.0]).loss(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        per_example = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
    assert n == 2 and torch.isclose(plain, per_example.sum())
    assert torch.isclose(weighted, per_example[0] + 3 * per_example[1])


def test_truncation_is_counted_in_records_and_tokens():
    records = toy_records(12)
    lengths = [len(ids) for ids in tokenizer()([r.text for r in records])["input_ids"]]
    limit = sorted(lengths)[6]
    data = encode_classification(records, tokenizer(), LABELS, limit)
    longer = [n for n in lengths if n > limit]
    assert data.n_truncated == len(longer) > 0
    assert data.tokens_cut == sum(n - limit for n in longer)
    assert f"{len(longer)} of 12 examples" in truncation_note(data, "train", limit)


def test_full_finetuning_gets_the_guides_rate_only_when_none_was_set():
    cfg, notes = resolve_defaults(load_config(None, ["finetune.method=full"]), max_length=64)
    assert cfg.finetune.learning_rate == 5e-5 and cfg.prepare.max_length == 64 and notes
    mine, notes = resolve_defaults(load_config(None, ["finetune.method=full", "finetune.learning_rate=1e-4"]), None)
    assert mine.finetune.learning_rate == 1e-4 and not notes
    lora, _ = resolve_defaults(Config(), None)
    assert lora.finetune.learning_rate == 2e-4


def test_a_lora_classifier_gets_the_measured_rate_and_targets_only_where_none_were_set():
    cfg, notes = resolve_defaults(Config(), None, "classification")
    assert (cfg.finetune.learning_rate, cfg.finetune.lora_target_modules) == (2e-3, "all-linear")
    assert any("learning_rate 0.002, lora_target_modules all-linear" in n for n in notes)
    mine, notes = resolve_defaults(load_config(None, ["finetune.learning_rate=1e-4"]), None, "classification")
    assert (mine.finetune.learning_rate, mine.finetune.lora_target_modules) == (1e-4, "all-linear")
    assert any(n.startswith("lora_target_modules all-linear:") for n in notes)
    set_both = load_config(None, ["finetune.learning_rate=1e-4", "finetune.lora_target_modules=attention"])
    assert resolve_defaults(set_both, None, "classification") == (set_both, [])
    qlora, _ = resolve_defaults(load_config(None, ["finetune.method=qlora"]), None, "classification")
    assert qlora.finetune.learning_rate == 2e-3
    for override, task in (([], "instruction"), (["finetune.method=lora_plus"], "classification"),
                           (["finetune.method=dora"], "classification")):
        kept, notes = resolve_defaults(load_config(None, override), None, task)
        assert (kept.finetune.learning_rate, kept.finetune.lora_target_modules, notes) == (2e-4, "attention", [])


def test_mean_pooled_lora_saves_loads_and_merges_alike(tmp_path):
    folder = _sentence_transformers_folder(tmp_path / "st", pooling_mode_mean_tokens=True)
    loaded = load_model(str(folder), task="classification", labels=LABELS)
    assert loaded.pooling.mode == "mean"
    model = apply_method(loaded.model, FinetuneConfig(method="lora", learning_rate=5e-2), task="classification")
    fit(model, toy_data(16), objective=ClassificationObjective(), cfg=finetune_cfg(method="lora", max_steps=2),
        pad_token_id=tokenizer().pad_token_id, progress=False)
    save_adapter(model, tmp_path / "adapter", {"base_model": str(folder), "task": "classification",
                                               "labels": LABELS})
    data = toy_data(8)
    trained, _ = predict(model, data, tokenizer().pad_token_id)

    again = load_adapter(load_model(str(folder), task="classification", labels=LABELS).model, tmp_path / "adapter")
    reloaded, _ = predict(again, data, tokenizer().pad_token_id)
    merged, _ = predict(merge_adapter(again), data, tokenizer().pad_token_id)
    fresh, _ = predict(load_model(str(folder), task="classification", labels=LABELS).model, data,
                       tokenizer().pad_token_id)
    assert reloaded == pytest.approx(trained, abs=1e-5) and merged == pytest.approx(trained, abs=1e-5)
    assert fresh != pytest.approx(trained, abs=1e-3)  # the adapter changed something

    # the merged export reloads as a model folder with the same pooling and predictions
    merge_adapter_dir(tmp_path / "adapter", tmp_path / "merged")
    exported = load_model(str(tmp_path / "merged"), task="classification", labels=LABELS)
    assert exported.pooling.mode == "mean"
    assert predict(exported.model, data, tokenizer().pad_token_id)[0] == pytest.approx(trained, abs=1e-5)


def test_a_losing_run_says_the_probe_is_better_with_the_diagnosis_and_overrides():
    flat = [{"kind": "train", "step": s, "loss": 0.70} for s in range(10, 60, 10)]
    history = [*flat[:2], {"kind": "eval", "step": 20, "val_loss": 0.69, "val_f1": 0.5},
               *flat[2:], {"kind": "eval", "step": 50, "val_loss": 0.69, "val_f1": 0.5}]
    metrics = {"baseline": {"accuracy": 0.8, "f1": 0.7, "kind": "probe"},
               "finetuned": {"accuracy": 0.8, "f1": 0.6}}
    outcome = outcome_of(metrics, "f1", history, Config())
    assert outcome.result == "lost" and outcome.diagnosis.verdict == "underfitting"
    text = "\n".join(outcome.lines("baseline (probe)"))
    assert "baseline (probe) is better" in text and "0.7000 against 0.6000" in text
    assert "--set finetune.learning_rate=3e-4" in text
    tie = outcome_of({**metrics, "finetuned": {"accuracy": 0.8, "f1": 0.7}}, "f1", history, Config())
    assert tie.result == "matched" and tie.diagnosis is None
    assert "matched the baseline (probe) on f1 (0.7000)" in tie.lines("baseline (probe)")[0]
    won = outcome_of({**metrics, "finetuned": {"accuracy": 0.8, "f1": 0.71}}, "f1", history, Config())
    assert won.result == "won" and won.lines() == [] and won.diagnosis is None
    assert won.to_dict()["result"] == "won"
