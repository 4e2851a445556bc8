"""Evaluate a causal LM: response perplexity, batched generation, scores and samples.

Generation is greedy by default (``evaluation.temperature: 0``); a temperature above 0 samples
with nucleus ``top_p``. Prompts are left-padded into batches of similar length so every row's
new tokens start at the same column. On 2 CPU cores SmolLM2-135M takes about 0.8 s per
example (RESOURCES.md), which is why ``evaluation.generation_limit`` caps how many test
examples are generated for; perplexity always covers the whole split (one forward pass each).

``samples.jsonl`` holds, per example: the prompt, the reference, the baseline's output and the
finetuned model's output, for the qualitative analysis the guide asks for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tunesmith import runfiles
from tunesmith.errors import DataError
from tunesmith.evaluate.forgetting import (
    compare,
    general_perplexity,
    general_text,
    remedies,
    text_windows,
    warning_message,
)
from tunesmith.evaluate.metric_plan import MetricPlan, plan_for_records, select
from tunesmith.evaluate.prompting import (
    few_shot_turns,
    label_nlls,
    label_probabilities,
    most_likely,
    prompt_messages,
    reference,
    reply_rows,
)
from tunesmith.evaluate.text_metrics import closed_set_scores, generation_scores, perplexity
from tunesmith.records import Record, Task
from tunesmith.train.objectives import nll_per_row
from tunesmith.train.prompts import CLASSIFICATION_AS_INSTRUCTION, prompt_ids


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 is greedy decoding
    top_p: float = 1.0
    batch_size: int = 8
    seed: int = 42

    @classmethod
    def from_config(cls, evaluation: Any, batch_size: int = 8, seed: int = 42) -> GenerationSettings:
        return cls(evaluation.max_new_tokens, evaluation.temperature, evaluation.top_p, batch_size, seed)


def generate(
    model: Any, tokenizer: Any, prompts: Sequence[list[int]], settings: GenerationSettings
) -> list[str]:
    """Decode each prompt's continuation (special tokens dropped), in the prompts' order."""
    import torch

    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = settings.temperature > 0
    options: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": sampling,
        "pad_token_id": pad_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if sampling:
        options.update(temperature=settings.temperature, top_p=settings.top_p)
        torch.manual_seed(settings.seed)
    else:
        # Say so explicitly: a model's generation_config may ask for sampling by default.
        options.update(temperature=None, top_p=None, top_k=None)
    outputs: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with torch.no_grad():
        for start in range(0, len(order), settings.batch_size):
            chunk = order[start : start + settings.batch_size]
            width = max(len(prompts[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                n = len(prompts[i])
                ids[row, width - n :] = torch.tensor(prompts[i])
                mask[row, width - n :] = 1
            new = model.generate(input_ids=ids, attention_mask=mask, **options)[:, width:]
            for row, i in enumerate(chunk):
                outputs[i] = tokenizer.decode(new[row], skip_special_tokens=True).strip()
    return outputs


def write_samples(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line: prompt, reference, baseline, finetuned (and any extra keys)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Baseline vs finetuned on the test split (the evaluate stage of a generative run)

# The metric the advisor's prompting measurement reports per task family (a run uses its
# metric plan's headline instead, see tunesmith.evaluate.metric_plan).
PRIMARY_METRIC = {
    "instruction": "rougeL",
    "chat": "rougeL",
    "qa": "token_f1",
    CLASSIFICATION_AS_INSTRUCTION: "f1",
}


@dataclass
class ModelScores:
    metrics: dict[str, float]
    outputs: list[str]  # generations (or predicted labels) for the generated-for examples


def score_model(
    model: Any,
    tokenizer: Any,
    records: Sequence[Record],
    *,
    shots: Sequence[dict[str, str]] = (),
    labels: Sequence[str] = (),
    settings: GenerationSettings,
    max_length: int,
    generation_limit: int | None,
    plan: MetricPlan | None = None,
) -> ModelScores:
    """Perplexity of the reference replies, and generation (or label) scores, of one model.

    Perplexity covers every record: the NLL of its reference reply (the final assistant turn
    and EOS) given the prompt, averaged over tokens. Generative tasks then generate for the
    first ``generation_limit`` records and score BLEU, ROUGE, exact match and token F1 (METEOR
    when ``plan`` reports it; label accuracy, macro F1 and the out-of-set rate when ``plan``
    scores a closed set of answers as labels); classification-as-instruction picks the most
    likely label for every record and scores accuracy, precision, recall and F1 (macro), and
    PR-AUC of ``plan``'s rare positive label, which needs no generation at all.
    """
    prompts = [prompt_messages(r, shots, labels) for r in records]
    references = [reference(r, labels) for r in records]
    n_gen = len(records) if generation_limit is None else min(generation_limit, len(records))
    if labels:
        from tunesmith.evaluate.metrics import classification_metrics

        unknown = sorted(set(references) - set(labels))
        if unknown:
            raise DataError(
                f"test labels {unknown} do not occur in the training split {list(labels)}.",
                hint="Add training examples of those labels or drop them from the test data.",
            )
        scores = label_nlls(model, tokenizer, prompts, labels, settings.batch_size, max_length)
        gold = [scores[i][labels.index(ref)] for i, ref in enumerate(references)]
        predicted = [most_likely(labels, s) for s in scores]
        metrics = classification_metrics(references, predicted, labels)
        positive = plan.positive_label if plan is not None else None
        if positive is not None and positive in labels:
            metrics["pr_auc"] = _label_pr_auc(scores, labels, references, positive)
        outputs = predicted[:n_gen]
    else:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        gold = nll_per_row(model, reply_rows(tokenizer, prompts, references, max_length), pad, settings.batch_size)
        room = max(max_length - settings.max_new_tokens, 1)
        ids = [prompt_ids(tokenizer, p)[-room:] for p in prompts[:n_gen]]  # keep the latest turns
        outputs = generate(model, tokenizer, ids, settings)
        metrics = generation_scores(outputs, references[:n_gen],
                                    with_meteor=plan is not None and "meteor" in plan.reported)
        if plan is not None and plan.closed_set:
            metrics.update(closed_set_scores(outputs, references[:n_gen], plan.closed_set))
    total, count = sum(t for t, _ in gold), sum(n for _, n in gold)
    metrics["perplexity"] = perplexity(total, count)
    metrics["loss"] = total / count if count else float("nan")
    return ModelScores(metrics, outputs)


def _label_pr_auc(
    scores: Sequence[Sequence[tuple[float, int]]], labels: Sequence[str], references: Sequence[str],
    positive: str,
) -> float:
    """PR-AUC of ``positive``, ranking by its probability among the labels
    (:func:`~tunesmith.evaluate.prompting.label_probabilities`)."""
    from tunesmith.evaluate.metrics import average_precision

    k = labels.index(positive)
    probability = [label_probabilities(row)[k] for row in scores]
    return average_precision([r == positive for r in references], probability)


def evaluate_run(
    run_dir: Path,
    run_meta: dict[str, Any],
    cfg: Any,
    data_dir: Path,
    test_file: Path,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Zero-shot and few-shot baselines, the finetuned model, forgetting; writes samples.jsonl.

    Returns the metrics.json sections (``plan``: the metric plan; ``baselines``, ``baseline`` =
    the better of the two by the plan's headline metric, ``finetuned``, ``delta``,
    ``forgetting``, ``generation``) and the samples. Cost on 2 CPU cores with SmolLM2-135M:
    about 0.8 s per generated example per model (three models: zero-shot, few-shot,
    finetuned) plus one forward pass per test example and model for perplexity; METEOR adds
    about 6 s once to open WordNet.
    """
    from tunesmith.data.validate import read_records
    from tunesmith.methods import load_adapter
    from tunesmith.models import load_model

    task = run_meta["task"]
    labels = list(run_meta.get("labels") or []) if task == CLASSIFICATION_AS_INSTRUCTION else []
    record_task = cast(Task, "classification" if labels else task)
    train_records = read_records(data_dir / runfiles.split_file("train"), task=record_task)
    test_records = read_records(test_file, task=record_task)
    ev = cfg.evaluation
    plan = plan_for_records(task, train_records, ev.metrics)
    for line in plan.lines():
        log(line)
    settings = GenerationSettings.from_config(ev, batch_size=cfg.finetune.batch_size, seed=cfg.prepare.seed)
    common = {
        "labels": labels,
        "settings": settings,
        "max_length": cfg.prepare.max_length,
        "generation_limit": ev.generation_limit,
        "plan": plan,
    }
    # A QLoRA adapter was trained on the NF4 base: score it on that base.
    qlora = run_meta.get("method") == "qlora"
    loaded = load_model(run_meta["model"], task=task, load_in_4bit=qlora,
                        compute_dtype=cfg.finetune.qlora_compute_dtype if qlora else "float32")
    tokenizer, model = loaded.tokenizer, loaded.model

    general_rows = None
    before = None
    if ev.forgetting_text:
        general_rows = text_windows(tokenizer, general_text(ev.forgetting_text))
        before = general_perplexity(model, tokenizer, general_rows)

    shots = few_shot_turns(train_records, ev.few_shot_k, seed=cfg.prepare.seed, labels=labels)
    log(f"baseline: {run_meta['model']} before finetuning, zero-shot, on {len(test_records)} test examples")
    zero = score_model(model, tokenizer, test_records, **common)
    baselines = {"zero_shot": zero}
    if shots:
        log(f"baseline: few-shot with {ev.few_shot_k} examples drawn from the train split")
        baselines["few_shot"] = score_model(model, tokenizer, test_records, shots=shots, **common)
    primary = plan.headline
    best_kind = max(baselines, key=lambda kind: baselines[kind].metrics[primary])

    log("finetuned: the same prompts on the finetuned model")
    model = load_adapter(model, run_dir / runfiles.ADAPTER_DIR)
    finetuned = score_model(model, tokenizer, test_records, **common)

    baseline = select(plan, {**baselines[best_kind].metrics, "kind": best_kind})
    if labels:  # the floor accuracy is read against, as for an encoder classifier
        from tunesmith.evaluate.metrics import majority_rate

        baseline["majority_rate"] = majority_rate([reference(r, labels) for r in train_records],
                                                  [reference(r, labels) for r in test_records])
    after = select(plan, finetuned.metrics)
    metrics: dict[str, Any] = {
        "plan": plan.to_dict(),
        "baselines": {kind: select(plan, {**s.metrics, "kind": kind}) for kind, s in baselines.items()},
        "baseline": baseline,
        "finetuned": after,
        "delta": {k: v - baseline[k] for k, v in after.items() if k in baseline},
        "primary_metric": primary,
        "generation": {
            "examples": len(finetuned.outputs),
            "few_shot_k": ev.few_shot_k if shots else 0,
            **({"scored_by": "label likelihood"} if labels else {
                "max_new_tokens": settings.max_new_tokens,
                "temperature": settings.temperature,
                "top_p": settings.top_p,
            }),
        },
    }
    if general_rows is not None and before is not None:
        report = compare(ev.forgetting_text, before, general_perplexity(model, tokenizer, general_rows),
                         ev.forgetting_threshold)
        fixes = remedies(report, cfg, getattr(loaded.model.config, "num_hidden_layers", None))
        metrics["forgetting"] = {**report.to_dict(), "remedies": [f.to_dict() for f in fixes]}
        if report.warning:
            log(warning_message(report, fixes, str(run_dir / runfiles.CONFIG)))

    samples = []
    for i in range(min(ev.num_samples, len(finetuned.outputs))):
        record = test_records[i]
        samples.append({
            "prompt": record.input_text(),
            "reference": reference(record, labels),
            "baseline": baselines[best_kind].outputs[i],
            "finetuned": finetuned.outputs[i],
            **{kind: s.outputs[i] for kind, s in baselines.items()},
        })
    write_samples(run_dir / runfiles.SAMPLES, samples)
    return metrics, samples
