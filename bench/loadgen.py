"""Async keep-alive load generator for the embedding service.

Two users: the benchmark (`drive` with one fixed request shape, measured) and
docker-compose's `loadgen` profile (the CLI below: a realistic mix of routes,
models, batch sizes and a trickle of bad requests, forever, so every
dashboard panel fills).

    python -m bench.loadgen --url http://127.0.0.1:8000 --sentences ../shared/data/stsbenchmark/sts-dev.csv
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

# A request: (path, JSON body). `make(i)` builds the i-th request of a run.
Request = tuple[str, dict]


def read_sentences(path: Path) -> list[str]:
    """Sentences from an STS-B csv (columns 5 and 6) or a plain text file (one per line)."""
    out: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 7:
            out += [cols[5], cols[6]]
        elif len(cols) == 1 and line.strip():
            out.append(line.strip())
    if not out:
        raise SystemExit(f"no sentences in {path}")
    return out


def percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    lat = np.asarray(latencies_s) * 1000
    return {f"p{q}_ms": float(np.percentile(lat, q)) for q in (50, 95, 99)}


@dataclass
class LoadResult:
    concurrency: int
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    texts: int = 0  # texts in requests answered 200
    transport_errors: int = 0

    def summary(self) -> dict:
        nan = {f"p{q}_ms": float("nan") for q in (50, 95, 99)}
        return {
            "concurrency": self.concurrency,
            "requests": len(self.latencies_s),
            "wall_s": self.wall_s,
            "requests_per_s": len(self.latencies_s) / self.wall_s if self.wall_s else 0.0,
            "sentences_per_s": self.texts / self.wall_s if self.wall_s else 0.0,
            **(percentiles_ms(self.latencies_s) if self.latencies_s else nan),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "transport_errors": self.transport_errors,
        }


async def drive(
    url: str, make: Callable[[int], Request], concurrency: int, seconds: float, headers: dict[str, str] | None = None
) -> LoadResult:
    """`concurrency` closed-loop clients on keep-alive connections for `seconds`."""
    result = LoadResult(concurrency)
    limits = httpx.Limits(max_keepalive_connections=concurrency, max_connections=concurrency)
    counter = iter(range(1 << 62))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, headers=headers) as client:
        end = time.perf_counter() + seconds

        async def client_loop() -> None:
            while time.perf_counter() < end:
                path, body = make(next(counter))
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, json=body)
                except httpx.HTTPError:
                    result.transport_errors += 1
                    continue
                result.latencies_s.append(time.perf_counter() - t0)
                result.statuses[r.status_code] += 1
                if r.status_code == 200:
                    inputs = body.get("inputs", body.get("input"))
                    result.texts += len(inputs) if isinstance(inputs, list) else 1

        start = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - start
    return result


def mixed_traffic(texts: list[str], models: list[str], seed: int = 0) -> Callable[[int], Request]:
    """Realistic traffic: mostly single sentences, some batches, every route, every model, ~1% bad input."""
    rng = random.Random(seed)

    def make(i: int) -> Request:
        model = models[i % len(models)]
        batch = [rng.choice(texts) for _ in range(rng.choice((1, 1, 1, 2, 4, 8, 16)))]
        roll = rng.random()
        if roll < 0.01:
            return "/embed", {"inputs": "", "model": model}  # rejected: empty input
        if roll < 0.015:
            return "/embed", {"inputs": "x", "model": "no-such-model"}  # rejected: unknown model
        if roll < 0.55:
            return "/embed", {"inputs": batch, "model": model}
        if roll < 0.8:
            return "/v1/embeddings", {"input": batch, "model": model}
        if roll < 0.95:
            return "/classify", {"inputs": batch, "model": model}  # the model's first head
        return "/classify", {"inputs": batch, "model": model, "labels": ["sports", "politics", "science", "food"]}

    return make


async def forever(args: argparse.Namespace) -> None:
    texts = read_sentences(args.sentences)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    make = mixed_traffic(texts, args.models, args.seed)
    async with httpx.AsyncClient(base_url=args.url, timeout=5) as probe:  # wait for the service
        for _ in range(300):
            try:
                if (await probe.get("/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1)
    rounds = 0
    while args.rounds == 0 or rounds < args.rounds:
        s = (await drive(args.url, make, args.concurrency, args.report_every, headers)).summary()
        print(
            f"{s['requests_per_s']:.1f} req/s  {s['sentences_per_s']:.1f} sent/s  p50 {s['p50_ms']:.1f} ms  "
            f"p99 {s['p99_ms']:.1f} ms  statuses {s['statuses']}",
            flush=True,
        )
        rounds += 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--sentences", type=Path, required=True, help="STS-B csv or a text file, one sentence per line")
    p.add_argument("--models", nargs="+", default=["minilm-l6-fact", "minilm-l6"])
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--report-every", type=float, default=10.0, help="seconds between printed summaries")
    p.add_argument("--rounds", type=int, default=0, help="stop after this many summaries (0: run forever)")
    p.add_argument("--api-key", default=None)
    p.add_argument("--seed", type=int, default=0)
    asyncio.run(forever(p.parse_args()))


if __name__ == "__main__":
    main()
