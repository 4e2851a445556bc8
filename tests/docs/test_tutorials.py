"""docs/tutorials/*.md run as written: every ```bash block, in order, in a fresh folder.

A tutorial that stops working fails CI instead of rotting. Each tutorial's blocks run one after
another (the working directory and exported variables carry over from block to block) on a tiny
budget that the tutorial itself declares in an HTML comment, invisible when rendered:

    <!-- test: env TUNESMITH_SET="prepare.limit=200 finetune.max_steps=4" -->
    <!-- test: exit 0 1 -->      (the next block may exit with any of these codes)
    <!-- test: skip -->          (the next block is not run: e.g. `make demo`)

A block that starts a server runs it in the background, waits for it with a bounded readiness
loop and stops it itself (tutorial 6); a block that runs over 10 minutes is stopped with its
whole process group, servers included.

`$TUNESMITH_SET` applies config overrides everywhere a config is loaded (DVC stages included),
so the commands run exactly as a reader types them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("[0-9]*.md"))
BIN = Path(sys.executable).parent

_DIRECTIVE = re.compile(r"<!--\s*test:\s*(\w+)\s*(.*?)\s*-->")
_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


@dataclass
class Block:
    code: str
    line: int
    exit_codes: tuple[int, ...] = (0,)
    skip: bool = False


@dataclass
class Tutorial:
    env: dict[str, str] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


def parse(text: str) -> Tutorial:
    """Blocks and directives in document order; `exit` and `skip` apply to the next block."""
    tutorial = Tutorial()
    pending: dict[str, str] = {}
    events = [(m.start(), "directive", m) for m in _DIRECTIVE.finditer(text)]
    events += [(m.start(), "block", m) for m in _BLOCK.finditer(text)]
    for start, kind, m in sorted(events, key=lambda e: e[0]):
        if kind == "directive":
            name, arg = m.group(1), m.group(2)
            if name == "env":
                key, _, value = arg.partition("=")
                tutorial.env[key.strip()] = value.strip().strip('"')
            elif name in ("exit", "skip"):
                pending[name] = arg
            else:
                raise ValueError(f"unknown tutorial directive {name!r}")
            continue
        block = Block(m.group(1), text.count("\n", 0, start) + 1)
        if "exit" in pending:
            block.exit_codes = tuple(int(c) for c in pending.pop("exit").split())
        block.skip = "skip" in pending
        pending.pop("skip", None)
        tutorial.blocks.append(block)
    return tutorial


def test_parse_reads_blocks_and_directives():
    text = (
        '<!-- test: env TUNESMITH_SET="finetune.max_steps=2" -->\n'
        "```bash\necho one\n```\n"
        "<!-- test: exit 0 1 -->\n```bash\nfalse\n```\n"
        "<!-- test: skip -->\n```bash\nmake demo\n```\n```python\nnot run\n```\n"
    )
    t = parse(text)
    assert t.env == {"TUNESMITH_SET": "finetune.max_steps=2"}
    assert [b.code for b in t.blocks] == ["echo one\n", "false\n", "make demo\n"]
    assert [b.exit_codes for b in t.blocks] == [(0,), (0, 1), (0,)]
    assert [b.skip for b in t.blocks] == [False, False, True]
    assert t.blocks[1].line == 6  # the ```bash fence line


def run_block(script: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one block in its own process group; on timeout stop the whole group, so a server
    the block started in the background (and would have stopped itself) does not outlive it."""
    proc = subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"a block ran over {timeout:.0f} s and was stopped:\n{script}\n--- stdout ---\n"
                    f"{stdout[-4000:]}\n--- stderr ---\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_tutorial(path: Path, workdir: Path) -> None:
    tutorial = parse(path.read_text(encoding="utf-8"))
    assert tutorial.blocks, f"{path.name} has no bash blocks"
    shutil.copytree(ROOT / "examples", workdir / "examples")
    state = workdir / ".tutorial-state"
    state.mkdir()
    (state / "cwd").write_text(str(workdir))
    (state / "env").write_text("")
    env = {**os.environ, **tutorial.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "tutorial", "GIT_AUTHOR_EMAIL": "tutorial@example.invalid",
           "GIT_COMMITTER_NAME": "tutorial", "GIT_COMMITTER_EMAIL": "tutorial@example.invalid"}
    for block in tutorial.blocks:
        if block.skip:
            continue
        script = (
            f'cd "$(cat {state}/cwd)"\nsource {state}/env\nset -euo pipefail\n{block.code}\n'
            f"pwd > {state}/cwd\nexport -p > {state}/env\n"
        )
        done = run_block(script, env)
        if done.returncode not in block.exit_codes:
            pytest.fail(
                f"{path.name}, block at line {block.line} exited {done.returncode} "
                f"(expected {block.exit_codes}):\n{block.code}\n--- stdout ---\n"
                f"{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
            )


@pytest.mark.integration
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_as_written(path, tmp_path):
    run_tutorial(path, tmp_path)
