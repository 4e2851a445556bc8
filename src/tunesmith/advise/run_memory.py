"""What a whole `tunesmith run` peaks at: the training estimate plus what every run pays.

:func:`tunesmith.advise.memory.estimate_memory` counts what training needs (weights,
gradients, optimizer states, activations): the guide's accounting. A process that trains pays
more, and on CPU it is the process's resident memory (RSS) that must fit:

- **fixed cost**: the interpreter with torch, transformers, PEFT (which imports bitsandbytes),
  accelerate, MLflow and matplotlib imported (not scikit-learn: the probe fits its logistic
  regression itself, :mod:`tunesmith.train.probe`). It depends on the installed
  libraries, not on the model, so it is measured once per machine and library versions in a
  subprocess (:func:`fixed_cost`, about 10-60 s) and cached as JSON under
  ``$TUNESMITH_HOME/memory/``, in two parts. Its **private** part (the interpreter's heap and
  the libraries' anonymous memory, ``RssAnon``) is the same in every process that imports the
  same libraries (461-462 MB here, every time). Its **library pages** part (the shared
  libraries' code and data mapped from disk, ``RssFile``) is not: the kernel maps whole cached
  folios around each page a process touches, so the same imports map 158 MB of library pages
  when the page cache is settled and 260 MB right after pip wrote the files (a fresh install:
  the files sit in the cache in large folios). A figure cached in one state and used in another
  was off by up to 170 MB. So a run's own estimate (the preflight's) takes the library pages
  from the run's process itself (:func:`library_pages_bytes`, read when the preflight runs),
  which are in the same state as the rest of the run; only estimates made outside a run
  (``estimate-memory``, ``advise``) use the cached figure;
- **run extra**: the tokenizer, the data, MLflow's store, the run's bookkeeping, and what the
  evaluation after training adds over training's peak (it loads the model again while glibc
  still holds training's freed blocks: +100 MB on MiniLM, +170 MB on SmolLM2 in sampled
  timelines, ``bench/memory_run.py timeline``): a constant fitted on whole runs;
- **allocator slack**: glibc keeps freed blocks of the activations in its heaps instead of
  returning them, so each step's activations cost more resident memory than they hold: a factor
  on the activations fitted on whole runs with glibc's default settings;
- **loading**: :data:`LOAD_COPIES` copies of the weights while the model loads. Fitted at 2
  copies on the first grid, it over-counted every loading-bound SmolLM2 row by 12-15%: loading a
  safetensors checkpoint maps the file and reads pages only as tensors are used (SmolLM2's
  517 MB fp32 file: +68 MiB resident after ``load_model``, measured), and the sampled timelines
  put those rows' peak in the evaluation after training, not in loading. Refitted on 24 rows
  (the grid measured with today's code where it was re-measured) it is 1 copy, so loading never
  exceeds the training terms (which hold the weights) and does not set the peak.

The whole-run peak is ``fixed + extra + max(loading, weights + optimizer + best copy +
max(gradients, activations) + max(0, (slack - 1) x activations - gradients))``, where the best
copy is the loop's copy of the best trainable weights and the last term is the allocator's
slack less what the gradients (allocated as activations are freed) fill of it. On CUDA the
process's GPU memory adds the CUDA context
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
    format_bytes,
)

# Fitted on bench/memory_run.py's grid (glibc defaults): the minimax of the relative error over
# the 24 rows measured on 2026-12-01 (the latest measurement of each; docs/performance.md has
# the table and the rows measured after the fit, which check it).
RUN_EXTRA_BYTES = 160e6
ACTIVATION_SLACK = 1.4
# QLoRA on CPU: what whole runs held beyond the other terms, as a fraction of the activations,
# once the loader hands back the checkpoint's pages (bitsandbytes dequantises each 4-bit weight
# to fp32 in the forward and again in the backward pass, and glibc keeps those blocks among the
# activations' own). The minimax of the relative error over the 8 QLoRA rows of the grid
# measured on 2026-12-02 (fp32, an AMD EPYC; docs/performance.md): 0.027, every row within
# 14.7%. Small: the extra showed only at 4 x 256 on SmolLM2 (+16% without it), and the same fit
# holds the interior rows that overestimate (MiniLM 8 x 128: training reused the probe's blocks).
QLORA_CPU_ACTIVATION_SLACK = 0.03
LOAD_COPIES = 1.0

# What a run imports (the measurement's program): the libraries, then tunesmith's modules that
# import more of them at module level.
_IMPORTS = (
    "import torch, transformers, peft, accelerate, mlflow, matplotlib.pyplot\n"
    "import tunesmith.pipelines.run, tunesmith.train.loop, tunesmith.methods\n"
    "import tunesmith.evaluate.classification, tunesmith.evaluate.generation\n"
    "import tunesmith.track.experiment\n"
)
# Prints the private and the file-backed resident bytes (RssAnon, RssFile) on one line.
_PROGRAM = _IMPORTS + (
    "st = {l.split(':')[0]: int(l.split()[1]) * 1024 for l in open('/proc/self/status')\n"
    "      if l.startswith(('RssAnon:', 'RssFile:'))}\n"
    "print(st['RssAnon'], st['RssFile'])\n"
)
# Mapped files that are a model's weights, not a library's pages (the loading term counts them).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt")


def _status_bytes(field_name: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def library_pages_bytes() -> float:
    """This process's resident pages of mapped files other than model weights (shared
    libraries, extension modules, the interpreter): the library-pages part of the fixed cost as
    this process has it now. Reads /proc/self/smaps (a few ms); 0 where it is missing."""
    from tunesmith.models.pages import file_mappings

    return float(sum(m.resident_bytes for m in file_mappings()
                     if not m.path.endswith(_WEIGHT_SUFFIXES)))


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
    import hashlib
    from importlib import metadata

    # The measuring program is part of the key: a cache written by another list of imports is stale.
    out = {"python": sys.version.split()[0],
           "program": hashlib.sha256(_PROGRAM.encode()).hexdigest()[:12]}
    for name in ("torch", "transformers", "peft", "accelerate", "mlflow", "bitsandbytes"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def fixed_cost_path() -> Path:
    return assets.tunesmith_home() / "memory" / "fixed_cost.json"


@dataclass(frozen=True)
class FixedCost:
    """What importing a run's libraries costs, in bytes: ``private`` (RssAnon: the same in every
    process) and ``library_pages`` (RssFile: follows the page cache's state), and where the
    figures came from."""

    private: float
    library_pages: float
    where: str

    @property
    def bytes(self) -> float:
        return self.private + self.library_pages


def fixed_cost(*, refresh: bool = False) -> FixedCost:
    """The resident memory of a process that has imported what a run imports, in its two parts.
    Read from the cache when its library versions match this environment (and it holds both
    parts); otherwise measured in a subprocess (10-60 s on a busy machine) and cached. Returns
    zeros with the reason where /proc is missing (not Linux) or the subprocess fails: the
    estimate then leaves the fixed cost out and says so."""
    versions = _versions()
    path = fixed_cost_path()
    if not refresh and path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("versions") == versions:
                return FixedCost(float(cached["private_bytes"]), float(cached["library_pages_bytes"]),
                                 f"measured once on this machine ({path})")
        except (OSError, ValueError, KeyError):
            pass  # unreadable, or written before the parts were kept apart: measure again
    if not Path("/proc/self/status").is_file():
        return FixedCost(0.0, 0.0, "not measured (no /proc: the fixed cost is measured on Linux only)")
    child = subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True, text=True,
                           check=False, timeout=600)
    lines = child.stdout.strip().splitlines()
    fields = lines[-1].split() if lines else []
    if child.returncode != 0 or len(fields) != 2 or not all(f.isdigit() for f in fields):
        return FixedCost(0.0, 0.0, "not measured (the measuring subprocess failed)")
    private, pages = float(fields[0]), float(fields[1])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "bytes": private + pages, "private_bytes": private, "library_pages_bytes": pages,
            "versions": versions,
            "what": "RssAnon and RssFile after importing what a run imports (RssFile follows the "
                    "page cache: a run's preflight reads its own)"}, indent=2) + "\n",
            encoding="utf-8")
        where = f"measured now and cached ({path})"
    except OSError:
        where = "measured now (the cache folder is not writable)"
    return FixedCost(private, pages, where)


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

    def peak_terms(self) -> list[tuple[str, float]]:
        """The terms that add up to :attr:`total_bytes` at the estimated peak, largest first:
        the fixed cost and run extra, then either the loading peak or training's terms
        (weights, optimizer states, the best-weights copy, the larger of the gradients and the
        activations, and glibc's slack on the activations less what the gradients fill),
        whichever is larger."""
        size = {p.key: p.bytes for p in self.train.parts}
        gradients, activations = size.get("gradients", 0.0), size.get("activations", 0.0)
        training = [("weights", size.get("weights", 0.0)),
                    ("optimizer states", size.get("optimizer", 0.0)),
                    ("gradients", gradients) if gradients >= activations
                    else ("activations", activations)]
        if not self.measured_parts:  # CUDA: the training estimate's own peak
            return sorted(((k, v) for k, v in training if v > 0), key=lambda t: -t[1])
        # glibc keeps the freed activation blocks; the gradients, allocated as the backward pass
        # frees activations, fill part of them (full finetuning: most), so only the rest adds.
        slack = max(0.0, (ACTIVATION_SLACK - 1) * activations - gradients)
        slack += self.measured_parts.get("qlora_slack", 0.0)
        training += [("best-weights copy", self.measured_parts.get("best_copy", 0.0)),
                     ("allocator slack", slack)]
        peak = ([("loading the weights", self.loading_bytes)]
                if self.loading_bytes > sum(v for _, v in training) else training)
        terms = [("imported libraries", self.measured_parts.get("fixed", 0.0)),
                 ("run extra", self.measured_parts.get("extra", 0.0)), *peak]
        return sorted(((k, v) for k, v in terms if v > 0), key=lambda t: -t[1])

    @property
    def total_bytes(self) -> float:
        return sum(v for _, v in self.peak_terms())

    def dominant(self, count: int = 2) -> str:
        """Which terms dominate the estimated peak, in words: 'imported libraries 640 MB (72%),
        weights 90 MB (10%)' (MB = 1e6 bytes, as :func:`format_bytes`)."""
        total = self.total_bytes or 1.0
        return ", ".join(f"{name} {format_bytes(value)} ({value / total:.0%})"
                         for name, value in self.peak_terms()[:count])

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
            "peak_terms_gb": {k: round(v / GB, 4) for k, v in self.peak_terms()},
            "formulas": self.formulas,
            "notes": self.notes,
        }
        return out


def estimate_run(shape: ModelShape, args: MemoryArgs, *, fixed: float | None = None,
                 library_pages: float | None = None) -> RunEstimate:
    """The whole-run estimate for ``args`` on ``shape``. On CPU this reads (or measures, the
    first time: see :func:`fixed_cost`) the fixed cost unless ``fixed`` (bytes, both parts) is
    given; ``library_pages`` (bytes: :func:`library_pages_bytes` read inside the run that is
    being estimated) replaces the cached library-pages part, which may have been measured in
    another page-cache state. On CUDA it is the training estimate, with a note. Raises what
    :func:`estimate_memory` raises."""
    train = estimate_memory(shape, args)
    if args.device != "cpu":
        return RunEstimate(train, notes=[
            "whole-run terms (CUDA context, caching allocator) are not modelled yet: the total "
            "is the training estimate"])
    if fixed is not None:
        where = "given"
    else:
        measured = fixed_cost()
        where = measured.where
        if library_pages is not None and measured.private:
            fixed = measured.private + library_pages
            where = (f"private part {measured.where}, library pages "
                     f"{format_bytes(library_pages)} as this process maps them")
        else:
            fixed = measured.bytes
            if measured.private:
                where += (f": private {format_bytes(measured.private)}, library pages "
                          f"{format_bytes(measured.library_pages)} (these vary with the page "
                          "cache)")
    weights = train.part("weights")
    # Loading (and the evaluation after training) has every weight's fp32 pages resident,
    # including those training hands back (``released_bytes``).
    load = LOAD_COPIES * ((weights.bytes if weights else 0.0) + train.released_bytes)
    act = train.part("activations")
    grads = train.part("gradients")
    slack = max(0.0, (ACTIVATION_SLACK - 1) * (act.bytes if act else 0.0)
                - (grads.bytes if grads else 0.0))
    # The loop keeps a copy of the best trainable weights (counted once: the preflight's
    # arguments already include it in the weights).
    best = 0.0 if args.keep_best_copy else train.trainable_params * 4.0
    qlora_slack = (QLORA_CPU_ACTIVATION_SLACK * (act.bytes if act else 0.0)
                   if train.method == "qlora" else 0.0)
    parts = {"fixed": fixed, "extra": RUN_EXTRA_BYTES, "slack": slack, "best_copy": best,
             **({"qlora_slack": qlora_slack} if qlora_slack else {})}
    formulas = {
        "fixed": f"the libraries a run imports, {where}",
        "extra": "tokenizer, data, MLflow store, bookkeeping and the evaluation's increment over "
                 "training's peak (fitted on whole runs)",
        "best_copy": f"the loop's copy of the best weights: {train.trainable_params:,} x 4 bytes",
        "slack": f"glibc keeps freed activation blocks: activations x {ACTIVATION_SLACK - 1:g} "
                 "more, less what the gradients fill (fitted, glibc defaults)",
        "qlora_slack": f"QLoRA on CPU: activations x {QLORA_CPU_ACTIVATION_SLACK:g} more "
                       "(bitsandbytes' fp32 dequantised weights among them; fitted)",
    }
    notes = []
    if not fixed:
        notes.append(f"fixed cost {where}.")
    return RunEstimate(train, parts, formulas, notes, loading_bytes=load)
