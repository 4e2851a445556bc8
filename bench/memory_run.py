"""Whole default runs against the memory estimate: what `tunesmith run` really peaks at.

Each row is one default ``tunesmith run`` (prepare, baseline, train, evaluate, MLflow on) in its
own subprocess, with glibc's default malloc settings (no ``MALLOC_*`` variables), small data
(``prepare.limit``) and a few optimizer steps (``finetune.max_steps``): the peak of a run is
reached in its first steps. The measured figure is the child's resident-set high-water mark as
the kernel reports it when the child exits (``os.wait4``'s ``ru_maxrss``): the whole process,
from the interpreter's start to its exit. The row also keeps what tunesmith recorded in
metrics.json (its own whole-run peak and estimate, when the code under test records them).

The prediction is :func:`tunesmith.advise.memory.estimate_run` for the run's settings, with the
sequence length the run's preflight used (its longest encoded example): ``run_gb`` (whole run)
and ``train_gb`` (what training adds, the guide's accounting).

    python bench/memory_run.py grid                # the 2 models x 4 methods x 2 batches x 2 lengths
    python bench/memory_run.py grid --only smollm2 # rows whose label contains this text
    python bench/memory_run.py lean                # MiniLM LoRA and SmolLM2 chat LoRA: tunesmith
                                                   # (this tree, and --before SRC) vs plain Trainer
    python bench/memory_run.py repredict           # recompute predictions for the rows in the JSON

Rows are written to bench/results/memory_run_<mode>.json after each row (with the machine), so
an interrupted run keeps what it measured. Memory is not affected by other jobs sharing the CPU;
times in the JSON are not benchmark figures. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
TOLERANCE = 0.15
STEPS = 3

# (model, dataset, method, batch, max_length, prepare.limit). MiniLM classifies rotten-tomatoes
# snippets (max_length 32 truncates most of them, 128 none); SmolLM2 learns chitchat
# conversations, packed into rows of max_length tokens, so every batch is batch x max_length.
MINILM = [("minilm", "rotten-tomatoes", m, b, n, 400)
          for m in ("full", "lora", "qlora", "adapter") for b in (8, 32) for n in (32, 128)]
SMOLLM2 = [("smollm2-135m-instruct", "chitchat", m, b, n, 60)
           for m in ("full", "lora", "qlora", "adapter")
           for b in ((1, 2) if m == "full" else (1, 4)) for n in (128, 256)]
GRID = MINILM + SMOLLM2


def core_rows() -> list[tuple]:
    """The corners of the grid (smallest batch and length, largest batch and length) for every
    model and method, alternating models: a subset that fits a short session."""
    def corner(rows: list[tuple]) -> list[tuple]:
        out = []
        for method in ("lora", "full", "qlora", "adapter"):
            mine = [r for r in rows if r[2] == method]
            out += [min(mine, key=lambda r: (r[3], r[4])), max(mine, key=lambda r: (r[3], r[4]))]
        return out

    return [r for pair in zip(corner(MINILM), corner(SMOLLM2), strict=True) for r in pair]


def first_rows(rows: list[tuple], first: str) -> list[tuple]:
    """``rows`` reordered: those whose label contains one of the comma-separated texts of
    ``first`` come first, in the order of the texts, then the others in their order."""
    texts = [t for t in first.split(",") if t]
    ahead = [r for t in texts for r in rows if t in label(r)]
    ahead = list(dict.fromkeys(ahead))  # a row matched by two texts runs once
    return ahead + [r for r in rows if r not in ahead]


# The lean-run cases of issue 17: MiniLM LoRA at the throughput benchmark's settings, SmolLM2
# LoRA on 512-token chat rows.
LEAN = {
    "minilm-lora": ("minilm", "rotten-tomatoes", "lora", 16, 512, 800),
    "smollm2-chat-lora": ("smollm2-135m-instruct", "chitchat", "lora", 4, 512, 96),
}


# Generation on 2 shared cores runs at a few tokens/s: the evaluation keeps every phase
# (baselines, generation, scoring) on fewer and shorter generations, which hold little memory
# (the cache of a 135M model over a few hundred tokens) next to training.
FAST_EVALUATION = ("evaluation.generation_limit=2", "evaluation.max_new_tokens=8",
                   "evaluation.forgetting_text=null")


def label(row: tuple) -> str:
    model, dataset, method, batch, length, _ = row
    return f"{model} {dataset} {method} b{batch} L{length}"


def overrides(row: tuple, steps: int) -> list[str]:
    model, dataset, method, batch, length, limit = row
    return [f"prepare.dataset={dataset}", f"prepare.limit={limit}",
            f"prepare.max_length={length}", f"finetune.model={model}",
            f"finetune.method={method}", f"finetune.batch_size={batch}",
            f"finetune.max_steps={steps}", *FAST_EVALUATION]


def run_child(command: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[int, float, str]:
    """(exit status, peak RSS in MB of the child, stderr tail): ``ru_maxrss`` from wait4."""
    with open(cwd / "child.log", "w") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    tail = (cwd / "child.log").read_text(errors="replace")[-3000:]
    return proc.returncode, usage.ru_maxrss / 1024, tail


def child_env(src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(src)
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("TUNESMITH_SET", None)
    return env


def tunesmith_run(row: tuple, src: Path, steps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="tunesmith-memrun-") as tmp:
        work = Path(tmp)
        command = [sys.executable, "-m", "tunesmith.cli.main", "run", "--no-progress",
                   "--out", str(work / "run")]
        for item in overrides(row, steps):
            command += ["--set", item]
        started = time.time()
        code, peak_mb, tail = run_child(command, cwd=work, env=child_env(src))
        out: dict = {"peak_mb": round(peak_mb, 1), "seconds": round(time.time() - started, 1)}
        if code != 0:
            out["error"] = tail
            return out
        metrics = json.loads((work / "run" / "metrics.json").read_text())
        out["recorded"] = {k: v for k, v in metrics.get("train", {}).items()
                           if "memory" in k or "estimate" in k or "_mb" in k
                           or k in ("steps", "gradient_checkpointing", "gradient_checkpointing_by",
                                    "precision")}
        out["seq_len"] = _preflight_length(tail)
        return out


def timeline(row: tuple, src: Path, steps: int) -> dict:
    """Resident memory over one run, sampled every 0.2 s, beside the run's own log lines: which
    phase (loading, baseline, training, evaluation) sets the peak."""
    import threading

    with tempfile.TemporaryDirectory(prefix="tunesmith-memline-") as tmp:
        work = Path(tmp)
        command = [sys.executable, "-u", "-m", "tunesmith.cli.main", "run", "--no-progress",
                   "--out", str(work / "run")]
        for item in overrides(row, steps):
            command += ["--set", item]
        proc = subprocess.Popen(command, cwd=work, env=child_env(src), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        started = time.time()
        samples: list[tuple[float, float]] = []
        lines: list[tuple[float, float, str]] = []

        def poll() -> None:
            status = Path(f"/proc/{proc.pid}/status")
            while proc.poll() is None:
                try:
                    rss = next(int(x.split()[1]) for x in status.read_text().splitlines()
                               if x.startswith("VmRSS:"))
                except (OSError, StopIteration):
                    break
                samples.append((round(time.time() - started, 2), round(rss / 1024, 1)))
                time.sleep(0.2)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        for line in proc.stdout:  # type: ignore[union-attr]
            now = round(time.time() - started, 2)
            lines.append((now, samples[-1][1] if samples else 0.0, line.rstrip()[:160]))
        proc.wait()
        thread.join()
    return {"samples": samples, "lines": lines,
            "peak_mb": max((m for _, m in samples), default=0.0)}


def _preflight_length(log: str) -> int | None:
    """The sequence length the run's preflight estimated with ("micro-batch B x L tokens")."""
    import re

    found = re.findall(r"micro-batch \d+ x (\d+) tokens", log)
    return int(found[0]) if found else None


def plain_run(row: tuple, steps: int) -> dict:
    """The plain Trainer + PEFT script on the same examples (bench/plain_trainer.py)."""
    from tunesmith.assets import load_builtin_records
    from tunesmith.models.loader import resolve_model_path

    model, dataset, _, batch, length, limit = row
    with tempfile.TemporaryDirectory(prefix="tunesmith-plain-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        records = load_builtin_records(dataset, limit=limit, seed=42)
        cut = int(len(records) * 0.8)
        for split, part in (("train", records[:cut]), ("val", records[cut:])):
            with (data / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
                for record in part:
                    fh.write(json.dumps(record.to_dict(with_meta=False)) + "\n")
        model_dir, _ = resolve_model_path(model)
        command = [sys.executable, str(HERE / "plain_trainer.py"),
                   "--task", "classification" if model == "minilm" else "chat",
                   "--model-dir", str(model_dir), "--data", str(data), "--out", str(work / "out"),
                   "--max-steps", str(steps), "--batch-size", str(batch),
                   "--max-length", str(length)]
        started = time.time()
        code, peak_mb, tail = run_child(command, cwd=work, env=child_env(ROOT / "src"))
        out = {"peak_mb": round(peak_mb, 1), "seconds": round(time.time() - started, 1)}
        if code != 0:
            out["error"] = tail
        else:
            # The script's own figure at the end of training: its final validation (benchmark
            # instrumentation, batches of 16 with full logits) is not what a user's script pays.
            result = json.loads((work / "out" / "result.json").read_text())
            out["peak_before_validation_mb"] = round(result["peak_rss_mb"], 1)
            # The same split as tunesmith's metrics.json: resident memory when training began
            # (imports, model, data) and what training added above it.
            out["before_train_mb"] = round(result["peak_rss_mb"] - result["peak_above_start_mb"], 1)
            out["train_added_mb"] = round(result["peak_above_start_mb"], 1)
        return out


def predict(row: tuple, seq_len: int | None, checkpointing: bool = False,
            classifier_lora: bool = False, precision: str = "fp32") -> dict:
    """``classifier_lora``: the run filled in a LoRA classifier's defaults (every linear layer,
    config.classifier_defaults), as `tunesmith run` does since that function exists; rows
    measured before it trained LoRA on the attention projections. ``precision``: the
    estimator's precision of what the run computed in (:func:`_precision`)."""
    from tunesmith.advise.memory import MemoryArgs, model_shape
    from tunesmith.advise.run_memory import estimate_run
    from tunesmith.config import Config

    model, dataset, method, batch, length, _ = row
    cfg = Config.model_validate({
        "prepare": {"dataset": dataset, "max_length": length},
        "finetune": {"model": model, "method": method, "batch_size": batch},
    })
    if classifier_lora and model == "minilm":
        from tunesmith.config import classifier_defaults

        cfg = cfg.model_copy(update={"finetune": classifier_defaults(cfg.finetune, "classification")[0]})
    # With the preflight's checkpointing choice (what the run trained with).
    args = MemoryArgs.from_config(cfg, device="cpu", max_length=seq_len or length,
                                  gradient_checkpointing=checkpointing, precision=precision)
    run = estimate_run(model_shape(model), args)
    return {"run_gb": round(run.total_bytes / 1e9, 4), "train_gb": round(run.train.total_gb, 4),
            "parts_gb": {k: round(v / 1e9, 4) for k, v in run.parts.items()},
            "train_parts_gb": {p.key: round(p.bytes / 1e9, 4) for p in run.train.parts},
            "dominant": run.dominant(3), "checkpointing": checkpointing,
            "loading_gb": round(run.loading_bytes / 1e9, 4)}


def _precision(entry: dict) -> str:
    """The estimator's precision for a row: "mixed" when its run computed under bf16 autocast
    (metrics.json's train.precision, recorded since precision auto picks it on a CPU with
    AMX-BF16), else "fp32" (every row measured before that)."""
    ran = str((entry.get("recorded") or {}).get("precision") or entry.get("precision") or "fp32")
    return "mixed" if "autocast" in ran else "fp32"


def _checkpointing(entry: dict) -> bool:
    """Whether the row's run trained with activation checkpointing (its preflight's choice)."""
    return bool((entry.get("recorded") or {}).get("gradient_checkpointing"))


def modelled(entry: dict, extra: float, slack: float, load: float) -> float:
    """The whole-run formula of tunesmith.advise.run_memory with other constants (GB)."""
    pred = entry["predicted"]
    t = pred["train_parts_gb"]
    weights = t.get("weights", 0.0)
    grads, act = t.get("gradients", 0.0), t.get("activations", 0.0)
    training = (weights + t.get("optimizer", 0.0) + pred["parts_gb"].get("best_copy", 0.0)
                + max(grads, act) + max(0.0, (slack - 1) * act - grads))
    return pred["parts_gb"]["fixed"] + extra + max(load * weights, training)


def latest_rows(paths: list[Path]) -> list[dict]:
    """The last measurement of each grid row across ``paths`` (in order: later files win),
    lean-case rows left out; each entry names its file in ``set``."""
    latest: dict[str, dict] = {}
    for path in paths:
        for e in json.loads(path.read_text())["rows"]:
            if "measured_gb" in e and "lean" not in e["label"]:
                latest[e["label"]] = {**e, "set": path.stem}
    return list(latest.values())


def fit(rows: list[dict], held_out: set[str]) -> dict:
    """Brute-force the three constants (run extra, allocator slack, load copies) on the rows
    whose method is not in ``held_out`` (none: every row), minimising the worst relative error;
    report both halves."""
    import itertools

    train = [e for e in rows if e["row"][2] not in held_out]
    check = [e for e in rows if e["row"][2] in held_out]
    best = None
    for extra, slack, load in itertools.product(
            [i * 0.01 for i in range(0, 31)], [1 + i * 0.05 for i in range(0, 21)],
            [1 + i * 0.05 for i in range(0, 25)]):
        worst = max(abs(modelled(e, extra, slack, load) / e["measured_gb"] - 1) for e in train)
        if best is None or worst < best[0]:
            best = (worst, extra, slack, load)
    _, extra, slack, load = best  # type: ignore[misc]

    def errors(part: list[dict]) -> list[tuple[str, str, float]]:
        return [(e["label"], e["set"], round(modelled(e, extra, slack, load) / e["measured_gb"] - 1, 4))
                for e in part]

    return {"run_extra_gb": round(extra, 3), "activation_slack": round(slack, 2),
            "load_copies": round(load, 2), "held_out": sorted(held_out),
            "fitted_on": errors(train), "checked_on": errors(check)}


def grid_files() -> list[Path]:
    """The grid's results files, oldest set first (the first grid, then _v2, _v3...)."""
    return sorted(RESULTS.glob("memory_run_grid*.json"), key=lambda p: (p.stem != "memory_run_grid", p.stem))


def table(paths: list[Path]) -> str:
    """A Markdown table of every measured row of the grid files ``paths``, grouped by model,
    method, batch and length (the set each came from named): the whole-run estimate, the
    measured peak, the error and the estimate's largest terms. MB = 2**20 bytes."""
    order = {m: i for i, m in enumerate(("full", "lora", "qlora", "adapter"))}
    rows = []
    for path in paths:
        tag = path.stem[len("memory_run_grid"):].lstrip("_") or "first"
        for e in json.loads(path.read_text())["rows"]:
            if "measured_gb" in e:
                rows.append((tag, e))
    rows.sort(key=lambda t: (t[1]["row"][0], order.get(t[1]["row"][2], 9), t[1]["row"][3],
                             t[1]["row"][4], t[0]))
    mib = 1e9 / 2**20
    lines = ["| model | method | batch x length | whole-run estimate | measured peak | error | "
             "largest terms of the estimate | set |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for tag, e in rows:
        model, _, method, batch, length, _ = e["row"]
        mark = " (through training)" if "peak_through_training_mb" in e else ""
        dominant = e["predicted"]["dominant"].replace(", ", "; ")
        lines.append(f"| {model.replace('-135m-instruct', '')} | {method} | {batch} x "
                     f"{e.get('seq_len') or length} | {e['predicted']['run_gb'] * mib:,.0f} MB | "
                     f"{e['peak_mb']:,.0f} MB{mark} | {e['relative_error']:+.1%} | {dominant} | "
                     f"{tag} |")
    return "\n".join(lines)


def machine() -> dict:
    import torch
    import transformers

    return {
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "libc": " ".join(platform.libc_ver()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "note": "measured while other jobs shared the CPU (memory is unaffected; no timing claims)",
    }


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo): memory and speed differ between CPU kinds (AMX or
    not), and ``platform.processor()`` says only x86_64."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def score(entry: dict) -> None:
    measured = entry.get("peak_mb")
    pred = entry.get("predicted")
    if not measured or not pred or "error" in entry:
        return
    measured_gb = measured * 2**20 / 1e9
    entry["measured_gb"] = round(measured_gb, 4)
    entry["relative_error"] = round(pred["run_gb"] / measured_gb - 1, 4)
    entry["within_tolerance"] = abs(entry["relative_error"]) <= TOLERANCE


def save(path: Path, rows: list[dict], mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "what": "whole `tunesmith run` peak RSS (ru_maxrss of the child, MB = 2**20 bytes; "
        "GB = 1e9 bytes) against estimate_run", "mode": mode, "steps": STEPS,
        "tolerance": TOLERANCE, "malloc": "glibc defaults (no MALLOC_* variables)",
        "machine": machine(), "rows": rows,
    }, indent=2) + "\n")


def print_row(entry: dict) -> None:
    if "error" in entry:
        print(f"{entry['label']:<48} failed: {entry['error'].strip().splitlines()[-1]}", flush=True)
        return
    pred = entry.get("predicted") or {}
    print(f"{entry['label']:<48} {entry['peak_mb']:>8.0f} MB  run est "
          f"{pred.get('run_gb', float('nan')) * 1e3:>6.0f} MB  train est "
          f"{pred.get('train_gb', float('nan')) * 1e3:>6.0f} MB  "
          f"{entry.get('relative_error', float('nan')):+.1%}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("grid", "lean", "repredict", "timeline", "fit", "table"))
    parser.add_argument("--held-out", default="",
                        help="fit: methods checked, not fitted on (e.g. qlora,adapter; default "
                        "none: fit on every row)")
    parser.add_argument("--only", help="rows whose label contains this text")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--before", type=Path,
                        help="lean: also run the tunesmith source tree SRC (e.g. an older commit's "
                        "src/ exported with git archive) as 'before'")
    parser.add_argument("--sides", default="plain,before,after",
                        help="lean: which sides to run (default plain,before,after)")
    parser.add_argument("--core", action="store_true",
                        help="grid: only the corners of each model and method (see core_rows)")
    parser.add_argument("--skip", type=int, default=0, help="grid: skip the first N rows")
    parser.add_argument("--first", default="",
                        help="grid: comma-separated label texts; rows whose label contains one "
                        "run first, in this order, then the rest in grid order (e.g. the rows a "
                        "results file lacks)")
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="grid: the tunesmith source tree the runs use (default this tree's "
                        "src/; a snapshot keeps a long grid on one version while src/ changes)")
    parser.add_argument("--tag", default="", help="suffix for the results file name")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.mode == "repredict":
        for path in grid_files():
            data = json.loads(path.read_text())
            for entry in data["rows"]:
                if "error" not in entry:
                    entry["predicted"] = predict(tuple(entry["row"]), entry.get("seq_len"),
                                                 _checkpointing(entry),
                                                 entry.get("classifier_defaults", False),
                                                 _precision(entry))
                    score(entry)
                    print_row(entry)
            path.write_text(json.dumps(data, indent=2) + "\n")
        return 0
    if args.mode == "table":  # docs/performance.md's rows, from every grid file
        print(table(grid_files()))
        return 0
    if args.mode == "fit":  # run repredict first: the fit uses the rows' stored parts
        found = fit(latest_rows(grid_files()), set(filter(None, args.held_out.split(","))))
        print(json.dumps(found, indent=2))
        name = "memory_run_fit" + (f"_held_out_{'_'.join(found['held_out'])}" if found["held_out"] else "")
        (RESULTS / f"{name}.json").write_text(json.dumps(found, indent=2) + "\n")
        return 0
    if args.mode == "timeline":  # the lean cases, or grid rows whose label contains --only
        cases = {**LEAN, **({label(r): r for r in GRID} if args.only else {})}
        for name, row in cases.items():
            if args.only and args.only not in name:
                continue
            found = timeline(row, args.before or ROOT / "src", args.steps)
            print(f"{name}: peak {found['peak_mb']:.0f} MB (sampled)")
            for when, rss, text in found["lines"]:
                print(f"  {when:7.1f}s {rss:7.0f} MB  {text}")
        return 0
    path = RESULTS / f"memory_run_{args.mode}{args.tag}.json"
    rows: list[dict] = []
    if args.mode == "grid":
        for row in first_rows(core_rows() if args.core else GRID, args.first)[args.skip:]:
            if args.only and args.only not in label(row):
                continue
            entry = {"label": label(row), "row": list(row), **tunesmith_run(row, args.src, args.steps)}
            # Whether the code under test fills in a LoRA classifier's defaults (see predict).
            entry["classifier_defaults"] = "def classifier_defaults" in (
                args.src / "tunesmith" / "config.py").read_text()
            if "error" not in entry:
                entry["predicted"] = predict(row, entry.get("seq_len"), _checkpointing(entry),
                                             entry["classifier_defaults"], _precision(entry))
                score(entry)
            rows.append(entry)
            print_row(entry)
            save(path, rows, args.mode)
        return 0
    for name, row in LEAN.items():
        if args.only and args.only not in name:
            continue
        sides = {"plain": lambda r=row: plain_run(r, args.steps),
                 "after": lambda r=row: tunesmith_run(r, ROOT / "src", args.steps)}
        if args.before:
            sides["before"] = lambda r=row: tunesmith_run(r, args.before, args.steps)
        for side, call in sides.items():
            if side not in args.sides.split(","):
                continue
            entry = {"label": f"{name} {side}", "case": name, "side": side, "row": list(row),
                     **call()}
            rows.append(entry)
            print_row(entry)
            save(path, rows, args.mode)
        print_split(name, [r for r in rows if r["case"] == name])
    return 0


def print_split(case: str, rows: list[dict]) -> None:
    """One case's sides: the whole-run peak against the plain script's, and its two parts (held
    when training began, added by training)."""
    plain = next((r for r in rows if r["side"] == "plain" and "error" not in r), None)
    for row in rows:
        if "error" in row:
            continue
        recorded = row.get("recorded") or {}  # tunesmith's metrics.json (train_start_mb: a161f73)
        added = row.get("train_added_mb", recorded.get("train_added_mb"))
        began = row.get("before_train_mb", recorded.get("train_start_mb"))
        ratio = f"{row['peak_mb'] / plain['peak_mb']:.2f}x plain" if plain else ""
        if added is None or began is None:
            print(f"  {case} {row['side']}: {row['peak_mb']:.0f} MB {ratio}")
            continue
        print(f"  {case} {row['side']}: {row['peak_mb']:.0f} MB {ratio}; when training began "
              f"{began:.0f} MB, training added {added:.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
