"""Liveness, readiness and the Prometheus endpoint (never behind the API key)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .deps import AppState, state

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(svc: AppState = Depends(state)) -> JSONResponse:
    reg = svc.registry
    ready = reg.ready and svc.registry.default_model in reg.models
    body = {"ready": ready, "loaded": sorted(reg.models), "failed": reg.failed, "default": svc.registry.default_model}
    if not ready:
        body["error"] = {
            "type": "not_ready",
            "message": "models are still loading"
            if not reg.ready
            else f"default model {svc.registry.default_model!r} is not loaded",
        }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def metrics(svc: AppState = Depends(state)) -> Response:
    for name, m in svc.registry.models.items():
        svc.metrics.queue_depth.labels(name).set(m.batcher.depth if m.batcher else 0)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
