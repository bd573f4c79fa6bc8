"""The real service over HTTP: one `python -m service` per model on loopback, driven by the
async keep-alive load generator."""
from __future__ import annotations

import asyncio
import os
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import psutil

from .contenders import Contender
from .loadgen import drive
from .server import Server


@contextmanager
def services(contenders: list[Contender]) -> Iterator[dict[str, Server]]:
    """One server per ONNX contender, each serving only that model with the default settings."""
    with ExitStack() as stack:
        out = {}
        for c in contenders:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            os.symlink(c.path.resolve(), root / c.name)
            out[c.name] = stack.enter_context(Server(root, EMBED_DEFAULT_MODEL=c.name, EMBED_THREADS="0",
                                                     EMBED_LOG_LEVEL="warning", EMBED_QUEUE_SIZE="4096"))
        for s in out.values():
            for _ in range(10):  # warm the HTTP path
                httpx.post(s.url + "/embed", json={"inputs": "warm up"}, timeout=30)
        yield out


def rss(server: Server) -> int:
    assert server.proc is not None
    return psutil.Process(server.proc.pid).memory_info().rss


def sample(server: Server, texts: list[str], concurrency: int, seconds: float, batch: int = 1) -> dict:
    """`concurrency` clients for `seconds`; each request carries `batch` texts (1: a bare string)."""
    def make(i: int) -> tuple[str, dict]:
        if batch == 1:
            return "/embed", {"inputs": texts[i % len(texts)]}
        return "/embed", {"inputs": [texts[(i * batch + k) % len(texts)] for k in range(batch)]}

    result = asyncio.run(drive(server.url, make, concurrency, seconds)).summary()
    return {**result, "batch": batch}
