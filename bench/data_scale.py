"""How `tunesmith data check` scales: time and peak memory on a large JSONL file.

Makes a classification JSONL of N records (default 1,000,000 of about 500 bytes: about 500 MB,
with 1% exact duplicates, 0.5% near duplicates and 0.1% bad lines) in a temporary folder, runs
`tunesmith data check FILE --json` in a subprocess, and reports wall time and the subprocess's
peak resident memory. `--near` runs a second check with near-duplicate detection.

    .venv/bin/python bench/data_scale.py                 # 1M records, exact duplicates
    .venv/bin/python bench/data_scale.py --records 200000 --near

Writes bench/results/data_scale.json (one entry per --records). Timings depend on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "data_scale.json"
WORDS = [f"w{i}" for i in range(5000)] + ["film", "plot", "great", "dull", "actor", "scene"]


def make_file(path: Path, records: int, seed: int = 0) -> int:
    """Write the file; returns its size in bytes."""
    rng = random.Random(seed)
    written: list[str] = []
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(records):
            if i % 1000 == 999:
                fh.write('{"text": "a broken line", "label": \n')
                continue
            if i % 100 == 50 and written:
                fh.write(written[rng.randrange(len(written))])
                continue
            if i % 200 == 125 and written:
                # A near duplicate: one word of 80 changed (Jaccard of 2-word shingles ~0.95).
                record = json.loads(written[rng.randrange(len(written))])
                words = record["text"].split()
                words[rng.randrange(len(words))] = "changed"
                record.update(text=" ".join(words), id=i)
                fh.write(json.dumps(record) + "\n")
                continue
            text = " ".join(rng.choices(WORDS, k=80))
            line = json.dumps({"text": text, "label": "pos" if rng.random() < 0.6 else "neg", "id": i}) + "\n"
            if len(written) < 1000:
                written.append(line)
            fh.write(line)
    return path.stat().st_size


def run_check(path: Path, extra: list[str]) -> dict:
    """Run `tunesmith data check` in a fresh child; the child's peak RSS comes from wait4."""
    cmd = [sys.executable, "-m", "tunesmith.cli.main", "data", "check", str(path), "--json", *extra]
    # Output goes to files: a pipe would fill up and block the child while we wait for it.
    out_path, err_path = path.with_suffix(".out"), path.with_suffix(".err")
    start = time.perf_counter()
    with open(out_path, "w") as out_fh, open(err_path, "w") as err_fh:
        proc = subprocess.Popen(cmd, stdout=out_fh, stderr=err_fh)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out, err = out_path.read_text(), err_path.read_text()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"data check failed ({code}): {err[-2000:]}")
    report = json.loads(out)
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    return {
        "command": " ".join(["tunesmith", "data", "check", "FILE", "--json", *extra]),
        "seconds": round(seconds, 1),
        "records_per_second": round(report["read"] / seconds),
        "peak_rss_mb": round(peak_mb, 1),
        "read": report["read"], "accepted": report["accepted"], "rejected": report["rejected"],
        "duplicates": {k: report["duplicates"][k] for k in ("exact", "near", "conflicts")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--near", action="store_true", help="also run with --near")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        start = time.perf_counter()
        size = make_file(path, args.records)
        made = time.perf_counter() - start
        print(f"made {args.records:,} records, {size / 1e6:.0f} MB, in {made:.0f} s")
        runs = [run_check(path, [])]
        if args.near:
            runs.append(run_check(path, ["--near"]))
    for r in runs:
        print(f"{r['command']}: {r['seconds']} s, {r['records_per_second']:,} records/s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB; read {r['read']:,}, rejected {r['rejected']:,}, "
              f"duplicates {r['duplicates']}")
    result = {
        "records": args.records, "file_mb": round(size / 1e6, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "note": "wall times on a shared machine are noisy",
        "runs": runs,
    }
    # One entry per file size, so the 1M exact run and a smaller --near run are both kept.
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    previous[f"{args.records}_records"] = result
    RESULTS.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
