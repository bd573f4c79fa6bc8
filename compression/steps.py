"""Each build step's wall time and the process's peak memory so far: logged at INFO when the step
starts and ends (a long build is never silent in a log without progress bars) and kept for the
manifest's `steps`."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger("compression.steps")


def peak_rss_mb() -> int:
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


@dataclass
class StepLog:
    variant: str
    records: list[dict] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("%s: %s …", self.variant, name)
        start = time.perf_counter()
        yield
        record = {"step": name, "seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": peak_rss_mb()}
        self.records.append(record)
        log.info(
            "%s: %s done in %.0f s (peak RSS so far %d MB)",
            self.variant,
            name,
            record["seconds"],
            record["peak_rss_mb"],
        )
