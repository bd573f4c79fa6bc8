"""A real uvicorn process on loopback serving torch-free model directories (tests/onnx_tiny.py): a baseline,
its compressed variant and a corrupt copy."""

from __future__ import annotations

import base64
import json
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from bench.server import Server

pytestmark = pytest.mark.slow

LIMITS = {"EMBED_MAX_INPUTS": "16", "EMBED_MAX_CHARS": "2000", "EMBED_MAX_BODY_BYTES": "60000"}


@pytest.fixture(scope="module")
def server(models_with_corrupt):
    with Server(models_with_corrupt, EMBED_DEFAULT_MODEL="tiny-fact", EMBED_SHADOW_RATE="1.0", **LIMITS) as s:
        yield s


def post(server, path, json=None, **kw):
    return httpx.post(server.url + path, json=json, timeout=30, **kw)


def test_health_ready_and_models(server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz").json()
    assert ready["ready"] and ready["loaded"] == ["tiny", "tiny-fact"]
    assert "sha256" in ready["failed"]["broken"]  # the corrupt copy is refused, the others serve
    models = httpx.get(server.url + "/models").json()
    assert models["default"] == "tiny-fact" and set(models["models"]) == {"tiny", "tiny-fact"}
    fact = models["models"]["tiny-fact"]
    assert fact["baseline"] == "tiny" and fact["bytes"]["file"] > 0 and "stsb_spearman" in fact["quality"]
    v1 = httpx.get(server.url + "/v1/models").json()
    assert {m["id"] for m in v1["data"]} == {"tiny", "tiny-fact"}


def test_embed_float_and_base64_agree(server):
    texts = ["the movie was good", "a dog runs in the city"]
    f = post(server, "/embed", {"inputs": texts})
    b = post(server, "/embed", {"inputs": texts, "encoding_format": "base64"})
    assert f.status_code == b.status_code == 200
    fb, bb = f.json(), b.json()
    assert fb["model"] == "tiny-fact" and fb["dim"] == 64 and fb["usage"]["tokens"] > 0
    floats = np.asarray(fb["embeddings"], dtype=np.float32)
    decoded = np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in bb["embeddings"]])
    assert np.array_equal(floats, decoded)
    np.testing.assert_allclose(np.linalg.norm(floats, axis=1), 1.0, atol=1e-5)
    for header in ("x-total-time", "x-queue-time", "x-inference-time", "x-tokenization-time"):
        assert float(f.headers[header]) >= 0
    single = post(server, "/embed", {"inputs": texts[0], "model": "tiny"}).json()
    assert single["model"] == "tiny" and len(single["embeddings"]) == 1


def test_embed_takes_the_dimensions_the_build_measured(server):
    full = np.asarray(post(server, "/embed", {"inputs": ["great actors"], "model": "tiny"}).json()["embeddings"])
    r = post(server, "/embed", {"inputs": ["great actors"], "model": "tiny", "dimensions": 32})
    cut = np.asarray(r.json()["embeddings"])
    assert r.status_code == 200 and r.json()["dim"] == 32
    np.testing.assert_allclose(cut[0], full[0, :32] / np.linalg.norm(full[0, :32]), atol=1e-5)
    for body, reason in (
        ({"dimensions": 16}, "does not support dimensions 16"),
        ({"dimensions": 32, "normalize": False}, "dimensions needs normalize true"),
        ({"dimensions": 0}, "dimensions"),
    ):
        r = post(server, "/embed", {"inputs": ["great actors"], "model": "tiny", **body})
        assert r.status_code == 422 and reason in r.json()["error"]["message"], r.json()


def test_truncation_keeps_long_inputs_working(server):
    r = post(server, "/embed", {"inputs": "good " * 100})
    assert r.status_code == 200 and r.json()["usage"]["tokens"] == 48


def test_openai_client(server):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused")
    one = client.embeddings.create(model="tiny-fact", input="the plot was boring")  # base64 by default
    floats = client.embeddings.create(
        model="tiny-fact", input=["the plot was boring", "great actors"], encoding_format="float"
    )
    assert len(one.data) == 1 and len(floats.data) == 2 and [d.index for d in floats.data] == [0, 1]
    # Dynamic int8 picks activation ranges per batch, so batch-mates move a vector by ~1e-5.
    np.testing.assert_allclose(
        np.asarray(one.data[0].embedding, np.float32), np.asarray(floats.data[0].embedding, np.float32), atol=1e-3
    )
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0
    assert floats.model == "tiny-fact"
    full = client.embeddings.create(model="tiny", input="great actors", dimensions=64, encoding_format="float")
    assert len(full.data[0].embedding) == 64
    with pytest.raises(Exception) as exc:  # a cut the build did not measure as supported: 422
        client.embeddings.create(model="tiny", input="great actors", dimensions=16)
    assert "does not support dimensions 16" in str(exc.value)
    with pytest.raises(Exception) as exc:
        client.embeddings.create(model="missing", input="x")
    assert "not served" in str(exc.value)


def test_concurrent_requests_get_their_own_answers(server):
    rng = np.random.default_rng(0)
    words = "the a movie film good bad great plot actor story fun boring dog cat city river".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(2, 12)))) + f" {i}" for i in range(48)]
    for model, atol in (("tiny", 1e-5), ("tiny-fact", 2e-3)):
        # fp32 must match to rounding; dynamic int8 picks activation ranges per batch, so batch-mates
        # move a compressed model's vector slightly (and every answer must still be its own text's).
        alone = {
            t: np.asarray(post(server, "/embed", {"inputs": t, "model": model}).json()["embeddings"][0]) for t in texts
        }
        with ThreadPoolExecutor(24) as pool:
            answers = list(
                pool.map(
                    lambda t, m=model: (t, post(server, "/embed", {"inputs": [t, t + " again"], "model": m})),
                    texts * 2,
                )
            )
        for text, r in answers:
            assert r.status_code == 200
            got = np.asarray(r.json()["embeddings"][0])
            np.testing.assert_allclose(got, alone[text], atol=atol)
            best = max(alone, key=lambda t: float(alone[t] @ got))
            assert best == text or np.allclose(alone[best], alone[text], atol=atol)


def test_zero_shot_classify(server):
    r = post(
        server,
        "/classify",
        {"inputs": ["the movie was great", "where is the river"], "labels": ["movies", "places"], "top_k": 1},
    )
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 2 and all(len(p["scores"]) == 1 and 0 <= p["score"] <= 1 for p in preds)
    full = post(server, "/classify", {"inputs": "a dog", "labels": ["animals", "music", "cities"]}).json()
    assert abs(sum(s["score"] for s in full["predictions"][0]["scores"]) - 1) < 1e-5
    for body, status in [
        ({"inputs": "x", "labels": ["one"]}, 422),
        ({"inputs": "x", "labels": ["a", " "]}, 422),
        ({"inputs": "x", "labels": ["a", "b"], "head": "sentiment"}, 422),
        ({"inputs": "x", "labels": ["a", "a"]}, 422),
        ({"inputs": "x", "head": "weather"}, 404),
        ({"inputs": [], "head": "sentiment"}, 422),
    ]:
        r = post(server, "/classify", body)
        assert r.status_code == status and "error" in r.json(), (body, r.text)


def test_trained_head_equals_head_applied_in_process(server, models_with_corrupt):
    from common.heads import load_heads

    texts = ["the movie was great fun", "boring plot and awful actors", "where is the river"]
    r = post(server, "/classify", {"inputs": texts, "head": "sentiment"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["head"] == "sentiment" and body["model"] == "tiny-fact"
    head = load_heads(models_with_corrupt / "tiny-fact")["sentiment"]
    vecs = np.asarray(post(server, "/embed", {"inputs": texts}).json()["embeddings"], dtype=np.float32)
    expected = head.probabilities(vecs)
    for row, pred in zip(expected, body["predictions"]):
        assert pred["label"] == head.labels[int(row.argmax())]
        got = {s["label"]: s["score"] for s in pred["scores"]}
        np.testing.assert_allclose([got[lab] for lab in head.labels], row, atol=2e-3)  # int8 batch-mates
    default = post(server, "/classify", {"inputs": "fun", "top_k": 1}).json()  # first head by default
    assert default["head"] in {"question-type", "sentiment"} and len(default["predictions"][0]["scores"]) == 1
    qt = post(server, "/classify", {"inputs": "who is the man", "head": "question-type", "model": "tiny"}).json()
    assert {s["label"] for s in qt["predictions"][0]["scores"]} == {
        "abbreviation",
        "description",
        "entity",
        "human",
        "location",
        "numeric",
    }
    models = httpx.get(server.url + "/models").json()["models"]
    assert models["tiny-fact"]["heads"]["sentiment"]["labels"] == ["negative", "positive"]


def test_metrics_carry_every_series(server):
    post(server, "/embed", {"inputs": ["metrics please"]})
    post(server, "/embed", {"inputs": ["metrics please"], "model": "tiny"})
    text = httpx.get(server.url + "/metrics").text
    for series in [
        'embedding_requests_total{endpoint="/embed",model="tiny-fact",status="200"}',
        'embedding_request_duration_seconds_bucket{endpoint="/embed",le=',
        'embedding_queue_wait_seconds_count{model="tiny"}',
        'embedding_tokenization_seconds_count{model="tiny-fact"}',
        'embedding_inference_seconds_count{model="tiny-fact"}',
        'embedding_batch_size_bucket{le="1.0",model="tiny"}',
        'embedding_batch_tokens_count{model="tiny-fact"}',
        'embedding_failures_total{model="unknown",type="model_not_found"}',
        'embedding_model_parameters{model="tiny-fact",part="embedding"}',
        'embedding_model_file_bytes{model="tiny"}',
        'embedding_model_embedding_bytes{model="tiny-fact"}',
        'embedding_model_compression_ratio{baseline="tiny",model="tiny-fact"}',
        'embedding_model_quality{metric="stsb_spearman",model="tiny-fact"}',
        'embedding_model_resident_memory_bytes{model="tiny"}',
        "embedding_process_resident_memory_bytes",
        'embedding_model_loaded{model="broken"} 0.0',
        'embedding_queue_depth{model="tiny-fact"}',
        'embedding_shadow_fidelity_count{baseline="tiny",model="tiny-fact"}',
        'embedding_classify_labels_total{head="sentiment",label=',
    ]:
        assert series in text, series


def test_backpressure_sheds_with_429_and_stays_healthy(served_models):
    with Server(served_models, EMBED_DEFAULT_MODEL="tiny", EMBED_QUEUE_SIZE="4", EMBED_MAX_WAIT_MS="200") as s:
        with ThreadPoolExecutor(32) as pool:
            rs = list(pool.map(lambda i: post(s, "/embed", {"inputs": [f"flood {i}", "more"]}), range(64)))
        codes = [r.status_code for r in rs]
        assert set(codes) <= {200, 429} and 429 in codes and 200 in codes
        shed = next(r for r in rs if r.status_code == 429)
        assert shed.headers["retry-after"] == "1" and shed.json()["error"]["type"] == "overloaded"
        assert httpx.get(s.url + "/healthz").status_code == 200
        assert post(s, "/embed", {"inputs": "after the flood"}).status_code == 200


def test_sigterm_finishes_in_flight_requests(served_models):
    s = Server(served_models, EMBED_DEFAULT_MODEL="tiny", EMBED_MAX_WAIT_MS="1500", EMBED_MAX_BATCH_SIZE="256").start()
    try:
        results: list[object] = []

        def call(i):
            try:
                results.append(post(s, "/embed", {"inputs": [f"in flight {i}"] * 8}).status_code)
            except httpx.HTTPError as exc:
                results.append(repr(exc))

        # concurrent requests that may be waiting in the batcher (max wait 1.5 s) when SIGTERM comes,
        # and one that surely is in flight: its body arrives half before the signal, half after
        threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        body = json.dumps({"inputs": ["slow body"] * 4}).encode()
        slow = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        slow.sendall(
            b"POST /embed HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
        )
        time.sleep(0.5)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.HTTPError):  # draining: the listening socket is closed to new clients
            httpx.post(s.url + "/embed", json={"inputs": "late"}, timeout=5)
        slow.sendall(body[10:])
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
        code = s.proc.wait(30)  # one SIGTERM, as Kubernetes and Docker send it
        log = s.output()
        for t in threads:
            t.join(30)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert len(json.loads(answer.split(b"\r\n\r\n", 1)[1])["embeddings"]) == 4
        assert results == [200] * 12, results
        assert code == 0  # a drained shutdown exits cleanly
        assert b"Application shutdown complete" in log
    finally:
        s.stop()
