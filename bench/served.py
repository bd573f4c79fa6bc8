"""The real service over HTTP: one `python -m service` per model on loopback, driven by the
async keep-alive load generator."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

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
            out[c.name] = stack.enter_context(Server(root, EMBED_DEFAULT_MODEL=c.name, **SERVER_OVERRIDES))
        for s in out.values():
            for _ in range(10):  # warm the HTTP path
                httpx.post(s.url + "/embed", json={"inputs": "warm up"}, timeout=30)
        yield out


SERVER_OVERRIDES = {"EMBED_THREADS": "0", "EMBED_LOG_LEVEL": "warning", "EMBED_QUEUE_SIZE": "4096"}


def server_settings() -> dict:
    """The batching and threading settings the benchmark's servers run with (the environment's
    EMBED_* values over the defaults, as the servers read them), for the report."""
    from service.settings import Settings

    s = Settings(**{k.removeprefix("EMBED_").lower(): v for k, v in SERVER_OVERRIDES.items()})
    return {
        "workers": s.workers,
        "threads": s.session_config().threads,
        "gil_switch_ms": s.gil_switch_ms,
        "max_wait_ms": s.max_wait_ms,
        "max_batch_size": s.max_batch_size,
    }


def model_resident(server: Server, model: str) -> float | None:
    """The resident bytes the service says loading and warming `model` added (its
    embedding_model_resident_memory_bytes gauge); the rest of its RSS is the service without a model."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "embedding_model_resident_memory_bytes":
            return next((s.value for s in family.samples if s.labels.get("model") == model), None)
    return None


WRK_SCRIPT = Path(__file__).with_name("wrk.lua")


def load_generator() -> str:
    """wrk (C, epoll, keep-alive) where installed: on a 2-core machine a Python client takes
    almost a core of its own and caps what the service can show; else the httpx one."""
    return "wrk" if shutil.which("wrk") else "httpx"


def sample(
    server: Server,
    texts: list[str],
    concurrency: int,
    seconds: float,
    batch: int = 1,
    openai: tuple[str, str] | None = None,
) -> dict:
    """`concurrency` clients for `seconds`; each request carries `batch` texts (1: a bare string).
    openai: (path, model) to send OpenAI-style bodies there instead of /embed (any server's route)."""
    if load_generator() == "wrk":
        return _wrk(server, texts, concurrency, seconds, batch, openai)

    def make(i: int) -> tuple[str, dict]:
        chunk = texts[i % len(texts)] if batch == 1 else [texts[(i * batch + k) % len(texts)] for k in range(batch)]
        if openai is not None:
            return openai[0], {"input": chunk, "model": openai[1]}
        return "/embed", {"inputs": chunk}

    result = asyncio.run(drive(server.url, make, concurrency, seconds)).summary()
    return {**result, "batch": batch, "generator": "httpx"}


def _wrk(
    server: Server,
    texts: list[str],
    concurrency: int,
    seconds: float,
    batch: int,
    openai: tuple[str, str] | None = None,
) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write("\n".join(t.replace("\n", " ") for t in texts) + "\n")
        f.flush()
        cmd = [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(WRK_SCRIPT),
            server.url,
            "--",
            f.name,
            str(batch),
            *(openai or ()),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed: {out.stderr.strip() or out.stdout[-300:]}")
    r = json.loads(lines[-1])
    ok = r["requests"] - r["non_2xx"]
    return {
        "concurrency": concurrency,
        "batch": batch,
        "requests": r["requests"],
        "wall_s": r["wall_s"],
        "requests_per_s": r["requests"] / r["wall_s"],
        "sentences_per_s": ok * batch / r["wall_s"],
        "p50_ms": r["p50_ms"],
        "p95_ms": r["p95_ms"],
        "p99_ms": r["p99_ms"],
        "statuses": {"200": ok, **({"non-2xx": r["non_2xx"]} if r["non_2xx"] else {})},
        "transport_errors": r["transport_errors"],
        "generator": "wrk",
    }
