"""Dynamic batching: concurrent requests for one model are coalesced into
onnxruntime batches bounded by a token budget and a size cap.

A request's texts wait in a bounded queue (counted in texts, so memory is
bounded). An inference thread per model (or `workers` of them) takes what is queued, sorts it by
length to cut padding, cuts it into batches whose padded size stays within the
budget, runs them, and hands each request its own vectors, in order, back on
the event loop. The thread takes the next batch the moment the last one ends,
without a round trip through the event loop: under load the loop is busy with
HTTP, and waiting for it to schedule the next batch left onnxruntime idle
(about a quarter of the time at 32 concurrent clients on 2 cores).

A request waits at most `max_wait` for company, counted from when it was
queued, and only when there is evidence of concurrent traffic (the last batch
served several requests, requests arrived while it ran, or several are
queued). A lone client never waits,
and requests that queued while the previous batch ran have waited already and
go at once, as in TEI's continuous batching.

With several workers, each takes at most one batch's worth at a time and runs it
on the shared session (onnxruntime's Run is thread-safe), each run on its own
thread (give the session one intra-op thread per worker). Batches then run side
by side instead of one batch's ops being split across threads: a core that the
event loop or the tokenizer borrows slows one batch, not every op of every
batch, which waits at each parallel op for its slowest thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .errors import ClientGone, InferenceFailed, NotReady, Overloaded
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
    future: asyncio.Future  # resolved on the event loop only
    enqueued: float
    out: np.ndarray | None = None  # written by the inference thread, read after the future resolves
    done: int = 0
    failure: Exception | None = None
    stats: BatchStats = field(default_factory=BatchStats)
    gone: threading.Event | None = None  # set when the client disconnected: dropped before batching


class Batcher:
    def __init__(
        self,
        backend: Backend,
        max_batch_size: int,
        max_batch_tokens: int,
        max_wait_s: float,
        queue_size: int,
        observer=None,
        workers: int = 1,
    ):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.backend = backend
        self.workers = workers
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self.observer = observer  # callable(batch_size, batch_tokens, inference_s) or None; thread-safe
        self._queue: deque[_Pending] = deque()  # guarded by _cond
        self._queued_items = 0
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._last_requests = 0  # requests served by the last planned round: the concurrency evidence
        self._arrived_while_busy = False  # requests were queued when the last round ended: evidence too

    @property
    def depth(self) -> int:
        return self._queued_items

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._threads = [
            threading.Thread(target=self._work, name=f"inference-{k}", daemon=True) for k in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            await asyncio.to_thread(t.join)

    def admit(self, n: int) -> None:
        """Refuse at once (before any tokenizing) when `n` more texts would overflow the queue."""
        if self._closed:
            raise NotReady("the service is shutting down")
        if self._queued_items + n > self.queue_size:
            raise Overloaded(
                f"queue full ({self._queued_items} texts waiting, limit {self.queue_size}); retry shortly",
                headers={"Retry-After": "1"},
            )

    async def submit(
        self, items: list[Tokenized], gone: threading.Event | None = None
    ) -> tuple[np.ndarray, BatchStats]:
        """Queue the items and wait for their vectors; `gone` set before a worker takes them drops them."""
        self.admit(len(items))
        assert self._loop is not None, "start() the batcher first"
        pending = _Pending(items, self._loop.create_future(), time.perf_counter(), gone=gone)
        with self._cond:
            self._queue.append(pending)
            self._queued_items += len(items)
            self._cond.notify()
        await asyncio.shield(pending.future)  # a client disconnect must not cancel work shared with others
        return pending.out, pending.stats

    def _should_wait(self) -> bool:
        """Give concurrent requests a moment to join: only if others are likely coming (see the module
        docstring) and a full batch is not already waiting."""
        concurrent = self._last_requests > 1 or len(self._queue) > 1 or self._arrived_while_busy
        return concurrent and self._queued_items < self.max_batch_size and self.max_wait_s > 0 and not self._closed

    def _plan(self, taken: list[_Pending]) -> list[list[tuple[_Pending, int]]]:
        """Sort every (request, item) by length and cut into batches within the caps."""
        flat = sorted(((p, i) for p in taken for i in range(len(p.items))), key=lambda pi: len(pi[0].items[pi[1]].ids))
        batches, current, width = [], [], 0
        for p, i in flat:
            n = len(p.items[i].ids)
            new_width = max(width, n)
            if current and (
                len(current) + 1 > self.max_batch_size or new_width * (len(current) + 1) > self.max_batch_tokens
            ):
                batches.append(current)
                current, new_width = [], n
            current.append((p, i))
            width = new_width
        if current:
            batches.append(current)
        return batches

    def _work(self) -> None:
        """The inference thread: wait for requests, take them, serve them; drain before stopping."""
        served = False
        while True:
            with self._cond:
                # a closed-loop lone client cannot send while its request runs
                self._arrived_while_busy = served and bool(self._queue)
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return  # closed and drained
                if self._should_wait():
                    deadline = self._queue[0].enqueued + self.max_wait_s
                    while (left := deadline - time.perf_counter()) > 0 and self._should_wait():
                        self._cond.wait(left)
                taken, count = [], 0
                # one worker plans several batches at once (the longest texts together); with several,
                # each takes one batch's worth so the others find work too
                limit = self.max_batch_size * (4 if self.workers == 1 else 1)
                while self._queue and count < limit:
                    p = self._queue.popleft()
                    taken.append(p)
                    count += len(p.items)
                self._queued_items -= count
                self._last_requests = len(taken)
            abandoned = [p for p in taken if p.gone is not None and p.gone.is_set()]
            if abandoned:
                self._fail(abandoned, ClientGone("the client disconnected before its request was computed"))
                taken = [p for p in taken if p.failure is None]
            try:
                self._serve(taken)
            except Exception:  # noqa: BLE001 - a bug here must fail these requests, not stop the thread
                log.exception("batcher failed serving %d requests", len(taken))
                unfinished = [p for p in taken if p.done < len(p.items)]
                self._fail(unfinished, InferenceFailed("internal batching error; retry"))
            served = True

    def _serve(self, taken: list[_Pending]) -> None:
        start = time.perf_counter()
        for p in taken:
            p.stats.queue_seconds = start - p.enqueued
        for batch in self._plan(taken):
            items = [p.items[i] for p, i in batch]
            requests = list({id(p): p for p, _ in batch}.values())  # each once, in order
            t0 = time.perf_counter()
            try:
                vecs = self.backend.run(items)
            except Exception as exc:  # noqa: BLE001 - delivered to every waiting request as a 503
                log.exception("inference failed for a batch of %d texts", len(items))
                self._fail(requests, InferenceFailed(f"inference failed for this batch ({type(exc).__name__}); retry"))
                continue
            dt = time.perf_counter() - t0
            if self.observer is not None:
                self.observer(len(items), len(items) * max(len(t.ids) for t in items), dt)
            for p in requests:
                p.stats.inference_seconds += dt
            finished = []
            for row, (p, i) in enumerate(batch):
                if p.failure is not None:
                    continue
                if p.out is None:
                    p.out = np.empty((len(p.items), vecs.shape[1]), dtype=np.float32)
                p.out[i] = vecs[row]
                p.done += 1
                if p.done == len(p.items):
                    finished.append(p)
            self._hand_back(finished)

    def _fail(self, requests: list[_Pending], failure: Exception) -> None:
        """Fail the requests not failed already; their remaining rows are skipped."""
        failed = [p for p in requests if p.failure is None]
        for p in failed:
            p.failure = failure
        self._hand_back(failed)

    def _hand_back(self, requests: list[_Pending]) -> None:
        """Resolve the requests' futures on the event loop (futures are not thread-safe)."""
        if requests:
            try:
                self._loop.call_soon_threadsafe(_resolve, requests)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _resolve(requests: list[_Pending]) -> None:
    for p in requests:
        if p.future.done():  # cancelled: the shielded future of a request the server abandoned
            continue
        if p.failure is not None:
            p.future.set_exception(p.failure)
        else:
            p.future.set_result(None)
