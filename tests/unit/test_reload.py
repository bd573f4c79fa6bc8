"""Hot reload's state machine in-process, on torch-free model directories (tests/onnx_tiny.py): add,
replace through the fidelity gate (an identical re-export passes, a scrambled one is refused unless
forced), remove with drain, failed loads that leave the old version serving, the admin route's
switches, versions in /models, headers and metrics, and canary routing."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.inprocess import loaded
from tests.onnx_tiny import make_model_dir

TEXTS = ["the plot of this film", "two dogs in a river"]  # not among the probe texts


@pytest.fixture()
def root(tmp_path) -> Path:
    make_model_dir(tmp_path / "models" / "tiny", "tiny")
    return tmp_path / "models"


def _client(root: Path, **settings) -> TestClient:
    return TestClient(create_app(Settings(models_dir=root, default_model="tiny", max_wait_ms=0, **settings)))


def _embed(client, model="tiny"):
    r = client.post("/embed", json={"inputs": TEXTS, "model": model})
    return r, (np.asarray(r.json()["embeddings"]) if r.status_code == 200 else None)


def _reload(client, **body):
    r = client.post("/admin/reload", json=body or None)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_new_directory_is_added_and_an_unchanged_one_left_alone(root):
    with _client(root) as c:
        loaded(c)
        first = _reload(c)
        assert first["unchanged"] == ["tiny"] and not first["added"]
        make_model_dir(root / "other", "other", seed=3)
        report = _reload(c)
        assert (
            report["added"] == ["other"]
            and report["versions"]["other"] == c.get("/models").json()["models"]["other"]["version"]
        )
        r, _ = _embed(c, "other")
        assert r.status_code == 200 and r.headers["x-model-version"] == report["versions"]["other"]
        assert (
            f'embedding_model_version_info{{model="other",version="{report["versions"]["other"]}"}} 1.0'
            in c.get("/metrics").text
        )


def test_an_identical_re_export_passes_the_gate_and_is_swapped(root):
    with _client(root) as c:
        loaded(c)
        r0, before = _embed(c)
        old_version = r0.headers["x-model-version"]
        make_model_dir(root / "tiny", "tiny", noise=1e-4)  # the same model, exported again: other bytes
        report = _reload(c)
        assert report["replaced"] == ["tiny"], report
        gate = report["gate"]["tiny"]
        assert gate["passed"] and gate["mean"] > 0.9999 and gate["probe_texts"] > 0
        r1, after = _embed(c)
        assert r1.headers["x-model-version"] == report["versions"]["tiny"] != old_version
        np.testing.assert_allclose(after, before, atol=1e-3)
        metrics = c.get("/metrics").text
        assert 'embedding_swaps_total{model="tiny",outcome="replaced"} 1.0' in metrics
        assert 'embedding_swap_fidelity{model="tiny",stat="mean"}' in metrics
        assert f'version="{old_version}"' not in metrics  # the replaced version's info series is gone


def test_a_different_model_under_the_same_name_is_refused_then_forced(root):
    with _client(root) as c:
        loaded(c)
        _embed(c)  # a live text for the gate too
        old_version = c.get("/models").json()["models"]["tiny"]["version"]
        make_model_dir(root / "tiny", "tiny", seed=99)  # scrambled weights: other vectors
        refused = _reload(c)
        assert refused["refused"] and not refused["replaced"], refused
        gate = refused["gate"]["tiny"]
        assert not gate["passed"] and gate["mean"] < 0.99 and gate["live_texts"] == len(TEXTS)
        assert "re-indexing" in refused["refused"]["tiny"]
        models = c.get("/models").json()
        assert models["models"]["tiny"]["version"] == old_version and "re-indexing" in models["refused_updates"]["tiny"]
        assert _embed(c)[0].headers["x-model-version"] == old_version  # still the old one answering
        assert 'embedding_swaps_total{model="tiny",outcome="refused"} 1.0' in c.get("/metrics").text

        forced = _reload(c, force=True)
        assert forced["replaced"] == ["tiny"] and forced["versions"]["tiny"] != old_version
        assert _embed(c)[0].headers["x-model-version"] == forced["versions"]["tiny"]
        assert "tiny" not in c.get("/models").json()["refused_updates"]


def test_a_dimension_change_is_refused_by_name(root):
    with _client(root) as c:
        loaded(c)
        make_model_dir(root / "tiny", "tiny", dim=24)
        report = _reload(c)
        assert "dimension 16 → 24" in report["refused"]["tiny"]


def test_a_removed_directory_is_drained_and_unloaded(root):
    make_model_dir(root / "gone", "gone", seed=5)
    with _client(root) as c:
        loaded(c)
        svc = c.app.state.svc
        old = svc.registry.models["gone"]
        assert _embed(c, "gone")[0].status_code == 200
        shutil.rmtree(root / "gone")
        report = _reload(c)
        assert report["removed"] == ["gone"]
        assert _embed(c, "gone")[0].status_code == 404
        deadline = time.monotonic() + 10
        while not old.batcher._closed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert old.batcher._closed and all(not t.is_alive() for t in old.batcher._threads)
        assert 'model="gone"' not in "\n".join(
            line for line in c.get("/metrics").text.splitlines() if line.startswith("embedding_model_loaded")
        )


def test_failed_loads_say_why_and_leave_the_old_version_serving(root):
    with _client(root) as c:
        loaded(c)
        version = c.get("/models").json()["models"]["tiny"]["version"]
        make_model_dir(root / "broken", "broken", seed=4)
        (root / "broken" / "model.onnx").write_bytes(b"not a graph")
        make_model_dir(root / "tiny", "tiny", noise=1e-4)
        (root / "tiny" / "model.onnx").write_bytes((root / "tiny" / "model.onnx").read_bytes()[:-10])  # half copied
        report = _reload(c)
        assert "sha256" in report["failed"]["broken"] and "sha256" in report["failed"]["tiny"]
        models = c.get("/models").json()
        assert "broken" in models["failed"] and "did not load" in models["refused_updates"]["tiny"]
        r, _ = _embed(c)
        assert r.status_code == 200 and r.headers["x-model-version"] == version


def test_admin_route_switches(root):
    with _client(root, admin_routes=False) as c:
        loaded(c)
        r = c.post("/admin/reload")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    with _client(root, api_key="k") as c:
        loaded(c)
        assert c.post("/admin/reload").status_code == 401
        assert c.post("/admin/reload", headers={"Authorization": "Bearer k"}).status_code == 200
    with _client(root) as c:
        loaded(c)
        bad = c.post("/admin/reload", json={"canary": "tiny=other"})
        assert bad.status_code == 422 and "name=candidate:share" in bad.json()["error"]["message"]
        assert c.post("/admin/reload", json={"forse": True}).status_code == 422


def test_canary_share_is_within_statistical_bounds_and_observed(root):
    make_model_dir(root / "tiny-next", "tiny-next", noise=0.05)
    with _client(root, canary="tiny=tiny-next:0.25") as c:
        loaded(c)
        n, hits = 400, 0
        for i in range(n):
            r = c.post("/embed", json={"inputs": f"text number {i}", "model": "tiny"})
            assert r.status_code == 200
            if r.headers.get("x-canary-of") == "tiny":
                assert r.headers["x-model"] == "tiny-next" and r.json()["model"] == "tiny-next"
                hits += 1
        # binomial(400, 0.25): mean 100, sd 8.7; ±5 sd fails by chance about once in 3.5 million runs
        assert 56 <= hits <= 144, hits
        _until(lambda: not c.app.state.svc.embedder._shadow_tasks)  # the background comparisons are done
        metrics = c.get("/metrics").text
        assert f'embedding_canary_requests_total{{candidate="tiny-next",model="tiny"}} {float(hits)}' in metrics
        assert 'embedding_canary_fidelity_count{candidate="tiny-next",model="tiny"}' in metrics
        assert 'embedding_canary_share{candidate="tiny-next",model="tiny"} 0.25' in metrics
        assert c.get("/models").json()["canary"] == {"tiny": {"candidate": "tiny-next", "share": 0.25}}
        cleared = _reload(c, canary="")
        assert cleared["canary"] == {}
        assert all("x-canary-of" not in c.post("/embed", json={"inputs": "x"}).headers for _ in range(40))


def test_a_swap_drops_the_replaced_versions_zero_shot_label_vectors(root):
    with _client(root) as c:
        loaded(c)
        body = {"inputs": "the movie", "labels": ["films", "dogs"], "model": "tiny"}
        assert c.post("/classify", json=body).status_code == 200
        cache = c.app.state.svc.label_cache
        assert len(cache) == 2
        make_model_dir(root / "tiny", "tiny", seed=99)
        assert _reload(c, force=True)["replaced"] == ["tiny"]
        assert len(cache) == 0  # the old version's label vectors would not match the new one's inputs


def test_under_a_canary_zero_shot_labels_come_from_the_model_that_embedded_the_inputs(root):
    from common.heads import softmax
    from tests.onnx_tiny import encode

    make_model_dir(root / "tiny-next", "tiny-next", seed=8)
    # chained rules: the candidate's own requests would be sent back to tiny; label vectors must not be
    with _client(root, canary="tiny=tiny-next:1.0,tiny-next=tiny:1.0") as c:
        loaded(c)
        labels, template = ["films", "dogs"], "This text is about {}."
        r = c.post("/classify", json={"inputs": "the movie", "labels": labels, "model": "tiny"})
        assert r.status_code == 200 and r.json()["model"] == "tiny-next"
        vecs = encode(root / "tiny-next", ["the movie"] + [template.replace("{}", lab) for lab in labels])
        want = softmax((vecs[:1] @ vecs[1:].T) / c.app.state.svc.settings.zero_shot_temperature)[0]
        got = {s["label"]: s["score"] for s in r.json()["predictions"][0]["scores"]}
        np.testing.assert_allclose([got[lab] for lab in labels], want, atol=1e-4)


def _until(condition, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_watcher_reloads_a_changed_folder_without_a_signal_under_load(root):
    """As each Kubernetes replica does when the shared volume changes: a new version that passes the gate
    is swapped in, one that does not leaves the old serving, and no request fails meanwhile."""
    import threading

    with _client(root, reload_poll_s=0.1) as c:
        loaded(c)
        failures, stop = [], threading.Event()

        def traffic():
            while not stop.is_set():
                r = c.post("/embed", json={"inputs": TEXTS, "model": "tiny"})
                if r.status_code != 200:
                    failures.append(r.status_code)

        load = threading.Thread(target=traffic)
        load.start()
        try:
            old = c.get("/models").json()["models"]["tiny"]["version"]
            make_model_dir(root / "tiny", "tiny", noise=1e-4)  # the same model, re-exported: passes the gate
            new = _until(lambda: (v := c.get("/models").json()["models"]["tiny"]["version"]) != old and v)
            make_model_dir(root / "tiny", "tiny", seed=99)  # another model: refused, the re-export serves on
            _until(lambda: "tiny" in c.get("/models").json()["refused_updates"])
            assert c.get("/models").json()["models"]["tiny"]["version"] == new
            make_model_dir(root / "added", "added", seed=3)
            _until(lambda: "added" in c.get("/models").json()["models"])
        finally:
            stop.set()
            load.join()
        assert not failures
