"""normalize=false returns the pooled vector before L2 normalisation (the graph's `pooled` output), as
TEI does; normalize=true (and the OpenAI route) unit vectors; a graph without that output says so in
a 422 instead of silently answering with unit vectors. Torch-free model directories (tests/onnx_tiny.py)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.inprocess import loaded
from tests.onnx_tiny import make_model_dir


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("normalize")
    make_model_dir(root / "pooled", "pooled")
    make_model_dir(root / "unit-only", "unit-only", pooled=False)
    make_model_dir(root / "raw", "raw", normalize=False)  # a source without a Normalize module
    with TestClient(create_app(Settings(models_dir=root, default_model="pooled", max_wait_ms=0))) as c:
        yield loaded(c)


def _embed(client, **body):
    return client.post("/embed", json={"inputs": ["the movie", "a dog runs"], **body})


def test_normalize_false_is_the_pooled_vector_and_true_its_unit_direction(client):
    raw = np.asarray(_embed(client, normalize=False).json()["embeddings"])
    unit = np.asarray(_embed(client).json()["embeddings"])
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1.0) > 0.05), norms  # really the un-normalised mean of token rows
    np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    openai = client.post(
        "/v1/embeddings", json={"input": ["the movie", "a dog runs"], "model": "pooled", "encoding_format": "float"}
    ).json()
    np.testing.assert_allclose([d["embedding"] for d in openai["data"]], unit, atol=1e-6)


def test_a_graph_with_only_unit_vectors_refuses_normalize_false_by_name(client):
    r = _embed(client, normalize=False, model="unit-only")
    assert r.status_code == 422 and "'pooled' output" in r.json()["error"]["message"], r.text
    assert _embed(client, model="unit-only").status_code == 200


def test_a_source_without_normalize_answers_its_raw_vector(client):
    raw = np.asarray(_embed(client, normalize=False, model="raw").json()["embeddings"])
    unit = np.asarray(_embed(client, model="raw").json()["embeddings"])
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1.0) > 0.05), norms
    np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-6)
    zero_shot = client.post("/classify", json={"inputs": "the movie", "labels": ["films", "dogs"], "model": "raw"})
    assert zero_shot.status_code == 200, zero_shot.text
