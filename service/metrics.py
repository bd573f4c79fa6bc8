"""Prometheus metrics. Every per-model series has a `model` label so one query
puts a compressed variant beside its baseline."""

from __future__ import annotations

import os

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

# Geometric latency buckets from 0.5 ms to ~16 s.
LATENCY_BUCKETS = tuple(0.0005 * 2**i for i in range(16))
SIZE_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 … 1024
TOKEN_BUCKETS = tuple(float(16 * 2**i) for i in range(12))  # 16 … 32768
FIDELITY_BUCKETS = (0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "embedding_requests_total", "HTTP requests", ["endpoint", "model", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "embedding_request_duration_seconds",
            "HTTP request latency",
            ["endpoint", "model", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "embedding_queue_wait_seconds",
            "time a request waited for its batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokenize_seconds = Histogram(
            "embedding_tokenization_seconds",
            "tokenization time per request",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "embedding_inference_seconds", "onnxruntime time per batch", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "embedding_batch_size", "texts per inference batch", ["model"], buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "embedding_batch_tokens", "padded tokens per inference batch", ["model"], buckets=TOKEN_BUCKETS, registry=r
        )
        self.failures = Counter(
            "embedding_failures_total", "failed requests by error type", ["model", "type"], registry=r
        )
        self.queue_depth = Gauge("embedding_queue_depth", "texts waiting for a batch", ["model"], registry=r)
        self.queue_capacity = Gauge("embedding_queue_capacity", "texts the queue holds at most", ["model"], registry=r)
        self.loaded = Gauge(
            "embedding_model_loaded", "1 if the model serves, 0 if it failed to load", ["model"], registry=r
        )
        self.params = Gauge("embedding_model_parameters", "parameters by part", ["model", "part"], registry=r)
        self.file_bytes = Gauge("embedding_model_file_bytes", "model.onnx bytes", ["model"], registry=r)
        self.embedding_bytes = Gauge(
            "embedding_model_embedding_bytes", "bytes of the word-embedding part", ["model"], registry=r
        )
        self.ratio = Gauge(
            "embedding_model_compression_ratio",
            "baseline file bytes / this model's file bytes",
            ["model", "baseline"],
            registry=r,
        )
        self.quality = Gauge("embedding_model_quality", "manifest quality figures", ["model", "metric"], registry=r)
        self.model_memory = Gauge(
            "embedding_model_resident_memory_bytes",
            "resident memory added by loading and warming the model",
            ["model"],
            registry=r,
        )
        self.process_memory = Gauge(
            "embedding_process_resident_memory_bytes", "resident memory of the process", registry=r
        )
        self.process_memory.set_function(lambda: psutil.Process(os.getpid()).memory_info().rss)
        self.shadow_fidelity = Histogram(
            "embedding_shadow_fidelity",
            "cosine between a compressed model's answer and its baseline's",
            ["model", "baseline"],
            buckets=FIDELITY_BUCKETS,
            registry=r,
        )
        self.host_fidelity = Gauge(
            "embedding_model_host_fidelity",
            "cosine to the fp32 baseline over the model's probe set, measured at load on this "
            "host (stat mean or p1); where: host or build (the manifest's, where it was built)",
            ["model", "stat", "where"],
            registry=r,
        )
        self.host_cpu = Info(
            "embedding_host_cpu", "this host's CPU and the int8 features its kernels depend on", registry=r
        )
        self.labels = Counter(
            "embedding_classify_labels_total", "predicted labels", ["model", "head", "label"], registry=r
        )
        self.version = Gauge(
            "embedding_model_version_info",
            "1 for the version (short sha256 of model.onnx) each model serves",
            ["model", "version"],
            registry=r,
        )
        self.swap_fidelity = Gauge(
            "embedding_swap_fidelity",
            "cosine between a replacing version's vectors and the "
            "serving one's at the last reload that replaced the model (stat mean or p1)",
            ["model", "stat"],
            registry=r,
        )
        self.swaps = Counter(
            "embedding_swaps_total",
            "reload decisions per model: added, replaced, forced, refused "
            "(the fidelity gate), failed (the new version did not load), removed",
            ["model", "outcome"],
            registry=r,
        )
        self.canary_requests = Counter(
            "embedding_canary_requests_total",
            "requests for model answered by candidate",
            ["model", "candidate"],
            registry=r,
        )
        self.canary_share = Gauge(
            "embedding_canary_share",
            "configured share of model's requests sent to candidate",
            ["model", "candidate"],
            registry=r,
        )
        self.canary_fidelity = Histogram(
            "embedding_canary_fidelity",
            "cosine between candidate's answer and model's own on the canary share",
            ["model", "candidate"],
            buckets=FIDELITY_BUCKETS,
            registry=r,
        )

    def model_gauges(self) -> list[Gauge]:
        """The gauges published from the loaded models' manifests, cleared and set again after a reload."""
        return [
            self.loaded,
            self.params,
            self.file_bytes,
            self.embedding_bytes,
            self.ratio,
            self.quality,
            self.model_memory,
            self.host_fidelity,
            self.queue_capacity,
            self.queue_depth,
            self.version,
            self.canary_share,
        ]

    def batch_observer(self, model: str):
        def observe(size: int, tokens: int, seconds: float) -> None:
            self.batch_size.labels(model).observe(size)
            self.batch_tokens.labels(model).observe(tokens)
            self.inference_seconds.labels(model).observe(seconds)

        return observe
