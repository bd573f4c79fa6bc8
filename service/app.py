"""create_app(settings): lifespan that loads and warms models in the background,
one exception handler for the one error shape, and request metrics."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.machine import cpu_info

from .api import admin, classify, embed, health, models, openai, playground
from .api.deps import AppState
from .batcher import Batcher
from .embedding import Embedder
from .errors import ServiceError
from .http_errors import error_body, status_of
from .label_cache import LabelCache
from .metrics import Metrics
from .middleware import BodyLimit, Observe
from .registry import LoadedModel, Registry, dir_fingerprint
from .reload import Reloader
from .settings import Settings

log = logging.getLogger(__name__)


def _start_batcher(svc: AppState, model: LoadedModel) -> None:
    s = svc.settings
    model.batcher = Batcher(
        model.backend,
        s.max_batch_size,
        s.max_batch_tokens,
        s.max_wait_ms / 1000,
        s.queue_size,
        observer=svc.metrics.batch_observer(model.name),
        workers=s.workers,
    )
    model.batcher.start()


def publish_model_metrics(svc: AppState) -> None:
    """Gauges from each manifest, so dashboards can set compressed beside baseline."""
    m = svc.metrics
    for gauge in m.model_gauges():  # a reload may have removed or replaced models
        gauge.clear()
    cpu = cpu_info()
    m.host_cpu.info(
        {"model": str(cpu["model"]), "features": ",".join(cpu["features"]) or "none", "cores": str(cpu["cores"])}
    )
    for name in svc.registry.failed:
        m.loaded.labels(name).set(0)
    for name, model in svc.registry.models.items():
        m.loaded.labels(name).set(1)
        m.version.labels(name, model.version).set(1)
        m.queue_capacity.labels(name).set(svc.settings.queue_size)
        host = model.host_fidelity
        if host is not None:
            for stat, here, built in (("mean", host.mean, host.built_mean), ("p1", host.p1, host.built_p1)):
                m.host_fidelity.labels(name, stat, "host").set(here)
                if built is not None:
                    m.host_fidelity.labels(name, stat, "build").set(built)
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
    for rule in svc.embedder.canary.values():
        m.canary_share.labels(rule.name, rule.candidate).set(rule.share)


async def load_models(svc: AppState) -> None:
    """Load, verify and warm every model off the event loop; then start their batchers."""
    reg = svc.registry
    try:
        if not reg.models:  # tests may pre-register backends
            await asyncio.to_thread(
                reg.load_dir, svc.settings.models_dir, svc.settings.session_config(), svc.settings.min_host_fidelity
            )
        for model in reg.models.values():
            _start_batcher(svc, model)
        publish_model_metrics(svc)
    finally:
        reg.choose_default(svc.settings.default_model)
        reg.ready = True
    if reg.default_model not in reg.models:
        log.error("default model %r is not loaded; loaded: %s", reg.default_model, sorted(reg.models))


def _fingerprint(models_dir) -> str | None:
    try:
        return dir_fingerprint(Path(models_dir))
    except OSError:
        return None


def _reload_on_sighup(svc: AppState) -> bool:
    """SIGHUP rescans the models folder, as POST /admin/reload does (only where the loop runs on the main
    thread, as under uvicorn; an in-process test client has none)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, svc.reloader.reload_in_background)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        return False
    return True


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    registry = registry or Registry(settings.default_model)
    svc = AppState(
        settings, registry, metrics, Embedder(registry, settings, metrics), LabelCache(settings.label_cache_size)
    )
    svc.reloader = Reloader(svc, lambda model: _start_batcher(svc, model), lambda: publish_model_metrics(svc))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        poll = settings.reload_poll_s
        before = _fingerprint(settings.models_dir) if poll > 0 else None  # taken before the load starts
        loader = asyncio.create_task(load_models(svc))
        hup = _reload_on_sighup(svc)
        watcher = asyncio.create_task(svc.reloader.watch(poll, before)) if poll > 0 else None
        yield
        if hup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if watcher is not None:
            watcher.cancel()
        await loader
        # Graceful stop: uvicorn has stopped accepting and drained in-flight requests; finish queued batches.
        await svc.reloader.wait_drained()
        for model in registry.models.values():
            if model.batcher is not None:
                await model.batcher.close()

    app = FastAPI(title="Compressed text embeddings", version="0.1.0", lifespan=lifespan)
    app.state.svc = svc

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        model = getattr(request.state, "model", None) or "none"
        metrics.failures.labels(model, exc.type).inc()
        return JSONResponse(error_body(exc.type, exc.message), status_code=status_of(exc), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(error_body("invalid_json", "request body is not valid JSON"), status_code=400)
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(
            error_body("invalid_request_error", f"{where or 'body'}: {first.get('msg', 'invalid')}"), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(kind, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        metrics.failures.labels(getattr(request.state, "model", None) or "none", "internal").inc()
        return JSONResponse(error_body("internal_error", "internal error; see the service log"), status_code=500)

    for router in (
        health.router,
        embed.router,
        openai.router,
        classify.router,
        models.router,
        admin.router,
        playground.router,
    ):
        app.include_router(router)
    app.mount("/static", playground.static_files(), name="static")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(Observe, metrics=metrics)  # outermost: it also counts what BodyLimit refuses
    return app
