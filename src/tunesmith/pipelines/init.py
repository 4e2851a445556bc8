"""`tunesmith init` and the data stages of the DVC pipeline it writes.

``init_project`` scaffolds the project (see :mod:`tunesmith.track.dvc_project`). The stage
functions are what ``tunesmith stage ...`` runs inside ``dvc repro``; each reads params.yaml and
writes one folder, so DVC can cache and skip it:

- ``ingest``:     the raw dataset as it is (a built-in as guide-format JSONL) -> data/raw/
- ``preprocess``: validated, de-duplicated records + rejects                  -> data/processed/
- ``split``:      train/val/test + manifest                                     -> data/finetuning/
- ``evaluate``:   metrics.json and plots beside the project, not inside the model folder
  (that folder is the finetune stage's output; writing into it would make DVC retrain).

The work itself is the data engineer's (:mod:`tunesmith.data`, ``prepare_data``) and the core
engineer's (evaluation): these functions only place inputs and outputs where DVC expects them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from tunesmith import runfiles
from tunesmith.config import Config, load_config
from tunesmith.errors import DataError, UsageError
from tunesmith.track.dvc_project import Scaffold, scaffold

TASK_CHOICES = ("auto", "instruction", "classification", "qa", "chat")


def init_project(directory: str | Path, *, task: str | None = None, model: str | None = None,
                 data: str | None = None, force: bool = False) -> Scaffold:
    """Scaffold a tunesmith DVC project in ``directory`` (created when missing).

    ``data``: a built-in dataset name or a file (copied into the project and tracked by DVC).
    Raises UsageError for an unknown task, a data path that does not exist, or an existing
    project (unless ``force``).
    """
    from tunesmith import assets

    prepare: dict = {}
    if task is not None:
        if task not in TASK_CHOICES:
            raise UsageError(f"--task must be one of {', '.join(TASK_CHOICES)}, got '{task}'.")
        prepare["task"] = task
    data_file = None
    if data is not None:
        if assets.is_builtin_dataset(data):
            prepare["dataset"] = data
        elif Path(data).is_file():
            data_file = Path(data)
        else:
            raise UsageError(
                f"--data '{data}' is neither a built-in dataset nor an existing file.",
                hint=f"Built-ins: {', '.join(n for n in assets.BUILTIN_DATASETS if n != 'hamlet')}.",
            )
    finetune = {"model": model} if model is not None else {}
    config = Config.model_validate({"prepare": prepare, "finetune": finetune})
    return scaffold(Path(directory), config, data_file=data_file, force=force)


def _clean_dir(out: Path) -> None:
    # A stage owns its output folder: stale files from an earlier run must not survive.
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def ingest(config_path: str | Path, out_dir: str | Path) -> Path:
    """Copy the raw dataset into ``out_dir``: a file byte for byte, a built-in as JSONL records.

    Returns the written file. Raises DataError when ``prepare.dataset`` is neither.
    """
    from tunesmith import assets

    config = load_config(config_path)
    dataset = config.prepare.dataset
    out = Path(out_dir)
    _clean_dir(out)
    source = Path(dataset)
    if source.is_file():
        target = out / source.name
        shutil.copyfile(source, target)
        return target
    if not assets.is_builtin_dataset(dataset):
        raise DataError(
            f"{config_path}: prepare.dataset '{dataset}' is neither a file nor a built-in dataset.",
            hint="Point prepare.dataset at a JSONL/JSON/CSV/Parquet file or a built-in name.",
        )
    target = out / f"{dataset}.jsonl"
    rows, _ = assets.builtin_rows(dataset)
    with target.open("w", encoding="utf-8") as fh:
        for _, row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target


def raw_file(raw_dir: str | Path) -> Path:
    """The one data file that ``ingest`` left in ``raw_dir``."""
    files = sorted(p for p in Path(raw_dir).iterdir() if p.is_file()) if Path(raw_dir).is_dir() else []
    if len(files) != 1:
        raise DataError(
            f"{raw_dir}: expected the one file written by the data_ingestion stage, found "
            f"{len(files)}.",
            hint="Run `dvc repro data_ingestion` (or `dvc repro`) to rewrite it.",
        )
    return files[0]


@dataclass
class PreprocessSummary:
    kept: int
    rejected: int
    duplicates: int


def preprocess(config_path: str | Path, raw_dir: str | Path, out_dir: str | Path) -> PreprocessSummary:
    """Validate and de-duplicate the raw file into ``out_dir``: records.jsonl (the guide's
    format), rejects.jsonl (line, reason, raw text) and summary.json (counts, duplicates).

    Raises DataError when no record is usable.
    """
    from tunesmith.data.dedup import deduplicate
    from tunesmith.data.io import write_jsonl
    from tunesmith.data.source import open_source
    from tunesmith.data.validate import Reject
    from tunesmith.pipelines.prepare import no_records_error

    prepare = load_config(config_path).prepare
    source = raw_file(raw_dir)
    out = Path(out_dir)
    _clean_dir(out)
    stream, source_sha = open_source(
        str(source), task=None if prepare.task == "auto" else prepare.task,
        column_map=prepare.column_map,
    )
    records = []
    with (out / runfiles.REJECTS).open("w", encoding="utf-8", newline="\n") as rejects:
        for item in stream:
            if isinstance(item, Reject):
                rejects.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
            else:
                records.append(item)
    if not records:
        raise no_records_error(stream.summary, out / runfiles.REJECTS)
    unique, dedup = deduplicate(records, prepare.dedup, prepare.near_duplicate_threshold)
    write_jsonl(unique, out / "records.jsonl")
    summary = {
        "source": {"file": source.name, "sha256": source_sha},
        "task": unique[0].task,
        "read": stream.summary.to_dict(),
        "duplicates": dedup.to_dict(),
        "kept": len(unique),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    return PreprocessSummary(len(unique), stream.summary.rejected, dedup.removed)


def split(config_path: str | Path, processed_dir: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Sample ``prepare.limit`` records and split the processed records into ``out_dir``
    (train/val/test.jsonl, manifest.json) with the data engineer's ``prepare_data``.

    Returns the record count of each split.
    """
    from tunesmith.pipelines.prepare import prepare_data

    prepare = load_config(config_path).prepare
    records = Path(processed_dir) / "records.jsonl"
    if not records.is_file():
        raise DataError(f"{records} is missing: the data_preprocessing stage writes it.",
                        hint="Run `dvc repro data_preprocessing` (or `dvc repro`).")
    out = Path(out_dir)
    _clean_dir(out)
    # Columns are mapped and duplicates removed already (data_preprocessing); this stage only
    # samples and splits, so it depends on exactly the split params.
    cfg = prepare.model_copy(update={"dataset": str(records), "task": "auto", "column_map": {},
                                     "dedup": "none"})
    prepared = prepare_data(cfg, out, command="tunesmith stage split")
    return {"train": len(prepared.train), "val": len(prepared.val), "test": len(prepared.test)}


def evaluate(config_path: str | Path, run_dir: str | Path, data_dir: str | Path,
             metrics_path: str | Path, plots_dir: str | Path, reports_dir: str | Path) -> list[Path]:
    """Evaluate the finetune stage's run folder without writing into it.

    ``tunesmith evaluate`` completes metrics.json inside the run folder; in a DVC project that
    folder is the finetune stage's output, and changing it would make DVC retrain. So the run is
    evaluated in a scratch copy (without checkpoints) and metrics.json, the plots (into
    ``plots_dir``), the reports and errors/samples (into ``reports_dir``) are copied out.
    Returns the files written.
    """
    import tempfile

    from tunesmith.pipelines.evaluate import evaluate as evaluate_run

    load_config(config_path)  # fail early, naming the file, on a broken params.yaml
    run = Path(run_dir)
    plots, reports = Path(plots_dir), Path(reports_dir)
    _clean_dir(plots)
    _clean_dir(reports)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="tunesmith-eval-") as tmp:
        scratch = Path(tmp) / run.name
        shutil.copytree(run, scratch, ignore=shutil.ignore_patterns(runfiles.CHECKPOINTS_DIR))
        evaluate_run(scratch, data_dir=data_dir)  # also writes report.html/md
        shutil.copyfile(scratch / runfiles.METRICS, metrics_path)
        written.append(Path(metrics_path))
        for png in sorted((scratch / runfiles.PLOTS_DIR).glob("*.png")):
            written.append(Path(shutil.copy2(png, plots / png.name)))
        for name in (runfiles.ERRORS, runfiles.SAMPLES, runfiles.REPORT_HTML, runfiles.REPORT_MD):
            if (scratch / name).is_file():
                written.append(Path(shutil.copy2(scratch / name, reports / name)))
    return written
