"""The benchmark's PNG plots (matplotlib, no display)."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, NullFormatter  # noqa: E402


def _median(samples: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def latency_vs_concurrency(results: dict, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, modes) in enumerate(results["http"].items()):
        cs = [c for c in results["config"]["concurrencies"] if f"c{c}" in modes]
        for key, style in (("p50_ms", "-o"), ("p99_ms", "--^")):
            ax.plot(cs, [_median(modes[f"c{c}"], key) for c in cs], style, color=f"C{i}", label=f"{name} {key[:3]}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent clients (one sentence per request)",
        ylabel="latency (ms)",
        title="Service latency vs concurrency (median over repetitions)",
    )
    ax.set_xticks(results["config"]["concurrencies"], [str(c) for c in results["config"]["concurrencies"]])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def throughput(results: dict, out: Path) -> Path:
    names = list(results["in_process"])
    modes = list(next(iter(results["in_process"].values())))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        med, lo, hi = [], [], []
        for mode in modes:
            vals = [s["sentences_per_s"] for s in results["in_process"][name][mode]]
            m = statistics.median(vals)
            med.append(m), lo.append(m - min(vals)), hi.append(max(vals) - m)
        ax.bar([j + i * width for j in range(len(modes))], med, width, yerr=[lo, hi], capsize=2, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(modes))], modes)
    ax.set(ylabel="sentences / s (in-process)", title="In-process throughput per batch shape (min–max bars)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def pareto(results: dict, sweep: list[dict], out: Path) -> Path:
    """Embedding-table bytes against STS-B and against fidelity: variants and sweep points."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, label in (
        (axes[0], "stsb_spearman", "STS-B Spearman ×100"),
        (axes[1], "fidelity_mean", "mean cosine fidelity to the baseline"),
    ):
        by_method: dict[str, list[dict]] = {}
        for p in sweep:
            if p.get("source") == "sweep" and p.get(key) is not None:
                by_method.setdefault(p["method"], []).append(p)
        for method, pts in sorted(by_method.items()):
            pts.sort(key=lambda p: p["embedding_bytes"])
            ax.plot(
                [p["embedding_bytes"] / 1e6 for p in pts],
                [p[key] for p in pts],
                ":.",
                alpha=0.6,
                label=f"sweep {method}",
            )
        for name, st in results["static"].items():
            if name not in results["http"]:  # sentence-transformers: the same network as the baseline
                continue
            value = (st.get("quality") or {}).get(key)
            if value is not None and st.get("embedding_bytes"):
                ax.scatter(st["embedding_bytes"] / 1e6, value, s=40, zorder=3)
                ax.annotate(
                    name, (st["embedding_bytes"] / 1e6, value), fontsize=7, xytext=(4, 4), textcoords="offset points"
                )
        ax.set(xscale="log", xlabel="embedding-table bytes (MB)", ylabel=label)
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Size vs quality: built variants and the rank sweep")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
