"""Answers the review needs that no file holds yet, and the playground's side-by-side answers.

Missing answers are produced exactly as the evaluation produced samples.jsonl: the same
prompt (:func:`~tunesmith.evaluate.prompting.prompt_messages`, few-shot turns drawn from the
train split with the run's seed for a few-shot baseline), the same greedy settings from the
run's config, label likelihood for classification-as-instruction. The base model loads
through :func:`tunesmith.serve.base.load_base`; a run's adapter through
:class:`tunesmith.serve.predict.AdapterServer`. Cost: one model load (seconds) plus about
0.8 s per answer for SmolLM2-135M on 2 CPU cores.

The playground answers typed text through :meth:`AdapterServer.predict` for each run, and the
base model with the same single-turn prompt. Raises UsageError when an adapter is missing.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from tunesmith import runfiles
from tunesmith.errors import UsageError
from tunesmith.records import Record, Task
from tunesmith.review.pairs import Plan, RunInfo


def answers(model: Any, tokenizer: Any, records: Sequence[Record], *, shots: Sequence[dict[str, str]],
            labels: Sequence[str], settings: Any, max_length: int) -> list[str]:
    """``model``'s answers to ``records`` with the evaluation's prompts and settings."""
    from tunesmith.evaluate.generation import generate
    from tunesmith.evaluate.prompting import label_nlls, most_likely, prompt_messages
    from tunesmith.train.prompts import prompt_ids

    prompts = [prompt_messages(r, shots, labels) for r in records]
    if labels:
        scores = label_nlls(model, tokenizer, prompts, labels, settings.batch_size, max_length)
        return [most_likely(labels, s) for s in scores]
    room = max(max_length - settings.max_new_tokens, 1)  # keep the latest turns, as evaluation does
    return generate(model, tokenizer, [prompt_ids(tokenizer, p)[-room:] for p in prompts], settings)


def _adapter_meta(run: RunInfo) -> dict[str, Any]:
    from tunesmith.methods import read_adapter_meta

    if not (run.path / runfiles.ADAPTER_DIR).is_dir():
        raise UsageError(f"{run.path} has no adapter/: the run did not finish training, so its "
                         "missing answers cannot be generated.",
                         hint=f"Finish it with `tunesmith train --resume {run.path}`.")
    return read_adapter_meta(run.path / runfiles.ADAPTER_DIR)


def _baseline_shots(run: RunInfo, cfg: Any, column: str) -> list[dict[str, str]]:
    import json

    from tunesmith.data.validate import read_records
    from tunesmith.evaluate.prompting import few_shot_turns

    kind = column
    if column == "baseline":  # the evaluation's better baseline, as metrics.json names it
        metrics_path = run.path / runfiles.METRICS
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
        kind = (metrics.get("baseline") or {}).get("kind", "zero_shot")
    if kind != "few_shot":
        return []
    task = cast(Task, "classification" if run.labels else run.task)
    train = read_records(run.test_file().parent / runfiles.split_file("train"), task=task)
    return few_shot_turns(train, cfg.evaluation.few_shot_k, seed=cfg.prepare.seed, labels=run.labels)


def fill_missing(plan: Plan, log: Callable[[str], None] = print) -> int:
    """Generate every answer ``plan`` lacks, in place; returns how many were generated."""
    missing = plan.missing()
    if not missing:
        return 0
    if not plan.records:
        raise UsageError(
            f"{', '.join(missing)} lack answers for some prompts and the test split "
            f"({plan.run.test_file()}) is not there to generate them from.",
            hint="Review fewer prompts (--limit) or restore the run's data folder.",
        )
    from tunesmith.config import load_config
    from tunesmith.evaluate.generation import GenerationSettings
    from tunesmith.methods import set_adapter
    from tunesmith.serve.base import load_base
    from tunesmith.serve.predict import AdapterServer

    cfg = load_config(plan.run.path / runfiles.CONFIG)
    settings = GenerationSettings.from_config(cfg.evaluation, batch_size=cfg.finetune.batch_size,
                                              seed=cfg.prepare.seed)
    total = 0
    for model_name, indices in missing.items():
        source = plan.sources[model_name]
        records = [plan.records[i] for i in indices]
        log(f"generating {len(records)} missing answers of {model_name} (about 1 s each on CPU)")
        if isinstance(source, RunInfo):
            server = AdapterServer.from_paths([source.path], [model_name])
            set_adapter(server.model, model_name)
            model, tokenizer, shots = server.model, server.tokenizer, []
        else:
            loaded = load_base(_adapter_meta(plan.run))
            model, tokenizer = loaded.model, loaded.tokenizer
            shots = _baseline_shots(plan.run, cfg, source)
        outputs: list[str] = []
        step = 4 * settings.batch_size
        for start in range(0, len(records), step):  # a progress line per few batches
            outputs += answers(model, tokenizer, records[start:start + step], shots=shots,
                               labels=plan.run.labels, settings=settings, max_length=cfg.prepare.max_length)
            if len(records) > step:
                log(f"  {model_name}: {len(outputs)}/{len(records)}")
        plan.answers[model_name].update(zip(indices, outputs, strict=True))
        total += len(outputs)
        del model, tokenizer
        gc.collect()
    return total


# ---------------------------------------------------------------------------------------------
# Playground


@dataclass(frozen=True)
class PlaygroundAnswer:
    model: str
    output: str | None
    score: float | None  # the label's probability (classification)
    note: str = ""
    probabilities: dict[str, float] | None = None  # every label's, most likely first


class Playground:
    """The base model and every run's adapter, loaded on first use (seconds), then kept."""

    def __init__(self, runs: Sequence[RunInfo], *, max_new_tokens: int = 64) -> None:
        self.runs = list(runs)
        self.max_new_tokens = max_new_tokens
        self._servers: list[Any] = []
        self._base: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        from tunesmith.serve.base import load_base
        from tunesmith.serve.predict import AdapterServer

        for run in self.runs:
            _adapter_meta(run)  # a clear error for a run without adapter/
        try:  # one base for all when they share it (the guide's one base, many adapters)
            self._servers = [AdapterServer.from_paths([r.path for r in self.runs], [r.name for r in self.runs])]
        except UsageError:
            self._servers = [AdapterServer.from_paths([r.path], [r.name]) for r in self.runs]
        if self.runs[0].generative:
            self._base = load_base(_adapter_meta(self.runs[0]))

    def _base_answer(self, text: str) -> PlaygroundAnswer:
        from tunesmith.evaluate.generation import GenerationSettings, generate
        from tunesmith.evaluate.prompting import label_nlls, label_probabilities, most_likely
        from tunesmith.serve.predict import ranked_probabilities
        from tunesmith.train.prompts import classification_prompt, prompt_ids

        run = self.runs[0]
        if self._base is None:
            return PlaygroundAnswer("base", None, None, "the base model has no trained "
                                    "classification head (its baseline is a probe fitted on the train split)")
        model, tokenizer = self._base.model, self._base.tokenizer
        if run.labels:  # as AdapterServer scores labels: named in the prompt, each reply scored
            prompt = [{"role": "user", "content": classification_prompt(text, run.labels)}]
            scores = label_nlls(model, tokenizer, [prompt], run.labels)[0]
            label = most_likely(run.labels, scores)
            probs = label_probabilities(scores)
            return PlaygroundAnswer("base", label, probs[run.labels.index(label)],
                                    probabilities=ranked_probabilities(run.labels, probs))
        ids = [prompt_ids(tokenizer, [{"role": "user", "content": text}])]
        [output] = generate(model, tokenizer, ids, GenerationSettings(max_new_tokens=self.max_new_tokens))
        return PlaygroundAnswer("base", output, None)

    def answer(self, text: str) -> list[PlaygroundAnswer]:
        """The base model's and each run's answer to ``text`` (about a second each on CPU)."""
        text = text.strip()
        if not text:
            raise UsageError("type a prompt first.")
        with self._lock:
            if not self._servers:
                self._load()
            out = [self._base_answer(text)]
            for server in self._servers:
                for name in server.adapters:
                    [p] = server.predict([text], name, max_new_tokens=self.max_new_tokens)
                    out.append(PlaygroundAnswer(name, p.output, p.score,
                                                probabilities=p.probabilities))
        return out
