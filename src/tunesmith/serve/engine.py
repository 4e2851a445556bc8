"""The serving engine: one base model, the adapters of several runs, and a micro-batching queue.

:meth:`Engine.load` loads the base once (through :class:`~tunesmith.serve.predict.AdapterServer`)
and every run's adapter beside it, named after the run folder; registry models (``NAME@ALIAS``)
are resolved through MLflow at start and served under ``NAME-vVERSION`` with the alias pointing
at it. Nothing is loaded later: a request names a model, never a path.

Requests go through one worker thread (:class:`MicroBatcher`) that gathers what arrives within
``max_wait_ms`` (up to ``max_batch`` rows) and runs it as one batch: LoRA-family adapters and
the base share a batch through PEFT's per-row ``adapter_names``; DoRA and bottleneck adapters
are grouped per adapter (PEFT cannot mix DoRA rows, and bottleneck adapters switch per model).
A batch that raises is retried one request at a time, so one bad request fails alone.

Every answer carries its :class:`Provenance` (run, adapter sha256, MLflow run id, data hash).
Costs: loading is the base's load time (about 1 s for converted SmolLM2, plus ~0.1 s per adapter);
a generation batch costs a prefill plus one forward pass per token (see :mod:`.decode`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunesmith import runfiles
from tunesmith.errors import TunesmithError, UsageError
from tunesmith.serve.decode import Row, decode_batch, mixable_modules, per_row_adapters
from tunesmith.serve.predict import AdapterServer, adapter_dir

BASE = "__base__"


class RequestError(TunesmithError):
    """A request the engine refuses (the HTTP edge answers ``status``, never 500)."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


@dataclass(frozen=True)
class Provenance:
    """What produced an answer: enough to trace a logged answer back to its training run."""

    run_id: str | None  # the run folder's name (run.json ``run_name``)
    adapter_sha256: str | None  # over the adapter folder's files, names included
    mlflow_run_id: str | None
    data_sha256: str | None  # run.json's hash of the prepared splits
    root: str  # the run folder or registry version it was loaded from

    def headers(self) -> dict[str, str]:
        pairs = {"X-Tunesmith-Run-Id": self.run_id, "X-Tunesmith-Adapter-Sha256": self.adapter_sha256,
                 "X-Tunesmith-Mlflow-Run-Id": self.mlflow_run_id, "X-Tunesmith-Data-Sha256": self.data_sha256}
        return {k: v for k, v in pairs.items() if v}

    def as_dict(self) -> dict[str, str | None]:
        return {"run_id": self.run_id, "adapter_sha256": self.adapter_sha256,
                "mlflow_run_id": self.mlflow_run_id, "data_sha256": self.data_sha256, "root": self.root}


@dataclass(frozen=True)
class ServedModel:
    name: str
    adapter: str  # the name on the PEFT/bottleneck model, or BASE
    kind: Literal["classify", "label", "generate"]  # head, label likelihood, free text
    method: str
    mixable: bool  # may share a batch with other adapters through per-row adapter_names
    provenance: Provenance
    labels: tuple[str, ...] = ()
    parent: str | None = None  # the base model's served name (None for the base itself)


def adapter_sha256(folder: Path) -> str:
    """sha256 over every file of an adapter folder, in name order, each name then its bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run_meta(run_folder: Path) -> dict[str, Any]:
    path = run_folder / runfiles.RUN_META
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def base_served_name(base_model: str) -> str:
    """The name the base is served under: the built-in name, or a local folder's name."""
    return Path(base_model).name if ("/" in base_model or Path(base_model).is_dir()) else base_model


@dataclass
class Classification:
    label: str
    score: float
    probabilities: dict[str, float]


@dataclass
class Job:
    """One request in the queue: classify ``texts`` or continue ``rows`` with ``model``."""

    model: ServedModel
    texts: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    future: Future = field(default_factory=Future)

    @property
    def size(self) -> int:
        return len(self.texts) or len(self.rows)


class Engine:
    """Served models over one base; :meth:`classify` and :meth:`generate` go through the batcher.

    ``max_wait_ms`` is how long the batcher waits for company once a request arrives (0 turns
    batching off: each request runs alone); ``max_batch`` caps the rows of one batch.
    """

    def __init__(self, server: AdapterServer, models: dict[str, ServedModel], *,
                 aliases: dict[str, str] | None = None, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_tokens_cap: int = 1024, default_max_tokens: int = 256) -> None:
        self.server = server
        self.models = models
        self.aliases = dict(aliases or {})
        self.max_tokens_cap = max_tokens_cap
        self.default_max_tokens = default_max_tokens
        self.batch_observers: list[Callable[[dict[str, int]], None]] = []
        # Called once per generated row when it ends: (served model name, finish reason).
        self.finish_observers: list[Callable[[str, str], None]] = []
        self.batcher = MicroBatcher(self._run_batch, max_batch=max_batch, max_wait_ms=max_wait_ms)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, runs: Sequence[str | Path] = (), registry: Sequence[str] = (), *,
             tracking_uri: str | None = None, log: Callable[[str], None] = lambda _: None,
             **options: Any) -> Engine:
        """Load the base once and each run's adapter (and each ``NAME@ALIAS``) on it.

        Raises UsageError for a folder that is not a run, runs on different bases or tasks, two
        runs with the same name, or an unknown registry model/alias. Cost: the base's load time
        plus about 0.1 s per adapter; registry models also download their adapter once.
        """
        from tunesmith.methods import read_adapter_meta

        sources: list[tuple[str, Path, Path, dict[str, Any]]] = []  # name, adapter dir, root, run.json
        for run in runs:
            folder = adapter_dir(run)
            root = folder.parent if folder.name == runfiles.ADAPTER_DIR else folder
            sources.append((root.resolve().name, folder, root, _run_meta(root)))
        aliases: dict[str, str] = {}
        for spec in registry:
            name, folder, root_label, run_meta = _registry_source(spec, tracking_uri)
            sha = adapter_sha256(folder)
            same = next((s for s in sources if adapter_sha256(s[1]) == sha), None)
            aliases[spec] = same[0] if same else name
            if not same:
                sources.append((name, folder, Path(root_label), run_meta))
        if not sources:
            raise UsageError("nothing to serve.", hint="Pass --run RUN_FOLDER (repeatable) or --registry NAME@ALIAS.")
        server = AdapterServer()
        models: dict[str, ServedModel] = {}
        for name, folder, root, run_meta in sources:
            log(f"loading {name} from {folder}")
            server.add(name, folder)
            meta = read_adapter_meta(folder)
            kind: Literal["classify", "label", "generate"] = (
                "classify" if meta["task"] == "classification"
                else "label" if meta.get("labels") else "generate")
            models[name] = ServedModel(
                name=name, adapter=name, kind=kind, method=meta["method"],
                mixable=meta.get("format") == "peft" and meta["method"] != "dora",
                provenance=Provenance(run_meta.get("run_name", name), adapter_sha256(folder),
                                      run_meta.get("mlflow_run_id"), run_meta.get("data_sha256"), str(root)),
                labels=tuple(meta.get("labels") or ()), parent=base_served_name(meta["base_model"]),
            )
        first = next(iter(models.values()))
        if first.kind != "classify":
            # A classification base has a random head: only a causal LM is worth serving bare.
            base_model = server.adapters[first.name]["base_model"]
            base = base_served_name(base_model)
            if base in models:
                raise UsageError(f"a run is named '{base}', like the base model it was trained from.",
                                 hint="Rename the run folder.")
            peft = hasattr(server.model, "peft_config")
            models[base] = ServedModel(base, BASE, "generate", "none", peft,
                                       Provenance(None, None, None, None, base_model))
        return cls(server, models, aliases=aliases, **options)

    def close(self) -> None:
        """Stop the worker thread (requests still queued fail with RuntimeError)."""
        self.batcher.close()

    # -- names -----------------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        config = self.server.model.config
        return int(getattr(config, "max_position_embeddings", None) or self.server.tokenizer.model_max_length)

    def model_names(self) -> list[str]:
        return list(self.models) + list(self.aliases)

    def lookup(self, name: str) -> ServedModel:
        """The served model called ``name`` (an adapter, the base or a registry ``NAME@ALIAS``).

        Raises RequestError 404 listing the served names.
        """
        served = self.models.get(self.aliases.get(name, name))
        if served is None:
            raise RequestError(f"the model '{name}' does not exist here; served: "
                               f"{', '.join(self.model_names())}.", status=404, param="model",
                               code="model_not_found")
        return served

    # -- requests --------------------------------------------------------------------------
    def check_generation(self, model: ServedModel, prompt: list[int], max_tokens: int | None) -> int:
        """The ``max_tokens`` to use; RequestError 400 for a classifier, a cap or context overrun."""
        if model.kind == "classify":
            raise RequestError(f"'{model.name}' is a classification model: send texts to /v1/classify.",
                               param="model", code="wrong_endpoint")
        if max_tokens is None:
            max_tokens = self.default_max_tokens
        if max_tokens > self.max_tokens_cap:
            raise RequestError(f"max_tokens is {max_tokens}; this server allows at most "
                               f"{self.max_tokens_cap}.", param="max_tokens", code="max_tokens_too_large")
        over = len(prompt) + max_tokens - self.context_length
        if over > 0:
            raise RequestError(f"the prompt has {len(prompt)} tokens and max_tokens is {max_tokens}: "
                               f"{over} tokens more than the model's context of {self.context_length}. "
                               "Shorten the prompt or lower max_tokens.",
                               param="messages", code="context_length_exceeded")
        return max_tokens

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of a conversation rendered as in training, with the assistant header."""
        from tunesmith.train.prompts import prompt_ids

        return prompt_ids(self.server.tokenizer, messages)

    def text_prompt(self, text: str) -> list[int]:
        return list(self.server.tokenizer(text)["input_ids"])

    def submit_generation(self, model: ServedModel, rows: list[Row]) -> Future:
        """Queue ``rows`` (their adapters set to ``model``'s); the future resolves when all end."""
        for row in rows:
            row.adapter = model.adapter
        return self.batcher.submit(Job(model, rows=rows))

    def generate(self, model_name: str, prompt: str, *, max_tokens: int | None = None,
                 **sampling: Any) -> tuple[str, str]:
        """Blocking: continue ``prompt`` as a user turn; returns (text, finish_reason)."""
        model = self.lookup(model_name)
        ids = self.chat_prompt([{"role": "user", "content": prompt}])
        parts: list[str] = []
        reason: list[str] = []

        def emit(delta: str, finish: str | None) -> None:
            parts.append(delta)
            if finish:
                reason.append(finish)

        row = Row(ids, self.check_generation(model, ids, max_tokens), emit, **sampling)
        self.submit_generation(model, [row]).result()
        return "".join(parts), reason[0]

    def classify(self, model_name: str, texts: Sequence[str]) -> Future:
        """Queue ``texts`` for ``model_name``; the future resolves to one Classification per text."""
        model = self.lookup(model_name)
        if model.kind == "generate":
            raise RequestError(f"'{model.name}' generates text and has no labels: use "
                               "/v1/chat/completions.", param="model", code="wrong_endpoint")
        if not texts:
            raise RequestError("input is empty: send one text or a list of texts.", param="input")
        return self.batcher.submit(Job(model, texts=list(texts)))

    # -- the worker's side -----------------------------------------------------------------
    def _run_batch(self, jobs: list[Job]) -> None:
        sizes: dict[str, int] = {}
        for job in jobs:
            sizes[job.model.name] = sizes.get(job.model.name, 0) + job.size
        for observe in self.batch_observers:
            observe(sizes)
        for group in _groups(jobs):
            try:
                self._run_group(group)
            except Exception as exc:  # noqa: BLE001 - retried alone, so the error lands on its owner
                for job in group:
                    if job.future.done():
                        continue
                    if len(group) == 1 or any(row.generated for row in job.rows):
                        # Alone already, or its client has seen part of an answer: no second try.
                        job.future.set_exception(exc)
                        continue
                    try:
                        self._run_group([job])
                    except Exception as own:  # noqa: BLE001 - handed to the request that caused it
                        job.future.set_exception(own)

    def _run_group(self, group: list[Job]) -> None:
        model = group[0].model
        if group[0].texts:
            texts = [t for job in group for t in job.texts]
            names = [job.model.adapter for job in group for _ in job.texts]
            results = self._classify(model, texts, names)
            start = 0
            for job in group:
                job.future.set_result(results[start : start + len(job.texts)])
                start += len(job.texts)
            return
        rows = [row for job in group for row in job.rows]
        if len({row.adapter for row in rows}) > 1:  # only mixable models share a group
            decode_batch(self.server.model, self.server.tokenizer, rows, mixed=True)
        else:
            with self._active(model):
                decode_batch(self.server.model, self.server.tokenizer, rows, mixed=False)
        for job in group:
            for row in job.rows:
                for observe in self.finish_observers:
                    observe(job.model.name, row.finish_reason or "error")
            job.future.set_result(None)

    def _active(self, model: ServedModel) -> AbstractContextManager[Any]:
        """A context in which the forward pass uses ``model``'s adapter (the base: none)."""
        from tunesmith.methods import set_adapter

        net = self.server.model
        if model.adapter != BASE:
            set_adapter(net, model.adapter)
            return contextlib.nullcontext()
        if hasattr(net, "disable_adapter"):
            return net.disable_adapter()
        return _bottleneck_off(net)

    def _classify(self, model: ServedModel, texts: list[str], names: list[str]) -> list[Classification]:

        import torch

        labels = list(model.labels)
        if model.kind == "label":
            from tunesmith.evaluate.prompting import label_nlls, label_probabilities
            from tunesmith.train.prompts import classification_prompt

            prompts = [[{"role": "user", "content": classification_prompt(t, labels)}] for t in texts]
            out = []
            with self._active(model):
                scored = label_nlls(self.server.model, self.server.tokenizer, prompts, labels)
            for scores in scored:
                out.append(_classification(labels, label_probabilities(scores)))
            return out
        tokenizer = self.server.tokenizer
        enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        net = self.server.model
        # Only mixable models share a group; a group of one adapter runs it directly.
        routing = (per_row_adapters(mixable_modules(net), names) if len(set(names)) > 1
                   else self._active(model))
        with torch.inference_mode(), routing:
            logits = net(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        return [_classification(labels, row.tolist()) for row in torch.softmax(logits.float(), dim=-1)]


@contextlib.contextmanager
def _bottleneck_off(model: Any) -> Iterator[None]:
    from tunesmith.methods.adapter.model import sites

    found = sites(model)
    previous = {name: site.active for name, site in found.items()}
    for site in found.values():
        site.active = None
    try:
        yield
    finally:
        for name, site in found.items():
            site.active = previous[name]


def _classification(labels: list[str], probs: list[float]) -> Classification:
    best = max(range(len(labels)), key=lambda i: probs[i])
    return Classification(labels[best], float(probs[best]), dict(zip(labels, map(float, probs), strict=True)))


def _groups(jobs: list[Job]) -> Iterator[list[Job]]:
    """Jobs that can run as one forward batch: mixable adapters (and the base) together, by task
    kind; every other adapter alone."""
    groups: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        kind = "classify" if job.texts else "generate"
        together = job.model.mixable and job.model.kind != "label"
        groups.setdefault((kind, "mixed" if together else job.model.name), []).append(job)
    yield from groups.values()


def _registry_source(spec: str, tracking_uri: str | None) -> tuple[str, Path, str, dict[str, Any]]:
    """(served name, adapter folder, root label, run.json contents) of a registry ``NAME@ALIAS``."""
    import tempfile

    if "@" not in spec:
        raise UsageError(f"--registry takes NAME@ALIAS (e.g. sentiment@production), got '{spec}'.")
    name, alias = spec.split("@", 1)
    from mlflow.exceptions import MlflowException

    from tunesmith.track.registry import _client

    client = _client(tracking_uri or "sqlite:///mlflow.db")
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise UsageError(f"no model version '{spec}' in the registry at {tracking_uri}.",
                         hint="`tunesmith registry list` shows names and aliases.") from None
    root = f"models:/{name}/{version.version}"
    run_dir = (version.tags or {}).get("run_dir")
    if run_dir and (Path(run_dir) / runfiles.ADAPTER_DIR).is_dir():
        folder, run_meta = Path(run_dir) / runfiles.ADAPTER_DIR, _run_meta(Path(run_dir))
    else:
        import mlflow

        local = Path(tempfile.mkdtemp(prefix="tunesmith-serve-"))
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=root, dst_path=str(local)))
        folder = adapter_dir(next(model_dir.rglob(runfiles.ADAPTER_META)).parent)
        run_meta = {}
    run_meta = {**run_meta, "mlflow_run_id": run_meta.get("mlflow_run_id") or version.run_id}
    return f"{name}-v{version.version}", folder, root, run_meta


class MicroBatcher:
    """One worker thread: waits for a job, gathers more for ``max_wait_ms`` (at most
    ``max_batch`` rows), hands them to ``run`` together. ``run`` resolves each job's future
    (or raises: then every unresolved job of the batch gets the exception)."""

    def __init__(self, run: Callable[[list[Job]], None], *, max_batch: int, max_wait_ms: float) -> None:
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="tunesmith-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future:
        if self._closed:
            raise RuntimeError("the engine is closed")
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _gather(self, first: Job) -> list[Job]:
        jobs, rows = [first], first.size
        deadline = time.monotonic() + self.max_wait
        while rows < self.max_batch and self.max_wait > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                job = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # seen again by the loop, after this batch
                break
            jobs.append(job)
            rows += job.size
        return jobs

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            jobs = self._gather(first)
            try:
                self._run(jobs)
            except Exception as exc:  # noqa: BLE001 - every waiting request hears about it
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
        while True:  # closed: fail whatever is still queued
            try:
                queued = self._queue.get_nowait()
            except queue.Empty:
                return
            if queued is not None:
                queued.future.set_exception(RuntimeError("the engine is closed"))
