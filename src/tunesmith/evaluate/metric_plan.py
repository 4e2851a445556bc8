"""The metric plan of a run: which metric leads, which support it, which are left out, and why.

The guide's pitfall "Poor Metric Selection" made executable: accuracy looks great on 95%
negatives, and BLEU on one-word answers is 0 whatever the model does. The plan is decided from
the task and the data (the training labels or reference answers), before any model is scored:

- classification with imbalanced labels (the largest class at least :data:`IMBALANCE_RATIO`
  times the smallest): macro F1 leads, accuracy is shown beside the majority-class rate; with
  two labels and a positive (minority) class of at most :data:`RARE_SHARE` of the examples,
  PR-AUC of that class comes right after. Balanced labels: accuracy leads, macro F1 beside it.
- generative answers from a closed set (at most :data:`CLOSED_SET_MAX` distinct answers, each
  under :data:`SHORT_TOKENS` tokens, repeated :data:`CLOSED_SET_REPEAT` times on average):
  scored as labels; macro F1 over the set leads, with label accuracy and the rate of answers
  outside the set, beside the generation metrics.
- short answers (median reference under :data:`SHORT_TOKENS` tokens): BLEU and ROUGE-2 are left
  out ("not meaningful: references under 4 tokens": BLEU needs 4-grams, ROUGE-2 bigrams), or
  kept and marked when ``evaluation.metrics`` asks for them; METEOR is kept but marked for
  one-word answers (its fragmentation penalty halves a perfect one-word answer).
- question answering and short answers: token F1 leads (partial credit), exact match beside it.
- long free text: ROUGE-L leads, with BLEU, METEOR, ROUGE-1 and reference perplexity.

``evaluation.metrics`` still decides what is reported: ``auto`` (the default) is the plan's
choice, explicit names are reported as asked (a degenerate one is kept and marked), and
``[auto, bleu]`` is the plan plus BLEU. The headline is always reported.

Pure functions, no model and no I/O: one pass over the labels or references. Raises
ConfigError for an unknown name in ``evaluation.metrics``.
"""

from __future__ import annotations

import difflib
import statistics
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.evaluate.metrics import improved
from tunesmith.evaluate.text_metrics import normalize_answer
from tunesmith.records import ClassificationRecord, Record

IMBALANCE_RATIO = 2.0  # largest class / smallest class at which accuracy stops leading
RARE_SHARE = 0.2  # a binary task's positive class this rare also gets PR-AUC
SHORT_TOKENS = 4  # BLEU counts up to 4-grams: shorter references make it 0 by construction
CLOSED_SET_MAX = 20  # at most this many distinct answers ...
CLOSED_SET_REPEAT = 5  # ... each seen this many times on average: a label set, not free text

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "pr_auc", "majority_rate")
GENERATION_METRICS = ("perplexity", "bleu", "rouge1", "rouge2", "rougeL", "meteor",
                      "exact_match", "token_f1")
CLOSED_SET_METRICS = ("label_accuracy", "label_f1", "out_of_set_rate")
ALIASES = {"rouge": ("rouge1", "rouge2", "rougeL")}
AUTO = "auto"
# Names for people (tables, the verdict sentence); the key stays the metrics.json key.
DISPLAY = {
    "f1": "macro F1", "precision": "macro precision", "recall": "macro recall",
    "pr_auc": "PR-AUC", "majority_rate": "majority-class rate", "bleu": "BLEU",
    "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "meteor": "METEOR",
    "exact_match": "exact match", "token_f1": "token F1", "label_accuracy": "label accuracy",
    "label_f1": "label macro F1", "out_of_set_rate": "answers outside the set",
}
# Metrics the training loop's validation records carry (``val_<name>`` in history.jsonl): an
# encoder classifier's scores, and for causal LMs (every other task) the response loss.
CLASSIFIER_VALIDATION = frozenset({"loss", "accuracy", "precision", "recall", "f1"})
CAUSAL_VALIDATION = frozenset({"loss", "perplexity"})
SHORT_REASON = f"not meaningful: references under {SHORT_TOKENS} tokens"


@dataclass(frozen=True)
class MetricPlan:
    """What a run reports, in order, and why. ``facts`` holds the numbers the rules read."""

    task: str
    headline: str
    why: str
    supporting: tuple[str, ...]
    degenerate: dict[str, str] = field(default_factory=dict)  # reported but marked: name -> why
    left_out: dict[str, str] = field(default_factory=dict)  # not reported: name -> why
    closed_set: tuple[str, ...] = ()  # the answers, when generations are scored as labels
    positive_label: str | None = None  # the rare class PR-AUC is computed for
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def reported(self) -> tuple[str, ...]:
        """Every reported metric: the headline, the supporting ones, the degenerate ones kept."""
        return (self.headline, *self.supporting, *self.degenerate)

    def note(self, metric: str) -> str:
        """The table's remark on a metric: headline, degenerate (why), or nothing."""
        if metric == self.headline:
            return "headline"
        return self.degenerate.get(metric, "")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["supporting"] = list(self.supporting)
        out["closed_set"] = list(self.closed_set)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricPlan:
        """The plan stored in metrics.json (``"plan"``) back as an object."""
        return cls(
            task=data["task"], headline=data["headline"], why=data.get("why", ""),
            supporting=tuple(data.get("supporting", ())),
            degenerate=dict(data.get("degenerate", {})), left_out=dict(data.get("left_out", {})),
            closed_set=tuple(data.get("closed_set", ())), positive_label=data.get("positive_label"),
            facts=dict(data.get("facts", {})),
        )

    def lines(self) -> list[str]:
        """The plan for people, as printed at the start of run and evaluate."""
        out = [f"metric plan: {display(self.headline)} leads: {self.why}"]
        if self.supporting:
            out.append("  beside it: " + ", ".join(display(m) for m in self.supporting))
        out += [f"  kept but marked: {display(m)} ({why})" for m, why in self.degenerate.items()]
        out += [f"  left out: {display(m)} ({why})" for m, why in self.left_out.items()]
        return out


def display(metric: str) -> str:
    return DISPLAY.get(metric, metric)


def headline_metric(plan: MetricPlan) -> str:
    """The validation key (``val_<name>`` in history.jsonl) to select checkpoints by.

    The training loop's validation computes loss, accuracy and macro precision/recall/F1 for an
    encoder classifier (``plan.task == "classification"``) and the response loss and perplexity
    for causal LMs (every other task, classification-as-instruction included); a headline it
    does not compute (generation metrics need generating, PR-AUC the scores of a whole split)
    falls back to ``val_loss``. Drop the ``val_`` prefix for the loop's ``best_metric``;
    :func:`improved` says which direction is better.
    """
    computed = CLASSIFIER_VALIDATION if plan.task == "classification" else CAUSAL_VALIDATION
    return f"val_{plan.headline}" if plan.headline in computed else "val_loss"


def _expand(requested: Sequence[str] | None) -> tuple[bool, list[str]]:
    """(whether the plan's own choice is wanted, the names asked for explicitly)."""
    names = list(requested) if requested else [AUTO]
    known = {AUTO, *CLASSIFICATION_METRICS, *GENERATION_METRICS, *CLOSED_SET_METRICS, *ALIASES}
    unknown = [n for n in names if n not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1, cutoff=0.5)
        raise ConfigError(
            f"'evaluation.metrics': unknown metric {unknown[0]!r}."
            + (f" Did you mean '{close[0]}'?" if close else ""),
            hint="Allowed: " + ", ".join(sorted(known)) + " (auto is the plan's choice).",
        )
    explicit: list[str] = []
    for name in names:
        if name != AUTO:
            explicit += ALIASES.get(name, (name,))
    return AUTO in names, list(dict.fromkeys(explicit))


def _finish(task: str, headline: str, why: str, chosen: list[str], degenerate: dict[str, str],
            requested: Sequence[str] | None, available: Sequence[str], **extra: Any) -> MetricPlan:
    """Apply ``evaluation.metrics`` to the plan's own choice.

    ``chosen``: the plan's supporting metrics; ``degenerate``: metrics judged not meaningful
    here (left out unless asked for); ``available``: what this task computes.
    """
    auto, explicit = _expand(requested)
    left_out = {n: f"not computed for {task}" for n in explicit if n not in available}
    wanted = [*(chosen if auto else ()), *(n for n in explicit if n in available)]
    wanted = [m for m in dict.fromkeys(wanted) if m != headline]
    marked = {m: degenerate[m] for m in wanted if m in degenerate}
    supporting = [m for m in wanted if m not in degenerate]
    left_out.update({m: why for m, why in degenerate.items() if m not in marked})
    if not auto:  # what the plan would have shown but evaluation.metrics does not ask for
        left_out.update({m: "not in evaluation.metrics" for m in chosen
                         if m != headline and m not in wanted and m not in left_out})
    return MetricPlan(task, headline, why, tuple(supporting), marked, left_out, **extra)


# ---------------------------------------------------------------------------------------------
# Classification (an encoder classifier, or classification records on a causal LM)

def label_balance(labels: Sequence[Hashable]) -> dict[str, Any]:
    """Counts per label (most common first), the majority share and largest/smallest ratio."""
    if not labels:
        raise ValueError("no labels to plan metrics from")
    counts = Counter(labels).most_common()
    largest, smallest = counts[0], counts[-1]
    return {
        "counts": {str(k): v for k, v in counts},
        "majority_label": str(largest[0]),
        "majority_share": largest[1] / len(labels),
        "minority_label": str(smallest[0]),
        "minority_share": smallest[1] / len(labels),
        "imbalance_ratio": largest[1] / smallest[1],
    }


def plan_classification(
    labels: Sequence[Hashable], requested: Sequence[str] | None = None,
    task: str = "classification",
) -> MetricPlan:
    """The plan of a classifier from its training labels (see the module docstring)."""
    facts = label_balance(labels)
    n_classes = len(facts["counts"])
    ratio, majority = facts["imbalance_ratio"], facts["majority_share"]
    positive = None
    if n_classes >= 2 and ratio >= IMBALANCE_RATIO:
        headline = "f1"
        why = (f"labels are imbalanced ({facts['majority_label']} is {majority:.0%} of the "
               f"training examples, {ratio:.1f}x the rarest class): accuracy rewards answering "
               "the majority class; macro F1 weighs every class the same")
        chosen = ["accuracy", "majority_rate", "precision", "recall"]
        if n_classes == 2 and facts["minority_share"] <= RARE_SHARE:
            positive = facts["minority_label"]
            chosen.insert(0, "pr_auc")
            why += f"; PR-AUC of the rare class {positive} ({facts['minority_share']:.0%}) beside it"
    else:
        headline = "accuracy"
        why = (f"labels are balanced enough (largest class {majority:.0%}, {ratio:.1f}x the "
               f"rarest): accuracy reads plainly; macro F1 beside it")
        chosen = ["f1", "majority_rate", "precision", "recall"]
    available = [m for m in CLASSIFICATION_METRICS if m != "pr_auc" or positive is not None]
    return _finish(task, headline, why, chosen, {}, requested, available,
                   positive_label=positive, facts=facts)


# ---------------------------------------------------------------------------------------------
# Generative tasks (instruction, qa, chat)

def reference_facts(references: Sequence[str]) -> dict[str, Any]:
    """How long the reference answers are and how many distinct ones there are."""
    if not references:
        raise ValueError("no references to plan metrics from")
    lengths = [len(r.split()) for r in references]
    distinct = Counter(normalize_answer(r) for r in references)
    return {
        "references": len(references),
        "distinct_references": len(distinct),
        "median_reference_tokens": statistics.median(lengths),
        "max_reference_tokens": max(lengths),
        "answers": [a for a, _ in distinct.most_common(CLOSED_SET_MAX)],
    }


def is_closed_set(facts: Mapping[str, Any]) -> bool:
    """Few distinct short answers, each repeated: a label set written out as text."""
    distinct = facts["distinct_references"]
    return (2 <= distinct <= CLOSED_SET_MAX
            and facts["references"] >= CLOSED_SET_REPEAT * distinct
            and facts["max_reference_tokens"] < SHORT_TOKENS)


def plan_generation(
    task: str, references: Sequence[str], requested: Sequence[str] | None = None
) -> MetricPlan:
    """The plan of a generative run from its training references (see the module docstring)."""
    facts = reference_facts(references)
    answers = facts.pop("answers")
    median = facts["median_reference_tokens"]
    short = median < SHORT_TOKENS
    degenerate: dict[str, str] = {}
    if short:
        degenerate = {"bleu": f"{SHORT_REASON}: BLEU needs 4-grams",
                      "rouge2": f"{SHORT_REASON}: ROUGE-2 needs bigrams"}
    if median <= 1:
        degenerate["meteor"] = "one-word references: its fragment penalty caps a right answer at 0.5"
    available = list(GENERATION_METRICS)
    closed: tuple[str, ...] = ()
    if is_closed_set(facts):
        closed = tuple(sorted(answers))
        available += CLOSED_SET_METRICS
        headline = "label_f1"
        why = (f"the {facts['references']} reference answers come from a closed set of "
               f"{len(closed)} ({', '.join(closed)}): scored as labels, macro F1 over the set "
               "leads; BLEU/ROUGE on such answers say nothing")
        chosen = ["label_accuracy", "out_of_set_rate", "exact_match", "token_f1", "perplexity"]
    elif task == "qa" or short:
        headline = "token_f1"
        why = ((f"question answering (median answer {median:g} tokens)" if task == "qa" else
                f"short answers (median {median:g} tokens)")
               + ": token F1 gives partial credit; exact match beside it")
        chosen = ["exact_match", "meteor", "perplexity", "rougeL", "rouge1"]
    else:
        headline = "rougeL"
        why = (f"free text (median reference {median:g} tokens): ROUGE-L measures the longest "
               "common word sequence; BLEU and METEOR (synonyms, stems) beside it, and the "
               "reference perplexity, which covers the whole test split")
        chosen = ["bleu", "meteor", "perplexity", "rouge1", "rouge2", "token_f1"]
    return _finish(task, headline, why, chosen, degenerate, requested, available,
                   closed_set=closed, facts=facts)


def plan_metrics(
    task: str, *, labels: Sequence[Hashable] = (), references: Sequence[str] = (),
    requested: Sequence[str] | None = None,
) -> MetricPlan:
    """The plan of a ``task`` run: classification families from ``labels``, generative ones
    from ``references`` (both of the training split)."""
    if task.startswith("classification"):
        return plan_classification(labels, requested, task)
    return plan_generation(task, references, requested)


def plan_for_records(
    task: str, records: Sequence[Record], requested: Sequence[str] | None = None
) -> MetricPlan:
    """The plan from a training split: the labels of classification records, else the final
    replies (the references a generative model is scored against)."""
    from tunesmith.train.prompts import record_messages

    labels = [r.label for r in records if isinstance(r, ClassificationRecord)]
    if labels:
        return plan_metrics(task, labels=labels, requested=requested)
    return plan_metrics(task, references=[record_messages(r)[-1]["content"] for r in records],
                        requested=requested)


# ---------------------------------------------------------------------------------------------
# Using the plan on scores

def select(plan: MetricPlan, scores: Mapping[str, Any]) -> dict[str, Any]:
    """``scores`` restricted to the reported metrics, plan order first; the majority-class
    rate (accuracy is read beside it), the reference perplexity and ``loss`` (measured on the
    whole split) and the baseline's ``kind`` always stay."""
    keep = [*plan.reported, "majority_rate", "perplexity", "loss", "kind"]
    return {k: scores[k] for k in keep if k in scores}


def ordered(plan: MetricPlan, names: Sequence[str]) -> list[str]:
    """``names`` in the plan's order (headline first), anything else after, as given."""
    order = {m: i for i, m in enumerate(plan.reported)}
    return sorted(names, key=lambda m: order.get(m, len(order)))


@dataclass(frozen=True)
class Comparison:
    """Baseline against finetuned on one metric: the one answer to "did finetuning win" that
    the run's end, the report and the CLI all read."""

    metric: str
    baseline: float
    finetuned: float

    @property
    def change(self) -> float:
        return self.finetuned - self.baseline

    @property
    def result(self) -> str:
        """``won`` (better in the metric's direction), ``matched`` (equal) or ``lost``."""
        if self.change == 0:
            return "matched"
        return "won" if improved(self.metric, self.change) else "lost"


def compare(metric: str, metrics: Mapping[str, Any]) -> Comparison | None:
    """``metrics.json``'s baseline and finetuned scores on ``metric``; None without both."""
    before = (metrics.get("baseline") or {}).get(metric)
    after = (metrics.get("finetuned") or {}).get(metric)
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)):
        return None
    return Comparison(metric, float(before), float(after))


def verdict(plan: MetricPlan, metrics: Mapping[str, Any]) -> str | None:
    """The "finetuning beat the baseline" sentence, on the headline metric; None without both
    scores."""
    comparison = compare(plan.headline, metrics)
    if comparison is None:
        return None
    said = (f"{display(comparison.metric)} {comparison.baseline:.4f} -> "
            f"{comparison.finetuned:.4f} ({comparison.change:+.4f})")
    if comparison.result == "won":
        return f"finetuning beat the baseline on the headline metric: {said}"
    if comparison.result == "matched":
        return f"finetuning matched the baseline on the headline metric ({said})."
    return (f"finetuning did NOT beat the baseline on the headline metric ({said}): look at "
            "plots/loss.png; too few steps or too low a learning rate are the usual causes.")


def plan_of(metrics: Mapping[str, Any]) -> MetricPlan | None:
    """The plan stored in a metrics.json, or None for a run evaluated before plans existed."""
    data = metrics.get("plan")
    return MetricPlan.from_dict(data) if isinstance(data, Mapping) and "headline" in data else None


def mlflow_tags(plan: MetricPlan) -> dict[str, str]:
    """Tags that mark the plan in MLflow: the headline and why, and each degenerate metric
    (``metric_plan.degenerate.bleu: not meaningful ...``) beside its logged number."""
    tags = {"metric_plan.headline": plan.headline, "metric_plan.why": plan.why[:5000],
            "metric_plan.supporting": ",".join(plan.supporting)}
    tags.update({f"metric_plan.degenerate.{m}": why for m, why in plan.degenerate.items()})
    tags.update({f"metric_plan.left_out.{m}": why for m, why in plan.left_out.items()})
    return tags
