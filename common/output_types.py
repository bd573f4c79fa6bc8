"""Compact output vectors (`embedding_type`), with sentence-transformers' `quantize_embeddings` semantics:

- int8 / uint8: each dimension's range [min, max] cut into 256 steps; the ranges are calibrated by the
  build on the model's own embeddings of its held-out texts and stored in the manifest, so the service
  never calibrates on client input;
- binary / ubinary: the sign of each coordinate, packed eight to a byte (int8: the byte − 128).

Shared by the pipeline (calibration, quality per type) and the service (encoding answers).
"""

from __future__ import annotations

import numpy as np

TYPES = ("float", "int8", "uint8", "binary", "ubinary")
CALIBRATED = ("int8", "uint8")


def calibrate(vectors: np.ndarray) -> dict[str, list[float]]:
    """Per-dimension ranges for int8/uint8, as the manifest stores them."""
    return {
        "min": vectors.min(0).astype(float).round(6).tolist(),
        "max": vectors.max(0).astype(float).round(6).tolist(),
    }


def quantize(vectors: np.ndarray, kind: str, ranges: dict[str, list[float]] | None = None) -> np.ndarray:
    """(n, dim) float vectors as `kind`: int8/uint8 (n, dim), binary/ubinary (n, ceil(dim / 8))."""
    if kind == "float":
        return vectors.astype(np.float32)
    if kind in ("binary", "ubinary"):
        packed = np.packbits(vectors > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if kind == "binary" else packed
    if kind not in CALIBRATED:
        raise ValueError(f"unknown embedding type {kind!r}; one of {', '.join(TYPES)}")
    if ranges is None:
        raise ValueError(f"{kind} needs calibrated ranges")
    lo = np.asarray(ranges["min"], dtype=np.float32)
    steps = np.maximum((np.asarray(ranges["max"], dtype=np.float32) - lo) / 255, 1e-12)
    q = np.clip(np.floor((vectors - lo) / steps), 0, 255)
    return (q - 128).astype(np.int8) if kind == "int8" else q.astype(np.uint8)


def similarity(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """The (n, m) similarity a store would rank with: cosine of the (quantized) vectors, or for packed
    signs the number of equal bits."""
    if kind in ("binary", "ubinary"):
        bits_a = np.unpackbits(a.view(np.uint8), axis=-1).astype(np.float32) * 2 - 1
        bits_b = np.unpackbits(b.view(np.uint8), axis=-1).astype(np.float32) * 2 - 1
        return bits_a @ bits_b.T
    a, b = a.astype(np.float32), b.astype(np.float32)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def pair_similarity(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """(n,) similarity of row i of a with row i of b, as `similarity` scores them."""
    if kind in ("binary", "ubinary"):
        equal = np.unpackbits(a.view(np.uint8), axis=-1) == np.unpackbits(b.view(np.uint8), axis=-1)
        return (2 * equal.sum(-1) - equal.shape[-1]).astype(np.float32)
    a, b = a.astype(np.float32), b.astype(np.float32)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return (a * b).sum(1) / norms
