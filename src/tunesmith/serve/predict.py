"""One base model, several adapters, switched per call (the guide's "one base, one adapter per task").

The base loads once (seconds for SmolLM2, and most of the memory); each adapter adds only its
trained parameters (kilobytes to a few MB). Adapters sharing a base must agree on the base
model, the task family, the method family (PEFT LoRA-style, bottleneck, full) and, for
classification, the number of labels: the server says which one differs otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import runfiles
from tunesmith.errors import UsageError

_BATCH = 16


@dataclass(frozen=True)
class Prediction:
    adapter: str
    text: str
    output: str  # the label (classification) or the generated answer
    score: float | None  # the label's probability (classification)
    # Every label's probability, most likely first (classification); None for generated text.
    probabilities: dict[str, float] | None = None


def ranked_probabilities(labels: Sequence[str], probs: Sequence[float]) -> dict[str, float]:
    """``{label: probability}``, most likely first."""
    return dict(sorted(zip(labels, (float(p) for p in probs), strict=True), key=lambda kv: -kv[1]))


def adapter_dir(path: str | Path) -> Path:
    """A run folder's ``adapter/`` or an adapter folder itself; UsageError when neither."""
    from tunesmith.methods import ADAPTER_META

    path = Path(path)
    for candidate in (path / runfiles.ADAPTER_DIR, path):
        if (candidate / ADAPTER_META).is_file():
            return candidate
    raise UsageError(
        f"{path} is neither a run folder with adapter/ nor an adapter folder.",
        hint="Pass a folder written by `tunesmith run` (runs/<name>), or its adapter/ folder.",
    )


def _signature(meta: dict[str, Any]) -> dict[str, Any]:
    family = "peft" if meta.get("format") == "peft" else meta.get("format")
    return {
        "base model": meta.get("base_model"),
        "task": "classification" if meta.get("task") == "classification" else "causal LM",
        "method family": family,
        "4-bit base": meta.get("method") == "qlora",
        # Only a classification head's size depends on the labels.
        "number of labels": len(meta.get("labels") or []) if meta.get("task") == "classification" else None,
    }


class AdapterServer:
    """Load adapters with :meth:`add`; :meth:`predict` runs texts through one of them."""

    def __init__(self) -> None:
        self.model: Any = None
        self.tokenizer: Any = None
        self.adapters: dict[str, dict[str, Any]] = {}
        self._signature: dict[str, Any] | None = None

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path], names: Sequence[str] | None = None) -> AdapterServer:
        """Adapters from run or adapter folders, named after the run folder unless ``names``."""
        server = cls()
        for i, path in enumerate(paths):
            folder = adapter_dir(path)
            run = folder.parent if folder.name == runfiles.ADAPTER_DIR else folder
            server.add(names[i] if names else run.resolve().name, folder)
        return server

    def add(self, name: str, directory: str | Path) -> None:
        from tunesmith.methods import load_adapter, read_adapter_meta
        from tunesmith.serve.base import load_base

        if name in self.adapters:
            raise UsageError(f"two adapters are named '{name}'.", hint="Give each a distinct name.")
        meta = read_adapter_meta(directory)
        signature = _signature(meta)
        if self._signature is None:
            loaded = load_base(meta, directory=directory)
            self.model, self.tokenizer = loaded.model, loaded.tokenizer
            self._signature = signature
        else:
            differ = [k for k in signature if signature[k] != self._signature[k]]
            if differ:
                first = next(iter(self.adapters))
                details = "; ".join(
                    f"{k}: '{name}' has {signature[k]!r}, '{first}' has {self._signature[k]!r}"
                    for k in differ
                )
                raise UsageError(
                    f"adapter '{name}' cannot share a base with '{first}' ({details}).",
                    hint="Serve them in separate calls.",
                )
        self.model = load_adapter(self.model, directory, name=name)
        self.model.eval()
        self.adapters[name] = meta

    def predict(self, texts: Sequence[str], adapter: str | None = None, *,
                max_new_tokens: int = 64) -> list[Prediction]:
        """Run ``texts`` through ``adapter`` (default: the first loaded)."""
        from tunesmith.methods import set_adapter

        if not self.adapters:
            raise UsageError("no adapter loaded.")
        name = adapter or next(iter(self.adapters))
        set_adapter(self.model, name)
        meta = self.adapters[name]
        if meta["task"] == "classification":
            return self._classify(name, list(texts), meta["labels"])
        if meta.get("labels"):  # classification trained as instructions on a causal LM
            return self._label_likelihood(name, list(texts), meta["labels"])
        return self._generate(name, list(texts), max_new_tokens)

    def _classify(self, name: str, texts: list[str], labels: list[str]) -> list[Prediction]:
        import torch

        out = []
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(texts), _BATCH):
                chunk = texts[start : start + _BATCH]
                enc = self.tokenizer(chunk, padding=True, truncation=True, return_tensors="pt")
                enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                probs = torch.softmax(self.model(**enc).logits.float(), dim=-1)
                best = probs.argmax(dim=-1)
                for text, i, row in zip(chunk, best.tolist(), probs, strict=True):
                    out.append(Prediction(name, text, labels[i], float(row[i]),
                                          ranked_probabilities(labels, row.tolist())))
        return out

    def _label_likelihood(self, name: str, texts: list[str], labels: list[str]) -> list[Prediction]:
        from tunesmith.evaluate.prompting import label_nlls, label_probabilities, most_likely
        from tunesmith.train.prompts import classification_prompt

        # As in training and evaluation: the labels are named in the prompt and each label's
        # reply is scored; the probability is normalised over the labels.
        prompts = [[{"role": "user", "content": classification_prompt(t, labels)}] for t in texts]
        out = []
        for text, scores in zip(texts, label_nlls(self.model, self.tokenizer, prompts, labels), strict=True):
            label = most_likely(labels, scores)
            probs = label_probabilities(scores)
            out.append(Prediction(name, text, label, probs[labels.index(label)],
                                  ranked_probabilities(labels, probs)))
        return out

    def _generate(self, name: str, texts: list[str], max_new_tokens: int) -> list[Prediction]:
        from tunesmith.evaluate.generation import GenerationSettings, generate
        from tunesmith.train.prompts import prompt_ids

        # The same prompt rendering as training: the text is the user's turn.
        prompts = [prompt_ids(self.tokenizer, [{"role": "user", "content": t}]) for t in texts]
        answers = generate(self.model, self.tokenizer, prompts,
                           GenerationSettings(max_new_tokens=max_new_tokens))
        return [Prediction(name, t, a, None) for t, a in zip(texts, answers, strict=True)]
