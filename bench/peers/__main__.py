"""`python -m bench.peers`: our models beside what users deploy instead — sentence-transformers'
ONNX backend (fp32 and its dynamic int8 export for this CPU), fastembed on the same ONNX file, and a
model2vec static model distilled from the same model — one process each, all measured by the same
runner (bench/peers/workers.py samples them in turn): in-process throughput at batch 1 and 32,
resident memory, STS-B test Spearman, fidelity (cosine to the fp32 model); then our service and
Infinity over HTTP, one server at a time. Writes results.json and report.md under
bench/results/peers-<timestamp>/; --publish puts the table into docs/benchmark.md.

--quick (about two minutes once the environments exist): 64 texts, two rounds of short samples, the
peers that need no model2vec environment; the test suite runs it on the tiny models."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from common.fidelity import fidelity
from common.machine import cpu_info, describe
from common.markdown import replace_block, table

from . import OURS, REFERENCE, Peer
from .venvs import ROOT
from .workers import measure

REPO = Path(__file__).resolve().parents[2]
BLOCK = "peers"
HTTP_SECONDS = 8.0  # per server and concurrency


def peer_list(compressed: str, int8: str, baseline: str, quick: bool) -> list[Peer]:
    ours = [Peer(compressed, "ours", None, compressed), Peer(baseline, "ours", None, baseline)]
    if int8:
        ours.insert(1, Peer(int8, "ours", None, int8))
    others = [
        Peer("st-onnx-fp32", "st-onnx-fp32", "st-onnx", "source"),
        Peer("st-onnx-int8", "st-onnx-int8", "st-onnx", "source"),
        Peer("fastembed", "fastembed", "fastembed", "source"),
    ]  # on st-onnx-fp32's export
    if not quick:
        others.append(Peer("model2vec", "model2vec", "model2vec", "source"))
    return ours + others


def sts_spearman(vectors: np.ndarray, index: dict[str, int], pairs) -> float:
    from scipy.stats import spearmanr

    u = vectors[[index[s] for s in pairs.s1]]
    v = vectors[[index[s] for s in pairs.s2]]
    cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    return round(float(spearmanr(cos, pairs.scores).statistic * 100), 2)


def report_rows(results: dict[str, dict]) -> list[dict]:
    rows = []
    for name, r in results.items():
        rows.append(
            {
                "contender": name,
                "b1 texts/s": r["b1"]["texts_per_s"],
                "b1 median ms": r["b1"]["median_ms"],
                "b32 texts/s": r["b32"]["texts_per_s"],
                "STS-B": r.get("stsb"),
                "fidelity mean": r.get("fidelity_mean"),
                "fidelity p1": r.get("fidelity_p1"),
                "RSS MB": round(r["rss_after_use"] / 2**20),
                "configured": r["configured"],
            }
        )
    return rows


def targets(results: dict[str, dict], ours: str) -> list[str]:
    """The issue's targets, as ratios within this one run: the median of the per-round ratios."""
    lines = []
    me = results.get(ours)
    for other, need in (("st-onnx-fp32", 2.0), ("st-onnx-int8", 1.0)):
        if me is None or other not in results:
            continue
        for b in ("b1", "b32"):
            ratios = np.array(me[b]["rounds"]) / np.array(results[other][b]["rounds"])
            ratio = float(np.median(ratios))
            lines.append(
                f"- {ours} {b} throughput {ratio:.2f}× {other} ({ratios.min():.2f}–{ratios.max():.2f} "
                f"over the rounds; target ≥ {need}×) {'✓' if ratio >= need else '✗'}"
            )
    if me is not None and "st-onnx-int8" in results and me.get("fidelity_mean") is not None:
        a, b = me["fidelity_mean"], results["st-onnx-int8"]["fidelity_mean"]
        lines.append(f"- {ours} fidelity {a} vs st-onnx-int8 {b} (target: better) {'✓' if a > b else '✗'}")
    return lines


def http_rows(http: dict) -> list[dict]:
    return [
        {
            "server": name,
            "c1 p50 ms": round(r["c1"]["p50_ms"], 2),
            "c1 p99 ms": round(r["c1"]["p99_ms"], 2),
            "c32 texts/s": round(r["c32"]["sentences_per_s"], 1),
            "c32 p99 ms": round(r["c32"]["p99_ms"], 1),
            "configured": r["configured"],
        }
        for name, r in http.items()
    ]


def http_targets(http: dict) -> list[str]:
    ours = next((r for n, r in http.items() if n.startswith("ours")), None)
    if ours is None or "infinity" not in http:
        return []
    ratio = ours["c32"]["sentences_per_s"] / http["infinity"]["c32"]["sentences_per_s"]
    return [f"- our service c32 throughput {ratio:.2f}× Infinity's (target ≥ 1.2×) {'✓' if ratio >= 1.2 else '✗'}"]


def main(argv: list[str] | None = None) -> int:
    from compression.corpus import read_sts
    from compression.sources.load import default_model_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--models-dir", type=Path, default=REPO / "models")
    p.add_argument("--compressed", default=OURS)
    p.add_argument("--int8", default="minilm-l6-int8", help="our plain int8 variant ('' to leave it out)")
    p.add_argument("--baseline", default=REFERENCE, help="the fp32 model fidelity is measured against")
    p.add_argument(
        "--source",
        type=Path,
        default=None,
        help="the sentence-transformers folder the peers load (default: the bundled all-MiniLM-L6-v2)",
    )
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--only", nargs="+", default=None, help="run only these contenders (the baseline always runs)")
    p.add_argument("--venvs", type=Path, default=ROOT, help="where the peers' environments live")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--rounds", type=int, default=8, help="samples per contender and batch size, taken in turn")
    p.add_argument("--seconds", type=float, default=2.0, help="length of one throughput sample")
    p.add_argument("--no-http", action="store_true", help="leave out the servers (ours vs Infinity over HTTP)")
    p.add_argument(
        "--cpu",
        choices=("native", "avx2"),
        default="native",
        help="avx2: every contender in processes that see this CPU without AVX-512/VNNI (bench/cpuid)",
    )
    p.add_argument(
        "--publish",
        action="store_true",
        help="write the table into docs/benchmark.md (the peers-avx2 block with --cpu avx2)",
    )
    a = p.parse_args(argv)
    if a.cpu == "avx2":
        from bench.cpuid import run_as_avx2

        status = run_as_avx2("bench.peers", argv)
        if status is not None:
            return status
    source = a.source or default_model_dir()
    for name in filter(None, (a.compressed, a.int8, a.baseline)):
        if not (a.models_dir / name / "manifest.json").is_file():
            raise SystemExit(f"model {name!r} is not built in {a.models_dir} (run: make models)")
    pairs = read_sts(a.data_dir, "test")
    texts = list(dict.fromkeys(pairs.s1 + pairs.s2))
    if a.quick:  # a subset of pairs, and all their sentences
        keep = 64
        pairs = type(pairs)(pairs.s1[:keep], pairs.s2[:keep], pairs.scores[:keep])
        texts = list(dict.fromkeys(pairs.s1 + pairs.s2))
    rounds, seconds = (2, 0.3) if a.quick else (a.rounds, a.seconds)
    out = a.out or REPO / "bench" / "results" / f"peers-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    texts_file = out / "texts.json"
    texts_file.write_text(json.dumps(texts))
    index = {t: i for i, t in enumerate(texts)}
    peers = [
        q
        for q in peer_list(a.compressed, a.int8, a.baseline, a.quick)
        if a.only is None or q.name in a.only or q.name == a.baseline
    ]
    results = measure(
        [(q, source if q.model == "source" else a.models_dir / q.model) for q in peers],
        out / "work",
        texts_file,
        out,
        a.venvs,
        rounds,
        seconds,
    )
    reference = results[a.baseline]["vectors"]
    for r in results.values():
        vectors = r.pop("vectors")
        r["stsb"] = sts_spearman(vectors, index, pairs)
        if vectors.shape == reference.shape:  # model2vec's PCA dims are another space: no fidelity
            mean, p1 = fidelity(vectors, reference)
            r["fidelity_mean"], r["fidelity_p1"] = round(mean, 5), round(p1, 5)
    http = {}
    if not (a.quick or a.no_http):
        from .servers import compare

        print("peers: servers over HTTP …", file=sys.stderr, flush=True)
        http = compare(a.models_dir, a.compressed, source, texts, HTTP_SECONDS, a.venvs, out / "work")
    summary = {
        "machine": cpu_info(),
        "quick": a.quick,
        "rounds": rounds,
        "seconds_per_sample": seconds,
        "texts": len(texts),
        "sts_pairs": len(pairs.s1),
        "reference": a.baseline,
        "results": results,
        "http": http,
        "targets": targets(results, a.compressed) + http_targets(http),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    cpu = summary["machine"]
    body = "\n".join(
        [
            f"Measured by `python -m bench.peers{' --quick' if a.quick else ''}"
            f"{' --cpu avx2' if a.cpu == 'avx2' else ''}` on {describe(cpu)}; {len(texts)} STS-B test sentences; "
            f"every contender in its own process, all loaded at once and sampled in turn: {rounds} rounds of one "
            f"{seconds:g} s sample per contender and batch size; texts/s and latency are medians over the rounds, "
            "ratios medians of the per-round ratios.",
            "",
            table(
                [
                    "contender",
                    "b1 texts/s",
                    "b1 median ms",
                    "b32 texts/s",
                    "STS-B",
                    "fidelity mean",
                    "fidelity p1",
                    "RSS MB",
                    "configured",
                ],
                report_rows(results),
            ),
            "",
            *(
                [
                    "",
                    "Servers over HTTP (one sentence per request, each server's OpenAI-compatible route, one "
                    "server at a time):",
                    "",
                    table(
                        ["server", "c1 p50 ms", "c1 p99 ms", "c32 texts/s", "c32 p99 ms", "configured"], http_rows(http)
                    ),
                ]
                if http
                else []
            ),
            "",
            *summary["targets"],
        ]
    )
    (out / "report.md").write_text(body + "\n")
    print(body)
    block = BLOCK if a.cpu == "native" else f"{BLOCK}-avx2"
    if a.publish and not replace_block(REPO / "docs" / "benchmark.md", block, body):
        raise SystemExit(f"docs/benchmark.md has no <!-- {block}:start --> block")
    return 0


if __name__ == "__main__":
    sys.exit(main())
