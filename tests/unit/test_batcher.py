"""The dynamic batcher on the model-free FixedBackend: order, caps, backpressure, shutdown."""

import asyncio
import time

import numpy as np
import pytest

from service.batcher import Batcher
from service.errors import InferenceFailed, NotReady, Overloaded
from service.runtime import FixedBackend


class Recording(FixedBackend):
    def __init__(self):
        super().__init__(dim=8, max_length=64)
        self.batches: list[list[int]] = []

    def run(self, batch):
        self.batches.append([len(t.ids) for t in batch])
        return super().run(batch)


def run(coro):
    return asyncio.run(coro)


def test_each_request_gets_its_own_vectors_in_order():
    backend = Recording()

    async def main():
        b = Batcher(backend, max_batch_size=8, max_batch_tokens=10_000, max_wait_s=0.01, queue_size=1000)
        b.start()
        texts = [[f"w{i} " * (1 + (i * 7) % 13) + f"r{j}" for j in range(1 + i % 4)] for i in range(30)]
        results = await asyncio.gather(*(b.submit(backend.tokenize(t, True)) for t in texts))
        await b.close()
        return texts, results

    texts, results = run(main())
    batches = list(backend.batches)
    for t, (vecs, stats) in zip(texts, results):
        np.testing.assert_array_equal(vecs, backend.run(backend.tokenize(t, True)))
        assert stats.queue_seconds >= 0 and stats.inference_seconds > 0
    assert len(batches) < 30  # requests were coalesced
    assert all(len(b) <= 8 for b in batches)
    assert all(b == sorted(b) for b in batches)  # sorted by length to cut padding


def test_token_budget_bounds_padded_size():
    backend = Recording()

    async def main():
        b = Batcher(backend, max_batch_size=64, max_batch_tokens=40, max_wait_s=0.01, queue_size=1000)
        b.start()
        await asyncio.gather(*(b.submit(backend.tokenize(["x " * n], True)) for n in range(1, 20)))
        await b.close()

    run(main())
    assert all(len(b) * max(b) <= 40 or len(b) == 1 for b in backend.batches)


def test_full_queue_raises_overloaded_at_once():
    backend = FixedBackend()

    async def main():
        b = Batcher(backend, max_batch_size=4, max_batch_tokens=1000, max_wait_s=0.2, queue_size=3)
        b.start()
        first = asyncio.ensure_future(b.submit(backend.tokenize(["a", "b", "c"], True)))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as exc:
            await b.submit(backend.tokenize(["d"], True))
        assert exc.value.headers["Retry-After"] == "1"
        await first
        await b.close()
        with pytest.raises(NotReady):
            await b.submit(backend.tokenize(["e"], True))

    run(main())


def test_backend_failure_reaches_every_waiting_request():
    class Broken(FixedBackend):
        def run(self, batch):
            raise RuntimeError("onnxruntime exploded")

    backend = Broken()

    async def main():
        b = Batcher(backend, max_batch_size=8, max_batch_tokens=1000, max_wait_s=0.01, queue_size=100)
        b.start()
        results = await asyncio.gather(
            *(b.submit(backend.tokenize([f"t{i}"], True)) for i in range(5)), return_exceptions=True
        )
        await b.close()
        return results

    assert all(isinstance(r, InferenceFailed) for r in run(main()))


def test_lone_request_does_not_wait_but_concurrent_ones_are_coalesced():
    """max_wait is long here (3 s): a lone client must not pay it; once traffic is concurrent the
    batcher waits for company, so a second wave of requests shares one batch."""
    backend = Recording()

    async def main():
        b = Batcher(backend, max_batch_size=64, max_batch_tokens=10_000, max_wait_s=3.0, queue_size=1000)
        b.start()
        await asyncio.wait_for(b.submit(backend.tokenize(["alone"], True)), timeout=1.5)
        assert len(backend.batches) == 1
        # Two requests queued together are evidence of concurrency: they are served in one batch.
        await asyncio.wait_for(
            asyncio.gather(*(b.submit(backend.tokenize([f"t{i}"], True)) for i in range(2))), timeout=15
        )
        await b.close()

    run(main())
    assert [len(x) for x in backend.batches] == [1, 2]


def test_next_batch_starts_while_the_event_loop_is_busy():
    """The inference thread takes the next batch itself: a busy event loop (HTTP under load) must
    not leave onnxruntime idle between batches."""

    class Slow(Recording):
        def __init__(self):
            super().__init__()
            self.started: list[float] = []

        def run(self, batch):
            self.started.append(time.perf_counter())
            time.sleep(0.05)
            return super().run(batch)

    backend = Slow()

    async def main():
        b = Batcher(backend, max_batch_size=1, max_batch_tokens=1000, max_wait_s=0.001, queue_size=100)
        b.start()
        tasks = [asyncio.ensure_future(b.submit(backend.tokenize([f"t{i}"], True))) for i in range(3)]
        await asyncio.sleep(0.01)  # every request is queued
        time.sleep(0.5)  # the event loop is busy: no callback, no coroutine runs
        unblocked = time.perf_counter()
        results = await asyncio.gather(*tasks)
        await b.close()
        return unblocked, results

    unblocked, results = run(main())
    assert len(backend.started) == 3 and all(t < unblocked for t in backend.started)
    assert all(vecs.shape == (1, 8) for vecs, _ in results)


def test_a_failing_observer_fails_its_requests_and_the_batcher_keeps_serving():
    backend = FixedBackend()
    calls = []

    def observer(size, tokens, seconds):
        calls.append(size)
        if len(calls) == 1:
            raise ValueError("metrics exploded")

    async def main():
        b = Batcher(backend, max_batch_size=8, max_batch_tokens=1000, max_wait_s=0.0, queue_size=100, observer=observer)
        b.start()
        with pytest.raises(InferenceFailed):
            await asyncio.wait_for(b.submit(backend.tokenize(["first"], True)), timeout=5)
        vecs, _ = await asyncio.wait_for(b.submit(backend.tokenize(["second"], True)), timeout=5)
        await b.close()
        return vecs

    assert run(main()).shape == (1, 8)


class Overlapping(FixedBackend):
    """Records how many runs are in flight at once (each run takes a few ms, off the GIL in sleep)."""

    def __init__(self):
        super().__init__(dim=8, max_length=64)
        self.active = 0
        self.most = 0
        self.sizes: list[int] = []
        import threading

        self.lock = threading.Lock()

    def run(self, batch):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
            self.sizes.append(len(batch))
        time.sleep(0.005)
        try:
            return super().run(batch)
        finally:
            with self.lock:
                self.active -= 1


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_run_batches_side_by_side_and_every_answer_is_its_own(workers):
    backend = Overlapping()

    async def main():
        b = Batcher(
            backend, max_batch_size=4, max_batch_tokens=10_000, max_wait_s=0.001, queue_size=1000, workers=workers
        )
        b.start()
        texts = [[f"w{i} " * (1 + i % 9), f"q{i}"] for i in range(60)]
        results = await asyncio.gather(*(b.submit(backend.tokenize(t, True)) for t in texts))
        await b.close()
        return texts, results

    texts, results = run(main())
    for t, (vecs, _) in zip(texts, results):
        np.testing.assert_array_equal(vecs, FixedBackend(dim=8, max_length=64).run(backend.tokenize(t, True)))
    assert backend.most == workers  # one worker never overlaps itself; two do overlap
    assert all(n <= 4 for n in backend.sizes)


def test_workers_must_be_positive():
    with pytest.raises(ValueError):
        Batcher(FixedBackend(), 4, 100, 0.0, 10, workers=0)
