"""Hot reload on a real server under steady load: one reload adds a model, replaces one (through the
fidelity gate) and removes one while clients keep sending mixed requests; every answer is the
vector of the version its header names, or a 404 for a model not (or no longer) served — never a
5xx or a lost request. A second reload under load meets a half-copied and a scrambled replacement:
both are refused and the serving versions keep answering. Then SIGHUP reloads the same way."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.server import Server
from common.manifest import Manifest
from tests.onnx_tiny import encode, make_model_dir

pytestmark = pytest.mark.slow
TEXTS = [f"the movie {w} was good" for w in ("plot", "actor", "dog", "city", "river", "song")]


def _expected(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """(version, text → vector) of the model directory at `path` as it is now."""
    return Manifest.read(path).sha256[:12], dict(zip(TEXTS, encode(path, TEXTS)))


def _load(url: str, stop: threading.Event, models: list[str], out: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            model, text = models[int(rng.integers(len(models)))], TEXTS[int(rng.integers(len(TEXTS)))]
            if rng.random() < 0.5:
                r = client.post(url + "/embed", json={"inputs": [text], "model": model})
                vec = r.json()["embeddings"][0] if r.status_code == 200 else None
            else:
                r = client.post(
                    url + "/v1/embeddings", json={"input": text, "model": model, "encoding_format": "float"}
                )
                vec = r.json()["data"][0]["embedding"] if r.status_code == 200 else None
            out.append((time.monotonic(), model, text, r.status_code, r.headers.get("x-model-version"), vec))


def _check(answers: list, expected: dict[str, dict[str, np.ndarray]], may_404: set[str]) -> None:
    assert answers
    for _, model, text, status, version, vec in answers:
        if status == 404:
            assert model in may_404, (model, status)
            continue
        assert status == 200, (model, status)
        assert version in expected, (model, version)
        np.testing.assert_allclose(vec, expected[version][text], atol=1e-5)


@pytest.fixture()
def root(tmp_path) -> Path:
    root = tmp_path / "models"
    for name, seed in (("keep", 1), ("swap", 2), ("gone", 3)):
        make_model_dir(root / name, name, seed=seed)
    return root


def test_reload_under_load_adds_replaces_and_removes_without_a_wrong_answer(root, tmp_path):
    expected = dict(_expected(root / n) for n in ("keep", "swap", "gone"))
    old_swap_version = Manifest.read(root / "swap").sha256[:12]
    staging = tmp_path / "staging"
    make_model_dir(staging / "new", "new", seed=4)
    make_model_dir(staging / "swap", "swap", seed=2, noise=1e-3)  # a close re-export: passes the gate
    expected.update(dict(_expected(staging / n) for n in ("new", "swap")))
    new_swap_version = Manifest.read(staging / "swap").sha256[:12]

    with Server(root, EMBED_DEFAULT_MODEL="keep", EMBED_LOG_LEVEL="warning") as s:
        stop, answers = threading.Event(), []
        clients = [
            threading.Thread(target=_load, args=(s.url, stop, ["keep", "swap", "gone", "new"], answers, i))
            for i in range(6)
        ]
        for t in clients:
            t.start()
        time.sleep(1.0)
        changed = time.monotonic()
        shutil.move(str(staging / "new"), str(root / "new"))
        shutil.rmtree(root / "swap")
        shutil.move(str(staging / "swap"), str(root / "swap"))
        shutil.rmtree(root / "gone")
        report = httpx.post(s.url + "/admin/reload", timeout=60).json()
        reloaded = time.monotonic()
        time.sleep(1.5)
        stop.set()
        for t in clients:
            t.join()

        assert (report["added"], report["replaced"], report["removed"]) == (["new"], ["swap"], ["gone"]), report
        assert report["gate"]["swap"]["passed"] and report["versions"]["swap"] == new_swap_version
        _check(answers, expected, may_404={"new", "gone"})
        after = [a for a in answers if a[0] > reloaded + 0.2]
        assert {a[4] for a in after if a[1] == "swap"} == {new_swap_version}
        assert all(a[3] == 404 for a in after if a[1] == "gone") and all(a[3] == 200 for a in after if a[1] == "new")
        assert len([a for a in answers if a[1] == "keep"]) > 20
        before = [a for a in answers if a[0] < changed]  # the old set served
        assert any(a[1] == "gone" and a[3] == 200 for a in before)
        assert {a[4] for a in before if a[1] == "swap"} == {old_swap_version}

        # under the same load: a half-copied replacement of `keep` and a scrambled one of `swap` are
        # refused, and both keep answering with the versions they had
        stop, answers = threading.Event(), []
        clients = [
            threading.Thread(target=_load, args=(s.url, stop, ["keep", "swap"], answers, 10 + i)) for i in range(4)
        ]
        for t in clients:
            t.start()
        time.sleep(0.5)
        keep_version = Manifest.read(root / "keep").sha256[:12]
        make_model_dir(staging / "keep", "keep", seed=1, noise=1e-3)
        (staging / "keep" / "model.onnx").write_bytes((staging / "keep" / "model.onnx").read_bytes()[:-100])
        make_model_dir(staging / "swap2", "swap", seed=77)
        for name, src in (("keep", "keep"), ("swap", "swap2")):
            shutil.rmtree(root / name)
            shutil.move(str(staging / src), str(root / name))
        second = httpx.post(s.url + "/admin/reload", timeout=60).json()
        time.sleep(1.0)
        stop.set()
        for t in clients:
            t.join()
        assert "sha256" in second["failed"]["keep"] and "re-indexing" in second["refused"]["swap"], second
        assert second["versions"] == {"keep": keep_version, "swap": new_swap_version, "new": report["versions"]["new"]}
        _check(answers, expected, may_404=set())
        assert {a[4] for a in answers if a[1] == "keep"} == {keep_version}
        assert {a[4] for a in answers if a[1] == "swap"} == {new_swap_version}

        # SIGHUP: the same rescan, answered in the log; here it removes `new` again
        shutil.rmtree(root / "new")
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "new" in httpx.get(s.url + "/models").json()["models"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(httpx.get(s.url + "/models").json()["models"]) == {"keep", "swap"}
        assert httpx.post(s.url + "/embed", json={"inputs": "x", "model": "keep"}).status_code == 200
        assert s.proc.poll() is None  # SIGHUP did not stop the server
