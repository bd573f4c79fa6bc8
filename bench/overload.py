"""Bursts and concurrency against a running service: every accepted request must come back
correct (its own inputs' vectors, in order), every refused one at once with 429/503 and
Retry-After, and nothing may be lost."""

from __future__ import annotations

import asyncio
import base64
import random
import time

import httpx
import numpy as np

from .loadgen import percentiles_ms

# fp32 models answer the same alone or batched (padding is masked out) up to float rounding.
# Dynamic-int8 models pick activation ranges per batch, so a text's vector moves with its
# batch-mates: measured down to cosine 0.986 on the real int8 models (README, "The service").
FP32_COS, INT8_COS = 0.99999, 0.97


def vectors(r: httpx.Response, route: str) -> np.ndarray:
    body = r.json()
    rows = body["embeddings"] if route == "/embed" else [d["embedding"] for d in body["data"]]
    if rows and isinstance(rows[0], str):
        return np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in rows])
    return np.asarray(rows, dtype=np.float32)


def request_body(route: str, model: str, texts: list[str]) -> dict:
    return {"inputs": texts, "model": model} if route == "/embed" else {"input": texts, "model": model}


def distinct_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = "the a dog cat runs plays city river music song good bad film story man woman new old".split()
    return [f"{i} " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 12))) for i in range(n)]


class Reference:
    """Each text's vector asked alone, one request at a time, and how close a batched answer must be."""

    def __init__(self, url: str, model: str, texts: list[str]):
        with httpx.Client(base_url=url, timeout=60) as c:
            self.vectors = {
                t: vectors(c.post("/embed", json={"inputs": [t], "model": model}), "/embed")[0] for t in texts
            }
            described = c.get("/models").json()["models"].get(model, {})
        self.floor = INT8_COS if "int8" in str(described.get("quantization", "")) else FP32_COS
        self.texts = list(self.vectors)
        self.matrix = np.stack([self.vectors[t] for t in self.texts])

    def __iter__(self):
        return iter(self.texts)

    def matches(self, got: np.ndarray, texts: list[str]) -> tuple[bool, float]:
        """Right count, each row close to its own text's vector and nearer to it than to any other text's
        (a swapped or shifted answer fails even when the sentences are alike); and the lowest own cosine."""
        if got.shape != (len(texts), self.matrix.shape[1]):
            return False, float("nan")
        sims = got @ self.matrix.T  # (answers, reference texts)
        own = np.array([self.texts.index(t) for t in texts])
        own_sims = sims[np.arange(len(texts)), own]
        return bool(np.all(own_sims >= self.floor) and np.all(sims.argmax(1) == own)), float(own_sims.min())


async def concurrent_clients(
    url: str, models: list[str], refs: dict[str, Reference], clients: int, requests_per_client: int, seed: int = 0
) -> dict:
    """Many clients, each sending distinct texts to both routes and every model; every 200 is checked."""
    texts = {m: list(refs[m]) for m in models}
    counts = {
        "sent": 0,
        "accepted": 0,
        "shed": 0,
        "wrong": 0,
        "failed": 0,
        "server_errors": 0,
        "shed_without_retry_after": 0,
    }
    latencies: list[float] = []
    shed_latencies: list[float] = []
    reasons: dict[str, int] = {}  # why a request failed: exception type or unexpected status
    min_cos: dict[str, float] = {}  # lowest cosine of a batched answer to the same text asked alone
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one_client(k: int) -> None:
            rng = random.Random(seed * 1000 + k)
            for _ in range(requests_per_client):
                model = rng.choice(models)
                route = rng.choice(("/embed", "/v1/embeddings"))
                batch = rng.sample(texts[model], rng.randint(1, 6))
                counts["sent"] += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post(route, json=request_body(route, model, batch))
                except httpx.HTTPError as exc:
                    counts["failed"] += 1  # no answer at all: a lost request
                    reasons[type(exc).__name__] = reasons.get(type(exc).__name__, 0) + 1
                    continue
                dt = time.perf_counter() - t0
                if r.status_code == 200:
                    counts["accepted"] += 1
                    latencies.append(dt)
                    good, lowest = refs[model].matches(vectors(r, route), batch)
                    counts["wrong"] += not good
                    min_cos[model] = min(min_cos.get(model, 1.0), lowest)
                elif r.status_code in (429, 503):
                    counts["shed"] += 1
                    shed_latencies.append(dt)
                    counts["shed_without_retry_after"] += "retry-after" not in r.headers
                else:
                    counts["failed"] += 1
                    counts["server_errors"] += r.status_code >= 500
                    reasons[str(r.status_code)] = reasons.get(str(r.status_code), 0) + 1

        await asyncio.gather(*(one_client(k) for k in range(clients)))
    return {
        **counts,
        "failure_reasons": reasons,
        "min_cos_to_alone": min_cos,
        "accepted_latency": percentiles_ms(latencies) if latencies else None,
        "shed_latency": percentiles_ms(shed_latencies) if shed_latencies else None,
    }


async def health_during(url: str, stop: asyncio.Event) -> dict:
    """Probe /healthz every 50 ms until `stop`: the liveness answer must not stall under load."""
    lat, failures, reasons = [], 0, []
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                failures += (await c.get("/healthz")).status_code != 200
                lat.append(time.perf_counter() - t0)
            except httpx.HTTPError as exc:
                failures += 1
                reasons.append(f"{type(exc).__name__} after {time.perf_counter() - t0:.1f} s")
            await asyncio.sleep(0.05)
    return {
        "probes": len(lat) + failures,
        "failures": failures,
        "failure_reasons": reasons,
        **(percentiles_ms(lat) if lat else {}),
    }


def server_latency_bound(url: str, status: str, q: float) -> float | None:
    """Upper bound (a histogram bucket edge, ms) of the q-quantile of the service's own request
    latency for answers with `status`, from /metrics: what the server spent, free of client delays."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[float, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        if family.name != "embedding_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("status") == status:
                le = float(sample.labels["le"])
                counts[le] = counts.get(le, 0.0) + sample.value
    if not counts or counts[float("inf")] == 0:
        return None
    total = counts[float("inf")]
    return next(le * 1000 for le in sorted(counts) if counts[le] >= q * total)


async def steady_latency(url: str, model: str, texts: list[str], seconds: float) -> dict:
    """One client, one text per request: the service's unloaded latency."""
    lat = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        end, i = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            r = await c.post("/embed", json={"inputs": texts[i % len(texts)], "model": model})
            if r.status_code == 200:
                lat.append(time.perf_counter() - t0)
            i += 1
    return percentiles_ms(lat)


async def burst(
    url: str, models: list[str], refs: dict[str, Reference], clients: int, requests_per_client: int, steady_s: float
) -> dict:
    """Latency before, a burst of `clients` clients with /healthz probed throughout, latency after."""
    texts = list(refs[models[0]])
    before = await steady_latency(url, models[0], texts, steady_s)
    stop = asyncio.Event()
    health = asyncio.create_task(health_during(url, stop))
    t0 = time.perf_counter()
    during = await concurrent_clients(url, models, refs, clients, requests_per_client, seed=7)
    duration = time.perf_counter() - t0
    stop.set()
    after = await steady_latency(url, models[0], texts, steady_s)
    server_side = {f"status_{code}_p99_ms_at_most": server_latency_bound(url, code, 0.99) for code in ("200", "429")}
    return {
        "before": before,
        "burst": {**during, "seconds": duration},
        "healthz_during": await health,
        "after": after,
        "server_side": server_side,
    }
