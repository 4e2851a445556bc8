"""The advisor's commands, one function each: ``estimate-memory``, ``advise``, ``lr-find``,
``should-finetune`` and ``diagnose``.

Each returns a typed result that the CLI renders; nothing here prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith import runfiles
from tunesmith.errors import UsageError


def estimate_memory(
    *,
    model: str | None = None,
    params: float | None = None,
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    intermediate: int | None = None,
    vocab: int | None = None,
    device: str = "cuda",
    config: str | Path | None = None,
    settings: dict[str, Any] | None = None,
) -> Any:
    """``tunesmith estimate-memory``: a :class:`~tunesmith.advise.memory.RunEstimate` (the
    whole run and, inside it, the training estimate) for a model (name, folder or config.json)
    or a stand-in size (``params``).

    The arguments are one :class:`~tunesmith.advise.memory.MemoryArgs` built from ``config``
    (a params.yaml; default the built-in config) for ``device``, with ``settings`` (field name
    -> value; None values are ignored) on top. On CPU the first call on a machine measures the
    fixed cost of a run in a subprocess (about 10-20 s) and caches it. Raises UsageError for a
    bad combination, ConfigError/AssetError for an unreadable config or model.
    """
    from tunesmith.advise import memory
    from tunesmith.advise.run_memory import estimate_run
    from tunesmith.config import Config, classifier_defaults, load_config

    if (model is None) == (params is None):
        raise UsageError("give exactly one of --model (a name, folder or config.json) and --params.")
    if params is not None:
        shape = memory.standin_shape(
            params, layers=layers, hidden=hidden, heads=heads, intermediate=intermediate,
            vocab=vocab,
        )
    else:
        shape = memory.model_shape(model)  # type: ignore[arg-type]
    cfg = load_config(config) if config is not None else Config()
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    if shape.kind == "encoder":  # an encoder trains as a classifier: what its run would use
        finetune = cfg.finetune.model_copy(update={"method": given["method"]}) if "method" in given else cfg.finetune
        finetune, _ = classifier_defaults(finetune, "classification")
        cfg = cfg.model_copy(update={"finetune": finetune})
    # The training table is the guide's accounting; the whole run adds the loop's best copy.
    args = memory.MemoryArgs.from_config(cfg, device=device, keep_best_copy=False, **given)
    run = estimate_run(shape, args)
    fixed = run.parts.get("fixed")
    if fixed and not args.gradient_checkpointing:
        from tunesmith.advise.preflight import checkpointing_pays

        why = checkpointing_pays(shape, args, fixed)
        if why:  # what `tunesmith run` would do with these settings
            run.notes.append(f"a `tunesmith run` with these settings has its preflight say: "
                             f"{why} Add --gradient-checkpointing to see that run's estimate.")
    return run


def diagnose(run_dir: str | Path) -> Any:
    """``tunesmith diagnose RUN``: the :class:`~tunesmith.advise.diagnose.Diagnosis` of a run
    folder's history.jsonl, with remedies computed from its config.yaml (the defaults when the
    folder has none). Raises DataError when the folder holds no history."""
    from tunesmith.advise.diagnose import diagnose_history, read_history
    from tunesmith.config import load_config

    run = Path(run_dir)
    history = read_history(run / runfiles.HISTORY if run.is_dir() else run)
    folder = run if run.is_dir() else run.parent
    config_path = folder / runfiles.CONFIG
    cfg = load_config(config_path) if config_path.is_file() else None
    # The metric plan of an evaluated run: its headline is what the curves are read against.
    metrics_path = folder / runfiles.METRICS
    plan = metrics = None
    if metrics_path.is_file():
        from tunesmith.evaluate.metric_plan import headline_metric, plan_of, verdict

        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        plan = plan_of(metrics)
    diagnosis = diagnose_history(history, cfg.finetune if cfg else None,
                                 headline_metric(plan) if plan else None)
    if plan is not None and metrics is not None:
        sentence = verdict(plan, metrics)
        diagnosis.notes.append(f"test split: {sentence}" if sentence else
                               f"the headline metric is {plan.headline}: {plan.why}")
    return diagnosis


def available_memory_gb() -> tuple[float, str]:
    """Memory training may use here: free GPU memory on CUDA, else available RAM."""
    import psutil
    import torch

    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return free / 1e9, "free GPU memory (torch.cuda.mem_get_info)"
    return psutil.virtual_memory().available / 1e9, "available RAM (psutil)"


def advise(
    *,
    model: str,
    examples: int | None = None,
    memory_gb: float | None = None,
    data: str | None = None,
    tasks: int = 1,
    domain_shift: str = "low",
    write: str | Path | None = None,
    probe: bool = False,
    log: Callable[[str], None] = print,
) -> Any:
    """``tunesmith advise``: a :class:`~tunesmith.advise.plan.Plan` for ``model`` on this data
    size and memory. ``data`` (a file or built-in dataset) gives the example count, the task and
    max_length (95th percentile of the token lengths); ``probe`` runs the learning-rate finder
    on it and takes its suggestion; ``write`` saves the plan as a params.yaml that
    ``tunesmith run --config`` accepts. On CPU the memory is the whole run's: training is
    sized with the whole run's estimate (the first call on a machine measures the imported
    libraries, 10-60 s) and a note gives it with its largest terms. Raises UsageError when neither examples nor data is given or the memory is below
    what the libraries hold, DataError for unusable data."""
    import torch

    from tunesmith.advise import memory
    from tunesmith.advise.plan import Choice, make_plan
    from tunesmith.config import load_config, save_config

    if examples is None and data is None:
        raise UsageError("give --examples N or --data FILE (whose records are counted).")
    if probe and data is None:
        raise UsageError("--probe runs the learning-rate finder on your data: give --data.")
    shape = memory.model_shape(model)
    memory_reason = "given with --memory"
    if memory_gb is None:
        memory_gb, memory_reason = available_memory_gb()
    task = max_length = length_reason = None
    if data is not None:
        from tunesmith.pipelines.prepare import inspect_data

        report = inspect_data(data, model=model)
        unique = report.summary.accepted - (report.dedup.removed if report.dedup else 0)
        examples = examples or unique
        task = report.task
        if report.lengths:
            p95 = report.lengths["total"]["p95"]
            max_length = max(8, report.lengths["advised_max_length"])
            length_reason = (f"guide: the 95th percentile of your lengths ({p95} {model} tokens "
                             "with special tokens), rounded up to a multiple of 8")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # On CPU a run's process also holds the imported libraries: every estimate is the whole run's.
    from tunesmith.advise.run_memory import RUN_EXTRA_BYTES, estimate_run

    fixed = _fixed_bytes() if device == "cpu" else None
    if fixed and memory_gb * memory.GB <= fixed + RUN_EXTRA_BYTES:
        raise UsageError(
            f"{memory_gb:g} GB is less than what a run's libraries alone hold on this machine "
            f"({(fixed + RUN_EXTRA_BYTES) / memory.GB:.2f} GB: torch, transformers, PEFT, MLflow "
            "imported).", hint="Give --memory the RAM the whole run may use.")
    plan = make_plan(
        shape, examples=int(examples), memory_gb=memory_gb, task=task, tasks=tasks,  # type: ignore[arg-type]
        domain_shift=domain_shift, max_length=max_length, max_length_reason=length_reason,
        dataset=data, model=_model_name(model),
        precision=memory.config_precision("auto", cuda=device == "cuda"), device=device,
        fixed=fixed,
    )
    plan.notes.append(f"memory: {memory_gb:.1f} GB, {memory_reason}.")
    if fixed:
        whole = estimate_run(shape, memory.MemoryArgs.from_config(plan.config, device="cpu"),
                             fixed=fixed)
        plan.notes.append(f"whole run on this machine: estimated peak {whole.total_gb:.2f} GB "
                          f"of {memory_gb:.1f} GB; largest terms: {whole.dominant(3)}.")
    if probe:
        found = lr_find(plan.config, out_dir=Path(write).parent if write else Path("."), log=log)
        finetune = plan.config.finetune.model_copy(update={"learning_rate": found.suggestion})
        plan.config = plan.config.model_copy(update={"finetune": finetune})
        plan.choices = [c for c in plan.choices if c.key != "finetune.learning_rate"]
        plan.choices.append(Choice("finetune.learning_rate", found.suggestion,
                                   f"measured by lr-find: {found.reason}"))
        plan.notes.extend(f"lr-find: {note}" for note in found.notes)
    if write is not None:
        save_config(plan.config, write)
        load_config(write)  # what `tunesmith run --config` will do: fail here, not there
    return plan


def _fixed_bytes() -> float | None:
    """The libraries every CPU run's process holds (measured once per machine, see
    :func:`tunesmith.advise.run_memory.fixed_cost`); None where they could not be measured."""
    from tunesmith.advise.run_memory import fixed_cost

    return fixed_cost().bytes or None


def _model_name(model: str) -> str:
    """The name `tunesmith run` loads: a config.json stands for the folder holding it."""
    path = Path(model)
    return str(path.parent) if path.is_file() and path.suffix == ".json" else model


def lr_find(
    cfg: Any,
    *,
    out_dir: str | Path = ".",
    steps: int = 100,
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    log: Callable[[str], None] = print,
) -> Any:
    """``tunesmith lr-find``: prepare ``cfg``'s data, load a fresh copy of the model with the
    method applied and run :func:`tunesmith.advise.lr_find.range_test` on the train split.
    Writes ``lr_find.png`` and ``lr_find.json`` into ``out_dir``; returns the
    :class:`~tunesmith.advise.lr_find.LrFindResult`. ``cfg`` is a Config or a params.yaml path."""
    import json
    import tempfile

    from tunesmith.advise.lr_find import range_test
    from tunesmith.config import Config, load_config
    from tunesmith.methods import apply_method
    from tunesmith.models import load_model
    from tunesmith.pipelines.prepare import prepare_data
    from tunesmith.pipelines.train import task_spec

    config: Config = cfg if isinstance(cfg, Config) else load_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tunesmith-lr-find-") as tmp:
        prepared = prepare_data(config.prepare, tmp)
    spec = task_spec(prepared.task)
    labels = spec.labels(prepared.train)
    ft = config.finetune
    log(f"lr-find: {ft.model} + {ft.method} on {len(prepared.train)} {prepared.task} examples, "
        f"{steps} steps from {start_lr:.0e} to {end_lr:.0e}")
    loaded = load_model(
        ft.model, task=prepared.task, labels=labels, load_in_4bit=ft.method == "qlora",
        compute_dtype=ft.qlora_compute_dtype if ft.method == "qlora" else "float32",
    )
    # Only as many examples as the test can use: encoding all of a large set is wasted time.
    needed = prepared.train[: steps * ft.batch_size]
    # The task's encoder also encodes a validation list, which must not be empty; one will do.
    plan = spec.plan(loaded, needed, needed[:1], config)
    model = apply_method(loaded.model, ft, task=prepared.task)
    result = range_test(
        model, plan.train_data, objective=plan.objective, cfg=ft,
        pad_token_id=loaded.tokenizer.pad_token_id, start_lr=start_lr, end_lr=end_lr,
        steps=steps, out_dir=out, log=log, collate=plan.collate,
    )
    (out / "lr_find.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def should_finetune(
    *,
    data: str,
    model: str,
    sample: int = 50,
    few_shot_k: int = 3,
    target: float | None = None,
    cheaper_inference: bool | None = None,
    specialised_domain: bool | None = None,
    fixed_format: bool | None = None,
    seed: int = 42,
    log: Callable[[str], None] = print,
) -> Any:
    """``tunesmith should-finetune``: measure the model without training on ``sample``
    validation examples of ``data`` (prompting for causal models, a frozen-feature probe for
    encoders) and walk the guide's questions; returns a
    :class:`~tunesmith.advise.should_finetune.FinetuneAdvice`. Raises DataError for unusable
    data, AssetError for an unknown model."""
    import tempfile

    from tunesmith.advise.should_finetune import walk
    from tunesmith.config import PrepareConfig
    from tunesmith.models import load_model
    from tunesmith.pipelines.prepare import prepare_data

    with tempfile.TemporaryDirectory(prefix="tunesmith-should-") as tmp:
        prepared = prepare_data(PrepareConfig(dataset=data, seed=seed), tmp)
    examples = len(prepared.train) + len(prepared.val) + len(prepared.test)
    held_out = (prepared.val or prepared.test)[:sample]
    if _is_causal(model):
        # A causal LM is loaded as a generative model even for classification data: it is
        # asked for the label word (classification-as-instruction).
        loaded = load_model(model, task="instruction")
        measurement = _prompting(loaded, prepared, held_out, few_shot_k, seed, log)
    else:
        measurement = _probe(model, prepared, held_out, seed, log)
    return walk(measurement, examples=examples, target=target, cheaper_inference=cheaper_inference,
                specialised_domain=specialised_domain, fixed_format=fixed_format)


def _is_causal(model: str) -> bool:
    from tunesmith.advise.memory import model_shape

    return model_shape(model).kind == "causal"


def _prompting(loaded: Any, prepared: Any, held_out: list, k: int, seed: int,
               log: Callable[[str], None]) -> Any:
    from tunesmith.advise.should_finetune import Measurement
    from tunesmith.evaluate.generation import PRIMARY_METRIC, GenerationSettings, score_model
    from tunesmith.evaluate.metrics import majority_rate
    from tunesmith.evaluate.prompting import few_shot_turns
    from tunesmith.train.prompts import CLASSIFICATION_AS_INSTRUCTION

    labels = list(prepared.labels) if prepared.task == "classification" else []
    family = CLASSIFICATION_AS_INSTRUCTION if labels else prepared.task
    metric = "accuracy" if labels else PRIMARY_METRIC[family]
    common: dict[str, Any] = {"labels": labels, "settings": GenerationSettings(seed=seed), "max_length": 512,
              "generation_limit": len(held_out)}
    log(f"zero-shot prompting of {loaded.name} on {len(held_out)} validation examples")
    scores = {"zero_shot": score_model(loaded.model, loaded.tokenizer, held_out, **common).metrics[metric]}
    shots = few_shot_turns(prepared.train, k, seed=seed, labels=labels)
    if shots:
        log(f"few-shot prompting with {k} examples from the train split")
        scores["few_shot"] = score_model(loaded.model, loaded.tokenizer, held_out, shots=shots,
                                         **common).metrics[metric]
    majority = None
    if labels:
        majority = majority_rate([r.label for r in prepared.train], [r.label for r in held_out])
    return Measurement("prompting", metric, scores, len(held_out), majority)


def _probe(model: str, prepared: Any, held_out: list, seed: int, log: Callable[[str], None]) -> Any:
    from tunesmith.advise.should_finetune import Measurement
    from tunesmith.errors import DataError
    from tunesmith.evaluate.classification import probe_baseline
    from tunesmith.models import load_model
    from tunesmith.train.encoding import encode_classification

    if prepared.task != "classification":
        raise DataError(f"{model} is an encoder: it can classify but not generate, and this data "
                        f"is {prepared.task}.", hint="Use a causal (instruct) model such as "
                        "smollm2-135m-instruct for generative tasks.")
    loaded = load_model(model, task="classification", labels=list(prepared.labels))
    # The probe needs enough train examples to fit, not all of a large set.
    train = prepared.train[:2000]
    log(f"frozen-feature probe of {model}: fitted on {len(train)} train examples, scored on "
        f"{len(held_out)} validation examples")
    enc_train = encode_classification(train, loaded.tokenizer, prepared.labels, 512)
    enc_val = encode_classification(held_out, loaded.tokenizer, prepared.labels, 512)
    metrics, _ = probe_baseline(loaded.model, enc_train, enc_val, loaded.tokenizer.pad_token_id,
                                seed=seed)
    return Measurement("probe", "accuracy", {"probe": metrics["accuracy"]}, len(held_out),
                       metrics["majority_rate"])
