"""`tunesmith ab start|report|list`: A/B tests of served models.

Handlers call one function of :mod:`tunesmith.pipelines.ab` and render its result; nothing
heavy is imported at module level.
"""

from __future__ import annotations

import argparse

from tunesmith.cli.track import _tracking_uri_arg, _usage


def _state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", default="serve-state",
                        help="the server's state folder, as given to `tunesmith serve` "
                        "(default: serve-state)")


def register(commands: argparse._SubParsersAction) -> None:
    """Add this area's commands to the top-level parser."""
    ab = commands.add_parser(
        "ab", help="A/B tests: two models in front of users, decided by statistics",
        description="Start an experiment, send requests to `tunesmith serve` with model=ab:NAME "
        "and a user id, report outcomes to POST /v1/feedback, then `tunesmith ab report NAME`.",
    )
    ab.set_defaults(handler=lambda _args: _usage(ab))
    actions = ab.add_subparsers(dest="action", metavar="ACTION")

    start = actions.add_parser(
        "start", help="define experiment NAME (served as model ab:NAME)",
        description="MODEL is a run folder, a served adapter name or a registry NAME@ALIAS. "
        "Each user id is hashed to one arm and stays there.",
    )
    start.add_argument("name", metavar="NAME")
    start.add_argument("--control", required=True, metavar="MODEL", help="the model in use today")
    start.add_argument("--treatment", required=True, metavar="MODEL", help="the challenger")
    start.add_argument("--split", default="50/50", help="control/treatment shares (default 50/50)")
    start.add_argument("--metric", default="click",
                       help="outcome to compare: click (rate; no click = 0), thumbs (rate), "
                       "rating (mean, 1-5), or your own with --kind (default click)")
    start.add_argument("--kind", choices=("rate", "mean"), help="the kind of a custom --metric")
    start.add_argument("--mde", type=float,
                       help="smallest improvement worth shipping, in the metric's units "
                       "(default 0.05 = five points for rates, 0.2 for means)")
    start.add_argument("--alpha", type=float, default=0.05, help="false-positive rate (default 0.05)")
    start.add_argument("--power", type=float, default=0.8, help="planned power (default 0.8)")
    _state_dir_arg(start)
    _tracking_uri_arg(start)
    start.set_defaults(handler=_start)

    report = actions.add_parser(
        "report", help="per-arm figures, tests, guardrails and a decision for NAME",
        description="Safe to read as often as you like: the decision uses an always-valid "
        "sequential test (mSPRT). Exit 0 whatever the decision.",
    )
    report.add_argument("name", metavar="NAME")
    report.add_argument("--promote", action="store_true",
                        help="when the decision is 'ship', move the control's registry alias to "
                        "the treatment's version")
    _state_dir_arg(report)
    _tracking_uri_arg(report)
    report.set_defaults(handler=_report)

    lst = actions.add_parser("list", help="experiments of the state folder with their traffic")
    _state_dir_arg(lst)
    lst.set_defaults(handler=_list)


def _start(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.ab import start_experiment
    from tunesmith.pipelines.registry import resolve_tracking_uri

    experiment = start_experiment(
        args.name, args.control, args.treatment, split=args.split, metric=args.metric,
        kind=args.kind, mde=args.mde, alpha=args.alpha, power=args.power,
        state_dir=args.state_dir, tracking_uri=resolve_tracking_uri(args.tracking_uri))
    print(f"Experiment '{experiment.name}': control {experiment.control.served}, treatment "
          f"{experiment.treatment.served}, split {experiment.split}, metric {experiment.metric} "
          f"({experiment.kind}), MLflow run {experiment.mlflow_run_id}.")
    print(f"Send requests with model=\"ab:{experiment.name}\" and a user id (`user` field or "
          "X-User-Id header);")
    print(f"report outcomes: POST /v1/feedback {{\"request_id\": ID, \"outcome\": "
          f"\"{experiment.metric}\", \"value\": ...}}; then `tunesmith ab report {experiment.name}`.")
    return 0


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _report(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tunesmith.pipelines.ab import report_experiment
    from tunesmith.pipelines.registry import resolve_tracking_uri

    result = report_experiment(args.name, state_dir=args.state_dir, promote=args.promote,
                               tracking_uri=resolve_tracking_uri(args.tracking_uri))
    r = result.report
    e = r.experiment
    console = Console(width=max(100, Console().width))
    table = Table(title=f"A/B test '{e.name}' ({e.metric}, {e.kind}, split {e.split})")
    for column in ("arm", "model", "users", "requests", e.metric, "latency p95 ms", "error rate"):
        table.add_column(column, justify="left" if column in ("arm", "model") else "right")
    for a in r.arms:
        table.add_row(a.arm, a.model, str(a.users), str(a.requests),
                      f"{_fmt(a.value)} (n={a.observations})", _fmt(a.latency_p95_ms),
                      _fmt(a.error_rate))
    console.print(table)
    level = 1 - e.alpha
    if r.fixed:
        console.print(f"Difference (treatment - control): {r.fixed.diff:+.4g}, {level:.0%} CI "
                      f"[{r.fixed.ci_low:+.4g}, {r.fixed.ci_high:+.4g}], {r.fixed.test} "
                      f"p = {r.fixed.p_value:.3g} (valid when read once, at the planned size)")
    if r.sequential:
        console.print(f"Always-valid: {r.sequential.method}, p = {r.sequential.p_value:.3g}, "
                      f"{level:.0%} confidence sequence [{r.sequential.cs_low:+.4g}, "
                      f"{r.sequential.cs_high:+.4g}] (valid however often it is read)")
    console.print(f"Sample ratio: users {r.srm.counts[0]}/{r.srm.counts[1]}, chi-square "
                  f"p = {r.srm.p_value:.3g}" + (" MISMATCH" if r.srm.mismatch else " (ok)"))
    for g in r.guardrails:
        console.print(f"Guardrail {g.name}: control {_fmt(g.control)}, treatment "
                      f"{_fmt(g.treatment)} ({g.limit})" + (" BREACHED" if g.breached else " ok"))
    if r.needed_per_arm:
        console.print(f"Planned size (fixed-horizon, power {e.power:g}, mde {e.mde:g}): "
                      f"{r.needed_per_arm[0]} control + {r.needed_per_arm[1]} treatment; "
                      f"still needed: {r.still_needed}")
    console.print(f"Decision: {r.decision.upper()}: " + " ".join(r.reasons))
    if result.promoted:
        model, alias, version = result.promoted
        console.print(f"Promoted: {model}@{alias} -> version {version}.")
    elif args.promote:
        console.print("Not promoted: the decision is not 'ship'.")
    return 0


def _list(args: argparse.Namespace) -> int:
    from tunesmith.pipelines.ab import list_experiments

    summaries = list_experiments(args.state_dir)
    if not summaries:
        print(f"No experiments in {args.state_dir}. Start one with `tunesmith ab start`.")
        return 0
    for s in summaries:
        e = s.experiment
        print(f"{e.name}: {e.status}, {e.control.served} vs {e.treatment.served} ({e.split}), "
              f"metric {e.metric}; requests {s.requests['control']}/{s.requests['treatment']}, "
              f"outcomes {s.outcomes}")
    return 0
