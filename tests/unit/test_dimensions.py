"""`dimensions` only where it means something: the build lists the cuts whose STS stays within a point
of the full vector's, the service answers those (and the full size) and refuses the rest with a 422,
unless EMBED_ALLOW_ANY_DIMENSIONS says to truncate anyway."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from common.manifest import Manifest
from compression.evaluation.dimensions import candidates, measure
from compression.evaluation.evaluate import Embedded, EvalSet
from service.app import create_app
from service.settings import Settings
from tests.inprocess import loaded
from tests.onnx_tiny import make_model_dir


def _pairs(rng, n: int, dim: int, signal_dims: int):
    """STS pairs whose similarity lives in the first signal_dims coordinates (a Matryoshka-like model
    when small), noise elsewhere."""
    gold = rng.uniform(0, 5, n)
    u = rng.standard_normal((n, dim))
    v = rng.standard_normal((n, dim))
    v[:, :signal_dims] = u[:, :signal_dims] * gold[:, None] + rng.standard_normal((n, signal_dims)) * 2
    return u, v, gold


@pytest.mark.parametrize("signal_dims,expected", [(32, [128, 64, 32]), (256, [])])
def test_a_cut_is_supported_only_where_its_sts_holds(signal_dims, expected):
    rng = np.random.default_rng(0)
    u, v, gold = _pairs(rng, 400, 256, signal_dims)
    emb = Embedded(held_out=u[:50], sts_u=u, sts_v=v, sst_test=u[:5])
    data = EvalSet([""] * 400, [""] * 400, gold, [""] * 5)
    got = measure(emb, emb, data)
    assert got["supported"] == expected and set(got["measured"]) == {"128", "64", "32"}
    assert candidates(384) == [192, 96, 48] and candidates(48) == []
    assert measure(Embedded(held_out=u[:50]), Embedded(held_out=u[:50]), None)["supported"] == []


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("dims")
    path = make_model_dir(root / "mrl", "mrl", dim=64)
    m = Manifest.read(path)
    m.dimensions = {"supported": [32], "measured": {"32": {"stsb_spearman": 80.0}}}
    m.write(path)
    make_model_dir(root / "plain", "plain", dim=64)
    return root


@pytest.mark.parametrize("allow", [False, True])
def test_the_service_answers_supported_dimensions_only(models, allow):
    with TestClient(create_app(Settings(models_dir=models, max_wait_ms=0, allow_any_dimensions=allow))) as c:
        loaded(c)

        def ask(model, d):
            return c.post(
                "/v1/embeddings",
                json={"input": "a good movie", "model": model, "dimensions": d, "encoding_format": "float"},
            )

        assert len(ask("mrl", 32).json()["data"][0]["embedding"]) == 32
        assert len(ask("plain", 64).json()["data"][0]["embedding"]) == 64  # the full size always
        refused = ask("plain", 32)
        if allow:
            assert refused.status_code == 200 and len(refused.json()["data"][0]["embedding"]) == 32
        else:
            assert refused.status_code == 422 and "does not support dimensions 32" in refused.json()["error"]["message"]
        assert ask("mrl", 65).status_code == 422
        assert c.get("/models").json()["models"]["mrl"]["dimensions"] == [32]
