"""Reliability and security on a real server (tiny models): hostile input, concurrency,
overload, faults at start, a short soak, schema fuzzing. `make stress` runs the same
functions (bench/stress.py) at full size on the real models."""

from __future__ import annotations

import asyncio
import shutil
import tomllib

import httpx
import pytest

from bench import hostile, overload, soak
from bench.server import REPO, Server
from bench.stress import fuzz

pytestmark = pytest.mark.slow
MODELS = ["tiny-fact", "tiny"]
SENTENCES = ["the movie was good", "a dog runs in the city", "what is the best song", "the plot was boring"]


@pytest.fixture(scope="module")
def models(served_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    for name in MODELS:
        shutil.copytree(served_models / name, root / name)
    return root


@pytest.fixture(scope="module")
def server(models):
    with Server(models, EMBED_DEFAULT_MODEL="tiny-fact", EMBED_BODY_TIMEOUT_S="2", EMBED_LOG_LEVEL="warning") as s:
        yield s


@pytest.fixture(scope="module")
def refs(server):
    texts = overload.distinct_texts(60, seed=0)
    return {m: overload.Reference(server.url, m, texts) for m in MODELS}


@pytest.mark.parametrize("case", hostile.cases(max_body_bytes=2_000_000, body_timeout_s=2.0), ids=lambda c: c.name)
def test_hostile_input(server, case):
    result = hostile.run_case(server.url, case)
    assert result["ok"], result
    assert result["seconds"] < 25  # bounded: nothing hangs
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_memory_returns_after_hostile_inputs(server):
    before = server.rss() / 1e6
    for case in hostile.cases(2_000_000, 2.0)[:3]:  # the large ones: 1 MB string, 100k items, 100k ids
        for _ in range(3):
            hostile.run_case(server.url, case)
    assert server.rss() / 1e6 - before < 40


def test_concurrent_clients_each_get_their_own_answers(server, refs):
    result = asyncio.run(overload.concurrent_clients(server.url, MODELS, refs, clients=16, requests_per_client=8))
    assert result["sent"] == result["accepted"] == 128, result
    assert result["wrong"] == 0 and result["failed"] == 0


def test_burst_sheds_at_once_and_loses_nothing(models, tmp_path):
    with Server(
        models,
        EMBED_DEFAULT_MODEL="tiny-fact",
        EMBED_QUEUE_SIZE="8",
        EMBED_MAX_WAIT_MS="20",
        EMBED_THREADS="1",
        EMBED_LOG_LEVEL="warning",
    ) as s:
        texts = overload.distinct_texts(60, seed=1)
        refs = {m: overload.Reference(s.url, m, texts) for m in MODELS}
        r = asyncio.run(overload.burst(s.url, MODELS, refs, clients=120, requests_per_client=3, steady_s=1.0))
    b = r["burst"]
    assert b["sent"] == 360 and b["accepted"] + b["shed"] == b["sent"], b
    assert b["shed"] > 0 and b["shed_without_retry_after"] == 0
    assert b["failed"] == 0 and b["server_errors"] == 0 and b["wrong"] == 0
    assert r["healthz_during"]["failures"] == 0 and r["healthz_during"]["probes"] > 0
    assert r["after"]["p50_ms"] > 0


def test_short_soak_has_no_5xx_and_bounded_memory(server):
    r = soak.soak(server.url, server.proc.pid, SENTENCES * 10, MODELS, seconds=6, window_s=1.5, concurrency=4)
    assert r["windows"] >= 3
    assert not [k for k in r["statuses"] if k.startswith("5")], r["statuses"]
    assert r["rss_max_mb"] - r["rss_first_mb"] < 50, r["rss_mb"]


def test_truncated_and_corrupt_models_are_refused_others_serve(models, tmp_path):
    root = tmp_path / "faulty"
    shutil.copytree(models / "tiny", root / "tiny")
    for name, damage in (("truncated", lambda b: b[: len(b) // 2]), ("zeroed", lambda b: bytes(len(b)))):
        shutil.copytree(models / "tiny", root / name)
        f = root / name / "model.onnx"
        f.write_bytes(damage(f.read_bytes()))
    with Server(root, EMBED_DEFAULT_MODEL="tiny") as s:
        ready = httpx.get(s.url + "/readyz").json()
        assert ready["ready"] and ready["loaded"] == ["tiny"]
        assert set(ready["failed"]) == {"truncated", "zeroed"} and all("sha256" in v for v in ready["failed"].values())
        assert httpx.post(s.url + "/embed", json={"inputs": "x", "model": "truncated"}).status_code == 404
        assert httpx.post(s.url + "/embed", json={"inputs": "x"}).status_code == 200
        code = s.terminate()
    assert code == 0
    assert b"refusing model truncated" in s.log and b"refusing model zeroed" in s.log


def test_api_key_is_checked_and_never_logged(models):
    key = "k3y-secret-value"
    with Server(models, EMBED_DEFAULT_MODEL="tiny", EMBED_API_KEY=key, EMBED_LOG_LEVEL="debug") as s:
        for auth in ("Bearer wrong", f"Bearer {key}x", key, f"Basic {key}"):
            r = httpx.post(s.url + "/embed", json={"inputs": "x"}, headers={"Authorization": auth})
            assert r.status_code == 401 and key not in r.text
        assert httpx.post(s.url + "/embed", json={"inputs": "x"}, headers=s.auth()).status_code == 200
        s.terminate()
    assert key.encode() not in s.log and b"Authorization" not in s.log


def test_schema_fuzzing_finds_no_5xx_or_schema_violation(models):
    with Server(models, EMBED_DEFAULT_MODEL="tiny-fact", EMBED_LOG_LEVEL="warning") as s:
        result = fuzz(s.url, examples=15)
    assert result["exit_code"] == 0, "\n".join(result["summary"])


def test_dependencies_are_pinned():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    assert deps and all("==" in d for d in deps), [d for d in deps if "==" not in d]
