"""Typed dependencies shared by the routers."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from ..embedding import Embedded, Embedder
from ..errors import Unauthorized
from ..label_cache import LabelCache
from ..metrics import Metrics
from ..registry import Registry
from ..reload import Reloader
from ..settings import Settings


@dataclass
class AppState:
    settings: Settings
    registry: Registry
    metrics: Metrics
    embedder: Embedder
    label_cache: LabelCache
    reloader: "Reloader | None" = None  # set by create_app


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
# thread, two thread hand-offs per request that showed up in profiles of the service under load.
async def state(request: Request) -> AppState:
    return request.app.state.svc


async def require_api_key(request: Request) -> None:
    """Bearer token check, constant time; a no-op when no key is configured."""
    key = request.app.state.svc.settings.api_key
    if key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.get_secret_value().encode()):
        raise Unauthorized(
            "missing or wrong API key: send 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"}
        )


def timing_headers(request: Request, result: Embedded) -> dict[str, str]:
    """TEI-style per-request timings, in milliseconds."""
    request.state.model = result.model.name
    canary = {"x-canary-of": result.canary_of} if result.canary_of else {}
    return {
        **canary,
        "x-model": result.model.name,
        "x-model-version": result.model.version,
        "x-tokenization-time": f"{result.tokenize_s * 1000:.3f}",
        "x-queue-time": f"{result.queue_s * 1000:.3f}",
        "x-inference-time": f"{result.inference_s * 1000:.3f}",
    }
