"""What one benchmark run measures: the full preset and the ~1-minute quick one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    seconds: float  # duration of one in-process or HTTP sample
    reps: int  # repetitions of every sample, interleaved across contenders (A B A B ...)
    slices: int  # turns each in-process sample is cut into, taken in turn across contenders
    batches: tuple[int, ...]  # in-process batch sizes
    mixed_batch: int  # batch size of the mixed-length sample (1–4 sentences joined per text)
    concurrencies: tuple[int, ...]  # HTTP clients, one sentence per request
    http_batch: int  # texts per request in the batched-request HTTP mode
    http_batch_concurrency: int
    memory_reps: int  # fresh processes per contender for memory and cold start
    memory_batches: int  # batch-32 runs during which peak memory is taken
    sentences: int  # STS-B test sentences in the pool


FULL = BenchConfig(
    seconds=3.0,
    reps=3,
    slices=6,
    batches=(1, 8, 32),
    mixed_batch=32,
    concurrencies=(1, 8, 32, 64),
    http_batch=16,
    http_batch_concurrency=8,
    memory_reps=2,
    memory_batches=20,
    sentences=2000,
)
QUICK = BenchConfig(
    seconds=0.3,
    reps=1,
    slices=2,
    batches=(1, 32),
    mixed_batch=8,
    concurrencies=(1, 8),
    http_batch=8,
    http_batch_concurrency=2,
    memory_reps=1,
    memory_batches=2,
    sentences=200,
)
