"""The DVC project that `tunesmith init` writes: the guide's five stages as tunesmith commands.

Each stage lists exactly the ``params.yaml`` keys it reads, so DVC reruns only what a change
touches: ``finetune.lora_r`` reruns finetune_model and evaluate_model, never the data stages.
The stage commands call ``tunesmith`` from PATH: run ``dvc repro`` with the environment where
tunesmith is installed activated.

Git and DVC are set up only where missing; a project inside an existing git repository gets
``dvc init --subdir``. Nothing here trains or reads data: that is what the stages do.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tunesmith.config import Config
from tunesmith.errors import UsageError

# The keys each stage reads; DVC hashes their values and reruns the stage when one changes.
INGEST_PARAMS = ("prepare.dataset",)
PREPROCESS_PARAMS = (
    "prepare.task",
    "prepare.column_map",
    "prepare.dedup",
    "prepare.near_duplicate_threshold",
)
SPLIT_PARAMS = (
    "prepare.limit",
    "prepare.train_ratio",
    "prepare.val_ratio",
    "prepare.test_ratio",
    "prepare.split",
    "prepare.time_field",
    "prepare.group_field",
    "prepare.seed",
)
# Training tokenizes (max_length) and logs to MLflow (tracking): both change what it produces.
FINETUNE_PARAMS = ("finetune", "prepare.max_length", "tracking")
EVALUATE_PARAMS = ("evaluation", "prepare.max_length")

STAGE_NAMES = (
    "data_ingestion",
    "data_preprocessing",
    "prepare_finetuning",
    "finetune_model",
    "evaluate_model",
)
DATA_STAGES = STAGE_NAMES[:3]

GITIGNORE = """\
# MLflow's embedded store and artifacts (the runs are tracked there, not in git)
/mlflow.db
/mlruns/
/mlartifacts/
# Python
__pycache__/
.venv/
"""


@dataclass
class Scaffold:
    """What `tunesmith init` did, for the CLI to report."""

    root: Path
    written: list[str] = field(default_factory=list)
    git_initialised: bool = False
    dvc_initialised: bool = False
    data_file: str | None = None  # the user's file, copied under data/source/ and `dvc add`ed


def stages(data_file: str | None) -> dict:
    """The ``stages:`` mapping of dvc.yaml. ``data_file``: the user's file inside the project."""
    ingest: dict = {
        "cmd": "tunesmith stage ingest --config params.yaml --out data/raw",
        "params": list(INGEST_PARAMS),
        "outs": ["data/raw"],
    }
    if data_file:
        ingest["deps"] = [data_file]
    return {
        "data_ingestion": ingest,
        "data_preprocessing": {
            "cmd": "tunesmith stage preprocess --config params.yaml --raw data/raw "
            "--out data/processed",
            "deps": ["data/raw"],
            "params": list(PREPROCESS_PARAMS),
            "outs": ["data/processed"],
        },
        "prepare_finetuning": {
            "cmd": "tunesmith stage split --config params.yaml --processed data/processed "
            "--out data/finetuning",
            "deps": ["data/processed"],
            "params": list(SPLIT_PARAMS),
            "outs": ["data/finetuning"],
        },
        "finetune_model": {
            "cmd": "tunesmith train --config params.yaml --data data/finetuning --out models/run "
            "--no-progress",
            "deps": ["data/finetuning/train.jsonl", "data/finetuning/val.jsonl",
                     "data/finetuning/manifest.json"],
            "params": list(FINETUNE_PARAMS),
            "outs": ["models/run"],
        },
        "evaluate_model": {
            "cmd": "tunesmith stage evaluate --config params.yaml --run models/run "
            "--data data/finetuning --metrics metrics.json --plots plots --reports reports",
            "deps": ["models/run", "data/finetuning"],
            "params": list(EVALUATE_PARAMS),
            # Metrics and plots are small and regenerated on every evaluation: kept in git.
            "metrics": [{"metrics.json": {"cache": False}}],
            # loss.png and lr.png, plus confusion_matrix.png for classification.
            "plots": [{"plots": {"cache": False}}],
            "outs": ["reports"],
        },
    }


def dvc_yaml_text(data_file: str | None) -> str:
    header = (
        "# The guide's pipeline: data_ingestion -> data_preprocessing -> prepare_finetuning\n"
        "#   -> finetune_model -> evaluate_model. Each stage lists only the params it reads, so\n"
        "# `dvc repro` reruns exactly what a change touches. Written by `tunesmith init`.\n"
    )
    return header + yaml.safe_dump({"stages": stages(data_file)}, sort_keys=False, width=100)


def params_text(config: Config) -> str:
    return (
        "# tunesmith params: the single config read by every stage, MLflow and `dvc exp run -S`.\n"
        "# `tunesmith config show` prints every key with its default and the reason for it.\n"
        + config.to_yaml()
    )


def readme_text(config: Config) -> str:
    return f"""# tunesmith project

Task `{config.prepare.task}`, model `{config.finetune.model}`, data `{config.prepare.dataset}`.
Written by `tunesmith init`; everything is driven by `params.yaml`.

```bash
git add . && git commit -m "tunesmith project"   # DVC experiments need a commit
dvc repro                                         # the five stages, end to end
dvc metrics show                                  # metrics.json
dvc exp run -S finetune.lora_r=16                 # an experiment: reruns finetune + evaluate only
dvc exp show                                      # experiments side by side
tunesmith registry register models/run --name my-model
tunesmith registry promote my-model 1 --alias production
```

Runs are logged to MLflow (`{config.tracking.mlflow_uri}`); `mlflow ui --backend-store-uri
{config.tracking.mlflow_uri}` shows them. Stages: `dvc dag`.
"""


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def _git_toplevel(root: Path) -> Path | None:
    result = _git(root, "rev-parse", "--show-toplevel")
    return Path(result.stdout.strip()).resolve() if result.returncode == 0 else None


@contextlib.contextmanager
def _quiet_dvc() -> Iterator[None]:
    """Silence DVC's own banners ("Initialized DVC repository", "To track the changes with
    git, run: ..."): `tunesmith init` reports what it did and what to run next."""
    dvc_logger = logging.getLogger("dvc")
    level = dvc_logger.level
    dvc_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        dvc_logger.setLevel(level)


def scaffold(root: Path, config: Config, *, data_file: Path | None = None,
             force: bool = False) -> Scaffold:
    """Write params.yaml, dvc.yaml, .gitignore and README.md into ``root``; init git and DVC.

    ``data_file``: a user's dataset, copied to ``data/source/`` and tracked with ``dvc add``
    (``config.prepare.dataset`` is pointed at the copy). Raises UsageError when the project
    files exist already and ``force`` is false.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    existing = [n for n in ("params.yaml", "dvc.yaml") if (root / n).exists()]
    if existing and not force:
        raise UsageError(
            f"{root} already holds {', '.join(existing)}: not overwriting a project.",
            hint="Pick an empty folder, or pass --force to rewrite the tunesmith files.",
        )
    result = Scaffold(root=root)
    if shutil.which("git") is None:
        raise UsageError("`git` is not on PATH: tunesmith projects are git + DVC repositories.",
                         hint="Install git, then run `tunesmith init` again.")
    toplevel = _git_toplevel(root)
    if toplevel is None:
        _git(root, "init", "-q")
        result.git_initialised = True
        toplevel = root
    from dvc.repo import Repo

    if not (root / ".dvc").is_dir():
        with _quiet_dvc():
            Repo.init(str(root), subdir=toplevel != root)
        result.dvc_initialised = True

    relative_data = None
    if data_file is not None:
        target = root / "data" / "source" / data_file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if data_file.resolve() != target.resolve():
            shutil.copyfile(data_file, target)
        relative_data = target.relative_to(root).as_posix()
        with _quiet_dvc(), Repo(str(root)) as repo:
            repo.add(str(target))
        config = config.model_copy(update={
            "prepare": config.prepare.model_copy(update={"dataset": relative_data})})
        result.data_file = relative_data

    files = {
        "params.yaml": params_text(config),
        "dvc.yaml": dvc_yaml_text(relative_data),
        "README.md": readme_text(config),
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
        result.written.append(name)
    gitignore = root / ".gitignore"
    current = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    if GITIGNORE not in current:
        gitignore.write_text(current + ("\n" if current and not current.endswith("\n") else "")
                             + GITIGNORE, encoding="utf-8")
        result.written.append(".gitignore")
    for folder in ("data", "models"):
        (root / folder).mkdir(exist_ok=True)
    return result
