"""The typed params.yaml: the single source of truth for a run.

The CLI, DVC stages and MLflow all read the same :class:`Config`. Sections follow the guide's
params.yaml (``prepare``, ``finetune``, ``evaluation``) plus ``tracking``. Defaults are the guide's
"first-time finetuning" starting points; each comment says where a value comes from.

``load_config(path, overrides)`` reads YAML, applies ``--set section.key=value`` overrides (then
those in ``$TUNESMITH_SET``) and validates. An unknown key fails with the nearest valid key suggested; a bad value fails naming
the field and what is allowed. Both raise :class:`~tunesmith.errors.ConfigError`.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunesmith.errors import ConfigError

Method = Literal["full", "lora", "qlora", "adapter", "dora", "lora_plus"]
METHODS: tuple[str, ...] = ("full", "lora", "qlora", "adapter", "dora", "lora_plus")
# The LoRA family: methods that train PEFT's low-rank matrices (DoRA adds a magnitude vector,
# LoRA+ a faster B, QLoRA a 4-bit base). They save in PEFT's format, share a base and merge.
LORA_FAMILY: frozenset[str] = frozenset({"lora", "dora", "lora_plus", "qlora"})
# What a classifier trained with LoRA or QLoRA gets for the settings the user leaves unset
# (issue #19, bench/defaults.py, table in docs/core.md): with the guide's 2e-4 on the query/value
# projections, LoRA kept the probe it starts from (step 0) on two of four user files and ended
# 11 points of macro F1 behind full finetuning on one; 2e-3 on every linear layer of the encoder
# came within 3 points of full finetuning. DoRA and LoRA+ were not measured and keep the guide's.
CLASSIFIER_LORA_METHODS: frozenset[str] = frozenset({"lora", "qlora"})
CLASSIFIER_LORA_DEFAULTS: dict[str, Any] = {"learning_rate": 2e-3, "lora_target_modules": "all-linear"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PrepareConfig(_Section):
    # A built-in dataset name (see `tunesmith.assets`) or a path to JSONL, JSON, CSV/TSV or Parquet.
    dataset: str = "rotten-tomatoes"
    # Which of the guide's four formats; "auto" detects it from the fields.
    task: Literal["auto", "instruction", "classification", "qa", "chat"] = "auto"
    # Map the guide's field names to the user's columns, e.g. {text: review, label: sentiment}.
    column_map: dict[str, str] = Field(default_factory=dict)
    # Use at most this many records (sampled with the seed): for quick experiments.
    limit: int | None = Field(default=None, ge=1)
    # Guide: "Train 80%, Validation 10%, Test 10%".
    train_ratio: float = Field(default=0.8, gt=0, lt=1)
    val_ratio: float = Field(default=0.1, ge=0, lt=1)
    test_ratio: float = Field(default=0.1, gt=0, lt=1)
    # random | stratified (by label; classification) | time (needs time_field) | group (group_field).
    # "auto" is stratified for classification and random otherwise.
    split: Literal["auto", "random", "stratified", "time", "group"] = "auto"
    time_field: str | None = None
    group_field: str | None = None
    # Guide: "Analyze your data, use 95th percentile length"; 512 is its balance of context and
    # speed. Batches are padded dynamically, so a generous limit costs nothing on short texts.
    max_length: int = Field(default=512, ge=8, le=131072)
    # exact: normalised duplicates removed; near: also MinHash near-duplicates; none: keep all.
    dedup: Literal["none", "exact", "near"] = "exact"
    near_duplicate_threshold: float = Field(default=0.9, gt=0, le=1)
    # Guide, catastrophic forgetting: "Mix general data with task-specific data". For a
    # causal LM (generative tasks, classification as instructions) this share of the tokens
    # the loss is taken on comes from general text, drawn at training time (the split files
    # keep only the task's records); history.jsonl logs its loss apart as general_loss, beside
    # the task's loss. 0 is off; at most 0.5 (more would train more on general text than on
    # the task). Measured on the sentiment example in docs/generative.md.
    mix_general: float = Field(default=0.0, ge=0, le=0.5)
    # hamlet: 256-token passages of the bundled Hamlet, never those the forgetting check scores
    # (so the check still reads unseen text, though of the same play); chitchat: the bundled
    # human conversations (their replies are learned), text unlike the check's.
    mix_general_source: Literal["hamlet", "chitchat"] = "hamlet"
    seed: int = 42
    # Continual learning (`tunesmith run --continue-from RUN`): this fraction of the earlier
    # run's training records is replayed in this run's training set (written to
    # data/replay.jsonl), the classic remedy against forgetting the earlier task. 0: none.
    replay_fraction: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _ratios_sum_to_one(self) -> PrepareConfig:
        total = self.train_ratio + self.val_ratio + self.test_ratio
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train_ratio + val_ratio + test_ratio must be 1.0, got {total:g} "
                f"({self.train_ratio:g} + {self.val_ratio:g} + {self.test_ratio:g})"
            )
        if self.split == "time" and not self.time_field:
            raise ValueError("split: time needs prepare.time_field (the field holding the time)")
        if self.split == "group" and not self.group_field:
            raise ValueError("split: group needs prepare.group_field (the field naming the group)")
        if self.mix_general and self.mix_general_source == self.dataset:
            raise ValueError(
                f"prepare.mix_general_source '{self.mix_general_source}' is the task's own data set "
                "(prepare.dataset), not general text: mixing it in would put test conversations "
                "into training. Use mix_general_source: hamlet, or mix_general: 0"
            )
        return self


class FinetuneConfig(_Section):
    # A built-in model name (minilm, smollm2-135m-instruct), a local folder or a hub id.
    model: str = "minilm"
    # full | lora | qlora | adapter | dora | lora_plus. Guide: "Start with LoRA, it works 90% of
    # the time!"
    method: Method = "lora"
    # Guide: LoRA 1e-4 to 3e-4 (default 2e-4); full 1e-5 to 5e-5; QLoRA 2e-4 to 5e-4.
    # Left unset with method full, training uses 5e-5 (the guide's upper end for full); left
    # unset for a classifier with LoRA or QLoRA, 2e-3 (CLASSIFIER_LORA_DEFAULTS, measured).
    learning_rate: float = Field(default=2e-4, gt=0, le=1)
    # The classification head's own rate (its own optimizer group); null: learning_rate. The
    # head starts from the baseline probe (LP-FT), so it needs no faster rate to catch up.
    head_learning_rate: float | None = Field(default=None, gt=0, le=1)
    # Micro-batch per process; the effective batch is batch_size x gradient_accumulation_steps
    # x processes. Guide: "batch_size: 8 # Adjust based on memory".
    batch_size: int = Field(default=8, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=4096)
    # Guide: "num_epochs: 3 # Usually sufficient".
    num_epochs: int = Field(default=3, ge=1, le=1000)
    # Stop after this many optimizer steps, overriding num_epochs.
    max_steps: int | None = Field(default=None, ge=1)
    # Guide: warmup "5-10% of total training steps".
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    # After warmup: linear decay to 0 (the guide's and Trainer's default), cosine decay to 0,
    # or constant.
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    # Guide: "weight_decay: 0.01". Applied to matrices only, not to biases and norms.
    weight_decay: float = Field(default=0.01, ge=0, le=1)
    # Gradient clipping by global norm; 0 disables it.
    max_grad_norm: float = Field(default=1.0, ge=0)
    # LoRA: guide's starting point r 8, alpha = 2 x r, dropout 0.05.
    lora_r: int = Field(default=8, ge=1, le=4096)
    lora_alpha: float = Field(default=16, gt=0)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    # "attention" (query/value projections, found per architecture), "all-linear", or a list.
    # Left unset for a classifier with LoRA or QLoRA: all-linear (CLASSIFIER_LORA_DEFAULTS).
    lora_target_modules: Literal["attention", "all-linear"] | list[str] = "attention"
    # LoRA+: the B matrices learn this many times faster than A (LoRA+ paper suggests 16).
    lora_plus_ratio: float = Field(default=16.0, gt=0)
    # The guide's two transfer strategies: the lowest N blocks do not train ("Freeze more
    # layers (only train top layers)", also a remedy for forgetting): full finetuning freezes
    # them and the embeddings, LoRA-family methods put no LoRA on them; and/or (any method)
    # each lower block learns at learning_rate x decay^(distance from the top).
    freeze_layers: int = Field(default=0, ge=0)
    layerwise_lr_decay: float = Field(default=1.0, gt=0, le=1)
    # Bottleneck adapters: houlsby (after attention and feed-forward) or pfeiffer (after FFN).
    adapter_type: Literal["houlsby", "pfeiffer"] = "pfeiffer"
    adapter_reduction_factor: int = Field(default=16, ge=1)
    # QLoRA: NF4 base with double quantisation; the dtype the dequantised matmuls run in.
    qlora_compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # Stop after this many evaluations without improvement of the best metric; 0 disables.
    early_stopping_patience: int = Field(default=3, ge=0)
    # Evaluate every N optimizer steps; null evaluates once per epoch.
    eval_every: int | None = Field(default=None, ge=1)
    # The validation metric that picks the best checkpoint and drives early stopping: "auto" is
    # macro f1 for classification with imbalanced labels (smallest class under half the
    # largest), accuracy for balanced ones, and loss for generative tasks; or loss | accuracy | f1.
    best_metric: Literal["auto", "loss", "accuracy", "f1"] = "auto"
    # Classification: weight each class's loss by n / (classes x n_class), so rare classes count
    # as much as common ones. Off by default: see docs/core.md for what it measured.
    class_weights: bool = False
    # Log train loss, learning rate and gradient norm every N optimizer steps.
    logging_steps: int = Field(default=10, ge=1)
    seed: int = 42
    # auto: bf16 autocast on a GPU that supports it (else fp16) and on a CPU with AMX-BF16,
    # fp32 on other CPUs (tunesmith.train.precision).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # Trade compute for memory (guide: "Use gradient checkpointing ... slower but uses less").
    gradient_checkpointing: bool = False
    # Group examples of similar length into batches (less padding, same examples per epoch).
    group_by_length: bool = True
    # Pack short generative examples into full sequences (no attention across examples).
    packing: bool | Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _method_rules(self) -> FinetuneConfig:
        problems = method_problems(self)
        if problems:
            raise ValueError(" ".join(problems))
        return self


def method_problems(ft: FinetuneConfig) -> list[str]:
    """What ``ft``'s method cannot take, one sentence each (empty when it is fine).

    Checked when a config is loaded, so a bad combination fails before any data or model loads;
    :func:`check_method_rules` asks again for configs changed without validation
    (``model_copy``). Costs a lookup of bitsandbytes on the import path, no import.
    """
    problems = []
    if ft.freeze_layers and ft.method == "adapter":
        problems.append(
            f"finetune.freeze_layers is {ft.freeze_layers}, but keeping the lowest blocks from "
            "training applies to methods full, lora, dora, lora_plus and qlora, not 'adapter' "
            "(bottleneck adapters go into every block): set finetune.freeze_layers: 0, or "
            "finetune.method: lora."
        )
    if ft.method == "qlora" and not _installed("bitsandbytes"):
        problems.append(
            "finetune.method 'qlora' loads the base model in 4-bit with bitsandbytes, which is "
            "not installed here: install it (`pip install bitsandbytes`; it runs on CPU too), or "
            "use finetune.method: lora."
        )
    return problems


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ValueError:  # in sys.modules without a spec
        return True


def check_method_rules(ft: FinetuneConfig) -> None:
    """Raise ConfigError (one paragraph) when ``ft``'s method cannot take its settings."""
    problems = method_problems(ft)
    if problems:
        raise ConfigError(" ".join(problems))


class EvaluationConfig(_Section):
    # auto: the metric plan decides from the task and the data (guide: "Poor Metric
    # Selection"; see tunesmith.evaluate.metric_plan). Or name them: classification accuracy,
    # precision, recall, f1, pr_auc; generative perplexity, bleu, rouge, meteor, exact_match,
    # token_f1, label_accuracy, label_f1, out_of_set_rate. [auto, bleu] = the plan plus BLEU.
    metrics: list[str] = Field(default_factory=lambda: ["auto"])
    # Examples drawn from train for the few-shot prompting baseline of instruct models.
    few_shot_k: int = Field(default=3, ge=0, le=64)
    # Generation settings for generative tasks: greedy by default.
    max_new_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    # How many test examples to generate for (generation is slow on CPU); null is all.
    generation_limit: int | None = Field(default=100, ge=1)
    # Catastrophic-forgetting check on general text: a built-in (hamlet) or a file; null skips.
    forgetting_text: str | None = "hamlet"
    # Warn when perplexity on the general text rises by more than this fraction.
    forgetting_threshold: float = Field(default=0.1, ge=0)
    # How many error examples / generation samples to keep for reading.
    num_samples: int = Field(default=20, ge=0)


# A run name becomes a folder under runs/: one path segment, no '..', no separators.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")


def safe_run_name(text: str) -> str:
    """``text`` made a valid ``tracking.run_name`` (other characters become '-')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip(".-")[:100]
    return name or "run"


class TrackingConfig(_Section):
    # MLflow tracking URI; the default is an embedded sqlite store in the working directory.
    mlflow_uri: str = "sqlite:///mlflow.db"
    experiment: str = "tunesmith"
    # null names the run <task>-<model>-<method>-<timestamp>. It is a folder name under runs/:
    # one path segment of letters, digits, '.', '_' and '-' (so it cannot point elsewhere).
    run_name: str | None = None
    enabled: bool = True

    @field_validator("run_name")
    @classmethod
    def _one_safe_segment(cls, value: str | None) -> str | None:
        if value is not None and (not _SAFE_NAME.fullmatch(value) or set(value) == {"."}):
            raise ValueError(
                "a run name is one folder name of letters, digits, '.', '_' and '-' (at most "
                "100, not starting with '.' or '-'), e.g. sentiment-lora-r16"
            )
        return value


class Config(_Section):
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def flat(self) -> dict[str, Any]:
        """``{"finetune.lora_r": 8, ...}``: for MLflow params and diffs between runs."""
        out: dict[str, Any] = {}
        for section, values in self.model_dump(mode="json").items():
            for key, value in values.items():
                out[f"{section}.{key}"] = value
        return out


def override_value(value: Any) -> str:
    """A value as a ``--set`` override writes it: 2e-4 rather than 0.0002 for small floats."""
    if isinstance(value, float) and 0 < abs(value) < 0.01:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def valid_keys() -> list[str]:
    """Every dotted key a config accepts, e.g. ``finetune.lora_r``."""
    keys = []
    for section, field in Config.model_fields.items():
        keys.append(section)
        keys.extend(f"{section}.{k}" for k in field.annotation.model_fields)  # type: ignore[union-attr]
    return keys


def _nearest(key: str) -> str:
    candidates = valid_keys()
    leaf_matches = [k for k in candidates if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
    close = leaf_matches or difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if not close:
        leaves = {k.rsplit(".", 1)[-1]: k for k in candidates}
        hits = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaves), n=1, cutoff=0.6)
        close = [leaves[h] for h in hits]
    return f" Did you mean '{close[0]}'?" if close else ""


def _describe(err: dict[str, Any], data: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{loc}'.{_nearest(loc)}"
    value: Any = data
    for part in err["loc"]:
        value = value.get(part) if isinstance(value, dict) else None
    ctx = err.get("ctx") or {}
    allowed = ""
    if "expected" in ctx:
        allowed = f" Allowed: {ctx['expected']}."
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
                  "less_than_equal": "<="}
        allowed = f" Allowed: {bounds[kind]} {next(iter(ctx.values()))}."
    if len(err["loc"]) <= 1 and kind == "value_error":  # a section's own check (no one field)
        msg = err["msg"].removeprefix("Value error, ")
        return msg if not loc or f"{loc}." in msg else f"'{loc}': {msg}."
    shown = f" (got {value!r})" if value is not None else ""
    return f"'{loc}': {err['msg'].removeprefix('Value error, ')}{shown}.{allowed}"


def validate_config(data: dict[str, Any], *, source: str = "config") -> Config:
    """Validate a plain dict (as read from YAML). Raises ConfigError naming every bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}.")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(dict(e), data) for e in exc.errors()]
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            f"{source}: {len(problems)} problem(s) in the config:\n{lines}",
            hint="Run `tunesmith config show` for every key with its default.",
        ) from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"finetune.lora_r=16"`` -> (["finetune", "lora_r"], 16). Values are parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got '{item}' (e.g. --set finetune.lora_r=16)")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"--set key must be section.key, got '{key}'.{_nearest(key.strip())}"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for item in overrides or []:
        (section, key), value = parse_override(item)
        if section not in Config.model_fields:
            raise ConfigError(f"unknown section '{section}' in --set {item}.{_nearest(section)}")
        merged.setdefault(section, {})
        if not isinstance(merged[section], dict):
            raise ConfigError(f"section '{section}' must be a mapping")
        merged[section][key] = value
    return merged


ENV_OVERRIDES = "TUNESMITH_SET"


def environment_overrides() -> list[str]:
    """Overrides from ``$TUNESMITH_SET`` (``"prepare.limit=200 finetune.max_steps=5"``, split as
    a shell would). They apply after ``--set`` everywhere a config is loaded, DVC stages
    included, so a whole pipeline or tutorial can be smoke-run on a tiny budget unchanged."""
    raw = os.environ.get(ENV_OVERRIDES, "").strip()
    return shlex.split(raw) if raw else []



def classifier_defaults(finetune: FinetuneConfig, task: str | None) -> tuple[FinetuneConfig, str | None]:
    """``finetune`` with :data:`CLASSIFIER_LORA_DEFAULTS` filled in where the user set nothing,
    when ``task`` is classification and the method is LoRA or QLoRA; and a sentence saying what
    was chosen and why (None when nothing changed). Keys the user set are never touched."""
    if task != "classification" or finetune.method not in CLASSIFIER_LORA_METHODS:
        return finetune, None
    unset = {key: value for key, value in CLASSIFIER_LORA_DEFAULTS.items()
             if key not in finetune.model_fields_set}
    if not unset:
        return finetune, None
    chosen = ", ".join(f"{key} {value}" for key, value in unset.items())
    return finetune.model_copy(update=unset), (
        f"{chosen}: a classifier trained with {finetune.method} learns little at the guide's "
        "2e-4 on the query/value projections (measured on four user files, docs/core.md); "
        "set finetune.learning_rate or finetune.lora_target_modules to choose.")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read params.yaml (or the defaults when ``path`` is None) and apply ``--set`` overrides,
    then those of ``$TUNESMITH_SET`` (announced on stderr, so a tiny budget is never a surprise)."""
    from_env = environment_overrides()
    if from_env:
        print(f"note: ${ENV_OVERRIDES} overrides the config: {' '.join(from_env)}", file=sys.stderr)
    overrides = [*(overrides or []), *from_env]
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}", hint="Create one with `tunesmith config show > params.yaml`.")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of sections (prepare, finetune, ...).")
        data = loaded
    return validate_config(apply_overrides(data, overrides), source=source)


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(config.to_yaml(), encoding="utf-8")
