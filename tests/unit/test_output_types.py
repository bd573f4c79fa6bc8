"""Compact output vectors: sentence-transformers' quantize_embeddings semantics (int8/uint8 from the
manifest's calibrated ranges, binary/ubinary packed signs), base64 of the raw bytes, a model without
ranges refused for int8/uint8, and the build's recall@10 and STS per type."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from common.manifest import Manifest
from common.output_types import calibrate, quantize, similarity
from compression.evaluation.evaluate import Embedded, EvalSet
from compression.evaluation.output_types import measure
from service.app import create_app
from service.settings import Settings
from tests.inprocess import loaded
from tests.onnx_tiny import encode, make_model_dir


def test_quantization_matches_sentence_transformers():
    from sentence_transformers.quantization import quantize_embeddings

    rng = np.random.default_rng(0)
    calib = rng.standard_normal((300, 24)).astype(np.float32)
    x = rng.standard_normal((5, 24)).astype(np.float32)
    ranges = calibrate(calib)
    st_ranges = np.stack([calib.min(0), calib.max(0)])
    for kind in ("int8", "uint8"):
        ours = quantize(x, kind, ranges)
        theirs = quantize_embeddings(x, precision=kind, ranges=st_ranges)
        assert ours.dtype == theirs.dtype and np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    for kind in ("binary", "ubinary"):
        np.testing.assert_array_equal(quantize(x, kind), quantize_embeddings(x, precision=kind))
        assert quantize(x, kind).shape == (5, 3)
    with pytest.raises(ValueError, match="unknown embedding type"):
        quantize(x, "int4")
    with pytest.raises(ValueError, match="needs calibrated ranges"):
        quantize(x, "int8")
    b = quantize(x, "binary")
    assert similarity(b, b, "binary")[0, 0] == 24  # every bit equal to itself


def test_the_build_measures_each_type():
    rng = np.random.default_rng(1)
    held = rng.standard_normal((120, 32)).astype(np.float32)
    u, v = rng.standard_normal((80, 32)), rng.standard_normal((80, 32))
    v[:, :16] = u[:, :16]
    gold = (u[:, :16] * v[:, :16]).sum(1)
    emb = Embedded(held_out=held, sts_u=u, sts_v=v, sst_test=held[:3])
    got = measure(emb, EvalSet([""] * 80, [""] * 80, gold, [""] * 3), held[:50])
    assert set(got["quality"]) == {"int8", "uint8", "binary", "ubinary"}
    assert got["quality"]["int8"]["recall_at_10"] > got["quality"]["binary"]["recall_at_10"] > 0.1
    from compression.evaluation.evaluate import spearman_x100

    full = spearman_x100(u, v, gold)
    q = got["quality"]
    assert len(got["ranges"]["min"]) == 32 and 0 < q["int8"]["stsb_spearman"] <= full + 1
    assert all("stsb_spearman" in row for row in q.values())


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("types")
    path = make_model_dir(root / "calibrated", "calibrated", dim=16)
    m = Manifest.read(path)
    m.output_types = {"ranges": calibrate(encode(path, ["a good movie", "the dog", "who is it", "bad plot"]))}
    m.write(path)
    make_model_dir(root / "old", "old", dim=16)
    with TestClient(create_app(Settings(models_dir=root, default_model="calibrated", max_wait_ms=0))) as c:
        yield loaded(c)


@pytest.mark.parametrize(
    "kind,dtype,width",
    [("int8", np.int8, 16), ("uint8", np.uint8, 16), ("binary", np.int8, 2), ("ubinary", np.uint8, 2)],
)
def test_each_type_on_both_routes_and_in_base64(client, kind, dtype, width):
    r = client.post("/embed", json={"inputs": ["a good movie"], "embedding_type": kind})
    assert r.status_code == 200, r.text
    ints = r.json()["embeddings"][0]
    assert len(ints) == width and all(isinstance(x, int) for x in ints)
    r64 = client.post("/embed", json={"inputs": ["a good movie"], "embedding_type": kind, "encoding_format": "base64"})
    assert np.frombuffer(base64.b64decode(r64.json()["embeddings"][0]), dtype=dtype).tolist() == ints
    o = client.post(
        "/v1/embeddings", json={"input": "a good movie", "embedding_type": kind, "encoding_format": "float"}
    )
    assert o.json()["data"][0]["embedding"] == ints


def test_refusals(client):
    r = client.post("/embed", json={"inputs": "x", "model": "old", "embedding_type": "int8"})
    assert r.status_code == 422 and "no calibrated ranges" in r.json()["error"]["message"]
    assert client.post("/embed", json={"inputs": "x", "model": "old", "embedding_type": "ubinary"}).status_code == 200
    assert client.post("/embed", json={"inputs": "x", "embedding_type": "int4"}).status_code == 422
