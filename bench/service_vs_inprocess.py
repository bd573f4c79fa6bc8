"""Service efficiency: the real service over HTTP against in-process onnxruntime of the same model.

For each model: in-process throughput and latency at batch 1 and 32; the
service (started on loopback with only that model loaded) under an async
keep-alive load generator at several concurrencies, one sentence per request;
and the service process's resident memory after warm-up. Writes raw JSON and
a markdown table under bench/results/<timestamp>/.

    python -m bench.service_vs_inprocess [--models minilm-l6 minilm-l6-fact] [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import contract  # noqa: E402
from common.manifest import Manifest  # noqa: E402
from common.onnx_encoder import batch_arrays, load_tokenizer, make_session  # noqa: E402
from tests.server import Server  # noqa: E402


def sentences(n: int) -> list[str]:
    data = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-test.csv"
    out = []
    for line in data.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 7:
            out += [cols[5], cols[6]]
    return out[:n]


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def in_process(model_dir: Path, texts: list[str], batch: int, seconds: float) -> dict:
    manifest = Manifest.read(model_dir)
    tok = load_tokenizer(model_dir / contract.TOKENIZER_FILE, manifest.max_seq_length)
    sess = make_session(model_dir / contract.MODEL_FILE)
    lat, done, i = [], 0, 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        chunk = [texts[(i + k) % len(texts)] for k in range(batch)]
        i += batch
        t0 = time.perf_counter()
        sess.run([contract.OUTPUT_EMBEDDING], batch_arrays(tok.encode_batch(chunk)))  # tokenize + run, as served
        lat.append(time.perf_counter() - t0)
        done += batch
    total = sum(lat)
    return {"batch": batch, "sentences_per_s": done / total, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
            "p99_ms": pct(lat, 99), "requests": len(lat)}


async def load(url: str, texts: list[str], concurrency: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds
    limits = httpx.Limits(max_keepalive_connections=concurrency, max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker(w: int) -> None:
            nonlocal errors
            k = w
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                r = await client.post("/embed", json={"inputs": texts[k % len(texts)]})
                lat.append(time.perf_counter() - t0)
                errors += r.status_code != 200
                k += concurrency

        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall = time.perf_counter() - start
    return {"concurrency": concurrency, "sentences_per_s": len(lat) / wall, "p50_ms": pct(lat, 50),
            "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "requests": len(lat), "errors": errors}


def serve_one(models_dir: Path, name: str, texts: list[str], concurrencies: list[int], seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink((models_dir / name).resolve(), Path(tmp) / name)
        with Server(Path(tmp), EMBED_DEFAULT_MODEL=name, EMBED_THREADS="0", EMBED_LOG_LEVEL="warning") as s:
            for _ in range(20):  # warm the HTTP path too
                httpx.post(s.url + "/embed", json={"inputs": texts[0]})
            rss = psutil.Process(s.proc.pid).memory_info().rss
            runs = [asyncio.run(load(s.url, texts, c, seconds)) for c in concurrencies]
            rss_after = psutil.Process(s.proc.pid).memory_info().rss
    return {"rss_after_load_bytes": rss, "rss_after_load_test_bytes": rss_after, "http": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", type=Path, default=REPO / "models")
    p.add_argument("--models", nargs="+", default=["minilm-l6", "minilm-l6-fact"])
    p.add_argument("--seconds", type=float, default=8.0, help="duration of each measurement")
    p.add_argument("--quick", action="store_true", help="2 s per measurement")
    args = p.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    texts = sentences(2000)
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
               "seconds_per_measurement": seconds, "models": {}}
    for name in args.models:
        inproc = [in_process(args.models_dir / name, texts, b, seconds) for b in (1, 32)]
        served = serve_one(args.models_dir, name, texts, [1, 8, 32, 64], seconds)
        results["models"][name] = {"in_process": inproc, **served}
        print(name, json.dumps(results["models"][name], indent=1), flush=True)
    out = REPO / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "service_vs_inprocess.json").write_text(json.dumps(results, indent=2))
    lines = ["| model | in-process b1 p99 ms | in-process b32 sent/s | HTTP c1 p99 ms | HTTP c32 sent/s | "
             "efficiency c32 | service RSS MB |", "|---|---|---|---|---|---|---|"]
    for name, r in results["models"].items():
        b1, b32 = r["in_process"]
        c1 = next(h for h in r["http"] if h["concurrency"] == 1)
        c32 = next(h for h in r["http"] if h["concurrency"] == 32)
        lines.append(f"| {name} | {b1['p99_ms']:.2f} | {b32['sentences_per_s']:.0f} | {c1['p99_ms']:.2f} | "
                     f"{c32['sentences_per_s']:.0f} | {c32['sentences_per_s'] / b32['sentences_per_s']:.0%} | "
                     f"{r['rss_after_load_bytes'] / 1e6:.0f} |")
    names = list(results["models"])
    if len(names) >= 2:
        a, b = results["models"][names[0]], results["models"][names[-1]]
        lines.append(f"\nService RSS {names[-1]} / {names[0]}: "
                     f"{b['rss_after_load_bytes'] / a['rss_after_load_bytes']:.0%}")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
