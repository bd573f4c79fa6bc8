"""Dynamic batching: concurrent requests for one model are coalesced into
onnxruntime batches bounded by a token budget and a size cap.

A request's texts wait in a bounded queue (counted in texts, so memory is
bounded); one worker task per model takes what is queued, sorts it by length
to cut padding, cuts it into batches whose padded size stays within the
budget, and runs each in a worker thread (off the event loop). Every text's
vector goes back to its own request, in order.

Waiting `max_wait` for more requests only pays when others are coming, so the
worker waits only when there is evidence of concurrent traffic (the last batch
served several requests, or several are already queued). A lone client never
waits: its request runs at once, as it would in-process. Under load the
batches fill while the previous one runs, as in TEI's continuous batching.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .errors import InferenceFailed, NotReady, Overloaded
from .runtime import Backend, Tokenized

log = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """What one request went through, for timing headers and metrics."""

    queue_seconds: float = 0.0
    inference_seconds: float = 0.0


@dataclass
class _Pending:
    items: list[Tokenized]
    future: asyncio.Future
    enqueued: float
    out: np.ndarray | None = None
    done: int = 0
    stats: BatchStats = field(default_factory=BatchStats)


class Batcher:
    def __init__(self, backend: Backend, max_batch_size: int, max_batch_tokens: int, max_wait_s: float,
                 queue_size: int, observer=None):
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self.observer = observer  # callable(batch_size, batch_tokens, inference_s, queue_waits) or None
        self._queue: deque[_Pending] = deque()
        self._queued_items = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task | None = None
        self._closed = False
        self._last_requests = 0  # requests served by the last planned round: the concurrency evidence

    @property
    def depth(self) -> int:
        return self._queued_items

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._worker())

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def admit(self, n: int) -> None:
        """Refuse at once (before any tokenizing) when `n` more texts would overflow the queue."""
        if self._closed:
            raise NotReady("the service is shutting down")
        if self._queued_items + n > self.queue_size:
            raise Overloaded(f"queue full ({self._queued_items} texts waiting, limit {self.queue_size}); retry shortly",
                             headers={"Retry-After": "1"})

    async def submit(self, items: list[Tokenized]) -> tuple[np.ndarray, BatchStats]:
        self.admit(len(items))
        pending = _Pending(items, asyncio.get_running_loop().create_future(), time.perf_counter())
        self._queue.append(pending)
        self._queued_items += len(items)
        self._wakeup.set()
        await asyncio.shield(pending.future)  # a client disconnect must not cancel work shared with others
        return pending.out, pending.stats

    def _should_wait(self) -> bool:
        """Give concurrent requests a moment to join: only if others are likely coming (see the module
        docstring) and a full batch is not already waiting."""
        concurrent = self._last_requests > 1 or len(self._queue) > 1
        return (concurrent and self._queued_items < self.max_batch_size and self.max_wait_s > 0
                and not self._closed)

    def _plan(self, taken: list[_Pending]) -> list[list[tuple[_Pending, int]]]:
        """Sort every (request, item) by length and cut into batches within the caps."""
        flat = sorted(((p, i) for p in taken for i in range(len(p.items))), key=lambda pi: len(pi[0].items[pi[1]].ids))
        batches, current, width = [], [], 0
        for p, i in flat:
            n = len(p.items[i].ids)
            new_width = max(width, n)
            if current and (len(current) + 1 > self.max_batch_size or new_width * (len(current) + 1) > self.max_batch_tokens):
                batches.append(current)
                current, new_width = [], n
            current.append((p, i))
            width = new_width
        if current:
            batches.append(current)
        return batches

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._should_wait():
                await asyncio.sleep(self.max_wait_s)
            taken, count = [], 0
            while self._queue and count < self.max_batch_size * 4:
                p = self._queue.popleft()
                taken.append(p)
                count += len(p.items)
            self._queued_items -= count
            self._last_requests = len(taken)
            start = time.perf_counter()
            for p in taken:
                p.stats.queue_seconds = start - p.enqueued
            for batch in self._plan(taken):
                items = [p.items[i] for p, i in batch]
                t0 = time.perf_counter()
                try:
                    vecs = await loop.run_in_executor(self._executor, self.backend.run, items)
                except Exception as exc:  # noqa: BLE001 - delivered to every waiting request as a 503
                    log.exception("inference failed for a batch of %d texts", len(items))
                    failure = InferenceFailed(f"inference failed for this batch ({type(exc).__name__}); retry")
                    for p, _ in batch:
                        if not p.future.done():
                            p.future.set_exception(failure)
                    continue
                dt = time.perf_counter() - t0
                if self.observer is not None:
                    self.observer(len(items), len(items) * max(len(t.ids) for t in items), dt)
                for p in {id(p): p for p, _ in batch}.values():
                    p.stats.inference_seconds += dt
                for row, (p, i) in enumerate(batch):
                    if p.future.done():
                        continue
                    if p.out is None:
                        p.out = np.empty((len(p.items), vecs.shape[1]), dtype=np.float32)
                    p.out[i] = vecs[row]
                    p.done += 1
                    if p.done == len(p.items):
                        p.future.set_result(None)
