"""The in-process service for tests: a TestClient whose lifespan's background load has finished."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient


def loaded(client: TestClient, timeout_s: float = 60) -> TestClient:
    """The client once its registry is ready (loaded, or everything refused)."""
    deadline = time.monotonic() + timeout_s
    while not client.app.state.svc.registry.ready and time.monotonic() < deadline:
        time.sleep(0.05)
    return client
