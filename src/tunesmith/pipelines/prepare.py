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

from tunesmith import __version__, runfiles
from tunesmith.config import PrepareConfig
from tunesmith.data.dedup import deduplicate
from tunesmith.data.detect import DETECT_HINT
from tunesmith.data.io import record_line, sha256_file, write_jsonl
from tunesmith.data.leakage import overlap_check
from tunesmith.data.source import open_source
from tunesmith.data.split import SPLITS, split_records
from tunesmith.data.validate import ReadSummary, RecordStream, Reject, read_records
from tunesmith.errors import DataError
from tunesmith.records import Record


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


def _where(summary: ReadSummary, guide_field: str) -> str:
    """A guide field in the user's terms: which column it was read from, if mapped."""
    column = summary.column_map.get(guide_field)
    if column is None:
        return f"field '{guide_field}'"
    if summary.columns and column not in summary.columns:
        return f"field '{guide_field}', from your column '{column}', which the file does not have"
    return f"field '{guide_field}', from your column '{column}'"


def _column_hint(summary: ReadSummary, fields: list[str]) -> str:
    """How to map ``fields`` onto the file's columns, for `run` and for `tunesmith data`."""
    mapping = dict(summary.column_map)
    free = [c for c in summary.columns if c not in mapping.values()]
    for name in fields:
        if mapping.get(name) not in summary.columns:
            mapping[name] = free.pop(0) if free else "COLUMN"
    as_yaml = ", ".join(f"{k}: {v}" for k, v in mapping.items())
    as_flags = " ".join(f"--map {k}={v}" for k, v in mapping.items())
    return (f"Map the guide's fields onto the file's columns, e.g. --set "
            f"'prepare.column_map={{{as_yaml}}}' (with `tunesmith data`: {as_flags}).")


def reencode_hint(source: str) -> str:
    """What to do about a file that is not UTF-8."""
    path = Path(source)
    return (f"Re-encode the file as UTF-8, e.g. `iconv -f cp1252 -t utf-8 {path} > "
            f"{path.with_name(path.stem + '-utf8' + path.suffix)}` (cp1252 is what Excel on "
            "Windows writes; use the file's real encoding), then use the new file.")


def no_records_error(summary: ReadSummary, rejects_path: Path | None = None) -> DataError:
    """Why nothing was usable, in the user's terms: the guide's field, the user's column, the
    columns the file has; and where the rejects are listed."""
    columns = f" The file's columns: {', '.join(summary.columns)}." if summary.columns else ""
    if summary.detect_problem:
        unmapped = [f"'{c}' (for {g})" for g, c in summary.column_map.items()
                    if summary.columns and c not in summary.columns]
        absent = f" prepare.column_map names columns it does not have: {', '.join(unmapped)}." if unmapped else ""
        return DataError(f"{summary.source}: {summary.detect_problem}{columns}{absent}", hint=DETECT_HINT)
    reasons = ", ".join(
        f"{n} {reason}" + (f" ({_where(summary, fld)})" if fld else "")
        for (reason, fld), n in _reasons_with_fields(summary).most_common(5)
    ) or "the file holds no records"
    where = f"in {rejects_path}" if rejects_path else "by `tunesmith data check`"
    missing = sorted({fld for (reason, fld) in summary.field_reasons if reason == "missing field"})
    if summary.reasons.get("not valid UTF-8"):
        hint = reencode_hint(summary.source)
    elif missing and summary.columns:
        hint = _column_hint(summary, missing)
    else:
        hint = "Fix the rejected rows at the source (each reject's reason is listed with its line)."
    return DataError(
        f"{summary.source}: no usable records ({summary.read} read, all rejected: {reasons})."
        f"{columns} Each reject with its line is listed {where}.",
        hint=hint,
    )


def _reasons_with_fields(summary: ReadSummary) -> Counter[tuple[str, str | None]]:
    """Rejects by (reason, field): reasons that concern one field are split by field."""
    counts: Counter[tuple[str, str | None]] = Counter()
    for (reason, fld), n in summary.field_reasons.items():
        counts[(reason, fld)] += n
    for reason, n in summary.reasons.items():
        rest = n - sum(m for (r, _), m in summary.field_reasons.items() if r == reason)
        if rest:
            counts[(reason, None)] += rest
    return counts


def strict_error(summary: ReadSummary, rejects_path: Path | None) -> DataError:
    reasons = ", ".join(f"{n} {r}" for r, n in summary.reasons.most_common())
    where = f" (listed in {rejects_path})" if rejects_path else ""
    hint = "Fix them at the source, or drop --strict to continue without them."
    if summary.reasons.get("not valid UTF-8"):
        hint = f"{reencode_hint(summary.source)} {hint}"
    return DataError(
        f"{summary.source}: {summary.rejected} record(s) rejected with --strict: {reasons}{where}.",
        hint=hint,
    )


def _read_validated(stream: RecordStream, rejects_path: Path) -> list[Record]:
    records: list[Record] = []
    with open(rejects_path, "w", encoding="utf-8", newline="\n") as rejects:
        for item in stream:
            if isinstance(item, Reject):
                rejects.write(item.to_line())
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
    rejects_path = out / runfiles.REJECTS
    records = _read_validated(stream, rejects_path)
    summary = stream.summary
    if strict and summary.rejected:
        raise strict_error(summary, rejects_path)
    if not records:
        raise no_records_error(summary, rejects_path)
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
        path = out / runfiles.split_file(name)
        write_jsonl(part, path)
        reread[name] = read_records(path, task=task)
        files[path.name] = {"records": len(part), "sha256": sha256_file(path)}
    files[runfiles.REJECTS] = {"records": summary.rejected, "sha256": sha256_file(rejects_path)}
    overlap = overlap_check(reread, near=cfg.dedup == "near", threshold=cfg.near_duplicate_threshold)
    data_sha = hashlib.sha256(
        "".join(f"{n}:{files[runfiles.split_file(n)]['sha256']}\n" for n in SPLITS).encode()
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
    (out / runfiles.MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
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


# ---------------------------------------------------------------------------------------------
# The `tunesmith data` commands other than split (which is prepare_data).


def load_tokenizer(model: str) -> Any:
    """Only the tokenizer of ``model``: a built-in, a local folder or a hub id.

    SmolLM2's tokenizer is read from its converted copy when there is one, else straight from
    the GGUF file (no model conversion needed just to count tokens).
    """
    from transformers import AutoTokenizer

    from tunesmith import assets
    from tunesmith.models.loader import converted_gguf_dir, locate_model

    try:
        source = assets.model_source(model)
        if isinstance(source, str):
            return AutoTokenizer.from_pretrained(locate_model(source))
        if source.gguf:
            converted = converted_gguf_dir(source.name)
            if (converted / "tokenizer_config.json").is_file():
                return AutoTokenizer.from_pretrained(str(converted))
            gguf = assets.builtin_model_path(source.name)
            return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        return AutoTokenizer.from_pretrained(str(assets.builtin_model_path(source.name)))
    except (OSError, ValueError) as exc:
        raise assets.unknown_model_error(model, str(exc).splitlines()[0]) from None


def token_counter(tokenizer: Any) -> Any:
    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    return count


@dataclass
class DataReport:
    """What `data check` and `data stats` found; ``to_dict()`` is the JSON they can write."""

    task: str | None
    summary: ReadSummary
    rejects: list[Reject]  # the first few, for showing
    dedup: Any  # DedupReport, or None when not checked
    lengths: dict[str, Any] | None
    length_unit: str
    size: dict[str, str]
    label_counts: dict[str, int]
    balance: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, **self.summary.to_dict(),
            "rejects_shown": [r.to_dict() for r in self.rejects],
            "duplicates": self.dedup.to_dict() if self.dedup is not None else None,
            "lengths": self.lengths, "length_unit": self.length_unit, "size": self.size,
            "label_counts": self.label_counts, "balance": self.balance,
        }


def inspect_data(
    dataset: str,
    *,
    task: str | None = None,
    column_map: dict[str, str] | None = None,
    dedup: str = "exact",
    threshold: float = 0.9,
    model: str | None = None,
    max_length: int = 512,
    rejects_path: str | Path | None = None,
    show_rejects: int = 20,
) -> DataReport:
    """Stream ``dataset`` once: validate, find duplicates, measure lengths and label balance.

    Holds per record only an 8-byte hash, its line and its lengths (``dedup="near"`` adds a
    64-value MinHash signature and its LSH entries), never the text. Lengths are in the tokens of ``model`` when
    given, else in words.
    """
    from tunesmith.data.dedup import DedupReport, ExactIndex, NearIndex
    from tunesmith.data.stats import LengthStats, label_balance, size_advice, words

    stream, _ = open_source(dataset, task=task, column_map=column_map)
    counter, specials, unit = words, 0, "words"
    if model is not None:
        tokenizer = load_tokenizer(model)
        counter, unit = token_counter(tokenizer), f"{model} tokens"
        specials = tokenizer.num_special_tokens_to_add(pair=False)
    lengths = LengthStats(counter, specials, generative=stream.task != "classification")
    report = DedupReport(dedup, threshold if dedup == "near" else None)
    exact = ExactIndex() if dedup != "none" else None
    near = NearIndex(threshold, keep_shingles=False) if dedup == "near" else None
    labels: Counter[str] = Counter()
    shown: list[Reject] = []
    rejects_file = open(rejects_path, "w", encoding="utf-8", newline="\n") if rejects_path else None  # noqa: SIM115
    try:
        for item in stream:
            if isinstance(item, Reject):
                if len(shown) < show_rejects:
                    shown.append(item)
                if rejects_file is not None:
                    rejects_file.write(item.to_line())
                continue
            dup = exact.check(item) if exact is not None else None
            if dup is None and near is not None:
                dup = near.check(item)
            if dup is not None:
                report.note(dup)
                continue
            lengths.add(item)
            if item.task == "classification":
                labels[item.target_text()] += 1
    finally:
        if rejects_file is not None:
            rejects_file.close()
    summary = stream.summary
    unique = summary.accepted - report.removed
    label_counts = dict(sorted(labels.items()))
    return DataReport(
        task=summary.task, summary=summary, rejects=shown,
        dedup=report if dedup != "none" else None,
        lengths=lengths.summary(max_length) if unique else None, length_unit=unit,
        size=size_advice(unique), label_counts=label_counts, balance=label_balance(label_counts),
    )


CORRECTION_RELABELLED = "relabelled by corrections"
CORRECTION_DROPPED = "dropped by corrections"


def convert_data(
    dataset: str,
    dest: str | Path,
    *,
    task: str | None = None,
    column_map: dict[str, str] | None = None,
    corrections: str | Path | None = None,
) -> tuple[ReadSummary, Path | None]:
    """Write the valid records of ``dataset`` (any format) as JSONL in the guide's field names.

    Rejects go next to it as ``<dest stem>.rejects.jsonl`` (returned; None when there are none).
    ``corrections`` (a file from the review app's error browser) relabels or drops the records
    it names (:mod:`tunesmith.data.corrections`).
    """
    from tunesmith.data.corrections import apply_correction, read_corrections

    fixes = read_corrections(corrections) if corrections else {}
    stream, _ = open_source(dataset, task=task, column_map=column_map)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    rejects_path = dest.with_name(dest.stem + ".rejects.jsonl")
    with open(dest, "w", encoding="utf-8", newline="\n") as out, \
            open(rejects_path, "w", encoding="utf-8", newline="\n") as rejects:
        for item in stream:
            if isinstance(item, Reject):
                rejects.write(item.to_line())
            else:
                fixed = apply_correction(item, fixes)
                if fixed is not item:  # counted where `data check` shows warnings, with lines
                    stream.summary.warn(CORRECTION_DROPPED if fixed is None else CORRECTION_RELABELLED,
                                        item.line or 0)
                if fixed is not None:
                    out.write(record_line(fixed))
    if not stream.summary.rejected:
        rejects_path.unlink()
        return stream.summary, None
    return stream.summary, rejects_path


@dataclass
class LeakageResult:
    report: Any  # LeakReport
    summary_a: ReadSummary
    summary_b: ReadSummary


def leakage_between(
    a: str,
    b: str,
    *,
    task: str | None = None,
    column_map: dict[str, str] | None = None,
    near: bool = True,
    threshold: float = 0.9,
) -> LeakageResult:
    """Records of ``b`` whose input is (nearly) in ``a``; bad rows of either file are skipped."""
    from tunesmith.data.leakage import find_leaks

    stream_a, _ = open_source(a, task=task, column_map=column_map)
    stream_b, _ = open_source(b, task=task or stream_a.task, column_map=column_map)
    records_a = (r for r in stream_a if not isinstance(r, Reject))
    records_b = (r for r in stream_b if not isinstance(r, Reject))
    report = find_leaks(records_a, records_b, near=near, threshold=threshold)
    for summary in (stream_a.summary, stream_b.summary):
        if not summary.accepted:
            raise no_records_error(summary)
    return LeakageResult(report, stream_a.summary, stream_b.summary)
