"""In-process throughput and latency: the ceiling the service can approach.

Each sample runs one contender at one batch shape for a fixed time; samples
of different contenders are interleaved (A B A B ...) by the caller so that
drift on a shared machine falls on all of them alike.
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


def sample(encode: Encode, pool: list[str], batch: int, seconds: float) -> dict:
    """Run batches of `batch` texts from `pool` for `seconds`; tokenization included, as served."""
    latencies: list[float] = []
    i = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(latencies) < 3:
        chunk = [pool[(i + k) % len(pool)] for k in range(batch)]
        i += batch
        t0 = time.perf_counter()
        encode(chunk)
        latencies.append(time.perf_counter() - t0)
    busy = sum(latencies)
    return {"batch": batch, "batches": len(latencies), "sentences_per_s": batch * len(latencies) / busy,
            **percentiles_ms(latencies)}
