"""Prometheus metrics of one app: requests, errors, latency, tokens and batch sizes per model.

Each app has its own registry (several apps can live in one process, as in tests). Names:
``tunesmith_requests_total{endpoint,model,status}``, ``tunesmith_request_errors_total{endpoint,status}``,
``tunesmith_request_latency_seconds{endpoint,model}`` (histogram),
``tunesmith_tokens_total{model,kind}`` (kind: prompt or completion),
``tunesmith_batch_rows`` (rows per batch, histogram) and ``tunesmith_batch_rows_per_model{model}``
(a model's rows in each batch it was part of, histogram).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from tunesmith.serve.traffic import TrafficRecord

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tunesmith_requests", "Model requests answered", ["endpoint", "model", "status"], registry=r)
        self.errors = Counter("tunesmith_request_errors", "Requests answered with a 4xx or 5xx",
                              ["endpoint", "status"], registry=r)
        self.latency = Histogram("tunesmith_request_latency_seconds", "Time from request to the last byte",
                                 ["endpoint", "model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("tunesmith_tokens", "Prompt and completion tokens", ["model", "kind"], registry=r)
        self.batch = Histogram("tunesmith_batch_rows", "Rows per batch run by the engine",
                               buckets=_BATCH_BUCKETS, registry=r)
        self.batch_model = Histogram("tunesmith_batch_rows_per_model", "A model's rows in a batch",
                                     ["model"], buckets=_BATCH_BUCKETS, registry=r)

    def observe_request(self, record: TrafficRecord) -> None:
        model = record.served_model or "unknown"
        status = str(record.status)
        self.requests.labels(record.endpoint, model, status).inc()
        if record.status is not None and record.status >= 400:
            self.errors.labels(record.endpoint, status).inc()
        if record.latency_ms is not None:
            self.latency.labels(record.endpoint, model).observe(record.latency_ms / 1000)
        self.tokens.labels(model, "prompt").inc(record.prompt_tokens or 0)
        self.tokens.labels(model, "completion").inc(record.completion_tokens or 0)

    def observe_error(self, endpoint: str, status: int) -> None:
        self.errors.labels(endpoint, str(status)).inc()

    def observe_batch(self, rows_per_model: dict[str, int]) -> None:
        self.batch.observe(sum(rows_per_model.values()))
        for model, rows in rows_per_model.items():
            self.batch_model.labels(model).observe(rows)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
