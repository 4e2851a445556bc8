"""What the loss curves say, and what to change: the guide's training patterns as explicit rules.

Input: history.jsonl records (``kind`` train / eval / event, see docs/DESIGN.md). Output: a
:class:`Diagnosis` with one verdict, every finding with its evidence, and the guide's remedies
("If results are bad") as concrete new values computed from the run's config
(learning rate 2e-4 -> 1e-4, r 8 -> 4, dropout 0.05 -> 0.1 ...).

The rules, checked in this order (the first that holds is the verdict; later ones that also
hold are listed as findings):

1. **unstable (NaN)**: a train loss, validation loss or gradient norm is NaN or infinite.
2. **overfitting from the start**: at the first evaluation the validation loss is at least
   ``START_GAP`` (1.5) times the train loss, and it is higher still at the second evaluation
   (the guide's Pattern 2: 1.20 / 2.80 then 0.50 / 3.20).
3. **overfitting**: the validation loss has risen more than ``OVERFIT_RISE`` (3%) above its best
   while the train loss kept falling (the guide's healthy table at epoch 5: 1.32 -> 1.38).
4. **unstable**: from one evaluation to the next the train loss rose more than ``EPOCH_RISE``
   (25%; the guide's Pattern 3: 2.40 -> 3.80), or a logged train loss is more than
   ``SPIKE_FACTOR`` (1.5) times the median of the ``SPIKE_WINDOW`` (5) before it, or a gradient
   norm is more than ``GRAD_SPIKE_FACTOR`` (10) times the median of those before it.
5. **underfitting**: the train loss fell less than ``UNDERFIT_DROP`` (10%) from its first to
   its last value (the guide's Pattern 1: 2.45 -> 2.38, 3%).
   Also **unstable**: a classifier whose last evaluation predicts a single class (macro recall
   = 1/K and macro precision = accuracy/K: every prediction is the class whose share the
   accuracy is) after training at ``COLLAPSE_LR_FACTOR`` (10) or more times the guide's
   learning rate for the method: the rate knocked the model onto the class prior (seen here:
   MiniLM + LoRA at 9.3e-3 on rotten-tomatoes). At lower rates the same picture is a model
   that has not left the prior yet, and the underfitting rule speaks.
6. **plateau**: the last evaluation improved the validation loss by less than ``PLATEAU_REL``
   (3%) of its previous value (the guide's "Val plateauing": 1.35 -> 1.32); without
   validation, the last third of the logged train losses fell less than 3%.
7. otherwise **healthy**.

A run without evaluations is judged on its train loss only (overfitting cannot be seen then,
and the diagnosis says so).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from tunesmith.config import LORA_FAMILY, FinetuneConfig, override_value
from tunesmith.errors import DataError

START_GAP = 1.5
OVERFIT_RISE = 0.03
EPOCH_RISE = 0.25
SPIKE_FACTOR = 1.5
SPIKE_WINDOW = 5
GRAD_SPIKE_FACTOR = 10.0
UNDERFIT_DROP = 0.10
PLATEAU_REL = 0.03
COLLAPSE_LR_FACTOR = 10.0

VERDICTS = ("healthy", "overfitting", "overfitting_from_start", "underfitting", "plateau", "unstable")


@dataclass(frozen=True)
class Finding:
    pattern: str  # one of VERDICTS
    evidence: str  # the numbers that triggered the rule
    step: int | None = None
    fatal: bool = False  # NaN or infinite values: nothing after them can recover


@dataclass(frozen=True)
class Remedy:
    """One change: ``key`` is a config key (``finetune.learning_rate``) or None for advice."""

    key: str | None
    old: Any
    new: Any
    reason: str

    def render(self) -> str:
        if self.key is None:
            return self.reason
        return f"{self.key.split('.')[-1]}: {_fmt(self.old)} -> {_fmt(self.new)}  ({self.reason})"

    @property
    def override(self) -> str | None:
        return f"{self.key}={_fmt(self.new)}" if self.key else None


@dataclass(frozen=True)
class EpochRow:
    """The guide's table: one row per evaluation."""

    step: int
    epoch: float | None
    train_loss: float | None
    val_loss: float | None


@dataclass
class Diagnosis:
    verdict: str
    findings: list[Finding]
    remedies: list[Remedy]
    rows: list[EpochRow]
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.verdict == "healthy"

    def summary(self) -> str:
        head = next((f.evidence for f in self.findings if f.pattern == self.verdict), "")
        return f"{self.verdict.replace('_', ' ')}" + (f": {head}" if head else "")

    def overrides(self) -> list[str]:
        return [r.override for r in self.remedies if r.override]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "findings": [asdict(f) for f in self.findings],
            "remedies": [{**asdict(r), "text": r.render()} for r in self.remedies],
            "rows": [asdict(r) for r in self.rows],
            "notes": self.notes,
        }


_fmt = override_value  # 2e-4 rather than 0.0002 for learning rates; plain otherwise


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def epoch_rows(history: Sequence[dict[str, Any]]) -> list[EpochRow]:
    """One row per evaluation, with the mean train loss logged since the previous evaluation
    (or the last one logged before it when none was)."""
    rows: list[EpochRow] = []
    window: list[float] = []
    last_train: float | None = None
    for rec in history:
        if rec.get("kind") == "train" and "loss" in rec:
            window.append(rec["loss"])
            last_train = rec["loss"]
        elif rec.get("kind") == "eval" and "val_loss" in rec:
            train = sum(window) / len(window) if window else last_train
            rows.append(EpochRow(rec.get("step", 0), rec.get("epoch"), train, rec["val_loss"]))
            window = []
    return rows


def _spikes(values: list[tuple[int, float]], factor: float) -> list[tuple[int, float, float]]:
    found = []
    for k in range(SPIKE_WINDOW, len(values)):
        ref = median(v for _, v in values[k - SPIKE_WINDOW:k])
        step, value = values[k]
        if ref > 0 and value > factor * ref:
            found.append((step, value, ref))
    return found


def findings_of(history: Sequence[dict[str, Any]]) -> tuple[list[Finding], list[EpochRow], list[str]]:
    """Every rule that holds, in the order of the module docstring."""
    train = [(r.get("step", 0), r["loss"]) for r in history if r.get("kind") == "train" and "loss" in r]
    grads = [(r.get("step", 0), r["grad_norm"]) for r in history
             if r.get("kind") == "train" and r.get("grad_norm") is not None]
    rows = epoch_rows(history)
    notes: list[str] = []
    found: list[Finding] = []

    bad = [(s, v, "train loss") for s, v in train if not _finite(v)]
    bad += [(r.step, r.val_loss, "validation loss") for r in rows if not _finite(r.val_loss)]
    bad += [(s, v, "gradient norm") for s, v in grads if not _finite(v)]
    if bad:
        step, value, what = bad[0]
        found.append(Finding("unstable", f"{what} is {value} at step {step}", step, fatal=True))
    finite_rows = [r for r in rows if _finite(r.val_loss) and _finite(r.train_loss)]
    train = [(s, v) for s, v in train if _finite(v)]
    grads = [(s, v) for s, v in grads if _finite(v)]

    if len(finite_rows) >= 2:
        first, second = finite_rows[0], finite_rows[1]
        if (first.train_loss and first.val_loss >= START_GAP * first.train_loss  # type: ignore[operator]
                and second.val_loss > first.val_loss):  # type: ignore[operator]
            found.append(Finding(
                "overfitting_from_start",
                f"at the first evaluation validation loss {first.val_loss:.3g} is "
                f"{first.val_loss / first.train_loss:.1f}x the train loss {first.train_loss:.3g}, "  # type: ignore[operator]
                f"and it rose to {second.val_loss:.3g} at the next",
                first.step,
            ))
        best = min(finite_rows, key=lambda r: r.val_loss)  # type: ignore[arg-type, return-value]
        last = finite_rows[-1]
        if (last.val_loss > best.val_loss * (1 + OVERFIT_RISE)  # type: ignore[operator]
                and last.train_loss < best.train_loss):  # type: ignore[operator]
            found.append(Finding(
                "overfitting",
                f"validation loss rose from its best {best.val_loss:.3g} (step {best.step}) to "
                f"{last.val_loss:.3g} while train loss fell from {best.train_loss:.3g} to "
                f"{last.train_loss:.3g}",
                best.step,
            ))
        for prev, cur in zip(finite_rows, finite_rows[1:], strict=False):
            if cur.train_loss > prev.train_loss * (1 + EPOCH_RISE):  # type: ignore[operator]
                found.append(Finding(
                    "unstable",
                    f"train loss jumped from {prev.train_loss:.3g} to {cur.train_loss:.3g} "
                    f"between evaluations (step {prev.step} -> {cur.step})",
                    cur.step,
                ))
                break
    elif not rows:
        notes.append("no evaluations in this history: overfitting cannot be judged "
                     "(give the run a validation split).")
    for step, value, ref in _spikes(train, SPIKE_FACTOR)[:1]:
        found.append(Finding("unstable", f"train loss spiked to {value:.3g} at step {step}, "
                                         f"{value / ref:.1f}x the median {ref:.3g} before it", step))
    grad_spikes = _spikes(grads, GRAD_SPIKE_FACTOR)
    if grad_spikes:
        step, value, ref = grad_spikes[0]
        found.append(Finding(
            "unstable",
            f"{len(grad_spikes)} gradient-norm spike(s); the first {value:.3g} at step {step}, "
            f"{value / ref:.0f}x the median {ref:.3g} before it", step,
        ))

    series: list[float] = ([r.train_loss for r in finite_rows if r.train_loss is not None]
                           if len(train) < 2 else [v for _, v in train])
    if len(series) >= 2 and series[0] > 0:
        drop = 1 - series[-1] / series[0]
        if drop < UNDERFIT_DROP:
            found.append(Finding(
                "underfitting",
                f"train loss fell only {drop:.0%} ({series[0]:.3g} -> {series[-1]:.3g})",
            ))
    if len(finite_rows) >= 2 and finite_rows[-2].val_loss:  # a loss of 0 cannot plateau
        prev, last = finite_rows[-2], finite_rows[-1]
        gain = 1 - last.val_loss / prev.val_loss  # type: ignore[operator]
        if 0 <= gain < PLATEAU_REL:
            found.append(Finding(
                "plateau",
                f"the last evaluation improved validation loss by {gain:.1%} "
                f"({prev.val_loss:.3g} -> {last.val_loss:.3g})", last.step,
            ))
    elif not rows and len(train) >= 6:
        tail = train[-max(2, len(train) // 3):]
        gain = 1 - tail[-1][1] / tail[0][1] if tail[0][1] > 0 else 0.0
        if abs(gain) < PLATEAU_REL:
            found.append(Finding("plateau", f"the last third of training moved train loss by "
                                            f"{gain:.1%}", tail[0][0]))
    return found, rows, notes


_ORDER = ("unstable_nan", "overfitting_from_start", "overfitting", "unstable", "underfitting", "plateau")


def _verdict(found: list[Finding]) -> str:
    def rank(f: Finding) -> int:
        return _ORDER.index("unstable_nan" if f.fatal else f.pattern)

    return min(found, key=rank).pattern if found else "healthy"


def _halve(value: float) -> float:
    return float(f"{value / 2:.2g}")


def remedies_for(verdict: str, cfg: FinetuneConfig | None, rows: list[EpochRow]) -> list[Remedy]:
    """The guide's "If results are bad" list, as new values computed from ``cfg``."""
    cfg = cfg or FinetuneConfig()
    lora = cfg.method in LORA_FAMILY
    lr = cfg.learning_rate
    out: list[Remedy] = []
    if verdict in ("overfitting", "overfitting_from_start"):
        out.append(Remedy("finetune.learning_rate", lr, _halve(lr), "smaller steps"))
        if lora and cfg.lora_r > 1:
            out.append(Remedy("finetune.lora_r", cfg.lora_r, max(1, cfg.lora_r // 2),
                              "less capacity to memorise"))
            out.append(Remedy("finetune.lora_alpha", cfg.lora_alpha, max(1, cfg.lora_r // 2) * 2,
                              "keep alpha = 2 x r"))
        if lora:
            out.append(Remedy("finetune.lora_dropout", cfg.lora_dropout,
                              round(min(0.5, max(0.1, cfg.lora_dropout * 2)), 3), "more regularisation"))
        best_epoch = _best_epoch(rows)
        epochs = max(1, min(cfg.num_epochs - 1, best_epoch or cfg.num_epochs - 1))
        if epochs < cfg.num_epochs:
            out.append(Remedy("finetune.num_epochs", cfg.num_epochs, epochs,
                              "stop where validation loss was best"))
        if verdict == "overfitting_from_start":
            out.append(Remedy("finetune.weight_decay", cfg.weight_decay,
                              round(max(0.1, cfg.weight_decay * 10), 3), "stronger regularisation"))
            out.append(Remedy(None, None, None, "check that the validation split resembles the "
                              "training data (tunesmith data stats / data leakage)"))
        if cfg.early_stopping_patience == 0:
            out.append(Remedy("finetune.early_stopping_patience", 0, 2,
                              "stop when validation loss stops improving"))
        out.append(Remedy(None, None, None, "collect more data"))
    elif verdict == "underfitting":
        out.append(Remedy("finetune.learning_rate", lr, float(f"{lr * 1.5:.2g}"), "larger steps"))
        if lora:
            out.append(Remedy("finetune.lora_r", cfg.lora_r, cfg.lora_r * 2, "more capacity"))
            out.append(Remedy("finetune.lora_alpha", cfg.lora_alpha, cfg.lora_r * 4, "keep alpha = 2 x r"))
        out.append(Remedy("finetune.num_epochs", cfg.num_epochs, cfg.num_epochs + 2, "train longer"))
        out.append(Remedy(None, None, None, "check data quality; `tunesmith lr-find` measures a "
                          "learning rate that moves the loss"))
    elif verdict == "unstable":
        out.append(Remedy("finetune.learning_rate", lr, _halve(lr), "smaller steps"))
        warm = cfg.warmup_ratio
        out.append(Remedy("finetune.warmup_ratio", warm, round(min(0.5, max(0.1, warm * 2)), 3),
                          "more warmup"))
        clip = cfg.max_grad_norm
        out.append(Remedy("finetune.max_grad_norm", clip, 1.0 if clip == 0 else _halve(clip),
                          "clip gradients" if clip == 0 else "clip harder"))
        out.append(Remedy(None, None, None, "check for bad data (corrupted or mislabelled "
                          "examples: tunesmith data check)"))
    elif verdict == "plateau":
        best_epoch = _best_epoch(rows)
        if best_epoch and best_epoch < cfg.num_epochs:
            out.append(Remedy("finetune.num_epochs", cfg.num_epochs, best_epoch,
                              "the last epochs added little"))
        out.append(Remedy(None, None, None, "almost done; if the metrics are still short of the "
                          "goal, more capacity (larger r) or more data will move them"))
    return out


def _best_epoch(rows: list[EpochRow]) -> int | None:
    finite = [r for r in rows if _finite(r.val_loss)]
    if not finite:
        return None
    best = min(finite, key=lambda r: r.val_loss)  # type: ignore[arg-type, return-value]
    return math.ceil(best.epoch) if best.epoch else finite.index(best) + 1


def single_class(record: dict[str, Any]) -> int | None:
    """K when an evaluation record of a K-class classifier shows every prediction in one class
    (macro recall 1/K and macro precision accuracy/K), else None."""
    acc, precision, recall = (record.get(f"val_{k}") for k in ("accuracy", "precision", "recall"))
    if not all(isinstance(v, (int, float)) and _finite(v) for v in (acc, precision, recall)):
        return None
    if recall <= 0 or acc <= 0:  # type: ignore[operator]
        return None
    k = round(1 / recall)  # type: ignore[operator]
    if k < 2 or abs(recall - 1 / k) > 1e-9 or abs(precision - acc / k) > 1e-9:  # type: ignore[operator]
        return None
    return k


def _collapse(history: Sequence[dict[str, Any]], cfg: FinetuneConfig | None) -> Finding | None:
    from tunesmith.advise.plan import DEFAULT_LR

    evals = [r for r in history if r.get("kind") == "eval"]
    if cfg is None or not evals or single_class(evals[-1]) is None:
        return None
    default = DEFAULT_LR.get(cfg.method)
    if default is None or cfg.learning_rate < COLLAPSE_LR_FACTOR * default:
        return None
    last = evals[-1]
    return Finding(
        "unstable",
        f"the model predicts a single class at the last evaluation (val accuracy "
        f"{last['val_accuracy']:.3g} is that class's share) after training at learning rate "
        f"{cfg.learning_rate:.2g}, {cfg.learning_rate / default:.0f}x the guide's {cfg.method} "
        f"default {default:g}: a rate this high knocks a classifier onto the class prior",
        last.get("step"),
    )


def headline_notes(history: Sequence[dict[str, Any]], headline: str) -> list[str]:
    """What the validation records say about the run's headline metric (``val_f1`` ...): its
    best and last value, and whether validation loss peaked elsewhere (a checkpoint chosen by
    loss is then not the best by the metric the run is judged by)."""
    if headline == "val_loss":
        return []
    evals = [r for r in history if r.get("kind") == "eval"]
    values = [(r.get("step", 0), r[headline]) for r in evals if _finite(r.get(headline))]
    if not values:
        return []
    lower_better = headline.removeprefix("val_") in ("loss", "perplexity")
    best_step, best = (min if lower_better else max)(values, key=lambda v: v[1])
    last_step, last = values[-1]
    note = (f"headline metric {headline}: best {best:.4f} at step {best_step}, "
            f"{'last' if last_step != best_step else 'also the last'} {last:.4f}")
    losses = [(r.get("step", 0), r["val_loss"]) for r in evals if _finite(r.get("val_loss"))]
    if losses:
        loss_step = min(losses, key=lambda v: v[1])[0]
        if loss_step != best_step:
            note += (f"; validation loss was lowest at step {loss_step}: a checkpoint chosen by "
                     f"loss is not the best by {headline}")
    return [note]


def diagnose_history(
    history: Sequence[dict[str, Any]], cfg: FinetuneConfig | None = None,
    headline: str | None = None,
) -> Diagnosis:
    """Classify a training history and give the remedies for its verdict.

    ``headline``: the run's headline validation key (``metric_plan.headline_metric``, e.g.
    ``val_f1``), whose course is added to the notes."""
    found, rows, notes = findings_of(history)
    if headline:
        notes += headline_notes(history, headline)
    collapse = _collapse(history, cfg)
    if collapse is not None:
        found.append(collapse)
    verdict = _verdict(found)
    if (verdict == "healthy" and len(rows) >= 2 and _finite(rows[-1].val_loss)
            and rows[-2].val_loss):  # a loss of 0 cannot fall further
        gain = 1 - rows[-1].val_loss / rows[-2].val_loss  # type: ignore[operator]
        if gain >= PLATEAU_REL:
            notes.append(f"validation loss was still falling at the end ({gain:.0%} at the last "
                         "evaluation): more epochs may help.")
    return Diagnosis(verdict, found, remedies_for(verdict, cfg, rows), rows, notes)


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """history.jsonl as dicts. Raises DataError naming the line of a broken record."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no history at {p}.", hint="Give a run folder that `tunesmith run` or "
                        "`tunesmith train` wrote (it holds history.jsonl).")
    records = []
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}, line {number}: not JSON ({exc.msg}).") from None
    return records


class DiagnosisCallback:
    """The live diagnosis: re-diagnoses at each evaluation and says so when the verdict changes.

    Plugs into :func:`tunesmith.train.loop.fit` (``on_log``/``on_eval``). It asks the loop to
    stop only when the loss is NaN or infinite (nothing after that can recover); overfitting is
    the loop's early stopping's business. ``changes`` keeps ``(step, Diagnosis)`` per change.
    """

    def __init__(self, cfg: FinetuneConfig | None = None, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.log = log
        self.history: list[dict[str, Any]] = []
        self.verdict = "healthy"
        self.changes: list[tuple[int, Diagnosis]] = []

    def _check(self, step: int) -> bool:
        diagnosis = diagnose_history(self.history, self.cfg)
        if diagnosis.verdict != self.verdict:
            self.verdict = diagnosis.verdict
            self.changes.append((step, diagnosis))
            advice = "; ".join(r.render() for r in diagnosis.remedies[:3])
            self.log(f"diagnosis at step {step}: {diagnosis.summary()}"
                     + (f". Try: {advice}" if advice else ""))
        return any(f.fatal for f in diagnosis.findings)

    def on_log(self, record: dict[str, Any]) -> bool:
        self.history.append(record)
        loss = record.get("loss")
        # A NaN is judged at once; other patterns wait for the next evaluation.
        return self._check(record.get("step", 0)) if loss is not None and not _finite(loss) else False

    def on_eval(self, record: dict[str, Any]) -> bool:
        self.history.append(record)
        return self._check(record.get("step", 0))

    def on_event(self, record: dict[str, Any]) -> None:
        return None

    def on_micro_batch(self, step: int, batch: dict[str, Any]) -> None:
        return None
