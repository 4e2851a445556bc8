"""The HTTP edge: an OpenAI-compatible FastAPI app over an :class:`~tunesmith.serve.engine.Engine`.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (both with
server-sent-event streaming), ``POST /v1/classify``, ``GET /health``, ``GET /metrics``
(Prometheus). Bad input is a 4xx in OpenAI's error shape (``{"error": {"message", "type",
"param", "code"}}``), never a 500, and the server keeps serving.

The request path, which the A/B-test and monitoring code extends without editing this module:

1. a request id (``chatcmpl-…``, ``cmpl-…``, ``clf-…``) is made for every request and returned in
   ``X-Request-Id`` and as the response ``id``; the user is the body's ``user`` or ``X-User-Id``;
2. the asked ``model`` goes through the ``resolvers`` given to :func:`create_app`, then the
   default one (adapter names, the base name, ``NAME@ALIAS``); the first non-None
   :class:`Resolution` picks the served model and may name an experiment and arm;
3. the engine answers; the response carries the :class:`~tunesmith.serve.engine.Provenance`
   (``X-Tunesmith-*`` headers and a ``provenance`` field);
4. one :class:`~tunesmith.serve.traffic.TrafficRecord` is committed to the traffic log before
   the response is returned (for a stream: when it ends or the client leaves, status 499).

``routers`` are mounted as they are (``app.state.engine`` and ``app.state.traffic_log`` are
there for them). With ``api_key`` every route but ``/health`` needs ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesmith.serve.decode import Row
from tunesmith.serve.engine import Engine, RequestError, ServedModel
from tunesmith.serve.metrics import ServeMetrics
from tunesmith.serve.schema import ChatCompletionRequest, ClassifyRequest, CompletionRequest
from tunesmith.serve.traffic import TrafficLog, TrafficRecord


@dataclass(frozen=True)
class Resolution:
    """Which served model answers, and the experiment and arm that chose it (if any)."""

    served_model: str
    experiment: str | None = None
    arm: str | None = None


Resolver = Callable[[str, str | None], Resolution | None]

_ID_PREFIX = {"/v1/chat/completions": "chatcmpl", "/v1/completions": "cmpl", "/v1/classify": "clf"}
_LOGGED = tuple(_ID_PREFIX)
_ERROR_TYPES = {401: "authentication_error", 404: "invalid_request_error", 500: "server_error"}


def error_body(message: str, status: int, *, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object."""
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def default_resolver(engine: Engine) -> Resolver:
    """Adapter names, the base's name and the ``NAME@ALIAS`` names loaded at start."""

    def resolve(model: str, user: str | None) -> Resolution | None:
        name = engine.aliases.get(model, model)
        return Resolution(name) if name in engine.models else None

    return resolve


@dataclass
class _Exchange:
    """One request in flight: what the traffic log and the metrics need about it."""

    record: TrafficRecord
    started: float
    served: ServedModel | None = None


class _Edge:
    """Request id, bearer auth and the ``X-Request-Id`` header, as plain ASGI (streams pass through)."""

    def __init__(self, app: Any, api_key: str | None) -> None:
        self.app, self.api_key = app, api_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        request_id = f"{_ID_PREFIX.get(path, 'req')}-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        if self.api_key and path != "/health":
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                response = JSONResponse(error_body(
                    "missing or wrong API key: send the header 'Authorization: Bearer KEY' with the "
                    "key the server was started with.", 401, code="invalid_api_key"), status_code=401)
                return await response(scope, receive, send_with_id)
        await self.app(scope, receive, send_with_id)


def create_app(
    engine: Engine,
    *,
    resolvers: Sequence[Resolver] = (),
    routers: Sequence[APIRouter] = (),
    traffic_log: TrafficLog | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """The FastAPI app serving ``engine``. ``resolvers`` are tried before the default one,
    ``routers`` are mounted, ``traffic_log`` (if any) gets one row per model request."""
    app = FastAPI(title="tunesmith serve", docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.traffic_log = traffic_log
    metrics = ServeMetrics()
    app.state.metrics = metrics
    engine.batch_observers.append(metrics.observe_batch)
    engine.finish_observers.append(metrics.observe_finish)
    chain = [*resolvers, default_resolver(engine)]

    def begin(request: Request, model: str | None, user: str | None) -> _Exchange:
        user = user or request.headers.get("x-user-id")
        record = TrafficRecord(request.state.request_id, time.time(), request.url.path, model=model, user=user)
        return _Exchange(record, time.perf_counter())

    def resolve(exchange: _Exchange) -> ServedModel:
        asked = exchange.record.model or ""
        for resolver in chain:
            found = resolver(asked, exchange.record.user)
            if found is not None:
                served = engine.lookup(found.served_model)
                exchange.served = served
                exchange.record.served_model = served.name
                exchange.record.experiment, exchange.record.arm = found.experiment, found.arm
                exchange.record.run_id = served.provenance.run_id
                exchange.record.adapter_sha256 = served.provenance.adapter_sha256
                return served
        engine.lookup(asked)  # raises the 404 that lists the served models
        raise AssertionError("unreachable")

    def finish(exchange: _Exchange, status: int, error: str | None = None) -> None:
        record = exchange.record
        record.latency_ms = (time.perf_counter() - exchange.started) * 1000
        record.status, record.error = status, error
        metrics.observe_request(record)
        if traffic_log is not None:
            traffic_log.write(record)

    def failed(request: Request, status: int, message: str, *, param: str | None = None,
               code: str | None = None, body: Any = None) -> JSONResponse:
        exchange = getattr(request.state, "exchange", None)
        if exchange is None and request.url.path in _LOGGED:
            model, user = _best_effort_fields(body)
            exchange = begin(request, model, user)
        if exchange is not None:
            finish(exchange, status, message)
        else:
            metrics.observe_error(request.url.path, status)
        return JSONResponse(error_body(message, status, param=param, code=code), status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return failed(request, exc.status, exc.message, param=exc.param, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return failed(request, 400, message, param=param, code="invalid_request", body=exc.body)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return failed(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return failed(request, 500, f"the server failed on this request ({type(exc).__name__}: {exc}); "
                      "it keeps serving others.", code="internal_error")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": engine.model_names()}

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def list_models() -> dict:
        created = int(time.time())
        data = [_model_card(m.name, m.provenance.root, m.parent, created) for m in engine.models.values()]
        data += [_model_card(alias, engine.models[name].provenance.root, engine.models[name].parent, created)
                 for alias, name in engine.aliases.items()]
        return {"object": "list", "data": data}

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest, request: Request) -> JSONResponse:
        exchange = request.state.exchange = begin(request, body.model, body.user)
        served = resolve(exchange)
        texts = body.texts()
        exchange.record.prompt = json.dumps(texts, ensure_ascii=False)
        results = await asyncio.wrap_future(engine.classify(served.name, texts))
        data = [{"index": i, "label": r.label, "score": r.score, "probabilities": r.probabilities}
                for i, r in enumerate(results)]
        exchange.record.prediction = json.dumps(data, ensure_ascii=False)
        exchange.record.prompt_tokens = sum(len(engine.text_prompt(t)) for t in texts)
        finish(exchange, 200)
        payload = {"id": exchange.record.request_id, "object": "classification", "created": int(time.time()),
                   "model": served.name, "data": data, "provenance": served.provenance.as_dict()}
        return JSONResponse(payload, headers=served.provenance.headers())

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        exchange = request.state.exchange = begin(request, body.model, body.user)
        served = resolve(exchange)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in body.messages]
        exchange.record.prompt = json.dumps(messages, ensure_ascii=False)
        prompt = engine.chat_prompt(messages)
        max_tokens = engine.check_generation(served, prompt, body.max_completion_tokens or body.max_tokens)
        return await _generate(exchange, served, body, [prompt], max_tokens, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        exchange = request.state.exchange = begin(request, body.model, body.user)
        served = resolve(exchange)
        texts = body.prompts()
        exchange.record.prompt = json.dumps(body.prompt, ensure_ascii=False)
        prompts = [engine.text_prompt(t) for t in texts]
        if any(not p for p in prompts):
            raise RequestError("a prompt is empty: send some text.", param="prompt")
        max_tokens = max(engine.check_generation(served, p, body.max_tokens) for p in prompts)
        return await _generate(exchange, served, body, prompts, max_tokens, chat=False)

    async def _generate(exchange: _Exchange, served: ServedModel, body: Any, prompts: list[list[int]],
                        max_tokens: int, *, chat: bool) -> Response:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[int, str, str | None]] = asyncio.Queue()
        left = threading.Event()
        rows = []
        for p, prompt in enumerate(prompts):
            for j in range(body.n):
                index = p * body.n + j

                def emit(delta: str, finish: str | None, index: int = index) -> None:
                    loop.call_soon_threadsafe(events.put_nowait, (index, delta, finish))

                rows.append(Row(prompt, max_tokens, emit,
                                temperature=1.0 if body.temperature is None else body.temperature,
                                top_p=1.0 if body.top_p is None else body.top_p,
                                seed=None if body.seed is None else body.seed + j,
                                stop=body.stops(), cancelled=left.is_set))
        exchange.record.prompt_tokens = sum(len(p) for p in prompts) * body.n
        future = asyncio.wrap_future(engine.submit_generation(served, rows))
        texts = [""] * len(rows)
        reasons: list[str | None] = [None] * len(rows)
        counts = [0] * len(rows)
        created = int(time.time())
        rid = exchange.record.request_id

        def settle(index: int, delta: str, finish: str | None) -> None:
            texts[index] += delta
            reasons[index] = finish or reasons[index]

        def usage() -> dict:
            for i, row in enumerate(rows):
                counts[i] = len(row.generated)
            exchange.record.completion_tokens = sum(counts)
            return {"prompt_tokens": exchange.record.prompt_tokens, "completion_tokens": sum(counts),
                    "total_tokens": (exchange.record.prompt_tokens or 0) + sum(counts)}

        def log_output() -> None:
            exchange.record.output = texts[0] if len(texts) == 1 else json.dumps(texts, ensure_ascii=False)

        if not body.stream:
            await future
            while not events.empty():
                settle(*events.get_nowait())
            log_output()
            tokens = usage()
            finish(exchange, 200)
            choices = [({"index": i, "message": {"role": "assistant", "content": t}} if chat
                        else {"index": i, "text": t, "logprobs": None}) | {"finish_reason": reasons[i]}
                       for i, t in enumerate(texts)]
            payload = {"id": rid, "object": "chat.completion" if chat else "text_completion",
                       "created": created, "model": served.name, "choices": choices, "usage": tokens,
                       "provenance": served.provenance.as_dict()}
            return JSONResponse(payload, headers=served.provenance.headers())

        from sse_starlette import EventSourceResponse

        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(index: int, delta: str, finish: str | None, first: bool) -> dict:
            if chat:
                content = {"role": "assistant", "content": delta} if first else {"content": delta}
                choice = {"index": index, "delta": content, "finish_reason": finish}
            else:
                choice = {"index": index, "text": delta, "logprobs": None, "finish_reason": finish}
            return {"id": rid, "object": kind, "created": created, "model": served.name, "choices": [choice]}

        async def stream() -> AsyncIterator[dict]:
            started = set()
            done = 0
            status = 499
            error: str | None = "the client left before the end of the stream"
            try:
                while done < len(rows):
                    waiting = asyncio.ensure_future(events.get())
                    await asyncio.wait({waiting, future}, return_when=asyncio.FIRST_COMPLETED)
                    if not waiting.done():
                        waiting.cancel()
                        failure = future.exception()
                        if failure is not None:
                            raise failure
                        if events.empty():
                            break  # every row ended (rows of a client that left end silently)
                        continue
                    index, delta, reason = waiting.result()
                    settle(index, delta, reason)
                    done += reason is not None
                    payload = chunk(index, delta, reason, index not in started)
                    if index not in started:
                        payload["provenance"] = served.provenance.as_dict()
                        started.add(index)
                    yield {"data": json.dumps(payload, ensure_ascii=False)}
                if body.stream_options and body.stream_options.include_usage:
                    yield {"data": json.dumps({"id": rid, "object": kind, "created": created,
                                               "model": served.name, "choices": [], "usage": usage()})}
                yield {"data": "[DONE]"}
                status, error = 200, None
            except Exception as exc:  # noqa: BLE001 - the headers are sent: say it in the stream
                status, error = 500, f"{type(exc).__name__}: {exc}"
                yield {"data": json.dumps(error_body(f"generation failed: {error}", 500))}
            finally:
                left.set()  # the worker drops rows still running for this request
                log_output()
                usage()
                finish(exchange, status, error)

        return EventSourceResponse(stream(), headers=served.provenance.headers(), ping=15)

    for router in routers:
        app.include_router(router)
    app.add_middleware(_Edge, api_key=api_key)
    return app


def _model_card(name: str, root: str, parent: str | None, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "tunesmith",
            "root": root, "parent": parent}


def _best_effort_fields(data: Any) -> tuple[str | None, str | None]:
    """``model`` and ``user`` of a body that failed validation, when they can be read at all."""
    if not isinstance(data, dict):
        return None, None
    model, user = data.get("model"), data.get("user")
    return (model if isinstance(model, str) else None), (user if isinstance(user, str) else None)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One sentence per problem: where in the body, what was wrong."""
    parts, param = [], None
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', err.get('msg'))}).")
            continue
        where = ".".join(loc) or "the body"
        param = param or (loc[0] if loc else None)
        parts.append(f"{where}: {err.get('msg')} (got {json.dumps(err.get('input'), default=str)[:80]}).")
    return " ".join(parts) or "the request body is invalid.", param
