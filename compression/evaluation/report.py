"""`python -m compression report`: one table of every built variant, from the manifests alone."""

from __future__ import annotations

import json
from pathlib import Path

from common import contract
from common.machine import describe
from common.manifest import Manifest
from common.markdown import replace_block, table

RESULTS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "results.md"

COLUMNS = (
    "variant",
    "method",
    "rank",
    "quantization",
    "graph",
    "file MB",
    "× smaller",
    "table MB",
    "table × smaller",
    "params",
    "STS-B",
    "fidelity mean",
    "fidelity p1",
    "worst language",
    "heads",
)


def built_manifests(models_dir: Path) -> list[Manifest]:
    return [
        Manifest.read(d)
        for d in sorted(Path(models_dir).iterdir())
        if d.is_dir() and not d.name.startswith(".") and (d / contract.MANIFEST_FILE).is_file()
    ]


def graph_label(graph: dict) -> str:
    """The serving changes a manifest records (compression/export/serving_graph.py, dense_route.py,
    activation.py, prune.py), or 'plain'."""
    parts = (
        (["fused attention"] if graph.get("fused_attention") else [])
        + (["unpadded"] if graph.get("fused_attention") and graph.get("padding_removed") else [])
        + (["dense route"] if graph.get("dense_route") else [])
        + (["tanh GELU"] if graph.get("tanh_gelu") else [])
        + ([f"FFN pruned to {graph['ffn_kept']}"] if graph.get("ffn_kept") else [])
    )
    return ", ".join(parts) or "plain"


def rows(manifests: list[Manifest]) -> list[dict]:
    by_name = {m.name: m for m in manifests}
    out = []
    for m in manifests:
        base = by_name.get(m.baseline) if m.baseline else m
        q = m.quality
        out.append(
            {
                "variant": m.name,
                "method": m.method,
                "rank": m.rank,
                "quantization": m.quantization,
                "graph": graph_label(m.graph),
                "file MB": round(m.bytes.file / 1e6, 2),
                "× smaller": round(base.bytes.file / m.bytes.file, 2) if base else None,
                "table MB": round(m.bytes.embedding / 1e6, 2),
                "table × smaller": round(base.bytes.embedding / m.bytes.embedding, 2) if base else None,
                "params": m.params.total,
                "STS-B": q.stsb_spearman,
                "fidelity mean": q.fidelity_mean,
                "fidelity p1": q.fidelity_p1,
                "worst language": _worst_language(m),
                "heads": ", ".join(f"{k} {v['accuracy']:.2f}" for k, v in sorted(q.heads.items())) or "–",
            }
        )
    return out


def _worst_language(m: Manifest) -> str | None:
    """The --eval language with the lowest fidelity, with its mean and int8's beside it."""
    if not m.languages:
        return None
    lang = min(m.languages, key=lambda k: m.languages[k]["fidelity_mean"])
    row = m.languages[lang]
    int8 = f" (int8 {row['int8_fidelity_mean']})" if "int8_fidelity_mean" in row else ""
    return f"{lang} {row['fidelity_mean']}{int8}"


def machines_line(manifests: list[Manifest]) -> str:
    """Which CPUs the figures were measured on: a figure from another machine is never this one's."""
    seen = sorted(
        {describe(m.machine) + f", onnxruntime {m.versions.get('onnxruntime', '?')}" for m in manifests if m.machine}
    )
    return (
        "Measured on " + "; ".join(seen) + "."
        if seen
        else "Measured on an unrecorded machine (built before the manifest recorded it)."
    )


def write_report(models_dir: Path, report_dir: Path, page: Path | None = RESULTS_PAGE) -> str:
    """Write report.json and report.md; refresh the results page's block if it has the markers."""
    manifests = built_manifests(models_dir)
    data = rows(manifests)
    md = table(COLUMNS, data) + "\n\n" + machines_line(manifests)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    (report_dir / "report.md").write_text(md + "\n")
    if page is not None:
        replace_block(page, "results", md)
    return md
