"""Faults inside the service, in-process on the model-free backend: an inference exception
costs its batch a 503 in the error shape and nothing else; odd bodies never reach a 500."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.registry import LoadedModel, Registry
from service.runtime import FixedBackend
from service.settings import Settings


class FailsOnce(FixedBackend):
    """Raises for the batch that contains the text 'boom', once."""

    def __init__(self):
        super().__init__()
        self.failed = threading.Event()

    def run(self, batch):
        if not self.failed.is_set() and any(int(t.ids.sum()) == self.boom for t in batch):
            self.failed.set()
            raise RuntimeError("onnxruntime: simulated kernel failure")
        return super().run(batch)

    @property
    def boom(self) -> int:
        return int(self.tokenize(["boom"], True)[0].ids.sum())


@pytest.fixture()
def client():
    settings = Settings(default_model="fixed", max_wait_ms=0, body_timeout_s=1)
    registry = Registry("fixed")
    backend = FailsOnce()
    registry.add(LoadedModel("fixed", None, backend))
    with TestClient(create_app(settings, registry)) as c:
        c.backend = backend
        yield c


def test_inference_exception_is_a_503_for_that_batch_only(client):
    ok = client.post("/embed", json={"inputs": "fine"})
    assert ok.status_code == 200
    failed = client.post("/embed", json={"inputs": "boom"})
    assert failed.status_code == 503
    assert failed.json()["error"]["type"] == "inference_failed" and "retry" in failed.json()["error"]["message"]
    assert client.backend.failed.is_set()
    again = client.post("/embed", json={"inputs": "boom"})  # the next batch runs as usual
    assert again.status_code == 200 and len(again.json()["embeddings"]) == 1
    metrics = client.get("/metrics").text
    assert 'embedding_failures_total{model="fixed",type="inference_failed"} 1.0' in metrics


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"inputs": "\xff\xfe"}',
        b"",
        b"null",
        b'"just a string"',
    ],
)
def test_odd_bodies_get_a_4xx_in_the_error_shape(client, raw):
    r = client.post("/embed", content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert set(r.json()["error"]) == {"type", "message"}
