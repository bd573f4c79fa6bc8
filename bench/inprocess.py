"""In-process throughput and latency: the ceiling the service can approach.

Each sample runs one contender at one batch shape for a fixed time. `interleaved` cuts each
contender's sample into slices taken in turn (A B C A B C ...), so drift on a shared machine falls
on all of them alike, even within one repetition.
"""

from __future__ import annotations

import random
import time

from .contenders import Encode
from .loadgen import percentiles_ms


def mixed_texts(texts: list[str], n: int, seed: int) -> list[str]:
    """Texts of 1–4 joined sentences: a batch whose lengths vary as real traffic does."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(texts) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def _timed(encode: Encode, pool: list[str], batch: int, seconds: float, start: int = 0) -> list[float]:
    """Latencies of back-to-back batches of `batch` texts from `pool` for `seconds` (at least 3);
    tokenization included, as served."""
    latencies: list[float] = []
    i = start
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(latencies) < 3:
        chunk = [pool[(i + k) % len(pool)] for k in range(batch)]
        i += batch
        t0 = time.perf_counter()
        encode(chunk)
        latencies.append(time.perf_counter() - t0)
    return latencies


def _summary(batch: int, latencies: list[float]) -> dict:
    return {
        "batch": batch,
        "batches": len(latencies),
        "sentences_per_s": batch * len(latencies) / sum(latencies),
        **percentiles_ms(latencies),
    }


def sample(encode: Encode, pool: list[str], batch: int, seconds: float) -> dict:
    """One contender alone for `seconds`."""
    return _summary(batch, _timed(encode, pool, batch, seconds))


def interleaved(
    encoders: dict[str, Encode], pool: list[str], batch: int, seconds: float, slices: int
) -> dict[str, dict]:
    """Each contender (in the dict's order) for `seconds` in all, in `slices` turns of seconds/slices;
    every turn goes on through the pool where that contender's last one stopped."""
    latencies: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(slices):
        for name, encode in encoders.items():
            latencies[name] += _timed(encode, pool, batch, seconds / slices, start=len(latencies[name]) * batch)
    return {name: _summary(batch, lat) for name, lat in latencies.items()}
