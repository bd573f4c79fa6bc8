"""`python -m compression sweep`: the trade-off curve of post-hoc factorization.

For each method, error metric and rank (for pq: each number of one-byte codes
per token, at full rank): factorize (no recovery, fp32 factors), export, and measure STS-B
test Spearman and fidelity to the baseline over STS-B test sentences. Built
variants (recovered, quantized) are added as points from their manifests, so
the plot shows what recovery and quantization buy.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from common.fidelity import fidelity
from common.onnx_encoder import OnnxEncoder
from compression.evaluation.evaluate import spearman_x100
from compression.evaluation.report import built_manifests
from compression.export.measure import embedding_bytes
from compression.export.onnx_export import export_onnx
from compression.model import (
    SentenceEncoder,
    with_factorized_embedding,
    word_embedding_matrix,
)
from compression.table.factorize import FactorizeConfig, factorize
from compression.table.sensitivity import corpus_metric

log = logging.getLogger(__name__)


def _configs(
    method: str, metric: str, ranks: list[int], subspaces: list[int], vocab: int, hidden: int
) -> list[FactorizeConfig]:
    if method == "pq":
        k = min(256, vocab)
        return [
            FactorizeConfig(method="pq", rank=hidden, subspaces=m, codebook_size=k, metric=metric) for m in subspaces
        ]
    return [FactorizeConfig(method=method, rank=r, metric=metric) for r in ranks]


def series(method: str, metric: str) -> str:
    """A curve's name: the method, tagged when its error is measured in the sensitivity metric."""
    return method if metric == "euclidean" else f"{method}+{metric}"


def run_sweep(
    ctx,
    report_dir: Path,
    ranks: list[int],
    methods: list[str],
    baseline: str,
    subspaces: list[int] = (16, 32, 64, 96),
    metrics: list[str] = ("euclidean",),
) -> list[dict]:
    from tqdm.auto import tqdm

    src = ctx.source
    data = ctx.eval_set
    base = ctx.evals.embedded(baseline)
    base_vecs = np.concatenate([base.sts_u, base.sts_v])
    counts = ctx.counts(None)
    E = word_embedding_matrix(src.bert)
    V, H = E.shape
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        tok = Path(tmp) / "tokenizer.json"
        tok.write_bytes(src.tokenizer_file.read_bytes())
        for method, metric in ((m, k) for m in methods for k in metrics):
            G_hh = (
                corpus_metric(ctx, src.bert, FactorizeConfig.metric_sentences, 0) if metric == "sensitivity" else None
            )
            for config in tqdm(
                _configs(method, metric, ranks, list(subspaces), V, H),
                desc=f"sweep {series(method, metric)}",
                disable=not ctx.progress,
            ):
                factors = factorize(E, config, counts, G_hh)
                enc = SentenceEncoder(with_factorized_embedding(src.bert, factors))
                export_onnx(enc, Path(tmp) / "model.onnx", V)
                onnx_enc = OnnxEncoder(Path(tmp), threads=ctx.threads)
                n = len(data.sts_s1)
                vecs = onnx_enc.encode(data.sts_s1 + data.sts_s2)
                mean, p1 = fidelity(vecs, base_vecs)
                points.append(
                    {
                        "source": "sweep",
                        "method": series(method, metric),
                        "rank": factors.rank,
                        **({"subspaces": config.subspaces} if config.method == "pq" else {}),
                        "embedding_bytes": embedding_bytes(Path(tmp) / "model.onnx"),
                        "stsb_spearman": round(spearman_x100(vecs[:n], vecs[n:], data.sts_scores), 2),
                        "fidelity_mean": round(mean, 5),
                        "fidelity_p1": round(p1, 5),
                    }
                )
                log.info("sweep %s", points[-1])
    for m in built_manifests(ctx.out_root):
        points.append(
            {
                "source": "variant",
                "method": m.name,
                "rank": m.rank,
                "embedding_bytes": m.bytes.embedding,
                "stsb_spearman": m.quality.stsb_spearman,
                "fidelity_mean": m.quality.fidelity_mean,
                "fidelity_p1": m.quality.fidelity_p1,
            }
        )
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "sweep.json").write_text(json.dumps(points, indent=2) + "\n")
    plot_sweep(points, report_dir / "sweep.png")
    return points


def plot_sweep(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in (
        (axes[0], "stsb_spearman", "STS-B test Spearman ×100"),
        (axes[1], "fidelity_mean", "mean cosine to baseline"),
    ):
        for method in sorted({p["method"] for p in points if p["source"] == "sweep"}):
            pts = sorted(
                (p for p in points if p["source"] == "sweep" and p["method"] == method),
                key=lambda p: p["embedding_bytes"],
            )
            ax.plot(
                [p["embedding_bytes"] / 1e6 for p in pts],
                [p[key] for p in pts],
                "o-",
                label=f"{method} (post-hoc, fp32)",
            )
        for p in points:
            if p["source"] == "variant":
                ax.scatter(p["embedding_bytes"] / 1e6, p[key], marker="*", s=120, zorder=3)
                ax.annotate(
                    p["method"],
                    (p["embedding_bytes"] / 1e6, p[key]),
                    fontsize=8,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
        ax.set_xscale("log")
        ax.set_xlabel("embedding table bytes (MB, log)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Embedding compression trade-off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
