"""`tunesmith review RUN`: open the review app on a run, or summarise its votes (--results).

- :func:`open_review` builds the pairs (answers from samples.jsonl, the missing ones generated),
  stores them with the review's seed and returns the :class:`ReviewSession` the app serves.
- :func:`serve` runs the app on 127.0.0.1 (a real uvicorn server) until interrupted.
- :func:`review_results` computes the statistics, writes ``review/results.json``,
  ``review/preferences.jsonl`` (TRL DPO) and ``review/corrections.jsonl``, adds a "Human
  review" section to report.html/report.md and logs the numbers to the run's MLflow run.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import runfiles
from tunesmith.errors import UsageError

DEFAULT_PORT = 8765


def open_review(
    run_ref: str | Path,
    against: Sequence[str] = (),
    *,
    limit: int | None = None,
    seed: int | None = None,
    runs_dir: str | Path = "runs",
    log: Callable[[str], None] = print,
) -> Any:
    """The review of ``run_ref`` against ``against`` (default ``baseline`` for generative runs).

    Generates answers that samples.jsonl lacks (a model load and about a second per answer on
    CPU). Raises UsageError for an unknown run, runs of different tasks, or a run with nothing
    to review (no samples, test split or errors.jsonl).
    """
    from tunesmith.config import load_config
    from tunesmith.review.generate import Playground, fill_missing
    from tunesmith.review.pairs import build_pairs, open_run, plan
    from tunesmith.review.session import ReviewSession, store_for

    run = open_run(run_ref, runs_dir)
    if not run.generative and not run.errors() and not against:
        raise UsageError(
            f"{run.path} has no errors.jsonl (and a classification run has no generated samples "
            "to compare): there is nothing to review.",
            hint=f"Evaluate the run first: `tunesmith evaluate {run.path}`.",
        )
    review_plan = None
    if run.generative or against:  # checked (and answers generated) before anything is written
        review_plan = plan(run, list(against) or ["baseline"], limit=limit, runs_dir=runs_dir)
        generated = fill_missing(review_plan, log)
    store = store_for(run)
    stored_seed = store.get_meta("seed")
    seed = seed if seed is not None else stored_seed if stored_seed is not None else secrets.randbits(31)
    if stored_seed is None:
        store.set_meta("seed", seed)
    pair_ids: list[str] = []
    others = []
    if review_plan is not None:
        pairs = build_pairs(review_plan.prompts, review_plan.references, review_plan.answers, seed)
        new = store.add_pairs(pairs)
        pair_ids = [p.id for p in pairs]
        others = [s for s in review_plan.sources.values() if not isinstance(s, str) and s.name != run.name]
        log(f"{len(review_plan.prompts)} prompts, {len(review_plan.answers)} models "
            f"({', '.join(review_plan.answers)}): {len(pairs)} blind pairs ({new} new"
            f"{f', {generated} answers generated' if generated else ''}); seed {seed}")
    # The playground answers with the evaluation's generation length, as samples.jsonl was made.
    max_new_tokens = load_config(run.path / runfiles.CONFIG).evaluation.max_new_tokens
    playground = Playground([run, *others], max_new_tokens=max_new_tokens)
    return ReviewSession(run, store, pair_ids, playground, seed=seed)


def _check_port(host: str, port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}).",
                             hint="Another program uses that port: pass --port with a free one.") from None


def serve(session: Any, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          log: Callable[[str], None] = print) -> None:
    """Serve the review app until Ctrl-C; prints its URL first."""
    import uvicorn

    from tunesmith.review.app import create_app

    _check_port(host, port)
    log(f"review app for {session.run.name}: http://{host}:{port}/  (Ctrl-C stops it; every vote "
        f"is saved as it is made, in {session.store.path})")
    # log_config=None: the app leaves the process's logging as it found it (library first).
    uvicorn.run(create_app(session), host=host, port=port, log_level="warning", log_config=None)


@dataclass
class ReviewOutcome:
    run_dir: Path
    results: Any  # ReviewResults
    files: dict[str, Path]
    preference_rows: int
    corrections: int


def _flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    out: dict[str, Any] = {"review_votes": results["votes"], "review_pairs": results["pairs"],
                             "review_label_corrections": results.get("label_corrections", 0)}
    for h in results["head_to_head"]:
        for key in ("wins", "losses", "ties", "both_bad", "win_rate", "wilson_low", "wilson_high",
                    "win_rate_ties_half", "bootstrap_low", "bootstrap_high"):
            out[f"review_{h['opponent']}_{key}"] = h[key]
    for r in results["ranking"]:
        out[f"review_bt_{r['model']}"] = r["score"]
    position, metric = results.get("position") or {}, results.get("metric") or {}
    out["review_position_left_rate"] = position.get("left_rate")
    out["review_position_p_value"] = position.get("p_value")
    out["review_metric_agreement"] = metric.get("rate")
    kappas = [a["kappa"] for a in results["agreement"] if a["kappa"] is not None]
    if kappas:
        out["review_kappa_mean"] = sum(kappas) / len(kappas)
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float))}


def _log_mlflow(run_dir: Path, results: dict[str, Any], files: dict[str, Path]) -> bool:
    from tunesmith.config import load_config

    meta = json.loads((run_dir / runfiles.RUN_META).read_text(encoding="utf-8"))
    cfg = load_config(run_dir / runfiles.CONFIG)
    if not cfg.tracking.enabled or not meta.get("mlflow_run_id"):
        return False
    import mlflow

    from tunesmith.track.experiment import MlflowTracker

    tracker = MlflowTracker(cfg, meta["run_name"])
    tracker.start(meta["mlflow_run_id"])
    try:
        mlflow.log_metrics(_flat_metrics(results))
        for path in files.values():
            mlflow.log_artifact(str(path), artifact_path=runfiles.REVIEW_DIR)
        for name in (runfiles.REPORT_HTML, runfiles.REPORT_MD):
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name))
    finally:
        tracker.finish()
    return True


def review_results(run_ref: str | Path, *, runs_dir: str | Path = "runs",
                   log: Callable[[str], None] = print) -> ReviewOutcome:
    """Every statistic over the stored votes of ``run_ref``, written and logged (see module doc)."""
    from tunesmith.report import write_reports
    from tunesmith.review.export import write_corrections_file, write_preferences
    from tunesmith.review.pairs import open_run
    from tunesmith.review.session import store_for
    from tunesmith.review.stats import summarize

    run = open_run(run_ref, runs_dir)
    if not (run.path / runfiles.REVIEW_DIR).is_dir():
        raise UsageError(f"{run.path} has not been reviewed yet (no {runfiles.REVIEW_DIR}/ folder).",
                         hint=f"Open the review app first: `tunesmith review {run_ref}`.")
    store = store_for(run)
    pairs, votes, marks = store.pairs(), store.votes(), store.marks()
    results = summarize(pairs, votes, run.name, seed=store.get_meta("seed") or 0,
                        metric=run.headline)
    folder = run.path / runfiles.REVIEW_DIR
    files = {"results": folder / runfiles.REVIEW_RESULTS, "preferences": folder / runfiles.PREFERENCES,
             "corrections": folder / runfiles.CORRECTIONS}
    n_pref = write_preferences(pairs, votes, files["preferences"])
    n_corr = write_corrections_file(marks, files["corrections"])
    saved = {**results.to_dict(), "label_corrections": n_corr}
    files["results"].write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    write_reports(run.path)
    if _log_mlflow(run.path, saved, files):
        log("logged the review to the run's MLflow run")
    return ReviewOutcome(run.path, results, files, n_pref, n_corr)
