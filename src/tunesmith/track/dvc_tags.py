"""MLflow tags that lead from a number back to the exact DVC-tracked data and experiment.

When a run starts inside a DVC project (a ``dvc repro`` or ``dvc exp run`` stage, or by hand in
the project), it is tagged with the hash DVC recorded for the outputs of the data stages
(``dvc.lock``; the model and metrics there are an earlier run's, so they are left out) and for
every ``dvc add``ed file (``*.dvc``), and inside ``dvc exp run`` with the experiment's name
and baseline commit (DVC sets ``DVC_EXP_NAME`` and ``DVC_EXP_BASELINE_REV`` for its stages).
``git checkout <commit> && dvc checkout`` then restores that data. Reading YAML only: no dvc
import, so tagging costs nothing outside a DVC project.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from tunesmith.track.dvc_project import DATA_STAGES

# MLflow tag values hold at most 8,000 characters and keys 250; DVC paths and md5s fit easily.
_PREFIX = "dvc."


def _project_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _lock_hashes(root: Path) -> dict[str, str]:
    lock_path = root / "dvc.lock"
    if not lock_path.is_file():
        return {}
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    hashes = {}
    for name, stage in (lock.get("stages") or {}).items():
        if name not in DATA_STAGES:
            continue
        for out in stage.get("outs") or []:
            if out.get("md5"):
                hashes[out["path"]] = out["md5"]
    return hashes


# Folders that never hold a project's .dvc files and can be huge.
_SKIP_DIRS = {".dvc", ".git", ".venv", "venv", "node_modules", "mlruns", "mlartifacts", "__pycache__"}


def _dvc_file_hashes(root: Path) -> dict[str, str]:
    hashes = {}
    dvc_files = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        dvc_files += [Path(folder) / f for f in files if f.endswith(".dvc")]
    for dvc_file in sorted(dvc_files):
        data = yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}
        for out in data.get("outs") or []:
            if out.get("md5"):
                path = (dvc_file.parent / out["path"]).relative_to(root).as_posix()
                hashes[path] = out["md5"]
    return hashes


def dvc_tags(cwd: str | Path = ".") -> dict[str, str]:
    """``{"dvc.data/finetuning": md5, ..., "dvc.exp_name": ...}``; empty outside a DVC project."""
    root = _project_root(Path(cwd).resolve())
    tags: dict[str, str] = {}
    if root is not None:
        hashes = {**_dvc_file_hashes(root), **_lock_hashes(root)}
        tags.update({f"{_PREFIX}{path}": md5 for path, md5 in sorted(hashes.items())})
    if os.environ.get("DVC_EXP_NAME"):
        tags[f"{_PREFIX}exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags[f"{_PREFIX}exp_baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags
