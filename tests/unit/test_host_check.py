"""The probe set's round trip: the pipeline writes it, the service measures it on this host at load,
reports it beside the build machine's figure, and refuses a model below EMBED_MIN_HOST_FIDELITY."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient

from common import contract
from common.manifest import Manifest
from common.onnx_encoder import SERVING
from common.probe_set import PROBE_FILE, ProbeSet
from service.app import create_app
from service.registry import Registry
from service.settings import Settings
from tests.inprocess import loaded


@pytest.fixture(scope="module")
def built(tiny_models, tmp_path_factory):
    """What the pipeline wrote (the round trip's first half)."""
    out = tmp_path_factory.mktemp("host")
    for name in ("tiny", "tiny-fact"):
        shutil.copytree(tiny_models / name, out / name)
    return out


@pytest.fixture
def served(served_models):
    """Service-side checks run on the torch-free directories."""
    return served_models


def test_the_pipeline_writes_a_probe_set_and_records_the_machine(built):
    served = built
    for name in ("tiny", "tiny-fact"):
        m = Manifest.read(served / name)
        probe = ProbeSet.read(served / name)
        assert probe is not None and len(probe.texts) == m.probe["texts"] > 0
        assert probe.reference.dtype == np.float16 and probe.reference.shape == (len(probe.texts), m.dim)
        assert isinstance(m.machine["features"], list) and m.machine["cores"] >= 1
        outputs = [o.name for o in onnx.load(str(served / name / contract.MODEL_FILE)).graph.output]
        assert outputs == [contract.OUTPUT_EMBEDDING, contract.OUTPUT_POOLED]  # int8 graphs keep it too
    # the compressed variant's graph is the unpadded serving graph with its dense route, the baseline's as exported
    assert Manifest.read(served / "tiny-fact").graph == {
        "fused_attention": 2,
        "padding_removed": True,
        "dense_route": True,
        "skipped": None,
        "tanh_gelu": 2,
        "ffn_kept": 32,
    }
    assert Manifest.read(served / "tiny").graph["fused_attention"] == 0
    # both directories carry the *baseline's* embeddings of the same texts
    a, b = ProbeSet.read(served / "tiny"), ProbeSet.read(served / "tiny-fact")
    assert a.texts == b.texts
    np.testing.assert_array_equal(a.reference, b.reference)


def test_the_service_measures_what_the_pipeline_measured_on_the_same_host(built):
    served = built
    registry = Registry(None)
    registry.load_dir(served, SERVING)
    assert not registry.failed
    base, fact = registry.models["tiny"].host_fidelity, registry.models["tiny-fact"].host_fidelity
    assert base.mean == pytest.approx(1.0, abs=1e-4)
    built = Manifest.read(served / "tiny-fact").probe
    assert fact.mean == pytest.approx(built["fidelity_mean"], abs=2e-3) and fact.built_mean == built["fidelity_mean"]
    assert fact.mean < 0.99999  # a compressed model is measured, not assumed equal


def test_a_model_whose_probe_answers_moved_is_refused_below_the_floor(served, tmp_path):
    bad = tmp_path / "models"
    shutil.copytree(served / "tiny-fact", bad / "tiny-fact")
    probe = ProbeSet.read(bad / "tiny-fact")
    rng = np.random.default_rng(0)
    ProbeSet(probe.texts, rng.standard_normal(probe.reference.shape).astype(np.float16)).write(bad / "tiny-fact")

    lenient = Registry(None)
    lenient.load_dir(bad, SERVING)
    assert lenient.models["tiny-fact"].host_fidelity.mean < 0.5  # still served: no floor set

    settings = Settings(models_dir=bad, min_host_fidelity=0.9, max_wait_ms=0)
    with TestClient(create_app(settings)) as client:
        ready = loaded(client).get("/readyz").json()
        reason = client.get("/models").json()["failed"]["tiny-fact"]
    assert "below EMBED_MIN_HOST_FIDELITY 0.9" in reason and "tiny-fact" in ready["failed"]


def test_models_and_metrics_show_the_host_figures(served):
    with TestClient(create_app(Settings(models_dir=served, max_wait_ms=0))) as client:
        body = loaded(client).get("/models").json()
        metrics = client.get("/metrics").text
    assert body["host"]["features"] is not None
    fact = body["models"]["tiny-fact"]
    assert fact["host_fidelity"]["texts"] > 0 and fact["built_on"]["cores"] >= 1
    assert fact["graph"] is None  # the manifest's serving rewrites: none recorded for this hand-made directory
    assert 'embedding_model_host_fidelity{model="tiny-fact",stat="mean",where="host"}' in metrics
    assert 'embedding_model_host_fidelity{model="tiny-fact",stat="p1",where="build"}' in metrics
    assert "embedding_host_cpu_info{" in metrics


def test_a_corrupt_probe_set_is_a_load_error(served, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(served / "tiny", broken / "tiny")
    (broken / "tiny" / PROBE_FILE).write_bytes(b"not an npz")
    registry = Registry(None)
    registry.load_dir(broken, SERVING)
    assert "tiny" in registry.failed and "probe set" in registry.failed["tiny"]
