"""Validation and auth need no real server: the in-process test client on torch-free model
directories (tests/onnx_tiny.py) plus a corrupt copy. Every client mistake gets the one error shape
and its own status; the real server's behaviour under load is in tests/integration/."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.inprocess import loaded

LIMITS = dict(max_inputs=16, max_chars=2000, max_body_bytes=60000, max_tokens_per_text=80, max_tokens_per_request=150)


@pytest.fixture(scope="module")
def client(models_with_corrupt):
    with TestClient(
        create_app(Settings(models_dir=models_with_corrupt, default_model="tiny-fact", max_wait_ms=0, **LIMITS))
    ) as c:
        yield loaded(c)


@pytest.mark.parametrize(
    "body,status,fragment",
    [
        ({"inputs": []}, 422, "non-empty list"),
        ({"inputs": ""}, 422, "input 0 is empty"),
        ({"inputs": ["ok", 3]}, 422, "inputs"),
        ({"inputs": ["x"] * 17}, 422, "limit of 16"),
        ({"inputs": "y" * 2001}, 422, "limit of 2000"),
        ({"inputs": "hi", "model": "nope"}, 404, "not served"),
        ({"inputs": "hi", "model": "broken"}, 404, "failed to load"),
        ({"inputs": "good " * 100, "truncate": False}, 413, "limit of 80 per text"),
        ({"inputs": ["good " * 60] * 3, "truncate": False}, 413, "limit of 150"),
        ({"inputs": "good", "return_windows": True}, 422, "needs truncate false"),
        ({"input": "wrong field"}, 422, "inputs"),
        ({"inputs": "hi", "encoding_format": "hex"}, 422, "encoding_format"),
        ({"inputs": "hi", "normalize": "maybe"}, 422, "normalize"),
    ],
)
def test_bad_input_gets_one_error_shape(client, body, status, fragment):
    r = client.post("/embed", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"type", "message"} and fragment in err["message"]


def test_broken_json_oversized_body_and_unknown_route(client):
    r = client.post("/embed", content=b'{"inputs": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_json"
    r = client.post("/embed", json={"inputs": ["z" * 1500] * 50})
    assert r.status_code == 413 and "60000" in r.json()["error"]["message"]
    r = client.get("/nothing-here")
    assert r.status_code == 404 and "error" in r.json()
    assert client.get("/healthz").status_code == 200


def test_api_key(models_with_corrupt):
    settings = Settings(models_dir=models_with_corrupt, default_model="tiny", max_wait_ms=0, api_key="s3cret")
    with TestClient(create_app(settings)) as c:
        loaded(c)
        assert c.post("/embed", json={"inputs": "x"}).status_code == 401
        wrong = c.post("/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        assert c.post("/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/models").status_code == 401
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert c.get(open_path).status_code == 200
