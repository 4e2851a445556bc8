"""Continual learning: `tunesmith run --continue-from RUN` trains task B from task A's adapter.

The guide's advanced topic: a model learns tasks one after another, and learning B may make it
forget A (catastrophic forgetting). :func:`tunesmith.pipelines.run.run` with ``continue_from``
calls the functions here:

- :func:`earlier_run` checks that RUN can be continued (a finished run on the same base with
  the same method family; an encoder classifier also needs the same labels, since the head is
  shared) and fills in its base and method when the config leaves them unset;
- :func:`write_replay` puts ``prepare.replay_fraction`` of A's training records into
  ``data/replay.jsonl``, which training reads beside train.jsonl (the replay remedy);
- :func:`forgetting_of` scores A's test split with A's adapter (before) and with B's (after),
  with A's own evaluation settings: the ``continual`` section of metrics.json.

The other remedy, separate adapters, needs no option: train B without --continue-from and
serve both on one base (`tunesmith serve --run A --run B`, switched per request); A's scores
then stay exactly as they were. :data:`REMEDIES` says both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import runfiles
from tunesmith.config import Config
from tunesmith.errors import ConfigError, UsageError
from tunesmith.pipelines.evaluate import read_run, score_task
from tunesmith.pipelines.train import read_split


@dataclass(frozen=True)
class EarlierRun:
    """Task A: the run that B continues."""

    run_dir: Path
    meta: dict[str, Any]  # its run.json
    cfg: Config  # its config.yaml (its evaluation settings score it before and after)

    @property
    def adapter(self) -> Path:
        return self.run_dir / "adapter"

    @property
    def data_dir(self) -> Path:
        return Path(self.meta.get("data_dir") or self.run_dir / "data")


def earlier_run(from_run: str | Path, cfg: Config, log: Callable[[str], None] = print) -> tuple[EarlierRun, Config]:
    """Task A's run, and ``cfg`` with A's base model and method where ``cfg`` leaves them unset.

    Raises UsageError when ``from_run`` is not a finished run folder, ConfigError when ``cfg``
    names another base model or another method family (see
    :func:`tunesmith.methods.method_family`). Reads two small files.
    """
    from tunesmith.methods import method_family

    root, meta, a_cfg = read_run(from_run)
    earlier = EarlierRun(root, meta, a_cfg)
    if not (earlier.adapter / runfiles.ADAPTER_META).is_file() or not (root / runfiles.METRICS).is_file():
        raise UsageError(f"--continue-from {root}: that run has no trained adapter/ or no metrics.json "
                         "(it did not finish).",
                         hint=f"Finish it first with `tunesmith run --resume {root}`.")
    finetune = cfg.finetune
    inherited = {k: meta[k] for k in ("model", "method") if k not in finetune.model_fields_set}
    if inherited:
        finetune = finetune.model_copy(update=inherited)
        log(f"continuing {root}: " + ", ".join(f"finetune.{k} = {v}" for k, v in inherited.items())
            + " (from that run)")
    if finetune.model != meta["model"]:
        raise ConfigError(
            f"finetune.model is '{finetune.model}' but {root} was trained on '{meta['model']}': "
            "training continues an adapter on the base it was trained for.",
            hint=f"Set finetune.model: {meta['model']} (or leave it unset), or train without --continue-from.",
        )
    if method_family(finetune.method) != method_family(meta["method"]):
        raise ConfigError(
            f"finetune.method is '{finetune.method}' but {root} was trained with '{meta['method']}': "
            "training can only continue an adapter of the same method family (lora and lora_plus "
            "share weights; dora, qlora, adapter and full only themselves).",
            hint=f"Set finetune.method: {meta['method']} (or leave it unset), or train without --continue-from.",
        )
    return earlier, cfg.model_copy(update={"finetune": finetune})


def check_labels(earlier: EarlierRun, task: str, labels: list[str]) -> None:
    """An encoder classifier's head is part of its adapter: B must have A's labels. Raises
    UsageError otherwise (causal LMs name the labels in the prompt and need no check)."""
    if task == "classification" and earlier.meta.get("task") == "classification" and labels != earlier.meta.get("labels"):
        raise UsageError(
            f"this data's labels {labels} differ from those of {earlier.run_dir} "
            f"{earlier.meta.get('labels')}: an encoder classifier's head is part of its adapter, "
            "so training can only continue on the same labels.",
            hint="Keep separate adapters instead: train without --continue-from and serve both "
            f"runs on one base (`tunesmith serve --run {earlier.run_dir} --run RUN`).",
        )
    if task == "classification" and earlier.meta.get("task") != "classification":
        raise UsageError(f"{earlier.run_dir} is a {earlier.meta.get('task')} run on a causal LM; "
                         "an encoder classifier cannot continue it.")


def write_replay(earlier: EarlierRun, cfg: Config, data_dir: Path, causal_model: bool,
                 log: Callable[[str], None] = print) -> int:
    """Write ``prepare.replay_fraction`` of A's training records to ``data_dir/replay.jsonl``.

    On a causal LM they are written as the chat messages they train as (tagged with A's task),
    so any two tasks can share a training set; an encoder classifier replays them as they
    are (same labels, checked before). The manifest records the count, and its data hash
    covers the replayed file. Returns how many records were written (0 writes nothing).
    """
    from tunesmith.data.io import write_jsonl
    from tunesmith.train.mixing import as_chat, replay_sample

    fraction = cfg.prepare.replay_fraction
    if not fraction:
        return 0
    a_records = read_split(earlier.data_dir, "train")
    sample = replay_sample(a_records, fraction, seed=cfg.prepare.seed)
    if causal_model:
        a_task = str(earlier.meta.get("task"))
        sample = [as_chat(r, a_task, earlier.meta.get("labels") or ()) for r in sample]
    path = data_dir / runfiles.REPLAY
    write_jsonl(sample, path)
    manifest_path = data_dir / runfiles.MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        digest = hashlib.sha256(str(manifest.get("data_sha256", "")).encode() + path.read_bytes())
        manifest["data_sha256"] = digest.hexdigest()
        manifest["replay"] = {"from_run": str(earlier.run_dir), "fraction": fraction,
                              "records": len(sample), "of": len(a_records)}
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log(f"replay: {len(sample)} of {earlier.run_dir}'s {len(a_records)} training records "
        f"(prepare.replay_fraction {fraction:g}) in {path}")
    return len(sample)


def remedies(earlier: EarlierRun, out: Path, replayed: bool) -> list[str]:
    """The guide's two remedies against forgetting, as commands for this pair of runs."""
    lines = []
    if not replayed:
        lines.append("replay part of the earlier task's data: add --set prepare.replay_fraction=0.2")
    lines.append("keep separate adapters: train without --continue-from and serve both on one base, "
                 f"switched per request: `tunesmith serve --run {earlier.run_dir} --run {out}`")
    return lines


def forgetting_of(earlier: EarlierRun, out: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Task A's test scores with A's adapter (before) and with the run in ``out``'s (after).

    Both use A's data, labels and evaluation settings, so they compare exactly. Returns the
    ``continual`` section of metrics.json: ``from_run``, ``task``, ``headline``, ``before``,
    ``after``, ``delta`` (after - before), ``forgot`` (whether the headline got worse),
    ``replay`` and ``remedies``. Costs two scorings of A's test split (see
    :func:`tunesmith.pipelines.evaluate.score_task`).
    """
    from tunesmith.evaluate.metric_plan import Comparison, plan_for_records

    meta, a_cfg = earlier.meta, earlier.cfg
    task = str(meta["task"])
    labels, method = meta.get("labels"), str(meta.get("method", "lora"))
    log(f"task A ({earlier.run_dir}, {task}): scoring its test split with its own adapter and "
        "with this run's")
    before = score_task(meta["model"], earlier.adapter, task, earlier.data_dir, a_cfg,
                        labels=labels, method=method)
    after = score_task(meta["model"], out / runfiles.ADAPTER_DIR, task, earlier.data_dir, a_cfg,
                       labels=labels, method=method)
    record_task = "classification" if meta.get("labels") else task
    headline = plan_for_records(task, read_split(earlier.data_dir, "train", record_task),
                                a_cfg.evaluation.metrics).headline
    delta = {k: after[k] - v for k, v in before.items()
             if isinstance(v, (int, float)) and isinstance(after.get(k), (int, float))}
    manifest_path = out / runfiles.DATA_DIR / runfiles.MANIFEST
    replay = (json.loads(manifest_path.read_text(encoding="utf-8")).get("replay")
              if manifest_path.is_file() else None)
    return {
        "from_run": str(earlier.run_dir), "task": task, "headline": headline,
        "before": before, "after": after, "delta": delta,
        # Forgot: A's headline got worse in its own direction (the run's won/matched/lost).
        "forgot": Comparison(headline, before[headline], after[headline]).result == "lost",
        "replay": replay or {"fraction": 0.0, "records": 0},
        "remedies": remedies(earlier, out, bool(replay and replay.get("records"))),
    }


def continual_path_checks(cfg: Config, continue_from: str | Path | None, nproc: int) -> None:
    """Options that only make sense together; raises ConfigError/UsageError early."""
    if cfg.prepare.replay_fraction and continue_from is None:
        raise ConfigError(
            f"prepare.replay_fraction is {cfg.prepare.replay_fraction:g}, but this run continues "
            "no earlier run: replay draws from the earlier task's training data.",
            hint="Add --continue-from RUN, or set prepare.replay_fraction: 0.",
        )
    if continue_from is not None and nproc != 1:
        raise UsageError("--continue-from trains in one process: leave out --nproc.")
