"""Nothing a client sends grows the server: unknown model names keep the metric series flat, zero-shot
labels stay within the cache's bound and the per-request caps, and a request whose client has gone is
dropped before it reaches a batch. In-process, on the model-free backend (no torch, no model files)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.batcher import Batcher
from service.errors import ClientGone
from service.registry import LoadedModel, Registry
from service.runtime import FixedBackend
from service.settings import Settings


@pytest.fixture()
def client():
    settings = Settings(default_model="fixed", max_wait_ms=0, label_cache_size=100, max_labels=8)
    registry = Registry("fixed")
    registry.add(LoadedModel("fixed", None, FixedBackend()))
    with TestClient(create_app(settings, registry)) as c:
        c.svc = c.app.state.svc
        yield c


def _series(client) -> int:
    return sum(1 for line in client.get("/metrics").text.splitlines() if line and not line.startswith("#"))


BODIES = {
    "/embed": lambda model: {"inputs": "x", "model": model},
    "/v1/embeddings": lambda model: {"input": "x", "model": model},
    "/classify": lambda model: {"inputs": "x", "labels": ["a", "b"], "model": model},
}


def test_unknown_model_names_do_not_make_metric_series(client):
    for route, body in BODIES.items():  # every route's and status's series exists once
        assert client.post(route, json=body("warm-up")).status_code == 404
    before = _series(client)
    for i in range(1000):
        route = list(BODIES)[i % 3]
        assert client.post(route, json=BODIES[route](f"nope-{i}")).status_code == 404
    text = client.get("/metrics").text
    assert _series(client) == before
    assert "nope-" not in text and 'model="unknown"' in text


def test_ten_thousand_distinct_labels_leave_the_cache_at_its_bound(client):
    for i in range(0, 10_000, 8):
        labels = [f"label {i + k}" for k in range(8)]
        r = client.post("/classify", json={"inputs": ["a text"], "labels": labels})
        assert r.status_code == 200
        assert len(client.svc.label_cache) <= 100
    assert len(client.svc.label_cache) == 100
    again = client.post("/classify", json={"inputs": ["a text"], "labels": [f"label {9992 + k}" for k in range(8)]})
    assert again.status_code == 200  # the most recent labels are served from the cache


@pytest.mark.parametrize(
    "body,message",
    [
        ({"labels": [f"l{i}" for i in range(9)]}, "over the limit of 8"),
        ({"labels": ["a", "b" * 201]}, "over the limit of 200"),
        ({"labels": ["a", "b"], "hypothesis_template": "{} " + "x" * 300}, "over the limit of 200"),
    ],
)
def test_zero_shot_caps_are_422s(client, body, message):
    r = client.post("/classify", json={"inputs": "a text", **body})
    assert r.status_code == 422 and message in r.json()["error"]["message"]


def test_a_request_whose_client_is_gone_is_dropped_before_batching():
    backend = FixedBackend()
    seen: list[int] = []
    run = backend.run
    backend.run = lambda batch: seen.append(len(batch)) or run(batch)

    async def main():
        batcher = Batcher(backend, max_batch_size=8, max_batch_tokens=1024, max_wait_s=0, queue_size=64)
        gone, stays = threading.Event(), threading.Event()
        gone.set()
        with_lock = batcher._cond  # hold the workers back until both requests are queued
        with_lock.acquire()
        batcher.start()
        dropped = asyncio.ensure_future(batcher.submit(backend.tokenize(["gone"], True), gone))
        kept = asyncio.ensure_future(batcher.submit(backend.tokenize(["here", "too"], True), stays))
        await asyncio.sleep(0.01)
        with_lock.release()
        results = await asyncio.gather(dropped, kept, return_exceptions=True)
        await batcher.close()
        return results

    dropped, kept = asyncio.run(main())
    assert isinstance(dropped, ClientGone)
    assert kept[0].shape == (2, 8) and seen == [2]  # only the live request's texts were computed


def test_without_a_configured_default_a_compressed_variant_is_chosen():
    from common.manifest import Manifest

    def manifest(name, baseline):
        return Manifest.model_validate(
            {
                "name": name,
                "base_model": "m",
                "baseline": baseline,
                "method": "pq",
                "rank": None,
                "quantization": "fp32",
                "dim": 8,
                "max_seq_length": 32,
                "params": {"embedding": 1, "encoder": 1, "total": 2},
                "bytes": {"file": 1, "embedding": 1},
                "sha256": "0",
                "quality": {},
                "recipe": {},
                "versions": {},
            }
        )

    registry = Registry(None)
    for name, base in (("bge", None), ("bge-fact", "bge"), ("zz", None)):
        registry.add(LoadedModel(name, manifest(name, base), FixedBackend()))
    assert registry.choose_default(None) == "bge-fact"
    registry.add(LoadedModel("minilm-l6-fact", manifest("minilm-l6-fact", "minilm-l6"), FixedBackend()))
    assert registry.choose_default(None) == "minilm-l6-fact"
    assert registry.choose_default("zz") == "zz"
