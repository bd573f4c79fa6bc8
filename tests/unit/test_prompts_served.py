"""Prompts served: a model's manifest lists its prompts and the default one (what the pipeline measured
with); /embed's prompt_name (TEI's field) and the same extra field on /v1/embeddings pick another, an
unknown name is a 422 in the one error shape, and token counts include the prompt."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from common.manifest import Manifest
from service.app import create_app
from service.settings import Settings
from tests.inprocess import loaded
from tests.onnx_tiny import encode, make_model_dir

PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def prompted(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompted")
    path = make_model_dir(root / "e5ish", "e5ish", dim=16)
    manifest = Manifest.read(path)
    manifest.prompts, manifest.default_prompt_name = PROMPTS, "query"
    row = {"pairs": 10, "stsb_spearman": 80.0, "baseline_stsb_spearman": 81.0, "fidelity_p1": 0.98}
    manifest.languages = {"de": row | {"fidelity_mean": 0.995}, "ja": row | {"fidelity_mean": 0.991}}
    manifest.write(path)
    make_model_dir(root / "plain", "plain", dim=16)
    return root


@pytest.fixture(scope="module")
def client(prompted):
    with TestClient(create_app(Settings(models_dir=prompted, default_model="e5ish", max_wait_ms=0))) as c:
        yield loaded(c)


def vectors(body: dict) -> np.ndarray:
    return np.asarray(body["embeddings"] if "embeddings" in body else [d["embedding"] for d in body["data"]])


def test_the_default_prompt_is_applied_and_counted(client, prompted):
    r = client.post("/embed", json={"inputs": ["the movie was good"]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(vectors(r.json()), encode(prompted / "e5ish", ["query: the movie was good"]), atol=1e-5)
    plain = client.post("/embed", json={"inputs": ["the movie was good"], "model": "plain"}).json()
    assert r.json()["usage"]["tokens"] > plain["usage"]["tokens"]  # "query: " is tokens too


def test_a_named_prompt_on_both_routes(client, prompted):
    want = encode(prompted / "e5ish", ["passage: a dog plays"])
    r = client.post("/embed", json={"inputs": "a dog plays", "prompt_name": "passage"})
    np.testing.assert_allclose(vectors(r.json()), want, atol=1e-5)
    r = client.post("/v1/embeddings", json={"input": "a dog plays", "prompt_name": "passage"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(vectors(r.json()), want, atol=1e-5)


@pytest.mark.parametrize(
    "route,body",
    [
        ("/embed", {"inputs": "hi", "prompt_name": "search"}),
        ("/v1/embeddings", {"input": "hi", "prompt_name": "search"}),
        ("/embed", {"inputs": "hi", "model": "plain", "prompt_name": "query"}),
    ],
)
def test_an_unknown_prompt_is_a_422(client, route, body):
    r = client.post(route, json=body)
    assert r.status_code == 422, r.text
    assert f"prompt_name {body['prompt_name']!r} is not one of" in r.json()["error"]["message"]


def test_models_lists_the_prompts(client):
    models = client.get("/models").json()["models"]
    assert models["e5ish"]["prompts"] == PROMPTS and models["e5ish"]["default_prompt_name"] == "query"
    assert models["plain"]["prompts"] == {} and models["plain"]["default_prompt_name"] is None
    assert models["e5ish"]["worst_language"] == "ja" and set(models["e5ish"]["languages"]) == {"de", "ja"}
    assert models["plain"]["worst_language"] is None
