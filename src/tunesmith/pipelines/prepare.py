"""Data preparation: the functions behind ``tunesmith data ...`` and the data step of ``run``.

``prepare_data(cfg, out_dir)`` reads a built-in dataset or a user's file, validates every record
(bad ones go to ``rejects.jsonl`` with line, reason and raw text), removes duplicates, samples
``limit`` records if asked, splits, writes ``train/val/test.jsonl``, reads them back to check that
no input is in two splits, and writes ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import __version__
from tunesmith.assets import dataset_file, is_builtin_dataset, iter_builtin_records
from tunesmith.config import PrepareConfig
from tunesmith.data.dedup import deduplicate
from tunesmith.data.detect import DETECT_HINT
from tunesmith.data.io import read_records, sha256_file, write_jsonl
from tunesmith.data.leakage import overlap_check
from tunesmith.data.split import SPLITS, split_records
from tunesmith.data.validate import ReadSummary, RecordStream, Reject, open_records
from tunesmith.errors import DataError
from tunesmith.records import Record

MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"


@dataclass
class PreparedData:
    task: str
    train: list[Record]
    val: list[Record]
    test: list[Record]
    labels: list[str]  # sorted; classification only, else []
    manifest: dict[str, Any]
    # Identifies exactly the prepared data: sha256 over the three split files' hashes.
    data_sha256: str
    out_dir: Path


def open_source(
    dataset: str,
    *,
    task: str | None = None,
    column_map: dict[str, str] | None = None,
    time_field: str | None = None,
    group_field: str | None = None,
) -> tuple[RecordStream, str]:
    """A validating stream over a file or a built-in dataset, and the source's sha256.

    A path that exists wins over a built-in of the same name.
    """
    path = Path(dataset)
    if not path.exists() and is_builtin_dataset(dataset):
        stream = open_records(
            iter_builtin_records(dataset), task=task, column_map=column_map,  # type: ignore[arg-type]
            time_field=time_field, group_field=group_field,
        )
        stream.summary.source = dataset
        stream.summary.format = "built-in"
        return stream, sha256_file(dataset_file(dataset))
    if not path.exists():
        raise DataError(
            f"no such data file or built-in dataset: '{dataset}'.",
            hint="Give a path to a JSONL, JSON, CSV/TSV or Parquet file, or a built-in name "
            "(rotten-tomatoes, chitchat, fanoutqa).",
        )
    stream = open_records(
        path, task=task, column_map=column_map,  # type: ignore[arg-type]
        time_field=time_field, group_field=group_field,
    )
    return stream, sha256_file(path)


def no_records_error(summary: ReadSummary) -> DataError:
    if summary.detect_problem:
        return DataError(f"{summary.source}: {summary.detect_problem}", hint=DETECT_HINT)
    reasons = ", ".join(f"{n} {r}" for r, n in summary.reasons.most_common(5)) or "the file holds no records"
    return DataError(
        f"{summary.source}: no usable records ({summary.read} read, all rejected: {reasons}).",
        hint="See each reject's line and reason in rejects.jsonl or with `tunesmith data check`.",
    )


def strict_error(summary: ReadSummary, rejects_path: Path | None) -> DataError:
    reasons = ", ".join(f"{n} {r}" for r, n in summary.reasons.most_common())
    where = f" (listed in {rejects_path})" if rejects_path else ""
    return DataError(
        f"{summary.source}: {summary.rejected} record(s) rejected with --strict: {reasons}{where}.",
        hint="Fix them at the source, or drop --strict to continue without them.",
    )


def _read_validated(stream: RecordStream, rejects_path: Path) -> list[Record]:
    records: list[Record] = []
    with open(rejects_path, "w", encoding="utf-8", newline="\n") as rejects:
        for item in stream:
            if isinstance(item, Reject):
                rejects.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
            else:
                records.append(item)
    return records


def _sample(records: list[Record], limit: int | None, seed: int) -> list[Record]:
    if limit is None or limit >= len(records):
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


def _label_distribution(records: list[Record]) -> dict[str, int]:
    return dict(sorted(Counter(r.target_text() for r in records).items()))


def _reread(path: Path, task: str) -> list[Record]:
    if path.stat().st_size == 0:
        return []
    return read_records(path, task=task)  # type: ignore[arg-type]


def prepare_data(
    cfg: PrepareConfig,
    out_dir: str | Path,
    *,
    strict: bool = False,
    command: str | None = None,
) -> PreparedData:
    """Validate, deduplicate, sample, split and write ``cfg.dataset`` into ``out_dir``.

    Raises :class:`DataError` for a missing or empty file, no usable records, rejects with
    ``strict``, a label too rare to stratify, or splits that overlap after writing.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    time_field = cfg.time_field if cfg.split == "time" else None
    group_field = cfg.group_field if cfg.split == "group" else None
    stream, source_sha = open_source(
        cfg.dataset, task=None if cfg.task == "auto" else cfg.task, column_map=cfg.column_map,
        time_field=time_field, group_field=group_field,
    )
    rejects_path = out / REJECTS
    records = _read_validated(stream, rejects_path)
    summary = stream.summary
    if strict and summary.rejected:
        raise strict_error(summary, rejects_path)
    if not records:
        raise no_records_error(summary)
    task = records[0].task

    unique, dedup = deduplicate(records, cfg.dedup, cfg.near_duplicate_threshold)
    used = _sample(unique, cfg.limit, cfg.seed)
    ratios = (cfg.train_ratio, cfg.val_ratio, cfg.test_ratio)
    split = split_records(
        used, method=cfg.split, ratios=ratios, seed=cfg.seed,
        time_field=cfg.time_field, group_field=cfg.group_field,
    )

    files: dict[str, Any] = {}
    reread: dict[str, list[Record]] = {}
    for name, part in split.parts().items():
        path = out / f"{name}.jsonl"
        write_jsonl(part, path)
        reread[name] = _reread(path, task)
        files[path.name] = {"records": len(part), "sha256": sha256_file(path)}
    files[REJECTS] = {"records": summary.rejected, "sha256": sha256_file(rejects_path)}
    overlap = overlap_check(reread, near=cfg.dedup == "near", threshold=cfg.near_duplicate_threshold)
    data_sha = hashlib.sha256(
        "".join(f"{n}:{files[f'{n}.jsonl']['sha256']}\n" for n in SPLITS).encode()
    ).hexdigest()

    labels = sorted({r.target_text() for r in used}) if task == "classification" else []
    manifest: dict[str, Any] = {
        "tunesmith_version": __version__,
        "command": command,
        "config": cfg.model_dump(mode="json"),
        "source": {"dataset": cfg.dataset, "format": summary.format, "sha256": source_sha},
        "task": task,
        "counts": {
            "read": summary.read, "accepted": summary.accepted, "rejected": summary.rejected,
            "duplicates_removed": dedup.removed, "after_dedup": len(unique), "used": len(used),
            **{name: len(part) for name, part in split.parts().items()},
        },
        "rejects_by_reason": dict(sorted(summary.reasons.items())),
        "warnings": summary.to_dict()["warnings"],
        "duplicates": dedup.to_dict(),
        "split": {"method": split.method, "seed": cfg.seed, "ratios": list(ratios), **split.info},
        "labels": labels,
        "label_distribution": (
            {name: _label_distribution(part) for name, part in split.parts().items()}
            if task == "classification" else {}
        ),
        "files": files,
        "overlap_check": overlap,
        "data_sha256": data_sha,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if not overlap["passed"] and cfg.dedup != "none":
        raise DataError(
            f"the split files in {out} share inputs ({overlap}); this should not happen after "
            "deduplication.",
            hint="Please report it with the manifest; meanwhile use --dedup near.",
        )
    return PreparedData(
        task=task, train=split.train, val=split.val, test=split.test, labels=labels,
        manifest=manifest, data_sha256=data_sha, out_dir=out,
    )
