"""The names of the files and folders in a run folder (``runs/<run-name>/``): one place.

Everything that writes or reads a run folder takes its names from here, so a name is changed
once and no reader looks for a file under a name no writer uses. docs/DESIGN.md ("The run
folder") describes what each file holds. Ground floor: imports nothing; costs nothing.
"""

from __future__ import annotations

# The resolved Config that trained (written after the memory preflight; loadable with --config).
CONFIG = "config.yaml"
# {"run_name", "task", "model", "method", "labels"?, "mlflow_run_id"?, "versions", ...}
RUN_META = "run.json"
# One JSON object per line: train, eval and event records.
HISTORY = "history.jsonl"
# The baseline, the finetuned model and their difference (and the train section).
METRICS = "metrics.json"
# A classifier's baseline probe, fitted before training on the frozen base (numbers, JSON):
# evaluation reuses it instead of embedding the train split again.
PROBE = "probe.json"
SAMPLES = "samples.jsonl"  # generation samples (generative tasks)
ERRORS = "errors.jsonl"  # the worst classification errors
REPORT_HTML = "report.html"
REPORT_MD = "report.md"

# The trained weights and what they belong to.
ADAPTER_DIR = "adapter"
ADAPTER_META = "tunesmith_adapter.json"
CHECKPOINTS_DIR = "checkpoints"

PLOTS_DIR = "plots"
LOSS_PLOT = "loss.png"
LR_PLOT = "lr.png"
CONFUSION_PLOT = "confusion_matrix.png"

# The prepared data (`tunesmith run` writes it inside the run folder).
DATA_DIR = "data"
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
# Records of an earlier task replayed in this run's training set (continual learning), beside
# train.jsonl; written by `tunesmith run --continue-from` with prepare.replay_fraction.
REPLAY = "replay.jsonl"

# What `tunesmith review` writes.
REVIEW_DIR = "review"
REVIEW_DB = "review.sqlite"
REVIEW_RESULTS = "results.json"
PREFERENCES = "preferences.jsonl"
CORRECTIONS = "corrections.jsonl"

# Training in several processes: process k > 0 writes to ranks/<k>/, its output to console.log.
RANKS_DIR = "ranks"
CONSOLE_LOG = "console.log"


def split_file(split: str) -> str:
    """The file name of a prepared split: ``train.jsonl``, ``val.jsonl``, ``test.jsonl``."""
    return f"{split}.jsonl"
