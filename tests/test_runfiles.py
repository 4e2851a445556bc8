"""Run-folder file names live in tunesmith.runfiles only: no module spells one out again."""

from __future__ import annotations

import ast
from pathlib import Path

from tunesmith import runfiles

SRC = Path(runfiles.__file__).parent
# Files that name a file of the same name in another folder, not the run folder's.
ELSEWHERE = {
    # the DVC project's own evaluate stage output (dvc.yaml), at the project root
    ("track/dvc_project.py", "metrics.json"),
}


def _file_names() -> set[str]:
    values = {v for k, v in vars(runfiles).items() if k.isupper() and isinstance(v, str)}
    return {v for v in values if "." in v} | {runfiles.split_file(s) for s in runfiles.SPLITS}


def test_no_module_spells_a_run_file_name_again():
    names = _file_names()
    assert {"config.yaml", "metrics.json", "history.jsonl", "train.jsonl"} <= names
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "runfiles.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Constant) and node.value in names
                    and (rel, node.value) not in ELSEWHERE):
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, "use tunesmith.runfiles instead of:\n" + "\n".join(found)
