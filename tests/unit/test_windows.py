"""Long inputs: windows (boundaries, overlap, the special tokens each window keeps), their token-weighted
pooling, the caps, and a real request whose windows go through the batcher like any other text."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.errors import InputTooLong, PayloadTooLarge
from service.settings import Settings
from service.windows import Piece, plan, split
from tests.inprocess import loaded
from tests.onnx_tiny import encode


def test_windows_cover_the_text_with_overlap_and_keep_the_special_tokens():
    ids = np.concatenate([[101], np.arange(1000, 1025), [102]])  # [CLS] 25 content tokens [SEP]
    got = split(Piece(ids, 1, 1), max_length=10, overlap=3)
    assert all(len(w) <= 10 and w[0] == 101 and w[-1] == 102 for w in got)
    content = [w[1:-1] for w in got]
    assert content[0].tolist() == list(range(1000, 1008)) and content[1][:3].tolist() == list(range(1005, 1008))
    assert set(np.concatenate(content).tolist()) == set(range(1000, 1025))  # nothing lost
    short = split(Piece(ids[:8], 1, 1), 10, 3)
    assert len(short) == 1 and np.array_equal(short[0], ids[:8])  # a text that fits is one window, as is


def test_pooling_weights_windows_by_their_content_tokens():
    p = plan([Piece(np.arange(2, 30), 0, 0), Piece(np.arange(2, 6), 0, 0)], 16, 0, 100, 100)
    assert p.owner.tolist() == [0, 0, 1] and p.weight.tolist() == [16, 12, 4]
    vectors = np.asarray([[1, 0], [0, 1], [3, 4]], dtype=np.float32)
    pooled = p.pool(vectors, normalize=False)
    np.testing.assert_allclose(pooled[0], [16 / 28, 12 / 28], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(p.pool(vectors, normalize=True), axis=1), 1, rtol=1e-6)


def test_caps():
    with pytest.raises(InputTooLong, match="limit of 10 per text"):
        plan([Piece(np.arange(11))], 8, 0, 10, 100)
    with pytest.raises(PayloadTooLarge, match="limit of 15"):
        plan([Piece(np.arange(8)), Piece(np.arange(8))], 8, 0, 10, 15)


def test_a_long_text_is_windowed_through_the_batcher(served_models):
    text = " ".join(["the good movie was great fun"] * 30)  # ~180 tokens, max_length 48
    with TestClient(create_app(Settings(models_dir=served_models, default_model="tiny", max_wait_ms=0))) as c:
        loaded(c)
        r = c.post("/embed", json={"inputs": [text, "short one"], "truncate": False, "return_windows": True})
        assert r.status_code == 200, r.text
        body = r.json()
        windows = [np.asarray(w) for w in body["windows"]]
        assert len(windows[0]) >= 4 and len(windows[1]) == 1
        whole = np.asarray(body["embeddings"][0])
        assert abs(np.linalg.norm(whole) - 1) < 1e-5
        assert min(float(whole @ w) for w in windows[0]) > 0.5  # the pooled vector is among its windows
        np.testing.assert_allclose(body["embeddings"][1], encode(served_models / "tiny", ["short one"])[0], atol=1e-5)
        cut = c.post("/embed", json={"inputs": text}).json()["embeddings"][0]
        assert float(whole @ np.asarray(cut)) < 0.99999  # not the truncated answer
