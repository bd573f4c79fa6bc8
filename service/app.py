"""create_app(settings): lifespan that loads and warms models in the background,
one exception handler for the one error shape, and request metrics."""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api import classify, embed, health, models, openai
from .api.deps import AppState
from .batcher import Batcher
from .embedding import Embedder
from .errors import PayloadTooLarge, RequestTimeout, ServiceError
from .metrics import Metrics
from .registry import LoadedModel, Registry
from .settings import Settings

log = logging.getLogger(__name__)


def error_body(type_: str, message: str) -> dict:
    return {"error": {"type": type_, "message": message}}


def _start_batcher(svc: AppState, model: LoadedModel) -> None:
    s = svc.settings
    model.batcher = Batcher(model.backend, s.max_batch_size, s.max_batch_tokens, s.max_wait_ms / 1000, s.queue_size,
                            observer=svc.metrics.batch_observer(model.name))
    model.batcher.start()


def publish_model_metrics(svc: AppState) -> None:
    """Gauges from each manifest, so dashboards can set compressed beside baseline."""
    m = svc.metrics
    for name in svc.registry.failed:
        m.loaded.labels(name).set(0)
    for name, model in svc.registry.models.items():
        m.loaded.labels(name).set(1)
        m.queue_capacity.labels(name).set(svc.settings.queue_size)
        m.model_memory.labels(name).set(model.resident_bytes)
        man = model.manifest
        if man is None:
            continue
        for part, value in man.params.model_dump().items():
            m.params.labels(name, part).set(value)
        m.file_bytes.labels(name).set(man.bytes.file)
        m.embedding_bytes.labels(name).set(man.bytes.embedding)
        base = svc.registry.models.get(man.baseline) if man.baseline else None
        if base is not None and base.manifest is not None:
            m.ratio.labels(name, base.name).set(base.manifest.bytes.file / man.bytes.file)
        elif man.baseline is None:
            m.ratio.labels(name, name).set(1.0)
        for metric, value in man.quality.model_dump().items():
            if isinstance(value, (int, float)):
                m.quality.labels(name, metric).set(value)


async def load_models(svc: AppState) -> None:
    """Load, verify and warm every model off the event loop; then start their batchers."""
    reg = svc.registry
    try:
        if not reg.models:  # tests may pre-register backends
            await asyncio.to_thread(reg.load_dir, svc.settings.models_dir, svc.settings.session_config())
        for model in reg.models.values():
            _start_batcher(svc, model)
        publish_model_metrics(svc)
    finally:
        reg.ready = True
    if svc.settings.default_model not in reg.models:
        log.error("default model %r is not loaded; loaded: %s", svc.settings.default_model, sorted(reg.models))


class BodyLimit:
    """Read the request body before the app sees it: refuse one over the cap (by Content-Length
    or as it streams) with 413, and one that stops arriving for `timeout_s` with 408, then
    replay the buffered body. (Errors raised inside the app's own body read would surface as
    FastAPI's generic 400.)"""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send, PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes"))
        chunks, seen = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                return await self._reject(send, RequestTimeout(f"request body not received within {self.timeout_s:g} s"))
            if message["type"] == "http.disconnect":
                return  # the client is gone: nobody to answer
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return await self._reject(send, PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes"))
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as Starlette expects

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(send: Send, exc: ServiceError) -> None:
        body = JSONResponse(error_body(exc.type, exc.message), status_code=exc.status,
                            headers={"connection": "close"})
        await send({"type": "http.response.start", "status": exc.status, "headers": body.raw_headers})
        await send({"type": "http.response.body", "body": body.body})


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    registry = registry or Registry(settings.default_model)
    svc = AppState(settings, registry, metrics, Embedder(registry, settings, metrics))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = asyncio.create_task(load_models(svc))
        yield
        await loader
        # Graceful stop: uvicorn has stopped accepting and drained in-flight requests; finish queued batches.
        for model in registry.models.values():
            if model.batcher is not None:
                await model.batcher.close()

    app = FastAPI(title="Compressed text embeddings", version="0.1.0", lifespan=lifespan)
    app.state.svc = svc

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        model = getattr(request.state, "model", None) or "none"
        metrics.failures.labels(model, exc.type).inc()
        return JSONResponse(error_body(exc.type, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(error_body("invalid_json", "request body is not valid JSON"), status_code=400)
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(error_body("invalid_request_error", f"{where or 'body'}: {first.get('msg', 'invalid')}"),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(kind, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        metrics.failures.labels(getattr(request.state, "model", None) or "none", "internal").inc()
        return JSONResponse(error_body("internal_error", "internal error; see the service log"), status_code=500)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        request.state.model = None
        try:
            response = await call_next(request)
        except PayloadTooLarge as exc:
            response = JSONResponse(error_body(exc.type, exc.message), status_code=exc.status)
        elapsed = time.perf_counter() - start
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        if endpoint not in ("/metrics", "/healthz", "/readyz"):
            model = request.state.model or "none"
            metrics.requests.labels(endpoint, model, str(response.status_code)).inc()
            metrics.request_seconds.labels(endpoint, model, str(response.status_code)).observe(elapsed)
        response.headers["x-total-time"] = f"{elapsed * 1000:.3f}"
        return response

    for router in (health.router, embed.router, openai.router, classify.router, models.router):
        app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    return app
