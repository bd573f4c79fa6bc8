"""The servers side by side: our service and Infinity (`infinity-emb`, its optimum/ONNX engine) on
loopback, one at a time, driven by the benchmark's load generator (wrk, else bench/loadgen.py) through each
one's OpenAI-compatible embeddings route with one sentence per request: c1 p50/p99 latency and
c32 throughput."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx

from bench.contenders import Contender
from bench.served import sample, services
from bench.server import free_port

from .venvs import python_of

SERVED_NAME = "minilm"  # the name each server is asked for


def _load(url: str, path: str, model: str, texts: list[str], seconds: float) -> dict:
    """c1 and c32 with the benchmark's load generator (wrk where installed: a Python client would take
    a core of its own on this 2-core machine), after a warm-up at each."""
    target = SimpleNamespace(url=url)
    out = {}
    for concurrency in (1, 32):
        sample(target, texts, concurrency, 1.0, openai=(path, model))  # warm connections and batch shapes
        out[f"c{concurrency}"] = sample(target, texts, concurrency, seconds, openai=(path, model))
    return out


@contextmanager
def infinity(source: Path, venvs: Path, work: Path) -> Iterator[tuple[str, str]]:
    """Infinity serving `source` with its optimum engine on the CPU; yields (url, how it was configured)."""
    python = python_of("infinity", venvs.resolve())
    port = free_port()
    # run from inside the folder with --model-id "." : infinity-emb 0.0.78 hands optimum an absolute file
    # name, which optimum 2.1 compares with the folder's relative ones and refuses
    cmd = [
        str(python.parent / "infinity_emb"),
        "v2",
        "--model-id",
        ".",
        "--served-model-name",
        SERVED_NAME,
        "--engine",
        "optimum",
        "--device",
        "cpu",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "DO_NOT_TRACK": "1",
        "HF_HOME": str(work / "hf-home"),
    }
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=source)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600  # the optimum engine exports the model to ONNX at start
        while time.time() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"infinity exited: {log.read().decode(errors='replace')[-1500:]}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise SystemExit("infinity did not become ready in 10 minutes")
        yield url, " ".join(cmd[1:]) + f" (in {source.name}/: sentence-transformers' fp32 export)"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def compare(
    models_dir: Path, ours: str, source: Path, texts: list[str], seconds: float, venvs: Path, work: Path
) -> dict:
    results = {}
    with services([Contender(ours, "onnx", models_dir / ours)]) as servers:  # the main benchmark's servers
        results[f"ours ({ours})"] = {
            "configured": f"python -m service, {ours}, the benchmark's server settings",
            **_load(servers[ours].url, "/v1/embeddings", ours, texts, seconds),
        }
    # Infinity's optimum engine reads an ONNX export from the folder: sentence-transformers' fp32 one
    # (made by the st-onnx-fp32 peer in this run), alone, so it cannot pick another file by glob order
    export = work / "st-onnx"
    if not (export / "onnx" / "model.onnx").is_file():
        raise SystemExit("the servers' comparison needs st-onnx-fp32's export: run that peer in the same run")
    folder = work / "infinity-model"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(export, folder, ignore=lambda d, names: [n for n in names if n == "onnx"])
    shutil.copy(export / "onnx" / "model.onnx", folder / "model.onnx")
    with infinity(folder, venvs, work) as (url, how):
        results["infinity"] = {"configured": how, **_load(url, "/embeddings", SERVED_NAME, texts, seconds)}
    return results
