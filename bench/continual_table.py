"""Tables of bench/continual.sh (and continual_long.sh): continual learning and multi-task
against per-task adapters, as markdown (printed) and JSON (bench/results/continual.json).

Usage: python bench/continual_table.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _metrics(run: Path) -> dict:
    path = run / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _f(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(out: Path) -> None:
    a = _metrics(out / "A")
    before = a["finetuned"]
    result = {"continual": [], "multitask": []}
    rows = ["| setting | A accuracy | A macro F1 | A label perplexity | B answer perplexity | B token F1 |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| A alone (sentiment adapter, 16 steps) | {_f(before['accuracy'])} | {_f(before['f1'])} | "
            f"{_f(before['perplexity'], 2)} | - | - |"]
    settings = [("B-seq", "B from A's adapter, no replay (12 steps)"),
                ("B-replay", "B from A's adapter, replay 25% of A (12 steps)"),
                ("B-seq-seed1", "B from A's adapter, no replay (12 steps, training seed 1)"),
                ("B-replay-seed1", "B from A's adapter, replay 25% of A (12 steps, training seed 1)"),
                ("B-seq-36", "B from A's adapter, no replay (36 steps)"),
                ("B-replay-36", "B from A's adapter, replay 25% of A (36 steps)"),
                ("B-sep", "separate adapters: B from the base (12 steps), A keeps its own")]
    for name, label in settings:
        m = _metrics(out / name)
        if not m:
            continue
        after = m["continual"]["after"] if "continual" in m else before
        b = m["finetuned"]
        rows.append(f"| {label} | {_f(after['accuracy'])} | {_f(after['f1'])} | {_f(after['perplexity'], 2)} | "
                    f"{_f(b['perplexity'], 2)} | {_f(b.get('token_f1'))} |")
        result["continual"].append({"run": name, "a_after": after, "b": b,
                                    "replay": {k: v for k, v in (m.get("continual", {}).get("replay") or {}).items()
                                               if k != "from_run"}})  # no paths of this machine
    print("\n".join(rows) + "\n")
    mt, mt56 = _metrics(out / "MT"), _metrics(out / "MT-56")
    if mt:
        single = {"sentiment": a["finetuned"], "qa": _metrics(out / "B-sep").get("finetuned", {})}
        rows = ["| task (records in the mixture) | metric | base, zero-shot | one adapter per task | "
                "multi-task, 28 steps | multi-task, 56 steps |", "| --- | --- | --- | --- | --- | --- |"]
        for task, scores in mt["tasks"].items():
            longer = mt56.get("tasks", {}).get(task, {}).get("finetuned", {})
            for key in ("accuracy", "f1", "token_f1", "perplexity"):
                if key in scores["finetuned"]:
                    d = 2 if key == "perplexity" else 3
                    rows.append(f"| {task} ({mt['sampling']['drawn'][task]}) | {key} | "
                                f"{_f(scores['baseline'].get(key), d)} | {_f(single[task].get(key), d)} | "
                                f"{_f(scores['finetuned'][key], d)} | {_f(longer.get(key), d)} |")
            result["multitask"].append({"task": task, "single": single[task], "multitask_56": longer, **scores})
        result["sampling"] = mt["sampling"]
        print("\n".join(rows))
    times = out / "times.txt"
    result["seconds"] = dict(line.rsplit(" ", 2)[:2] for line in times.read_text().splitlines()) if times.is_file() else {}
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/continual.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
