"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task and a stream copy per request):
request metrics and timing, and the request-body limits."""

from __future__ import annotations

import asyncio
import time

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PayloadTooLarge, RequestTimeout, ServiceError
from .http_errors import error_body, status_of
from .metrics import Metrics

UNMETERED = ("/metrics", "/healthz", "/readyz")


class Observe:
    """Count and time every request by route, model and status, and send `x-total-time` (ms).
    Routes name their model in `request.state.model`, which lives in the ASGI scope."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        state = scope.setdefault("state", {})
        state["model"] = None
        status = 500

        async def send_timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed_ms = (time.perf_counter() - start) * 1000
                message["headers"] = [*message.get("headers", []), (b"x-total-time", f"{elapsed_ms:.3f}".encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            if endpoint not in UNMETERED:
                model, code = state.get("model") or "none", str(status)
                self.metrics.requests.labels(endpoint, model, code).inc()
                self.metrics.request_seconds.labels(endpoint, model, code).observe(time.perf_counter() - start)


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
            return await self._reject(
                send, PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes")
            )
        chunks, seen = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                return await self._reject(
                    send, RequestTimeout(f"request body not received within {self.timeout_s:g} s")
                )
            if message["type"] == "http.disconnect":
                return  # the client is gone: nobody to answer
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return await self._reject(
                    send, PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes")
                )
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
        status = status_of(exc)
        body = JSONResponse(error_body(exc.type, exc.message), status_code=status, headers={"connection": "close"})
        await send({"type": "http.response.start", "status": status, "headers": body.raw_headers})
        await send({"type": "http.response.body", "body": body.body})
