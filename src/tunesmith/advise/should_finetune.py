"""Should you finetune? The guide's decision tree, with a measured answer to its first question.

The pipeline measures what the model already does without training (for an instruct/causal
model: zero-shot and few-shot prompting on a sample of the validation split; for an encoder,
which cannot be prompted: a logistic-regression probe on its frozen features) and hands the
numbers to :func:`walk`, which asks the guide's questions in order:

- Q1 can prompting do it? Measured: yes when the better prompting score reaches ``target``
  (default :data:`DEFAULT_TARGET`: accuracy-like metrics 0.9, generation overlap 0.5);
- Q2 fewer than 100 good examples? Counted from the data;
- Q3 faster or cheaper inference needed? Q4 a very specialised domain? Q5 a fixed output
  format? Only the user knows: answered by flags, else printed as open questions.

The first decisive answer is the verdict, as in the guide's tree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FEW_EXAMPLES = 100
# What "prompting can do it" means when the user gives no target, per metric.
DEFAULT_TARGET = {"accuracy": 0.9, "f1": 0.9, "rougeL": 0.5, "token_f1": 0.5}


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str  # "yes" | "no" | "unknown" | "n/a"
    detail: str


@dataclass
class Measurement:
    """What the model does without finetuning on a sample of the data."""

    kind: str  # "prompting" (causal) or "probe" (encoder)
    metric: str
    scores: dict[str, float]  # {"zero_shot": ..., "few_shot": ...} or {"probe": ...}
    sample: int
    majority_rate: float | None = None

    @property
    def best(self) -> tuple[str, float]:
        name = max(self.scores, key=self.scores.__getitem__)
        return name, self.scores[name]


@dataclass
class FinetuneAdvice:
    verdict: str  # "prompt" | "collect_data" | "finetune"
    reason: str
    answers: list[Answer]
    measurement: Measurement
    examples: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "examples": self.examples,
                "answers": [asdict(a) for a in self.answers],
                "measurement": {**asdict(self.measurement), "best": self.measurement.best},
                "notes": self.notes}


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def walk(
    measurement: Measurement,
    *,
    examples: int,
    target: float | None = None,
    cheaper_inference: bool | None = None,
    specialised_domain: bool | None = None,
    fixed_format: bool | None = None,
) -> FinetuneAdvice:
    """The guide's "Should You Finetune?" tree over a measurement and the user's answers."""
    goal = target if target is not None else DEFAULT_TARGET.get(measurement.metric, 0.9)
    name, best = measurement.best
    answers: list[Answer] = []
    notes: list[str] = []
    majority = (f", majority class {measurement.majority_rate:.3f}"
                if measurement.majority_rate is not None else "")
    scores = ", ".join(f"{k.replace('_', '-')} {v:.3f}" for k, v in measurement.scores.items())
    if measurement.kind == "prompting":
        can_prompt = best >= goal
        answers.append(Answer(
            "Q1 Can you solve it with prompting?", _yes_no(can_prompt),
            f"measured {measurement.metric} on {measurement.sample} validation examples: "
            f"{scores}{majority}; target {goal:g}",
        ))
        if can_prompt:
            return FinetuneAdvice("prompt", f"{name.replace('_', '-')} prompting reaches "
                                  f"{best:.3f} >= {goal:g}: faster, cheaper, no training",
                                  answers, measurement, examples, notes)
    else:
        answers.append(Answer(
            "Q1 Can you solve it with prompting?", "n/a",
            f"an encoder cannot be prompted; its frozen features with a logistic-regression "
            f"probe reach {measurement.metric} {best:.3f} on {measurement.sample} validation "
            f"examples{majority}",
        ))
        notes.append("the probe is the baseline a finetuned encoder must beat "
                     "(tunesmith run reports both).")
    few = examples < FEW_EXAMPLES
    answers.append(Answer("Q2 Do you have fewer than 100 quality examples?", _yes_no(few),
                          f"{examples:,} usable examples after validation and deduplication"))
    if few:
        return FinetuneAdvice("collect_data", "under 100 examples finetuning is unlikely to work "
                              "well: use few-shot prompting or collect more data",
                              answers, measurement, examples, notes)
    for question, value, flag, verdict_reason in (
        ("Q3 Do you need faster inference or lower costs?", cheaper_inference,
         "--cheaper-inference", "a small finetuned model beats a large prompted one on cost"),
        ("Q4 Is your domain very specialised?", specialised_domain, "--specialised-domain",
         "a specialised domain (medical, legal ...) is what finetuning is for"),
        ("Q5 Do you need a consistent output format?", fixed_format, "--fixed-format",
         "finetuning makes the format more reliable than prompting"),
    ):
        answers.append(Answer(question, _yes_no(value),
                              "your answer" if value is not None else f"answer it with {flag} yes|no"))
        if value:
            return FinetuneAdvice("finetune", verdict_reason, answers, measurement, examples, notes)
    open_questions = [a for a in answers if a.answer == "unknown"]
    if measurement.kind == "prompting":
        reason = (f"prompting measured {best:.3f}, short of {goal:g}, and you have "
                  f"{examples:,} examples: finetuning is worth a try")
        verdict = "finetune"
    else:
        reason = (f"an encoder needs training for the task either way (a head at least); "
                  f"finetuning should beat the frozen probe's {best:.3f}")
        verdict = "finetune"
    if open_questions:
        notes.append("open questions (Q3-Q5) could make finetuning more clearly worth it.")
    return FinetuneAdvice(verdict, reason, answers, measurement, examples, notes)
