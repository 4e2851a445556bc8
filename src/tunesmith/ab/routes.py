"""The A/B test's two hooks into ``tunesmith serve``: the ``ab:NAME`` resolver and
``POST /v1/feedback``. The only module of this concern that knows FastAPI.

- :class:`ExperimentResolver` answers ``model="ab:NAME"``: the user id picks the arm (a sticky
  hash, :func:`tunesmith.ab.experiment.assign`) and the arm's served model answers; the server
  writes the arm and experiment into its traffic log row. It loads the experiments when the
  server starts and reads the store again for a name it does not know, so an experiment started
  while the server runs is served without a restart.
- :func:`feedback_router` mounts ``POST /v1/feedback`` ``{"request_id", "outcome", "value"}``
  over :func:`tunesmith.ab.feedback.record_feedback`; refusals come back in OpenAI's error shape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from tunesmith.ab.experiment import Experiment, assign, experiment_name
from tunesmith.ab.feedback import FeedbackRefused, record_feedback
from tunesmith.ab.store import ExperimentStore
from tunesmith.errors import UsageError
from tunesmith.serve.app import Resolution
from tunesmith.serve.engine import RequestError


class ExperimentResolver:
    """A serve ``Resolver`` for ``ab:NAME`` models (None for every other name).

    ``served`` (the engine's ``model_names``) lets it say which experiment and arm point at a
    model the server was not started with, instead of a bare "model not found".
    """

    def __init__(self, store: ExperimentStore, served: Callable[[], list[str]] | None = None) -> None:
        self.store = store
        self.served = served
        self._lock = threading.Lock()
        self._experiments: dict[str, Experiment] = {e.name: e for e in store.list()}

    def _get(self, name: str) -> Experiment:
        with self._lock:
            if name not in self._experiments:
                try:
                    self._experiments[name] = self.store.get(name)
                except UsageError as exc:
                    raise RequestError(exc.message, status=404, param="model",
                                       code="experiment_not_found") from None
            return self._experiments[name]

    def __call__(self, model: str, user: str | None) -> Resolution | None:
        name = experiment_name(model)
        if name is None:
            return None
        experiment = self._get(name)
        if not user:
            raise RequestError(
                f"model '{model}' is an A/B experiment, which shows each user one arm: send a user "
                "id in the request's `user` field or an X-User-Id header.", status=400,
                param="user", code="user_required")
        arm = assign(experiment, user)
        model_name = experiment.arm(arm).served
        if self.served is not None and model_name not in self.served():
            raise RequestError(
                f"experiment '{name}' sends this user to its {arm} '{model_name}', which this "
                f"server does not serve (it serves {', '.join(self.served())}): start "
                "`tunesmith serve` with both arms (--run or --registry).", status=404,
                param="model", code="model_not_found")
        return Resolution(model_name, experiment=name, arm=arm)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200)
    outcome: str = Field(min_length=1, max_length=100)
    value: bool | int | float | str


def feedback_router(store: ExperimentStore) -> APIRouter:
    """``POST /v1/feedback``: store an outcome of a served request (durable before the 200)."""
    router = APIRouter()

    @router.post("/v1/feedback")
    def feedback(body: FeedbackRequest) -> dict[str, Any]:
        try:
            outcome = record_feedback(store, body.request_id, body.outcome, body.value)
        except FeedbackRefused as exc:
            raise RequestError(exc.message, status=exc.status, param=exc.param) from None
        return {"object": "feedback", "request_id": outcome.request_id, "outcome": outcome.name,
                "value": outcome.value}

    return router
