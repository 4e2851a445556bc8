"""A tunesmith run as an MLflow pyfunc model: base model + adapter, loaded from its artifacts.

``mlflow.pyfunc.load_model("models:/N@production").predict(["a review", ...])`` returns one
string per input: the predicted label (classification) or the generated answer (generative
tasks, prompted as in training). Prediction is :class:`tunesmith.serve.predict.AdapterServer`'s,
so a registered model answers exactly like ``tunesmith predict``.

The artifacts hold only the adapter (its ``tunesmith_adapter.json`` names the base model, task
and labels) and the generation settings: a few MB for LoRA. The base model is loaded by name, so
a built-in base needs tunesmith and its asset packages where the model is served, and a local
base folder must exist there at the same path.
"""

from __future__ import annotations

import json
from typing import Any

from mlflow.pyfunc.model import PythonModel


def serving_meta(config: dict) -> dict:
    """What prediction needs beyond the adapter, from a run's config.yaml (as a dict)."""
    return {"max_new_tokens": config.get("evaluation", {}).get("max_new_tokens", 64)}


class TunesmithModel(PythonModel):
    """Loads ``artifacts["adapter"]`` onto its base and ``artifacts["meta"]`` (serving_meta)."""

    def load_context(self, context: Any) -> None:
        from tunesmith.serve.predict import AdapterServer

        with open(context.artifacts["meta"], encoding="utf-8") as fh:
            self.max_new_tokens = int(json.load(fh)["max_new_tokens"])
        self.server = AdapterServer()
        self.server.add("model", context.artifacts["adapter"])

    def predict(self, context: Any, model_input: list[str], params: dict | None = None) -> list[str]:
        texts = [str(t) for t in model_input]
        predictions = self.server.predict(texts, max_new_tokens=self.max_new_tokens)
        return [p.output for p in predictions]
