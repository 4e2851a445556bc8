"""A tunesmith run as an MLflow pyfunc model: base model + adapter, loaded from its artifacts.

``mlflow.pyfunc.load_model("models:/N@production").predict(["a review", ...])`` returns one
string per input: the predicted label (classification) or the generated answer (generative
tasks). The artifacts hold only the adapter and the run's metadata (a few MB for LoRA); the base
model is loaded by name through :func:`tunesmith.models.load_model`, so a built-in base needs
tunesmith and its asset packages installed where the model is served, and a local base folder
must exist there at the same path.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow.pyfunc

# Generative prediction is slow on CPU: keep batches small so one long input does not pad all.
_BATCH = 8


def serving_meta(run: dict, config: dict) -> dict:
    """What prediction needs from a run folder's run.json and config.yaml (both as dicts)."""
    return {
        "model": run["model"],
        "task": run["task"],
        "labels": run.get("labels"),
        "method": run.get("method"),
        "max_length": config.get("prepare", {}).get("max_length", 512),
        "max_new_tokens": config.get("evaluation", {}).get("max_new_tokens", 64),
    }


class TunesmithModel(mlflow.pyfunc.PythonModel):
    """Loads ``artifacts["meta"]`` (see :func:`serving_meta`) and ``artifacts["adapter"]``."""

    def load_context(self, context: Any) -> None:
        from tunesmith.methods import load_adapter
        from tunesmith.models import load_model

        with open(context.artifacts["meta"], encoding="utf-8") as fh:
            meta = json.load(fh)
        self.task = meta["task"]
        self.labels = meta.get("labels")
        self.max_length = int(meta["max_length"])
        self.max_new_tokens = int(meta["max_new_tokens"])
        loaded = load_model(meta["model"], task=self.task, labels=self.labels)
        self.model = load_adapter(loaded.model, context.artifacts["adapter"])
        self.model.eval()
        self.tokenizer = loaded.tokenizer
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def predict(self, context: Any, model_input: list[str], params: dict | None = None) -> list[str]:
        import torch

        texts = [str(t) for t in model_input]
        out: list[str] = []
        with torch.no_grad():
            for start in range(0, len(texts), _BATCH):
                batch = texts[start:start + _BATCH]
                if self.task == "classification":
                    out.extend(self._classify(batch))
                else:
                    out.extend(self._generate(batch))
        return out

    def _classify(self, texts: list[str]) -> list[str]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        ids = self.model(**enc).logits.argmax(dim=-1).tolist()
        labels = self.labels or [self.model.config.id2label[i] for i in sorted(self.model.config.id2label)]
        return [labels[i] for i in ids]

    def _generate(self, texts: list[str]) -> list[str]:
        tok = self.tokenizer
        if tok.chat_template:
            prompts = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                               add_generation_prompt=True) for t in texts]
        else:
            prompts = texts
        tok.padding_side = "left"  # generation continues from the right edge of every row
        enc = tok(prompts, padding=True, return_tensors="pt", add_special_tokens=not tok.chat_template)
        generated = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                        pad_token_id=tok.pad_token_id)
        new_tokens = generated[:, enc["input_ids"].shape[1]:]
        return [t.strip() for t in tok.batch_decode(new_tokens, skip_special_tokens=True)]
