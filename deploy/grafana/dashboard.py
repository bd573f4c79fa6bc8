"""Generates deploy/grafana/dashboards/embedding-service.json.

The dashboard is written as data here, not by hand in JSON, so each panel is
one readable line of PromQL; the tests check that the committed JSON is this
script's output and evaluate every expression against a real Prometheus.

    python deploy/grafana/dashboard.py
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "embedding-service.json"
DS = {"type": "prometheus", "uid": "prometheus"}
M = 'model=~"$model"'
RATE = "$__rate_interval"


def q(expr: str, legend: str = "", instant: bool = False) -> dict:
    target = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ""}
    if instant:
        target.update(instant=True, range=False, format="table")
    return target


def quantiles(metric: str, qs: tuple[float, ...], where: str = M) -> list[dict]:
    return [
        q(
            f"histogram_quantile({x}, sum by (model, le) (rate({metric}_bucket{{{where}}}[{RATE}])))",
            f"{{{{model}}}} p{round(x * 100)}",
        )
        for x in qs
    ]


def mean(metric: str, by: str = "model") -> str:
    return f"sum by ({by}) (rate({metric}_sum{{{M}}}[{RATE}])) / sum by ({by}) (rate({metric}_count{{{M}}}[{RATE}]))"


# (title, kind, unit, targets, description): what each panel shows and why it matters.
PANELS: list[tuple[str, str, str, list[dict], str]] = [
    (
        "Request rate per model",
        "timeseries",
        "reqps",
        [q(f"sum by (model) (rate(embedding_requests_total{{{M}}}[{RATE}]))", "{{model}}")],
        "Requests per second each model answers, compressed and baseline on one axis.",
    ),
    (
        "Latency p50 / p95 / p99 per model",
        "timeseries",
        "s",
        quantiles("embedding_request_duration_seconds", (0.5, 0.95, 0.99), f'{M},status="200"'),
        "End-to-end latency of successful requests: the compressed model's lines should sit below the baseline's.",
    ),
    (
        "Queue wait p50 / p95",
        "timeseries",
        "s",
        quantiles("embedding_queue_wait_seconds", (0.5, 0.95)),
        "Time a request waits for its batch; growth here means the model is CPU-bound.",
    ),
    (
        "Inference time per batch p50 / p95",
        "timeseries",
        "s",
        quantiles("embedding_inference_seconds", (0.5, 0.95)),
        "onnxruntime time per batch: the pure cost of the model, free of HTTP and queueing.",
    ),
    (
        "Tokenization p95",
        "timeseries",
        "s",
        quantiles("embedding_tokenization_seconds", (0.95,)),
        "Tokenizer time per request.",
    ),
    (
        "Batch size (mean texts per batch)",
        "timeseries",
        "short",
        [q(mean("embedding_batch_size"), "{{model}}")],
        "How well dynamic batching coalesces concurrent requests.",
    ),
    (
        "Batch tokens (mean padded tokens per batch)",
        "timeseries",
        "short",
        [q(mean("embedding_batch_tokens"), "{{model}}")],
        "Work per batch, padding included.",
    ),
    (
        "Error rate by status",
        "timeseries",
        "reqps",
        [q(f'sum by (status) (rate(embedding_requests_total{{{M},status!="200"}}[{RATE}]))', "{{status}}")],
        "Non-200 answers by status: 4xx are client mistakes, 429 is shedding, 5xx are ours.",
    ),
    (
        "Failures by type",
        "timeseries",
        "reqps",
        [q(f"sum by (model, type) (rate(embedding_failures_total{{{M}}}[{RATE}]))", "{{model}} {{type}}")],
        "Domain errors by type (input too long, unknown model, overloaded, ...).",
    ),
    (
        "Queue depth / capacity",
        "timeseries",
        "short",
        [
            q(f"embedding_queue_depth{{{M}}}", "{{model}} depth"),
            q(f"embedding_queue_capacity{{{M}}}", "{{model}} capacity"),
        ],
        "Texts waiting per model beside the bound at which the service sheds with 429.",
    ),
    (
        "Resident memory per model",
        "bargauge",
        "bytes",
        [q(f"embedding_model_resident_memory_bytes{{{M}}}", "{{model}}", instant=True)],
        "RSS each model added when it was loaded and warmed: the compressed model's bar should be the shorter.",
    ),
    (
        "Process resident memory",
        "timeseries",
        "bytes",
        [q("embedding_process_resident_memory_bytes", "{{instance}}")],
        "Whole-process RSS per replica; a line that climbs under steady load is a leak.",
    ),
    (
        "Model file bytes",
        "bargauge",
        "bytes",
        [q(f"embedding_model_file_bytes{{{M}}}", "{{model}}", instant=True)],
        "model.onnx size per variant.",
    ),
    (
        "Word-embedding bytes",
        "bargauge",
        "bytes",
        [q(f"embedding_model_embedding_bytes{{{M}}}", "{{model}}", instant=True)],
        "Bytes of the token-embedding table (or its factors): what the factorization shrinks.",
    ),
    (
        "Parameters (total)",
        "bargauge",
        "short",
        [q(f'embedding_model_parameters{{{M},part="total"}}', "{{model}}", instant=True)],
        "Parameter count per variant.",
    ),
    (
        "Compression ratio vs baseline",
        "bargauge",
        "x",
        [q(f"embedding_model_compression_ratio{{{M}}}", "{{model}} / {{baseline}}", instant=True)],
        "Baseline file bytes divided by this model's.",
    ),
    (
        "Offline quality (manifest)",
        "table",
        "none",
        [q(f"embedding_model_quality{{{M}}}", "", instant=True)],
        "STS-B Spearman and fidelity to the baseline measured by the pipeline, on the machine that built the model.",
    ),
    (
        "Fidelity on this host vs where built",
        "table",
        "none",
        [q(f"embedding_model_host_fidelity{{{M}}}", "", instant=True), q("embedding_host_cpu_info", "", instant=True)],
        "Each model's fidelity over its probe set measured at load on this host's CPU (where=host) beside the "
        "same figure where it was built (where=build), and this host's CPU features: int8 kernels differ by "
        "instruction set.",
    ),
    (
        "Live shadow fidelity (mean)",
        "timeseries",
        "none",
        [q(mean("embedding_shadow_fidelity", "model, baseline"), "{{model}} vs {{baseline}}")],
        "Mean cosine between a compressed model's answer and its baseline's on sampled live traffic.",
    ),
    (
        "Live shadow fidelity (5th percentile)",
        "timeseries",
        "none",
        quantiles("embedding_shadow_fidelity", (0.05,)),
        "The low tail of live fidelity: the inputs the compression hurts most.",
    ),
    (
        "Label mix per head",
        "timeseries",
        "percentunit",
        [
            q(
                f"sum by (model, head, label) (rate(embedding_classify_labels_total{{{M}}}[{RATE}])) / ignoring(label) "
                f"group_left sum by (model, head) (rate(embedding_classify_labels_total{{{M}}}[{RATE}]))",
                "{{model}} {{head}} {{label}}",
            )
        ],
        "Share of each predicted label per head: drift in the mix shows a change in traffic or in the model.",
    ),
    (
        "Models loaded",
        "stat",
        "none",
        [q("embedding_model_loaded", "{{model}}", instant=True)],
        "1 for each model that serves, 0 for one refused at start.",
    ),
    (
        "Versions serving and reload decisions",
        "table",
        "none",
        [
            q(f"embedding_model_version_info{{{M}}}", "", instant=True),
            q(f"sum by (model, outcome) (increase(embedding_swaps_total{{{M}}}[$__range]))", "", instant=True),
            q(f"embedding_swap_fidelity{{{M}}}", "", instant=True),
        ],
        "The version (short sha256 of model.onnx) each model serves; what reloads did in the range (added, replaced, "
        "forced, refused by the fidelity gate, failed, removed); the gate's cosine between the new and the serving "
        "version at the last swap check.",
    ),
    (
        "Canary: share and fidelity to the model it stands in for",
        "timeseries",
        "percentunit",
        # a canary answer is counted under the candidate's name in embedding_requests_total, so the model's
        # requests are its own answers plus its candidate's (one candidate per model)
        [
            q(
                "sum by (model) (rate(embedding_canary_requests_total[$__rate_interval])) / (sum by (model) "
                "(rate(embedding_requests_total[$__rate_interval])) + sum by (model) "
                "(rate(embedding_canary_requests_total[$__rate_interval])))",
                "canary share of {{model}}",
            ),
            q(
                "sum by (model, candidate) (rate(embedding_canary_fidelity_sum[$__rate_interval])) "
                "/ sum by (model, candidate) (rate(embedding_canary_fidelity_count[$__rate_interval]))",
                "{{candidate}} vs {{model}} mean cosine",
            ),
            q(
                "histogram_quantile(0.05, sum by (model, candidate, le) (rate(embedding_canary_fidelity_bucket"
                "[$__rate_interval])))",
                "{{candidate}} vs {{model}} p5 cosine",
            ),
        ],
        "Share of a model's requests its canary candidate answered (EMBED_CANARY), and the cosine between the "
        "candidate's answers and the model's own on those requests, mean and 5th percentile.",
    ),
]


def panel(i: int, title: str, kind: str, unit: str, targets: list[dict], description: str) -> dict:
    for ref, t in zip("ABCDEFGH", targets):
        t["refId"] = ref
    wide = kind in ("timeseries", "table")
    return {
        "id": i + 1,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12 if wide else 8, "x": 0, "y": 0},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]}}
        if kind == "timeseries"
        else {},
    }


def layout(panels: list[dict]) -> list[dict]:
    """Left-to-right, top-to-bottom on Grafana's 24-column grid."""
    x = y = row_h = 0
    for p in panels:
        g = p["gridPos"]
        if x + g["w"] > 24:
            x, y = 0, y + row_h
        g["x"], g["y"] = x, y
        x, row_h = x + g["w"], g["h"]
    return panels


def dashboard() -> dict:
    return {
        "uid": "embedding-service",
        "title": "Compressed embeddings: compressed vs baseline",
        "tags": ["embeddings", "onnxruntime"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "model",
                    "label": "model",
                    "type": "query",
                    "datasource": DS,
                    "query": {"query": "label_values(embedding_model_loaded, model)", "refId": "models"},
                    "definition": "label_values(embedding_model_loaded, model)",
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 1,
                    "sort": 1,
                }
            ]
        },
        "panels": layout([panel(i, *p) for i, p in enumerate(PANELS)]),
    }


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dashboard(), indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
