"""What a whole `tunesmith run` peaks at: the training estimate plus what every run pays.

:func:`tunesmith.advise.memory.estimate_memory` counts what training needs (weights,
gradients, optimizer states, activations): the guide's accounting. A process that trains pays
more, and on CPU it is the process's resident memory (RSS) that must fit:

- **fixed cost**: the interpreter with torch, transformers, PEFT (which imports bitsandbytes),
  accelerate, MLflow, scikit-learn and matplotlib imported. It depends on the installed
  libraries, not on the model, so it is measured once per machine and library versions in a
  subprocess (:func:`fixed_cost`, about 10-60 s) and cached as JSON under
  ``$TUNESMITH_HOME/memory/``;
- **run extra**: the tokenizer, the data, MLflow's store, the run's bookkeeping: a constant
  fitted on whole runs (``bench/memory_run.py``);
- **allocator slack**: glibc keeps freed blocks of the activations in its heaps instead of
  returning them, so each step's activations cost more resident memory than they hold: a factor
  on the activations fitted on whole runs with glibc's default settings;
- **loading**: reading the weights from disk maps the file while the tensors are built, so the
  load has its own short peak of about :data:`LOAD_COPIES` copies of the weights, which sets the
  run's peak when training adds little (small batches, frozen bases).

The whole-run peak is ``fixed + extra + max(loading, weights + optimizer + best copy +
max(gradients, slack x activations))``, where the best copy is the loop's copy of the best
trainable weights. On CUDA the process's GPU memory adds the CUDA context
and the caching allocator's reserve, which are not modelled here (no GPU measurement yet): the
whole-run figure is only given for CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith import assets
from tunesmith.advise.memory import (
    GB,
    MemoryArgs,
    MemoryEstimate,
    ModelShape,
    estimate_memory,
)

# Fitted on bench/memory_run.py's grid (glibc defaults; see docs/advise.md for the fit and the
# rows it was checked on).
RUN_EXTRA_BYTES = 100e6
ACTIVATION_SLACK = 1.5
LOAD_COPIES = 2.0

# What a run imports (the measurement's program): the libraries, then tunesmith's modules that
# import more of them at module level.
_IMPORTS = (
    "import torch, transformers, peft, accelerate, mlflow, sklearn, matplotlib.pyplot\n"
    "import tunesmith.pipelines.run, tunesmith.train.loop, tunesmith.methods\n"
    "import tunesmith.evaluate.classification, tunesmith.evaluate.generation\n"
    "import tunesmith.track.experiment\n"
)
_PROGRAM = _IMPORTS + (
    "rss = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmRSS:')]\n"
    "print(rss[0])\n"
)


def _status_bytes(field_name: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def process_peak_bytes() -> float:
    """This process's resident-set high-water mark (``VmHWM``: the kernel's own peak, from the
    interpreter's start), or 0 where /proc is missing."""
    return _status_bytes("VmHWM")


def record_run_peak(metrics_path: Path) -> dict[str, Any]:
    """Write this process's whole peak (``peak_run_mb``) into metrics.json's ``train`` section
    (after evaluation, so the figure covers the whole run); returns the updated metrics. No
    change where /proc is missing or the file has no train section."""
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    peak = process_peak_bytes()
    if peak and isinstance(metrics.get("train"), dict):
        metrics["train"]["peak_run_mb"] = round(peak / 2**20, 1)
        metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "accelerate", "mlflow", "bitsandbytes"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def fixed_cost_path() -> Path:
    return assets.tunesmith_home() / "memory" / "fixed_cost.json"


def fixed_cost(*, refresh: bool = False) -> tuple[float, str]:
    """(bytes, where it came from): the resident memory of a process that has imported what a
    run imports. Read from the cache when its library versions match this environment;
    otherwise measured in a subprocess (10-60 s on a busy machine) and cached. Returns
    (0, reason) where /proc is missing (not Linux) or the subprocess fails: the estimate then
    leaves the fixed cost out and says so."""
    versions = _versions()
    path = fixed_cost_path()
    if not refresh and path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("versions") == versions:
                return float(cached["bytes"]), f"measured once on this machine ({path})"
        except (OSError, ValueError, KeyError):
            pass
    if not Path("/proc/self/status").is_file():
        return 0.0, "not measured (no /proc: the fixed cost is measured on Linux only)"
    child = subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True, text=True,
                           check=False, timeout=600)
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines or not lines[-1].isdigit():
        return 0.0, "not measured (the measuring subprocess failed)"
    value = float(lines[-1])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"bytes": value, "versions": versions,
                                    "what": "RSS after importing what a run imports"}, indent=2)
                        + "\n", encoding="utf-8")
        where = f"measured now and cached ({path})"
    except OSError:
        where = "measured now (the cache folder is not writable)"
    return value, where


@dataclass
class RunEstimate:
    """The whole run's estimated peak (``total_bytes``) and the training estimate inside it."""

    train: MemoryEstimate
    # The terms the whole run adds, in bytes (empty on CUDA: not modelled).
    measured_parts: dict[str, float] = field(default_factory=dict)
    formulas: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    loading_bytes: float = 0.0

    @property
    def parts(self) -> dict[str, float]:
        return dict(self.measured_parts)

    @property
    def total_bytes(self) -> float:
        if not self.measured_parts:
            return self.train.total_bytes
        size = {p.key: p.bytes for p in self.train.parts}
        activations = size.get("activations", 0.0)
        training = (size.get("weights", 0.0) + size.get("optimizer", 0.0)
                    + max(size.get("gradients", 0.0), ACTIVATION_SLACK * activations))
        training += self.measured_parts.get("best_copy", 0.0)
        return (self.measured_parts.get("fixed", 0.0) + self.measured_parts.get("extra", 0.0)
                + max(self.loading_bytes, training))

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB

    def to_json(self) -> dict[str, Any]:
        out = self.train.to_json()
        out["run"] = {
            "total_gb": round(self.total_gb, 4),
            "train_gb": round(self.train.total_gb, 4),
            **{f"{k}_gb": round(v / GB, 4) for k, v in self.measured_parts.items()},
            "loading_gb": round(self.loading_bytes / GB, 4),
            "formulas": self.formulas,
            "notes": self.notes,
        }
        return out


def estimate_run(shape: ModelShape, args: MemoryArgs, *, fixed: float | None = None) -> RunEstimate:
    """The whole-run estimate for ``args`` on ``shape``. On CPU this reads (or measures, the
    first time: see :func:`fixed_cost`) the fixed cost unless ``fixed`` (bytes) is given. On
    CUDA it is the training estimate, with a note. Raises what :func:`estimate_memory` raises."""
    train = estimate_memory(shape, args)
    if args.device != "cpu":
        return RunEstimate(train, notes=[
            "whole-run terms (CUDA context, caching allocator) are not modelled yet: the total "
            "is the training estimate"])
    where = "given"
    if fixed is None:
        fixed, where = fixed_cost()
    weights = train.part("weights")
    load = LOAD_COPIES * (weights.bytes if weights else 0.0)
    act = train.part("activations")
    slack = (ACTIVATION_SLACK - 1) * act.bytes if act else 0.0
    # The loop keeps a copy of the best trainable weights (counted once: the preflight's
    # arguments already include it in the weights).
    best = 0.0 if args.keep_best_copy else train.trainable_params * 4.0
    parts = {"fixed": fixed, "extra": RUN_EXTRA_BYTES, "slack": slack, "best_copy": best}
    formulas = {
        "fixed": f"the libraries a run imports, {where}",
        "extra": "tokenizer, data, MLflow store, bookkeeping (fitted on whole runs)",
        "best_copy": f"the loop's copy of the best weights: {train.trainable_params:,} x 4 bytes",
        "slack": f"glibc keeps freed activation blocks: activations x {ACTIVATION_SLACK - 1:g} "
                 "more (fitted, glibc defaults)",
    }
    notes = []
    if not fixed:
        notes.append(f"fixed cost {where}.")
    return RunEstimate(train, parts, formulas, notes, loading_bytes=load)
