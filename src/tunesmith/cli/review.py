"""``tunesmith review RUN``: blind human review of a run in the browser, and its results.

Exit codes: 0 done (or the app stopped with Ctrl-C); 1 bad data; 2 a bad command line, an
unknown run, runs of different tasks, or a busy port.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction) -> None:
    review = commands.add_parser(
        "review", help="judge a run's answers blind in the browser (human evaluation)",
        description="Serves a local review app on 127.0.0.1: one prompt and two answers with the "
        "models hidden and sides drawn at random; vote with buttons or keys 1-4 (A, B, tie, both "
        "bad). Votes are saved at once in RUN/review/review.sqlite. Classification runs get the "
        "error browser (mark wrong labels). Every run gets a playground (base vs each run).",
    )
    review.add_argument("run", help="a run folder, or a run name under --runs-dir")
    review.add_argument("--against", action="append", default=[], metavar="MODEL",
                        help="baseline (default), zero_shot, few_shot or another RUN (repeatable: "
                        "three or more models get a Bradley-Terry ranking)")
    review.add_argument("--limit", type=int, help="review this many test prompts (default: the run's "
                        "samples, or 20); answers missing from samples.jsonl are generated")
    review.add_argument("--seed", type=int, help="seed of the blind layout (default: stored with the "
                        "review, drawn at random the first time)")
    review.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    review.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    review.add_argument("--runs-dir", default="runs", help="where run names are looked up (default runs)")
    review.add_argument("--results", action="store_true",
                        help="print the results of the stored votes, write them (review/results.json, "
                        "preferences.jsonl for TRL DPO, corrections.jsonl), add them to report.html "
                        "and MLflow, and exit")
    review.set_defaults(handler=_review)


def _render(outcome: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    def num(value: Any) -> str:
        return "-" if value is None or value != value else f"{value:.3f}"

    results = outcome.results
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"{results.votes} votes by {len(results.reviewers)} reviewer(s) on {results.pairs} pairs")
    table = Table(title=f"{results.model} against each model", title_justify="left")
    for column in ("against", "wins", "losses", "ties", "both bad", "win rate [Wilson 95%]",
                   "ties as half [bootstrap 95%]"):
        table.add_column(column, justify="left" if column == "against" else "right")
    for h in results.head_to_head:
        table.add_row(h.opponent, str(h.wins), str(h.losses), str(h.ties), str(h.both_bad),
                      f"{num(h.win_rate)} [{num(h.wilson_low)}, {num(h.wilson_high)}]",
                      f"{num(h.win_rate_ties_half)} [{num(h.bootstrap_low)}, {num(h.bootstrap_high)}]")
    if results.head_to_head:
        console.print(table)
    if results.ranking:
        console.print("Bradley-Terry: " + "; ".join(
            f"{r.model} {r.score:.2f} [{r.low:.2f}, {r.high:.2f}]" for r in results.ranking))
    p = results.position
    if p and p.decisive:
        console.print(f"position bias: left won {p.left_wins} of {p.decisive} decisive votes "
                      f"({num(p.left_rate)}, binomial p = {num(p.p_value)})")
    m = results.metric
    if m and m.agree + m.disagree:
        console.print(f"{m.metric} agrees with people on {m.agree} of {m.agree + m.disagree} decisive votes")
    for a in results.agreement:
        console.print(f"Cohen's kappa {a.reviewer_a}/{a.reviewer_b}: "
                      f"{'-' if a.kappa is None else f'{a.kappa:.2f}'} over {a.items} shared items")
    if outcome.corrections:
        console.print(f"{outcome.corrections} test records marked as wrongly labelled")
    console.print(f"wrote {outcome.files['results']}, {outcome.preference_rows} preference pairs to "
                  f"{outcome.files['preferences']}, {outcome.corrections} corrections to "
                  f"{outcome.files['corrections']}; report.html updated")


def _review(args: argparse.Namespace) -> int:
    from tunesmith.cli.run import _quiet

    _quiet()
    if args.results:
        from tunesmith.pipelines.review import review_results

        _render(review_results(args.run, runs_dir=args.runs_dir))
        return 0
    from tunesmith.pipelines.review import open_review, serve

    session = open_review(args.run, args.against, limit=args.limit, seed=args.seed, runs_dir=args.runs_dir)
    serve(session, host=args.host, port=args.port, log=lambda line: print(line, flush=True))
    return 0
