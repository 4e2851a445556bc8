"""What each library a `tunesmith run` imports adds to the process's resident memory.

A whole run's peak is what it holds when training starts plus what training adds. Part of the
first is the libraries: this script imports them in a fresh interpreter, in the order a run
does, and reads the process's resident memory after each step (``VmRSS``, split into the
private part ``RssAnon`` and the mapped library files ``RssFile``, from /proc/self/status).
The plain Trainer + PEFT script (bench/plain_trainer.py) pays the first steps too (torch,
transformers and its masking utilities, which import torch._dynamo, and PEFT, which imports
bitsandbytes); the steps after them are what tunesmith pays on top: the baseline probe's
optimizer (scipy), accelerate, MLflow (its import, then the embedded sqlite store starting a
run) and matplotlib (for the report, after training).

    python bench/import_costs.py                 # 3 fresh processes, medians
    python bench/import_costs.py --repeats 5 --tag _x

Writes bench/results/import_costs<tag>.json (each step's increments per process, and the
machine). Memory only; times in the JSON are the import's wall time, not benchmark figures.
Linux only.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# (step, code run in the child after the previous steps, who pays it)
STEPS: list[tuple[str, str, str]] = [
    ("interpreter", "pass", "both"),
    ("torch", "import torch", "both"),
    ("transformers", "import transformers", "both"),
    ("transformers.masking_utils (torch._dynamo)", "import transformers.masking_utils", "both"),
    ("peft (bitsandbytes)", "import peft", "both"),
    ("accelerate", "import accelerate", "tunesmith"),
    ("scipy.optimize (the probe)", "import scipy.optimize", "tunesmith"),
    ("mlflow import", "import mlflow", "tunesmith"),
    ("mlflow sqlite store, one run",
     "import mlflow, tempfile, os\n"
     "d = tempfile.mkdtemp()\n"
     "mlflow.set_tracking_uri('sqlite:///' + os.path.join(d, 'mlflow.db'))\n"
     "mlflow.set_experiment('import-costs')\n"
     "mlflow.start_run(); mlflow.log_metric('x', 1.0, step=1); mlflow.end_run()",
     "tunesmith"),
    ("matplotlib.pyplot (Agg; the report, after training)",
     "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot", "tunesmith"),
]

CHILD = r"""
import json, logging, sys, time
logging.disable(logging.CRITICAL)
def status():
    fields = {}
    for line in open('/proc/self/status'):
        key, _, value = line.partition(':')
        if key in ('VmRSS', 'RssAnon', 'RssFile'):
            fields[key] = int(value.split()[0]) / 1024
    return fields
steps = json.loads(sys.argv[1])
out = []
for name, code in steps:
    started = time.perf_counter()
    exec(code, {})
    out.append({'step': name, 'seconds': round(time.perf_counter() - started, 3), **status()})
print('IMPORT_COSTS ' + json.dumps(out))
"""


def one_process() -> list[dict]:
    found = subprocess.run([sys.executable, "-c", CHILD, json.dumps([(n, c) for n, c, _ in STEPS])],
                           capture_output=True, text=True, check=True)
    line = next(x for x in found.stdout.splitlines() if x.startswith("IMPORT_COSTS "))
    return json.loads(line.removeprefix("IMPORT_COSTS "))


def increments(process: list[dict]) -> list[dict]:
    out, before = [], {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
    for entry in process:
        out.append({"step": entry["step"], "seconds": entry["seconds"],
                    **{f"{k}_added_mb": round(entry[k] - before[k], 1) for k in before},
                    "VmRSS_mb": round(entry["VmRSS"], 1)})
        before = {k: entry[k] for k in before}
    return out


def machine() -> dict:
    from memory_run import machine as memory_machine  # bench/ is on sys.path when run

    return {**memory_machine(), "python": platform.python_version(), "mlflow": _version("mlflow"),
            "peft": _version("peft"), "bitsandbytes": _version("bitsandbytes")}


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes (default 3)")
    parser.add_argument("--tag", default="", help="suffix for the results file name")
    args = parser.parse_args(argv)

    processes = [increments(one_process()) for _ in range(args.repeats)]
    payers = {name: who for name, _, who in STEPS}
    table = []
    print(f"{'step':<55} {'paid by':<10} {'RSS +MB':>8} {'anon +MB':>9} {'files +MB':>9}")
    for i, (name, _, _) in enumerate(STEPS):
        med = {k: statistics.median(p[i][k] for p in processes)
               for k in ("VmRSS_added_mb", "RssAnon_added_mb", "RssFile_added_mb")}
        table.append({"step": name, "paid_by": payers[name], **{k: round(v, 1) for k, v in med.items()}})
        print(f"{name:<55} {payers[name]:<10} {med['VmRSS_added_mb']:>8.1f} "
              f"{med['RssAnon_added_mb']:>9.1f} {med['RssFile_added_mb']:>9.1f}")
    both = sum(r["VmRSS_added_mb"] for r in table if r["paid_by"] == "both")
    ours = sum(r["VmRSS_added_mb"] for r in table if r["paid_by"] == "tunesmith")
    before_training = sum(r["VmRSS_added_mb"] for r in table
                          if r["paid_by"] == "tunesmith" and not r["step"].startswith("matplotlib"))
    print(f"both sides: {both:.0f} MB; tunesmith on top: {ours:.0f} MB, of which {before_training:.0f} MB "
          "is held when training starts (matplotlib is imported for the report, after it)")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"import_costs{args.tag}.json"
    path.write_text(json.dumps({
        "what": "resident memory each import step adds, in a run's order (medians over fresh processes)",
        "repeats": args.repeats, "machine": machine(), "table": table,
        "both_sides_mb": round(both, 1), "tunesmith_on_top_mb": round(ours, 1),
        "tunesmith_on_top_before_training_mb": round(before_training, 1),
        "processes": processes,
    }, indent=2) + "\n")
    print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
